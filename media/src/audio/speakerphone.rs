//! A speaker and a microphone in one simulated [`Room`], as a device pair: the microphone is an
//! [`AudioSource`] that hears a near-end source plus the echo of what the speaker plays, and the
//! speaker is an [`AudioSink`] that plays what a call receives (and hands it on to another sink,
//! a file or nothing). With it a loopback or a call between two processes has the acoustic echo
//! of two laptops with speakers, and the echo canceller has something real to remove.
//!
//! The two run on their own threads, as real devices do, and meet through a lock-free ring of
//! samples; neither allocates, locks or logs per frame once running. The microphone's clock
//! drives the room: each read plays, into the room, as many speaker samples as it captures,
//! like a device buffer that starts once [`PREFILL`] is queued (so the two threads' timing
//! jitter does not move the echo), plays silence when it runs dry and then fills again, and
//! drops the oldest samples when the speaker runs more than [`MAX_BACKLOG`] ahead.
//!
//! Each of those events moves the echo in time against what was handed to the speaker: on a
//! busy machine, where the two threads are not run on time, they come every few hundred
//! milliseconds. So the microphone, which knows what the speaker plays and when, feeds an echo
//! canceller's reference itself ([`AudioSource::feed_echo_reference`]) with exactly what it
//! plays into the room, in step with what it captures, as a device's loopback of its own
//! output would.
//!
//! The microphone measures, from the signals, what the people in the room would notice
//! ([`SpeakerphoneStats`]): how loud the near end spoke, how loud what the speaker played was,
//! and how loud the echo at the microphone was. It starts [`WARM_UP`] after the speaker first
//! plays sound (anything but digital silence), so that the figures describe a call whose echo
//! canceller (at either end) has had time to converge.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use duet_media::audio::room::RoomConfig;
//! use duet_media::audio::speakerphone::speakerphone;
//! use duet_media::audio::synth::Silence;
//! use duet_media::audio::{AudioSink, AudioSource, NullAudioSink};
//! use duet_media::{AudioFormat, AudioFrame, Channels, FrameDuration};
//!
//! let format = AudioFormat { channels: Channels::Mono, frame: FrameDuration::Ms20 };
//! let start = Instant::now();
//! let near = Box::new(Silence::new(format, start));
//! let (mut mic, mut speaker, stats) =
//!     speakerphone(RoomConfig::default(), near, Box::new(NullAudioSink::default()))?;
//! let mut loud = AudioFrame::silent(format, start);
//! loud.samples.fill(8_000);
//! let mut heard = AudioFrame::silent(format, start);
//! for _ in 0..150 {
//!     speaker.write(start, &loud)?;
//!     mic.read(start, &mut heard)?;
//! }
//! // The near end said nothing, yet the microphone hears the speaker's echo.
//! assert!(heard.samples.iter().any(|&s| s.abs() > 100));
//! assert!(stats.snapshot().echo_dbfs.unwrap() > -30.0);
//! # Ok::<(), duet_media::Error>(())
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

use crate::audio::reference::EchoReference;
use crate::audio::room::{Room, RoomConfig};
use crate::audio::{AudioSink, AudioSource};
use crate::error::Error;
use crate::frame::{AudioFormat, AudioFrame, Read, SAMPLE_RATE};

/// The most the speaker may run ahead of the microphone, in samples (250 ms); beyond it the
/// oldest samples are dropped, as a device's buffer would overrun.
pub const MAX_BACKLOG: usize = SAMPLE_RATE as usize / 4;

/// The level given to digital silence: below anything 16-bit audio carries (one least
/// significant bit of RMS is -90 dBFS).
pub const SILENCE_DBFS: f64 = -120.0;

/// What the speaker's buffer holds before it starts playing, and again after it ran dry.
pub const PREFILL: usize = SAMPLE_RATE as usize * 60 / 1000;

/// How long after the speaker first plays sound the levels start counting.
pub const WARM_UP: std::time::Duration = std::time::Duration::from_secs(2);

/// Samples the ring between the speaker and the microphone holds: one second.
const RING: usize = SAMPLE_RATE as usize;

/// Samples of one channel in the longest frame (60 ms).
const LONGEST: usize = SAMPLE_RATE as usize * 60 / 1000;

/// Full scale of a 16-bit sample.
const FULL: f32 = 32768.0;

/// Energies the pair measured, shared by the two devices and whoever reports them.
#[derive(Debug, Default)]
pub struct SpeakerphoneStats {
    /// Sum of squares (full scale 1.0) and sample count of the near end as spoken.
    near: Energy,
    /// What the speaker played.
    played: Energy,
    /// The echo at the microphone.
    echo: Energy,
    /// Times the speaker's buffer ran dry while playing.
    underruns: AtomicU64,
}

/// A running energy: sum of squares stored as f64 bits, and a sample count.
#[derive(Debug, Default)]
struct Energy {
    sum_bits: AtomicU64,
    samples: AtomicU64,
}

impl Energy {
    /// Adds a block's sum of squares; one writer per energy, so load-then-store is exact.
    fn add(&self, sum: f64, samples: usize) {
        let total = f64::from_bits(self.sum_bits.load(Ordering::Relaxed)) + sum;
        self.sum_bits.store(total.to_bits(), Ordering::Relaxed);
        self.samples.fetch_add(samples as u64, Ordering::Relaxed);
    }

    /// Mean power in dB full scale, [`SILENCE_DBFS`] at the lowest; `None` before any sample.
    fn dbfs(&self) -> Option<f64> {
        let n = self.samples.load(Ordering::Relaxed);
        let sum = f64::from_bits(self.sum_bits.load(Ordering::Relaxed));
        (n > 0).then(|| (10.0 * (sum / n as f64).log10()).max(SILENCE_DBFS))
    }
}

/// What a [`SpeakerphoneStats`] holds at one moment, as levels.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SpeakerphoneLevels {
    /// Mean power of the near end as spoken in the room (dBFS).
    pub near_dbfs: Option<f64>,
    /// Mean power of what the speaker played (dBFS): the far end as heard here.
    pub played_dbfs: Option<f64>,
    /// Mean power of the speaker's echo at the microphone (dBFS).
    pub echo_dbfs: Option<f64>,
    /// Times the speaker's buffer ran dry while playing (each moves the echo in time).
    pub underruns: u64,
}

impl SpeakerphoneLevels {
    /// What the speaker played relative to what the near end spoke, dB. When the far end is
    /// silent, this is the echo of this room's own voice that the far end sent back: an
    /// echo canceller at the far end keeps it well below zero.
    pub fn played_vs_near_db(&self) -> Option<f64> {
        Some(self.played_dbfs? - self.near_dbfs?)
    }
}

impl SpeakerphoneStats {
    /// The levels so far.
    pub fn snapshot(&self) -> SpeakerphoneLevels {
        SpeakerphoneLevels {
            near_dbfs: self.near.dbfs(),
            played_dbfs: self.played.dbfs(),
            echo_dbfs: self.echo.dbfs(),
            underruns: self.underruns.load(Ordering::Relaxed),
        }
    }
}

/// The microphone of a [`speakerphone`]: the near end plus the room's echo of the speaker.
pub struct RoomMicrophone {
    near: Box<dyn AudioSource>,
    room: Room,
    from_speaker: HeapCons<f32>,
    stats: Arc<SpeakerphoneStats>,
    near_mono: Vec<f32>,
    played: Vec<f32>,
    mic: Vec<f32>,
    echo: Vec<f32>,
    /// Samples still to capture before the levels count; `None` until the speaker plays.
    warming: Option<usize>,
    /// Whether the speaker's buffer is playing (else it is filling up).
    playing: bool,
    /// An echo canceller's render side, told what the speaker plays as it plays it.
    reference: Option<EchoReference>,
}

/// The speaker of a [`speakerphone`]: plays into the room and hands every frame on.
pub struct RoomSpeaker {
    next: Box<dyn AudioSink>,
    to_microphone: HeapProd<f32>,
    mono: Vec<f32>,
}

/// A microphone and a speaker in a room with `config`'s acoustics. The microphone hears
/// `near` (the person in the room); the speaker plays into the room and passes each frame to
/// `next`. A room `config` that [`Room::new`] refuses is an error.
pub fn speakerphone(
    config: RoomConfig,
    near: Box<dyn AudioSource>,
    next: Box<dyn AudioSink>,
) -> Result<(RoomMicrophone, RoomSpeaker, Arc<SpeakerphoneStats>), Error> {
    let room = Room::new(config)?;
    let (to_microphone, from_speaker) = HeapRb::<f32>::new(RING).split();
    let stats = Arc::new(SpeakerphoneStats::default());
    let microphone = RoomMicrophone {
        near,
        room,
        from_speaker,
        stats: stats.clone(),
        near_mono: vec![0.0; LONGEST],
        played: vec![0.0; LONGEST],
        mic: vec![0.0; LONGEST],
        echo: vec![0.0; LONGEST],
        warming: None,
        playing: false,
        reference: None,
    };
    let speaker = RoomSpeaker {
        next,
        to_microphone,
        mono: vec![0.0; LONGEST],
    };
    Ok((microphone, speaker, stats))
}

/// Mixes interleaved 16-bit `samples` of `channels` to mono floats in `out`; returns how many
/// were written and their sum of squares.
fn to_mono(samples: &[i16], channels: usize, out: &mut [f32]) -> (usize, f64) {
    let mut sum = 0.0f64;
    let mut n = 0;
    for (o, frame) in out.iter_mut().zip(samples.chunks_exact(channels.max(1))) {
        let x = frame.iter().map(|&s| f32::from(s)).sum::<f32>() / (channels.max(1) as f32 * FULL);
        *o = x;
        sum += f64::from(x) * f64::from(x);
        n += 1;
    }
    (n, sum)
}

fn sum_squares(x: &[f32]) -> f64 {
    x.iter().map(|&s| f64::from(s) * f64::from(s)).sum()
}

impl AudioSource for RoomMicrophone {
    fn format(&self) -> AudioFormat {
        self.near.format()
    }

    fn read(&mut self, now: Instant, frame: &mut AudioFrame) -> Result<Read, Error> {
        let read = self.near.read(now, frame)?;
        if read != Read::Frame {
            return Ok(read);
        }
        let channels = frame.format.channels.count();
        let (n, near_sum) = to_mono(&frame.samples, channels, &mut self.near_mono);
        // The speaker's backlog beyond the limit is lost, as an overrun device loses it.
        let backlog = self.from_speaker.occupied_len();
        if backlog > MAX_BACKLOG + n {
            self.from_speaker.skip(backlog - MAX_BACKLOG - n);
        }
        if !self.playing && self.from_speaker.occupied_len() >= PREFILL + n {
            self.playing = true;
        }
        let got = if self.playing {
            self.from_speaker.pop_slice(&mut self.played[..n])
        } else {
            0
        };
        if got < n {
            // Ran dry: what was there plays, then silence, until the buffer fills again.
            self.playing = false;
            self.stats
                .underruns
                .fetch_add(u64::from(got > 0), Ordering::Relaxed);
        }
        self.played[got..n].fill(0.0);
        if let Some(reference) = &mut self.reference {
            reference.push_mono(&self.played[..n]);
        }
        self.room.play(&self.played[..n]);
        self.room.capture(
            &self.near_mono[..n],
            &mut self.mic[..n],
            Some(&mut self.echo[..n]),
        );
        let played = &self.played[..n];
        if self.warming.is_none() && played.iter().any(|&s| s != 0.0) {
            self.warming = Some(WARM_UP.as_millis() as usize * SAMPLE_RATE as usize / 1000);
        }
        match &mut self.warming {
            Some(0) => {
                self.stats.near.add(near_sum, n);
                self.stats.played.add(sum_squares(played), n);
                self.stats.echo.add(sum_squares(&self.echo[..n]), n);
            }
            Some(left) => *left = left.saturating_sub(n),
            None => {}
        }
        for (frame, &m) in frame
            .samples
            .chunks_exact_mut(channels.max(1))
            .zip(&self.mic[..n])
        {
            frame.fill((m * FULL).clamp(-FULL, FULL - 1.0) as i16);
        }
        Ok(Read::Frame)
    }

    fn is_live(&self) -> bool {
        self.near.is_live()
    }

    fn feed_echo_reference(&mut self, reference: EchoReference) -> Option<EchoReference> {
        self.reference = Some(reference);
        None
    }
}

impl AudioSink for RoomSpeaker {
    fn write(&mut self, now: Instant, frame: &AudioFrame) -> Result<(), Error> {
        let channels = frame.format.channels.count();
        let (n, _) = to_mono(&frame.samples, channels, &mut self.mono);
        // A full ring means the microphone stopped reading: the room hears nothing more of it.
        self.to_microphone.push_slice(&self.mono[..n]);
        self.next.write(now, frame)
    }

    fn finish(&mut self) -> Result<(), Error> {
        self.next.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::synth::Silence;
    use crate::audio::NullAudioSink;
    use crate::frame::{Channels, FrameDuration};
    use std::time::Duration;

    fn format(channels: Channels) -> AudioFormat {
        AudioFormat {
            channels,
            frame: FrameDuration::Ms20,
        }
    }

    /// A source of a constant level, to tell the near end apart from the echo.
    struct Constant(AudioFormat, i16);

    impl AudioSource for Constant {
        fn format(&self) -> AudioFormat {
            self.0
        }
        fn read(&mut self, _now: Instant, frame: &mut AudioFrame) -> Result<Read, Error> {
            frame.format = self.0;
            frame.samples.resize(self.0.samples_per_frame(), 0);
            frame.samples.fill(self.1);
            Ok(Read::Frame)
        }
    }

    #[test]
    fn the_echo_arrives_after_the_rooms_delay_and_the_near_end_is_heard() {
        let f = format(Channels::Mono);
        let room = RoomConfig {
            noise_dbfs: None,
            ..RoomConfig::default()
        };
        let start = Instant::now();
        let (mut mic, mut speaker, stats) = speakerphone(
            room,
            Box::new(Constant(f, 1000)),
            Box::new(NullAudioSink::default()),
        )
        .unwrap();
        let mut loud = AudioFrame::silent(f, start);
        let mut heard = AudioFrame::silent(f, start);
        // One 20 ms click, then silence: the microphone hears the near end alone until the
        // click's echo arrives 80 ms later.
        loud.samples[0] = 20_000;
        speaker.write(start, &loud).unwrap();
        loud.samples[0] = 0;
        let mut first_echo = None;
        for i in 0..10 {
            speaker.write(start, &loud).unwrap();
            mic.read(start, &mut heard).unwrap();
            if first_echo.is_none() && heard.samples.iter().any(|&s| s != 1000) {
                first_echo = Some(i);
            }
        }
        // The speaker's buffer starts once 60 ms are queued beyond a frame: the click plays
        // with the microphone's frame 2, and frame 6 covers 80-100 ms after it.
        assert_eq!(first_echo, Some(6));
        // Nothing counts during the warm-up; after it, the levels are those of the signals.
        assert_eq!(stats.snapshot(), SpeakerphoneLevels::default());
        loud.samples.fill(4000);
        for _ in 0..150 {
            speaker.write(start, &loud).unwrap();
            mic.read(start, &mut heard).unwrap();
        }
        let levels = stats.snapshot();
        let played = 20.0 * (4000.0f64 / 32768.0).log10();
        assert!(
            (levels.played_dbfs.unwrap() - played).abs() < 0.01,
            "{levels:?}"
        );
        let near = 20.0 * (1000.0f64 / 32768.0).log10();
        assert!(
            (levels.near_dbfs.unwrap() - near).abs() < 0.01,
            "{levels:?}"
        );
        assert!(levels.echo_dbfs.unwrap() < levels.played_dbfs.unwrap());
    }

    #[test]
    fn a_speaker_far_ahead_is_cut_back_and_a_silent_one_plays_silence() {
        let f = format(Channels::Stereo);
        let start = Instant::now();
        let room = RoomConfig {
            noise_dbfs: None,
            ..RoomConfig::default()
        };
        let (mut mic, mut speaker, stats) = speakerphone(
            room,
            Box::new(Silence::new(f, start)),
            Box::new(NullAudioSink::default()),
        )
        .unwrap();
        let mut loud = AudioFrame::silent(f, start);
        loud.samples.fill(10_000);
        // Two seconds of speaker with no microphone reading: the ring fills and stops.
        for _ in 0..100 {
            speaker.write(start, &loud).unwrap();
        }
        assert_eq!(mic.from_speaker.occupied_len(), RING);
        let mut heard = AudioFrame::silent(f, start);
        mic.read(start + Duration::from_millis(20), &mut heard)
            .unwrap();
        assert!(mic.from_speaker.occupied_len() <= MAX_BACKLOG);
        // Stereo in, the same sample on both channels out.
        assert!(heard.samples.chunks_exact(2).all(|p| p[0] == p[1]));
        assert_eq!(stats.snapshot().near_dbfs, None);
        // The microphone goes on when the speaker stops: no echo is invented.
        for _ in 0..100 {
            mic.read(start, &mut heard).unwrap();
        }
        assert!(
            heard.samples.iter().all(|&s| s.abs() < 10),
            "{:?}",
            &heard.samples[..8]
        );
    }
}
