//! The wire protocol: JSON text frames, one message per frame, tagged by `"type"`.
//!
//! Clients send [`Request`]s (a [`ClientMessage`] with an optional request id `rid` that the
//! server echoes in its reply); the server sends [`ServerMessage`]s. No client message has a
//! `from` field: the server fills it in from the authenticated connection, and any field a
//! message does not define is ignored. signaling/PROTOCOL.md shows an example of every message.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::code::ErrorCode;
pub use crate::ice::IceServer;
use crate::Error;

/// The protocol version this crate speaks; `hello` must carry it.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest chat text, in bytes.
pub const MAX_TEXT: usize = 16 * 1024;
/// Longest client message id, personal note, reason, or file and folder name, in bytes.
pub const MAX_FIELD: usize = 256;

/// A user's name: 1 to 32 characters of `a-z`, `0-9`, `_`, `-`, `.`, starting with a letter or digit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserName(String);

impl UserName {
    /// Checks `name` and wraps it; the error says what is wrong with it.
    pub fn new(name: &str) -> Result<Self, Error> {
        let invalid = |problem: &str| Error::Invalid {
            what: "user name",
            problem: format!("{name:?}: {problem}"),
        };
        if name.is_empty() || name.len() > 32 {
            return Err(invalid("must be 1 to 32 characters"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b))
        {
            return Err(invalid("may only use a-z, 0-9, '_', '-' and '.'"));
        }
        if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(invalid("must start with a letter or a digit"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::new(&s)
    }
}

impl From<UserName> for String {
    fn from(u: UserName) -> String {
        u.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for UserName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

/// An invitation's id, chosen by the server and unique while the server runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InviteId(pub u64);

impl fmt::Display for InviteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The status a user chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Available.
    #[default]
    Online,
    /// Away from the keyboard.
    Away,
    /// Do not disturb.
    Busy,
    /// Appear offline: contacts see `offline`, everything else works.
    Invisible,
}

/// The status contacts see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shown {
    /// Available.
    Online,
    /// Away from the keyboard.
    Away,
    /// Do not disturb.
    Busy,
    /// Not connected, or appearing offline.
    Offline,
}

impl From<Status> for Shown {
    fn from(s: Status) -> Shown {
        match s {
            Status::Online => Shown::Online,
            Status::Away => Shown::Away,
            Status::Busy => Shown::Busy,
            Status::Invisible => Shown::Offline,
        }
    }
}

/// Where a contact relationship stands, seen from one side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// No relationship (kept only while one side blocks the other).
    Stranger,
    /// I asked them; they have not answered.
    Outgoing,
    /// They asked me; I have not answered.
    Incoming,
    /// We are contacts.
    Accepted,
}

/// One entry of a contact list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The contact.
    pub user: UserName,
    /// The relationship.
    pub link: Link,
    /// Whether I block them.
    pub blocked: bool,
    /// Their status as I may see it (`offline` unless we are unblocked contacts).
    pub status: Shown,
    /// Their personal message (empty unless I may see their status).
    pub note: String,
}

/// What an invitation is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Invitation {
    /// A call.
    Call {
        /// Audio only, or audio and video.
        media: CallMedia,
    },
    /// An offer to send one file.
    File {
        /// The file's name.
        name: String,
        /// Its size in bytes.
        size: u64,
        /// Its SHA-256, 64 lowercase hex digits.
        sha256: String,
    },
    /// An invitation to share a folder.
    Folder {
        /// The folder's name.
        name: String,
    },
}

/// The media of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallMedia {
    /// Audio only.
    Audio,
    /// Audio and video.
    Video,
}

/// The states of an invitation. `invited`, `ringing` and `accepted` are live; the others end it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InviteState {
    /// Sent, not yet seen by the callee's client.
    Invited,
    /// The callee's client is alerting.
    Ringing,
    /// The callee accepted; signals flow until a hang-up.
    Accepted,
    /// The callee declined.
    Declined,
    /// The callee is in another call, or said it is busy.
    Busy,
    /// The caller cancelled before an answer.
    Cancelled,
    /// Nobody answered in time.
    Expired,
    /// A party ended the accepted call or share.
    HungUp,
}

impl InviteState {
    /// Whether the invitation is still going on in this state.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            InviteState::Invited | InviteState::Ringing | InviteState::Accepted
        )
    }
}

/// What a client sends. See signaling/PROTOCOL.md for examples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientMessage {
    /// Authenticate; must be the first message. Optionally sets the presence to start with.
    Hello {
        /// Must be [`PROTOCOL_VERSION`].
        version: u32,
        /// Account name.
        user: UserName,
        /// The account's token.
        token: String,
        /// Status to start with (else the last one chosen).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<Status>,
        /// Personal message to start with (else the last one chosen).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Change status and personal message; remembered for later sessions.
    Presence {
        /// The new status.
        status: Status,
        /// The new personal message (absent: keep the current one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Ask a user to become a contact (accepts their request if they asked first).
    ContactAdd {
        /// Whom to ask.
        user: UserName,
    },
    /// Accept a contact request.
    ContactAccept {
        /// Who asked.
        user: UserName,
    },
    /// Decline a contact request.
    ContactDecline {
        /// Who asked.
        user: UserName,
    },
    /// Block a user: they see me offline and cannot reach me; they are not told.
    ContactBlock {
        /// Whom to block.
        user: UserName,
    },
    /// Undo a block.
    ContactUnblock {
        /// Whom to unblock.
        user: UserName,
    },
    /// End a contact relationship, or withdraw a request.
    ContactRemove {
        /// Whom to remove.
        user: UserName,
    },
    /// Ask for the contact list.
    ContactList,
    /// A chat message to a contact.
    Chat {
        /// The contact.
        to: UserName,
        /// The sender's id for this message, unique per sender: resending the same id is harmless.
        id: String,
        /// The text.
        text: String,
    },
    /// Confirms a message that carried a `seq` (a chat message or a receipt), and every one
    /// received before it.
    Received {
        /// The `seq` of the last message received.
        seq: u64,
    },
    /// Typing started or stopped.
    Typing {
        /// The contact.
        to: UserName,
        /// Whether typing is going on.
        active: bool,
    },
    /// Shake the contact's window.
    Nudge {
        /// The contact.
        to: UserName,
    },
    /// Invite a contact to a call, to receive a file, or to share a folder.
    Invite {
        /// The contact.
        to: UserName,
        /// What for.
        invitation: Invitation,
        /// How long it may ring, in milliseconds (default 30 000).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_ms: Option<u64>,
    },
    /// The callee's client is alerting.
    Ringing {
        /// The invitation.
        id: InviteId,
    },
    /// The callee accepts.
    Accept {
        /// The invitation.
        id: InviteId,
    },
    /// The callee declines.
    Decline {
        /// The invitation.
        id: InviteId,
        /// Why, if it says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The callee is busy.
    Busy {
        /// The invitation.
        id: InviteId,
    },
    /// The caller gives up before an answer.
    Cancel {
        /// The invitation.
        id: InviteId,
    },
    /// Either party ends an invitation (after acceptance: a hang-up).
    Hangup {
        /// The invitation.
        id: InviteId,
        /// Why, if it says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A call signal (SDP, ICE candidate...) for the other party; opaque to the server.
    Signal {
        /// The ringing or accepted invitation.
        call: InviteId,
        /// The signal.
        signal: Value,
    },
    /// Asks for a `pong`.
    Ping,
    /// Asks for fresh ICE servers (TURN credentials expire); answered with `ice_servers`.
    IceServers,
}

/// The `type` of every client message, in declaration order.
pub const CLIENT_TYPES: &[&str] = &[
    "hello",
    "presence",
    "contact_add",
    "contact_accept",
    "contact_decline",
    "contact_block",
    "contact_unblock",
    "contact_remove",
    "contact_list",
    "chat",
    "received",
    "typing",
    "nudge",
    "invite",
    "ringing",
    "accept",
    "decline",
    "busy",
    "cancel",
    "hangup",
    "signal",
    "ping",
    "ice_servers",
];

/// A client message with its optional request id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Echoed in the reply (`ok`, `ack`, `contacts`, `invited`, `pong` or `error`), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<u64>,
    /// The message.
    #[serde(flatten)]
    pub body: ClientMessage,
}

/// Why a frame could not be read as a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The request id, if the frame was an object with a numeric `rid`.
    pub rid: Option<u64>,
    /// [`ErrorCode::Malformed`] or [`ErrorCode::UnknownType`].
    pub code: ErrorCode,
    /// The problem, for a person to read.
    pub message: String,
}

impl Request {
    /// Reads one text frame; the error names the problem and carries the `rid` if one was readable.
    pub fn parse(text: &str) -> Result<Request, ParseError> {
        let value: Value = serde_json::from_str(text).map_err(|e| ParseError {
            rid: None,
            code: ErrorCode::Malformed,
            message: format!("not JSON: {e}"),
        })?;
        let Value::Object(map) = &value else {
            return Err(ParseError {
                rid: None,
                code: ErrorCode::Malformed,
                message: "not a JSON object".into(),
            });
        };
        let rid = map.get("rid").and_then(Value::as_u64);
        let fail = |code, message: String| ParseError { rid, code, message };
        if map
            .get("rid")
            .is_some_and(|r| !r.is_null() && rid.is_none())
        {
            return Err(fail(
                ErrorCode::Malformed,
                "rid must be a non-negative integer".into(),
            ));
        }
        let kind = match map.get("type") {
            Some(Value::String(kind)) => kind,
            Some(_) => return Err(fail(ErrorCode::Malformed, "type must be a string".into())),
            None => return Err(fail(ErrorCode::Malformed, "missing field `type`".into())),
        };
        if !CLIENT_TYPES.contains(&kind.as_str()) {
            let shown: String = kind.chars().take(40).collect();
            return Err(fail(
                ErrorCode::UnknownType,
                format!("unknown message type {shown:?}"),
            ));
        }
        let body = ClientMessage::deserialize(&value)
            .map_err(|e| fail(ErrorCode::Malformed, format!("{kind}: {e}")))?;
        Ok(Request { rid, body })
    }

    /// The JSON text of this request.
    pub fn to_json(&self) -> String {
        // A map of strings, numbers and JSON values always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What the server sends. See signaling/PROTOCOL.md for examples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerMessage {
    /// Authentication succeeded; a `contacts` list follows.
    Welcome {
        /// The server's protocol version.
        version: u32,
        /// Who this connection is.
        user: UserName,
        /// The status in force.
        status: Status,
        /// The personal message in force.
        note: String,
    },
    /// A request succeeded.
    Ok {
        /// The request's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<u64>,
    },
    /// A request failed, or a frame could not be used.
    Error {
        /// The request's id, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<u64>,
        /// What kind of failure.
        code: ErrorCode,
        /// The problem, for a person to read.
        message: String,
    },
    /// The contact list (after `welcome`, or in reply to `contact_list`).
    Contacts {
        /// The request's id, if this answers one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<u64>,
        /// Every relationship of mine.
        contacts: Vec<Contact>,
    },
    /// A user asks to become my contact.
    ContactRequest {
        /// Who asks.
        from: UserName,
    },
    /// A relationship changed on the other side (`accepted`, `declined` or `removed`).
    ContactUpdate {
        /// The other side.
        user: UserName,
        /// What happened.
        change: ContactChange,
    },
    /// A contact's presence.
    Presence {
        /// The contact.
        from: UserName,
        /// Their status as shown to me.
        status: Shown,
        /// Their personal message.
        note: String,
    },
    /// A chat message; confirm it with `received`.
    Chat {
        /// The sender.
        from: UserName,
        /// The sender's id for it.
        id: String,
        /// The text.
        text: String,
        /// The server's sequence number, to confirm.
        seq: u64,
    },
    /// The server has taken a chat message (stored if the contact is offline).
    Ack {
        /// The request's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<u64>,
        /// The message's id.
        id: String,
        /// The message's sequence number.
        seq: u64,
    },
    /// A contact's client received my message `id`; confirm it with `received`.
    Receipt {
        /// The contact who received it.
        from: UserName,
        /// The message's id.
        id: String,
        /// The receipt's own sequence number, to confirm.
        seq: u64,
    },
    /// A contact started or stopped typing.
    Typing {
        /// The contact.
        from: UserName,
        /// Whether typing is going on.
        active: bool,
    },
    /// A contact nudged me.
    Nudge {
        /// The contact.
        from: UserName,
    },
    /// My invitation was created.
    Invited {
        /// The request's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<u64>,
        /// Its id.
        id: InviteId,
        /// The callee.
        to: UserName,
    },
    /// A contact invites me.
    Invitation {
        /// The caller.
        from: UserName,
        /// Its id.
        id: InviteId,
        /// What for.
        invitation: Invitation,
        /// Milliseconds left before it expires.
        expires_ms: u64,
    },
    /// An invitation I am party to changed state.
    InviteState {
        /// The invitation.
        id: InviteId,
        /// Its new state.
        state: InviteState,
        /// Why, when a party gave a reason or the server ended it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A call signal from the other party.
    Signal {
        /// The other party.
        from: UserName,
        /// The invitation.
        call: InviteId,
        /// The signal, as the other party sent it.
        signal: Value,
    },
    /// Answers `ping`.
    Pong {
        /// The request's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<u64>,
    },
    /// The STUN and TURN servers to connect calls, transfers and sharing links through: sent
    /// after `welcome` when the server has some, and in reply to `ice_servers`.
    IceServers {
        /// The request's id, if this answers one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<u64>,
        /// The servers (empty when the server knows none).
        servers: Vec<IceServer>,
        /// Milliseconds before the TURN credentials expire (absent without TURN).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_ms: Option<u64>,
    },
}

/// A change made by the other side of a relationship.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactChange {
    /// They accepted my request.
    Accepted,
    /// They declined my request.
    Declined,
    /// They removed me.
    Removed,
}

impl ServerMessage {
    /// The request id this message answers, if any.
    pub fn rid(&self) -> Option<u64> {
        match self {
            ServerMessage::Ok { rid }
            | ServerMessage::Error { rid, .. }
            | ServerMessage::Contacts { rid, .. }
            | ServerMessage::Ack { rid, .. }
            | ServerMessage::Invited { rid, .. }
            | ServerMessage::Pong { rid }
            | ServerMessage::IceServers { rid, .. } => *rid,
            _ => None,
        }
    }

    /// The JSON text of this message.
    pub fn to_json(&self) -> String {
        // Strings, numbers and JSON values always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads one server frame.
    pub fn parse(text: &str) -> Result<ServerMessage, Error> {
        serde_json::from_str(text).map_err(|e| Error::Protocol(format!("server sent {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_checked() {
        assert!(UserName::new("alice").is_ok());
        assert!(UserName::new("a.b-c_9").is_ok());
        for bad in ["", "Alice", "-x", "a b", "é", &"x".repeat(33)] {
            assert!(UserName::new(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<UserName>("\"BAD\"").is_err());
    }

    #[test]
    fn parse_names_the_problem() {
        let e = Request::parse("{nope").unwrap_err();
        assert_eq!(e.code, ErrorCode::Malformed);
        assert!(e.message.starts_with("not JSON"), "{}", e.message);
        let e = Request::parse("[1]").unwrap_err();
        assert_eq!(e.message, "not a JSON object");
        let e = Request::parse(r#"{"rid":7,"type":"teleport"}"#).unwrap_err();
        assert_eq!((e.rid, e.code), (Some(7), ErrorCode::UnknownType));
        assert!(e.message.contains("teleport"));
        let e = Request::parse(r#"{"rid":8,"type":"chat","to":"bob"}"#).unwrap_err();
        assert_eq!((e.rid, e.code), (Some(8), ErrorCode::Malformed));
        assert!(e.message.contains("missing field `id`"), "{}", e.message);
        let e = Request::parse(r#"{"rid":"x","type":"ping"}"#).unwrap_err();
        assert!(e.message.contains("rid"));
        let e = Request::parse(r#"{"type":"contact_add","user":"NOT OK"}"#).unwrap_err();
        assert!(e.message.contains("user name"), "{}", e.message);
    }

    #[test]
    fn unknown_fields_such_as_from_are_ignored() {
        let r = Request::parse(r#"{"type":"nudge","to":"bob","from":"mallory","rid":3}"#).unwrap();
        assert_eq!(r.rid, Some(3));
        assert_eq!(
            r.body,
            ClientMessage::Nudge {
                to: UserName::new("bob").unwrap()
            }
        );
    }

    #[test]
    fn requests_round_trip() {
        let r = Request {
            rid: Some(1),
            body: ClientMessage::Signal {
                call: InviteId(4),
                signal: serde_json::json!({"sdp": "v=0"}),
            },
        };
        let text = r.to_json();
        assert_eq!(Request::parse(&text).unwrap(), r);
        let unit = Request {
            rid: None,
            body: ClientMessage::ContactList,
        };
        assert_eq!(unit.to_json(), r#"{"type":"contact_list"}"#);
        assert_eq!(Request::parse(&unit.to_json()).unwrap(), unit);
    }

    #[test]
    fn unknown_error_codes_still_parse() {
        let m = ServerMessage::parse(r#"{"type":"error","code":"from_the_future","message":"?"}"#)
            .unwrap();
        assert!(matches!(
            m,
            ServerMessage::Error {
                code: ErrorCode::Unknown,
                ..
            }
        ));
        assert_eq!(ErrorCode::TooManyAttempts.to_string(), "too_many_attempts");
    }
}
