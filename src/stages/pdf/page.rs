//! One page's content stream: image placement, title and placeholder text, the text helpers.

use super::*;
use std::io;

use pdf_writer::{Chunk, Content, Finish, Name, Rect, Ref};

use crate::print::font::{FONT_NAME, FontUse};

/// The resource name of a page's image.
pub(super) const IMAGE_NAME: &[u8] = b"Im";
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

pub(super) fn title_page(fonts: &mut FontUse, title: &str, author: Option<&str>, page: PageSize) -> Vec<u8> {
    const TITLE_SIZE: f32 = 32.0;
    const AUTHOR_SIZE: f32 = 16.0;
    let mut content = Content::new();
    let max_width = page.width - 2.0 * 72.0;
    let mut y = page.height * 0.62;
    for line in fonts.font().wrap(title, TITLE_SIZE, max_width) {
        let x = (page.width - fonts.font().width(&line, TITLE_SIZE)) / 2.0;
        fonts.show(&mut content, &line, TITLE_SIZE, x, y);
        y -= TITLE_SIZE * 1.25;
    }
    if let Some(author) = author {
        y -= AUTHOR_SIZE;
        for line in fonts.font().wrap(author, AUTHOR_SIZE, max_width) {
            let x = (page.width - fonts.font().width(&line, AUTHOR_SIZE)) / 2.0;
            fonts.show(&mut content, &line, AUTHOR_SIZE, x, y);
            y -= AUTHOR_SIZE * 1.25;
        }
    }
    content.finish().into_vec()
}

/// The text of a placeholder page: which prompt is missing and why, cut off at the page's end.
pub(super) fn placeholder_text(
    fonts: &mut FontUse,
    content: &mut Content,
    info: &PageInfo,
    reason: &str,
    settings: &Settings,
) {
    const HEADING_SIZE: f32 = 24.0;
    const BODY_SIZE: f32 = 12.0;
    let page = settings.page;
    let left = settings.margin.max(54.0);
    let max_width = page.width - 2.0 * left;
    let bottom = settings.margin.max(54.0);
    let mut y = page.height - left - HEADING_SIZE;
    fonts.show(content, "This page is missing", HEADING_SIZE, left, y);
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
        for line in fonts.font().wrap(paragraph, BODY_SIZE, max_width) {
            if y < bottom {
                return;
            }
            fonts.show(content, &line, BODY_SIZE, left, y);
            y -= BODY_SIZE * 1.3;
        }
        y -= BODY_SIZE * 0.7;
    }
}
