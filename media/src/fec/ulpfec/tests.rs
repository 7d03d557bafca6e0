use super::*;
use crate::rng::SplitMix64 as Rng;

/// A serialized RTP packet: version 2, payload type 102, SSRC 7, with a one-word header
/// extension when `ext` (as a transport-wide sequence number would add).
fn rtp(seq: u16, ts: u32, marker: bool, ext: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 102 | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&7u32.to_be_bytes());
    if let Some(v) = ext {
        p[0] |= 0x10;
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x12]);
        p.extend_from_slice(&v.to_be_bytes());
        p.push(0);
    }
    p.extend_from_slice(payload);
    p
}

/// A frame's worth of packets from `first`, of varied lengths, the last with the marker.
fn frame(first: u16, count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|i| {
            let len = 20 + (rng.next_u64() % 1100) as usize;
            let payload: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let seq = first.wrapping_add(i as u16);
            rtp(seq, 9000, i + 1 == count, Some(seq ^ 0x5a5a), &payload)
        })
        .collect()
}

fn encode(media: &[Vec<u8>], fec: usize) -> Vec<Vec<u8>> {
    let refs: Vec<&[u8]> = media.iter().map(Vec::as_slice).collect();
    UlpfecEncoder::new().encode(&refs, fec).unwrap().to_vec()
}

/// Feeds the receiver the media packets not in `lost` and every FEC packet not lost, and
/// returns what it recovered, sorted.
fn receive(
    media: &[Vec<u8>],
    fec: &[Vec<u8>],
    lost: &[usize],
    fec_lost: &[usize],
) -> (Vec<Bytes>, UlpfecStats) {
    let mut rx = UlpfecReceiver::new();
    for (i, p) in media.iter().enumerate() {
        if !lost.contains(&i) {
            rx.on_media(Bytes::copy_from_slice(p));
        }
    }
    for (i, f) in fec.iter().enumerate() {
        if !fec_lost.contains(&i) {
            assert!(rx.on_fec(7, Bytes::copy_from_slice(f)));
        }
    }
    let mut out = Vec::new();
    while let Some(p) = rx.poll_recovered() {
        out.push(p);
    }
    let base = seq_of(&media[0]);
    out.sort_by_key(|p| seq_of(p).wrapping_sub(base));
    (out, rx.stats())
}

#[test]
fn a_single_loss_is_recovered_bit_exact_with_its_header_extension() {
    let media = frame(1000, 5, 1);
    let fec = encode(&media, 1);
    assert_eq!(fec.len(), 1);
    for lost in 0..media.len() {
        let (out, stats) = receive(&media, &fec, &[lost], &[]);
        assert_eq!(out.len(), 1, "lost {lost}");
        assert_eq!(&out[0][..], &media[lost][..], "lost {lost}");
        assert_eq!((stats.recovered, stats.fec_packets_discarded), (1, 0));
    }
}

#[test]
fn the_marker_and_payload_type_come_back() {
    let media = frame(7, 3, 2);
    let fec = encode(&media, 1);
    let (out, _) = receive(&media, &fec, &[2], &[]);
    assert_eq!(out[0][1], 0x80 | 102, "marker and payload type");
    assert_eq!(payload_range(&out[0]), payload_range(&media[2]));
}

#[test]
fn a_burst_as_long_as_the_fec_count_is_recovered_by_interleaving() {
    let media = frame(500, 12, 3);
    let fec = encode(&media, 3);
    for start in 0..=9 {
        let lost = [start, start + 1, start + 2];
        let (out, stats) = receive(&media, &fec, &lost, &[]);
        assert_eq!(out.len(), 3, "burst from {start}");
        for (p, i) in out.iter().zip(lost) {
            assert_eq!(&p[..], &media[i][..]);
        }
        assert_eq!(stats.recovered, 3);
    }
    // Two losses in one interleaved group (0 and 3 both go to FEC 0) cannot be recovered.
    let (out, _) = receive(&media, &fec, &[0, 3], &[]);
    assert!(out.is_empty());
}

#[test]
fn a_recovery_that_completes_another_group_goes_on() {
    // 0 and 2 are lost; FEC 0 covers {0, 2} and FEC 1 {1}: nothing. With 0 arriving late
    // (a retransmission), FEC 0 recovers 2.
    let media = frame(60, 3, 4);
    let fec = encode(&media, 2);
    let mut rx = UlpfecReceiver::new();
    rx.on_media(Bytes::copy_from_slice(&media[1]));
    for f in &fec {
        rx.on_fec(7, Bytes::copy_from_slice(f));
    }
    assert!(rx.poll_recovered().is_none());
    rx.on_media(Bytes::copy_from_slice(&media[0]));
    assert_eq!(rx.poll_recovered().as_deref(), Some(&media[2][..]));
    // FEC 1's packet came: it is discarded, having recovered nothing.
    assert_eq!(rx.stats().fec_packets_discarded, 1);
}

#[test]
fn long_masks_protect_up_to_48_packets_across_the_sequence_wrap() {
    let media = frame(65_520, MAX_PROTECTED, 5);
    let fec = encode(&media, 4);
    assert!(fec.iter().all(|f| f[0] & 0x40 != 0), "long masks");
    let lost = [0, 17, 30, 47];
    let (out, stats) = receive(&media, &fec, &lost, &[]);
    assert_eq!(out.len(), 4);
    for (p, i) in out.iter().zip(lost) {
        assert_eq!(&p[..], &media[i][..]);
    }
    assert_eq!(stats.recovered, 4);
}

#[test]
fn fec_arriving_before_the_media_waits_for_it() {
    let media = frame(65_535, 4, 6);
    let fec = encode(&media, 2);
    let mut rx = UlpfecReceiver::new();
    for f in &fec {
        rx.on_fec(7, Bytes::copy_from_slice(f));
    }
    rx.on_media(Bytes::copy_from_slice(&media[0]));
    rx.on_media(Bytes::copy_from_slice(&media[1]));
    let mut got = Vec::new();
    while let Some(p) = rx.poll_recovered() {
        got.push(p);
    }
    got.sort_by_key(|p| seq_of(p).wrapping_add(1));
    assert_eq!(got.len(), 2);
    assert_eq!(&got[0][..], &media[2][..]);
    assert_eq!(&got[1][..], &media[3][..]);
}

#[test]
fn malformed_fec_is_dropped_and_counted() {
    let media = frame(10, 4, 7);
    let fec = encode(&media, 1);
    let mut rx = UlpfecReceiver::new();
    rx.on_media(Bytes::copy_from_slice(&media[0]));
    // Too short for the headers.
    assert!(!rx.on_fec(7, Bytes::from_static(&[0, 0, 0, 10, 0, 0])));
    // A protection length longer than the packet.
    let mut long = fec[0].clone();
    long.truncate(long.len() - 1);
    assert!(!rx.on_fec(7, Bytes::from(long)));
    // The extension bit (a header this receiver cannot read).
    let mut e = fec[0].clone();
    e[0] |= 0x80;
    assert!(!rx.on_fec(7, Bytes::from(e)));
    // An empty mask.
    let mut empty = fec[0].clone();
    empty[12] = 0;
    empty[13] = 0;
    assert!(!rx.on_fec(7, Bytes::from(empty)));
    let stats = rx.stats();
    assert_eq!((stats.fec_packets_received, stats.fec_malformed), (4, 4));
    assert_eq!(stats.fec_packets_discarded, 4);
    assert!(rx.poll_recovered().is_none());
}

#[test]
fn a_wrong_length_recovery_is_refused_not_trusted() {
    // Length recovery claiming more than the protected block: what comes out cannot be the
    // lost packet, so nothing is handed out.
    let media = frame(10, 3, 8);
    let mut fec = encode(&media, 1);
    fec[0][8] ^= 0x40;
    let (out, stats) = receive(&media, &fec, &[1], &[]);
    assert!(out.is_empty());
    assert_eq!(stats.fec_malformed, 1);
}

#[test]
fn media_that_is_not_rtp_is_ignored_and_the_memory_stays_bounded() {
    let mut rx = UlpfecReceiver::new();
    rx.on_media(Bytes::from_static(&[1, 2, 3]));
    rx.on_media(Bytes::from(vec![0x40; 40]));
    for seq in 0..5000u16 {
        rx.on_media(Bytes::from(rtp(seq, 0, false, None, &[1; 10])));
        if seq.is_multiple_of(3) {
            // FEC for packets that all came: discarded, never piling up.
            let media = [rtp(seq, 0, false, None, &[1; 10])];
            let fec = encode(&media, 1);
            rx.on_fec(7, Bytes::from(fec[0].clone()));
        }
    }
    assert!(rx.fec.len() <= FEC_WINDOW);
    assert_eq!(rx.media.len(), MEDIA_WINDOW);
    assert_eq!(rx.stats().recovered, 0);
}

#[test]
fn fec_for_packets_out_of_the_window_is_discarded() {
    let media = frame(100, 2, 9);
    let fec = encode(&media, 1);
    let mut rx = UlpfecReceiver::new();
    rx.on_media(Bytes::from(rtp(1000, 0, false, None, &[0; 4])));
    rx.on_fec(7, Bytes::copy_from_slice(&fec[0]));
    assert_eq!(rx.stats().fec_packets_discarded, 1);
    assert!(rx.fec.is_empty());
}

#[test]
fn bad_input_to_the_encoder_is_an_error() {
    let mut enc = UlpfecEncoder::new();
    assert!(enc.encode(&[], 1).is_err());
    let a = rtp(1, 0, false, None, b"a");
    let c = rtp(3, 0, false, None, b"c");
    assert!(enc.encode(&[&a, &c], 1).is_err(), "not consecutive");
    assert!(enc.encode(&[&[0u8; 5][..]], 1).is_err(), "not RTP");
    let many: Vec<Vec<u8>> = (0..49).map(|i| rtp(i, 0, false, None, b"x")).collect();
    let refs: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
    assert!(enc.encode(&refs, 1).is_err(), "more than 48");
}

#[test]
fn seeded_random_loss_is_mostly_recovered_and_never_wrongly() {
    let mut rng = Rng::new(42);
    let (mut lost_total, mut recovered_total) = (0, 0);
    for round in 0..200u16 {
        let n = 2 + (rng.next_u64() % 20) as usize;
        let k = (n / 2).max(1);
        let media = frame(round.wrapping_mul(331), n, u64::from(round));
        let fec = encode(&media, k);
        let lost: Vec<usize> = (0..n)
            .filter(|_| rng.next_u64().is_multiple_of(10))
            .collect();
        let fec_lost: Vec<usize> = (0..k)
            .filter(|_| rng.next_u64().is_multiple_of(10))
            .collect();
        let (out, _) = receive(&media, &fec, &lost, &fec_lost);
        for p in &out {
            let i = usize::from(seq_of(p).wrapping_sub(seq_of(&media[0])));
            assert!(lost.contains(&i));
            assert_eq!(&p[..], &media[i][..], "round {round}");
        }
        lost_total += lost.len();
        recovered_total += out.len();
    }
    // 10% loss of media and FEC, one FEC packet per two media packets: a lost packet comes
    // back when the other packet of its group and their FEC packet came, 0.9^2 = 81% of the
    // time for a group of two (less for the groups of three that odd counts make).
    assert!(lost_total > 100);
    assert!(
        recovered_total * 10 >= lost_total * 7,
        "{recovered_total} of {lost_total}"
    );
}

#[test]
fn red_wrapping_is_undone_to_the_packet_fec_protects() {
    let plain = rtp(5, 90, true, Some(3), b"h264 payload");
    let (start, _) = payload_range(&plain).unwrap();
    let mut red = plain[..start].to_vec();
    red[1] = 0x80 | 116;
    red.push(102);
    red.extend_from_slice(b"h264 payload");
    assert_eq!(unwrap_red(&red).unwrap(), plain);
    // A RED payload with a redundant block is not video RED.
    let mut two = red.clone();
    two[start] |= 0x80;
    assert!(unwrap_red(&two).is_none());
    assert!(unwrap_red(&red[..start]).is_none(), "no block at all");
}

#[test]
fn the_run_of_fec_packets_is_known_from_any_one_of_them() {
    // Five media packets from 200, then three FEC packets at 205, 206, 207, the last marked.
    let media = frame(200, 5, 10);
    let fec = encode(&media, 3);
    assert_eq!(fec_run(205, false, &fec[0]), Some((205, 207)));
    assert_eq!(fec_run(206, false, &fec[1]), Some((205, 207)));
    assert_eq!(fec_run(207, true, &fec[2]), Some((205, 207)));
    // One media packet, one FEC packet.
    let single = frame(65_535, 1, 11);
    let fec = encode(&single, 1);
    assert_eq!(fec_run(0, true, &fec[0]), Some((0, 0)));
    // Not duet's layout: a FEC packet whose own number falls inside what it protects.
    assert_eq!(fec_run(202, false, &encode(&media, 1)[0]), None);
    assert_eq!(fec_run(1, false, &[0u8; 3]), None);
}
