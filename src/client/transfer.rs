//! Files between contacts: an offer through the signaling server (name, size, SHA-256), then
//! the bytes peer to peer over a WebRTC data channel ([`DataLink`]), driven by duet-share's
//! sans-IO [`Sender`] and [`Receiver`]. The receiving side writes into a quarantine folder,
//! checks the whole file, hands it to the virus scanner if one is configured, and only then
//! moves it into the target folder. A transfer cut midway resumes from the verified blocks
//! when the same file is offered again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use duet_media::call::EndReason;
use duet_media::ice::CandidatePath;
use duet_media::link::DataLink;
use duet_share::scan::Scanner;
use duet_share::transfer::files::{Incoming, Outcome, Outgoing};
use duet_share::transfer::{
    Hash256, Message, Offer, Receiver, ReceiverConfig, ReceiverEvent, Sender, SenderEvent,
};
use duet_signaling::protocol::{Invitation, InviteId, InviteState};
use duet_signaling::UserName;
use tokio::sync::watch;

use super::account::Account;
use super::error::{CallError, TransferError};
use super::invited::Invited;
use super::link::{open_link, LinkRole};
use super::route::{CallMsg, Route, RouteKind};

/// How long an offer waits for an answer.
const OFFER_TTL: Duration = Duration::from_secs(300);
/// Resume state is saved at least this often (bytes written since the last save).
const SAVE_EVERY: u64 = 8 * 1024 * 1024;

/// How far a transfer has come.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    /// Bytes of the file verified so far (sender: bytes acknowledged by requests for more).
    pub bytes: u64,
    /// The file's size.
    pub total: u64,
    /// Bytes moved in this session (a resumed transfer moves fewer than `total`).
    pub moved: u64,
    /// Seconds since the data started to flow.
    pub seconds: f64,
}

impl Progress {
    /// Throughput of this session, bytes per second.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.moved as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The fraction of the file that is here (1 for an empty file).
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            (self.bytes as f64 / self.total as f64).clamp(0.0, 1.0)
        }
    }

    /// Sizes, rate and time left: `90.0/200.0 MB  48.2 MB/s  2 s left`.
    pub fn summary(&self) -> String {
        let rate = self.rate();
        let left = if rate > 0.0 {
            format!(
                "{:.0} s left",
                (self.total.saturating_sub(self.bytes)) as f64 / rate
            )
        } else {
            "-".into()
        };
        format!(
            "{:.1}/{:.1} MB  {:.1} MB/s  {left}",
            self.bytes as f64 / 1e6,
            self.total as f64 / 1e6,
            rate / 1e6,
        )
    }

    /// A progress bar as one line of text: `[#########...........]  45%  90.0/200.0 MB  48.2
    /// MB/s  2 s left`.
    pub fn bar(&self) -> String {
        const WIDTH: usize = 24;
        let fraction = self.fraction();
        let filled = (fraction * WIDTH as f64).round() as usize;
        format!(
            "[{}{}] {:3.0}%  {}",
            "#".repeat(filled),
            ".".repeat(WIDTH - filled),
            fraction * 100.0,
            self.summary(),
        )
    }
}

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TransferOutcome {
    /// The file arrived whole (the receiver's side: where it was put).
    Delivered {
        /// Where the file is now (receiver), or the file sent (sender).
        path: PathBuf,
        /// Blocks that travelled in this session.
        blocks_moved: u64,
        /// Blocks already verified from an earlier, interrupted session.
        blocks_resumed: u64,
        /// Final progress figures.
        progress: Progress,
    },
    /// The receiver's virus scanner flagged the file: it stays in quarantine.
    Held {
        /// The scanner's name for what it found.
        reason: String,
    },
}

/// A transfer going on: its progress, and its end.
#[derive(Debug)]
pub struct Transfer {
    progress: watch::Receiver<Progress>,
    path: PathSlot,
    task: tokio::task::JoinHandle<Result<TransferOutcome, TransferError>>,
}

/// Where a transfer's task puts the path its link took, once the link is open.
type PathSlot = Arc<std::sync::Mutex<Option<CandidatePath>>>;

/// Opens the link and notes the path it took.
async fn open_noting_path(
    account: &Account,
    route: super::route::Route,
    role: LinkRole,
    slot: &PathSlot,
) -> Result<Arc<DataLink>, TransferError> {
    let link = open_link(account, route, role).await?;
    let path = link.refresh_path().await;
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = path;
    Ok(link)
}

impl Transfer {
    /// The path the transfer's link took when it opened (candidate types of the selected
    /// pair, W3C `RTCIceCandidateStats` names); `None` before it opened, or when the stack
    /// named no selected pair.
    pub fn path(&self) -> Option<CandidatePath> {
        self.path.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The latest progress.
    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    /// Waits for a progress change (false once the transfer is over).
    pub async fn changed(&mut self) -> bool {
        self.progress.changed().await.is_ok()
    }

    /// Waits for the end.
    pub async fn finish(self) -> Result<TransferOutcome, TransferError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(TransferError::Lost(format!(
                "the transfer task failed: {e}"
            ))),
        }
    }
}

/// A file a contact offers. Accept it into a folder, or decline; dropping it lets the offer
/// expire.
pub struct IncomingFile {
    invited: Invited,
    offer: Offer,
}

impl std::fmt::Debug for IncomingFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingFile")
            .field("from", &self.invited.from)
            .field("id", &self.invited.id)
            .field("name", &self.name())
            .field("size", &self.offer.size)
            .finish()
    }
}

/// How the receiving side treats a file.
#[derive(Debug, Clone, Default)]
pub struct ReceiveOptions {
    /// The scanner a file must pass before it leaves quarantine (none: verification only).
    pub scanner: Option<Scanner>,
    /// Limits of the receiver (size limit, window).
    pub limits: ReceiverConfig,
}

impl IncomingFile {
    pub(super) fn new(invited: Invited, offer: Offer) -> Self {
        Self { invited, offer }
    }

    /// Who offers it.
    pub fn from(&self) -> &UserName {
        &self.invited.from
    }

    /// The invitation's id.
    pub fn id(&self) -> InviteId {
        self.invited.id
    }

    /// The file's name (already checked: one safe component).
    pub fn name(&self) -> String {
        self.offer.name().to_string()
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.offer.size
    }

    /// Accepts it into `dir`: checks the size limit and prepares the quarantine (resuming a
    /// partial copy of the same file), tells the sender, and starts receiving. Nothing is
    /// written before this, and nothing reaches `dir` until the whole file verifies (and the
    /// scanner passes it).
    pub async fn accept(
        self,
        dir: &Path,
        options: ReceiveOptions,
    ) -> Result<Transfer, TransferError> {
        let (incoming, receiver) = match Incoming::accept(
            dir,
            self.offer.clone(),
            options.limits.clone(),
            Instant::now(),
        ) {
            Ok(pair) => pair,
            Err(e) => {
                let _ = self.invited.decline(Some(format!("refused: {e}"))).await;
                return Err(e.into());
            }
        };
        self.invited.accept().await?;
        let (progress_tx, progress) = watch::channel(Progress {
            total: self.offer.size,
            ..Progress::default()
        });
        let Invited { account, route, .. } = self.invited;
        let scanner = options.scanner.clone();
        let path = PathSlot::default();
        let slot = path.clone();
        let task = tokio::spawn(async move {
            let link = open_noting_path(&account, route, LinkRole::Answer, &slot).await?;
            receive(link, incoming, receiver, scanner, progress_tx).await
        });
        Ok(Transfer {
            progress,
            path,
            task,
        })
    }

    /// Declines the offer.
    pub async fn decline(self, reason: Option<String>) -> anyhow::Result<()> {
        Ok(self.invited.decline(reason).await?)
    }
}

/// Turns a file invitation into an offer the receiver can trust (a safe name, a well-formed
/// hash), or says why not.
pub(super) fn offer_of(name: &str, size: u64, sha256: &str) -> Result<Offer, duet_share::Error> {
    Offer::new(name, size, Hash256::from_hex(sha256)?)
}

/// Offers the file at `path` to `to`; see [`Client::send_file`](super::Client::send_file).
pub(super) async fn send_file(
    account: &Account,
    to: &str,
    path: &Path,
) -> Result<Transfer, TransferError> {
    let to = UserName::new(to).map_err(|e| CallError::Setup(e.to_string()))?;
    let path = path.to_owned();
    let outgoing = tokio::task::spawn_blocking(move || Outgoing::open(&path))
        .await
        .map_err(|e| TransferError::Lost(e.to_string()))??;
    let offer = outgoing.offer()?;
    let invitation = Invitation::File {
        name: offer.name().to_string(),
        size: offer.size,
        sha256: offer.sha256.to_hex(),
    };
    let (_, mut route) = account
        .invite_contact(&to, invitation, OFFER_TTL, RouteKind::Data, false)
        .await?;
    wait_accepted(&mut route, OFFER_TTL).await?;
    let (progress_tx, progress) = watch::channel(Progress {
        total: offer.size,
        ..Progress::default()
    });
    let account = account.clone();
    let path = PathSlot::default();
    let slot = path.clone();
    let task = tokio::spawn(async move {
        let link = open_noting_path(&account, route, LinkRole::Offer, &slot).await?;
        send(link, outgoing, progress_tx).await
    });
    Ok(Transfer {
        progress,
        path,
        task,
    })
}

/// Waits for the answer to an offer or invitation that expires after `ttl`.
pub(super) async fn wait_accepted(route: &mut Route, ttl: Duration) -> Result<(), CallError> {
    let deadline = tokio::time::Instant::now() + ttl + Duration::from_secs(3);
    loop {
        let msg = tokio::time::timeout_at(deadline, route.recv())
            .await
            .map_err(|_| CallError::NoAnswer)?;
        match msg {
            Some(CallMsg::State(InviteState::Accepted, _)) => return Ok(()),
            Some(CallMsg::State(InviteState::Declined, reason)) => {
                return Err(CallError::Declined(reason))
            }
            Some(CallMsg::State(InviteState::Expired, _)) => return Err(CallError::NoAnswer),
            Some(CallMsg::State(InviteState::Busy, _)) => return Err(CallError::Busy),
            Some(CallMsg::State(state, _)) if !state.is_live() => {
                return Err(CallError::Signaling(format!("the offer ended ({state:?})")))
            }
            Some(CallMsg::State(..) | CallMsg::Signal(_)) => {}
            Some(CallMsg::Overflow(reason)) => return Err(CallError::Signaling(reason)),
            None | Some(CallMsg::Closed(_)) => {
                return Err(CallError::Signaling(
                    "the connection to the server closed".into(),
                ))
            }
        }
    }
}

fn lost(reason: impl std::fmt::Display) -> TransferError {
    TransferError::Lost(reason.to_string())
}

/// The sending side's loop: answer the receiver's requests from the file.
async fn send(
    link: Arc<DataLink>,
    mut file: Outgoing,
    progress: watch::Sender<Progress>,
) -> Result<TransferOutcome, TransferError> {
    let total = file.manifest().file_size;
    let mut sender = Sender::new(file.manifest().clone());
    let started = Instant::now();
    let mut moved = 0u64;
    let mut out = Vec::with_capacity(16 * 1024);
    let mut done = false;
    let result = loop {
        // What the core wants done, then what it wants sent.
        while let Some(event) = sender.poll_event() {
            match event {
                SenderEvent::ReadBlock { block, offset, len } => {
                    let data = file.read_block(offset, len)?;
                    sender.block_read(block, &data)?;
                    moved += u64::from(len);
                    let _ = progress.send(Progress {
                        bytes: offset + u64::from(len),
                        total,
                        moved,
                        seconds: started.elapsed().as_secs_f64(),
                    });
                }
                SenderEvent::Done => done = true,
                SenderEvent::Cancelled { reason } => {
                    return finish_link(
                        &link,
                        if reason.starts_with("held") {
                            Ok(TransferOutcome::Held { reason })
                        } else {
                            Err(TransferError::Cancelled(reason))
                        },
                    )
                }
                SenderEvent::Failed(e) => return finish_link(&link, Err(e.into())),
            }
        }
        if done {
            break Ok(TransferOutcome::Delivered {
                path: PathBuf::new(),
                blocks_moved: sender.blocks_served(),
                blocks_resumed: 0,
                progress: Progress {
                    bytes: total,
                    total,
                    moved,
                    seconds: started.elapsed().as_secs_f64(),
                },
            });
        }
        while let Some(message) = sender.poll_transmit() {
            out.clear();
            message.encode(&mut out);
            link.send(&out).await.map_err(lost)?;
        }
        match next_message(&link, sender.poll_timeout()).await {
            Next::Message(message) => {
                if let Err(e) = sender.handle_message(Instant::now(), message) {
                    tracing::warn!("dropped a transfer message: {e}");
                }
            }
            Next::Dropped => {}
            Next::Ended => break Err(lost(link_end(&link))),
            Next::Timeout => sender.handle_timeout(Instant::now()),
        }
    };
    finish_link(&link, result)
}

/// The receiving side's loop: request, verify, write, check, scan, release.
async fn receive(
    link: Arc<DataLink>,
    mut incoming: Incoming,
    mut receiver: Receiver,
    scanner: Option<Scanner>,
    progress: watch::Sender<Progress>,
) -> Result<TransferOutcome, TransferError> {
    let total = receiver.offer().size;
    let started = Instant::now();
    let (mut moved, mut unsaved, mut verified) = (0u64, 0u64, 0u64);
    let mut out = Vec::with_capacity(16 * 1024);
    loop {
        while let Some(event) = receiver.poll_event() {
            match event {
                ReceiverEvent::Write {
                    block,
                    offset,
                    data,
                } => {
                    incoming.write_block(offset, &data)?;
                    receiver.block_written(block)?;
                    moved += data.len() as u64;
                    unsaved += data.len() as u64;
                    verified = verified.max(offset + data.len() as u64);
                    if unsaved >= SAVE_EVERY {
                        if let Some(state) = receiver.resume_state() {
                            incoming.save_state(&state)?;
                        }
                        unsaved = 0;
                    }
                    let _ = progress.send(Progress {
                        bytes: verified,
                        total,
                        moved,
                        seconds: started.elapsed().as_secs_f64(),
                    });
                }
                ReceiverEvent::Complete => {
                    let figures = Progress {
                        bytes: total,
                        total,
                        moved,
                        seconds: started.elapsed().as_secs_f64(),
                    };
                    let _ = progress.send(figures);
                    let outcome =
                        tokio::task::spawn_blocking(move || incoming.finish(scanner.as_ref()))
                            .await
                            .map_err(lost)?;
                    let result = match outcome {
                        Ok(Outcome::Released { path }) => {
                            receiver.finish();
                            let stats = receiver.stats();
                            Ok(TransferOutcome::Delivered {
                                path,
                                blocks_moved: stats.blocks_verified - stats.blocks_resumed,
                                blocks_resumed: stats.blocks_resumed,
                                progress: figures,
                            })
                        }
                        Ok(Outcome::Held { signature, .. }) => {
                            let reason = format!("held by the virus scanner: {signature}");
                            tracing::warn!("{} {reason}", receiver.offer().name());
                            receiver.cancel(&reason);
                            Ok(TransferOutcome::Held { reason })
                        }
                        Err(e) => {
                            receiver.cancel(&format!("the file did not pass: {e}"));
                            Err(e.into())
                        }
                    };
                    flush(&link, &mut receiver, &mut out).await;
                    // The sender closes the link once it has our last word; wait for that, so
                    // closing here cannot cut it off.
                    let _ = tokio::time::timeout(Duration::from_secs(3), async {
                        while link.recv().await.is_some() {}
                    })
                    .await;
                    return finish_link(&link, result);
                }
                ReceiverEvent::Cancelled { reason } => {
                    if let Some(state) = receiver.resume_state() {
                        let _ = incoming.save_state(&state);
                    }
                    return finish_link(&link, Err(TransferError::Cancelled(reason)));
                }
                ReceiverEvent::Failed(e) => {
                    if let Some(state) = receiver.resume_state() {
                        let _ = incoming.save_state(&state);
                    }
                    flush(&link, &mut receiver, &mut out).await;
                    return finish_link(&link, Err(e.into()));
                }
            }
        }
        while let Some(message) = receiver.poll_transmit() {
            out.clear();
            message.encode(&mut out);
            if let Err(e) = link.send(&out).await {
                save_quietly(&mut incoming, &receiver);
                return finish_link(&link, Err(lost(e)));
            }
        }
        match next_message(&link, receiver.poll_timeout()).await {
            Next::Message(message) => {
                if let Err(e) = receiver.handle_message(Instant::now(), message) {
                    tracing::warn!("dropped a transfer message: {e}");
                }
            }
            Next::Dropped => {}
            Next::Ended => {
                save_quietly(&mut incoming, &receiver);
                return finish_link(&link, Err(lost(link_end(&link))));
            }
            Next::Timeout => receiver.handle_timeout(Instant::now()),
        }
    }
}

/// What waiting for the peer's next transfer message gave.
enum Next {
    Message(Message),
    /// A message that did not decode: dropped and logged.
    Dropped,
    /// The core's timeout came first.
    Timeout,
    /// The link ended.
    Ended,
}

/// Waits for the peer's next transfer message until `deadline`, the core's next timeout
/// (a minute when it has none).
async fn next_message(link: &DataLink, deadline: Option<Instant>) -> Next {
    let wait = deadline
        .map(|t| t.saturating_duration_since(Instant::now()))
        .unwrap_or(Duration::from_secs(60));
    match tokio::time::timeout(wait, link.recv()).await {
        Ok(Some(bytes)) => match Message::decode(&bytes) {
            Ok(message) => Next::Message(message),
            Err(e) => {
                tracing::warn!("dropped a malformed transfer message: {e}");
                Next::Dropped
            }
        },
        Ok(None) => Next::Ended,
        Err(_) => Next::Timeout,
    }
}

/// Saves the resume state, so that offering the file again fetches only what is missing.
fn save_quietly(incoming: &mut Incoming, receiver: &Receiver) {
    if let Some(state) = receiver.resume_state() {
        if let Err(e) = incoming.save_state(&state) {
            tracing::warn!("cannot save the resume state: {e}");
        }
    }
}

/// Sends what the receiver still has to say (its final `Done` or `Cancel`).
async fn flush(link: &DataLink, receiver: &mut Receiver, out: &mut Vec<u8>) {
    while let Some(message) = receiver.poll_transmit() {
        out.clear();
        message.encode(out);
        if link.send(out).await.is_err() {
            return;
        }
    }
}

/// Why the link ended, in words.
fn link_end(link: &DataLink) -> String {
    link.end_reason()
        .map_or("the data channel closed".into(), |r: EndReason| {
            r.to_string()
        })
}

/// Closes the link after a transfer, letting what was sent drain first.
fn finish_link<T>(link: &Arc<DataLink>, result: T) -> T {
    link.hang_up("transfer over");
    result
}
