//! Handing a quarantined file to a virus scanner before it is released.
//!
//! A [`Scanner`] is a command line: by default
//! `clamscan --no-summary --stdout --alert-exceeds-max=yes {file}` (a file over ClamAV's size or
//! recursion limits is flagged as `Heuristics.Limits.Exceeded` rather than passed unscanned), or
//! any command with a `{file}` placeholder (`clamdscan --fdpass {file}` scans through the clamd
//! socket, which is much faster when clamd is running). Its exit status is the verdict, as
//! ClamAV defines it: 0 is clean, 1 is infected (the signature comes from the `FOUND` line),
//! anything else, or a command that cannot start, is a scanner error, and a file whose scan
//! failed is never released. Every run has a deadline ([`DEFAULT_SCAN_DEADLINE`] unless set
//! with [`Scanner::with_deadline`]); a scanner still running then is killed and the verdict is
//! [`Verdict::TimedOut`]: the file is held, never released.
//!
//! ```no_run
//! use duet_share::scan::{Scanner, Verdict};
//! let scanner = Scanner::from_command("clamdscan --fdpass {file}").unwrap();
//! match scanner.scan("/tmp/report.pdf".as_ref()) {
//!     Ok(Verdict::Clean) => println!("clean"),
//!     Ok(Verdict::Infected { signature }) => println!("held: {signature}"),
//!     Ok(other) => println!("held: {other:?}"),
//!     Err(e) => println!("kept in quarantine: {e}"),
//! }
//! ```

use std::ffi::OsString;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// The placeholder replaced by the file's path in a scanner's arguments.
pub const FILE_PLACEHOLDER: &str = "{file}";

/// How long one scanner run may take unless [`Scanner::with_deadline`] says otherwise.
pub const DEFAULT_SCAN_DEADLINE: Duration = Duration::from_secs(120);

/// How often a running scanner is looked at while waiting for it.
const POLL: Duration = Duration::from_millis(20);

/// What the scanner said about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Exit status 0: nothing found.
    Clean,
    /// Exit status 1: the file matched a signature.
    Infected {
        /// The signature name from the scanner's `FOUND` line (`"unknown"` if there was none).
        signature: String,
    },
    /// The scanner was still running at its deadline and was killed: no verdict, so the file
    /// is held like an infected one.
    TimedOut {
        /// The deadline that passed.
        after: Duration,
    },
}

/// A virus scanner command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanner {
    program: String,
    args: Vec<String>,
    deadline: Duration,
}

impl Default for Scanner {
    /// `clamscan --no-summary --stdout --alert-exceeds-max=yes {file}`: a file beyond ClamAV's
    /// scan limits counts as infected instead of clean.
    fn default() -> Self {
        Scanner::new(
            "clamscan",
            [
                "--no-summary",
                "--stdout",
                "--alert-exceeds-max=yes",
                FILE_PLACEHOLDER,
            ],
        )
    }
}

impl Scanner {
    /// A scanner running `program` with `args`; each `{file}` in them becomes the file's path,
    /// and if none has one the path is added last.
    pub fn new<S: Into<String>>(program: &str, args: impl IntoIterator<Item = S>) -> Self {
        Scanner {
            program: program.to_owned(),
            args: args.into_iter().map(Into::into).collect(),
            deadline: DEFAULT_SCAN_DEADLINE,
        }
    }

    /// The same scanner with another deadline per run. A zero deadline is an
    /// [`Error::Config`].
    pub fn with_deadline(mut self, deadline: Duration) -> Result<Self> {
        if deadline.is_zero() {
            return Err(Error::Config(
                "the scanner deadline must be longer than zero".into(),
            ));
        }
        self.deadline = deadline;
        Ok(self)
    }

    /// How long one run may take.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// A scanner from a command line as the user typed it, split on whitespace (no quoting):
    /// `"clamdscan --fdpass {file}"`. An empty command is an [`Error::Config`].
    pub fn from_command(command: &str) -> Result<Self> {
        let mut words = command.split_whitespace();
        let program = words
            .next()
            .ok_or_else(|| Error::Config("the scanner command is empty".into()))?;
        Ok(Scanner::new(program, words))
    }

    /// The command line for `file`.
    fn args_for(&self, file: &Path) -> Vec<OsString> {
        let mut out: Vec<OsString> = Vec::with_capacity(self.args.len() + 1);
        let mut placed = false;
        for a in &self.args {
            if a == FILE_PLACEHOLDER {
                out.push(file.as_os_str().to_owned());
                placed = true;
            } else if a.contains(FILE_PLACEHOLDER) {
                out.push(a.replace(FILE_PLACEHOLDER, &file.to_string_lossy()).into());
                placed = true;
            } else {
                out.push(a.into());
            }
        }
        if !placed {
            out.push(file.as_os_str().to_owned());
        }
        out
    }

    /// Scans `file`, waiting for the scanner to finish or its deadline to pass (it blocks: run
    /// it off the async runtime). An infected file is logged at warn. A scanner still running at
    /// the deadline is killed and the verdict is [`Verdict::TimedOut`]. A scanner that cannot
    /// start or exits with another status is an [`Error::Scanner`] with what it printed.
    pub fn scan(&self, file: &Path) -> Result<Verdict> {
        let started = Instant::now();
        let mut child = Command::new(&self.program)
            .args(self.args_for(file))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Scanner(format!("cannot run {}: {e}", self.program)))?;
        // Read the pipes on threads of their own so that a chatty scanner never blocks on a
        // full pipe while its deadline runs.
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut out = Vec::new();
                if let Some(pipe) = pipe {
                    let _ = pipe.take(1 << 20).read_to_end(&mut out);
                }
                out
            })
        };
        let stdout_reader = drain(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let stderr_reader = drain(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() >= self.deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    tracing::warn!(
                        file = %file.display(),
                        "virus scanner gave no verdict within {:?}; the file is held",
                        self.deadline
                    );
                    // The reader threads end when the pipes close; they are not waited for,
                    // since a process the scanner started may still hold them open.
                    return Ok(Verdict::TimedOut {
                        after: self.deadline,
                    });
                }
                Ok(None) => std::thread::sleep(POLL.min(self.deadline)),
                Err(e) => {
                    let _ = child.kill();
                    return Err(Error::Scanner(format!("waiting for {}: {e}", self.program)));
                }
            }
        };
        let stdout = stdout_reader.join().unwrap_or_default();
        let stderr = stderr_reader.join().unwrap_or_default();
        let output = std::process::Output {
            status,
            stdout,
            stderr,
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        match output.status.code() {
            Some(0) => Ok(Verdict::Clean),
            Some(1) => {
                let signature = found_signature(&stdout).unwrap_or("unknown").to_owned();
                tracing::warn!(file = %file.display(), %signature, "virus scanner flagged a file");
                Ok(Verdict::Infected { signature })
            }
            status => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let said = format!("{stdout} {stderr}");
                let said = said.split_whitespace().collect::<Vec<_>>().join(" ");
                let status = status.map_or("a signal".to_owned(), |c| format!("status {c}"));
                Err(Error::Scanner(format!(
                    "{} ended with {status}: {said}",
                    self.program
                )))
            }
        }
    }
}

/// The signature on a ClamAV `"<path>: <signature> FOUND"` line.
fn found_signature(output: &str) -> Option<&str> {
    output.lines().find_map(|line| {
        let rest = line.trim_end().strip_suffix(" FOUND")?;
        let (_, sig) = rest.rsplit_once(": ")?;
        Some(sig.trim()).filter(|s| !s.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_read_from_the_found_line() {
        let out = "/tmp/a: OK\n/tmp/dir: x/b.bin: Eicar-Test-Signature FOUND\n";
        assert_eq!(found_signature(out), Some("Eicar-Test-Signature"));
        assert_eq!(found_signature("/tmp/a: OK\n"), None);
    }

    #[test]
    fn placeholder_is_replaced_or_the_file_added_last() {
        let f = Path::new("/q/x.part");
        let s = Scanner::from_command("clamdscan --fdpass {file}").unwrap();
        assert_eq!(s.args_for(f), ["--fdpass", "/q/x.part"].map(OsString::from));
        let s = Scanner::from_command("scan --in={file}").unwrap();
        assert_eq!(s.args_for(f), ["--in=/q/x.part"].map(OsString::from));
        assert!(Scanner::default()
            .args_for(f)
            .contains(&OsString::from("--alert-exceeds-max=yes")));
        let s = Scanner::from_command("clamscan -d db").unwrap();
        assert_eq!(s.args_for(f), ["-d", "db", "/q/x.part"].map(OsString::from));
        assert!(Scanner::from_command("  ").is_err());
    }
}
