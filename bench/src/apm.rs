//! The signals the audio processing benches run on: far-end speech played into a simulated
//! room and what its microphone hears (the echo plus a quieter near-end talker), 48 kHz mono.

use duet_media::audio::process::CHUNK;
use duet_media::audio::room::{Room, RoomConfig};
use duet_media::audio::wav::WavSource;
use duet_media::audio::AudioSource;
use duet_media::{AudioFormat, AudioFrame, Channels, Error, FrameDuration, Read};

/// The speech recording the far and near ends are cut from.
const SPEECH: &[u8] = include_bytes!("../../media/testdata/speech-48k-mono.wav");

/// `seconds` of far-end speech and of the microphone in the default room (80 ms, -6 dB,
/// RT60 300 ms), where a near-end talker 12 dB under the far end speaks during the second half.
pub fn echo_scene(seconds: f64) -> Result<(Vec<f32>, Vec<f32>), Error> {
    let format = AudioFormat {
        channels: Channels::Mono,
        frame: FrameDuration::Ms10,
    };
    let mut source = WavSource::from_bytes("speech", SPEECH, format)?;
    let now = std::time::Instant::now();
    let mut frame = AudioFrame::silent(format, now);
    let mut speech = Vec::new();
    while source.read(now, &mut frame)? == Read::Frame {
        speech.extend(frame.samples.iter().map(|&s| f32::from(s) / 32768.0));
    }
    let half = speech.len() / 2 / CHUNK * CHUNK;
    let n = (seconds * 48_000.0) as usize / CHUNK * CHUNK;
    let far: Vec<f32> = speech[..half].iter().copied().cycle().take(n).collect();
    let near: Vec<f32> = speech[half..2 * half]
        .iter()
        .cycle()
        .enumerate()
        .map(|(i, &s)| if i >= n / 2 { s * 0.25 } else { 0.0 })
        .take(n)
        .collect();
    let mut room = Room::new(RoomConfig::default())?;
    let mut mic = vec![0.0; n];
    for ((f, nr), m) in far
        .chunks_exact(CHUNK)
        .zip(near.chunks_exact(CHUNK))
        .zip(mic.chunks_exact_mut(CHUNK))
    {
        room.play(f);
        room.capture(nr, m, None);
    }
    Ok((far, mic))
}
