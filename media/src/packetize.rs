//! H.264 over RTP in packetization-mode=1 (RFC 6184): access units split into RTP payloads
//! and payloads joined back into access units.
//!
//! [`H264Packetizer`] sends each NAL unit that fits as a single NAL unit packet, aggregates
//! runs of small ones (SPS and PPS before an IDR) into STAP-A packets and fragments large ones
//! into FU-A packets. [`H264Depacketizer`] accepts the same three forms and rebuilds an Annex B
//! access unit; anything else (STAP-B, MTAP, FU-B, reserved types, truncated aggregates, broken
//! fragment runs) is an error that drops the access unit and is counted, never a panic.

use bytes::{Bytes, BytesMut};

use crate::codec::h264::nal_units;
use crate::error::{CodecError, Error};

/// NAL unit types (RFC 6184 table 1, ITU-T H.264 table 7-1).
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_AUD: u8 = 9;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;
/// Forbidden-zero bit and NRI of a NAL unit header.
const F_BIT: u8 = 0x80;
const NRI: u8 = 0x60;
/// FU header start and end bits.
const FU_START: u8 = 0x80;
const FU_END: u8 = 0x40;
/// The start code written before every NAL unit of a rebuilt access unit.
const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Smallest payload size [`H264Packetizer::new`] accepts.
pub const MIN_MTU_PAYLOAD: usize = 16;

/// Splits Annex B access units into RTP payloads of at most `mtu_payload` bytes.
///
/// Payloads are cut from one reused buffer: once the previous access unit's payloads have
/// been dropped, packetizing allocates nothing.
#[derive(Debug)]
pub struct H264Packetizer {
    mtu: usize,
    buf: BytesMut,
}

/// A group of small NAL units waiting to be sent together.
enum Open<'a> {
    /// Nothing waiting.
    None,
    /// One NAL unit, not written yet (it goes alone if nothing else fits beside it).
    One(&'a [u8]),
    /// A STAP-A of this many bytes, being written at the front of the buffer.
    Stap(usize),
}

impl H264Packetizer {
    /// A packetizer whose payloads hold at most `mtu_payload` bytes (the MTU less the IP, UDP,
    /// RTP and SRTP overheads; about 1200 in WebRTC).
    pub fn new(mtu_payload: usize) -> Result<Self, Error> {
        if !(MIN_MTU_PAYLOAD..=usize::from(u16::MAX)).contains(&mtu_payload) {
            return Err(Error::Config(format!(
                "RTP payload size {mtu_payload}: choose {MIN_MTU_PAYLOAD} to 65535 bytes"
            )));
        }
        Ok(Self {
            mtu: mtu_payload,
            buf: BytesMut::new(),
        })
    }

    /// The largest payload this packetizer makes.
    pub fn mtu_payload(&self) -> usize {
        self.mtu
    }

    /// Splits one access unit (NAL units behind start codes) into RTP payloads, in sending
    /// order, replacing the contents of `out`. The last payload is the one whose RTP packet
    /// carries the marker bit; all of them carry the access unit's timestamp.
    ///
    /// Fails when `access_unit` holds no NAL unit, or a NAL unit that no receiver in
    /// packetization-mode 1 takes (the forbidden bit set, or type 0 or 24-31); `out` is then
    /// empty.
    pub fn packetize(&mut self, access_unit: &[u8], out: &mut Vec<Bytes>) -> Result<(), Error> {
        out.clear();
        // Room for every payload at once, so that nothing reallocates in between.
        let fragments = access_unit.len() / (self.mtu - 2) + 1;
        self.buf.reserve(access_unit.len() + 2 * fragments + 64);
        let mut open = Open::None;
        for nal in nal_units(access_unit).filter(|nal| !nal.is_empty()) {
            if !is_plain_header(nal[0]) {
                self.buf.clear();
                out.clear();
                return Err(malformed(
                    "access unit holds a NAL unit with the forbidden bit or a type outside 1-23",
                ));
            }
            if nal.len() > self.mtu {
                self.flush(open, out);
                open = Open::None;
                self.fragment(nal, out);
                continue;
            }
            open = match open {
                Open::None => Open::One(nal),
                Open::One(first) if 5 + first.len() + nal.len() <= self.mtu => {
                    self.buf.extend_from_slice(&[STAP_A]);
                    self.aggregate(first);
                    self.aggregate(nal);
                    Open::Stap(5 + first.len() + nal.len())
                }
                Open::Stap(len) if len + 2 + nal.len() <= self.mtu => {
                    self.aggregate(nal);
                    Open::Stap(len + 2 + nal.len())
                }
                full => {
                    self.flush(full, out);
                    Open::One(nal)
                }
            };
        }
        self.flush(open, out);
        if out.is_empty() {
            return Err(malformed("access unit holds no NAL unit"));
        }
        Ok(())
    }

    /// Appends `nal` with its size to the open STAP-A and folds its F bit and NRI into the
    /// STAP-A header.
    fn aggregate(&mut self, nal: &[u8]) {
        let header = nal.first().copied().unwrap_or(0);
        if let Some(stap) = self.buf.first_mut() {
            let nri = (*stap & NRI).max(header & NRI);
            *stap = (*stap & !NRI) | nri | (header & F_BIT);
        }
        // NAL units in an aggregate are at most the payload size, itself at most 65535.
        let size = u16::try_from(nal.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&size.to_be_bytes());
        self.buf.extend_from_slice(nal);
    }

    /// Emits the waiting group as a single NAL unit packet or a STAP-A.
    fn flush(&mut self, open: Open<'_>, out: &mut Vec<Bytes>) {
        match open {
            Open::None => return,
            Open::One(nal) => self.buf.extend_from_slice(nal),
            Open::Stap(_) => {}
        }
        out.push(self.buf.split().freeze());
    }

    /// Emits `nal` (longer than a payload) as FU-A fragments.
    fn fragment(&mut self, nal: &[u8], out: &mut Vec<Bytes>) {
        let Some((&header, body)) = nal.split_first() else {
            return;
        };
        let indicator = (header & (F_BIT | NRI)) | FU_A;
        let count = body.len().div_ceil(self.mtu - 2);
        for (i, chunk) in body.chunks(self.mtu - 2).enumerate() {
            let mut fu = header & 0x1F;
            if i == 0 {
                fu |= FU_START;
            }
            if i + 1 == count {
                fu |= FU_END;
            }
            self.buf.extend_from_slice(&[indicator, fu]);
            self.buf.extend_from_slice(chunk);
            out.push(self.buf.split().freeze());
        }
    }
}

/// Counters of an [`H264Depacketizer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DepacketizerStats {
    /// Payloads accepted.
    pub payloads: u64,
    /// Access units completed.
    pub access_units: u64,
    /// Malformed payloads and unfinished fragments; each one dropped an access unit.
    pub errors: u64,
}

/// Rebuilds Annex B access units from the RTP payloads of one frame, in sequence order.
///
/// Feed a frame's payloads with [`push`](Self::push) and close it with
/// [`finish`](Self::finish), or do both with [`assemble`](Self::assemble). After an error the
/// access unit is broken: discard it (the depacketizer is already reset for the next one).
#[derive(Debug, Default)]
pub struct H264Depacketizer {
    /// NAL unit type of the FU-A run in progress.
    fragment: Option<u8>,
    stats: DepacketizerStats,
}

impl H264Depacketizer {
    /// A depacketizer at the start of an access unit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters so far.
    pub fn stats(&self) -> DepacketizerStats {
        self.stats
    }

    /// Forgets a partly received access unit.
    pub fn reset(&mut self) {
        self.fragment = None;
    }

    /// Appends the NAL units of one payload to `out`, each behind a start code. On error
    /// `out` is left as it was before the call and the access unit is broken.
    pub fn push(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        let mark = out.len();
        match self.try_push(payload, out) {
            Ok(()) => {
                self.stats.payloads += 1;
                Ok(())
            }
            Err(e) => {
                out.truncate(mark);
                self.fail();
                Err(e)
            }
        }
    }

    /// Ends the access unit: fails if a fragmented NAL unit is unfinished or nothing was
    /// pushed.
    pub fn finish(&mut self, out: &[u8]) -> Result<(), Error> {
        if self.fragment.is_some() {
            self.fail();
            return Err(malformed("FU-A run ends without its end fragment"));
        }
        if out.is_empty() {
            self.fail();
            return Err(malformed("access unit without payloads"));
        }
        self.stats.access_units += 1;
        Ok(())
    }

    /// Rebuilds one access unit from all its payloads into `out` (cleared first).
    pub fn assemble<'a>(
        &mut self,
        payloads: impl IntoIterator<Item = &'a [u8]>,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        out.clear();
        self.reset();
        for payload in payloads {
            self.push(payload, out)?;
        }
        self.finish(out)
    }

    fn fail(&mut self) {
        self.fragment = None;
        self.stats.errors += 1;
    }

    fn try_push(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        let Some((&header, body)) = payload.split_first() else {
            return Err(malformed("empty payload"));
        };
        if header & F_BIT != 0 {
            return Err(malformed("forbidden_zero_bit set"));
        }
        let kind = header & 0x1F;
        if kind != FU_A && self.fragment.is_some() {
            return Err(malformed("FU-A run interrupted by another payload"));
        }
        match kind {
            1..=23 => {
                out.extend_from_slice(&START_CODE);
                out.extend_from_slice(payload);
            }
            STAP_A => {
                if body.is_empty() {
                    return Err(malformed("empty STAP-A"));
                }
                let mut rest = body;
                while !rest.is_empty() {
                    let (nal, next) = stap_entry(rest)?;
                    out.extend_from_slice(&START_CODE);
                    out.extend_from_slice(nal);
                    rest = next;
                }
            }
            FU_A => self.push_fragment(header, body, out)?,
            25..=27 | 29 => return Err(malformed("STAP-B, MTAP or FU-B in packetization-mode=1")),
            _ => return Err(malformed("reserved NAL unit type")),
        }
        Ok(())
    }

    fn push_fragment(
        &mut self,
        indicator: u8,
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let [fu, data @ ..] = body else {
            return Err(malformed("FU-A without FU header"));
        };
        let kind = fu & 0x1F;
        if data.is_empty() {
            return Err(malformed("empty FU-A fragment"));
        }
        if !(1..=23).contains(&kind) {
            return Err(malformed("FU-A carries an aggregation or reserved type"));
        }
        match (fu & FU_START != 0, fu & FU_END != 0) {
            (true, true) => return Err(malformed("FU-A with both start and end bits")),
            (true, false) => {
                if self.fragment.is_some() {
                    return Err(malformed("FU-A start inside an unfinished run"));
                }
                out.extend_from_slice(&START_CODE);
                out.push((indicator & (F_BIT | NRI)) | kind);
                self.fragment = Some(kind);
            }
            (false, end) => {
                if self.fragment != Some(kind) {
                    return Err(malformed("FU-A fragment without its start"));
                }
                if end {
                    self.fragment = None;
                }
            }
        }
        out.extend_from_slice(data);
        Ok(())
    }
}

/// Whether a NAL unit header is one a single NAL unit packet or a STAP-A may carry: the
/// forbidden bit clear and a type from 1 to 23.
fn is_plain_header(header: u8) -> bool {
    header & F_BIT == 0 && (1..=23).contains(&(header & 0x1F))
}

/// Splits the first NAL unit off the entries of a STAP-A.
fn stap_entry(rest: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    let [hi, lo, tail @ ..] = rest else {
        return Err(malformed("truncated STAP-A size"));
    };
    let size = usize::from(u16::from_be_bytes([*hi, *lo]));
    if size == 0 || size > tail.len() {
        return Err(malformed("STAP-A entry size out of bounds"));
    }
    let (nal, next) = tail.split_at(size);
    match nal.first() {
        Some(&h) if is_plain_header(h) => Ok((nal, next)),
        _ => Err(malformed("STAP-A entry is not a plain NAL unit")),
    }
}

/// The NAL unit types a payload holds or (for a fragment) carries part of, read leniently:
/// an unreadable remainder ends the list.
fn payload_nal_types(payload: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let header = payload.first().copied().unwrap_or(0);
    let mut single = match header & 0x1F {
        STAP_A | 0 => None,
        FU_A => payload.get(1).map(|fu| fu & 0x1F),
        kind => Some(kind),
    };
    let mut stap = match header & 0x1F {
        STAP_A => payload.get(1..).unwrap_or_default(),
        _ => &[],
    };
    std::iter::from_fn(move || {
        if let Some(kind) = single.take() {
            return Some(kind);
        }
        let (nal, next) = stap_entry(stap).ok()?;
        stap = next;
        nal.first().map(|h| h & 0x1F)
    })
}

/// True when an H.264 RTP payload holds (or, for an FU-A fragment, is part of) an IDR slice
/// or a sequence parameter set: the frame it belongs to is a keyframe.
pub fn is_keyframe_payload(payload: &[u8]) -> bool {
    payload_nal_types(payload).any(|kind| kind == NAL_IDR || kind == NAL_SPS)
}

/// True when a payload's first NAL unit is an SPS or an access unit delimiter, which only
/// ever open an access unit: the payload is the first of its frame.
pub(crate) fn opens_access_unit(payload: &[u8]) -> bool {
    let first = match payload.first().map(|h| h & 0x1F) {
        Some(FU_A) => payload
            .get(1)
            .filter(|fu| *fu & FU_START != 0)
            .map(|fu| fu & 0x1F),
        _ => payload_nal_types(payload).next(),
    };
    matches!(first, Some(NAL_SPS | NAL_AUD))
}

fn malformed(reason: &str) -> Error {
    CodecError::Decode {
        codec: "h264",
        reason: format!("RTP payload: {reason}"),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An Annex B access unit of the given NAL units.
    fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter()
            .flat_map(|n| START_CODE.iter().chain(n.iter()).copied())
            .collect()
    }

    fn nal(header: u8, len: usize) -> Vec<u8> {
        let mut n = vec![header];
        n.extend((1..len).map(|i| (i * 7 + 3) as u8 | 1));
        n
    }

    fn round_trip(au: &[u8], mtu: usize) -> (Vec<Bytes>, Vec<u8>) {
        let mut payloads = Vec::new();
        H264Packetizer::new(mtu)
            .unwrap()
            .packetize(au, &mut payloads)
            .unwrap();
        assert!(payloads.iter().all(|p| p.len() <= mtu));
        let mut out = Vec::new();
        let mut depacketizer = H264Depacketizer::new();
        depacketizer
            .assemble(payloads.iter().map(|p| &p[..]), &mut out)
            .unwrap();
        (payloads, out)
    }

    #[test]
    fn small_units_are_aggregated_into_one_stap_a() {
        let (sps, pps, idr) = (nal(0x67, 12), nal(0x68, 4), nal(0x65, 40));
        let au = annex_b(&[&sps, &pps, &idr]);
        let (payloads, out) = round_trip(&au, 1200);
        assert_eq!(payloads.len(), 1);
        assert_eq!(payloads[0][0], 0x60 | STAP_A);
        assert_eq!(payloads[0].len(), 1 + 3 * 2 + 12 + 4 + 40);
        assert_eq!(out, au);
        assert!(is_keyframe_payload(&payloads[0]) && opens_access_unit(&payloads[0]));
    }

    #[test]
    fn a_nal_unit_no_receiver_takes_is_refused_not_sent() {
        let mut packetizer = H264Packetizer::new(1200).unwrap();
        let mut out = Vec::new();
        // A start code inside a slice leaves a NAL unit of type 0 behind it; the forbidden
        // bit and the aggregation types are refused too, alone or beside good units.
        for bad in [
            annex_b(&[&[0x01, 0x01], &[0x00, 0xdb, 0xdb]]),
            annex_b(&[&nal(0x67, 8), &nal(0xe5, 20)]),
            annex_b(&[&nal(0x78, 9)]),
        ] {
            assert!(packetizer.packetize(&bad, &mut out).is_err(), "{bad:?}");
            assert!(out.is_empty());
        }
        // The packetizer is whole afterwards.
        let au = annex_b(&[&nal(0x67, 8), &nal(0x68, 4), &nal(0x65, 30)]);
        packetizer.packetize(&au, &mut out).unwrap();
        let mut again = Vec::new();
        H264Depacketizer::new()
            .assemble(out.iter().map(|p| &p[..]), &mut again)
            .unwrap();
        assert_eq!(again, au);
    }

    #[test]
    fn a_lone_unit_goes_as_a_single_nal_packet() {
        let slice = nal(0x41, 300);
        let (payloads, out) = round_trip(&annex_b(&[&slice]), 1200);
        assert_eq!(payloads, vec![Bytes::from(slice.clone())]);
        assert_eq!(out, annex_b(&[&slice]));
        assert!(!is_keyframe_payload(&payloads[0]) && !opens_access_unit(&payloads[0]));
    }

    #[test]
    fn large_units_are_fragmented_and_rebuilt() {
        let (sps, pps, idr) = (nal(0x67, 12), nal(0x68, 4), nal(0x65, 1000));
        let au = annex_b(&[&sps, &pps, &idr]);
        let (payloads, out) = round_trip(&au, 100);
        // STAP-A of SPS+PPS, then 999 body bytes in fragments of 98.
        assert_eq!(payloads.len(), 1 + 11);
        assert_eq!(&payloads[1][..2], &[0x60 | FU_A, FU_START | 5]);
        assert_eq!(&payloads[11][..2], &[0x60 | FU_A, FU_END | 5]);
        assert!(payloads[2..11].iter().all(|p| p[1] == 5));
        assert!(payloads.iter().all(|p| is_keyframe_payload(p)));
        assert_eq!(out, au);
    }

    #[test]
    fn aggregates_close_when_full() {
        let nals: Vec<Vec<u8>> = (0..10).map(|i| nal(0x06, 10 + i)).collect();
        let refs: Vec<&[u8]> = nals.iter().map(|n| &n[..]).collect();
        let au = annex_b(&refs);
        let (payloads, out) = round_trip(&au, 40);
        assert!(payloads.len() >= 5);
        assert_eq!(out, au);
    }

    #[test]
    fn rejects_bad_sizes_and_empty_access_units() {
        assert!(H264Packetizer::new(MIN_MTU_PAYLOAD - 1).is_err());
        assert!(H264Packetizer::new(70_000).is_err());
        let mut p = H264Packetizer::new(1200).unwrap();
        let mut out = Vec::new();
        assert!(p.packetize(&[1, 2, 3], &mut out).is_err());
        assert!(p.packetize(&[0, 0, 1, 0, 0, 1], &mut out).is_err());
    }

    #[test]
    fn malformed_payloads_are_errors_and_counted() {
        let bad: [&[u8]; 11] = [
            &[],
            &[0x80 | 0x41, 1],
            &[STAP_A],
            &[STAP_A, 0, 5, 0x67, 1],
            &[STAP_A, 0, 0],
            &[STAP_A, 0, 2, STAP_A, 1],
            &[FU_A, FU_START | FU_END | 5, 1],
            &[FU_A, 5, 1],
            &[FU_A, FU_START | 5],
            &[25, 1, 2],
            &[31, 1],
        ];
        let mut d = H264Depacketizer::new();
        let mut out = vec![9];
        for payload in bad {
            assert!(d.push(payload, &mut out).is_err(), "{payload:?}");
            assert_eq!(out, [9]);
        }
        assert_eq!(d.stats().errors, 11);
        // A run of fragments cut short, or interrupted.
        assert!(d
            .assemble([&[FU_A, FU_START | 1, 7][..]], &mut out)
            .is_err());
        let run: [&[u8]; 2] = [&[FU_A, FU_START | 1, 7], &[0x41, 1]];
        assert!(d.assemble(run, &mut out).is_err());
        assert_eq!(d.stats().errors, 13);
        assert_eq!(d.stats().access_units, 0);
    }

    #[test]
    fn keyframe_detection_reads_every_form() {
        assert!(is_keyframe_payload(&[0x65, 1]));
        assert!(is_keyframe_payload(&[STAP_A, 0, 2, 0x68, 1, 0, 2, 0x67, 1]));
        assert!(is_keyframe_payload(&[FU_A, 5, 1]));
        assert!(!is_keyframe_payload(&[FU_A, FU_START | 1, 1]));
        assert!(!is_keyframe_payload(&[STAP_A, 0, 9, 0x65]));
        assert!(!is_keyframe_payload(&[]));
        assert!(opens_access_unit(&[0x09, 0x10]));
        assert!(!opens_access_unit(&[FU_A, 7, 1]));
    }

    proptest! {
        #[test]
        fn arbitrary_payloads_never_panic(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)
        ) {
            let mut d = H264Depacketizer::new();
            let mut out = Vec::new();
            let result = d.assemble(payloads.iter().map(|p| &p[..]), &mut out);
            prop_assert_eq!(result.is_ok(), d.stats().access_units == 1);
            for p in &payloads {
                let _ = is_keyframe_payload(p);
                let _ = opens_access_unit(p);
            }
        }

        #[test]
        fn any_access_unit_round_trips(
            sizes in proptest::collection::vec(1usize..400, 1..6),
            mtu in MIN_MTU_PAYLOAD..300,
        ) {
            let nals: Vec<Vec<u8>> = sizes.iter().map(|&n| nal(0x41, n)).collect();
            let refs: Vec<&[u8]> = nals.iter().map(|n| &n[..]).collect();
            let au = annex_b(&refs);
            let (_, out) = round_trip(&au, mtu);
            prop_assert_eq!(out, au);
        }
    }
}
