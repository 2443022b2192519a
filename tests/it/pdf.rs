//! The `pdf` sink through the Sink trait, its books read back with lopdf and their Group 4 pages
//! decoded with the fax crate: page order, page sizes, image parameters, pixel equality, title and
//! placeholder pages, `on_missing`, no half-written book at the final path, and streaming.
//!
//! `INKFLOW_PDF_OUT=/some/book.pdf cargo test --test it pdf::sample_book` also copies a sample book
//! there, for `.ci/check-pdf.sh`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::common::pdf_reader::{decode_g4, embedded_fonts, load, page_image, pages};
use inkflow::engine::item::{Failure, Item, Prompt, State};
use inkflow::engine::media::{Payload, Pixels, Raster};
use inkflow::engine::stage::{BuildContext, Component, Kind, Sink};
use inkflow::engine::summary::Summary;
use inkflow::stages::pdf::PdfBook;
use lopdf::content::Content;
use lopdf::{Document, Object, ObjectId};
use serde_json::{Value, json};

/// How a sink `id` of the test pipeline is built, writing into `dir`.
fn context(dir: &Path, id: &str) -> BuildContext {
    BuildContext {
        id: id.into(),
        inputs: vec!["lineart".into()],
        output_dir: dir.to_owned(),
        pipeline_file: PathBuf::from("test.yaml"),
        dry_run: false,
        room_below: 4,
    }
}

fn sink(dir: &Path, options: Value) -> Arc<dyn Sink> {
    let kind = PdfBook;
    if let Err(e) = kind.check(&options) {
        panic!("options rejected: {e}");
    }
    match kind.build(&options, &context(dir, "book")) {
        Ok(Component::Sink(sink)) => sink,
        Ok(_) => panic!("pdf built something other than a sink"),
        Err(e) => panic!("build failed: {e:#}"),
    }
}

fn item(seq: u64, number: u32, description: &str) -> Item {
    Item::new(
        seq,
        Prompt {
            section: "animals".into(),
            number,
            image_prompt: format!("a line drawing of {description}"),
            description: description.into(),
            ..Prompt::default()
        },
    )
}

/// A bilevel raster where `black(x, y)` decides each pixel; padding bits are left 0 (black) to
/// prove the encoder ignores them.
fn bilevel(width: u32, height: u32, dpi: f32, black: impl Fn(u32, u32) -> bool) -> Raster {
    let stride = Raster::bilevel_stride(width);
    let mut packed = vec![0u8; stride * height as usize];
    for y in 0..height {
        for x in 0..width {
            if !black(x, y) {
                packed[y as usize * stride + x as usize / 8] |= 0x80 >> (x % 8);
            }
        }
    }
    Raster::new(width, height, Some(dpi), Pixels::Bilevel(packed))
}

/// Stripes, a diagonal, a filled box and a black first column: rows that start black, runs longer
/// than 64 and 2560 (makeup codes), and a width that is not a multiple of 8.
fn pattern(seed: u32) -> impl Fn(u32, u32) -> bool {
    move |x, y| {
        x == 0
            || (x + seed) % 37 < 3
            || (y % 50 < 2)
            || x.abs_diff(y + seed) < 2
            || (30..90).contains(&x) && (40..60).contains(&y)
    }
}

/// Line art like a coloring page: outlined circles and a frame, 3 px strokes.
fn line_art(x: u32, y: u32) -> bool {
    let circle = |cx: i64, cy: i64, r: i64| {
        let (dx, dy) = (x as i64 - cx, y as i64 - cy);
        let d = dx * dx + dy * dy;
        d >= (r - 2) * (r - 2) && d <= (r + 1) * (r + 1)
    };
    let frame = (150..153).contains(&x)
        || (2397..2400).contains(&x)
        || (150..153).contains(&y)
        || (3147..3150).contains(&y);
    let frame = frame && (150..2400).contains(&x) && (150..3150).contains(&y);
    frame
        || circle(1275, 1200, 700)
        || circle(1275, 1200, 400)
        || circle(900, 2400, 350)
        || circle(1650, 2400, 350)
        || circle(1275, 2400, 120)
}

fn ready(raster: Raster) -> Vec<State> {
    vec![State::Ready(Payload::Image(Arc::new(raster)))]
}

fn failed(error: &str) -> Vec<State> {
    vec![State::Failed(Failure {
        stage: "generate".into(),
        error: error.into(),
        attempts: 3,
        interrupted: false,
    })]
}

async fn write(sink: &Arc<dyn Sink>, item: &Item, states: Vec<State>) {
    if let Err(e) = sink.write(item, states).await {
        panic!("write {}: {e}", item.key);
    }
}

async fn finish(sink: &Arc<dyn Sink>) {
    if let Err(e) = sink.finish(&Summary::default()).await {
        panic!("finish: {e:#}");
    }
}

fn numbers(object: &Object) -> Vec<f32> {
    object.as_array().map(|a| a.iter().filter_map(|o| o.as_float().ok()).collect()).unwrap_or_default()
}

fn media_box(doc: &Document, page: ObjectId) -> Vec<f32> {
    numbers(doc.get_dictionary(page).and_then(|d| d.get(b"MediaBox")).unwrap_or(&Object::Null))
}

fn int(dict: &lopdf::Dictionary, key: &str) -> i64 {
    dict.get(key.as_bytes()).and_then(Object::as_i64).unwrap_or(i64::MIN)
}

fn name(dict: &lopdf::Dictionary, key: &str) -> String {
    dict.get(key.as_bytes())
        .and_then(Object::as_name)
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .unwrap_or_default()
}

fn raster_rows(raster: &Raster) -> Vec<Vec<bool>> {
    let Pixels::Bilevel(packed) = &raster.pixels else { panic!("not bilevel") };
    let stride = Raster::bilevel_stride(raster.width);
    (0..raster.height as usize)
        .map(|y| {
            (0..raster.width as usize).map(|x| packed[y * stride + x / 8] & (0x80 >> (x % 8)) == 0).collect()
        })
        .collect()
}

/// Checks a page's image is a 1-bit Group 4 XObject holding exactly `raster`'s pixels.
fn assert_g4_page(doc: &Document, page: ObjectId, raster: &Raster) {
    let (dict, data) = page_image(doc, page).unwrap_or_else(|| panic!("page {page:?} has no image"));
    assert_eq!(int(&dict, "Width"), i64::from(raster.width));
    assert_eq!(int(&dict, "Height"), i64::from(raster.height));
    assert_eq!(int(&dict, "BitsPerComponent"), 1);
    assert_eq!(name(&dict, "Filter"), "CCITTFaxDecode");
    assert_eq!(name(&dict, "ColorSpace"), "DeviceGray");
    let parms =
        dict.get(b"DecodeParms").and_then(Object::as_dict).unwrap_or_else(|e| panic!("DecodeParms: {e}"));
    assert_eq!(int(parms, "K"), -1);
    assert_eq!(int(parms, "Columns"), i64::from(raster.width));
    assert_eq!(int(parms, "Rows"), i64::from(raster.height));
    assert_eq!(parms.get(b"BlackIs1").and_then(Object::as_bool).ok(), Some(false));
    let decoded = decode_g4(&data, raster.width, raster.height);
    assert!(decoded == raster_rows(raster), "the decoded page differs from the raster fed in");
}

/// The `cm` matrix that places a page's image.
fn image_matrix(doc: &Document, page: ObjectId) -> Vec<f32> {
    let bytes = doc.get_page_content(page);
    let content = Content::decode(&bytes).unwrap_or_else(|e| panic!("content stream: {e}"));
    content
        .operations
        .iter()
        .find(|op| op.operator == "cm")
        .map(|op| op.operands.iter().filter_map(|o| o.as_float().ok()).collect())
        .unwrap_or_default()
}

fn text(doc: &Document, page_number: u32) -> String {
    doc.extract_text(&[page_number]).unwrap_or_else(|e| panic!("text of page {page_number}: {e}"))
}

fn info_string(doc: &Document, key: &str) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?.as_reference().ok()?;
    let value = doc.get_dictionary(info).ok()?.get(key.as_bytes()).ok()?;
    lopdf::decode_text_string(value).ok()
}

#[tokio::test]
async fn pages_are_in_page_order_whatever_the_arrival_order_and_keep_their_pixels() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let book = sink(dir.path(), json!({}));
    // (seq, page number): seq 5 and 2 share page 3, so seq breaks the tie.
    let order = [(4, 5), (0, 1), (5, 3), (2, 3), (1, 2), (3, 4)];
    let mut fed = Vec::new();
    for (seq, number) in order {
        // A unique, odd width per item identifies the page.
        let raster = bilevel(101 + 8 * seq as u32, 97, 300.0, pattern(seq as u32));
        fed.push((seq, raster.clone()));
        write(&book, &item(seq, number, &format!("page {number}")), ready(raster)).await;
    }
    finish(&book).await;

    let doc = load(&dir.path().join("book.pdf"));
    let pages = pages(&doc);
    assert_eq!(pages.len(), 6);
    let expected_seq = [0, 1, 2, 5, 3, 4];
    for (page, seq) in pages.iter().zip(expected_seq) {
        let raster = &fed.iter().find(|(s, _)| *s == seq).map(|(_, r)| r.clone()).unwrap_or_else(|| panic!());
        assert_g4_page(&doc, *page, raster);
    }
    assert!(!dir.path().join("book.pdf.partial").exists());
}

#[tokio::test]
async fn page_sizes_follow_the_option_and_images_sit_at_their_dpi() {
    let cases = [
        (json!({ "margin": 0 }), [612.0, 792.0]),
        (json!({ "trim": "letter", "margin": 0 }), [612.0, 792.0]),
        (json!({ "trim": "a4", "margin": 0 }), [595.28, 841.89]),
        (json!({ "trim": "6x9", "margin": "0 in" }), [432.0, 648.0]),
        (json!({ "trim": "150 x 200 mm", "margin": 0 }), [425.2, 566.93]),
    ];
    for (options, [width, height]) in cases {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let book = sink(dir.path(), options.clone());
        // 600 px at 300 DPI is two inches: 144 pt, centred.
        write(&book, &item(0, 1, "square"), ready(bilevel(600, 600, 300.0, pattern(1)))).await;
        finish(&book).await;
        let doc = load(&dir.path().join("book.pdf"));
        let page = pages(&doc)[0];
        let mb = media_box(&doc, page);
        assert_eq!(mb.len(), 4, "{options}");
        assert!(mb[0] == 0.0 && mb[1] == 0.0, "{options}: {mb:?}");
        assert!((mb[2] - width).abs() < 0.01 && (mb[3] - height).abs() < 0.01, "{options}: {mb:?}");
        let m = image_matrix(&doc, page);
        let expected = [144.0, 0.0, 0.0, 144.0, (width - 144.0) / 2.0, (height - 144.0) / 2.0];
        assert!(
            m.iter().zip(expected).all(|(a, b)| (a - b).abs() < 0.01) && m.len() == 6,
            "{options}: {m:?}"
        );
    }
}

#[tokio::test]
async fn margins_scale_the_image_to_fit_inside_them() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let book = sink(dir.path(), json!({ "margin": 36 }));
    write(&book, &item(0, 1, "page"), ready(bilevel(2550, 3300, 300.0, |x, _| x < 10))).await;
    finish(&book).await;
    let doc = load(&dir.path().join("book.pdf"));
    let m = image_matrix(&doc, pages(&doc)[0]);
    // The width binds: 612 - 72 = 540 pt wide, 540 * 3300 / 2550 tall, centred.
    let h = 540.0 * 3300.0 / 2550.0;
    let expected = [540.0, 0.0, 0.0, h, 36.0, (792.0 - h) / 2.0];
    assert!(m.iter().zip(expected).all(|(a, b)| (a - b).abs() < 0.01) && m.len() == 6, "{m:?}");
}

#[tokio::test]
async fn a_title_page_comes_first_and_the_info_dictionary_is_filled() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let book = sink(
        dir.path(),
        json!({ "title": "Forest Friends", "author": "Ada Inkwell", "page_numbers": true, "path": "out/friends.pdf" }),
    );
    for number in [2, 1] {
        write(&book, &item(u64::from(number), number, "fox"), ready(bilevel(64, 64, 300.0, pattern(number))))
            .await;
    }
    finish(&book).await;

    let doc = load(&dir.path().join("out/friends.pdf"));
    let pages = pages(&doc);
    assert_eq!(pages.len(), 3);
    assert!(page_image(&doc, pages[0]).is_none(), "the title page has no image");
    let title = text(&doc, 1);
    assert!(title.contains("Forest Friends") && title.contains("Ada Inkwell"), "{title:?}");
    assert!(page_image(&doc, pages[1]).is_some() && page_image(&doc, pages[2]).is_some());
    // Page numbers count the pages after the title page.
    assert_eq!(text(&doc, 2).trim(), "1");
    assert_eq!(text(&doc, 3).trim(), "2");
    assert_eq!(info_string(&doc, "Title").as_deref(), Some("Forest Friends"));
    assert_eq!(info_string(&doc, "Author").as_deref(), Some("Ada Inkwell"));
    assert_eq!(info_string(&doc, "Creator").as_deref(), Some("inkflow"));
}

#[tokio::test]
async fn a_failed_item_gets_a_placeholder_page_saying_which_prompt_and_why() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let book = sink(dir.path(), json!({ "creator": "my press" }));
    let listed = [item(0, 1, "owl"), item(1, 2, "badger"), item(2, 3, "hedgehog"), item(3, 4, "otter")];
    if let Err(e) = book.begin(&mut listed.iter().cloned()).await {
        panic!("begin: {e}");
    }
    write(&book, &listed[2], ready(bilevel(64, 64, 300.0, pattern(2)))).await;
    write(&book, &listed[1], failed("the model timed out")).await;
    let filtered = vec![State::Filtered { stage: "safety".into(), reason: "unsafe prompt".into() }];
    write(&book, &listed[0], filtered).await;
    // listed[3] never arrives, as when the batch is stopped.
    finish(&book).await;

    let doc = load(&dir.path().join("book.pdf"));
    let pages = pages(&doc);
    assert_eq!(pages.len(), 4);
    let owl = text(&doc, 1);
    assert!(owl.contains("owl") && owl.contains("safety") && owl.contains("unsafe prompt"), "{owl:?}");
    let badger = text(&doc, 2);
    assert!(badger.contains("This page is missing"), "{badger:?}");
    assert!(badger.contains("badger") && badger.contains("animals-00002"), "{badger:?}");
    assert!(badger.contains("generate") && badger.contains("the model timed out"), "{badger:?}");
    assert!(page_image(&doc, pages[0]).is_none() && page_image(&doc, pages[1]).is_none());
    assert!(page_image(&doc, pages[2]).is_some());
    let otter = text(&doc, 4);
    assert!(otter.contains("otter") && otter.contains("not written in this run"), "{otter:?}");
    assert_eq!(info_string(&doc, "Creator").as_deref(), Some("my press"));
}

#[tokio::test]
async fn on_missing_skip_leaves_the_page_out() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let book = sink(dir.path(), json!({ "on_missing": "skip" }));
    write(&book, &item(0, 1, "owl"), failed("boom")).await;
    write(&book, &item(1, 2, "fox"), ready(bilevel(64, 64, 300.0, pattern(0)))).await;
    finish(&book).await;
    let doc = load(&dir.path().join("book.pdf"));
    let pages = pages(&doc);
    assert_eq!(pages.len(), 1);
    assert!(page_image(&doc, pages[0]).is_some());
}

#[tokio::test]
async fn on_missing_fail_names_the_missing_items_and_writes_no_book() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let book = sink(dir.path(), json!({ "on_missing": "fail" }));
    write(&book, &item(0, 1, "fox"), ready(bilevel(64, 64, 300.0, pattern(0)))).await;
    write(&book, &item(1, 7, "owl"), failed("the model timed out")).await;
    let Err(error) = book.finish(&Summary::default()).await else {
        panic!("finish succeeded with a missing page")
    };
    let message = format!("{error:#}");
    assert!(message.contains("animals-00007") && message.contains("the model timed out"), "{message}");
    assert!(message.contains("book.pdf"), "{message}");
    assert!(!dir.path().join("book.pdf").exists());
    assert!(!dir.path().join("book.pdf.partial").exists());
}

#[tokio::test]
async fn a_book_never_finished_leaves_nothing_at_the_final_path() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let book = sink(dir.path(), json!({}));
    write(&book, &item(0, 1, "fox"), ready(bilevel(64, 64, 300.0, pattern(0)))).await;
    let partial = dir.path().join("book.pdf.partial");
    assert!(partial.exists(), "pages go to the partial file as they arrive");
    assert!(!dir.path().join("book.pdf").exists());
    drop(book);
    assert!(!dir.path().join("book.pdf").exists());
    assert!(!partial.exists(), "the partial book is removed when the sink goes away unfinished");
}

#[tokio::test]
async fn gray_and_rgb_pages_are_lossless_flate_images() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let book = sink(dir.path(), json!({ "margin": 0 }));
    let (w, h) = (67u32, 45u32);
    let gray: Vec<u8> = (0..w * h).map(|i| (i * 7 % 256) as u8).collect();
    let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 13 % 251) as u8).collect();
    let gray_raster = Raster::new(w, h, None, Pixels::Gray(gray.clone()));
    let rgb_raster = Raster::new(w, h, Some(72.0), Pixels::Rgb(rgb.clone()));
    write(&book, &item(0, 1, "gray"), ready(gray_raster)).await;
    write(&book, &item(1, 2, "rgb"), ready(rgb_raster)).await;
    finish(&book).await;

    let doc = load(&dir.path().join("book.pdf"));
    let pages = pages(&doc);
    for (page, samples, space) in [(pages[0], &gray, "DeviceGray"), (pages[1], &rgb, "DeviceRGB")] {
        let images = doc.get_page_images(page).unwrap_or_default();
        let image = &images[0];
        assert_eq!(name(image.origin_dict, "Filter"), "FlateDecode");
        assert_eq!(name(image.origin_dict, "ColorSpace"), space);
        assert_eq!(int(image.origin_dict, "BitsPerComponent"), 8);
        let stream = doc.get_object(image.id).and_then(Object::as_stream).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stream.decompressed_content().ok().as_ref(), Some(samples));
    }
    // No DPI: fitted to the page (width binds); 72 DPI: natural size, centred.
    let fitted = image_matrix(&doc, pages[0]);
    assert!((fitted[0] - 612.0).abs() < 0.01 && (fitted[3] - 612.0 * 45.0 / 67.0).abs() < 0.01, "{fitted:?}");
    let natural = image_matrix(&doc, pages[1]);
    assert!((natural[0] - 67.0).abs() < 0.01 && (natural[3] - 45.0).abs() < 0.01, "{natural:?}");
}

/// A small book of full-size line-art pages, with a title, page numbers and a placeholder; kept
/// as the sample `.ci/check-pdf.sh` is tried on (copied to `$INKFLOW_PDF_OUT` when set).
#[tokio::test]
async fn sample_book_of_line_art_is_small() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let book = sink(dir.path(), json!({ "title": "inkflow sample", "page_numbers": true }));
    let page = bilevel(2550, 3300, 300.0, line_art);
    for number in [3, 1, 2] {
        write(&book, &item(u64::from(number), number, "circles"), ready(page.clone())).await;
    }
    write(&book, &item(4, 4, "owl"), failed("the model timed out")).await;
    finish(&book).await;

    let path = dir.path().join("book.pdf");
    let doc = load(&path);
    let pages = pages(&doc);
    assert_eq!(pages.len(), 5);
    assert_g4_page(&doc, pages[1], &page);
    assert_eq!(media_box(&doc, pages[1]), [0.0, 0.0, 612.0, 792.0]);
    // KDP's margins by default: page 2 is a left-hand page, so the 0.375 in gutter is on its
    // right and 0.25 in elsewhere, less 18 pt at the bottom for the page number. The width binds:
    // 567 pt for 2550 px is 324 DPI, over KDP's 300.
    let (h, band) = (567.0 * 3300.0 / 2550.0, 774.0 - 36.0);
    let expected = [567.0, 0.0, 0.0, h, 18.0, 36.0 + (band - h) / 2.0];
    let m = image_matrix(&doc, pages[1]);
    assert!(m.iter().zip(expected).all(|(a, b)| (a - b).abs() < 0.01) && m.len() == 6, "{m:?}");

    let (_, data) = page_image(&doc, pages[1]).unwrap_or_else(|| panic!("no image"));
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(u64::MAX);
    eprintln!("a 2550x3300 line-art page: {} bytes of Group 4; the 5-page book: {size} bytes", data.len());
    // Uncompressed it would be 1,051,875 bytes; Flate about three times Group 4.
    assert!(data.len() < 40_000, "{} bytes for one page", data.len());
    assert!(size < 150_000, "{size} bytes for the book");

    if let Some(out) = std::env::var_os("INKFLOW_PDF_OUT")
        && let Err(e) = std::fs::copy(&path, &out)
    {
        panic!("copying the sample book to {}: {e}", PathBuf::from(out).display());
    }
}

/// Streaming: right after each write, the page's whole compressed image is already in the partial
/// file and nothing more than its object wrapper was added, so the sink holds no image data between
/// writes; the page records alone decide the order at the end.
#[tokio::test]
async fn two_hundred_pages_stream_to_disk_as_they_arrive() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let book = sink(dir.path(), json!({ "page_numbers": true }));
    let partial = dir.path().join("book.pdf.partial");
    let count = 200u32;
    // Arrival order is a fixed shuffle of the page numbers.
    let arrivals: Vec<u32> = (0..count).map(|i| (i * 73) % count + 1).collect();
    let mut growth = Vec::new();
    let mut previous = 0;
    for &number in &arrivals {
        // Width 300 + number identifies the page.
        let raster = bilevel(300 + number, 388, 100.0, pattern(number));
        write(&book, &item(u64::from(number), number, "page"), ready(raster)).await;
        let size = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        growth.push((number, size.saturating_sub(previous)));
        previous = size;
    }
    finish(&book).await;

    let doc = load(&dir.path().join("book.pdf"));
    let pages = pages(&doc);
    assert_eq!(pages.len(), count as usize);
    for (index, page) in pages.iter().enumerate() {
        let (dict, data) = page_image(&doc, *page).unwrap_or_else(|| panic!("page {index} has no image"));
        let number = int(&dict, "Width") - 300;
        assert_eq!(number, index as i64 + 1, "page {index} is out of order");
        let grew = growth.iter().find(|(n, _)| i64::from(*n) == number).map(|(_, g)| *g).unwrap_or(0);
        let stream = data.len() as u64;
        assert!(
            grew >= stream && grew <= stream + 512,
            "page {number}: {stream} bytes of image, file grew {grew}"
        );
    }
}

#[tokio::test]
async fn text_is_set_in_an_embedded_subset_font_in_any_script_it_covers() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The bundled font named as a file, as a pipeline names its own.
    let title = "Лесные друзья – Δάσος";
    let book = sink(
        dir.path(),
        json!({ "title": title, "author": "Zoë", "page_numbers": true, "font": "fonts/LiberationSans-Regular.ttf" }),
    );
    write(&book, &item(0, 1, "fox"), ready(bilevel(64, 64, 300.0, pattern(1)))).await;
    finish(&book).await;

    let doc = load(&dir.path().join("book.pdf"));
    let pages = pages(&doc);
    for page in &pages {
        let fonts = embedded_fonts(&doc, *page);
        assert_eq!(fonts.len(), 1, "{fonts:?}");
        let (name, embedded) = &fonts[0];
        // A subset's name carries a six-capital tag: what `pdffonts` reports as sub=yes.
        let (tag, family) = name.split_once('+').unwrap_or_default();
        assert!(tag.len() == 6 && tag.chars().all(|c| c.is_ascii_uppercase()), "{name}");
        assert_eq!(family, "LiberationSans");
        assert!(embedded, "{name} has no font file");
    }
    // Copied back out through the ToUnicode map, so the Cyrillic and Greek really were set.
    let text = text(&doc, 1);
    assert!(text.contains("Лесные") && text.contains("Δάσος") && text.contains("Zoë"), "{text:?}");
    // A subset of the few glyphs used, not the 400 KB font.
    let size = std::fs::metadata(dir.path().join("book.pdf")).map(|m| m.len()).unwrap_or(0);
    assert!(size < 60_000, "{size} bytes");
}

#[test]
fn a_font_that_cannot_be_read_fails_the_build_naming_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let error =
        match PdfBook.build(&json!({ "font": "fonts/no-such-font.ttf" }), &context(dir.path(), "book")) {
            Ok(_) => panic!("a missing font was accepted"),
            Err(e) => format!("{e:#}"),
        };
    assert!(error.contains("font") && error.contains("fonts/no-such-font.ttf"), "{error}");
}

fn boxes(doc: &Document, page: ObjectId) -> [Vec<f32>; 3] {
    let dict = doc.get_dictionary(page).unwrap_or_else(|e| panic!("{e}"));
    let get = |key: &[u8]| numbers(dict.get(key).unwrap_or(&Object::Null));
    [get(b"MediaBox"), get(b"TrimBox"), get(b"BleedBox")]
}

#[tokio::test]
async fn a_print_layout_has_front_matter_blank_backs_padding_and_page_boxes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let options = json!({
        "trim": "8.5x8.5", "bleed": true, "sides": "single", "pad": true, "page_numbers": true,
        "title": "Sea Life", "subtitle": "A coloring book", "author": "Ada Inkwell",
        "copyright": "Copyright 2026 Ada Inkwell\nAll rights reserved.", "belongs_to": "This book belongs to",
    });
    let book = sink(dir.path(), options);
    for number in 1..=5 {
        write(
            &book,
            &item(u64::from(number), number, "fish"),
            ready(bilevel(64, 64, 300.0, pattern(number))),
        )
        .await;
    }
    finish(&book).await;

    let doc = load(&dir.path().join("book.pdf"));
    let pages = pages(&doc);
    // 3 front pages and 5 art pages, each with a blank back: 16, padded to KDP's 24 (9 blank
    // pages at the end: KDP allows 10).
    assert_eq!(pages.len(), 24);
    let texts: Vec<String> = (1..=24).map(|n| text(&doc, n)).collect();
    assert!(
        texts[0].contains("Sea Life")
            && texts[0].contains("A coloring book")
            && texts[0].contains("Ada Inkwell")
    );
    assert!(texts[2].contains("All rights reserved."), "{:?}", texts[2]);
    assert!(texts[4].contains("This book belongs to"), "{:?}", texts[4]);
    for (index, page) in pages.iter().enumerate() {
        let has_image = page_image(&doc, *page).is_some();
        let art = (6..16).contains(&index) && index % 2 == 0;
        assert_eq!(has_image, art, "page {}", index + 1);
        if index % 2 == 1 || index >= 16 {
            assert!(texts[index].trim().is_empty(), "page {} is a blank back: {:?}", index + 1, texts[index]);
        }
        // Bleed: 0.125 in on the outside edge (right on right-hand pages), top and bottom.
        let trim_x = if index % 2 == 0 { 0.0 } else { 9.0 };
        let [media, trim, bleed] = boxes(&doc, *page);
        assert_eq!(media, [0.0, 0.0, 621.0, 630.0], "page {}", index + 1);
        assert_eq!(trim, [trim_x, 9.0, trim_x + 612.0, 621.0], "page {}", index + 1);
        assert_eq!(bleed, media, "page {}", index + 1);
    }
    // Art pages are numbered 1..5, under the art.
    assert_eq!(texts[6].trim(), "1");
    assert_eq!(texts[12].trim(), "4");
    // The sink's own preflight passes it, and says so for the run's summary.
    let note = book.note().unwrap_or_default();
    assert!(note.contains("KDP preflight") && note.contains("all 12 rules pass"), "{note}");
}

#[tokio::test]
async fn the_preflight_verdict_names_what_fails() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let book = sink(dir.path(), json!({ "margin": 0 }));
    write(&book, &item(0, 1, "edge to edge"), ready(bilevel(2550, 3300, 300.0, |x, _| x < 4))).await;
    finish(&book).await;
    let note = book.note().unwrap_or_default();
    assert!(note.contains("2 of 12 rules fail (page count, ink inside the margins)"), "{note}");
}

#[tokio::test]
async fn the_cover_is_sized_from_the_finished_interior_and_shows_the_chosen_page() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let interior = sink(dir.path(), json!({ "path": "interior.pdf", "sides": "single", "pad": true }));
    let options = json!({ "interior": "interior.pdf", "paper": "cream", "art_page": 2, "title": "Owls" });
    let cover = match inkflow::stages::pdf::cover::Cover.build(&options, &context(dir.path(), "cover")) {
        Ok(Component::Sink(sink)) => sink,
        _ => panic!("cover did not build as a sink"),
    };
    // Listed out of book order: page 2 is the one with seq 0.
    let listed = [item(0, 2, "owl"), item(1, 1, "fox"), item(2, 3, "bat")];
    for sink in [&interior, &cover] {
        if let Err(e) = sink.begin(&mut listed.iter().cloned()).await {
            panic!("begin: {e}");
        }
    }
    assert!(
        !cover.is_complete(&listed[0], None) && cover.is_complete(&listed[1], None),
        "only page 2 matters to the cover"
    );
    for (n, listed) in listed.iter().enumerate() {
        let page = bilevel(600, 600, 300.0, pattern(n as u32));
        write(&interior, listed, ready(page.clone())).await;
        write(&cover, listed, ready(page)).await;
    }
    assert!(cover.is_complete(&listed[0], None), "the art page is kept for a resumed run");
    finish(&interior).await;
    finish(&cover).await;

    let doc = load(&dir.path().join("cover.pdf"));
    let page = pages(&doc)[0];
    // 3 pages, single-sided, padded: 24 pages on cream, a 0.06 in spine.
    let width = 0.125 + 8.5 + 24.0 * 0.0025 + 8.5 + 0.125;
    let [media, trim, _] = boxes(&doc, page);
    assert!((media[2] - width * 72.0).abs() < 0.01 && (media[3] - 810.0).abs() < 0.01, "{media:?}");
    assert!((trim[0] - 9.0).abs() < 0.01 && (trim[3] - 801.0).abs() < 0.01, "{trim:?}");
    let (_, data) = page_image(&doc, page).unwrap_or_else(|| panic!("no art"));
    let decoded = decode_g4(&data, 600, 600);
    let owl = pattern(0);
    let same = decoded
        .iter()
        .enumerate()
        .all(|(y, row)| row.iter().enumerate().all(|(x, &b)| b == owl(x as u32, y as u32)));
    assert!(same, "the front art is page 2 (seq 0)");
    assert!(text(&doc, 1).contains("Owls"));
    let note = cover.note().unwrap_or_default();
    assert!(note.contains("cover for 24 pages") && note.contains("all 11 rules pass"), "{note}");
}

/// The cover prompt's image is the front art unless `art_page` names a page, and it is never a
/// page of the interior.
#[tokio::test]
async fn a_cover_prompt_is_the_front_art_and_not_a_page_of_the_interior() {
    for (art_page, art_seed) in [(None, 9), (Some(2), 1)] {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let interior = sink(dir.path(), json!({ "path": "interior.pdf" }));
        let mut options = json!({ "interior": "interior.pdf", "title": "Owls" });
        if let Some(page) = art_page {
            options["art_page"] = page.into();
        }
        let cover = match inkflow::stages::pdf::cover::Cover.build(&options, &context(dir.path(), "cover")) {
            Ok(Component::Sink(sink)) => sink,
            _ => panic!("cover did not build as a sink"),
        };
        let mut cover_item = item(3, 0, "cover");
        cover_item.prompt.extra.insert(Prompt::COVER_FIELD.into(), Value::Bool(true));
        let listed = [item(0, 1, "owl"), item(1, 2, "fox"), item(2, 3, "bat"), cover_item];
        for sink in [&interior, &cover] {
            if let Err(e) = sink.begin(&mut listed.iter().cloned()).await {
                panic!("begin: {e}");
            }
        }
        assert!(interior.is_complete(&listed[3], None), "the book never waits for the cover's art");
        let seeds = [0, 1, 2, 9];
        for (listed, seed) in listed.iter().zip(seeds) {
            let page = bilevel(600, 600, 300.0, pattern(seed));
            write(&interior, listed, ready(page.clone())).await;
            write(&cover, listed, ready(page)).await;
        }
        finish(&interior).await;
        finish(&cover).await;

        let book = load(&dir.path().join("interior.pdf"));
        let book_pages = pages(&book);
        assert_eq!(book_pages.len(), 3, "{art_page:?}: three pages, no cover among them");
        let cover_doc = load(&dir.path().join("cover.pdf"));
        let (_, data) = page_image(&cover_doc, pages(&cover_doc)[0]).unwrap_or_else(|| panic!("no art"));
        let expected = pattern(art_seed);
        let decoded = decode_g4(&data, 600, 600);
        let same = decoded
            .iter()
            .enumerate()
            .all(|(y, row)| row.iter().enumerate().all(|(x, &b)| b == expected(x as u32, y as u32)));
        assert!(same, "{art_page:?}: the front art is the image of seed {art_seed}");
    }
}

/// An item a `lineart-check` judged.
fn judged(seq: u64, number: u32, description: &str, verdict: &str) -> Item {
    let mut item = item(seq, number, description);
    item.record("quality", json!({ "verdict": verdict, "problems": ["gray_shading", "heavy_ink"] }));
    item
}

#[tokio::test]
async fn rejected_pages_are_included_replaced_or_skipped() {
    for (rejected, pages_left) in [(None, 3), (Some("placeholder"), 3), (Some("skip"), 2)] {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let options = rejected
            .map_or(json!({ "on_missing": "fail" }), |r| json!({ "rejected": r, "on_missing": "fail" }));
        let book = sink(dir.path(), options);
        write(&book, &judged(0, 1, "fox", "pass"), ready(bilevel(64, 64, 300.0, pattern(0)))).await;
        write(&book, &judged(1, 2, "owl", "reject"), ready(bilevel(64, 64, 300.0, pattern(1)))).await;
        write(&book, &judged(2, 3, "elk", "warn"), ready(bilevel(64, 64, 300.0, pattern(2)))).await;
        finish(&book).await;
        let doc = load(&dir.path().join("book.pdf"));
        let pages = pages(&doc);
        assert_eq!(pages.len(), pages_left, "{rejected:?}: a rejected page is not a missing one");
        let images = pages.iter().filter(|&&p| page_image(&doc, p).is_some()).count();
        match rejected {
            None => assert_eq!(images, 3),
            Some("placeholder") => {
                assert_eq!(images, 2);
                let owl = text(&doc, 2);
                assert!(owl.contains("owl") && owl.contains("gray_shading, heavy_ink"), "{owl:?}");
            }
            _ => assert_eq!(images, 2),
        }
    }
}
