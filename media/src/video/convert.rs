//! Pixel-format conversions into I420: what cameras deliver (YUYV, NV12, MJPEG, RGB) turned
//! into the planar 4:2:0 frames the rest of duet carries.
//!
//! Every conversion writes into a [`VideoFrame`] the caller keeps: once that frame has the
//! right size, a raw conversion allocates nothing. Input is checked first; too little data is
//! an error, never a panic. Device buffers are often padded, so bytes past the picture are
//! ignored.
//!
//! Levels follow BT.601 limited range ("studio swing", Y 16..=235): RGB goes through the
//! integer BT.601 matrix and JPEG's full-range YCbCr is scaled down, so every source gives
//! the same levels. Chroma is the average of each 2x2 block (centred siting, as in Y4M's
//! `C420jpeg`).

use zune_jpeg::errors::DecodeErrors;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::error::{CodecError, Error};
use crate::frame::VideoFrame;

/// Largest picture accepted from a JPEG header, matching [`crate::frame::check_size`].
const MAX_WIDTH: usize = 4096;
const MAX_HEIGHT: usize = 2304;

/// Resizes `out` and returns the first `need` bytes of `src`, or an error naming the format.
fn input<'a>(
    format: &'static str,
    src: &'a [u8],
    width: u32,
    height: u32,
    need: usize,
    out: &mut VideoFrame,
) -> Result<&'a [u8], Error> {
    out.resize(width, height)?;
    src.get(..need).ok_or_else(|| {
        CodecError::Mismatch {
            codec: format,
            reason: format!(
                "a {width}x{height} picture needs {need} bytes, got {}",
                src.len()
            ),
        }
        .into()
    })
}

/// Converts packed YUYV 4:2:2 (Y0 U Y1 V per pixel pair) to I420, averaging the chroma of
/// each pair of rows. Call once per captured frame.
pub fn yuyv_to_i420(
    src: &[u8],
    width: u32,
    height: u32,
    out: &mut VideoFrame,
) -> Result<(), Error> {
    let w = width as usize;
    let src = input("yuyv", src, width, height, w * 2 * height as usize, out)?;
    let (yp, up, vp) = out.planes_mut();
    let rows = src
        .chunks_exact(4 * w)
        .zip(yp.chunks_exact_mut(2 * w))
        .zip(up.chunks_exact_mut(w / 2).zip(vp.chunks_exact_mut(w / 2)));
    for ((pair, ys), (us, vs)) in rows {
        let (r0, r1) = pair.split_at(2 * w);
        let (y0, y1) = ys.split_at_mut(w);
        for (((a, b), (ya, yb)), (u, v)) in r0
            .chunks_exact(4)
            .zip(r1.chunks_exact(4))
            .zip(y0.chunks_exact_mut(2).zip(y1.chunks_exact_mut(2)))
            .zip(us.iter_mut().zip(vs.iter_mut()))
        {
            if let ([a0, au, a1, av], [b0, bu, b1, bv], [ya0, ya1], [yb0, yb1]) = (a, b, ya, yb) {
                *ya0 = *a0;
                *ya1 = *a1;
                *yb0 = *b0;
                *yb1 = *b1;
                *u = avg2(*au, *bu);
                *v = avg2(*av, *bv);
            }
        }
    }
    Ok(())
}

/// Converts NV12 (a Y plane, then one plane of interleaved U,V at quarter size) to I420.
/// Call once per captured frame.
pub fn nv12_to_i420(
    src: &[u8],
    width: u32,
    height: u32,
    out: &mut VideoFrame,
) -> Result<(), Error> {
    let luma = width as usize * height as usize;
    let src = input("nv12", src, width, height, luma + luma / 2, out)?;
    let (sy, suv) = src.split_at(luma);
    let (yp, up, vp) = out.planes_mut();
    yp.copy_from_slice(sy);
    for (uv, (u, v)) in suv.chunks_exact(2).zip(up.iter_mut().zip(vp.iter_mut())) {
        if let [su, sv] = uv {
            *u = *su;
            *v = *sv;
        }
    }
    Ok(())
}

/// Converts packed 8-bit RGB (R, G, B per pixel) to I420 with the BT.601 limited-range
/// matrix, in integer arithmetic. Call once per frame.
pub fn rgb24_to_i420(
    src: &[u8],
    width: u32,
    height: u32,
    out: &mut VideoFrame,
) -> Result<(), Error> {
    let w = width as usize;
    let src = input("rgb24", src, width, height, w * 3 * height as usize, out)?;
    let (yp, up, vp) = out.planes_mut();
    let rows = src
        .chunks_exact(6 * w)
        .zip(yp.chunks_exact_mut(2 * w))
        .zip(up.chunks_exact_mut(w / 2).zip(vp.chunks_exact_mut(w / 2)));
    for ((pair, ys), (us, vs)) in rows {
        for (line, y_line) in pair.chunks_exact(3 * w).zip(ys.chunks_exact_mut(w)) {
            for (px, y) in line.chunks_exact(3).zip(y_line) {
                if let [r, g, b] = *px {
                    *y = luma(i32::from(r), i32::from(g), i32::from(b));
                }
            }
        }
        let (r0, r1) = pair.split_at(3 * w);
        for ((a, b), (u, v)) in r0
            .chunks_exact(6)
            .zip(r1.chunks_exact(6))
            .zip(us.iter_mut().zip(vs.iter_mut()))
        {
            if let ([ar0, ag0, ab0, ar1, ag1, ab1], [br0, bg0, bb0, br1, bg1, bb1]) = (a, b) {
                let sum = |p: u8, q: u8, r: u8, s: u8| {
                    i32::from(p) + i32::from(q) + i32::from(r) + i32::from(s)
                };
                (*u, *v) = chroma4(
                    sum(*ar0, *ar1, *br0, *br1),
                    sum(*ag0, *ag1, *bg0, *bg1),
                    sum(*ab0, *ab1, *bb0, *bb1),
                );
            }
        }
    }
    Ok(())
}

/// BT.601 limited-range luma of one pixel.
#[inline]
fn luma(r: i32, g: i32, b: i32) -> u8 {
    // 66 + 129 + 25 = 220 (of 256): the result lies in 16..=235.
    (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8
}

/// BT.601 limited-range (Cb, Cr) of a 2x2 block, from the sums of its four pixels.
#[inline]
fn chroma4(rs: i32, gs: i32, bs: i32) -> (u8, u8) {
    let u = ((-38 * rs - 74 * gs + 112 * bs + 512) >> 10) + 128;
    let v = ((112 * rs - 94 * gs - 18 * bs + 512) >> 10) + 128;
    (u as u8, v as u8)
}

#[inline]
fn avg2(a: u8, b: u8) -> u8 {
    ((u16::from(a) + u16::from(b) + 1) >> 1) as u8
}

/// Full-range (JPEG) luma 0..=255 to limited range 16..=235, rounded.
const Y_TO_LIMITED: [u8; 256] = range_table(219);
/// Full-range chroma 0..=255 (128 = none) to limited range 16..=240, rounded.
const C_TO_LIMITED: [u8; 256] = range_table(224);

/// `16 + round(i * span / 255)`: luma uses span 219; for chroma, whose neutral 128 must stay
/// 128, span 224 maps 0..=255 onto 16..=240 with 128 landing on 128.
const fn range_table(span: u32) -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = (16 + (i as u32 * span + 127) / 255) as u8;
        i += 1;
    }
    table
}

/// Decodes Motion-JPEG frames (one JPEG picture each, as webcams send them) to I420.
///
/// Keep one per stream and call [`MjpegDecoder::decode`] for every frame: it reuses its
/// decode buffer, so only the JPEG library's own working memory is allocated per picture.
#[derive(Debug, Default)]
pub struct MjpegDecoder {
    /// The decoded picture, 1 or 3 bytes per pixel.
    scratch: Vec<u8>,
}

impl MjpegDecoder {
    /// A decoder with an empty buffer; it grows on the first frame.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one JPEG picture into `out`, resized to the picture's size (which must be
    /// even and at most 4096x2304). YCbCr pictures of any subsampling (4:2:0, 4:2:2, 4:4:4)
    /// and greyscale are converted directly; RGB and CMYK ones through [`rgb24_to_i420`].
    /// A damaged picture is a recoverable [`CodecError::Decode`].
    pub fn decode(&mut self, src: &[u8], out: &mut VideoFrame) -> Result<(), Error> {
        let options = DecoderOptions::default()
            .set_max_width(MAX_WIDTH)
            .set_max_height(MAX_HEIGHT);
        let mut decoder = JpegDecoder::new_with_options(ZCursor::new(src), options);
        decoder.decode_headers().map_err(jpeg_error)?;
        let (Some((w, h)), Some(input)) = (decoder.dimensions(), decoder.input_colorspace()) else {
            return Err(decode_error("no picture header".into()));
        };
        let output = match input {
            ColorSpace::YCbCr => ColorSpace::YCbCr,
            ColorSpace::Luma => ColorSpace::Luma,
            _ => ColorSpace::RGB,
        };
        decoder.set_options(options.jpeg_set_out_colorspace(output));
        // Both fit in u32: the decoder refused anything over MAX_WIDTH x MAX_HEIGHT.
        let (width, height) = (w as u32, h as u32);
        if width % 2 != 0 || height % 2 != 0 {
            return Err(decode_error(format!(
                "picture is {width}x{height}: I420 needs an even width and height"
            )));
        }
        let len = w * h * output.num_components();
        self.scratch.resize(len, 0);
        decoder.decode_into(&mut self.scratch).map_err(jpeg_error)?;
        match output {
            ColorSpace::YCbCr => ycbcr444_full_to_i420(&self.scratch, width, height, out),
            ColorSpace::Luma => luma_full_to_i420(&self.scratch, width, height, out),
            _ => rgb24_to_i420(&self.scratch, width, height, out),
        }
    }
}

/// Decodes one JPEG picture to I420 with a fresh [`MjpegDecoder`]. For a stream of frames,
/// keep an [`MjpegDecoder`] instead: this allocates its decode buffer on every call.
pub fn mjpeg_to_i420(src: &[u8], out: &mut VideoFrame) -> Result<(), Error> {
    MjpegDecoder::new().decode(src, out)
}

fn jpeg_error(e: DecodeErrors) -> Error {
    decode_error(e.to_string())
}

fn decode_error(reason: String) -> Error {
    CodecError::Decode {
        codec: "mjpeg",
        reason,
    }
    .into()
}

/// Full-range interleaved YCbCr 4:4:4 (a JPEG decoder's output) to limited-range I420.
fn ycbcr444_full_to_i420(
    src: &[u8],
    width: u32,
    height: u32,
    out: &mut VideoFrame,
) -> Result<(), Error> {
    let w = width as usize;
    let src = input("mjpeg", src, width, height, w * 3 * height as usize, out)?;
    let (yp, up, vp) = out.planes_mut();
    let rows = src
        .chunks_exact(6 * w)
        .zip(yp.chunks_exact_mut(2 * w))
        .zip(up.chunks_exact_mut(w / 2).zip(vp.chunks_exact_mut(w / 2)));
    for ((pair, ys), (us, vs)) in rows {
        for (line, y_line) in pair.chunks_exact(3 * w).zip(ys.chunks_exact_mut(w)) {
            for (px, y) in line.chunks_exact(3).zip(y_line) {
                if let [py, _, _] = *px {
                    *y = Y_TO_LIMITED[usize::from(py)];
                }
            }
        }
        let (r0, r1) = pair.split_at(3 * w);
        for ((a, b), (u, v)) in r0
            .chunks_exact(6)
            .zip(r1.chunks_exact(6))
            .zip(us.iter_mut().zip(vs.iter_mut()))
        {
            if let ([_, ab0, ar0, _, ab1, ar1], [_, bb0, br0, _, bb1, br1]) = (a, b) {
                // The rounded mean of four bytes: at most 255, so the lookups stay in bounds.
                let mean = |p: u8, q: u8, r: u8, s: u8| {
                    (usize::from(p) + usize::from(q) + usize::from(r) + usize::from(s) + 2) >> 2
                };
                *u = C_TO_LIMITED[mean(*ab0, *ab1, *bb0, *bb1) & 0xff];
                *v = C_TO_LIMITED[mean(*ar0, *ar1, *br0, *br1) & 0xff];
            }
        }
    }
    Ok(())
}

/// Full-range greyscale to limited-range I420 with neutral chroma.
fn luma_full_to_i420(
    src: &[u8],
    width: u32,
    height: u32,
    out: &mut VideoFrame,
) -> Result<(), Error> {
    let need = width as usize * height as usize;
    let src = input("mjpeg", src, width, height, need, out)?;
    let (yp, up, vp) = out.planes_mut();
    for (y, s) in yp.iter_mut().zip(src) {
        *y = Y_TO_LIMITED[usize::from(*s)];
    }
    up.fill(128);
    vp.fill(128);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

    use super::*;

    fn frame() -> VideoFrame {
        VideoFrame::black(2, 2, Instant::now()).unwrap()
    }

    /// An RGB picture of `w` x `h` filled with `rgb`.
    fn solid(w: usize, h: usize, rgb: [u8; 3]) -> Vec<u8> {
        rgb.iter().copied().cycle().take(w * h * 3).collect()
    }

    /// BT.601 limited range in floating point, the reference for the integer matrix.
    fn reference(r: f64, g: f64, b: f64) -> [f64; 3] {
        [
            16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0,
            128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0,
            128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0,
        ]
    }

    fn yuv(frame: &VideoFrame) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let (y, u, v) = frame.planes();
        (y.to_vec(), u.to_vec(), v.to_vec())
    }

    #[test]
    fn rgb_primaries_and_greys_have_bt601_limited_levels() {
        let cases = [
            ([255, 0, 0], [82, 90, 240]),
            ([0, 255, 0], [144, 54, 34]),
            ([0, 0, 255], [41, 240, 110]),
            ([255, 255, 255], [235, 128, 128]),
            ([0, 0, 0], [16, 128, 128]),
            ([128, 128, 128], [126, 128, 128]),
        ];
        let mut out = frame();
        for (rgb, [y, u, v]) in cases {
            rgb24_to_i420(&solid(4, 2, rgb), 4, 2, &mut out).unwrap();
            assert_eq!(
                yuv(&out),
                (vec![y; 8], vec![u; 2], vec![v; 2]),
                "rgb {rgb:?}"
            );
        }
    }

    #[test]
    fn rgb_matches_the_floating_point_matrix_within_one_level() {
        let mut out = frame();
        for i in 0..512u32 {
            let (r, g, b) = (
                (i * 37 % 256) as u8,
                (i * 101 % 256) as u8,
                (i * 13 % 256) as u8,
            );
            rgb24_to_i420(&solid(2, 2, [r, g, b]), 2, 2, &mut out).unwrap();
            let want = reference(f64::from(r), f64::from(g), f64::from(b));
            for (got, want) in out.data[3..].iter().zip(want) {
                assert!(
                    (f64::from(*got) - want).abs() <= 1.0,
                    "{r},{g},{b}: {got} vs {want:.2}"
                );
            }
        }
    }

    #[test]
    fn rgb_chroma_is_the_average_of_each_block() {
        // Red, green / blue, white: the block's average is grey, so chroma is neutral.
        let src = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255];
        let mut out = frame();
        rgb24_to_i420(&src, 2, 2, &mut out).unwrap();
        assert_eq!(yuv(&out), (vec![82, 144, 41, 235], vec![128], vec![128]));
    }

    #[test]
    fn yuyv_copies_luma_and_averages_chroma_of_row_pairs() {
        // Two rows of 4 pixels: Y0 U Y1 V, Y2 U Y3 V.
        let src = [
            1, 10, 2, 20, 3, 30, 4, 40, //
            5, 21, 6, 31, 7, 50, 8, 61,
        ];
        let mut out = frame();
        yuyv_to_i420(&src, 4, 2, &mut out).unwrap();
        assert_eq!(
            yuv(&out),
            (vec![1, 2, 3, 4, 5, 6, 7, 8], vec![16, 40], vec![26, 51])
        );
    }

    #[test]
    fn nv12_deinterleaves_chroma() {
        let mut src: Vec<u8> = (1..=8).collect();
        src.extend([100, 200, 101, 201]);
        let mut out = frame();
        nv12_to_i420(&src, 4, 2, &mut out).unwrap();
        assert_eq!(
            yuv(&out),
            ((1..=8).collect(), vec![100, 101], vec![200, 201])
        );
    }

    #[test]
    fn short_input_is_an_error_and_padding_is_ignored() {
        let mut out = frame();
        let e = yuyv_to_i420(&[0; 15], 4, 2, &mut out).unwrap_err();
        assert_eq!(
            e.to_string(),
            "yuyv frame mismatch: a 4x2 picture needs 16 bytes, got 15"
        );
        assert!(e.is_recoverable());
        let e = nv12_to_i420(&[0; 11], 4, 2, &mut out).unwrap_err();
        assert!(e.to_string().contains("needs 12 bytes, got 11"), "{e}");
        let e = rgb24_to_i420(&[], 4, 2, &mut out).unwrap_err();
        assert!(e.to_string().contains("needs 24 bytes, got 0"), "{e}");
        yuyv_to_i420(&[7; 40], 4, 2, &mut out).unwrap();
        assert_eq!(out.y(), &[7; 8]);
        let e = yuyv_to_i420(&[0; 64], 3, 2, &mut out).unwrap_err();
        assert!(e.to_string().contains("even"), "{e}");
    }

    #[test]
    fn a_warm_frame_is_reused_without_reallocation() {
        let mut out = frame();
        let src = solid(64, 48, [10, 200, 30]);
        rgb24_to_i420(&src, 64, 48, &mut out).unwrap();
        let (ptr, cap) = (out.data.as_ptr(), out.data.capacity());
        for _ in 0..3 {
            rgb24_to_i420(&src, 64, 48, &mut out).unwrap();
            yuyv_to_i420(&[128; 64 * 48 * 2], 64, 48, &mut out).unwrap();
        }
        assert_eq!((out.data.as_ptr(), out.data.capacity()), (ptr, cap));
        assert_eq!(out.data.len(), 64 * 48 * 3 / 2);
    }

    fn jpeg(rgb: &[u8], w: u16, h: u16, color: ColorType, sampling: SamplingFactor) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut encoder = Encoder::new(&mut bytes, 95);
        encoder.set_sampling_factor(sampling);
        encoder.encode(rgb, w, h, color).unwrap();
        bytes
    }

    fn assert_near(plane: &[u8], want: u8, what: &str) {
        for &got in plane {
            assert!(got.abs_diff(want) <= 3, "{what}: {got} vs {want}");
        }
    }

    #[test]
    fn mjpeg_of_any_subsampling_gives_the_rgb_levels() {
        let mut decoder = MjpegDecoder::new();
        let mut out = frame();
        for sampling in [
            SamplingFactor::R_4_2_0,
            SamplingFactor::R_4_2_2,
            SamplingFactor::R_4_4_4,
        ] {
            for rgb in [[255u8, 0, 0], [40, 160, 220], [200, 30, 90]] {
                // What rgb24_to_i420 gives for the same colour.
                let [r, g, b] = rgb.map(i32::from);
                let (y, (u, v)) = (luma(r, g, b), chroma4(4 * r, 4 * g, 4 * b));
                let src = jpeg(&solid(32, 16, rgb), 32, 16, ColorType::Rgb, sampling);
                decoder.decode(&src, &mut out).unwrap();
                assert_eq!((out.width, out.height), (32, 16));
                let (py, pu, pv) = out.planes();
                let what = format!("{sampling:?} {rgb:?}");
                assert_near(py, y, &what);
                assert_near(pu, u, &what);
                assert_near(pv, v, &what);
            }
        }
    }

    #[test]
    fn mjpeg_keeps_chroma_where_it_was() {
        // Left half red, right half blue, 4:2:2: U is ~90 on the left and ~240 on the right.
        let mut rgb = Vec::new();
        for _ in 0..16 {
            rgb.extend(solid(16, 1, [255, 0, 0]));
            rgb.extend(solid(16, 1, [0, 0, 255]));
        }
        let src = jpeg(&rgb, 32, 16, ColorType::Rgb, SamplingFactor::R_4_2_2);
        let mut out = frame();
        mjpeg_to_i420(&src, &mut out).unwrap();
        let (_, u, _) = out.planes();
        for row in u.chunks_exact(16) {
            assert_near(&row[..7], 90, "left");
            assert_near(&row[9..], 240, "right");
        }
    }

    #[test]
    fn mjpeg_greyscale_has_neutral_chroma() {
        let src = jpeg(
            &[255; 16 * 16],
            16,
            16,
            ColorType::Luma,
            SamplingFactor::R_4_4_4,
        );
        let mut out = frame();
        mjpeg_to_i420(&src, &mut out).unwrap();
        let (y, u, v) = out.planes();
        assert_near(y, 235, "y");
        assert_eq!((u, v), (&[128; 64][..], &[128; 64][..]));
    }

    #[test]
    fn broken_jpeg_is_a_recoverable_error() {
        let mut decoder = MjpegDecoder::new();
        let mut out = frame();
        for bad in [&b""[..], b"\xff\xd8", b"not a jpeg at all"] {
            let e = decoder.decode(bad, &mut out).unwrap_err();
            assert!(e.to_string().starts_with("mjpeg decode failed"), "{e}");
            assert!(e.is_recoverable());
        }
        let odd = jpeg(
            &solid(15, 16, [9, 9, 9]),
            15,
            16,
            ColorType::Rgb,
            SamplingFactor::R_4_2_0,
        );
        let e = decoder.decode(&odd, &mut out).unwrap_err();
        assert!(e.to_string().contains("15x16"), "{e}");
        // Any cut of a valid picture decodes or fails, never panics.
        let good = jpeg(
            &solid(32, 16, [1, 2, 3]),
            32,
            16,
            ColorType::Rgb,
            SamplingFactor::R_4_2_0,
        );
        for cut in (0..good.len()).step_by(7) {
            let _ = decoder.decode(&good[..cut], &mut out);
        }
    }
}
