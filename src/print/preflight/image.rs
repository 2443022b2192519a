//! Where an image puts ink: the dark pixels of 1-bit CCITT G4 and 8-bit Flate images, located
//! a row at a time (an image is never held decoded whole, so a decompression bomb costs time up
//! to [`MAX_IMAGE_BYTES`], not memory).

use lopdf::{Object, Stream};
use miniz_oxide::inflate::stream::{InflateState, inflate};
use miniz_oxide::{DataFormat, MZFlush, MZStatus};

use super::limits::{MAX_IMAGE_BYTES, MAX_IMAGE_BYTES_PER_DOCUMENT, MAX_IMAGE_ROW_BYTES};
use crate::print::area::Area;

/// What an image's pixels say.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum ImageInk {
    /// The dark pixels' extent, in the image's unit square.
    Dark(Area),
    /// Decoded and all white: no ink at all.
    White,
    /// Not a kind preflight decodes: all of it counts as ink.
    Undecoded,
}

/// The extent of the dark spans of rows, in pixels.
#[derive(Default)]
struct Extent {
    rows: Option<(u32, u32)>,
    columns: Option<(u32, u32)>,
}

impl Extent {
    /// Dark from column `a` to one before `b` on `row`.
    fn add(&mut self, row: u32, a: u32, b: u32) {
        self.rows = Some(self.rows.map_or((row, row), |(r0, r1)| (r0.min(row), r1.max(row))));
        self.columns = Some(self.columns.map_or((a, b), |(c0, c1)| (c0.min(a), c1.max(b))));
    }

    fn ink(&self, width: u32, height: u32) -> ImageInk {
        let (Some((r0, r1)), Some((c0, c1))) = (self.rows, self.columns) else { return ImageInk::White };
        let (w, h) = (width as f32, height as f32);
        // Row 0 is the top of the image: y = 1 in its unit square.
        ImageInk::Dark(Area {
            x0: c0 as f32 / w,
            y0: 1.0 - (r1 + 1) as f32 / h,
            x1: c1 as f32 / w,
            y1: 1.0 - r0 as f32 / h,
        })
    }
}

/// The ink inside an image XObject, or the limit it is over; what it decodes to is taken from
/// `bytes_left`, the document's budget.
pub(super) fn image_ink(stream: &Stream, bytes_left: &mut u64) -> Result<ImageInk, String> {
    let dict = &stream.dict;
    let int = |key: &[u8]| dict.get(key).and_then(Object::as_i64).ok().and_then(|v| u32::try_from(v).ok());
    let (Some(width), Some(height)) = (int(b"Width"), int(b"Height")) else { return Ok(ImageInk::Undecoded) };
    if width == 0 || height == 0 {
        return Ok(ImageInk::White);
    }
    let filter = match dict.get(b"Filter") {
        Ok(Object::Name(name)) => name.clone(),
        Ok(Object::Array(items)) if items.len() == 1 => match items[0].as_name() {
            Ok(name) => name.to_vec(),
            Err(_) => return Ok(ImageInk::Undecoded),
        },
        _ => return Ok(ImageInk::Undecoded),
    };
    let mut over = |bits: u64| {
        let row = (u64::from(width) * bits).div_ceil(8);
        let bytes = row * u64::from(height);
        if row > MAX_IMAGE_ROW_BYTES || bytes > MAX_IMAGE_BYTES {
            return Err(format!(
                "an image of {width} x {height} pixels is over the {} MB preflight decodes of one image",
                MAX_IMAGE_BYTES >> 20
            ));
        }
        if bytes > *bytes_left {
            return Err(format!(
                "the images decode to more than the {} MB preflight decodes of one document",
                MAX_IMAGE_BYTES_PER_DOCUMENT >> 20
            ));
        }
        *bytes_left -= bytes;
        Ok(row as usize)
    };
    let mut extent = Extent::default();
    match filter.as_slice() {
        b"CCITTFaxDecode" => {
            let parms = dict.get(b"DecodeParms").ok().and_then(|p| p.as_dict().ok());
            let k = parms.and_then(|p| p.get(b"K").and_then(Object::as_i64).ok()).unwrap_or(0);
            let black_is_1 =
                parms.and_then(|p| p.get(b"BlackIs1").and_then(Object::as_bool).ok()).unwrap_or(false);
            let decode_inverted = dict
                .get(b"Decode")
                .ok()
                .and_then(|d| d.as_array().ok())
                .and_then(|d| d.first())
                .and_then(|d| d.as_float().ok())
                == Some(1.0);
            if k >= 0 || black_is_1 || decode_inverted {
                return Ok(ImageInk::Undecoded);
            }
            over(1)?;
            let mut row = 0;
            let decoded =
                fax::decoder::decode_g4(stream.content.iter().copied(), width, Some(height), |transitions| {
                    for pair in transitions.chunks(2) {
                        let end = pair.get(1).copied().unwrap_or(width);
                        if end > pair[0] {
                            extent.add(row, pair[0], end);
                        }
                    }
                    row += 1;
                });
            if decoded.is_none() {
                return Ok(ImageInk::Undecoded);
            }
        }
        b"FlateDecode" => {
            let bits = int(b"BitsPerComponent");
            let channels = match dict.get(b"ColorSpace").and_then(Object::as_name) {
                Ok(b"DeviceGray") => 1,
                Ok(b"DeviceRGB") => 3,
                _ => return Ok(ImageInk::Undecoded),
            };
            if bits != Some(8) || dict.has(b"DecodeParms") || dict.has(b"Decode") {
                return Ok(ImageInk::Undecoded);
            }
            let stride = over(8 * channels)?;
            let channels = channels as usize;
            let mut row = 0u32;
            let complete = inflate_rows(&stream.content, stride, height, |line| {
                let dark = |x: &usize| {
                    line[x * channels..(x + 1) * channels].iter().map(|&v| u32::from(v)).sum::<u32>()
                        < 128 * channels as u32
                };
                let first = (0..width as usize).find(dark);
                let last = (0..width as usize).rev().find(dark);
                if let (Some(a), Some(b)) = (first, last) {
                    extent.add(row, a as u32, b as u32 + 1);
                }
                row += 1;
            });
            if !complete {
                return Ok(ImageInk::Undecoded);
            }
        }
        _ => return Ok(ImageInk::Undecoded),
    }
    Ok(extent.ink(width, height))
}

/// Inflates zlib `data` and hands each `stride`-byte row to `row`, at most `height` of them;
/// `false` when the data is not zlib.
fn inflate_rows(data: &[u8], stride: usize, height: u32, mut row: impl FnMut(&[u8])) -> bool {
    let mut state = InflateState::new_boxed(DataFormat::Zlib);
    let mut line = vec![0u8; stride];
    let mut filled = 0;
    let mut rows = 0;
    let mut input = data;
    while rows < height {
        let result = inflate(&mut state, input, &mut line[filled..], MZFlush::None);
        input = &input[result.bytes_consumed..];
        filled += result.bytes_written;
        if filled == stride {
            row(&line);
            rows += 1;
            filled = 0;
        }
        match result.status {
            // Short data ends the image; rows it lacks are left white, as viewers show them.
            Ok(MZStatus::StreamEnd) => break,
            Ok(MZStatus::Ok) if result.bytes_consumed == 0 && result.bytes_written == 0 => break,
            Ok(MZStatus::Ok) => {}
            Ok(MZStatus::NeedDict) | Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flate_gray(width: u32, height: u32, pixels: &[u8]) -> Stream {
        let mut dict = lopdf::Dictionary::new();
        dict.set("Width", i64::from(width));
        dict.set("Height", i64::from(height));
        dict.set("BitsPerComponent", 8);
        dict.set("ColorSpace", Object::Name(b"DeviceGray".to_vec()));
        dict.set("Filter", Object::Name(b"FlateDecode".to_vec()));
        Stream::new(dict, miniz_oxide::deflate::compress_to_vec_zlib(pixels, 6))
    }

    fn image_ink_of(stream: &Stream) -> Result<ImageInk, String> {
        let mut budget = MAX_IMAGE_BYTES_PER_DOCUMENT;
        image_ink(stream, &mut budget)
    }

    #[test]
    fn the_dark_pixels_of_a_flate_image_are_found_row_by_row() {
        // 4 x 2, one dark pixel at column 2 of the bottom row.
        let ink = image_ink_of(&flate_gray(4, 2, &[255, 255, 255, 255, 255, 255, 0, 255]));
        assert_eq!(ink, Ok(ImageInk::Dark(Area { x0: 0.5, y0: 0.0, x1: 0.75, y1: 0.5 })));
        assert_eq!(image_ink_of(&flate_gray(2, 1, &[255, 255])), Ok(ImageInk::White));
    }

    #[test]
    fn an_image_over_the_limit_is_refused_before_it_is_decoded() {
        let message = image_ink_of(&flate_gray(100_000, 100_000, &[0])).err().unwrap_or_default();
        assert!(message.contains("100000 x 100000") && message.contains("512 MB"), "{message}");
    }
}
