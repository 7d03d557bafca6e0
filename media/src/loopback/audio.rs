//! The audio path of the loopback: the call's audio sender (capture, pace, Opus encode), then
//! Opus decode and the sink, and the analysis that aligns what reached the sink with what was
//! sent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{AudioLoop, AudioReport, DirectLive};
use crate::adapt::Reconfigure;
use crate::call::pump::{self, AudioOutlet, AudioPlan, AudioSent, Live, LocalAudio, Window};
use crate::codec::opus::OpusDecoder;
use crate::error::Error;
use crate::frame::{AudioFormat, AudioFrame, SAMPLE_RATE};
use crate::measure::audio::{estimate_delay, snr_db};
use crate::stage::{self, join, ms};
use crate::stats::{Percentiles, Samples};

/// Frames in flight between two stages before the upstream one drops.
const QUEUE: usize = 8;
/// Length of one alignment window, samples (0.5 s).
const WINDOW: usize = SAMPLE_RATE as usize / 2;
/// Longest delay the alignment looks for, samples (250 ms).
const MAX_LAG: usize = SAMPLE_RATE as usize / 4;
/// A window whose correlation is below this is too quiet or too damaged to align.
const MIN_CORRELATION: f64 = 0.6;
/// A window where another lag scores within this of the best is periodic (a pure tone) and
/// cannot be aligned.
const AMBIGUITY_MARGIN: f64 = 0.02;

/// What travels from the sender to the decoder: a packet and the frame it was encoded from.
struct Packet {
    data: Vec<u8>,
    seq: u64,
    capture: Instant,
}

/// The sender's outlet: packets go to the decoder through a short queue, dropped (and counted
/// as not sent) when the decoder is behind.
struct ToDecoder {
    packets: SyncSender<Packet>,
    free: Receiver<Packet>,
    counters: Arc<DirectLive>,
    stop: Arc<AtomicBool>,
}

impl AudioOutlet for ToDecoder {
    fn reconfigure(&mut self) -> Option<Reconfigure> {
        None
    }

    fn deliver(&mut self, packet: &mut Vec<u8>, frame: &AudioFrame) -> Result<bool, Error> {
        DirectLive::add(&self.counters.audio_captured, 1);
        DirectLive::add(&self.counters.audio_encoded, 1);
        DirectLive::add(&self.counters.audio_bytes, packet.len() as u64);
        let mut out = self.free.try_recv().unwrap_or_else(|_| Packet {
            data: Vec::with_capacity(1500),
            seq: 0,
            capture: frame.capture,
        });
        std::mem::swap(&mut out.data, packet);
        out.seq = frame.seq;
        out.capture = frame.capture;
        match self.packets.try_send(out) {
            Ok(()) => Ok(true),
            Err(TrySendError::Full(_)) => Ok(false),
            Err(TrySendError::Disconnected(_)) => {
                // The decoder stopped (its error is reported when it is joined).
                self.stop.store(true, Ordering::Relaxed);
                Ok(false)
            }
        }
    }
}

struct Decoded {
    decode_us: Samples,
    errors: u64,
}

struct Shown {
    output: Vec<i16>,
    handoffs: Vec<Instant>,
    /// Capture instant of the frame each hand-off carried.
    captures: Vec<Instant>,
}

/// The running audio path.
pub(super) struct AudioHandle {
    format: AudioFormat,
    send: JoinHandle<Result<AudioSent, Error>>,
    decode: JoinHandle<Result<Decoded, Error>>,
    sink: JoinHandle<Result<Shown, Error>>,
}

/// Starts the audio path: the call's sender (capture, pace, encode), a decoder and the sink,
/// each on a thread of its own.
pub(super) fn spawn(
    path: AudioLoop,
    window: Window,
    stop: Arc<AtomicBool>,
    sent: Arc<Live>,
    counters: Arc<DirectLive>,
) -> Result<AudioHandle, Error> {
    let AudioLoop {
        source,
        mut sink,
        opus,
    } = path;
    let format = source.format();
    let mut decoder = OpusDecoder::new(format)?;
    let frame_len = format.frame.duration();
    let seconds = window
        .until
        .map_or(60.0, |until| (until - window.from).as_secs_f64());
    let expected_frames = (seconds / frame_len.as_secs_f64()).ceil() as usize + 1;

    let (pkt_tx, pkt_rx) = sync_channel::<Packet>(QUEUE);
    let (pkt_free_tx, pkt_free_rx) = sync_channel::<Packet>(QUEUE * 2);
    let (dec_tx, dec_rx) = sync_channel::<AudioFrame>(QUEUE);
    let (dec_free_tx, dec_free_rx) = sync_channel::<AudioFrame>(QUEUE * 2);
    let start = window.from;

    let outlet = ToDecoder {
        packets: pkt_tx,
        free: pkt_free_rx,
        counters: counters.clone(),
        stop: stop.clone(),
    };
    let plan = AudioPlan {
        keep_reference: true,
        first_sent: None,
    };
    let send = pump::spawn_audio(
        LocalAudio { source, opus },
        outlet,
        window,
        stop,
        sent,
        plan,
    )?;

    let decode = stage::spawn("audio-decode", move || {
        let mut out = Decoded {
            decode_us: Samples::with_capacity(expected_frames),
            errors: 0,
        };
        for packet in pkt_rx {
            let mut frame = dec_free_rx
                .try_recv()
                .unwrap_or_else(|_| AudioFrame::silent(format, start));
            let t0 = Instant::now();
            if decoder.decode(&packet.data, &mut frame).is_err() {
                // A packet the decoder rejects is concealed, as a lost one would be.
                out.errors += 1;
                decoder.conceal(&mut frame)?;
            }
            out.decode_us.push(t0.elapsed().as_secs_f64() * 1e6);
            frame.seq = packet.seq;
            frame.capture = packet.capture;
            let _ = pkt_free_tx.try_send(packet);
            if dec_tx.send(frame).is_err() {
                break;
            }
        }
        Ok(out)
    })?;

    let sink = stage::spawn("audio-sink", move || {
        let mut out = Shown {
            output: Vec::with_capacity(expected_frames * format.samples_per_frame()),
            handoffs: Vec::with_capacity(expected_frames),
            captures: Vec::with_capacity(expected_frames),
        };
        let channels = format.channels.count().max(1);
        for frame in dec_rx {
            let now = Instant::now();
            sink.write(now, &frame)?;
            let per_channel = frame.samples.len() / frame.format.channels.count().max(1);
            DirectLive::add(&counters.audio_samples_out, per_channel as u64);
            out.handoffs.push(now);
            out.captures.push(frame.capture);
            out.output
                .extend(frame.samples.iter().step_by(channels).copied());
            let _ = dec_free_tx.try_send(frame);
        }
        sink.finish()?;
        Ok(out)
    })?;

    Ok(AudioHandle {
        format,
        send,
        decode,
        sink,
    })
}

impl AudioHandle {
    /// True once the sender has stopped (end of source or of the run).
    pub(super) fn is_finished(&self) -> bool {
        self.send.is_finished()
    }

    /// Waits for every stage and analyses what reached the sink.
    pub(super) fn join(self) -> Result<AudioReport, Error> {
        let sent = join(self.send, "audio send")?;
        let decoded = join(self.decode, "audio decode")?;
        let shown = join(self.sink, "audio sink")?;
        Ok(analyse(self.format, &sent, &decoded, &shown))
    }
}

/// Aligns what reached the sink (first channel) with what was sent (first channel).
fn analyse(format: AudioFormat, sent: &AudioSent, decoded: &Decoded, shown: &Shown) -> AudioReport {
    let per_frame = format.frame.samples_per_channel();
    let (reference, output) = (&sent.reference, &shown.output);
    let frames_captured = sent.frames + sent.not_sent;
    let seconds = frames_captured as f64 * format.frame.duration().as_secs_f64();

    // Align window by window: a window that is too quiet to align borrows the run's median lag.
    let mut window_lags: Vec<Option<usize>> = Vec::new();
    // Lags of periodic windows: useless for latency, but any of them lines a tone up for SNR.
    let mut periodic_lags: Vec<f64> = Vec::new();
    let mut a = 0;
    while a + WINDOW <= reference.len() && a + WINDOW <= output.len() {
        let received = &output[a..(a + WINDOW + MAX_LAG).min(output.len())];
        let alignment = estimate_delay(&reference[a..a + WINDOW], received, MAX_LAG)
            .filter(|al| al.correlation >= MIN_CORRELATION);
        if let Some(al) = alignment.filter(|al| al.is_ambiguous(AMBIGUITY_MARGIN)) {
            periodic_lags.push(al.lag as f64);
        }
        let lag = alignment
            .filter(|al| !al.is_ambiguous(AMBIGUITY_MARGIN))
            .map(|al| al.lag);
        window_lags.push(lag);
        a += WINDOW;
    }
    let mut confident: Vec<f64> = window_lags.iter().flatten().map(|&l| l as f64).collect();
    let median_lag = if confident.is_empty() {
        None
    } else {
        Some(Percentiles::of(&confident).p50 as usize)
    };
    confident.clear();

    let mut latency = Vec::with_capacity(shown.handoffs.len());
    let mut estimated = Vec::new();
    if let Some(median) = median_lag {
        for (m, handoff) in shown.handoffs.iter().enumerate() {
            let first = m * per_frame;
            let lag = window_lags
                .get(first / WINDOW)
                .copied()
                .flatten()
                .unwrap_or(median);
            // Output sample `first` carries source sample `first - lag`.
            let Some(k) = first.checked_sub(lag) else {
                continue;
            };
            let Some(capture) = sent.captures.get(k / per_frame) else {
                continue;
            };
            let offset = Duration::from_secs_f64((k % per_frame) as f64 / f64::from(SAMPLE_RATE));
            let captured_at = *capture + offset;
            latency.push(ms(handoff.saturating_duration_since(captured_at)));
        }
    } else {
        // Nothing could be aligned (silence, or a pure tone whose delay is only known modulo
        // its period): estimate from the capture time each frame carried, plus the look-ahead.
        for (handoff, capture) in shown.handoffs.iter().zip(&shown.captures) {
            estimated.push(ms(handoff.saturating_duration_since(*capture)) + ms(sent.lookahead));
        }
    }

    let snr_lag = median_lag.or_else(|| {
        (!periodic_lags.is_empty()).then(|| Percentiles::of(&periodic_lags).p50 as usize)
    });
    let snr = snr_lag.map(|lag| snr_db(reference, output, lag));
    AudioReport {
        frames: shown.handoffs.len() as u64,
        frames_captured,
        frame_ms: format.frame.millis(),
        encode_us: sent.encode_us.measured(),
        decode_us: decoded.decode_us.measured(),
        latency_ms: Percentiles::measured(&latency),
        latency_from_signal: median_lag.is_some() && !latency.is_empty(),
        estimated_latency_ms: Percentiles::measured(&estimated).map(|p| p.p50),
        signal_delay_ms: median_lag.map(|l| l as f64 * 1000.0 / f64::from(SAMPLE_RATE)),
        lookahead_ms: ms(sent.lookahead),
        snr_db: snr.filter(|s| s.is_finite()),
        kbps: if seconds > 0.0 {
            sent.bytes as f64 * 8.0 / seconds / 1000.0
        } else {
            0.0
        },
        decode_errors: decoded.errors,
        frames_dropped: sent.not_sent,
        // Set by the caller that runs a processing stage on the source.
        echo_return_loss_db: None,
        echo_return_loss_enhancement_db: None,
    }
}
