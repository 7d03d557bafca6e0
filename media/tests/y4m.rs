//! Y4M files: frames written by `Y4mSink` read back byte for byte by `Y4mSource`, and every
//! kind of damaged file reported as an error that says what is wrong, never a panic.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use duet_media::video::y4m::{Y4mSink, Y4mSource};
use duet_media::video::{VideoSink, VideoSource};
use duet_media::{Error, Read, SourceError, VideoFrame};
use proptest::prelude::*;

/// A fresh path under the system temp directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("duet-y4m-{}-{tag}-{n}.y4m", std::process::id());
        Self(std::env::temp_dir().join(name))
    }

    fn with(tag: &str, bytes: &[u8]) -> Self {
        let file = Self::new(tag);
        std::fs::write(&file.0, bytes).unwrap();
        file
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Frame `i` of a 64x48 clip: every byte depends on its position and on `i`.
fn clip_frame(i: u64, now: Instant) -> VideoFrame {
    let mut frame = VideoFrame::black(64, 48, now).unwrap();
    for (k, b) in frame.data.iter_mut().enumerate() {
        *b = ((k as u64 * 7 + i * 31) % 251) as u8;
    }
    frame.seq = i;
    frame
}

/// The error of opening `bytes` as a Y4M file, or of reading its first frames.
fn error_of(bytes: &[u8]) -> String {
    let file = TempFile::with("bad", bytes);
    let result = Y4mSource::open(&file.0).and_then(|mut source| {
        let mut frame = VideoFrame::black(2, 2, Instant::now())?;
        for _ in 0..4 {
            source.read(Instant::now(), &mut frame)?;
        }
        Ok(())
    });
    let e = result.expect_err("a damaged file must be an error");
    let text = e.to_string();
    assert!(
        text.contains(&*file.0.to_string_lossy()),
        "names the file: {text}"
    );
    assert!(
        matches!(e, Error::Source(SourceError::Format { .. })),
        "{e:?}"
    );
    text
}

#[test]
fn frames_round_trip_byte_for_byte() {
    let file = TempFile::new("roundtrip");
    let now = Instant::now();
    let frames: Vec<VideoFrame> = (0..5).map(|i| clip_frame(i, now)).collect();
    let mut sink = Y4mSink::create(&file.0, 30).unwrap();
    for frame in &frames {
        sink.write(now, frame).unwrap();
    }
    sink.finish().unwrap();
    assert_eq!(sink.frames_written(), 5);

    let bytes = std::fs::read(&file.0).unwrap();
    let header = b"YUV4MPEG2 W64 H48 F30:1 Ip A1:1 C420jpeg\n";
    assert!(bytes.starts_with(header));
    assert_eq!(bytes.len(), header.len() + 5 * (6 + 64 * 48 * 3 / 2));

    let mut source = Y4mSource::open(&file.0).unwrap();
    assert_eq!(source.size(), (64, 48));
    assert_eq!(source.fps(), 30.0);
    assert!(!source.is_live());
    let mut frame = VideoFrame::black(2, 2, now).unwrap();
    for (i, want) in frames.iter().enumerate() {
        let at = now + Duration::from_millis(33 * i as u64);
        assert_eq!(source.read(at, &mut frame).unwrap(), Read::Frame);
        assert_eq!((frame.width, frame.height, frame.seq), (64, 48, i as u64));
        assert_eq!(frame.capture, at, "a file's capture time is the read time");
        assert!(frame.data == want.data, "frame {i} differs");
    }
    assert_eq!(source.read(now, &mut frame).unwrap(), Read::End);
    assert_eq!(source.read(now, &mut frame).unwrap(), Read::End);
    assert_eq!(source.frames_read(), 5);
}

#[test]
fn header_and_frame_parameters_are_accepted() {
    let mut bytes = b"YUV4MPEG2 W4 H2 F30000:1001 It A1:1 C420paff XCOLORRANGE=LIMITED\n".to_vec();
    bytes.extend(b"FRAME Ixyz\n");
    bytes.extend(1..=12);
    bytes.extend(b"FRAME\n");
    bytes.extend([9; 12]);
    let file = TempFile::with("params", &bytes);
    let mut source = Y4mSource::open(&file.0).unwrap();
    assert!((source.fps() - 29.97).abs() < 0.001, "{}", source.fps());
    let mut frame = VideoFrame::black(2, 2, Instant::now()).unwrap();
    assert_eq!(
        source.read(Instant::now(), &mut frame).unwrap(),
        Read::Frame
    );
    assert_eq!(frame.data, (1..=12).collect::<Vec<u8>>());
    assert_eq!(
        source.read(Instant::now(), &mut frame).unwrap(),
        Read::Frame
    );
    assert_eq!(frame.data, [9; 12]);
    assert_eq!(source.read(Instant::now(), &mut frame).unwrap(), Read::End);

    for c in ["", " C420", " C420jpeg", " C420mpeg2"] {
        let file = TempFile::with("colour", format!("YUV4MPEG2 W2 H2 F5:1{c}\n").as_bytes());
        assert_eq!(Y4mSource::open(&file.0).unwrap().fps(), 5.0, "{c:?}");
    }
}

#[test]
fn unsupported_colourspaces_are_named() {
    for c in ["422", "444", "mono", "444alpha", "420p10"] {
        let e = error_of(format!("YUV4MPEG2 W64 H48 F30:1 C{c}\n").as_bytes());
        assert!(
            e.contains(&format!("colourspace C{c} is not supported")),
            "{e}"
        );
    }
}

#[test]
fn bad_sizes_are_rejected() {
    let cases = [
        ("W0 H48", "0x48: width and height must be even and non-zero"),
        ("W63 H48", "63x48"),
        ("W64 H47", "64x47"),
        ("W8000 H6000", "8000x6000: at most 4096x2304"),
        ("W-64 H48", "width \"-64\" is not a number"),
        ("H48", "no width"),
    ];
    for (size, want) in cases {
        let e = error_of(format!("YUV4MPEG2 {size} F30:1\n").as_bytes());
        assert!(e.contains(want), "{size}: {e}");
    }
}

#[test]
fn truncated_frames_are_errors() {
    let mut bytes = b"YUV4MPEG2 W4 H2 F30:1\nFRAME\n".to_vec();
    bytes.extend([1; 12]);
    bytes.extend(b"FRAME\n");
    bytes.extend([2; 5]);
    let e = error_of(&bytes);
    assert!(e.contains("frame 1 is truncated: 5 of 12 bytes"), "{e}");

    let e = error_of(b"YUV4MPEG2 W4 H2 F30:1\nFRAME\n");
    assert!(e.contains("frame 0 is truncated: 0 of 12 bytes"), "{e}");
    let e = error_of(b"YUV4MPEG2 W4 H2 F30:1\nFRA");
    assert!(e.contains("header of frame 0 is cut short"), "{e}");
    let e = error_of(b"YUV4MPEG2 W4 H2 F30:1");
    assert!(e.contains("the header is cut short"), "{e}");
}

#[test]
fn garbage_is_not_y4m() {
    let e = error_of(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");
    assert!(e.contains("not a Y4M file"), "{e}");
    let e = error_of(&[0xAB; 5000]);
    assert!(e.contains("not a Y4M file"), "{e}");
    let e = error_of(b"");
    assert!(e.contains("empty"), "{e}");
    let e = error_of(b"YUV4MPEG2 W4 H2 F30:1\nFRAMEX\n");
    assert!(e.contains("expected FRAME before frame 0"), "{e}");
    let mut long = b"YUV4MPEG2 W4 H2 F30:1 X".to_vec();
    long.extend([b'a'; 3000]);
    let e = error_of(&long);
    assert!(e.contains("no end within 1024 bytes"), "{e}");
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let path = std::env::temp_dir().join("duet-y4m-does-not-exist.y4m");
    let e = Y4mSource::open(&path).unwrap_err();
    assert!(matches!(e, Error::Source(SourceError::Io { .. })), "{e:?}");
    assert!(e.to_string().contains("duet-y4m-does-not-exist.y4m"), "{e}");
}

#[test]
fn sink_rejects_a_size_change_and_zero_fps() {
    let file = TempFile::new("resize");
    let now = Instant::now();
    let mut sink = Y4mSink::create(&file.0, 25).unwrap();
    sink.write(now, &clip_frame(0, now)).unwrap();
    let small = VideoFrame::black(32, 32, now).unwrap();
    let e = sink.write(now, &small).unwrap_err().to_string();
    assert!(
        e.contains("frame 1 is 32x32 but the file was started at 64x48"),
        "{e}"
    );
    sink.write(now, &clip_frame(1, now)).unwrap();
    sink.finish().unwrap();
    let mut source = Y4mSource::open(&file.0).unwrap();
    let mut frame = small;
    assert_eq!(source.read(now, &mut frame).unwrap(), Read::Frame);
    assert_eq!(source.read(now, &mut frame).unwrap(), Read::Frame);
    assert_eq!(source.read(now, &mut frame).unwrap(), Read::End);

    let e = Y4mSink::create(&file.0, 0).unwrap_err().to_string();
    assert!(e.contains("0 fps"), "{e}");
}

/// Opens `bytes` and reads up to 8 frames; any outcome but a panic is fine.
fn read_all(bytes: &[u8]) {
    let file = TempFile::with("fuzz", bytes);
    if let Ok(mut source) = Y4mSource::open(&file.0) {
        let mut frame = VideoFrame::black(2, 2, Instant::now()).unwrap();
        for _ in 0..8 {
            if !matches!(source.read(Instant::now(), &mut frame), Ok(Read::Frame)) {
                break;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        read_all(&bytes);
    }

    #[test]
    fn random_headers_and_frames_never_panic(
        header in "YUV4MPEG2( [WHFCIAX][-0-9a-z:]{0,6}){0,6}",
        body in prop::collection::vec(prop_oneof![Just(b'F'), Just(b'\n'), any::<u8>()], 0..400),
    ) {
        let mut bytes = header.into_bytes();
        bytes.push(b'\n');
        bytes.extend(b"FRAME\n");
        bytes.extend(body);
        read_all(&bytes);
    }
}
