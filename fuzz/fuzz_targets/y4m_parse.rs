//! Y4M files of any content read through `Y4mSource`: no file may panic, reading ends with
//! `End` or an error, and every frame read has the header's size and a whole I420 picture.
//!
//! The first byte picks the start of the file: the rest of the input as it is, behind the
//! `YUV4MPEG2 ` magic word (so that the parameters are reached), or behind a whole valid header
//! of a small size taken from the first byte (so that the frames are reached).
#![no_main]

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use duet_media::frame::{i420_len, Read, VideoFrame};
use duet_media::video::y4m::Y4mSource;
use duet_media::video::VideoSource;
use libfuzzer_sys::fuzz_target;

/// One file per fuzzing process, rewritten for every input.
fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| std::env::temp_dir().join(format!("duet-fuzz-{}.y4m", std::process::id())))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    {
        let mut file = std::fs::File::create(path()).expect("temporary file");
        match mode & 3 {
            0 => {}
            1 => file.write_all(b"YUV4MPEG2 ").expect("write"),
            _ => {
                let (w, h) = (
                    2 + 2 * u32::from(mode >> 5),
                    2 + 2 * u32::from((mode >> 2) & 7),
                );
                writeln!(file, "YUV4MPEG2 W{w} H{h} F30:1 Ip C420jpeg").expect("write");
            }
        }
        file.write_all(body).expect("write");
    }
    read(data.len());
    let _ = std::fs::remove_file(path());
});

/// Reads the file through to its end or an error; `len` bounds the number of frames.
fn read(len: usize) {
    let Ok(mut source) = Y4mSource::open(path()) else {
        return;
    };
    let (width, height) = source.size();
    assert!(width > 0 && height > 0 && width.is_multiple_of(2) && height.is_multiple_of(2));
    assert!(width <= 4096 && height <= 2304);
    assert!(source.fps().is_finite() && source.fps() > 0.0);
    let now = Instant::now();
    let mut frame = VideoFrame::black(2, 2, now).expect("frame");
    // Each frame takes at least its header and one byte of picture.
    for n in 0..=len {
        match source.read(now, &mut frame) {
            Ok(Read::Frame) => {
                assert_eq!((frame.width, frame.height), (width, height));
                assert_eq!(frame.data.len(), i420_len(width, height));
                assert_eq!(frame.seq, n as u64);
                assert_eq!(source.frames_read(), n as u64 + 1);
            }
            Ok(Read::End) => {
                // The end stays the end.
                assert!(matches!(source.read(now, &mut frame), Ok(Read::End)));
                return;
            }
            Ok(Read::Pending) => panic!("a file source returned Pending"),
            Err(_) => return,
        }
    }
    panic!("more frames than bytes in the file");
}
