//! How hard a page is to colour at the size it is printed, and the audience it suits. It reads
//! the 1-bit measures ([`super::InkMeasures`]: the enclosed regions' areas and the line weight,
//! from one linear-time labelling of the page) and the page's printed scale, so the same
//! drawing is harder on a 6x9 book than on a letter one.
//!
//! A region's size is the diameter of the circle of its area, in millimetres. The limits below
//! follow the tools and hands of each age: a toddler's jumbo crayon leaves a mark 8-10 mm wide
//! and a 2-3 year old's control is about as loose, so regions under 15 mm are scribbled over
//! and the outline must be bold enough to see as a wall (3 pt, about 1 mm); a 4-8 year old's
//! regular crayon or marker is 3-5 mm wide (regions from 6 mm, lines from 1.5 pt); a teen's
//! coloured pencil is 1-2 mm (regions from 3 mm); an adult's fine liner or sharp pencil is
//! 0.5 mm (regions from 1.5 mm, lines down to 0.5 pt). The region counts follow the attention
//! a page asks for: a toddler page has a few big shapes, an adult's hundreds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::InkMeasures;

/// Millimetres per point.
const MM_PER_PT: f64 = 25.4 / 72.0;

/// Who a book is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Audience {
    /// Ages 2-3.
    Toddler,
    /// Ages 4-8.
    Kids,
    /// Ages 9-16.
    Teens,
    /// Adults.
    Adults,
}

/// What a page must be for an audience.
struct Limits {
    /// Nine regions in ten at least this big (mm): the one tiny corner may be left white.
    small_region_mm: f64,
    /// Half the regions at least this big (mm).
    median_region_mm: f64,
    /// At most this many regions.
    max_regions: u64,
    /// Lines at least this heavy (pt).
    line_pt: f64,
}

impl Audience {
    /// From the youngest.
    pub const ALL: [Audience; 4] = [Audience::Toddler, Audience::Kids, Audience::Teens, Audience::Adults];

    /// The name as options and metadata write it.
    pub fn name(self) -> &'static str {
        match self {
            Audience::Toddler => "toddler",
            Audience::Kids => "kids",
            Audience::Teens => "teens",
            Audience::Adults => "adults",
        }
    }

    /// See the module's documentation for where these come from.
    fn limits(self) -> Limits {
        match self {
            Audience::Toddler => {
                Limits { small_region_mm: 15.0, median_region_mm: 30.0, max_regions: 30, line_pt: 3.0 }
            }
            Audience::Kids => {
                Limits { small_region_mm: 6.0, median_region_mm: 12.0, max_regions: 150, line_pt: 1.5 }
            }
            Audience::Teens => {
                Limits { small_region_mm: 3.0, median_region_mm: 6.0, max_regions: 500, line_pt: 0.75 }
            }
            Audience::Adults => {
                Limits { small_region_mm: 1.5, median_region_mm: 0.0, max_regions: u64::MAX, line_pt: 0.5 }
            }
        }
    }
}

/// A page's difficulty at print size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Difficulty {
    /// The smallest enclosed region, in mm (diameter of the circle of its area).
    pub smallest_region_mm: f64,
    /// The size nine regions in ten reach, in mm.
    pub small_region_mm: f64,
    /// The median enclosed region, in mm.
    pub median_region_mm: f64,
    /// How many enclosed regions.
    pub regions: u64,
    /// The line weight, in points.
    pub line_pt: f64,
    /// 0 (a few big shapes in bold lines) to 100 (hundreds of pin-sized cells in hairlines).
    pub score: f64,
    /// The youngest audience whose limits the page meets (adults when it meets none).
    pub suits: Audience,
}

impl Difficulty {
    /// The difficulty of a page measured as `ink`, printed at `mm_per_px` millimetres a pixel.
    pub fn of(ink: &InkMeasures, mm_per_px: f64) -> Difficulty {
        let mm = |px: u64| 2.0 * (px as f64 / std::f64::consts::PI).sqrt() * mm_per_px;
        let mut d = Difficulty {
            smallest_region_mm: mm(ink.region_px.smallest),
            small_region_mm: mm(ink.region_px.small),
            median_region_mm: mm(ink.region_px.median),
            regions: ink.regions,
            line_pt: ink.line_weight_px * mm_per_px / MM_PER_PT,
            score: 0.0,
            suits: Audience::Adults,
        };
        d.suits = Audience::ALL.into_iter().find(|&a| d.suits_audience(a)).unwrap_or(Audience::Adults);
        // Each part from 0 (easy) to 1 (hard), on a log scale where sizes matter by ratio: regions
        // from 1 to 1000, the median region from 60 mm down to 1.5 mm, lines from 6 pt to 0.5 pt.
        let part = |value: f64, easy: f64, hard: f64| {
            ((value.max(1e-6).ln() - easy.ln()) / (hard.ln() - easy.ln())).clamp(0.0, 1.0)
        };
        let count = part(d.regions.max(1) as f64, 1.0, 1000.0);
        let size = if d.regions == 0 { 0.0 } else { part(d.median_region_mm, 60.0, 1.5) };
        let line = part(d.line_pt, 6.0, 0.5);
        d.score = (100.0 * (0.4 * count + 0.4 * size + 0.2 * line)).round();
        d
    }

    /// Whether the page meets `audience`'s limits.
    pub fn suits_audience(&self, audience: Audience) -> bool {
        let limits = audience.limits();
        // A page without regions (an open drawing) has no region too small.
        let regions_fit = self.regions == 0
            || (self.small_region_mm >= limits.small_region_mm
                && self.median_region_mm >= limits.median_region_mm);
        regions_fit && self.regions <= limits.max_regions && self.line_pt >= limits.line_pt
    }

    /// Why the page does not suit `audience`, for the metadata: each limit it misses.
    pub fn misses(&self, audience: Audience) -> Vec<String> {
        let limits = audience.limits();
        let mut why = Vec::new();
        if self.regions > 0 && self.small_region_mm < limits.small_region_mm {
            why.push(format!(
                "one region in ten is under {:.1} mm, smaller than {} mm",
                self.small_region_mm, limits.small_region_mm
            ));
        }
        if self.regions > 0 && self.median_region_mm < limits.median_region_mm {
            why.push(format!(
                "the median region is {:.1} mm, under {} mm",
                self.median_region_mm, limits.median_region_mm
            ));
        }
        if self.regions > limits.max_regions {
            why.push(format!("{} regions, more than {}", self.regions, limits.max_regions));
        }
        if self.line_pt < limits.line_pt {
            why.push(format!("lines of {:.2} pt, thinner than {} pt", self.line_pt, limits.line_pt));
        }
        why
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::quality::bits::InkMap;
    use crate::imaging::quality::{InkLimits, measure_ink};

    const LIMITS: InkLimits = InkLimits { speck_px: 4, solid_px: 40, min_line_px: 3, min_region_px: 20 };

    /// A page `cells` x `cells` square cells of `cell` px inside lines `line` px wide.
    fn grid_page(cells: usize, cell: usize, line: usize) -> InkMap {
        let side = cells * (cell + line) + line + 40;
        let mut ink = InkMap::blank(side, side);
        for k in 0..=cells {
            let at = 20 + k * (cell + line);
            let end = 20 + cells * (cell + line) + line;
            for y in 20..end {
                ink.fill_run(y, at, at + line, true);
            }
            for y in at..at + line {
                ink.fill_run(y, 20, end, true);
            }
        }
        ink
    }

    #[test]
    fn a_grid_measures_its_known_cells_and_lines() {
        // 10x10 cells of 100 px in 6 px lines, at 300 DPI: cells 8.47 mm wide (9.55 mm as the
        // circle of their area), lines 6 px = 1.44 pt.
        let m = measure_ink(&grid_page(10, 100, 6), LIMITS);
        let d = Difficulty::of(&m, 25.4 / 300.0);
        assert_eq!(d.regions, 100);
        let circle = 2.0 * (10_000.0 / std::f64::consts::PI).sqrt() * 25.4 / 300.0;
        assert!((d.median_region_mm - circle).abs() < 0.01, "{d:?}");
        assert!((d.smallest_region_mm - circle).abs() < 0.01, "{d:?}");
        // Length is measured for curves (pixel edges times pi/8): straight lines along the
        // axes read up to 4/pi heavier.
        assert!(d.line_pt > 1.4 && d.line_pt < 1.44 * 4.0 / std::f64::consts::PI + 0.05, "{d:?}");
    }

    #[test]
    fn rings_measure_their_line_weight() {
        for width in [4.0f64, 8.0, 14.0] {
            let mut ink = InkMap::blank(800, 800);
            for y in 0..800 {
                for x in 0..800 {
                    let r = ((x as f64 - 400.0).powi(2) + (y as f64 - 400.0).powi(2)).sqrt();
                    if [120.0, 220.0, 320.0].iter().any(|ring| (r - ring).abs() < width / 2.0) {
                        ink.fill_run(y, x, x + 1, true);
                    }
                }
            }
            let d = Difficulty::of(&measure_ink(&ink, LIMITS), 25.4 / 300.0);
            let want = width * 72.0 / 300.0;
            assert!((d.line_pt - want).abs() < 0.08 * want, "{width} px: {} pt, want {want}", d.line_pt);
            assert_eq!(d.regions, 3, "a disc and two rings");
        }
    }

    #[test]
    fn the_same_page_printed_smaller_is_harder() {
        let m = measure_ink(&grid_page(4, 400, 12), LIMITS);
        // 400 px cells at 300 DPI: 38 mm; lines of 12 px, 2.9 pt (3.7 as straight lines read).
        let big = Difficulty::of(&m, 25.4 / 300.0);
        assert_eq!((big.regions, big.suits), (16, Audience::Toddler), "{big:?}");
        assert!(big.misses(Audience::Toddler).is_empty());
        // Printed at a third of the size: 13 mm cells and 1.2 pt lines suit teens, not kids.
        let small = Difficulty::of(&m, 25.4 / 900.0);
        assert_eq!(small.suits, Audience::Teens, "{small:?}");
        assert!(small.score > big.score, "{} > {}", small.score, big.score);
        let why = small.misses(Audience::Toddler).join("; ");
        assert!(why.contains("median region") && why.contains("lines of"), "{why}");
    }

    #[test]
    fn many_small_cells_in_thin_lines_suit_adults_only() {
        let m = measure_ink(&grid_page(30, 20, 2), LIMITS);
        // 900 cells of 20 px (2.2 mm as circles) in 2 px (0.48 pt) lines.
        let d = Difficulty::of(&m, 25.4 / 300.0);
        assert_eq!(d.regions, 900);
        assert_eq!(d.suits, Audience::Adults);
        assert!(!d.suits_audience(Audience::Teens));
        assert!(d.score >= 70.0, "{d:?}");
    }
}
