//! `lineart-cleanup`: mends the 1-bit page without touching the line work. It removes specks
//! (whole ink components up to `speck_px`, far smaller than an eye dot by default), fills
//! pin-holes (enclosed white components up to `pinhole_px`) and, when `gap_px` is set, closes
//! gaps in outlines so a bucket fill stays inside. What it changed goes to the metadata.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::engine::declared_kind::TypedKind;
use crate::engine::item::Item;
use crate::engine::media::{Media, Payload, Pixels, Raster};
use crate::engine::options::parse_declared;
use crate::engine::stage::{BuildContext, Component, CpuStage, OptionsError, OutputMedia, Role, StageError};
use crate::imaging::quality::bits::InkMap;
use crate::imaging::quality::cleanup::{CleanupSteps, clean};

/// The `lineart-cleanup` kind.
pub struct LineartCleanup;

/// Every default, once.
const D: Options = Options { speck_px: 16, pinhole_px: 12, gap_px: 0, min_region_px: 400 };

/// The `lineart-cleanup` options.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    /// Remove ink components of at most this many pixels (a 4 px dot; an eye dot is 50+); 0
    /// keeps all.
    speck_px: u64,
    /// Fill enclosed white holes of at most this many pixels; 0 fills none.
    pinhole_px: u64,
    /// Close gaps in outlines up to this many pixels wide (also fills notches that narrow); 0
    /// is off. At most 32: wider would merge separate lines.
    #[schemars(range(max = 32))]
    gap_px: usize,
    /// The smallest white area counted when reporting the regions gap closing closed.
    min_region_px: u64,
}

impl Default for Options {
    fn default() -> Self {
        D
    }
}

fn parse(options: &Value) -> Result<Options, OptionsError> {
    parse_declared(options)
}

impl TypedKind for LineartCleanup {
    const NAME: &'static str = "lineart-cleanup";
    const ROLE: Role = Role::Stage;
    const SUMMARY: &'static str =
        "Removes specks, fills pin-holes and optionally closes gaps on 1-bit pages, leaving the lines alone";
    const ACCEPTS: &'static [Media] = &[Media::Bilevel];
    const OUTPUT: OutputMedia = OutputMedia::Fixed(Media::Bilevel);
    type Options = Options;
    type Parsed = Options;

    fn parse(&self, options: &Value) -> Result<Options, OptionsError> {
        parse(options)
    }

    fn build_from(&self, o: Options, _ctx: &BuildContext) -> anyhow::Result<Component> {
        let steps = CleanupSteps {
            speck_px: o.speck_px,
            pinhole_px: o.pinhole_px,
            gap_px: o.gap_px,
            min_region_px: o.min_region_px,
        };
        Ok(Component::Cpu(Arc::new(CleanupStage { steps })))
    }
}

struct CleanupStage {
    steps: CleanupSteps,
}

impl CpuStage for CleanupStage {
    fn process(&self, item: &mut Item, input: Payload) -> Result<Payload, StageError> {
        let Payload::Image(raster) = &input else {
            return Err(StageError::failed(format!(
                "lineart-cleanup takes a bilevel image, got {}",
                input.media()
            )));
        };
        let Pixels::Bilevel(packed) = &raster.pixels else {
            return Err(StageError::failed(format!(
                "lineart-cleanup takes a bilevel image (put it after threshold), got {}",
                raster.media()
            )));
        };
        let mut ink = InkMap::from_bilevel(raster.width, raster.height, packed);
        let report = clean(&mut ink, self.steps);
        item.record(
            "cleanup",
            json!({
                "specks_removed": report.specks,
                "speck_pixels": report.speck_pixels,
                "pinholes_filled": report.pinholes,
                "pinhole_pixels": report.pinhole_pixels,
                "gap_pixels": report.gap_pixels,
                "regions_closed": report.gap_regions,
            }),
        );
        if report == Default::default() {
            return Ok(input);
        }
        let (width, height, dpi) = (raster.width, raster.height, raster.dpi);
        Ok(Payload::Image(Arc::new(Raster::new(width, height, dpi, Pixels::Bilevel(ink.to_bilevel())))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::item::Prompt;
    use crate::engine::stage::Kind;
    use crate::imaging::quality::fixtures::{EYE, H, Pen, SOFT, W, eyes, faces, faces_page};
    use crate::stages::test_support::build_cpu;

    /// The ink the threshold makes of a fixture page.
    fn ink_of(gray: &[u8]) -> InkMap {
        InkMap::from_gray(W as u32, H as u32, gray, 128)
    }

    /// Runs the stage on an ink map; the cleaned map and the item's `cleanup` entry.
    fn run(options: Value, ink: &InkMap) -> (InkMap, Value) {
        let stage = build_cpu(&LineartCleanup, options);
        let mut item = Item::new(0, Prompt::default());
        let page = Raster::new(W as u32, H as u32, Some(300.0), Pixels::Bilevel(ink.to_bilevel()));
        let Payload::Image(out) = stage.process(&mut item, Payload::Image(Arc::new(page))).unwrap() else {
            panic!("not an image")
        };
        assert_eq!((out.width, out.height, out.dpi), (W as u32, H as u32, Some(300.0)));
        let Pixels::Bilevel(packed) = &out.pixels else { panic!("not bilevel") };
        (InkMap::from_bilevel(out.width, out.height, packed), item.facts["cleanup"].clone())
    }

    #[test]
    fn specks_go_and_every_line_and_eye_dot_stays() {
        for pen in [SOFT, Pen { width: 4.0, soft: 2.0, ink: 0.0, gaps: 0.0 }] {
            let clean = ink_of(&faces_page(pen, 1).gray());
            let mut speckled_page = faces_page(pen, 1);
            speckled_page.specks(500);
            let speckled = ink_of(&speckled_page.gray());
            let (cleaned, report) = run(json!({}), &speckled);
            // Nothing of the clean page is lost: every line pixel and every eye dot is still ink.
            assert_eq!(clean.count_minus(&cleaned), 0, "line work removed: {report}");
            for (cx, cy, r) in faces() {
                for (x, y) in eyes(cx, cy, r) {
                    assert!(cleaned.get(x as usize, y as usize), "eye dot at {x},{y} (radius {EYE})");
                }
            }
            // What was added is gone, but for specks that landed on a line.
            let left = cleaned.count_minus(&clean);
            assert!(left < speckled.count_minus(&clean) / 10, "{left} speck pixels left: {report}");
            assert!(report["specks_removed"].as_u64().unwrap() > 350, "{report}");
            assert_eq!(
                report["speck_pixels"].as_u64().unwrap(),
                speckled.count() - cleaned.count() + report["pinhole_pixels"].as_u64().unwrap()
            );
        }
    }

    #[test]
    fn a_clean_page_comes_out_as_it_went_in() {
        let clean = ink_of(&faces_page(SOFT, 2).gray());
        let (cleaned, report) = run(json!({}), &clean);
        assert_eq!(cleaned, clean);
        assert_eq!(report["specks_removed"], 0);
        assert_eq!(report["pinholes_filled"], 0);
    }

    #[test]
    fn pin_holes_are_filled_and_gaps_closed_when_asked() {
        let mut holed = ink_of(&faces_page(Pen { width: 14.0, ..SOFT }, 3).gray());
        let (cx, cy, r) = faces().next().unwrap();
        let (x, y) = ((cx + r) as usize, cy as usize);
        holed.fill_run(y, x - 1, x + 1, false);
        let (filled, report) = run(json!({"gap_px": 0}), &holed);
        assert!(filled.get(x, y), "{report}");
        assert_eq!(
            (report["pinholes_filled"].as_u64(), report["pinhole_pixels"].as_u64()),
            (Some(1), Some(2))
        );

        let open = ink_of(&faces_page(Pen { gaps: 12.0, ..SOFT }, 3).gray());
        let (_, untouched) = run(json!({}), &open);
        assert_eq!(untouched["regions_closed"], 0, "gap closing is off by default");
        let (closed, report) = run(json!({"gap_px": 16}), &open);
        assert!(report["regions_closed"].as_u64().unwrap() >= 36, "faces and cheeks close again: {report}");
        assert_eq!(open.count_minus(&closed), 0, "closing only adds ink");
    }

    #[test]
    fn options_are_checked() {
        assert!(LineartCleanup.check(&json!({"speck_px": 0, "gap_px": 8})).is_ok());
        assert_eq!(LineartCleanup.check(&json!({"gap_px": 100})).unwrap_err().path, ["gap_px"]);
        assert!(LineartCleanup.check(&json!({"specks": 3})).is_err());
    }
}
