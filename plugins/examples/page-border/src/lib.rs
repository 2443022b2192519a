//! An example inkflow plugin: `kind: page-border` draws a black frame around each gray or
//! bilevel page, `margin_px` in from the edges and `width_px` thick. Small on purpose: it is the
//! template to copy when writing a stage outside the inkflow tree.

use inkflow_sdk::{Image, ImageRef, PluginStage, export_plugin};
use serde::Deserialize;

/// Each default is written once, here: serde's defaults and the descriptor's `default` fields
/// both expand these (the descriptor is a compile-time string, so they are macros, not consts).
macro_rules! default_width_px {
    () => {
        12
    };
}
/// A quarter inch at 300 DPI: inside the margin most home printers leave blank.
macro_rules! default_margin_px {
    () => {
        75
    };
}

/// The stage: its options, checked once when the pipeline is built.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageBorder {
    #[serde(default = "default_width")]
    width_px: u32,
    #[serde(default = "default_margin")]
    margin_px: u32,
}

fn default_width() -> u32 {
    default_width_px!()
}

fn default_margin() -> u32 {
    default_margin_px!()
}

impl PluginStage for PageBorder {
    const NAME: &'static str = "page-border";
    const DESCRIPTION: &'static str = concat!(
        r#"{
        "summary": "Draws a black frame around each page",
        "accepts": ["gray", "bilevel"],
        "options": [
            {"name": "width_px", "type": "integer", "default": "#,
        default_width_px!(),
        r#", "doc": "Thickness of the frame in pixels (at least 1)"},
            {"name": "margin_px", "type": "integer", "default": "#,
        default_margin_px!(),
        r#", "doc": "Distance from the page edge to the frame in pixels"}
        ]
    }"#
    );

    fn new(config: &str) -> Result<Self, String> {
        let border: PageBorder = serde_json::from_str(config).map_err(|e| e.to_string())?;
        if border.width_px == 0 {
            return Err("width_px must be at least 1".to_owned());
        }
        Ok(border)
    }

    fn process(&mut self, page: ImageRef<'_>, _meta: &str) -> Result<Image, String> {
        let (width, margin) = (self.width_px, self.margin_px);
        let span = |side: u32| {
            let inner = margin.checked_mul(2).and_then(|both| side.checked_sub(both))?;
            (inner / 2 >= width).then_some(inner)
        };
        let (Some(frame_w), Some(frame_h)) = (span(page.width), span(page.height)) else {
            return Err(format!(
                "a {}x{} page is too small for a {width} px frame {margin} px in from the edges",
                page.width, page.height
            ));
        };
        let mut out = page.to_image();
        out.fill_rect(margin, margin, frame_w, width, 0);
        out.fill_rect(margin, margin + frame_h - width, frame_w, width, 0);
        out.fill_rect(margin, margin, width, frame_h, 0);
        out.fill_rect(margin + frame_w - width, margin, width, frame_h, 0);
        Ok(out)
    }
}

export_plugin!(PageBorder);
