//! The NACK responder on the WebRTC stack's interceptor chain: it keeps the send history of
//! each local stream that negotiated `nack`, and answers the peer's NACKs through a
//! [`Retransmitter`] (once per round trip, not past the receiver's playout, within a share of
//! the congestion estimate), in the stream's RTX stream when one was negotiated (RFC 4588).
//!
//! The round trip and the estimate come from the [`TapState`] the session's taps fill in;
//! what was resent goes back into it, for the stats and for bitrate adaptation.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::interceptor::{
    Attribute, AttributedPacket, Interceptor, Packet, StreamInfo, TaggedPacket,
};
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::error::Error as RtcError;
use rtc::shared::TransportContext;

use super::fec::history_copy;
use super::tap::TapState;

/// Round-trip samples whose minimum paces the answers to repeated requests.
const RTT_SAMPLES: usize = 8;
use crate::retransmit::{RetransmitConfig, Retransmitter, Rtx};

/// Answers NACKs for the local streams (see the module docs).
pub(crate) struct RtxResponder {
    tap: Arc<TapState>,
    config: RetransmitConfig,
    streams: HashMap<u32, Retransmitter>,
    /// The latest round-trip samples (and how many the tap had taken at the last one): a
    /// packet is answered once per the shortest of them, since a single sample inflated by
    /// jitter would refuse a repeated request that is genuine.
    rtts: VecDeque<Duration>,
    rtt_samples: u64,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl RtxResponder {
    /// A responder reading the round trip and estimate from `tap`.
    pub(crate) fn new(tap: Arc<TapState>, config: RetransmitConfig) -> Self {
        Self {
            tap,
            config,
            streams: HashMap::new(),
            rtts: VecDeque::with_capacity(RTT_SAMPLES),
            rtt_samples: 0,
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
        }
    }

    fn on_nack(&mut self, now: Instant, nack: &TransportLayerNack) {
        if let (Some(rtt), samples) = self.tap.rtt() {
            if samples != self.rtt_samples {
                self.rtt_samples = samples;
                if self.rtts.len() == RTT_SAMPLES {
                    self.rtts.pop_front();
                }
                self.rtts.push_back(rtt);
            }
        }
        let Some(stream) = self.streams.get_mut(&nack.media_ssrc) else {
            return;
        };
        if let Some(&rtt) = self.rtts.iter().min() {
            stream.set_rtt(rtt);
        }
        if let Some(bps) = self.tap.target_bps() {
            stream.set_target_bps(bps);
        }
        let before = stream.stats();
        for pair in &nack.nacks {
            let seqs = std::iter::once(pair.packet_id).chain(
                (0..16u16)
                    .filter(|i| pair.lost_packets & (1 << i) != 0)
                    .map(|i| pair.packet_id.wrapping_add(i + 1)),
            );
            for seq in seqs {
                if let Some(packet) = stream.on_nack(now, seq) {
                    self.write_queue.push_back(TaggedPacket {
                        now,
                        transport: TransportContext::default(),
                        message: AttributedPacket::new(Packet::Rtp(packet))
                            .with(Attribute::Retransmission),
                    });
                }
            }
        }
        let after = stream.stats();
        self.tap.on_retransmitted(
            after.packets - before.packets,
            after.bytes - before.bytes,
            (after.too_recent + after.too_old + after.over_budget + after.unknown)
                - (before.too_recent + before.too_old + before.over_budget + before.unknown),
            stream.rtx().is_some(),
        );
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RtxResponder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for packet in packets {
                if let Some(nack) = packet.as_any().downcast_ref::<TransportLayerNack>() {
                    self.on_nack(msg.now, nack);
                }
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(packet) = &msg.message.packet {
            if let Some(stream) = self.streams.get_mut(&packet.header.ssrc) {
                // A packet in RED is kept as what it carries: media to resend in RTX with
                // the media payload type, FEC as an empty packet.
                match history_copy(self.tap.fec_types(), packet) {
                    Some(copy) => stream.on_sent(msg.now, &copy),
                    None => stream.on_sent(msg.now, packet),
                }
            }
        }
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for RtxResponder {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        let nack = info
            .rtcp_feedback
            .iter()
            .any(|fb| fb.typ == "nack" && fb.parameter.is_empty());
        if !nack {
            return;
        }
        let rtx = match (info.ssrc_rtx, info.payload_type_rtx) {
            (Some(ssrc), Some(payload_type)) => Some(Rtx { ssrc, payload_type }),
            _ => None,
        };
        match Retransmitter::new(self.config, rtx) {
            Ok(stream) => {
                self.streams.insert(info.ssrc, stream);
            }
            Err(e) => tracing::warn!("no retransmissions for SSRC {:08x}: {e}", info.ssrc),
        }
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.streams.remove(&info.ssrc);
    }

    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rtc::interceptor::RTCPFeedback;
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::NackPair;

    fn rtp(seq: u16) -> rtc::rtp::Packet {
        rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: 102,
                sequence_number: seq,
                ssrc: 20,
                ..Default::default()
            },
            payload: Bytes::from_static(b"0123456789"),
        }
    }

    fn tagged(now: Instant, packet: Packet) -> TaggedPacket {
        TaggedPacket {
            now,
            transport: TransportContext::default(),
            message: AttributedPacket::new(packet),
        }
    }

    #[test]
    fn a_nack_is_answered_in_the_rtx_stream_and_counted() {
        let t0 = Instant::now();
        let tap = Arc::new(TapState::new(t0, Some(20), vec![20]));
        let mut responder = RtxResponder::new(tap.clone(), RetransmitConfig::default());
        responder.bind_local_stream(&StreamInfo {
            ssrc: 20,
            ssrc_rtx: Some(21),
            payload_type: 102,
            payload_type_rtx: Some(103),
            rtcp_feedback: vec![RTCPFeedback {
                typ: "nack".into(),
                parameter: String::new(),
            }],
            ..Default::default()
        });
        for seq in 100..110 {
            responder
                .handle_write(tagged(t0, Packet::Rtp(rtp(seq))))
                .unwrap();
            assert!(responder.poll_write().is_some());
        }
        // 101 and 103 asked for (a bitmap of the packets after 101).
        let nack = TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc: 20,
            nacks: vec![NackPair {
                packet_id: 101,
                lost_packets: 0b10,
            }],
        };
        let at = t0 + Duration::from_millis(40);
        responder
            .handle_read(tagged(at, Packet::Rtcp(vec![Box::new(nack.clone())])))
            .unwrap();
        assert!(responder.poll_read().is_some());
        let mut resent = Vec::new();
        while let Some(msg) = responder.poll_write() {
            assert!(msg.message.has(&Attribute::Retransmission));
            let Packet::Rtp(p) = msg.message.packet else {
                panic!("not RTP")
            };
            assert_eq!((p.header.ssrc, p.header.payload_type), (21, 103));
            resent.push(u16::from_be_bytes([p.payload[0], p.payload[1]]));
        }
        assert_eq!(resent, vec![101, 103]);
        assert_eq!(tap.retransmitted_sent(), (2, 20));
        assert_eq!(tap.rtx_sent(), 2);
        // The same NACK again at once crossed the answer: nothing is sent twice.
        responder
            .handle_read(tagged(at, Packet::Rtcp(vec![Box::new(nack)])))
            .unwrap();
        assert!(responder.poll_write().is_none());
        assert_eq!(tap.retransmissions_refused(), 2);
    }
}
