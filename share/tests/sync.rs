//! Behaviour of the sync engine: two engines linked in memory, in-memory disks, simulated time.

mod sync_common;

use duet_share::sync::{
    diff, index_messages, BlockHash, FileEntry, Index, SyncMessage, VersionVector, BLOCK_SIZE,
    MAX_MESSAGE,
};
use std::time::Duration;

use duet_share::Error;
use sync_common::{bytes, mem_pair, t, MemDisk, Pair, Side};

fn put(side: &mut Side<MemDisk>, path: &str, data: Vec<u8>, mtime: i64) {
    side.disk.files.insert(path.to_string(), (data, mtime));
}

fn rescan_a(pair: &mut Pair<MemDisk>) {
    let now = pair.now;
    pair.a.rescan(now);
    pair.settle();
}

fn rescan_both(pair: &mut Pair<MemDisk>) {
    let now = pair.now;
    pair.a.rescan(now);
    pair.b.rescan(now);
    pair.settle();
}

/// Both folders hold the same files and neither index lacks anything of the other's.
fn assert_equal(pair: &Pair<MemDisk>) {
    assert_eq!(pair.a.disk.files, pair.b.disk.files);
    assert!(pair.a.disk.temps.is_empty() && pair.b.disk.temps.is_empty());
    let (a, b) = (pair.a.engine.index(), pair.b.engine.index());
    assert_eq!(diff(a, b), vec![]);
    assert_eq!(diff(b, a), vec![]);
    for e in a.live() {
        assert_eq!(
            b.get(&e.path).map(|x| &x.version),
            Some(&e.version),
            "{}",
            e.path
        );
    }
    assert!(pair.a.engine.is_idle() && pair.b.engine.is_idle());
}

#[test]
fn added_file_arrives_block_by_block() {
    let mut pair = mem_pair();
    let data = bytes(1, 300_000);
    put(&mut pair.a, "report.pdf", data.clone(), t(0));
    rescan_a(&mut pair);
    assert_eq!(pair.b.disk.files["report.pdf"], (data, t(0)));
    assert_eq!(pair.b.engine.stats().blocks_received, 3);
    assert_eq!(pair.b.take_events(), ["alice added report.pdf"]);
    assert_equal(&pair);
}

#[test]
fn changed_file_moves_only_changed_blocks() {
    let mut pair = mem_pair();
    let mut data = bytes(2, 10 * BLOCK_SIZE + 100);
    put(&mut pair.a, "notes/todo.txt", data.clone(), t(0));
    rescan_a(&mut pair);
    pair.b.take_events();
    let before = pair.b.engine.stats();
    let link = pair.link;
    data[4 * BLOCK_SIZE + 7] ^= 1;
    put(&mut pair.a, "notes/todo.txt", data.clone(), t(60));
    rescan_a(&mut pair);
    let after = pair.b.engine.stats();
    // One block and an index entry on the wire, for a file of 1.3 MB.
    let wire = pair.link.bytes - link.bytes;
    assert!(
        wire > BLOCK_SIZE as u64 && wire < BLOCK_SIZE as u64 + 2048,
        "{wire} bytes"
    );
    assert_eq!(
        pair.link.messages - link.messages,
        11,
        "index, request, 9 data"
    );
    assert_eq!(after.blocks_received - before.blocks_received, 1);
    assert_eq!(after.blocks_copied - before.blocks_copied, 10);
    assert_eq!(pair.b.disk.files["notes/todo.txt"].0, data);
    assert_eq!(pair.b.take_events(), ["alice changed notes/todo.txt"]);
    assert_equal(&pair);
}

#[test]
fn deletion_propagates_as_tombstone() {
    let mut pair = mem_pair();
    put(&mut pair.a, "old.txt", bytes(3, 1000), t(0));
    put(&mut pair.a, "keep.txt", bytes(4, 1000), t(0));
    rescan_a(&mut pair);
    pair.b.take_events();
    pair.a.disk.files.remove("old.txt");
    rescan_a(&mut pair);
    assert!(!pair.b.disk.files.contains_key("old.txt"));
    assert!(pair.b.disk.files.contains_key("keep.txt"));
    assert_eq!(pair.b.take_events(), ["alice deleted old.txt"]);
    let tomb = pair.b.engine.index().get("old.txt").expect("tombstone");
    assert!(tomb.deleted && tomb.modified_by == "alice");
    assert_equal(&pair);
}

#[test]
fn rename_transfers_no_block() {
    let mut pair = mem_pair();
    put(&mut pair.a, "a.txt", bytes(5, 3 * BLOCK_SIZE), t(0));
    rescan_a(&mut pair);
    pair.b.take_events();
    let requested = pair.b.engine.stats().blocks_requested;
    let file = pair.a.disk.files.remove("a.txt").expect("a.txt");
    pair.a.disk.files.insert("b.txt".into(), file);
    rescan_a(&mut pair);
    assert_eq!(pair.b.engine.stats().blocks_requested, requested);
    assert_eq!(pair.b.engine.stats().blocks_copied, 3);
    assert_eq!(pair.b.take_events(), ["alice renamed a.txt to b.txt"]);
    assert_equal(&pair);
}

#[test]
fn nested_folders_sync_both_ways_and_moves_are_free() {
    let mut pair = mem_pair();
    put(&mut pair.a, "docs/2026/q4/plan.md", bytes(6, 5000), t(0));
    put(&mut pair.b, "photos/trip/1.jpg", bytes(7, 200_000), t(0));
    rescan_both(&mut pair);
    assert_eq!(pair.a.take_events(), ["bob added photos/trip/1.jpg"]);
    assert_eq!(pair.b.take_events(), ["alice added docs/2026/q4/plan.md"]);
    assert_equal(&pair);
    let requested = pair.b.engine.stats().blocks_requested;
    let file = pair
        .a
        .disk
        .files
        .remove("docs/2026/q4/plan.md")
        .expect("plan");
    pair.a.disk.files.insert("archive/plan.md".into(), file);
    rescan_a(&mut pair);
    assert_eq!(pair.b.engine.stats().blocks_requested, requested);
    assert_eq!(
        pair.b.take_events(),
        ["alice renamed docs/2026/q4/plan.md to archive/plan.md"]
    );
    assert_equal(&pair);
}

#[test]
fn offline_changes_on_both_sides_catch_up_on_reconnect() {
    let mut pair = mem_pair();
    for (i, name) in ["x.txt", "y.txt", "z.txt"].into_iter().enumerate() {
        put(&mut pair.a, name, bytes(10 + i as u64, 2000), t(0));
    }
    rescan_a(&mut pair);
    pair.b.take_events();
    pair.disconnect();
    put(&mut pair.a, "new.txt", bytes(20, 3000), t(10));
    put(&mut pair.a, "y.txt", bytes(21, 3000), t(10));
    pair.a.disk.files.remove("z.txt");
    put(&mut pair.b, "w.txt", bytes(22, 3000), t(10));
    put(&mut pair.b, "x.txt", bytes(23, 3000), t(10));
    rescan_both(&mut pair);
    assert!(!pair.b.disk.files.contains_key("new.txt"));
    pair.connect();
    pair.settle();
    let mut b_events = pair.b.take_events();
    b_events.sort();
    assert_eq!(
        b_events,
        [
            "alice added new.txt",
            "alice changed y.txt",
            "alice deleted z.txt"
        ]
    );
    let mut a_events = pair.a.take_events();
    a_events.sort();
    assert_eq!(a_events, ["bob added w.txt", "bob changed x.txt"]);
    assert_equal(&pair);
}

#[test]
fn concurrent_edits_keep_both_versions() {
    let mut pair = mem_pair();
    put(&mut pair.a, "plan.txt", b"first".to_vec(), t(0));
    rescan_a(&mut pair);
    pair.b.take_events();
    pair.disconnect();
    // 10:15:00 for bob, 10:20:00 for alice: bob's version is older and loses the name.
    put(&mut pair.b, "plan.txt", b"bob's plan".to_vec(), t(36_900));
    put(&mut pair.a, "plan.txt", b"alice's plan".to_vec(), t(37_200));
    rescan_both(&mut pair);
    pair.connect();
    pair.settle();
    let copy = "plan.sync-conflict-20261126-101500-bob.txt";
    let said = format!("conflict on plan.txt: bob's version kept as {copy}");
    for side in [&pair.a, &pair.b] {
        assert_eq!(side.disk.files["plan.txt"].0, b"alice's plan");
        assert_eq!(side.disk.files[copy].0, b"bob's plan");
        assert!(side.events.contains(&said), "{:?}", side.events);
    }
    assert!(pair.a.events.contains(&format!("bob added {copy}")));
    assert_equal(&pair);
}

#[test]
fn edit_wins_over_concurrent_delete() {
    let mut pair = mem_pair();
    put(&mut pair.a, "f.txt", b"one".to_vec(), t(0));
    rescan_a(&mut pair);
    pair.disconnect();
    pair.a.disk.files.remove("f.txt");
    put(&mut pair.b, "f.txt", b"two".to_vec(), t(5));
    rescan_both(&mut pair);
    pair.connect();
    pair.settle();
    assert_eq!(pair.a.disk.files["f.txt"].0, b"two");
    assert_equal(&pair);
}

#[test]
fn local_change_during_download_is_not_overwritten() {
    let mut pair = mem_pair();
    put(&mut pair.a, "f.txt", b"base".to_vec(), t(0));
    rescan_a(&mut pair);
    // Alice edits; bob's first request is lost so the download waits.
    pair.drop_requests = 1;
    put(&mut pair.a, "f.txt", b"alice edit".to_vec(), t(100));
    let now = pair.now;
    pair.a.rescan(now);
    pair.progress();
    assert_eq!(pair.b.disk.files["f.txt"].0, b"base");
    // Meanwhile bob edits the same file, later than alice.
    put(&mut pair.b, "f.txt", b"bob edit".to_vec(), t(200));
    pair.settle();
    assert!(pair.b.engine.stats().blocks_requested >= 2);
    let copy = "f.sync-conflict-20261126-000140-alice.txt";
    for side in [&pair.a, &pair.b] {
        assert_eq!(side.disk.files["f.txt"].0, b"bob edit");
        assert_eq!(side.disk.files[copy].0, b"alice edit");
    }
    assert_equal(&pair);
}

#[test]
fn refused_content_is_not_fetched_again_until_it_changes() {
    let mut pair = mem_pair();
    let bad = bytes(40, 300_000);
    pair.b.disk.flagged.push(bad.clone());
    put(&mut pair.a, "setup.exe", bad, t(0));
    put(&mut pair.a, "notes.txt", b"clean".to_vec(), t(0));
    rescan_a(&mut pair);
    assert_eq!(pair.b.disk.files["notes.txt"].0, b"clean");
    assert!(!pair.b.disk.files.contains_key("setup.exe"));
    assert!(pair.b.disk.temps.is_empty());
    assert_eq!(
        pair.b.take_events(),
        ["alice added notes.txt", "could not sync setup.exe: flagged"]
    );
    let stats = pair.b.engine.stats();
    assert_eq!(stats.refused, 1);
    // No retry is scheduled, and time passing fetches nothing.
    assert_eq!(pair.b.engine.poll_timeout(), None);
    pair.advance(Duration::from_secs(600));
    let now = pair.now;
    pair.b.engine.handle_timeout(now);
    pair.a.rescan(now);
    pair.b.rescan(now);
    pair.settle();
    assert_eq!(pair.b.engine.stats(), stats);
    assert!(pair.b.take_events().is_empty());
    // A new version from alice is fetched as usual.
    let fixed = bytes(41, 300_000);
    put(&mut pair.a, "setup.exe", fixed.clone(), t(10));
    rescan_a(&mut pair);
    assert_eq!(pair.b.disk.files["setup.exe"].0, fixed);
    assert_eq!(pair.b.take_events(), ["alice added setup.exe"]);
}

#[test]
fn corrupt_block_is_requested_again() {
    let mut pair = mem_pair();
    pair.corrupt_data = 1;
    let data = bytes(30, 100_000);
    put(&mut pair.a, "photo.jpg", data.clone(), t(0));
    rescan_a(&mut pair);
    let stats = pair.b.engine.stats();
    assert_eq!(stats.bad_blocks, 1);
    assert_eq!(stats.blocks_received, 1);
    assert_eq!(stats.blocks_requested, 2);
    assert_eq!(pair.b.disk.files["photo.jpg"].0, data);
    assert_equal(&pair);
}

#[test]
fn lost_request_is_sent_again_after_timeout() {
    let mut pair = mem_pair();
    pair.drop_requests = 1;
    let start = pair.now;
    put(&mut pair.a, "slow.bin", bytes(31, 1000), t(0));
    rescan_a(&mut pair);
    assert_eq!(pair.b.engine.stats().blocks_requested, 2);
    assert!(pair.now - start >= std::time::Duration::from_secs(10));
    assert_equal(&pair);
}

#[test]
fn garbage_messages_are_counted_not_fatal() {
    let mut pair = mem_pair();
    let now = pair.now;
    let mut errors = 0;
    let mut fed = |engine: &mut duet_share::sync::SyncEngine, msg: &[u8]| {
        let result = engine.handle_bytes(now, msg);
        assert!(
            result.is_err(),
            "{:?} accepted",
            String::from_utf8_lossy(msg)
        );
        errors += 1;
        result
    };
    let e = &mut pair.b.engine;
    assert!(matches!(
        fed(e, b"\xff\x00garbage"),
        Err(Error::Protocol(_))
    ));
    assert!(matches!(fed(e, b""), Err(Error::Protocol(_))));
    assert!(matches!(fed(e, b"\xD0\x00\x01"), Err(Error::Protocol(_))));
    assert!(matches!(
        fed(e, b"{\"index\":[{\"path\":1}]}"),
        Err(Error::Protocol(_))
    ));
    let escape = br#"{"index":[{"path":"../../etc/passwd","size":0,"mtime":0,"blocks":[],"version":{"alice":1},"deleted":false,"modified_by":"alice"}]}"#;
    assert!(matches!(fed(e, escape), Err(Error::UnsafeName { .. })));
    let lying = br#"{"index":[{"path":"a","size":1,"mtime":0,"blocks":[],"version":{"alice":1},"deleted":true,"modified_by":"alice"},{"path":"b","size":5,"mtime":0,"blocks":[],"version":{"alice":1},"deleted":false,"modified_by":"alice"},{"path":"c","size":0,"mtime":0,"blocks":[],"version":{},"deleted":false,"modified_by":"alice"}]}"#;
    assert!(matches!(fed(e, lying), Err(Error::Protocol(_))));
    let huge = br#"{"index":[{"path":"h","size":18446744073709551615,"mtime":0,"blocks":[],"version":{"alice":1},"deleted":false,"modified_by":"alice"}]}"#;
    assert!(matches!(fed(e, huge), Err(Error::TooLarge { .. })));
    let ansi = br#"{"index":[{"path":"a","size":0,"mtime":0,"blocks":[],"version":{"alice":1},"deleted":false,"modified_by":"\u001b[31mroot"}]}"#;
    assert!(matches!(fed(e, ansi), Err(Error::Protocol(_))));
    let more = br#"{"more_blocks":{"path":"x","blocks":[]}}"#;
    assert!(matches!(fed(e, more), Err(Error::Protocol(_))));
    for seed in 0..500u64 {
        let mut junk = bytes(seed, (seed as usize * 7) % 300);
        if let Some(first) = junk.first_mut() {
            *first = [b'{', b'"', 0xD0, 0][seed as usize % 4];
        }
        if pair.b.engine.handle_bytes(now, &junk).is_err() {
            errors += 1;
        }
    }
    assert_eq!(pair.b.engine.stats().protocol_errors, errors);
    // Random bytes after a data tag with a full header are a well-formed answer to an
    // unknown request, which is ignored; everything else is an error.
    assert_eq!(errors, 391);
    assert!(pair.b.engine.poll_action().is_none());
    // The engine goes on syncing.
    put(&mut pair.a, "after.txt", bytes(32, 500), t(0));
    rescan_a(&mut pair);
    assert!(pair.b.disk.files.contains_key("after.txt"));
    assert_equal(&pair);
}

#[test]
fn large_index_splits_into_small_messages() {
    let mut pair = mem_pair();
    for i in 0..1000u64 {
        let path = format!(
            "folder-{:02}/a fairly long file name number {i:04}.txt",
            i % 37
        );
        put(&mut pair.a, &path, bytes(100 + i, 40), t(i as i64));
    }
    let sent = pair.link;
    rescan_a(&mut pair);
    let index_messages = pair.link.index_messages - sent.index_messages;
    assert!(
        (10..=20).contains(&index_messages),
        "{index_messages} index messages"
    );
    assert!(pair.link.largest <= MAX_MESSAGE);
    assert_eq!(pair.b.engine.index().live().count(), 1000);
    assert_equal(&pair);

    // A reconnect sends the whole index again, still in small messages, and moves no block.
    let received = pair.b.engine.stats().blocks_received;
    pair.disconnect();
    let before = pair.link;
    pair.connect();
    pair.settle();
    let resent = pair.link.index_messages - before.index_messages;
    assert!(resent >= 2 * 10, "{resent}");
    assert_eq!(pair.b.engine.stats().blocks_received, received);
}

#[test]
fn huge_file_entry_splits_its_block_list() {
    let blocks: Vec<BlockHash> = (0..3000u32)
        .map(|i| BlockHash::of(&i.to_be_bytes()))
        .collect();
    let mut version = VersionVector::new();
    version.bump("alice");
    let entry = FileEntry {
        path: "video/huge.mkv".into(),
        size: 3000 * BLOCK_SIZE as u64 - 10,
        mtime: t(0),
        blocks: blocks.clone(),
        version,
        deleted: false,
        modified_by: "alice".into(),
    };
    let msgs = index_messages(vec![entry.clone()]);
    assert!(msgs.len() >= 12, "{}", msgs.len());
    assert!(matches!(msgs[1], SyncMessage::MoreBlocks { .. }));
    let mut pair = mem_pair();
    let now = pair.now;
    for m in &msgs {
        let bytes = m.encode();
        assert!(bytes.len() <= MAX_MESSAGE, "{}", bytes.len());
        pair.b.engine.handle_bytes(now, &bytes).expect("valid");
    }
    assert_eq!(
        pair.b.engine.remote_index().get("video/huge.mkv"),
        Some(&entry)
    );
    // The download starts: its first requests go out.
    assert!(pair.b.engine.poll_action().is_some());
    assert!(matches!(
        pair.b.engine.poll_transmit(),
        Some(SyncMessage::Request { .. })
    ));
}

#[test]
fn index_diff_of_a_thousand_files() {
    let mut local = Index::new();
    for i in 0..1000u32 {
        let mut version = VersionVector::new();
        version.bump("alice");
        local.insert(FileEntry {
            path: format!("f{i}"),
            size: 1,
            mtime: 0,
            blocks: vec![BlockHash::of(&i.to_be_bytes())],
            version,
            deleted: false,
            modified_by: "alice".into(),
        });
    }
    let mut remote = local.clone();
    assert!(diff(&local, &remote).is_empty());
    for i in (0..1000).step_by(100) {
        let mut e = remote.get(&format!("f{i}")).cloned().expect("entry");
        e.version.bump("bob");
        remote.insert(e);
    }
    let mut e = local.get("f5").cloned().expect("entry");
    e.version.bump("alice");
    e.blocks = vec![BlockHash::of(b"x")];
    local.insert(e);
    let mut e = remote.get("f5").cloned().expect("entry");
    e.version.bump("bob");
    remote.insert(e);
    let d = diff(&local, &remote);
    assert_eq!(d.len(), 11);
    assert!(d.contains(&("f5".into(), duet_share::sync::Need::Conflict)));
}

#[test]
fn touched_file_is_still_deleted() {
    let mut pair = mem_pair();
    put(&mut pair.a, "old.txt", bytes(40, 1000), t(0));
    rescan_a(&mut pair);
    pair.b.take_events();
    // Bob's copy gets a new time (no new content) that his engine has not scanned yet.
    if let Some(file) = pair.b.disk.files.get_mut("old.txt") {
        file.1 = t(50);
    }
    pair.a.disk.files.remove("old.txt");
    rescan_a(&mut pair);
    assert!(!pair.b.disk.files.contains_key("old.txt"));
    assert_eq!(pair.b.take_events(), ["alice deleted old.txt"]);
    assert_equal(&pair);
}

proptest::proptest! {
    #[test]
    fn decoding_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        let _ = SyncMessage::decode(&bytes);
        let mut json = b"{\"index\":[".to_vec();
        json.extend_from_slice(&bytes);
        let _ = SyncMessage::decode(&json);
    }

    #[test]
    fn data_messages_round_trip(
        id in proptest::num::u64::ANY,
        offset in 0u32..200_000,
        data in proptest::collection::vec(proptest::num::u8::ANY, 0..2000),
    ) {
        let msg = SyncMessage::Data { id, offset, total: offset + data.len() as u32, data };
        proptest::prop_assert_eq!(SyncMessage::decode(&msg.encode()).ok(), Some(msg));
    }

    #[test]
    fn index_messages_round_trip_within_the_size_limit(
        names in proptest::collection::vec("[a-z]{1,8}(/[a-z ]{1,30}){0,3}", 1..300),
        blocks in 0u64..600,
    ) {
        let entries: Vec<FileEntry> = names
            .iter()
            .enumerate()
            .map(|(i, path)| {
                let mut version = VersionVector::new();
                version.bump("alice");
                let size = if i == 0 { blocks * BLOCK_SIZE as u64 } else { i as u64 };
                let count = duet_share::sync::block_count(size) as u32;
                FileEntry {
                    path: format!("{path}{i}"),
                    size,
                    mtime: i as i64,
                    blocks: (0..count).map(|b| BlockHash::of(&b.to_be_bytes())).collect(),
                    version,
                    deleted: false,
                    modified_by: "alice".into(),
                }
            })
            .collect();
        let mut back: Vec<FileEntry> = Vec::new();
        for msg in index_messages(entries.clone()) {
            let bytes = msg.encode();
            proptest::prop_assert!(bytes.len() <= MAX_MESSAGE);
            match SyncMessage::decode(&bytes) {
                Ok(SyncMessage::Index(list)) => back.extend(list),
                Ok(SyncMessage::MoreBlocks { path, blocks }) => {
                    let last = back.last_mut().filter(|e| e.path == path);
                    proptest::prop_assert!(last.is_some());
                    if let Some(last) = last {
                        last.blocks.extend(blocks);
                    }
                }
                other => proptest::prop_assert!(false, "{other:?}"),
            }
        }
        proptest::prop_assert_eq!(back, entries);
    }
}
