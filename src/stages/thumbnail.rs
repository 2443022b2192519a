//! `thumbnail`: a small JPEG preview of each page, for galleries and listings.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::engine::declared_kind::TypedKind;
use crate::engine::item::Item;
use crate::engine::media::{Media, Payload};
use crate::engine::options::parse_declared;
use crate::engine::stage::{BuildContext, Component, CpuStage, OptionsError, OutputMedia, Role, StageError};
use crate::imaging::jpeg::encode_thumbnail;

/// The `thumbnail` kind.
pub struct Thumbnail;

/// The `thumbnail` options.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Largest thumbnail width, in pixels.
    #[serde(default = "default_width")]
    #[schemars(range(min = 1, max = 10000))]
    width: u32,
    /// Largest thumbnail height, in pixels.
    #[serde(default = "default_height")]
    #[schemars(range(min = 1, max = 10000))]
    height: u32,
    /// JPEG quality.
    #[serde(default = "default_quality")]
    #[schemars(range(min = 1, max = 100))]
    quality: u8,
}

// The original service's thumbnail box and quality.
fn default_width() -> u32 {
    400
}

fn default_height() -> u32 {
    518
}

fn default_quality() -> u8 {
    85
}

impl TypedKind for Thumbnail {
    const NAME: &'static str = "thumbnail";
    const ROLE: Role = Role::Stage;
    const SUMMARY: &'static str = "Makes a JPEG preview that fits within width x height";
    const ACCEPTS: &'static [Media] = &[Media::Gray, Media::Rgb, Media::Bilevel];
    const OUTPUT: OutputMedia = OutputMedia::Fixed(Media::Encoded);
    type Options = Options;
    type Parsed = Options;

    fn parse(&self, options: &Value) -> Result<Options, OptionsError> {
        parse_declared(options)
    }

    fn build_from(&self, o: Options, _ctx: &BuildContext) -> anyhow::Result<Component> {
        Ok(Component::Cpu(Arc::new(ThumbnailStage { width: o.width, height: o.height, quality: o.quality })))
    }
}

struct ThumbnailStage {
    width: u32,
    height: u32,
    quality: u8,
}

impl CpuStage for ThumbnailStage {
    fn process(&self, _item: &mut Item, input: Payload) -> Result<Payload, StageError> {
        let Payload::Image(raster) = input else {
            return Err(StageError::failed(format!("thumbnail takes an image, got {}", input.media())));
        };
        let encoded = encode_thumbnail(&raster, self.width, self.height, self.quality)
            .map_err(|e| StageError::failed(format!("thumbnail: {e}")))?;
        Ok(Payload::Encoded(Arc::new(encoded)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::item::Prompt;
    use crate::engine::media::{EncodedFormat, Pixels, Raster};
    use crate::engine::stage::Kind;
    use crate::stages::test_support::build_cpu;

    #[test]
    fn a_page_becomes_a_jpeg_within_400x518() {
        let stage = build_cpu(&Thumbnail, serde_json::json!({}));
        let mut item = Item::new(0, Prompt::default());
        let stride = Raster::bilevel_stride(2550);
        let page = Raster::new(2550, 3300, Some(300.0), Pixels::Bilevel(vec![0xF0; stride * 3300]));
        let Payload::Encoded(jpeg) = stage.process(&mut item, Payload::Image(Arc::new(page))).unwrap() else {
            panic!("not encoded")
        };
        assert_eq!(jpeg.format, EncodedFormat::Jpeg);
        let decoded = image::load_from_memory_with_format(&jpeg.bytes, image::ImageFormat::Jpeg).unwrap();
        assert!(decoded.width() <= 400 && decoded.height() <= 518);
        assert_eq!((decoded.width(), decoded.height()), (jpeg.width, jpeg.height));
    }

    #[test]
    fn options_are_checked() {
        let kind = Thumbnail;
        assert_eq!(kind.check(&serde_json::json!({"quality": 0})).unwrap_err().path, vec!["quality"]);
        assert_eq!(kind.check(&serde_json::json!({"width": 0})).unwrap_err().path, vec!["width"]);
        assert!(kind.check(&serde_json::json!({"width": 200, "height": 200, "quality": 70})).is_ok());
    }
}
