//! The `pdf` options as written in the pipeline file, and the settings a built sink works with.

use super::*;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::engine::options::parse_declared;
use crate::engine::output_path::OutputPath;
use crate::engine::pipeline_path::PipelinePath;
use crate::engine::stage::OptionsError;
use crate::print::font::Font;
use crate::print::{Length, MIN_PAGES, Trim};

/// The `pdf` options, as written in the pipeline file: the declaration `inkflow stages pdf`
/// documents.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The PDF file, relative to the output dir.
    #[serde(default = "default_path")]
    pub(super) path: OutputPath,
    /// The trimmed page size (letter is 8.5x11).
    #[serde(default = "default_trim")]
    pub(super) trim: Trim,
    /// Adds 0.125 in on the outside edge, top and bottom, for art printed to the edge.
    #[serde(default)]
    pub(super) bleed: bool,
    /// auto is KDP's: 0.25 in outside (0.375 in with bleed), the gutter by page count (0.375 in
    /// to 150 pages ... 0.875 in past 700); a length is "0.5 in", "12 mm" or points.
    #[serde(default)]
    pub(super) margin: Margins,
    /// Art fitted inside the margins (at its DPI when it fits, shrunk when not, never
    /// stretched), or covering the page to the bleed edge (needs bleed: true).
    #[serde(default)]
    pub(super) art: ArtArea,
    /// single puts a blank back behind every page, as markers bleed through the paper.
    #[serde(default)]
    pub(super) sides: Sides,
    /// Adds blank pages at the end up to an even count and at least 24 (KDP's minimum).
    #[serde(default)]
    pub(super) pad: bool,
    /// Adds a title page and sets the document title.
    #[serde(default)]
    pub(super) title: Option<String>,
    /// Printed under the title.
    #[serde(default)]
    pub(super) subtitle: Option<String>,
    /// The document author, also shown on the title page.
    #[serde(default)]
    pub(super) author: Option<String>,
    /// Adds a copyright page with this text (lines kept) after the title page.
    #[serde(default)]
    pub(super) copyright: Option<String>,
    /// Adds a page with this text (e.g. "This book belongs to") and a line to write on.
    #[serde(default)]
    pub(super) belongs_to: Option<String>,
    /// Prints 1, 2, 3... under the art pages, inside the bottom margin.
    #[serde(default)]
    pub(super) page_numbers: bool,
    /// For a failed or filtered item: leave the page out, print a page saying which prompt
    /// failed and why (so later pages keep their numbers), or write no book and fail.
    #[serde(default)]
    pub(super) on_missing: OnMissing,
    /// For a page a lineart-check rejected: print it anyway, print a page naming the prompt
    /// and its problems instead, or leave it out.
    #[serde(default)]
    pub(super) rejected: OnRejected,
    /// The document's Creator entry.
    #[serde(default = "default_creator")]
    pub(super) creator: String,
    /// A .ttf or .otf file for every text of the book, embedded as a subset (the built-in
    /// font is Liberation Sans).
    #[serde(default)]
    pub(super) font: Option<PipelinePath>,
}

/// The options printed as text in the book, checked against its fonts before a run.
pub(crate) const PRINTED_FIELDS: &[&str] = &["title", "subtitle", "author", "copyright", "belongs_to"];

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
        let options: Options = parse_declared(options)?;
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

impl Serialize for Margins {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Margins::Auto => serializer.serialize_str("auto"),
            Margins::Fixed { outside, gutter } => {
                serde_json::json!({ "outside": format!("{outside} pt"), "gutter": format!("{gutter} pt") })
                    .serialize(serializer)
            }
        }
    }
}

impl JsonSchema for Margins {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Margins".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "x-inkflow-type": "auto|length|{ outside, gutter }" })
    }
}

/// Where art may go: inside the margins, or (with bleed) over the whole page to the bleed edge.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ArtArea {
    #[default]
    Safe,
    Bleed,
}

/// Printed on one side of each leaf (a blank back behind every page, as markers bleed through)
/// or on both.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Sides {
    Single,
    #[default]
    Double,
}

/// What the book does about an item that has no image (failed, filtered or never written).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
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
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
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
