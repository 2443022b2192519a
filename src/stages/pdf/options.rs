//! The `pdf` options as written in the pipeline file, and the settings a built sink works with.

use super::*;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::engine::output_path::OutputPath;
use crate::engine::stage::{OptionsError, parse_options};
use crate::print::font::Font;

/// The `pdf` options, as written in the pipeline file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    #[serde(default = "default_path")]
    pub(super) path: OutputPath,
    #[serde(default)]
    pub(super) page_size: PageSize,
    #[serde(default)]
    pub(super) margin: f32,
    #[serde(default)]
    pub(super) title: Option<String>,
    #[serde(default)]
    pub(super) author: Option<String>,
    #[serde(default)]
    pub(super) page_numbers: bool,
    #[serde(default)]
    pub(super) on_missing: OnMissing,
    #[serde(default = "default_creator")]
    pub(super) creator: String,
    #[serde(default)]
    pub(super) font: Option<PathBuf>,
}

pub(super) fn default_path() -> OutputPath {
    OutputPath::new("book.pdf").expect("book.pdf is a valid output path")
}

pub(super) fn default_creator() -> String {
    "inkflow".into()
}

/// PDF viewers and printers reject pages over 200 inches (PDF 1.7, annex C).
pub(super) const MAX_PAGE_PT: f32 = 14_400.0;
/// The smallest printable area left inside the margins: one inch.
pub(super) const MIN_PRINTABLE_PT: f32 = 72.0;

impl Options {
    pub(super) fn parse(options: &Value) -> Result<Self, OptionsError> {
        let options: Options = parse_options(options)?;
        let PageSize { width, height } = options.page_size;
        for (side, value) in [("width_pt", width), ("height_pt", height)] {
            if !(MIN_PRINTABLE_PT..=MAX_PAGE_PT).contains(&value) {
                return Err(OptionsError::at(
                    &format!("page_size.{side}"),
                    format!("{value} pt is outside {MIN_PRINTABLE_PT}..={MAX_PAGE_PT} pt (1 to 200 inches)"),
                ));
            }
        }
        if !options.margin.is_finite() || options.margin < 0.0 {
            return Err(OptionsError::at(
                "margin",
                format!("{} is not a margin in points (0 or more)", options.margin),
            ));
        }
        if width.min(height) - 2.0 * options.margin < MIN_PRINTABLE_PT {
            return Err(OptionsError::at(
                "margin",
                format!(
                    "a {} pt margin leaves less than one inch of a {width}x{height} pt page",
                    options.margin
                ),
            ));
        }
        Ok(options)
    }
}

/// A page size in points (1/72 inch).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct PageSize {
    pub(super) width: f32,
    pub(super) height: f32,
}

/// US letter, 8.5x11 in: the default, as the generated pages are 2550x3300 px at 300 DPI.
pub(super) const LETTER: PageSize = PageSize { width: 612.0, height: 792.0 };
/// ISO A4, 210x297 mm.
pub(super) const A4: PageSize = PageSize { width: 595.28, height: 841.89 };

impl Default for PageSize {
    fn default() -> Self {
        LETTER
    }
}

/// The `page_size: { width_pt, height_pt }` form; the unit is in the names because every other
/// size in a pipeline is in pixels.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CustomPageSize {
    pub(super) width_pt: f32,
    pub(super) height_pt: f32,
}

impl<'de> Deserialize<'de> for PageSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const EXPECTED: &str = "expected letter, a4 or { width_pt, height_pt }";
        match Value::deserialize(deserializer)? {
            Value::String(name) => match name.as_str() {
                "letter" => Ok(LETTER),
                "a4" => Ok(A4),
                other => Err(D::Error::custom(format!("unknown page size `{other}`: {EXPECTED}"))),
            },
            custom @ Value::Object(_) => serde_json::from_value::<CustomPageSize>(custom)
                .map(|c| PageSize { width: c.width_pt, height: c.height_pt })
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!("{other} is not a page size: {EXPECTED}"))),
        }
    }
}

/// What the book does about an item that has no image (failed, filtered or never written).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum OnMissing {
    /// Leave the page out.
    Skip,
    /// A text page naming the prompt and the reason: the default, because a silently missing
    /// page shifts every later page number of a printed book.
    #[default]
    Placeholder,
    /// Write no book; `finish` names the missing items.
    Fail,
}

/// The resolved options a built sink works with.
pub(super) struct Settings {
    pub(super) pages: PageStore,
    pub(super) final_path: PathBuf,
    pub(super) partial_path: PathBuf,
    pub(super) page: PageSize,
    pub(super) margin: f32,
    pub(super) title: Option<String>,
    pub(super) author: Option<String>,
    pub(super) creator: String,
    pub(super) page_numbers: bool,
    pub(super) on_missing: OnMissing,
    pub(super) font: Font,
}
