//! JPEG thumbnails: a small preview of a page for galleries and listings.

use image::ExtendedColorType;
use image::codecs::jpeg::JpegEncoder;

use super::ImagingError;
use super::gray::to_gray;
use super::resize::{Fit, contain_box, resize};
use crate::engine::media::{Encoded, EncodedFormat, Pixels, Raster};

/// Scales `raster` to fit within `max_width` x `max_height` (keeping its aspect ratio, never
/// padding) and encodes it as JPEG at `quality` (1-100). Bilevel pages are expanded to gray
/// first, so the thumbnail is smoothed rather than aliased; gray stays one channel.
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
    let expanded;
    let source = match raster.pixels {
        Pixels::Bilevel(_) => {
            expanded = to_gray(raster);
            &expanded
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
        let page = Raster { width, height, dpi: Some(300.0), pixels: Pixels::Bilevel(packed) };
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
    fn rgb_stays_colour() {
        let page =
            Raster { width: 100, height: 50, dpi: None, pixels: Pixels::Rgb([200, 10, 10].repeat(5000)) };
        let thumb = encode_thumbnail(&page, 40, 40, 90).unwrap();
        let decoded = decode(&thumb.bytes).to_rgb8();
        assert_eq!(decoded.dimensions(), (40, 20));
        let [r, g, _] = decoded.get_pixel(20, 10).0;
        assert!(r > 150 && g < 60, "colour lost: {r} {g}");
    }
}
