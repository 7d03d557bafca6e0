//! Where the server's call states and signals go: to the call they belong to, through a
//! channel per call. A state or signal for an invitation no call has claimed yet (the reply to
//! our own invite can come after the first state) is kept for a while and handed over when the
//! call claims its id.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use duet_signaling::protocol::{InviteId, InviteState};
use serde_json::Value;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// Invitations whose early messages are kept before a call claims them.
const PARKED_IDS: usize = 64;
/// Messages kept per unclaimed invitation.
const PARKED_PER_ID: usize = 64;

/// What the server says about one call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CallMsg {
    /// The invitation changed state.
    State(InviteState, Option<String>),
    /// The peer's call signal, as the server relayed it.
    Signal(Value),
    /// The client stopped: no more messages will come.
    Closed(String),
}

/// What an invitation's route carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteKind {
    /// A call: while one is open, other callers hear busy.
    Call,
    /// A file transfer or a sharing folder's link.
    Data,
}

#[derive(Default)]
struct Table {
    live: HashMap<InviteId, (RouteKind, UnboundedSender<CallMsg>)>,
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
    rx: UnboundedReceiver<CallMsg>,
    routes: Arc<Routes>,
}

impl Route {
    /// The next message for this call; `None` once the client is gone.
    pub(crate) async fn recv(&mut self) -> Option<CallMsg> {
        self.rx.recv().await
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
        let (tx, rx) = unbounded_channel();
        let mut table = self.lock();
        for msg in table.parked.remove(&id).unwrap_or_default() {
            let _ = tx.send(msg);
        }
        table.parked_order.retain(|p| *p != id);
        table.live.insert(id, (kind, tx));
        Route {
            id,
            rx,
            routes: self.clone(),
        }
    }

    /// Calls set up or going on.
    pub(crate) fn active_calls(&self) -> usize {
        self.lock()
            .live
            .values()
            .filter(|(kind, _)| *kind == RouteKind::Call)
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

    fn deliver(&self, id: InviteId, msg: CallMsg) -> bool {
        let mut table = self.lock();
        if let Some((_, tx)) = table.live.get(&id) {
            if tx.send(msg).is_ok() {
                return true;
            }
            table.live.remove(&id);
            return false;
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

    /// Tells every call that the client stopped.
    pub(crate) fn close_all(&self, reason: &str) {
        for (_, tx) in self.lock().live.values() {
            let _ = tx.send(CallMsg::Closed(reason.to_owned()));
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
