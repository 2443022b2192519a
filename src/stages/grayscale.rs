//! `grayscale`: RGB pages to 8-bit gray (Pillow's "L" numbers), so later stages work on a
//! third of the bytes. Gray input passes through without a copy.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::engine::declared_kind::TypedKind;
use crate::engine::item::Item;
use crate::engine::media::{Media, Payload};
use crate::engine::options::parse_declared;
use crate::engine::stage::{BuildContext, Component, CpuStage, OptionsError, OutputMedia, Role, StageError};
use crate::imaging::gray::to_gray;

/// The `grayscale` kind.
pub struct Grayscale;

/// The `grayscale` options: none.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Options {}

impl TypedKind for Grayscale {
    const NAME: &'static str = "grayscale";
    const ROLE: Role = Role::Stage;
    const SUMMARY: &'static str = "Converts RGB images to 8-bit gray (ITU-R 601 luma, as Pillow's \"L\")";
    const ACCEPTS: &'static [Media] = &[Media::Rgb, Media::Gray];
    const OUTPUT: OutputMedia = OutputMedia::Fixed(Media::Gray);
    type Options = Options;
    type Parsed = Options;

    fn parse(&self, options: &Value) -> Result<Options, OptionsError> {
        parse_declared(options)
    }

    fn build_from(&self, _options: Options, _ctx: &BuildContext) -> anyhow::Result<Component> {
        Ok(Component::Cpu(Arc::new(GrayscaleStage)))
    }
}

struct GrayscaleStage;

impl CpuStage for GrayscaleStage {
    fn process(&self, _item: &mut Item, input: Payload) -> Result<Payload, StageError> {
        match input {
            Payload::Image(raster) if raster.media() == Media::Gray => Ok(Payload::Image(raster)),
            Payload::Image(raster) if raster.media() == Media::Rgb => {
                Ok(Payload::Image(Arc::new(to_gray(&raster))))
            }
            other => Err(StageError::failed(format!(
                "grayscale takes an rgb or gray image, got {}",
                other.media()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::item::Prompt;
    use crate::engine::media::{Pixels, Raster};
    use crate::engine::stage::Kind;
    use crate::stages::test_support::build_cpu;

    #[test]
    fn rgb_becomes_gray_and_gray_is_shared() {
        let stage = build_cpu(&Grayscale, serde_json::json!({}));
        let mut item = Item::new(0, Prompt::default());
        let rgb = Raster::new(1, 1, None, Pixels::Rgb(vec![255, 0, 0]));
        let Payload::Image(out) = stage.process(&mut item, Payload::Image(Arc::new(rgb))).unwrap() else {
            panic!("not an image")
        };
        assert!(out.pixels == Pixels::Gray(vec![76]));

        let gray = Arc::new(Raster::new(1, 1, None, Pixels::Gray(vec![9])));
        let Payload::Image(same) = stage.process(&mut item, Payload::Image(gray.clone())).unwrap() else {
            panic!("not an image")
        };
        assert!(Arc::ptr_eq(&same, &gray), "gray input was copied");
        assert!(stage.process(&mut item, Payload::Prompt).is_err());
        assert!(Grayscale.check(&serde_json::json!({"level": 3})).is_err());
    }
}
