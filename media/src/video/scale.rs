//! Picture scaling for resolution adaptation: a call that must send fewer bits sends smaller
//! pictures, scaled from the source's.

use crate::error::Error;
use crate::frame::{check_size, VideoFrame};
use crate::video::stamp::{read_stamp, write_stamp};

/// Scales I420 pictures to a target size with bilinear filtering, in 8-bit fixed point.
///
/// The sampling tables are built when the source or target size changes and reused after, so a
/// steady stream allocates nothing per frame. Call [`scale`](Self::scale) once per frame.
#[derive(Debug, Default)]
pub struct Scaler {
    /// (source size, target size) the tables were built for.
    key: Option<((u32, u32), (u32, u32))>,
    /// Per output column of the luma plane: left source column and weight of the right one (0..=256).
    luma_x: Vec<(u32, u16)>,
    /// Per output row of the luma plane: top source row and weight of the lower one.
    luma_y: Vec<(u32, u16)>,
    chroma_x: Vec<(u32, u16)>,
    chroma_y: Vec<(u32, u16)>,
}

impl Scaler {
    /// A scaler with no tables yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `src` scaled to `width` x `height` into `out` (resized as needed), carrying over
    /// `seq` and `capture`. A stamp in the source picture is written again at the new size, so it
    /// still reads back.
    pub fn scale(
        &mut self,
        src: &VideoFrame,
        width: u32,
        height: u32,
        out: &mut VideoFrame,
    ) -> Result<(), Error> {
        check_size(width, height)?;
        out.resize(width, height)?;
        out.seq = src.seq;
        out.capture = src.capture;
        let key = ((src.width, src.height), (width, height));
        if self.key != Some(key) {
            self.luma_x = taps(src.width, width);
            self.luma_y = taps(src.height, height);
            self.chroma_x = taps(src.width / 2, width / 2);
            self.chroma_y = taps(src.height / 2, height / 2);
            self.key = Some(key);
        }
        let stamp = read_stamp(src);
        let (sy, su, sv) = src.planes();
        let (sw, cw) = (src.width as usize, src.width as usize / 2);
        let (oy, ou, ov) = out.planes_mut();
        resample(sy, sw, oy, width as usize, &self.luma_x, &self.luma_y);
        resample(
            su,
            cw,
            ou,
            width as usize / 2,
            &self.chroma_x,
            &self.chroma_y,
        );
        resample(
            sv,
            cw,
            ov,
            width as usize / 2,
            &self.chroma_x,
            &self.chroma_y,
        );
        if let Some(stamp) = stamp {
            write_stamp(out, stamp);
        }
        Ok(())
    }
}

/// For each of `dst` output positions, the source position to its left/top and the weight
/// (out of 256) of the next one, sampling pixel centres.
fn taps(src: u32, dst: u32) -> Vec<(u32, u16)> {
    let last = src.saturating_sub(1);
    (0..dst)
        .map(|i| {
            let pos = ((f64::from(i) + 0.5) * f64::from(src) / f64::from(dst) - 0.5).max(0.0);
            let left = (pos.floor() as u32).min(last);
            let weight = if left >= last {
                0
            } else {
                ((pos - f64::from(left)) * 256.0).round() as u16
            };
            (left, weight)
        })
        .collect()
}

/// Bilinear resampling of one plane of stride `src_w` into `dst` of stride `dst_w`.
fn resample(
    src: &[u8],
    src_w: usize,
    dst: &mut [u8],
    dst_w: usize,
    xs: &[(u32, u16)],
    ys: &[(u32, u16)],
) {
    let rows = src.len() / src_w.max(1);
    for (dst_row, &(y, wy)) in dst.chunks_exact_mut(dst_w.max(1)).zip(ys) {
        let y = y as usize;
        let top = &src[y * src_w..(y + 1) * src_w];
        let below = &src[(y + 1).min(rows - 1) * src_w..][..src_w];
        let wy = u32::from(wy);
        for (d, &(x, wx)) in dst_row.iter_mut().zip(xs) {
            let x = x as usize;
            let x1 = (x + 1).min(src_w - 1);
            let wx = u32::from(wx);
            let t = u32::from(top[x]) * (256 - wx) + u32::from(top[x1]) * wx;
            let b = u32::from(below[x]) * (256 - wx) + u32::from(below[x1]) * wx;
            *d = ((t * (256 - wy) + b * wy + (1 << 15)) >> 16) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::measure::video::psnr;
    use crate::video::pattern::TestPattern;
    use crate::video::VideoSource;

    #[test]
    fn a_flat_picture_stays_flat_and_a_stamp_survives_the_new_size() {
        let start = Instant::now();
        let mut pattern = TestPattern::new(1280, 720, 30, start).unwrap();
        let mut frame = VideoFrame::black(1280, 720, start).unwrap();
        pattern.read(start, &mut frame).unwrap();
        let stamp = read_stamp(&frame).expect("the pattern is stamped");
        let mut scaler = Scaler::new();
        let mut small = VideoFrame::black(2, 2, start).unwrap();
        for (w, h) in [(852, 480), (640, 360), (426, 240)] {
            scaler.scale(&frame, w, h, &mut small).unwrap();
            assert_eq!((small.width, small.height), (w, h));
            assert_eq!(read_stamp(&small), Some(stamp), "{w}x{h}");
            assert_eq!(small.seq, frame.seq);
        }

        let mut grey = VideoFrame::black(640, 480, start).unwrap();
        grey.data.fill(77);
        scaler.scale(&grey, 320, 240, &mut small).unwrap();
        assert!(small.data.iter().all(|&p| p == 77));
    }

    #[test]
    fn scaling_down_and_up_again_keeps_the_picture() {
        let start = Instant::now();
        let mut pattern = TestPattern::new(640, 480, 30, start).unwrap();
        let mut frame = VideoFrame::black(640, 480, start).unwrap();
        pattern.read(start, &mut frame).unwrap();
        let mut scaler = Scaler::new();
        let mut up = Scaler::new();
        let mut half = VideoFrame::black(2, 2, start).unwrap();
        let mut back = VideoFrame::black(2, 2, start).unwrap();
        scaler.scale(&frame, 480, 360, &mut half).unwrap();
        up.scale(&half, 640, 480, &mut back).unwrap();
        let p = psnr(&frame, &back).unwrap();
        assert!(
            p > 22.0,
            "PSNR after 640x480 -> 480x360 -> 640x480: {p:.1} dB"
        );
        assert!(scaler.scale(&frame, 481, 360, &mut half).is_err());
    }
}
