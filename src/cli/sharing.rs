//! `duet share create NAME DIR`, `duet share accept ID DIR` and `duet share list`: sharing
//! folders with a contact, kept in sync while both run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use crate::cli::social::{config, ConnectArgs};
use crate::client::{
    describe_folder_change, ClientEvent, ClientEvents, ShareOptions, ShareSession,
};

/// `duet share ...`.
#[derive(Args, Debug, Clone)]
pub struct ShareArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ShareAction,
    /// Where and as whom.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Sharing-folder commands.
#[derive(Subcommand, Debug, Clone)]
pub enum ShareAction {
    /// Share the folder DIR with contact NAME and keep it in sync while both are online.
    Create {
        /// The contact.
        name: String,
        /// The folder.
        dir: PathBuf,
        /// How the sync runs.
        #[command(flatten)]
        run: RunArgs,
    },
    /// Join a sharing folder a contact invited you to, with the local folder DIR.
    Accept {
        /// The invitation's id (see `duet share list`).
        id: u64,
        /// The local folder (created if missing).
        dir: PathBuf,
        /// How the sync runs.
        #[command(flatten)]
        run: RunArgs,
    },
    /// Your sharing folders, and the invitations waiting for an answer.
    List,
}

/// How a sync session runs.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Stop after this many seconds (else on Ctrl-C or when the contact leaves).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Files from the contact must pass this virus scanner, e.g. "clamscan --no-summary {file}".
    #[arg(long)]
    pub scanner: Option<String>,
    /// A full rescan this often, seconds, in case the file watcher missed something.
    #[arg(long, default_value_t = 60)]
    pub rescan_seconds: u64,
    /// Print the session's figures as one JSON object at the end.
    #[arg(long)]
    pub json: bool,
}

/// A sharing folder this machine keeps, as remembered for `duet share list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownShare {
    /// The local account that keeps it.
    pub user: String,
    /// The folder's name.
    pub name: String,
    /// The contact.
    pub peer: String,
    /// Where it is here.
    pub dir: PathBuf,
}

fn registry_path() -> Result<PathBuf> {
    let login = config::config_path()?;
    Ok(login.with_file_name("shares.json"))
}

/// The shares remembered on this machine; an unreadable list counts as empty (it is only a
/// convenience for `duet share list`: the folders keep their own state).
fn load_registry(path: &Path) -> Vec<KnownShare> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!("ignoring {}: {e}", path.display());
            Vec::new()
        }),
        Err(_) => Vec::new(),
    }
}

fn remember(share: KnownShare) -> Result<()> {
    let path = registry_path()?;
    let mut known = load_registry(&path);
    known.retain(|k| !(k.user == share.user && k.peer == share.peer && k.name == share.name));
    known.push(share);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Written aside and renamed into place, so a reader never sees half a list.
    let tmp = path.with_extension(format!("json.{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec_pretty(&known)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

impl RunArgs {
    fn options(&self) -> Result<ShareOptions> {
        let scanner = crate::cli::files::scanner_arg(self.scanner.as_deref())?;
        if self.rescan_seconds == 0 {
            bail!("--rescan-seconds must be at least 1");
        }
        Ok(ShareOptions {
            scanner,
            rescan_every: Duration::from_secs(self.rescan_seconds),
        })
    }

    fn limit(&self) -> Result<Option<Duration>> {
        match self.seconds {
            None => Ok(None),
            Some(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 * 365.0 => {
                Ok(Some(Duration::from_secs_f64(s)))
            }
            Some(s) => bail!("--seconds {s}: give a positive number of seconds"),
        }
    }
}

/// Runs `duet share ...`; returns the exit status.
pub fn share(args: ShareArgs) -> Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let (client, mut events) = args.connect.client().await?;
        let code = match &args.action {
            ShareAction::Create { name, dir, run } => {
                let options = run.options()?;
                if !dir.is_dir() {
                    bail!("{} is not a folder", dir.display());
                }
                eprintln!("inviting {name} to share {}...", dir.display());
                let session = client
                    .share_folder(name, dir, options)
                    .await
                    .with_context(|| format!("sharing {} with {name}", dir.display()))?;
                remember(KnownShare {
                    user: client.user().to_string(),
                    name: session.name().to_owned(),
                    peer: name.clone(),
                    dir: dir.canonicalize().unwrap_or_else(|_| dir.clone()),
                })?;
                eprintln!("{name} joined {:?}: syncing", session.name());
                follow(session, &mut events, run).await?
            }
            ShareAction::Accept { id, dir, run } => {
                let options = run.options()?;
                let invite = wait_invitation(&mut events, *id).await?;
                let peer = invite.from().to_string();
                eprintln!(
                    "joining {:?} from {peer} in {}...",
                    invite.name(),
                    dir.display()
                );
                let session = invite
                    .accept(dir, options)
                    .await
                    .with_context(|| format!("joining the sharing folder {id}"))?;
                remember(KnownShare {
                    user: client.user().to_string(),
                    name: session.name().to_owned(),
                    peer,
                    dir: dir.canonicalize().unwrap_or_else(|_| dir.clone()),
                })?;
                eprintln!("syncing");
                follow(session, &mut events, run).await?
            }
            ShareAction::List => {
                list(client.user().as_str(), &mut events).await?;
                0
            }
        };
        client.close().await;
        Ok(code)
    })
}

/// The invitation `id`, which the server shows again at every login while it waits.
async fn wait_invitation(
    events: &mut ClientEvents,
    id: u64,
) -> Result<crate::client::FolderInvitation> {
    let found = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(event) = events.recv().await {
            if let ClientEvent::FolderInvite(invite) = event {
                if invite.id().0 == id {
                    return Some(invite);
                }
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(invite)) => Ok(invite),
        _ => bail!("no folder invitation {id} is waiting for you (see `duet share list`)"),
    }
}

/// Prints the folder's changes as they happen until the session ends, the time is up, or Ctrl-C.
async fn follow(session: ShareSession, events: &mut ClientEvents, run: &RunArgs) -> Result<u8> {
    let until = run
        .limit()?
        .map(|d| tokio::time::Instant::now() + d)
        .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400 * 365));
    loop {
        if session.is_finished() {
            break;
        }
        tokio::select! {
            event = events.recv() => match event {
                Some(ClientEvent::FolderChanged { folder, event, .. }) => {
                    eprintln!("{}", describe_folder_change(&folder, &event));
                }
                Some(_) => {}
                None => break,
            },
            _ = tokio::time::sleep_until(until) => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    // Changes reported while stopping.
    while let Some(event) = events.try_recv() {
        if let ClientEvent::FolderChanged { folder, event, .. } = event {
            eprintln!("{}", describe_folder_change(&folder, &event));
        }
    }
    let summary = session.stop().await?;
    let s = &summary.stats;
    eprintln!(
        "sync ended ({}): {} files; {} blocks received, {} copied locally, {} served, {} bad",
        summary.end,
        summary.files,
        s.blocks_received,
        s.blocks_copied,
        s.blocks_served,
        s.bad_blocks
    );
    if run.json {
        println!(
            "{}",
            serde_json::json!({
                "end": summary.end,
                "files": summary.files,
                "blocks_requested": s.blocks_requested,
                "blocks_received": s.blocks_received,
                "bytes_received": s.bytes_received,
                "blocks_copied": s.blocks_copied,
                "blocks_served": s.blocks_served,
                "bad_blocks": s.bad_blocks,
                "transport": crate::report::path_json(summary.path.as_ref()),
            })
        );
    }
    Ok(0)
}

/// Prints the shares this machine keeps and the invitations waiting.
async fn list(user: &str, events: &mut ClientEvents) -> Result<()> {
    let known: Vec<KnownShare> = load_registry(&registry_path()?)
        .into_iter()
        .filter(|k| k.user == user)
        .collect();
    if known.is_empty() {
        println!("no sharing folders yet: `duet share create CONTACT DIR`");
    }
    for k in &known {
        println!("{:20}  with {:12}  {}", k.name, k.peer, k.dir.display());
    }
    let mut waiting = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(1500), async {
        while let Some(event) = events.recv().await {
            if let ClientEvent::FolderInvite(invite) = event {
                waiting.push(format!(
                    "invitation {}: {} invites you to {:?} (duet share accept {} DIR)",
                    invite.id(),
                    invite.from(),
                    invite.name(),
                    invite.id()
                ));
            }
        }
    })
    .await;
    for line in waiting {
        println!("{line}");
    }
    Ok(())
}
