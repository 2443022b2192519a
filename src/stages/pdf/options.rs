//! The `pdf` options as written in the pipeline file, and the settings a built sink works with.

use super::*;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::engine::output_path::OutputPath;
use crate::engine::stage::{OptionsError, parse_options};
use crate::print::font::Font;
use crate::print::{Length, MIN_PAGES, Trim};

/// The `pdf` options, as written in the pipeline file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    #[serde(default = "default_path")]
    pub(super) path: OutputPath,
    #[serde(default = "default_trim")]
    pub(super) trim: Trim,
    #[serde(default)]
    pub(super) bleed: bool,
    #[serde(default)]
    pub(super) margin: Margins,
    #[serde(default)]
    pub(super) art: ArtArea,
    #[serde(default)]
    pub(super) sides: Sides,
    #[serde(default)]
    pub(super) pad: bool,
    #[serde(default)]
    pub(super) title: Option<String>,
    #[serde(default)]
    pub(super) subtitle: Option<String>,
    #[serde(default)]
    pub(super) author: Option<String>,
    #[serde(default)]
    pub(super) copyright: Option<String>,
    #[serde(default)]
    pub(super) belongs_to: Option<String>,
    #[serde(default)]
    pub(super) page_numbers: bool,
    #[serde(default)]
    pub(super) on_missing: OnMissing,
    #[serde(default)]
    pub(super) rejected: OnRejected,
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

pub(super) fn default_trim() -> Trim {
    Trim::LETTER
}

/// The smallest printable area left inside the margins: one inch.
pub(super) const MIN_PRINTABLE_PT: f32 = 72.0;

impl Options {
    pub(super) fn parse(options: &Value) -> Result<Self, OptionsError> {
        let options: Options = parse_options(options)?;
        if options.art == ArtArea::Bleed && !options.bleed {
            return Err(OptionsError::at("art", "art: bleed fills the bleed, so it needs bleed: true"));
        }
        if options.subtitle.is_some() && options.title.is_none() {
            return Err(OptionsError::at("subtitle", "a subtitle goes on the title page: give a title too"));
        }
        let layout = options.layout();
        let safe = layout.frame(0, MIN_PAGES).safe;
        if safe.width().min(safe.height()) < MIN_PRINTABLE_PT {
            return Err(OptionsError::at(
                "margin",
                format!("these margins leave less than one inch of a {} page", options.trim),
            ));
        }
        Ok(options)
    }

    pub(super) fn layout(&self) -> Layout {
        Layout {
            trim: self.trim,
            bleed: self.bleed,
            margin: self.margin,
            art: self.art,
            sides: self.sides,
            pad: self.pad,
            page_numbers: self.page_numbers,
        }
    }
}

/// The margins: KDP's by page count, or given (one length for every edge, or the outside edges
/// and the gutter apart).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) enum Margins {
    #[default]
    Auto,
    Fixed {
        outside: f32,
        gutter: f32,
    },
}

impl<'de> Deserialize<'de> for Margins {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Sides {
            outside: Length,
            gutter: Length,
        }
        const EXPECTED: &str =
            "expected auto, a length (\"0.5 in\", \"12 mm\", points) or { outside, gutter }";
        match Value::deserialize(deserializer)? {
            Value::String(auto) if auto == "auto" => Ok(Margins::Auto),
            sides @ Value::Object(_) => serde_json::from_value::<Sides>(sides)
                .map(|s| Margins::Fixed { outside: s.outside.0, gutter: s.gutter.0 })
                .map_err(|e| D::Error::custom(format!("{e}: {EXPECTED}"))),
            other => serde_json::from_value::<Length>(other)
                .map(|l| Margins::Fixed { outside: l.0, gutter: l.0 })
                .map_err(|e| D::Error::custom(format!("{e}: {EXPECTED}"))),
        }
    }
}

/// Where art may go: inside the margins, or (with bleed) over the whole page to the bleed edge.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ArtArea {
    #[default]
    Safe,
    Bleed,
}

/// Printed on one side of each leaf (a blank back behind every page, as markers bleed through)
/// or on both.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Sides {
    Single,
    #[default]
    Double,
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

/// What the book does with a page a `lineart-check` rejected.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum OnRejected {
    /// Print it anyway: the default, so a book never loses a page silently.
    #[default]
    Include,
    /// A text page naming the prompt and the problems found.
    Placeholder,
    /// Leave it out.
    Skip,
}

/// The resolved options a built sink works with.
pub(super) struct Settings {
    pub(super) pages: PageStore,
    pub(super) final_path: PathBuf,
    pub(super) partial_path: PathBuf,
    pub(super) layout: Layout,
    pub(super) title: Option<String>,
    pub(super) subtitle: Option<String>,
    pub(super) author: Option<String>,
    pub(super) copyright: Option<String>,
    pub(super) belongs_to: Option<String>,
    pub(super) creator: String,
    pub(super) on_missing: OnMissing,
    pub(super) rejected: OnRejected,
    pub(super) font: Font,
}
