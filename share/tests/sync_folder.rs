//! End-to-end behaviour of sharing folders on real temporary folders: the file-system shell,
//! two engines linked in memory, the saved index, and the notify watcher.

mod sync_common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

use duet_share::sync::{Debouncer, Folder, FolderWatcher, Rescan, STATE_DIR};
use sync_common::{bytes, t, Pair, Side};
use tempfile::TempDir;

/// Every file under `root` (but duet's state) with its content.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(dir: &Path, rel: &str, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).expect("read_dir").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if rel.is_empty() && name == STATE_DIR {
                continue;
            }
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if entry.file_type().expect("type").is_dir() {
                walk(&entry.path(), &child, out);
            } else {
                out.insert(child, fs::read(entry.path()).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, "", &mut out);
    out
}

fn write(root: &Path, rel: &str, data: &[u8], mtime: i64) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(&path, data).expect("write");
    let time = UNIX_EPOCH + Duration::from_nanos(mtime as u64);
    fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(time))
        .expect("mtime");
}

struct Folders {
    dir_a: TempDir,
    dir_b: TempDir,
    pair: Pair<Folder>,
}

fn folders() -> Folders {
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let a = Folder::open(dir_a.path()).expect("open a");
    let b = Folder::open(dir_b.path()).expect("open b");
    let index_a = a.load_index().expect("index");
    let index_b = b.load_index().expect("index");
    let mut pair = Pair::new(
        Side::new("alice", "bob", a, index_a),
        Side::new("bob", "alice", b, index_b),
    );
    pair.connect();
    pair.settle();
    Folders { dir_a, dir_b, pair }
}

impl Folders {
    fn rescan(&mut self) {
        let now = self.pair.now;
        self.pair.a.rescan(now);
        self.pair.b.rescan(now);
        self.pair.settle();
    }

    fn assert_equal(&self) {
        assert_eq!(tree(self.dir_a.path()), tree(self.dir_b.path()));
        assert!(self.pair.a.engine.is_idle() && self.pair.b.engine.is_idle());
        let tmp = self.dir_b.path().join(STATE_DIR).join("tmp");
        let leftovers = fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
        assert_eq!(leftovers, 0, "temporary files left");
    }
}

#[test]
fn folders_sync_end_to_end() {
    let mut f = folders();
    let (a, b) = (f.dir_a.path().to_path_buf(), f.dir_b.path().to_path_buf());
    let big = bytes(1, 5 * 128 * 1024 + 3);
    write(&a, "docs/notes/todo.txt", &big, t(0));
    write(&a, "empty.txt", b"", t(0));
    write(&b, "music/song.ogg", &bytes(2, 1000), t(0));
    f.rescan();
    f.assert_equal();
    assert_eq!(
        fs::metadata(b.join("docs/notes/todo.txt"))
            .expect("meta")
            .modified()
            .expect("mtime"),
        UNIX_EPOCH + Duration::from_nanos(t(0) as u64)
    );
    assert_eq!(f.pair.b.engine.stats().blocks_received, 6);

    // Change one block: one block travels.
    let mut changed = big.clone();
    changed[3 * 128 * 1024] ^= 0xAA;
    write(&a, "docs/notes/todo.txt", &changed, t(60));
    f.rescan();
    f.assert_equal();
    assert_eq!(f.pair.b.engine.stats().blocks_received, 7);

    // Move to another folder: no block travels, the emptied folders go.
    fs::create_dir_all(a.join("archive")).expect("mkdir");
    fs::rename(a.join("docs/notes/todo.txt"), a.join("archive/todo.txt")).expect("mv");
    fs::remove_dir_all(a.join("docs")).expect("rmdir");
    f.rescan();
    f.assert_equal();
    assert_eq!(f.pair.b.engine.stats().blocks_requested, 7);
    assert!(!b.join("docs").exists());
    assert!(f
        .pair
        .b
        .events
        .contains(&"alice renamed docs/notes/todo.txt to archive/todo.txt".to_string()));

    // Delete from bob's side.
    fs::remove_file(b.join("music/song.ogg")).expect("rm");
    f.rescan();
    f.assert_equal();
    assert!(!a.join("music").exists());
    assert!(f
        .pair
        .a
        .events
        .contains(&"bob deleted music/song.ogg".to_string()));

    // Concurrent edits while apart keep both versions.
    f.pair.disconnect();
    write(&a, "empty.txt", b"alice wrote this", t(37_200));
    write(&b, "empty.txt", b"bob wrote this", t(36_900));
    f.rescan();
    f.pair.connect();
    f.pair.settle();
    f.assert_equal();
    let copy = "empty.sync-conflict-20261126-101500-bob.txt";
    assert_eq!(fs::read(b.join(copy)).expect("copy"), b"bob wrote this");
    assert_eq!(
        fs::read(b.join("empty.txt")).expect("file"),
        b"alice wrote this"
    );
}

#[test]
fn restart_resumes_from_saved_index() {
    let mut f = folders();
    let a = f.dir_a.path().to_path_buf();
    for i in 0..20u64 {
        write(
            &a,
            &format!("d{}/f{i}.bin", i % 3),
            &bytes(i, 70_000),
            t(i as i64),
        );
    }
    f.rescan();
    f.assert_equal();
    let received = f.pair.b.engine.stats().blocks_received;
    assert_eq!(received, 20);
    f.pair
        .a
        .disk
        .save_index(f.pair.a.engine.index())
        .expect("save");
    f.pair
        .b
        .disk
        .save_index(f.pair.b.engine.index())
        .expect("save");
    let saved_b = f.pair.b.engine.index().clone();

    // Restart both sides from their saved index; alice changed one file while down.
    write(&a, "d0/f0.bin", &bytes(99, 70_000), t(500));
    let folder_a = Folder::open(f.dir_a.path()).expect("open");
    let folder_b = Folder::open(f.dir_b.path()).expect("open");
    let index_a = folder_a.load_index().expect("load");
    let index_b = folder_b.load_index().expect("load");
    assert_eq!(index_b, saved_b);
    let mut pair = Pair::new(
        Side::new("alice", "bob", folder_a, index_a),
        Side::new("bob", "alice", folder_b, index_b),
    );
    let now = pair.now;
    pair.a.rescan(now);
    pair.b.rescan(now);
    // Bob's scan reuses the saved hashes and finds nothing new.
    assert_eq!(pair.b.engine.index(), &saved_b);
    pair.connect();
    pair.settle();
    assert_eq!(pair.b.engine.stats().blocks_received, 1);
    assert_eq!(pair.b.events, ["alice changed d0/f0.bin"]);
    f.pair = pair;
    f.assert_equal();
}

/// Waits (a bounded number of times) until the watcher reported `want`, feeding every path to
/// the debouncer at `at`.
fn wait_for(watcher: &FolderWatcher, debounce: &mut Debouncer, at: Instant, want: &[&str]) {
    let mut seen = Vec::new();
    for _ in 0..100 {
        let paths = watcher.recv(Duration::from_millis(100));
        seen.extend(paths.iter().cloned());
        for p in paths {
            debounce.push(at, p);
        }
        if want.iter().all(|w| seen.iter().any(|p| p == w)) {
            break;
        }
    }
    assert!(seen.iter().all(|p| !p.starts_with(STATE_DIR)), "{seen:?}");
}

/// Scans what the debouncer says is due at `at` on alice's side, and syncs.
fn rescan_due(f: &mut Folders, debounce: &mut Debouncer, at: Instant) {
    let Some(Rescan::Paths(paths)) = debounce.poll(at) else {
        panic!("nothing to rescan");
    };
    let now = f.pair.now;
    let scan = f
        .pair
        .a
        .disk
        .scan_paths(f.pair.a.engine.index(), &paths)
        .expect("scan");
    f.pair.a.engine.handle_scan(now, scan);
    f.pair.settle();
}

/// Files under duet's state folder or a quarantine folder (at any depth), and files whose
/// names carry bidi or zero-width characters, are never indexed nor offered: not by a full
/// scan, and not when the watcher reports their paths.
#[test]
fn state_and_quarantine_files_are_never_offered() {
    let mut f = folders();
    let (a, b) = (f.dir_a.path().to_path_buf(), f.dir_b.path().to_path_buf());
    write(&a, "ok.txt", b"shared", t(0));
    write(&a, ".duet-quarantine/0123.part", b"unchecked", t(0));
    write(&a, "inbox/.duet-quarantine/4567.held", b"flagged", t(0));
    write(&a, ".duet/notes.txt", b"duet's own", t(0));
    write(&a, "inbox/invoice\u{202e}fdp.exe", b"bidi", t(0));
    write(&a, "inbox/zero\u{200b}width.txt", b"zero-width", t(0));
    f.rescan();
    let offered = |f: &Folders| -> Vec<String> {
        f.pair
            .a
            .engine
            .index()
            .live()
            .map(|e| e.path.clone())
            .collect()
    };
    assert_eq!(offered(&f), ["ok.txt"]);
    assert_eq!(tree(&b).into_keys().collect::<Vec<_>>(), ["ok.txt"]);
    assert!(!b.join(".duet-quarantine").exists() && !b.join("inbox").exists());

    // What a watcher reports under those names scans as nothing, without failing the batch.
    let reported: Vec<String> = [
        ".duet-quarantine/0123.part",
        "inbox/.duet-quarantine",
        "inbox/.duet-quarantine/4567.held",
        ".duet/notes.txt",
        "inbox/zero\u{200b}width.txt",
        "inbox",
    ]
    .map(String::from)
    .to_vec();
    write(&a, "inbox/.duet-quarantine/89ab.part", b"more", t(60));
    let scan = Folder::scan_paths(&f.pair.a.disk, f.pair.a.engine.index(), &reported)
        .expect("a watcher's batch scans");
    assert_eq!(scan.roots, ["inbox"]);
    assert!(scan.files.is_empty(), "{:?}", scan.files);
    let now = f.pair.now;
    f.pair.a.engine.handle_scan(now, scan);
    f.pair.settle();
    assert_eq!(offered(&f), ["ok.txt"]);
    assert_eq!(tree(&b).into_keys().collect::<Vec<_>>(), ["ok.txt"]);
}

#[test]
fn watcher_notices_changes_and_renames() {
    let mut f = folders();
    let a = f.dir_a.path().to_path_buf();
    fs::create_dir(a.join("inbox")).expect("mkdir");
    let watcher = FolderWatcher::new(&a).expect("watch");
    let start = Instant::now();
    let delay = Duration::from_millis(50);
    let mut debounce = Debouncer::new(start, delay, Duration::from_secs(3600));
    assert_eq!(debounce.poll(start), Some(Rescan::Full));

    write(&a, "inbox/new.txt", &bytes(3, 300_000), t(0));
    fs::write(a.join(STATE_DIR).join("ignored"), b"x").expect("write");
    wait_for(&watcher, &mut debounce, start, &["inbox/new.txt"]);
    assert_eq!(debounce.poll(start + delay / 2), None);
    rescan_due(&mut f, &mut debounce, start + delay);
    assert_eq!(f.pair.b.events, ["alice added inbox/new.txt"]);
    f.assert_equal();

    // A rename seen by the watcher is one change: no block travels.
    let requested = f.pair.b.engine.stats().blocks_requested;
    fs::rename(a.join("inbox/new.txt"), a.join("kept.txt")).expect("mv");
    let later = start + Duration::from_secs(1);
    wait_for(
        &watcher,
        &mut debounce,
        later,
        &["inbox/new.txt", "kept.txt"],
    );
    rescan_due(&mut f, &mut debounce, later + delay);
    assert_eq!(f.pair.b.engine.stats().blocks_requested, requested);
    assert_eq!(
        f.pair.b.events[1..],
        ["alice renamed inbox/new.txt to kept.txt"]
    );
    f.assert_equal();
}

#[cfg(unix)]
#[test]
fn symlinks_are_neither_followed_nor_written_through() {
    use duet_share::sync::{Action, Applied, Expect, Index, Outcome};
    let root = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    fs::write(outside.path().join("secret.txt"), b"secret").expect("write");
    std::os::unix::fs::symlink(outside.path(), root.path().join("link")).expect("symlink");
    let folder = Folder::open(root.path()).expect("open");
    let scan = folder.scan(&Index::new()).expect("scan");
    assert!(scan.files.is_empty(), "{:?}", scan.files);

    let temp = ".duet/tmp/bob-1.part".to_string();
    let create = Action::CreateTemp {
        job: 1,
        temp: temp.clone(),
        size: 0,
    };
    assert_eq!(folder.apply(&create), None);
    let finish = Action::Finish {
        job: 1,
        temp,
        path: "link/secret.txt".into(),
        mtime: 0,
        expect: Expect::File { size: 6, mtime: 0 },
    };
    let Some(Outcome::Finished {
        result: Applied::Failed(reason),
        ..
    }) = folder.apply(&finish)
    else {
        panic!("wrote through a symlink");
    };
    assert!(reason.contains("symlink"), "{reason}");
    let read = Action::ReadBlock {
        request: 1,
        path: "link/secret.txt".into(),
        index: 0,
        len: 6,
    };
    assert_eq!(
        folder.apply(&read),
        Some(Outcome::BlockRead {
            request: 1,
            data: None
        })
    );
    assert_eq!(
        fs::read(outside.path().join("secret.txt")).expect("read"),
        b"secret"
    );
}
