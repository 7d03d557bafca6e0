//! Seeded random histories: both sides add, change, delete and rename files, online and
//! offline, over a link that corrupts blocks and loses requests; after reconnecting they must
//! be equal, and nothing written while apart is lost.

mod sync_common;

use std::collections::BTreeSet;

use duet_share::sync::BlockHash;
use sync_common::{bytes, mem_pair, t, MemDisk, Pair, Side};

const NAMES: [&str; 6] = ["a.txt", "b.txt", "d/c.txt", "d/e/f.txt", "g.bin", "h"];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One random change on `side`; returns the content written, if any.
fn random_op(side: &mut Side<MemDisk>, rng: &mut Rng, clock: &mut i64) -> Option<Vec<u8>> {
    *clock += 1;
    let name = NAMES[rng.below(NAMES.len())].to_string();
    let existing: Vec<String> = side.disk.files.keys().cloned().collect();
    match rng.below(4) {
        0 | 1 => {
            let len = [0, 10, 5_000, 200_000, 300_000][rng.below(5)];
            let mut data = bytes(rng.next(), len);
            // Sometimes a small edit of an existing file, so blocks are shared.
            if let Some((old, _)) = side.disk.files.get(&name).filter(|_| rng.below(2) == 0) {
                data = old.clone();
                data.push(rng.next() as u8);
            }
            // A conflict copy is never written to by the test.
            if name.contains("sync-conflict") {
                return None;
            }
            let old = side.disk.files.insert(name, (data.clone(), t(*clock)));
            // Writing the same bytes again is no change.
            old.is_none_or(|(o, _)| o != data).then_some(data)
        }
        2 => {
            if !existing.is_empty() {
                let victim = &existing[rng.below(existing.len())];
                side.disk.files.remove(victim);
            }
            None
        }
        _ => {
            if !existing.is_empty() && !side.disk.files.contains_key(&name) {
                let from = &existing[rng.below(existing.len())];
                if let Some(file) = side.disk.files.remove(from) {
                    side.disk.files.insert(name, file);
                }
            }
            None
        }
    }
}

/// A short description of a folder: path, size, first bytes, hash. Modification times may
/// differ where both sides made the same content independently.
fn summary(side: &Side<MemDisk>) -> Vec<(String, usize, Vec<u8>, BlockHash)> {
    side.disk
        .files
        .iter()
        .map(|(p, (d, _))| {
            let head = d.iter().take(4).copied().collect();
            (p.clone(), d.len(), head, BlockHash::of(d))
        })
        .collect()
}

fn assert_equal(pair: &Pair<MemDisk>, seed: u64) {
    assert_eq!(
        summary(&pair.a),
        summary(&pair.b),
        "seed {seed}\nalice: {:?}\nbob: {:?}",
        pair.a.events,
        pair.b.events
    );
    assert!(pair.a.disk.temps.is_empty() && pair.b.disk.temps.is_empty());
    let (a, b) = (pair.a.engine.index(), pair.b.engine.index());
    for e in a.live().chain(b.live()) {
        let (x, y) = (a.get(&e.path), b.get(&e.path));
        assert_eq!(
            x.map(|x| &x.version),
            y.map(|y| &y.version),
            "seed {seed}: {}",
            e.path
        );
    }
}

fn contents(side: &Side<MemDisk>) -> BTreeSet<Vec<u8>> {
    side.disk.files.values().map(|(d, _)| d.clone()).collect()
}

#[test]
fn random_histories_converge_without_loss() {
    let (mut bad_blocks, mut conflicts) = (0, 0);
    for seed in 1..=60u64 {
        let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
        let mut pair = mem_pair();
        let mut clock = 0i64;
        for _round in 0..4 {
            // Some blocks arrive corrupt and some requests are lost.
            pair.corrupt_data = rng.below(3) as u32;
            pair.drop_requests = rng.below(3) as u32;
            // Online: changes on both sides, sometimes crossing in flight.
            for _ in 0..rng.below(6) {
                let now = pair.now;
                if rng.below(2) == 0 {
                    random_op(&mut pair.a, &mut rng, &mut clock);
                    pair.a.rescan(now);
                } else {
                    random_op(&mut pair.b, &mut rng, &mut clock);
                    pair.b.rescan(now);
                }
                if rng.below(3) > 0 {
                    pair.settle();
                }
            }
            pair.settle();
            assert_equal(&pair, seed);

            // Offline: changes on both sides, sometimes cutting a transfer short.
            if rng.below(2) == 0 {
                let now = pair.now;
                random_op(&mut pair.a, &mut rng, &mut clock);
                pair.a.rescan(now);
                for _ in 0..rng.below(4) {
                    pair.step();
                }
            }
            pair.disconnect();
            let mut base = contents(&pair.a);
            base.extend(contents(&pair.b));
            let mut written = Vec::new();
            for _ in 0..rng.below(8) {
                let now = pair.now;
                let side = if rng.below(2) == 0 {
                    &mut pair.a
                } else {
                    &mut pair.b
                };
                written.extend(random_op(side, &mut rng, &mut clock));
                if rng.below(2) == 0 {
                    side.rescan(now);
                }
            }
            let now = pair.now;
            pair.a.rescan(now);
            pair.b.rescan(now);
            // What each side holds now that it wrote while apart must survive the merge.
            let before = (summary(&pair.a), summary(&pair.b));
            conflicts += pair
                .a
                .events
                .iter()
                .filter(|e| e.starts_with("conflict"))
                .count();
            pair.a.events.clear();
            pair.b.events.clear();
            let mut survivors: BTreeSet<Vec<u8>> = contents(&pair.a);
            survivors.extend(contents(&pair.b));
            survivors.retain(|c| written.contains(c) && !base.contains(c));
            pair.connect();
            pair.settle();
            assert_equal(&pair, seed);
            let after = contents(&pair.a);
            for c in &survivors {
                assert!(
                    after.contains(c),
                    "seed {seed}: a version written offline was lost: {:?}\nbefore {before:?}\nafter {:?}\nalice: {:?}\nbob: {:?}",
                    (c.len(), BlockHash::of(c)),
                    summary(&pair.a),
                    pair.a.events,
                    pair.b.events
                );
            }
        }
        bad_blocks += pair.a.engine.stats().bad_blocks + pair.b.engine.stats().bad_blocks;
    }
    // The histories did exercise corrupt blocks and conflicts.
    assert!(bad_blocks >= 100, "{bad_blocks} bad blocks");
    assert!(conflicts >= 20, "{conflicts} conflicts");
}
