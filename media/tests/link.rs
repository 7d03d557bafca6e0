//! Two data links in one process over 127.0.0.1, their signals passed in memory: order and
//! integrity, flow control, hang-up, bad signals, and loss under the impairment layer.

use std::sync::{Arc, Weak};
use std::time::Duration;

use duet_media::call::{EndReason, Runtime, Signal};
use duet_media::link::{DataLink, LinkConfig, LinkEvent, HIGH_WATER, MAX_MESSAGE};
use duet_media::transport::{ImpairConfig, ImpairedRuntime};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::time::timeout;

/// Generous bound on anything the tests wait for.
const WAIT: Duration = Duration::from_secs(20);

/// The two sides of a connected link, and their events other than signals.
struct Pair {
    a: Arc<DataLink>,
    b: Arc<DataLink>,
    a_events: UnboundedReceiver<LinkEvent>,
    b_events: UnboundedReceiver<LinkEvent>,
}

/// Carries `from`'s signals to `to`, in order, and passes its other events on.
fn relay(
    mut events: duet_media::link::LinkEvents,
    to: Weak<DataLink>,
) -> UnboundedReceiver<LinkEvent> {
    let (tx, rx) = unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                LinkEvent::Signal(signal) => {
                    let Some(to) = to.upgrade() else { break };
                    if let Err(e) = to.handle_signal(signal).await {
                        panic!("signal refused: {e}");
                    }
                }
                other => {
                    let _ = tx.send(other);
                }
            }
        }
    });
    rx
}

fn config(runtime: Option<Arc<dyn Runtime>>) -> LinkConfig {
    LinkConfig {
        runtime,
        ..LinkConfig::default()
    }
}

/// Two links, `a` offering, both open.
async fn open_pair(runtime: Option<Arc<dyn Runtime>>) -> Pair {
    let (a, a_ev) = DataLink::new(config(runtime.clone())).await.unwrap();
    let (b, b_ev) = DataLink::new(config(runtime)).await.unwrap();
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut a_events = relay(a_ev, Arc::downgrade(&b));
    let mut b_events = relay(b_ev, Arc::downgrade(&a));
    a.start().await.unwrap();
    for events in [&mut a_events, &mut b_events] {
        let event = timeout(WAIT, events.recv()).await.unwrap();
        assert_eq!(event, Some(LinkEvent::Open));
    }
    assert!(a.is_open() && b.is_open());
    Pair {
        a,
        b,
        a_events,
        b_events,
    }
}

/// Message `i` of a run: a header (index, length, checksum) and a pattern of varied length.
fn message(i: u32, max: usize) -> Vec<u8> {
    let mut x = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let len = 12 + (next() as usize) % (max - 12 + 1);
    let body: Vec<u8> = (0..len - 12).map(|_| next() as u8).collect();
    let sum = body
        .iter()
        .fold(0u32, |s, &b| s.wrapping_mul(31).wrapping_add(u32::from(b)));
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&i.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&sum.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Sends `count` messages of [`message`] from `from` while `to` receives and checks them;
/// returns the bytes received.
async fn exchange(from: &Arc<DataLink>, to: &Arc<DataLink>, count: u32, max: usize) -> u64 {
    let sender = from.clone();
    let send = tokio::spawn(async move {
        for i in 0..count {
            sender.send(&message(i, max)).await.unwrap();
        }
    });
    let mut bytes = 0u64;
    for i in 0..count {
        let got = timeout(WAIT, to.recv()).await.unwrap().unwrap();
        let want = message(i, max);
        assert_eq!(got.len(), want.len(), "message {i}: length");
        assert!(got == want, "message {i}: contents differ");
        bytes += got.len() as u64;
    }
    send.await.unwrap();
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arrive_in_order_and_intact() {
    let pair = open_pair(None).await;
    let bytes = exchange(&pair.a, &pair.b, 2_000, MAX_MESSAGE).await;
    let sent = pair.a.stats();
    let received = pair.b.stats();
    assert_eq!(sent.messages_sent, 2_000);
    assert_eq!(received.messages_received, 2_000);
    assert_eq!(sent.bytes_sent, bytes);
    assert_eq!(received.bytes_received, bytes);
    // And the other way.
    let back = exchange(&pair.b, &pair.a, 200, 1_000).await;
    assert_eq!(pair.a.stats().bytes_received, back);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_control_bounds_the_send_buffer() {
    const TOTAL: usize = 64 << 20;
    let pair = open_pair(None).await;
    let sender = pair.a.clone();
    let send = tokio::spawn(async move {
        let chunk = vec![0x5au8; MAX_MESSAGE];
        for _ in 0..TOTAL / MAX_MESSAGE {
            sender.send(&chunk).await.unwrap();
        }
    });
    let mut received = 0usize;
    while received < TOTAL {
        let msg = timeout(WAIT, pair.b.recv()).await.unwrap().unwrap();
        assert_eq!(msg.len(), MAX_MESSAGE);
        received += msg.len();
    }
    send.await.unwrap();
    let stats = pair.a.stats();
    assert_eq!(received, TOTAL);
    assert_eq!(stats.bytes_sent, TOTAL as u64);
    assert!(
        stats.peak_buffered <= (HIGH_WATER + MAX_MESSAGE) as u64,
        "buffered {} bytes",
        stats.peak_buffered
    );
    // The sender outran the path at least once, so the bound above was exercised.
    assert!(stats.send_waits > 0, "the sender never waited");
    assert!(stats.peak_buffered > HIGH_WATER as u64 / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_stalls_the_sender_without_loss() {
    let pair = open_pair(None).await;
    let sender = pair.a.clone();
    let send = tokio::spawn(async move {
        let chunk = vec![7u8; MAX_MESSAGE];
        for _ in 0..2_000 {
            sender.send(&chunk).await.unwrap();
        }
    });
    // Nobody reads: the receive queue fills and the reader stalls...
    let deadline = tokio::time::Instant::now() + WAIT;
    while pair.b.stats().receive_stalls == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reader never stalled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...and the sender stops well short of 2,000 messages (32 MB): what is in flight is
    // bounded by the link's queue, the stack's event queue, the SCTP window and the
    // high-water mark (about 850 messages).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !send.is_finished(),
        "32 MB sent to a reader that does not read"
    );
    let in_flight = pair.a.stats().messages_sent;
    assert!(in_flight < 1_200, "{in_flight} messages sent, none read");
    for _ in 0..2_000 {
        let msg = timeout(WAIT, pair.b.recv()).await.unwrap().unwrap();
        assert_eq!(msg.len(), MAX_MESSAGE);
    }
    timeout(WAIT, send).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_up_ends_the_other_side_with_the_remote_reason() {
    let mut pair = open_pair(None).await;
    pair.a.send(b"last words").await.unwrap();
    assert_eq!(
        timeout(WAIT, pair.b.recv()).await.unwrap().as_deref(),
        Some(&b"last words"[..])
    );
    pair.a.hang_up("transfer done");
    let reason = EndReason::RemoteHungUp("transfer done".into());
    assert_eq!(
        timeout(WAIT, pair.b_events.recv()).await.unwrap(),
        Some(LinkEvent::Ended(reason.clone()))
    );
    assert_eq!(pair.b.end_reason(), Some(reason));
    assert_eq!(
        timeout(WAIT, pair.a_events.recv()).await.unwrap(),
        Some(LinkEvent::Ended(EndReason::HungUp("transfer done".into())))
    );
    assert!(!pair.a.is_open() && !pair.b.is_open());
    // Nothing more arrives, and sending fails.
    assert_eq!(timeout(WAIT, pair.b.recv()).await.unwrap(), None);
    assert!(pair.b.send(b"x").await.is_err());
    assert!(pair.a.send(b"x").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signals_and_messages_are_errors() {
    let (a, _a_events) = DataLink::new(LinkConfig::default()).await.unwrap();
    let garbage = Signal::Offer {
        sdp: "this is not SDP".into(),
    };
    let err = a.handle_signal(garbage).await.unwrap_err().to_string();
    assert!(err.contains("offer"), "{err}");
    let err = a
        .handle_signal(Signal::Answer { sdp: "v=0".into() })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no offer"), "{err}");
    a.start().await.unwrap();
    assert!(a.start().await.is_err(), "a second start");
    let err = a
        .handle_signal(Signal::Answer {
            sdp: "v=0\r\nnonsense".into(),
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("answer"), "{err}");
    // An early candidate is held, not refused, even when it is nonsense.
    let early = Signal::Candidate {
        candidate: "candidate:garbage".into(),
        sdp_mid: None,
        sdp_mline_index: None,
    };
    a.handle_signal(early).await.unwrap();

    // Once open, a candidate that cannot be parsed is an error and the link goes on.
    let pair = open_pair(None).await;
    let bad = Signal::Candidate {
        candidate: "candidate:not a candidate".into(),
        sdp_mid: Some("0".into()),
        sdp_mline_index: Some(0),
    };
    assert!(pair.b.handle_signal(bad).await.is_err());
    let err = pair.a.send(&vec![0u8; MAX_MESSAGE + 1]).await.unwrap_err();
    assert!(err.to_string().contains("16384"), "{err}");
    pair.a.send(b"still fine").await.unwrap();
    assert_eq!(
        timeout(WAIT, pair.b.recv()).await.unwrap().as_deref(),
        Some(&b"still fine"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_gives_up_when_nobody_answers() {
    let config = LinkConfig {
        connect_timeout: Duration::from_millis(300),
        ..LinkConfig::default()
    };
    let (a, mut events) = DataLink::new(config).await.unwrap();
    a.start().await.unwrap();
    let ended = loop {
        match timeout(WAIT, events.recv()).await.unwrap() {
            Some(LinkEvent::Signal(_)) => continue,
            other => break other,
        }
    };
    assert_eq!(
        ended,
        Some(LinkEvent::Ended(EndReason::ConnectTimeout(
            Duration::from_millis(300)
        )))
    );
    assert!(a.send(b"x").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_arrives_in_order_through_two_percent_loss() {
    let config: ImpairConfig = "loss=2%,seed=1".parse().unwrap();
    let impaired = ImpairedRuntime::new(config).unwrap().disarmed();
    let counters = impaired.counters();
    let runtime: Arc<dyn Runtime> = Arc::new(impaired.clone());
    let pair = open_pair(Some(runtime)).await;
    impaired.arm();
    let before = counters.snapshot().dropped_loss;
    exchange(&pair.a, &pair.b, 1_000, 4_000).await;
    exchange(&pair.b, &pair.a, 200, 4_000).await;
    let lost = counters.snapshot().dropped_loss - before;
    assert!(lost > 0, "nothing was lost, so nothing was retransmitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_link_hangs_up() {
    let Pair {
        a, b, mut b_events, ..
    } = open_pair(None).await;
    drop(a);
    assert_eq!(
        timeout(WAIT, b_events.recv()).await.unwrap(),
        Some(LinkEvent::Ended(EndReason::RemoteHungUp(
            "link dropped".into()
        )))
    );
    assert_eq!(timeout(WAIT, b.recv()).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offer_comes_first_and_nothing_follows_the_end() {
    let (a, mut a_events) = DataLink::new(LinkConfig::default()).await.unwrap();
    let (b, _b_events) = DataLink::new(LinkConfig::default()).await.unwrap();
    a.start().await.unwrap();
    // Both sides offering is refused, not half-applied.
    b.start().await.unwrap();
    let first = timeout(WAIT, a_events.recv()).await.unwrap().unwrap();
    let LinkEvent::Signal(offer @ Signal::Offer { .. }) = first else {
        panic!("the first event is {first:?}, not the offer");
    };
    let err = b.handle_signal(offer).await.unwrap_err().to_string();
    assert!(err.contains("this side made the offer"), "{err}");

    // Hanging up while candidates are still being gathered: the end is the last signal.
    a.hang_up("bye");
    let mut after = Vec::new();
    while let Ok(Some(event)) = timeout(Duration::from_millis(500), a_events.recv()).await {
        after.push(event);
    }
    let end = after
        .iter()
        .position(|e| matches!(e, LinkEvent::Signal(Signal::End { .. })))
        .unwrap_or_else(|| panic!("no end signal in {after:?}"));
    assert!(
        after[end + 1..]
            .iter()
            .all(|e| !matches!(e, LinkEvent::Signal(_))),
        "a signal followed the end: {after:?}"
    );
    assert!(
        after[end + 1..]
            .iter()
            .any(|e| matches!(e, LinkEvent::Ended(EndReason::HungUp(_)))),
        "the end event follows the end signal: {after:?}"
    );
}
