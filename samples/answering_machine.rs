//! An answering machine on [`duet::client::Client`]: it signs in, accepts every call, plays a
//! short greeting tone, records what the caller says and shows to `CALLER-TIME.wav` and
//! `CALLER-TIME.y4m`, and prints each call's figures when the caller hangs up (or after
//! `--max-seconds`). Callers who ring while it is recording hear busy.
//!
//! ```text
//! duet serve &                                   # a signaling server
//! cargo run --release --example answering_machine -- \
//!     --server ws://127.0.0.1:7878/ --user bob --token TOKEN --dir messages
//! duet call bob --seconds 5                      # as a contact of bob
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;
use duet::cli::social::ConnectArgs;
use duet::client::{CallOptions, Client, ClientConfig, ClientEvent, IncomingCall};
use duet_media::audio::synth::Tone;
use duet_media::audio::wav::WavSink;
use duet_media::audio::AudioSource;
use duet_media::call::pump::{LocalAudio, LocalMedia};
use duet_media::codec::opus::OpusConfig;
use duet_media::video::y4m::Y4mSink;
use duet_media::{AudioFormat, AudioFrame, Channels, FrameDuration, Read};

#[derive(Parser)]
struct Args {
    /// The server, account and token (flags, else DUET_SERVER/DUET_USER/DUET_TOKEN, else
    /// what `duet login` saved).
    #[command(flatten)]
    connect: ConnectArgs,
    /// Where recordings go.
    #[arg(long, default_value = "messages")]
    dir: PathBuf,
    /// Longest message, seconds.
    #[arg(long, default_value_t = 60)]
    max_seconds: u64,
    /// Stop after this many calls (default: run until Ctrl-C).
    #[arg(long)]
    calls: Option<u32>,
}

const FORMAT: AudioFormat = AudioFormat {
    channels: Channels::Mono,
    frame: FrameDuration::Ms20,
};

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir).with_context(|| format!("{}", args.dir.display()))?;
    let creds = args.connect.resolve()?;
    let config = ClientConfig::new(creds.server, creds.user, creds.token);
    let (client, mut events) = Client::connect(config).await?;
    println!(
        "answering calls to {} into {}",
        client.user(),
        args.dir.display()
    );
    let mut answered = 0;
    while args.calls.is_none_or(|n| answered < n) {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = tokio::signal::ctrl_c() => break,
        };
        match event {
            Some(ClientEvent::IncomingCall(call)) => {
                answered += 1;
                if let Err(e) = record(call, &args).await {
                    eprintln!("the call failed: {e:#}");
                }
            }
            Some(ClientEvent::Closed { reason }) => bail!("the server closed: {reason}"),
            Some(_) => {}
            None => break,
        }
    }
    client.close().await;
    Ok(())
}

/// A one-second beep, then silence (still sent, so the caller's playout stays steady).
struct Greeting {
    tone: Tone,
    frames_left: u32,
}

impl AudioSource for Greeting {
    fn format(&self) -> AudioFormat {
        self.tone.format()
    }

    fn read(&mut self, now: Instant, frame: &mut AudioFrame) -> duet_media::Result<Read> {
        let read = self.tone.read(now, frame)?;
        if self.frames_left == 0 {
            frame.samples.fill(0);
        } else {
            self.frames_left -= 1;
        }
        Ok(read)
    }
}

/// Accepts one call and records it until the caller hangs up.
async fn record(incoming: IncomingCall, args: &Args) -> Result<()> {
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let base = args.dir.join(format!("{}-{stamp}", incoming.from()));
    let wav = base.with_extension("wav");
    let y4m = base.with_extension("y4m");
    println!(
        "{} is calling: recording to {}",
        incoming.from(),
        wav.display()
    );
    let greeting = Greeting {
        tone: Tone::new(FORMAT, 660.0, 0.3, Instant::now()),
        frames_left: 50,
    };
    let options = CallOptions {
        media: LocalMedia {
            audio: Some(LocalAudio {
                source: Box::new(greeting),
                opus: OpusConfig::voice(FORMAT),
            }),
            video: None,
        },
        audio_sink: Some(Box::new(WavSink::create(&wav, FORMAT.channels)?)),
        video_sink: incoming
            .has_video()
            .then(|| Y4mSink::create(&y4m, 30))
            .transpose()?
            .map(|s| Box::new(s) as _),
        ..CallOptions::default()
    };
    let call = incoming.accept(options).await?;
    let limit = Duration::from_secs(args.max_seconds);
    let report = match tokio::time::timeout(limit, call.ended()).await {
        Ok(_) => call.finish().await?,
        Err(_) => call.hang_up("the message is long enough").await?,
    };
    print!("{}", report.summary());
    Ok(())
}
