//! Fetching generated images: streamed, capped in size before and while reading, and turned
//! into pixels with limits so a hostile file cannot exhaust memory. Every format a model
//! answers becomes a page: PNG, JPEG and WebP are decoded, an SVG is drawn at print size.

use super::client::MAX_JSON_BYTES;
use super::error::{CallError, read_capped};
use crate::engine::media::Raster;
use crate::imaging::decode::{self, MAX_PIXELS};
use crate::imaging::svg;

/// Room for what an image file holds besides its pixels (ICC profiles, EXIF, XMP, a vector's
/// markup), on top of the pixels themselves.
const METADATA_ALLOWANCE: u64 = 1024 * 1024;

/// The most bytes a request's answers may take, so an image the model may return is never
/// refused after it was paid for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct OutputCaps {
    /// One image, downloaded or inline.
    pub image_bytes: u64,
    /// The JSON result, which holds every image inline in `sync_mode`.
    pub answer_bytes: u64,
}

impl OutputCaps {
    /// The caps for a model whose largest image is `max_output` pixels, `images` per request,
    /// with `configured` the stage's `max_image_bytes`: raised to what such an image can take
    /// in any format (8-bit RGBA stored uncompressed, plus its metadata), base64 inline in
    /// `sync_mode`. The catalogue of models feeds `max_output`; without it, the size asked for.
    /// Refuses a model whose images could not be decoded at all (over [`MAX_PIXELS`]), before
    /// anything is submitted.
    pub(super) fn for_model(
        model: &str,
        max_output: (u32, u32),
        images: u32,
        configured: u64,
        sync_mode: bool,
    ) -> Result<Self, String> {
        let pixels = u64::from(max_output.0) * u64::from(max_output.1);
        if pixels > MAX_PIXELS {
            return Err(format!(
                "{model} answers images of up to {}x{} pixels, over the limit of {MAX_PIXELS} pixels a page can \
                 be decoded at: nothing is submitted; ask for a smaller image_size",
                max_output.0, max_output.1
            ));
        }
        let image_bytes = configured.max(pixels * 4 + METADATA_ALLOWANCE);
        let inline = u64::from(images.max(1)) * image_bytes.div_ceil(3) * 4;
        let answer_bytes =
            if sync_mode { MAX_JSON_BYTES.max(inline + METADATA_ALLOWANCE) } else { MAX_JSON_BYTES };
        Ok(OutputCaps { image_bytes, answer_bytes })
    }
}

/// `GET url` without credentials, returning at most `max_bytes` of body.
pub(super) async fn fetch(client: &reqwest::Client, url: &str, max_bytes: u64) -> Result<Vec<u8>, CallError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| CallError::Invalid(format!("bad image URL {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        let scheme = parsed.scheme();
        return Err(CallError::Invalid(format!(
            "image URL scheme {scheme:?} is not supported (is sync_mode set?)"
        )));
    }
    let response = client.get(parsed).send().await.map_err(|e| CallError::from_reqwest(&e))?;
    if !response.status().is_success() {
        return Err(CallError::from_response(response).await);
    }
    read_capped(response, max_bytes, &format!("the image at {url}")).await
}

/// The file's format as the page's metadata names it: `svg`, `png`, `jpeg`, `webp` or `unknown`.
pub(super) fn format_name(bytes: &[u8]) -> &'static str {
    if svg::looks_like_svg(bytes) {
        return "svg";
    }
    match image::guess_format(bytes) {
        Ok(image::ImageFormat::Png) => "png",
        Ok(image::ImageFormat::Jpeg) => "jpeg",
        Ok(image::ImageFormat::WebP) => "webp",
        _ => "unknown",
    }
}

/// The pixel size the page will have, without decoding it: a raster's (see
/// [`decode::dimensions`]: limits, truncation, EXIF orientation), or for an SVG the print size
/// it is drawn at (see [`svg::raster_size`]), given `nominal`, the size the model was asked for.
pub(super) fn page_size(bytes: &[u8], source: &str, nominal: (u32, u32)) -> Result<(u32, u32), String> {
    if svg::looks_like_svg(bytes) {
        let declared = svg::declared_size(bytes).map_err(|e| format!("the file at {source} is {e}"))?;
        return Ok(svg::raster_size(declared, nominal));
    }
    decode::dimensions(bytes).map_err(|e| describe(&e, source))
}

/// The page's RGB pixels at `size` (what [`page_size`] said): a raster decoded, a vector drawn.
pub(super) fn decode_rgb(bytes: &[u8], source: &str, size: (u32, u32)) -> Result<Raster, String> {
    if svg::looks_like_svg(bytes) {
        return svg::rasterize(bytes, size.0, size.1).map_err(|e| format!("the file at {source}: {e}"));
    }
    decode::decode_rgb(bytes).map_err(|e| describe(&e, source))
}

fn describe(error: &decode::DecodeError, source: &str) -> String {
    match error {
        decode::DecodeError::TooLarge { .. } => format!("the file at {source} {error}"),
        _ => format!("the file at {source} is {error}"),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::engine::media::Pixels;

    #[test]
    fn decodes_png_and_refuses_html() {
        let mut png = Vec::new();
        image::RgbImage::from_pixel(3, 2, image::Rgb([10, 20, 30]))
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let raster = decode_rgb(&png, "u", (3, 2)).unwrap();
        assert_eq!((raster.width, raster.height), (3, 2));
        assert!(raster.pixels == Pixels::Rgb([10, 20, 30].repeat(6)));
        let error = decode_rgb(b"<html>oops</html>", "https://x/y.png", (1, 1)).unwrap_err();
        assert!(error.contains("https://x/y.png") && error.contains("not a PNG, JPEG or WebP"), "{error}");
        assert!(decode_rgb(&png[..png.len() / 2], "u", (3, 2)).is_err());
        assert_eq!(
            (format_name(&png), format_name(b"<svg xmlns='x'/>"), format_name(b"<html>")),
            ("png", "svg", "unknown")
        );
    }

    #[test]
    fn caps_follow_the_largest_image_the_model_returns() {
        let caps = OutputCaps::for_model("m", (1024, 1024), 1, 10 * 1024 * 1024, false).unwrap();
        assert_eq!(caps, OutputCaps { image_bytes: 10 * 1024 * 1024, answer_bytes: MAX_JSON_BYTES });
        let big = OutputCaps::for_model("m", (2048, 2048), 4, 1000, true).unwrap();
        assert_eq!(big.image_bytes, 2048 * 2048 * 4 + METADATA_ALLOWANCE);
        assert!(big.answer_bytes >= 4 * big.image_bytes * 4 / 3, "four inline images fit the answer");
        let error = OutputCaps::for_model("m", (8000, 8000), 1, 1000, false).unwrap_err();
        assert!(error.contains("8000x8000") && error.contains("nothing is submitted"), "{error}");
    }
}
