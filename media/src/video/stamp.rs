//! A frame's sequence number and capture time, written into the picture as large black and
//! white luma blocks that survive H.264 compression, and read back from the decoded picture.
//!
//! The stamp occupies a band at the top of the picture, [`stamp_band_height`] rows tall (a
//! multiple of 16, so it ends on a macroblock boundary). The band is a grid of square cells,
//! 16 pixels wide for pictures at least 640 pixels wide and 8 pixels below that, aligned to the
//! macroblock grid. Each cell carries one bit: luma 16 for 0, 240 for 1. The 80 bits are the
//! sequence number (32 bits), the capture time in microseconds (32 bits) and a CRC-16/CCITT
//! over both (16 bits), most significant bit first, row by row from the top left. Unused
//! cells and rows of the band are mid-grey, and the band's chroma is neutral (128), so that
//! colour bleeding from the picture below cannot flip a bit.
//!
//! [`read_stamp`] samples the centre of each cell, rejects cells too close to mid-grey to call
//! and checks the CRC, so a damaged stamp reads as `None` rather than as a wrong number.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::frame::{i420_len, VideoFrame};

/// Number of bits a stamp carries: sequence number, capture time and checksum.
pub const STAMP_BITS: u32 = 80;

/// Luma of a 0 bit.
const DARK: u8 = 16;
/// Luma of a 1 bit.
const LIGHT: u8 = 240;
/// Luma of the guard around and after the cells, and chroma of the whole band.
const GREY: u8 = 128;
/// A cell whose sampled luma lies within this distance of mid-grey is unreadable.
const MARGIN: u32 = 40;

/// A frame's identity as written into its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// The frame's sequence number (the low 32 bits of the source's `seq`).
    pub seq: u32,
    /// Capture time in microseconds since the source's epoch, wrapping every ~71.6 minutes.
    pub time_us: u32,
}

/// One turn of the stamp clock: `time_us` wraps after 2^32 µs (~71.6 minutes).
const STAMP_WRAP_US: u64 = 1 << 32;

/// The stamp time of `at` counted from `epoch`, in µs modulo 2^32; an instant before the epoch
/// counts back from it, so that any two instants keep their distance modulo 2^32 µs.
pub fn stamp_time_us(at: Instant, epoch: Instant) -> u32 {
    match at.checked_duration_since(epoch) {
        Some(after) => after.as_micros() as u32,
        None => 0u32.wrapping_sub(epoch.duration_since(at).as_micros() as u32),
    }
}

/// How long before `now` a frame stamped `time_us` (counted from `epoch`) was captured:
/// modular arithmetic, so it holds across wraps of the stamp clock as long as the latency
/// is under ~35 minutes. A stamp from the future (clocks of two processes a hair apart) is 0.
pub fn stamp_age(now: Instant, epoch: Instant, time_us: u32) -> Duration {
    let age = stamp_time_us(now, epoch).wrapping_sub(time_us);
    if age >= 1 << 31 {
        Duration::ZERO
    } else {
        Duration::from_micros(u64::from(age))
    }
}

/// An epoch every process on this machine agrees on: the last instant at which the system
/// clock's microseconds since 1970 were a multiple of 2^32 (or, on a machine up for less
/// than that, the next such instant). A sender that stamps from it and a receiver that reads
/// with it measure glass-to-glass latency across processes, and across machines as far as
/// their clocks agree.
pub fn wall_epoch() -> Instant {
    let now = Instant::now();
    let since_1970 = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let into_turn = (since_1970.as_micros() % u128::from(STAMP_WRAP_US)) as u64;
    now.checked_sub(Duration::from_micros(into_turn))
        .unwrap_or_else(|| now + Duration::from_micros(STAMP_WRAP_US - into_turn))
}

/// Side of one bit cell in pixels for a picture `width` pixels wide.
pub const fn stamp_cell_size(width: u32) -> u32 {
    if width >= 640 {
        16
    } else {
        8
    }
}

/// Rows at the top of a `width` x `height` picture that the stamp occupies (a multiple of 16),
/// or 0 when the picture is too small to carry a stamp.
///
/// Sources that stamp their pictures draw their own content only below this band.
pub const fn stamp_band_height(width: u32, height: u32) -> u32 {
    let cell = stamp_cell_size(width);
    let per_row = width / cell;
    if per_row == 0 {
        return 0;
    }
    let rows = STAMP_BITS.div_ceil(per_row);
    let band = (rows * cell).div_ceil(16) * 16;
    if band > height {
        0
    } else {
        band
    }
}

/// CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF) of `bytes`.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The 80 bits of `stamp`, most significant first, in the low bits of a u128.
fn encode_bits(stamp: Stamp) -> u128 {
    let mut payload = [0u8; 8];
    payload[..4].copy_from_slice(&stamp.seq.to_be_bytes());
    payload[4..].copy_from_slice(&stamp.time_us.to_be_bytes());
    let crc = crc16(&payload);
    (u128::from(stamp.seq) << 48) | (u128::from(stamp.time_us) << 16) | u128::from(crc)
}

/// Writes `stamp` into the top band of `frame` (see the module docs). Does nothing when the
/// picture is too small for a stamp or its buffer does not match its size.
pub fn write_stamp(frame: &mut VideoFrame, stamp: Stamp) {
    let (width, height) = (frame.width, frame.height);
    let band = stamp_band_height(width, height) as usize;
    if band == 0 || frame.data.len() < i420_len(width, height) {
        return;
    }
    let cell = stamp_cell_size(width) as usize;
    let per_row = width as usize / cell;
    let w = width as usize;
    let bits = encode_bits(stamp);
    let (y, u, v) = frame.planes_mut();

    for (r, row) in y[..band * w].chunks_exact_mut(w).enumerate() {
        let cell_row = r / cell;
        row.fill(GREY);
        for (col, px) in row.chunks_exact_mut(cell).take(per_row).enumerate() {
            let index = cell_row * per_row + col;
            if index >= STAMP_BITS as usize {
                break;
            }
            let bit = (bits >> (STAMP_BITS as usize - 1 - index)) & 1;
            px.fill(if bit == 1 { LIGHT } else { DARK });
        }
    }
    let chroma = band / 2 * w / 2;
    u[..chroma].fill(GREY);
    v[..chroma].fill(GREY);
}

/// Reads the stamp from the top band of `frame`, or `None` when there is none, a cell cannot
/// be called black or white, or the checksum does not match.
///
/// Samples a small square at the centre of each cell; allocates nothing.
pub fn read_stamp(frame: &VideoFrame) -> Option<Stamp> {
    let (width, height) = (frame.width, frame.height);
    let band = stamp_band_height(width, height) as usize;
    if band == 0 {
        return None;
    }
    let w = width as usize;
    let luma = frame.data.get(..w * band)?;
    let cell = stamp_cell_size(width) as usize;
    let per_row = w / cell;
    let side = cell / 4;
    let offset = (cell - side) / 2;
    let area = (side * side) as u32;

    let mut bits: u128 = 0;
    let mut index = 0;
    'rows: for cell_row in 0.. {
        let top = cell_row * cell + offset;
        for col in 0..per_row {
            if index == STAMP_BITS {
                break 'rows;
            }
            let left = col * cell + offset;
            let mut sum = 0u32;
            for line in top..top + side {
                let start = line * w + left;
                sum += luma
                    .get(start..start + side)?
                    .iter()
                    .map(|&p| u32::from(p))
                    .sum::<u32>();
            }
            let mean = sum / area;
            let bit = if mean + MARGIN <= u32::from(GREY) {
                0
            } else if mean >= u32::from(GREY) + MARGIN {
                1
            } else {
                return None;
            };
            bits = (bits << 1) | bit;
            index += 1;
        }
    }

    let seq = (bits >> 48) as u32;
    let time_us = (bits >> 16) as u32;
    let stamp = Stamp { seq, time_us };
    (encode_bits(stamp) == bits).then_some(stamp)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn stamp_ages_survive_the_wrap_and_an_epoch_in_the_future() {
        let epoch = Instant::now() + Duration::from_secs(5);
        // Captured before the epoch, shown after it: the distance holds modulo 2^32 µs.
        let capture = epoch - Duration::from_millis(10);
        let shown = epoch + Duration::from_millis(25);
        let stamped = stamp_time_us(capture, epoch);
        assert_eq!(stamp_age(shown, epoch, stamped), Duration::from_millis(35));
        // Across a turn of the stamp clock.
        let turn = Duration::from_micros(STAMP_WRAP_US);
        let capture = epoch + turn - Duration::from_millis(3);
        let shown = epoch + turn + Duration::from_millis(40);
        let stamped = stamp_time_us(capture, epoch);
        assert_eq!(stamp_age(shown, epoch, stamped), Duration::from_millis(43));
        // A stamp a hair in the future is no age at all, not 71 minutes.
        let stamped = stamp_time_us(shown + Duration::from_micros(20), epoch);
        assert_eq!(stamp_age(shown, epoch, stamped), Duration::ZERO);
    }

    #[test]
    fn two_wall_epochs_agree_modulo_the_turn() {
        let a = wall_epoch();
        let b = wall_epoch();
        let now = Instant::now();
        let (ta, tb) = (stamp_time_us(now, a), stamp_time_us(now, b));
        let apart = ta.wrapping_sub(tb).min(tb.wrapping_sub(ta));
        assert!(apart < 2_000, "epochs {apart} µs apart");
    }

    fn grey(width: u32, height: u32) -> VideoFrame {
        let mut frame = VideoFrame::black(width, height, Instant::now()).unwrap();
        frame.data.fill(GREY);
        frame
    }

    #[test]
    fn crc_matches_the_ccitt_false_check_value() {
        assert_eq!(crc16(b"123456789"), 0x29B1);
    }

    #[test]
    fn band_heights_for_common_sizes() {
        assert_eq!(stamp_band_height(320, 240), 16);
        assert_eq!(stamp_band_height(640, 480), 32);
        assert_eq!(stamp_band_height(1280, 720), 16);
        assert_eq!(stamp_band_height(1920, 1080), 16);
        assert_eq!(stamp_band_height(16, 16), 0);
        assert_eq!(stamp_band_height(0, 480), 0);
    }

    #[test]
    fn round_trips_on_a_raw_frame_at_many_sizes() {
        for (w, h) in [
            (320, 240),
            (352, 288),
            (640, 360),
            (640, 480),
            (1280, 720),
            (1920, 1080),
        ] {
            let mut frame = grey(w, h);
            for stamp in [
                Stamp { seq: 0, time_us: 0 },
                Stamp {
                    seq: 1,
                    time_us: 33_333,
                },
                Stamp {
                    seq: u32::MAX,
                    time_us: u32::MAX,
                },
                Stamp {
                    seq: 0xA5A5_5A5A,
                    time_us: 0x0123_4567,
                },
            ] {
                write_stamp(&mut frame, stamp);
                assert_eq!(read_stamp(&frame), Some(stamp), "{w}x{h}");
            }
        }
    }

    #[test]
    fn band_chroma_is_neutral_and_the_rest_untouched() {
        let mut frame = VideoFrame::black(640, 480, Instant::now()).unwrap();
        frame.data.fill(77);
        write_stamp(&mut frame, Stamp { seq: 9, time_us: 9 });
        let (y, u, v) = frame.planes();
        assert!(y[32 * 640..].iter().all(|&p| p == 77));
        assert!(u[..16 * 320].iter().all(|&p| p == GREY));
        assert!(u[16 * 320..].iter().all(|&p| p == 77));
        assert!(v[..16 * 320].iter().all(|&p| p == GREY));
    }

    #[test]
    fn a_flipped_cell_is_detected() {
        let mut frame = grey(640, 480);
        let stamp = Stamp {
            seq: 1234,
            time_us: 5_678_901,
        };
        write_stamp(&mut frame, stamp);
        for index in 0..STAMP_BITS as usize {
            let mut damaged = frame.clone();
            let (row, col) = (index / 40, index % 40);
            for line in row * 16..row * 16 + 16 {
                for px in &mut damaged.data[line * 640 + col * 16..line * 640 + col * 16 + 16] {
                    *px = if *px == LIGHT { DARK } else { LIGHT };
                }
            }
            assert_eq!(read_stamp(&damaged), None, "flipped cell {index}");
        }
    }

    #[test]
    fn unstamped_pictures_read_as_none() {
        assert_eq!(read_stamp(&grey(640, 480)), None);
        let black = VideoFrame::black(640, 480, Instant::now()).unwrap();
        assert_eq!(read_stamp(&black), None);
        let mut white = grey(640, 480);
        white.data.fill(LIGHT);
        assert_eq!(read_stamp(&white), None);
        assert_eq!(read_stamp(&grey(16, 16)), None);
    }

    #[test]
    fn a_short_buffer_reads_as_none_and_is_not_written() {
        let mut frame = grey(640, 480);
        frame.data.truncate(100);
        write_stamp(&mut frame, Stamp { seq: 1, time_us: 2 });
        assert!(frame.data.iter().all(|&p| p == GREY));
        assert_eq!(read_stamp(&frame), None);
    }

    #[test]
    fn survives_added_noise() {
        // A fixed-seed xorshift: uniform noise of +-30 on every luma sample.
        let mut state: u32 = 0x9E37_79B9;
        for (w, h) in [(320, 240), (640, 480), (1280, 720)] {
            for seq in 0..20u32 {
                let stamp = Stamp {
                    seq: seq * 7919,
                    time_us: seq * 33_333,
                };
                let mut frame = grey(w, h);
                write_stamp(&mut frame, stamp);
                for px in &mut frame.data[..(w * h) as usize] {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    let noise = (state % 61) as i32 - 30;
                    *px = (i32::from(*px) + noise).clamp(0, 255) as u8;
                }
                assert_eq!(read_stamp(&frame), Some(stamp), "{w}x{h} seq {seq}");
            }
        }
    }
}
