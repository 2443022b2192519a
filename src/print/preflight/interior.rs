//! The interior rules: trim and bleed, page count, blank pages, margins and gutter.

use std::path::Path;

use super::ink::InkKind;
use super::reading::{PageFacts, read};
use super::report::{Report, Target, fact, rule};
use super::{common_rules, encrypted};
use crate::print::*;

/// Checks an interior PDF.
pub fn check_interior(path: &Path, target: Target) -> Result<Report, String> {
    let facts = read(path)?;
    if let Some(report) = encrypted(path, &facts) {
        return Ok(report);
    }
    let count = facts.pages.len();
    let first = facts.pages.first().ok_or_else(|| format!("{} has no pages", path.display()))?;
    let trim = target.trim.unwrap_or(Trim { width: first.trim.width(), height: first.trim.height() });
    let bleed = target.bleed.unwrap_or(first.media.width() > first.trim.width() + 1.0);
    let max = max_pages(trim, target.paper);
    let paper = match target.paper {
        Paper::White => "white",
        Paper::Cream => "cream",
    };
    let title = format!(
        "{} ({count} pages, {trim}, {}, {paper} paper)",
        path.display(),
        if bleed { "bleed" } else { "no bleed" }
    );
    let numbered = || facts.pages.iter().enumerate().map(|(i, p)| (i + 1, p));

    let mut rules = vec![fact(
        "page count",
        (MIN_PAGES..=max).contains(&count) && count.is_multiple_of(2),
        format!("{count} pages: at least {MIN_PAGES}, at most {max}, an even count"),
    )];

    let size = |p: &PageFacts| (p.media.width(), p.media.height());
    let (w0, h0) = size(first);
    let odd_size: Vec<usize> = numbered()
        .filter(|(_, p)| (size(p).0 - w0).abs() > 0.5 || (size(p).1 - h0).abs() > 0.5)
        .map(|(n, _)| n)
        .collect();
    rules.push(rule("one page size", odd_size, format!("every page is {w0:.2} x {h0:.2} pt"), |_| {
        format!("pages differ from page 1's {w0:.2} x {h0:.2} pt")
    }));

    let bleed_pt = BLEED_IN * PT_PER_IN;
    let (want_w, want_h) =
        if bleed { (trim.width + bleed_pt, trim.height + 2.0 * bleed_pt) } else { (trim.width, trim.height) };
    let bad_boxes: Vec<usize> = numbered()
        .filter(|(_, p)| {
            let trim_ok =
                (p.trim.width() - trim.width).abs() <= 0.5 && (p.trim.height() - trim.height).abs() <= 0.5;
            let media_ok =
                (p.media.width() - want_w).abs() <= 0.5 && (p.media.height() - want_h).abs() <= 0.5;
            let nested = p.trim.within(&p.bleed) && p.bleed.within(&p.media);
            !(trim_ok && media_ok && nested && (p.has_trim_box || !bleed))
        })
        .map(|(n, _)| n)
        .collect();
    rules.push(rule(
        "page boxes",
        bad_boxes,
        format!(
            "TrimBox {trim} inside BleedBox inside MediaBox {:.3} x {:.3} in",
            want_w / PT_PER_IN,
            want_h / PT_PER_IN
        ),
        |_| {
            format!(
                "want TrimBox {trim} and MediaBox {:.3} x {:.3} in, nested",
                want_w / PT_PER_IN,
                want_h / PT_PER_IN
            )
        },
    ));

    // Blank runs: at most two in a row before the last inked page, at most ten after it.
    let last_ink = facts.pages.iter().rposition(|p| !p.blank());
    let mut bad_blanks = Vec::new();
    let mut run: Vec<usize> = Vec::new();
    for (number, page) in numbered().take(last_ink.map_or(0, |l| l + 1)) {
        if page.blank() {
            run.push(number);
        } else {
            if run.len() > MAX_BLANK_RUN {
                bad_blanks.extend(&run);
            }
            run.clear();
        }
    }
    let trailing = count - last_ink.map_or(0, |l| l + 1);
    if trailing > MAX_BLANK_AT_END {
        bad_blanks.extend(count - trailing + 1..=count);
    }
    rules.push(rule(
        "blank pages",
        bad_blanks,
        format!("no run over {MAX_BLANK_RUN} inside, {trailing} at the end (at most {MAX_BLANK_AT_END})"),
        |_| format!("over {MAX_BLANK_RUN} blank pages in a row, or over {MAX_BLANK_AT_END} at the end"),
    ));

    let outside = outside_margin_in(bleed) * PT_PER_IN;
    let gutter = gutter_in(count) * PT_PER_IN;
    let outside_safe: Vec<usize> = numbered()
        .filter(|(number, p)| {
            // Odd pages are right-hand pages: their gutter is on the left.
            let (left, right) = if number % 2 == 1 { (gutter, outside) } else { (outside, gutter) };
            let safe = p.trim.inset(left, outside, right, outside);
            p.ink().iter().any(|ink| {
                let full_bleed =
                    matches!(ink.kind, InkKind::Image { placed, .. } if bleed && p.bleed.within(&placed));
                !full_bleed && !ink.area.within(&safe)
            })
        })
        .map(|(n, _)| n)
        .collect();
    rules.push(
        rule(
            "ink inside the margins",
            outside_safe,
            format!("{:.3} in outside, {:.3} in gutter", outside / PT_PER_IN, gutter / PT_PER_IN),
            |_| {
                format!(
                    "ink within {:.3} in of the edge or {:.3} in of the gutter",
                    outside / PT_PER_IN,
                    gutter / PT_PER_IN
                )
            },
        )
        .on_content(&facts),
    );
    rules.extend(common_rules(&facts));
    Ok(Report { title, pages: count, rules })
}
