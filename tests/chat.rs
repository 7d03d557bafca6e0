//! End-to-end chat through a real `duet serve`: a backlog of 1,200 messages for an offline
//! user arrives whole, in order and once at his next `duet chat`; a server killed with SIGKILL
//! mid-chat loses no acknowledged message, and delivers each once and in order after a restart;
//! a full mailbox is shown to the sender; `duet user rotate|revoke|delete` act on a running server.
//!
//! The figures these tests print (`--nocapture`) are measured on the machine that runs them.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{spawn, Proc, DUET};
use duet_signaling::protocol::{ClientMessage, ServerMessage};
use duet_signaling::{ClientConfig, Event, SignalingClient, UserName};

/// `duet user add NAME` on `db`; returns the token.
fn add_user(db: &Path, name: &str) -> String {
    let out = Command::new(DUET)
        .args(["user", "add", name, "--db"])
        .arg(db)
        .output()
        .expect("user add");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `duet serve` on `listen` with `db` and extra flags; returns it and its URL.
fn serve(db: &Path, listen: &str, extra: &[&str]) -> (Proc, String) {
    let mut cmd = Command::new(DUET);
    cmd.args(["serve", "--listen", listen, "--db"])
        .arg(db)
        .args(extra);
    let mut server = spawn(cmd);
    let line = server.wait_line("signaling on", Duration::from_secs(20));
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("ws://"))
        .expect("url")
        .to_owned();
    (server, url)
}

/// `duet ARGS` as `user` against `url`.
fn duet_as(url: &str, user: &str, token: &str, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(DUET);
    cmd.args(args)
        .env("DUET_SERVER", url)
        .env("DUET_USER", user)
        .env("DUET_TOKEN", token)
        .env("DUET_CONFIG", dir.join("no-login.json"));
    cmd
}

/// A server with `names`, every pair of them contacts.
struct Setup {
    dir: tempfile::TempDir,
    db: std::path::PathBuf,
    server: Option<Proc>,
    url: String,
    tokens: HashMap<String, String>,
}

impl Setup {
    fn new(names: &[&str], extra: &[&str]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("duet.db");
        let tokens: HashMap<String, String> = names
            .iter()
            .map(|n| (n.to_string(), add_user(&db, n)))
            .collect();
        let (server, url) = serve(&db, "127.0.0.1:0", extra);
        let setup = Setup {
            dir,
            db,
            server: Some(server),
            url,
            tokens,
        };
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                setup.ok(a, &["contact", "add", b]);
                setup.ok(b, &["contact", "accept", a]);
            }
        }
        setup
    }

    fn cmd(&self, user: &str, args: &[&str]) -> Command {
        duet_as(&self.url, user, &self.tokens[user], self.dir.path(), args)
    }

    fn ok(&self, user: &str, args: &[&str]) {
        let out = self.cmd(user, args).output().expect("run duet");
        assert!(out.status.success(), "{user} {args:?}: {out:?}");
    }

    fn client_config(&self, user: &str) -> ClientConfig {
        let mut c = ClientConfig::new(
            self.url.clone(),
            UserName::new(user).unwrap(),
            self.tokens[user].clone(),
        );
        c.backoff_max = Duration::from_millis(200);
        c
    }
}

/// Runs `duet chat PEER` as `user`, keeping its input open, until `want` lines from PEER were
/// printed; returns them and the time from start to the last.
fn read_chat(s: &Setup, user: &str, peer: &str, want: usize) -> (Vec<String>, Duration) {
    let start = Instant::now();
    let mut child = s
        .cmd(user, &["chat", peer])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("duet chat");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let prefix = format!("{peer}: ");
    let mut got = Vec::new();
    let mut elapsed = Duration::ZERO;
    let deadline = start + Duration::from_secs(60);
    while got.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(text) = line.strip_prefix(&prefix) {
                    got.push(text.to_owned());
                    elapsed = start.elapsed();
                } else {
                    assert!(!line.contains("closed"), "{line} after {} lines", got.len());
                }
            }
            Err(_) => break,
        }
    }
    // Anything more (a duplicate) would arrive now.
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
        if let Some(text) = line.strip_prefix(&prefix) {
            got.push(text.to_owned());
        }
    }
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "duet chat as {user}: {err}");
    (got, elapsed)
}

#[test]
fn a_backlog_of_1200_arrives_whole_in_order_once_at_the_next_duet_chat() {
    // alice's `duet chat` sends as fast as acks come back; at the default 50 frames a second it
    // would be paced (see the next test), which takes half a minute: the backlog, not the
    // sending, is under test here.
    let s = Setup::new(&["alice", "bob"], &["--rate", "5000"]);
    // alice pipes 1,200 lines to bob, who is offline.
    let lines: Vec<String> = (1..=1200).map(|i| format!("line {i}")).collect();
    let mut alice = s
        .cmd("alice", &["chat", "bob"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    {
        let mut input = alice.stdin.take().unwrap();
        for l in &lines {
            writeln!(input, "{l}").unwrap();
        }
    }
    let out = alice.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = t0.elapsed();
    let (got, took) = read_chat(&s, "bob", "alice", lines.len());
    assert_eq!(got.len(), lines.len(), "bob got {} lines", got.len());
    assert_eq!(got, lines);
    eprintln!(
        "backlog: 1200 messages stored in {:.2} s, all delivered in order once in {:.2} s",
        sent.as_secs_f64(),
        took.as_secs_f64()
    );
    // Everything was confirmed: a second look finds nothing.
    let (again, _) = read_chat(&s, "bob", "alice", 0);
    assert!(again.is_empty(), "{} delivered twice", again.len());
}

/// Lines piped to `duet chat` faster than the server's rate limit: the server drops some and
/// says which, the client sends those again after a pause, and every line arrives, in order,
/// once. `--rate 20` makes the limit bind within a few seconds (the default 50 binds the same
/// way past the first 100 lines).
#[test]
fn piped_lines_beyond_the_rate_limit_are_paced_never_dropped() {
    let s = Setup::new(&["alice", "bob"], &["--rate", "20"]);
    let lines: Vec<String> = (1..=150).map(|i| format!("paced {i}")).collect();
    let mut alice = s
        .cmd("alice", &["chat", "bob"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    {
        let mut input = alice.stdin.take().unwrap();
        for l in &lines {
            writeln!(input, "{l}").unwrap();
        }
    }
    let out = alice.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = t0.elapsed();
    // 150 frames through a bucket of 40 refilled at 20 a second take 5.5 s at least: the
    // limit was in force.
    assert!(sent >= Duration::from_millis(5500), "{sent:?}");
    let (got, _) = read_chat(&s, "bob", "alice", lines.len());
    assert_eq!(got, lines);
    eprintln!(
        "paced: 150 lines at --rate 20 all acknowledged in {:.1} s",
        sent.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_chat_loses_no_acknowledged_message() {
    let mut s = Setup::new(&["alice", "bob"], &["--rate", "1000"]);
    let listen = s
        .url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .to_owned();
    let (alice, alice_events) = SignalingClient::connect(s.client_config("alice"))
        .await
        .unwrap();
    let (bob, bob_events) = SignalingClient::connect(s.client_config("bob"))
        .await
        .unwrap();

    // Each sends the other a message every 5 ms (200 a second each way) without waiting for
    // acks; acks come back as events.
    let spawn_sender = |client: SignalingClient, to: &str, tag: &'static str| {
        let to = UserName::new(to).unwrap();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            for i in 0..u64::MAX {
                tick.tick().await;
                let body = ClientMessage::Chat {
                    to: to.clone(),
                    id: format!("{tag}{i:06}"),
                    text: format!("{tag}{i:06}"),
                };
                if client.send(body).await.is_err() {
                    return;
                }
            }
        })
    };
    // One task per user records its acks and what it received, in order.
    let record = |mut events: duet_signaling::client::Events| {
        let (tx, rx) =
            tokio::sync::watch::channel((Vec::<String>::new(), Vec::<String>::new(), None));
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                tx.send_modify(|(acked, received, last)| match e {
                    Event::Message(ServerMessage::Ack { id, .. }) => acked.push(id),
                    Event::Message(ServerMessage::Chat { id, .. }) => {
                        received.push(id);
                        *last = Some(Instant::now());
                    }
                    _ => {}
                });
            }
        });
        rx
    };
    let alice_log = record(alice_events);
    let bob_log = record(bob_events);
    let a_send = spawn_sender(alice.clone(), "bob", "a");
    let b_send = spawn_sender(bob.clone(), "alice", "b");

    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before_kill = (alice_log.borrow().0.len(), bob_log.borrow().0.len());
    let mut server = s.server.take().unwrap();
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (server, _) = serve(&s.db, &listen, &["--rate", "1000"]);
    s.server = Some(server);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    a_send.abort();
    b_send.abort();
    let sending = started.elapsed();

    // Requests already sent are still being acked: wait until no ack has come for a second.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = (0, 0);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = (alice_log.borrow().0.len(), bob_log.borrow().0.len());
        if now == last {
            break;
        }
        last = now;
    }
    // Then until every acked message has arrived (or give up after 20 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    let complete = |acked: &[String], received: &[String]| {
        let got: std::collections::HashSet<&String> = received.iter().collect();
        acked.iter().all(|id| got.contains(id))
    };
    loop {
        let a_done = complete(&alice_log.borrow().0, &bob_log.borrow().1);
        let b_done = complete(&bob_log.borrow().0, &alice_log.borrow().1);
        if (a_done && b_done) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (sender, acked, received, last) in [
        (
            "alice",
            alice_log.borrow().0.clone(),
            bob_log.borrow().1.clone(),
            bob_log.borrow().2,
        ),
        (
            "bob",
            bob_log.borrow().0.clone(),
            alice_log.borrow().1.clone(),
            alice_log.borrow().2,
        ),
    ] {
        let recovered = last.map_or(Duration::ZERO, |t| t.saturating_duration_since(killed_at));
        let got: HashMap<&String, usize> =
            received.iter().enumerate().map(|(i, id)| (id, i)).collect();
        let missing: Vec<&String> = acked.iter().filter(|id| !got.contains_key(id)).collect();
        assert!(
            missing.is_empty(),
            "{sender}: {} acked messages lost, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        assert_eq!(
            got.len(),
            received.len(),
            "{sender}'s messages arrived twice"
        );
        let mut sorted = received.clone();
        sorted.sort();
        assert_eq!(sorted, received, "{sender}'s messages arrived out of order");
        eprintln!(
            "kill -9: {sender} sent 200/s for {:.1} s; {} acked ({} before the kill); all {} it sent that were stored arrived once, in order, the last {:.1} s after the kill",
            sending.as_secs_f64(),
            acked.len(),
            if sender == "alice" { before_kill.0 } else { before_kill.1 },
            received.len(),
            recovered.as_secs_f64()
        );
        // Acks come as fast as the disk flushes (one flush per chat message).
        assert!(acked.len() > 50, "{sender}: only {} acked", acked.len());
    }
    alice.close().await;
    bob.close().await;
}

#[test]
fn a_full_mailbox_is_shown_to_the_sender() {
    let s = Setup::new(&["alice", "bob"], &["--mailbox-messages", "3"]);
    let mut alice = s
        .cmd("alice", &["chat", "bob"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = alice.stdin.take().unwrap();
        for i in 1..=5 {
            writeln!(input, "line {i}").unwrap();
        }
    }
    let out = alice.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}");
    let refused: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("* not delivered"))
        .collect();
    assert_eq!(refused.len(), 2, "{stdout}");
    assert!(
        refused[0].contains("mailbox") && refused[0].ends_with("line 4"),
        "{stdout}"
    );
    assert!(stderr.contains("2 message(s) not delivered"), "{stderr}");
    let (got, _) = read_chat(&s, "bob", "alice", 3);
    assert_eq!(got, ["line 1", "line 2", "line 3"]);
}

#[test]
fn user_rotate_revoke_and_delete_act_on_a_running_server() {
    let s = Setup::new(&["alice", "bob"], &[]);
    let user = |args: &[&str]| {
        Command::new(DUET)
            .arg("user")
            .args(args)
            .arg("--db")
            .arg(&s.db)
            .output()
            .unwrap()
    };
    // alice is in a chat when her token is rotated: the session ends.
    let mut chat = spawn(s.cmd("alice", &["chat", "bob"]));
    std::thread::sleep(Duration::from_millis(500));
    let out = user(&["rotate", "alice"]);
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.len(), 64);
    chat.wait_line("token was changed", Duration::from_secs(10));
    // The old token is refused, the new one works.
    let old = s.cmd("alice", &["contact", "list"]).output().unwrap();
    assert!(!old.status.success());
    let new = duet_as(&s.url, "alice", &token, s.dir.path(), &["contact", "list"])
        .output()
        .unwrap();
    assert!(new.status.success(), "{new:?}");
    // Revoked: refused until rotated again.
    assert!(user(&["revoke", "bob"]).status.success());
    assert!(!s
        .cmd("bob", &["contact", "list"])
        .output()
        .unwrap()
        .status
        .success());
    // Deleted: gone from alice's contacts.
    assert!(user(&["delete", "bob"]).status.success());
    let list = duet_as(&s.url, "alice", &token, s.dir.path(), &["contact", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(!list.contains("bob"), "{list}");
    let missing = user(&["delete", "bob"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no user bob"));
}
