//! The `duet` command line: `duet loopback` measures a call's media path in one process,
//! `duet devices` lists microphones, speakers and cameras.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use duet::spec::{open_audio, open_video, processing, AudioChoice, Size, Switch, VideoChoice};
use duet_media::audio::process::{process_path, ProcessingMonitor};
use duet_media::audio::wav::WavSink;
use duet_media::audio::{AudioSink, NullAudioSink};
use duet_media::codec::h264::H264Config;
use duet_media::codec::opus::OpusConfig;
use duet_media::loopback::webrtc::WebrtcOptions;
use duet_media::loopback::{self, AudioLoop, LoopbackConfig, VideoLoop};
use duet_media::transport::impair::ImpairConfig;
use duet_media::video::y4m::Y4mSink;
use duet_media::video::{NullVideoSink, VideoSink};
use duet_media::{AudioFormat, Channels, FrameDuration};

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
    Loopback(LoopbackArgs),
    /// List audio inputs and outputs (with their native formats) and cameras.
    Devices,
    /// Run the signaling server (accounts, contacts, presence, chat, invitations).
    Serve(duet::social::ServeArgs),
    /// Manage accounts in the server's database.
    User(duet::social::UserArgs),
    /// Check a server, user and token, and save them for the other commands.
    Login(duet::social::LoginArgs),
    /// Add, accept, decline, block, unblock, remove or list contacts.
    Contact(duet::social::ContactArgs),
    /// Set your status (online, away, busy, invisible) and personal message.
    Presence(duet::social::PresenceArgs),
    /// Chat with a contact: sends each stdin line, prints what arrives.
    Chat(duet::social::ChatArgs),
    /// Call a contact: ring, connect, show the call's figures live, hang up.
    Call(duet::calling::CallArgs),
    /// Wait for a call or a file and answer it (asks first unless --auto / --accept-files).
    Answer(duet::calling::AnswerArgs),
    /// Offer a file to a contact and send it peer to peer.
    Send(duet::files::SendArgs),
    /// Sharing folders: create one with a contact, accept an invitation, list them.
    Share(duet::sharing::ShareArgs),
    /// Show duet end to end in one process: a server, two contacts, chat, a folder invitation
    /// and a video call over WebRTC on synthetic media, with the call's figures.
    Demo(duet::demo::DemoArgs),
    /// Draw a `--stats` file as one figure (bitrates, RTT and loss, jitter buffer and
    /// concealment, latency, frame rate, freezes, resolution): `-o call.svg` or `-o call.png`.
    Plot(duet::plot::PlotArgs),
    /// Run the microphone's echo cancellation, noise suppression and gain control offline on
    /// a recorded pair of WAV files, and report the echo delay, ERLE over time and the cost.
    Aec(duet::aec::AecArgs),
}

#[derive(clap::Args)]
struct LoopbackArgs {
    /// Audio source: tone, speech, wav:PATH, mic, mic:NAME, silence or none.
    #[arg(long, default_value = "speech")]
    audio: AudioChoice,
    /// Video source: pattern, y4m:PATH, webcam, webcam:N or none.
    #[arg(long, default_value = "pattern")]
    video: VideoChoice,
    /// Picture size, WIDTHxHEIGHT.
    #[arg(long, default_value = "640x480")]
    size: Size,
    /// Frames per second.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=120))]
    fps: u32,
    /// H.264 target bitrate, kbit/s.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(50..=50_000))]
    video_kbps: u32,
    /// Opus target bitrate, kbit/s.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(6..=510))]
    audio_kbps: u32,
    /// Audio frame length, ms: 10, 20, 40 or 60.
    #[arg(long, default_value_t = 20)]
    frame_ms: u32,
    /// Audio channels: 1 or 2.
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// Keyframe interval in frames (0: only on demand).
    #[arg(long, default_value_t = 0)]
    keyframe_interval: u32,
    /// How long to run, seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Write the decoded audio to this WAV file.
    #[arg(long)]
    save_audio: Option<PathBuf>,
    /// Write the decoded video to this Y4M file.
    #[arg(long)]
    save_video: Option<PathBuf>,
    /// Print one JSON object on stdout instead of the summary.
    #[arg(long)]
    json: bool,
    /// How media travels: direct (in-process, no network) or webrtc (two call sessions over
    /// UDP on 127.0.0.1, DTLS-SRTP, RTCP, jitter buffers).
    #[arg(long, default_value = "direct")]
    transport: Transport,
    /// Echo cancellation on the source, fed with what reaches the sink: on by default for a
    /// microphone, off otherwise.
    #[arg(long)]
    aec: Option<Switch>,
    /// Noise suppression on the source: on by default for a microphone, off otherwise.
    #[arg(long)]
    ns: Option<Switch>,
    /// Automatic gain control on the source: on by default for a microphone, off otherwise.
    #[arg(long)]
    agc: Option<Switch>,
    /// With --transport webrtc: impair what both sides send, e.g.
    /// loss=5%,burst=2,jitter=30ms,reorder=1%,dup=0.5%,rate=2mbps,seed=7.
    #[arg(long)]
    impair: Option<String>,
}

/// The path media takes in `duet loopback`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Transport {
    /// Encoder output straight to the decoder, in process.
    Direct,
    /// Two WebRTC call sessions over real UDP sockets.
    Webrtc,
}

/// Default log filter: warnings, except the WebRTC stack's routine chatter (ICE candidate pairs,
/// SRTP replays under duplication), which stays at errors. `DUET_LOG` overrides it.
const QUIET_LOGS: &str =
    "warn,rtc=error,rtc_ice=error,rtc_dtls=error,rtc_srtp=error,rtc_sctp=error,webrtc=error";

fn main() -> ExitCode {
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
        Command::Call(args) => duet::calling::call(args),
        Command::Answer(args) => duet::calling::answer(args),
        Command::Send(args) => duet::files::send(args),
        Command::Share(args) => duet::sharing::share(args),
        Command::Demo(args) => duet::demo::run(args).map(|()| 0),
        other => run(other).map(|()| 0),
    };
    match status {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // Errors may quote the network (a peer's reason, a server's message).
            eprintln!("duet: error: {}", duet::term::safe(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Loopback(args) => run_loopback(args),
        Command::Devices => devices(),
        Command::Plot(args) => duet::plot::run(args),
        Command::Aec(args) => duet::aec::run(args),
        Command::Serve(args) => duet::social::serve(args),
        Command::User(args) => duet::social::user(args),
        Command::Login(args) => duet::social::login(args),
        Command::Contact(args) => duet::social::contact(args),
        Command::Presence(args) => duet::social::presence(args),
        Command::Chat(args) => duet::social::chat(args),
        Command::Call(_)
        | Command::Answer(_)
        | Command::Send(_)
        | Command::Share(_)
        | Command::Demo(_) => {
            bail!("this command is run on its own")
        }
    }
}

fn run_loopback(args: LoopbackArgs) -> Result<()> {
    if !(args.seconds.is_finite() && args.seconds > 0.0 && args.seconds <= 24.0 * 3600.0) {
        bail!(
            "--seconds {}: give a duration between 0 and 86400",
            args.seconds
        );
    }
    let format = AudioFormat {
        channels: Channels::from_count(args.channels).context("--channels")?,
        frame: FrameDuration::from_millis(args.frame_ms).context("--frame-ms")?,
    };
    // Sources are created to start a little ahead, so every stage thread is running when the first frame is due.
    let start = Instant::now() + Duration::from_millis(100);

    let mut monitor: Option<ProcessingMonitor> = None;
    let audio = match open_audio(&args.audio, format, start)
        .with_context(|| format!("audio source {:?}", args.audio))?
    {
        None => None,
        Some(source) => {
            let sink: Box<dyn AudioSink> = match &args.save_audio {
                Some(path) => Box::new(WavSink::create(path, format.channels)?),
                None => Box::new(NullAudioSink::default()),
            };
            let mut opus = OpusConfig::voice(format);
            opus.bitrate_bps = args.audio_kbps * 1000;
            let config = processing(&args.audio, args.aec, args.ns, args.agc);
            let path = process_path(config, source, sink)?;
            monitor = path.monitor;
            Some(AudioLoop {
                source: path.source,
                sink: path.sink,
                opus,
            })
        }
    };

    let video = match open_video(&args.video, args.size, args.fps, start)
        .with_context(|| format!("video source {:?}", args.video))?
    {
        None => None,
        Some(source) => {
            let sink: Box<dyn VideoSink> = match &args.save_video {
                Some(path) => Box::new(Y4mSink::create(path, args.fps)?),
                None => Box::new(NullVideoSink::default()),
            };
            let (width, height) = source.size();
            let h264 = H264Config {
                width,
                height,
                bitrate_bps: args.video_kbps * 1000,
                fps: args.fps as f32,
                keyframe_interval: args.keyframe_interval,
            };
            Some(VideoLoop { source, sink, h264 })
        }
    };

    let impair = match (&args.impair, args.transport) {
        (None, _) => None,
        (Some(spec), Transport::Webrtc) => Some(
            spec.parse::<ImpairConfig>()
                .with_context(|| format!("--impair {spec}"))?,
        ),
        (Some(_), Transport::Direct) => bail!("--impair needs --transport webrtc"),
    };
    let config = LoopbackConfig {
        start,
        duration: Duration::from_secs_f64(args.seconds),
        audio,
        video,
    };
    let mut report = match args.transport {
        Transport::Direct => loopback::run(config)?,
        Transport::Webrtc => loopback::webrtc::run(
            config,
            WebrtcOptions {
                impair,
                ..WebrtcOptions::default()
            },
        )?,
    };
    if let (Some(m), Some(a)) = (&monitor, report.audio.as_mut()) {
        let stats = m.stats();
        a.echo_return_loss_db = stats.echo_return_loss;
        a.echo_return_loss_enhancement_db = stats.echo_return_loss_enhancement;
    }
    if args.json {
        println!("{}", duet::report::to_json(&report));
    } else {
        print!("{}", duet::report::summary(&report));
    }
    Ok(())
}

fn devices() -> Result<()> {
    let list = duet_media::audio::device::list_devices().context("listing audio devices")?;
    print_audio("Audio inputs", &list.inputs);
    print_audio("Audio outputs", &list.outputs);
    print_cameras();
    Ok(())
}

fn print_audio(title: &str, devices: &[duet_media::audio::device::DeviceInfo]) {
    println!("{title}:");
    if devices.is_empty() {
        println!("  none found");
    }
    for d in devices {
        println!("  {d}");
    }
}

#[cfg(feature = "webcam")]
fn print_cameras() {
    println!("Cameras:");
    match duet_media::video::webcam::list_cameras() {
        Ok(cams) if cams.is_empty() => println!("  none found"),
        Ok(cams) => {
            for c in cams {
                println!("  [{}] {} ({})", c.index, c.name, c.description);
            }
        }
        Err(e) => println!("  cannot list cameras: {e}"),
    }
}

#[cfg(not(feature = "webcam"))]
fn print_cameras() {
    println!("Cameras:\n  webcam support is not built in (build with the `webcam` feature)");
}
