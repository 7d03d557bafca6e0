//! Opus encoding and decoding of duet's audio frames, with in-band FEC and loss concealment.
//!
//! One [`OpusEncoder`] turns each [`AudioFrame`] into one packet; one [`OpusDecoder`] turns each
//! packet back into a frame of the same format. When a packet is lost the receiver either
//! rebuilds it from the redundancy carried by the packet that followed it ([`OpusDecoder::recover`],
//! when the sender enabled FEC) or conceals it ([`OpusDecoder::conceal`]). Neither side allocates
//! per frame once its buffers have grown to size.

use std::time::Duration;

use ::opus::{Application, Bitrate, Decoder, Encoder};

use crate::error::{CodecError, Error};
use crate::frame::{AudioFormat, AudioFrame, Channels, SAMPLE_RATE};

const CODEC: &str = "opus";

/// Room given to the encoder for one packet, the size libopus recommends.
const MAX_PACKET_BYTES: usize = 4000;

/// Longest packet the decoder accepts: no datagram carries more.
const MAX_INPUT_BYTES: usize = 1 << 16;

/// How a duet Opus encoder is set up. Every field can be changed while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusConfig {
    /// Channels and frame duration of the frames it takes (one frame per packet).
    pub format: AudioFormat,
    /// Target bitrate in bits per second, 6000 to 510000.
    pub bitrate_bps: u32,
    /// Encoder effort, 0 (fastest) to 10 (best).
    pub complexity: u8,
    /// Carry in-band forward error correction (a low-rate copy of the previous frame).
    pub fec: bool,
    /// Discontinuous transmission: send almost nothing during silence.
    pub dtx: bool,
    /// Packet loss the encoder plans for, in percent (0 to 100); it sizes the FEC.
    pub expected_loss_pct: u8,
}

impl OpusConfig {
    /// The setting for a call's voice: 32 kbps, complexity 9, FEC on for 10% loss, no DTX.
    pub fn voice(format: AudioFormat) -> Self {
        Self {
            format,
            bitrate_bps: 32_000,
            complexity: 9,
            fec: true,
            dtx: false,
            expected_loss_pct: 10,
        }
    }

    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), Error> {
        check_bitrate(self.bitrate_bps)?;
        check_complexity(self.complexity)?;
        check_loss(self.expected_loss_pct)
    }
}

/// Encodes duet's audio frames to Opus packets (VoIP application).
pub struct OpusEncoder {
    inner: Encoder,
    config: OpusConfig,
    lookahead_samples: usize,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("config", &self.config)
            .field("lookahead_samples", &self.lookahead_samples)
            .finish()
    }
}

impl OpusEncoder {
    /// Creates an encoder for frames of `config.format`.
    pub fn new(config: OpusConfig) -> Result<Self, Error> {
        config.validate()?;
        let inner = Encoder::new(
            SAMPLE_RATE,
            opus_channels(config.format.channels),
            Application::Voip,
        )
        .map_err(setup)?;
        let mut encoder = Self {
            inner,
            config,
            lookahead_samples: 0,
        };
        encoder.set_bitrate(config.bitrate_bps)?;
        encoder.set_complexity(config.complexity)?;
        encoder.set_fec(config.fec)?;
        encoder.set_expected_loss(config.expected_loss_pct)?;
        encoder.set_dtx(config.dtx)?;
        let lookahead = encoder.inner.get_lookahead().map_err(setup)?;
        encoder.lookahead_samples = usize::try_from(lookahead).unwrap_or(0);
        Ok(encoder)
    }

    /// Encodes one frame into `out` (cleared first) and returns the packet's length.
    ///
    /// Call once per frame, in order. `out` keeps its capacity, so reusing it allocates
    /// nothing after the first call. A frame of another format is a [`CodecError::Mismatch`].
    /// With DTX on, a packet of two bytes or less marks silence and need not be sent.
    pub fn encode(&mut self, frame: &AudioFrame, out: &mut Vec<u8>) -> Result<usize, Error> {
        let format = self.config.format;
        if frame.format != format {
            return Err(mismatch(format!(
                "frame is {:?}, encoder expects {:?}",
                frame.format, format
            )));
        }
        if frame.samples.len() != format.samples_per_frame() {
            return Err(mismatch(format!(
                "frame holds {} samples, its format needs {}",
                frame.samples.len(),
                format.samples_per_frame()
            )));
        }
        out.clear();
        out.resize(MAX_PACKET_BYTES, 0);
        match self.inner.encode(&frame.samples, out) {
            Ok(len) => {
                out.truncate(len);
                Ok(len)
            }
            Err(e) => {
                out.clear();
                Err(CodecError::Encode {
                    codec: CODEC,
                    reason: e.to_string(),
                }
                .into())
            }
        }
    }

    /// Sets the target bitrate (6000 to 510000 bits per second) from the next frame on.
    pub fn set_bitrate(&mut self, bps: u32) -> Result<(), Error> {
        check_bitrate(bps)?;
        let bits = i32::try_from(bps).unwrap_or(i32::MAX);
        self.inner.set_bitrate(Bitrate::Bits(bits)).map_err(setup)?;
        self.config.bitrate_bps = bps;
        Ok(())
    }

    /// Turns in-band forward error correction on or off.
    pub fn set_fec(&mut self, on: bool) -> Result<(), Error> {
        self.inner.set_inband_fec(on).map_err(setup)?;
        self.config.fec = on;
        Ok(())
    }

    /// Tells the encoder how much loss to plan for (0 to 100 percent).
    pub fn set_expected_loss(&mut self, pct: u8) -> Result<(), Error> {
        check_loss(pct)?;
        self.inner
            .set_packet_loss_perc(i32::from(pct))
            .map_err(setup)?;
        self.config.expected_loss_pct = pct;
        Ok(())
    }

    /// Turns discontinuous transmission on or off.
    pub fn set_dtx(&mut self, on: bool) -> Result<(), Error> {
        self.inner.set_dtx(on).map_err(setup)?;
        self.config.dtx = on;
        Ok(())
    }

    /// Sets the encoder's effort, 0 to 10.
    pub fn set_complexity(&mut self, complexity: u8) -> Result<(), Error> {
        check_complexity(complexity)?;
        self.inner
            .set_complexity(i32::from(complexity))
            .map_err(setup)?;
        self.config.complexity = complexity;
        Ok(())
    }

    /// The current configuration.
    pub fn config(&self) -> &OpusConfig {
        &self.config
    }

    /// The delay the codec adds: decoded audio lags the input by this much.
    pub fn lookahead(&self) -> Duration {
        Duration::from_micros(self.lookahead_samples as u64 * 1_000_000 / u64::from(SAMPLE_RATE))
    }

    /// [`lookahead`](Self::lookahead) in samples per channel at 48 kHz.
    pub fn lookahead_samples(&self) -> usize {
        self.lookahead_samples
    }
}

/// Counters of an [`OpusDecoder`] since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpusDecoderStats {
    /// Packets decoded.
    pub decoded: u64,
    /// Lost frames filled by loss concealment (including recoveries that found no FEC).
    pub concealed: u64,
    /// Lost frames rebuilt from the FEC of the following packet.
    pub fec_recovered: u64,
    /// Packets rejected as invalid (empty, truncated, garbled or of the wrong duration).
    pub errors: u64,
}

/// Decodes Opus packets to duet's audio frames and fills in lost ones.
pub struct OpusDecoder {
    inner: Decoder,
    format: AudioFormat,
    stats: OpusDecoderStats,
    /// The last packet that reached the decoder's state was CELT-only (libopus has no FEC then).
    last_celt: bool,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder")
            .field("format", &self.format)
            .field("stats", &self.stats)
            .finish()
    }
}

impl OpusDecoder {
    /// Creates a decoder producing frames of `format`.
    pub fn new(format: AudioFormat) -> Result<Self, Error> {
        let inner = Decoder::new(SAMPLE_RATE, opus_channels(format.channels)).map_err(setup)?;
        Ok(Self {
            inner,
            format,
            stats: OpusDecoderStats::default(),
            last_celt: false,
        })
    }

    /// The format of the frames it produces.
    pub fn format(&self) -> AudioFormat {
        self.format
    }

    /// Decodes one packet into `out`, whose samples and format are set to the decoder's format
    /// (`seq` and `capture` are left to the caller).
    ///
    /// An empty, truncated or garbled packet, or one lasting other than one frame, is a
    /// [`CodecError::Decode`]: it is counted in [`OpusDecoderStats::errors`] and the decoder
    /// goes on with the next packet.
    pub fn decode(&mut self, packet: &[u8], out: &mut AudioFrame) -> Result<(), Error> {
        self.prepare(out);
        if let Err(reason) = self.check_packet(packet) {
            return Err(self.fail(reason));
        }
        match self.inner.decode(packet, &mut out.samples, false) {
            Ok(n) if n == self.format.frame.samples_per_channel() => {
                self.last_celt = is_celt(packet);
                self.stats.decoded += 1;
                Ok(())
            }
            Ok(n) => Err(self.fail(format!("packet decoded to {n} samples per channel"))),
            Err(e) => Err(self.fail(e.to_string())),
        }
    }

    /// Fills `out` with a concealment of one lost frame. Call in place of [`decode`](Self::decode)
    /// for each missing packet.
    pub fn conceal(&mut self, out: &mut AudioFrame) -> Result<(), Error> {
        self.prepare(out);
        match self.inner.decode(&[], &mut out.samples, false) {
            Ok(_) => {
                self.stats.concealed += 1;
                Ok(())
            }
            Err(e) => Err(self.fail(e.to_string())),
        }
    }

    /// Rebuilds one lost frame from the FEC carried by `next_packet`, the packet that followed it.
    ///
    /// Call it for the lost frame, then [`decode`](Self::decode) `next_packet` as usual. When
    /// `next_packet` carries no FEC, libopus conceals instead; the stats say which happened
    /// ([`OpusDecoderStats::fec_recovered`] or [`OpusDecoderStats::concealed`]). A garbled
    /// `next_packet` is a [`CodecError::Decode`]: call [`conceal`](Self::conceal) then.
    pub fn recover(&mut self, next_packet: &[u8], out: &mut AudioFrame) -> Result<(), Error> {
        self.prepare(out);
        if next_packet.is_empty() {
            return Err(self.fail("empty packet".into()));
        }
        if next_packet.len() > MAX_INPUT_BYTES {
            return Err(self.fail(format!("packet of {} bytes", next_packet.len())));
        }
        let spc = self.format.frame.samples_per_channel();
        let has_fec = !self.last_celt
            && ::opus::packet::get_samples_per_frame(next_packet, SAMPLE_RATE)
                .is_ok_and(|per_frame| per_frame <= spc)
            && packet_has_fec(next_packet);
        match self.inner.decode(next_packet, &mut out.samples, true) {
            Ok(n) if n == spc => {
                if has_fec {
                    self.last_celt = false;
                    self.stats.fec_recovered += 1;
                } else {
                    self.stats.concealed += 1;
                }
                Ok(())
            }
            Ok(n) => Err(self.fail(format!("recovery gave {n} samples per channel"))),
            Err(e) => Err(self.fail(e.to_string())),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> OpusDecoderStats {
        self.stats
    }

    /// Forgets the decoder's history, as after a discontinuity (new stream, long gap).
    /// The counters are kept.
    pub fn reset(&mut self) -> Result<(), Error> {
        self.last_celt = false;
        self.inner.reset_state().map_err(setup)
    }

    fn prepare(&self, out: &mut AudioFrame) {
        out.format = self.format;
        out.samples.resize(self.format.samples_per_frame(), 0);
    }

    fn check_packet(&self, packet: &[u8]) -> Result<(), String> {
        if packet.is_empty() {
            return Err("empty packet".into());
        }
        if packet.len() > MAX_INPUT_BYTES {
            return Err(format!("packet of {} bytes", packet.len()));
        }
        let n = ::opus::packet::get_nb_samples(packet, SAMPLE_RATE).map_err(|e| e.to_string())?;
        let spc = self.format.frame.samples_per_channel();
        if n != spc {
            return Err(format!(
                "packet lasts {n} samples per channel, frames last {spc}"
            ));
        }
        Ok(())
    }

    fn fail(&mut self, reason: String) -> Error {
        self.stats.errors += 1;
        CodecError::Decode {
            codec: CODEC,
            reason,
        }
        .into()
    }
}

/// True when `packet` carries in-band FEC for the frame before it (its SILK layer has LBRR data).
///
/// CELT-only packets never do. Invalid packets give false.
pub fn packet_has_fec(packet: &[u8]) -> bool {
    let Some(&toc) = packet.first() else {
        return false;
    };
    let config = toc >> 3;
    if config >= 16 {
        return false; // CELT-only
    }
    let Ok(per_frame) = ::opus::packet::get_samples_per_frame(packet, SAMPLE_RATE) else {
        return false;
    };
    let silk_frames = if per_frame > 960 { per_frame / 960 } else { 1 };
    let stereo = toc & 0x04 != 0;
    let Some(&first) = first_frame(packet).and_then(|f| f.first()) else {
        return false;
    };
    // The SILK header opens the range-coded frame with equiprobable flags, which land
    // bit for bit at the top of its first byte: VAD flags, then the LBRR flag, per channel.
    let mid = (first >> (7 - silk_frames)) & 1 == 1;
    let side = stereo && (first >> (6 - 2 * silk_frames)) & 1 == 1;
    mid || side
}

/// The first Opus frame of a packet (RFC 6716 section 3.2), or None if the packet is malformed.
fn first_frame(packet: &[u8]) -> Option<&[u8]> {
    let toc = *packet.first()?;
    let rest = packet.get(1..)?;
    match toc & 0x03 {
        0 => Some(rest),
        1 => rest.get(..rest.len() / 2),
        2 => {
            let (size, used) = frame_length(rest)?;
            rest.get(used..used + size)
        }
        _ => {
            let count = *rest.first()?;
            let frames = usize::from(count & 0x3f);
            let mut pos = 1;
            let mut padding = 0usize;
            if count & 0x40 != 0 {
                loop {
                    let b = *rest.get(pos)?;
                    pos += 1;
                    padding += if b == 255 { 254 } else { usize::from(b) };
                    if b != 255 {
                        break;
                    }
                }
            }
            if frames == 0 {
                return None;
            }
            if count & 0x80 != 0 {
                let (size, used) = frame_length(rest.get(pos..)?)?;
                pos += used;
                // The other frames' lengths follow the first one's.
                for _ in 2..frames {
                    let (_, used) = frame_length(rest.get(pos..)?)?;
                    pos += used;
                }
                rest.get(pos..pos + size)
            } else {
                let body = rest.len().checked_sub(pos + padding)?;
                rest.get(pos..pos + body / frames)
            }
        }
    }
}

/// A frame length coded in one or two bytes, and how many bytes it used.
fn frame_length(bytes: &[u8]) -> Option<(usize, usize)> {
    let b0 = usize::from(*bytes.first()?);
    if b0 < 252 {
        Some((b0, 1))
    } else {
        Some((b0 + 4 * usize::from(*bytes.get(1)?), 2))
    }
}

fn is_celt(packet: &[u8]) -> bool {
    packet.first().is_some_and(|toc| toc >> 3 >= 16)
}

fn opus_channels(channels: Channels) -> ::opus::Channels {
    match channels {
        Channels::Mono => ::opus::Channels::Mono,
        Channels::Stereo => ::opus::Channels::Stereo,
    }
}

fn setup(e: ::opus::Error) -> Error {
    CodecError::Setup {
        codec: CODEC,
        reason: e.to_string(),
    }
    .into()
}

fn mismatch(reason: String) -> Error {
    CodecError::Mismatch {
        codec: CODEC,
        reason,
    }
    .into()
}

fn check_bitrate(bps: u32) -> Result<(), Error> {
    if (6_000..=510_000).contains(&bps) {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "opus bitrate {bps} bps: choose 6000 to 510000"
        )))
    }
}

fn check_complexity(complexity: u8) -> Result<(), Error> {
    if complexity <= 10 {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "opus complexity {complexity}: choose 0 to 10"
        )))
    }
}

fn check_loss(pct: u8) -> Result<(), Error> {
    if pct <= 100 {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "expected loss {pct}%: choose 0 to 100"
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::frame::FrameDuration;

    const MONO20: AudioFormat = AudioFormat {
        channels: Channels::Mono,
        frame: FrameDuration::Ms20,
    };

    #[test]
    fn first_frame_follows_each_framing_code() {
        let toc = 12 << 3; // hybrid, 10 ms
        assert_eq!(first_frame(&[toc, 1, 2, 3]), Some(&[1, 2, 3][..]));
        assert_eq!(first_frame(&[toc | 1, 1, 2, 3, 4]), Some(&[1, 2][..]));
        assert_eq!(first_frame(&[toc | 2, 2, 1, 2, 3, 4, 5]), Some(&[1, 2][..]));
        let mut long = vec![toc | 2, 252, 1];
        long.extend(std::iter::repeat_n(9, 300));
        assert_eq!(first_frame(&long).map(<[u8]>::len), Some(256));
        // Code 3, constant size, then with two bytes of padding, then variable sizes.
        assert_eq!(first_frame(&[toc | 3, 0x02, 1, 2, 3, 4]), Some(&[1, 2][..]));
        assert_eq!(
            first_frame(&[toc | 3, 0x42, 2, 1, 2, 3, 4, 0, 0]),
            Some(&[1, 2][..])
        );
        assert_eq!(
            first_frame(&[toc | 3, 0x83, 1, 2, 7, 8, 8, 9, 9, 9]),
            Some(&[7][..])
        );
        // Truncated or empty packets have no first frame.
        assert_eq!(first_frame(&[toc | 2, 10, 1]), None);
        assert_eq!(first_frame(&[toc | 3]), None);
        assert_eq!(first_frame(&[toc | 3, 0x40, 255]), None);
        assert_eq!(first_frame(&[]), None);
    }

    #[test]
    fn fec_flag_is_read_from_the_silk_header() {
        let silk20 = 1 << 3; // SILK narrowband, 20 ms: one SILK frame
        assert!(packet_has_fec(&[silk20, 0b0100_0000]));
        assert!(!packet_has_fec(&[silk20, 0b1000_0000]));
        let silk60 = 3 << 3; // three SILK frames: VAD, VAD, VAD, then LBRR
        assert!(packet_has_fec(&[silk60, 0b0001_0000]));
        assert!(!packet_has_fec(&[silk60, 0b1110_0000]));
        // Stereo: the side channel's LBRR flag follows its VAD flag.
        assert!(packet_has_fec(&[silk20 | 0x04, 0b0001_0000]));
        let celt = 31 << 3;
        assert!(!packet_has_fec(&[celt, 0xff]));
        assert!(!packet_has_fec(&[silk20]));
        assert!(!packet_has_fec(&[]));
    }

    #[test]
    fn configuration_out_of_range_is_refused() {
        let mut config = OpusConfig::voice(MONO20);
        assert!(config.validate().is_ok());
        config.bitrate_bps = 1_000;
        assert!(matches!(OpusEncoder::new(config), Err(Error::Config(_))));
        let mut encoder = OpusEncoder::new(OpusConfig::voice(MONO20)).unwrap();
        assert!(matches!(encoder.set_complexity(11), Err(Error::Config(_))));
        assert!(matches!(
            encoder.set_expected_loss(101),
            Err(Error::Config(_))
        ));
        encoder.set_bitrate(24_000).unwrap();
        encoder.set_dtx(true).unwrap();
        assert_eq!(encoder.config().bitrate_bps, 24_000);
        assert!(encoder.config().dtx);
        // VoIP at 48 kHz: 2.5 ms of CELT look-ahead plus 4 ms of delay compensation.
        assert_eq!(encoder.lookahead_samples(), 312);
        assert_eq!(encoder.lookahead(), Duration::from_micros(6_500));
    }

    #[test]
    fn a_frame_of_another_format_is_a_mismatch() {
        let mut encoder = OpusEncoder::new(OpusConfig::voice(MONO20)).unwrap();
        let stereo = AudioFormat {
            channels: Channels::Stereo,
            ..MONO20
        };
        let mut packet = Vec::new();
        let frame = AudioFrame::silent(stereo, Instant::now());
        let err = encoder.encode(&frame, &mut packet).unwrap_err();
        assert!(matches!(err, Error::Codec(CodecError::Mismatch { .. })));
        let mut short = AudioFrame::silent(MONO20, Instant::now());
        short.samples.truncate(100);
        let err = encoder.encode(&short, &mut packet).unwrap_err();
        assert!(matches!(err, Error::Codec(CodecError::Mismatch { .. })));
        assert!(err.is_recoverable());
    }

    #[test]
    fn encode_and_decode_reuse_their_buffers() {
        let mut encoder = OpusEncoder::new(OpusConfig::voice(MONO20)).unwrap();
        let mut decoder = OpusDecoder::new(MONO20).unwrap();
        let frame = AudioFrame::silent(MONO20, Instant::now());
        let mut packet = Vec::with_capacity(MAX_PACKET_BYTES);
        let mut out = AudioFrame::silent(MONO20, Instant::now());
        let (packet_ptr, out_ptr) = (packet.as_ptr(), out.samples.as_ptr());
        for _ in 0..10 {
            let len = encoder.encode(&frame, &mut packet).unwrap();
            assert_eq!(len, packet.len());
            decoder.decode(&packet, &mut out).unwrap();
        }
        assert_eq!(packet.as_ptr(), packet_ptr);
        assert_eq!(out.samples.as_ptr(), out_ptr);
        assert_eq!(decoder.stats().decoded, 10);
    }
}
