//! Cleanup of a 1-bit page that leaves line work alone: only whole ink components up to a size
//! are removed (a speck is never part of a line), only whole enclosed white components up to a
//! size are filled (a pin-hole is never a region to colour), and gap closing, when asked for,
//! only adds ink.

use super::bits::InkMap;
use super::components::{Colour, Components, Runs, paint};
use super::enclosed_regions;

/// What the cleanup does, sizes in pixels at print size; 0 turns a step off.
#[derive(Clone, Copy, Debug)]
pub struct CleanupSteps {
    /// Remove ink components of at most this many pixels.
    pub speck_px: u64,
    /// Fill enclosed white components of at most this many pixels.
    pub pinhole_px: u64,
    /// Close gaps in outlines up to this wide.
    pub gap_px: usize,
    /// The smallest white region counted when gap closing reports the regions it closed.
    pub min_region_px: u64,
}

/// What the cleanup changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Specks removed.
    pub specks: u64,
    /// Pixels of ink they held.
    pub speck_pixels: u64,
    /// Pin-holes filled.
    pub pinholes: u64,
    /// Pixels they held.
    pub pinhole_pixels: u64,
    /// Pixels of ink gap closing added.
    pub gap_pixels: u64,
    /// Enclosed regions gap closing added.
    pub gap_regions: u64,
}

/// Cleans `ink` in place: specks, then pin-holes, then gaps.
pub fn clean(ink: &mut InkMap, steps: CleanupSteps) -> CleanupReport {
    let mut report = CleanupReport::default();
    if steps.speck_px > 0 {
        let runs = Runs::of(ink, Colour::Ink);
        let pieces = Components::label(&runs, Colour::Ink, ink.width());
        let speck = |c: usize| pieces.area[c] <= steps.speck_px;
        report.specks = (0..pieces.len()).filter(|&c| speck(c)).count() as u64;
        report.speck_pixels = paint(ink, &runs, &pieces, false, speck);
    }
    if steps.pinhole_px > 0 {
        let runs = Runs::of(ink, Colour::Paper);
        let holes = Components::label(&runs, Colour::Paper, ink.width());
        let pinhole = |c: usize| !holes.on_border[c] && holes.area[c] <= steps.pinhole_px;
        report.pinholes = (0..holes.len()).filter(|&c| pinhole(c)).count() as u64;
        report.pinhole_pixels = paint(ink, &runs, &holes, true, pinhole);
    }
    if steps.gap_px > 0 {
        let before = enclosed_regions(ink, steps.min_region_px);
        let closed = ink.close((steps.gap_px / 2).max(1));
        report.gap_pixels = closed.count_minus(ink);
        report.gap_regions = enclosed_regions(&closed, steps.min_region_px).saturating_sub(before);
        *ink = closed;
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page with a ring (a line), an eye dot inside it, a pupil with a highlight, a pin-hole
    /// in a thick line, and specks.
    fn page() -> InkMap {
        let mut m = InkMap::blank(200, 120);
        let disc = |m: &mut InkMap, cx: i64, cy: i64, r: i64, ink: bool| {
            for y in cy - r..=cy + r {
                let half = ((r * r - (y - cy) * (y - cy)) as f64).sqrt() as i64;
                m.fill_run(y as usize, (cx - half) as usize, (cx + half + 1) as usize, ink);
            }
        };
        disc(&mut m, 60, 60, 40, true);
        disc(&mut m, 60, 60, 36, false);
        disc(&mut m, 50, 55, 4, true); // an eye dot: 49 px
        disc(&mut m, 150, 60, 20, true); // a pupil...
        disc(&mut m, 145, 54, 4, false); // ...with its highlight
        for y in 10..16 {
            m.fill_run(y, 100, 190, true); // a thick line...
        }
        m.fill_run(12, 120, 122, false); // ...with a pin-hole
        for (x, y) in [(5, 5), (110, 100), (190, 110), (30, 112)] {
            m.fill_run(y, x, x + 2, true);
            m.fill_run(y + 1, x, x + 2, true);
        }
        m
    }

    #[test]
    fn removes_specks_and_pinholes_only() {
        let mut m = page();
        let before = m.clone();
        let report =
            clean(&mut m, CleanupSteps { speck_px: 16, pinhole_px: 12, gap_px: 0, min_region_px: 50 });
        assert_eq!(
            report,
            CleanupReport {
                specks: 4,
                speck_pixels: 16,
                pinholes: 1,
                pinhole_pixels: 2,
                ..Default::default()
            }
        );
        assert!(m.get(50, 55) && m.get(60, 21) && m.get(150, 75), "the eye dot, the ring and the pupil stay");
        assert!(!m.get(145, 54), "the highlight stays white");
        assert!(m.get(120, 12), "the pin-hole is filled");
        assert!(!m.get(5, 5) && !m.get(190, 110));
        assert_eq!(m.count(), before.count() - 16 + 2);
    }

    #[test]
    fn gap_closing_closes_a_broken_ring() {
        let mut m = page();
        for y in 0..120 {
            m.fill_run(y, 58, 62, false); // cut the ring (and everything in its way) 4 px wide
        }
        let mut closed = m.clone();
        let report =
            clean(&mut closed, CleanupSteps { speck_px: 0, pinhole_px: 0, gap_px: 4, min_region_px: 50 });
        assert!(report.gap_pixels > 0);
        assert_eq!(report.gap_regions, 1, "{report:?}");
        let bridged =
            |rows: std::ops::Range<usize>| rows.into_iter().any(|y| (58..62).all(|x| closed.get(x, y)));
        assert!(bridged(18..26) && bridged(94..102), "both cuts bridged");
    }
}
