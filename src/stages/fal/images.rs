//! The images of a finished request: read from fal's result (`images[]` with one
//! `has_nsfw_concepts` flag each), and their bytes, from a URL on fal's CDN or from the
//! `data:` URI fal returns in `sync_mode`.

use base64::Engine as _;
use serde_json::Value;

use super::error::CallError;

/// One image of a result.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct ResultImage {
    /// Its place in fal's `images[]`.
    pub index: usize,
    /// Where its bytes are: an http(s) URL, or a `data:` URI.
    pub url: String,
    /// fal's safety checker flagged it: it is never downloaded or written.
    pub flagged: bool,
    /// Its size as fal states it, when it does.
    pub width: Option<u64>,
    pub height: Option<u64>,
}

impl ResultImage {
    /// Where the image came from, short enough for metadata and messages.
    pub(super) fn source(&self) -> String {
        if self.url.starts_with("data:") {
            "an inline data: URI (sync_mode)".to_owned()
        } else {
            self.url.clone()
        }
    }
}

/// The images of a result, or why it has none.
pub(super) fn result_images(result: &Value) -> Result<Vec<ResultImage>, String> {
    let entries = result.get("images").and_then(Value::as_array).filter(|images| !images.is_empty());
    let Some(entries) = entries else {
        let shown: String = result.to_string().chars().take(300).collect();
        return Err(format!("fal's result has no images: {shown}"));
    };
    let flags = result.get("has_nsfw_concepts").and_then(Value::as_array);
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let url = entry.get("url").and_then(Value::as_str).ok_or_else(|| {
                format!("image {index} of fal's result has no url: {}", truncated(&entry.to_string()))
            })?;
            Ok(ResultImage {
                index,
                url: url.to_owned(),
                flagged: flags.and_then(|f| f.get(index)).and_then(Value::as_bool).unwrap_or(false),
                width: entry.get("width").and_then(Value::as_u64),
                height: entry.get("height").and_then(Value::as_u64),
            })
        })
        .collect()
}

/// The bytes of a `data:` URI (`data:image/png;base64,...`), refusing more than `max_bytes`
/// before decoding (base64 is 4 characters per 3 bytes).
pub(super) fn decode_data_uri(uri: &str, max_bytes: u64) -> Result<Vec<u8>, CallError> {
    let invalid = |why: &str| CallError::Invalid(format!("fal's inline image (sync_mode) {why}"));
    let rest = uri.strip_prefix("data:").ok_or_else(|| invalid("is not a data: URI"))?;
    let (header, payload) = rest.split_once(',').ok_or_else(|| invalid("has no ',' before its data"))?;
    if !header.ends_with(";base64") {
        return Err(invalid("is not base64-encoded"));
    }
    let decoded_len = (payload.len() as u64).div_ceil(4) * 3;
    if decoded_len > max_bytes.saturating_add(2) {
        return Err(CallError::Invalid(format!(
            "fal's inline image is about {decoded_len} bytes, over the limit of {max_bytes}"
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|e| invalid(&format!("is not valid base64: {e}")))?;
    if bytes.len() as u64 > max_bytes {
        return Err(CallError::Invalid(format!(
            "fal's inline image is {} bytes, over the limit of {max_bytes}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn truncated(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_image_is_read_with_its_own_flag() {
        let result = json!({
            "images": [{"url": "https://v3.fal.media/a.png", "width": 8, "height": 6}, {"url": "data:image/png;base64,AA=="}],
            "has_nsfw_concepts": [false, true],
        });
        let images = result_images(&result).unwrap();
        assert_eq!(images.len(), 2);
        assert_eq!((images[0].flagged, images[0].width, images[1].flagged), (false, Some(8), true));
        assert_eq!(images[1].source(), "an inline data: URI (sync_mode)");
        assert!(result_images(&json!({"images": []})).unwrap_err().contains("no images"));
        assert!(result_images(&json!({"images": [{"width": 1}]})).unwrap_err().contains("no url"));
    }

    #[test]
    fn data_uris_are_decoded_within_the_cap() {
        let uri =
            format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(b"png!"));
        assert_eq!(decode_data_uri(&uri, 100).unwrap(), b"png!");
        assert!(decode_data_uri(&uri, 2).unwrap_err().to_string().contains("over the limit"));
        let huge = format!("data:image/png;base64,{}", "A".repeat(4000));
        assert!(decode_data_uri(&huge, 100).unwrap_err().to_string().contains("over the limit"));
        assert!(decode_data_uri("data:text/plain,hello", 100).is_err());
        assert!(decode_data_uri("data:image/png;base64,@@@", 100).is_err());
    }
}
