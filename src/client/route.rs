//! Where the server's call states and signals go: to the call they belong to, through a
//! channel per call. A state or signal for an invitation no call has claimed yet (the reply to
//! our own invite can come after the first state) is kept for a while and handed over when the
//! call claims its id.
//!
//! Each call's channel holds at most [`ROUTE_CAPACITY`] messages. The router never waits for
//! a call (one call that stops reading must not hold up chat or the other calls), and a
//! signal cannot be dropped without breaking the call, so a call whose channel fills up is
//! ended: its route stops taking messages and its next [`Route::recv`] is
//! [`CallMsg::Overflow`], which the call treats as a hang-up with that reason. A well-behaved
//! peer sends tens of signals per call; only a peer flooding the call, or a call that stopped
//! reading, gets there.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use duet_signaling::protocol::{InviteId, InviteState};
use serde_json::Value;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{channel, Receiver, Sender};

/// Invitations whose early messages are kept before a call claims them.
const PARKED_IDS: usize = 64;
/// Messages kept per unclaimed invitation.
const PARKED_PER_ID: usize = 64;
/// Messages waiting in one call's channel before the call is ended as flooded. Larger than
/// [`PARKED_PER_ID`], so that what was parked always fits.
pub(crate) const ROUTE_CAPACITY: usize = 256;

/// What the server says about one call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CallMsg {
    /// The invitation changed state.
    State(InviteState, Option<String>),
    /// The peer's call signal, as the server relayed it.
    Signal(Value),
    /// The client stopped: no more messages will come.
    Closed(String),
    /// More messages came for this call than its channel holds: the call must end, for the
    /// reason given. No more messages will come.
    Overflow(String),
}

/// Why a flooded call ends.
pub(crate) fn overflow_reason() -> String {
    format!(
        "the peer sent call signals faster than duet takes them ({ROUTE_CAPACITY} waiting); \
         the call was ended"
    )
}

/// What an invitation's route carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteKind {
    /// A call: while one is open, other callers hear busy.
    Call,
    /// A file transfer or a sharing folder's link.
    Data,
}

/// A claimed invitation's sending end.
struct Live {
    kind: RouteKind,
    tx: Sender<CallMsg>,
    /// Set when the channel was found full: nothing more is sent, and the route's next
    /// message is [`CallMsg::Overflow`].
    overflowed: Arc<AtomicBool>,
}

#[derive(Default)]
struct Table {
    live: HashMap<InviteId, Live>,
    parked: HashMap<InviteId, Vec<CallMsg>>,
    parked_order: VecDeque<InviteId>,
}

/// The routing table of a client's calls.
#[derive(Default)]
pub(crate) struct Routes {
    table: Mutex<Table>,
}

/// One call's end of the routing table; dropping it gives the id up.
pub(crate) struct Route {
    id: InviteId,
    rx: Receiver<CallMsg>,
    overflowed: Arc<AtomicBool>,
    /// The overflow was reported: the route is finished.
    finished: bool,
    routes: Arc<Routes>,
}

impl Route {
    /// The next message for this call; `None` once the client is gone or after
    /// [`CallMsg::Overflow`].
    pub(crate) async fn recv(&mut self) -> Option<CallMsg> {
        if self.finished {
            return None;
        }
        if !self.overflowed.load(Ordering::Acquire) {
            // A full channel is never empty, so this does not wait past an overflow.
            if let Some(msg) = self.rx.recv().await {
                return Some(msg);
            }
            if !self.overflowed.load(Ordering::Acquire) {
                return None;
            }
        }
        self.finished = true;
        self.rx.close();
        Some(CallMsg::Overflow(overflow_reason()))
    }

    /// The invitation this route belongs to.
    pub(crate) fn id(&self) -> InviteId {
        self.id
    }
}

impl Drop for Route {
    fn drop(&mut self) {
        self.routes.lock().live.remove(&self.id);
    }
}

impl Routes {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims `id`: what was parked for it comes first.
    pub(crate) fn open(self: &Arc<Self>, id: InviteId, kind: RouteKind) -> Route {
        let (tx, rx) = channel(ROUTE_CAPACITY);
        let overflowed = Arc::new(AtomicBool::new(false));
        let mut table = self.lock();
        for msg in table.parked.remove(&id).unwrap_or_default() {
            // Fits: at most PARKED_PER_ID were parked.
            let _ = tx.try_send(msg);
        }
        table.parked_order.retain(|p| *p != id);
        table.live.insert(
            id,
            Live {
                kind,
                tx,
                overflowed: overflowed.clone(),
            },
        );
        Route {
            id,
            rx,
            overflowed,
            finished: false,
            routes: self.clone(),
        }
    }

    /// Calls set up or going on.
    pub(crate) fn active_calls(&self) -> usize {
        self.lock()
            .live
            .values()
            .filter(|live| live.kind == RouteKind::Call)
            .count()
    }

    /// Hands a state to its call; `false` when no call has claimed the id (the state is kept
    /// in case one does).
    pub(crate) fn deliver_state(
        &self,
        id: InviteId,
        state: InviteState,
        reason: Option<String>,
    ) -> bool {
        self.deliver(id, CallMsg::State(state, reason))
    }

    /// Hands a signal to its call (kept if no call has claimed the id yet).
    pub(crate) fn deliver_signal(&self, id: InviteId, signal: Value) {
        self.deliver(id, CallMsg::Signal(signal));
    }

    /// [`deliver_signal`](Self::deliver_signal), saying whether a call has claimed the id.
    #[cfg(test)]
    pub(crate) fn deliver_signal_kept(&self, id: InviteId, signal: Value) -> bool {
        self.deliver(id, CallMsg::Signal(signal))
    }

    fn deliver(&self, id: InviteId, msg: CallMsg) -> bool {
        let mut table = self.lock();
        if let Some(live) = table.live.get(&id) {
            if live.overflowed.load(Ordering::Acquire) {
                // The call is ending as flooded; what comes for it now is dropped.
                return true;
            }
            match live.tx.try_send(msg) {
                Ok(()) => return true,
                Err(TrySendError::Full(_)) => {
                    tracing::warn!("call {id:?}: {}", overflow_reason());
                    live.overflowed.store(true, Ordering::Release);
                    return true;
                }
                Err(TrySendError::Closed(_)) => {
                    table.live.remove(&id);
                    return false;
                }
            }
        }
        if !table.parked.contains_key(&id) {
            if table.parked_order.len() >= PARKED_IDS {
                if let Some(old) = table.parked_order.pop_front() {
                    table.parked.remove(&old);
                }
            }
            table.parked_order.push_back(id);
        }
        let kept = table.parked.entry(id).or_default();
        if kept.len() < PARKED_PER_ID {
            kept.push(msg);
        }
        false
    }

    /// Messages waiting in `id`'s channel, if a call has claimed it.
    #[cfg(test)]
    pub(crate) fn queued(&self, id: InviteId) -> Option<usize> {
        self.lock()
            .live
            .get(&id)
            .map(|live| live.tx.max_capacity() - live.tx.capacity())
    }

    /// Tells every call that the client stopped.
    pub(crate) fn close_all(&self, reason: &str) {
        for live in self.lock().live.values() {
            if let Err(TrySendError::Full(_)) = live.tx.try_send(CallMsg::Closed(reason.to_owned()))
            {
                // A call that let its channel fill up ends as flooded.
                live.overflowed.store(true, Ordering::Release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn early_messages_wait_for_their_call_and_dropping_frees_the_id() {
        let routes = Arc::new(Routes::default());
        let id = InviteId(7);
        assert!(!routes.deliver_state(id, InviteState::Ringing, None));
        routes.deliver_signal(id, serde_json::json!({"type": "answer"}));
        let data = routes.open(InviteId(8), RouteKind::Data);
        assert_eq!(routes.active_calls(), 0);
        drop(data);
        let mut route = routes.open(id, RouteKind::Call);
        assert_eq!(routes.active_calls(), 1);
        assert_eq!(
            route.recv().await,
            Some(CallMsg::State(InviteState::Ringing, None))
        );
        assert!(matches!(route.recv().await, Some(CallMsg::Signal(_))));
        assert!(routes.deliver_state(id, InviteState::HungUp, None));
        assert_eq!(
            route.recv().await,
            Some(CallMsg::State(InviteState::HungUp, None))
        );
        drop(route);
        assert_eq!(routes.active_calls(), 0);
        assert!(!routes.deliver_state(id, InviteState::HungUp, None));
    }

    #[tokio::test]
    async fn a_flooded_route_stays_bounded_and_ends_its_call() {
        let routes = Arc::new(Routes::default());
        let id = InviteId(9);
        let mut route = routes.open(id, RouteKind::Call);
        let mut most = 0;
        for i in 0..100_000u32 {
            assert!(routes.deliver_signal_kept(id, serde_json::json!({ "n": i })));
            most = most.max(routes.queued(id).expect("claimed"));
        }
        assert_eq!(most, ROUTE_CAPACITY, "the channel filled up and no further");
        // Nothing went to the parking lot either.
        assert!(routes.lock().parked.is_empty());
        assert_eq!(
            route.recv().await,
            Some(CallMsg::Overflow(overflow_reason()))
        );
        assert!(overflow_reason().contains("the call was ended"));
        assert_eq!(route.recv().await, None, "nothing after the overflow");
        assert!(routes.deliver_state(id, InviteState::HungUp, None));
        assert_eq!(route.recv().await, None);
        drop(route);
        assert_eq!(routes.active_calls(), 0);
        assert_eq!(routes.queued(id), None);
    }

    #[tokio::test]
    async fn a_route_that_keeps_up_takes_any_number_of_messages() {
        let routes = Arc::new(Routes::default());
        let id = InviteId(10);
        let mut route = routes.open(id, RouteKind::Data);
        for i in 0..(4 * ROUTE_CAPACITY as u64) {
            routes.deliver_signal(id, serde_json::json!(i));
            assert_eq!(
                route.recv().await,
                Some(CallMsg::Signal(serde_json::json!(i)))
            );
        }
        routes.close_all("bye");
        assert_eq!(route.recv().await, Some(CallMsg::Closed("bye".into())));
    }

    #[test]
    fn parking_is_bounded() {
        let routes = Routes::default();
        for i in 0..(PARKED_IDS as u64 + 10) {
            for _ in 0..(PARKED_PER_ID + 5) {
                routes.deliver_signal(InviteId(i), Value::Null);
            }
        }
        let table = routes.lock();
        assert_eq!(table.parked.len(), PARKED_IDS);
        assert!(table.parked.values().all(|v| v.len() == PARKED_PER_ID));
        assert!(!table.parked.contains_key(&InviteId(0)));
    }
}
