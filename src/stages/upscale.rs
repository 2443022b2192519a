//! `upscale`: resizes pages to the print size with Lanczos3 (SIMD) and sets their DPI. By
//! default the image is fitted inside the page with white margins, never distorted (the
//! original service stretched 3:4 images onto letter pages, a 3% distortion). The name holds
//! when it shrinks too.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::engine::declared_kind::TypedKind;
use crate::engine::fusion::{Step, record_resize_facts};
use crate::engine::item::Item;
use crate::engine::media::{Media, Payload};
use crate::engine::options::parse_declared;
use crate::engine::stage::{BuildContext, Component, CpuStage, OptionsError, OutputMedia, Role, StageError};
use crate::imaging::resize::{Fit, resize};

/// The `upscale` kind.
pub struct Upscale;

/// The `upscale` options; the defaults are US Letter at 300 DPI, the page the original service printed.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Page width in pixels (2550 = 8.5 in at 300 DPI).
    #[serde(default = "default_width")]
    #[schemars(range(min = 1, max = 20000))]
    width: u32,
    /// Page height in pixels (3300 = 11 in at 300 DPI).
    #[serde(default = "default_height")]
    #[schemars(range(min = 1, max = 20000))]
    height: u32,
    /// contain: fit inside with white margins; cover: fill and crop the centre; stretch: distort.
    #[serde(default)]
    fit: Fit,
    /// Print resolution written to the page (PNG pHYs, PDF size), above 0.
    #[serde(default = "default_dpi")]
    #[schemars(range(max = 10000))]
    dpi: f32,
}

fn default_width() -> u32 {
    2550
}

fn default_height() -> u32 {
    3300
}

fn default_dpi() -> f32 {
    300.0
}

impl Options {
    fn parse(options: &Value) -> Result<Self, OptionsError> {
        let parsed: Options = parse_declared(options)?;
        if !(parsed.dpi.is_finite() && parsed.dpi > 0.0 && parsed.dpi <= 10_000.0) {
            return Err(OptionsError::at(
                "dpi",
                format!("dpi must be above 0 and at most 10000, got {}", parsed.dpi),
            ));
        }
        Ok(parsed)
    }
}

impl TypedKind for Upscale {
    const NAME: &'static str = "upscale";
    const ROLE: Role = Role::Stage;
    const SUMMARY: &'static str =
        "Resizes images to the print size with Lanczos3 (fit, pad or crop) and sets their DPI";
    const ACCEPTS: &'static [Media] = &[Media::Gray, Media::Rgb];
    const OUTPUT: OutputMedia = OutputMedia::SameAsInput;
    type Options = Options;
    type Parsed = Options;

    fn parse(&self, options: &Value) -> Result<Options, OptionsError> {
        Options::parse(options)
    }

    fn build_from(&self, o: Options, _ctx: &BuildContext) -> anyhow::Result<Component> {
        Ok(Component::Cpu(Arc::new(UpscaleStage {
            width: o.width,
            height: o.height,
            fit: o.fit,
            dpi: o.dpi,
        })))
    }
}

struct UpscaleStage {
    width: u32,
    height: u32,
    fit: Fit,
    dpi: f32,
}

impl CpuStage for UpscaleStage {
    fn process(&self, item: &mut Item, input: Payload) -> Result<Payload, StageError> {
        let Payload::Image(raster) = input else {
            return Err(StageError::failed(format!(
                "upscale takes a gray or rgb image, got {}",
                input.media()
            )));
        };
        let mut out = resize(&raster, self.width, self.height, self.fit)
            .map_err(|e| StageError::failed(format!("upscale: {e}")))?;
        out.dpi = Some(self.dpi);
        record_resize_facts(item, &raster, (self.width, self.height));
        Ok(Payload::Image(Arc::new(out)))
    }

    fn step(&self) -> Option<Step> {
        Some(Step::Resize { width: self.width, height: self.height, fit: self.fit, dpi: self.dpi })
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
    fn defaults_make_a_letter_page_at_300_dpi() {
        let stage = build_cpu(&Upscale, serde_json::json!({}));
        let mut item = Item::new(0, Prompt::default());
        let raster = Raster::new(768, 1024, None, Pixels::Gray(vec![0; 768 * 1024]));
        let Payload::Image(out) = stage.process(&mut item, Payload::Image(Arc::new(raster))).unwrap() else {
            panic!("not an image")
        };
        assert_eq!((out.width, out.height, out.dpi, out.media()), (2550, 3300, Some(300.0), Media::Gray));
        assert_eq!(item.facts.get("resolution"), Some(&Value::from("2550x3300")));
        let Pixels::Gray(px) = &out.pixels else { panic!("not gray") };
        // Contain: white margins left and right.
        assert_eq!((px[0], px[2549], px[1275]), (255, 255, 0));
    }

    #[test]
    fn options_are_checked() {
        let kind = Upscale;
        assert!(
            kind.check(&serde_json::json!({"width": 100, "height": 50, "fit": "cover", "dpi": 150})).is_ok()
        );
        assert_eq!(kind.check(&serde_json::json!({"fit": "squash"})).unwrap_err().path, vec!["fit"]);
        assert_eq!(kind.check(&serde_json::json!({"width": 0})).unwrap_err().path, vec!["width"]);
        assert_eq!(kind.check(&serde_json::json!({"dpi": -1})).unwrap_err().path, vec!["dpi"]);
    }
}
