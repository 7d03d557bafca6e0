//! The session's control task and the readers of the peer's tracks: the stack's events, the
//! timeouts (connecting, a silent peer), bitrate adaptation, the statistics, and the RTCP
//! feedback of the video receiver.

use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Instant;

use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    nack_pairs_from_sequence_numbers, TransportLayerNack,
};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::sync::mpsc::UnboundedReceiver;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    RTCIceConnectionState, RTCPeerConnectionState, RTCStatsReportEntry, StatsSelector,
};

use super::inner::{lock, Inner, StackFigures, STATS_EVERY, TICK};
use crate::call::peer;
use crate::call::receive::{Arrival, Feedback};
use crate::call::restart::{RestartAction, RestartPolicy};
use crate::call::stats::{ms, AudioSendStats, CallStats, TransportStats};
use crate::call::{CallEvent, EndReason};
use crate::negotiate::{self, Negotiator, PeerEvent};
use crate::rtp::RtpPacket;
use rtc::shared::marshal::Marshal;

impl Inner {
    async fn on_peer_event(self: &Arc<Self>, event: PeerEvent) {
        match event {
            PeerEvent::Candidate(init) => negotiate::emit_candidate(&**self, init),
            PeerEvent::Connection(RTCPeerConnectionState::Connected) => self.connected().await,
            PeerEvent::Track(track) => self.on_track(track),
            PeerEvent::Ice(state) => {
                self.on_ice(state);
                if let Some(reason) = PeerEvent::Ice(state).end_reason() {
                    self.end(reason);
                }
            }
            // A call carries no data channel: one the peer opens is closed.
            PeerEvent::Channel(channel) => {
                let _ = channel.close().await;
            }
            other => {
                if let Some(reason) = other.end_reason() {
                    self.end(reason);
                }
            }
        }
    }

    /// The connection is up: learn the payload types negotiated, start sending, tell the owner.
    async fn connected(&self) {
        {
            let phase = lock(&self.phase);
            if phase.connected_at.is_some() || phase.ended.is_some() {
                return;
            }
        }
        let negotiated = peer::negotiated_payload_types(&self.pc).await;
        let mut phase = lock(&self.phase);
        if phase.ended.is_some() {
            return;
        }
        let now = Instant::now();
        phase.connected_at = Some(now);
        if let Some(config) = &self.config.restart {
            *lock(&self.restart) = Some(RestartPolicy::new(config.clone(), now));
        }
        let red = negotiated.red.filter(|_| self.config.audio_red);
        if let Some(pt) = red {
            self.receive
                .red_type
                .store(u16::from(pt) + 1, Ordering::Relaxed);
        }
        let fec = negotiated.fec.filter(|_| self.config.video_fec);
        self.receive.set_fec_types(fec);
        lock(&self.red).rtx = negotiated.rtx;
        self.send
            .connect(negotiated.audio, red, negotiated.video, fec);
        let _ = self.events.send(CallEvent::Connected);
    }

    /// ICE's state goes to the restart policy: `disconnected` or `failed` is a path down,
    /// `connected` or `completed` a path up.
    fn on_ice(&self, state: RTCIceConnectionState) {
        let up = match state {
            RTCIceConnectionState::Connected | RTCIceConnectionState::Completed => true,
            RTCIceConnectionState::Disconnected | RTCIceConnectionState::Failed => false,
            _ => return,
        };
        if let Some(policy) = lock(&self.restart).as_mut() {
            policy.on_ice(Instant::now(), up);
        }
    }

    /// Asks the restart policy about the path, and restarts ICE or gives up as it says. The
    /// caller restarts; the callee asks the caller to.
    async fn watch_path(&self, now: Instant) {
        let action = match lock(&self.restart).as_mut() {
            Some(policy) => policy.poll(now, self.tap.last_inbound()),
            None => return,
        };
        match action {
            Some(RestartAction::Restart) => {
                let caller = negotiate::made_the_offer(self);
                tracing::info!(
                    "the path to the peer stopped: {}",
                    if caller {
                        "restarting ICE"
                    } else {
                        "asking the caller to restart ICE"
                    }
                );
                if caller {
                    if let Err(e) = negotiate::restart(self).await {
                        tracing::warn!("ICE restart: {e}");
                    }
                } else {
                    negotiate::request_restart(self);
                }
            }
            Some(RestartAction::GiveUp) => {
                self.end(crate::call::EndReason::IceFailed);
            }
            None => {}
        }
    }

    /// Starts reading one of the peer's tracks into the receive thread of its kind.
    fn on_track(self: &Arc<Self>, track: Arc<dyn TrackRemote>) {
        let inner = self.clone();
        self.runtime.spawn(async move {
            let kind = track.kind().await;
            let (route, feedback) = {
                let mut routes = lock(&inner.routes);
                match kind {
                    RtpCodecKind::Audio => (routes.audio.clone(), None),
                    RtpCodecKind::Video => (routes.video.clone(), routes.feedback.take()),
                    _ => (None, None),
                }
            };
            let ssrc = inner.feedback_ssrc;
            drop(inner);
            let video = kind == RtpCodecKind::Video;
            read_track(track, route, feedback, ssrc, video).await;
        });
    }

    /// Timeouts (connecting, a silent peer) and the periodic statistics.
    async fn on_tick(&self, stats_due: &mut Instant) {
        let now = Instant::now();
        let connected_at = lock(&self.phase).connected_at;
        match connected_at {
            None => {
                if now.duration_since(self.created) > self.config.connect_timeout {
                    self.end(EndReason::ConnectTimeout(self.config.connect_timeout));
                    return;
                }
            }
            Some(at) => {
                let heard = self.tap.last_inbound().map_or(at, |t| t.max(at));
                if now.saturating_duration_since(heard) > self.config.silence_timeout {
                    self.end(EndReason::PeerSilent(self.config.silence_timeout));
                    return;
                }
            }
        }
        if connected_at.is_some() {
            self.watch_path(now).await;
            if self.is_ended() {
                return;
            }
            self.redundancy();
            self.protection();
            self.adapt(now);
        }
        if now >= *stats_due {
            *stats_due = now + STATS_EVERY;
            self.refresh_stack().await;
        }
        let rtt = self.rtt_ms();
        if let Some(rtt) = rtt {
            let us = (rtt * 1000.0) as u64 + 1;
            self.receive.rtt_us.store(us, Ordering::Relaxed);
        }
    }

    /// Sets the audio redundancy distance from the peer's latest receiver report on our
    /// audio, when RED was negotiated; bitrate adaptation learns it, to keep Opus and its
    /// copies in budget.
    fn redundancy(&self) {
        if !self.send.audio_wire().red_negotiated {
            return;
        }
        let (reports, fraction_lost) = self.tap.audio_loss();
        let distance = {
            let mut red = lock(&self.red);
            if reports == red.reports {
                return;
            }
            red.reports = reports;
            red.control.on_report(fraction_lost)
        };
        self.send.set_red_distance(distance);
        if let Some(adapter) = lock(&self.adapt).as_mut() {
            adapter.controller.set_audio_redundancy(distance);
        }
    }

    /// Sets the video protection factor from the peer's latest receiver report and the round
    /// trip, when video FEC was negotiated.
    fn protection(&self) {
        if self.send.fec_factor().is_none() {
            return;
        }
        let (reports, fraction_lost) = self.tap.loss();
        let factor = {
            let mut red = lock(&self.red);
            if reports == red.fec_reports {
                return;
            }
            red.fec_reports = reports;
            let rtx = red.rtx;
            red.fec.on_report(fraction_lost, self.tap.rtt().0, rtx)
        };
        self.send.set_fec_factor(factor);
    }

    /// Feeds bitrate adaptation the peer's latest receiver report and the congestion
    /// estimate, and passes its decisions to the encoders.
    fn adapt(&self, now: Instant) {
        let mut adapt = lock(&self.adapt);
        let Some(adapter) = adapt.as_mut() else {
            return;
        };
        let (reports, fraction_lost) = self.tap.loss();
        if reports != adapter.reports {
            adapter.reports = reports;
            let (rtt, _) = self.tap.rtt();
            adapter
                .controller
                .on_receiver_report(now, fraction_lost, rtt);
        }
        if let Some(bps) = self.tap.target_bps() {
            adapter.controller.on_estimate(now, bps);
        }
        // Retransmissions and FEC both come out of the video's share.
        adapter
            .controller
            .on_repair_sent(now, self.tap.retransmitted_sent().1 + self.tap.fec_sent().1);
        adapter.controller.handle_timeout(now);
        while let Some(change) = adapter.controller.poll_output() {
            self.send.reconfigure(change, adapter.controller.targets());
        }
    }

    /// The round trip: from receiver reports when we send, else from ICE checks.
    fn rtt_ms(&self) -> Option<f64> {
        let (rtt, _) = self.tap.rtt();
        rtt.map(ms).or(lock(&self.stack).ice_rtt_ms)
    }

    pub(super) async fn refresh_stack(&self) {
        let report = self.pc.get_stats(Instant::now(), StatsSelector::None).await;
        let mut figures = StackFigures::default();
        for outbound in report.outbound_rtp_streams() {
            let sent = &outbound.sent_rtp_stream_stats;
            figures.packets_sent += sent.packets_sent;
            match sent.rtp_stream_stats.kind {
                RtpCodecKind::Audio => figures.audio_packets_sent += sent.packets_sent,
                RtpCodecKind::Video => figures.video_packets_sent += sent.packets_sent,
                _ => {}
            }
            figures.bytes_sent += outbound.sent_rtp_stream_stats.bytes_sent;
        }
        for inbound in report.inbound_rtp_streams() {
            let received = &inbound.received_rtp_stream_stats;
            figures.packets_received += received.packets_received;
            figures.bytes_received += inbound.bytes_received;
            figures.packets_lost += received.packets_lost.max(0) as u64;
        }
        for entry in report.iter() {
            if let RTCStatsReportEntry::RemoteInboundRtp(remote) = entry {
                figures.remote_packets_lost +=
                    remote.received_rtp_stream_stats.packets_lost.max(0) as u64;
            }
        }
        figures.path = crate::ice::selected_path(&report);
        figures.ice_rtt_ms = report
            .candidate_pairs()
            .filter(|pair| pair.nominated && pair.current_round_trip_time > 0.0)
            .map(|pair| pair.current_round_trip_time * 1000.0)
            .next();
        *lock(&self.stack) = figures;
    }

    pub(super) fn stats(&self) -> CallStats {
        let stack = lock(&self.stack).clone();
        let audio = self.receive.audio_stats();
        let video = self.receive.video_stats();
        let plis_sent = self.receive.plis_sent.load(Ordering::Relaxed);
        // Bitrate adaptation's state, read under one lock.
        let (estimate_bps, video_target_kbps, quality_limitation) = match &*lock(&self.adapt) {
            Some(a) => (
                Some(a.controller.estimate_bps()),
                Some(f64::from(a.controller.targets().video_bps) / 1000.0),
                a.controller.quality_limitation(),
            ),
            None => (None, None, Default::default()),
        };
        CallStats {
            transport: TransportStats {
                rtt_ms: self.rtt_ms(),
                packets_sent: stack.packets_sent + self.tap.rtx_sent(),
                bytes_sent: stack.bytes_sent,
                packets_received: stack.packets_received,
                bytes_received: stack.bytes_received,
                packets_lost: stack.packets_lost,
                remote_packets_lost: stack.remote_packets_lost,
                remote_fraction_lost: self.tap.loss().1,
                retransmitted: self.tap.retransmitted_sent().0,
                retransmitted_bytes: self.tap.retransmitted_sent().1,
                retransmissions_refused: self.tap.retransmissions_refused(),
                retransmitted_received: self.tap.rtx_received(),
                fec_packets_sent: self.tap.fec_sent().0,
                fec_bytes_sent: self.tap.fec_sent().1,
                fec_factor: self.send.fec_factor(),
                nack_count: video.jitter.nack_count,
                nacks_received: self.tap.nacks_received(),
                pli_count: plis_sent,
                plis_received: self.tap.keyframe_requests(),
                target_kbps: estimate_bps
                    .or(self.tap.target_bps())
                    .map(|bps| bps as f64 / 1000.0),
                congestion_kbps: self.tap.target_bps().map(|bps| bps as f64 / 1000.0),
                video_target_kbps,
                quality_limitation,
                audio_packets_sent: stack.audio_packets_sent,
                // W3C counts retransmissions among a stream's packets; the stack counts
                // those sent in the RTX stream under no stream.
                video_packets_sent: stack.video_packets_sent + self.tap.rtx_sent(),
                frames_not_sent: self.send.dropped(),
                path: stack.path,
                ice_restarts: lock(&self.negotiation).restarts(),
                longest_outage_ms: lock(&self.restart)
                    .as_ref()
                    .and_then(RestartPolicy::longest_outage)
                    .map(ms),
            },
            audio,
            video,
            audio_sent: {
                let wire = self.send.audio_wire();
                AudioSendStats {
                    payload_bytes: wire.payload_bytes,
                    redundant_bytes: wire.redundant_bytes,
                    red_packets: wire.red_packets,
                    red_negotiated: wire.red_negotiated,
                    red_distance: wire.red_distance,
                }
            },
        }
    }
}

/// The session's control task: the stack's events, timeouts and statistics, until the call
/// ends; then it closes the connection.
pub(super) async fn control(inner: Arc<Inner>, mut events: UnboundedReceiver<PeerEvent>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut stats_due = Instant::now() + STATS_EVERY;
    while !inner.is_ended() {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => inner.on_peer_event(event).await,
                None => break,
            },
            _ = tick.tick() => inner.on_tick(&mut stats_due).await,
            _ = inner.ended.notified() => {}
        }
    }
    // Statistics as the call ended, then the connection goes.
    inner.refresh_stack().await;
    if let Err(e) = inner.pc.close().await {
        tracing::debug!("closing the connection: {e}");
    }
}

/// Reads one of the peer's tracks: RTP into `route` (stamped with its arrival), and the
/// receive thread's NACKs and keyframe requests out as RTCP. Ends with the track.
async fn read_track(
    track: Arc<dyn TrackRemote>,
    route: Option<std_mpsc::Sender<Arrival>>,
    mut feedback: Option<UnboundedReceiver<Feedback>>,
    sender_ssrc: u32,
    video: bool,
) {
    loop {
        tokio::select! {
            event = track.poll() => match event {
                Some(TrackRemoteEvent::OnRtpPacket(packet)) => {
                    let Some(route) = &route else { continue };
                    // Video FEC covers the packet as it came, header extensions included.
                    let wire = if video {
                        packet.marshal().ok().map(|b| b.freeze())
                    } else {
                        None
                    };
                    let arrival = Arrival {
                        wire,
                        at: Instant::now(),
                        packet: RtpPacket {
                            seq: packet.header.sequence_number,
                            timestamp: packet.header.timestamp,
                            ssrc: packet.header.ssrc,
                            marker: packet.header.marker,
                            payload_type: packet.header.payload_type,
                            payload: packet.payload,
                        },
                    };
                    if route.send(arrival).is_err() {
                        // The receive thread has stopped: the call is over.
                        break;
                    }
                }
                Some(TrackRemoteEvent::OnEnded) | None => break,
                Some(_) => {}
            },
            request = next_feedback(&mut feedback) => match request {
                Some(request) => {
                    if let Err(e) = track.write_rtcp(rtcp_for(request, sender_ssrc)).await {
                        tracing::debug!("RTCP feedback not sent: {e}");
                    }
                }
                None => feedback = None,
            },
        }
    }
}

async fn next_feedback(feedback: &mut Option<UnboundedReceiver<Feedback>>) -> Option<Feedback> {
    match feedback {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn rtcp_for(request: Feedback, sender_ssrc: u32) -> Vec<Box<dyn rtc::rtcp::Packet>> {
    match request {
        Feedback::Nack { media_ssrc, seqs } => vec![Box::new(TransportLayerNack {
            sender_ssrc,
            media_ssrc,
            nacks: nack_pairs_from_sequence_numbers(&seqs),
        })],
        Feedback::KeyframeRequest { media_ssrc } => vec![Box::new(PictureLossIndication {
            sender_ssrc,
            media_ssrc,
        })],
    }
}
