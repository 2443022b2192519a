//! Decoding PNG and JPEG files that may be hostile (a folder of someone's art, a download, the
//! raw cache): the size the header declares is refused before any pixel buffer is allocated, so
//! a 279 KB file declaring 16000x16000 costs nothing, and transparency is flattened onto white
//! paper, so a transparent background does not turn into a black page.

use std::io::{BufRead, Seek};

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

use crate::engine::media::{Pixels, Raster};

/// The most pixels an input may declare: a 600 DPI scan of an A4 or US-letter page (35
/// megapixels) fits, far below a decompression bomb.
pub const MAX_PIXELS: u64 = 40_000_000;

/// The most the decoder may allocate, a backstop behind [`MAX_PIXELS`]: 16-bit RGBA at the
/// pixel limit.
const MAX_ALLOC: u64 = MAX_PIXELS * 8;

/// Why an input could not become pixels.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a readable PNG or JPEG (an HTML error page, a truncated file).
    #[error("not a PNG or JPEG image: {0}")]
    NotAnImage(String),
    /// The header declares more pixels than [`MAX_PIXELS`].
    #[error("declares {width}x{height} pixels, over the limit of {MAX_PIXELS} pixels (40 megapixels)")]
    TooLarge {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
    },
}

/// Decodes a PNG or JPEG into RGB pixels, refusing an oversized header before decoding and
/// compositing any alpha over white.
pub fn decode_rgb(source: impl BufRead + Seek) -> Result<Raster, DecodeError> {
    let decoder = checked_decoder(source)?;
    let (width, height) = decoder.dimensions();
    let image = DynamicImage::from_decoder(decoder).map_err(not_an_image)?;
    Ok(Raster::new(width, height, None, Pixels::Rgb(on_white(image))))
}

/// The size an image declares, checked against the limits, without decoding any pixel: what
/// an I/O stage learns of a file it hands on undecoded.
pub fn dimensions(source: impl BufRead + Seek) -> Result<(u32, u32), DecodeError> {
    checked_decoder(source).map(|decoder| decoder.dimensions())
}

/// A decoder that has read the header only (no pixel buffer exists yet), once the size it
/// declares is within [`MAX_PIXELS`].
fn checked_decoder<'a>(source: impl BufRead + Seek + 'a) -> Result<impl ImageDecoder + 'a, DecodeError> {
    let mut reader =
        ImageReader::new(source).with_guessed_format().map_err(|e| DecodeError::NotAnImage(e.to_string()))?;
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(not_an_image)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(DecodeError::TooLarge { width, height });
    }
    Ok(decoder)
}

fn not_an_image(e: image::ImageError) -> DecodeError {
    DecodeError::NotAnImage(e.to_string())
}

/// The image's RGB pixels with any transparency composited over white paper. Palette PNGs
/// with `tRNS` and gray+alpha arrive here expanded to RGBA or LumaA by the decoder.
fn on_white(image: DynamicImage) -> Vec<u8> {
    match image {
        DynamicImage::ImageRgba8(rgba) => {
            rgba.as_raw().chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]].map(|c| blend(c, p[3]))).collect()
        }
        DynamicImage::ImageLumaA8(gray) => {
            gray.as_raw().chunks_exact(2).flat_map(|p| [blend(p[0], p[1]); 3]).collect()
        }
        other if other.color().has_alpha() => on_white(DynamicImage::ImageRgba8(other.into_rgba8())),
        other => other.into_rgb8().into_raw(),
    }
}

/// One channel of a pixel with coverage `alpha` laid over white, rounded.
fn blend(channel: u8, alpha: u8) -> u8 {
    let (c, a) = (u32::from(channel), u32::from(alpha));
    ((c * a + 255 * (255 - a) + 127) / 255) as u8
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn pixels(bytes: &[u8]) -> Vec<u8> {
        match decode_rgb(Cursor::new(bytes)).expect("decodes").pixels {
            Pixels::Rgb(rgb) => rgb,
            _ => panic!("RGB expected"),
        }
    }

    fn png(
        width: u32,
        height: u32,
        color: png::ColorType,
        data: &[u8],
        trns: Option<&[u8]>,
        palette: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(color);
        encoder.set_depth(png::BitDepth::Eight);
        if let Some(palette) = palette {
            encoder.set_palette(palette.to_vec());
        }
        if let Some(trns) = trns {
            encoder.set_trns(trns.to_vec());
        }
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(data).unwrap();
        writer.finish().unwrap();
        out
    }

    /// A PNG whose header declares `width`x`height` followed by a few bytes of image data: what
    /// a bomb looks like before its pixels are inflated.
    fn bomb_header(width: u32, height: u32) -> Vec<u8> {
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let start = out.len();
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            let crc = crc32(&out[start..]);
            out.extend_from_slice(&crc.to_be_bytes());
        }
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&width.to_be_bytes());
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00]);
        chunk(&mut out, b"IEND", &[]);
        out
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn a_bomb_is_refused_from_its_header() {
        for (width, height) in [(16000, 16000), (22000, 22000), (40_001, 1000)] {
            let error = decode_rgb(Cursor::new(bomb_header(width, height))).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!(
                    "declares {width}x{height} pixels, over the limit of 40000000 pixels (40 megapixels)"
                )
            );
        }
    }

    #[test]
    fn transparent_rgba_lands_on_white() {
        // Transparent black, opaque black, half-covered red.
        let data = [0, 0, 0, 0, 0, 0, 0, 255, 255, 0, 0, 128];
        let rgb = pixels(&png(3, 1, png::ColorType::Rgba, &data, None, None));
        assert_eq!(rgb, [255, 255, 255, 0, 0, 0, 255, 127, 127]);
    }

    #[test]
    fn gray_alpha_lands_on_white() {
        let rgb = pixels(&png(2, 1, png::ColorType::GrayscaleAlpha, &[0, 0, 0, 255], None, None));
        assert_eq!(rgb, [255, 255, 255, 0, 0, 0]);
    }

    #[test]
    fn a_palette_with_trns_lands_on_white() {
        // Entry 0 is black and fully transparent, entry 1 black and opaque.
        let palette = [0, 0, 0, 0, 0, 0];
        let rgb = pixels(&png(2, 1, png::ColorType::Indexed, &[0, 1], Some(&[0, 255]), Some(&palette)));
        assert_eq!(rgb, [255, 255, 255, 0, 0, 0]);
    }

    #[test]
    fn opaque_images_keep_their_pixels_and_junk_is_not_an_image() {
        let rgb = pixels(&png(1, 1, png::ColorType::Rgb, &[10, 20, 30], None, None));
        assert_eq!(rgb, [10, 20, 30]);
        let error = decode_rgb(Cursor::new(b"<html>oops</html>")).unwrap_err();
        assert!(matches!(error, DecodeError::NotAnImage(_)), "{error}");
    }
}
