//! Fetching generated images: streamed, capped in size before and while reading, and decoded
//! with limits so a hostile file cannot exhaust memory.

use std::io::Cursor;

use super::error::{CallError, read_capped};
use crate::engine::media::Raster;
use crate::imaging::decode;

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

/// Decodes a PNG or JPEG into RGB pixels (see [`decode::decode_rgb`]: bombs refused from the
/// header, transparency on white); anything else (an HTML error page, a truncated file) is an
/// error naming where it came from.
pub(super) fn decode_rgb(bytes: &[u8], source: &str) -> Result<Raster, String> {
    decode::decode_rgb(Cursor::new(bytes)).map_err(|e| describe(&e, source))
}

/// The size a PNG or JPEG declares, within the limits, without decoding it.
pub(super) fn dimensions(bytes: &[u8], source: &str) -> Result<(u32, u32), String> {
    decode::dimensions(Cursor::new(bytes)).map_err(|e| describe(&e, source))
}

fn describe(error: &decode::DecodeError, source: &str) -> String {
    match error {
        decode::DecodeError::NotAnImage(_) => format!("the file at {source} is {error}"),
        decode::DecodeError::TooLarge { .. } => format!("the file at {source} {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::media::Pixels;

    #[test]
    fn decodes_png_and_refuses_html() {
        let mut png = Vec::new();
        image::RgbImage::from_pixel(3, 2, image::Rgb([10, 20, 30]))
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let raster = decode_rgb(&png, "u").unwrap();
        assert_eq!((raster.width, raster.height), (3, 2));
        assert!(raster.pixels == Pixels::Rgb([10, 20, 30].repeat(6)));
        let error = decode_rgb(b"<html>oops</html>", "https://x/y.png").unwrap_err();
        assert!(error.contains("https://x/y.png") && error.contains("not a PNG or JPEG"), "{error}");
        assert!(decode_rgb(&png[..png.len() / 2], "u").is_err());
    }
}
