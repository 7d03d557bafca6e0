//! Sample-rate and channel-count conversion between devices or files and duet's 48 kHz frames.
//!
//! [`Resampler`] wraps rubato's windowed-sinc resampler. It takes fixed chunks of input
//! ([`Resampler::input_frames_next`]) and appends the converted samples to a buffer the caller
//! owns, allocating nothing per call. At 48 kHz in and out it copies the samples through.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, FixedAsync, Indexing, Resampler as _, SincInterpolationParameters,
    SincInterpolationType, WindowFunction,
};

use crate::error::Error;
use crate::frame::SAMPLE_RATE;

/// Length of the sinc filter, in input samples. 128 taps with a Blackman-Harris window keep
/// aliasing below about -100 dB and pass everything up to about 90% of the lower Nyquist
/// frequency, which is more than speech needs, for a delay of 64 input samples (1.3 ms at 48 kHz).
const SINC_LEN: usize = 128;

/// Sinc filters computed between two input samples; the rest are interpolated.
const OVERSAMPLING: usize = 128;

/// Converts interleaved `f32` audio from one sample rate to another (by default to
/// [`SAMPLE_RATE`]), chunk by chunk.
///
/// It uses rubato's asynchronous sinc resampler with a fixed input chunk of 10 ms rather than
/// its FFT resampler: the sinc resampler takes any pair of rates with the same small chunk and
/// a delay of about 1.4 ms, while the FFT resampler's block sizes follow the rates' greatest
/// common divisor (a 44.1 kHz device needs 147-frame multiples, an odd rate a whole second) and
/// it delays by half a block (5 ms or more). Its extra cost, a few hundred multiply-adds per
/// output sample, is negligible at voice channel counts.
///
/// Output lags input by [`Resampler::delay_frames`] output frames: the first output starts
/// with that much silence.
pub struct Resampler {
    channels: usize,
    input_rate: u32,
    output_rate: u32,
    chunk: usize,
    /// `None` when both rates are equal: samples are copied through.
    inner: Option<Async<f32>>,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("channels", &self.channels)
            .field("input_rate", &self.input_rate)
            .field("output_rate", &self.output_rate)
            .field("chunk", &self.chunk)
            .field("passthrough", &self.inner.is_none())
            .finish()
    }
}

impl Resampler {
    /// A resampler from `input_rate` Hz to duet's 48 kHz, for `channels` interleaved channels.
    pub fn new(input_rate: u32, channels: usize) -> Result<Self, Error> {
        Self::with_rates(input_rate, SAMPLE_RATE, channels)
    }

    /// A resampler from `input_rate` to `output_rate` Hz (a speaker's rate, for instance).
    pub fn with_rates(input_rate: u32, output_rate: u32, channels: usize) -> Result<Self, Error> {
        if input_rate == 0 || output_rate == 0 {
            return Err(Error::Config(format!(
                "resampling {input_rate} Hz to {output_rate} Hz: rates must be non-zero"
            )));
        }
        if channels == 0 {
            return Err(Error::Config("resampling zero channels".into()));
        }
        let chunk = (input_rate as usize / 100).max(1);
        let inner = if input_rate == output_rate {
            None
        } else {
            let params =
                SincInterpolationParameters::new(SINC_LEN, WindowFunction::BlackmanHarris2)
                    .oversampling_factor(OVERSAMPLING)
                    .interpolation(SincInterpolationType::Cubic);
            let ratio = f64::from(output_rate) / f64::from(input_rate);
            let sinc = Async::new_sinc(ratio, 1.0, &params, chunk, channels, FixedAsync::Input)
                .map_err(|e| {
                    Error::Config(format!(
                        "resampling {input_rate} Hz to {output_rate} Hz: {e}"
                    ))
                })?;
            Some(sinc)
        };
        Ok(Self {
            channels,
            input_rate,
            output_rate,
            chunk,
            inner,
        })
    }

    /// Input frames (samples per channel) that the next [`Resampler::process`] call takes:
    /// 10 ms at the input rate.
    pub fn input_frames_next(&self) -> usize {
        match &self.inner {
            Some(r) => r.input_frames_next(),
            None => self.chunk,
        }
    }

    /// The most output frames one [`Resampler::process`] call can append: reserve this much
    /// (times the channel count) in the output buffer to never allocate.
    pub fn output_frames_max(&self) -> usize {
        match &self.inner {
            Some(r) => r.output_frames_max(),
            None => self.chunk,
        }
    }

    /// How many output frames an input sample is delayed by (rubato's output delay); 0 when
    /// copying through.
    pub fn delay_frames(&self) -> usize {
        self.inner.as_ref().map_or(0, |r| r.output_delay())
    }

    /// Interleaved channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Input rate in Hz.
    pub fn input_rate(&self) -> u32 {
        self.input_rate
    }

    /// Output rate in Hz.
    pub fn output_rate(&self) -> u32 {
        self.output_rate
    }

    /// True when the rates are equal and samples are copied unchanged.
    pub fn is_passthrough(&self) -> bool {
        self.inner.is_none()
    }

    /// Converts one chunk of interleaved `input` and appends the result to `out`, returning
    /// the output frames appended.
    ///
    /// `input` holds [`Resampler::input_frames_next`] whole frames; fewer are padded with
    /// silence, which is only right for the end of a stream (an empty `input` flushes the delay
    /// line). When copying through, any number of frames is taken. Nothing is allocated when
    /// `out` has room for [`Resampler::output_frames_max`] more frames.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<usize, Error> {
        let channels = self.channels;
        let frames = input.len() / channels;
        let Some(inner) = self.inner.as_mut() else {
            out.extend_from_slice(input.get(..frames * channels).unwrap_or_default());
            return Ok(frames);
        };
        let wanted = inner.input_frames_next();
        if frames > wanted {
            return Err(Error::Config(format!(
                "resampler given {frames} frames; it takes {wanted} at a time"
            )));
        }
        let start = out.len();
        let room = inner.output_frames_next();
        out.resize(start + room * channels, 0.0);
        let result = {
            let src = InterleavedSlice::new(input, channels, frames);
            let dst = out
                .get_mut(start..)
                .map(|o| InterleavedSlice::new_mut(o, channels, room));
            match (src, dst) {
                (Ok(src), Some(Ok(mut dst))) => {
                    let indexing = Indexing::new().partial_len(frames);
                    inner
                        .process_into_buffer(&src, &mut dst, Some(&indexing))
                        .map_err(|e| Error::Config(format!("resampler: {e}")))
                }
                _ => Err(Error::Config("resampler: buffer size mismatch".into())),
            }
        };
        match result {
            Ok((_, written)) => {
                out.truncate(start + written * channels);
                Ok(written)
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }
}

/// Maps one interleaved frame of `src.len()` channels onto `out_channels` channels and returns
/// output channel `j`: the same channel when the counts match, the average of the input
/// channels that fold onto it when there are fewer outputs (all of them for mono), and a
/// duplicate of input channel `j mod n` when there are more (mono to every channel).
pub(crate) fn remix_sample(src: &[f32], j: usize, out_channels: usize) -> f32 {
    let n = src.len();
    if n == 0 || out_channels == 0 {
        return 0.0;
    }
    if n <= out_channels {
        return src.get(j % n).copied().unwrap_or(0.0);
    }
    let (sum, count) = src
        .iter()
        .skip(j)
        .step_by(out_channels)
        .fold((0.0f32, 0u32), |(s, c), &x| (s + x, c + 1));
    if count == 0 {
        0.0
    } else {
        sum / count as f32
    }
}

/// Appends the whole frames of interleaved `src` (`in_channels` channels) to `out`, remixed to
/// `out_channels` with [`remix_sample`]. Returns the frames appended.
pub(crate) fn remix(
    src: &[f32],
    in_channels: usize,
    out_channels: usize,
    out: &mut Vec<f32>,
) -> usize {
    if in_channels == 0 || out_channels == 0 {
        return 0;
    }
    if in_channels == out_channels {
        let frames = src.len() / in_channels;
        out.extend_from_slice(src.get(..frames * in_channels).unwrap_or_default());
        return frames;
    }
    let mut frames = 0;
    for frame in src.chunks_exact(in_channels) {
        out.extend((0..out_channels).map(|j| remix_sample(frame, j, out_channels)));
        frames += 1;
    }
    frames
}

/// A float sample (full scale ±1.0) as 16-bit PCM, rounded and clipped.
pub(crate) fn f32_to_i16(x: f32) -> i16 {
    // `as` saturates and maps NaN to 0.
    (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// A 16-bit PCM sample as a float (full scale ±1.0); [`f32_to_i16`] inverts it exactly.
pub(crate) fn i16_to_f32(x: i16) -> f32 {
    f32::from(x) / 32768.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::TAU;

    fn tone(rate: u32, freq: f64, frames: usize, channels: usize) -> Vec<f32> {
        (0..frames)
            .flat_map(|k| {
                let v = (0.5 * (TAU * freq * k as f64 / f64::from(rate)).sin()) as f32;
                std::iter::repeat_n(v, channels)
            })
            .collect()
    }

    /// Pushes `input` through in chunks, flushes the delay and drops it: the converted signal.
    fn run(r: &mut Resampler, input: &[f32]) -> Vec<f32> {
        let ch = r.channels();
        let mut out = Vec::new();
        for chunk in input.chunks(r.input_frames_next() * ch) {
            r.process(chunk, &mut out).unwrap();
        }
        let delay = r.delay_frames();
        let expected =
            (input.len() / ch) as u64 * u64::from(r.output_rate()) / u64::from(r.input_rate());
        while out.len() / ch < delay + expected as usize {
            r.process(&[], &mut out).unwrap();
        }
        out.drain(..delay * ch);
        out.truncate(expected as usize * ch);
        out
    }

    fn zero_crossings(x: impl Iterator<Item = f32>) -> usize {
        let mut prev = 0.0f32;
        let mut n = 0;
        for v in x {
            if (prev < 0.0 && v >= 0.0) || (prev >= 0.0 && v < 0.0) {
                n += 1;
            }
            prev = v;
        }
        n
    }

    #[test]
    fn a_44k1_tone_keeps_its_frequency_and_length() {
        let mut r = Resampler::new(44_100, 1).unwrap();
        assert_eq!(r.input_frames_next(), 441);
        let input = tone(44_100, 1000.0, 44_100, 1);
        let out = run(&mut r, &input);
        // One second in, one second out.
        assert_eq!(out.len(), 48_000);
        // It matches the tone synthesised at 48 kHz, up to the sub-sample part of the delay
        // (rubato reports whole frames), away from the filter's ramps at both ends.
        let worst_at = |shift: f64| {
            out.iter()
                .enumerate()
                .take(48_000 - 200)
                .skip(200)
                .map(|(k, &v)| {
                    let ideal = 0.5 * (TAU * 1000.0 * (k as f64 - shift) / 48_000.0).sin();
                    (f64::from(v) - ideal).abs()
                })
                .fold(0.0f64, f64::max)
        };
        let (shift, worst) = (-100..=100)
            .map(|i| f64::from(i) / 100.0)
            .map(|s| (s, worst_at(s)))
            .fold(
                (0.0, f64::MAX),
                |best, c| if c.1 < best.1 { c } else { best },
            );
        assert!(worst < 2e-4, "worst deviation {worst} at shift {shift}");
        // 1 kHz crosses zero 2000 times a second: 1995.8 times in the 47900 samples counted.
        let crossings = zero_crossings(out.iter().copied().skip(100));
        assert!((1994..=1997).contains(&crossings), "{crossings} crossings");
    }

    #[test]
    fn delay_is_reported_and_short() {
        let r = Resampler::new(44_100, 2).unwrap();
        let d = r.delay_frames();
        // 64 input samples at 48/44.1.
        assert_eq!(d, 69);
        assert!(r.output_frames_max() >= 480);
    }

    #[test]
    fn stereo_channels_stay_apart_when_downsampling() {
        let mut r = Resampler::with_rates(96_000, 48_000, 2).unwrap();
        let left = tone(96_000, 440.0, 9600, 1);
        let input: Vec<f32> = left.iter().flat_map(|&l| [l, 0.0]).collect();
        let out = run(&mut r, &input);
        assert_eq!(out.len(), 4800 * 2);
        let right_peak = out
            .iter()
            .skip(1)
            .step_by(2)
            .fold(0.0f32, |m, x| m.max(x.abs()));
        let left_peak = out
            .iter()
            .step_by(2)
            .skip(200)
            .fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(right_peak < 1e-6, "right channel leaked {right_peak}");
        assert!((left_peak - 0.5).abs() < 0.01, "left peak {left_peak}");
    }

    #[test]
    fn equal_rates_copy_through_without_delay() {
        let mut r = Resampler::new(48_000, 2).unwrap();
        assert!(r.is_passthrough());
        assert_eq!(r.delay_frames(), 0);
        let input = tone(48_000, 1000.0, 1000, 2);
        let mut out = Vec::new();
        assert_eq!(r.process(&input, &mut out).unwrap(), 1000);
        assert_eq!(out, input);
    }

    #[test]
    fn does_not_allocate_once_reserved_and_rejects_oversized_chunks() {
        let mut r = Resampler::new(44_100, 1).unwrap();
        let input = tone(44_100, 1000.0, 441, 1);
        let mut out = Vec::with_capacity(r.output_frames_max() * 4);
        let ptr = out.as_ptr();
        for _ in 0..3 {
            r.process(&input, &mut out).unwrap();
        }
        assert_eq!(out.as_ptr(), ptr);
        assert!((1430..=1450).contains(&out.len()), "{} samples", out.len());
        let too_long = tone(44_100, 1000.0, 442, 1);
        assert!(r.process(&too_long, &mut out).is_err());
    }

    #[test]
    fn bad_settings_are_errors() {
        assert!(Resampler::new(0, 1).is_err());
        assert!(Resampler::new(44_100, 0).is_err());
    }

    #[test]
    fn remix_averages_down_and_duplicates_up() {
        let mut out = Vec::new();
        assert_eq!(remix(&[0.2, 0.4, -1.0, 1.0], 2, 1, &mut out), 2);
        assert_eq!(out, [0.3, 0.0]);
        out.clear();
        remix(&[0.5, -0.5], 1, 2, &mut out);
        assert_eq!(out, [0.5, 0.5, -0.5, -0.5]);
        out.clear();
        // Four channels onto two: 0 and 2 fold onto left, 1 and 3 onto right.
        remix(&[0.1, 0.2, 0.3, 0.4], 4, 2, &mut out);
        assert!((out[0] - 0.2).abs() < 1e-6 && (out[1] - 0.3).abs() < 1e-6);
        out.clear();
        // A trailing partial frame is left out.
        assert_eq!(remix(&[0.1, 0.2, 0.3], 2, 2, &mut out), 1);
        assert_eq!(out, [0.1, 0.2]);
    }

    #[test]
    fn sample_conversion_round_trips_and_clips() {
        for v in [i16::MIN, -1, 0, 1, 12345, i16::MAX] {
            assert_eq!(f32_to_i16(i16_to_f32(v)), v);
        }
        assert_eq!(f32_to_i16(2.0), i16::MAX);
        assert_eq!(f32_to_i16(-2.0), i16::MIN);
        assert_eq!(f32_to_i16(f32::NAN), 0);
    }
}
