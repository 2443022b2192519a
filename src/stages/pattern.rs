//! The `pattern` stage: the embedded offline generator, so a whole book can be made with no API
//! key and no network (and tests and benchmarks have real line art to work on).

use std::sync::Arc;
use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::declared_kind::TypedKind;
use crate::engine::item::{Item, Trial};
use crate::engine::media::{Media, Payload};
use crate::engine::options::parse_declared;
use crate::engine::stage::{BuildContext, Component, CpuStage, OptionsError, OutputMedia, Role, StageError};
use crate::imaging::pattern::{Defect, Family, draw_family, draw_spoiled, family_for};

/// The smallest and largest side the stage draws, in pixels.
const SIDE: std::ops::RangeInclusive<u32> = 64..=8192;

/// Kind `pattern`: draws a deterministic coloring page for each prompt.
pub struct Pattern;

/// The `pattern` options.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Page size in pixels, each side from 64 to 8192.
    #[serde(default)]
    size: Size,
    /// Varies the drawings; an item's own "seed" field wins.
    #[serde(default)]
    seed: u64,
    /// The kind of drawing; auto picks from the prompt's words (flower -> botanical...) or its hash.
    #[serde(default)]
    style: Style,
    /// Share of pages drawn with a defect a model makes (specks, shading, a blob, open outlines,
    /// faint lines, a blank page, a photo), picked by prompt and seed, for trying lineart-check
    /// offline; the item's metadata names it (`defect`).
    #[serde(default)]
    #[schemars(range(min = 0, max = 1))]
    defects: f64,
}

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct Size {
    width: u32,
    height: u32,
}

impl Default for Size {
    fn default() -> Self {
        Size { width: 768, height: 1024 }
    }
}

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
enum Style {
    /// From the prompt's words, else its hash.
    #[default]
    Auto,
    Mandala,
    Geometric,
    Botanical,
}

impl Style {
    fn family(self) -> Option<Family> {
        match self {
            Style::Auto => None,
            Style::Mandala => Some(Family::Mandala),
            Style::Geometric => Some(Family::Geometric),
            Style::Botanical => Some(Family::Botanical),
        }
    }
}

fn parse(options: &Value) -> Result<Options, OptionsError> {
    let options: Options = parse_declared(options)?;
    for (name, value) in [("width", options.size.width), ("height", options.size.height)] {
        if !SIDE.contains(&value) {
            return Err(OptionsError::at(
                &format!("size.{name}"),
                format!("{name} must be from {} to {} pixels, got {value}", SIDE.start(), SIDE.end()),
            ));
        }
    }
    if !(0.0..=1.0).contains(&options.defects) {
        return Err(OptionsError::at(
            "defects",
            format!("defects is the share of pages to spoil, from 0 to 1, got {}", options.defects),
        ));
    }
    Ok(options)
}

impl TypedKind for Pattern {
    const NAME: &'static str = "pattern";
    const ROLE: Role = Role::Stage;
    const SUMMARY: &'static str =
        "Draws offline coloring-book line art (mandala, geometric, botanical) from each prompt";
    const ACCEPTS: &'static [Media] = &[Media::Prompt];
    const OUTPUT: OutputMedia = OutputMedia::Fixed(Media::Rgb);
    type Options = Options;
    type Parsed = Options;

    fn parse(&self, options: &Value) -> Result<Options, OptionsError> {
        parse(options)
    }

    fn build_from(&self, options: Options, _ctx: &BuildContext) -> anyhow::Result<Component> {
        Ok(Component::Cpu(Arc::new(PatternStage {
            size: options.size,
            seed: options.seed,
            family: options.style.family(),
            defects: options.defects,
        })))
    }
}

/// A built `pattern` stage.
struct PatternStage {
    size: Size,
    seed: u64,
    family: Option<Family>,
    defects: f64,
}

impl PatternStage {
    /// The item's own seed (recorded by an earlier stage, or a `seed` field of the prompt file)
    /// wins over the stage's, so one page can be redrawn differently without touching the rest.
    fn seed_for(&self, item: &Item) -> Result<u64, StageError> {
        match item.facts.get("seed").or_else(|| item.prompt.extra.get("seed")) {
            None => Ok(self.seed),
            Some(value) => value.as_u64().ok_or_else(|| {
                StageError::failed(format!("the item's \"seed\" must be a whole number, got {value}"))
            }),
        }
    }
}

impl CpuStage for PatternStage {
    fn process(&self, item: &mut Item, _input: Payload) -> Result<Payload, StageError> {
        // A later candidate of the page (a re-roll) is drawn from a seed of its own.
        let seed = self.seed_for(item)?;
        let seed = Trial::seed(&item.key, Some(seed), item.trial.number).unwrap_or(seed);
        let started = Instant::now();
        let prompt = &item.prompt.image_prompt;
        let family = self.family.unwrap_or_else(|| family_for(prompt, seed));
        let (width, height) = (self.size.width, self.size.height);
        let defect = Defect::pick(prompt, seed, self.defects);
        let raster = match defect {
            Some(defect) => draw_spoiled(family, prompt, seed, width, height, defect),
            None => draw_family(family, prompt, seed, width, height),
        };
        if let Some(defect) = defect {
            item.record("defect", defect.name());
        }
        item.generation_time = Some(started.elapsed());
        item.record("model", "inkflow/pattern");
        item.record("seed", seed);
        item.record("style", family.name());
        item.record("resolution", format!("{}x{}", self.size.width, self.size.height));
        Ok(Payload::Image(Arc::new(raster)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::item::Prompt;
    use crate::engine::media::Pixels;
    use crate::engine::stage::Kind;
    use serde_json::json;

    fn stage(options: Value) -> Arc<dyn CpuStage> {
        let ctx = BuildContext {
            id: "draw".into(),
            inputs: vec!["prompts".into()],
            output_dir: "out".into(),
            pipeline_file: "p.yaml".into(),
            dry_run: false,
            room_below: 4,
        };
        match Pattern.build(&options, &ctx) {
            Ok(Component::Cpu(stage)) => stage,
            Ok(_) => panic!("pattern must build a CPU stage"),
            Err(e) => panic!("valid options were refused: {e}"),
        }
    }

    fn item(text: &str) -> Item {
        Item::new(0, Prompt { image_prompt: text.into(), number: 1, ..Prompt::default() })
    }

    fn rgb(payload: Payload) -> (u32, u32, Vec<u8>) {
        match payload {
            Payload::Image(raster) => match &raster.pixels {
                Pixels::Rgb(p) => (raster.width, raster.height, p.clone()),
                _ => panic!("pattern must give RGB"),
            },
            other => panic!("pattern must give an image, got {other:?}"),
        }
    }

    #[test]
    fn draws_the_configured_size_and_records_facts() {
        let stage =
            stage(json!({ "size": { "width": 300, "height": 200 }, "seed": 7, "style": "geometric" }));
        let mut item = item("a lighthouse");
        let (w, h, pixels) = rgb(stage.process(&mut item, Payload::Prompt).expect("draws"));
        assert_eq!((w, h, pixels.len()), (300, 200, 300 * 200 * 3));
        assert_eq!(item.facts["model"], "inkflow/pattern");
        assert_eq!(item.facts["seed"], 7);
        assert_eq!(item.facts["style"], "geometric");
        assert_eq!(item.facts["resolution"], "300x200");
        assert!(item.generation_time.is_some());
    }

    #[test]
    fn the_items_seed_overrides_the_stage_seed() {
        let stage = stage(json!({ "size": { "width": 128, "height": 128 }, "seed": 1 }));
        let mut plain = item("an owl");
        let mut seeded = item("an owl");
        seeded.prompt.extra.insert("seed".into(), json!(99));
        let first = rgb(stage.process(&mut plain, Payload::Prompt).expect("draws"));
        let second = rgb(stage.process(&mut seeded, Payload::Prompt).expect("draws"));
        assert_eq!(seeded.facts["seed"], 99);
        assert_ne!(first, second);
        let mut bad = item("an owl");
        bad.record("seed", "lucky");
        let err = stage.process(&mut bad, Payload::Prompt).expect_err("a text seed is refused");
        assert!(err.to_string().contains("\"seed\" must be a whole number"), "{err}");
    }

    #[test]
    fn defects_spoil_the_share_of_pages_asked_for() {
        let size = json!({ "width": 96, "height": 128 });
        let count = |share: f64| {
            let stage = stage(json!({ "size": size, "defects": share }));
            (0..40)
                .filter(|i| {
                    let mut item = item(&format!("page {i}"));
                    stage.process(&mut item, Payload::Prompt).expect("draws");
                    item.facts.contains_key("defect")
                })
                .count()
        };
        assert_eq!(count(0.0), 0);
        assert_eq!(count(1.0), 40);
        assert!((4..=20).contains(&count(0.3)), "about 12 of 40");
        let spoiled = stage(json!({ "size": size, "defects": 1.0 }));
        let (mut a, mut b) = (item("an owl"), item("an owl"));
        assert_eq!(
            rgb(spoiled.process(&mut a, Payload::Prompt).unwrap()),
            rgb(spoiled.process(&mut b, Payload::Prompt).unwrap())
        );
        assert_eq!(a.facts["defect"], b.facts["defect"], "the same page always gets the same defect");
        assert_eq!(Pattern.check(&json!({ "defects": 1.5 })).unwrap_err().path, ["defects"]);
    }

    #[test]
    fn check_bounds_the_size_and_names_the_field() {
        let kind = Pattern;
        assert!(kind.check(&json!({})).is_ok());
        let err = kind.check(&json!({ "size": { "width": 10, "height": 1024 } })).expect_err("too small");
        assert_eq!(err.path, ["size", "width"]);
        let err = kind.check(&json!({ "size": { "width": 768, "height": 9000 } })).expect_err("too large");
        assert_eq!(err.path, ["size", "height"]);
        let err = kind.check(&json!({ "style": "cubist" })).expect_err("unknown style");
        assert_eq!(err.path, ["style"]);
        assert!(kind.check(&json!({ "colour": "red" })).is_err());
    }
}
