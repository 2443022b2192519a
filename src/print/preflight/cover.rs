//! The cover rules: one page of the right size for the interior, an empty barcode area and
//! spine text clear of the folds; and the cover's geometry the `cover` sink draws by.

use std::path::Path;

use super::ink::InkKind;
use super::reading::{Gather, PageFacts, read};
use super::report::{Report, fact, rule};
use super::{Common, encrypted};
use crate::print::area::Area;
use crate::print::*;

/// The cover's parts, in points on its one page (with bleed all round).
pub struct CoverGeometry {
    pub width: f32,
    pub height: f32,
    pub spine: Area,
    pub barcode: Area,
    pub back: Area,
    pub front: Area,
}

impl CoverGeometry {
    pub fn new(trim: Trim, pages: usize, paper: Paper) -> CoverGeometry {
        let bleed = BLEED_IN * PT_PER_IN;
        let spine_w = spine_in(pages, paper) * PT_PER_IN;
        let width = 2.0 * bleed + 2.0 * trim.width + spine_w;
        let height = 2.0 * bleed + trim.height;
        let back = Area { x0: bleed, y0: bleed, x1: bleed + trim.width, y1: bleed + trim.height };
        let spine = Area { x0: back.x1, y0: bleed, x1: back.x1 + spine_w, y1: back.y1 };
        let front = Area { x0: spine.x1, y0: bleed, x1: spine.x1 + trim.width, y1: back.y1 };
        let inset = BARCODE_INSET_IN * PT_PER_IN;
        let (bw, bh) = (BARCODE_IN.0 * PT_PER_IN, BARCODE_IN.1 * PT_PER_IN);
        let barcode = Area {
            x0: back.x1 - inset - bw,
            y0: back.y0 + inset,
            x1: back.x1 - inset,
            y1: back.y0 + inset + bh,
        };
        CoverGeometry { width, height, spine, barcode, back, front }
    }
}

/// Checks a cover PDF for an interior of `pages` pages.
pub fn check_cover(path: &Path, pages: usize, trim: Trim, paper: Paper) -> Result<Report, String> {
    let geometry = CoverGeometry::new(trim, pages, paper);
    let (facts, cover) = read(path, |_| Cover::new(&geometry))?;
    if let Some(report) = encrypted(path, &facts) {
        return Ok(report);
    }
    let title = format!("{} (cover for {pages} pages, {trim})", path.display());
    let mut rules = vec![fact("one page", facts.pages == 1, format!("{} page(s)", facts.pages))];
    let (w, h) = (geometry.width / PT_PER_IN, geometry.height / PT_PER_IN);
    rules.push(rule(
        "cover size",
        cover.wrong_size,
        format!(
            "{w:.3} x {h:.3} in: 0.125 in bleed, two {trim} sides and a {:.3} in spine",
            geometry.spine.width() / PT_PER_IN
        ),
        |_| format!("want {w:.3} x {h:.3} in for {pages} pages"),
    ));
    rules.push(
        fact(
            "barcode area empty",
            !cover.in_barcode,
            if cover.in_barcode {
                "ink in the 2 x 1.2 in area at the back's lower right".into()
            } else {
                "2 x 1.2 in at the back's lower right left empty".into()
            },
        )
        .on_content(&cover.common.unchecked),
    );
    let (spine_ok, spine_detail) = if pages < SPINE_TEXT_MIN_PAGES {
        (
            !cover.spine_text,
            format!(
                "no spine text below {SPINE_TEXT_MIN_PAGES} pages ({})",
                if cover.spine_text { "found some" } else { "none" }
            ),
        )
    } else {
        (!cover.spine_text_at_folds, format!("spine text {SPINE_CLEARANCE_IN} in clear of the folds"))
    };
    rules.push(fact("spine text", spine_ok, spine_detail).on_content(&cover.common.unchecked));
    rules.extend(cover.common.rules(&facts));
    Ok(Report { title, pages: facts.pages, rules })
}

/// What the cover rules gather, a page at a time.
struct Cover {
    size: (f32, f32),
    barcode: Area,
    spine: Area,
    /// The spine less its clearance from the folds.
    inner: Area,
    wrong_size: Vec<usize>,
    in_barcode: bool,
    /// Text on the spine, and text on it nearer the folds than the clearance.
    spine_text: bool,
    spine_text_at_folds: bool,
    common: Common,
}

impl Cover {
    fn new(geometry: &CoverGeometry) -> Self {
        let clear = SPINE_CLEARANCE_IN * PT_PER_IN;
        Cover {
            size: (geometry.width, geometry.height),
            barcode: geometry.barcode,
            spine: geometry.spine,
            inner: geometry.spine.inset(clear, 0.0, clear, 0.0),
            wrong_size: Vec::new(),
            in_barcode: false,
            spine_text: false,
            spine_text_at_folds: false,
            common: Common::new(),
        }
    }
}

impl Gather for Cover {
    fn page(&mut self, number: usize, p: &PageFacts) {
        if (p.media.width() - self.size.0).abs() > 0.72 || (p.media.height() - self.size.1).abs() > 0.72 {
            self.wrong_size.push(number);
        }
        for ink in p.ink() {
            self.in_barcode |= ink.area.overlaps(&self.barcode);
            if ink.kind == InkKind::Text && ink.area.overlaps(&self.spine) {
                self.spine_text = true;
                self.spine_text_at_folds |=
                    !(ink.area.x0 >= self.inner.x0 - 0.25 && ink.area.x1 <= self.inner.x1 + 0.25);
            }
        }
        self.common.page(number, p);
    }
}
