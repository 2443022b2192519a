//! Printing a book: the rules its interior and cover follow (Amazon KDP's paperback rules, the
//! market coloring books are printed in), the embedded font, and the preflight check. Shared by
//! the `pdf` and `cover` sinks and `inkflow preflight`, so the three can never disagree.

pub mod area;
pub mod font;
pub mod preflight;

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Points per inch: PDF's unit.
pub const PT_PER_IN: f32 = 72.0;
/// Bleed on each trimmed edge: a page with bleed is 0.125 in wider (outside edge only) and
/// 0.25 in taller; a cover has it on all four edges.
pub const BLEED_IN: f32 = 0.125;
/// The fewest pages KDP prints.
pub const MIN_PAGES: usize = 24;
/// Images print sharp from this resolution, as placed on the page.
pub const MIN_DPI: f32 = 300.0;
/// Blank pages allowed in a row at the start or inside the book, and at its end.
pub const MAX_BLANK_RUN: usize = 2;
pub const MAX_BLANK_AT_END: usize = 10;
/// KDP's upload limit.
pub const MAX_FILE_BYTES: u64 = 650 * 1000 * 1000;
/// The spine carries text only from this many pages (a thinner spine is too narrow).
pub const SPINE_TEXT_MIN_PAGES: usize = 79;
/// Spine text keeps this clear of the spine's folds.
pub const SPINE_CLEARANCE_IN: f32 = 0.0625;
/// The area KDP prints the barcode in, at the lower right of the back cover, and its distance
/// from the back cover's trimmed right and bottom edges.
pub const BARCODE_IN: (f32, f32) = (2.0, 1.2);
pub const BARCODE_INSET_IN: f32 = 0.25;

/// The outside margin (top, bottom and the edge away from the spine): more with bleed, where
/// the trim may wander.
pub fn outside_margin_in(bleed: bool) -> f32 {
    if bleed { 0.375 } else { 0.25 }
}

/// The inside (gutter) margin for a book of `pages` pages (KDP's table; books past its end get
/// its last row).
pub fn gutter_in(pages: usize) -> f32 {
    match pages {
        0..=150 => 0.375,
        151..=300 => 0.5,
        301..=500 => 0.625,
        501..=700 => 0.75,
        _ => 0.875,
    }
}

/// The paper an interior is printed on: it sets the spine width and the page limit.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Paper {
    #[default]
    White,
    Cream,
}

impl Paper {
    pub fn parse(text: &str) -> Result<Paper, String> {
        match text {
            "white" => Ok(Paper::White),
            "cream" => Ok(Paper::Cream),
            other => Err(format!("unknown paper `{other}`: expected white or cream")),
        }
    }

    /// Thickness of one page (a leaf side) with black ink, in inches.
    pub fn inch_per_page(self) -> f32 {
        match self {
            Paper::White => 0.002252,
            Paper::Cream => 0.0025,
        }
    }
}

/// The spine width of a book of `pages` pages, in inches.
pub fn spine_in(pages: usize, paper: Paper) -> f32 {
    pages as f32 * paper.inch_per_page()
}

/// The most pages KDP binds: 590 (white) or 550 (cream) at 8.5x11, 828 for the other trims.
pub fn max_pages(trim: Trim, paper: Paper) -> usize {
    if trim.same_as(Trim::LETTER) {
        match paper {
            Paper::White => 590,
            Paper::Cream => 550,
        }
    } else {
        828
    }
}

/// A trimmed page size, in points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Trim {
    pub width: f32,
    pub height: f32,
}

/// The named trims; "letter" is 8.5x11.
const NAMED: [(&str, f32, f32); 6] = [
    ("8.5x11", 8.5, 11.0),
    ("letter", 8.5, 11.0),
    ("8.5x8.5", 8.5, 8.5),
    ("8x10", 8.0, 10.0),
    ("6x9", 6.0, 9.0),
    ("a4", 210.0 / 25.4, 297.0 / 25.4),
];

/// What a trim may be, for messages.
pub const TRIM_FORMS: &str = "8.5x11 (letter), 8.5x8.5, 8x10, 6x9, a4, or \"W x H in\" / \"W x H mm\"";

/// The smallest and largest trims accepted (KDP's range is 4x6 to 8.5x11.69 in; PDF's limit is 200 in).
const MIN_SIDE_IN: f32 = 1.0;
const MAX_SIDE_IN: f32 = 200.0;

impl Trim {
    /// US letter, 8.5x11 in: the usual coloring-book trim, and 2550x3300 px at 300 DPI.
    pub const LETTER: Trim = Trim { width: 612.0, height: 792.0 };

    pub fn inches(width: f32, height: f32) -> Trim {
        Trim { width: width * PT_PER_IN, height: height * PT_PER_IN }
    }

    /// A named size or `W x H in|mm`.
    pub fn parse(text: &str) -> Result<Trim, String> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase();
        if let Some((_, w, h)) = NAMED.iter().find(|(name, ..)| *name == compact) {
            return Ok(Trim::inches(*w, *h));
        }
        let bad = || format!("`{text}` is not a trim size: expected {TRIM_FORMS}");
        let (numbers, per_inch) = if let Some(n) = compact.strip_suffix("mm") {
            (n, 25.4)
        } else if let Some(n) = compact.strip_suffix("in") {
            (n, 1.0)
        } else {
            return Err(bad());
        };
        let (w, h) = numbers.split_once('x').ok_or_else(bad)?;
        let (w, h): (f32, f32) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
        let (w, h) = (w / per_inch, h / per_inch);
        for side in [w, h] {
            if !(MIN_SIDE_IN..=MAX_SIDE_IN).contains(&side) {
                return Err(format!("`{text}`: each side must be {MIN_SIDE_IN} to {MAX_SIDE_IN} in"));
            }
        }
        Ok(Trim::inches(w, h))
    }

    /// Equal within half a point (A4 in points is not exact).
    pub fn same_as(self, other: Trim) -> bool {
        (self.width - other.width).abs() < 0.5 && (self.height - other.height).abs() < 0.5
    }
}

impl fmt::Display for Trim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let round = |pt: f32| (pt / PT_PER_IN * 1000.0).round() / 1000.0;
        write!(f, "{} x {} in", round(self.width), round(self.height))
    }
}

impl<'de> Deserialize<'de> for Trim {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Trim::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A trim is written as its name when it has one (`8.5x11`), else as `W x H in`; both parse back.
impl Serialize for Trim {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match NAMED.iter().find(|(_, w, h)| self.same_as(Trim::inches(*w, *h))) {
            Some((name, ..)) => serializer.serialize_str(name),
            None => serializer.collect_str(self),
        }
    }
}

impl JsonSchema for Trim {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Trim".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "x-inkflow-type": "8.5x11|8.5x8.5|8x10|6x9|a4|\"W x H in|mm\""
        })
    }
}

/// A length in a pipeline: `"0.5 in"`, `"12 mm"`, `"36 pt"`, or a bare number of points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Length(pub f32);

impl Length {
    pub fn parse(text: &str) -> Result<Length, String> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let bad = || format!("`{text}` is not a length: expected a number with in, mm or pt");
        let (number, scale) = [("in", PT_PER_IN), ("mm", PT_PER_IN / 25.4), ("pt", 1.0)]
            .iter()
            .find_map(|(unit, scale)| compact.strip_suffix(unit).map(|n| (n, *scale)))
            .ok_or_else(bad)?;
        let value: f32 = number.parse().map_err(|_| bad())?;
        Length::points(value * scale).ok_or_else(bad)
    }

    fn points(pt: f32) -> Option<Length> {
        (pt.is_finite() && pt >= 0.0).then_some(Length(pt))
    }
}

impl<'de> Deserialize<'de> for Length {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Points(f32),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Points(pt) => Length::points(pt).ok_or_else(|| {
                serde::de::Error::custom(format!("{pt} is not a length in points (0 or more)"))
            }),
            Raw::Text(text) => Length::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_parse_by_name_and_by_size() {
        assert_eq!(Trim::parse("8.5x11"), Ok(Trim::LETTER));
        assert_eq!(Trim::parse("Letter"), Ok(Trim::LETTER));
        assert_eq!(Trim::parse("6 x 9 in"), Ok(Trim::inches(6.0, 9.0)));
        let a4 = Trim::parse("210 x 297 mm").unwrap_or(Trim::LETTER);
        assert!(a4.same_as(Trim::parse("A4").unwrap_or(Trim::LETTER)));
        assert!((a4.width - 595.28).abs() < 0.01, "{a4:?}");
        for bad in ["legal", "0.5 x 9 in", "8.5 by 11 in", "x9in"] {
            assert!(Trim::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lengths_take_a_unit_or_points() {
        assert_eq!(Length::parse("0.5 in"), Ok(Length(36.0)));
        assert_eq!(Length::parse("25.4mm"), Ok(Length(72.0)));
        assert_eq!(Length::parse("9pt"), Ok(Length(9.0)));
        assert!(Length::parse("-1 in").is_err() && Length::parse("3").is_err());
    }

    #[test]
    fn the_gutter_follows_kdps_table() {
        for (pages, gutter) in [(24, 0.375), (150, 0.375), (151, 0.5), (300, 0.5), (301, 0.625), (500, 0.625)]
        {
            assert_eq!(gutter_in(pages), gutter, "{pages} pages");
        }
        for (pages, gutter) in [(501, 0.75), (700, 0.75), (701, 0.875), (828, 0.875)] {
            assert_eq!(gutter_in(pages), gutter, "{pages} pages");
        }
    }

    #[test]
    fn the_page_limit_depends_on_trim_and_paper() {
        assert_eq!(max_pages(Trim::LETTER, Paper::White), 590);
        assert_eq!(max_pages(Trim::LETTER, Paper::Cream), 550);
        assert_eq!(max_pages(Trim::inches(6.0, 9.0), Paper::White), 828);
    }
}
