//! The link's tasks: the control task (the stack's events, the connect timeout, the round
//! trip, closing at the end) and the reader of the data channel (opening, messages into the
//! receive queue, the buffered-amount-low event), and the sender's wait for room.

use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{self, UnboundedReceiver};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::StatsSelector;

use super::base::{HIGH_WATER, LOW_WATER};
use super::inner::{lock, Inner};
use crate::call::EndReason;
use crate::error::Error;
use crate::negotiate::{self, PeerEvent};

/// How often the control task looks at the connect timeout.
const TICK: Duration = Duration::from_millis(250);
/// How often the round trip is read from the stack's statistics.
const RTT_EVERY: Duration = Duration::from_secs(1);
/// After hanging up, the connection stays up this long, so the peer learns of the hang-up
/// from the [`Signal::End`](super::Signal::End) rather than from the channel closing.
const LINGER: Duration = Duration::from_millis(200);

impl Inner {
    /// Takes the link's data channel: sets its low-water mark and starts its reader. A
    /// second channel the peer opens is closed.
    pub(super) async fn attach(self: &Arc<Self>, channel: Arc<dyn DataChannel>) {
        let queue = {
            let mut slot = lock(&self.channel);
            if slot.is_some() {
                None
            } else {
                *slot = Some(channel.clone());
                lock(&self.queue_tx).take()
            }
        };
        let Some(queue) = queue else {
            tracing::warn!("the peer opened a second data channel; closing it");
            let _ = channel.close().await;
            return;
        };
        if let Err(e) = channel
            .set_buffered_amount_low_threshold(LOW_WATER as u32)
            .await
        {
            tracing::warn!("data link: low-water mark not set: {e}");
        }
        self.runtime.spawn(read(self.clone(), channel, queue));
    }

    /// The data channel once it is open; waits for it to open, fails if the link ends.
    pub(super) async fn open_channel(&self) -> Result<Arc<dyn DataChannel>, Error> {
        loop {
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            {
                let phase = lock(&self.phase);
                if phase.ended.is_some() {
                    drop(phase);
                    return Err(self.ended_error());
                }
                if phase.open {
                    if let Some(channel) = lock(&self.channel).clone() {
                        return Ok(channel);
                    }
                }
            }
            changed.await;
        }
    }

    /// Waits while more than [`HIGH_WATER`] bytes are buffered on `channel`; returns the
    /// bytes buffered when there is room.
    ///
    /// The stack's buffered-amount-low event wakes it. That event comes through the same
    /// stream as the peer's messages, so while the reader is stalled on a full receive
    /// queue the stack's own wake on acknowledged bytes stands in for it.
    pub(super) async fn wait_for_room(
        &self,
        channel: &Arc<dyn DataChannel>,
    ) -> Result<usize, Error> {
        let mut counted = false;
        loop {
            let mut low = pin!(self.low.notified());
            low.as_mut().enable();
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            if self.is_ended() {
                return Err(self.ended_error());
            }
            let buffered = channel
                .outstanding_bytes()
                .await
                .map_err(|e| self.send_error(e))?;
            if buffered <= HIGH_WATER {
                return Ok(buffered);
            }
            if !counted {
                counted = true;
                self.counters.send_waits.fetch_add(1, Ordering::Relaxed);
            }
            let stalled = self.reader_stalled.load(Ordering::Acquire);
            tokio::select! {
                _ = low => {}
                _ = changed => {}
                ready = channel.writable(), if stalled => {
                    ready.map_err(|e| self.send_error(e))?;
                }
            }
        }
    }

    /// Resolves once the link has ended.
    async fn wait_ended(&self) {
        loop {
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            if self.is_ended() {
                return;
            }
            changed.await;
        }
    }

    async fn on_peer_event(self: &Arc<Self>, event: PeerEvent) {
        match event {
            PeerEvent::Candidate(init) => negotiate::emit_candidate(self, init),
            PeerEvent::Channel(channel) => self.attach(channel).await,
            // A link carries no media.
            PeerEvent::Track(_) => {}
            other => {
                if let Some(reason) = other.end_reason() {
                    self.end(reason);
                }
            }
        }
    }

    /// The connect timeout, and the round trip once open.
    async fn on_tick(self: &Arc<Self>, rtt_due: &mut Instant) {
        let now = Instant::now();
        let open = lock(&self.phase).open;
        if !open {
            if now.duration_since(self.created) > self.config.connect_timeout {
                self.end(EndReason::ConnectTimeout(self.config.connect_timeout));
            }
            return;
        }
        if now < *rtt_due {
            return;
        }
        *rtt_due = now + RTT_EVERY;
        let report = self.pc.get_stats(now, StatsSelector::None).await;
        let rtt = report
            .candidate_pairs()
            .filter(|pair| pair.nominated && pair.current_round_trip_time > 0.0)
            .map(|pair| pair.current_round_trip_time)
            .next();
        if let Some(seconds) = rtt {
            let us = (seconds * 1e6) as u64 + 1;
            self.counters.rtt_us.store(us, Ordering::Relaxed);
        }
        if let Some(path) = crate::ice::selected_path(&report) {
            *self.path.lock().unwrap_or_else(|e| e.into_inner()) = Some(path);
        }
    }
}

/// The link's control task: the stack's events and the timeout until the link ends; then it
/// closes the channel and the connection.
pub(super) async fn control(inner: Arc<Inner>, mut events: UnboundedReceiver<PeerEvent>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut rtt_due = Instant::now();
    while !inner.is_ended() {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => inner.on_peer_event(event).await,
                None => break,
            },
            _ = tick.tick() => inner.on_tick(&mut rtt_due).await,
            _ = inner.ended.notified() => {}
        }
    }
    if matches!(lock(&inner.phase).ended, Some(EndReason::HungUp(_))) {
        tokio::time::sleep(LINGER).await;
    }
    let channel = lock(&inner.channel).take();
    if let Some(channel) = channel {
        if let Err(e) = channel.close().await {
            tracing::debug!("closing the data channel: {e}");
        }
    }
    if let Err(e) = inner.pc.close().await {
        tracing::debug!("closing the connection: {e}");
    }
}

/// Reads the data channel: its opening, the peer's messages into the receive queue (waiting
/// for room when it is full), and the buffered-amount-low event for senders. Ends with the
/// link or the channel; dropping `queue` then lets the consumer see the end.
async fn read(inner: Arc<Inner>, channel: Arc<dyn DataChannel>, queue: mpsc::Sender<Vec<u8>>) {
    loop {
        let event = tokio::select! {
            event = channel.poll() => event,
            _ = inner.wait_ended() => break,
        };
        match event {
            Some(DataChannelEvent::OnOpen) => inner.opened(),
            Some(DataChannelEvent::OnMessage(message)) => {
                let counters = &inner.counters;
                counters.messages_received.fetch_add(1, Ordering::Relaxed);
                counters
                    .bytes_received
                    .fetch_add(message.data.len() as u64, Ordering::Relaxed);
                match queue.try_send(Vec::from(message.data)) {
                    Ok(()) => {}
                    Err(TrySendError::Full(data)) => {
                        counters.receive_stalls.fetch_add(1, Ordering::Relaxed);
                        inner.reader_stalled.store(true, Ordering::Release);
                        inner.changed.notify_waiters();
                        let queued = tokio::select! {
                            sent = queue.send(data) => sent.is_ok(),
                            _ = inner.wait_ended() => false,
                        };
                        inner.reader_stalled.store(false, Ordering::Release);
                        if !queued {
                            break;
                        }
                    }
                    Err(TrySendError::Closed(_)) => break,
                }
            }
            Some(DataChannelEvent::OnBufferedAmountLow) => inner.low.notify_waiters(),
            Some(DataChannelEvent::OnClose) | None => {
                inner.end(EndReason::Closed);
                break;
            }
            Some(_) => {}
        }
    }
}
