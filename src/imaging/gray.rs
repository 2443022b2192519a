//! RGB to gray with the same numbers as Pillow's `convert("L")`, so pages match the original
//! service's grayscale byte for byte.

use crate::engine::media::{Pixels, Raster};

/// ITU-R 601 luma, `(299 R + 587 G + 114 B) / 1000`, computed as Pillow does: in 16-bit fixed
/// point with rounding (`(19595 R + 38470 G + 7471 B + 0x8000) >> 16`). The weights sum to
/// 65536, so white stays 255.
#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as u8
}

/// Converts packed RGB bytes to gray into `out` (one byte per pixel).
pub fn rgb_to_gray_into(rgb: &[u8], out: &mut [u8]) {
    for (o, px) in out.iter_mut().zip(rgb.chunks_exact(3)) {
        *o = luma(px[0], px[1], px[2]);
    }
}

/// A gray copy of any raster: RGB through [`luma`], bilevel expanded to 0/255, gray cloned.
pub fn to_gray(raster: &Raster) -> Raster {
    let pixels = match &raster.pixels {
        Pixels::Gray(p) => p.clone(),
        Pixels::Rgb(p) => {
            let mut out = vec![0; p.len() / 3];
            rgb_to_gray_into(p, &mut out);
            out
        }
        Pixels::Bilevel(p) => expand_bilevel(p, raster.width),
    };
    Raster::new(raster.width, raster.height, raster.dpi, Pixels::Gray(pixels))
}

/// The eight gray pixels of every bilevel byte, MSB first, built at compile time.
const EXPAND: [[u8; 8]; 256] = {
    let mut table = [[0u8; 8]; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut bit = 0;
        while bit < 8 {
            if byte & (0x80 >> bit) != 0 {
                table[byte][bit] = 255;
            }
            bit += 1;
        }
        byte += 1;
    }
    table
};

/// Unpacks MSB-first bilevel rows (1 = white) to one byte per pixel, 0 or 255.
fn expand_bilevel(packed: &[u8], width: u32) -> Vec<u8> {
    let width = width as usize;
    let stride = Raster::bilevel_stride(width as u32);
    if width == 0 {
        return Vec::new();
    }
    let rows = packed.len() / stride;
    let mut out = vec![0u8; width * rows];
    for (src, dst) in packed.chunks_exact(stride).zip(out.chunks_exact_mut(width)) {
        let mut pixels = dst.chunks_exact_mut(8);
        for (eight, &byte) in (&mut pixels).zip(src) {
            eight.copy_from_slice(&EXPAND[usize::from(byte)]);
        }
        let rest = pixels.into_remainder();
        if let Some(&last) = src.get(width / 8) {
            let n = rest.len();
            rest.copy_from_slice(&EXPAND[usize::from(last)][..n]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_matches_pillow() {
        // Values printed by Pillow 11.1 `Image.convert("L")` for these RGB pixels.
        let pillow = [
            ((0, 0, 0), 0),
            ((255, 255, 255), 255),
            ((1, 2, 3), 2),
            ((128, 128, 128), 128),
            ((255, 0, 0), 76),
            ((0, 255, 0), 150),
            ((0, 0, 255), 29),
            ((17, 200, 99), 134),
            ((250, 251, 252), 251),
            ((3, 130, 7), 78),
            ((165, 77, 202), 118),
            ((24, 37, 48), 34),
            ((187, 29, 109), 85),
            ((19, 44, 222), 57),
            ((214, 35, 123), 99),
            ((46, 217, 30), 145),
        ];
        for ((r, g, b), want) in pillow {
            assert_eq!(luma(r, g, b), want, "rgb({r},{g},{b})");
        }
    }

    #[test]
    fn luma_is_the_601_formula_rounded() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..100_000 {
            let (r, g, b) = (rng.u8(..), rng.u8(..), rng.u8(..));
            let exact = (299.0 * f64::from(r) + 587.0 * f64::from(g) + 114.0 * f64::from(b)) / 1000.0;
            let got = f64::from(luma(r, g, b));
            // Fixed point with rounding: never more than half a level plus the weights' error.
            assert!((got - exact).abs() <= 0.51, "rgb({r},{g},{b}): {got} vs {exact}");
        }
    }

    #[test]
    fn to_gray_converts_every_media() {
        let rgb = Raster::new(2, 1, Some(72.0), Pixels::Rgb(vec![255, 0, 0, 0, 0, 255]));
        let gray = to_gray(&rgb);
        assert!(gray.pixels == Pixels::Gray(vec![76, 29]));
        assert_eq!(gray.dpi, Some(72.0));

        // 10 pixels wide: two bytes per row, the last one padded.
        let bilevel = Raster::new(10, 1, None, Pixels::Bilevel(vec![0b1010_0000, 0b0100_0000]));
        let expanded = to_gray(&bilevel);
        assert!(expanded.pixels == Pixels::Gray(vec![255, 0, 255, 0, 0, 0, 0, 0, 0, 255]));
    }
}
