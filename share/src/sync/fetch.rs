//! Downloads of the sync engine: assembling a new version in a temporary file from local
//! blocks and blocks requested from the peer, and answering the peer's requests.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use super::engine::SyncEngine;
use super::event::{Action, Applied, Expect, SyncEvent};
use super::index::{block_len, BlockHash, FileEntry};
use super::message::{SyncMessage, DATA_CHUNK};
use super::path::STATE_DIR;
use super::work::{Busy, Job, JobKind, Request};
use crate::{Error, Result};

/// Most block reads for the peer waiting on the shell; requests beyond are answered Missing.
const MAX_SERVING: usize = 64;

impl SyncEngine {
    /// A fresh id for a download or a request.
    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Where each block hash can be found in a local file.
    fn local_blocks(&mut self) -> &HashMap<BlockHash, (String, u32)> {
        let local = &self.local;
        self.block_map.get_or_insert_with(|| {
            let mut map = HashMap::new();
            for e in local.live() {
                for (i, h) in e.blocks.iter().enumerate() {
                    map.entry(*h).or_insert_with(|| (e.path.clone(), i as u32));
                }
            }
            map
        })
    }

    /// Starts downloading `target` to its path, where the disk must hold `expect`.
    pub(super) fn start_job(
        &mut self,
        now: Instant,
        target: FileEntry,
        expect: Expect,
        kind: JobKind,
    ) {
        if self
            .refused
            .get(&target.path)
            .is_some_and(|r| r.same_content(&target))
        {
            return;
        }
        let id = self.next_id();
        let peer: String = self
            .cfg
            .peer
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(32)
            .collect();
        let temp = format!("{STATE_DIR}/tmp/{peer}-{id}.part");
        let path = target.path.clone();
        self.actions.push_back(Action::CreateTemp {
            job: id,
            temp: temp.clone(),
            size: target.size,
        });
        let mut job = Job {
            path: path.clone(),
            temp: temp.clone(),
            target: target.clone(),
            expect,
            kind,
            copying: BTreeMap::new(),
            wanted: BTreeMap::new(),
            finishing: false,
        };
        for (i, hash) in target.blocks.iter().enumerate() {
            let index = i as u32;
            let len = block_len(target.size, index);
            if let Some((from, from_index)) = self.local_blocks().get(hash).cloned() {
                job.copying.insert(index, from.clone());
                self.actions.push_back(Action::CopyBlock {
                    job: id,
                    temp: temp.clone(),
                    index,
                    from,
                    from_index,
                    len,
                    hash: *hash,
                });
            } else {
                let waiting = job.wanted.entry(*hash).or_default();
                if waiting.is_empty() {
                    self.queue.push_back((id, *hash));
                }
                waiting.push(index);
            }
        }
        self.busy.insert(path, Busy::Job(id));
        self.jobs.insert(id, job);
        self.maybe_finish(id);
        self.pump(now);
    }

    /// Abandons a download: its requests, its temporary file and its claim on the path.
    pub(super) fn cancel_job(&mut self, id: u64) {
        let Some(job) = self.jobs.remove(&id) else {
            return;
        };
        self.requests.retain(|_, r| r.job != id);
        self.queue.retain(|(j, _)| *j != id);
        if matches!(self.busy.get(&job.path), Some(Busy::Job(j)) if *j == id) {
            self.busy.remove(&job.path);
        }
        self.actions
            .push_back(Action::RemoveTemp { temp: job.temp });
        self.flush_deletes();
    }

    /// Abandons a download, tells the user, and schedules a retry.
    pub(super) fn fail_job(&mut self, now: Instant, id: u64, reason: String) {
        if let Some(path) = self.jobs.get(&id).map(|j| j.path.clone()) {
            self.cancel_job(id);
            self.report_failure(now, path, reason);
        }
    }

    /// Abandons a download whose content the shell refused, tells the user, and remembers
    /// the content so that it is not fetched again. No retry follows.
    pub(super) fn refuse_job(&mut self, id: u64, reason: String) {
        let Some(target) = self.jobs.get(&id).map(|j| j.target.clone()) else {
            return;
        };
        self.cancel_job(id);
        self.stats.refused += 1;
        self.events.push_back(SyncEvent::Failed {
            path: target.path.clone(),
            reason,
        });
        self.refused.insert(target.path.clone(), target);
    }

    /// Asks the shell to move the file into place once every block is written.
    fn maybe_finish(&mut self, id: u64) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.finishing || !job.copying.is_empty() || !job.wanted.is_empty() {
            return;
        }
        job.finishing = true;
        self.actions.push_back(Action::Finish {
            job: id,
            temp: job.temp.clone(),
            path: job.path.clone(),
            mtime: job.target.mtime,
            expect: job.expect,
        });
    }

    /// Sends queued block requests while fewer than the limit are in flight.
    pub(super) fn pump(&mut self, now: Instant) {
        while self.connected && self.requests.len() < self.cfg.max_requests {
            let Some((job, hash)) = self.queue.pop_front() else {
                break;
            };
            self.send_request(now, job, hash, 1);
        }
    }

    /// Sends a request for `hash`, for the first block of the download that needs it.
    fn send_request(&mut self, now: Instant, job: u64, hash: BlockHash, attempts: u32) {
        let Some(j) = self.jobs.get(&job) else {
            return;
        };
        let Some(&index) = j.wanted.get(&hash).and_then(|v| v.first()) else {
            return;
        };
        let len = block_len(j.target.size, index);
        let path = j.target.path.clone();
        let id = self.next_id();
        self.requests.insert(
            id,
            Request {
                job,
                hash,
                len,
                buf: Vec::with_capacity(len),
                deadline: now + self.cfg.request_timeout,
                attempts,
            },
        );
        self.stats.blocks_requested += 1;
        self.transmit.push_back(SyncMessage::Request {
            id,
            path,
            index,
            hash,
        });
    }

    /// Asks again for a block, or gives the download up after too many attempts.
    fn retry_request(&mut self, now: Instant, req: Request, reason: &str) {
        if req.attempts >= self.cfg.max_attempts {
            self.fail_job(
                now,
                req.job,
                format!("{reason} after {} attempts", req.attempts),
            );
        } else {
            self.send_request(now, req.job, req.hash, req.attempts + 1);
        }
    }

    /// Re-requests (or gives up on) requests past their deadline.
    pub(super) fn expire_requests(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(req) = self.requests.remove(&id) {
                self.retry_request(now, req, "no answer");
            }
        }
    }

    /// Takes part of a requested block; a complete block is checked against its hash and
    /// written to every place of the download that needs it.
    pub(super) fn handle_data(
        &mut self,
        now: Instant,
        id: u64,
        offset: u32,
        total: u32,
        data: Vec<u8>,
    ) -> Result<()> {
        self.stats.bytes_received += data.len() as u64;
        let Some(req) = self.requests.get_mut(&id) else {
            // An answer to an abandoned request.
            return Ok(());
        };
        if offset as usize != req.buf.len()
            || total as usize != req.len
            || req.buf.len() + data.len() > req.len
        {
            if let Some(req) = self.requests.remove(&id) {
                self.retry_request(now, req, "bad block data");
            }
            return Err(Error::Protocol(format!(
                "data out of place for request {id}"
            )));
        }
        req.buf.extend_from_slice(&data);
        if req.buf.len() < req.len {
            return Ok(());
        }
        let Some(req) = self.requests.remove(&id) else {
            return Ok(());
        };
        if BlockHash::of(&req.buf) != req.hash {
            self.stats.bad_blocks += 1;
            self.retry_request(now, req, "corrupt block");
            return Err(Error::Integrity(format!(
                "block of request {id} does not match its hash"
            )));
        }
        self.stats.blocks_received += 1;
        let Some(job) = self.jobs.get_mut(&req.job) else {
            return Ok(());
        };
        let indexes = job.wanted.remove(&req.hash).unwrap_or_default();
        let temp = job.temp.clone();
        for index in indexes {
            self.actions.push_back(Action::WriteBlock {
                job: req.job,
                temp: temp.clone(),
                index,
                data: req.buf.clone(),
            });
        }
        self.maybe_finish(req.job);
        Ok(())
    }

    /// The peer cannot serve a request: the download is abandoned and retried later.
    pub(super) fn handle_missing(&mut self, now: Instant, id: u64) {
        if let Some(req) = self.requests.remove(&id) {
            // The peer's file changed; its next index update restarts the download.
            self.fail_job(now, req.job, "the peer no longer has this version".into());
        }
    }

    /// Outcome of a local block copy; a failed copy becomes a request to the peer.
    pub(super) fn handle_block_copied(&mut self, now: Instant, job: u64, index: u32, ok: bool) {
        let Some(j) = self.jobs.get_mut(&job) else {
            return;
        };
        if j.copying.remove(&index).is_none() {
            return;
        }
        if ok {
            self.stats.blocks_copied += 1;
        } else if let Some(hash) = j.target.blocks.get(index as usize).copied() {
            let waiting = j.wanted.entry(hash).or_default();
            if waiting.is_empty() {
                self.queue.push_back((job, hash));
            }
            waiting.push(index);
            // The local file no longer matches the index: look at it again.
            self.block_map = None;
        }
        self.flush_deletes();
        self.maybe_finish(job);
        self.pump(now);
    }

    /// Outcome of moving a download into place: record the new version and tell the user.
    pub(super) fn handle_finished(&mut self, now: Instant, id: u64, result: Applied) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let path = job.path.clone();
        match result {
            Applied::Done => {
                let Some(job) = self.jobs.remove(&id) else {
                    return;
                };
                self.busy.remove(&path);
                let by = job.target.modified_by.clone();
                let event = match job.kind {
                    JobKind::Added => Some(SyncEvent::Added {
                        by,
                        path: path.clone(),
                    }),
                    JobKind::Changed => Some(SyncEvent::Changed {
                        by,
                        path: path.clone(),
                    }),
                    JobKind::Renamed { from } => Some(SyncEvent::Renamed {
                        by,
                        from,
                        to: path.clone(),
                    }),
                    JobKind::Quiet => None,
                };
                self.events.extend(event);
                let announce = self
                    .remote
                    .get(&path)
                    .is_none_or(|r| r.version != job.target.version);
                self.set_local(job.target.clone());
                if announce {
                    self.announce(vec![job.target]);
                }
                self.flush_deletes();
                self.reconcile(now, &path);
            }
            Applied::ChangedLocally => {
                self.cancel_job(id);
                self.actions.push_back(Action::Rescan { path });
            }
            Applied::Failed(reason) => self.fail_job(now, id, reason),
        }
    }

    /// The peer asks for a block: read it if the index still lists it, else answer Missing.
    pub(super) fn handle_request(&mut self, id: u64, path: &str, index: u32, hash: BlockHash) {
        let available = self
            .local
            .get(path)
            .filter(|e| !e.deleted && e.blocks.get(index as usize) == Some(&hash))
            .map(|e| block_len(e.size, index));
        match available {
            Some(len) if self.serving.len() < MAX_SERVING && !self.serving.contains_key(&id) => {
                self.serving.insert(id, hash);
                self.actions.push_back(Action::ReadBlock {
                    request: id,
                    path: path.to_string(),
                    index,
                    len,
                });
            }
            _ => self.transmit.push_back(SyncMessage::Missing { id }),
        }
    }

    /// The shell read a block for the peer: send it in chunks if it still matches its hash.
    pub(super) fn handle_block_read(&mut self, request: u64, data: Option<Vec<u8>>) {
        let Some(hash) = self.serving.remove(&request) else {
            return;
        };
        let data = data.filter(|d| BlockHash::of(d) == hash);
        let Some(data) = data.filter(|_| self.connected) else {
            if self.connected {
                self.transmit
                    .push_back(SyncMessage::Missing { id: request });
            }
            return;
        };
        self.stats.blocks_served += 1;
        let total = data.len() as u32;
        let mut offset = 0usize;
        for chunk in data.chunks(DATA_CHUNK) {
            self.transmit.push_back(SyncMessage::Data {
                id: request,
                offset: offset as u32,
                total,
                data: chunk.to_vec(),
            });
            offset += chunk.len();
        }
    }
}
