//! Criterion benches of duet-share's hot paths: hashing files into blocks, diffing two indexes
//! of 1,000 files, encoding a 1,000-file index for the wire, and moving a file through the
//! transfer protocol (sender and receiver cores, every message encoded and decoded, no network).

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use duet_share::sync::{
    diff, hash_blocks, index_messages, BlockHash, FileEntry, Index, VersionVector,
};
use duet_share::transfer::{
    Manifest, Message, Offer, Receiver, ReceiverConfig, ReceiverEvent, Sender, SenderEvent,
    DEFAULT_BLOCK_SIZE,
};

/// Bytes that do not repeat, so hashing cannot be helped by the content.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn hashing(c: &mut Criterion) {
    let mut group = c.benchmark_group("share/hash_blocks");
    for mib in [1usize, 16] {
        let data = noise(mib << 20);
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{mib}MiB")),
            &data,
            |b, data| b.iter(|| hash_blocks(black_box(&data[..])).expect("in memory")),
        );
    }
    group.finish();
}

/// A folder of `files` files of three blocks each, as one side knows it.
fn index(files: usize, user: &str, changed_every: usize) -> Index {
    let mut index = Index::new();
    for n in 0..files {
        let mut version = VersionVector::new();
        version.bump("alice");
        let mut seed = n as u64;
        if changed_every > 0 && n % changed_every == 0 {
            version.bump(user);
            seed += 1_000_000;
        }
        let blocks = (0..3u64)
            .map(|b| BlockHash::of(&(seed * 3 + b).to_le_bytes()))
            .collect();
        index.insert(FileEntry {
            path: format!("photos/{:03}/img_{n:05}.jpg", n / 100),
            size: 3 * 128 * 1024,
            mtime: 1_700_000_000_000_000_000 + n as i64,
            blocks,
            version,
            deleted: false,
            modified_by: user.into(),
        });
    }
    index
}

fn index_diff(c: &mut Criterion) {
    let mine = index(1000, "alice", 0);
    let theirs = index(1000, "bob", 10);
    let mut group = c.benchmark_group("share/index_1000_files");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("diff_100_changed", |b| {
        b.iter(|| diff(black_box(&mine), black_box(&theirs)))
    });
    let entries: Vec<FileEntry> = mine.iter().cloned().collect();
    group.bench_function("encode_for_the_wire", |b| {
        b.iter(|| {
            index_messages(black_box(entries.clone()))
                .iter()
                .map(|m| m.encode().len())
                .sum::<usize>()
        })
    });
    group.finish();
}

/// Moves `data` from a sender core to a receiver core, encoding and decoding every message.
fn transfer_once(data: &[u8], manifest: &Manifest) -> u64 {
    let now = Instant::now();
    let offer = Offer::new("bench.bin", manifest.file_size, manifest.sha256).expect("offer");
    let mut rx = Receiver::new(offer, ReceiverConfig::default(), None, now).expect("receiver");
    let mut tx = Sender::new(manifest.clone());
    let mut wire = Vec::with_capacity(16 * 1024);
    let mut written = 0u64;
    loop {
        let mut moved = false;
        while let Some(m) = rx.poll_transmit() {
            wire.clear();
            m.encode(&mut wire);
            tx.handle_message(now, Message::decode(&wire).expect("decode"))
                .expect("sender");
            moved = true;
        }
        while let Some(SenderEvent::ReadBlock { block, offset, len }) = tx.poll_event() {
            let (o, l) = (offset as usize, len as usize);
            tx.block_read(block, &data[o..o + l]).expect("read");
        }
        while let Some(m) = tx.poll_transmit() {
            wire.clear();
            m.encode(&mut wire);
            rx.handle_message(now, Message::decode(&wire).expect("decode"))
                .expect("receiver");
            moved = true;
        }
        while let Some(event) = rx.poll_event() {
            if let ReceiverEvent::Write { block, data, .. } = event {
                written += data.len() as u64;
                rx.block_written(block).expect("written");
            }
        }
        if !moved {
            return written;
        }
    }
}

fn transfer(c: &mut Criterion) {
    let data = noise(8 << 20);
    let manifest = Manifest::from_bytes(&data, DEFAULT_BLOCK_SIZE);
    let mut group = c.benchmark_group("share/transfer_core");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(20);
    group.bench_function("8MiB", |b| {
        b.iter(|| {
            let written = transfer_once(black_box(&data), &manifest);
            assert_eq!(written, data.len() as u64);
        })
    });
    group.finish();
}

criterion_group!(benches, hashing, index_diff, transfer);
criterion_main!(benches);
