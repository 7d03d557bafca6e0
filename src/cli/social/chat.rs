//! `duet chat NAME`: sends each input line to NAME and prints what arrives (messages from anyone,
//! typing, nudges, presence changes, invitations). A line `/nudge` nudges NAME. At the end of
//! the input (piped stdin, Ctrl-D) it exits once the server has acknowledged every line.
//!
//! A line the server refuses because NAME has too many messages waiting (`mailbox_full`) is
//! printed as not delivered and the chat goes on; the exit status then says some were not.

use std::io::Write;

use anyhow::{Context, Result};
use duet_signaling::UserName;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::mpsc;

use crate::cli::term::{safe, shown_text};
use crate::client::{Client, ClientEvent, ClientEvents};

/// One line to print for an event, if it is worth a line. Text from others (messages, notes,
/// names of files and folders, reasons) has its control and bidi characters escaped.
pub fn describe(event: &ClientEvent) -> Option<String> {
    Some(match event {
        ClientEvent::Disconnected { reason } => format!("* disconnected: {}", safe(reason)),
        ClientEvent::Reconnected => "* reconnected".into(),
        ClientEvent::Closed { reason } => format!("* connection closed: {}", safe(reason)),
        ClientEvent::Chat { from, text, .. } => format!("{from}: {}", safe(text)),
        ClientEvent::Typing { from, active: true } => format!("* {from} is typing..."),
        ClientEvent::Nudge { from } => format!("* {from} nudged you!"),
        ClientEvent::Presence { user, status, note } if note.is_empty() => {
            format!("* {user} is {}", shown_text(*status))
        }
        ClientEvent::Presence { user, status, note } => {
            format!("* {user} is {} ({})", shown_text(*status), safe(note))
        }
        ClientEvent::ContactRequest { from } => {
            format!("* {from} asks to be your contact (duet contact accept {from})")
        }
        ClientEvent::IncomingCall(call) => {
            let kind = if call.has_video() { "video" } else { "voice" };
            format!("* {} is calling you ({kind} call)", call.from())
        }
        ClientEvent::FileOffer(offer) => format!(
            "* {} offers the file {} ({} bytes)",
            offer.from(),
            safe(&offer.name()),
            offer.size()
        ),
        ClientEvent::FolderInvite(invite) => format!(
            "* {} invites you to share the folder {} (duet share accept {} DIR)",
            invite.from(),
            safe(invite.name()),
            invite.id()
        ),
        ClientEvent::FolderChanged { folder, event, .. } => {
            format!(
                "* {}",
                safe(&crate::client::describe_folder_change(folder, event))
            )
        }
        _ => return None,
    })
}

/// Runs a chat with `peer`: lines from `input` go out in order, events are printed to `out`.
pub async fn run(
    client: &Client,
    mut events: ClientEvents,
    peer: &UserName,
    mut input: impl AsyncBufRead + Unpin,
    mut out: impl Write,
) -> Result<()> {
    // Lines go through a sender task, so that arrivals are printed while a send waits for its ack.
    let (lines, mut to_send) = mpsc::channel::<String>(64);
    let (notices, mut notice_rx) = mpsc::unbounded_channel::<String>();
    let sender = {
        let client = client.clone();
        let peer = peer.clone();
        tokio::spawn(async move {
            let mut refused = 0u64;
            while let Some(line) = to_send.recv().await {
                if line.trim() == "/nudge" {
                    client.nudge(peer.as_str()).await?;
                    continue;
                }
                match client.chat(peer.as_str(), &line).await {
                    Ok(_) => {}
                    Err(e) if mailbox_full(&e) => {
                        refused += 1;
                        let why = e
                            .downcast_ref::<duet_signaling::Error>()
                            .map_or_else(|| e.to_string(), |e| e.to_string());
                        let _ = notices.send(format!(
                            "* not delivered ({}): {}",
                            safe(&why),
                            safe(&line)
                        ));
                    }
                    Err(e) => return Err(e),
                }
            }
            if refused > 0 {
                anyhow::bail!("{refused} message(s) not delivered: {peer}'s mailbox is full");
            }
            anyhow::Ok(())
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
                    if tx.send(line).await.is_err() {
                        // The sender stopped on an error: that error is the one to report.
                        return (&mut sender).await.context("sender task")?.context("sending a message");
                    }
                }
            }
            Some(notice) = notice_rx.recv() => {
                writeln!(out, "{notice}")?;
                out.flush()?;
            }
            done = &mut sender, if lines.is_none() => {
                while let Ok(notice) = notice_rx.try_recv() {
                    writeln!(out, "{notice}")?;
                }
                out.flush()?;
                return done.context("sender task")?.context("sending a message");
            }
            event = events.recv() => {
                let Some(event) = event else { return Ok(()) };
                if let Some(text) = describe(&event) {
                    writeln!(out, "{text}")?;
                    out.flush()?;
                }
                if let ClientEvent::Closed { reason } = event {
                    anyhow::bail!("the connection closed: {reason}");
                }
            }
        }
    }
}

/// Whether the server refused a chat message because the recipient's mailbox is full.
fn mailbox_full(e: &anyhow::Error) -> bool {
    e.downcast_ref::<duet_signaling::Error>()
        .and_then(duet_signaling::Error::code)
        == Some(duet_signaling::protocol::ErrorCode::MailboxFull)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientConfig;
    use duet_signaling::protocol::Shown;
    use duet_signaling::server::{Server, ServerConfig};
    use duet_signaling::store::{SqliteStore, Store};

    fn name(s: &str) -> UserName {
        UserName::new(s).unwrap()
    }

    #[test]
    fn events_read_as_lines() {
        let chat = ClientEvent::Chat {
            from: name("bob"),
            id: "1".into(),
            text: "hi".into(),
        };
        assert_eq!(describe(&chat).as_deref(), Some("bob: hi"));
        let away = ClientEvent::Presence {
            user: name("bob"),
            status: Shown::Away,
            note: "lunch".into(),
        };
        assert_eq!(describe(&away).as_deref(), Some("* bob is away (lunch)"));
        // Text from others cannot steer the terminal.
        let sneaky = ClientEvent::Chat {
            from: name("bob"),
            id: "2".into(),
            text: "pay \u{202e}0001\u{202c} now\u{1b}]0;owned\u{7}".into(),
        };
        assert_eq!(
            describe(&sneaky).as_deref(),
            Some("bob: pay \\u{202e}0001\\u{202c} now\\u{1b}]0;owned\\u{7}")
        );
        let note = ClientEvent::Presence {
            user: name("bob"),
            status: Shown::Busy,
            note: "x\ny".into(),
        };
        assert_eq!(describe(&note).as_deref(), Some("* bob is busy (x\\u{a}y)"));
        let typing_stopped = ClientEvent::Typing {
            from: name("bob"),
            active: false,
        };
        assert_eq!(describe(&typing_stopped), None);
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
        let (a, mut ae) = Client::connect(ClientConfig::new(server.url(), name("alice"), ta))
            .await
            .unwrap();
        let (b, be) = Client::connect(ClientConfig::new(server.url(), name("bob"), tb))
            .await
            .unwrap();
        b.add_contact("alice").await.unwrap();
        a.accept_contact("bob").await.unwrap();

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
