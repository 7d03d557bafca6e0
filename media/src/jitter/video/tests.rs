//! Unit tests of the video jitter buffer's corner cases; whole-stream behaviour is in
//! media/tests/video_jitter.rs.

use super::*;

const MS: Duration = Duration::from_millis(1);

fn packet(seq: u16, timestamp: u32, marker: bool, payload: &[u8]) -> RtpPacket {
    RtpPacket {
        seq,
        timestamp,
        ssrc: 1,
        marker,
        payload_type: 102,
        payload: Bytes::copy_from_slice(payload),
    }
}

const SPS_PPS: [u8; 9] = [24, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce];
const IDR: [u8; 3] = [0x65, 0x88, 0x84];
const SLICE: [u8; 3] = [0x41, 0x9a, 0x02];

fn drain(buffer: &mut VideoJitterBuffer, now: Instant) -> Vec<VideoOutput> {
    std::iter::from_fn(|| buffer.poll_output(now)).collect()
}

fn frames(outputs: &[VideoOutput]) -> Vec<(u16, u16)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            VideoOutput::Frame(f) => Some((f.first_seq, f.last_seq)),
            _ => None,
        })
        .collect()
}

fn buffer(t0: Instant) -> VideoJitterBuffer {
    VideoJitterBuffer::new(VideoJitterConfig::default(), t0).unwrap()
}

#[test]
fn rejects_bad_configs() {
    let t0 = Instant::now();
    for config in [
        VideoJitterConfig {
            capacity: 1000,
            ..Default::default()
        },
        VideoJitterConfig {
            capacity: 32,
            ..Default::default()
        },
        VideoJitterConfig {
            min_wait: 400 * MS,
            ..Default::default()
        },
    ] {
        assert!(VideoJitterBuffer::new(config, t0).is_err());
    }
}

#[test]
fn a_keyframe_whose_first_packet_arrives_last_comes_out_whole() {
    let t0 = Instant::now();
    let mut b = buffer(t0);
    b.insert(t0, packet(11, 100, true, &IDR));
    b.insert(t0, packet(10, 100, false, &SPS_PPS));
    let out = drain(&mut b, t0);
    assert_eq!(frames(&out), vec![(10, 11)]);
    let VideoOutput::Frame(frame) = &out[0] else {
        panic!("{out:?}");
    };
    assert!(frame.keyframe);
    assert_eq!(
        frame.data,
        [0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0xce, 0, 0, 0, 1, 0x65, 0x88, 0x84]
    );
}

#[test]
fn padding_between_frames_is_skipped_and_missing_markers_tolerated() {
    let t0 = Instant::now();
    let mut b = buffer(t0);
    b.insert(t0, packet(1, 0, false, &SPS_PPS));
    b.insert(t0, packet(2, 0, true, &IDR));
    b.insert(t0, packet(3, 0, false, &[]));
    // A frame without a marker ends where the next timestamp starts.
    b.insert(t0, packet(4, 3000, false, &SLICE));
    b.insert(t0, packet(5, 6000, true, &SLICE));
    let out = drain(&mut b, t0);
    assert_eq!(frames(&out), vec![(1, 2), (4, 4), (5, 5)]);
    assert_eq!(b.stats().frames_decoded, 3);
}

#[test]
fn delta_frames_before_any_keyframe_are_dropped_and_a_keyframe_asked_for() {
    let t0 = Instant::now();
    let mut b = buffer(t0);
    b.insert(t0, packet(1, 0, true, &SLICE));
    b.insert(t0, packet(2, 3000, true, &SLICE));
    assert_eq!(drain(&mut b, t0), vec![VideoOutput::KeyframeRequest]);
    // Rate limited: no second request before the interval.
    b.insert(t0 + 100 * MS, packet(3, 6000, true, &SLICE));
    assert_eq!(drain(&mut b, t0 + 100 * MS), vec![]);
    assert_eq!(b.poll_timeout(), Some(t0 + 250 * MS));
    assert_eq!(
        drain(&mut b, t0 + 250 * MS),
        vec![VideoOutput::KeyframeRequest]
    );
    b.insert(t0 + 310 * MS, packet(4, 9000, false, &SPS_PPS));
    b.insert(t0 + 310 * MS, packet(5, 9000, true, &IDR));
    b.insert(t0 + 310 * MS, packet(6, 12000, true, &SLICE));
    assert_eq!(frames(&drain(&mut b, t0 + 310 * MS)), vec![(4, 5), (6, 6)]);
    let stats = b.stats();
    assert_eq!(
        (stats.frames_dropped, stats.pli_count, stats.frames_decoded),
        (3, 2, 2)
    );
    assert_eq!(b.poll_timeout(), None);
}

#[test]
fn a_new_ssrc_restarts_the_stream() {
    let t0 = Instant::now();
    let mut b = buffer(t0);
    b.insert(t0, packet(1, 0, false, &SPS_PPS));
    b.insert(t0, packet(2, 0, true, &IDR));
    assert_eq!(frames(&drain(&mut b, t0)), vec![(1, 2)]);
    // A frame the old stream left unfinished is dropped.
    b.insert(t0, packet(3, 3000, false, &SLICE));
    let mut other = packet(40000, 5, false, &SPS_PPS);
    other.ssrc = 2;
    b.insert(t0, other);
    let mut idr = packet(40001, 5, true, &IDR);
    idr.ssrc = 2;
    b.insert(t0, idr);
    assert_eq!(frames(&drain(&mut b, t0)), vec![(40000, 40001)]);
    // A late packet of the old stream changes nothing.
    b.insert(t0, packet(4, 3000, true, &SLICE));
    assert_eq!(drain(&mut b, t0), vec![]);
    let stats = b.stats();
    assert_eq!((stats.packets_lost, stats.frames_dropped), (0, 1));
    assert_eq!((stats.packets_discarded, stats.frames_decoded), (1, 2));
}

#[test]
fn a_malformed_frame_is_dropped_and_breaks_the_chain() {
    let t0 = Instant::now();
    let mut b = buffer(t0);
    b.insert(t0, packet(1, 0, false, &SPS_PPS));
    b.insert(t0, packet(2, 0, true, &IDR));
    b.insert(t0, packet(3, 3000, true, &[28, 0x01, 1]));
    b.insert(t0, packet(4, 6000, true, &SLICE));
    let out = drain(&mut b, t0);
    assert_eq!(frames(&out), vec![(1, 2)]);
    assert_eq!(out.last(), Some(&VideoOutput::KeyframeRequest));
    let stats = b.stats();
    assert_eq!((stats.frames_malformed, stats.frames_dropped), (1, 2));
}

#[test]
fn a_jump_past_the_capacity_drops_the_old_packets() {
    let t0 = Instant::now();
    let config = VideoJitterConfig {
        capacity: 64,
        ..Default::default()
    };
    let mut b = VideoJitterBuffer::new(config, t0).unwrap();
    b.insert(t0, packet(1, 0, false, &SPS_PPS));
    b.insert(t0, packet(2, 0, true, &IDR));
    b.insert(t0, packet(4, 3000, true, &SLICE));
    let out = drain(&mut b, t0);
    assert_eq!(out[0], VideoOutput::Nack(vec![3]));
    assert_eq!(frames(&out), vec![(1, 2)]);
    b.insert(t0 + MS, packet(100, 9000, false, &SPS_PPS));
    b.insert(t0 + MS, packet(101, 9000, true, &IDR));
    let out = drain(&mut b, t0 + MS);
    assert_eq!(frames(&out), vec![(100, 101)]);
    let stats = b.stats();
    assert_eq!((stats.frames_dropped, stats.packets_discarded), (1, 0));
    // Packet 3 was awaited; a jump this far is a new numbering, not 95 more losses.
    assert_eq!(stats.packets_lost, 1);
    // Packets from before the jump are late now.
    b.insert(t0 + MS, packet(3, 3000, true, &SLICE));
    assert_eq!(b.stats().packets_discarded, 1);
}

#[test]
fn quick_answers_to_nacks_do_not_delay_later_nacks() {
    // A link that never reorders, whose retransmissions come back in 20 ms: well under half
    // the RTT assumed (100 ms). Every gap must still be asked for as soon as it is seen.
    let t0 = Instant::now();
    let mut b = buffer(t0);
    b.insert(t0, packet(0, 0, false, &SPS_PPS));
    b.insert(t0, packet(1, 0, true, &IDR));
    assert_eq!(frames(&drain(&mut b, t0)), vec![(0, 1)]);
    let mut shown = 1;
    for i in 2..42u16 {
        if i % 4 == 0 {
            continue;
        }
        let now = t0 + 33 * MS * u32::from(i);
        b.insert(now, packet(i, 3000 * u32::from(i), true, &SLICE));
        let out = drain(&mut b, now);
        shown += frames(&out).len();
        if i % 4 == 1 {
            assert_eq!(out, vec![VideoOutput::Nack(vec![i - 1])], "packet {i}");
            let answered = now + 20 * MS;
            b.insert(
                answered,
                packet(i - 1, 3000 * u32::from(i - 1), true, &SLICE),
            );
            shown += frames(&drain(&mut b, answered)).len();
        }
    }
    assert_eq!(shown, 41);
    assert_eq!(b.stats().retransmitted_packets_received, 10);
    assert_eq!(b.stats().pli_count, 0);
}

#[test]
fn a_packet_followed_by_its_resent_copy_counts_as_reordered() {
    // Every fourth packet comes 20 ms late, after its NACK, and the answer follows: the
    // buffer learns the reordering and waits that long before asking.
    let t0 = Instant::now();
    let mut b = buffer(t0);
    b.insert(t0, packet(0, 0, false, &SPS_PPS));
    b.insert(t0, packet(1, 0, true, &IDR));
    drain(&mut b, t0);
    let mut nacked_at_once = 0;
    for i in 2..120u16 {
        if i % 4 == 0 {
            continue;
        }
        let now = t0 + 33 * MS * u32::from(i);
        let late = packet(i - 1, 3000 * u32::from(i - 1), true, &SLICE);
        b.insert(now, packet(i, 3000 * u32::from(i), true, &SLICE));
        let out = drain(&mut b, now);
        if i % 4 == 1 {
            nacked_at_once += usize::from(out.contains(&VideoOutput::Nack(vec![i - 1])));
            b.insert(now + 20 * MS, late.clone());
            drain(&mut b, now + 20 * MS);
            b.insert(now + 25 * MS, late);
            drain(&mut b, now + 25 * MS);
        }
    }
    assert_eq!(b.reorder.get(), 22 * MS);
    assert!(
        nacked_at_once < 10,
        "{nacked_at_once} of 29 asked for at once"
    );
    assert_eq!(b.stats().packets_discarded, 29);
}

#[test]
fn answers_slower_than_the_rtt_estimate_stretch_the_retries_and_the_wait() {
    // The RTT estimate says 1 ms (ICE checks on a quiet path) but resends take 60 ms: after the
    // first one, the buffer must not re-ask every 10 ms nor give up after its 50 ms minimum.
    let t0 = Instant::now();
    let mut b = buffer(t0);
    b.set_rtt(MS);
    b.insert(t0, packet(0, 0, false, &SPS_PPS));
    b.insert(t0, packet(1, 0, true, &IDR));
    drain(&mut b, t0);
    // Packet 2 is lost, asked for at once, answered 60 ms later.
    let t1 = t0 + 33 * MS;
    b.insert(t1, packet(3, 6000, true, &SLICE));
    assert_eq!(drain(&mut b, t1), vec![VideoOutput::Nack(vec![2])]);
    let t2 = t1 + 60 * MS;
    b.insert(t2, packet(2, 3000, true, &SLICE));
    assert_eq!(frames(&drain(&mut b, t2)), vec![(2, 2), (3, 3)]);
    // Packet 5 is lost: one NACK now, none again within the answer time seen.
    let t3 = t2 + 33 * MS;
    b.insert(t3, packet(4, 9000, true, &SLICE));
    b.insert(t3, packet(6, 15000, true, &SLICE));
    let mut nacks = 0;
    let mut t = t3;
    while t < t3 + 55 * MS {
        b.handle_timeout(t);
        nacks += drain(&mut b, t)
            .iter()
            .filter(|o| matches!(o, VideoOutput::Nack(_)))
            .count();
        t += MS;
    }
    assert_eq!(nacks, 1, "re-asked before an answer could come");
    // The answer at 65 ms still completes the frame: nothing was given up.
    let t4 = t3 + 65 * MS;
    b.insert(t4, packet(5, 12000, true, &SLICE));
    let shown = frames(&drain(&mut b, t4));
    assert_eq!(shown, vec![(5, 5), (6, 6)]);
    assert_eq!(b.stats().frames_dropped, 0);
    assert_eq!(b.stats().pli_count, 0);
}

#[test]
fn a_packet_rebuilt_from_fec_completes_its_frame_without_counting_as_received() {
    let t0 = Instant::now();
    let mut b = buffer(t0);
    b.insert(t0, packet(10, 100, false, &SPS_PPS));
    b.insert(t0, packet(11, 100, true, &IDR));
    // A delta frame of two packets; the first is lost and rebuilt from FEC.
    b.insert(t0, packet(13, 200, true, &SLICE));
    let t1 = t0 + MS;
    b.insert_recovered(t1, packet(12, 200, false, &SLICE));
    let out = drain(&mut b, t1);
    assert_eq!(frames(&out), vec![(10, 11), (12, 13)]);
    assert!(out
        .iter()
        .all(|o| !matches!(o, VideoOutput::KeyframeRequest)));
    let stats = b.stats();
    assert_eq!(stats.packets_received, 3);
    assert_eq!(stats.retransmitted_packets_received, 0);
    assert_eq!(stats.packets_lost, 0);
}

#[test]
fn a_number_known_to_carry_fec_is_not_waited_for_nor_asked_for() {
    let t0 = Instant::now();
    let mut b = buffer(t0);
    b.insert(t0, packet(10, 100, false, &SPS_PPS));
    b.insert(t0, packet(11, 100, true, &IDR));
    // 12 and 13 carried FEC: 12 arrived (as padding), 13 was lost but is known from 12.
    b.insert(t0, packet(12, 100, false, &[]));
    b.skip(t0, 1, 13, 100);
    b.insert(t0, packet(14, 200, true, &SLICE));
    let out = drain(&mut b, t0);
    assert_eq!(frames(&out), vec![(10, 11), (14, 14)]);
    // Long after, nothing was asked for and nothing is lost.
    let later = t0 + 500 * MS;
    b.handle_timeout(later);
    let out = drain(&mut b, later);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(b.stats().packets_lost, 0);
    assert_eq!(b.stats().nack_count, 0);
    // A skip for another stream is ignored.
    b.skip(later, 2, 15, 300);
    assert_eq!(b.stats().packets_received, 4);
}
