//! The transfer core, sender against receiver in memory: simulated time, an ordered pipe with
//! latency, and seeded loss or corruption of data chunks. Every message crosses the pipe
//! encoded and decoded.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use duet_share::transfer::{
    Hash256, Manifest, Message, Offer, Receiver, ReceiverConfig, ReceiverEvent, ResumeState,
    Sender, SenderEvent, DEFAULT_BLOCK_SIZE, MAX_BLOCKS,
};
use duet_share::Error;

/// Seeded pseudo-random bytes (xorshift64*).
fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What a chunk suffers on its way: `(block, offset, times this block was sent) -> corrupt?`.
type Corrupt = Box<dyn FnMut(u32, u32, u32) -> bool>;

/// An ordered one-way-latency pipe in both directions, with seeded loss of data chunks.
struct Net {
    latency: Duration,
    drop_rate: f64,
    corrupt: Corrupt,
    rng: u64,
    to_rx: VecDeque<(Instant, Vec<u8>)>,
    to_tx: VecDeque<(Instant, Vec<u8>)>,
    /// How many times each block's first chunk was sent.
    sends: HashMap<u32, u32>,
}

impl Net {
    fn new(seed: u64) -> Self {
        Net {
            latency: Duration::from_millis(20),
            drop_rate: 0.0,
            corrupt: Box::new(|_, _, _| false),
            rng: seed | 1,
            to_rx: VecDeque::new(),
            to_tx: VecDeque::new(),
            sends: HashMap::new(),
        }
    }

    fn chance(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    fn send_to_rx(&mut self, now: Instant, m: Message) {
        let mut bytes = m.to_bytes();
        assert!(bytes.len() <= 16 * 1024);
        if let Message::Data { block, offset, .. } = m {
            if offset == 0 {
                *self.sends.entry(block).or_insert(0) += 1;
            }
            let nth = self.sends.get(&block).copied().unwrap_or(0);
            if self.drop_rate > 0.0 && self.chance() < self.drop_rate {
                return;
            }
            if (self.corrupt)(block, offset, nth) {
                bytes[9] ^= 0x5a;
            }
        }
        self.to_rx.push_back((now + self.latency, bytes));
    }

    fn next_delivery(&self) -> Option<Instant> {
        let a = self.to_rx.front().map(|m| m.0);
        let b = self.to_tx.front().map(|m| m.0);
        a.into_iter().chain(b).min()
    }
}

#[derive(Default, Debug)]
struct Report {
    complete: bool,
    rx_failed: Option<String>,
    tx_done: bool,
    tx_cancelled: Option<String>,
    writes: u64,
    peak_buffered: u64,
}

/// Runs both sides until nothing more happens, or until `cut_after` blocks were written.
fn drive(
    rx: &mut Receiver,
    tx: &mut Sender,
    data: &[u8],
    out: &mut [u8],
    net: &mut Net,
    now: &mut Instant,
    cut_after: Option<u64>,
) -> Report {
    let mut r = Report::default();
    for _ in 0..10_000_000 {
        let mut busy = false;
        loop {
            let mut moved = false;
            while let Some(ev) = tx.poll_event() {
                moved = true;
                match ev {
                    SenderEvent::ReadBlock { block, offset, len } => {
                        let bytes = &data[offset as usize..][..len as usize];
                        tx.block_read(block, bytes).unwrap();
                    }
                    SenderEvent::Done => r.tx_done = true,
                    SenderEvent::Cancelled { reason } => r.tx_cancelled = Some(reason),
                    SenderEvent::Failed(e) => panic!("sender failed: {e}"),
                }
            }
            while let Some(m) = tx.poll_transmit() {
                moved = true;
                net.send_to_rx(*now, m);
            }
            if !moved {
                break;
            }
            busy = true;
        }
        while let Some(m) = rx.poll_transmit() {
            busy = true;
            net.to_tx.push_back((*now + net.latency, m.to_bytes()));
        }
        while net.to_tx.front().is_some_and(|m| m.0 <= *now) {
            busy = true;
            let (_, bytes) = net.to_tx.pop_front().unwrap();
            tx.handle_message(*now, Message::decode(&bytes).unwrap())
                .unwrap();
        }
        while net.to_rx.front().is_some_and(|m| m.0 <= *now) {
            busy = true;
            let (_, bytes) = net.to_rx.pop_front().unwrap();
            rx.handle_message(*now, Message::decode(&bytes).unwrap())
                .unwrap();
        }
        r.peak_buffered = r.peak_buffered.max(rx.buffered_bytes());
        while let Some(ev) = rx.poll_event() {
            busy = true;
            match ev {
                ReceiverEvent::Write {
                    block,
                    offset,
                    data: bytes,
                } => {
                    out[offset as usize..][..bytes.len()].copy_from_slice(&bytes);
                    rx.block_written(block).unwrap();
                    r.writes += 1;
                    if cut_after == Some(r.writes) {
                        return r;
                    }
                }
                ReceiverEvent::Complete => {
                    r.complete = true;
                    rx.finish();
                }
                ReceiverEvent::Failed(e) => r.rx_failed = Some(e.to_string()),
                ReceiverEvent::Cancelled { reason } => panic!("sender cancelled: {reason}"),
            }
        }
        if busy {
            continue;
        }
        let next = [net.next_delivery(), rx.poll_timeout(), tx.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else {
            return r;
        };
        *now = next.max(*now);
        rx.handle_timeout(*now);
        tx.handle_timeout(*now);
    }
    panic!("the transfer did not settle");
}

struct Case {
    data: Vec<u8>,
    manifest: Manifest,
    offer: Offer,
}

fn case(len: usize, block_size: u32, seed: u64) -> Case {
    let data = random_bytes(len, seed);
    let manifest = Manifest::from_bytes(&data, block_size);
    let offer = Offer::new("file.bin", manifest.file_size, manifest.sha256).unwrap();
    Case {
        data,
        manifest,
        offer,
    }
}

fn transfer(c: &Case, net: &mut Net, config: ReceiverConfig) -> (Report, Vec<u8>, Receiver) {
    let mut now = Instant::now();
    let mut rx = Receiver::new(c.offer.clone(), config, None, now).unwrap();
    let mut tx = Sender::new(c.manifest.clone());
    let mut out = vec![0u8; c.data.len()];
    let report = drive(&mut rx, &mut tx, &c.data, &mut out, net, &mut now, None);
    (report, out, rx)
}

#[test]
fn fifty_megabytes_arrive_identical_within_the_window() {
    let c = case(50_000_003, DEFAULT_BLOCK_SIZE, 1);
    let mut net = Net::new(7);
    let config = ReceiverConfig::default();
    let window = config.window_bytes;
    let (report, out, rx) = transfer(&c, &mut net, config);
    assert!(report.complete && report.tx_done, "{report:?}");
    assert!(out == c.data);
    assert_eq!(Hash256::of(&out), c.offer.sha256);
    let blocks = c.manifest.block_hashes.len();
    assert_eq!(blocks, 382);
    assert_eq!(report.writes, blocks as u64);
    // Every block sent exactly once on a clean pipe.
    assert_eq!(net.sends.len(), blocks);
    assert!(net.sends.values().all(|&n| n == 1));
    // Memory stayed within the window, and the window was used.
    assert!(
        report.peak_buffered <= window,
        "peak {}",
        report.peak_buffered
    );
    assert_eq!(rx.stats().peak_buffered, report.peak_buffered);
    assert!(
        report.peak_buffered >= window / 2,
        "peak {}",
        report.peak_buffered
    );
    assert_eq!(rx.buffered_bytes(), 0);
    assert_eq!(rx.stats().hash_failures, 0);
    assert_eq!(rx.stats().rerequests, 0);
}

#[test]
fn a_corrupted_block_is_detected_and_fetched_again() {
    let c = case(3_000_000, DEFAULT_BLOCK_SIZE, 2);
    let mut net = Net::new(3);
    // The second chunk of block 5 is damaged the first time it is sent.
    net.corrupt = Box::new(|block, offset, nth| block == 5 && offset > 0 && nth == 1);
    let (report, out, rx) = transfer(&c, &mut net, ReceiverConfig::default());
    assert!(report.complete, "{report:?}");
    assert!(out == c.data);
    assert_eq!(rx.stats().hash_failures, 1);
    assert_eq!(net.sends[&5], 2);
    assert_eq!(
        net.sends.values().sum::<u32>() as usize,
        c.manifest.block_hashes.len() + 1
    );
}

#[test]
fn a_block_that_keeps_failing_fails_the_transfer_with_a_reason() {
    let c = case(1_000_000, DEFAULT_BLOCK_SIZE, 4);
    let mut net = Net::new(5);
    net.corrupt = Box::new(|block, _, _| block == 3);
    let (report, _, rx) = transfer(&c, &mut net, ReceiverConfig::default());
    assert!(!report.complete);
    let err = report.rx_failed.expect("the receiver fails");
    assert!(
        err.contains("block 3 failed its SHA-256 check 3 times"),
        "{err}"
    );
    assert_eq!(report.tx_cancelled.as_deref(), Some(err.as_str()));
    assert_eq!(rx.stats().hash_failures, 3);
    assert_eq!(net.sends[&3], 3);
}

#[test]
fn random_corruption_and_loss_still_deliver_the_file() {
    let c = case(8_000_000, DEFAULT_BLOCK_SIZE, 6);
    let mut net = Net::new(11);
    net.drop_rate = 0.01;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    net.corrupt = Box::new(move |_, _, _| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng.is_multiple_of(100)
    });
    let config = ReceiverConfig {
        max_block_failures: 10,
        ..ReceiverConfig::default()
    };
    let (report, out, rx) = transfer(&c, &mut net, config);
    assert!(report.complete && report.tx_done, "{report:?}");
    assert!(out == c.data);
    let s = rx.stats();
    assert!(s.hash_failures > 0 && s.rerequests > 0, "{s:?}");
    assert!(report.peak_buffered <= ReceiverConfig::default().window_bytes);
}

#[test]
fn a_cut_transfer_resumes_without_resending_verified_blocks() {
    let c = case(6_000_000, DEFAULT_BLOCK_SIZE, 8);
    let blocks = c.manifest.block_hashes.len() as u32;
    let mut now = Instant::now();
    let mut out = vec![0u8; c.data.len()];

    // First run: cut after 20 blocks were written; everything in flight is lost.
    let mut net = Net::new(9);
    let mut rx = Receiver::new(c.offer.clone(), ReceiverConfig::default(), None, now).unwrap();
    let mut tx = Sender::new(c.manifest.clone());
    let first = drive(
        &mut rx,
        &mut tx,
        &c.data,
        &mut out,
        &mut net,
        &mut now,
        Some(20),
    );
    assert!(!first.complete);
    let saved = serde_json::to_string(&rx.resume_state().unwrap()).unwrap();
    drop((rx, tx, net));

    let state: ResumeState = serde_json::from_str(&saved).unwrap();
    assert_eq!(state.verified_blocks(), 20);
    let verified: Vec<u32> = state.verified.iter().flat_map(|&(a, b)| a..b).collect();

    // Second run: both sides rebuilt; the receiver starts from the saved state.
    now += Duration::from_secs(30);
    let mut net = Net::new(10);
    let mut rx =
        Receiver::new(c.offer.clone(), ReceiverConfig::default(), Some(state), now).unwrap();
    let mut tx = Sender::new(c.manifest.clone());
    let second = drive(
        &mut rx, &mut tx, &c.data, &mut out, &mut net, &mut now, None,
    );
    assert!(second.complete && second.tx_done, "{second:?}");
    assert!(out == c.data);
    for b in &verified {
        assert!(
            !net.sends.contains_key(b),
            "verified block {b} was sent again"
        );
    }
    assert_eq!(net.sends.len() as u32, blocks - 20);
    assert_eq!(tx.blocks_served(), u64::from(blocks) - 20);
    assert_eq!(second.writes, u64::from(blocks) - 20);
    assert_eq!(rx.stats().blocks_resumed, 20);
    assert_eq!(rx.stats().blocks_verified, u64::from(blocks));
}

#[test]
fn a_resume_state_for_another_manifest_starts_over() {
    let c = case(1_000_000, DEFAULT_BLOCK_SIZE, 12);
    let other = case(1_000_000, 64 * 1024, 12);
    let state = ResumeState {
        sha256: c.offer.sha256,
        manifest_id: other.manifest.id(),
        block_count: 8,
        verified: vec![(0, 4)],
    };
    let mut now = Instant::now();
    let mut rx =
        Receiver::new(c.offer.clone(), ReceiverConfig::default(), Some(state), now).unwrap();
    let mut tx = Sender::new(c.manifest.clone());
    let mut out = vec![0u8; c.data.len()];
    let mut net = Net::new(1);
    let r = drive(
        &mut rx, &mut tx, &c.data, &mut out, &mut net, &mut now, None,
    );
    assert!(r.complete);
    assert!(out == c.data);
    assert_eq!(net.sends.len(), c.manifest.block_hashes.len());
    assert_eq!(
        rx.stats().blocks_resumed,
        0,
        "a state for another manifest resumed nothing"
    );
}

#[test]
fn a_manifest_that_disagrees_with_the_offer_is_refused() {
    let c = case(500_000, DEFAULT_BLOCK_SIZE, 13);
    let other = case(500_000, DEFAULT_BLOCK_SIZE, 14);
    let mut now = Instant::now();
    let mut rx = Receiver::new(c.offer.clone(), ReceiverConfig::default(), None, now).unwrap();
    // The sender serves a different file of the same size.
    let mut tx = Sender::new(other.manifest.clone());
    let mut out = vec![0u8; c.data.len()];
    let mut net = Net::new(2);
    let r = drive(
        &mut rx,
        &mut tx,
        &other.data,
        &mut out,
        &mut net,
        &mut now,
        None,
    );
    assert!(!r.complete);
    assert_eq!(r.writes, 0);
    assert!(net.sends.is_empty());
    let err = r.rx_failed.unwrap();
    assert!(err.contains("disagrees with the offer"), "{err}");
    assert!(r.tx_cancelled.unwrap().contains("disagrees with the offer"));
}

#[test]
fn an_offer_over_the_size_limit_is_refused() {
    let offer = Offer::new("big.iso", 5 << 30, Default::default()).unwrap();
    let config = ReceiverConfig {
        max_size: 1 << 30,
        ..ReceiverConfig::default()
    };
    match Receiver::new(offer, config, None, Instant::now()) {
        Err(Error::TooLarge { size, limit }) => assert_eq!((size, limit), (5 << 30, 1 << 30)),
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn a_manifest_in_several_parts_and_small_blocks() {
    // 4 KiB blocks: 733 block hashes, more than one manifest message holds.
    let c = case(3_000_000, 4096, 15);
    let mut net = Net::new(4);
    let (report, out, _) = transfer(&c, &mut net, ReceiverConfig::default());
    assert!(report.complete, "{report:?}");
    assert!(out == c.data);
    assert_eq!(report.writes, 733);
}

#[test]
fn an_empty_file_completes() {
    let c = case(0, DEFAULT_BLOCK_SIZE, 16);
    let mut net = Net::new(4);
    let (report, out, rx) = transfer(&c, &mut net, ReceiverConfig::default());
    assert!(report.complete && report.tx_done && rx.is_complete());
    assert!(out.is_empty());
}

#[test]
fn unanswered_requests_are_sent_again_then_the_transfer_gives_up() {
    let c = case(1_000_000, DEFAULT_BLOCK_SIZE, 17);
    let config = ReceiverConfig::default();
    let start = Instant::now();
    let mut rx = Receiver::new(c.offer.clone(), config.clone(), None, start).unwrap();
    let mut tx = Sender::new(c.manifest.clone());
    // The manifest arrives; then the sender goes silent.
    tx.handle_message(start, rx.poll_transmit().unwrap())
        .unwrap();
    while let Some(m) = tx.poll_transmit() {
        rx.handle_message(start, m).unwrap();
    }
    let first: Vec<Message> = std::iter::from_fn(|| rx.poll_transmit()).collect();
    assert_eq!(first.len(), 8, "a 4 MiB window holds the file's 8 blocks");
    assert_eq!(rx.poll_timeout(), Some(start + config.request_timeout));
    rx.handle_timeout(start + config.request_timeout);
    let again: Vec<Message> = std::iter::from_fn(|| rx.poll_transmit()).collect();
    assert_eq!(again, first);
    assert_eq!(rx.stats().rerequests, 8);
    let mut t = start + config.request_timeout;
    while let Some(next) = rx.poll_timeout() {
        t = next;
        rx.handle_timeout(t);
    }
    assert_eq!(t, start + config.idle_timeout);
    match rx.poll_event() {
        Some(ReceiverEvent::Failed(e)) => {
            assert!(e.to_string().contains("no message from the sender"))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        std::iter::from_fn(|| rx.poll_transmit()).last(),
        Some(Message::Cancel { .. })
    ));
}

#[test]
fn misuse_and_misplaced_messages_are_errors_not_panics() {
    let c = case(300_000, DEFAULT_BLOCK_SIZE, 18);
    let now = Instant::now();
    let mut rx = Receiver::new(c.offer.clone(), ReceiverConfig::default(), None, now).unwrap();
    let mut tx = Sender::new(c.manifest.clone());
    assert!(rx.block_written(0).is_err());
    assert!(rx
        .handle_message(now, Message::Request { block: 0 })
        .is_err());
    assert!(tx.block_read(0, &c.data[..10]).is_err());
    assert!(tx
        .handle_message(now, Message::Request { block: 99 })
        .is_err());
    assert!(tx
        .handle_message(
            now,
            Message::Data {
                block: 0,
                offset: 0,
                bytes: vec![1]
            }
        )
        .is_err());
    // A chunk that runs past its block is dropped.
    tx.handle_message(now, rx.poll_transmit().unwrap()).unwrap();
    while let Some(m) = tx.poll_transmit() {
        rx.handle_message(now, m).unwrap();
    }
    let past_end = Message::Data {
        block: 2,
        offset: 40_000,
        bytes: vec![0; 10_000],
    };
    assert!(matches!(
        rx.handle_message(now, past_end),
        Err(Error::Protocol(_))
    ));
}

#[test]
fn a_manifest_with_too_many_blocks_is_refused_before_allocating() {
    let size = 8u64 << 30;
    let offer = Offer::new("huge.img", size, Hash256([1; 32])).unwrap();
    let now = Instant::now();
    let mut rx = Receiver::new(offer, ReceiverConfig::default(), None, now).unwrap();
    let part = Message::Manifest {
        file_size: size,
        block_size: 4096,
        sha256: Hash256([1; 32]),
        first: 0,
        hashes: vec![],
    };
    rx.handle_message(now, part).unwrap();
    match rx.poll_event() {
        Some(ReceiverEvent::Failed(Error::Protocol(msg))) => {
            assert!(msg.contains("unusable block size 4096"), "{msg}")
        }
        other => panic!("{other:?}"),
    }
    // The block size a sender picks stays within the limit, growing past 128 GiB.
    assert_eq!(Manifest::block_size_for(size), DEFAULT_BLOCK_SIZE);
    let tib = 1u64 << 40;
    assert_eq!(Manifest::block_size_for(tib), 1 << 20);
    assert_eq!(Manifest::blocks_for(tib, 1 << 20), Some(MAX_BLOCKS));
    assert_eq!(Manifest::block_size_for(50_000_000), DEFAULT_BLOCK_SIZE);
}

#[test]
fn a_file_changed_since_the_offer_fails_the_sender() {
    let c = case(400_000, DEFAULT_BLOCK_SIZE, 19);
    let now = Instant::now();
    let mut rx = Receiver::new(c.offer.clone(), ReceiverConfig::default(), None, now).unwrap();
    let mut tx = Sender::new(c.manifest.clone());
    tx.handle_message(now, Message::Begin { version: 9 })
        .unwrap();
    match tx.poll_event() {
        Some(SenderEvent::Failed(Error::Protocol(msg))) => assert!(msg.contains("version 9")),
        other => panic!("{other:?}"),
    }
    let mut tx = Sender::new(c.manifest.clone());
    while let Some(m) = rx.poll_transmit() {
        tx.handle_message(now, m).unwrap();
    }
    while let Some(m) = tx.poll_transmit() {
        rx.handle_message(now, m).unwrap();
    }
    while let Some(m) = rx.poll_transmit() {
        tx.handle_message(now, m).unwrap();
    }
    let Some(SenderEvent::ReadBlock { block, offset, len }) = tx.poll_event() else {
        panic!("no read asked for");
    };
    assert_eq!((block, offset, len), (0, 0, DEFAULT_BLOCK_SIZE));
    let mut changed = c.data[..len as usize].to_vec();
    changed[77] ^= 1;
    tx.block_read(block, &changed).unwrap();
    match tx.poll_event() {
        Some(SenderEvent::Failed(Error::Integrity(msg))) => {
            assert!(
                msg.contains("block 0 changed since the file was offered"),
                "{msg}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(tx.is_closed());
    let Some(Message::Cancel { reason }) = tx.poll_transmit() else {
        panic!("the receiver is not told");
    };
    rx.handle_message(now, Message::Cancel { reason }).unwrap();
    assert!(matches!(
        rx.poll_event(),
        Some(ReceiverEvent::Cancelled { reason }) if reason.contains("changed since")
    ));
}
