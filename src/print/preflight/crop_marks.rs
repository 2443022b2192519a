//! Crop marks: the short hairlines print software draws at the corners of the trim, outside
//! it, to show where to cut. KDP trims the book itself and rejects a file that carries them.
//!
//! A corner is marked when a horizontal and a vertical mark sit near it without meeting (the
//! gap at the corner is what tells crop marks from the corner of a frame); a page is marked
//! when two or more of its corners are, so a stray stroke in one corner is not a crop mark.

use std::ops::RangeInclusive;

use super::{BLEED_IN, Ink, InkKind, PT_PER_IN};
use crate::print::area::Area;

/// A mark is a line at most this thick (its painted box; stroke width is not counted)...
const MAX_THICKNESS_PT: f32 = 2.0;
/// ...and of a length in this range (tools draw 0.125 to 0.5 in).
const LENGTH_PT: RangeInclusive<f32> = 4.0..=72.0;
/// Marks this close to a corner of the trim belong to it.
const REACH_PT: f32 = 72.0;
/// Without a TrimBox the marks are drawn inside the page, in squares this wide at its corners.
const CORNER_PT: f32 = 54.0;
/// The corners a page needs marked to count as carrying crop marks.
const MIN_MARKED_CORNERS: usize = 2;

/// Whether a page's ink holds crop marks, around `trim` (its TrimBox) or, when it has none,
/// in the corners of `media`.
pub(super) fn has_crop_marks(ink: &[Ink], trim: Option<Area>, media: Area) -> bool {
    let lines: Vec<(Area, bool)> = ink
        .iter()
        .filter(|ink| ink.kind == InkKind::Path)
        .filter_map(|ink| mark_direction(&ink.area).map(|horizontal| (ink.area, horizontal)))
        .collect();
    let reference = trim.unwrap_or(media);
    let corners = [
        (reference.x0, reference.y0),
        (reference.x1, reference.y0),
        (reference.x0, reference.y1),
        (reference.x1, reference.y1),
    ];
    let marked = corners
        .iter()
        .filter(|&&corner| {
            let near: Vec<&(Area, bool)> = lines
                .iter()
                .filter(|(area, _)| match trim {
                    Some(trim) => outside_trim(area, &trim) && distance(area, corner) <= REACH_PT,
                    None => within_corner(area, corner, CORNER_PT),
                })
                .collect();
            near.iter()
                .filter(|(_, horizontal)| *horizontal)
                .any(|(h, _)| near.iter().filter(|(_, horizontal)| !*horizontal).any(|(v, _)| !touches(h, v)))
        })
        .count();
    marked >= MIN_MARKED_CORNERS
}

/// `Some(true)` for a thin horizontal line of a mark's length, `Some(false)` for a vertical one.
fn mark_direction(area: &Area) -> Option<bool> {
    let (width, height) = (area.x1 - area.x0, area.y1 - area.y0);
    if height <= MAX_THICKNESS_PT && LENGTH_PT.contains(&width) {
        Some(true)
    } else if width <= MAX_THICKNESS_PT && LENGTH_PT.contains(&height) {
        Some(false)
    } else {
        None
    }
}

/// Clear of the trim, and reaching past the bleed around it: art printed into the bleed is
/// not a mark, while crop marks run on beyond it.
fn outside_trim(area: &Area, trim: &Area) -> bool {
    let bleed = BLEED_IN * PT_PER_IN;
    let inner = trim.inset(0.5, 0.5, 0.5, 0.5);
    let past_bleed = trim.inset(-bleed, -bleed, -bleed, -bleed);
    !area.overlaps(&inner) && !area.within(&past_bleed)
}

/// The distance from `corner` to the nearest point of `area`, along the farther axis.
fn distance(area: &Area, (x, y): (f32, f32)) -> f32 {
    let dx = (area.x0 - x).max(x - area.x1).max(0.0);
    let dy = (area.y0 - y).max(y - area.y1).max(0.0);
    dx.max(dy)
}

fn within_corner(area: &Area, (x, y): (f32, f32), size: f32) -> bool {
    let square = Area { x0: x - size, y0: y - size, x1: x + size, y1: y + size };
    area.within(&square)
}

/// Whether two marks meet (within half a point), as the arms of a frame's corner do.
fn touches(a: &Area, b: &Area) -> bool {
    a.inset(-0.5, -0.5, -0.5, -0.5).overlaps(b)
}
