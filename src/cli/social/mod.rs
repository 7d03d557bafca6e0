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
use duet_signaling::ice::IceConfig;
use duet_signaling::protocol::{Contact, Shown, Status};
use duet_signaling::server::{Server, ServerConfig};
use duet_signaling::store::{SqliteStore, Store};
use duet_signaling::tls::{ClientTls, ServerTls};
use duet_signaling::UserName;

use crate::cli::term::shown_text;
use crate::client::{Client, ClientConfig, ClientEvents};
use config::Credentials;

/// `duet serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub listen: SocketAddr,
    /// The SQLite database (created if missing, readable by its owner only).
    #[arg(long, default_value = "duet.db")]
    pub db: PathBuf,
    /// Chat messages kept for one recipient at most; more get a `mailbox_full` error.
    #[arg(long, default_value_t = 10_000)]
    pub mailbox_messages: u64,
    /// MiB of messages kept for one recipient at most.
    #[arg(long, default_value_t = 64)]
    pub mailbox_mib: u64,
    /// Frames a second each connection may send, sustained (bursts of twice as many).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Serve wss:// with this PEM certificate chain (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A STUN server to hand clients, stun:HOST:PORT (may be repeated).
    #[arg(long)]
    pub stun: Vec<String>,
    /// A TURN server to hand clients with credentials, turn:HOST:PORT (may be repeated).
    #[arg(long)]
    pub turn: Vec<String>,
    /// The secret shared with the TURN server (coturn's static-auth-secret); else DUET_TURN_SECRET.
    #[arg(long)]
    pub turn_secret: Option<String>,
    /// How long TURN credentials last, seconds.
    #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(60..))]
    pub turn_ttl: u64,
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
    /// Revoke an account's token: nothing logs in as it until `rotate`; its sessions are closed.
    Revoke {
        /// The account.
        name: String,
        /// The server's SQLite database.
        #[arg(long, default_value = "duet.db")]
        db: PathBuf,
    },
    /// Give an account a new token and print it (only it) on stdout; its sessions are closed.
    Rotate {
        /// The account.
        name: String,
        /// The server's SQLite database.
        #[arg(long, default_value = "duet.db")]
        db: PathBuf,
    },
    /// Delete an account with its contacts and the messages kept for it; its sessions are closed.
    Delete {
        /// The account.
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
    /// Trust only this CA (PEM) for the server's wss:// certificate, not the system's roots
    /// (else DUET_CA).
    #[arg(long, global = true)]
    pub ca: Option<PathBuf>,
    /// Allow plain ws:// to a server that is not on this machine (the token and call keys
    /// cross the network in clear).
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Connect calls, transfers and sharing links only through TURN relays, so that contacts
    /// never learn this machine's addresses (else DUET_RELAY_ONLY=1).
    #[arg(long, global = true)]
    pub relay_only: bool,
}

impl ConnectArgs {
    /// Connects as these credentials, once (no reconnection: a command is short).
    pub async fn client(&self) -> Result<(Client, ClientEvents)> {
        connect(&self.resolve()?, self).await
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

/// Connects once (no reconnection: a command is short), with the TLS and relay choices of `args`.
pub async fn connect(creds: &Credentials, args: &ConnectArgs) -> Result<(Client, ClientEvents)> {
    let mut config = ClientConfig::new(
        creds.server.clone(),
        creds.user.clone(),
        creds.token.clone(),
    );
    config.reconnect = false;
    let env = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
    config.tls = ClientTls {
        ca: args
            .ca
            .clone()
            .or_else(|| env("DUET_CA").map(PathBuf::from)),
        insecure: args.insecure,
    };
    config.relay_only = args.relay_only
        || env("DUET_RELAY_ONLY")
            .is_some_and(|v| !matches!(v.to_str(), Some("0" | "false" | "no")));
    Client::connect(config).await
}

/// `duet serve`: runs until Ctrl-C or SIGTERM.
pub fn serve(args: ServeArgs) -> Result<()> {
    runtime()?.block_on(async {
        let mut config = ServerConfig::new(args.listen, Some(args.db.clone()));
        config.hub.mailbox_messages = args.mailbox_messages;
        config.hub.mailbox_bytes = args.mailbox_mib.saturating_mul(1 << 20);
        if !(args.rate.is_finite() && args.rate > 0.0) {
            bail!("--rate must be a positive number of frames a second");
        }
        config.limits.rate.rate = args.rate;
        config.limits.rate.burst = (args.rate * 2.0).min(f64::from(u32::MAX)) as u32;
        config.limits.rate.flood_drops = config.limits.rate.burst.saturating_mul(2);
        if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
            config.tls = Some(ServerTls::from_pem_files(cert, key)?);
        }
        if !args.stun.is_empty() || !args.turn.is_empty() {
            config.hub.ice = Some(IceConfig::new(
                args.stun.clone(),
                args.turn.clone(),
                args.turn_secret
                    .clone()
                    .or_else(|| std::env::var("DUET_TURN_SECRET").ok())
                    .unwrap_or_default(),
                std::time::Duration::from_secs(args.turn_ttl),
            )?);
        }
        let server = Server::start(config).await.with_context(|| {
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

/// `duet user add|rotate|revoke|delete`: `add` and `rotate` print the token, and nothing else,
/// on stdout. A running server notices the change within a second and closes the account's
/// sessions.
pub fn user(args: UserArgs) -> Result<()> {
    let open = |db: &std::path::Path| {
        SqliteStore::open(db).with_context(|| format!("opening {}", db.display()))
    };
    let no_such = |name: &UserName, db: &std::path::Path| {
        anyhow::anyhow!("no user {name} in {}", db.display())
    };
    match args.action {
        UserAction::Add { name, db } => {
            let name = UserName::new(&name)?;
            let token = open(&db)?.create_user(&name)?;
            println!("{token}");
        }
        UserAction::Rotate { name, db } => {
            let name = UserName::new(&name)?;
            let token = open(&db)?
                .rotate_token(&name)?
                .ok_or_else(|| no_such(&name, &db))?;
            println!("{token}");
        }
        UserAction::Revoke { name, db } => {
            let name = UserName::new(&name)?;
            if !open(&db)?.set_token_hash(&name, duet_signaling::store::REVOKED)? {
                return Err(no_such(&name, &db));
            }
            eprintln!("duet: revoked {name}'s token (`duet user rotate {name}` gives a new one)");
        }
        UserAction::Delete { name, db } => {
            let name = UserName::new(&name)?;
            if !open(&db)?.delete_user(&name)? {
                return Err(no_such(&name, &db));
            }
            eprintln!("duet: deleted {name}, with their contacts and kept messages");
        }
    }
    Ok(())
}

/// `duet login`: checks the credentials against the server, then saves them.
pub fn login(args: LoginArgs) -> Result<()> {
    let creds = args.connect.resolve()?;
    runtime()?.block_on(async {
        let (client, _events) = connect(&creds, &args.connect).await?;
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
        let (client, _events) = connect(&creds, &args.connect).await?;
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
            format!("  \"{}\"", crate::cli::term::safe(&c.note))
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

/// `duet presence ...`.
pub fn presence(args: PresenceArgs) -> Result<()> {
    let creds = args.connect.resolve()?;
    runtime()?.block_on(async {
        let (client, _events) = connect(&creds, &args.connect).await?;
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
    let rt = runtime()?;
    let result = rt.block_on(async {
        let (client, events) = connect(&creds, &args.connect).await?;
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
    });
    // A read of the terminal may still be waiting: do not wait for it (a closed connection
    // ends the chat now, not at the next line typed).
    rt.shutdown_background();
    result
}
