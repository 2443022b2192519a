//! Decoding PNG, JPEG and WebP files that may be hostile (a folder of someone's art, a
//! download, the raw cache): the size the header declares is refused before any pixel buffer
//! is allocated, so a 279 KB file declaring 16000x16000 costs nothing; a file cut short fails
//! rather than become a half-blank page; the EXIF orientation a phone or scanner saved is
//! applied; and transparency is flattened onto white paper, so a transparent background does
//! not turn into a black page.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use crate::engine::media::{Pixels, Raster};

/// The most pixels an input may declare: a 600 DPI scan of an A4 or US-letter page (35
/// megapixels) fits, far below a decompression bomb.
pub const MAX_PIXELS: u64 = 40_000_000;

/// The most the decoder may allocate, a backstop behind [`MAX_PIXELS`]: 16-bit RGBA at the
/// pixel limit.
const MAX_ALLOC: u64 = MAX_PIXELS * 8;

/// The largest image file read: 8-bit RGBA at [`MAX_PIXELS`] stored without compression, so
/// no PNG, JPEG or WebP within the pixel limit needs more, and a file that claims gigabytes is
/// refused from its size before a byte of it is read (the JPEG decoder reads a file whole).
pub const MAX_FILE_BYTES: u64 = MAX_PIXELS * 4;

/// Why an input could not become pixels.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a readable PNG, JPEG or WebP (an HTML error page, a corrupt file).
    #[error("not a PNG, JPEG or WebP image: {0}")]
    NotAnImage(String),
    /// The header declares more pixels than [`MAX_PIXELS`].
    #[error("declares {width}x{height} pixels, over the limit of {MAX_PIXELS} pixels (40 megapixels)")]
    TooLarge {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
    },
    /// The file stops before its format says it ends: part of the picture is missing.
    #[error(
        "a truncated {format} image: {why}, so part of the picture is missing (cut short while copying or downloading?)"
    )]
    Truncated {
        /// The format, for the message.
        format: &'static str,
        /// What is missing.
        why: &'static str,
    },
}

/// Decodes a PNG, JPEG or WebP into RGB pixels: the header's size is checked before decoding,
/// a file cut short is refused, the EXIF orientation is applied and any alpha is composited
/// over white.
pub fn decode_rgb(bytes: &[u8]) -> Result<Raster, DecodeError> {
    let mut decoder = checked_decoder(bytes)?;
    let orientation = decoder.orientation().map_err(not_an_image)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(not_an_image)?;
    image.apply_orientation(orientation);
    let (width, height) = (image.width(), image.height());
    Ok(Raster::new(width, height, None, Pixels::Rgb(on_white(image))))
}

/// The size an image shows (its EXIF orientation applied), checked against the limits and for
/// a file cut short, without decoding any pixel: what an I/O stage learns of a file it hands
/// on undecoded.
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32), DecodeError> {
    let mut decoder = checked_decoder(bytes)?;
    let (width, height) = decoder.dimensions();
    let turned = matches!(
        decoder.orientation().map_err(not_an_image)?,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    Ok(if turned { (height, width) } else { (width, height) })
}

/// Whether `head` (the first bytes of a file) starts like a PNG, JPEG or WebP: a file that
/// does not is refused without reading the rest of it.
pub fn looks_like_an_image(head: &[u8]) -> bool {
    raster_format(head).is_some()
}

fn raster_format(bytes: &[u8]) -> Option<ImageFormat> {
    image::guess_format(bytes)
        .ok()
        .filter(|format| matches!(format, ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP))
}

/// A decoder that has read the header only (no pixel buffer exists yet), once the file is
/// whole and the size it declares is within [`MAX_PIXELS`].
fn checked_decoder(bytes: &[u8]) -> Result<impl ImageDecoder + '_, DecodeError> {
    let format = raster_format(bytes)
        .ok_or_else(|| DecodeError::NotAnImage("the file does not start like one".to_owned()))?;
    check_whole(bytes, format)?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
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

/// Refuses a JPEG or WebP that ends before its format says it does. (The PNG decoder fails on
/// a missing chunk by itself; the JPEG decoder would fill the missing rows with gray.)
fn check_whole(bytes: &[u8], format: ImageFormat) -> Result<(), DecodeError> {
    let truncated = |format, why| Err(DecodeError::Truncated { format, why });
    match format {
        ImageFormat::Jpeg if !jpeg_reaches_its_end(bytes) => {
            truncated("JPEG", "it ends before its end-of-image marker")
        }
        ImageFormat::WebP if !webp_reaches_its_end(bytes) => {
            truncated("WebP", "it is shorter than its RIFF header declares")
        }
        _ => Ok(()),
    }
}

/// Walks a JPEG's segments from the start (each header segment by its length, each scan's
/// coded data up to the next marker, as many scans as a progressive file has) and tells
/// whether the end-of-image marker is reached before the bytes run out. Bytes after it (a
/// phone's motion-photo video, a second picture) are not read.
fn jpeg_reaches_its_end(bytes: &[u8]) -> bool {
    const MARKER: u8 = 0xFF;
    let mut at = 2; // past SOI
    loop {
        while bytes.get(at) == Some(&MARKER) {
            at += 1; // a marker and its fill bytes
        }
        let Some(&marker) = bytes.get(at) else { return false };
        if bytes.get(at - 1) != Some(&MARKER) {
            return false; // not a marker where one must be
        }
        at += 1;
        match marker {
            0xD9 => return true,
            0x01 | 0xD0..=0xD7 => continue, // TEM and RSTn carry no length
            _ => {}
        }
        let Some(length) = bytes.get(at..at + 2).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
        else {
            return false;
        };
        at += length;
        if at > bytes.len() {
            return false;
        }
        if marker == 0xDA {
            // Coded data: a 0xFF in it is followed by 0x00 (a stuffed byte) or RSTn.
            loop {
                let Some(next) = bytes[at..].iter().position(|&b| b == MARKER) else { return false };
                at += next;
                match bytes.get(at + 1) {
                    None => return false,
                    Some(0x00 | 0xD0..=0xD7) => at += 2,
                    Some(_) => break,
                }
            }
        }
    }
}

/// Whether a WebP holds all the bytes its RIFF header declares.
fn webp_reaches_its_end(bytes: &[u8]) -> bool {
    let declared = bytes.get(4..8).map(|s| u64::from(u32::from_le_bytes([s[0], s[1], s[2], s[3]])));
    declared.is_some_and(|size| bytes.len() as u64 >= size + 8)
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
    use super::*;

    fn pixels(bytes: &[u8]) -> Vec<u8> {
        match decode_rgb(bytes).expect("decodes").pixels {
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
            let error = decode_rgb(&bomb_header(width, height)).unwrap_err();
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

    fn encoded(image: &image::RgbImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Vec::new();
        image.write_to(&mut Cursor::new(&mut out), format).unwrap();
        out
    }

    /// 60x40, the left half black.
    fn half_black() -> image::RgbImage {
        image::RgbImage::from_fn(60, 40, |x, _| image::Rgb(if x < 30 { [0; 3] } else { [255; 3] }))
    }

    /// `jpeg` with an EXIF APP1 segment saying `orientation`, right after SOI.
    fn with_orientation(jpeg: &[u8], orientation: u8) -> Vec<u8> {
        let mut exif = b"Exif\0\0II\x2a\0\x08\0\0\0\x01\0".to_vec();
        exif.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, orientation, 0, 0, 0, 0, 0, 0, 0]);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&(exif.len() as u16 + 2).to_be_bytes());
        out.extend_from_slice(&exif);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    #[test]
    fn the_exif_orientation_is_applied() {
        let jpeg = encoded(&half_black(), ImageFormat::Jpeg);
        // 6: turn clockwise (the left half goes on top); 8: counter-clockwise (it goes below);
        // 3: half a turn (it goes right); 1: as stored.
        for (orientation, size, black_at, white_at) in [
            (6, (40, 60), (20, 5), (20, 55)),
            (8, (40, 60), (20, 55), (20, 5)),
            (3, (60, 40), (55, 20), (5, 20)),
            (1, (60, 40), (5, 20), (55, 20)),
        ] {
            let turned = with_orientation(&jpeg, orientation);
            assert_eq!(dimensions(&turned).unwrap(), size, "{orientation}");
            let raster = decode_rgb(&turned).unwrap();
            assert_eq!((raster.width, raster.height), size, "{orientation}");
            let Pixels::Rgb(rgb) = &raster.pixels else { panic!("RGB expected") };
            let at = |(x, y): (u32, u32)| rgb[((y * raster.width + x) * 3) as usize];
            assert!(at(black_at) < 40 && at(white_at) > 215, "orientation {orientation}");
        }
    }

    #[test]
    fn a_file_cut_short_is_truncated_whatever_its_format() {
        let jpeg = encoded(&half_black(), ImageFormat::Jpeg);
        let webp = encoded(&half_black(), ImageFormat::WebP);
        for (whole, format) in [(&jpeg, "JPEG"), (&webp, "WebP")] {
            assert!(decode_rgb(whole).is_ok(), "{format}");
            for cut in [whole.len() / 2, whole.len() - 2] {
                let error = decode_rgb(&whole[..cut]).unwrap_err();
                assert!(error.to_string().starts_with(&format!("a truncated {format} image")), "{error}");
                assert!(dimensions(&whole[..cut]).is_err(), "{format} cut at {cut}");
            }
        }
        // Bytes after the end (a phone's motion-photo video, markers and all) are not a cut.
        let mut trailed = jpeg.clone();
        trailed.extend_from_slice(b"\xFF\xDA\x00\x08ftypmp42 and more video");
        assert!(decode_rgb(&trailed).is_ok());
    }

    #[test]
    fn every_scan_of_a_progressive_jpeg_is_walked_to_the_end() {
        // SOI, a header segment, two scans (as a progressive file has) with stuffed bytes and a
        // restart marker in their data, then EOI.
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xC2, 0x00, 0x04, 1, 2];
        for _ in 0..2 {
            jpeg.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x03, 9, 0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56]);
            jpeg.extend_from_slice(&[0xFF, 0xC4, 0x00, 0x03, 7]);
        }
        jpeg.extend_from_slice(&[0xFF, 0xD9]);
        assert!(jpeg_reaches_its_end(&jpeg));
        for cut in 2..jpeg.len() {
            assert!(!jpeg_reaches_its_end(&jpeg[..cut]), "cut at {cut}");
        }
    }

    #[test]
    fn opaque_images_keep_their_pixels_and_junk_is_not_an_image() {
        let rgb = pixels(&png(1, 1, png::ColorType::Rgb, &[10, 20, 30], None, None));
        assert_eq!(rgb, [10, 20, 30]);
        let error = decode_rgb(b"<html>oops</html>").unwrap_err();
        assert!(matches!(error, DecodeError::NotAnImage(_)), "{error}");
    }
}
