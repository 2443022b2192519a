//! One page's content stream: image placement, title and placeholder text, the text helpers.

use super::*;
use std::io;

use pdf_writer::{Chunk, Content, Finish, Name, Rect, Ref, Str};

/// The resource name of a page's image.
pub(super) const IMAGE_NAME: &[u8] = b"Im";
/// The resource name of the one font, standard Helvetica (every viewer has it; nothing embedded).
pub(super) const FONT_NAME: &[u8] = b"F1";
pub(super) const PAGE_NUMBER_SIZE: f32 = 9.0;

pub(super) fn write_page(
    file: &mut ObjectFile,
    tree: Ref,
    font: Ref,
    image: Option<Ref>,
    content: &[u8],
    size: PageSize,
) -> io::Result<Ref> {
    let content_id = file.alloc();
    let mut chunk = Chunk::new();
    chunk.stream(content_id, content);
    file.write(&chunk)?;

    let page_id = file.alloc();
    let mut chunk = Chunk::new();
    let mut page = chunk.page(page_id);
    page.parent(tree).media_box(Rect::new(0.0, 0.0, size.width, size.height)).contents(content_id);
    let mut resources = page.resources();
    if let Some(image) = image {
        resources.x_objects().pair(Name(IMAGE_NAME), image);
    }
    resources.fonts().pair(Name(FONT_NAME), font);
    resources.finish();
    page.finish();
    file.write(&chunk)?;
    Ok(page_id)
}

/// Where an image goes on the page: `[x, y, width, height]` in points. With no margin an image
/// with a DPI keeps its printed size (2550x3300 px at 300 DPI fills a letter page exactly), shrunk
/// only if it would be cut off; otherwise it is scaled to fit inside the margins. Always centred.
pub(super) fn place_image(
    page: PageSize,
    margin: f32,
    width: u32,
    height: u32,
    dpi: Option<f32>,
) -> [f32; 4] {
    let (width, height) = (width as f32, height as f32);
    let natural = dpi.filter(|d| d.is_finite() && *d > 0.0).map(|d| (width * 72.0 / d, height * 72.0 / d));
    let (box_w, box_h) = (page.width - 2.0 * margin, page.height - 2.0 * margin);
    let (w, h) = match natural {
        // A hundredth of a point of slack absorbs float rounding of an exact fit.
        Some((w, h)) if margin == 0.0 && w <= page.width + 0.01 && h <= page.height + 0.01 => (w, h),
        _ => {
            let scale = (box_w / width).min(box_h / height);
            (width * scale, height * scale)
        }
    };
    [(page.width - w) / 2.0, (page.height - h) / 2.0, w, h]
}

pub(super) fn title_page(title: &str, author: Option<&str>, page: PageSize) -> Vec<u8> {
    const TITLE_SIZE: f32 = 32.0;
    const AUTHOR_SIZE: f32 = 16.0;
    let mut content = Content::new();
    let max_width = page.width - 2.0 * 72.0;
    let mut y = page.height * 0.62;
    for line in wrap(title, TITLE_SIZE, max_width) {
        show(&mut content, &line, TITLE_SIZE, (page.width - text_width(&line, TITLE_SIZE)) / 2.0, y);
        y -= TITLE_SIZE * 1.25;
    }
    if let Some(author) = author {
        y -= AUTHOR_SIZE;
        for line in wrap(author, AUTHOR_SIZE, max_width) {
            show(&mut content, &line, AUTHOR_SIZE, (page.width - text_width(&line, AUTHOR_SIZE)) / 2.0, y);
            y -= AUTHOR_SIZE * 1.25;
        }
    }
    content.finish().into_vec()
}

/// The text of a placeholder page: which prompt is missing and why, cut off at the page's end.
pub(super) fn placeholder_text(content: &mut Content, info: &PageInfo, reason: &str, settings: &Settings) {
    const HEADING_SIZE: f32 = 24.0;
    const BODY_SIZE: f32 = 12.0;
    let page = settings.page;
    let left = settings.margin.max(54.0);
    let max_width = page.width - 2.0 * left;
    let bottom = settings.margin.max(54.0);
    let mut y = page.height - left - HEADING_SIZE;
    show(content, "This page is missing", HEADING_SIZE, left, y);
    y -= HEADING_SIZE;

    let heading = match (info.section.as_str(), info.description.as_str()) {
        ("", "") => format!("Page {}", info.number),
        ("", description) => format!("Page {}: {description}", info.number),
        (section, description) => format!("{section}, page {}: {description}", info.number),
    };
    let paragraphs = [
        heading,
        format!("Item: {}", info.key),
        format!("Prompt: {}", info.prompt),
        format!("Why: {reason}"),
    ];
    for paragraph in &paragraphs {
        for line in wrap(paragraph, BODY_SIZE, max_width) {
            if y < bottom {
                return;
            }
            show(content, &line, BODY_SIZE, left, y);
            y -= BODY_SIZE * 1.3;
        }
        y -= BODY_SIZE * 0.7;
    }
}

pub(super) fn show(content: &mut Content, text: &str, size: f32, x: f32, y: f32) {
    content.begin_text();
    content.set_font(Name(FONT_NAME), size);
    content.next_line(x, y);
    content.show(Str(&win_ansi(text)));
    content.end_text();
}

/// Greedy word wrap; a word wider than the line is broken between characters.
pub(super) fn wrap(text: &str, size: f32, max_width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let candidate = if line.is_empty() { word.to_owned() } else { format!("{line} {word}") };
        if text_width(&candidate, size) <= max_width {
            line = candidate;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        for c in word.chars() {
            line.push(c);
            if text_width(&line, size) > max_width && line.chars().count() > 1 {
                line.pop();
                lines.push(std::mem::replace(&mut line, c.to_string()));
            }
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Text in the font's WinAnsi encoding: Latin-1 plus the typographic quotes and dashes that prompt
/// writers use; anything else becomes `?` (the standard fonts have no other glyphs).
pub(super) fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c {
            ' '..='~' | '\u{a0}'..='\u{ff}' => c as u8,
            '\u{2018}' => 0x91,
            '\u{2019}' => 0x92,
            '\u{201c}' => 0x93,
            '\u{201d}' => 0x94,
            '\u{2022}' => 0x95,
            '\u{2013}' => 0x96,
            '\u{2014}' => 0x97,
            '\u{2026}' => 0x85,
            _ => b'?',
        })
        .collect()
}

/// Helvetica advance widths of the printable ASCII characters, in 1/1000 em (Adobe's AFM).
pub(super) const HELVETICA_ASCII: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, // space to /
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, // 0 to ?
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, // @ to O
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, // P to _
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, // ` to o
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, // p to ~
];

/// The printed width of `text` in points; accented letters are taken as 556 (most are 556 to 722).
pub(super) fn text_width(text: &str, size: f32) -> f32 {
    let units: u32 = win_ansi(text)
        .iter()
        .map(|&b| match b {
            0x20..=0x7e => u32::from(HELVETICA_ASCII[usize::from(b - 0x20)]),
            0x91 | 0x92 => 222,
            0x93 | 0x94 => 333,
            0x95 => 350,
            0x85 | 0x97 => 1000,
            _ => 556,
        })
        .sum();
    units as f32 * size / 1000.0
}
