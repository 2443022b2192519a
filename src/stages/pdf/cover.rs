//! The `cover` sink: a paperback cover for KDP, back, spine and front on one page with 0.125 in
//! bleed all round, sized from the interior the `pdf` sink wrote (its page count and trim, read
//! back from the file) and the paper. The front art is the image of the batch's cover prompt
//! (drawn like any page, left out of the interior) or one of the book's pages.
//!
//! Sinks finish in pipeline order, so the cover, listed after the book, finds it written.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{Area, Arrival, ImageStream, PageInfo, PageStore, arrival, book_order, place_image};
use crate::engine::atomic_file::write_atomically;
use crate::engine::cpu;
use crate::engine::declared_kind::TypedKind;
use crate::engine::item::{Item, State};
use crate::engine::media::Media;
use crate::engine::options::parse_declared;
use crate::engine::output_path::{CACHE_DIR, Claim, OutputPath};
use crate::engine::pipeline_path::PipelinePath;
use crate::engine::stage::{
    BuildContext, Component, OptionsError, OutputMedia, Receipt, Role, Sink, StageError,
};
use crate::engine::summary::Summary;
use crate::print::font::{Font, FontUse};
use crate::print::preflight::{CoverGeometry, check_cover, page_count, trim_of};
use crate::print::{BLEED_IN, PT_PER_IN, Paper, SPINE_CLEARANCE_IN, SPINE_TEXT_MIN_PAGES, Trim};

/// The `cover` sink kind.
pub struct Cover;

/// The `cover` options, as written in the pipeline file: the declaration `inkflow stages cover`
/// documents.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The cover PDF, relative to the output dir.
    #[serde(default = "default_path")]
    path: OutputPath,
    /// The interior a pdf sink listed before this one writes: its page count and trim size
    /// the cover.
    #[serde(default = "default_interior")]
    interior: OutputPath,
    /// Sets the spine: 0.002252 in per page on white, 0.0025 in on cream.
    #[serde(default)]
    paper: Paper,
    /// Which of the book's pages (in book order, from 1) is the front art. When not given:
    /// the image of the batch's cover prompt (a prompts source's cover_prompt, or an entry
    /// with "cover": true) when there is one, else page 1.
    #[serde(default)]
    #[schemars(range(min = 1))]
    art_page: Option<usize>,
    /// On the front, and on the spine from 79 pages.
    title: String,
    /// On the front, under the title.
    #[serde(default)]
    subtitle: Option<String>,
    /// At the foot of the front, and on the spine.
    #[serde(default)]
    author: Option<String>,
    /// On the back (lines kept); the 2x1.2 in barcode area at its lower right stays empty.
    #[serde(default)]
    back_text: Option<String>,
    /// A .ttf or .otf file for the cover's text (the built-in font is Liberation Sans).
    #[serde(default)]
    font: Option<PipelinePath>,
}

/// The options printed as text on the cover, checked against its fonts before a run.
pub(crate) const PRINTED_FIELDS: &[&str] = &["title", "subtitle", "author", "back_text"];

fn default_path() -> OutputPath {
    OutputPath::new("cover.pdf").expect("cover.pdf is a valid output path")
}

fn default_interior() -> OutputPath {
    OutputPath::new("book.pdf").expect("book.pdf is a valid output path")
}

/// Text on the cover keeps this far inside the trim (KDP asks for at least 0.125 in).
const TEXT_INSET_IN: f32 = 0.375;

impl TypedKind for Cover {
    const NAME: &'static str = "cover";
    const ROLE: Role = Role::Sink;
    const SUMMARY: &'static str =
        "Writes the paperback cover (back, spine, front, with bleed) sized for the book";
    const ACCEPTS: &'static [Media] = Media::IMAGES;
    const OUTPUT: OutputMedia = OutputMedia::None;
    type Options = Options;
    type Parsed = Options;

    fn parse(&self, options: &Value) -> Result<Options, OptionsError> {
        let options: Options = parse_declared(options)?;
        if options.title.trim().is_empty() {
            return Err(OptionsError::at("title", "the cover needs a title"));
        }
        Ok(options)
    }

    fn build_from(&self, options: Options, ctx: &BuildContext) -> anyhow::Result<Component> {
        let font = match &options.font {
            Some(path) => Font::load(path).map_err(|e| anyhow::anyhow!("font: {e}"))?,
            None => Font::builtin(),
        };
        let store_name =
            format!("cover-art-{}", crate::stages::naming::sanitize_component(&options.path.to_string()));
        let settings = Settings {
            path: options.path.under(&ctx.output_dir),
            interior: options.interior.under(&ctx.output_dir),
            store: PageStore { dir: ctx.output_dir.join(CACHE_DIR).join(store_name) },
            paper: options.paper,
            art_page: options.art_page,
            title: options.title,
            subtitle: options.subtitle,
            author: options.author,
            back_text: options.back_text,
            font,
        };
        Ok(Component::Sink(Arc::new(CoverSink { settings: Arc::new(settings), state: Mutex::default() })))
    }

    fn writes_from(&self, options: &Options, _inputs: &[String]) -> Result<Vec<Claim>, OptionsError> {
        Ok(vec![Claim::new("path", options.path.clone())])
    }
}

struct Settings {
    path: PathBuf,
    interior: PathBuf,
    /// The art page's encoded image, kept for a resumed run that does not see it again.
    store: PageStore,
    paper: Paper,
    art_page: Option<usize>,
    title: String,
    subtitle: Option<String>,
    author: Option<String>,
    back_text: Option<String>,
    font: Font,
}

#[derive(Default)]
struct CoverState {
    /// The item whose page is the front art, known once the batch is listed.
    art_key: Option<String>,
    art: Option<ImageStream>,
    verdict: Option<String>,
}

struct CoverSink {
    settings: Arc<Settings>,
    state: Mutex<CoverState>,
}

impl CoverSink {
    fn lock(&self) -> Result<MutexGuard<'_, CoverState>, String> {
        self.state.lock().map_err(|_| "the cover sink's state was poisoned by an earlier panic".to_owned())
    }
}

#[async_trait]
impl Sink for CoverSink {
    /// Only the art page matters to the cover; every other item is done as far as it is concerned.
    fn is_complete(&self, item: &Item, _recorded: Option<&Receipt>) -> bool {
        let art_key = self.lock().ok().and_then(|s| s.art_key.clone());
        art_key.is_none_or(|key| key != item.key || self.settings.store.has(&key))
    }

    async fn begin(&self, items: &mut (dyn Iterator<Item = Item> + Send)) -> anyhow::Result<()> {
        // One pass keeping only what the choice needs: a listing may hold thousands of items.
        let (mut cover_key, mut pages) = (None, Vec::new());
        for item in items {
            if !item.prompt.is_cover() {
                pages.push(PageInfo::of(&item));
            } else if cover_key.is_none() {
                cover_key = Some(item.key);
            }
        }
        book_order(&mut pages, |p| p);
        let art_key = match (self.settings.art_page, cover_key) {
            (None, Some(cover)) => Some(cover),
            (page, _) => {
                let page = page.unwrap_or(1);
                let key = pages.get(page - 1).map(|p| p.key.clone());
                if key.is_none() {
                    tracing::warn!(
                        "cover: the book has {} page(s), no page {page} for the front art",
                        pages.len()
                    );
                }
                key
            }
        };
        self.lock().map_err(anyhow::Error::msg)?.art_key = art_key;
        Ok(())
    }

    async fn write(&self, item: &Item, states: Vec<State>) -> Result<Receipt, StageError> {
        if self.lock().map_err(StageError::failed)?.art_key.as_deref() != Some(item.key.as_str()) {
            return Ok(Receipt::default());
        }
        let raster = match arrival(&states)? {
            Arrival::Image(raster) => raster,
            Arrival::Missing(reason) => {
                tracing::warn!(
                    "cover: the front art page {} is missing ({reason}): the front has no art",
                    item.key
                );
                return Ok(Receipt::default());
            }
        };
        let stream = cpu::run(move || ImageStream::encode(&raster))
            .await
            .and_then(|r| r)
            .map_err(StageError::failed)?;
        self.settings.store.save(&item.key, &stream).map_err(StageError::failed)?;
        self.lock().map_err(StageError::failed)?.art = Some(stream);
        Ok(Receipt::default())
    }

    async fn finish(&self, summary: &Summary) -> anyhow::Result<()> {
        if summary.interrupted {
            tracing::info!(
                "cover: the batch stopped early, so no cover: the run that completes it writes one"
            );
            return Ok(());
        }
        let settings = &self.settings;
        let interior = settings.interior.display();
        let hint = "list the cover sink after the pdf sink that writes it, with `interior` naming its path";
        let pages = page_count(&settings.interior).map_err(|e| anyhow::anyhow!("{e} ({hint})"))?;
        let trim = trim_of(&settings.interior).map_err(anyhow::Error::msg)?;
        let art = {
            let mut state = self.lock().map_err(anyhow::Error::msg)?;
            let key = state.art_key.clone();
            state.art.take().or_else(|| key.and_then(|k| settings.store.load(&k).ok()))
        };
        let bytes = render(settings, pages, trim, art.as_ref()).map_err(anyhow::Error::msg)?;
        write_atomically(&settings.path, &bytes)?;
        tracing::info!("cover: wrote {} for {pages} pages of {interior}", settings.path.display());
        let verdict = match check_cover(&settings.path, pages, trim, settings.paper) {
            Ok(report) => {
                tracing::info!("cover: {report}");
                report.verdict()
            }
            Err(e) => format!("KDP preflight could not read the cover: {e}"),
        };
        self.lock().map_err(anyhow::Error::msg)?.verdict = Some(verdict);
        Ok(())
    }

    fn note(&self) -> Option<String> {
        self.lock().ok()?.verdict.clone()
    }
}

/// The cover as a one-page PDF.
fn render(
    settings: &Settings,
    pages: usize,
    trim: Trim,
    art: Option<&ImageStream>,
) -> Result<Vec<u8>, String> {
    let g = CoverGeometry::new(trim, pages, settings.paper);
    let inset = TEXT_INSET_IN * PT_PER_IN;
    let inside = |a: Area| Area { x0: a.x0 + inset, y0: a.y0 + inset, x1: a.x1 - inset, y1: a.y1 - inset };
    let (front, back) = (inside(g.front), inside(g.back));

    let mut pdf = Pdf::new();
    let mut last = Ref::new(1);
    let mut alloc = move || last.bump();
    let (catalog, tree, page_id, content_id, font_id, image_id) =
        (alloc(), alloc(), alloc(), alloc(), alloc(), alloc());
    let mut fonts = FontUse::new(settings.font.clone());
    let mut content = Content::new();

    // Front: title and subtitle at the top, the author at the foot, the art between.
    let mut y = fonts.centred(&mut content, &settings.title, 40.0, front.x0, front.width(), front.y1 - 40.0);
    if let Some(subtitle) = &settings.subtitle {
        y = fonts.centred(&mut content, subtitle, 22.0, front.x0, front.width(), y - 6.0);
    }
    let mut art_bottom = front.y0;
    if let Some(author) = &settings.author {
        fonts.centred(&mut content, author, 18.0, front.x0, front.width(), front.y0 + 6.0);
        art_bottom += 40.0;
    }
    if let Some(art) = art {
        let art_area = Area { y0: art_bottom, y1: y - 6.0, ..front };
        let [x, y, w, h] = place_image(art_area, art.width, art.height, art.dpi, false);
        content.save_state();
        content.transform([w, 0.0, 0.0, h, x, y]);
        content.x_object(Name(b"Art"));
        content.restore_state();
    }

    // Back: the text from the top, stopping above the barcode area.
    if let Some(text) = &settings.back_text {
        const SIZE: f32 = 13.0;
        let mut y = back.y1 - SIZE;
        let lines: Vec<String> =
            text.lines().flat_map(|p| fonts.fonts().wrap(p, SIZE, back.width())).collect();
        for line in lines {
            if y < g.barcode.y1 + SIZE {
                tracing::warn!("cover: the back text is cut off above the barcode area");
                break;
            }
            fonts.show(&mut content, &line, SIZE, back.x0, y);
            y -= SIZE * 1.4;
        }
    }

    // Spine: title and author running top to bottom, only on a spine wide enough for it.
    if pages >= SPINE_TEXT_MIN_PAGES {
        let text = match &settings.author {
            Some(author) => format!("{}  ·  {author}", settings.title),
            None => settings.title.clone(),
        };
        let room = g.spine.x1 - g.spine.x0 - 2.0 * SPINE_CLEARANCE_IN * PT_PER_IN;
        let length = trim.height - 2.0 * inset;
        // Glyphs reach a quarter em below the baseline and one em above it.
        let size = (room / 1.25).min(14.0).min(length / fonts.fonts().width(&text, 1.0).max(1.0));
        let centre_x = (g.spine.x0 + g.spine.x1) / 2.0;
        let top = (g.spine.y0 + g.spine.y1 + fonts.fonts().width(&text, size)) / 2.0;
        content.save_state();
        content.transform([0.0, -1.0, 1.0, 0.0, centre_x - 0.375 * size, top]);
        fonts.show(&mut content, &text, size, 0.0, 0.0);
        content.restore_state();
    }

    let content = content.finish();
    pdf.stream(content_id, &content);
    if let Some(art) = art {
        let mut chunk = pdf_writer::Chunk::new();
        art.write(&mut chunk, image_id).map_err(|e| e.to_string())?;
        pdf.extend(&chunk);
    }
    for chunk in fonts.write(font_id, &mut alloc)? {
        pdf.extend(&chunk);
    }
    if !fonts.missing().is_empty() {
        tracing::warn!(
            "cover: no font has a glyph for {:?}: they print as empty boxes (name a `font` that has them)",
            fonts.missing().iter().collect::<String>()
        );
    }
    let bleed = BLEED_IN * PT_PER_IN;
    let mut page = pdf.page(page_id);
    page.parent(tree)
        .media_box(Rect::new(0.0, 0.0, g.width, g.height))
        .trim_box(Rect::new(bleed, bleed, g.width - bleed, g.height - bleed))
        .bleed_box(Rect::new(0.0, 0.0, g.width, g.height))
        .contents(content_id);
    let mut resources = page.resources();
    if art.is_some() {
        resources.x_objects().pair(Name(b"Art"), image_id);
    }
    resources.pair(Name(b"Font"), font_id);
    resources.finish();
    page.finish();
    pdf.pages(tree).kids([page_id]).count(1);
    pdf.catalog(catalog).pages(tree);
    Ok(pdf.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(author: Option<&str>, back_text: Option<&str>) -> Settings {
        Settings {
            path: PathBuf::from("cover.pdf"),
            interior: PathBuf::from("book.pdf"),
            store: PageStore { dir: PathBuf::from("unused") },
            paper: Paper::White,
            art_page: None,
            title: "Forest Friends".into(),
            subtitle: Some("A coloring book".into()),
            author: author.map(str::to_owned),
            back_text: back_text.map(str::to_owned),
            font: Font::builtin(),
        }
    }

    /// A rendered cover passes its own preflight at several page counts, on both papers, with
    /// spine text from 79 pages.
    #[test]
    fn covers_pass_preflight_from_24_to_590_pages_on_both_papers() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let art = ImageStream::encode(&crate::engine::media::Raster::new(
            2550,
            3300,
            Some(300.0),
            crate::engine::media::Pixels::Bilevel(vec![0x0f; 319 * 3300]),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let back = "A book of forest animals to colour.\nFor ages 4 and up.";
        for paper in [Paper::White, Paper::Cream] {
            for pages in [24, 78, 79, 200, 550] {
                let mut s = settings(Some("Ada Inkwell"), Some(back));
                s.paper = paper;
                let bytes = render(&s, pages, Trim::LETTER, Some(&art)).unwrap_or_else(|e| panic!("{e}"));
                let path = dir.path().join(format!("cover-{pages}-{paper:?}.pdf"));
                std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{e}"));
                let report = check_cover(&path, pages, Trim::LETTER, paper).unwrap_or_else(|e| panic!("{e}"));
                assert!(report.passed(), "{pages} pages on {paper:?}: {report}");
                let spine = (pages as f32 * paper.inch_per_page() * 1e4).round() / 1e4;
                let text = lopdf::Document::load(&path)
                    .and_then(|d| d.extract_text(&[1]))
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(
                    text.matches("Ada Inkwell").count(),
                    if pages >= 79 { 2 } else { 1 },
                    "{pages}: {text}"
                );
                let doc = lopdf::Document::load(&path).unwrap_or_else(|e| panic!("{e}"));
                let page = *doc.get_pages().values().next().unwrap_or_else(|| panic!("no page"));
                let media =
                    doc.get_dictionary(page).and_then(|p| p.get(b"MediaBox")).and_then(|m| m.as_array());
                let width = media.map(|m| m[2].as_float().unwrap_or(0.0)).unwrap_or(0.0) / PT_PER_IN;
                assert!((width - (17.25 + spine)).abs() < 1e-3, "{pages} on {paper:?}: {width} in");
            }
        }
    }
}
