//! The file side of a transfer, with real folders: the file goes through the quarantine and
//! arrives under a free name; nothing is written before acceptance or over the limit; a cut
//! transfer resumes from its saved state; a file the scanner flags never reaches the folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use duet_share::scan::Scanner;
use duet_share::transfer::files::{
    held_files, purge_held, Incoming, Outcome, Outgoing, QUARANTINE_DIR,
};
use duet_share::transfer::{
    Hash256, Message, Offer, Receiver, ReceiverConfig, ReceiverEvent, Sender, SenderEvent,
    DEFAULT_BLOCK_SIZE,
};
use duet_share::Error;
use sha2::{Digest, Sha256};

fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Everything under `dir`, relative, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[derive(Default, Debug)]
struct Run {
    complete: bool,
    writes: u64,
    /// How many times each block's first chunk was sent.
    sends: HashMap<u32, u32>,
    tx_done: bool,
    tx_cancelled: Option<String>,
}

/// Runs both sides with files, messages crossing encoded, instantly, in order, until nothing
/// happens, or until `cut_after` blocks were written.
fn drive(
    rx: &mut Receiver,
    mut incoming: Option<&mut Incoming>,
    tx: &mut Sender,
    outgoing: &mut Outgoing,
    now: Instant,
    cut_after: Option<u64>,
) -> Run {
    let mut run = Run::default();
    loop {
        let mut busy = false;
        while let Some(m) = rx.poll_transmit() {
            busy = true;
            tx.handle_message(now, Message::decode(&m.to_bytes()).unwrap())
                .unwrap();
        }
        while let Some(ev) = tx.poll_event() {
            busy = true;
            match ev {
                SenderEvent::ReadBlock { block, offset, len } => {
                    let bytes = outgoing.read_block(offset, len).unwrap();
                    tx.block_read(block, &bytes).unwrap();
                }
                SenderEvent::Done => run.tx_done = true,
                SenderEvent::Cancelled { reason } => run.tx_cancelled = Some(reason),
                SenderEvent::Failed(e) => panic!("sender failed: {e}"),
            }
        }
        while let Some(m) = tx.poll_transmit() {
            busy = true;
            if let Message::Data {
                block, offset: 0, ..
            } = m
            {
                *run.sends.entry(block).or_insert(0) += 1;
            }
            rx.handle_message(now, Message::decode(&m.to_bytes()).unwrap())
                .unwrap();
        }
        while let Some(ev) = rx.poll_event() {
            busy = true;
            match ev {
                ReceiverEvent::Write {
                    block,
                    offset,
                    data,
                } => {
                    let incoming = incoming.as_deref_mut().expect("a block after the end");
                    incoming.store(rx, block, offset, &data).unwrap();
                    run.writes += 1;
                    if cut_after == Some(run.writes) {
                        return run;
                    }
                }
                ReceiverEvent::Complete => run.complete = true,
                other => panic!("{other:?}"),
            }
        }
        if !busy {
            return run;
        }
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    dest: PathBuf,
    data: Vec<u8>,
}

fn setup(name: &str, data: Vec<u8>) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let src_dir = tmp.path().join("src");
    let dest = tmp.path().join("dest");
    std::fs::create_dir(&src_dir).unwrap();
    std::fs::create_dir(&dest).unwrap();
    let src = src_dir.join(name);
    std::fs::write(&src, &data).unwrap();
    Setup {
        _tmp: tmp,
        src,
        dest,
        data,
    }
}

/// Accepts, transfers, and finishes with `scanner`; returns the outcome and the run.
fn whole_transfer(s: &Setup, scanner: Option<&Scanner>) -> (duet_share::Result<Outcome>, Run) {
    let now = Instant::now();
    let mut outgoing = Outgoing::open(&s.src).unwrap();
    let offer = outgoing.offer().unwrap();
    let mut tx = Sender::new(outgoing.manifest().clone());
    let (mut incoming, mut rx) =
        Incoming::accept(&s.dest, offer, ReceiverConfig::default(), now).unwrap();
    let mut run = drive(
        &mut rx,
        Some(&mut incoming),
        &mut tx,
        &mut outgoing,
        now,
        None,
    );
    assert!(run.complete, "{run:?}");
    let outcome = incoming.finish(scanner);
    match &outcome {
        Ok(Outcome::Released { .. }) => rx.finish(),
        Ok(Outcome::Held { signature, .. }) => rx.cancel(&format!(
            "the file was held by a virus scanner: {signature}"
        )),
        Err(e) => rx.cancel(&e.to_string()),
    }
    let after = drive(&mut rx, None, &mut tx, &mut outgoing, now, None);
    run.tx_done = after.tx_done;
    run.tx_cancelled = after.tx_cancelled;
    (outcome, run)
}

#[test]
fn a_file_arrives_through_the_quarantine_into_the_folder() {
    let s = setup("holiday.mp4", random_bytes(3_000_000, 1));
    let (outcome, run) = whole_transfer(&s, None);
    let path = match outcome.unwrap() {
        Outcome::Released { path } => path,
        other => panic!("{other:?}"),
    };
    assert_eq!(path, s.dest.join("holiday.mp4"));
    assert!(std::fs::read(&path).unwrap() == s.data);
    assert!(run.tx_done);
    // The quarantine is left empty: no partial file, no state.
    assert_eq!(listing(&s.dest), [QUARANTINE_DIR, "holiday.mp4"]);
    // And it is its owner's alone.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.dest.join(QUARANTINE_DIR))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}

#[test]
fn an_existing_file_is_never_replaced() {
    let s = setup("report.pdf", random_bytes(200_000, 2));
    std::fs::write(s.dest.join("report.pdf"), b"mine").unwrap();
    let (outcome, _) = whole_transfer(&s, None);
    assert_eq!(
        outcome.unwrap(),
        Outcome::Released {
            path: s.dest.join("report (1).pdf")
        }
    );
    assert_eq!(std::fs::read(s.dest.join("report.pdf")).unwrap(), b"mine");
    assert!(std::fs::read(s.dest.join("report (1).pdf")).unwrap() == s.data);
}

#[test]
fn an_offer_never_accepted_writes_nothing() {
    let s = setup("a.bin", random_bytes(500_000, 3));
    let outgoing = Outgoing::open(&s.src).unwrap();
    let _offer = outgoing.offer().unwrap();
    let mut tx = Sender::new(outgoing.manifest().clone());
    // The invitation was declined: no receiver exists, and the sender has nothing to say
    // until one begins.
    assert!(tx.poll_transmit().is_none());
    assert!(tx.poll_event().is_none());
    assert_eq!(tx.poll_timeout(), None);
    assert!(listing(&s.dest).is_empty());
}

#[test]
fn an_offer_over_the_limit_is_refused_before_anything_is_written() {
    let s = setup("big.bin", random_bytes(300_000, 4));
    let outgoing = Outgoing::open(&s.src).unwrap();
    let config = ReceiverConfig {
        max_size: 100_000,
        ..ReceiverConfig::default()
    };
    match Incoming::accept(&s.dest, outgoing.offer().unwrap(), config, Instant::now()) {
        Err(Error::TooLarge { size, limit }) => assert_eq!((size, limit), (300_000, 100_000)),
        other => panic!("{:?}", other.err()),
    }
    assert!(listing(&s.dest).is_empty());
}

#[test]
fn a_second_receiver_of_the_same_file_is_refused_while_the_first_lives() {
    let s = setup("same.bin", random_bytes(400_000, 6));
    let outgoing = Outgoing::open(&s.src).unwrap();
    let offer = outgoing.offer().unwrap();
    let now = Instant::now();
    let (first, _rx) =
        Incoming::accept(&s.dest, offer.clone(), ReceiverConfig::default(), now).unwrap();
    match Incoming::accept(&s.dest, offer.clone(), ReceiverConfig::default(), now) {
        Err(Error::Busy(message)) => {
            assert!(
                message.contains("same.bin is already being received"),
                "{message}"
            )
        }
        other => panic!("a second receiver was let in: {:?}", other.err()),
    }
    // The first still owns its partial file; once it is gone the file can be received again.
    assert!(first.part_path().is_file());
    drop(first);
    assert!(Incoming::accept(&s.dest, offer, ReceiverConfig::default(), now).is_ok());
}

#[test]
fn a_cut_transfer_resumes_from_its_saved_state() {
    let s = setup("movie.mkv", random_bytes(5_000_000, 5));
    let mut now = Instant::now();
    let mut outgoing = Outgoing::open(&s.src).unwrap();
    let offer = outgoing.offer().unwrap();
    let blocks = outgoing.manifest().block_hashes.len() as u64;
    assert_eq!(outgoing.manifest().block_size, DEFAULT_BLOCK_SIZE);
    assert_eq!(blocks, 39);

    let (mut incoming, mut rx) =
        Incoming::accept(&s.dest, offer.clone(), ReceiverConfig::default(), now).unwrap();
    let mut tx = Sender::new(outgoing.manifest().clone());
    let first = drive(
        &mut rx,
        Some(&mut incoming),
        &mut tx,
        &mut outgoing,
        now,
        Some(15),
    );
    assert_eq!(first.writes, 15);
    // The app stops: everything in memory is gone; the quarantine holds the part and state.
    drop((incoming, rx, tx));
    let hex = offer.sha256.to_hex();
    let q = format!("{QUARANTINE_DIR}/{hex}");
    assert_eq!(
        listing(&s.dest),
        [
            QUARANTINE_DIR.to_owned(),
            format!("{q}.json"),
            format!("{q}.part")
        ]
    );

    now += Duration::from_secs(300);
    let (mut incoming, mut rx) =
        Incoming::accept(&s.dest, offer, ReceiverConfig::default(), now).unwrap();
    let mut tx = Sender::new(outgoing.manifest().clone());
    let second = drive(
        &mut rx,
        Some(&mut incoming),
        &mut tx,
        &mut outgoing,
        now,
        None,
    );
    assert!(second.complete);
    assert_eq!(second.writes, blocks - 15);
    assert_eq!(tx.blocks_served(), blocks - 15);
    for b in 0..15 {
        assert!(!second.sends.contains_key(&b), "block {b} was sent again");
    }
    let path = match incoming.finish(None).unwrap() {
        Outcome::Released { path } => path,
        other => panic!("{other:?}"),
    };
    assert!(std::fs::read(path).unwrap() == s.data);
}

#[test]
fn a_part_file_damaged_on_disk_fails_the_whole_file_check() {
    let s = setup("x.bin", random_bytes(400_000, 6));
    let now = Instant::now();
    let mut outgoing = Outgoing::open(&s.src).unwrap();
    let (mut incoming, mut rx) = Incoming::accept(
        &s.dest,
        outgoing.offer().unwrap(),
        ReceiverConfig::default(),
        now,
    )
    .unwrap();
    let mut tx = Sender::new(outgoing.manifest().clone());
    assert!(
        drive(
            &mut rx,
            Some(&mut incoming),
            &mut tx,
            &mut outgoing,
            now,
            None
        )
        .complete
    );
    let mut bytes = std::fs::read(incoming.part_path()).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(incoming.part_path(), bytes).unwrap();
    match incoming.finish(None) {
        Err(Error::Integrity(msg)) => assert!(msg.contains("not the one offered"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(listing(&s.dest), [QUARANTINE_DIR]);
}

#[cfg(unix)]
#[test]
fn a_symlinked_quarantine_is_refused() {
    let s = setup("x.bin", random_bytes(1000, 7));
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), s.dest.join(QUARANTINE_DIR)).unwrap();
    let outgoing = Outgoing::open(&s.src).unwrap();
    let offer = outgoing.offer().unwrap();
    match Incoming::accept(&s.dest, offer, ReceiverConfig::default(), Instant::now()) {
        Err(Error::UnsafeName { reason, .. }) => assert!(reason.contains("symlink")),
        other => panic!("{:?}", other.err()),
    }
    assert!(listing(elsewhere.path()).is_empty());
}

/// A ClamAV database flagging exactly `data`, and a scanner using only it.
fn scanner_flagging(dir: &Path, data: &[u8]) -> Scanner {
    let db = dir.join("clamdb");
    std::fs::create_dir(&db).unwrap();
    let sha = hex::encode(Sha256::digest(data));
    let sig = format!("{sha}:{}:Duet.Test.Signature\n", data.len());
    std::fs::write(db.join("duet.hsb"), sig).unwrap();
    let db = db.to_string_lossy().into_owned();
    Scanner::new(
        "clamscan",
        ["--no-summary", "--stdout", "-d", &db, "{file}"],
    )
}

#[test]
fn a_flagged_file_stays_in_quarantine_and_the_sender_is_told_why() {
    let s = setup("invoice.pdf.exe", random_bytes(700_000, 8));
    let db_dir = tempfile::tempdir().unwrap();
    let scanner = scanner_flagging(db_dir.path(), &s.data);
    let (outcome, run) = whole_transfer(&s, Some(&scanner));
    let (signature, held) = match outcome.unwrap() {
        Outcome::Held { signature, path } => (signature, path),
        other => panic!("{other:?}"),
    };
    assert!(signature.starts_with("Duet.Test.Signature"), "{signature}");
    assert!(held.starts_with(s.dest.join(QUARANTINE_DIR)));
    assert!(std::fs::read(&held).unwrap() == s.data);
    // Nothing reached the folder itself.
    assert_eq!(
        listing(&s.dest),
        [
            QUARANTINE_DIR.to_owned(),
            format!(
                "{QUARANTINE_DIR}/{}",
                held.file_name().unwrap().to_string_lossy()
            )
        ]
    );
    let reason = run.tx_cancelled.expect("the sender hears why");
    assert!(reason.contains("virus scanner") && reason.contains("Duet.Test.Signature"));
    assert!(!run.tx_done);
}

#[test]
fn a_clean_file_passes_the_scanner() {
    let s = setup("notes.txt", random_bytes(300_000, 9));
    let db_dir = tempfile::tempdir().unwrap();
    let scanner = scanner_flagging(db_dir.path(), b"some other content");
    let (outcome, run) = whole_transfer(&s, Some(&scanner));
    assert_eq!(
        outcome.unwrap(),
        Outcome::Released {
            path: s.dest.join("notes.txt")
        }
    );
    assert!(run.tx_done);
}

#[test]
fn a_scanner_error_keeps_the_file_in_quarantine() {
    let s = setup("data.csv", random_bytes(300_000, 10));
    let broken = Scanner::new(
        "clamscan",
        ["--no-summary", "-d", "/nonexistent/db", "{file}"],
    );
    let (outcome, run) = whole_transfer(&s, Some(&broken));
    match outcome {
        Err(Error::Scanner(msg)) => assert!(msg.contains("status 2"), "{msg}"),
        other => panic!("{other:?}"),
    }
    let listed = listing(&s.dest);
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.iter().all(|p| p.starts_with(QUARANTINE_DIR)));
    assert!(run.tx_cancelled.unwrap().contains("scanner"));
}

/// The quarantine of `dir`, created private as duet creates it.
#[cfg(unix)]
fn private_quarantine(dir: &Path) -> PathBuf {
    use std::os::unix::fs::DirBuilderExt;
    let q = dir.join(QUARANTINE_DIR);
    std::fs::DirBuilder::new().mode(0o700).create(&q).unwrap();
    q
}

fn offer_of(name: &str, size: u64) -> Offer {
    Offer::new(name, size, Hash256::of(name.as_bytes())).unwrap()
}

#[cfg(unix)]
#[test]
fn a_quarantine_open_to_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let s = setup("x.bin", random_bytes(1000, 11));
    let q = s.dest.join(QUARANTINE_DIR);
    std::fs::create_dir(&q).unwrap();
    std::fs::set_permissions(&q, std::fs::Permissions::from_mode(0o755)).unwrap();
    let offer = Outgoing::open(&s.src).unwrap().offer().unwrap();
    match Incoming::accept(&s.dest, offer, ReceiverConfig::default(), Instant::now()) {
        Err(Error::Quarantine(msg)) => assert!(msg.contains("mode 755"), "{msg}"),
        other => panic!("{:?}", other.err()),
    }
    assert_eq!(listing(&s.dest), [QUARANTINE_DIR]);
    assert!(
        held_files(&s.dest).is_err(),
        "listing checks the quarantine too"
    );
}

#[cfg(unix)]
#[test]
fn a_quarantine_of_another_user_is_refused() {
    let s = setup("x.bin", random_bytes(1000, 12));
    let q = private_quarantine(&s.dest);
    // Giving a folder away takes root.
    if let Err(e) = std::os::unix::fs::chown(&q, Some(65534), Some(65534)) {
        let why = format!("skipped: giving the quarantine to another user needs root ({e})");
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("{why}");
        return;
    }
    let offer = Outgoing::open(&s.src).unwrap().offer().unwrap();
    match Incoming::accept(&s.dest, offer, ReceiverConfig::default(), Instant::now()) {
        Err(Error::Quarantine(msg)) => assert!(msg.contains("belongs to user 65534"), "{msg}"),
        other => panic!("{:?}", other.err()),
    }
}

#[cfg(unix)]
#[test]
fn a_partial_file_that_is_a_symlink_is_not_followed() {
    let s = setup("x.bin", random_bytes(1000, 13));
    let q = private_quarantine(&s.dest);
    let elsewhere = tempfile::tempdir().unwrap();
    let victim = elsewhere.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let offer = Outgoing::open(&s.src).unwrap().offer().unwrap();
    let part = q.join(format!("{}.part", offer.sha256.to_hex()));
    std::os::unix::fs::symlink(&victim, &part).unwrap();
    match Incoming::accept(&s.dest, offer, ReceiverConfig::default(), Instant::now()) {
        Err(Error::UnsafeName { reason, .. }) => assert!(reason.contains("symlink"), "{reason}"),
        other => panic!("{:?}", other.err()),
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}

#[test]
fn an_offer_the_disk_cannot_hold_is_refused_before_anything_is_written() {
    let s = setup("x.bin", Vec::new());
    let config = ReceiverConfig {
        max_size: u64::MAX,
        quarantine_quota: u64::MAX,
        ..ReceiverConfig::default()
    };
    let huge = offer_of("huge.iso", 1 << 60);
    match Incoming::accept(&s.dest, huge, config, Instant::now()) {
        Err(Error::NoSpace {
            needed,
            available,
            margin,
        }) => {
            assert_eq!(needed, 1 << 60);
            assert!(available < needed, "{available}");
            assert_eq!(margin, 256 << 20);
        }
        other => panic!("{:?}", other.err()),
    }
    assert!(
        listing(&s.dest).iter().all(|p| p == QUARANTINE_DIR),
        "{:?}",
        listing(&s.dest)
    );
}

#[cfg(unix)]
#[test]
fn the_quarantine_quota_counts_partial_and_held_files() {
    let s = setup("x.bin", Vec::new());
    let q = private_quarantine(&s.dest);
    std::fs::write(q.join("0000.held"), vec![0u8; 600_000]).unwrap();
    std::fs::write(q.join("1111.part"), vec![0u8; 200_000]).unwrap();
    let config = ReceiverConfig {
        quarantine_quota: 1_000_000,
        ..ReceiverConfig::default()
    };
    match Incoming::accept(
        &s.dest,
        offer_of("big", 300_000),
        config.clone(),
        Instant::now(),
    ) {
        Err(Error::QuotaExceeded { used, size, quota }) => {
            assert_eq!((used, size, quota), (800_000, 300_000, 1_000_000))
        }
        other => panic!("{:?}", other.err()),
    }
    let (incoming, _rx) =
        Incoming::accept(&s.dest, offer_of("small", 150_000), config, Instant::now()).unwrap();
    assert!(incoming.part_path().exists());
}

#[cfg(unix)]
#[test]
fn partial_files_of_abandoned_transfers_expire() {
    let s = setup("x.bin", Vec::new());
    let q = private_quarantine(&s.dest);
    let week_and_a_day = Duration::from_secs(8 * 24 * 3600);
    for name in ["old.part", "old.json", "fresh.part", "kept.held"] {
        std::fs::write(q.join(name), b"bytes").unwrap();
    }
    for name in ["old.part", "kept.held"] {
        let f = std::fs::File::options()
            .write(true)
            .open(q.join(name))
            .unwrap();
        f.set_modified(std::time::SystemTime::now() - week_and_a_day)
            .unwrap();
    }
    let (_incoming, _rx) = Incoming::accept(
        &s.dest,
        offer_of("new", 10),
        ReceiverConfig::default(),
        Instant::now(),
    )
    .unwrap();
    let left = listing(&q);
    assert!(!left.contains(&"old.part".to_string()), "{left:?}");
    assert!(!left.contains(&"old.json".to_string()), "{left:?}");
    assert!(left.contains(&"fresh.part".to_string()), "{left:?}");
    // Held files are the user's to purge.
    assert!(left.contains(&"kept.held".to_string()), "{left:?}");
}

#[test]
fn held_files_are_listed_and_purged() {
    let s = setup("trojan.exe", random_bytes(100_000, 14));
    assert!(held_files(&s.dest).unwrap().is_empty(), "no quarantine yet");
    let db_dir = tempfile::tempdir().unwrap();
    let scanner = scanner_flagging(db_dir.path(), &s.data);
    let (outcome, _) = whole_transfer(&s, Some(&scanner));
    let Ok(Outcome::Held { path, .. }) = outcome else {
        panic!("{outcome:?}");
    };
    let held = held_files(&s.dest).unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(
        (held[0].path.clone(), held[0].size),
        (path.clone(), 100_000)
    );
    assert_eq!(purge_held(&s.dest).unwrap(), held);
    assert!(!path.exists());
    assert!(held_files(&s.dest).unwrap().is_empty());
}

#[test]
fn a_scanner_past_its_deadline_holds_the_file() {
    let s = setup("slow.bin", random_bytes(50_000, 15));
    let slow = Scanner::new("sh", ["-c", "exec sleep 30", "{file}"])
        .with_deadline(Duration::from_millis(300))
        .unwrap();
    let started = Instant::now();
    let (outcome, run) = whole_transfer(&s, Some(&slow));
    match outcome.unwrap() {
        Outcome::Held { signature, path } => {
            assert!(signature.contains("no verdict within 0.3 s"), "{signature}");
            assert!(path.starts_with(s.dest.join(QUARANTINE_DIR)));
        }
        other => panic!("released without a verdict: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!s.dest.join("slow.bin").exists());
    assert!(!run.tx_done);
}
