//! The `duet` command line, built on the [`client`](crate::client) API: each subcommand is a
//! module here ([`calling`] for `duet call` and `duet answer`, [`files`] for `duet send`,
//! [`sharing`] for `duet share`, [`social`] for accounts, contacts, presence and chat,
//! [`demo`], [`loopback`], [`devices`], [`plot`], [`aec`]), with the media choices of [`spec`]
//! and [`term`] to make text from the network safe to print.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

pub mod aec;
pub mod calling;
pub mod demo;
pub mod devices;
pub mod files;
pub mod loopback;
pub mod plot;
pub mod prompt;
pub mod sharing;
pub mod social;
pub mod spec;
pub mod term;

#[derive(Parser)]
#[command(
    name = "duet",
    version,
    about = "Calls, chat and shared folders between messenger contacts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run capture -> encode -> decode -> sink in one process, in real time, and report each stage's cost.
    Loopback(loopback::LoopbackArgs),
    /// List audio inputs and outputs (with their native formats) and cameras.
    Devices,
    /// Run the signaling server (accounts, contacts, presence, chat, invitations).
    Serve(crate::cli::social::ServeArgs),
    /// Manage accounts in the server's database.
    User(crate::cli::social::UserArgs),
    /// Check a server, user and token, and save them for the other commands.
    Login(crate::cli::social::LoginArgs),
    /// Add, accept, decline, block, unblock, remove or list contacts.
    Contact(crate::cli::social::ContactArgs),
    /// Set your status (online, away, busy, invisible) and personal message.
    Presence(crate::cli::social::PresenceArgs),
    /// Chat with a contact: sends each stdin line, prints what arrives.
    Chat(crate::cli::social::ChatArgs),
    /// Call a contact: ring, connect, show the call's figures live, hang up.
    Call(crate::cli::calling::CallArgs),
    /// Wait for a call or a file and answer it (asks first unless --auto / --accept-files).
    Answer(crate::cli::calling::AnswerArgs),
    /// Offer a file to a contact and send it peer to peer.
    Send(crate::cli::files::SendArgs),
    /// Sharing folders: create one with a contact, accept an invitation, list them.
    Share(crate::cli::sharing::ShareArgs),
    /// Show duet end to end in one process: a server, two contacts, chat, a folder invitation
    /// and a video call over WebRTC on synthetic media, with the call's figures.
    Demo(crate::cli::demo::DemoArgs),
    /// Draw a `--stats` file as one figure (bitrates, RTT and loss, jitter buffer and
    /// concealment, latency, frame rate, freezes, resolution): `-o call.svg` or `-o call.png`.
    Plot(crate::cli::plot::PlotArgs),
    /// Run the microphone's echo cancellation, noise suppression and gain control offline on
    /// a recorded pair of WAV files, and report the echo delay, ERLE over time and the cost.
    Aec(crate::cli::aec::AecArgs),
}

/// Default log filter: warnings, except the WebRTC stack's routine chatter (ICE candidate pairs,
/// SRTP replays under duplication), which stays at errors. `DUET_LOG` overrides it.
const QUIET_LOGS: &str =
    "warn,rtc=error,rtc_ice=error,rtc_dtls=error,rtc_srtp=error,rtc_sctp=error,webrtc=error";

/// Runs the command line: parses the arguments, runs the command, and returns its exit code.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DUET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(QUIET_LOGS)),
        )
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version go to stdout as clap renders them.
        Err(e) if !e.use_stderr() => e.exit(),
        // A usage error is one line that names the problem.
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            eprintln!("duet: {first} (see duet --help)");
            return ExitCode::from(2);
        }
    };
    let status = match cli.command {
        Command::Call(args) => crate::cli::calling::call(args),
        Command::Answer(args) => crate::cli::calling::answer(args),
        Command::Send(args) => crate::cli::files::send(args),
        Command::Share(args) => crate::cli::sharing::share(args),
        Command::Demo(args) => crate::cli::demo::run(args).map(|()| 0),
        other => run(other).map(|()| 0),
    };
    match status {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // Errors may quote the network (a peer's reason, a server's message).
            eprintln!("duet: error: {}", crate::cli::term::safe(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Loopback(args) => loopback::run(args),
        Command::Devices => devices::run(),
        Command::Plot(args) => crate::cli::plot::run(args),
        Command::Aec(args) => crate::cli::aec::run(args),
        Command::Serve(args) => crate::cli::social::serve(args),
        Command::User(args) => crate::cli::social::user(args),
        Command::Login(args) => crate::cli::social::login(args),
        Command::Contact(args) => crate::cli::social::contact(args),
        Command::Presence(args) => crate::cli::social::presence(args),
        Command::Chat(args) => crate::cli::social::chat(args),
        Command::Call(_)
        | Command::Answer(_)
        | Command::Send(_)
        | Command::Share(_)
        | Command::Demo(_) => {
            bail!("this command is run on its own")
        }
    }
}
