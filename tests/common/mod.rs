//! What the end-to-end tests share: a `duet serve` with accounts that are each other's
//! contacts, and `duet` processes run as those accounts, whose stderr is read line by line.

#![allow(dead_code)]

pub mod getstats;
pub mod netns;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const DUET: &str = env!("CARGO_BIN_EXE_duet");

/// A `duet` process whose stderr lines arrive on a channel.
pub struct Proc {
    pub child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    /// Waits for a line of stderr containing `needle`.
    pub fn wait_line(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?} within {within:?}: {:?}", self.seen),
            }
        }
    }

    /// Waits for the process to exit; returns its status, stdout and all of its stderr.
    pub fn finish(mut self, within: Duration) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("still running after {within:?}: {:?}", self.seen);
            }
            thread::sleep(Duration::from_millis(50));
        };
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            std::io::Read::read_to_string(&mut out, &mut stdout).expect("stdout");
        }
        // The reader thread ends with the process; take what it had left.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(line);
        }
        (status, stdout, self.seen.join("\n"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn(mut cmd: Command) -> Proc {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start duet");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, lines) = channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Proc {
        child,
        lines,
        seen: Vec::new(),
    }
}

/// A signaling server with accounts, and the commands to act as each of them.
pub struct World {
    pub dir: tempfile::TempDir,
    pub url: String,
    tokens: Vec<(String, String)>,
    /// The network namespace every `duet` process runs in, if not the test's own.
    netns: Option<String>,
    _server: Proc,
}

impl World {
    /// A server whose users are `names`; every pair of them are contacts.
    pub fn new(names: &[&str]) -> World {
        World::start(names, None)
    }

    /// A server whose users are `names`, as [`World::new`], with the server and every `duet`
    /// process of the world running inside `netns`.
    pub fn inside(names: &[&str], netns: &netns::Netns) -> World {
        World::start(names, Some(netns.name.clone()))
    }

    /// `duet`, inside the world's namespace if it has one.
    fn duet(netns: Option<&str>) -> Command {
        match netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns, DUET]);
                cmd
            }
            None => Command::new(DUET),
        }
    }

    fn start(names: &[&str], netns: Option<String>) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("duet.db");
        let mut tokens = Vec::new();
        for name in names {
            let out = Command::new(DUET)
                .args(["user", "add", name, "--db"])
                .arg(&db)
                .output()
                .expect("user add");
            assert!(out.status.success(), "{out:?}");
            let token = String::from_utf8(out.stdout)
                .expect("utf8")
                .trim()
                .to_owned();
            tokens.push((name.to_string(), token));
        }
        let mut serve = World::duet(netns.as_deref());
        serve
            .args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(&db);
        let mut server = spawn(serve);
        let line = server.wait_line("signaling on", Duration::from_secs(20));
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("ws://"))
            .expect("url")
            .to_owned();
        let world = World {
            dir,
            url,
            tokens,
            netns,
            _server: server,
        };
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                world.ok(a, &["contact", "add", b]);
                world.ok(b, &["contact", "accept", a]);
            }
        }
        world
    }

    /// The token of `user`.
    pub fn token(&self, user: &str) -> String {
        self.tokens
            .iter()
            .find(|(n, _)| n == user)
            .map(|(_, t)| t.clone())
            .expect("known user")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `duet ARGS` as `user`.
    pub fn cmd(&self, user: &str, args: &[&str]) -> Command {
        let token = &self
            .tokens
            .iter()
            .find(|(n, _)| n == user)
            .expect("known user")
            .1;
        let mut cmd = World::duet(self.netns.as_deref());
        cmd.args(args)
            .env("DUET_SERVER", &self.url)
            .env("DUET_USER", user)
            .env("DUET_TOKEN", token)
            .env("DUET_CONFIG", self.dir.path().join("no-login.json"))
            .env(
                "ALSA_CONFIG_PATH",
                concat!(env!("CARGO_MANIFEST_DIR"), "/media/testdata/asoundrc-null"),
            );
        cmd
    }

    pub fn ok(&self, user: &str, args: &[&str]) {
        let out = self.cmd(user, args).output().expect("run duet");
        assert!(out.status.success(), "{user} {args:?}: {out:?}");
    }

    /// `duet answer` as `user`, once it is waiting.
    pub fn answer(&self, user: &str, args: &[&str]) -> Proc {
        let mut all = vec!["answer", "--size", "320x240", "--video-kbps", "300"];
        all.extend_from_slice(args);
        let mut proc = spawn(self.cmd(user, &all));
        proc.wait_line("waiting for a call", Duration::from_secs(20));
        proc
    }

    /// `duet call NAME` as `user`.
    pub fn call(&self, user: &str, name: &str, args: &[&str]) -> Proc {
        let mut all = vec!["call", name, "--size", "320x240", "--video-kbps", "300"];
        all.extend_from_slice(args);
        spawn(self.cmd(user, &all))
    }
}

/// The JSON object a command printed.
pub fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout:?}"))
}
