//! Each rule against a fixture that breaks it, built with pdf-writer and read back by preflight.

use super::image::{ImageInk, image_ink};
use super::limits::MAX_IMAGE_BYTES_PER_DOCUMENT;
use super::report::page_list;
use super::*;
use crate::print::area::Area;
use lopdf::Stream;
use lopdf::{Dictionary, Document, Object};

use pdf_writer::types::AnnotationType;
use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, Str};

/// One fixture page: its MediaBox and TrimBox, and what it draws.
#[derive(Clone)]
struct Page {
    media: [f32; 4],
    trim: Option<[f32; 4]>,
    draw: Draw,
    annotated: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Draw {
    Nothing,
    /// A filled rectangle `[x, y, w, h]`.
    Rect([f32; 4]),
    /// Text in unembedded Helvetica at (x, y).
    Helvetica(f32, f32),
    /// A 100x100 px black image placed at `[x, y, w, h]`.
    Image([f32; 4]),
    /// Text in an embedded font at (x, y), two-byte codes, 10 pt.
    Text(f32, f32),
    /// "Ada 한" in the embedded fonts at (x, y): the Hangul is in none of them.
    Unprintable(f32, f32),
    /// This many graphics states saved (`q`) and never restored, then an inside rectangle.
    Saves(usize),
    /// "Spine" at `size` pt from (x, y) downwards, as spine text runs.
    SpineText(f32, f32, f32),
    /// At each corner of `around`, a horizontal and a vertical 18 pt hairline, `gap` pt from the
    /// corner, running away from the box (crop marks) or into it (`inward`, a frame's corners),
    /// all in one stroked path.
    Marks {
        around: [f32; 4],
        gap: f32,
        inward: bool,
    },
}

const LETTER: [f32; 4] = [0.0, 0.0, 612.0, 792.0];
/// Well inside every margin of an 8.5x11 page.
const INSIDE: Draw = Draw::Rect([100.0, 100.0, 200.0, 200.0]);

fn page(draw: Draw) -> Page {
    Page { media: LETTER, trim: Some(LETTER), draw, annotated: false }
}

fn book(count: usize) -> Vec<Page> {
    vec![page(INSIDE); count]
}

/// Writes the fixture and returns its path (kept with the directory).
fn write(dir: &tempfile::TempDir, name: &str, pages: &[Page]) -> std::path::PathBuf {
    let mut pdf = Pdf::new();
    let mut next = 1;
    let mut alloc = || {
        next += 1;
        Ref::new(next)
    };
    let (catalog, tree, helvetica, image) = (alloc(), alloc(), alloc(), alloc());
    pdf.type1_font(helvetica).base_font(Name(b"Helvetica"));
    let black = miniz_oxide::deflate::compress_to_vec_zlib(&[0u8; 100 * 100], 6);
    let mut xobject = pdf.image_xobject(image, &black);
    xobject.width(100).height(100).bits_per_component(8).filter(Filter::FlateDecode);
    xobject.color_space().device_gray();
    xobject.finish();
    let mut fonts = crate::print::font::FontUse::new(crate::print::font::Font::builtin());
    let embedded = alloc();
    let mut kids = Vec::new();
    for p in pages {
        let (id, content_id) = (alloc(), alloc());
        let mut content = Content::new();
        match p.draw {
            Draw::Nothing => {}
            Draw::Rect([x, y, w, h]) => {
                content.rect(x, y, w, h).fill_nonzero();
            }
            Draw::Helvetica(x, y) => {
                content.begin_text().set_font(Name(b"H"), 12.0).next_line(x, y).show(Str(b"Hi")).end_text();
            }
            Draw::Image([x, y, w, h]) => {
                content.save_state().transform([w, 0.0, 0.0, h, x, y]).x_object(Name(b"Im")).restore_state();
            }
            Draw::Text(x, y) => fonts.show(&mut content, "Spine", 10.0, x, y),
            Draw::Unprintable(x, y) => fonts.show(&mut content, "Ada 한", 10.0, x, y),
            Draw::Saves(count) => {
                for _ in 0..count {
                    content.save_state();
                }
                content.rect(100.0, 100.0, 10.0, 10.0).fill_nonzero();
            }
            Draw::Marks { around: [x0, y0, x1, y1], gap, inward } => {
                let flip = if inward { -1.0 } else { 1.0 };
                for (cx, cy, sx, sy) in
                    [(x0, y0, -1.0, -1.0), (x1, y0, 1.0, -1.0), (x0, y1, -1.0, 1.0), (x1, y1, 1.0, 1.0)]
                {
                    let (sx, sy) = (sx * flip, sy * flip);
                    content.move_to(cx + sx * gap, cy).line_to(cx + sx * (gap + 18.0), cy);
                    content.move_to(cx, cy + sy * gap).line_to(cx, cy + sy * (gap + 18.0));
                }
                content.set_line_width(0.25).stroke();
            }
            Draw::SpineText(x, y, size) => {
                content.save_state().transform([0.0, -1.0, 1.0, 0.0, x, y]);
                fonts.show(&mut content, "Spine", size, 0.0, 0.0);
                content.restore_state();
            }
        }
        pdf.stream(content_id, &content.finish());
        let annotation = alloc();
        if p.annotated {
            let mut annot = pdf.annotation(annotation);
            annot
                .subtype(AnnotationType::Text)
                .rect(Rect::new(100.0, 100.0, 120.0, 120.0))
                .contents(pdf_writer::TextStr("note"));
            annot.finish();
        } else {
            pdf.indirect(annotation).primitive(0);
        }
        let mut page = pdf.page(id);
        let [a, b, c, d] = p.media;
        page.parent(tree).media_box(Rect::new(a, b, c, d)).contents(content_id);
        if let Some([a, b, c, d]) = p.trim {
            page.trim_box(Rect::new(a, b, c, d));
        }
        if p.annotated {
            page.annotations([annotation]);
        }
        let mut resources = page.resources();
        resources.x_objects().pair(Name(b"Im"), image);
        if matches!(p.draw, Draw::Helvetica(..)) {
            resources.fonts().pair(Name(b"H"), helvetica);
        } else {
            resources.pair(Name(b"Font"), embedded);
        }
        resources.finish();
        page.finish();
        kids.push(id);
    }
    for chunk in fonts.write(embedded, &mut alloc).unwrap_or_else(|e| panic!("{e}")) {
        pdf.extend(&chunk);
    }
    pdf.pages(tree).kids(kids.iter().copied()).count(kids.len() as i32);
    pdf.catalog(catalog).pages(tree);
    let path = dir.path().join(name);
    std::fs::write(&path, pdf.finish()).unwrap_or_else(|e| panic!("{e}"));
    path
}

fn interior(pages: &[Page]) -> Report {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = write(&dir, "interior.pdf", pages);
    check_interior(&path, Target::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// The one rule that fails, and its pages.
fn failing(report: &Report) -> Vec<(&'static str, Vec<usize>)> {
    report.rules.iter().filter(|r| !r.passed).map(|r| (r.name, r.pages.clone())).collect()
}

#[test]
fn a_good_book_passes_every_rule() {
    let report = interior(&book(24));
    assert!(report.passed(), "{report}");
    assert_eq!(report.rules.len(), 12);
    assert!(report.to_string().contains("✓ page count"), "{report}");
}

#[test]
fn too_few_or_an_odd_count_of_pages_fails_the_page_count() {
    assert_eq!(failing(&interior(&book(22))), [("page count", vec![])]);
    assert_eq!(failing(&interior(&book(25))), [("page count", vec![])]);
}

#[test]
fn a_page_of_another_size_fails() {
    let mut pages = book(24);
    let small = [0.0, 0.0, 600.0, 792.0];
    pages[2] = Page { media: small, trim: Some(small), ..page(INSIDE) };
    let report = interior(&pages);
    let failed = failing(&report);
    assert!(failed.contains(&("one page size", vec![3])), "{report}");
    assert!(failed.contains(&("page boxes", vec![3])), "{report}");
}

#[test]
fn a_trim_box_outside_the_media_box_fails_the_page_boxes() {
    let mut pages = book(24);
    pages[1].trim = Some([-10.0, 0.0, 602.0, 792.0]);
    assert_eq!(failing(&interior(&pages)), [("page boxes", vec![2])]);
}

#[test]
fn an_image_placed_below_300_dpi_fails() {
    let mut pages = book(24);
    // 100 px over 0.5 in is 200 DPI; over a third of an inch, 300.
    pages[4] = page(Draw::Image([100.0, 100.0, 36.0, 36.0]));
    pages[5] = page(Draw::Image([100.0, 100.0, 24.0, 24.0]));
    let report = interior(&pages);
    assert_eq!(failing(&report), [("images at 300 DPI", vec![5])], "{report}");
}

#[test]
fn an_unembedded_font_fails_and_is_named() {
    let mut pages = book(24);
    pages[0] = page(Draw::Helvetica(200.0, 400.0));
    pages[1] = page(Draw::Text(200.0, 400.0));
    let report = interior(&pages);
    assert_eq!(failing(&report), [("fonts embedded", vec![1])], "{report}");
    assert!(report.to_string().contains("not embedded: Helvetica"), "{report}");
}

#[test]
fn text_shown_as_notdef_fails_the_glyph_rule() {
    let mut pages = book(24);
    pages[2] = page(Draw::Unprintable(200.0, 400.0));
    let report = interior(&pages);
    assert_eq!(failing(&report), [("every character has a glyph", vec![3])], "{report}");
    assert!(report.to_string().contains("code 0000 of "), "{report}");
    // The same text set by the fallbacks' own characters passes.
    pages[2] = page(Draw::Text(200.0, 400.0));
    assert!(interior(&pages).passed());
}

#[test]
fn a_page_over_a_limit_could_not_be_checked_and_does_not_pass() {
    let mut pages = book(24);
    pages[3] = page(Draw::Saves(300));
    let report = interior(&pages);
    assert!(failing(&report).is_empty(), "{report}");
    assert!(!report.passed());
    let margins =
        report.rules.iter().find(|r| r.name == "ink inside the margins").map(|r| r.unchecked.clone());
    assert_eq!(margins, Some(vec![4]));
    let text = report.to_string();
    assert!(
        text.contains("? ink inside the margins")
            && text.contains("could not check pages 4: more than 256 graphics states"),
        "{text}"
    );
    assert!(report.verdict().contains("could not check every page"), "{text}");
    // Rules that do not read the content are checked as usual.
    assert!(text.contains("✓ page count"), "{text}");
}

#[test]
fn an_annotation_fails() {
    let mut pages = book(24);
    pages[3].annotated = true;
    assert_eq!(failing(&interior(&pages)), [("no annotations", vec![4])]);
}

#[test]
fn crop_marks_around_the_trim_or_in_the_page_corners_fail() {
    let mut pages = book(24);
    // Exported with printer's marks: a page half an inch larger all round, its TrimBox the
    // letter page inside, and the marks 6 pt outside the trim's corners.
    let trim = [36.0, 36.0, 648.0, 828.0];
    let marks = Draw::Marks { around: trim, gap: 6.0, inward: false };
    pages[2] = Page { media: [0.0, 0.0, 684.0, 864.0], trim: Some(trim), draw: marks, annotated: false };
    // No TrimBox: the same marks drawn inside a letter page, around a smaller art area.
    let inner = Draw::Marks { around: [27.0, 27.0, 585.0, 765.0], gap: 4.0, inward: false };
    pages[5] = Page { trim: None, ..page(inner) };
    let report = interior(&pages);
    let failed = failing(&report);
    assert!(failed.contains(&("no crop marks", vec![3, 6])), "{report}");
    assert!(report.to_string().contains("export without printer's marks"), "{report}");

    // A frame's corners inside the margins, or marks meeting at the corner, are not crop marks.
    let mut pages = book(24);
    let safe = [60.0, 60.0, 550.0, 730.0];
    pages[2] = page(Draw::Marks { around: safe, gap: 0.0, inward: true });
    pages[3] = page(Draw::Marks { around: safe, gap: 12.0, inward: true });
    let report = interior(&pages);
    assert!(report.passed(), "{report}");
}

#[test]
fn three_blank_pages_in_a_row_or_eleven_at_the_end_fail() {
    let mut pages = book(24);
    for blank in &mut pages[4..7] {
        *blank = page(Draw::Nothing);
    }
    // Two in a row are allowed (a single-sided book's blank backs are one at a time).
    pages[9] = page(Draw::Nothing);
    pages[10] = page(Draw::Nothing);
    assert_eq!(failing(&interior(&pages)), [("blank pages", vec![5, 6, 7])]);

    let mut pages = book(24);
    for page_at in &mut pages[13..] {
        *page_at = page(Draw::Nothing);
    }
    assert_eq!(failing(&interior(&pages)), [("blank pages", (14..=24).collect())]);
    pages[13] = page(INSIDE);
    assert!(interior(&pages).passed());
}

#[test]
fn ink_in_the_margins_or_the_gutter_fails() {
    let mut pages = book(24);
    // Page 2 (left-hand): 10 pt from its outside (left) edge, inside the 18 pt margin.
    pages[1] = page(Draw::Rect([10.0, 100.0, 50.0, 50.0]));
    // Page 3 (right-hand): 20 pt from its gutter (left) edge, inside the 27 pt gutter.
    pages[2] = page(Draw::Rect([20.0, 100.0, 50.0, 50.0]));
    // Page 4 (left-hand): the same is fine there, its gutter is on the right.
    pages[3] = page(Draw::Rect([20.0, 100.0, 50.0, 50.0]));
    // Page 5: text running into the top margin.
    pages[4] = page(Draw::Text(100.0, 780.0));
    assert_eq!(failing(&interior(&pages)), [("ink inside the margins", vec![2, 3, 5])]);
}

#[test]
fn an_image_white_at_its_edges_counts_only_its_ink() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = write(&dir, "interior.pdf", &book(24));
    let doc = Document::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let image = doc
        .objects
        .values()
        .find_map(|o| o.as_stream().ok().filter(|s| s.dict.has(b"Width")).cloned())
        .unwrap_or_else(|| panic!("no image"));
    let unit = Area { x0: 0.0, y0: 0.0, x1: 1.0, y1: 1.0 };
    let mut budget = MAX_IMAGE_BYTES_PER_DOCUMENT;
    assert_eq!(image_ink(&image, &mut budget), Ok(ImageInk::Dark(unit)), "all black: all of it");
    // A G4 page: a black square in the middle of a white page.
    let (w, h) = (64u32, 32u32);
    let mut encoder = fax::encoder::Encoder::new(fax::VecWriter::new());
    for y in 0..h {
        let line = (0..w).map(|x| {
            if (16..48).contains(&x) && (8..24).contains(&y) { fax::Color::Black } else { fax::Color::White }
        });
        let Ok(()) = encoder.encode_line(line, w);
    }
    let Ok(writer) = encoder.finish();
    let mut dict = Dictionary::new();
    dict.set("Width", i64::from(w));
    dict.set("Height", i64::from(h));
    dict.set("Filter", Object::Name(b"CCITTFaxDecode".to_vec()));
    let mut parms = Dictionary::new();
    parms.set("K", -1);
    parms.set("Columns", i64::from(w));
    dict.set("DecodeParms", parms);
    let stream = Stream::new(dict, writer.finish());
    let middle = Area { x0: 0.25, y0: 0.25, x1: 0.75, y1: 0.75 };
    assert_eq!(image_ink(&stream, &mut budget), Ok(ImageInk::Dark(middle)));
}

#[test]
fn encryption_and_a_file_over_650_mb_fail() {
    let facts = Facts { bytes: 651_000_000, encrypted: true, pages: 0 };
    let failed: Vec<&str> =
        Common::new().rules(&facts).iter().filter(|r| !r.passed).map(|r| r.name).collect();
    assert_eq!(failed, ["not encrypted", "file size"]);

    // A real file whose trailer names an encryption dictionary.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = write(&dir, "interior.pdf", &book(24));
    let mut doc = Document::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut encrypt = Dictionary::new();
    encrypt.set("Filter", Object::Name(b"Standard".to_vec()));
    let id = doc.add_object(encrypt);
    doc.trailer.set("Encrypt", id);
    doc.save(&path).unwrap_or_else(|e| panic!("{e}"));
    let report = check_interior(&path, Target::default());
    match report {
        Ok(report) => assert_eq!(failing(&report), [("not encrypted", vec![])]),
        Err(message) => assert!(message.contains("encrypted"), "{message}"),
    }
}

fn cover(draws: &[Draw], pages: usize, width_in: f32) -> Report {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let media = [0.0, 0.0, width_in * PT_PER_IN, 11.25 * PT_PER_IN];
    let page_list: Vec<Page> =
        draws.iter().map(|d| Page { media, trim: None, draw: *d, annotated: false }).collect();
    let path = write(&dir, "cover.pdf", &page_list);
    check_cover(&path, pages, Trim::LETTER, Paper::White).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_cover_is_sized_for_the_page_count_and_keeps_the_barcode_area_and_a_thin_spine_clear() {
    // 100 pages on white: a 0.2252 in spine; 0.125 + 8.5 + 0.2252 + 8.5 + 0.125.
    let width = 17.4752;
    let geometry = CoverGeometry::new(Trim::LETTER, 100, Paper::White);
    assert!((geometry.width / PT_PER_IN - width).abs() < 1e-4);
    // The spine is 16.2 pt wide, 9 pt of it kept clear of the folds.
    let spine_x = geometry.spine.x0 + 4.5 + 0.25 * 5.0;
    assert!(cover(&[INSIDE], 100, width).passed());
    assert_eq!(failing(&cover(&[INSIDE, INSIDE], 100, width)), [("one page", vec![])]);
    assert_eq!(failing(&cover(&[INSIDE], 100, 17.0)), [("cover size", vec![1])]);
    let barcode = Draw::Rect([geometry.barcode.x0 + 10.0, geometry.barcode.y0 + 10.0, 20.0, 20.0]);
    assert_eq!(failing(&cover(&[barcode], 100, width)), [("barcode area empty", vec![])]);
    // Spine text: not on a 40-page book's spine, fine on a 100-page one.
    let width_40 = CoverGeometry::new(Trim::LETTER, 40, Paper::White).width / PT_PER_IN;
    let spine_40 = CoverGeometry::new(Trim::LETTER, 40, Paper::White).spine;
    assert_eq!(
        failing(&cover(&[Draw::Text(spine_40.x0 + 1.0, 400.0)], 40, width_40)),
        [("spine text", vec![])]
    );
    assert!(cover(&[Draw::SpineText(spine_x, 400.0, 5.0)], 100, width).passed());
    // Too large: it runs over the folds.
    assert_eq!(
        failing(&cover(&[Draw::SpineText(spine_x, 400.0, 12.0)], 100, width)),
        [("spine text", vec![])]
    );
}

#[test]
fn the_spine_width_follows_the_page_count_and_the_paper() {
    for (pages, paper, spine) in [
        (24, Paper::White, 0.054048),
        (100, Paper::White, 0.2252),
        (300, Paper::White, 0.6756),
        (24, Paper::Cream, 0.06),
        (100, Paper::Cream, 0.25),
        (550, Paper::Cream, 1.375),
    ] {
        let geometry = CoverGeometry::new(Trim::LETTER, pages, paper);
        assert!((geometry.spine.width() / PT_PER_IN - spine).abs() < 1e-4, "{pages} {paper:?}");
        assert!((geometry.width / PT_PER_IN - (17.25 + spine)).abs() < 1e-4, "{pages} {paper:?}");
        assert!((geometry.height / PT_PER_IN - 11.25).abs() < 1e-4);
    }
}

#[test]
fn page_lists_are_ranges() {
    assert_eq!(page_list(&[1, 2, 3, 5, 7, 8]), "1-3, 5, 7-8");
}
