//! Sharing folders: a folder kept equal on two contacts' machines while both are online. The
//! invitation goes through the signaling server; the sync itself runs peer to peer over a
//! [`DataLink`], driven by duet-share's sans-IO [`SyncEngine`] and its [`Folder`] shell, with a
//! file watcher (and a periodic rescan as a safety net) noticing local changes. Each side's
//! index (block hashes, version vectors, tombstones) is exchanged on connect, so a contact who
//! was offline catches up. A file arriving from the peer can be handed to a virus scanner before
//! it takes its place; a flagged file never does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use duet_media::link::DataLink;
use duet_share::scan::{Scanner, Verdict};
use duet_share::sync::{
    Action, Debouncer, Folder, FolderWatcher, Outcome, Rescan, SyncConfig, SyncEngine, SyncEvent,
    SyncStats,
};
use duet_signaling::protocol::{Invitation, InviteId};
use duet_signaling::UserName;
use tokio::sync::watch;

use super::account::{Account, Notice};
use super::error::CallError;
use super::error::TransferError;
use super::invited::Invited;
use super::link::{open_link, LinkRole};
use super::route::RouteKind;

/// How long a folder invitation waits for an answer.
const INVITE_TTL: Duration = Duration::from_secs(300);
/// How long the watcher waits for more changes before a rescan.
const SETTLE: Duration = Duration::from_millis(300);

/// How a sharing folder is kept.
#[derive(Debug, Clone)]
pub struct ShareOptions {
    /// A file from the peer must pass this scanner before it takes its place.
    pub scanner: Option<Scanner>,
    /// A full rescan this often, in case the watcher missed something.
    pub rescan_every: Duration,
}

impl Default for ShareOptions {
    /// No scanner; a full rescan every minute.
    fn default() -> Self {
        Self {
            scanner: None,
            rescan_every: Duration::from_secs(60),
        }
    }
}

/// A contact's invitation to a sharing folder.
pub struct FolderInvitation {
    invited: Invited,
    name: String,
}

impl std::fmt::Debug for FolderInvitation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FolderInvitation")
            .field("from", &self.invited.from)
            .field("id", &self.invited.id)
            .field("name", &self.name)
            .finish()
    }
}

impl FolderInvitation {
    pub(super) fn new(invited: Invited, name: String) -> Self {
        Self { invited, name }
    }

    /// Who invites.
    pub fn from(&self) -> &UserName {
        &self.invited.from
    }

    /// The invitation's id (`duet share accept ID DIR`).
    pub fn id(&self) -> InviteId {
        self.invited.id
    }

    /// The folder's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Joins with the local folder `dir` (created if missing) and starts syncing.
    pub async fn accept(
        self,
        dir: &Path,
        options: ShareOptions,
    ) -> Result<ShareSession, TransferError> {
        std::fs::create_dir_all(dir).map_err(|e| duet_share::Error::io(dir, e))?;
        let folder = Folder::open(dir)?;
        self.invited.accept().await?;
        let Invited {
            account,
            from,
            route,
            ..
        } = self.invited;
        let link = open_link(&account, route, LinkRole::Answer).await?;
        Ok(ShareSession::start(
            account.clone(),
            link,
            folder,
            self.name,
            from,
            options,
        ))
    }

    /// Declines the invitation.
    pub async fn decline(self, reason: Option<String>) -> anyhow::Result<()> {
        Ok(self.invited.decline(reason).await?)
    }
}

/// Invites `to` to share the folder `dir`; see [`Client::share_folder`](super::Client::share_folder).
pub(super) async fn share_folder(
    account: &Account,
    to: &str,
    dir: &Path,
    options: ShareOptions,
) -> Result<ShareSession, TransferError> {
    let to = UserName::new(to).map_err(|e| CallError::Setup(e.to_string()))?;
    let folder = Folder::open(dir)?;
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "shared".into());
    // The contact may be offline: the invitation waits for their next login.
    let invitation = Invitation::Folder { name: name.clone() };
    let (_, mut route) = account
        .invite_contact(&to, invitation, INVITE_TTL, RouteKind::Data, true)
        .await?;
    super::transfer::wait_accepted(&mut route, INVITE_TTL).await?;
    let link = open_link(account, route, LinkRole::Offer).await?;
    Ok(ShareSession::start(
        account.clone(),
        link,
        folder,
        name,
        to,
        options,
    ))
}

/// What a sync session did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShareSummary {
    /// The engine's counters (blocks requested, received, copied locally, served...).
    pub stats: SyncStats,
    /// Files in the folder's index at the end (deleted ones not counted).
    pub files: usize,
    /// Why the session ended.
    pub end: String,
    /// The path the session's link took (candidate types of the selected pair, W3C
    /// `RTCIceCandidateStats` names), as last seen; `None` when the stack named none.
    pub path: Option<duet_media::ice::CandidatePath>,
}

/// A sharing folder being kept in sync with a contact.
#[derive(Debug)]
pub struct ShareSession {
    name: String,
    peer: UserName,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<ShareSummary, TransferError>>,
}

impl ShareSession {
    fn start(
        account: Account,
        link: Arc<DataLink>,
        folder: Folder,
        name: String,
        peer: UserName,
        options: ShareOptions,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let me = account.user().to_string();
        let task = tokio::spawn(sync(
            account,
            link,
            folder,
            name.clone(),
            SyncConfig::new(me, peer.to_string()),
            options,
            stopped,
        ));
        Self {
            name,
            peer,
            stop,
            task,
        }
    }

    /// The folder's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The contact it is shared with.
    pub fn peer(&self) -> &UserName {
        &self.peer
    }

    /// Whether the session has ended on its own (the peer left, the link failed).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops syncing (what is in flight is abandoned and resumes next time) and returns what
    /// the session did.
    pub async fn stop(self) -> Result<ShareSummary, TransferError> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(TransferError::Lost(format!("the sync task failed: {e}"))),
        }
    }
}

/// The sync loop: scans and watcher in, engine in the middle, link and disk out.
async fn sync(
    account: Account,
    link: Arc<DataLink>,
    folder: Folder,
    name: String,
    config: SyncConfig,
    options: ShareOptions,
    mut stopped: watch::Receiver<bool>,
) -> Result<ShareSummary, TransferError> {
    let peer = UserName::new(&config.peer).map_err(|e| CallError::Setup(e.to_string()))?;
    let opened_on = link.refresh_path().await;
    let index = folder.load_index()?;
    let mut engine = SyncEngine::new(config, index);
    let now = Instant::now();
    let scan = tokio::task::block_in_place(|| folder.scan(engine.index()))?;
    engine.handle_scan(now, scan);
    let watcher = FolderWatcher::new(folder.root())?;
    let mut debouncer = Debouncer::new(now, SETTLE, options.rescan_every);
    engine.handle_connected(now);
    let mut saved = u64::MAX;
    let end = loop {
        let now = Instant::now();
        // Local changes the watcher saw, once they settle.
        for path in watcher.recv(Duration::ZERO) {
            debouncer.push(now, path);
        }
        if let Some(rescan) = debouncer.poll(now) {
            let scan = tokio::task::block_in_place(|| match rescan {
                Rescan::Paths(paths) => folder.scan_paths(engine.index(), &paths),
                Rescan::Full => folder.scan(engine.index()),
            })?;
            engine.handle_scan(now, scan);
        }
        tokio::task::block_in_place(|| apply(&folder, &mut engine, options.scanner.as_ref()));
        while let Some(event) = engine.poll_event() {
            account.notify(Notice::FolderChanged {
                folder: name.clone(),
                peer: peer.clone(),
                event,
            });
        }
        if engine.index_generation() != saved {
            saved = engine.index_generation();
            tokio::task::block_in_place(|| folder.save_index(engine.index()))?;
        }
        let mut lost = None;
        while let Some(message) = engine.poll_transmit() {
            if let Err(e) = link.send(&message.encode()).await {
                lost = Some(e.to_string());
                break;
            }
        }
        if let Some(reason) = lost {
            break reason;
        }
        let wake = [engine.poll_timeout(), Some(debouncer.poll_timeout())]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + Duration::from_secs(1));
        // The watcher is polled at least this often.
        let wait = wake
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        tokio::select! {
            message = link.recv() => match message {
                Some(bytes) => {
                    if let Err(e) = engine.handle_bytes(Instant::now(), &bytes) {
                        tracing::warn!("dropped a sync message: {e}");
                    }
                }
                None => {
                    break link
                        .end_reason()
                        .map_or("the link closed".into(), |r| r.to_string());
                }
            },
            _ = tokio::time::sleep(wait) => engine.handle_timeout(Instant::now()),
            _ = stopped.changed() => break "stopped".into(),
        }
    };
    engine.handle_disconnected(Instant::now());
    tokio::task::block_in_place(|| apply(&folder, &mut engine, options.scanner.as_ref()));
    tokio::task::block_in_place(|| folder.save_index(engine.index()))?;
    link.hang_up("sharing stopped");
    Ok(ShareSummary {
        stats: engine.stats(),
        files: engine.index().live().count(),
        end,
        path: link.stats().path.or(opened_on),
    })
}

/// Applies the engine's actions to the folder; a finished download first goes past the
/// scanner, and a flagged one is removed and reported instead of taking its place.
fn apply(folder: &Folder, engine: &mut SyncEngine, scanner: Option<&Scanner>) {
    let now = Instant::now();
    while let Some(action) = engine.poll_action() {
        if let Action::Rescan { path } = &action {
            if let Ok(scan) = folder.scan_path(engine.index(), path) {
                engine.handle_scan(now, scan);
            }
            continue;
        }
        if let (
            Action::Finish {
                job, temp, path, ..
            },
            Some(scanner),
        ) = (&action, scanner)
        {
            let file: PathBuf = folder.temp_file(temp);
            let job = *job;
            let refusal = match scanner.scan(&file) {
                Ok(Verdict::Clean) => None,
                Ok(Verdict::Infected { signature }) => {
                    tracing::warn!(
                        "{path} from the sharing folder held by the virus scanner: {signature}"
                    );
                    let reason = format!("held by the virus scanner: {signature}");
                    Some(Outcome::JobRefused { job, reason })
                }
                Ok(Verdict::TimedOut { after }) => {
                    tracing::warn!(
                        "{path} from the sharing folder held: the virus scanner gave no verdict within {after:?}"
                    );
                    let reason =
                        format!("held: the virus scanner gave no verdict within {after:?}");
                    Some(Outcome::JobRefused { job, reason })
                }
                // Tried again later: the scanner may come back.
                Err(e) => {
                    let reason = format!("not scanned, so not taken: {e}");
                    Some(Outcome::JobFailed { job, reason })
                }
            };
            if let Some(refusal) = refusal {
                let _ = std::fs::remove_file(&file);
                engine.handle_outcome(now, refusal);
                continue;
            }
        }
        if let Some(outcome) = folder.apply(&action) {
            engine.handle_outcome(now, outcome);
        }
    }
}

/// A change in a sharing folder, as one line (`alice added report.pdf`).
pub fn describe(folder: &str, event: &SyncEvent) -> String {
    format!("[{folder}] {event}")
}
