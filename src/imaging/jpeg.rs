//! JPEG thumbnails: a small preview of a page for galleries and listings.

use image::ExtendedColorType;
use image::codecs::jpeg::JpegEncoder;

use super::ImagingError;
use super::gray::to_gray;
use super::resize::{Fit, contain_box, resize};
use crate::engine::media::{Encoded, EncodedFormat, Pixels, Raster};

/// Scales `raster` to fit within `max_width` x `max_height` (keeping its aspect ratio, never
/// padding) and encodes it as JPEG at `quality` (1-100). Bilevel pages become gray, so the
/// thumbnail is smoothed rather than aliased; gray stays one channel.
pub fn encode_thumbnail(
    raster: &Raster,
    max_width: u32,
    max_height: u32,
    quality: u8,
) -> Result<Encoded, ImagingError> {
    if raster.width == 0 || raster.height == 0 || max_width == 0 || max_height == 0 {
        return Err(ImagingError::BadSize { width: max_width, height: max_height, reason: "a side is zero" });
    }
    let (width, height, _, _) = contain_box((raster.width, raster.height), (max_width, max_height));
    let reduced;
    let source = match &raster.pixels {
        Pixels::Bilevel(packed) => {
            let block = box_block(raster.width / width, raster.height / height);
            reduced = if block > 1 { box_reduce_bilevel(raster, packed, block) } else { to_gray(raster) };
            &reduced
        }
        _ => raster,
    };
    let small = resize(source, width, height, Fit::Stretch)?;
    let (data, color) = match &small.pixels {
        Pixels::Gray(p) => (p, ExtendedColorType::L8),
        Pixels::Rgb(p) => (p, ExtendedColorType::Rgb8),
        Pixels::Bilevel(_) => {
            return Err(ImagingError::Unsupported { operation: "JPEG encoding", media: small.media() });
        }
    };
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, quality.clamp(1, 100))
        .encode(data, width, height, color)
        .map_err(|e| ImagingError::codec("JPEG encoding", e))?;
    Ok(Encoded { format: EncodedFormat::Jpeg, bytes, width, height })
}

/// The side of the pixel blocks a bilevel page is averaged over before Lanczos3: the largest
/// power of two (up to 8) that leaves at least 1.5x the thumbnail's size, so Lanczos3 still
/// does the final, smooth step. A 2550x3300 page for a 400x518 thumbnail gets 4: Lanczos3 then
/// reads 0.5 MP of gray instead of 8.4 MP expanded from the bits (~7 -> ~2 ms per page).
fn box_block(shrink_x: u32, shrink_y: u32) -> u32 {
    let shrink = f64::from(shrink_x.min(shrink_y)) / 1.5;
    [8, 4, 2].into_iter().find(|&b| f64::from(b) <= shrink).unwrap_or(1)
}

/// Averages `block` x `block` pixels of a bilevel page into one gray pixel (the share of white
/// bits, an exact box filter), read straight from the packed rows. `block` is 2, 4 or 8, so a
/// block never straddles a byte. Blocks cut by the right or bottom edge average the pixels
/// they hold.
fn box_reduce_bilevel(raster: &Raster, packed: &[u8], block: u32) -> Raster {
    let (width, height) = (raster.width as usize, raster.height as usize);
    let block = block as usize;
    let per_byte = 8 / block;
    let stride = Raster::bilevel_stride(raster.width);
    let (out_width, out_height) = (width.div_ceil(block), height.div_ceil(block));
    // For every byte value, the white bits of each of its blocks, one block per 8-bit field
    // (the first block in the low field): a block holds at most 64 pixels, so a field never
    // overflows, and one add per byte sums all its blocks of a row at once.
    let mask = (1usize << block) - 1;
    let counts: [u32; 256] = std::array::from_fn(|byte| {
        (0..per_byte)
            .fold(0, |fields, j| fields | ((byte >> (8 - block * (j + 1))) & mask).count_ones() << (8 * j))
    });
    let mut gray = vec![0u8; out_width * out_height];
    let mut sums = vec![0u32; stride];
    for (out_y, out_row) in gray.chunks_exact_mut(out_width).enumerate() {
        sums.fill(0);
        let rows = packed.chunks_exact(stride).skip(out_y * block).take(block);
        let row_count = rows.len();
        for row in rows {
            for (sum, &byte) in sums.iter_mut().zip(row) {
                *sum += counts[usize::from(byte)];
            }
        }
        for (out_x, px) in out_row.iter_mut().enumerate() {
            let white = (sums[out_x / per_byte] >> (8 * (out_x % per_byte))) & 0xFF;
            // Padding bits past the width are black (0), so they add no white; divide by the
            // pixels the block really holds.
            let pixels = (block.min(width - out_x * block) * row_count).max(1);
            *px = ((white as usize * 255 + pixels / 2) / pixels) as u8;
        }
    }
    Raster::new(out_width as u32, out_height as u32, raster.dpi, Pixels::Gray(gray))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> image::DynamicImage {
        image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg).unwrap()
    }

    #[test]
    fn a_bilevel_page_becomes_a_gray_thumbnail_within_the_box() {
        let (width, height) = (2550u32, 3300u32);
        let stride = Raster::bilevel_stride(width);
        // White page with a black band across the top quarter.
        let mut packed = vec![0xFFu8; stride * height as usize];
        packed[..stride * 825].fill(0);
        let page = Raster::new(width, height, Some(300.0), Pixels::Bilevel(packed));
        let thumb = encode_thumbnail(&page, 400, 518, 85).unwrap();
        assert_eq!(thumb.format, EncodedFormat::Jpeg);
        let decoded = decode(&thumb.bytes);
        assert_eq!((decoded.width(), decoded.height()), (thumb.width, thumb.height));
        assert!(decoded.width() <= 400 && decoded.height() <= 518);
        assert!(decoded.width() == 400 || decoded.height() == 518, "does not fill the box on either side");
        let gray = decoded.to_luma8();
        assert!(gray.get_pixel(200, 20).0[0] < 30, "band not dark");
        assert!(gray.get_pixel(200, 400).0[0] > 225, "page not light");
    }

    #[test]
    fn box_reduction_is_the_mean_of_each_block() {
        let mut rng = fastrand::Rng::with_seed(21);
        // 21 wide: the last 4-block holds one column, the last 8-block five; 10 rows: the last
        // 4-block holds two rows.
        let (width, height) = (21u32, 10u32);
        let stride = Raster::bilevel_stride(width);
        let mut packed: Vec<u8> = (0..stride * height as usize).map(|_| rng.u8(..)).collect();
        for row in packed.chunks_exact_mut(stride) {
            row[stride - 1] &= !(0xFFu8 >> (width % 8));
        }
        let page = Raster::new(width, height, Some(300.0), Pixels::Bilevel(packed.clone()));
        let white = |x: u32, y: u32| packed[(y as usize) * stride + x as usize / 8] & (0x80 >> (x % 8)) != 0;
        for block in [2u32, 4, 8] {
            let reduced = box_reduce_bilevel(&page, &packed, block);
            assert_eq!((reduced.width, reduced.height), (width.div_ceil(block), height.div_ceil(block)));
            let Pixels::Gray(gray) = &reduced.pixels else { panic!("not gray") };
            for oy in 0..reduced.height {
                for ox in 0..reduced.width {
                    let xs = ox * block..(ox * block + block).min(width);
                    let ys = oy * block..(oy * block + block).min(height);
                    let n = xs.len() * ys.len();
                    let whites = ys
                        .flat_map(|y| xs.clone().map(move |x| (x, y)))
                        .filter(|&(x, y)| white(x, y))
                        .count();
                    let want = ((whites * 255 + n / 2) / n) as u8;
                    assert_eq!(gray[(oy * reduced.width + ox) as usize], want, "block {block} at {ox},{oy}");
                }
            }
        }
    }

    #[test]
    fn box_block_leaves_lanczos_the_last_step() {
        assert_eq!(box_block(2550 / 400, 3300 / 518), 4);
        assert_eq!(box_block(12, 13), 8);
        assert_eq!(box_block(2, 2), 1);
        assert_eq!(box_block(1, 40), 1);
    }

    #[test]
    fn rgb_stays_colour() {
        let page = Raster::new(100, 50, None, Pixels::Rgb([200, 10, 10].repeat(5000)));
        let thumb = encode_thumbnail(&page, 40, 40, 90).unwrap();
        let decoded = decode(&thumb.bytes).to_rgb8();
        assert_eq!(decoded.dimensions(), (40, 20));
        let [r, g, _] = decoded.get_pixel(20, 10).0;
        assert!(r > 150 && g < 60, "colour lost: {r} {g}");
    }
}
