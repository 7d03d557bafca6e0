//! Picture quality: PSNR of a received picture against the one that was sent.
//!
//! [`psnr`] is luma PSNR, the usual single figure for a codec at a given bitrate;
//! [`psnr_yuv`] weights luma and the two chroma planes 4:1:1. Both compare 8-bit samples
//! (peak 255) and return `f64::INFINITY` for identical pictures, so callers averaging over a
//! run should leave infinite values out (or count them apart).

use crate::frame::VideoFrame;

/// Sum of squared differences and sample count of two equally long planes.
fn squared_error(a: &[u8], b: &[u8]) -> (u64, u64) {
    let sum = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = u32::from(x.abs_diff(y));
            u64::from(d * d)
        })
        .sum();
    (sum, a.len().min(b.len()) as u64)
}

/// PSNR in dB of a mean squared error over 8-bit samples; infinite for zero error.
fn from_mse(mse: f64) -> f64 {
    if mse <= 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    }
}

/// The planes of `frame`, or `None` if its buffer is shorter than its size says.
fn planes(frame: &VideoFrame) -> Option<(&[u8], &[u8], &[u8])> {
    let y = frame.width as usize * frame.height as usize;
    let c = y / 4;
    Some((
        frame.data.get(..y)?,
        frame.data.get(y..y + c)?,
        frame.data.get(y + c..y + 2 * c)?,
    ))
}

/// Luma PSNR in dB of `received` against `reference`: `None` if their sizes differ (or a
/// buffer is short), `f64::INFINITY` if the luma planes are identical.
pub fn psnr(reference: &VideoFrame, received: &VideoFrame) -> Option<f64> {
    psnr_y(reference, received)
}

/// Luma PSNR in dB; the same as [`psnr`].
pub fn psnr_y(reference: &VideoFrame, received: &VideoFrame) -> Option<f64> {
    if (reference.width, reference.height) != (received.width, received.height) {
        return None;
    }
    let (a, _, _) = planes(reference)?;
    let (b, _, _) = planes(received)?;
    let (sum, n) = squared_error(a, b);
    (n > 0).then(|| from_mse(sum as f64 / n as f64))
}

/// PSNR in dB over all three planes, the mean squared errors weighted 4:1:1 (Y:U:V):
/// `None` if the sizes differ, `f64::INFINITY` for identical pictures.
pub fn psnr_yuv(reference: &VideoFrame, received: &VideoFrame) -> Option<f64> {
    if (reference.width, reference.height) != (received.width, received.height) {
        return None;
    }
    let (ay, au, av) = planes(reference)?;
    let (by, bu, bv) = planes(received)?;
    let (sy, ny) = squared_error(ay, by);
    let (su, nu) = squared_error(au, bu);
    let (sv, nv) = squared_error(av, bv);
    if ny == 0 || nu == 0 || nv == 0 {
        return None;
    }
    let mse = (4.0 * sy as f64 / ny as f64 + su as f64 / nu as f64 + sv as f64 / nv as f64) / 6.0;
    Some(from_mse(mse))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn frame(width: u32, height: u32, value: u8) -> VideoFrame {
        let mut f = VideoFrame::black(width, height, Instant::now()).unwrap();
        f.data.fill(value);
        f
    }

    #[test]
    fn identical_frames_are_infinite() {
        let a = frame(64, 48, 100);
        assert_eq!(psnr(&a, &a.clone()), Some(f64::INFINITY));
        assert_eq!(psnr_yuv(&a, &a.clone()), Some(f64::INFINITY));
    }

    #[test]
    fn different_sizes_give_none() {
        assert_eq!(psnr(&frame(64, 48, 0), &frame(48, 64, 0)), None);
        assert_eq!(psnr_yuv(&frame(64, 48, 0), &frame(64, 50, 0)), None);
    }

    #[test]
    fn a_uniform_error_of_one_level_is_48_1_db() {
        let a = frame(64, 48, 100);
        let b = frame(64, 48, 101);
        let expected = 10.0 * (255.0f64 * 255.0).log10();
        assert!((psnr(&a, &b).unwrap() - expected).abs() < 1e-9);
        assert!((psnr_yuv(&a, &b).unwrap() - expected).abs() < 1e-9);
        assert!((expected - 48.13).abs() < 0.01);
    }

    #[test]
    fn chroma_counts_only_in_the_weighted_figure() {
        let a = frame(64, 48, 100);
        let mut b = a.clone();
        let luma = 64 * 48;
        b.data[luma..].fill(110);
        assert_eq!(psnr(&a, &b), Some(f64::INFINITY));
        // MSE = (0 * 4 + 100 + 100) / 6.
        let expected = 10.0 * (255.0f64 * 255.0 / (200.0 / 6.0)).log10();
        assert!((psnr_yuv(&a, &b).unwrap() - expected).abs() < 1e-9);
    }

    #[test]
    fn short_buffers_give_none() {
        let a = frame(64, 48, 100);
        let mut b = a.clone();
        b.data.truncate(10);
        assert_eq!(psnr(&a, &b), None);
    }
}
