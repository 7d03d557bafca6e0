//! The crate's one error type.

use crate::code::ErrorCode;

/// Everything that can go wrong in duet's signaling: storage, network, the peer's answers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The SQLite store failed (cannot open the file, disk full, corrupt). Not recoverable by retrying at once.
    #[error("store: {0}")]
    Store(#[from] rusqlite::Error),
    /// A value given to this crate is out of range; the text names the problem. Fix the input.
    #[error("invalid {what}: {problem}")]
    Invalid {
        /// What was being checked ("user name", "server URL"...).
        what: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// An account of that name exists already. Choose another name.
    #[error("user {0} already exists")]
    UserExists(String),
    /// A socket or file failed. Often transient (the client reconnects by itself).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The WebSocket layer failed (handshake refused, connection reset). Transient for the client.
    #[error("websocket: {0}")]
    WebSocket(Box<tokio_tungstenite::tungstenite::Error>),
    /// The server refused a request; `code` says why. Recoverable: the connection lives on
    /// unless the code is one that closes it (bad credentials, unsupported version, too large).
    #[error("server refused ({code}): {message}")]
    Rejected {
        /// The server's error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The peer sent something this crate cannot read. The frame is dropped; the connection lives on.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The connection dropped before a reply came. The client reconnects; the request may be sent again.
    #[error("disconnected before the reply came")]
    Disconnected,
    /// The client was closed, or gave up after the server refused its credentials. Not recoverable.
    #[error("client closed: {0}")]
    Closed(String),
    /// The server's TLS certificate was refused; the text names the problem in one line.
    /// Not recoverable by retrying: fix the certificate, or trust its CA (`--ca`).
    #[error("certificate: {0}")]
    Certificate(String),
    /// Nothing came in time. Transient.
    #[error("timed out {0}")]
    Timeout(&'static str),
}

impl From<tokio_tungstenite::tungstenite::Error> for Error {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        Error::WebSocket(Box::new(e))
    }
}

impl Error {
    /// The server's error code, if the server refused something.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }
}
