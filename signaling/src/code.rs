//! Why the server refused something: the error codes of the protocol, shared by its messages
//! and by the crate's error type.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why the server refused something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame is not a well-formed message.
    Malformed,
    /// The message type is not one this server knows.
    UnknownType,
    /// A field's value is out of range (too long, bad characters...).
    Invalid,
    /// The protocol version is not supported; the connection is closed.
    UnsupportedVersion,
    /// Authenticate with `hello` first.
    Unauthenticated,
    /// Unknown user or wrong token.
    BadCredentials,
    /// Too many failed logins from this address, or on this connection; try later.
    TooManyAttempts,
    /// The same account logged in on another connection; this one is closed.
    Replaced,
    /// No such user.
    NoSuchUser,
    /// Only contacts may do this.
    NotContact,
    /// I block this user; unblock first.
    Blocked,
    /// No such live invitation of mine.
    NoSuchInvitation,
    /// Not allowed in the current state, or not by me.
    NotAllowed,
    /// The other party is not connected.
    PeerOffline,
    /// Too many messages; some were dropped.
    RateLimited,
    /// A frame larger than the server accepts; the connection is closed.
    TooLarge,
    /// The server is shutting down, or a client was too slow to keep up.
    Closing,
    /// Too many connections from this address (or too many that have not logged in); the
    /// connection is closed.
    TooManyConnections,
    /// The recipient has too many messages waiting in the server's store; the chat message was
    /// not kept. Retry later.
    MailboxFull,
    /// The server failed (storage); the request may be retried.
    Internal,
    /// A code this version of the crate does not know.
    #[serde(other)]
    Unknown,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_value(self).ok();
        f.write_str(text.as_ref().and_then(Value::as_str).unwrap_or("unknown"))
    }
}
