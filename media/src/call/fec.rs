//! Video FEC on the WebRTC stack's interceptor chain.
//!
//! The send path ([`MediaSender::send_video`](super::MediaSender::send_video)) puts the
//! packets of protected frames in RED and, after a group of them, one placeholder per FEC
//! packet: a RED packet whose block says which group and which FEC packet of it. The
//! placeholder holds the FEC packet's place in the sequence numbers. [`FecFiller`] sits below
//! the transport-wide congestion control interceptor, where every packet already carries its
//! header extensions: it keeps the media packets as they will leave (without RED, as ULPFEC
//! protects them) and replaces each placeholder with the FEC packet over them, so that the
//! FEC covers the packets exactly as the peer receives them, extensions included.
//!
//! Above it, the NACK responder keeps what it may resend with [`history_copy`]: a media
//! packet without its RED header (its retransmission travels in RTX with the media payload
//! type), and a FEC packet as an empty packet, which tells the peer that the number it asked
//! for carried no media.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtp;
use rtc::sansio::Protocol;
use rtc::shared::error::Error as RtcError;
use rtc::shared::marshal::Marshal;

use super::tap::{FecTypes, TapState};
use crate::fec::ulpfec::UlpfecEncoder;

/// The second byte of a placeholder's RED payload, which is 7 bytes long: the ULPFEC block
/// header, this tag, the FEC packet's index and count, the group's base sequence number and
/// media packet count. A real FEC payload is at least 15 bytes.
const PLACEHOLDER_TAG: u8 = 0xd7;
/// Media packets kept to build FEC from (a power of two; a group spans at most 48 packets,
/// and a large keyframe splits into several groups sent after all of it).
const RECENT: usize = 512;

/// A placeholder's RED payload for FEC packet `index` of `count` over `media` packets from
/// `base`.
pub(crate) fn placeholder(
    types: FecTypes,
    index: usize,
    count: usize,
    base: u16,
    media: usize,
) -> Bytes {
    let [hi, lo] = base.to_be_bytes();
    Bytes::copy_from_slice(&[
        types.ulpfec,
        PLACEHOLDER_TAG,
        index as u8,
        count as u8,
        hi,
        lo,
        media as u8,
    ])
}

/// What a placeholder asks for: (index, count, base, media).
fn read_placeholder(types: FecTypes, payload: &[u8]) -> Option<(usize, usize, u16, usize)> {
    match *payload {
        [pt, PLACEHOLDER_TAG, index, count, hi, lo, media]
            if pt & 0x7f == types.ulpfec && index < count =>
        {
            Some((
                usize::from(index),
                usize::from(count),
                u16::from_be_bytes([hi, lo]),
                usize::from(media),
            ))
        }
        _ => None,
    }
}

/// What the NACK responder keeps of a packet sent on a stream using `types`: a RED media
/// packet as the media packet it carries, a FEC packet (or its placeholder) as an empty
/// packet of the media payload type; any other packet as it is.
pub(crate) fn history_copy(types: Option<FecTypes>, packet: &rtp::Packet) -> Option<rtp::Packet> {
    let types = types?;
    if packet.header.payload_type != types.red {
        return None;
    }
    let mut copy = packet.clone();
    copy.header.payload_type = types.media;
    match packet.payload.first() {
        Some(&block) if block & 0x7f != types.ulpfec && block & 0x80 == 0 => {
            copy.payload = packet.payload.slice(1..);
        }
        _ => copy.payload = Bytes::new(),
    }
    Some(copy)
}

/// Fills FEC placeholders on the way out (see the module docs).
pub(crate) struct FecFiller {
    tap: Arc<TapState>,
    encoder: UlpfecEncoder,
    /// Media packets as they leave, without RED, serialized, by sequence number.
    recent: Vec<Option<(u16, Bytes)>>,
    /// The group whose FEC packets were built last: base, media, count.
    built: Option<(u16, usize, usize)>,
    fec: Vec<Bytes>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl FecFiller {
    /// A filler reading the payload types and the video SSRC from `tap`.
    pub(crate) fn new(tap: Arc<TapState>) -> Self {
        Self {
            tap,
            encoder: UlpfecEncoder::new(),
            recent: vec![None; RECENT],
            built: None,
            fec: Vec::new(),
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
        }
    }

    /// Remembers a RED media packet as ULPFEC protects it: without RED.
    fn keep(&mut self, types: FecTypes, packet: &rtp::Packet) {
        let Some(plain) = history_copy(Some(types), packet) else {
            return;
        };
        let seq = packet.header.sequence_number;
        if let Ok(bytes) = plain.marshal() {
            self.recent[usize::from(seq) & (RECENT - 1)] = Some((seq, bytes.freeze()));
        }
    }

    /// The FEC payload for a placeholder, building the group's FEC packets on its first.
    fn fill(&mut self, index: usize, count: usize, base: u16, media: usize) -> Option<Bytes> {
        if self.built != Some((base, media, count)) {
            self.built = None;
            self.fec.clear();
            let mut group = Vec::with_capacity(media);
            for i in 0..media {
                let seq = base.wrapping_add(i as u16);
                let (s, bytes) = self.recent[usize::from(seq) & (RECENT - 1)].as_ref()?;
                if *s != seq {
                    return None;
                }
                group.push(bytes.as_ref());
            }
            let payloads = self.encoder.encode(&group, count).ok()?;
            self.fec
                .extend(payloads.iter().map(|p| Bytes::copy_from_slice(p)));
            self.built = Some((base, media, count));
        }
        self.fec.get(index).cloned()
    }

    fn on_write(&mut self, packet: &mut rtp::Packet) {
        let Some(types) = self.tap.fec_types() else {
            return;
        };
        if packet.header.payload_type != types.red
            || Some(packet.header.ssrc) != self.tap.video_ssrc()
        {
            return;
        }
        let Some(request) = read_placeholder(types, &packet.payload) else {
            self.keep(types, packet);
            return;
        };
        let (index, count, base, media) = request;
        match self.fill(index, count, base, media) {
            Some(fec) => {
                let mut payload = BytesMut::with_capacity(1 + fec.len());
                payload.put_u8(types.ulpfec);
                payload.put_slice(&fec);
                packet.payload = payload.freeze();
                self.tap.on_fec_sent(packet.payload.len() as u64);
            }
            None => {
                // The group's packets are not all known (the send history wrapped): the
                // number goes out as an empty packet, which carries nothing.
                packet.header.payload_type = types.media;
                packet.payload = Bytes::new();
            }
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FecFiller {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = std::time::Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(packet) = &mut msg.message.packet {
            self.on_write(packet);
        }
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for FecFiller {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fec::ulpfec::{fec_run, UlpfecReceiver};
    use rtc::interceptor::AttributedPacket;
    use rtc::shared::TransportContext;
    use std::time::Instant;

    const TYPES: FecTypes = FecTypes {
        media: 102,
        red: 116,
        ulpfec: 117,
    };

    fn red(seq: u16, marker: bool, body: &[u8]) -> rtp::Packet {
        let mut payload = vec![TYPES.media];
        payload.extend_from_slice(body);
        rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                payload_type: TYPES.red,
                sequence_number: seq,
                timestamp: 3000,
                ssrc: 20,
                marker,
                ..Default::default()
            },
            payload: payload.into(),
        }
    }

    fn written(filler: &mut FecFiller, packet: rtp::Packet) -> rtp::Packet {
        filler
            .handle_write(TaggedPacket {
                now: Instant::now(),
                transport: TransportContext::default(),
                message: AttributedPacket::new(Packet::Rtp(packet)),
            })
            .unwrap();
        match filler.poll_write().unwrap().message.packet {
            Packet::Rtp(p) => p,
            _ => panic!("not RTP"),
        }
    }

    #[test]
    fn types_pack_and_unpack() {
        assert_eq!(FecTypes::unpack(FecTypes::pack(Some(TYPES))), Some(TYPES));
        assert_eq!(FecTypes::unpack(FecTypes::pack(None)), None);
    }

    #[test]
    fn placeholders_become_fec_that_recovers_the_packets_as_they_left() {
        let tap = Arc::new(TapState::new(Instant::now(), Some(20), vec![20]));
        tap.set_fec_types(Some(TYPES));
        let mut filler = FecFiller::new(tap.clone());
        let mut sent = Vec::new();
        for seq in 65_534..=65_535u16 {
            sent.push(written(
                &mut filler,
                red(seq, seq == 65_535, &[seq as u8; 300]),
            ));
        }
        let mut fec = Vec::new();
        for index in 0..2 {
            let mut p = red(index as u16, index == 1, &[]);
            p.payload = placeholder(TYPES, index, 2, 65_534, 2);
            fec.push(written(&mut filler, p));
        }
        assert!(fec
            .iter()
            .all(|p| p.payload[0] == TYPES.ulpfec && p.payload.len() > 300));
        assert_eq!(
            tap.fec_sent(),
            (2, fec.iter().map(|p| p.payload.len() as u64).sum())
        );
        // Two FEC packets over two media packets: one each. The peer lost the second media
        // packet; the second FEC packet gives it back.
        let mut rx = UlpfecReceiver::new();
        let plain = |p: &rtp::Packet| history_copy(Some(TYPES), p).unwrap().marshal().unwrap();
        rx.on_media(plain(&sent[0]).freeze());
        for p in &fec {
            rx.on_fec(20, p.payload.slice(1..));
        }
        let recovered = rx.poll_recovered().unwrap();
        assert_eq!(&recovered[..], &plain(&sent[1])[..]);
        assert_eq!(fec_run(1, true, &fec[1].payload[1..]), Some((0, 1)));
    }

    #[test]
    fn a_placeholder_for_unknown_packets_leaves_empty() {
        let tap = Arc::new(TapState::new(Instant::now(), Some(20), vec![20]));
        tap.set_fec_types(Some(TYPES));
        let mut filler = FecFiller::new(tap.clone());
        let mut p = red(9, true, &[]);
        p.payload = placeholder(TYPES, 0, 1, 5, 3);
        let out = written(&mut filler, p);
        assert_eq!(
            (out.header.payload_type, out.payload.len()),
            (TYPES.media, 0)
        );
        assert_eq!(tap.fec_sent(), (0, 0));
    }

    #[test]
    fn the_history_keeps_media_without_red_and_fec_as_empty() {
        let media = red(1, false, b"abc");
        let copy = history_copy(Some(TYPES), &media).unwrap();
        assert_eq!(
            (copy.header.payload_type, &copy.payload[..]),
            (102, &b"abc"[..])
        );
        let mut fec = red(2, false, &[]);
        fec.payload = placeholder(TYPES, 0, 1, 1, 1);
        let copy = history_copy(Some(TYPES), &fec).unwrap();
        assert!(copy.payload.is_empty());
        let mut plain = media.clone();
        plain.header.payload_type = 102;
        assert!(history_copy(Some(TYPES), &plain).is_none());
        assert!(history_copy(None, &media).is_none());
    }
}
