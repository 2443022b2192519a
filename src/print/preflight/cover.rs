//! The cover rules: one page of the right size for the interior, an empty barcode area and
//! spine text clear of the folds; and the cover's geometry the `cover` sink draws by.

use std::path::Path;

use super::ink::{Ink, InkKind};
use super::reading::read;
use super::report::{Report, fact, rule};
use super::{common_rules, encrypted};
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
    let facts = read(path)?;
    if let Some(report) = encrypted(path, &facts) {
        return Ok(report);
    }
    let geometry = CoverGeometry::new(trim, pages, paper);
    let title = format!("{} (cover for {pages} pages, {trim})", path.display());
    let mut rules = vec![fact("one page", facts.pages.len() == 1, format!("{} page(s)", facts.pages.len()))];
    let (w, h) = (geometry.width / PT_PER_IN, geometry.height / PT_PER_IN);
    let wrong_size: Vec<usize> = facts
        .pages
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            (p.media.width() - geometry.width).abs() > 0.72
                || (p.media.height() - geometry.height).abs() > 0.72
        })
        .map(|(i, _)| i + 1)
        .collect();
    rules.push(rule(
        "cover size",
        wrong_size,
        format!(
            "{w:.3} x {h:.3} in: 0.125 in bleed, two {trim} sides and a {:.3} in spine",
            geometry.spine.width() / PT_PER_IN
        ),
        |_| format!("want {w:.3} x {h:.3} in for {pages} pages"),
    ));
    let ink: Vec<&Ink> = facts.pages.iter().flat_map(|p| p.ink()).collect();
    let in_barcode = ink.iter().any(|i| i.area.overlaps(&geometry.barcode));
    rules.push(
        fact(
            "barcode area empty",
            !in_barcode,
            if in_barcode {
                "ink in the 2 x 1.2 in area at the back's lower right".into()
            } else {
                "2 x 1.2 in at the back's lower right left empty".into()
            },
        )
        .on_content(&facts),
    );
    let spine_text: Vec<&&Ink> =
        ink.iter().filter(|i| i.kind == InkKind::Text && i.area.overlaps(&geometry.spine)).collect();
    let clear = SPINE_CLEARANCE_IN * PT_PER_IN;
    let inner = geometry.spine.inset(clear, 0.0, clear, 0.0);
    let (spine_ok, spine_detail) = if pages < SPINE_TEXT_MIN_PAGES {
        (
            spine_text.is_empty(),
            format!(
                "no spine text below {SPINE_TEXT_MIN_PAGES} pages ({})",
                if spine_text.is_empty() { "none" } else { "found some" }
            ),
        )
    } else {
        (
            spine_text.iter().all(|i| i.area.x0 >= inner.x0 - 0.25 && i.area.x1 <= inner.x1 + 0.25),
            format!("spine text {SPINE_CLEARANCE_IN} in clear of the folds"),
        )
    };
    rules.push(fact("spine text", spine_ok, spine_detail).on_content(&facts));
    rules.extend(common_rules(&facts));
    Ok(Report { title, pages: facts.pages.len(), rules })
}
