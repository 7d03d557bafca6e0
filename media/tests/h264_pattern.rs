//! The stamped test pattern through the H.264 encoder and decoder: quality, stamps,
//! keyframes and resolution changes.

mod h264_common;

use duet_media::codec::h264::{profile_level_id, EncodedVideo, H264Decoder};
use duet_media::measure::video::psnr;
use duet_media::video::stamp::{read_stamp, Stamp};
use duet_media::VideoFrame;
use h264_common::{config, nal_types, Sender};

const SPS: u8 = 7;
const PPS: u8 = 8;
const IDR: u8 = 5;

/// The stamp the pattern wrote into `source`.
fn expected_stamp(sender: &Sender, source: &VideoFrame) -> Stamp {
    Stamp {
        seq: source.seq as u32,
        time_us: sender.pattern.offset(source.seq).as_micros() as u32,
    }
}

/// Runs `frames` frames through encoder and decoder; checks every decoded stamp and returns
/// (minimum PSNR, mean PSNR, frames decoded, bytes sent).
fn run(sender: &mut Sender, decoder: &mut H264Decoder, frames: usize) -> (f64, f64, usize, usize) {
    let mut encoded = EncodedVideo::new();
    let mut picture = VideoFrame::black(2, 2, sender.start).unwrap();
    let (mut min, mut sum, mut decoded, mut bytes) = (f64::INFINITY, 0.0, 0, 0);
    for _ in 0..frames {
        if !sender.next(&mut encoded) {
            assert!(encoded.data.is_empty());
            continue;
        }
        assert_eq!(encoded.seq, sender.frame.seq);
        assert_eq!(encoded.capture, sender.frame.capture);
        bytes += encoded.data.len();
        assert!(decoder.decode(&encoded.data, &mut picture).unwrap());
        assert_eq!(
            (picture.width, picture.height),
            (encoded.width, encoded.height)
        );
        assert_eq!(
            read_stamp(&picture),
            Some(expected_stamp(sender, &sender.frame)),
            "frame {}",
            sender.frame.seq
        );
        let p = psnr(&sender.frame, &picture).unwrap();
        min = min.min(p);
        sum += p;
        decoded += 1;
    }
    (min, sum / decoded as f64, decoded, bytes)
}

#[test]
fn vga_at_300_kbps_keeps_quality_and_every_stamp() {
    let mut sender = Sender::new(config(640, 480, 300_000));
    let mut decoder = H264Decoder::new().unwrap();
    let (min, mean, decoded, bytes) = run(&mut sender, &mut decoder, 60);
    // Measured: minimum 34.6 dB, mean 37.0 dB, 287 kbps, one frame skipped.
    assert!(min > 32.5, "minimum PSNR {min:.2} dB");
    assert!(mean > 35.0, "mean PSNR {mean:.2} dB");
    assert!(decoded >= 55, "{decoded} of 60 frames decoded");
    let kbps = bytes as f64 * 8.0 / 2.0 / 1000.0;
    assert!((200.0..400.0).contains(&kbps), "{kbps:.0} kbps");
    let stats = decoder.stats();
    assert_eq!((stats.decoded, stats.errors), (decoded as u64, 0));
    assert!(!decoder.needs_keyframe());
}

#[test]
fn hd_at_1500_kbps_keeps_quality_and_every_stamp() {
    let mut sender = Sender::new(config(1280, 720, 1_500_000));
    let mut decoder = H264Decoder::new().unwrap();
    let (min, mean, decoded, _) = run(&mut sender, &mut decoder, 6);
    // Measured: minimum 38.3 dB, mean 38.8 dB.
    assert!(min > 36.0, "minimum PSNR {min:.2} dB");
    assert!(mean > 36.5, "mean PSNR {mean:.2} dB");
    assert_eq!(decoded, 6);
}

#[test]
fn the_stream_is_constrained_baseline_with_parameter_sets_on_every_idr() {
    let mut sender = Sender::new(config(640, 480, 300_000));
    let (first, _) = sender.next_sent();
    assert!(first.keyframe);
    assert_eq!(nal_types(&first.data), vec![SPS, PPS, IDR]);
    let id = profile_level_id(&first.data).unwrap();
    assert_eq!(id >> 16, 66, "profile_idc of {id:06x}");
    assert_ne!(id & 0x4000, 0, "constraint_set1_flag of {id:06x}");
    let (second, _) = sender.next_sent();
    assert!(!second.keyframe);
    assert_eq!(profile_level_id(&second.data), None);
    assert!(nal_types(&second.data).iter().all(|&t| t == 1));
}

#[test]
fn a_requested_keyframe_is_an_idr_a_new_receiver_can_start_from() {
    let mut sender = Sender::new(config(640, 480, 500_000));
    for _ in 0..10 {
        assert!(!sender.next_sent().0.keyframe || sender.frame.seq == 0);
    }
    sender.encoder.request_keyframe();
    let (idr, source) = sender.next_sent();
    assert!(idr.keyframe);
    assert_eq!(nal_types(&idr.data), vec![SPS, PPS, IDR]);
    let (next, _) = sender.next_sent();
    assert!(!next.keyframe);

    let mut late = H264Decoder::new().unwrap();
    let mut picture = VideoFrame::black(2, 2, sender.start).unwrap();
    assert!(late.needs_keyframe());
    assert!(late.decode(&idr.data, &mut picture).unwrap());
    assert!(!late.needs_keyframe());
    assert_eq!(read_stamp(&picture), Some(expected_stamp(&sender, &source)));
    assert!(late.decode(&next.data, &mut picture).unwrap());
}

#[test]
fn the_keyframe_interval_is_honoured() {
    let mut sender = Sender::new(duet_media::codec::h264::H264Config {
        keyframe_interval: 10,
        ..config(320, 240, 800_000)
    });
    let mut encoded = EncodedVideo::new();
    let mut keyframes = Vec::new();
    for _ in 0..45 {
        assert!(
            sender.next(&mut encoded),
            "frame {} skipped",
            sender.frame.seq
        );
        if encoded.keyframe {
            keyframes.push(encoded.seq);
        }
    }
    assert_eq!(keyframes, vec![0, 10, 20, 30, 40]);
}

#[test]
fn a_resolution_change_mid_stream_decodes_at_the_new_size() {
    let mut sender = Sender::new(config(640, 480, 400_000));
    let mut decoder = H264Decoder::new().unwrap();
    let mut encoded = EncodedVideo::new();
    let mut picture = VideoFrame::black(2, 2, sender.start).unwrap();
    for (width, height, frames) in [(640, 480, 8), (320, 240, 8), (1280, 720, 4), (640, 480, 4)] {
        sender.pattern.set_size(width, height).unwrap();
        let mut first = true;
        for _ in 0..frames {
            if !sender.next(&mut encoded) {
                continue;
            }
            assert_eq!((encoded.width, encoded.height), (width, height));
            if first {
                assert!(encoded.keyframe, "first frame at {width}x{height}");
                first = false;
            }
            assert!(decoder.decode(&encoded.data, &mut picture).unwrap());
            assert_eq!((picture.width, picture.height), (width, height));
            assert_eq!(
                read_stamp(&picture),
                Some(expected_stamp(&sender, &sender.frame))
            );
        }
        assert!(!first, "nothing sent at {width}x{height}");
        assert_eq!(
            (
                sender.encoder.config().width,
                sender.encoder.config().height
            ),
            (width, height)
        );
    }
    assert_eq!(decoder.stats().errors, 0);
}

#[test]
fn a_bitrate_change_takes_effect() {
    let mut sender = Sender::new(config(640, 480, 1_000_000));
    let mut decoder = H264Decoder::new().unwrap();
    let (_, _, _, high) = run(&mut sender, &mut decoder, 30);
    sender.encoder.set_bitrate(200_000).unwrap();
    assert_eq!(sender.encoder.config().bitrate_bps, 200_000);
    let (min, _, _, low) = run(&mut sender, &mut decoder, 30);
    // Measured: 4.7 times fewer bytes in the second second, minimum PSNR 33.5 dB.
    assert!(low * 2 < high, "{high} bytes at 1 Mbps, {low} at 200 kbps");
    assert!(min > 30.0, "minimum PSNR {min:.2} dB at 200 kbps");
    assert_eq!(decoder.stats().errors, 0);
}
