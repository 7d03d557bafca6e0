//! Every example in PROTOCOL.md parses, says exactly what it shows (no ignored fields), and
//! every message type has one.

use std::collections::BTreeSet;

use duet_signaling::protocol::{Request, ServerMessage, CLIENT_TYPES};
use serde_json::Value;

const SERVER_TYPES: &[&str] = &[
    "welcome",
    "ok",
    "error",
    "contacts",
    "contact_request",
    "contact_update",
    "presence",
    "chat",
    "ack",
    "receipt",
    "typing",
    "nudge",
    "invited",
    "invitation",
    "invite_state",
    "signal",
    "pong",
    "ice_servers",
];

fn examples() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/PROTOCOL.md")).unwrap();
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in doc.lines() {
        match (&mut current, line.strip_prefix("```json ")) {
            (None, Some(side)) => current = Some((side.trim().to_owned(), String::new())),
            (Some(_), _) if line.starts_with("```") => out.extend(current.take()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

#[test]
fn every_example_parses_exactly_and_every_type_has_one() {
    let (mut client, mut server) = (BTreeSet::new(), BTreeSet::new());
    for (side, body) in examples() {
        let shown: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        let kind = shown["type"].as_str().unwrap().to_owned();
        let back = match side.as_str() {
            "client" => {
                let req = Request::parse(&body).unwrap_or_else(|e| panic!("{}: {body}", e.message));
                client.insert(kind);
                serde_json::to_value(&req).unwrap()
            }
            "server" => {
                let msg = ServerMessage::parse(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
                server.insert(kind);
                serde_json::to_value(&msg).unwrap()
            }
            other => panic!("unknown side {other}"),
        };
        assert_eq!(
            back, shown,
            "the example shows fields the message does not have"
        );
    }
    let all_client: BTreeSet<String> = CLIENT_TYPES.iter().map(|s| s.to_string()).collect();
    let all_server: BTreeSet<String> = SERVER_TYPES.iter().map(|s| s.to_string()).collect();
    assert_eq!(client, all_client);
    assert_eq!(server, all_server);
}
