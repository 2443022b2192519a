//! Gray (or RGB) to true black and white, one bit per pixel: the print page format.

use super::gray::luma;
use crate::engine::media::{Pixels, Raster};

/// Packs one row of gray pixels into MSB-first bits: a pixel below `level` is black (0), any
/// other is white (1). Padding bits at the end of the row are black. `out` holds
/// `gray.len().div_ceil(8)` bytes.
pub fn pack_row(gray: &[u8], level: u8, out: &mut [u8]) {
    // 64 pixels at a time: the compares vectorize over the whole block before packing.
    let mut blocks = gray.chunks_exact(64);
    let mut packed = out.chunks_exact_mut(8);
    for (px, bytes) in (&mut blocks).zip(&mut packed) {
        let mut ones = [0u8; 64];
        for (one, &p) in ones.iter_mut().zip(px) {
            *one = u8::from(p >= level);
        }
        for (byte, eight) in bytes.iter_mut().zip(ones.chunks_exact(8)) {
            *byte = gather(eight.try_into().unwrap_or_default());
        }
    }
    let done = gray.len() - blocks.remainder().len();
    let (gray, out) = (&gray[done..], out.get_mut(done / 8..).unwrap_or_default());
    let mut chunks = gray.chunks_exact(8);
    for (byte, px) in out.iter_mut().zip(&mut chunks) {
        *byte = pack8(px.try_into().unwrap_or([0; 8]), level);
    }
    let rest = chunks.remainder();
    if !rest.is_empty()
        && let Some(last) = out.get_mut(gray.len() / 8)
    {
        let mut px = [0u8; 8];
        px[..rest.len()].copy_from_slice(rest);
        // Padding pixels are 0, black unless the level is 0 (then every pixel is white).
        *last = pack8(px, level) & !(0xFFu8 >> rest.len());
    }
}

/// Eight pixels to one byte, first pixel in the top bit.
#[inline]
fn pack8(px: [u8; 8], level: u8) -> u8 {
    gather(px.map(|p| u8::from(p >= level)))
}

/// Eight 0/1 bytes to the bits of one byte, the first in the top bit, with one multiply:
/// byte `i` times bit `9j` lands alone on bit `56 + j` when `i + j = 7`, and no other term
/// reaches the top byte or carries into it.
#[inline]
fn gather(ones: [u8; 8]) -> u8 {
    (u64::from_le_bytes(ones).wrapping_mul(0x8040_2010_0804_0201) >> 56) as u8
}

/// Thresholds a gray or RGB raster (RGB through the same luma as [`super::gray::to_gray`],
/// row by row, without a full gray copy). A bilevel raster is returned as is.
pub fn threshold(raster: &Raster, level: u8) -> Raster {
    let width = raster.width as usize;
    let stride = Raster::bilevel_stride(raster.width);
    let rows = raster.height as usize;
    let mut out = vec![0u8; stride * rows];
    match &raster.pixels {
        Pixels::Bilevel(_) => return raster.clone(),
        Pixels::Gray(p) => {
            for (src, dst) in p.chunks_exact(width.max(1)).zip(out.chunks_exact_mut(stride.max(1))) {
                pack_row(src, level, dst);
            }
        }
        Pixels::Rgb(p) => {
            let mut row = vec![0u8; width];
            for (src, dst) in p.chunks_exact((width * 3).max(1)).zip(out.chunks_exact_mut(stride.max(1))) {
                for (g, px) in row.iter_mut().zip(src.chunks_exact(3)) {
                    *g = luma(px[0], px[1], px[2]);
                }
                pack_row(&row, level, dst);
            }
        }
    }
    Raster::new(raster.width, raster.height, raster.dpi, Pixels::Bilevel(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule, one pixel at a time: the bit of pixel (x, y) in MSB-first packed rows.
    fn bit(packed: &[u8], stride: usize, x: usize, y: usize) -> bool {
        packed[y * stride + x / 8] & (0x80 >> (x % 8)) != 0
    }

    #[test]
    fn random_gray_follows_the_rule() {
        let mut rng = fastrand::Rng::with_seed(3);
        for (width, height) in [(1usize, 1usize), (7, 3), (8, 2), (61, 17), (2550, 4)] {
            let gray: Vec<u8> = (0..width * height).map(|_| rng.u8(..)).collect();
            for level in [0u8, 1, 127, 128, 200, 255] {
                let raster = Raster::new(width as u32, height as u32, None, Pixels::Gray(gray.clone()));
                let out = threshold(&raster, level);
                let Pixels::Bilevel(packed) = &out.pixels else { panic!("not bilevel") };
                let stride = width.div_ceil(8);
                assert_eq!(packed.len(), stride * height);
                for y in 0..height {
                    for x in 0..width {
                        let want_white = gray[y * width + x] >= level;
                        assert_eq!(
                            bit(packed, stride, x, y),
                            want_white,
                            "{width}x{height} level {level} at {x},{y}"
                        );
                    }
                    // Padding bits stay black, whatever the level.
                    for x in width..stride * 8 {
                        assert!(!bit(packed, stride, x, y), "padding bit {x} set");
                    }
                }
            }
        }
    }

    #[test]
    fn rgb_goes_through_luma() {
        let mut rng = fastrand::Rng::with_seed(5);
        let (width, height) = (37usize, 5usize);
        let rgb: Vec<u8> = (0..width * height * 3).map(|_| rng.u8(..)).collect();
        let raster = Raster::new(width as u32, height as u32, Some(300.0), Pixels::Rgb(rgb.clone()));
        let out = threshold(&raster, 128);
        assert_eq!(out.dpi, Some(300.0));
        let Pixels::Bilevel(packed) = &out.pixels else { panic!("not bilevel") };
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            let (x, y) = (i % width, i / width);
            assert_eq!(bit(packed, width.div_ceil(8), x, y), luma(px[0], px[1], px[2]) >= 128);
        }
    }
}
