//! The behaviour suite every mlctl provider must pass
