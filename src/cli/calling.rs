//! `duet call NAME` and `duet answer`: calls between contacts across processes, through
//! [`Client`].
//!
//! `duet call` exits 0 when the call took place, 3 when declined, 4 busy, 5 unanswered, 6 when
//! the contact is offline or not a contact, and 1 on any other failure. `duet answer` exits as
//! the call or file it took did, or 5 when none came in time; with `--keep` it takes one after
//! another and exits 0 on Ctrl-C.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use duet_media::audio::device::Speaker;
use duet_media::audio::room::RoomConfig;
use duet_media::audio::speakerphone::{speakerphone, SpeakerphoneStats};
use duet_media::audio::wav::WavSink;
use duet_media::audio::{AudioSink, NullAudioSink};
use duet_media::call::pump::{LocalAudio, LocalMedia, LocalVideo};
use duet_media::call::EndReason;
use duet_media::codec::h264::H264Config;
use duet_media::codec::opus::OpusConfig;
use duet_media::transport::ImpairConfig;
use duet_media::video::y4m::Y4mSink;
use duet_media::video::VideoSink;
use duet_media::{AudioFormat, Channels, FrameDuration};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::social::ConnectArgs;
use crate::cli::spec::{
    open_audio, open_video, processing, AudioChoice, Size, Switch, VideoChoice,
};
use crate::client::{Call, CallError, CallOptions, CallReport, Client, ClientEvent, ClientEvents};

/// What this side of a call sends.
#[derive(Args, Debug, Clone)]
pub struct MediaArgs {
    /// Audio to send: speech, tone, wav:PATH, mic, mic:NAME, silence or none.
    #[arg(long, default_value = "speech")]
    pub audio: AudioChoice,
    /// Video to send: pattern, y4m:PATH, webcam, webcam:N or none (none also makes
    /// `duet call` a voice call).
    #[arg(long, default_value = "pattern")]
    pub video: VideoChoice,
    /// Picture size, WIDTHxHEIGHT.
    #[arg(long, default_value = "640x480")]
    pub size: Size,
    /// Frames per second.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub fps: u32,
    /// H.264 starting bitrate, kbit/s (adaptation takes it from there).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(50..=20_000))]
    pub video_kbps: u32,
    /// Opus starting bitrate, kbit/s.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(6..=510))]
    pub audio_kbps: u32,
    /// Impair what this side sends once connected, e.g. loss=10%,jitter=20ms,seed=1.
    #[arg(long)]
    pub impair: Option<String>,
    /// Write the audio received to this WAV file.
    #[arg(long)]
    pub save_audio: Option<PathBuf>,
    /// Write the pictures received to this Y4M file.
    #[arg(long)]
    pub save_video: Option<PathBuf>,
    /// Print the report as one JSON object on stdout at the end.
    #[arg(long)]
    pub json: bool,
    /// Append the call's figures to this file once a second, one getStats-shaped JSON report
    /// per line (`duet plot` draws them).
    #[arg(long, value_name = "FILE")]
    pub stats: Option<PathBuf>,
    /// Echo cancellation of the audio sent: on by default for a microphone (or in a --room),
    /// off otherwise.
    #[arg(long)]
    pub aec: Option<Switch>,
    /// Noise suppression of the audio sent: on by default for a microphone (or in a --room),
    /// off otherwise.
    #[arg(long)]
    pub ns: Option<Switch>,
    /// Automatic gain control of the audio sent: on by default for a microphone (or in a
    /// --room), off otherwise.
    #[arg(long)]
    pub agc: Option<Switch>,
    /// Put this side in a simulated office (echo 80 ms later at -6 dB, RT60 300 ms): the
    /// audio source is the person talking in it, and the microphone also hears what the call
    /// plays on the speaker. The report gains the room's levels, measured from the signals.
    #[arg(long)]
    pub room: bool,
}

/// A call's options, and the simulated room this side is in, if any.
pub struct Prepared {
    /// What to send and where received media goes.
    pub options: CallOptions,
    /// The room's levels, with `--room`.
    pub room: Option<Arc<SpeakerphoneStats>>,
}

/// `duet call NAME`.
#[derive(Args, Debug, Clone)]
pub struct CallArgs {
    /// The contact to call.
    pub name: String,
    /// Hang up after this many seconds of call (else on Ctrl-C or when the contact hangs up).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// How long to let it ring, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub ring_seconds: f64,
    /// What to send and where to put what arrives.
    #[command(flatten)]
    pub media: MediaArgs,
    /// Where and as whom.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `duet answer`: takes one call or one file offer, or with `--keep` one after another.
#[derive(Args, Debug, Clone)]
pub struct AnswerArgs {
    /// Accept calls without asking.
    #[arg(long)]
    pub auto: bool,
    /// Keep answering: after each call, file or refusal, wait for the next, until Ctrl-C
    /// (which then exits with 0).
    #[arg(long)]
    pub keep: bool,
    /// Hang up after this many seconds of call (else when the caller hangs up or on Ctrl-C).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Give up if no call arrives within this many seconds.
    #[arg(long)]
    pub wait_seconds: Option<f64>,
    /// What to send and where to put what arrives.
    #[command(flatten)]
    pub media: MediaArgs,
    /// What to do with file offers.
    #[command(flatten)]
    pub files: crate::cli::files::ReceiveArgs,
    /// Where and as whom.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

fn positive_seconds(flag: &str, s: Option<f64>) -> Result<Option<Duration>> {
    match s {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => {
            Ok(Some(Duration::from_secs_f64(s)))
        }
        Some(s) => bail!("{flag} {s}: give a duration between 0 and 86400 seconds"),
    }
}

impl MediaArgs {
    /// Opens the sources and sinks chosen, as call options; received audio goes to the file
    /// chosen, else to the default speaker.
    pub fn options(&self) -> Result<CallOptions> {
        Ok(self.build(true)?.options)
    }

    /// As [`options`](Self::options), with the simulated room's levels when `--room` was given.
    pub fn prepare(&self) -> Result<Prepared> {
        self.build(true)
    }

    /// As [`options`](Self::options), but received audio without a file is discarded rather
    /// than played (for several calls in one process).
    pub fn options_unplayed(&self) -> Result<CallOptions> {
        Ok(self.build(false)?.options)
    }

    fn build(&self, play: bool) -> Result<Prepared> {
        let format = AudioFormat {
            channels: Channels::Mono,
            frame: FrameDuration::Ms20,
        };
        let start = Instant::now();
        let mut audio_source = open_audio(&self.audio, format, start)
            .with_context(|| format!("audio source {:?}", self.audio))?;
        let video = open_video(&self.video, self.size, self.fps, start)
            .with_context(|| format!("video source {:?}", self.video))?
            .map(|source| {
                let (width, height) = source.size();
                LocalVideo {
                    source,
                    h264: H264Config {
                        width,
                        height,
                        bitrate_bps: self.video_kbps * 1000,
                        fps: self.fps as f32,
                        keyframe_interval: 0,
                    },
                }
            });
        let impair = self
            .impair
            .as_deref()
            .map(|spec| {
                spec.parse::<ImpairConfig>()
                    .with_context(|| format!("--impair {spec}"))
            })
            .transpose()?;
        let mut audio_sink: Box<dyn AudioSink> = match &self.save_audio {
            Some(path) => Box::new(WavSink::create(path, format.channels)?),
            None if !play => Box::new(NullAudioSink::default()),
            // Without a file, what arrives is played on the default speaker, if there is one.
            None => match Speaker::open(None, format) {
                Ok(speaker) => Box::new(speaker),
                Err(e) => {
                    tracing::warn!("no speaker to play the call on ({e}): its audio is discarded");
                    Box::new(NullAudioSink::default())
                }
            },
        };
        let mut room = None;
        if self.room {
            let Some(near) = audio_source.take() else {
                bail!("--room needs an audio source: the person talking in the room");
            };
            let (microphone, speaker, stats) =
                speakerphone(RoomConfig::default(), near, audio_sink)?;
            audio_source = Some(Box::new(microphone));
            audio_sink = Box::new(speaker);
            room = Some(stats);
        }
        let audio = audio_source.map(|source| {
            let mut opus = OpusConfig::voice(format);
            opus.bitrate_bps = self.audio_kbps * 1000;
            LocalAudio { source, opus }
        });
        let video_sink = self
            .save_video
            .as_ref()
            .map(|path| -> Result<Box<dyn VideoSink>> {
                Ok(Box::new(Y4mSink::create(path, self.fps)?))
            })
            .transpose()?;
        let options = CallOptions {
            video: video.is_some(),
            media: LocalMedia { audio, video },
            audio_sink: Some(audio_sink),
            video_sink,
            impair,
            audio_processing: Some(processing(
                &self.audio,
                self.room,
                self.aec,
                self.ns,
                self.agc,
            )),
            ..CallOptions::default()
        };
        Ok(Prepared { options, room })
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    duet_media::call::runtime("duet-call", 2).context("starting the async runtime")
}

/// Runs `duet call`; returns the process's exit status.
pub fn call(args: CallArgs) -> Result<u8> {
    let seconds = positive_seconds("--seconds", args.seconds)?;
    let ring = positive_seconds("--ring-seconds", Some(args.ring_seconds))?
        .unwrap_or(crate::client::DEFAULT_RING);
    let Prepared { mut options, room } = args.media.prepare()?;
    options.ring = ring;
    runtime()?.block_on(async {
        let (client, mut events) = args.connect.client().await?;
        eprintln!("calling {}...", args.name);
        let placing = client.call(&args.name, options);
        tokio::pin!(placing);
        let placed = loop {
            tokio::select! {
                r = &mut placing => break r,
                Some(event) = events.recv() => {
                    if let ClientEvent::Ringing { to, .. } = event {
                        eprintln!("ringing {to}...");
                    }
                }
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("cancelled");
                    client.close().await;
                    return Ok(1);
                }
            }
        };
        let call = match placed {
            Ok(call) => call,
            Err(e) => {
                eprintln!("duet: {}: {e}", args.name);
                client.close().await;
                return Ok(e.exit_code());
            }
        };
        eprintln!("{} accepted: connected", call.peer());
        let report = run_call(call, seconds, args.media.stats.as_deref()).await?;
        finish_report(&report, args.media.json, room.as_deref());
        client.close().await;
        Ok(exit_for(&report.end))
    })
}

/// Appends getStats-shaped reports to a file, one JSON line each.
pub struct StatsFile {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl StatsFile {
    /// Opens `path` to append to (creating it).
    pub fn open(path: &std::path::Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening the stats file {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file: std::io::BufWriter::new(file),
        })
    }

    /// Writes the call's report now as one line.
    pub async fn write(&mut self, call: &Call) -> Result<()> {
        use std::io::Write as _;
        let report = call.stats_report().await;
        writeln!(self.file, "{report}")
            .and_then(|()| self.file.flush())
            .with_context(|| format!("writing the stats file {}", self.path.display()))
    }
}

/// Shows the call's status once a second (and appends its stats to `stats`, if given) until it
/// ends, the time is up, or Ctrl-C.
async fn run_call(
    call: Call,
    seconds: Option<Duration>,
    stats: Option<&std::path::Path>,
) -> Result<CallReport> {
    let mut stats = stats.map(StatsFile::open).transpose()?;
    let started = tokio::time::Instant::now();
    let until = seconds.map(|s| started + s);
    let mut tick =
        tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
    // The status line is redrawn in place on a terminal, and written a line a second otherwise.
    let live = std::io::stderr().is_terminal();
    let status = if live {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let end = loop {
        let deadline = until.unwrap_or(started + Duration::from_secs(86_400 * 365));
        tokio::select! {
            reason = call.ended() => break Some(reason),
            _ = tokio::time::sleep_until(deadline) => break None,
            _ = tokio::signal::ctrl_c() => break None,
            _ = tick.tick() => {
                if let Some(file) = &mut stats {
                    file.write(&call).await?;
                }
                let line = call.status().await.line();
                if live {
                    status.set_message(line);
                } else {
                    eprintln!("{line}");
                }
            }
        }
    };
    status.finish();
    match end {
        Some(reason) => {
            eprintln!(
                "call ended: {}",
                crate::cli::term::safe(&reason.to_string())
            );
            call.finish().await
        }
        None => {
            eprintln!("hanging up");
            call.hang_up("hang-up").await
        }
    }
}

fn finish_report(report: &CallReport, json: bool, room: Option<&SpeakerphoneStats>) {
    let room = room.map(SpeakerphoneStats::snapshot);
    if json {
        let mut value = report.to_json();
        if let Some(levels) = &room {
            value["audio"]["room"] = crate::report::room_json(levels);
        }
        println!("{value}");
    } else {
        print!("{}", report.summary());
        if let Some(levels) = &room {
            print!("{}", crate::report::room_summary(levels));
        }
    }
}

/// 0 for a call that ended by a hang-up on either side, 1 for one that failed.
fn exit_for(end: &EndReason) -> u8 {
    match end {
        EndReason::HungUp(_) | EndReason::RemoteHungUp(_) => 0,
        _ => 1,
    }
}

/// Runs `duet answer`; returns the process's exit status: that of the call or file taken, 5
/// when none came in time, and with `--keep` (which takes one after another) 0 on Ctrl-C.
pub fn answer(args: AnswerArgs) -> Result<u8> {
    if let Some(dir) = &args.files.held {
        return crate::cli::files::held(dir, args.files.purge_held);
    }
    let seconds = positive_seconds("--seconds", args.seconds)?;
    let wait = positive_seconds("--wait-seconds", args.wait_seconds)?;
    if args.keep && (args.media.save_audio.is_some() || args.media.save_video.is_some()) {
        bail!("--keep with --save-audio or --save-video would write each call over the last one");
    }
    // Opened now, so that a missing device is reported before anyone calls.
    let mut options = Some(args.media.prepare()?);
    runtime()?.block_on(async {
        let (client, mut events) = args.connect.client().await?;
        loop {
            let options = match options.take() {
                Some(options) => options,
                None => args.media.prepare()?,
            };
            let answered = answer_one(&client, &mut events, &args, options, seconds, wait).await?;
            let code = match answered {
                Answered::Took(_) if args.keep => continue,
                Answered::Took(code) => code,
                Answered::Interrupted if args.keep => 0,
                Answered::Interrupted => 1,
                Answered::NoCall => 5,
            };
            client.close().await;
            return Ok(code);
        }
    })
}

/// How waiting for one call or file ended.
enum Answered {
    /// A call or file was taken (or refused); the exit status it gives.
    Took(u8),
    /// Ctrl-C while waiting.
    Interrupted,
    /// Nothing came within `--wait-seconds`.
    NoCall,
}

/// Waits for one call or file offer and takes it (or refuses it).
async fn answer_one(
    client: &Client,
    events: &mut ClientEvents,
    args: &AnswerArgs,
    prepared: Prepared,
    seconds: Option<Duration>,
    wait: Option<Duration>,
) -> Result<Answered> {
    let Prepared { options, room } = prepared;
    eprintln!("waiting for a call as {}...", client.user());
    let deadline = wait.map(|w| tokio::time::Instant::now() + w);
    let incoming = loop {
        let next = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, events.recv()).await.ok(),
                None => Some(events.recv().await),
            }
        };
        let event = tokio::select! {
            e = next => e,
            _ = tokio::signal::ctrl_c() => return Ok(Answered::Interrupted),
        };
        match event {
            None => {
                eprintln!("duet: no call came");
                return Ok(Answered::NoCall);
            }
            Some(None) => bail!("the connection to the server closed"),
            Some(Some(ClientEvent::IncomingCall(incoming))) => {
                let kind = if incoming.has_video() {
                    "video"
                } else {
                    "voice"
                };
                eprintln!("{} is calling ({kind} call)", incoming.from());
                if args.auto
                    || crate::cli::prompt::ask(&format!("answer {}? [y/N] ", incoming.from()))?
                {
                    break incoming;
                }
                incoming.decline(Some("declined".into())).await?;
                eprintln!("declined");
                return Ok(Answered::Took(3));
            }
            Some(Some(ClientEvent::FileOffer(offer))) => {
                let code = crate::cli::files::receive(offer, &args.files, args.media.json).await?;
                return Ok(Answered::Took(code));
            }
            Some(Some(ClientEvent::FolderInvite(invite))) => eprintln!(
                "{} invites you to share the folder {:?}: duet share accept {} DIR",
                invite.from(),
                invite.name(),
                invite.id()
            ),
            Some(Some(ClientEvent::Closed { reason })) => {
                bail!("the connection to the server closed: {reason}")
            }
            Some(Some(_)) => {}
        }
    };
    let peer = incoming.from().clone();
    let call = match incoming.accept(options).await {
        Ok(call) => call,
        Err(e) => {
            eprintln!("duet: call from {peer}: {e}");
            return Ok(Answered::Took(match e {
                CallError::Ended(_) => 1,
                other => other.exit_code(),
            }));
        }
    };
    eprintln!("connected with {peer}");
    // Callers that ring meanwhile hear busy: the client answers them while this call lasts.
    let report = run_call(call, seconds, args.media.stats.as_deref()).await?;
    finish_report(&report, args.media.json, room.as_deref());
    Ok(Answered::Took(exit_for(&report.end)))
}
