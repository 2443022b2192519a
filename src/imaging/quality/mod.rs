//! Measurements of a line-art page, for the `lineart-check` and `lineart-cleanup` stages: ink
//! coverage and solid blobs, specks, enclosed regions against the length of line drawn,
//! stroke thickness, and (from the gray page before the threshold) shading, photo-like tone
//! and faint lines the threshold loses.
//!
//! The 1-bit measurements work on packed 64-bit words ([`bits::InkMap`]) and on run-length
//! rows ([`components`]), never pixel by pixel, so a 2550x3300 page is measured in a few
//! milliseconds.

pub mod bits;
pub mod cleanup;
pub mod components;
pub mod difficulty;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod likeness;
pub mod tones;

use bits::InkMap;
use components::{Colour, Components, Runs};
use tones::{Blocks, ToneLimits, ToneMeasures};

/// The sizes the 1-bit measurements use, in pixels at print size.
#[derive(Clone, Copy, Debug)]
pub struct InkLimits {
    /// An ink component of at most this many pixels is a speck.
    pub speck_px: u64,
    /// Ink at least this thick (in every direction) is solid black, not a line (measured on
    /// 8x8 blocks: a multiple of 8).
    pub solid_px: usize,
    /// Strokes thinner than this are thin lines.
    pub min_line_px: usize,
    /// A white region smaller than this is not an area to colour (a pin-hole or a notch).
    pub min_region_px: u64,
}

/// What the 1-bit page measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InkMeasures {
    /// Share of the page that is ink.
    pub coverage: f64,
    /// The largest solid black region, as a share of the page.
    pub largest_solid: f64,
    /// Ink components of at most `speck_px` pixels.
    pub specks: u64,
    /// White regions enclosed by ink (not reaching the page edge) of at least `min_region_px`:
    /// the areas a bucket fill colours one at a time.
    pub regions: u64,
    /// Share of the line work (crossed along the rows, specks left out) with the same white
    /// area on both sides: a line that separates nothing, like the ends of an outline that
    /// does not close.
    pub open: f64,
    /// Length of the line work but specks, in pixels: half the length of its outlines.
    pub line_px: f64,
    /// Share of the crossings of the line work but specks (see [`InkMap::crossings`]) thinner than
    /// `min_line_px`: over one half, the median stroke is thinner.
    pub thin: f64,
    /// The enclosed regions' areas (those counted in `regions`), in pixels.
    pub region_px: RegionSizes,
    /// The line work's weight in pixels: its ink (specks left out) over its length, which is
    /// the stroke width for strokes longer than wide.
    pub line_weight_px: f64,
}

/// The areas of a page's enclosed regions, in pixels (0 when there is none).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RegionSizes {
    /// The smallest.
    pub smallest: u64,
    /// The tenth percentile: nine regions in ten are at least this big.
    pub small: u64,
    /// The median.
    pub median: u64,
}

impl RegionSizes {
    /// The sizes of `areas` (in any order).
    fn of(mut areas: Vec<u64>) -> RegionSizes {
        if areas.is_empty() {
            return RegionSizes::default();
        }
        areas.sort_unstable();
        RegionSizes { smallest: areas[0], small: areas[areas.len() / 10], median: areas[areas.len() / 2] }
    }
}

impl InkMeasures {
    /// Enclosed regions per 1000 px of line: low when outlines leave gaps, so that the insides
    /// of shapes run into each other and into the background.
    pub fn regions_per_kpx(&self) -> f64 {
        if self.line_px <= 0.0 { 0.0 } else { self.regions as f64 * 1000.0 / self.line_px }
    }
}

/// The radius of the round probe that fits in a stroke `px` thick (at least 1).
fn radius_for(px: usize) -> usize {
    (px / 2).max(1)
}

/// Measures a 1-bit page.
pub fn measure_ink(ink: &InkMap, limits: InkLimits) -> InkMeasures {
    let page = (ink.width() * ink.height()).max(1) as f64;
    let inked = ink.count();
    let runs = Runs::of(ink, Colour::Ink);
    let pieces = Components::label(&runs, Colour::Ink, ink.width());
    let speck = |c: usize| pieces.area[c] <= limits.speck_px;
    let specks = (0..pieces.len()).filter(|&c| speck(c)).count() as u64;
    let mut lines = ink.clone();
    components::paint(&mut lines, &runs, &pieces, false, speck);

    // Solid areas on the 8x8 block map: the full blocks that a probe `solid_px` wide covers.
    let solid = ink.full_blocks().open(radius_for(limits.solid_px.div_ceil(8)));
    let solid = Components::label(&Runs::of(&solid, Colour::Ink), Colour::Ink, solid.width());
    let largest_solid = 64 * solid.area.iter().copied().max().unwrap_or(0);

    let (short, crossings) = lines.crossings(limits.min_line_px);
    let paper_runs = Runs::of(ink, Colour::Paper);
    let paper = Components::label(&paper_runs, Colour::Paper, ink.width());
    let enclosed = enclosed_areas(&paper, limits.min_region_px);
    let line_px = lines.boundary_edges() as f64 * std::f64::consts::PI / 8.0;
    InkMeasures {
        coverage: inked as f64 / page,
        largest_solid: largest_solid as f64 / page,
        specks,
        regions: enclosed.len() as u64,
        open: open_share(&runs, &pieces, &paper_runs, &paper, &speck),
        // Pixel edges overcount a curve's length by 4/pi on average; a stroke has two sides.
        line_px,
        thin: if crossings == 0 { 0.0 } else { short as f64 / crossings as f64 },
        region_px: RegionSizes::of(enclosed),
        line_weight_px: if line_px > 0.0 { lines.count() as f64 / line_px } else { 0.0 },
    }
}

/// See [`InkMeasures::open`].
fn open_share(
    ink: &Runs,
    pieces: &Components,
    paper: &Runs,
    areas: &Components,
    speck: &dyn Fn(usize) -> bool,
) -> f64 {
    let (mut same, mut all) = (0u64, 0u64);
    for y in 0..ink.height() {
        let (inks, papers) = (ink.row(y), paper.row(y));
        let (ink_first, paper_first) = (ink.first(y), paper.first(y));
        // Paper and ink runs alternate: the paper run left of ink run k ends where it starts.
        let offset = usize::from(papers.first().is_some_and(|p| p.0 == 0));
        for (k, _) in inks.iter().enumerate() {
            if speck(pieces.of_run[ink_first + k] as usize) || k + offset == 0 || k + offset >= papers.len() {
                continue;
            }
            let (left, right) = (paper_first + k + offset - 1, paper_first + k + offset);
            all += 1;
            if areas.of_run[left] == areas.of_run[right] {
                same += 1;
            }
        }
    }
    if all == 0 { 0.0 } else { same as f64 / all as f64 }
}

/// White regions off the page edge of at least `min_px` pixels.
fn enclosed_regions(ink: &InkMap, min_px: u64) -> u64 {
    let paper = Components::label(&Runs::of(ink, Colour::Paper), Colour::Paper, ink.width());
    enclosed_areas(&paper, min_px).len() as u64
}

/// The areas of the paper components off the page edge of at least `min_px` pixels.
fn enclosed_areas(paper: &Components, min_px: u64) -> Vec<u64> {
    (0..paper.len())
        .filter(|&c| !paper.on_border[c] && paper.area[c] >= min_px)
        .map(|c| paper.area[c])
        .collect()
}

/// Everything a page measures: from its gray pixels (before the threshold) and the ink the
/// threshold at `tone.level` gives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measures {
    /// From the 1-bit page.
    pub ink: InkMeasures,
    /// From the gray page.
    pub tone: ToneMeasures,
}

/// Measures a gray page `width` x `height` and the page the threshold makes of it.
pub fn measure_gray(gray: &[u8], width: u32, height: u32, tone: ToneLimits, ink: InkLimits) -> Measures {
    let map = InkMap::from_gray(width, height, gray, tone.level);
    measure_page(&map, &Blocks::of(gray, width as usize, height as usize), tone, ink)
}

/// Measures a page from its ink at `tone.level` and its gray page's blocks, however they were
/// made: from the gray page ([`measure_gray`]) or by a fused upscale that never made it
/// ([`crate::imaging::fused::upscale_threshold_blocks`]).
pub fn measure_page(map: &InkMap, blocks: &Blocks, tone: ToneLimits, ink: InkLimits) -> Measures {
    Measures { ink: measure_ink(map, ink), tone: tones::measure(blocks, tone) }
}
