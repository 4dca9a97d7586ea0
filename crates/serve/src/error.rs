//! The one error type of the serving library.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What went wrong setting up or talking to a server. Request-level problems (a bad body, an
/// unknown category) are HTTP responses, not errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The variants asked for are not a valid configuration (names, weights, backends).
    #[error("{0}")]
    Config(String),
    /// A variant's model could not be loaded.
    #[error("variant `{variant}`: cannot load the model in {}: {source}", dir.display())]
    Model {
        /// The variant's name.
        variant: String,
        /// Its model directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The threads that answer requests could not be started.
    #[error("cannot start the request threads: {0}")]
    Runtime(#[source] std::io::Error),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not what it should be (not JSON, or not the expected shape).
    #[error("{} is not a valid server file: {source}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The address could not be listened on (most often: the port is taken).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An HTTP exchange failed before any status arrived (connection refused, timeout).
    #[error("{0}")]
    Http(String),
    /// A script-mode backend could not start or answer.
    #[error("{0}")]
    Backend(String),
    /// A model failed on a batch of rows (the request gets a 500).
    #[error("{0}")]
    Predict(String),
}
