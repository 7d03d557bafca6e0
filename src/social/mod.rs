//! The messenger side of the `duet` command line: `duet serve` runs the signaling server,
//! `duet user add` creates accounts, and `duet login`, `duet contact`, `duet presence` and
//! `duet chat` talk to a server as a user.
//!
//! Client commands take the server, user and token from `--server`/`--user`/`--token`, else
//! `DUET_SERVER`/`DUET_USER`/`DUET_TOKEN`, else what `duet login` saved.

pub mod chat;
pub mod config;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use duet_signaling::protocol::{Contact, Shown, Status};
use duet_signaling::server::{Server, ServerConfig};
use duet_signaling::store::{SqliteStore, Store};
use duet_signaling::UserName;

use crate::client::{Client, ClientConfig, ClientEvents};
use config::Credentials;

/// `duet serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub listen: SocketAddr,
    /// The SQLite database (created if missing).
    #[arg(long, default_value = "duet.db")]
    pub db: PathBuf,
}

/// `duet user ...`.
#[derive(Args, Debug, Clone)]
pub struct UserArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: UserAction,
}

/// Account management, on the server's database.
#[derive(Subcommand, Debug, Clone)]
pub enum UserAction {
    /// Create an account and print its token (only the token) on stdout.
    Add {
        /// The new account's name.
        name: String,
        /// The server's SQLite database.
        #[arg(long, default_value = "duet.db")]
        db: PathBuf,
    },
}

/// Where and as whom to connect.
#[derive(Args, Debug, Clone, Default)]
pub struct ConnectArgs {
    /// Server URL, e.g. ws://127.0.0.1:7878/ (else DUET_SERVER, else the saved login).
    #[arg(long, global = true)]
    pub server: Option<String>,
    /// Account name (else DUET_USER, else the saved login).
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// Account token (else DUET_TOKEN, else the saved login).
    #[arg(long, global = true)]
    pub token: Option<String>,
}

impl ConnectArgs {
    /// Connects as these credentials, once (no reconnection: a command is short).
    pub async fn client(&self) -> Result<(Client, ClientEvents)> {
        connect(&self.resolve()?).await
    }

    /// The credentials to use, after flags, environment and saved login.
    pub fn resolve(&self) -> Result<Credentials> {
        let saved = config::load(&config::config_path()?)?;
        config::resolve(
            self.server.as_deref(),
            self.user.as_deref(),
            self.token.as_deref(),
            |v| std::env::var(v).ok(),
            &saved,
        )
    }
}

/// `duet login`.
#[derive(Args, Debug, Clone)]
pub struct LoginArgs {
    /// The server, user and token to check and save.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `duet contact ...`.
#[derive(Args, Debug, Clone)]
pub struct ContactArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ContactAction,
    /// Where and as whom.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Contact list operations.
#[derive(Subcommand, Debug, Clone)]
pub enum ContactAction {
    /// Ask a user to become your contact.
    Add {
        /// The user.
        name: String,
    },
    /// Accept a contact request.
    Accept {
        /// Who asked.
        name: String,
    },
    /// Decline a contact request.
    Decline {
        /// Who asked.
        name: String,
    },
    /// Block a user (they see you offline and cannot reach you).
    Block {
        /// The user.
        name: String,
    },
    /// Unblock a user.
    Unblock {
        /// The user.
        name: String,
    },
    /// Remove a contact (or withdraw a request).
    Remove {
        /// The user.
        name: String,
    },
    /// List contacts, requests and blocks with their presence.
    List,
}

/// A status to set.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusArg {
    /// Available.
    Online,
    /// Away.
    Away,
    /// Do not disturb.
    Busy,
    /// Appear offline.
    Invisible,
}

impl From<StatusArg> for Status {
    fn from(s: StatusArg) -> Status {
        match s {
            StatusArg::Online => Status::Online,
            StatusArg::Away => Status::Away,
            StatusArg::Busy => Status::Busy,
            StatusArg::Invisible => Status::Invisible,
        }
    }
}

/// `duet presence`.
#[derive(Args, Debug, Clone)]
pub struct PresenceArgs {
    /// The status, remembered by the server for your next logins.
    pub status: StatusArg,
    /// Personal message (absent: keep the current one; "" clears it).
    #[arg(long)]
    pub note: Option<String>,
    /// Where and as whom.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `duet chat`.
#[derive(Args, Debug, Clone)]
pub struct ChatArgs {
    /// The contact to chat with.
    pub name: String,
    /// Send this one message, wait for the server's ack, and exit.
    #[arg(long)]
    pub send: Option<String>,
    /// Where and as whom.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// A runtime for one command.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Connects once (no reconnection: a command is short).
pub async fn connect(creds: &Credentials) -> Result<(Client, ClientEvents)> {
    let mut config = ClientConfig::new(
        creds.server.clone(),
        creds.user.clone(),
        creds.token.clone(),
    );
    config.reconnect = false;
    Client::connect(config).await
}

/// `duet serve`: runs until Ctrl-C or SIGTERM.
pub fn serve(args: ServeArgs) -> Result<()> {
    runtime()?.block_on(async {
        let server = Server::start(ServerConfig::new(args.listen, Some(args.db.clone())))
            .await
            .with_context(|| {
                format!(
                    "starting the server on {} with {}",
                    args.listen,
                    args.db.display()
                )
            })?;
        eprintln!(
            "duet: signaling on {} (database {})",
            server.url(),
            args.db.display()
        );
        eprintln!("duet: web client on http://{}/", server.local_addr());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
        eprintln!("duet: shutting down");
        server.shutdown().await?;
        Ok(())
    })
}

/// `duet user add`: prints the new token, and nothing else, on stdout.
pub fn user(args: UserArgs) -> Result<()> {
    match args.action {
        UserAction::Add { name, db } => {
            let name = UserName::new(&name)?;
            let mut store =
                SqliteStore::open(&db).with_context(|| format!("opening {}", db.display()))?;
            let token = store.create_user(&name)?;
            println!("{token}");
            Ok(())
        }
    }
}

/// `duet login`: checks the credentials against the server, then saves them.
pub fn login(args: LoginArgs) -> Result<()> {
    let creds = args.connect.resolve()?;
    runtime()?.block_on(async {
        let (client, _events) = connect(&creds).await?;
        client.close().await;
        Ok::<_, anyhow::Error>(())
    })?;
    let path = config::config_path()?;
    let saved = config::SavedLogin {
        server: Some(creds.server.clone()),
        user: Some(creds.user.to_string()),
        token: Some(creds.token.clone()),
    };
    config::save(&path, &saved)?;
    println!(
        "logged in to {} as {}; saved in {}",
        creds.server,
        creds.user,
        path.display()
    );
    Ok(())
}

/// `duet contact ...`.
pub fn contact(args: ContactArgs) -> Result<()> {
    let creds = args.connect.resolve()?;
    runtime()?.block_on(async {
        let (client, _events) = connect(&creds).await?;
        let result = match &args.action {
            ContactAction::Add { name } => client
                .add_contact(name)
                .await
                .map(|()| format!("asked {name}")),
            ContactAction::Accept { name } => client
                .accept_contact(name)
                .await
                .map(|()| format!("{name} is now a contact")),
            ContactAction::Decline { name } => client
                .decline_contact(name)
                .await
                .map(|()| format!("declined {name}")),
            ContactAction::Block { name } => {
                client.block(name).await.map(|()| format!("blocked {name}"))
            }
            ContactAction::Unblock { name } => client
                .unblock(name)
                .await
                .map(|()| format!("unblocked {name}")),
            ContactAction::Remove { name } => client
                .remove_contact(name)
                .await
                .map(|()| format!("removed {name}")),
            ContactAction::List => client.contacts().await.map(|list| contact_table(&list)),
        };
        client.close().await;
        let text = result?;
        println!("{}", text.trim_end());
        Ok(())
    })
}

/// The contact list as aligned lines: name, relationship, status, note.
pub fn contact_table(contacts: &[Contact]) -> String {
    let width = contacts
        .iter()
        .map(|c| c.user.as_str().len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for c in contacts {
        let link = match (c.link, c.blocked) {
            (_, true) => "blocked",
            (duet_signaling::protocol::Link::Accepted, _) => "contact",
            (duet_signaling::protocol::Link::Outgoing, _) => "asked",
            (duet_signaling::protocol::Link::Incoming, _) => "asks you",
            (duet_signaling::protocol::Link::Stranger, _) => "-",
        };
        let note = if c.note.is_empty() {
            String::new()
        } else {
            format!("  {:?}", c.note)
        };
        out.push_str(&format!(
            "{:width$}  {link:8}  {}{note}\n",
            c.user.as_str(),
            shown_text(c.status)
        ));
    }
    if contacts.is_empty() {
        out.push_str("no contacts yet: `duet contact add NAME`\n");
    }
    out
}

/// A status as words.
pub fn shown_text(s: Shown) -> &'static str {
    match s {
        Shown::Online => "online",
        Shown::Away => "away",
        Shown::Busy => "busy",
        Shown::Offline => "offline",
    }
}

/// `duet presence ...`.
pub fn presence(args: PresenceArgs) -> Result<()> {
    let creds = args.connect.resolve()?;
    runtime()?.block_on(async {
        let (client, _events) = connect(&creds).await?;
        client
            .set_presence(args.status.into(), args.note.clone())
            .await?;
        client.close().await;
        let status = Shown::from(Status::from(args.status));
        let shown = if args.status == StatusArg::Invisible {
            "invisible (contacts see offline)"
        } else {
            shown_text(status)
        };
        println!("status set to {shown}");
        Ok(())
    })
}

/// `duet chat NAME [--send TEXT]`.
pub fn chat(args: ChatArgs) -> Result<()> {
    let creds = args.connect.resolve()?;
    let peer = UserName::new(&args.name)?;
    runtime()?.block_on(async {
        let (client, events) = connect(&creds).await?;
        if let Some(text) = &args.send {
            if text.is_empty() {
                bail!("--send needs some text");
            }
            let seq = client.chat(peer.as_str(), text).await?;
            tracing::debug!("acknowledged as {seq}");
            client.close().await;
            return Ok(());
        }
        let stdin = tokio::io::BufReader::new(tokio::io::stdin());
        let r = chat::run(&client, events, &peer, stdin, std::io::stdout()).await;
        client.close().await;
        r
    })
}
