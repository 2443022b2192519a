//! PNG encoding for pages: 8-bit gray, RGB, and bilevel as 1-bit grayscale (a 2550x3300 page
//! in ~50 KiB instead of ~900 KiB as RGB), with the print resolution in pHYs.

use bytes::Bytes;
use png::{BitDepth, ColorType, DeflateCompression, Filter, PixelDimensions, Unit};
use serde::Deserialize;

use super::ImagingError;
use crate::engine::media::{Pixels, Raster};

/// How hard the PNG encoder works: a trade of file size for CPU time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PngCompression {
    /// Fastest encode (fdeflate), files ~20% larger than `default`.
    Fast,
    /// zlib at a level measured as the best size for the time on line-art pages.
    #[default]
    Default,
    /// zlib level 9: the smallest files, ~5x slower than `default`.
    Best,
}

impl PngCompression {
    /// The deflate setting and row filter for `pixels`, measured on 2550x3300 line-art pages
    /// (benches/cpu_stages.rs). For bilevel pages the Up filter turns repeated rows into zero
    /// runs that fdeflate handles in ~0.5 ms (46-64 KiB); zlib does better unfiltered, since
    /// the byte-wise filters scramble the bit patterns it would match: level 4 gives 38-53 KiB
    /// in ~10 ms, level 9 33-47 KiB in ~50 ms.
    fn settings(self, pixels: &Pixels) -> (DeflateCompression, Filter) {
        let bilevel = matches!(pixels, Pixels::Bilevel(_));
        match (self, bilevel) {
            (PngCompression::Fast, _) => (DeflateCompression::FdeflateUltraFast, Filter::Up),
            (PngCompression::Default, true) => (DeflateCompression::Level(4), Filter::NoFilter),
            (PngCompression::Default, false) => (DeflateCompression::Level(6), Filter::Adaptive),
            (PngCompression::Best, true) => (DeflateCompression::Level(9), Filter::NoFilter),
            (PngCompression::Best, false) => (DeflateCompression::Level(9), Filter::Adaptive),
        }
    }
}

/// The PNG of a page, encoded once for every sink that stores it with `compression` (disk and
/// r2 store the same bytes; see [`Raster::encoded_once`]).
pub fn page_png(raster: &Raster, compression: PngCompression) -> Result<Bytes, String> {
    let settings = match compression {
        PngCompression::Fast => "png fast",
        PngCompression::Default => "png default",
        PngCompression::Best => "png best",
    };
    raster.encoded_once(settings, |raster| encode_png(raster, compression).map_err(|e| e.to_string()))
}

/// Dots per inch to the pixels per metre PNG stores (300 DPI is 11811 px/m).
pub fn dots_per_metre(dpi: f32) -> u32 {
    (f64::from(dpi) / 0.0254).round() as u32
}

/// Encodes a raster as PNG; bilevel becomes 1-bit grayscale, and `dpi` (when set) goes in pHYs.
pub fn encode_png(raster: &Raster, compression: PngCompression) -> Result<Vec<u8>, ImagingError> {
    let (color, depth, data) = match &raster.pixels {
        Pixels::Gray(p) => (ColorType::Grayscale, BitDepth::Eight, p),
        Pixels::Rgb(p) => (ColorType::Rgb, BitDepth::Eight, p),
        Pixels::Bilevel(p) => (ColorType::Grayscale, BitDepth::One, p),
    };
    let codec = |e: png::EncodingError| ImagingError::codec("PNG encoding", e);
    let mut out = Vec::with_capacity(data.len() / 8);
    let mut encoder = png::Encoder::new(&mut out, raster.width, raster.height);
    encoder.set_color(color);
    encoder.set_depth(depth);
    let (deflate, filter) = compression.settings(&raster.pixels);
    encoder.set_deflate_compression(deflate);
    encoder.set_filter(filter);
    if let Some(dpi) = raster.dpi.filter(|d| d.is_finite() && *d > 0.0) {
        let ppm = dots_per_metre(dpi);
        encoder.set_pixel_dims(Some(PixelDimensions { xppu: ppm, yppu: ppm, unit: Unit::Meter }));
    }
    let mut writer = encoder.write_header().map_err(codec)?;
    writer.write_image_data(data).map_err(codec)?;
    writer.finish().map_err(codec)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> (png::OutputInfo, Option<PixelDimensions>, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
        let dims = reader.info().pixel_dims;
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info, dims, buf)
    }

    #[test]
    fn bilevel_round_trips_as_one_bit_with_300_dpi() {
        let mut rng = fastrand::Rng::with_seed(9);
        let (width, height) = (61u32, 40u32);
        let stride = Raster::bilevel_stride(width);
        let mut packed: Vec<u8> = (0..stride * height as usize).map(|_| rng.u8(..)).collect();
        // Padding bits are black, as threshold writes them.
        for row in packed.chunks_exact_mut(stride) {
            row[stride - 1] &= !(0xFFu8 >> (width % 8));
        }
        let raster = Raster::new(width, height, Some(300.0), Pixels::Bilevel(packed.clone()));
        for compression in [PngCompression::Fast, PngCompression::Default, PngCompression::Best] {
            let (info, dims, pixels) = decode(&encode_png(&raster, compression).unwrap());
            assert_eq!((info.width, info.height), (width, height));
            assert_eq!((info.color_type, info.bit_depth), (ColorType::Grayscale, BitDepth::One));
            assert_eq!(pixels, packed, "{compression:?}");
            let dims = dims.unwrap();
            assert_eq!((dims.xppu, dims.yppu, dims.unit), (11811, 11811, Unit::Meter));
        }
    }

    #[test]
    fn gray_and_rgb_round_trip() {
        let gray = Raster::new(3, 2, None, Pixels::Gray(vec![0, 50, 100, 150, 200, 250]));
        let (info, dims, pixels) = decode(&encode_png(&gray, PngCompression::Default).unwrap());
        assert_eq!((info.color_type, info.bit_depth), (ColorType::Grayscale, BitDepth::Eight));
        assert!(dims.is_none());
        assert_eq!(pixels, vec![0, 50, 100, 150, 200, 250]);

        let rgb_px: Vec<u8> = (0..2 * 2 * 3).map(|i| i * 20).collect();
        let rgb = Raster::new(2, 2, Some(150.0), Pixels::Rgb(rgb_px.clone()));
        let (info, dims, pixels) = decode(&encode_png(&rgb, PngCompression::Fast).unwrap());
        assert_eq!(info.color_type, ColorType::Rgb);
        assert_eq!(dims.map(|d| d.xppu), Some(5906));
        assert_eq!(pixels, rgb_px);
    }
}
