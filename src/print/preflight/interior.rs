//! The interior rules: trim and bleed, page count, blank pages, margins and gutter.

use std::path::Path;

use super::ink::InkKind;
use super::reading::{Gather, PageFacts, read};
use super::report::{Report, Target, fact, rule};
use super::{Common, encrypted};
use crate::print::*;

/// Checks an interior PDF.
pub fn check_interior(path: &Path, target: Target) -> Result<Report, String> {
    let (facts, interior) = read(path, |count| Interior::new(count, target))?;
    if let Some(report) = encrypted(path, &facts) {
        return Ok(report);
    }
    let count = facts.pages;
    let Some(book) = interior.book else { return Err(format!("{} has no pages", path.display())) };
    let Book { trim, bleed, size: (w0, h0), want: (want_w, want_h), outside, gutter } = book;
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

    let mut rules = vec![fact(
        "page count",
        (MIN_PAGES..=max).contains(&count) && count.is_multiple_of(2),
        format!("{count} pages: at least {MIN_PAGES}, at most {max}, an even count"),
    )];
    rules.push(rule(
        "one page size",
        interior.odd_size,
        format!("every page is {w0:.2} x {h0:.2} pt"),
        |_| format!("pages differ from page 1's {w0:.2} x {h0:.2} pt"),
    ));
    rules.push(rule(
        "page boxes",
        interior.bad_boxes,
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
    let mut bad_blanks = interior.bad_blanks;
    let trailing = interior.blank_run;
    if trailing > MAX_BLANK_AT_END {
        bad_blanks.extend(count - trailing + 1..=count);
    }
    rules.push(rule(
        "blank pages",
        bad_blanks,
        format!("no run over {MAX_BLANK_RUN} inside, {trailing} at the end (at most {MAX_BLANK_AT_END})"),
        |_| format!("over {MAX_BLANK_RUN} blank pages in a row, or over {MAX_BLANK_AT_END} at the end"),
    ));

    rules.push(
        rule(
            "ink inside the margins",
            interior.outside_safe,
            format!("{:.3} in outside, {:.3} in gutter", outside / PT_PER_IN, gutter / PT_PER_IN),
            |_| {
                format!(
                    "ink within {:.3} in of the edge or {:.3} in of the gutter",
                    outside / PT_PER_IN,
                    gutter / PT_PER_IN
                )
            },
        )
        .on_content(&interior.common.unchecked),
    );
    rules.extend(interior.common.rules(&facts));
    Ok(Report { title, pages: count, rules })
}

/// What the book is judged as, from the target and page 1.
#[derive(Clone, Copy)]
struct Book {
    trim: Trim,
    bleed: bool,
    /// Page 1's MediaBox, in points.
    size: (f32, f32),
    /// The MediaBox every page should have, in points.
    want: (f32, f32),
    /// The margins, in points.
    outside: f32,
    gutter: f32,
}

/// What the interior rules gather, a page at a time.
struct Interior {
    count: usize,
    target: Target,
    book: Option<Book>,
    odd_size: Vec<usize>,
    bad_boxes: Vec<usize>,
    /// Pages in blank runs over [`MAX_BLANK_RUN`] before an inked page.
    bad_blanks: Vec<usize>,
    /// Blank pages since the last inked one.
    blank_run: usize,
    outside_safe: Vec<usize>,
    common: Common,
}

impl Interior {
    fn new(count: usize, target: Target) -> Self {
        Interior {
            count,
            target,
            book: None,
            odd_size: Vec::new(),
            bad_boxes: Vec::new(),
            bad_blanks: Vec::new(),
            blank_run: 0,
            outside_safe: Vec::new(),
            common: Common::new(),
        }
    }

    fn book(&self, first: &PageFacts) -> Book {
        let trim =
            self.target.trim.unwrap_or(Trim { width: first.trim.width(), height: first.trim.height() });
        let bleed = self.target.bleed.unwrap_or(first.media.width() > first.trim.width() + 1.0);
        let bleed_pt = BLEED_IN * PT_PER_IN;
        let want = if bleed {
            (trim.width + bleed_pt, trim.height + 2.0 * bleed_pt)
        } else {
            (trim.width, trim.height)
        };
        Book {
            trim,
            bleed,
            size: (first.media.width(), first.media.height()),
            want,
            outside: outside_margin_in(bleed) * PT_PER_IN,
            gutter: gutter_in(self.count) * PT_PER_IN,
        }
    }
}

impl Gather for Interior {
    fn page(&mut self, number: usize, p: &PageFacts) {
        let book = match self.book {
            Some(book) => book,
            None => *self.book.insert(self.book(p)),
        };
        let Book { trim, bleed, size: (w0, h0), want: (want_w, want_h), outside, gutter } = book;
        if (p.media.width() - w0).abs() > 0.5 || (p.media.height() - h0).abs() > 0.5 {
            self.odd_size.push(number);
        }

        let trim_ok =
            (p.trim.width() - trim.width).abs() <= 0.5 && (p.trim.height() - trim.height).abs() <= 0.5;
        let media_ok = (p.media.width() - want_w).abs() <= 0.5 && (p.media.height() - want_h).abs() <= 0.5;
        let nested = p.trim.within(&p.bleed) && p.bleed.within(&p.media);
        if !(trim_ok && media_ok && nested && (p.has_trim_box || !bleed)) {
            self.bad_boxes.push(number);
        }

        if p.blank() {
            self.blank_run += 1;
        } else {
            if self.blank_run > MAX_BLANK_RUN {
                self.bad_blanks.extend(number - self.blank_run..number);
            }
            self.blank_run = 0;
        }

        // Odd pages are right-hand pages: their gutter is on the left.
        let (left, right) = if number % 2 == 1 { (gutter, outside) } else { (outside, gutter) };
        let safe = p.trim.inset(left, outside, right, outside);
        let outside_safe = p.ink().iter().any(|ink| {
            let full_bleed =
                matches!(ink.kind, InkKind::Image { placed, .. } if bleed && p.bleed.within(&placed));
            !full_bleed && !ink.area.within(&safe)
        });
        if outside_safe {
            self.outside_safe.push(number);
        }
        self.common.page(number, p);
    }
}
