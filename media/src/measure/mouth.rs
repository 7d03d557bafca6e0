//! Mouth-to-ear latency of audio from a wall-clock-anchored source, measured where it is heard.
//!
//! The receiver hands [`MouthToEar`] each period it gives its sink, with the wall-clock sample
//! index of the hand-off. Half a second at a time, it rebuilds what each known
//! [`AnchoredSignal`] played over the preceding [`MAX_LAG`] and the window, and finds where the
//! heard window lines up: the lag is the time from the source playing a sample to the sink
//! receiving it. Sans-IO: the time is the index passed in.
//!
//! A window that matches no signal well enough (a microphone, silence, heavy concealment)
//! gives no figure rather than a guess.

use std::sync::Arc;

use crate::audio::anchor::AnchoredSignal;
use crate::frame::SAMPLE_RATE;
use crate::measure::audio::estimate_delay;

/// Samples in one alignment window (0.5 s).
pub const WINDOW: usize = SAMPLE_RATE as usize / 2;
/// Longest latency looked for, samples (0.4 s).
pub const MAX_LAG: usize = SAMPLE_RATE as usize * 2 / 5;
/// A window whose best normalised correlation is below this does not count.
const MIN_CORRELATION: f64 = 0.6;
/// A window where a lag more than a millisecond away scores within this of the best is
/// ambiguous (a steady tone between marks) and does not count.
const AMBIGUITY_MARGIN: f64 = 0.05;

/// One window's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heard {
    /// Latency from the source playing the window's first sample to its hand-off, ms.
    pub latency_ms: f64,
    /// Normalised correlation with the signal at that lag (0 to 1).
    pub correlation: f64,
    /// Which of the signals matched (its index in the list given to [`MouthToEar::new`]).
    pub signal: usize,
}

/// Aligns heard audio against the signals an anchored source may be playing.
pub struct MouthToEar {
    signals: Vec<Arc<dyn AnchoredSignal>>,
    /// Samples of the current window, and the wall-clock index of the first one's hand-off.
    window: Vec<i16>,
    window_at: Option<u64>,
    reference: Vec<i16>,
    /// The signal that matched last: tried first next time.
    last: usize,
    windows: u64,
    aligned: u64,
}

impl std::fmt::Debug for MouthToEar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MouthToEar")
            .field("windows", &self.windows)
            .field("aligned", &self.aligned)
            .finish_non_exhaustive()
    }
}

impl MouthToEar {
    /// Aligns against any of `signals`.
    pub fn new(signals: Vec<Arc<dyn AnchoredSignal>>) -> Self {
        Self {
            signals,
            window: Vec::with_capacity(WINDOW),
            window_at: None,
            reference: vec![0; WINDOW + MAX_LAG],
            last: 0,
            windows: 0,
            aligned: 0,
        }
    }

    /// Takes one period of mono samples handed to the sink when the wall clock's sample index
    /// was `at`. Returns the window's result when this period completes one that aligned.
    pub fn push(&mut self, at: u64, samples: &[i16]) -> Option<Heard> {
        let mut heard = None;
        let mut rest = samples;
        let mut at = at;
        while !rest.is_empty() {
            if self.window_at.is_none() {
                self.window_at = Some(at);
            }
            let n = (WINDOW - self.window.len()).min(rest.len());
            self.window.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            at += n as u64;
            if self.window.len() == WINDOW {
                heard = self.align().or(heard);
            }
        }
        heard
    }

    /// Forgets the window under way (periods were lost between the sink and here).
    pub fn reset(&mut self) {
        self.window.clear();
        self.window_at = None;
    }

    /// Windows completed, and how many of them aligned.
    pub fn counts(&self) -> (u64, u64) {
        (self.windows, self.aligned)
    }

    fn align(&mut self) -> Option<Heard> {
        let at = self.window_at.take()?;
        self.windows += 1;
        let order: Vec<usize> = std::iter::once(self.last)
            .chain((0..self.signals.len()).filter(|&i| i != self.last))
            .filter(|&i| i < self.signals.len())
            .collect();
        let mut heard = None;
        if let Some(from) = at.checked_sub(MAX_LAG as u64) {
            for i in order {
                self.signals[i].fill(from, &mut self.reference);
                // reference[j + lag] matches window[j]: the window lags the signal by MAX_LAG - lag.
                let Some(al) = estimate_delay(&self.window, &self.reference, MAX_LAG) else {
                    continue;
                };
                if al.correlation < MIN_CORRELATION || al.is_ambiguous(AMBIGUITY_MARGIN) {
                    continue;
                }
                let lag = MAX_LAG - al.lag;
                self.last = i;
                self.aligned += 1;
                heard = Some(Heard {
                    latency_ms: lag as f64 * 1000.0 / f64::from(SAMPLE_RATE),
                    correlation: al.correlation,
                    signal: i,
                });
                break;
            }
        }
        self.window.clear();
        heard
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::anchor::{MarkedTone, Speech};

    /// What a sink hears of `signal` `delay` samples late, in 10 ms periods from index `from`.
    fn hear(
        meter: &mut MouthToEar,
        signal: &dyn AnchoredSignal,
        from: u64,
        delay: u64,
        seconds: u64,
    ) -> Vec<Heard> {
        let mut period = [0i16; 480];
        let mut found = Vec::new();
        for p in 0..seconds * 100 {
            let at = from + p * 480;
            signal.fill(at - delay, &mut period);
            found.extend(meter.push(at, &period));
        }
        found
    }

    #[test]
    fn speech_and_the_marked_tone_give_their_delay_and_a_pure_tone_does_not() {
        let speech = Arc::new(Speech::builtin().unwrap());
        let tone = Arc::new(MarkedTone::new(440, 0.5));
        let signals: Vec<Arc<dyn AnchoredSignal>> = vec![speech.clone(), tone.clone()];
        let from = 1_700_000_000 * 48_000;
        let mut meter = MouthToEar::new(signals.clone());
        let heard = hear(&mut meter, speech.as_ref(), from, 1_536, 6);
        // Speech has pauses; most windows align, each exactly.
        assert!(heard.len() >= 6, "{heard:?}");
        assert!(heard.iter().all(|h| h.latency_ms == 32.0 && h.signal == 0));

        let mut meter = MouthToEar::new(signals.clone());
        let heard = hear(&mut meter, tone.as_ref(), from + 7, 2_400, 6);
        // The windows that hold a mark align, the others are ambiguous.
        assert!(heard.len() >= 4, "{heard:?}");
        assert!(heard.iter().all(|h| h.latency_ms == 50.0 && h.signal == 1));

        // A tone without marks, though anchored, never aligns.
        struct Pure;
        impl AnchoredSignal for Pure {
            fn name(&self) -> &'static str {
                "pure"
            }
            fn fill(&self, first: u64, out: &mut [i16]) {
                for (i, s) in out.iter_mut().enumerate() {
                    let k = (first + i as u64) % 48_000;
                    *s = (10_000.0 * (std::f64::consts::TAU * 440.0 * k as f64 / 48_000.0).sin())
                        as i16;
                }
            }
        }
        let mut meter = MouthToEar::new(vec![Arc::new(Pure)]);
        assert!(hear(&mut meter, &Pure, from, 960, 3).is_empty());
        assert_eq!(meter.counts(), (6, 0));
    }

    #[test]
    fn the_marked_tone_aligns_through_opus() {
        use crate::codec::opus::{OpusConfig, OpusDecoder, OpusEncoder};
        use crate::frame::{AudioFormat, AudioFrame, Channels, FrameDuration};
        let format = AudioFormat {
            channels: Channels::Mono,
            frame: FrameDuration::Ms20,
        };
        let tone = Arc::new(MarkedTone::new(440, 0.5));
        let mut meter = MouthToEar::new(vec![tone.clone()]);
        let mut encoder = OpusEncoder::new(OpusConfig::voice(format)).unwrap();
        let mut decoder = OpusDecoder::new(format).unwrap();
        let start = std::time::Instant::now();
        let mut frame = AudioFrame::silent(format, start);
        let mut out = AudioFrame::silent(format, start);
        let mut packet = Vec::new();
        let from = 1_700_000_003 * 48_000 + 17;
        let mut heard = Vec::new();
        for n in 0..250u64 {
            tone.fill(from + n * 960, &mut frame.samples);
            encoder.encode(&frame, &mut packet).unwrap();
            decoder.decode(&packet, &mut out).unwrap();
            // Heard 30 ms after it was played.
            heard.extend(meter.push(from + n * 960 + 1_440, &out.samples));
        }
        assert!(heard.len() >= 3, "{heard:?} of {:?}", meter.counts());
        // The codec's look-ahead (6.5 ms) comes on top.
        assert!(
            heard.iter().all(|h| (h.latency_ms - 36.5).abs() < 1.0),
            "{heard:?}"
        );
    }

    #[test]
    fn an_unknown_signal_and_silence_give_nothing() {
        let speech: Arc<dyn AnchoredSignal> = Arc::new(Speech::builtin().unwrap());
        let mut meter = MouthToEar::new(vec![speech]);
        let tone = MarkedTone::new(300, 0.5);
        assert!(hear(&mut meter, &tone, 48_000_000, 100, 2).is_empty());
        let silence = Speech::from_samples(vec![0; 10]).unwrap();
        assert!(hear(&mut meter, &silence, 48_000_000, 100, 2).is_empty());
        assert_eq!(meter.counts(), (8, 0));
    }
}
