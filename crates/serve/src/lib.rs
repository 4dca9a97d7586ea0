//! The mlctl inference HTTP server
