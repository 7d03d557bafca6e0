//! `duet send NAME PATH` and the file side of `duet answer`: a file offered through the server
//! and sent peer to peer, with a progress bar (rate and time left) and a clear outcome.
//!
//! `duet send` exits 0 once the file arrived whole, 7 when the receiver's virus scanner held it,
//! 3 when declined, 5 when unanswered, 6 when the contact is offline or not a contact, 1 otherwise.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use duet_share::scan::Scanner;
use duet_share::transfer::ReceiverConfig;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::cli::social::ConnectArgs;
use crate::client::{IncomingFile, ReceiveOptions, Transfer, TransferError, TransferOutcome};

/// `duet send NAME PATH`.
#[derive(Args, Debug, Clone)]
pub struct SendArgs {
    /// The contact.
    pub name: String,
    /// The file to send.
    pub path: PathBuf,
    /// Print the outcome as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Where and as whom.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// How `duet answer` treats file offers.
#[derive(Args, Debug, Clone, Default)]
pub struct ReceiveArgs {
    /// Accept file offers into this folder without asking (else `duet answer` asks, and a yes
    /// receives into the current folder).
    #[arg(long)]
    pub accept_files: Option<PathBuf>,
    /// Hand each received file to this virus scanner before it leaves quarantine, e.g.
    /// "clamscan --no-summary {file}" or "clamdscan --fdpass {file}" (the clamd socket).
    #[arg(long)]
    pub scanner: Option<String>,
    /// Refuse files larger than this many bytes.
    #[arg(long, default_value_t = 64 << 30)]
    pub max_size: u64,
    /// The most bytes the quarantine folder may hold, partial and held files together; an
    /// offer that would pass it is refused.
    #[arg(long, default_value_t = 10 << 30)]
    pub quarantine_quota: u64,
    /// Kill a scanner run after this many seconds and hold the file.
    #[arg(long, default_value_t = 120.0)]
    pub scan_deadline: f64,
    /// List the files the virus scanner held in this folder's quarantine, and exit.
    #[arg(long, value_name = "DIR")]
    pub held: Option<PathBuf>,
    /// With --held: delete the held files listed.
    #[arg(long, requires = "held")]
    pub purge_held: bool,
}

/// The scanner named by `--scanner`, if any.
pub(crate) fn scanner_arg(command: Option<&str>) -> Result<Option<Scanner>> {
    command
        .map(Scanner::from_command)
        .transpose()
        .context("--scanner")
}

impl ReceiveArgs {
    fn options(&self) -> Result<ReceiveOptions> {
        let deadline = self.scan_deadline;
        if !(deadline.is_finite() && deadline > 0.0 && deadline <= 86_400.0) {
            anyhow::bail!("--scan-deadline {deadline}: give seconds between 0 and 86400");
        }
        let scanner = scanner_arg(self.scanner.as_deref())?
            .map(|s| s.with_deadline(Duration::from_secs_f64(deadline)))
            .transpose()
            .context("--scan-deadline")?;
        Ok(ReceiveOptions {
            scanner,
            limits: ReceiverConfig {
                max_size: self.max_size,
                quarantine_quota: self.quarantine_quota,
                ..ReceiverConfig::default()
            },
        })
    }
}

/// `duet answer --held DIR [--purge-held]`: lists (or deletes) the files the virus scanner held
/// in `DIR`'s quarantine, one line each (size in bytes, path); returns the exit status.
pub fn held(dir: &Path, purge: bool) -> Result<u8> {
    let files = if purge {
        duet_share::transfer::files::purge_held(dir)
    } else {
        duet_share::transfer::files::held_files(dir)
    }
    .with_context(|| format!("the quarantine of {}", dir.display()))?;
    for file in &files {
        println!("{}\t{}", file.size, file.path.display());
    }
    let what = if purge { "deleted" } else { "held" };
    eprintln!("{} file(s) {what} in {}", files.len(), dir.display());
    Ok(0)
}

/// Peak resident memory of this process, MiB (0 where /proc is not available).
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// How a transfer ended, and the path its link took.
type Ended = (
    Result<TransferOutcome, TransferError>,
    Option<duet_media::ice::CandidatePath>,
);

/// Shows a transfer's progress until it ends, and returns how it ended and its path: a bar
/// redrawn in place on a terminal, otherwise a plain line a second.
async fn follow(mut transfer: Transfer) -> Ended {
    let live = std::io::stderr().is_terminal();
    let bar = if live {
        let bar = ProgressBar::new(1_000);
        // The template is fixed; indicatif's default stands in should it ever be refused.
        let style = ProgressStyle::with_template("[{bar:24}] {percent:>3}%  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("#-.");
        bar.set_style(style);
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut last_line = tokio::time::Instant::now();
    loop {
        let changed = tokio::time::timeout(Duration::from_millis(250), transfer.changed()).await;
        if let Ok(false) = changed {
            break;
        }
        let progress = transfer.progress();
        if live {
            bar.set_position((progress.fraction() * 1_000.0).round() as u64);
            bar.set_message(progress.summary());
        } else if last_line.elapsed() >= Duration::from_secs(1) {
            eprintln!("{}", progress.bar());
            last_line = tokio::time::Instant::now();
        }
    }
    bar.finish();
    let path = transfer.path();
    (transfer.finish().await, path)
}

fn outcome_json(
    outcome: &Result<TransferOutcome, TransferError>,
    path: Option<&duet_media::ice::CandidatePath>,
    file: &str,
) -> serde_json::Value {
    let base = json!({
        "file": file,
        "peak_rss_mb": (peak_rss_mb() * 10.0).round() / 10.0,
        "transport": crate::report::path_json(path),
    });
    let mut value = base;
    match outcome {
        Ok(TransferOutcome::Delivered {
            path,
            blocks_moved,
            blocks_resumed,
            progress,
        }) => {
            value["outcome"] = json!("delivered");
            value["path"] = json!(path.display().to_string());
            value["bytes"] = json!(progress.total);
            value["bytes_moved"] = json!(progress.moved);
            value["seconds"] = json!(progress.seconds);
            value["mb_per_s"] = json!(progress.rate() / 1e6);
            value["blocks_moved"] = json!(blocks_moved);
            value["blocks_resumed"] = json!(blocks_resumed);
        }
        Ok(TransferOutcome::Held { reason }) => {
            value["outcome"] = json!("held");
            value["reason"] = json!(reason);
        }
        Err(e) => {
            value["outcome"] = json!("failed");
            value["reason"] = json!(e.to_string());
        }
    }
    value
}

fn describe(outcome: &Result<TransferOutcome, TransferError>, who: &str) -> (String, u8) {
    match outcome {
        Ok(TransferOutcome::Delivered {
            path,
            blocks_moved,
            blocks_resumed,
            progress,
        }) => {
            let resumed = if *blocks_resumed > 0 {
                format!(", {blocks_resumed} blocks already there from before")
            } else {
                String::new()
            };
            let place = if path.as_os_str().is_empty() {
                String::new()
            } else {
                format!(" as {}", path.display())
            };
            (
                format!(
                    "delivered{place}: {:.1} MB in {:.1} s ({:.1} MB/s), {blocks_moved} blocks moved{resumed}",
                    progress.total as f64 / 1e6,
                    progress.seconds,
                    progress.rate() / 1e6
                ),
                0,
            )
        }
        Ok(TransferOutcome::Held { reason }) => (format!("{who}: {reason}"), 7),
        Err(e) => (format!("{who}: {e}"), e.exit_code()),
    }
}

/// Runs `duet send`; returns the exit status.
pub fn send(args: SendArgs) -> Result<u8> {
    let file = args
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let (client, _events) = args.connect.client().await?;
        eprintln!("offering {} to {}...", args.path.display(), args.name);
        let (outcome, path) = match client.send_file(&args.name, &args.path).await {
            Ok(transfer) => {
                eprintln!("{} accepted", args.name);
                follow(transfer).await
            }
            Err(e) => (Err(e), None),
        };
        client.close().await;
        let (text, code) = describe(&outcome, &args.name);
        eprintln!("{text}");
        if args.json {
            println!("{}", outcome_json(&outcome, path.as_ref(), &file));
        }
        Ok(code)
    })
}

/// Receives an offered file as `duet answer` does; returns the exit status.
pub async fn receive(offer: IncomingFile, args: &ReceiveArgs, json: bool) -> Result<u8> {
    let name = offer.name();
    let from = offer.from().clone();
    eprintln!("{from} offers {name} ({:.1} MB)", offer.size() as f64 / 1e6);
    let dir = match &args.accept_files {
        Some(dir) => dir.clone(),
        None => {
            if !crate::cli::prompt::ask(&format!("accept {name} into the current folder? [y/N] "))?
            {
                offer.decline(Some("declined".into())).await?;
                eprintln!("declined");
                return Ok(3);
            }
            PathBuf::from(".")
        }
    };
    let options = args.options()?;
    let (outcome, path) = match offer.accept(Path::new(&dir), options).await {
        Ok(transfer) => follow(transfer).await,
        Err(e) => (Err(e), None),
    };
    let (text, code) = describe(&outcome, from.as_str());
    eprintln!("{text}");
    if json {
        println!("{}", outcome_json(&outcome, path.as_ref(), &name));
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Progress;

    #[test]
    fn the_bar_shows_share_rate_and_time_left() {
        let p = Progress {
            bytes: 50_000_000,
            total: 200_000_000,
            moved: 50_000_000,
            seconds: 1.0,
        };
        let bar = p.bar();
        assert!(bar.starts_with("[######..................]  25%"), "{bar}");
        assert!(bar.contains("50.0/200.0 MB"), "{bar}");
        assert!(bar.contains("50.0 MB/s"), "{bar}");
        assert!(bar.ends_with("3 s left"), "{bar}");
        assert!(peak_rss_mb() > 0.0);
    }
}
