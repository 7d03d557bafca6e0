//! `duet loopback`: a call's whole media path in one process (or over two WebRTC sessions on
//! 127.0.0.1), in real time, with each stage's cost.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use duet_media::audio::meter::{known_signals, LatencyMeter};
use duet_media::audio::process::{process_path, ProcessingMonitor};
use duet_media::audio::room::RoomConfig;
use duet_media::audio::speakerphone::speakerphone;
use duet_media::audio::wav::WavSink;
use duet_media::audio::{AudioSink, NullAudioSink};
use duet_media::codec::h264::H264Config;
use duet_media::codec::opus::OpusConfig;
use duet_media::loopback::webrtc::{LiveFigures, WebrtcOptions};
use duet_media::loopback::{self, AudioLoop, DirectFigures, LoopbackConfig, VideoLoop};
use duet_media::transport::impair::ImpairConfig;
use duet_media::video::y4m::Y4mSink;
use duet_media::video::{NullVideoSink, VideoSink};
use duet_media::{AudioFormat, Channels, FrameDuration};

use crate::cli::spec::{
    open_audio, open_video, processing, AudioChoice, Size, Switch, VideoChoice,
};
use crate::getstats;

/// What `duet loopback` takes.
#[derive(clap::Args)]
pub struct LoopbackArgs {
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
    /// Put the loop in a simulated office (echo 80 ms later at -6 dB, RT60 300 ms): the audio
    /// source is the person talking, and the microphone also hears what the loop plays on the
    /// speaker. Audio processing defaults to on; the report gains the room's levels.
    #[arg(long)]
    room: bool,
    /// With --transport webrtc: impair what both sides send, e.g.
    /// loss=5%,burst=2,jitter=30ms,reorder=1%,dup=0.5%,rate=2mbps,seed=7.
    #[arg(long)]
    impair: Option<String>,
    /// With --transport webrtc: offer Opus in RED (RFC 2198) on both sides, sending copies
    /// of earlier packets as the loss the peer reports calls for (on by default).
    #[arg(long, default_value = "on")]
    red: Switch,
    /// Write the run's figures to this file once a second, one getStats-shaped JSON report
    /// per line (`duet plot` draws them). With `--transport direct`, only the objects that
    /// exist without a network.
    #[arg(long, value_name = "FILE")]
    stats: Option<PathBuf>,
}

/// Writes the getStats-shaped lines of a loopback run from the figures it sends once a second.
struct StatsWriter {
    path: PathBuf,
    file: BufWriter<File>,
    meter: Option<LatencyMeter>,
    sending_size: Option<(u32, u32)>,
    video_bps: u32,
}

impl StatsWriter {
    fn create(
        path: &Path,
        meter: Option<LatencyMeter>,
        sending_size: Option<(u32, u32)>,
        video_bps: u32,
    ) -> Result<Self> {
        let file = File::create(path)
            .with_context(|| format!("creating the stats file {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file: BufWriter::new(file),
            meter,
            sending_size,
            video_bps,
        })
    }

    fn line(&mut self, report: &serde_json::Value) -> Result<()> {
        writeln!(self.file, "{report}")
            .and_then(|()| self.file.flush())
            .with_context(|| format!("writing the stats file {}", self.path.display()))
    }

    /// Writes a line for each figures of a WebRTC run, until the run ends.
    fn spawn_webrtc(mut self, figures: Receiver<LiveFigures>) -> Result<JoinHandle<Result<()>>> {
        spawn_writer(move || {
            for f in figures {
                let heard = self.meter.as_ref().map(LatencyMeter::heard);
                let report = getstats::report(
                    &getstats::Inputs {
                        inbound: &f.receiver,
                        outbound: &f.sender,
                        sent: f.sent,
                        heard: heard.as_ref(),
                        video_latency_ms: f.video_latency_ms,
                        video: self.sending_size.is_some(),
                        sending_size: self.sending_size,
                        video_bps: Some(self.video_bps),
                        echo: None,
                    },
                    getstats::now_ms(),
                );
                self.line(&report)?;
            }
            Ok(())
        })
    }

    /// Writes a line for each figures of an in-process run, until the run ends.
    fn spawn_direct(mut self, figures: Receiver<DirectFigures>) -> Result<JoinHandle<Result<()>>> {
        spawn_writer(move || {
            for f in figures {
                let heard = self.meter.as_ref().map(LatencyMeter::heard);
                let report = getstats::direct(
                    &f,
                    heard.as_ref(),
                    self.sending_size.is_some(),
                    self.sending_size,
                    getstats::now_ms(),
                );
                self.line(&report)?;
            }
            Ok(())
        })
    }
}

fn spawn_writer(
    body: impl FnOnce() -> Result<()> + Send + 'static,
) -> Result<JoinHandle<Result<()>>> {
    std::thread::Builder::new()
        .name("stats-file".into())
        .spawn(body)
        .context("starting the stats file writer")
}

fn join_writer(writer: JoinHandle<Result<()>>) -> Result<()> {
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("the stats file writer panicked"))?
}

/// The path media takes in `duet loopback`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// Encoder output straight to the decoder, in process.
    Direct,
    /// Two WebRTC call sessions over real UDP sockets.
    Webrtc,
}

/// Runs `duet loopback` and prints its report.
pub fn run(args: LoopbackArgs) -> Result<()> {
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
    let mut room = None;
    let mut meter: Option<LatencyMeter> = None;
    let audio = match open_audio(&args.audio, format, start)
        .with_context(|| format!("audio source {:?}", args.audio))?
    {
        None => None,
        Some(source) => {
            let mut sink: Box<dyn AudioSink> = match &args.save_audio {
                Some(path) => Box::new(WavSink::create(path, format.channels)?),
                None => Box::new(NullAudioSink::default()),
            };
            let mut source = source;
            if args.room {
                let (microphone, speaker, stats) =
                    speakerphone(RoomConfig::default(), source, sink)?;
                source = Box::new(microphone);
                sink = Box::new(speaker);
                room = Some(stats);
            }
            let mut opus = OpusConfig::voice(format);
            opus.bitrate_bps = args.audio_kbps * 1000;
            let config = processing(&args.audio, args.room, args.aec, args.ns, args.agc);
            let path = process_path(config, source, sink)?;
            monitor = path.monitor;
            // With a stats file, what reaches the sink is aligned live against the signals
            // the synthetic sources play, for the latency of each line.
            let sink = match &args.stats {
                Some(_) => {
                    let (m, sink) = LatencyMeter::start(path.sink, known_signals()?)?;
                    meter = Some(m);
                    Box::new(sink) as Box<dyn AudioSink>
                }
                None => path.sink,
            };
            Some(AudioLoop {
                source: path.source,
                sink,
                opus,
            })
        }
    };

    let mut sending_size = None;
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
            sending_size = Some((width, height));
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
    let stats = args
        .stats
        .as_deref()
        .map(|path| StatsWriter::create(path, meter, sending_size, args.video_kbps * 1000))
        .transpose()?;
    let mut report = match (args.transport, stats) {
        (Transport::Direct, None) => loopback::run(config)?,
        (Transport::Direct, Some(stats)) => {
            let (tx, rx) = channel();
            let writer = stats.spawn_direct(rx)?;
            let report = loopback::run_with_live(config, Some(tx));
            join_writer(writer)?;
            report?
        }
        (Transport::Webrtc, stats) => {
            let (tx, rx) = channel();
            let writer = stats.map(|s| s.spawn_webrtc(rx)).transpose()?;
            let report = loopback::webrtc::run(
                config,
                WebrtcOptions {
                    impair,
                    live: writer.is_some().then_some(tx),
                    audio_red: args.red.on(),
                    ..WebrtcOptions::default()
                },
            );
            writer.map(join_writer).transpose()?;
            report?
        }
    };
    if let (Some(m), Some(a)) = (&monitor, report.audio.as_mut()) {
        let stats = m.stats();
        a.echo_return_loss_db = stats.echo_return_loss;
        a.echo_return_loss_enhancement_db = stats.echo_return_loss_enhancement;
    }
    let room = room.map(|r| r.snapshot());
    if args.json {
        let mut value = crate::report::to_json(&report);
        if let Some(levels) = &room {
            value["audio"]["room"] = crate::report::room_json(levels);
        }
        println!("{value}");
    } else {
        print!("{}", crate::report::summary(&report));
        if let Some(levels) = &room {
            print!("{}", crate::report::room_summary(levels));
        }
    }
    Ok(())
}
