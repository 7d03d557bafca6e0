//! H.264 on openh264: a constrained-baseline encoder for WebRTC (packetization-mode=1) and a
//! decoder that drops bad access units, counts them and waits for the next keyframe.
//!
//! Access units are Annex B byte streams (each NAL unit behind a `00 00 00 01` start code).
//! Every IDR carries its SPS and PPS, so a receiver can start or recover at any keyframe.
//! The encoder follows the frames it is given: a frame of a new size rebuilds it and starts
//! the new size with an IDR, so a resolution change never restarts the pipeline.

use std::time::Instant;

use openh264::decoder::Decoder;
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Profile,
    RateControlMode, SpsPpsStrategy, UsageType,
};
use openh264::formats::YUVSource;
use openh264::{OpenH264API, Timestamp};

use crate::error::{CodecError, Error};
use crate::frame::{check_size, i420_len, VideoFrame};

const CODEC: &str = "h264";
/// Largest access unit the decoder accepts; far above any sane frame at 4096x2304.
const MAX_ACCESS_UNIT: usize = 16 << 20;
/// NAL unit types (ITU-T H.264 table 7-1).
const NAL_SLICE: u8 = 1;
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;

/// How to encode: size, bitrate, frame rate and keyframe period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct H264Config {
    /// Picture width in pixels (even). Frames of another size reconfigure the encoder.
    pub width: u32,
    /// Picture height in pixels (even).
    pub height: u32,
    /// Target bitrate in bits per second.
    pub bitrate_bps: u32,
    /// Frame rate the rate control plans for.
    pub fps: f32,
    /// An IDR every this many frames; 0 for keyframes only at the start, on a size change and
    /// on [`H264Encoder::request_keyframe`].
    pub keyframe_interval: u32,
}

impl H264Config {
    /// Checks that every value is usable.
    pub fn validate(&self) -> Result<(), Error> {
        check_size(self.width, self.height)?;
        if !(10_000..=100_000_000).contains(&self.bitrate_bps) {
            return Err(Error::Config(format!(
                "H.264 bitrate {} bps: choose 10 kbps to 100 Mbps",
                self.bitrate_bps
            )));
        }
        if !(self.fps.is_finite() && self.fps >= 1.0 && self.fps <= 240.0) {
            return Err(Error::Config(format!(
                "H.264 frame rate {}: choose 1 to 240 fps",
                self.fps
            )));
        }
        Ok(())
    }

    /// The openh264 configuration [`H264Encoder`] builds its encoder from: exposed so that a
    /// benchmark can call openh264 directly with exactly the same settings.
    pub fn to_openh264(&self) -> EncoderConfig {
        EncoderConfig::new()
            .profile(Profile::Baseline)
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(self.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(self.fps))
            .skip_frames(true)
            .sps_pps_strategy(SpsPpsStrategy::ConstantId)
            .intra_frame_period(IntraFramePeriod::from_num_frames(self.keyframe_interval))
            .complexity(Complexity::Medium)
            .num_threads(1)
    }
}

/// One encoded picture: an Annex B access unit with the identity of the frame it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedVideo {
    /// The access unit (NAL units with start codes); an IDR starts with its SPS and PPS.
    pub data: Vec<u8>,
    /// True for an IDR picture, which a decoder can start from.
    pub keyframe: bool,
    /// `seq` of the source frame.
    pub seq: u64,
    /// `capture` of the source frame.
    pub capture: Instant,
    /// Picture width in pixels.
    pub width: u32,
    /// Picture height in pixels.
    pub height: u32,
}

impl EncodedVideo {
    /// An empty access unit, to be filled by [`H264Encoder::encode`] and then reused.
    /// Its `capture` is a placeholder until then.
    pub fn new() -> Self {
        Self {
            data: Vec::new(),
            keyframe: false,
            seq: 0,
            capture: Instant::now(),
            width: 0,
            height: 0,
        }
    }
}

impl Default for EncodedVideo {
    fn default() -> Self {
        Self::new()
    }
}

/// A [`VideoFrame`] as openh264 reads it.
struct I420<'a> {
    width: usize,
    height: usize,
    y: &'a [u8],
    u: &'a [u8],
    v: &'a [u8],
}

impl<'a> I420<'a> {
    fn new(frame: &'a VideoFrame) -> Result<Self, Error> {
        check_size(frame.width, frame.height)?;
        let (width, height) = (frame.width as usize, frame.height as usize);
        let (y_len, c_len) = (width * height, width * height / 4);
        if frame.data.len() < i420_len(frame.width, frame.height) {
            return Err(mismatch(format!(
                "a {width}x{height} frame holds {} bytes, I420 needs {}",
                frame.data.len(),
                y_len + 2 * c_len
            )));
        }
        let (y, chroma) = frame.data.split_at(y_len);
        let (u, v) = chroma.split_at(c_len);
        Ok(Self {
            width,
            height,
            y,
            u,
            v: &v[..c_len],
        })
    }
}

impl YUVSource for I420<'_> {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn strides(&self) -> (usize, usize, usize) {
        (self.width, self.width / 2, self.width / 2)
    }

    fn y(&self) -> &[u8] {
        self.y
    }

    fn u(&self) -> &[u8] {
        self.u
    }

    fn v(&self) -> &[u8] {
        self.v
    }
}

fn mismatch(reason: String) -> Error {
    CodecError::Mismatch {
        codec: CODEC,
        reason,
    }
    .into()
}

fn setup_error(e: openh264::Error) -> Error {
    CodecError::Setup {
        codec: CODEC,
        reason: e.to_string(),
    }
    .into()
}

fn encode_error(e: openh264::Error) -> Error {
    CodecError::Encode {
        codec: CODEC,
        reason: e.to_string(),
    }
    .into()
}

fn decode_error(reason: impl Into<String>) -> CodecError {
    CodecError::Decode {
        codec: CODEC,
        reason: reason.into(),
    }
}

/// H.264 constrained-baseline encoder (profile-level-id 42c0xx: profile_idc 66 with
/// constraint_set0 and constraint_set1; no B-frames; one slice per picture, which RTP
/// packetization-mode=1 fragments), with openh264's real-time camera tuning.
///
/// Call [`encode`](Self::encode) once per captured frame. [`set_bitrate`](Self::set_bitrate)
/// retunes the running encoder's rate control in place, so bitrate adaptation costs no
/// keyframe; a new frame rate ([`set_fps`](Self::set_fps)) or picture size rebuilds the encoder
/// at the next frame, which then is an IDR.
pub struct H264Encoder {
    config: H264Config,
    encoder: Encoder,
    /// The settings changed: build a new openh264 encoder before the next frame.
    stale: bool,
    /// An IDR was asked for and has not been produced yet.
    keyframe_wanted: bool,
    /// Frames given to the current openh264 encoder.
    frames: u64,
    /// Capture time of the first frame given to the current openh264 encoder.
    first_capture: Option<Instant>,
}

impl std::fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Encoder")
            .field("config", &self.config)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl H264Encoder {
    /// An encoder for `config`; the first frame it produces is an IDR.
    pub fn new(config: H264Config) -> Result<Self, Error> {
        config.validate()?;
        Ok(Self {
            config,
            encoder: build_encoder(&config)?,
            stale: false,
            keyframe_wanted: false,
            frames: 0,
            first_capture: None,
        })
    }

    /// The current settings (the size is that of the last frame encoded).
    pub fn config(&self) -> &H264Config {
        &self.config
    }

    /// Makes the next encoded frame an IDR (for instance on a PLI or FIR from the receiver).
    pub fn request_keyframe(&mut self) {
        self.keyframe_wanted = true;
    }

    /// Sets the target bitrate from the next frame on. The running encoder's rate control is
    /// retuned in place (no keyframe); should openh264 refuse, the encoder is rebuilt at the
    /// next frame, which is then an IDR.
    pub fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), Error> {
        let config = H264Config {
            bitrate_bps,
            ..self.config
        };
        config.validate()?;
        if config != self.config {
            self.config = config;
            if !self.stale && retune_bitrate(&mut self.encoder, bitrate_bps).is_err() {
                self.stale = true;
            }
        }
        Ok(())
    }

    /// Sets the frame rate the rate control plans for, from the next frame on (an IDR).
    pub fn set_fps(&mut self, fps: f32) -> Result<(), Error> {
        let config = H264Config { fps, ..self.config };
        config.validate()?;
        if config != self.config {
            self.config = config;
            self.stale = true;
        }
        Ok(())
    }

    /// Encodes `frame` into `out` (its buffer reused). Returns false when rate control
    /// skipped the frame: `out.data` is then empty and nothing is to be sent.
    ///
    /// A frame of a size other than the configured one reconfigures the encoder, and the
    /// result is an IDR at the new size.
    pub fn encode(&mut self, frame: &VideoFrame, out: &mut EncodedVideo) -> Result<bool, Error> {
        let source = I420::new(frame)?;
        if (frame.width, frame.height) != (self.config.width, self.config.height) {
            self.config.width = frame.width;
            self.config.height = frame.height;
            self.stale = true;
        }
        if self.stale {
            self.encoder = build_encoder(&self.config)?;
            self.stale = false;
            self.frames = 0;
            self.first_capture = None;
        }
        if self.keyframe_wanted && self.frames > 0 {
            self.encoder.force_intra_frame();
        }
        let first = *self.first_capture.get_or_insert(frame.capture);
        let millis = frame.capture.saturating_duration_since(first).as_millis();
        let timestamp = Timestamp::from_millis(u64::try_from(millis).unwrap_or(u64::MAX >> 1));
        self.frames += 1;

        out.data.clear();
        let stream = self
            .encoder
            .encode_at(&source, timestamp)
            .map_err(encode_error)?;
        out.seq = frame.seq;
        out.capture = frame.capture;
        out.width = frame.width;
        out.height = frame.height;
        out.keyframe = false;
        match stream.frame_type() {
            FrameType::Skip => return Ok(false),
            FrameType::Invalid => {
                return Err(CodecError::Encode {
                    codec: CODEC,
                    reason: "openh264 returned an invalid frame type".into(),
                }
                .into())
            }
            FrameType::IDR => out.keyframe = true,
            FrameType::I | FrameType::P | FrameType::IPMixed => {}
        }
        stream.write_vec(&mut out.data);
        if out.data.is_empty() {
            return Ok(false);
        }
        if out.keyframe {
            self.keyframe_wanted = false;
        }
        Ok(true)
    }
}

/// Changes the target bitrate of a running openh264 encoder (`ENCODER_OPTION_BITRATE` on all
/// spatial layers). The safe openh264 API fixes the bitrate at creation; rebuilding instead would
/// cost an IDR on every adaptation step, which on a lossy path is the largest burst a call sends.
#[allow(unsafe_code)]
fn retune_bitrate(encoder: &mut Encoder, bitrate_bps: u32) -> Result<(), Error> {
    use openh264_sys2::{SBitrateInfo, ENCODER_OPTION_BITRATE, SPATIAL_LAYER_ALL};
    let mut info = SBitrateInfo {
        iLayer: SPATIAL_LAYER_ALL,
        iBitrate: i32::try_from(bitrate_bps).unwrap_or(i32::MAX),
    };
    // SAFETY: `raw_api` is the function table of this live, initialised encoder, which we hold
    // exclusively (&mut). ENCODER_OPTION_BITRATE reads one SBitrateInfo through the pointer during
    // the call and keeps no reference to it; `info` outlives the call.
    let rc = unsafe {
        encoder
            .raw_api()
            .set_option(ENCODER_OPTION_BITRATE, (&raw mut info).cast())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(CodecError::Setup {
            codec: CODEC,
            reason: format!("openh264 refused a bitrate of {bitrate_bps} bps (code {rc})"),
        }
        .into())
    }
}

fn build_encoder(config: &H264Config) -> Result<Encoder, Error> {
    Encoder::with_api_config(OpenH264API::from_source(), config.to_openh264()).map_err(setup_error)
}

/// Counters of an [`H264Decoder`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct H264DecoderStats {
    /// Pictures decoded.
    pub decoded: u64,
    /// Access units rejected as corrupt, truncated or missing a reference.
    pub errors: u64,
    /// Times an error made the decoder wait for a keyframe (each one is worth a PLI).
    pub keyframe_requests: u64,
    /// Non-IDR access units dropped while waiting for a keyframe.
    pub skipped: u64,
}

/// H.264 decoder for Annex B access units, one per call.
///
/// A bad access unit is dropped with [`CodecError::Decode`] and counted; from then on, and
/// from creation until the first IDR, [`needs_keyframe`](Self::needs_keyframe) is true and
/// non-IDR access units are dropped unseen (`Ok(false)`), so a broken reference chain never
/// shows corrupt pictures.
pub struct H264Decoder {
    decoder: Decoder,
    /// openh264 may be left in a bad state by a bad access unit: rebuild it before the next.
    broken: bool,
    /// SPS and PPS NAL units (with start codes) of the last access unit that decoded, given
    /// to a rebuilt decoder in case the next IDR comes without them.
    parameter_sets: Vec<u8>,
    needs_keyframe: bool,
    stats: H264DecoderStats,
}

impl std::fmt::Debug for H264Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Decoder")
            .field("needs_keyframe", &self.needs_keyframe)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl H264Decoder {
    /// A decoder waiting for its first IDR.
    pub fn new() -> Result<Self, Error> {
        Ok(Self {
            decoder: Decoder::new().map_err(setup_error)?,
            broken: false,
            parameter_sets: Vec::new(),
            needs_keyframe: true,
            stats: H264DecoderStats::default(),
        })
    }

    /// True until an IDR has decoded, and again after every error: the sender should be
    /// asked for a keyframe.
    pub fn needs_keyframe(&self) -> bool {
        self.needs_keyframe
    }

    /// Counters so far.
    pub fn stats(&self) -> H264DecoderStats {
        self.stats
    }

    /// Decodes one access unit. Returns true when a picture was produced: it is copied into
    /// `out`, resized to the decoded size (its `seq` and `capture` are left to the caller).
    /// Returns false for an access unit without a picture (parameter sets only) or one dropped
    /// while waiting for a keyframe.
    pub fn decode(&mut self, data: &[u8], out: &mut VideoFrame) -> Result<bool, Error> {
        match self.try_decode(data, out) {
            Ok(produced) => Ok(produced),
            Err(e) => {
                self.broken = true;
                self.stats.errors += 1;
                if !self.needs_keyframe {
                    self.needs_keyframe = true;
                    self.stats.keyframe_requests += 1;
                }
                Err(e.into())
            }
        }
    }

    fn try_decode(&mut self, data: &[u8], out: &mut VideoFrame) -> Result<bool, CodecError> {
        let unit = AccessUnit::scan(data)?;
        if self.needs_keyframe && unit.slices && !unit.idr {
            self.stats.skipped += 1;
            return Ok(false);
        }
        if self.broken {
            self.rebuild()?;
        }
        let picture = self
            .decoder
            .decode(data)
            .map_err(|e| decode_error(describe_state(e.native_code())))?;
        let Some(picture) = picture else {
            if unit.slices {
                return Err(decode_error("a picture's slices produced no picture"));
            }
            self.keep_parameter_sets(&unit, data);
            return Ok(false);
        };
        copy_picture(&picture, out)?;
        self.stats.decoded += 1;
        if unit.idr {
            self.needs_keyframe = false;
        }
        self.keep_parameter_sets(&unit, data);
        Ok(true)
    }

    /// Remembers the SPS and PPS of an access unit that decoded.
    fn keep_parameter_sets(&mut self, unit: &AccessUnit, data: &[u8]) {
        if !unit.parameter_sets {
            return;
        }
        self.parameter_sets.clear();
        for nal in nal_units(data) {
            if matches!(nal.first().map(|h| h & 0x1F), Some(NAL_SPS | NAL_PPS)) {
                self.parameter_sets.extend_from_slice(&[0, 0, 0, 1]);
                self.parameter_sets.extend_from_slice(nal);
            }
        }
    }

    /// Replaces openh264's decoder by a fresh one that knows the last good parameter sets.
    fn rebuild(&mut self) -> Result<(), CodecError> {
        self.decoder = Decoder::new().map_err(|e| CodecError::Setup {
            codec: CODEC,
            reason: e.to_string(),
        })?;
        self.broken = false;
        if !self.parameter_sets.is_empty() {
            self.decoder
                .decode(&self.parameter_sets)
                .map_err(|e| decode_error(describe_state(e.native_code())))?;
        }
        Ok(())
    }
}

/// Names the bits of an openh264 decoding state.
fn describe_state(state: i64) -> String {
    const BITS: [(i64, &str); 8] = [
        (0x02, "reference lost"),
        (0x04, "bitstream error"),
        (0x08, "dependent layer lost"),
        (0x10, "no parameter sets"),
        (0x20, "data error concealed"),
        (0x40, "reference list broken"),
        (0x1000, "invalid argument"),
        (0x4000, "out of memory"),
    ];
    let names: Vec<&str> = BITS
        .iter()
        .filter(|(bit, _)| state & bit != 0)
        .map(|&(_, name)| name)
        .collect();
    if names.is_empty() {
        format!("openh264 decoding state {state:#x}")
    } else {
        format!("{} (openh264 state {state:#x})", names.join(", "))
    }
}

/// Copies a decoded picture (with strides) into a tightly packed frame.
fn copy_picture(picture: &impl YUVSource, out: &mut VideoFrame) -> Result<(), CodecError> {
    let (w, h) = picture.dimensions();
    let (width, height) = (u32::try_from(w), u32::try_from(h));
    let (Ok(width), Ok(height)) = (width, height) else {
        return Err(decode_error(format!("decoded picture of {w}x{h}")));
    };
    out.resize(width, height)
        .map_err(|_| decode_error(format!("decoded picture of unusable size {w}x{h}")))?;
    let (sy, su, sv) = picture.strides();
    let (y, u, v) = out.planes_mut();
    copy_plane(picture.y(), sy, y, w)?;
    copy_plane(picture.u(), su, u, w / 2)?;
    copy_plane(picture.v(), sv, v, w / 2)
}

fn copy_plane(src: &[u8], stride: usize, dst: &mut [u8], width: usize) -> Result<(), CodecError> {
    for (row, line) in dst.chunks_exact_mut(width).enumerate() {
        let start = row * stride;
        let from = src
            .get(start..start + width)
            .filter(|_| stride >= width)
            .ok_or_else(|| decode_error("decoded plane shorter than its size"))?;
        line.copy_from_slice(from);
    }
    Ok(())
}

/// What an access unit holds, checked before openh264 sees it.
struct AccessUnit {
    /// Holds coded slices.
    slices: bool,
    /// Holds an SPS or a PPS.
    parameter_sets: bool,
    /// Its slices are IDR slices.
    idr: bool,
}

impl AccessUnit {
    fn scan(data: &[u8]) -> Result<Self, CodecError> {
        if data.len() > MAX_ACCESS_UNIT {
            return Err(decode_error(format!(
                "access unit of {} bytes is too large",
                data.len()
            )));
        }
        if !(data.starts_with(&[0, 0, 1]) || data.starts_with(&[0, 0, 0, 1])) {
            return Err(decode_error("access unit does not start with a start code"));
        }
        let mut unit = AccessUnit {
            slices: false,
            parameter_sets: false,
            idr: false,
        };
        let mut count = 0;
        for nal in nal_units(data) {
            count += 1;
            let Some(&header) = nal.first() else {
                return Err(decode_error("empty NAL unit"));
            };
            if header & 0x80 != 0 {
                return Err(decode_error("NAL unit with forbidden_zero_bit set"));
            }
            match header & 0x1F {
                kind @ (NAL_SLICE | NAL_IDR) => {
                    if nal.len() < 3 {
                        return Err(decode_error("truncated slice NAL unit"));
                    }
                    let idr = kind == NAL_IDR;
                    if unit.slices && unit.idr != idr {
                        return Err(decode_error("IDR and non-IDR slices in one access unit"));
                    }
                    unit.slices = true;
                    unit.idr = idr;
                }
                NAL_SPS | NAL_PPS => unit.parameter_sets = true,
                // SEI, access unit delimiter, end of sequence or stream, filler.
                6 | 9..=12 => {}
                kind => {
                    return Err(decode_error(format!(
                        "NAL unit type {kind} is not constrained baseline"
                    )))
                }
            }
        }
        if count == 0 {
            return Err(decode_error("access unit without NAL units"));
        }
        Ok(unit)
    }
}

/// The NAL units of an Annex B byte stream, without their start codes (bytes before the
/// first start code are ignored).
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = find_start_code(data).map_or(&data[..0], |i| &data[i + 3..]);
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (nal, next) = match find_start_code(rest) {
            Some(i) => (&rest[..i], &rest[i + 3..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        // Zero bytes before a start code belong to it (zero_byte, trailing_zero_8bits).
        let end = nal.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        Some(&nal[..end])
    })
}

/// Index of the first `00 00 01` in `data`.
fn find_start_code(data: &[u8]) -> Option<usize> {
    data.windows(3).position(|w| w == [0, 0, 1])
}

/// The profile-level-id of the first SPS in an access unit, as SDP writes it
/// (`profile_idc << 16 | constraint flags << 8 | level_idc`, e.g. `0x42c01f`), or `None`
/// when it holds no SPS.
pub fn profile_level_id(data: &[u8]) -> Option<u32> {
    let sps = nal_units(data).find(|nal| nal.first().is_some_and(|h| h & 0x1F == NAL_SPS))?;
    match *sps {
        [_, profile, constraints, level, ..] => {
            Some(u32::from(profile) << 16 | u32::from(constraints) << 8 | u32::from(level))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bitrate_change_retunes_the_running_encoder_without_a_keyframe() {
        use crate::video::pattern::TestPattern;
        use crate::video::VideoSource;
        let start = Instant::now();
        let mut pattern = TestPattern::new(320, 240, 30, start).unwrap();
        let mut frame = VideoFrame::black(320, 240, start).unwrap();
        let config = H264Config {
            width: 320,
            height: 240,
            bitrate_bps: 800_000,
            fps: 30.0,
            keyframe_interval: 0,
        };
        let mut encoder = H264Encoder::new(config).unwrap();
        let mut out = EncodedVideo::new();
        let mut bytes = |encoder: &mut H264Encoder, frames: usize| {
            let (mut total, mut keyframes) = (0, 0);
            for _ in 0..frames {
                pattern.read(start, &mut frame).unwrap();
                if encoder.encode(&frame, &mut out).unwrap() {
                    total += out.data.len();
                    keyframes += usize::from(out.keyframe);
                }
            }
            (total, keyframes)
        };
        bytes(&mut encoder, 30);
        let (high, _) = bytes(&mut encoder, 30);
        encoder.set_bitrate(150_000).unwrap();
        let (low, keyframes) = bytes(&mut encoder, 30);
        assert_eq!(keyframes, 0, "the bitrate change cost a keyframe");
        assert!(
            low * 2 < high,
            "{high} bytes at 800 kbps, {low} at 150 kbps"
        );
        assert_eq!(encoder.config().bitrate_bps, 150_000);
    }

    #[test]
    fn splits_nal_units_at_three_and_four_byte_start_codes() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 0,
        ];
        let nals: Vec<&[u8]> = nal_units(&data).collect();
        assert_eq!(
            nals,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4][..]]
        );
        assert_eq!(nal_units(&[1, 2, 3]).count(), 0);
    }

    #[test]
    fn reads_profile_level_id() {
        let data = [
            0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0xaa, 0, 0, 0, 1, 0x68, 1,
        ];
        assert_eq!(profile_level_id(&data), Some(0x42c01f));
        assert_eq!(profile_level_id(&[0, 0, 0, 1, 0x67, 0x42]), None);
        assert_eq!(profile_level_id(&[0, 0, 0, 1, 0x65, 0x42, 0, 0]), None);
    }

    #[test]
    fn access_unit_checks() {
        assert!(AccessUnit::scan(&[]).is_err());
        assert!(AccessUnit::scan(&[0x65, 1, 2, 3]).is_err());
        assert!(AccessUnit::scan(&[0, 0, 1, 0xE5, 1, 2]).is_err());
        assert!(AccessUnit::scan(&[0, 0, 1, 0x74, 1, 2]).is_err());
        assert!(AccessUnit::scan(&[0, 0, 1, 0x65, 1, 2, 0, 0, 1, 0x41, 1, 2]).is_err());
        let idr = AccessUnit::scan(&[0, 0, 1, 0x67, 1, 0, 0, 1, 0x65, 1, 2]).unwrap();
        assert!(idr.slices && idr.idr);
        let sps = AccessUnit::scan(&[0, 0, 0, 1, 0x67, 1]).unwrap();
        assert!(!sps.slices);
    }

    #[test]
    fn rejects_bad_configs() {
        let good = H264Config {
            width: 640,
            height: 480,
            bitrate_bps: 300_000,
            fps: 30.0,
            keyframe_interval: 0,
        };
        assert!(good.validate().is_ok());
        for bad in [
            H264Config { width: 641, ..good },
            H264Config {
                bitrate_bps: 0,
                ..good
            },
            H264Config { fps: 0.0, ..good },
            H264Config {
                fps: f32::NAN,
                ..good
            },
        ] {
            assert!(H264Encoder::new(bad).is_err());
        }
        let mut encoder = H264Encoder::new(good).unwrap();
        assert!(encoder.set_bitrate(1).is_err());
        assert!(encoder.set_fps(-1.0).is_err());
        assert_eq!(encoder.config(), &good);
    }
}
