//! Handing a quarantined file to a virus scanner before it is released.
//!
//! A [`Scanner`] is a command line: by default `clamscan --no-summary --stdout {file}`, or any
//! command with a `{file}` placeholder (`clamdscan --fdpass {file}` scans through the clamd
//! socket, which is much faster when clamd is running). Its exit status is the verdict, as
//! ClamAV defines it: 0 is clean, 1 is infected (the signature comes from the `FOUND` line),
//! anything else, or a command that cannot start, is a scanner error, and a file whose scan
//! failed is never released.
//!
//! ```no_run
//! use duet_share::scan::{Scanner, Verdict};
//! let scanner = Scanner::from_command("clamdscan --fdpass {file}").unwrap();
//! match scanner.scan("/tmp/report.pdf".as_ref()) {
//!     Ok(Verdict::Clean) => println!("clean"),
//!     Ok(Verdict::Infected { signature }) => println!("held: {signature}"),
//!     Err(e) => println!("kept in quarantine: {e}"),
//! }
//! ```

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use crate::{Error, Result};

/// The placeholder replaced by the file's path in a scanner's arguments.
pub const FILE_PLACEHOLDER: &str = "{file}";

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
}

/// A virus scanner command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanner {
    program: String,
    args: Vec<String>,
}

impl Default for Scanner {
    /// `clamscan --no-summary --stdout {file}`.
    fn default() -> Self {
        Scanner::new("clamscan", ["--no-summary", "--stdout", FILE_PLACEHOLDER])
    }
}

impl Scanner {
    /// A scanner running `program` with `args`; each `{file}` in them becomes the file's path,
    /// and if none has one the path is added last.
    pub fn new<S: Into<String>>(program: &str, args: impl IntoIterator<Item = S>) -> Self {
        Scanner {
            program: program.to_owned(),
            args: args.into_iter().map(Into::into).collect(),
        }
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

    /// Scans `file`, waiting for the scanner to finish (it blocks: run it off the async
    /// runtime). An infected file is logged at warn. A scanner that cannot start or exits with
    /// another status is an [`Error::Scanner`] with what it printed.
    pub fn scan(&self, file: &Path) -> Result<Verdict> {
        let output = Command::new(&self.program)
            .args(self.args_for(file))
            .output()
            .map_err(|e| Error::Scanner(format!("cannot run {}: {e}", self.program)))?;
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
        let s = Scanner::from_command("clamscan -d db").unwrap();
        assert_eq!(s.args_for(f), ["-d", "db", "/q/x.part"].map(OsString::from));
        assert!(Scanner::from_command("  ").is_err());
    }
}
