//! `duet demo`: duet end to end in one process. A signaling server on a temporary database;
//! alice and bob log in, become contacts, chat, and alice invites bob to a sharing folder;
//! then alice calls bob and they talk and see each other for a while over real WebRTC on
//! 127.0.0.1 (ICE, DTLS-SRTP, duet's jitter buffers), on synthetic media. Each step is
//! narrated; the end shows the call's figures, from the same stats as `duet call`'s report.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use duet_signaling::server::{Server, ServerConfig};
use duet_signaling::store::{SqliteStore, Store};
use duet_signaling::UserName;
use serde_json::json;

use crate::cli::calling::MediaArgs;
use crate::cli::spec::{AudioChoice, Size, VideoChoice};
use crate::client::{CallReport, Client, ClientConfig, ClientEvent, ClientEvents, ShareOptions};

/// `duet demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Length of the call, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Picture size of both sides, WIDTHxHEIGHT.
    #[arg(long, default_value = "640x480")]
    pub size: Size,
    /// Impair what both sides send once connected, e.g. loss=5%,jitter=30ms,seed=1.
    #[arg(long)]
    pub impair: Option<String>,
    /// Print only the call's figures, as one JSON object (`alice` and `bob`, each in the
    /// loopback report's shape).
    #[arg(long)]
    pub json: bool,
    /// Write alice's figures to this file once a second, one getStats-shaped JSON report per
    /// line (`duet plot` draws them).
    #[arg(long, value_name = "FILE")]
    pub stats: Option<std::path::PathBuf>,
}

/// How long each step may take before the demo says it is stuck.
const STEP: Duration = Duration::from_secs(10);

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<()> {
    if !(args.seconds.is_finite() && args.seconds >= 1.0 && args.seconds <= 3600.0) {
        bail!("--seconds {}: give 1 to 3600", args.seconds);
    }
    let runtime =
        duet_media::call::runtime("duet-demo", 2).context("starting the async runtime")?;
    runtime.block_on(demo(args))
}

/// Prints a step of the story unless only figures were asked for.
struct Narrator {
    quiet: bool,
}

impl Narrator {
    fn say(&self, line: impl AsRef<str>) {
        if !self.quiet {
            println!("{}", line.as_ref());
        }
    }
}

async fn demo(args: DemoArgs) -> Result<()> {
    let n = Narrator { quiet: args.json };
    let dir = tempfile::tempdir().context("creating a temporary folder")?;
    let db = dir.path().join("duet.db");
    let (alice_token, bob_token) = {
        let mut store = SqliteStore::open(&db)?;
        let alice = store.create_user(&UserName::new("alice")?)?;
        let bob = store.create_user(&UserName::new("bob")?)?;
        (alice, bob)
    };
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let server = Server::start(ServerConfig::new(listen, Some(db.clone())))
        .await
        .context("starting the signaling server")?;
    n.say(format!(
        "signaling server on {} (database in a temporary folder)",
        server.url()
    ));

    let login = |name: &str, token: String| {
        let config = ClientConfig::new(server.url(), UserName::new(name)?, token);
        anyhow::Ok(Client::connect(config))
    };
    let (alice, mut alice_events) = login("alice", alice_token)?.await?;
    let (bob, mut bob_events) = login("bob", bob_token)?.await?;
    n.say("alice and bob are signed in");

    alice.add_contact("bob").await?;
    wait_for(
        &mut bob_events,
        "alice's contact request",
        |e| matches!(e, ClientEvent::ContactRequest { from } if from.as_str() == "alice"),
    )
    .await?;
    bob.accept_contact("alice").await?;
    n.say("alice asked bob to be her contact; bob accepted");
    wait_for(
        &mut alice_events,
        "bob's presence",
        |e| matches!(e, ClientEvent::Presence { user, .. } if user.as_str() == "bob"),
    )
    .await?;
    n.say("alice sees bob online");

    alice
        .chat("bob", "hi bob! got a minute for a call?")
        .await?;
    let text = wait_for(&mut bob_events, "alice's message", |e| {
        matches!(e, ClientEvent::Chat { .. })
    })
    .await?;
    if let ClientEvent::Chat { from, text, .. } = text {
        n.say(format!("{from} says: {text}"));
    }
    bob.chat("alice", "sure, call me").await?;
    if let ClientEvent::Chat { from, text, .. } = wait_for(&mut alice_events, "bob's reply", |e| {
        matches!(e, ClientEvent::Chat { .. })
    })
    .await?
    {
        n.say(format!("{from} says: {text}"));
    }

    // A sharing folder: alice's holiday-photos, joined by bob with a folder of his own.
    let alice_dir = dir.path().join("holiday-photos");
    let bob_dir = dir.path().join("bob").join("holiday-photos");
    std::fs::create_dir_all(&alice_dir)?;
    std::fs::write(
        alice_dir.join("itinerary.txt"),
        "day 1: lake\nday 2: ridge\nday 3: home\n",
    )?;
    let sharing = {
        let (alice, dir) = (alice.clone(), alice_dir.clone());
        tokio::spawn(async move {
            alice
                .share_folder("bob", &dir, ShareOptions::default())
                .await
        })
    };
    let ClientEvent::FolderInvite(invite) =
        wait_for(&mut bob_events, "the folder invitation", |e| {
            matches!(e, ClientEvent::FolderInvite(_))
        })
        .await?
    else {
        bail!("expected a folder invitation");
    };
    n.say(format!(
        "{} invites bob to the sharing folder {:?}; bob joins it",
        invite.from(),
        invite.name()
    ));
    let bob_share = invite.accept(&bob_dir, ShareOptions::default()).await?;
    let alice_share = sharing.await.context("the sharing task")??;
    if let ClientEvent::FolderChanged { folder, event, .. } =
        wait_for(&mut bob_events, "the shared file", |e| {
            matches!(e, ClientEvent::FolderChanged { .. })
        })
        .await?
    {
        n.say(format!("bob's copy of {folder}: {event}"));
    }
    alice_share.stop().await?;
    bob_share.stop().await?;

    let media = |impair: Option<String>| MediaArgs {
        audio: AudioChoice::Speech,
        video: VideoChoice::Pattern,
        size: args.size,
        fps: 30,
        video_kbps: 1000,
        audio_kbps: 32,
        impair,
        save_audio: None,
        save_video: None,
        json: false,
        stats: None,
        aec: None,
        ns: None,
        agc: None,
        room: false,
    };
    let alice_options = media(args.impair.clone()).options_unplayed()?;
    let bob_options = media(args.impair.clone()).options_unplayed()?;
    n.say("alice calls bob (video, synthetic speech and test pattern)...");
    let answering = tokio::spawn(async move {
        let event = wait_for(&mut bob_events, "alice's call", |e| {
            matches!(e, ClientEvent::IncomingCall(_))
        })
        .await?;
        let ClientEvent::IncomingCall(incoming) = event else {
            bail!("expected a call");
        };
        let call = incoming.accept(bob_options).await?;
        let end = call.ended().await;
        let report = call.finish().await?;
        anyhow::Ok((report, end, bob_events))
    });
    let call = alice.call("bob", alice_options).await?;
    n.say("bob answered; the call is connected peer to peer");
    let mut stats = match &args.stats {
        Some(path) => {
            // A fresh file for this demo.
            std::fs::write(path, "")
                .with_context(|| format!("creating the stats file {}", path.display()))?;
            Some(crate::cli::calling::StatsFile::open(path)?)
        }
        None => None,
    };
    let seconds = Duration::from_secs_f64(args.seconds);
    let started = tokio::time::Instant::now();
    let mut tick =
        tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
    while started.elapsed() < seconds {
        tokio::select! {
            _ = tick.tick() => {
                if let Some(file) = &mut stats {
                    file.write(&call).await?;
                }
                n.say(format!("  {}", call.status().await.line()));
            }
            reason = call.ended() => bail!("the call ended early: {reason}"),
        }
    }
    let alice_report = call.hang_up("the demo is over").await?;
    n.say("alice hung up");
    let (bob_report, bob_end, _events) = tokio::time::timeout(STEP, answering)
        .await
        .context("bob's side did not end")???;
    n.say(format!("bob's side ended: {bob_end}"));

    if args.json {
        println!(
            "{}",
            json!({ "alice": alice_report.to_json(), "bob": bob_report.to_json() })
        );
    } else {
        println!();
        println!("{}", figures("alice", &alice_report, "bob"));
        println!("{}", figures("bob", &bob_report, "alice"));
    }
    alice.close().await;
    bob.close().await;
    server.shutdown().await?;
    Ok(())
}

/// The figures of one side: what it received from the other, and what it sent.
fn figures(me: &str, report: &CallReport, other: &str) -> String {
    let r = &report.report;
    let mut lines = vec![format!("{me} ({:.1} s of call):", r.seconds)];
    if let Some(net) = &r.network {
        let t = &net.transport;
        let rtt = t.rtt_ms.map_or("n/a".into(), |v| format!("{v:.1} ms"));
        let expected = (t.packets_received + t.packets_lost).max(1);
        lines.push(format!(
            "  network     RTT {rtt}, {} of {} packets from {other} lost ({:.2}%), connected in {:.0} ms",
            t.packets_lost,
            expected,
            t.packets_lost as f64 * 100.0 / expected as f64,
            net.connect_ms
        ));
        if let (Some(a), Some(audio)) = (&net.audio, &r.audio) {
            let jb = a
                .jitter_buffer_ms
                .map_or("n/a".into(), |m| format!("{m:.1} ms"));
            lines.push(format!(
                "  audio in    mouth-to-ear latency {} ({}), jitter buffer mean {jb}, concealed {:.2}%, {} RED-recovered, {} FEC-recovered",
                p50_p95(&audio.latency_ms),
                crate::report::audio_latency_source(audio),
                a.concealed_ratio * 100.0,
                a.red_recovered,
                a.fec_recovered
            ));
        }
        if let (Some(v), Some(video)) = (&net.video, &r.video) {
            lines.push(format!(
                "  video in    {} pictures at {}x{}, glass-to-glass latency {} ({}), {} freezes ({:.0} ms)",
                video.frames_shown,
                video.width,
                video.height,
                p50_p95(&video.latency_ms),
                crate::report::video_latency_source(video),
                v.freeze_count,
                v.total_freeze_ms
            ));
        }
    }
    if let Some(a) = &r.audio {
        lines.push(format!(
            "  audio out   {:.1} kbps Opus, encode p50 {:.0} us",
            a.kbps,
            a.encode_us.map_or(f64::NAN, |p| p.p50)
        ));
    }
    if let Some(v) = &r.video {
        lines.push(format!(
            "  video out   {:.0} kbps H.264, {} frames sent, encode p50 {:.2} ms",
            v.kbps,
            v.frames_sent,
            v.encode_ms.map_or(f64::NAN, |p| p.p50)
        ));
    }
    lines.join("\n")
}

/// `p50 34.0 ms / p95 41.2 ms`, or `not measured`.
fn p50_p95(p: &Option<duet_media::stats::Percentiles>) -> String {
    p.map_or("not measured".into(), |p| {
        format!("p50 {:.1} ms / p95 {:.1} ms", p.p50, p.p95)
    })
}

/// The next event that `wanted` picks, within [`STEP`]; others are skipped.
async fn wait_for(
    events: &mut ClientEvents,
    what: &str,
    wanted: impl Fn(&ClientEvent) -> bool,
) -> Result<ClientEvent> {
    let found = tokio::time::timeout(STEP, async {
        while let Some(event) = events.recv().await {
            if wanted(&event) {
                return Some(event);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(event)) => Ok(event),
        Ok(None) => bail!("the connection closed while waiting for {what}"),
        Err(_) => bail!("{what} did not come within {STEP:?}"),
    }
}
