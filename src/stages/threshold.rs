//! `threshold`: gray to true black and white, stored one bit per pixel. Run it after
//! `upscale` so the page keeps smooth edges and no gray pixel survives.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::engine::declared_kind::TypedKind;
use crate::engine::fusion::Step;
use crate::engine::item::Item;
use crate::engine::media::{Media, Payload};
use crate::engine::options::parse_declared;
use crate::engine::stage::{BuildContext, Component, CpuStage, OptionsError, OutputMedia, Role, StageError};
use crate::imaging::resize::recycle;
use crate::imaging::threshold::threshold;

/// The `threshold` kind.
pub struct Threshold;

/// The `threshold` options.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Pixels darker than this become black, the rest white.
    #[serde(default = "default_level")]
    level: u8,
}

fn default_level() -> u8 {
    128
}

impl TypedKind for Threshold {
    const NAME: &'static str = "threshold";
    const ROLE: Role = Role::Stage;
    const SUMMARY: &'static str =
        "Turns gray or RGB images into 1-bit black and white (below `level` is black)";
    const ACCEPTS: &'static [Media] = &[Media::Gray, Media::Rgb];
    const OUTPUT: OutputMedia = OutputMedia::Fixed(Media::Bilevel);
    type Options = Options;
    type Parsed = Options;

    fn parse(&self, options: &Value) -> Result<Options, OptionsError> {
        parse_declared(options)
    }

    fn build_from(&self, options: Options, _ctx: &BuildContext) -> anyhow::Result<Component> {
        Ok(Component::Cpu(Arc::new(ThresholdStage { level: options.level })))
    }
}

struct ThresholdStage {
    level: u8,
}

impl CpuStage for ThresholdStage {
    fn process(&self, item: &mut Item, input: Payload) -> Result<Payload, StageError> {
        match input {
            Payload::Image(raster) if matches!(raster.media(), Media::Gray | Media::Rgb) => {
                item.record("threshold", self.level);
                let page = threshold(&raster, self.level);
                // The gray page dies here in a chain: its memory goes to the next resize.
                if let Ok(gray) = Arc::try_unwrap(raster) {
                    recycle(gray);
                }
                Ok(Payload::Image(Arc::new(page)))
            }
            // Fused after `upscale`, the kernel made the page at this level already
            // ([`crate::engine::fusion::kernels`]); a pipeline file cannot wire bilevel in.
            Payload::Image(raster) if raster.media() == Media::Bilevel => {
                item.record("threshold", self.level);
                Ok(Payload::Image(raster))
            }
            other => {
                Err(StageError::failed(format!("threshold takes a gray or rgb image, got {}", other.media())))
            }
        }
    }

    fn step(&self) -> Option<Step> {
        Some(Step::Threshold { level: self.level })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::item::Prompt;
    use crate::engine::media::{Pixels, Raster};
    use crate::engine::stage::Kind;
    use crate::imaging::gray::to_gray;
    use crate::stages::test_support::build_cpu;

    #[test]
    fn output_is_strictly_black_and_white_at_the_level() {
        let stage = build_cpu(&Threshold, serde_json::json!({"level": 100}));
        let mut item = Item::new(0, Prompt::default());
        let gray: Vec<u8> = (0..=255).collect();
        let raster = Raster::new(16, 16, Some(300.0), Pixels::Gray(gray));
        let Payload::Image(out) = stage.process(&mut item, Payload::Image(Arc::new(raster))).unwrap() else {
            panic!("not an image")
        };
        assert_eq!(out.media(), Media::Bilevel);
        let Pixels::Gray(back) = to_gray(&out).pixels else { panic!("not gray") };
        assert!(back.iter().all(|&p| p == 0 || p == 255), "gray pixels left");
        for (value, px) in back.iter().enumerate() {
            assert_eq!(*px == 255, value >= 100, "pixel value {value}");
        }
        assert_eq!(item.facts.get("threshold"), Some(&Value::from(100)));
    }

    #[test]
    fn bad_levels_are_refused_by_check() {
        let kind = Threshold;
        assert!(kind.check(&serde_json::json!({})).is_ok());
        let err = kind.check(&serde_json::json!({"level": 256})).unwrap_err();
        assert_eq!(err.path, vec!["level"]);
        assert!(kind.check(&serde_json::json!({"levle": 3})).is_err());
    }
}
