//! WAV files as audio sources and sinks.
//!
//! [`WavSource`] reads any WAV file hound understands (8, 16, 24 or 32-bit integer or 32-bit
//! float samples, any rate, any channel count) and turns it into duet's 48 kHz frames;
//! [`WavSink`] writes frames to a 48 kHz 16-bit file. Neither is paced: the caller decides when
//! to read or write.

use std::fs::File;
use std::io::{BufReader, BufWriter, Cursor, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::audio::resample::{f32_to_i16, remix, Resampler};
use crate::audio::{AudioSink, AudioSource};
use crate::error::{Error, SourceError};
use crate::frame::{AudioFormat, AudioFrame, Channels, Read as ReadResult, SAMPLE_RATE};

type Reader = hound::WavReader<Box<dyn Read + Send>>;

/// Audio frames read from a WAV file or an in-memory WAV image.
///
/// The file's channels are averaged down or duplicated up to the format's channels and its rate
/// converted to 48 kHz (the resampler's delay is trimmed, so the output lines up with the file
/// and lasts as long). The last frame is padded with silence; then [`ReadResult::End`].
/// Frame `n` has `seq` n and was "captured" at the time of the first read plus `n` frame
/// durations: the file's own sample clock.
pub struct WavSource {
    path: PathBuf,
    reader: Reader,
    spec: hound::WavSpec,
    format: AudioFormat,
    resampler: Resampler,
    /// One resampler chunk of the file's samples, as floats, at the file's channel count.
    raw: Vec<f32>,
    /// The same chunk remixed to the format's channels.
    mixed: Vec<f32>,
    /// Converted 48 kHz samples not yet handed out.
    out: Vec<f32>,
    /// Output frames of resampler delay still to drop.
    skip: usize,
    /// Frames read from the file.
    frames_in: u64,
    /// 48 kHz frames produced after the delay was dropped.
    frames_out: u64,
    /// 48 kHz frames the whole file converts to, once its end was reached.
    total_out: Option<u64>,
    start: Option<Instant>,
    next_seq: u64,
}

impl std::fmt::Debug for WavSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavSource")
            .field("path", &self.path)
            .field("spec", &self.spec)
            .field("format", &self.format)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl WavSource {
    /// Opens the WAV file at `path`, to be read as frames of `format`.
    ///
    /// An unreadable file is [`SourceError::Io`]; a file that is not a WAV hound can decode is
    /// [`SourceError::Format`]. Both name the file.
    pub fn open(path: impl AsRef<Path>, format: AudioFormat) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| SourceError::Io {
            path: path.clone(),
            source,
        })?;
        Self::from_reader(path, Box::new(BufReader::new(file)), format)
    }

    /// Reads a WAV image held in memory (a sample built into the binary); `name` stands for
    /// the file in errors.
    pub fn from_bytes(
        name: &str,
        bytes: &'static [u8],
        format: AudioFormat,
    ) -> Result<Self, Error> {
        Self::from_reader(PathBuf::from(name), Box::new(Cursor::new(bytes)), format)
    }

    fn from_reader(
        path: PathBuf,
        input: Box<dyn Read + Send>,
        format: AudioFormat,
    ) -> Result<Self, Error> {
        let reader = hound::WavReader::new(input).map_err(|e| wav_error(&path, e))?;
        let spec = reader.spec();
        let bad = |reason: String| SourceError::Format {
            path: path.clone(),
            reason,
        };
        if spec.channels == 0 {
            return Err(bad("the file declares zero channels".into()).into());
        }
        if spec.sample_rate == 0 {
            return Err(bad("the file declares a sample rate of 0 Hz".into()).into());
        }
        let float_ok =
            spec.sample_format == hound::SampleFormat::Float && spec.bits_per_sample == 32;
        let int_ok = spec.sample_format == hound::SampleFormat::Int
            && (1..=32).contains(&spec.bits_per_sample);
        if !float_ok && !int_ok {
            return Err(bad(format!(
                "{}-bit {:?} samples are not supported",
                spec.bits_per_sample, spec.sample_format
            ))
            .into());
        }
        let channels = format.channels.count();
        let resampler = Resampler::new(spec.sample_rate, channels).map_err(|e| {
            bad(format!(
                "cannot convert {} Hz to 48 kHz: {e}",
                spec.sample_rate
            ))
        })?;
        let chunk = resampler.input_frames_next();
        let skip = resampler.delay_frames();
        let out_cap = (format.samples_per_frame() + resampler.output_frames_max() * channels) * 2;
        Ok(Self {
            raw: Vec::with_capacity(chunk * usize::from(spec.channels)),
            mixed: Vec::with_capacity(chunk * channels),
            out: Vec::with_capacity(out_cap),
            path,
            reader,
            spec,
            format,
            resampler,
            skip,
            frames_in: 0,
            frames_out: 0,
            total_out: None,
            start: None,
            next_seq: 0,
        })
    }

    /// Sample rate of the file, Hz.
    pub fn file_rate(&self) -> u32 {
        self.spec.sample_rate
    }

    /// Channels of the file.
    pub fn file_channels(&self) -> u16 {
        self.spec.channels
    }

    /// Reads up to one resampler chunk of whole frames from the file into `raw`, as floats.
    /// Returns false at the end of the file.
    fn read_chunk(&mut self) -> Result<bool, Error> {
        let file_channels = usize::from(self.spec.channels);
        let want = self.resampler.input_frames_next() * file_channels;
        self.raw.clear();
        let more = match self.spec.sample_format {
            hound::SampleFormat::Float => {
                let mut samples = self.reader.samples::<f32>();
                fill(&mut self.raw, want, &mut samples, |x| x)
            }
            hound::SampleFormat::Int => {
                let scale = 1.0 / (1u64 << (self.spec.bits_per_sample - 1)) as f32;
                let mut samples = self.reader.samples::<i32>();
                fill(&mut self.raw, want, &mut samples, |x| x as f32 * scale)
            }
        }
        .map_err(|e| wav_error(&self.path, e))?;
        // A file cut inside a frame loses that frame.
        self.raw
            .truncate(self.raw.len() / file_channels * file_channels);
        self.frames_in += (self.raw.len() / file_channels) as u64;
        Ok(more)
    }

    /// Converts the file until a whole frame is ready or everything has been converted.
    fn refill(&mut self, want: usize) -> Result<(), Error> {
        let channels = self.format.channels.count();
        while self.out.len() < want {
            let produced_before = self.out.len();
            match self.total_out {
                None => {
                    let more = self.read_chunk()?;
                    self.mixed.clear();
                    remix(
                        &self.raw,
                        usize::from(self.spec.channels),
                        channels,
                        &mut self.mixed,
                    );
                    if !self.mixed.is_empty() {
                        self.resampler.process(&self.mixed, &mut self.out)?;
                    }
                    if !more {
                        let total = self.frames_in * u64::from(SAMPLE_RATE)
                            / u64::from(self.spec.sample_rate);
                        self.total_out = Some(total);
                    }
                }
                Some(total) => {
                    let pending = self.frames_out + (self.out.len() / channels) as u64;
                    if pending >= total {
                        break;
                    }
                    // Flush the resampler's delay line with silence.
                    if self.resampler.process(&[], &mut self.out)? == 0 {
                        break;
                    }
                }
            }
            self.account(produced_before);
        }
        Ok(())
    }

    /// Drops the resampler's leading delay from what was just appended, counts the rest, and
    /// cuts whatever runs past the end of the file.
    fn account(&mut self, from: usize) {
        let channels = self.format.channels.count();
        let fresh = (self.out.len() - from) / channels;
        let dropped = fresh.min(self.skip);
        if dropped > 0 {
            self.out.drain(from..from + dropped * channels);
            self.skip -= dropped;
        }
        let kept = (self.out.len() - from) / channels;
        self.frames_out += kept as u64;
        if let Some(total) = self.total_out {
            if self.frames_out > total {
                let extra = (self.frames_out - total) as usize;
                self.out
                    .truncate(self.out.len().saturating_sub(extra * channels));
                self.frames_out = total;
            }
        }
    }
}

/// Pulls up to `want` samples from `samples` into `raw`; false when the file ended.
fn fill<S, I>(
    raw: &mut Vec<f32>,
    want: usize,
    samples: &mut I,
    to_f32: impl Fn(S) -> f32,
) -> Result<bool, hound::Error>
where
    I: Iterator<Item = hound::Result<S>>,
{
    while raw.len() < want {
        match samples.next() {
            Some(Ok(sample)) => raw.push(to_f32(sample)),
            // A file cut short (a recorder that died) ends where its data ends.
            Some(Err(hound::Error::IoError(e))) if is_short_read(&e) => return Ok(false),
            Some(Err(e)) => return Err(e),
            None => return Ok(false),
        }
    }
    Ok(true)
}

impl AudioSource for WavSource {
    fn format(&self) -> AudioFormat {
        self.format
    }

    fn read(&mut self, now: Instant, frame: &mut AudioFrame) -> Result<ReadResult, Error> {
        let start = *self.start.get_or_insert(now);
        let spf = self.format.samples_per_frame();
        self.refill(spf)?;
        if self.out.is_empty() {
            return Ok(ReadResult::End);
        }
        let n = spf.min(self.out.len());
        frame.format = self.format;
        frame.samples.clear();
        frame.samples.extend(self.out.drain(..n).map(f32_to_i16));
        frame.samples.resize(spf, 0);
        frame.seq = self.next_seq;
        frame.capture = start
            .checked_add(frame_offset(self.format, self.next_seq))
            .unwrap_or(start);
        self.next_seq += 1;
        Ok(ReadResult::Frame)
    }
}

/// Time from the first frame to frame `seq`.
fn frame_offset(format: AudioFormat, seq: u64) -> Duration {
    Duration::from_millis(u64::from(format.frame.millis()).saturating_mul(seq))
}

/// True for the error of input that ended too soon. hound reports it as its own error of kind
/// `Other`; the operating system's errors carry an error number.
fn is_short_read(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::UnexpectedEof
        || (e.kind() == std::io::ErrorKind::Other && e.raw_os_error().is_none())
}

/// A hound error while reading `path`, as a duet error naming the file.
fn wav_error(path: &Path, e: hound::Error) -> Error {
    let path = path.to_path_buf();
    match e {
        hound::Error::IoError(source) if !is_short_read(&source) => {
            SourceError::Io { path, source }.into()
        }
        hound::Error::IoError(_) => SourceError::Format {
            path,
            reason: "not a WAV file, or cut short".into(),
        }
        .into(),
        hound::Error::FormatError(what) => SourceError::Format {
            path,
            reason: format!("not a valid WAV file: {what}"),
        }
        .into(),
        other => SourceError::Format {
            path,
            reason: format!("cannot decode WAV: {other}"),
        }
        .into(),
    }
}

/// Frames written to a 48 kHz 16-bit WAV file.
///
/// The header is completed by [`AudioSink::finish`] (or, ignoring errors, when dropped).
pub struct WavSink {
    path: PathBuf,
    channels: Channels,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    frames: u64,
}

impl std::fmt::Debug for WavSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavSink")
            .field("path", &self.path)
            .field("channels", &self.channels)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl WavSink {
    /// Creates (or truncates) the file at `path` for frames of `channels`.
    pub fn create(path: impl AsRef<Path>, channels: Channels) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).map_err(|source| SourceError::Io {
            path: path.clone(),
            source,
        })?;
        let spec = hound::WavSpec {
            channels: channels.count() as u16,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer =
            hound::WavWriter::new(BufWriter::new(file), spec).map_err(|e| wav_error(&path, e))?;
        Ok(Self {
            path,
            channels,
            writer: Some(writer),
            frames: 0,
        })
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }
}

impl AudioSink for WavSink {
    fn write(&mut self, _now: Instant, frame: &AudioFrame) -> Result<(), Error> {
        if frame.format.channels != self.channels {
            return Err(Error::Config(format!(
                "{}: frame has {} channels, the file {}",
                self.path.display(),
                frame.format.channels.count(),
                self.channels.count()
            )));
        }
        let Some(writer) = self.writer.as_mut() else {
            return Err(Error::Config(format!(
                "{}: written after finish",
                self.path.display()
            )));
        };
        for &s in &frame.samples {
            writer
                .write_sample(s)
                .map_err(|e| wav_error(&self.path, e))?;
        }
        self.frames += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Error> {
        match self.writer.take() {
            Some(writer) => writer.finalize().map_err(|e| wav_error(&self.path, e)),
            None => Ok(()),
        }
    }
}
