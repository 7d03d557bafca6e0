//! Two taps on the WebRTC stack's interceptor chain, which tell a call what its RTCP says.
//!
//! The chain acts on inbound RTCP and then drops it, so the session listens from inside:
//!
//! - [`WireTap`], closest to the wire, sees every packet that leaves (retransmissions and sender
//!   reports included) and every packet that arrives before anything filters it. It counts
//!   the packets of the peer's RTX streams and the peer's NACKs, raises the keyframe flag on a PLI or FIR, notes when
//!   the peer was last heard, and measures the round trip from receiver reports (RFC 3550
//!   section 6.4.1: arrival minus the sender report's departure minus the peer's hold time).
//! - [`AppTap`], closest to the application, reads the congestion controller's estimate off the
//!   feedback packets it rides on.
//!
//! Both only read and pass packets on; what they learn goes into a shared [`TapState`] of atomics.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::error::Error as RtcError;

/// Sender reports remembered for matching receiver reports against.
const SENT_REPORTS: usize = 32;

/// The payload types that video FEC uses, as negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FecTypes {
    /// H.264.
    pub media: u8,
    /// RED (video).
    pub red: u8,
    /// ULPFEC.
    pub ulpfec: u8,
}

impl FecTypes {
    /// Packs the three into a word for an atomic (0: none).
    pub(crate) fn pack(types: Option<FecTypes>) -> u32 {
        types.map_or(0, |t| {
            1 << 24 | u32::from(t.media) << 16 | u32::from(t.red) << 8 | u32::from(t.ulpfec)
        })
    }

    /// The inverse of [`pack`](Self::pack).
    pub(crate) fn unpack(word: u32) -> Option<FecTypes> {
        (word >> 24 != 0).then_some(FecTypes {
            media: (word >> 16) as u8 & 0x7f,
            red: (word >> 8) as u8 & 0x7f,
            ulpfec: word as u8 & 0x7f,
        })
    }
}

/// What the taps have learned, read by the session.
#[derive(Debug)]
pub(crate) struct TapState {
    epoch: Instant,
    /// Our video SSRC: keyframe requests for it raise the flag.
    video_ssrc: Option<u32>,
    /// All our SSRCs: receiver reports about them give the round trip.
    local_ssrcs: Vec<u32>,
    keyframe_wanted: AtomicBool,
    keyframe_requests: AtomicU64,
    nacks_received: AtomicU64,
    /// Packets and payload bytes sent again in answer to NACKs.
    retransmitted: AtomicU64,
    retransmitted_bytes: AtomicU64,
    /// Those of them sent in an RTX stream, which the stack counts under no stream of ours.
    rtx_sent: AtomicU64,
    /// Requested packets not sent again (too recent, too old, over budget or unknown).
    retransmissions_refused: AtomicU64,
    /// Packets of the peer's RTX streams received.
    rtx_received: AtomicU64,
    /// The peer announced an RTX stream.
    remote_rtx: AtomicBool,
    /// The congestion controller's estimate, bit/s; 0 before the first.
    target_bps: AtomicU64,
    /// When the last packet from the peer arrived, microseconds after `epoch` plus one; 0 never.
    last_inbound_us: AtomicU64,
    /// The last round-trip measurement, microseconds plus one; 0 before the first.
    rtt_us: AtomicU64,
    rtt_samples: AtomicU64,
    /// Receiver reports about our streams so far.
    loss_reports: AtomicU64,
    /// The fraction lost of the latest of them, in millionths (the worst of our streams).
    fraction_lost_ppm: AtomicU64,
    /// Receiver reports about our audio stream, and the latest one's fraction lost (ppm).
    audio_loss_reports: AtomicU64,
    audio_fraction_lost_ppm: AtomicU64,
    /// The payload types of video FEC as negotiated ([`FecTypes::pack`]), 0 without it.
    fec_types: AtomicU32,
    /// FEC packets sent and their RTP payload bytes (RED header included).
    fec_packets_sent: AtomicU64,
    fec_bytes_sent: AtomicU64,
}

impl TapState {
    /// State for a session sending on `local_ssrcs`, of which `video_ssrc` carries video.
    pub(crate) fn new(epoch: Instant, video_ssrc: Option<u32>, local_ssrcs: Vec<u32>) -> Self {
        Self {
            epoch,
            video_ssrc,
            local_ssrcs,
            keyframe_wanted: AtomicBool::new(false),
            keyframe_requests: AtomicU64::new(0),
            nacks_received: AtomicU64::new(0),
            retransmitted: AtomicU64::new(0),
            retransmitted_bytes: AtomicU64::new(0),
            rtx_sent: AtomicU64::new(0),
            retransmissions_refused: AtomicU64::new(0),
            rtx_received: AtomicU64::new(0),
            remote_rtx: AtomicBool::new(false),
            target_bps: AtomicU64::new(0),
            last_inbound_us: AtomicU64::new(0),
            rtt_us: AtomicU64::new(0),
            rtt_samples: AtomicU64::new(0),
            loss_reports: AtomicU64::new(0),
            fraction_lost_ppm: AtomicU64::new(0),
            audio_loss_reports: AtomicU64::new(0),
            audio_fraction_lost_ppm: AtomicU64::new(0),
            fec_types: AtomicU32::new(0),
            fec_packets_sent: AtomicU64::new(0),
            fec_bytes_sent: AtomicU64::new(0),
        }
    }

    /// Our video SSRC.
    pub(crate) fn video_ssrc(&self) -> Option<u32> {
        self.video_ssrc
    }

    /// Sets the payload types of video FEC once negotiated (`None`: not negotiated).
    pub(crate) fn set_fec_types(&self, types: Option<FecTypes>) {
        self.fec_types
            .store(FecTypes::pack(types), Ordering::Release);
    }

    /// The payload types of video FEC, when negotiated.
    pub(crate) fn fec_types(&self) -> Option<FecTypes> {
        FecTypes::unpack(self.fec_types.load(Ordering::Acquire))
    }

    /// Records one FEC packet sent with `bytes` of RTP payload.
    pub(crate) fn on_fec_sent(&self, bytes: u64) {
        self.fec_packets_sent.fetch_add(1, Ordering::Relaxed);
        self.fec_bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }

    /// FEC packets sent and their RTP payload bytes.
    pub(crate) fn fec_sent(&self) -> (u64, u64) {
        (
            self.fec_packets_sent.load(Ordering::Relaxed),
            self.fec_bytes_sent.load(Ordering::Relaxed),
        )
    }

    /// Takes the keyframe flag: true once after the peer (or the session) asked for one.
    pub(crate) fn take_keyframe_request(&self) -> bool {
        self.keyframe_wanted.swap(false, Ordering::AcqRel)
    }

    /// Raises the keyframe flag (the connection came up, or the peer asked).
    pub(crate) fn want_keyframe(&self) {
        self.keyframe_wanted.store(true, Ordering::Release);
    }

    /// PLI and FIR messages the peer sent about our video.
    pub(crate) fn keyframe_requests(&self) -> u64 {
        self.keyframe_requests.load(Ordering::Relaxed)
    }

    /// NACK messages the peer sent.
    pub(crate) fn nacks_received(&self) -> u64 {
        self.nacks_received.load(Ordering::Relaxed)
    }

    /// Packets sent again in answer to NACKs, and their payload bytes.
    pub(crate) fn retransmitted_sent(&self) -> (u64, u64) {
        (
            self.retransmitted.load(Ordering::Relaxed),
            self.retransmitted_bytes.load(Ordering::Relaxed),
        )
    }

    /// Requested packets that were not sent again.
    pub(crate) fn retransmissions_refused(&self) -> u64 {
        self.retransmissions_refused.load(Ordering::Relaxed)
    }

    /// Packets sent again in an RTX stream.
    pub(crate) fn rtx_sent(&self) -> u64 {
        self.rtx_sent.load(Ordering::Relaxed)
    }

    /// Records what the NACK responder sent again (in an RTX stream or not) and refused.
    pub(crate) fn on_retransmitted(&self, packets: u64, bytes: u64, refused: u64, rtx: bool) {
        if rtx {
            self.rtx_sent.fetch_add(packets, Ordering::Relaxed);
        }
        self.retransmitted.fetch_add(packets, Ordering::Relaxed);
        self.retransmitted_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.retransmissions_refused
            .fetch_add(refused, Ordering::Relaxed);
    }

    /// Packets of the peer's RTX streams received (`retransmittedPacketsReceived`); `None`
    /// when the peer announced no RTX stream, where retransmissions cannot be told apart.
    pub(crate) fn rtx_received(&self) -> Option<u64> {
        self.remote_rtx
            .load(Ordering::Relaxed)
            .then(|| self.rtx_received.load(Ordering::Relaxed))
    }

    /// The congestion controller's latest estimate, bit/s.
    pub(crate) fn target_bps(&self) -> Option<u64> {
        match self.target_bps.load(Ordering::Relaxed) {
            0 => None,
            bps => Some(bps),
        }
    }

    /// When the peer was last heard from (any RTP or RTCP).
    pub(crate) fn last_inbound(&self) -> Option<Instant> {
        match self.last_inbound_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(self.epoch + Duration::from_micros(us - 1)),
        }
    }

    /// The latest round trip measured from a receiver report, and how many there were.
    pub(crate) fn rtt(&self) -> (Option<Duration>, u64) {
        let rtt = match self.rtt_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us - 1)),
        };
        (rtt, self.rtt_samples.load(Ordering::Relaxed))
    }

    /// How many receiver reports about our streams have come, and the fraction (0 to 1) the
    /// latest one says was lost.
    pub(crate) fn loss(&self) -> (u64, f64) {
        let count = self.loss_reports.load(Ordering::Acquire);
        let ppm = self.fraction_lost_ppm.load(Ordering::Relaxed);
        (count, ppm as f64 / 1e6)
    }

    /// How many receiver reports about our audio stream have come, and the fraction (0 to 1)
    /// the latest one says was lost.
    pub(crate) fn audio_loss(&self) -> (u64, f64) {
        let count = self.audio_loss_reports.load(Ordering::Acquire);
        let ppm = self.audio_fraction_lost_ppm.load(Ordering::Relaxed);
        (count, ppm as f64 / 1e6)
    }

    fn heard(&self, now: Instant) {
        let us = now.saturating_duration_since(self.epoch).as_micros();
        let us = u64::try_from(us).unwrap_or(u64::MAX - 1) + 1;
        self.last_inbound_us.fetch_max(us, Ordering::Relaxed);
    }
}

/// The tap closest to the wire (see the module docs).
pub(crate) struct WireTap {
    state: Arc<TapState>,
    /// SSRCs of the peer's RTX streams.
    remote_rtx: Vec<u32>,
    /// Middle 32 bits of the NTP time of our recent sender reports, and when they left.
    sent_reports: VecDeque<(u32, Instant)>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl WireTap {
    /// A tap reporting into `state`.
    pub(crate) fn new(state: Arc<TapState>) -> Self {
        Self {
            state,
            remote_rtx: Vec::new(),
            sent_reports: VecDeque::with_capacity(SENT_REPORTS),
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
        }
    }

    fn on_inbound_rtcp(&mut self, now: Instant, packets: &[Box<dyn rtc::rtcp::Packet>]) {
        for packet in packets {
            let any = packet.as_any();
            if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                self.keyframe_request(pli.media_ssrc);
            } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                for entry in &fir.fir {
                    self.keyframe_request(entry.ssrc);
                }
            } else if any.is::<TransportLayerNack>() {
                self.state.nacks_received.fetch_add(1, Ordering::Relaxed);
            } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                self.on_reports(now, &rr.reports);
            } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                self.on_reports(now, &sr.reports);
            }
        }
    }

    fn keyframe_request(&self, ssrc: u32) {
        if self.state.video_ssrc == Some(ssrc) {
            self.state.keyframe_requests.fetch_add(1, Ordering::Relaxed);
            self.state.want_keyframe();
        }
    }

    /// Round trip from the reports about our streams (RFC 3550 section 6.4.1).
    fn on_reports(&mut self, now: Instant, reports: &[ReceptionReport]) {
        let mut worst: Option<u8> = None;
        for report in reports {
            if !self.state.local_ssrcs.contains(&report.ssrc) {
                continue;
            }
            worst = Some(worst.map_or(report.fraction_lost, |w| w.max(report.fraction_lost)));
            if self.state.video_ssrc != Some(report.ssrc) {
                let ppm = u64::from(report.fraction_lost) * 1_000_000 / 256;
                let state = &self.state;
                state.audio_fraction_lost_ppm.store(ppm, Ordering::Relaxed);
                state.audio_loss_reports.fetch_add(1, Ordering::Release);
            }
            if report.last_sender_report == 0 {
                continue;
            }
            let Some(&(_, sent)) = self
                .sent_reports
                .iter()
                .find(|(mid, _)| *mid == report.last_sender_report)
            else {
                continue;
            };
            let held = Duration::from_micros(u64::from(report.delay) * 1_000_000 / 65_536);
            let Some(rtt) = now.saturating_duration_since(sent).checked_sub(held) else {
                continue;
            };
            let us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX - 1) + 1;
            self.state.rtt_us.store(us, Ordering::Relaxed);
            self.state.rtt_samples.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(fraction) = worst {
            let ppm = u64::from(fraction) * 1_000_000 / 256;
            self.state.fraction_lost_ppm.store(ppm, Ordering::Relaxed);
            self.state.loss_reports.fetch_add(1, Ordering::Release);
        }
    }

    fn on_outbound_rtcp(&mut self, now: Instant, packets: &[Box<dyn rtc::rtcp::Packet>]) {
        for packet in packets {
            if let Some(sr) = packet.as_any().downcast_ref::<SenderReport>() {
                if self.sent_reports.len() == SENT_REPORTS {
                    self.sent_reports.pop_front();
                }
                self.sent_reports
                    .push_back(((sr.ntp_time >> 16) as u32, now));
            }
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for WireTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.state.heard(msg.now);
        match &msg.message.packet {
            Packet::Rtcp(packets) => self.on_inbound_rtcp(msg.now, packets),
            // An RTX packet without the original sequence number is padding (a probe).
            Packet::Rtp(p) if p.payload.len() >= 2 && self.remote_rtx.contains(&p.header.ssrc) => {
                self.state.rtx_received.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            self.on_outbound_rtcp(msg.now, packets);
        }
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for WireTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        if let Some(rtx) = info.ssrc_rtx {
            self.state.remote_rtx.store(true, Ordering::Relaxed);
            if !self.remote_rtx.contains(&rtx) {
                self.remote_rtx.push(rtx);
            }
        }
    }
    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.remote_rtx.retain(|&s| Some(s) != info.ssrc_rtx);
    }
}

/// The tap closest to the application (see the module docs).
pub(crate) struct AppTap {
    state: Arc<TapState>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl AppTap {
    /// A tap reporting into `state`.
    pub(crate) fn new(state: Arc<TapState>) -> Self {
        Self {
            state,
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for AppTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        let probe = Attribute::TargetBitrateChanged {
            bits_per_second: 0.0,
        };
        if let Some(Attribute::TargetBitrateChanged { bits_per_second }) = msg.message.get(&probe) {
            if bits_per_second.is_finite() && *bits_per_second >= 1.0 {
                self.state
                    .target_bps
                    .store(*bits_per_second as u64, Ordering::Relaxed);
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for AppTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::AttributedPacket;
    use rtc::shared::TransportContext;

    fn tagged(now: Instant, packets: Vec<Box<dyn rtc::rtcp::Packet>>) -> TaggedPacket {
        TaggedPacket {
            now,
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtcp(packets)),
        }
    }

    #[test]
    fn round_trip_comes_from_a_receiver_report_about_our_sender_report() {
        let t0 = Instant::now();
        let state = Arc::new(TapState::new(t0, Some(7), vec![5, 7]));
        let mut tap = WireTap::new(state.clone());
        let ntp: u64 = 0x1234_5678_9abc_def0;
        let sr = SenderReport {
            ssrc: 7,
            ntp_time: ntp,
            ..Default::default()
        };
        tap.handle_write(tagged(t0, vec![Box::new(sr)])).unwrap();
        assert!(tap.poll_write().is_some());
        // The peer held the report 50 ms (3277 / 65536 s) and answered 80 ms after it left.
        let rr = ReceiverReport {
            ssrc: 99,
            reports: vec![ReceptionReport {
                ssrc: 7,
                last_sender_report: (ntp >> 16) as u32,
                delay: 3277,
                fraction_lost: 64,
                ..Default::default()
            }],
            ..Default::default()
        };
        let pli = PictureLossIndication {
            sender_ssrc: 99,
            media_ssrc: 7,
        };
        let at = t0 + Duration::from_millis(80);
        tap.handle_read(tagged(at, vec![Box::new(rr), Box::new(pli)]))
            .unwrap();
        assert!(tap.poll_read().is_some());
        let (rtt, samples) = state.rtt();
        let rtt = rtt.unwrap().as_secs_f64() * 1000.0;
        assert!((rtt - 30.0).abs() < 0.1, "rtt {rtt} ms");
        assert_eq!(samples, 1);
        assert_eq!(state.loss(), (1, 0.25));
        assert_eq!(state.keyframe_requests(), 1);
        assert!(state.take_keyframe_request());
        assert!(!state.take_keyframe_request());
        assert_eq!(state.last_inbound(), Some(at));
    }
}
