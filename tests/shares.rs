//! End-to-end sharing folders between `duet` processes: `duet share create bob DIR` and
//! `duet share accept ID DIR` keep two real folders equal over a WebRTC data channel: additions,
//! changes, deletions, renames and subfolders both ways, a catch-up after one side was away,
//! a conflict that keeps both versions, and a file the virus scanner flags that never arrives.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{spawn, Proc, World};

/// Starts a share of `dir` from alice to bob (who joins with `theirs`); returns both processes
/// once bob's side is syncing.
fn share(world: &World, mine: &Path, theirs: &Path, bob_extra: &[&str]) -> (Proc, Proc) {
    let mut alice = spawn(world.cmd(
        "alice",
        &[
            "share",
            "create",
            "bob",
            mine.to_str().unwrap(),
            "--seconds",
            "120",
        ],
    ));
    alice.wait_line("inviting bob", Duration::from_secs(20));
    // The invitation's id, as bob sees it.
    let id = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = world.cmd("bob", &["share", "list"]).output().expect("list");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if let Some(id) = text
                .lines()
                .find_map(|l| l.strip_prefix("invitation "))
                .and_then(|l| l.split(':').next())
            {
                break id.to_owned();
            }
            assert!(Instant::now() < deadline, "no invitation listed: {text}");
        }
    };
    let mut args = vec![
        "share",
        "accept",
        id.as_str(),
        theirs.to_str().unwrap(),
        "--seconds",
        "120",
    ];
    args.extend_from_slice(bob_extra);
    let mut bob = spawn(world.cmd("bob", &args));
    bob.wait_line("syncing", Duration::from_secs(30));
    alice.wait_line("syncing", Duration::from_secs(30));
    (alice, bob)
}

/// Waits until `check` holds.
fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

#[test]
fn two_folders_stay_equal_both_ways() {
    let world = World::new(&["alice", "bob"]);
    let (a, b) = (world.path("alice-trip"), world.path("bob-trip"));
    std::fs::create_dir_all(a.join("notes")).unwrap();
    std::fs::write(a.join("report.pdf"), vec![42u8; 300_000]).unwrap();
    std::fs::write(a.join("notes/todo.txt"), b"pack the tent\n").unwrap();
    let (mut alice, mut bob) = share(&world, &a, &b, &[]);

    // What alice had is now bob's too, subfolders included.
    until("the first sync", || {
        read(&b.join("report.pdf")) == Some(vec![42u8; 300_000])
            && read(&b.join("notes/todo.txt")).as_deref() == Some(&b"pack the tent\n"[..])
    });
    bob.wait_line("alice added report.pdf", Duration::from_secs(10));

    // Bob adds a file; alice gets it.
    std::fs::write(b.join("photo.jpg"), vec![7u8; 200_000]).unwrap();
    until("bob's addition", || {
        read(&a.join("photo.jpg")) == Some(vec![7u8; 200_000])
    });
    alice.wait_line("bob added photo.jpg", Duration::from_secs(10));

    // Alice changes a file, deletes one; bob renames one into a new subfolder.
    std::fs::write(a.join("notes/todo.txt"), b"pack the tent\nbuy stove fuel\n").unwrap();
    std::fs::remove_file(a.join("report.pdf")).unwrap();
    until("alice's change and deletion", || {
        read(&b.join("notes/todo.txt")).as_deref() == Some(&b"pack the tent\nbuy stove fuel\n"[..])
            && !b.join("report.pdf").exists()
    });
    std::fs::create_dir_all(b.join("pics")).unwrap();
    std::fs::rename(b.join("photo.jpg"), b.join("pics/photo.jpg")).unwrap();
    until("bob's rename", || {
        read(&a.join("pics/photo.jpg")) == Some(vec![7u8; 200_000]) && !a.join("photo.jpg").exists()
    });
    bob.wait_line("alice changed notes/todo.txt", Duration::from_secs(10));
    bob.wait_line("alice deleted report.pdf", Duration::from_secs(10));
}

#[test]
fn a_contact_who_was_away_catches_up_and_concurrent_edits_keep_both_versions() {
    let world = World::new(&["alice", "bob"]);
    let (a, b) = (world.path("alice-plans"), world.path("bob-plans"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(a.join("plan.txt"), b"day 1: hike\n").unwrap();
    let (alice, bob) = share(&world, &a, &b, &[]);
    until("the first sync", || {
        read(&b.join("plan.txt")).as_deref() == Some(&b"day 1: hike\n"[..])
    });
    // Both leave (alice stops first; bob's side ends with the link).
    drop(alice);
    let _ = bob.finish(Duration::from_secs(30));

    // While apart: alice adds a file; both edit plan.txt.
    std::fs::write(a.join("map.gpx"), vec![3u8; 50_000]).unwrap();
    std::fs::write(a.join("plan.txt"), b"day 1: hike to the lake\n").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(b.join("plan.txt"), b"day 1: canoe\n").unwrap();

    let (_alice, mut bob) = share(&world, &a, &b, &[]);
    until("the catch-up", || {
        read(&b.join("map.gpx")) == Some(vec![3u8; 50_000])
    });
    // Neither edit is lost: one keeps the name, the other is a conflict copy, on both sides.
    let conflicts = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("plan.sync-conflict-") && n.ends_with(".txt"))
            .collect()
    };
    until("the conflict copy on both sides", || {
        conflicts(&a).len() == 1 && conflicts(&b).len() == 1
    });
    let copy = conflicts(&a).remove(0);
    let mut versions = vec![
        read(&a.join("plan.txt")).unwrap(),
        read(&a.join(&copy)).unwrap(),
    ];
    versions.sort();
    assert_eq!(
        versions,
        [
            b"day 1: canoe\n".to_vec(),
            b"day 1: hike to the lake\n".to_vec()
        ]
    );
    until("bob's copy matches", || {
        read(&b.join(&copy)) == read(&a.join(&copy))
            && read(&b.join("plan.txt")) == read(&a.join("plan.txt"))
    });
    bob.wait_line("conflict on plan.txt", Duration::from_secs(10));
}

#[test]
fn a_flagged_file_never_reaches_the_other_folder() {
    let world = World::new(&["alice", "bob"]);
    let (a, b) = (world.path("alice-docs"), world.path("bob-docs"));
    std::fs::create_dir_all(&a).unwrap();
    let bad = vec![0x5au8; 40_000];
    std::fs::write(a.join("invoice.exe"), &bad).unwrap();
    std::fs::write(a.join("readme.txt"), b"hello\n").unwrap();
    let db = world.path("sigs");
    std::fs::create_dir_all(&db).unwrap();
    let sha = {
        use sha2::{Digest, Sha256};
        Sha256::digest(&bad)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    std::fs::write(
        db.join("duet-test.hsb"),
        format!("{sha}:40000:Duet.Test.Share\n"),
    )
    .unwrap();
    let scanner = format!("clamscan --no-summary -d {} {{file}}", db.display());
    let (_alice, mut bob) = share(&world, &a, &b, &["--scanner", &scanner]);
    until("the clean file", || {
        read(&b.join("readme.txt")).as_deref() == Some(&b"hello\n"[..])
    });
    bob.wait_line("Duet.Test.Share", Duration::from_secs(30));
    assert!(!b.join("invoice.exe").exists());
}
