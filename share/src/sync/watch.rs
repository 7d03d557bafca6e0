//! Noticing local changes: file-system notifications (the `notify` crate) turned into paths to
//! rescan, debounced, with a periodic full rescan as a safety net.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};

use super::path::STATE_DIR;
use crate::{Error, Result};

/// What to scan next, as decided by a [`Debouncer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rescan {
    /// These paths (files or folders), relative to the root.
    Paths(Vec<String>),
    /// The whole folder.
    Full,
}

/// Collects changed paths until they have been quiet for `delay`, and asks for a full rescan
/// every `period`. Sans-IO: it is told the time.
#[derive(Debug, Clone)]
pub struct Debouncer {
    delay: Duration,
    period: Duration,
    pending: BTreeMap<String, Instant>,
    next_full: Instant,
}

impl Debouncer {
    /// A debouncer whose first full rescan is due at once (`now`).
    pub fn new(now: Instant, delay: Duration, period: Duration) -> Self {
        Debouncer {
            delay,
            period,
            pending: BTreeMap::new(),
            next_full: now,
        }
    }

    /// Records that `path` changed at `now`. An empty path asks for a full rescan after the
    /// delay (as after a lost notification).
    pub fn push(&mut self, now: Instant, path: String) {
        if path.is_empty() {
            self.next_full = self.next_full.min(now + self.delay);
            return;
        }
        self.pending.insert(path, now);
    }

    /// What to scan now, if anything: a full rescan when due (it covers every pending path),
    /// else the paths quiet for the delay.
    pub fn poll(&mut self, now: Instant) -> Option<Rescan> {
        if now >= self.next_full {
            self.next_full = now + self.period;
            self.pending.clear();
            return Some(Rescan::Full);
        }
        let ready: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, &t)| now >= t + self.delay)
            .map(|(p, _)| p.clone())
            .collect();
        if ready.is_empty() {
            return None;
        }
        for p in &ready {
            self.pending.remove(p);
        }
        Some(Rescan::Paths(ready))
    }

    /// When [`poll`](Self::poll) next has something.
    pub fn poll_timeout(&self) -> Instant {
        self.pending
            .values()
            .map(|&t| t + self.delay)
            .fold(self.next_full, Instant::min)
    }
}

/// Watches a folder recursively and reports changed paths relative to its root, leaving out
/// duet's [`STATE_DIR`].
#[derive(Debug)]
pub struct FolderWatcher {
    _watcher: RecommendedWatcher,
    events: Receiver<notify::Result<notify::Event>>,
    root: PathBuf,
}

impl FolderWatcher {
    /// Starts watching `root` and everything below it.
    pub fn new(root: &Path) -> Result<Self> {
        let root = root.canonicalize().map_err(|e| Error::io(root, e))?;
        let (tx, events) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = tx.send(event);
        })
        .map_err(|e| Error::Config(format!("cannot watch {}: {e}", root.display())))?;
        watcher
            .watch(&root, RecursiveMode::Recursive)
            .map_err(|e| Error::Config(format!("cannot watch {}: {e}", root.display())))?;
        Ok(FolderWatcher {
            _watcher: watcher,
            events,
            root,
        })
    }

    /// Waits up to `timeout` for a notification, then takes all that are queued, and returns
    /// the changed paths relative to the root (an empty string when the watcher lost track and
    /// everything should be rescanned). Feed them to a [`Debouncer`].
    pub fn recv(&self, timeout: Duration) -> Vec<String> {
        let mut out = Vec::new();
        let first = match self.events.recv_timeout(timeout) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => return out,
            Err(RecvTimeoutError::Disconnected) => return vec![String::new()],
        };
        let mut batch = vec![first];
        batch.extend(self.events.try_iter());
        for event in batch {
            match event {
                Ok(event) if event.need_rescan() => out.push(String::new()),
                Ok(event) => out.extend(event.paths.iter().filter_map(|p| self.relative(p))),
                Err(_) => out.push(String::new()),
            }
        }
        out.sort();
        out.dedup();
        out
    }

    fn relative(&self, path: &Path) -> Option<String> {
        let rel = path.strip_prefix(&self.root).ok()?;
        let mut parts = Vec::new();
        for c in rel.components() {
            match c {
                Component::Normal(s) => parts.push(s.to_str()?),
                _ => return None,
            }
        }
        if parts.first() == Some(&STATE_DIR) || parts.is_empty() {
            return None;
        }
        Some(parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debounces_and_rescans_periodically() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = Debouncer::new(t0, s, 60 * s);
        assert_eq!(d.poll(t0), Some(Rescan::Full));
        d.push(t0, "a".into());
        d.push(t0 + s / 2, "a".into());
        assert_eq!(d.poll(t0 + s), None);
        assert_eq!(d.poll_timeout(), t0 + s / 2 + s);
        assert_eq!(d.poll(t0 + 2 * s), Some(Rescan::Paths(vec!["a".into()])));
        assert_eq!(d.poll(t0 + 3 * s), None);
        assert_eq!(d.poll(t0 + 60 * s), Some(Rescan::Full));
        d.push(t0 + 61 * s, String::new());
        assert_eq!(d.poll(t0 + 62 * s), Some(Rescan::Full));
    }
}
