//! How the engine brings a path up to date: the peer's index entries, renames, newer
//! versions, conflicts and deletes.

use std::collections::BTreeSet;
use std::time::Instant;

use super::engine::{expect_of, SyncEngine};
use super::event::{Action, Applied, Expect, SyncEvent};
use super::index::{block_count, BlockHash, FileEntry};
use super::vv::VersionOrdering;
use super::work::{Busy, JobKind};
use crate::{Error, Result};

impl SyncEngine {
    /// Takes an `Index` message: valid entries are applied, invalid ones dropped (the last
    /// error is returned), and a last entry whose block list continues is held back.
    pub(super) fn handle_index(&mut self, now: Instant, entries: Vec<FileEntry>) -> Result<()> {
        let mut error = self
            .partial
            .take()
            .map(|e| Error::Protocol(format!("{}: block list cut short", e.path)));
        let count = entries.len();
        let mut valid = Vec::with_capacity(count);
        for (i, e) in entries.into_iter().enumerate() {
            let short = !e.deleted && (e.blocks.len() as u64) < block_count(e.size);
            if short && i + 1 == count {
                match e.validate_blocks(false) {
                    Ok(()) => self.partial = Some(e),
                    Err(err) => error = Some(err),
                }
                continue;
            }
            match e.validate() {
                Ok(()) => valid.push(e),
                Err(err) => error = Some(err),
            }
        }
        self.apply_remote(now, valid);
        match error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Appends block hashes to the entry held back by [`Self::handle_index`].
    pub(super) fn handle_more_blocks(
        &mut self,
        now: Instant,
        path: String,
        blocks: Vec<BlockHash>,
    ) -> Result<()> {
        let Some(mut entry) = self.partial.take() else {
            return Err(Error::Protocol(format!(
                "more blocks for {path} out of turn"
            )));
        };
        if entry.path != path {
            return Err(Error::Protocol(format!(
                "more blocks for {path} out of turn"
            )));
        }
        entry.blocks.extend(blocks);
        entry.validate_blocks(false)?;
        if (entry.blocks.len() as u64) < block_count(entry.size) {
            self.partial = Some(entry);
            return Ok(());
        }
        self.apply_remote(now, vec![entry]);
        Ok(())
    }

    /// Records the peer's entries and brings each path up to date, live files first.
    fn apply_remote(&mut self, now: Instant, mut entries: Vec<FileEntry>) {
        entries.sort_by_key(|e| e.deleted);
        self.find_renames(&entries);
        let paths: Vec<String> = entries.iter().map(|e| e.path.clone()).collect();
        for e in entries {
            self.remote.insert(e);
        }
        for path in paths {
            self.reconcile(now, &path);
        }
        self.rename_hints.clear();
        self.quiet_deletes.clear();
    }

    /// Pairs a tombstone and a new file with the same blocks in one batch as a rename.
    fn find_renames(&mut self, entries: &[FileEntry]) {
        let mut adds: Vec<&FileEntry> = entries
            .iter()
            .filter(|e| !e.deleted && !e.blocks.is_empty())
            .filter(|e| self.local.get(&e.path).is_none_or(|l| l.deleted))
            .collect();
        for t in entries.iter().filter(|e| e.deleted) {
            let Some(old) = self.local.get(&t.path).filter(|l| !l.deleted) else {
                continue;
            };
            if let Some(pos) = adds
                .iter()
                .position(|a| a.blocks == old.blocks && a.modified_by == t.modified_by)
            {
                let add = adds.remove(pos);
                self.rename_hints.insert(add.path.clone(), t.path.clone());
                self.quiet_deletes.insert(t.path.clone());
            }
        }
    }

    /// Compares the local and remote entries of `path` and starts what brings it up to date.
    pub(super) fn reconcile(&mut self, now: Instant, path: &str) {
        let Some(r) = self.remote.get(path).cloned() else {
            return;
        };
        match self.busy.get(path) {
            Some(Busy::Job(id)) => {
                let id = *id;
                // A download whose file is being moved into place finishes first; its outcome
                // reconciles the path again.
                let keep = self.jobs.get(&id).is_some_and(|j| {
                    j.finishing || (j.target.same_content(&r) && j.target.version == r.version)
                });
                if keep {
                    return;
                }
                self.cancel_job(id);
            }
            Some(_) => return,
            None => {}
        }
        let Some(l) = self.local.get(path).cloned() else {
            if !r.deleted {
                let kind = self.added_kind(path);
                self.start_job(now, r, Expect::Absent, kind);
            }
            return;
        };
        match l.version.compare(&r.version) {
            VersionOrdering::Equal | VersionOrdering::After => {}
            VersionOrdering::Before => self.take_newer(now, &l, r),
            VersionOrdering::Concurrent => self.resolve(now, &l, r),
        }
    }

    fn added_kind(&self, path: &str) -> JobKind {
        match self.rename_hints.get(path) {
            Some(from) => JobKind::Renamed { from: from.clone() },
            None => JobKind::Added,
        }
    }

    /// The peer's version descends from ours: take it.
    fn take_newer(&mut self, now: Instant, l: &FileEntry, r: FileEntry) {
        if l.same_content(&r) {
            let mtime = l.mtime;
            self.set_local(FileEntry { mtime, ..r });
        } else if r.deleted {
            self.schedule_delete(r);
        } else if l.deleted {
            let kind = self.added_kind(&r.path);
            self.start_job(now, r, Expect::Absent, kind);
        } else {
            let expect = expect_of(l);
            self.start_job(now, r, expect, JobKind::Changed);
        }
    }

    /// Both sides changed `path` without seeing each other's change. Both engines reach the
    /// same result: the merged version vector, the winner's content under the name, and the
    /// loser's content under a conflict name (made by the side that holds it).
    fn resolve(&mut self, now: Instant, l: &FileEntry, r: FileEntry) {
        let merged = l.version.merged(&r.version);
        if l.same_content(&r) || r.deleted {
            // Nothing to fetch; a local edit wins over a remote delete.
            let keep = FileEntry {
                version: merged,
                ..l.clone()
            };
            self.set_local(keep.clone());
            if !l.same_content(&r) {
                self.announce(vec![keep]);
            }
            return;
        }
        let winner = FileEntry {
            version: merged.clone(),
            ..r.clone()
        };
        if l.deleted {
            let kind = self.added_kind(&r.path);
            self.start_job(now, winner, Expect::Absent, kind);
            return;
        }
        if local_wins(l, &r) {
            let copy = super::path::conflict_name(&r.path, r.mtime, &r.modified_by);
            self.events.push_back(SyncEvent::Conflict {
                path: r.path.clone(),
                loser: r.modified_by.clone(),
                copy,
            });
            let keep = FileEntry {
                version: merged,
                ..l.clone()
            };
            self.set_local(keep.clone());
            self.announce(vec![keep]);
            return;
        }
        let copy = super::path::conflict_name(&l.path, l.mtime, &l.modified_by);
        self.events.push_back(SyncEvent::Conflict {
            path: l.path.clone(),
            loser: l.modified_by.clone(),
            copy: copy.clone(),
        });
        self.busy.insert(
            l.path.clone(),
            Busy::Moving {
                copy: copy.clone(),
                loser: l.clone(),
                winner,
            },
        );
        self.actions.push_back(Action::ConflictMove {
            path: l.path.clone(),
            copy,
            expect: expect_of(l),
        });
    }

    fn schedule_delete(&mut self, target: FileEntry) {
        let quiet = self.quiet_deletes.contains(&target.path);
        let path = target.path.clone();
        self.busy.insert(
            path,
            Busy::Deleting {
                target,
                quiet,
                sent: false,
            },
        );
        self.flush_deletes();
    }

    /// Sends the deletes whose files no download still copies blocks from.
    pub(super) fn flush_deletes(&mut self) {
        let waiting = |b: &Busy| matches!(b, Busy::Deleting { sent: false, .. });
        if !self.busy.values().any(waiting) {
            return;
        }
        let sources: BTreeSet<&str> = self
            .jobs
            .values()
            .flat_map(|j| j.copying.values().map(String::as_str))
            .collect();
        let mut ready = Vec::new();
        for (path, busy) in &self.busy {
            if let Busy::Deleting { sent: false, .. } = busy {
                if !sources.contains(path.as_str()) {
                    ready.push(path.clone());
                }
            }
        }
        for path in ready {
            if let Some(Busy::Deleting { sent, .. }) = self.busy.get_mut(&path) {
                *sent = true;
            }
            let expect = self.local.get(&path).map_or(Expect::Absent, expect_of);
            self.actions.push_back(Action::Delete { path, expect });
        }
    }

    /// Outcome of a delete: record the tombstone, or look at the file again.
    pub(super) fn handle_deleted(&mut self, now: Instant, path: String, result: Applied) {
        let Some(Busy::Deleting { target, quiet, .. }) = self.busy.remove(&path) else {
            return;
        };
        match result {
            Applied::Done => {
                if !quiet {
                    self.events.push_back(SyncEvent::Deleted {
                        by: target.modified_by.clone(),
                        path: path.clone(),
                    });
                }
                self.set_local(target);
                self.reconcile(now, &path);
            }
            Applied::ChangedLocally => self.actions.push_back(Action::Rescan { path }),
            Applied::Failed(reason) => self.report_failure(now, path, reason),
        }
    }

    /// Outcome of moving the losing version aside: record the conflict copy as a new file of
    /// ours and download the winner under the name.
    pub(super) fn handle_moved(&mut self, now: Instant, path: String, result: Applied) {
        let Some(Busy::Moving {
            copy,
            loser,
            winner,
        }) = self.busy.remove(&path)
        else {
            return;
        };
        match result {
            Applied::Done => {
                let mut version = self
                    .local
                    .get(&copy)
                    .map(|e| e.version.clone())
                    .unwrap_or_default();
                version.bump(&self.cfg.local);
                let entry = FileEntry {
                    path: copy,
                    version,
                    modified_by: self.cfg.local.clone(),
                    ..loser
                };
                self.set_local(entry.clone());
                self.local.remove(&path);
                self.generation += 1;
                self.announce(vec![entry]);
                self.start_job(now, winner, Expect::Absent, JobKind::Quiet);
            }
            Applied::ChangedLocally => self.actions.push_back(Action::Rescan { path }),
            Applied::Failed(reason) => self.report_failure(now, path, reason),
        }
    }
}

/// The deterministic winner of a conflict: the newer modification time, then the greater user
/// id, then the greater content. Both sides agree on it.
fn local_wins(l: &FileEntry, r: &FileEntry) -> bool {
    (l.mtime, &l.modified_by, l.size, &l.blocks) > (r.mtime, &r.modified_by, r.size, &r.blocks)
}
