//! End-to-end file transfers between `duet` processes: `duet send bob FILE` and `duet answer
//! --accept-files DIR`, the bytes peer to peer over a WebRTC data channel. A 50 MB file arrives
//! identical with bounded memory; a file the virus scanner flags never reaches the folder and
//! the sender is told why; a transfer cut midway resumes without sending verified blocks again;
//! a declined offer writes nothing; an offer with an unsafe name is refused.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{json, spawn, World};
use duet_signaling::protocol::Invitation;
use duet_signaling::{ClientConfig, SignalingClient, UserName};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A file of `len` pseudo-random bytes (seeded), and its SHA-256 in hex.
fn random_file(path: &Path, len: usize, seed: u64) -> String {
    let mut state = seed | 1;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        data.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    data.truncate(len);
    std::fs::write(path, &data).expect("write file");
    hex(&Sha256::digest(&data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_of(path: &Path) -> String {
    hex(&Sha256::digest(std::fs::read(path).expect("read file")))
}

/// Names in a folder, hidden ones (the quarantine) left out.
fn visible(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `duet send bob FILE` as alice to `duet answer --accept-files INBOX` as bob; both must
/// succeed. Returns what each printed (`--json`).
fn send_accepted(world: &World, file: &Path, inbox: &Path) -> (Value, Value) {
    let bob = world.answer(
        "bob",
        &["--accept-files", inbox.to_str().unwrap(), "--json"],
    );
    let alice = spawn(world.cmd("alice", &["send", "bob", file.to_str().unwrap(), "--json"]));
    let (status, stdout, stderr) = alice.finish(Duration::from_secs(120));
    assert!(status.success(), "alice: {stderr}");
    let sent = json(&stdout);
    let (status, stdout, stderr) = bob.finish(Duration::from_secs(30));
    assert!(status.success(), "bob: {stderr}");
    (sent, json(&stdout))
}

fn inbox(world: &World) -> PathBuf {
    let dir = world.path("inbox");
    std::fs::create_dir_all(&dir).expect("inbox");
    dir
}

#[test]
fn a_fifty_megabyte_file_arrives_identical_with_bounded_memory() {
    let world = World::new(&["alice", "bob"]);
    let inbox = inbox(&world);
    let file = world.path("big.bin");
    let sha = random_file(&file, 50_000_000, 7);
    let (sent, received) = send_accepted(&world, &file, &inbox);
    assert_eq!(received["outcome"], "delivered", "{received}");
    assert_eq!(visible(&inbox), ["big.bin"]);
    assert_eq!(sha256_of(&inbox.join("big.bin")), sha);
    // Nothing of the file is held in memory at once: both sides stay far below its size.
    for (who, report) in [("alice", &sent), ("bob", &received)] {
        let peak = report["peak_rss_mb"].as_f64().unwrap_or(f64::MAX);
        assert!(peak < 110.0, "{who} peaked at {peak} MiB for a 50 MB file");
    }
    assert!(sent["mb_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{sent}");
}

#[test]
fn a_flagged_file_is_held_in_quarantine_and_the_sender_is_told_why() {
    let world = World::new(&["alice", "bob"]);
    let inbox = inbox(&world);
    let file = world.path("invoice.pdf");
    let sha = random_file(&file, 300_000, 11);
    // A ClamAV database of one SHA-256 signature: this file.
    let db = world.path("sigs");
    std::fs::create_dir_all(&db).expect("db");
    let mut sigs = std::fs::File::create(db.join("duet-test.hsb")).expect("sigs");
    writeln!(sigs, "{sha}:300000:Duet.Test.Invoice").expect("write sig");
    let scanner = format!("clamscan --no-summary -d {} {{file}}", db.display());
    let bob = world.answer(
        "bob",
        &[
            "--accept-files",
            inbox.to_str().unwrap(),
            "--scanner",
            &scanner,
            "--json",
        ],
    );
    let alice = spawn(world.cmd("alice", &["send", "bob", file.to_str().unwrap()]));
    let (status, _, stderr) = alice.finish(Duration::from_secs(60));
    assert_eq!(status.code(), Some(7), "alice: {stderr}");
    assert!(stderr.contains("Duet.Test.Invoice"), "{stderr}");
    let (status, stdout, stderr) = bob.finish(Duration::from_secs(30));
    assert_eq!(status.code(), Some(7), "bob: {stderr}");
    assert_eq!(json(&stdout)["outcome"], "held");
    assert!(visible(&inbox).is_empty(), "{:?}", visible(&inbox));
}

#[test]
fn a_cut_transfer_resumes_without_sending_verified_blocks_again() {
    let world = World::new(&["alice", "bob"]);
    let inbox = inbox(&world);
    let file = world.path("movie.bin");
    let sha = random_file(&file, 60_000_000, 3);
    let quarantine = inbox.join(".duet-quarantine");

    let bob = world.answer(
        "bob",
        &["--accept-files", inbox.to_str().unwrap(), "--json"],
    );
    let mut alice = spawn(world.cmd("alice", &["send", "bob", file.to_str().unwrap()]));
    // Cut the sender off once a good part of the file has arrived.
    let part = quarantine.join(format!("{sha}.part"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&part).map_or(0, |m| m.len()) < 25_000_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the transfer never got going"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    alice.child.kill().expect("kill the sender");
    let (status, stdout, stderr) = bob.finish(Duration::from_secs(60));
    assert!(!status.success(), "bob finished a cut transfer: {stderr}");
    assert_eq!(json(&stdout)["outcome"], "failed");
    assert!(visible(&inbox).is_empty());

    // The same file offered again: only the missing blocks travel.
    let (sent, received) = send_accepted(&world, &file, &inbox);
    assert_eq!(sha256_of(&inbox.join("movie.bin")), sha);
    let blocks = 60_000_000u64.div_ceil(128 * 1024);
    let resumed = received["blocks_resumed"].as_u64().unwrap_or(0);
    let moved = sent["blocks_moved"].as_u64().unwrap_or(u64::MAX);
    assert!(resumed > 0, "nothing resumed: {received}");
    assert!(
        moved + resumed <= blocks,
        "verified blocks were sent again: {moved} sent + {resumed} resumed of {blocks}"
    );
    assert_eq!(
        received["blocks_moved"].as_u64().unwrap_or(0) + resumed,
        blocks,
        "the receiver's blocks moved in this session and resumed: {received}"
    );
}

#[test]
fn a_declined_offer_writes_nothing() {
    let world = World::new(&["alice", "bob"]);
    let here = world.path("bobs-folder");
    std::fs::create_dir_all(&here).expect("folder");
    let file = world.path("notes.txt");
    random_file(&file, 10_000, 5);
    let mut answer = world.cmd("bob", &["answer"]);
    answer.current_dir(&here);
    let mut bob = spawn(answer);
    bob.wait_line("waiting for a call", Duration::from_secs(20));
    let alice = spawn(world.cmd("alice", &["send", "bob", file.to_str().unwrap()]));
    bob.wait_line("alice offers notes.txt", Duration::from_secs(30));
    if let Some(stdin) = bob.child.stdin.as_mut() {
        stdin.write_all(b"n\n").expect("say no");
    }
    let (status, _, stderr) = alice.finish(Duration::from_secs(30));
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("declined"), "{stderr}");
    let (status, _, _) = bob.finish(Duration::from_secs(10));
    assert_eq!(status.code(), Some(3));
    let left: Vec<_> = std::fs::read_dir(&here).expect("read").collect();
    assert!(left.is_empty(), "a declined offer wrote {left:?}");
}

#[test]
fn an_offer_with_an_unsafe_name_is_refused_with_the_reason() {
    let world = World::new(&["alice", "bob"]);
    let inbox = inbox(&world);
    let bob = world.answer("bob", &["--accept-files", inbox.to_str().unwrap()]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let url = world.url.clone();
    let token = world.token("alice");
    let states = runtime.block_on(async move {
        // A peer that does not use duet's sender: it offers names no folder should take.
        let config = ClientConfig::new(url, UserName::new("alice").unwrap(), token);
        let (client, mut events) = SignalingClient::connect(config).await.expect("connect");
        let mut refusals = Vec::new();
        for name in ["CON.txt", "aux", "trailing. ", "bell\u{7}.txt"] {
            let invitation = Invitation::File {
                name: name.into(),
                size: 10,
                sha256: "ab".repeat(32),
            };
            let bob = UserName::new("bob").unwrap();
            let id = client.invite(&bob, invitation).await.expect("invite");
            let reason = tokio::time::timeout(Duration::from_secs(10), async {
                while let Some(event) = events.recv().await {
                    if let duet_signaling::Event::Message(
                        duet_signaling::ServerMessage::InviteState {
                            id: got, reason, ..
                        },
                    ) = event
                    {
                        if got == id {
                            return reason;
                        }
                    }
                }
                None
            })
            .await
            .expect("an answer");
            refusals.push((name, reason.unwrap_or_default()));
        }
        refusals
    });
    for (name, reason) in states {
        assert!(reason.contains("unsafe name"), "{name:?}: {reason:?}");
    }
    drop(bob);
    assert!(visible(&inbox).is_empty());
}

#[test]
fn answer_keep_takes_one_file_after_another_until_interrupted() {
    let world = World::new(&["alice", "bob"]);
    let inbox = inbox(&world);
    let mut bob = world.answer(
        "bob",
        &["--keep", "--accept-files", inbox.to_str().unwrap()],
    );
    let mut shas = Vec::new();
    for (i, name) in ["first.bin", "second.bin"].into_iter().enumerate() {
        let file = world.path(name);
        shas.push(random_file(&file, 3_000_000, 20 + i as u64));
        let alice = spawn(world.cmd("alice", &["send", "bob", file.to_str().unwrap()]));
        let (status, _, stderr) = alice.finish(Duration::from_secs(60));
        assert!(status.success(), "alice, {name}: {stderr}");
        // Bob waits for the next one instead of exiting.
        bob.wait_line("waiting for a call", Duration::from_secs(20));
        assert!(bob.child.try_wait().expect("wait").is_none(), "bob exited");
    }
    assert_eq!(visible(&inbox), ["first.bin", "second.bin"]);
    assert_eq!(sha256_of(&inbox.join("first.bin")), shas[0]);
    assert_eq!(sha256_of(&inbox.join("second.bin")), shas[1]);
    // Ctrl-C ends it, and that is a normal end.
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &bob.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(interrupted.success());
    let (status, _, stderr) = bob.finish(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "bob: {stderr}");
}
