//! Files between two `duet` processes on 127.0.0.1, timed: a signaling server and two accounts,
//! then (1) one big random file with `duet send` and `duet answer --accept-files`, reporting the
//! rate and both sides' peak RSS, and (2) a sharing folder of many small files, from `duet share
//! accept` to the last file on disk.
//!
//! ```text
//! cargo build --release -p duet -p duet-bench
//! target/release/files [--mb 200] [--files 1000] [--json]
//! ```
//!
//! It runs the `duet` binary that sits next to it in the target folder.

use std::io::{BufRead, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

type Result<T> = std::result::Result<T, String>;

struct Args {
    mb: usize,
    files: usize,
    json: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        mb: 200,
        files: 1000,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut number = |name: &str| -> Result<usize> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|&v| v > 0)
                .ok_or(format!("{name} needs a positive number"))
        };
        match a.as_str() {
            "--mb" => args.mb = number("--mb")?,
            "--files" => args.files = number("--files")?,
            "--json" => args.json = true,
            other => {
                return Err(format!(
                    "unknown option {other}; use [--mb N] [--files N] [--json]"
                ))
            }
        }
    }
    Ok(args)
}

/// The `duet` binary beside this one.
fn duet_binary() -> Result<PathBuf> {
    let me = std::env::current_exe().map_err(|e| format!("where am I: {e}"))?;
    let path = me.with_file_name("duet");
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: build it with `cargo build --release -p duet`",
            path.display()
        ))
    }
}

/// A server with alice and bob as contacts, and the commands to act as them.
struct World {
    duet: PathBuf,
    dir: tempfile::TempDir,
    url: String,
    tokens: [(String, String); 2],
    server: Child,
}

impl World {
    fn new(duet: PathBuf) -> Result<World> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let db = dir.path().join("duet.db");
        let token = |name: &str| -> Result<(String, String)> {
            let out = Command::new(&duet)
                .args(["user", "add", name, "--db"])
                .arg(&db)
                .output()
                .map_err(|e| e.to_string())?;
            let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            Ok((name.to_owned(), token))
        };
        let tokens = [token("alice")?, token("bob")?];
        let mut server = Command::new(&duet)
            .args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(&db)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("duet serve: {e}"))?;
        let stderr = server.stderr.take().ok_or("no stderr")?;
        let mut line = String::new();
        BufReader::new(stderr)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("ws://"))
            .ok_or(format!("no URL in {line:?}"))?
            .to_owned();
        let world = World {
            duet,
            dir,
            url,
            tokens,
            server,
        };
        world.run("alice", &["contact", "add", "bob"])?;
        world.run("bob", &["contact", "accept", "alice"])?;
        Ok(world)
    }

    fn cmd(&self, user: &str, args: &[&str]) -> Command {
        let token = self
            .tokens
            .iter()
            .find(|(n, _)| n == user)
            .map(|(_, t)| t.clone())
            .unwrap_or_default();
        let mut cmd = Command::new(&self.duet);
        cmd.args(args)
            .env("DUET_SERVER", &self.url)
            .env("DUET_USER", user)
            .env("DUET_TOKEN", token)
            .env("DUET_CONFIG", self.dir.path().join("login.json"))
            .env("DUET_LOG", "error");
        cmd
    }

    fn run(&self, user: &str, args: &[&str]) -> Result<String> {
        let out = self
            .cmd(user, args)
            .output()
            .map_err(|e| format!("duet {args:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "duet {args:?} as {user}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// Pseudo-random bytes, written in 1 MiB pieces.
fn random_file(path: &Path, bytes: usize, mut state: u64) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut piece = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for chunk in piece.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let b = state.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        let n = left.min(piece.len());
        file.write_all(&piece[..n]).map_err(|e| e.to_string())?;
        left -= n;
    }
    Ok(())
}

fn output_json(child: Child) -> Result<Value> {
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

/// One big file from alice to bob.
fn transfer(world: &World, mb: usize) -> Result<Value> {
    let file = world.dir.path().join("big.bin");
    random_file(&file, mb * 1_000_000, 0x5eed)?;
    let inbox = world.dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).map_err(|e| e.to_string())?;
    let mut bob = world
        .cmd("bob", &["answer", "--accept-files"])
        .arg(&inbox)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    // Bob is listening once he has said so.
    let mut first = [0u8; 1];
    if let Some(err) = bob.stderr.as_mut() {
        let _ = err.read(&mut first);
    }
    std::thread::sleep(Duration::from_millis(300));
    let alice = world
        .cmd("alice", &["send", "bob"])
        .arg(&file)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let sent = output_json(alice)?;
    let received = output_json(bob)?;
    if received["outcome"] != "delivered" {
        return Err(format!("the file did not arrive: {received}"));
    }
    Ok(json!({
        "mb": mb,
        "seconds": received["seconds"],
        "mb_per_s": received["mb_per_s"],
        "sender_peak_rss_mb": sent["peak_rss_mb"],
        "receiver_peak_rss_mb": received["peak_rss_mb"],
    }))
}

/// A sharing folder of `files` small files from alice, joined by bob.
fn folder(world: &World, files: usize) -> Result<Value> {
    let mine = world.dir.path().join("alice-folder");
    let theirs = world.dir.path().join("bob-folder");
    let mut bytes = 0usize;
    for n in 0..files {
        let dir = mine.join(format!("dir{:02}", n % 10));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let size = 1000 + (n * 7919) % 7000;
        random_file(&dir.join(format!("file{n:05}.txt")), size, n as u64 + 1)?;
        bytes += size;
    }
    let mut alice = world
        .cmd("alice", &["share", "create", "bob"])
        .arg(&mine)
        .args(["--seconds", "300"])
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let list = world.run("bob", &["share", "list"])?;
        if let Some(id) = list
            .lines()
            .find_map(|l| l.strip_prefix("invitation "))
            .and_then(|l| l.split(':').next())
        {
            break id.to_owned();
        }
        if Instant::now() > deadline {
            let _ = alice.kill();
            return Err("bob never saw the invitation".into());
        }
    };
    let started = Instant::now();
    let mut bob = world
        .cmd("bob", &["share", "accept", &id])
        .arg(&theirs)
        .args(["--seconds", "300"])
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let count = |dir: &Path| -> usize {
        (0..10)
            .map(|d| {
                std::fs::read_dir(dir.join(format!("dir{d:02}")))
                    .map(|rd| rd.count())
                    .unwrap_or(0)
            })
            .sum()
    };
    while count(&theirs) < files && started.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let seconds = started.elapsed().as_secs_f64();
    let arrived = count(&theirs);
    let _ = alice.kill();
    let _ = bob.kill();
    let _ = (alice.wait(), bob.wait());
    if arrived < files {
        return Err(format!("only {arrived} of {files} files arrived"));
    }
    Ok(json!({ "files": files, "bytes": bytes, "seconds": seconds }))
}

fn main() {
    let result = parse_args().and_then(|args| {
        let world = World::new(duet_binary()?)?;
        let big = transfer(&world, args.mb)?;
        let small = folder(&world, args.files)?;
        Ok((args, big, small))
    });
    match result {
        Ok((args, big, small)) if args.json => {
            println!("{}", json!({ "transfer": big, "folder": small }));
        }
        Ok((_, big, small)) => {
            println!(
                "{} MB with duet send: {:.1} s, {:.2} MB/s; peak RSS sender {} MiB, receiver {} MiB",
                big["mb"],
                big["seconds"].as_f64().unwrap_or(0.0),
                big["mb_per_s"].as_f64().unwrap_or(0.0),
                big["sender_peak_rss_mb"],
                big["receiver_peak_rss_mb"]
            );
            println!(
                "{} small files ({:.2} MB) in a sharing folder: {:.2} s from `duet share accept` to the last file",
                small["files"],
                small["bytes"].as_f64().unwrap_or(0.0) / 1e6,
                small["seconds"].as_f64().unwrap_or(0.0)
            );
        }
        Err(e) => {
            eprintln!("files: {e}");
            std::process::exit(1);
        }
    }
}
