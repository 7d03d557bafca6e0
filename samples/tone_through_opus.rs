//! Sends two seconds of a 440 Hz tone through Opus, loses every tenth packet, rebuilds each
//! lost frame from the in-band FEC of the packet after it, and reports what came out.
//!
//! ```text
//! cargo run --release --example tone_through_opus
//! ```

use std::time::Instant;

use duet_media::audio::synth::Tone;
use duet_media::audio::AudioSource;
use duet_media::codec::opus::{OpusConfig, OpusDecoder, OpusEncoder};
use duet_media::measure::audio::{dominant_frequency, estimate_delay, snr_db};
use duet_media::{AudioFormat, AudioFrame, Channels, FrameDuration, SAMPLE_RATE};

fn main() -> Result<(), duet_media::Error> {
    let format = AudioFormat {
        channels: Channels::Mono,
        frame: FrameDuration::Ms20,
    };
    let start = Instant::now();
    let mut tone = Tone::new(format, 440.0, 0.5, start);
    let mut config = OpusConfig::voice(format);
    config.expected_loss_pct = 10;
    let mut encoder = OpusEncoder::new(config)?;
    let mut decoder = OpusDecoder::new(format)?;

    // Encode 100 frames (2 s).
    let mut sent = Vec::new();
    let mut packets = Vec::new();
    let mut frame = AudioFrame::silent(format, start);
    for _ in 0..100 {
        tone.read(start, &mut frame)?;
        sent.extend_from_slice(&frame.samples);
        let mut packet = Vec::new();
        encoder.encode(&frame, &mut packet)?;
        packets.push(packet);
    }

    // Decode, losing every tenth packet and recovering it from the next one.
    let mut received = Vec::new();
    let mut out = AudioFrame::silent(format, start);
    for (i, packet) in packets.iter().enumerate() {
        if i % 10 == 5 {
            match packets.get(i + 1) {
                Some(next) => decoder.recover(next, &mut out)?,
                None => decoder.conceal(&mut out)?,
            }
        } else {
            decoder.decode(packet, &mut out)?;
        }
        received.extend_from_slice(&out.samples);
    }

    let stats = decoder.stats();
    let freq = dominant_frequency(&received, SAMPLE_RATE).unwrap_or(0.0);
    let lag = encoder.lookahead_samples();
    let aligned = estimate_delay(&sent, &received, 2 * lag).map_or(lag, |a| a.lag);
    println!(
        "{} packets, {} rebuilt from FEC, {} concealed; tone at {freq:.1} Hz, SNR {:.1} dB",
        packets.len(),
        stats.fec_recovered,
        stats.concealed,
        snr_db(&sent, &received, aligned)
    );
    Ok(())
}
