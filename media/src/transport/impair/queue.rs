//! [`ImpairQueue`]: the impairment with the packets in it, sans-IO. Push packets as they are
//! sent, take them out when they are due.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Instant;

use super::{Fate, ImpairConfig, ImpairStats, Impairment};
use crate::error::Error;

/// A packet the queue did not take, handed back with the reason so its buffer can be reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped<T> {
    /// [`Fate::Lost`] or [`Fate::QueueFull`].
    pub fate: Fate,
    /// The packet.
    pub item: T,
}

/// Packets in flight through an [`Impairment`], each held until its delivery time.
///
/// The drain rule: after [`push`](Self::push), call [`poll_transmit`](Self::poll_transmit)
/// until it returns `None`, then sleep until [`poll_timeout`](Self::poll_timeout) (or until
/// the next push) and poll again. Packets due at the same instant come out in the order they
/// were pushed.
///
/// ```
/// use std::time::{Duration, Instant};
/// use duet_media::transport::impair::ImpairQueue;
///
/// let start = Instant::now();
/// let mut queue = ImpairQueue::new("delay=20ms".parse()?)?;
/// queue.push(start, 100, "hello").expect("a clean link loses nothing");
/// assert_eq!(queue.poll_transmit(start), None);
/// assert_eq!(queue.poll_timeout(), Some(start + Duration::from_millis(20)));
/// assert_eq!(queue.poll_transmit(start + Duration::from_millis(20)), Some("hello"));
/// # Ok::<(), duet_media::Error>(())
/// ```
#[derive(Debug)]
pub struct ImpairQueue<T> {
    link: Impairment,
    heap: BinaryHeap<Reverse<Entry<T>>>,
    next_seq: u64,
    capacity: usize,
}

impl<T: Clone> ImpairQueue<T> {
    /// The most packets a queue holds by default; beyond that a push is a queue drop.
    pub const DEFAULT_CAPACITY: usize = 4096;

    /// A queue impairing with `config`, holding at most [`Self::DEFAULT_CAPACITY`] packets.
    pub fn new(config: ImpairConfig) -> Result<Self, Error> {
        Self::with_capacity(config, Self::DEFAULT_CAPACITY)
    }

    /// A queue holding at most `capacity` packets (at least 2).
    pub fn with_capacity(config: ImpairConfig, capacity: usize) -> Result<Self, Error> {
        Ok(Self {
            link: Impairment::new(config)?,
            heap: BinaryHeap::with_capacity(capacity.clamp(2, 256)),
            next_seq: 0,
            capacity: capacity.max(2),
        })
    }

    /// Offers a packet of `len` bytes sent at `now`. Returns its fate when it will be
    /// delivered, or hands it back when it is dropped.
    pub fn push(&mut self, now: Instant, len: usize, item: T) -> Result<Fate, Dropped<T>> {
        if self.heap.len() + 2 > self.capacity {
            self.link.count_queue_drop();
            return Err(Dropped {
                fate: Fate::QueueFull,
                item,
            });
        }
        let fate = self.link.send(now, len);
        let Fate::Deliver { at, duplicate, .. } = fate else {
            return Err(Dropped { fate, item });
        };
        if let Some(again) = duplicate {
            self.insert(at, item.clone());
            self.insert(again, item);
        } else {
            self.insert(at, item);
        }
        Ok(fate)
    }

    /// The next packet due at `now`, if any. Call it until it returns `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<T> {
        if self.heap.peek()?.0.at > now {
            return None;
        }
        let Reverse(entry) = self.heap.pop()?;
        self.link.count_delivered();
        Some(entry.item)
    }

    /// When the next packet is due, or `None` when the queue is empty.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(entry)| entry.at)
    }

    /// Packets waiting for their delivery time.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when no packet is waiting.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The counters so far.
    pub fn stats(&self) -> ImpairStats {
        self.link.stats()
    }

    /// The impairment deciding the fates.
    pub fn impairment(&self) -> &Impairment {
        &self.link
    }

    fn insert(&mut self, at: Instant, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(Entry { at, seq, item }));
    }
}

/// A packet and its delivery time; ordered by time, then by push order.
#[derive(Debug)]
struct Entry<T> {
    at: Instant,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn duplicates_follow_the_original_and_capacity_bounds_the_queue() {
        let start = Instant::now();
        let mut q = ImpairQueue::with_capacity("dup=100%".parse().unwrap(), 4).unwrap();
        assert!(q.push(start, 10, 1u32).is_ok());
        assert!(q.push(start, 10, 2u32).is_ok());
        let refused = q.push(start, 10, 3u32).unwrap_err();
        assert_eq!(refused.fate, Fate::QueueFull);
        assert_eq!(refused.item, 3);
        let out: Vec<u32> = std::iter::from_fn(|| q.poll_transmit(start)).collect();
        assert_eq!(out, [1, 1, 2, 2]);
        let stats = q.stats();
        assert_eq!((stats.sent, stats.delivered), (3, 4));
        assert_eq!((stats.duplicated, stats.dropped_queue), (2, 1));
    }

    #[test]
    fn reordered_packets_are_overtaken() {
        let start = Instant::now();
        let mut q = ImpairQueue::new("reorder=10%,seed=4".parse().unwrap()).unwrap();
        let mut out = Vec::new();
        for i in 0..10_000u32 {
            let now = start + Duration::from_millis(u64::from(i));
            q.push(now, 100, i).unwrap();
            out.extend(std::iter::from_fn(|| q.poll_transmit(now)));
        }
        out.extend(std::iter::from_fn(|| {
            q.poll_transmit(start + Duration::from_secs(60))
        }));
        assert_eq!(out.len(), 10_000);
        // Each held packet arrives after the packets sent in the next 10 to 20 ms.
        let late = out.windows(2).filter(|w| w[1] < w[0]).count() as u64;
        let held = q.stats().reordered;
        assert!((900..1100).contains(&held), "held {held}");
        assert!(
            late >= held * 8 / 10 && late <= held,
            "late {late} held {held}"
        );
    }
}
