//! The virus scanner, with ClamAV itself and a signature database written by the test: a file
//! matching it is held with the signature's name, another passes, and a scanner that fails
//! never passes a file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use duet_share::scan::{Scanner, Verdict};
use duet_share::Error;
use sha2::{Digest, Sha256};

/// A folder with a ClamAV database: a SHA-256 file signature (`.hsb`) for exactly `flagged`,
/// and a body signature (`.ndb`) for files containing `DUET-BODY-MARKER`.
fn test_database(dir: &Path, flagged: &[u8]) -> PathBuf {
    let db = dir.join("db");
    std::fs::create_dir(&db).unwrap();
    let sha = hex::encode(Sha256::digest(flagged));
    std::fs::write(
        db.join("duet.hsb"),
        format!("{sha}:{}:Duet.Test.Signature\n", flagged.len()),
    )
    .unwrap();
    let marker = hex::encode("DUET-BODY-MARKER");
    std::fs::write(
        db.join("duet.ndb"),
        format!("Duet.Test.Body:0:*:{marker}\n"),
    )
    .unwrap();
    db
}

fn clamscan(db: &Path) -> Scanner {
    Scanner::new(
        "clamscan",
        [
            "--no-summary",
            "--stdout",
            "-d",
            &db.to_string_lossy(),
            "{file}",
        ],
    )
}

#[test]
fn a_file_matching_a_signature_is_infected_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad = b"duet test payload: not a virus, but flagged as one\n";
    let db = test_database(dir.path(), bad);
    let file = dir.path().join("bad.bin");
    std::fs::write(&file, bad).unwrap();
    let log = global_log();
    match clamscan(&db).scan(&file).unwrap() {
        Verdict::Infected { signature } => {
            assert!(signature.starts_with("Duet.Test.Signature"), "{signature}")
        }
        other => panic!("the matching file was not flagged: {other:?}"),
    }
    let logged = log.text();
    let line = logged
        .lines()
        .find(|l| l.contains(&*file.to_string_lossy()))
        .unwrap_or_else(|| panic!("no log line for the file in {logged:?}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("virus scanner flagged a file"), "{line}");
    assert!(line.contains("Duet.Test.Signature"), "{line}");
}

/// A log capturing every thread's events, installed once for this test binary (a
/// thread-scoped subscriber can miss events whose callsite another test thread registered).
fn global_log() -> &'static Log {
    static LOG: OnceLock<Log> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Log::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(log.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        log
    })
}

/// Log lines captured in memory.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
    type Writer = Log;
    fn make_writer(&'a self) -> Log {
        self.clone()
    }
}

#[test]
fn a_body_signature_matches_inside_a_larger_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_database(dir.path(), b"unrelated");
    let file = dir.path().join("doc.txt");
    let mut body = vec![b'x'; 100_000];
    body.extend_from_slice(b"...DUET-BODY-MARKER...");
    std::fs::write(&file, body).unwrap();
    match clamscan(&db).scan(&file).unwrap() {
        Verdict::Infected { signature } => {
            assert!(signature.starts_with("Duet.Test.Body"), "{signature}")
        }
        other => panic!("the marked file was not flagged: {other:?}"),
    }
}

#[test]
fn another_file_passes() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_database(dir.path(), b"the flagged content\n");
    let file = dir.path().join("good.txt");
    std::fs::write(&file, b"the flagged content, almost\n").unwrap();
    assert_eq!(clamscan(&db).scan(&file).unwrap(), Verdict::Clean);
}

#[test]
fn a_scanner_that_fails_is_an_error_not_a_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.txt");
    std::fs::write(&file, b"data").unwrap();
    // No database there: clamscan exits with 2.
    let missing_db = clamscan(&dir.path().join("no-such-db"));
    match missing_db.scan(&file) {
        Err(Error::Scanner(msg)) => assert!(msg.contains("status 2"), "{msg}"),
        other => panic!("{other:?}"),
    }
    // A file that is not there.
    let db = test_database(dir.path(), b"x");
    assert!(matches!(
        clamscan(&db).scan(&dir.path().join("gone")),
        Err(Error::Scanner(_))
    ));
    // A scanner that cannot start.
    let absent = Scanner::from_command("duet-no-such-scanner {file}").unwrap();
    match absent.scan(&file) {
        Err(Error::Scanner(msg)) => assert!(msg.contains("cannot run duet-no-such-scanner")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_default_is_clamscan_on_stdout_flagging_files_over_its_limits() {
    assert_eq!(
        Scanner::default(),
        Scanner::from_command("clamscan --no-summary --stdout --alert-exceeds-max=yes {file}")
            .unwrap()
    );
    assert_eq!(Scanner::default().deadline(), Duration::from_secs(120));
}

#[test]
fn a_file_over_clamavs_limits_is_flagged_with_the_default_flag() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_database(dir.path(), b"unrelated");
    let file = dir.path().join("big.bin");
    std::fs::write(&file, vec![b'x'; 200_000]).unwrap();
    let limited = |alert: &str| {
        let db = db.to_string_lossy();
        let mut args = vec!["--no-summary", "--stdout", "-d", &db, "--max-filesize=1K"];
        args.extend(["--max-scansize=1K", alert, "{file}"]);
        Scanner::new("clamscan", args).scan(&file).unwrap()
    };
    // Without the flag, ClamAV skips the rest of the file and calls it clean.
    assert_eq!(limited("--alert-exceeds-max=no"), Verdict::Clean);
    match limited("--alert-exceeds-max=yes") {
        Verdict::Infected { signature } => {
            assert!(
                signature.contains("Exceeds") || signature.contains("Limits"),
                "{signature}"
            )
        }
        other => panic!("a file over the limits passed: {other:?}"),
    }
}

#[test]
fn a_scanner_past_its_deadline_is_killed_and_gives_no_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.txt");
    std::fs::write(&file, b"data").unwrap();
    let slow = Scanner::new("sh", ["-c", "exec sleep 30", "{file}"])
        .with_deadline(Duration::from_millis(300))
        .unwrap();
    let started = Instant::now();
    assert_eq!(
        slow.scan(&file).unwrap(),
        Verdict::TimedOut {
            after: Duration::from_millis(300)
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(Scanner::default().with_deadline(Duration::ZERO).is_err());
}
