//! Network namespaces for the end-to-end tests: a namespace named after the test process,
//! deleted when dropped (also when a test fails), programs started inside it with
//! `ip netns exec`, and a guard that moves the calling thread inside it (setns(2)) so the
//! test's own sockets (WebDriver, in-process clients and peers) are made there too. A
//! socket stays in the namespace it was created in, whichever thread uses it later.

use std::fs::File;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

/// Why namespaces cannot be made here, if they cannot: not root, no `ip`, or `ip netns add`
/// refused.
pub fn unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("network namespaces need root".into());
    }
    let probe = format!("duetprobe{}", std::process::id());
    let made = Command::new("ip")
        .args(["netns", "add", &probe])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success());
    match made {
        Err(e) => {
            return Some(format!(
                "cannot run `ip` (scripts/setup.sh installs iproute2): {e}"
            ))
        }
        Ok(false) => {
            return Some("cannot create network namespaces here (`ip netns add` failed)".into())
        }
        Ok(true) => {}
    }
    let _ = Command::new("ip").args(["netns", "del", &probe]).status();
    None
}

/// Runs `args`, which must succeed.
pub fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes the namespaces whose name starts with `prefix` followed by the id of a process
/// that is gone (left by a run that was killed).
pub fn remove_stale(prefix: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

static MADE: AtomicUsize = AtomicUsize::new(0);

/// A network namespace with its loopback up; deleted when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A fresh namespace named `PREFIX-PID-N` whose only interface is `lo`, up.
    pub fn new(prefix: &str) -> Netns {
        remove_stale(&format!("{prefix}-"));
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        Netns::named(&format!("{prefix}-{}-{n}", std::process::id()))
    }

    /// The namespace `name`, made now, with `lo` up.
    pub fn named(name: &str) -> Netns {
        run(&["ip", "netns", "add", name]);
        let ns = Netns {
            name: name.to_owned(),
        };
        run(&["ip", "-n", name, "link", "set", "lo", "up"]);
        ns
    }

    /// `program` to be run inside the namespace (through `ip netns exec`, which execs it: the
    /// child is the program itself).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Moves the calling thread into the namespace for as long as the guard lives; sockets it
    /// creates meanwhile belong to the namespace, and so do processes it spawns.
    pub fn enter(&self) -> Inside {
        let home = File::open("/proc/thread-self/ns/net").expect("this thread's namespace");
        self.enter_for_good();
        Inside {
            home,
            _thread: std::marker::PhantomData,
        }
    }

    /// Moves the calling thread into the namespace for the rest of its life (for the worker
    /// threads of a runtime whose sockets must be made inside).
    pub fn enter_for_good(&self) {
        enter_path(&self.name);
    }

    /// A hook that moves each thread it runs on into the namespace: for
    /// `tokio::runtime::Builder::on_thread_start`.
    pub fn thread_hook(&self) -> impl Fn() + Send + Sync + 'static {
        let name = self.name.clone();
        move || enter_path(&name)
    }
}

fn enter_path(name: &str) {
    let target = File::open(format!("/var/run/netns/{name}"))
        .unwrap_or_else(|e| panic!("namespace {name}: {e}"));
    move_into_link_name_space(target.as_fd(), Some(LinkNameSpaceType::Network))
        .unwrap_or_else(|e| panic!("setns into {name}: {e}"));
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The calling thread inside a namespace; dropped, it is back in the one it came from.
pub struct Inside {
    home: File,
    /// Tied to the thread that entered.
    _thread: std::marker::PhantomData<*const ()>,
}

impl Drop for Inside {
    fn drop(&mut self) {
        let _ = move_into_link_name_space(self.home.as_fd(), Some(LinkNameSpaceType::Network));
    }
}
