//! One page of the book: its page object with the print boxes, and the content of its kinds
//! (art, front matter, placeholder text, the page number).

use super::*;
use std::io;

use pdf_writer::{Chunk, Content, Finish, Name, Ref};

use crate::print::font::FontUse;

/// The resource name of a page's image.
pub(super) const IMAGE_NAME: &[u8] = b"Im";
pub(super) const PAGE_NUMBER_SIZE: f32 = 9.0;

/// What a page object refers to besides its content.
#[derive(Clone, Copy)]
pub(super) struct PageRefs {
    pub(super) tree: Ref,
    /// The document's font dictionary (see [`FontUse::write`]).
    pub(super) font: Option<Ref>,
    pub(super) image: Option<Ref>,
}

/// Writes the content stream and the page, with MediaBox, TrimBox and BleedBox (the bleed box is
/// the whole page: it is the trim box when the book has no bleed).
pub(super) fn write_page(
    file: &mut ObjectFile,
    refs: PageRefs,
    content: &[u8],
    frame: &Frame,
) -> io::Result<Ref> {
    let content_id = file.alloc();
    let mut chunk = Chunk::new();
    chunk.stream(content_id, content);
    file.write(&chunk)?;

    let page_id = file.alloc();
    let mut chunk = Chunk::new();
    let mut page = chunk.page(page_id);
    page.parent(refs.tree)
        .media_box(frame.media.rect())
        .trim_box(frame.trim.rect())
        .bleed_box(frame.media.rect())
        .contents(content_id);
    let mut resources = page.resources();
    if let Some(image) = refs.image {
        resources.x_objects().pair(Name(IMAGE_NAME), image);
    }
    if let Some(font) = refs.font {
        resources.pair(Name(b"Font"), font);
    }
    resources.finish();
    page.finish();
    file.write(&chunk)?;
    Ok(page_id)
}

/// Draws the page's image at `[x, y, width, height]`.
pub(super) fn draw_image(content: &mut Content, [x, y, w, h]: [f32; 4]) {
    content.save_state();
    content.transform([w, 0.0, 0.0, h, x, y]);
    content.x_object(Name(IMAGE_NAME));
    content.restore_state();
}

/// Lines centred in `area`'s width, from the baseline `y` down; returns the y below them.
fn centred(fonts: &mut FontUse, content: &mut Content, text: &str, size: f32, area: Area, y: f32) -> f32 {
    fonts.centred(content, text, size, area.x0, area.width(), y)
}

/// The front matter pages' text, all inside the safe area.
pub(super) struct FrontText<'a> {
    pub(super) title: Option<&'a str>,
    pub(super) subtitle: Option<&'a str>,
    pub(super) author: Option<&'a str>,
    pub(super) copyright: Option<&'a str>,
    pub(super) belongs_to: Option<&'a str>,
}

impl FrontText<'_> {
    /// The front matter pages this text makes, in print order.
    pub(super) fn pages(&self) -> Vec<Front> {
        [
            (self.title.is_some(), Front::Title),
            (self.copyright.is_some(), Front::Copyright),
            (self.belongs_to.is_some(), Front::BelongsTo),
        ]
        .into_iter()
        .filter_map(|(present, page)| present.then_some(page))
        .collect()
    }

    pub(super) fn content(&self, page: Front, fonts: &mut FontUse, safe: Area) -> Vec<u8> {
        let mut content = Content::new();
        match page {
            Front::Title => {
                let mut y = safe.y0 + safe.height() * 0.62;
                y = centred(fonts, &mut content, self.title.unwrap_or_default(), 32.0, safe, y);
                if let Some(subtitle) = self.subtitle {
                    y = centred(fonts, &mut content, subtitle, 20.0, safe, y - 4.0);
                }
                if let Some(author) = self.author {
                    centred(fonts, &mut content, author, 16.0, safe, y - 16.0);
                }
            }
            Front::Copyright => {
                // At the foot of the page, as books print it.
                const SIZE: f32 = 10.0;
                let text = self.copyright.unwrap_or_default();
                let lines: Vec<String> = text
                    .lines()
                    .flat_map(|paragraph| fonts.fonts().wrap(paragraph, SIZE, safe.width()))
                    .collect();
                let mut y = safe.y0 + SIZE * 1.4 * lines.len() as f32;
                for line in lines {
                    fonts.show(&mut content, &line, SIZE, safe.x0, y);
                    y -= SIZE * 1.4;
                }
            }
            Front::BelongsTo => {
                let y = safe.y0 + safe.height() * 0.6;
                let y = centred(fonts, &mut content, self.belongs_to.unwrap_or_default(), 28.0, safe, y);
                // The line to write the name on.
                let inset = safe.width() * 0.15;
                content.set_line_width(1.0);
                content.move_to(safe.x0 + inset, y - 48.0);
                content.line_to(safe.x1 - inset, y - 48.0);
                content.stroke();
            }
        }
        content.finish().into_vec()
    }
}

/// The page number, centred at the bottom of the safe area (in the band the art leaves free).
pub(super) fn page_number(fonts: &mut FontUse, content: &mut Content, number: usize, safe: Area) {
    let label = number.to_string();
    let x = safe.x0 + (safe.width() - fonts.fonts().width(&label, PAGE_NUMBER_SIZE)) / 2.0;
    fonts.show(content, &label, PAGE_NUMBER_SIZE, x, safe.y0 + 0.3 * PAGE_NUMBER_SIZE);
}

/// The text of a placeholder page: which prompt is missing and why, cut off at the page's end.
pub(super) fn placeholder_text(
    fonts: &mut FontUse,
    content: &mut Content,
    info: &PageInfo,
    reason: &str,
    area: Area,
) {
    const HEADING_SIZE: f32 = 24.0;
    const BODY_SIZE: f32 = 12.0;
    let mut y = area.y1 - HEADING_SIZE;
    fonts.show(content, "This page is missing", HEADING_SIZE, area.x0, y);
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
        for line in fonts.fonts().wrap(paragraph, BODY_SIZE, area.width()) {
            if y < area.y0 {
                return;
            }
            fonts.show(content, &line, BODY_SIZE, area.x0, y);
            y -= BODY_SIZE * 1.3;
        }
        y -= BODY_SIZE * 0.7;
    }
}
