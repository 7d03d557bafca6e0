//! A moving synthetic test picture whose frames carry a stamp of their sequence number and
//! capture time, for measuring latency, drops and quality without a camera.
//!
//! Below the stamp band ([`stamp_band_height`]) the top two thirds show colour bars
//! scrolling left over a vertical brightness ramp, the bottom third a periodic texture
//! drifting diagonally, and a box bounces over both. Frame `n` depends only on `n` and the
//! picture size, so a run can be reproduced exactly; the encoder has motion, edges and
//! texture to work on, as with a camera.

use std::f32::consts::TAU;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::frame::{check_size, Read, VideoFrame};
use crate::video::stamp::{stamp_band_height, stamp_time_us, write_stamp, Stamp};
use crate::video::VideoSource;

/// Side of the square texture tile, a power of two so that wrapping is a mask.
const TILE: usize = 256;
/// Bars scroll left by this many pixels per frame (even, so chroma moves by whole samples).
const BAR_SPEED: u64 = 4;
/// Texture drift per frame, in pixels right and down.
const TEXTURE_DX: u64 = 3;
const TEXTURE_DY: u64 = 2;
/// Box speed per frame, in pixels right and down (before bouncing).
const BOX_DX: u64 = 6;
const BOX_DY: u64 = 4;
/// 75 % colour bars in BT.601 limited range: (Y, U, V), white to black.
const BARS: [(u8, u8, u8); 8] = [
    (180, 128, 128),
    (162, 44, 142),
    (131, 156, 44),
    (112, 72, 58),
    (84, 184, 198),
    (65, 100, 212),
    (35, 212, 114),
    (16, 128, 128),
];
/// Colour of the bouncing box, and the luma of its darker core.
const BOX_COLOUR: (u8, u8, u8) = (210, 90, 200);
const BOX_CORE: u8 = 60;
/// Chroma of the texture region.
const TEXTURE_UV: (u8, u8) = (110, 140);

/// The moving, stamped test picture: a [`VideoSource`] that never ends and is never pending.
///
/// Frame `n` has `seq = n`, `capture = start + n / fps` and the stamp
/// `{ seq: n, time_us: (capture - epoch) in µs }`; the epoch is `start` unless
/// [`with_epoch`](Self::with_epoch) chose another, and is what [`VideoSource::stamp_epoch`]
/// returns.
#[derive(Debug, Clone)]
pub struct TestPattern {
    width: u32,
    height: u32,
    fps: u32,
    start: Instant,
    /// The instant stamps count from.
    epoch: Instant,
    next: u64,
    /// One bar cycle twice over, so that any scroll offset is one contiguous copy.
    bars_y: Vec<u8>,
    bars_u: Vec<u8>,
    bars_v: Vec<u8>,
    /// Brightness added to each luma row of the bars.
    ramp: Vec<u8>,
    /// `TILE` x `TILE` luma texture, periodic in both directions.
    texture: Vec<u8>,
}

impl TestPattern {
    /// A pattern of `width` x `height` at `fps` frames per second, whose frame 0 is captured
    /// at `start`.
    pub fn new(width: u32, height: u32, fps: u32, start: Instant) -> Result<Self, Error> {
        if fps == 0 || fps > 1000 {
            return Err(Error::Config(format!(
                "test pattern at {fps} fps: choose 1 to 1000"
            )));
        }
        let mut pattern = Self {
            width: 0,
            height: 0,
            fps,
            start,
            epoch: start,
            next: 0,
            bars_y: Vec::new(),
            bars_u: Vec::new(),
            bars_v: Vec::new(),
            ramp: Vec::new(),
            texture: texture_tile(),
        };
        pattern.set_size(width, height)?;
        Ok(pattern)
    }

    /// Stamps capture times counted from `epoch` instead of from the first frame, for example
    /// from [`wall_epoch`](super::stamp::wall_epoch) so that another process can read the
    /// latency.
    pub fn with_epoch(mut self, epoch: Instant) -> Self {
        self.epoch = epoch;
        self
    }

    /// Changes the picture size from the next frame on; sequence numbers and times go on.
    pub fn set_size(&mut self, width: u32, height: u32) -> Result<(), Error> {
        check_size(width, height)?;
        if (width, height) == (self.width, self.height) {
            return Ok(());
        }
        let (w, cw) = (width as usize, width as usize / 2);
        self.bars_y.clear();
        self.bars_u.clear();
        self.bars_v.clear();
        for x in 0..2 * w {
            self.bars_y.push(BARS[(x % w) * BARS.len() / w].0);
        }
        for x in 0..2 * cw {
            let (_, u, v) = BARS[(x % cw) * BARS.len() / cw];
            self.bars_u.push(u);
            self.bars_v.push(v);
        }
        let h = height as usize;
        self.ramp.clear();
        self.ramp.extend((0..h).map(|row| (row * 48 / h) as u8));
        self.width = width;
        self.height = height;
        Ok(())
    }

    /// The sequence number the next [`VideoSource::read`] will return.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Capture time of frame `n`, as an offset from `start`.
    pub fn offset(&self, n: u64) -> Duration {
        let nanos = u128::from(n) * 1_000_000_000 / u128::from(self.fps);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Draws frame `n` into `frame` (resized to the current size) and sets its `seq` and
    /// `capture`, without moving the source on.
    pub fn render(&self, n: u64, frame: &mut VideoFrame) -> Result<(), Error> {
        frame.resize(self.width, self.height)?;
        let (w, h) = (self.width as usize, self.height as usize);
        let band = stamp_band_height(self.width, self.height) as usize;
        let texture_top = (band + (h - band) * 2 / 3) & !1;
        let (y, u, v) = frame.planes_mut();

        // Scrolling bars over a brightness ramp.
        let shift = (n * BAR_SPEED % w as u64) as usize;
        let bars = &self.bars_y[shift..shift + w];
        for (row, &lift) in y[band * w..texture_top * w]
            .chunks_exact_mut(w)
            .zip(&self.ramp[band..texture_top])
        {
            for (d, &s) in row.iter_mut().zip(bars) {
                *d = s.saturating_add(lift);
            }
        }
        let cw = w / 2;
        let (c_band, c_texture) = (band / 2 * cw, texture_top / 2 * cw);
        let cshift = shift / 2;
        for row in u[c_band..c_texture].chunks_exact_mut(cw) {
            row.copy_from_slice(&self.bars_u[cshift..cshift + cw]);
        }
        for row in v[c_band..c_texture].chunks_exact_mut(cw) {
            row.copy_from_slice(&self.bars_v[cshift..cshift + cw]);
        }

        // Drifting texture.
        let tx = (n * TEXTURE_DX) as usize % TILE;
        let ty = (n * TEXTURE_DY) as usize % TILE;
        for (i, row) in y[texture_top * w..].chunks_exact_mut(w).enumerate() {
            let line = (i + TILE - ty) % TILE * TILE;
            copy_wrapped(row, &self.texture[line..line + TILE], (TILE - tx) % TILE);
        }
        u[c_texture..].fill(TEXTURE_UV.0);
        v[c_texture..].fill(TEXTURE_UV.1);

        // Bouncing box, on even coordinates so that chroma covers it exactly.
        let side = ((h - band) / 4).max(2).min(w).min(h - band) & !1;
        if side > 0 {
            let bx = bounce(n * BOX_DX, (w - side) as u64) & !1;
            let by = band + (bounce(n * BOX_DY, (h - band - side) as u64) & !1);
            let core = (side / 4) & !1;
            for (i, row) in y[by * w..(by + side) * w].chunks_exact_mut(w).enumerate() {
                row[bx..bx + side].fill(BOX_COLOUR.0);
                if i >= core && i < side - core {
                    row[bx + core..bx + side - core].fill(BOX_CORE);
                }
            }
            for plane_row in (by / 2)..(by + side) / 2 {
                let start = plane_row * cw + bx / 2;
                u[start..start + side / 2].fill(BOX_COLOUR.1);
                v[start..start + side / 2].fill(BOX_COLOUR.2);
            }
        }

        let capture = self.start + self.offset(n);
        write_stamp(
            frame,
            Stamp {
                seq: n as u32,
                time_us: stamp_time_us(capture, self.epoch),
            },
        );
        frame.seq = n;
        frame.capture = capture;
        Ok(())
    }
}

impl VideoSource for TestPattern {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn read(&mut self, _now: Instant, frame: &mut VideoFrame) -> Result<Read, Error> {
        self.render(self.next, frame)?;
        self.next += 1;
        Ok(Read::Frame)
    }

    fn stamp_epoch(&self) -> Option<Instant> {
        Some(self.epoch)
    }
}

/// Position on a path of length `range` walked back and forth, after `travelled` pixels.
fn bounce(travelled: u64, range: u64) -> usize {
    if range == 0 {
        return 0;
    }
    let p = travelled % (2 * range);
    (if p < range { p } else { 2 * range - p }) as usize
}

/// Fills `dst` with `src` repeated, starting at `src[start]`.
fn copy_wrapped(dst: &mut [u8], src: &[u8], start: usize) {
    let mut from = start;
    let mut rest = dst;
    while !rest.is_empty() {
        let n = (src.len() - from).min(rest.len());
        let (head, tail) = rest.split_at_mut(n);
        head.copy_from_slice(&src[from..from + n]);
        rest = tail;
        from = 0;
    }
}

/// A periodic luma texture: crossed sine gratings, a diagonal wave and fine hashed noise.
fn texture_tile() -> Vec<u8> {
    let mut tile = Vec::with_capacity(TILE * TILE);
    for y in 0..TILE {
        for x in 0..TILE {
            let (fx, fy) = (x as f32, y as f32);
            let grating = (TAU * fx / 32.0).sin() * (TAU * fy / 64.0).sin();
            let wave = (TAU * (fx + fy) / 128.0).sin();
            let mut h = (x as u32).wrapping_mul(0x9E37_79B1) ^ (y as u32).wrapping_mul(0x85EB_CA77);
            h ^= h >> 15;
            h = h.wrapping_mul(0x2C1B_3C6D);
            h ^= h >> 12;
            let noise = (h & 15) as f32 - 7.5;
            let value = 128.0 + 55.0 * grating + 30.0 * wave + noise;
            tile.push(value.clamp(16.0, 235.0) as u8);
        }
    }
    tile
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::stamp::read_stamp;

    #[test]
    fn frames_carry_seq_capture_and_stamp() {
        let start = Instant::now();
        let mut pattern = TestPattern::new(640, 480, 30, start).unwrap();
        let mut frame = VideoFrame::black(2, 2, start).unwrap();
        for n in 0..40u64 {
            assert_eq!(pattern.read(start, &mut frame).unwrap(), Read::Frame);
            assert_eq!((frame.width, frame.height, frame.seq), (640, 480, n));
            let us = n * 1_000_000 / 30;
            assert_eq!(
                frame.capture,
                start + Duration::from_nanos(n * 1_000_000_000 / 30)
            );
            let stamp = read_stamp(&frame).unwrap();
            assert_eq!(
                stamp,
                Stamp {
                    seq: n as u32,
                    time_us: us as u32
                }
            );
        }
        assert_eq!(pattern.stamp_epoch(), Some(start));
        assert_eq!(pattern.next_seq(), 40);
    }

    #[test]
    fn deterministic_and_moving() {
        let start = Instant::now();
        let pattern = TestPattern::new(320, 240, 30, start).unwrap();
        let mut a = VideoFrame::black(320, 240, start).unwrap();
        let mut b = a.clone();
        pattern.render(17, &mut a).unwrap();
        pattern.clone().render(17, &mut b).unwrap();
        assert_eq!(a, b);
        pattern.render(18, &mut b).unwrap();
        let band = stamp_band_height(320, 240) as usize * 320;
        let changed = a.y()[band..]
            .iter()
            .zip(&b.y()[band..])
            .filter(|(p, q)| p != q)
            .count();
        // The texture, the box and the bar edges move: over a third of the picture changes.
        assert!(
            changed > a.y()[band..].len() / 3,
            "{changed} pixels changed"
        );
    }

    #[test]
    fn resizes_mid_stream_and_keeps_counting() {
        let start = Instant::now();
        let mut pattern = TestPattern::new(640, 480, 25, start).unwrap();
        let mut frame = VideoFrame::black(640, 480, start).unwrap();
        pattern.read(start, &mut frame).unwrap();
        pattern.set_size(320, 240).unwrap();
        assert_eq!(pattern.size(), (320, 240));
        pattern.read(start, &mut frame).unwrap();
        assert_eq!((frame.width, frame.height, frame.seq), (320, 240, 1));
        assert_eq!(read_stamp(&frame).unwrap().seq, 1);
        assert!(pattern.set_size(321, 240).is_err());
        assert_eq!(pattern.size(), (320, 240));
    }

    #[test]
    fn tiny_and_odd_shapes_do_not_panic() {
        let start = Instant::now();
        for (w, h) in [(2, 2), (16, 16), (4096, 2), (2, 2304), (322, 18), (640, 32)] {
            let mut pattern = TestPattern::new(w, h, 30, start).unwrap();
            let mut frame = VideoFrame::black(2, 2, start).unwrap();
            for _ in 0..3 {
                pattern.read(start, &mut frame).unwrap();
            }
            assert_eq!((frame.width, frame.height), (w, h));
        }
        assert!(TestPattern::new(640, 480, 0, start).is_err());
        assert!(TestPattern::new(0, 480, 30, start).is_err());
    }
}
