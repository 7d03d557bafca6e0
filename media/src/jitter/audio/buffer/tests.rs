//! Unit tests of the audio jitter buffer's decisions, on hand-made packets.

use super::*;
use crate::frame::{AudioFormat, Channels, FrameDuration};

const MONO20: AudioFormat = AudioFormat {
    channels: Channels::Mono,
    frame: FrameDuration::Ms20,
};
/// A SILK packet whose header says it carries FEC, and one that says it does not.
const WITH_FEC: [u8; 2] = [1 << 3, 0b0100_0000];
const NO_FEC: [u8; 2] = [1 << 3, 0b1000_0000];

fn packet(seq: u16, ts: u32, payload: &[u8]) -> RtpPacket {
    RtpPacket {
        seq,
        timestamp: ts,
        ssrc: 1,
        marker: false,
        payload_type: 111,
        payload: payload.to_vec().into(),
    }
}

fn ms(start: Instant, ms: u64) -> Instant {
    start + Duration::from_millis(ms)
}

/// What a pop returned, in short: Some(seq) for a decode, None for concealment or silence.
fn seq_of(p: &Playout) -> Option<u16> {
    match p {
        Playout::Decode { packet, .. } => Some(packet.seq),
        Playout::Recover { next } => Some(next.seq),
        _ => None,
    }
}

#[test]
fn a_steady_stream_starts_after_the_target_and_plays_every_packet() {
    let start = Instant::now();
    let mut b = AudioJitterBuffer::new(AudioJitterConfig::new(MONO20), start).unwrap();
    assert_eq!(b.pop(start), Playout::Silence { samples: 960 });
    assert_eq!(b.poll_timeout(), None);
    b.insert(start, packet(100, 5000, &NO_FEC));
    // Target: the first 2 ms bucket plus a frame; the first packet waits 2 ms.
    assert_eq!(b.target_delay(), Duration::from_millis(22));
    assert_eq!(b.poll_timeout(), Some(ms(start, 2)));
    assert!(matches!(b.pop(ms(start, 1)), Playout::Silence { .. }));
    let mut played = Vec::new();
    for k in 0..50u64 {
        let at = ms(start, 2 + 20 * k);
        if k > 0 {
            b.insert(
                ms(start, 20 * k),
                packet(100 + k as u16, 5000 + 960 * k as u32, &NO_FEC),
            );
        }
        let p = b.pop(at);
        assert!(
            matches!(
                p,
                Playout::Decode {
                    stretch: Stretch::Normal,
                    ..
                }
            ),
            "{p:?}"
        );
        played.push(seq_of(&p).unwrap());
        assert_eq!(b.current_delay(), Duration::from_millis(22));
        assert_eq!(b.poll_timeout(), Some(ms(start, 22 + 20 * k)));
    }
    assert_eq!(played, (100..150).collect::<Vec<u16>>());
    let s = b.stats();
    assert_eq!(
        (s.packets_received, s.packets_lost, s.concealed_samples),
        (50, 0, 0)
    );
    assert_eq!(s.jitter_buffer_emitted_count, 50 * 960);
    // Every packet waited 2 ms.
    let mean = s.jitter_buffer_delay / s.jitter_buffer_emitted_count as f64;
    assert!((mean - 0.002).abs() < 1e-6, "{mean}");
    assert_eq!(s.jitter, 0.0);
}

/// A buffer that has played packets 0..4 (20 ms apart, each 2 ms before it is due).
fn playing(payload: &[u8]) -> (AudioJitterBuffer, Instant) {
    let start = Instant::now();
    let mut b = AudioJitterBuffer::new(AudioJitterConfig::new(MONO20), start).unwrap();
    for k in 0..4u64 {
        b.insert(ms(start, 20 * k), packet(k as u16, 960 * k as u32, payload));
        assert_eq!(seq_of(&b.pop(ms(start, 2 + 20 * k))), Some(k as u16));
    }
    (b, start)
}

#[test]
fn a_lost_packet_is_rebuilt_from_the_fec_of_the_next() {
    let start = Instant::now();
    let config = AudioJitterConfig {
        min_delay: Duration::from_millis(41),
        ..AudioJitterConfig::new(MONO20)
    };
    let mut b = AudioJitterBuffer::new(config, start).unwrap();
    // Packet k arrives at 20k ms and plays at 21 + 20k ms; 4, 7 and 8 never come. The
    // buffer is popped when its poll_timeout says.
    let mut kinds = Vec::new();
    let mut next = 0;
    for t in 0..=200u64 {
        let k = t / 20;
        if t % 20 == 0 && k <= 9 && ![4, 7, 8].contains(&k) {
            b.insert(ms(start, t), packet(k as u16, 960 * k as u32, &WITH_FEC));
        }
        if t >= next {
            kinds.push(match b.pop(ms(start, t)) {
                Playout::Decode { packet, .. } => format!("d{}", packet.seq),
                Playout::Recover { next } => format!("r{}", next.seq),
                Playout::Conceal { .. } => "c".into(),
                Playout::Silence { .. } => "s".into(),
            });
            let due = b.poll_timeout().unwrap_or(ms(start, t + 20));
            next = due.duration_since(start).as_millis() as u64;
        }
    }
    // 4 is rebuilt from 5 (both frames at once), 7 concealed, 8 rebuilt from 9.
    assert_eq!(kinds, ["s", "d0", "d1", "d2", "d3", "r5", "d6", "c", "r9"]);
    let s = b.stats();
    assert_eq!((s.fec_recovered, s.packets_lost), (2, 3));
    assert_eq!((s.concealed_samples, s.concealment_events), (960, 1));
    assert_eq!(s.jitter_buffer_emitted_count, 9 * 960);
    // Frames are going missing and the stream has FEC: the target keeps a frame more.
    assert_eq!(b.target_delay(), Duration::from_millis(42));
}

#[test]
fn once_a_lost_frame_is_concealed_the_next_packet_plays_normally() {
    let (mut b, start) = playing(&WITH_FEC);
    assert!(matches!(b.pop(ms(start, 82)), Playout::Conceal { .. }));
    b.insert(ms(start, 100), packet(5, 4800, &WITH_FEC));
    assert!(matches!(b.pop(ms(start, 102)), Playout::Decode { .. }));
    assert_eq!(b.stats().fec_recovered, 0);
}

#[test]
fn without_fec_one_frame_is_concealed_and_the_delay_is_kept() {
    let (mut b, start) = playing(&NO_FEC);
    b.insert(ms(start, 100), packet(5, 4800, &NO_FEC));
    assert!(matches!(b.pop(ms(start, 82)), Playout::Conceal { .. }));
    assert_eq!(seq_of(&b.pop(ms(start, 102))), Some(5));
    assert_eq!(b.current_delay(), Duration::from_millis(22));
    // 4 arrives now: its frame was given up.
    b.insert(ms(start, 103), packet(4, 3840, &NO_FEC));
    assert_eq!(b.stats().packets_discarded, 1);
    assert_eq!(b.stats().packets_lost, 0);
}

#[test]
fn a_late_packet_is_still_played_and_the_delay_grows() {
    let (mut b, start) = playing(&NO_FEC);
    assert!(matches!(b.pop(ms(start, 82)), Playout::Conceal { .. }));
    b.insert(ms(start, 95), packet(4, 3840, &NO_FEC));
    b.insert(ms(start, 100), packet(5, 4800, &NO_FEC));
    assert_eq!(seq_of(&b.pop(ms(start, 102))), Some(4));
    assert_eq!(b.current_delay(), Duration::from_millis(42));
    assert!(b.target_delay() > Duration::from_millis(22));
}

/// Packet 4 comes 15 ms after its frame was concealed (late), or never (lost); the target
/// it leaves behind, with and without FEC in the stream.
fn target_after(payload: &[u8], four_comes: bool) -> Duration {
    let (mut b, start) = playing(payload);
    assert!(matches!(b.pop(ms(start, 82)), Playout::Conceal { .. }));
    if four_comes {
        b.insert(ms(start, 97), packet(4, 3840, payload));
    }
    b.insert(ms(start, 100), packet(5, 4800, payload));
    let want = if four_comes { 4 } else { 5 };
    assert_eq!(seq_of(&b.pop(ms(start, 102))), Some(want));
    b.target_delay()
}

#[test]
fn a_late_packet_is_not_taken_for_a_lost_one() {
    // A lost packet in a stream with FEC keeps a frame more buffered, for the next packet's
    // FEC to be there in time...
    let lost = target_after(&WITH_FEC, false);
    assert_eq!(
        lost,
        target_after(&NO_FEC, false) + Duration::from_millis(20)
    );
    // ...a late one does not: its delay is in the quantile, and that is all.
    let late = target_after(&WITH_FEC, true);
    assert_eq!(late, target_after(&NO_FEC, true));
}

#[test]
fn duplicates_and_other_streams() {
    let (mut b, start) = playing(&NO_FEC);
    b.insert(ms(start, 80), packet(4, 3840, &NO_FEC));
    b.insert(ms(start, 81), packet(4, 3840, &NO_FEC));
    b.insert(ms(start, 81), packet(2, 1920, &NO_FEC));
    // Another sequence number for a timestamp already buffered.
    b.insert(ms(start, 81), packet(9, 3840, &NO_FEC));
    let s = b.stats();
    assert_eq!((s.packets_received, s.packets_duplicated), (8, 3));
    assert_eq!(b.len(), 1);
    // A new SSRC starts over.
    let mut other = packet(40_000, 1_000_000, &NO_FEC);
    other.ssrc = 2;
    b.insert(ms(start, 90), other);
    assert_eq!(b.len(), 1);
    assert_eq!(b.stats().packets_discarded, 1);
    assert!(matches!(b.pop(ms(start, 91)), Playout::Silence { .. }));
    assert_eq!(seq_of(&b.pop(ms(start, 92))), Some(40_000));
}

#[test]
fn frame_size_is_learned_from_timestamp_spacing() {
    let start = Instant::now();
    let mut b = AudioJitterBuffer::new(AudioJitterConfig::new(MONO20), start).unwrap();
    for k in 0..3u64 {
        b.insert(
            ms(start, 40 * k),
            packet(k as u16, 1920 * k as u32, &NO_FEC),
        );
    }
    assert_eq!(b.frame_samples(), 1920);
    let config = AudioJitterConfig {
        min_delay: Duration::from_secs(2),
        ..AudioJitterConfig::new(MONO20)
    };
    assert!(matches!(
        AudioJitterBuffer::new(config, start),
        Err(Error::Config(_))
    ));
}

#[test]
fn a_long_silence_stops_playout_until_packets_come_back() {
    let (mut b, start) = playing(&NO_FEC);
    for k in 4..54u64 {
        assert!(matches!(
            b.pop(ms(start, 2 + 20 * k)),
            Playout::Conceal { .. }
        ));
    }
    assert!(matches!(b.pop(ms(start, 1082)), Playout::Silence { .. }));
    let s = b.stats();
    assert_eq!((s.concealed_samples, s.concealment_events), (50 * 960, 1));
    b.insert(ms(start, 2000), packet(100, 96_000, &NO_FEC));
    assert!(matches!(b.pop(ms(start, 2000)), Playout::Silence { .. }));
    assert_eq!(seq_of(&b.pop(ms(start, 2002))), Some(100));
}

/// A RED payload of `blocks` (timestamp offset, data), earliest first, then `primary`.
fn red(seq: u16, ts: u32, blocks: &[(u32, &[u8])], primary: &[u8]) -> RtpPacket {
    let mut payload = Vec::new();
    for (offset, data) in blocks {
        let len = data.len() as u32;
        payload.extend_from_slice(&[
            0x80 | 111,
            (offset >> 6) as u8,
            (((offset & 0x3f) << 2) | (len >> 8)) as u8,
            len as u8,
        ]);
    }
    payload.push(111);
    for (_, data) in blocks {
        payload.extend_from_slice(data);
    }
    payload.extend_from_slice(primary);
    RtpPacket {
        payload_type: 63,
        ..packet(seq, ts, &payload)
    }
}

#[test]
fn a_red_copy_fills_a_hole_and_gives_way_to_the_packet_itself() {
    let start = Instant::now();
    let mut b = AudioJitterBuffer::new(AudioJitterConfig::new(MONO20), start).unwrap();
    b.insert_red(start, red(10, 0, &[], &NO_FEC));
    // Packet 11 is lost; 12 carries a copy of it, and one of 10 (already there).
    b.insert_red(
        ms(start, 40),
        red(12, 1920, &[(1920, &[9, 10]), (960, &[9, 11])], &NO_FEC),
    );
    assert_eq!(b.len(), 3);
    let s = b.stats();
    assert_eq!((s.fec_packets_received, s.fec_packets_discarded), (1, 0));
    assert_eq!(s.packets_duplicated, 0);
    // Packet 11 itself comes after all: it takes the copy's place, no duplicate counted.
    b.insert(ms(start, 45), packet(11, 960, &NO_FEC));
    assert_eq!((b.len(), b.stats().packets_duplicated), (3, 0));
    // (The copies reach two frames back: the buffer waits for them before it starts.)
    let played: Vec<_> = (0..3)
        .map(|k| b.pop(ms(start, 200 + 20 * k)))
        .map(|p| match p {
            Playout::Decode { packet, .. } => packet.payload.to_vec(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(played[1], NO_FEC.to_vec(), "the packet, not the copy");
    assert_eq!(b.stats().red_recovered, 0);
}

#[test]
fn a_red_copy_is_played_in_place_of_a_lost_packet_and_counted() {
    let start = Instant::now();
    let mut b = AudioJitterBuffer::new(AudioJitterConfig::new(MONO20), start).unwrap();
    b.insert_red(start, red(10, 0, &[], &NO_FEC));
    b.insert_red(ms(start, 40), red(12, 1920, &[(960, &[9, 11])], &NO_FEC));
    let played: Vec<_> = (0..3)
        .map(|k| seq_of(&b.pop(ms(start, 60 + 20 * k))))
        .collect();
    assert_eq!(played, [Some(10), Some(11), Some(12)]);
    let s = b.stats();
    assert_eq!((s.red_recovered, s.concealed_samples), (1, 0));
    // A late copy of what was played is not needed.
    b.insert_red(ms(start, 120), red(13, 2880, &[(1920, &[9, 11])], &NO_FEC));
    assert_eq!(b.stats().fec_packets_discarded, 1);
}

#[test]
fn malformed_red_is_dropped_and_counted() {
    let start = Instant::now();
    let mut b = AudioJitterBuffer::new(AudioJitterConfig::new(MONO20), start).unwrap();
    let bad = RtpPacket {
        payload_type: 63,
        ..packet(1, 0, &[0x80 | 111, 0, 4])
    };
    b.insert_red(start, bad);
    let s = b.stats();
    assert_eq!((s.red_malformed, s.packets_received, b.len()), (1, 1, 0));
}
