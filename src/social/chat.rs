//! `duet chat NAME`: sends each input line to NAME and prints what arrives (messages from anyone,
//! typing, nudges, presence changes, invitations). A line `/nudge` nudges NAME. At the end of
//! the input (piped stdin, Ctrl-D) it exits once the server has acknowledged every line.

use std::io::Write;

use anyhow::{Context, Result};
use duet_signaling::client::{Event, Events, SignalingClient};
use duet_signaling::protocol::{ClientMessage, Invitation, ServerMessage};
use duet_signaling::UserName;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::mpsc;

use super::shown_text;

/// One line to print for an event, if it is worth a line.
pub fn describe(event: &Event) -> Option<String> {
    let msg = match event {
        Event::Message(m) => m,
        Event::Disconnected { reason } => return Some(format!("* disconnected: {reason}")),
        Event::Reconnected => return Some("* reconnected".into()),
        Event::Closed { reason } => return Some(format!("* connection closed: {reason}")),
    };
    Some(match msg {
        ServerMessage::Chat { from, text, .. } => format!("{from}: {text}"),
        ServerMessage::Typing { from, active: true } => format!("* {from} is typing..."),
        ServerMessage::Nudge { from } => format!("* {from} nudged you!"),
        ServerMessage::Presence { from, status, note } if note.is_empty() => {
            format!("* {from} is {}", shown_text(*status))
        }
        ServerMessage::Presence { from, status, note } => {
            format!("* {from} is {} ({note})", shown_text(*status))
        }
        ServerMessage::ContactRequest { from } => {
            format!("* {from} asks to be your contact (duet contact accept {from})")
        }
        ServerMessage::Invitation {
            from, invitation, ..
        } => match invitation {
            Invitation::Call { media } => format!("* {from} is calling you ({media:?} call)"),
            Invitation::File { name, size, .. } => {
                format!("* {from} offers the file {name} ({size} bytes)")
            }
            Invitation::Folder { name } => {
                format!("* {from} invites you to share the folder {name}")
            }
        },
        ServerMessage::Error { message, .. } => format!("* error: {message}"),
        _ => return None,
    })
}

/// Runs a chat with `peer`: lines from `input` go out in order, events are printed to `out`.
pub async fn run(
    client: &SignalingClient,
    mut events: Events,
    peer: &UserName,
    mut input: impl AsyncBufRead + Unpin,
    mut out: impl Write,
) -> Result<()> {
    // Lines go through a sender task, so that arrivals are printed while a send waits for its ack.
    let (lines, mut to_send) = mpsc::channel::<String>(64);
    let sender = {
        let client = client.clone();
        let peer = peer.clone();
        tokio::spawn(async move {
            while let Some(line) = to_send.recv().await {
                if line.trim() == "/nudge" {
                    client
                        .request(ClientMessage::Nudge { to: peer.clone() })
                        .await?;
                } else {
                    client.chat(&peer, &line).await?;
                }
            }
            Ok::<_, duet_signaling::Error>(())
        })
    };
    let mut lines = Some(lines);
    let mut sender = sender;
    let mut buf = String::new();
    loop {
        tokio::select! {
            read = input.read_line(&mut buf), if lines.is_some() => {
                let n = read.context("reading input")?;
                if n == 0 {
                    lines = None; // End of input: the sender finishes what is queued.
                    continue;
                }
                let line = buf.trim_end_matches(['\r', '\n']).to_owned();
                buf.clear();
                if let (Some(tx), false) = (&lines, line.is_empty()) {
                    tx.send(line).await.context("sending")?;
                }
            }
            done = &mut sender, if lines.is_none() => {
                return done.context("sender task")?.context("sending a message");
            }
            event = events.recv() => {
                let Some(event) = event else { return Ok(()) };
                if let Some(text) = describe(&event) {
                    writeln!(out, "{text}")?;
                    out.flush()?;
                }
                if let Event::Closed { reason } = event {
                    anyhow::bail!("the connection closed: {reason}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use duet_signaling::client::ClientConfig;
    use duet_signaling::server::{Server, ServerConfig};
    use duet_signaling::store::{SqliteStore, Store};

    fn name(s: &str) -> UserName {
        UserName::new(s).unwrap()
    }

    #[test]
    fn events_read_as_lines() {
        let chat = Event::Message(ServerMessage::Chat {
            from: name("bob"),
            id: "1".into(),
            text: "hi".into(),
            seq: 1,
        });
        assert_eq!(describe(&chat).as_deref(), Some("bob: hi"));
        let away = ServerMessage::Presence {
            from: name("bob"),
            status: duet_signaling::protocol::Shown::Away,
            note: "lunch".into(),
        };
        assert_eq!(
            describe(&Event::Message(away)).as_deref(),
            Some("* bob is away (lunch)")
        );
        assert_eq!(
            describe(&Event::Message(ServerMessage::Pong { rid: None })),
            None
        );
    }

    #[tokio::test]
    async fn piped_lines_are_sent_in_order_and_arrivals_printed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("duet.db");
        let mut store = SqliteStore::open(&db).unwrap();
        let (ta, tb) = (
            store.create_user(&name("alice")).unwrap(),
            store.create_user(&name("bob")).unwrap(),
        );
        drop(store);
        let server = Server::start(ServerConfig::new("127.0.0.1:0".parse().unwrap(), Some(db)))
            .await
            .unwrap();
        let (a, mut ae) =
            SignalingClient::connect(ClientConfig::new(server.url(), name("alice"), ta))
                .await
                .unwrap();
        let (b, be) = SignalingClient::connect(ClientConfig::new(server.url(), name("bob"), tb))
            .await
            .unwrap();
        b.request(ClientMessage::ContactAdd {
            user: name("alice"),
        })
        .await
        .unwrap();
        a.request(ClientMessage::ContactAccept { user: name("bob") })
            .await
            .unwrap();

        let input: &[u8] = b"first\n\nsecond\n/nudge\n";
        let mut printed = Vec::new();
        run(&b, be, &name("alice"), input, &mut printed)
            .await
            .unwrap();
        let mut got = Vec::new();
        while got.len() < 3 {
            let e = tokio::time::timeout(std::time::Duration::from_secs(3), ae.recv())
                .await
                .unwrap()
                .unwrap();
            if let Some(line) =
                describe(&e).filter(|l| !l.starts_with("* bob is") && !l.contains("asks"))
            {
                got.push(line);
            }
        }
        assert_eq!(got, ["bob: first", "bob: second", "* bob nudged you!"]);
        server.shutdown().await.unwrap();
    }
}
