//! The audio path of the loopback: capture, Opus encode, Opus decode, sink, and the analysis
//! that aligns what reached the sink with what the source produced.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, TrySendError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{join, ms, sleep_until, stage, AudioLoop, AudioReport, DirectLive};
use crate::codec::opus::{OpusDecoder, OpusEncoder};
use crate::error::Error;
use crate::frame::{AudioFormat, AudioFrame, Read, SAMPLE_RATE};
use crate::measure::audio::{estimate_delay, snr_db};
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

struct Captured {
    reference: Vec<i16>,
    captures: Vec<Instant>,
    first_seq: Option<u64>,
    frames: u64,
    dropped: u64,
}

struct Encoded {
    encode_us: Samples,
    bytes: u64,
    lookahead: Duration,
}

struct Decoded {
    decode_us: Samples,
    errors: u64,
}

struct Shown {
    output: Vec<i16>,
    handoffs: Vec<Instant>,
    seqs: Vec<u64>,
}

struct Packet {
    data: Vec<u8>,
    seq: u64,
}

/// The running audio path.
pub(super) struct AudioHandle {
    format: AudioFormat,
    capture: JoinHandle<Result<Captured, Error>>,
    encode: JoinHandle<Result<Encoded, Error>>,
    decode: JoinHandle<Result<Decoded, Error>>,
    sink: JoinHandle<Result<Shown, Error>>,
}

/// Starts the four stage threads of the audio path.
pub(super) fn spawn(
    path: AudioLoop,
    start: Instant,
    duration: Duration,
    stop: Arc<AtomicBool>,
    live: Arc<DirectLive>,
) -> Result<AudioHandle, Error> {
    let AudioLoop {
        mut source,
        mut sink,
        opus,
    } = path;
    let format = source.format();
    if format != opus.format {
        return Err(Error::Config(format!(
            "audio source gives {format:?} but the encoder expects {:?}",
            opus.format
        )));
    }
    let mut encoder = OpusEncoder::new(opus)?;
    let mut decoder = OpusDecoder::new(format)?;
    let frame_len = format.frame.duration();
    let expected_frames = (duration.as_secs_f64() / frame_len.as_secs_f64()).ceil() as usize + 1;

    let (raw_tx, raw_rx) = sync_channel::<AudioFrame>(QUEUE);
    let (raw_free_tx, raw_free_rx) = sync_channel::<AudioFrame>(QUEUE * 2);
    let (pkt_tx, pkt_rx) = sync_channel::<Packet>(QUEUE);
    let (pkt_free_tx, pkt_free_rx) = sync_channel::<Packet>(QUEUE * 2);
    let (dec_tx, dec_rx) = sync_channel::<AudioFrame>(QUEUE);
    let (dec_free_tx, dec_free_rx) = sync_channel::<AudioFrame>(QUEUE * 2);
    let end = start + duration;
    let requeue_tx = raw_free_tx.clone();
    let (capture_live, encode_live, sink_live) = (live.clone(), live.clone(), live);

    let capture = stage("audio-capture", move || {
        let live = source.is_live();
        let mut out = Captured {
            reference: Vec::with_capacity(expected_frames * format.samples_per_frame()),
            captures: Vec::with_capacity(expected_frames),
            first_seq: None,
            frames: 0,
            dropped: 0,
        };
        let mut n: u32 = 0;
        while !stop.load(Ordering::Relaxed) {
            let deadline = start + frame_len * n;
            if deadline >= end {
                break;
            }
            let mut frame = raw_free_rx
                .try_recv()
                .unwrap_or_else(|_| AudioFrame::silent(format, start));
            let now = if live { Instant::now() } else { deadline };
            match source.read(now, &mut frame)? {
                Read::Frame => {}
                Read::Pending => {
                    thread::sleep(Duration::from_millis(1));
                    let _ = requeue_tx.try_send(frame);
                    continue;
                }
                Read::End => break,
            }
            if !live {
                // A frame exists once its last sample has been captured.
                sleep_until(frame.capture + frame_len);
            }
            n += 1;
            out.frames += 1;
            DirectLive::add(&capture_live.audio_captured, 1);
            out.reference.extend_from_slice(&frame.samples);
            out.captures.push(frame.capture);
            out.first_seq.get_or_insert(frame.seq);
            if let Err(TrySendError::Full(_)) = raw_tx.try_send(frame) {
                out.dropped += 1;
            }
        }
        Ok(out)
    })?;

    let encode = stage("audio-encode", move || {
        let lookahead = encoder.lookahead();
        let mut out = Encoded {
            encode_us: Samples::with_capacity(expected_frames),
            bytes: 0,
            lookahead,
        };
        for frame in raw_rx {
            let mut packet = pkt_free_rx.try_recv().unwrap_or_else(|_| Packet {
                data: Vec::with_capacity(1500),
                seq: 0,
            });
            let t0 = Instant::now();
            encoder.encode(&frame, &mut packet.data)?;
            out.encode_us.push(t0.elapsed().as_secs_f64() * 1e6);
            out.bytes += packet.data.len() as u64;
            DirectLive::add(&encode_live.audio_encoded, 1);
            DirectLive::add(&encode_live.audio_bytes, packet.data.len() as u64);
            packet.seq = frame.seq;
            let _ = raw_free_tx.try_send(frame);
            let _ = pkt_tx.send(packet);
        }
        Ok(out)
    })?;

    let decode = stage("audio-decode", move || {
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
            let _ = pkt_free_tx.try_send(packet);
            if dec_tx.send(frame).is_err() {
                break;
            }
        }
        Ok(out)
    })?;

    let sink = stage("audio-sink", move || {
        let mut out = Shown {
            output: Vec::with_capacity(expected_frames * format.samples_per_frame()),
            handoffs: Vec::with_capacity(expected_frames),
            seqs: Vec::with_capacity(expected_frames),
        };
        for frame in dec_rx {
            let now = Instant::now();
            sink.write(now, &frame)?;
            let per_channel = frame.samples.len() / frame.format.channels.count().max(1);
            DirectLive::add(&sink_live.audio_samples_out, per_channel as u64);
            out.handoffs.push(now);
            out.seqs.push(frame.seq);
            out.output.extend_from_slice(&frame.samples);
            let _ = dec_free_tx.try_send(frame);
        }
        sink.finish()?;
        Ok(out)
    })?;

    Ok(AudioHandle {
        format,
        capture,
        encode,
        decode,
        sink,
    })
}

impl AudioHandle {
    /// True once the capture stage has stopped (end of source or of the run).
    pub(super) fn is_finished(&self) -> bool {
        self.capture.is_finished()
    }

    /// Waits for every stage and analyses what reached the sink.
    pub(super) fn join(self) -> Result<AudioReport, Error> {
        let captured = join(self.capture, "audio capture")?;
        let encoded = join(self.encode, "audio encode")?;
        let decoded = join(self.decode, "audio decode")?;
        let shown = join(self.sink, "audio sink")?;
        Ok(analyse(self.format, &captured, &encoded, &decoded, &shown))
    }
}

fn analyse(
    format: AudioFormat,
    captured: &Captured,
    encoded: &Encoded,
    decoded: &Decoded,
    shown: &Shown,
) -> AudioReport {
    let channels = format.channels.count();
    let per_frame = format.frame.samples_per_channel();
    let reference = first_channel(&captured.reference, channels);
    let output = first_channel(&shown.output, channels);
    let seconds = captured.frames as f64 * format.frame.duration().as_secs_f64();

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
            let Some(capture) = captured.captures.get(k / per_frame) else {
                continue;
            };
            let offset = Duration::from_secs_f64((k % per_frame) as f64 / f64::from(SAMPLE_RATE));
            let captured_at = *capture + offset;
            latency.push(ms(handoff.saturating_duration_since(captured_at)));
        }
    } else {
        // Nothing could be aligned (silence, or a pure tone whose delay is only known modulo
        // its period): estimate from the capture time each frame carried, plus the look-ahead.
        let first_seq = captured.first_seq.unwrap_or(0);
        for (handoff, seq) in shown.handoffs.iter().zip(&shown.seqs) {
            let index = seq
                .checked_sub(first_seq)
                .and_then(|i| usize::try_from(i).ok());
            if let Some(capture) = index.and_then(|i| captured.captures.get(i)) {
                estimated
                    .push(ms(handoff.saturating_duration_since(*capture)) + ms(encoded.lookahead));
            }
        }
    }

    let snr_lag = median_lag.or_else(|| {
        (!periodic_lags.is_empty()).then(|| Percentiles::of(&periodic_lags).p50 as usize)
    });
    let snr = snr_lag.map(|lag| snr_db(&reference, &output, lag));
    AudioReport {
        frames: shown.handoffs.len() as u64,
        frames_captured: captured.frames,
        frame_ms: format.frame.millis(),
        encode_us: encoded.encode_us.measured(),
        decode_us: decoded.decode_us.measured(),
        latency_ms: Percentiles::measured(&latency),
        latency_from_signal: median_lag.is_some() && !latency.is_empty(),
        estimated_latency_ms: Percentiles::measured(&estimated).map(|p| p.p50),
        signal_delay_ms: median_lag.map(|l| l as f64 * 1000.0 / f64::from(SAMPLE_RATE)),
        lookahead_ms: ms(encoded.lookahead),
        snr_db: snr.filter(|s| s.is_finite()),
        kbps: if seconds > 0.0 {
            encoded.bytes as f64 * 8.0 / seconds / 1000.0
        } else {
            0.0
        },
        decode_errors: decoded.errors,
        frames_dropped: captured.dropped,
        // Set by the caller that runs a processing stage on the source.
        echo_return_loss_db: None,
        echo_return_loss_enhancement_db: None,
    }
}

/// The first channel of interleaved samples (a borrowed copy-free view is not possible for stereo).
fn first_channel(samples: &[i16], channels: usize) -> Vec<i16> {
    samples.iter().step_by(channels.max(1)).copied().collect()
}
