//! The embedded local target: content-addressed store, SQLite metadata, in-process training, local endpoints
