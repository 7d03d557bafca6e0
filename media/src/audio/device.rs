//! Microphone and speaker through cpal: duet's real-time audio boundary.
//!
//! Each device runs at its own native setup (any rate, any channel count, any PCM sample
//! format). Its cpal callback only converts samples to or from `f32` and moves them through a
//! lock-free single-producer single-consumer ring (ringbuf); it never locks, allocates or logs.
//! Counting what goes wrong is done with atomics: samples dropped because a ring was full
//! (overflows), silence played because the speaker's ring was empty (underruns), driver xruns,
//! and stream failures, which the next read or write returns as [`DeviceError::Stream`].
//!
//! Channel mixing and rate conversion to and from 48 kHz happen on the caller's thread, in
//! [`Microphone::read`](AudioSource::read) and [`Speaker::write`](AudioSink::write), with buffers
//! sized when the device is opened.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SizedSample, SupportedBufferSize};
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

use crate::audio::resample::{f32_to_i16, i16_to_f32, remix, remix_sample, Resampler};
use crate::audio::{AudioSink, AudioSource};
use crate::error::{DeviceError, Error};
use crate::frame::{AudioFormat, AudioFrame, Read, SAMPLE_RATE};

/// The sample encodings a device can run with (cpal's).
pub use cpal::SampleFormat;

mod list;
pub use list::{list_devices, DeviceFormat, DeviceInfo, DeviceList};

const MICROPHONE: &str = "microphone";
const SPEAKER: &str = "speaker";

/// The setup a device stream runs with: its rate, channel count and sample encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Samples per second per channel.
    pub sample_rate: u32,
    /// Interleaved channels.
    pub channels: u16,
    /// Encoding of each sample.
    pub sample_format: SampleFormat,
}

impl fmt::Display for DeviceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ch, {} Hz, {}",
            self.channels, self.sample_rate, self.sample_format
        )
    }
}

/// The first audio host that starts (ALSA on Linux), without cpal's panic when none does.
fn host() -> Result<cpal::Host, Error> {
    let mut reason = String::from("no audio host is available");
    for id in cpal::available_hosts() {
        match cpal::host_from_id(id) {
            Ok(host) => return Ok(host),
            Err(e) => reason = format!("{}: {e}", id.name()),
        }
    }
    Err(DeviceError::Open {
        kind: "audio host",
        name: String::new(),
        reason,
    }
    .into())
}

/// The name a device is opened by.
fn device_name(device: &cpal::Device) -> String {
    match device.id() {
        Ok(id) => id.id().to_string(),
        Err(_) => device.to_string(),
    }
}

/// The default device of a direction, or the one called `name` (its PCM name, its full cpal
/// id such as `alsa:null`, or its description).
fn find_device(
    host: &cpal::Host,
    kind: &'static str,
    name: Option<&str>,
    input: bool,
) -> Result<cpal::Device, Error> {
    let not_found = || DeviceError::NotFound {
        kind,
        name: name.map(str::to_string),
    };
    let Some(name) = name else {
        let device = if input {
            host.default_input_device()
        } else {
            host.default_output_device()
        };
        return device.ok_or_else(|| not_found().into());
    };
    let matches = |d: &cpal::Device| {
        d.id()
            .is_ok_and(|id| id.id() == name || id.to_string() == name)
            || d.description().is_ok_and(|desc| desc.name() == name)
    };
    if let Some(device) = host.devices().ok().and_then(|mut all| all.find(matches)) {
        return Ok(device);
    }
    // Short forms of listed names, such as `hw:0,0` for `hw:CARD=0,DEV=0`.
    host.device_by_id(&cpal::DeviceId::new(host.id(), name))
        .ok_or_else(|| not_found().into())
}

/// Picks the stream setup: `wanted`, or the device's default. Asks for 10 ms callbacks when
/// the device allows it, for low latency; otherwise leaves the period to the driver.
fn stream_config(
    device: &cpal::Device,
    input: bool,
    wanted: Option<DeviceConfig>,
) -> Result<(cpal::StreamConfig, DeviceConfig), cpal::Error> {
    let default = if input {
        device.default_input_config()
    } else {
        device.default_output_config()
    };
    let (chosen, buffer) = match (wanted, default) {
        (Some(wanted), default) => (wanted, default.ok().map(|d| *d.buffer_size())),
        (None, Ok(d)) => (
            DeviceConfig {
                sample_rate: d.sample_rate(),
                channels: d.channels(),
                sample_format: d.sample_format(),
            },
            Some(*d.buffer_size()),
        ),
        (None, Err(e)) => return Err(e),
    };
    let period = (chosen.sample_rate / 100).max(1);
    let buffer_size = match buffer {
        Some(SupportedBufferSize::Range { min, max }) if (min..=max).contains(&period) => {
            cpal::BufferSize::Fixed(period)
        }
        _ => cpal::BufferSize::Default,
    };
    let config = cpal::StreamConfig {
        channels: chosen.channels,
        sample_rate: chosen.sample_rate,
        buffer_size,
    };
    Ok((config, chosen))
}

/// Counters shared by a device's callbacks and its owner.
#[derive(Debug, Default)]
struct Shared {
    /// Samples lost because a ring was full.
    overflows: AtomicU64,
    /// Samples of silence played because the ring was empty.
    underruns: AtomicU64,
    /// Data callbacks run.
    callbacks: AtomicU64,
    /// Over- or underruns the driver reported (it recovers from them by itself).
    xruns: AtomicU64,
    /// 0 while the stream is healthy, else 1 + the index in [`FATAL`] of the error it reported.
    failed: AtomicUsize,
}

/// The stream errors that stop a device.
const FATAL: [cpal::ErrorKind; 10] = [
    cpal::ErrorKind::DeviceNotAvailable,
    cpal::ErrorKind::StreamInvalidated,
    cpal::ErrorKind::DeviceBusy,
    cpal::ErrorKind::HostUnavailable,
    cpal::ErrorKind::PermissionDenied,
    cpal::ErrorKind::ResourceExhausted,
    cpal::ErrorKind::UnsupportedConfig,
    cpal::ErrorKind::UnsupportedOperation,
    cpal::ErrorKind::InvalidInput,
    cpal::ErrorKind::BackendError,
];

impl Shared {
    /// Records an error from the stream's error callback: no lock, no allocation.
    fn report(&self, kind: cpal::ErrorKind) {
        match kind {
            cpal::ErrorKind::Xrun => {
                self.xruns.fetch_add(1, Relaxed);
            }
            // The stream goes on: rerouted, or without real-time priority.
            cpal::ErrorKind::DeviceChanged | cpal::ErrorKind::RealtimeDenied => {}
            kind => {
                let code = FATAL
                    .iter()
                    .position(|k| *k == kind)
                    .map_or(FATAL.len(), |i| i);
                self.failed.store(code + 1, Relaxed);
            }
        }
    }

    /// The stream's failure, if it reported one.
    fn check(&self, kind: &'static str, name: &str) -> Result<(), Error> {
        match self.failed.load(Relaxed) {
            0 => Ok(()),
            code => Err(DeviceError::Stream {
                kind,
                name: name.to_string(),
                reason: FATAL
                    .get(code - 1)
                    .copied()
                    .unwrap_or(cpal::ErrorKind::Other)
                    .to_string(),
            }
            .into()),
        }
    }
}

/// Samples of `channels`-channel audio at `rate` lasting `d`.
fn samples_for(d: Duration, rate: u32, channels: usize) -> usize {
    (d.as_secs_f64() * f64::from(rate)).ceil() as usize * channels
}

/// The duration of `frames` frames at `rate`.
fn frames_time(frames: usize, rate: u32) -> Duration {
    Duration::from_secs_f64(frames as f64 / f64::from(rate.max(1)))
}

/// Builds a capture or playout stream for the device's sample encoding, running `$make::<T>`.
macro_rules! for_sample_format {
    ($format:expr, $make:ident ( $($arg:expr),* )) => {
        match $format {
            SampleFormat::I8 => $make::<i8>($($arg),*),
            SampleFormat::I16 => $make::<i16>($($arg),*),
            SampleFormat::I24 => $make::<cpal::I24>($($arg),*),
            SampleFormat::I32 => $make::<i32>($($arg),*),
            SampleFormat::I64 => $make::<i64>($($arg),*),
            SampleFormat::U8 => $make::<u8>($($arg),*),
            SampleFormat::U16 => $make::<u16>($($arg),*),
            SampleFormat::U24 => $make::<cpal::U24>($($arg),*),
            SampleFormat::U32 => $make::<u32>($($arg),*),
            SampleFormat::U64 => $make::<u64>($($arg),*),
            SampleFormat::F32 => $make::<f32>($($arg),*),
            SampleFormat::F64 => $make::<f64>($($arg),*),
            other => Err(cpal::Error::with_message(
                cpal::ErrorKind::UnsupportedConfig,
                format!("{other} samples are not PCM"),
            )),
        }
    };
}

fn capture_stream<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    mut ring: HeapProd<f32>,
    shared: Arc<Shared>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
{
    let channels = usize::from(config.channels).max(1);
    let errors = Arc::clone(&shared);
    device.build_input_stream::<T, _, _>(
        config,
        move |data: &[T], _: &cpal::InputCallbackInfo| {
            // Whole frames only, so the reader never loses track of the channels.
            let whole = data.len() / channels * channels;
            let room = ring.vacant_len() / channels * channels;
            let pushed = ring.push_iter(
                data.iter()
                    .take(whole.min(room))
                    .map(|&s| <f32 as FromSample<T>>::from_sample_(s)),
            );
            let lost = data.len() - pushed;
            if lost > 0 {
                shared.overflows.fetch_add(lost as u64, Relaxed);
            }
            shared.callbacks.fetch_add(1, Relaxed);
        },
        move |e: cpal::Error| errors.report(e.kind()),
        None,
    )
}

fn playout_stream<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    mut ring: HeapCons<f32>,
    shared: Arc<Shared>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<f32> + Send + 'static,
{
    let errors = Arc::clone(&shared);
    device.build_output_stream::<T, _, _>(
        config,
        move |data: &mut [T], _: &cpal::OutputCallbackInfo| {
            let mut queued = ring.pop_iter();
            let mut missing = 0u64;
            for slot in data.iter_mut() {
                *slot = match queued.next() {
                    Some(v) => T::from_sample_(v),
                    None => {
                        missing += 1;
                        T::EQUILIBRIUM
                    }
                };
            }
            if missing > 0 {
                shared.underruns.fetch_add(missing, Relaxed);
            }
            shared.callbacks.fetch_add(1, Relaxed);
        },
        move |e: cpal::Error| errors.report(e.kind()),
        None,
    )
}

/// Opens a device stream: finds the device, picks its setup, builds the stream with `build`
/// and starts it.
fn open_stream(
    kind: &'static str,
    name: Option<&str>,
    wanted: Option<DeviceConfig>,
    build: impl FnOnce(
        &cpal::Device,
        cpal::StreamConfig,
        DeviceConfig,
    ) -> Result<cpal::Stream, cpal::Error>,
) -> Result<(cpal::Stream, String, DeviceConfig), Error> {
    let host = host()?;
    let input = kind == MICROPHONE;
    let device = find_device(&host, kind, name, input)?;
    let device_name = device_name(&device);
    let open_error = |e: cpal::Error| DeviceError::Open {
        kind,
        name: device_name.clone(),
        reason: e.to_string(),
    };
    let (config, chosen) = stream_config(&device, input, wanted).map_err(open_error)?;
    if chosen.channels == 0 || chosen.sample_rate == 0 {
        return Err(open_error(cpal::Error::with_message(
            cpal::ErrorKind::UnsupportedConfig,
            format!("unusable setup {chosen}"),
        ))
        .into());
    }
    let stream = build(&device, config, chosen).map_err(open_error)?;
    stream.play().map_err(open_error)?;
    Ok((stream, device_name, chosen))
}

/// The device's callback period in frames, or 10 ms when the driver does not say.
fn period_frames(stream: &cpal::Stream, rate: u32) -> usize {
    stream
        .buffer_size()
        .map_or((rate / 100) as usize, |p| p as usize)
        .max(1)
}

/// Audio captured by an input device, as 48 kHz frames.
///
/// Reads never block: [`Read::Pending`] until a whole frame has been captured. When the reader
/// falls behind, the ring keeps at most about a frame, two device periods and a resampler chunk
/// of audio; older samples are dropped (and counted as overflows) so latency stays bounded.
pub struct Microphone {
    /// Dropped first: stops the callback before the ring goes.
    _stream: cpal::Stream,
    name: String,
    format: AudioFormat,
    device: DeviceConfig,
    ring: HeapCons<f32>,
    shared: Arc<Shared>,
    resampler: Resampler,
    /// Most device samples left waiting in the ring before the oldest are dropped.
    backlog_limit: usize,
    /// Device samples popped from the ring, one resampler chunk at most.
    staging: Vec<f32>,
    /// Popped samples remixed to the frame's channels, up to one resampler chunk.
    pending: Vec<f32>,
    /// 48 kHz samples waiting to fill a frame.
    out: Vec<f32>,
    next_seq: u64,
}

impl fmt::Debug for Microphone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Microphone")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("device", &self.device)
            .field("overflows", &self.overflows())
            .finish_non_exhaustive()
    }
}

impl Microphone {
    /// Opens the default input device, or the one called `name`, at its native setup, to
    /// produce frames of `format`. A missing device is [`DeviceError::NotFound`].
    pub fn open(name: Option<&str>, format: AudioFormat) -> Result<Self, Error> {
        Self::open_inner(name, format, None)
    }

    /// Like [`Microphone::open`], but runs the device at `config` instead of its native setup.
    pub fn open_with_config(
        name: Option<&str>,
        format: AudioFormat,
        config: DeviceConfig,
    ) -> Result<Self, Error> {
        Self::open_inner(name, format, Some(config))
    }

    fn open_inner(
        name: Option<&str>,
        format: AudioFormat,
        wanted: Option<DeviceConfig>,
    ) -> Result<Self, Error> {
        let shared = Arc::new(Shared::default());
        let mut consumer = None;
        let (stream, name, device) =
            open_stream(MICROPHONE, name, wanted, |dev, config, chosen| {
                let rate = chosen.sample_rate;
                let channels = usize::from(chosen.channels);
                // Room for a quarter second, far more than any period: the reader trims the backlog.
                let capacity = samples_for(Duration::from_millis(250), rate, channels).max(1 << 12);
                let (producer, cons) = HeapRb::<f32>::new(capacity).split();
                consumer = Some(cons);
                let shared = Arc::clone(&shared);
                for_sample_format!(
                    chosen.sample_format,
                    capture_stream(dev, config, producer, shared)
                )
            })?;
        let ring = consumer.ok_or_else(|| Error::Config("capture ring was not created".into()))?;
        let channels = format.channels.count();
        let dev_channels = usize::from(device.channels);
        let resampler = Resampler::new(device.sample_rate, channels)?;
        let chunk = resampler.input_frames_next();
        let frame_frames = samples_for(format.frame.duration(), device.sample_rate, 1);
        let backlog_limit =
            (frame_frames + 2 * period_frames(&stream, device.sample_rate) + chunk) * dev_channels;
        Ok(Self {
            staging: vec![0.0; chunk * dev_channels],
            pending: Vec::with_capacity(chunk * channels),
            out: Vec::with_capacity(
                format.samples_per_frame() + resampler.output_frames_max() * channels,
            ),
            _stream: stream,
            name,
            format,
            device,
            ring,
            shared,
            resampler,
            backlog_limit,
            next_seq: 0,
        })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The setup the device runs with.
    pub fn device_config(&self) -> DeviceConfig {
        self.device
    }

    /// Captured samples (device samples, all channels) dropped so far: the ring was full when
    /// the callback ran, or the reader had fallen behind and the oldest were discarded.
    pub fn overflows(&self) -> u64 {
        self.shared.overflows.load(Relaxed)
    }

    /// Data callbacks run so far.
    pub fn callbacks(&self) -> u64 {
        self.shared.callbacks.load(Relaxed)
    }

    /// Overruns the driver reported and recovered from.
    pub fn xruns(&self) -> u64 {
        self.shared.xruns.load(Relaxed)
    }

    /// Audio captured and not yet handed out in a frame.
    pub fn buffered(&self) -> Duration {
        let dev_channels = usize::from(self.device.channels).max(1);
        let channels = self.format.channels.count();
        let device_frames = self.ring.occupied_len() / dev_channels + self.pending.len() / channels;
        frames_time(device_frames, self.device.sample_rate)
            + frames_time(
                self.out.len() / channels + self.resampler.delay_frames(),
                SAMPLE_RATE,
            )
    }

    /// Moves captured audio through the mixer and resampler until `want` 48 kHz samples are
    /// ready or the ring is empty.
    fn convert(&mut self, want: usize) -> Result<(), Error> {
        let channels = self.format.channels.count();
        let dev_channels = usize::from(self.device.channels).max(1);
        let chunk = self.resampler.input_frames_next();
        while self.out.len() < want {
            let need = chunk.saturating_sub(self.pending.len() / channels);
            let take = need.min(self.ring.occupied_len() / dev_channels);
            let Some(staging) = self.staging.get_mut(..take * dev_channels) else {
                break;
            };
            if staging.is_empty() {
                break;
            }
            let got = self.ring.pop_slice(staging);
            remix(
                staging.get(..got).unwrap_or_default(),
                dev_channels,
                channels,
                &mut self.pending,
            );
            if self.pending.len() / channels >= chunk {
                self.resampler.process(&self.pending, &mut self.out)?;
                self.pending.clear();
            }
        }
        Ok(())
    }
}

impl AudioSource for Microphone {
    fn format(&self) -> AudioFormat {
        self.format
    }

    /// Fills `frame` when a whole one has been captured. Its capture time is `now` minus the
    /// audio still buffered after it and its own duration (approximate: the device's own
    /// latency is not counted).
    fn read(&mut self, now: Instant, frame: &mut AudioFrame) -> Result<Read, Error> {
        self.shared.check(MICROPHONE, &self.name)?;
        let dev_channels = usize::from(self.device.channels).max(1);
        let waiting = self.ring.occupied_len();
        if waiting > self.backlog_limit {
            let excess = (waiting - self.backlog_limit) / dev_channels * dev_channels;
            let dropped = self.ring.skip(excess);
            self.shared.overflows.fetch_add(dropped as u64, Relaxed);
        }
        let spf = self.format.samples_per_frame();
        self.convert(spf)?;
        if self.out.len() < spf {
            return Ok(Read::Pending);
        }
        frame.format = self.format;
        frame.samples.clear();
        frame.samples.extend(self.out.drain(..spf).map(f32_to_i16));
        frame.seq = self.next_seq;
        self.next_seq += 1;
        let age = self.buffered() + self.format.frame.duration();
        frame.capture = now.checked_sub(age).unwrap_or(now);
        Ok(Read::Frame)
    }

    fn is_live(&self) -> bool {
        true
    }
}

/// Frames played on an output device.
///
/// Writes never block. Each frame is resampled to the device's rate, spread over its channels
/// and queued in a ring the device's callback drains. When the callback finds the ring empty it
/// plays silence and counts the missing samples ([`Speaker::underruns`]); when a write finds the
/// ring full, the part of the frame that does not fit is dropped (newest audio goes, the queue
/// and so the latency stay bounded) and counted ([`Speaker::overflows`]).
pub struct Speaker {
    /// Dropped first: stops the callback before the ring goes.
    _stream: cpal::Stream,
    name: String,
    format: AudioFormat,
    device: DeviceConfig,
    ring: HeapProd<f32>,
    shared: Arc<Shared>,
    resampler: Resampler,
    /// 48 kHz samples waiting for a whole resampler chunk.
    pending: Vec<f32>,
    /// Samples at the device's rate, still at the frame's channel count.
    out: Vec<f32>,
}

impl fmt::Debug for Speaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Speaker")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("device", &self.device)
            .field("underruns", &self.underruns())
            .field("overflows", &self.overflows())
            .finish_non_exhaustive()
    }
}

impl Speaker {
    /// Opens the default output device, or the one called `name`, at its native setup, to play
    /// frames of `format`. A missing device is [`DeviceError::NotFound`].
    pub fn open(name: Option<&str>, format: AudioFormat) -> Result<Self, Error> {
        Self::open_inner(name, format, None)
    }

    /// Like [`Speaker::open`], but runs the device at `config` instead of its native setup.
    pub fn open_with_config(
        name: Option<&str>,
        format: AudioFormat,
        config: DeviceConfig,
    ) -> Result<Self, Error> {
        Self::open_inner(name, format, Some(config))
    }

    fn open_inner(
        name: Option<&str>,
        format: AudioFormat,
        wanted: Option<DeviceConfig>,
    ) -> Result<Self, Error> {
        let shared = Arc::new(Shared::default());
        let mut producer = None;
        let (stream, name, device) = open_stream(SPEAKER, name, wanted, |dev, config, chosen| {
            let rate = chosen.sample_rate;
            let channels = usize::from(chosen.channels);
            // Two frames of 60 ms and some periods: enough for a writer's jitter, little latency.
            let capacity = samples_for(Duration::from_millis(150), rate, channels).max(1 << 10);
            let (prod, consumer) = HeapRb::<f32>::new(capacity).split();
            producer = Some(prod);
            let shared = Arc::clone(&shared);
            for_sample_format!(
                chosen.sample_format,
                playout_stream(dev, config, consumer, shared)
            )
        })?;
        let ring = producer.ok_or_else(|| Error::Config("playout ring was not created".into()))?;
        let channels = format.channels.count();
        let resampler = Resampler::with_rates(SAMPLE_RATE, device.sample_rate, channels)?;
        let chunk = resampler.input_frames_next();
        Ok(Self {
            pending: Vec::with_capacity(format.samples_per_frame() + chunk * channels),
            out: Vec::with_capacity(resampler.output_frames_max() * channels),
            _stream: stream,
            name,
            format,
            device,
            ring,
            shared,
            resampler,
        })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The setup the device runs with.
    pub fn device_config(&self) -> DeviceConfig {
        self.device
    }

    /// Samples (device samples, all channels) of silence the device played because nothing
    /// was queued, including before the first write.
    pub fn underruns(&self) -> u64 {
        self.shared.underruns.load(Relaxed)
    }

    /// Samples (device samples, all channels) dropped because the queue was full on write.
    pub fn overflows(&self) -> u64 {
        self.shared.overflows.load(Relaxed)
    }

    /// Data callbacks run so far.
    pub fn callbacks(&self) -> u64 {
        self.shared.callbacks.load(Relaxed)
    }

    /// Underruns the driver reported and recovered from.
    pub fn xruns(&self) -> u64 {
        self.shared.xruns.load(Relaxed)
    }

    /// Audio queued for the device and not yet taken by its callback.
    pub fn buffered(&self) -> Duration {
        let dev_channels = usize::from(self.device.channels).max(1);
        frames_time(
            self.ring.occupied_len() / dev_channels,
            self.device.sample_rate,
        )
    }

    /// Queues the converted samples, spread over the device's channels, dropping what does
    /// not fit.
    fn queue(&mut self) {
        let channels = self.format.channels.count();
        let dev_channels = usize::from(self.device.channels).max(1);
        let frames = self.out.len() / channels;
        let fits = frames.min(self.ring.vacant_len() / dev_channels);
        let pushed = self.ring.push_iter(
            self.out
                .chunks_exact(channels)
                .take(fits)
                .flat_map(|f| (0..dev_channels).map(move |j| remix_sample(f, j, dev_channels))),
        );
        let lost = frames * dev_channels - pushed;
        if lost > 0 {
            self.shared.overflows.fetch_add(lost as u64, Relaxed);
        }
        self.out.clear();
    }
}

impl AudioSink for Speaker {
    fn write(&mut self, _now: Instant, frame: &AudioFrame) -> Result<(), Error> {
        self.shared.check(SPEAKER, &self.name)?;
        let channels = self.format.channels.count();
        if frame.format.channels != self.format.channels {
            return Err(Error::Config(format!(
                "speaker {:?} plays {channels}-channel frames, got {}",
                self.name,
                frame.format.channels.count()
            )));
        }
        let chunk = self.resampler.input_frames_next() * channels;
        let mut rest = frame.samples.as_slice();
        while !rest.is_empty() {
            let need = chunk.saturating_sub(self.pending.len()).max(1);
            let (block, later) = rest.split_at(need.min(rest.len()));
            self.pending.extend(block.iter().map(|&s| i16_to_f32(s)));
            rest = later;
            if self.pending.len() >= chunk {
                self.resampler.process(&self.pending, &mut self.out)?;
                self.pending.clear();
                // Queue as it goes, so `out` never holds more than one chunk's output.
                self.queue();
            }
        }
        self.queue();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xruns_are_counted_and_failures_surface_once_reported() {
        let shared = Shared::default();
        shared.report(cpal::ErrorKind::Xrun);
        shared.report(cpal::ErrorKind::Xrun);
        shared.report(cpal::ErrorKind::RealtimeDenied);
        assert_eq!(shared.xruns.load(Relaxed), 2);
        assert!(shared.check(MICROPHONE, "hw:1").is_ok());

        shared.report(cpal::ErrorKind::DeviceNotAvailable);
        let err = shared.check(MICROPHONE, "hw:1").unwrap_err();
        assert!(matches!(
            &err,
            Error::Device(DeviceError::Stream { kind: "microphone", name, .. }) if name == "hw:1"
        ));
        assert!(err.to_string().contains("not available"), "{err}");
        // Kinds outside the list still stop the device.
        let other = Shared::default();
        other.report(cpal::ErrorKind::Other);
        assert!(other.check(SPEAKER, "x").is_err());
    }

    #[test]
    fn sizes_follow_rate_and_channels() {
        assert_eq!(samples_for(Duration::from_millis(20), 44_100, 2), 1764);
        assert_eq!(samples_for(Duration::from_millis(10), 8_000, 1), 80);
        assert_eq!(frames_time(441, 44_100), Duration::from_millis(10));
    }
}
