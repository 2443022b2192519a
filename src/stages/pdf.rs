//! The `pdf` sink: the batch's pages assembled into one print-ready coloring book.
//!
//! Pages arrive in whatever order the pipeline finishes them, and a 1,000-page book must not sit
//! in memory. So each arriving image is encoded at once (CCITT Group 4 for line art, Flate for
//! gray and colour) and appended to `<path>.partial` as one PDF object; the sink keeps only a small
//! record per page. `finish` then writes the page objects in page order, the page tree, the document
//! info and the cross-reference table, and renames the file into place, so `path` never holds half
//! a book. pdf-writer serializes every object, but its `Pdf` buffers the whole file to compute the
//! xref offsets; `ObjectFile` writes objects one by one and keeps the offsets itself instead.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use anyhow::Context;
use async_trait::async_trait;
use fax::Color;
use pdf_writer::writers::{Catalog, DocumentInfo};
use pdf_writer::{Chunk, Content, Filter, Finish, Name, Rect, Ref, Str, TextStr};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::engine::atomic_file::write_atomically;
use crate::engine::cpu;
use crate::engine::item::{Item, State};
use crate::engine::media::{Media, Payload, Pixels, Raster};
use crate::engine::stage::{
    BuildContext, Component, KindInfo, OptionDoc, OptionsError, OutputMedia, Role, Sink, StageError,
    TypedKind, parse_options,
};
use crate::engine::summary::Summary;

/// The `pdf` sink kind: writes every item as one page of a single PDF book, in page order.
pub struct PdfBook;

impl TypedKind for PdfBook {
    type Options = Options;

    fn describe(&self) -> &KindInfo {
        static INFO: LazyLock<KindInfo> = LazyLock::new(|| KindInfo {
            name: "pdf".into(),
            role: Role::Sink,
            summary: "Assembles the pages into one print-ready PDF book, in page order, streamed to disk"
                .into(),
            options: vec![
                OptionDoc::new("path", "string", "book.pdf", "the PDF file, relative to the output dir"),
                OptionDoc::new(
                    "page_size",
                    "letter|a4|{ width_pt, height_pt }",
                    "letter",
                    "page size; letter is 612x792 pt, a4 595.28x841.89 pt",
                ),
                OptionDoc::new(
                    "margin",
                    "number (pt)",
                    "0",
                    "0 places each image at its DPI, centred (shrunk if larger than the page); \
                     more scales it to fit within the margins",
                ),
                OptionDoc::new("title", "string", "none", "adds a title page and sets the document title"),
                OptionDoc::new(
                    "author",
                    "string",
                    "none",
                    "the document author, also shown on the title page",
                ),
                OptionDoc::new(
                    "page_numbers",
                    "boolean",
                    "false",
                    "prints 1, 2, 3... at the bottom of each page",
                ),
                OptionDoc::new(
                    "on_missing",
                    "skip|placeholder|fail",
                    "placeholder",
                    "for a failed or filtered item: leave the page out, print a page saying which prompt \
                     failed and why (so later pages keep their numbers), or write no book and fail",
                ),
                OptionDoc::new("creator", "string", "inkflow", "the document's Creator entry"),
            ],
            accepts: Media::IMAGES.to_vec(),
            output: OutputMedia::None,
        });
        &INFO
    }

    fn parse(&self, options: &Value) -> Result<Options, OptionsError> {
        Options::parse(options)
    }

    fn build_from(&self, options: Options, ctx: &BuildContext) -> anyhow::Result<Component> {
        let final_path = ctx.output_dir.join(&options.path);
        let mut partial = final_path.clone().into_os_string();
        partial.push(".partial");
        let store_name = format!("pdf-pages-{}", crate::stages::naming::sanitize_component(&options.path));
        let settings = Settings {
            pages: PageStore { dir: ctx.output_dir.join("cache").join(store_name) },
            final_path,
            partial_path: PathBuf::from(partial),
            page: options.page_size,
            margin: options.margin,
            title: options.title,
            author: options.author,
            creator: options.creator,
            page_numbers: options.page_numbers,
            on_missing: options.on_missing,
        };
        Ok(Component::Sink(Arc::new(BookSink {
            settings: Arc::new(settings),
            book: Arc::new(Mutex::new(Book::default())),
        })))
    }
}

/// The `pdf` options, as written in the pipeline file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    #[serde(default = "default_path")]
    path: String,
    #[serde(default)]
    page_size: PageSize,
    #[serde(default)]
    margin: f32,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    author: Option<String>,
    #[serde(default)]
    page_numbers: bool,
    #[serde(default)]
    on_missing: OnMissing,
    #[serde(default = "default_creator")]
    creator: String,
}

fn default_path() -> String {
    "book.pdf".into()
}

fn default_creator() -> String {
    "inkflow".into()
}

/// PDF viewers and printers reject pages over 200 inches (PDF 1.7, annex C).
const MAX_PAGE_PT: f32 = 14_400.0;
/// The smallest printable area left inside the margins: one inch.
const MIN_PRINTABLE_PT: f32 = 72.0;

impl Options {
    fn parse(options: &Value) -> Result<Self, OptionsError> {
        let options: Options = parse_options(options)?;
        if options.path.trim().is_empty() {
            return Err(OptionsError::at("path", "the PDF path is empty"));
        }
        let PageSize { width, height } = options.page_size;
        for (side, value) in [("width_pt", width), ("height_pt", height)] {
            if !(MIN_PRINTABLE_PT..=MAX_PAGE_PT).contains(&value) {
                return Err(OptionsError::at(
                    &format!("page_size.{side}"),
                    format!("{value} pt is outside {MIN_PRINTABLE_PT}..={MAX_PAGE_PT} pt (1 to 200 inches)"),
                ));
            }
        }
        if !options.margin.is_finite() || options.margin < 0.0 {
            return Err(OptionsError::at(
                "margin",
                format!("{} is not a margin in points (0 or more)", options.margin),
            ));
        }
        if width.min(height) - 2.0 * options.margin < MIN_PRINTABLE_PT {
            return Err(OptionsError::at(
                "margin",
                format!(
                    "a {} pt margin leaves less than one inch of a {width}x{height} pt page",
                    options.margin
                ),
            ));
        }
        Ok(options)
    }
}

/// A page size in points (1/72 inch).
#[derive(Clone, Copy, Debug, PartialEq)]
struct PageSize {
    width: f32,
    height: f32,
}

/// US letter, 8.5x11 in: the default, as the generated pages are 2550x3300 px at 300 DPI.
const LETTER: PageSize = PageSize { width: 612.0, height: 792.0 };
/// ISO A4, 210x297 mm.
const A4: PageSize = PageSize { width: 595.28, height: 841.89 };

impl Default for PageSize {
    fn default() -> Self {
        LETTER
    }
}

/// The `page_size: { width_pt, height_pt }` form; the unit is in the names because every other
/// size in a pipeline is in pixels.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomPageSize {
    width_pt: f32,
    height_pt: f32,
}

impl<'de> Deserialize<'de> for PageSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const EXPECTED: &str = "expected letter, a4 or { width_pt, height_pt }";
        match Value::deserialize(deserializer)? {
            Value::String(name) => match name.as_str() {
                "letter" => Ok(LETTER),
                "a4" => Ok(A4),
                other => Err(D::Error::custom(format!("unknown page size `{other}`: {EXPECTED}"))),
            },
            custom @ Value::Object(_) => serde_json::from_value::<CustomPageSize>(custom)
                .map(|c| PageSize { width: c.width_pt, height: c.height_pt })
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!("{other} is not a page size: {EXPECTED}"))),
        }
    }
}

/// What the book does about an item that has no image (failed, filtered or never written).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum OnMissing {
    /// Leave the page out.
    Skip,
    /// A text page naming the prompt and the reason: the default, because a silently missing
    /// page shifts every later page number of a printed book.
    #[default]
    Placeholder,
    /// Write no book; `finish` names the missing items.
    Fail,
}

/// The resolved options a built sink works with.
struct Settings {
    pages: PageStore,
    final_path: PathBuf,
    partial_path: PathBuf,
    page: PageSize,
    margin: f32,
    title: Option<String>,
    author: Option<String>,
    creator: String,
    page_numbers: bool,
    on_missing: OnMissing,
}

/// The running sink. Writes may run concurrently: the encoding runs on the CPU pool outside the
/// lock, only the append to the file holds it.
struct BookSink {
    settings: Arc<Settings>,
    book: Arc<Mutex<Book>>,
}

/// What the sink remembers between writes: no pixels, only a record per page.
#[derive(Default)]
struct Book {
    /// Opened on the first image, so `validate` and a batch with no pages create no file.
    file: Option<ObjectFile>,
    /// Every item the batch listed, in source order, with what it got so far: pages never
    /// written in this run (batch stopped, resumed items) are the ones still `None` at the end.
    pages: Vec<ListedPage>,
    /// Set when an append failed: the file's offsets can no longer be trusted.
    broken: Option<String>,
    finished: bool,
}

/// Who a page belongs to, for ordering and for the placeholder text.
#[derive(Clone, Debug)]
struct PageInfo {
    key: String,
    seq: u64,
    section: String,
    number: u32,
    description: String,
    prompt: String,
}

impl PageInfo {
    fn of(item: &Item) -> Self {
        PageInfo {
            key: item.key.clone(),
            seq: item.seq,
            section: item.prompt.section.clone(),
            number: item.prompt.number,
            description: item.prompt.description.clone(),
            prompt: item.prompt.image_prompt.clone(),
        }
    }
}

/// A listed item and, once it arrived, its page.
struct ListedPage {
    info: PageInfo,
    content: Option<PageContent>,
}

/// One page of the book, ready to be laid out.
struct PageRecord {
    info: PageInfo,
    content: PageContent,
}

enum PageContent {
    /// The image is already in the file as object `xobject`.
    Image { xobject: Ref, width: u32, height: u32, dpi: Option<f32> },
    /// No image, and why.
    Missing { reason: String },
}

/// What the sink got for an item.
enum Arrival {
    Image(Arc<Raster>),
    Missing(String),
}

fn arrival(states: &[State]) -> Result<Arrival, StageError> {
    for state in states {
        match state {
            State::Failed(f) => {
                return Ok(Arrival::Missing(format!(
                    "stage `{}` failed after {} attempt(s): {}",
                    f.stage, f.attempts, f.error
                )));
            }
            State::Filtered { stage, reason } => {
                return Ok(Arrival::Missing(format!("stage `{stage}` filtered it out: {reason}")));
            }
            State::Ready(_) => {}
        }
    }
    let mut media = Vec::new();
    for state in states {
        if let State::Ready(payload) = state {
            match payload {
                Payload::Image(raster) => return Ok(Arrival::Image(raster.clone())),
                other => media.push(other.media().to_string()),
            }
        }
    }
    Err(StageError::failed(format!("the pdf sink takes images, but got {}", media.join(", "))))
}

impl BookSink {
    fn lock(&self) -> Result<MutexGuard<'_, Book>, String> {
        lock_book(&self.book)
    }
}

fn lock_book(book: &Mutex<Book>) -> Result<MutexGuard<'_, Book>, String> {
    book.lock().map_err(|_| "the pdf sink's state was poisoned by an earlier panic".to_owned())
}

#[async_trait]
impl Sink for BookSink {
    fn is_complete(&self, item: &Item) -> bool {
        self.settings.pages.has(&item.key)
    }

    async fn begin(&self, items: &mut (dyn Iterator<Item = Item> + Send)) -> anyhow::Result<()> {
        let mut book = self.lock().map_err(anyhow::Error::msg)?;
        book.pages = items.map(|item| ListedPage { info: PageInfo::of(&item), content: None }).collect();
        book.pages.sort_by_key(|page| page.info.seq);
        Ok(())
    }

    async fn write(&self, item: &Item, states: Vec<State>) -> Result<(), StageError> {
        let info = PageInfo::of(item);
        let raster = match arrival(&states)? {
            Arrival::Image(raster) => raster,
            Arrival::Missing(reason) => {
                self.lock().map_err(StageError::failed)?.record(info, PageContent::Missing { reason });
                return Ok(());
            }
        };
        let encoded = cpu::run(move || ImageStream::encode(&raster)).await.and_then(|r| r);
        let stream = match encoded {
            Ok(stream) => stream,
            Err(e) => {
                let reason = format!("the pdf sink could not encode the page: {e}");
                self.lock()
                    .map_err(StageError::failed)?
                    .record(info, PageContent::Missing { reason: reason.clone() });
                return Err(StageError::failed(reason));
            }
        };
        let book = self.book.clone();
        let settings = self.settings.clone();
        tokio::task::spawn_blocking(move || {
            settings.pages.save(&info.key, &stream)?;
            lock_book(&book)?.append_image(&settings, info, stream)
        })
        .await
        .map_err(|e| StageError::failed(format!("the pdf writer task failed: {e}")))?
        .map_err(StageError::failed)
    }

    async fn finish(&self, _summary: &Summary) -> anyhow::Result<()> {
        let book = self.book.clone();
        let settings = self.settings.clone();
        tokio::task::spawn_blocking(move || lock_book(&book).map_err(anyhow::Error::msg)?.assemble(&settings))
            .await
            .context("the pdf writer task failed")?
    }
}

impl Book {
    /// Remembers what an item got, at its place among the listed items (an item the batch did
    /// not list is added in source order).
    fn record(&mut self, info: PageInfo, content: PageContent) {
        match self.pages.binary_search_by_key(&info.seq, |page| page.info.seq) {
            Ok(at) if self.pages[at].info.key == info.key => self.pages[at].content = Some(content),
            Ok(at) | Err(at) => self.pages.insert(at, ListedPage { info, content: Some(content) }),
        }
    }

    /// Appends an encoded image to the partial file and remembers its page.
    fn append_image(
        &mut self,
        settings: &Settings,
        info: PageInfo,
        stream: ImageStream,
    ) -> Result<(), String> {
        if let Some(error) = &self.broken {
            return Err(error.clone());
        }
        let written = self.write_image(&settings.partial_path, &stream);
        match written {
            Ok(xobject) => {
                let content = PageContent::Image {
                    xobject,
                    width: stream.width,
                    height: stream.height,
                    dpi: stream.dpi,
                };
                self.record(info, content);
                Ok(())
            }
            Err(e) => {
                let error = format!("writing {}: {e}", settings.partial_path.display());
                self.broken = Some(error.clone());
                Err(error)
            }
        }
    }

    fn write_image(&mut self, partial_path: &Path, stream: &ImageStream) -> io::Result<Ref> {
        if self.finished {
            return Err(io::Error::other("the book is already finished"));
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(ObjectFile::create(partial_path)?),
        };
        let id = file.alloc();
        let mut chunk = Chunk::new();
        stream.write(&mut chunk, id)?;
        file.write(&chunk)?;
        // On disk before the next page arrives, so a crash loses at most the page in hand.
        file.flush()?;
        Ok(id)
    }

    /// Writes the rest of the book after its images and renames it into place.
    fn assemble(&mut self, settings: &Settings) -> anyhow::Result<()> {
        anyhow::ensure!(!self.finished, "the book {} was already finished", settings.final_path.display());
        if let Some(error) = self.broken.take() {
            self.finished = true;
            // Dropping the file removes the partial book.
            self.file = None;
            anyhow::bail!("no book was written to {}: {error}", settings.final_path.display());
        }
        let listed = std::mem::take(&mut self.pages);
        // Book order: sections in the order the prompt file first names them, then page number.
        let mut section_rank: HashMap<String, usize> = HashMap::new();
        for page in &listed {
            if !section_rank.contains_key(&page.info.section) {
                section_rank.insert(page.info.section.clone(), section_rank.len());
            }
        }
        let mut pages = Vec::with_capacity(listed.len());
        for ListedPage { info, content } in listed {
            let content = match content {
                Some(content) => content,
                // Pages an earlier run made come from the page store, one at a time.
                None => match settings.pages.load(&info.key) {
                    Ok(stream) => {
                        let xobject = self
                            .write_image(&settings.partial_path, &stream)
                            .with_context(|| format!("writing {}", settings.partial_path.display()))?;
                        PageContent::Image {
                            xobject,
                            width: stream.width,
                            height: stream.height,
                            dpi: stream.dpi,
                        }
                    }
                    Err(_) => PageContent::Missing {
                        reason: "not written in this run (the batch stopped before it)".into(),
                    },
                },
            };
            pages.push(PageRecord { info, content });
        }
        self.finished = true;
        pages.sort_by_cached_key(|p| {
            (
                section_rank.get(p.info.section.as_str()).copied().unwrap_or(usize::MAX),
                p.info.number,
                p.info.seq,
            )
        });

        let missing: Vec<String> = pages
            .iter()
            .filter_map(|p| match &p.content {
                PageContent::Missing { reason } => Some(format!("{} ({reason})", p.info.key)),
                PageContent::Image { .. } => None,
            })
            .collect();
        match settings.on_missing {
            OnMissing::Fail if !missing.is_empty() => {
                self.file = None;
                anyhow::bail!(
                    "no book was written to {}: {} page(s) missing (on_missing: fail): {}",
                    settings.final_path.display(),
                    missing.len(),
                    missing.join("; ")
                );
            }
            OnMissing::Skip => pages.retain(|p| matches!(p.content, PageContent::Image { .. })),
            OnMissing::Fail | OnMissing::Placeholder => {}
        }

        let mut file = match self.file.take() {
            Some(file) => file,
            None => ObjectFile::create(&settings.partial_path)
                .with_context(|| format!("creating {}", settings.partial_path.display()))?,
        };
        let (catalog, info) = write_document(&mut file, &pages, settings)
            .with_context(|| format!("writing {}", settings.partial_path.display()))?;
        file.commit(catalog, info, &settings.final_path).with_context(|| {
            format!("completing {} as {}", settings.partial_path.display(), settings.final_path.display())
        })?;
        tracing::info!("pdf: wrote {} page(s) to {}", pages.len(), settings.final_path.display());
        Ok(())
    }
}

/// Writes everything but the images: the pages in order, the page tree, the catalog and the info
/// dictionary. Returns the catalog and info references for the trailer.
fn write_document(
    file: &mut ObjectFile,
    pages: &[PageRecord],
    settings: &Settings,
) -> io::Result<(Ref, Ref)> {
    let tree = file.alloc();
    let font = file.alloc();
    let mut helvetica = Chunk::new();
    helvetica.type1_font(font).base_font(Name(b"Helvetica")).encoding_predefined(Name(b"WinAnsiEncoding"));
    file.write(&helvetica)?;

    let mut kids = Vec::with_capacity(pages.len() + 1);
    if let Some(title) = &settings.title {
        let content = title_page(title, settings.author.as_deref(), settings.page);
        kids.push(write_page(file, tree, font, None, &content, settings.page)?);
    }
    for (index, page) in pages.iter().enumerate() {
        let mut content = Content::new();
        let xobject = match &page.content {
            PageContent::Image { xobject, width, height, dpi } => {
                let [x, y, w, h] = place_image(settings.page, settings.margin, *width, *height, *dpi);
                content.save_state();
                content.transform([w, 0.0, 0.0, h, x, y]);
                content.x_object(Name(IMAGE_NAME));
                content.restore_state();
                Some(*xobject)
            }
            PageContent::Missing { reason } => {
                placeholder_text(&mut content, &page.info, reason, settings);
                None
            }
        };
        if settings.page_numbers {
            let label = (index + 1).to_string();
            let y = settings.margin.max(36.0) / 2.0 - 0.35 * PAGE_NUMBER_SIZE;
            let x = (settings.page.width - text_width(&label, PAGE_NUMBER_SIZE)) / 2.0;
            show(&mut content, &label, PAGE_NUMBER_SIZE, x, y);
        }
        kids.push(write_page(file, tree, font, xobject, &content.finish().into_vec(), settings.page)?);
    }

    let mut chunk = Chunk::new();
    let count = i32::try_from(kids.len()).map_err(|_| io::Error::other("too many pages for one PDF"))?;
    chunk.pages(tree).kids(kids).count(count);
    file.write(&chunk)?;

    let catalog = file.alloc();
    let mut chunk = Chunk::new();
    chunk.indirect(catalog).start::<Catalog>().pages(tree);
    file.write(&chunk)?;

    let info = file.alloc();
    let mut chunk = Chunk::new();
    let mut dict = chunk.indirect(info).start::<DocumentInfo>();
    if let Some(title) = &settings.title {
        dict.title(TextStr(title));
    }
    if let Some(author) = &settings.author {
        dict.author(TextStr(author));
    }
    dict.creator(TextStr(&settings.creator));
    dict.producer(TextStr(concat!("inkflow ", env!("CARGO_PKG_VERSION"))));
    dict.finish();
    file.write(&chunk)?;
    Ok((catalog, info))
}

/// The resource name of a page's image.
const IMAGE_NAME: &[u8] = b"Im";
/// The resource name of the one font, standard Helvetica (every viewer has it; nothing embedded).
const FONT_NAME: &[u8] = b"F1";
const PAGE_NUMBER_SIZE: f32 = 9.0;

fn write_page(
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
fn place_image(page: PageSize, margin: f32, width: u32, height: u32, dpi: Option<f32>) -> [f32; 4] {
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

fn title_page(title: &str, author: Option<&str>, page: PageSize) -> Vec<u8> {
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
fn placeholder_text(content: &mut Content, info: &PageInfo, reason: &str, settings: &Settings) {
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

fn show(content: &mut Content, text: &str, size: f32, x: f32, y: f32) {
    content.begin_text();
    content.set_font(Name(FONT_NAME), size);
    content.next_line(x, y);
    content.show(Str(&win_ansi(text)));
    content.end_text();
}

/// Greedy word wrap; a word wider than the line is broken between characters.
fn wrap(text: &str, size: f32, max_width: f32) -> Vec<String> {
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
fn win_ansi(text: &str) -> Vec<u8> {
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
const HELVETICA_ASCII: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, // space to /
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, // 0 to ?
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, // @ to O
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, // P to _
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, // ` to o
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, // p to ~
];

/// The printed width of `text` in points; accented letters are taken as 556 (most are 556 to 722).
fn text_width(text: &str, size: f32) -> f32 {
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

/// Encoded pages kept beside the book (`OUTPUT/cache/pdf-pages-NAME/KEY.page`), so a resumed
/// run rebuilds the whole book from pages earlier runs made, without their pixels in memory.
struct PageStore {
    dir: PathBuf,
}

impl PageStore {
    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.page"))
    }

    fn has(&self, key: &str) -> bool {
        self.path(key).is_file()
    }

    /// One header line (`width height dpi coding`), then the encoded data; written whole or not at all.
    fn save(&self, key: &str, stream: &ImageStream) -> Result<(), String> {
        let mut bytes = format!(
            "{} {} {} {}\n",
            stream.width,
            stream.height,
            stream.dpi.unwrap_or(0.0),
            stream.coding.code()
        )
        .into_bytes();
        bytes.extend_from_slice(&stream.data);
        fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))
            .and_then(|()| write_atomically(&self.path(key), &bytes).map_err(|e| format!("{e:#}")))
    }

    fn load(&self, key: &str) -> io::Result<ImageStream> {
        let bytes = fs::read(self.path(key))?;
        let bad = || io::Error::other(format!("{} is damaged", self.path(key).display()));
        let newline = bytes.iter().position(|&b| b == b'\n').ok_or_else(bad)?;
        let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| bad())?;
        let fields: Vec<&str> = header.split(' ').collect();
        let [width, height, dpi, coding] = fields[..] else { return Err(bad()) };
        let dpi: f32 = dpi.parse().map_err(|_| bad())?;
        Ok(ImageStream {
            width: width.parse().map_err(|_| bad())?,
            height: height.parse().map_err(|_| bad())?,
            dpi: (dpi > 0.0).then_some(dpi),
            coding: Coding::from_code(coding).ok_or_else(bad)?,
            data: bytes[newline + 1..].to_vec(),
        })
    }
}

/// An image encoded for the PDF, ready to be written as an image XObject.
struct ImageStream {
    width: u32,
    height: u32,
    dpi: Option<f32>,
    coding: Coding,
    data: Vec<u8>,
}

enum Coding {
    /// 1-bit, CCITT Group 4: about a third of Flate's size for line art.
    Group4,
    /// 8-bit gray, Flate.
    FlateGray,
    /// 8-bit RGB, Flate.
    FlateRgb,
}

impl Coding {
    fn code(&self) -> &'static str {
        match self {
            Coding::Group4 => "g4",
            Coding::FlateGray => "gray",
            Coding::FlateRgb => "rgb",
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        [Coding::Group4, Coding::FlateGray, Coding::FlateRgb].into_iter().find(|c| c.code() == code)
    }
}

impl ImageStream {
    /// Encodes a raster; CPU work for the rayon pool.
    fn encode(raster: &Raster) -> Result<Self, String> {
        let (width, height) = (raster.width, raster.height);
        if width == 0 || height == 0 {
            return Err(format!("the image is empty ({width}x{height})"));
        }
        let pixels = width as usize * height as usize;
        let (coding, data) = match &raster.pixels {
            Pixels::Bilevel(packed) => (Coding::Group4, encode_group4(width, height, packed)?),
            Pixels::Gray(gray) => (Coding::FlateGray, deflate(gray, pixels)?),
            Pixels::Rgb(rgb) => (Coding::FlateRgb, deflate(rgb, pixels * 3)?),
        };
        Ok(ImageStream { width, height, dpi: raster.dpi, coding, data })
    }

    fn write(&self, chunk: &mut Chunk, id: Ref) -> io::Result<()> {
        let too_large =
            || io::Error::other(format!("a {}x{} image is too large for PDF", self.width, self.height));
        let width = i32::try_from(self.width).map_err(|_| too_large())?;
        let height = i32::try_from(self.height).map_err(|_| too_large())?;
        let mut image = chunk.image_xobject(id, &self.data);
        image.width(width).height(height);
        match self.coding {
            Coding::Group4 => {
                image.color_space().device_gray();
                image.bits_per_component(1);
                image.filter(Filter::CcittFaxDecode);
                // K < 0 is pure two-dimensional Group 4. BlackIs1 false: a decoded 0 is black,
                // which is our packing too (1 = white).
                image.decode_parms().k(-1).columns(width).rows(height).black_is_1(false);
            }
            Coding::FlateGray => {
                image.color_space().device_gray();
                image.bits_per_component(8);
                image.filter(Filter::FlateDecode);
            }
            Coding::FlateRgb => {
                image.color_space().device_rgb();
                image.bits_per_component(8);
                image.filter(Filter::FlateDecode);
            }
        }
        image.finish();
        Ok(())
    }
}

/// CCITT Group 4 (T.6) of packed 1-bit rows, most significant bit first, 1 = white.
fn encode_group4(width: u32, height: u32, packed: &[u8]) -> Result<Vec<u8>, String> {
    let stride = Raster::bilevel_stride(width);
    let needed = stride * height as usize;
    if packed.len() < needed {
        return Err(format!(
            "a {width}x{height} bilevel image needs {needed} bytes, it has {}",
            packed.len()
        ));
    }
    let mut encoder = fax::encoder::Encoder::new(fax::VecWriter::with_capacity(needed));
    for row in packed.chunks_exact(stride).take(height as usize) {
        let pels = (0..width as usize)
            .map(|x| if row[x / 8] & (0x80 >> (x % 8)) != 0 { Color::White } else { Color::Black });
        let Ok(()) = encoder.encode_line(pels, width);
    }
    let Ok(writer) = encoder.finish();
    Ok(writer.finish())
}

fn deflate(samples: &[u8], expected: usize) -> Result<Vec<u8>, String> {
    match samples.get(..expected) {
        Some(samples) => Ok(miniz_oxide::deflate::compress_to_vec_zlib(samples, 6)),
        None => Err(format!("the image needs {expected} bytes of samples, it has {}", samples.len())),
    }
}

/// A PDF file written one object at a time, remembering each object's byte offset for the
/// cross-reference table. Removed on drop unless [`ObjectFile::commit`] renamed it into place.
struct ObjectFile {
    path: PathBuf,
    out: BufWriter<File>,
    position: u64,
    /// Offset of object `n` at index `n - 1`; `None` until it is written.
    offsets: Vec<Option<u64>>,
    committed: bool,
}

impl ObjectFile {
    fn create(path: &Path) -> io::Result<Self> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut out = BufWriter::new(File::create(path)?);
        // The binary-marker comment tells transfer tools the file is not text.
        let header = b"%PDF-1.7\n%\x80\x80\x80\x80\n";
        out.write_all(header)?;
        Ok(ObjectFile {
            path: path.to_owned(),
            out,
            position: header.len() as u64,
            offsets: Vec::new(),
            committed: false,
        })
    }

    /// Reserves the next object number.
    fn alloc(&mut self) -> Ref {
        self.offsets.push(None);
        Ref::new(self.offsets.len() as i32)
    }

    /// Appends a chunk holding exactly one object (so its offset is where the chunk starts).
    fn write(&mut self, chunk: &Chunk) -> io::Result<()> {
        let mut refs = chunk.refs();
        let (Some(id), None) = (refs.next(), refs.next()) else {
            return Err(io::Error::other("internal: a chunk must hold exactly one object"));
        };
        let slot = usize::try_from(id.get() - 1).ok().and_then(|index| self.offsets.get_mut(index));
        let Some(slot @ None) = slot else {
            return Err(io::Error::other(format!(
                "internal: object {} is unallocated or written twice",
                id.get()
            )));
        };
        *slot = Some(self.position);
        self.out.write_all(chunk.as_bytes())?;
        self.position += chunk.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Writes the xref table and trailer, syncs, and renames the file to `final_path`.
    fn commit(mut self, catalog: Ref, info: Ref, final_path: &Path) -> io::Result<()> {
        let xref_offset = self.position;
        let size = self.offsets.len() + 1;
        let mut tail = Vec::with_capacity(64 + 20 * size);
        write!(tail, "xref\n0 {size}\n0000000000 65535 f\r\n")?;
        for (index, offset) in self.offsets.iter().enumerate() {
            let Some(offset) = offset else {
                return Err(io::Error::other(format!("internal: object {} was never written", index + 1)));
            };
            write!(tail, "{offset:010} 00000 n\r\n")?;
        }
        write!(
            tail,
            "trailer\n<< /Size {size} /Root {} 0 R /Info {} 0 R >>\nstartxref\n{xref_offset}\n%%EOF\n",
            catalog.get(),
            info.get()
        )?;
        self.out.write_all(&tail)?;
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        fs::rename(&self.path, final_path)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for ObjectFile {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: a partial book is useless, and the next run truncates it anyway.
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_300_dpi_letter_image_fills_a_letter_page_exactly() {
        assert_eq!(place_image(LETTER, 0.0, 2550, 3300, Some(300.0)), [0.0, 0.0, 612.0, 792.0]);
    }

    #[test]
    fn an_image_too_large_for_the_page_is_shrunk_and_centred() {
        let [x, y, w, h] = place_image(A4, 0.0, 2550, 3300, Some(300.0));
        assert!((w - 595.28).abs() < 0.01, "width {w}");
        assert!((h - 595.28 * 3300.0 / 2550.0).abs() < 0.01, "height {h}");
        assert!(x.abs() < 0.01 && (y - (841.89 - h) / 2.0).abs() < 0.01);
    }

    #[test]
    fn margins_fit_the_image_inside_them() {
        let [x, y, w, h] = place_image(LETTER, 36.0, 100, 100, Some(300.0));
        assert_eq!((x, w, h), (36.0, 540.0, 540.0));
        assert_eq!(y, (792.0 - 540.0) / 2.0);
    }

    #[test]
    fn wrap_keeps_every_line_within_the_width() {
        let text =
            "a cheerful fox with a very long tail in a forest of supercalifragilisticexpialidocious trees";
        let lines = wrap(text, 12.0, 100.0);
        assert!(lines.len() > 3);
        assert!(lines.iter().all(|l| text_width(l, 12.0) <= 100.0), "{lines:?}");
        assert_eq!(lines.join("").replace(' ', ""), text.replace(' ', ""));
    }

    #[test]
    fn win_ansi_maps_curly_quotes_and_replaces_the_rest() {
        assert_eq!(win_ansi("it\u{2019}s caf\u{e9} \u{1f600}"), b"it\x92s caf\xe9 ?");
    }

    #[test]
    fn option_errors_point_at_the_field() {
        let err =
            Options::parse(&serde_json::json!({ "page_size": "legal" })).err().map(|e| (e.path, e.message));
        let (path, message) = err.unwrap_or_default();
        assert_eq!(path, ["page_size"]);
        assert!(message.contains("legal") && message.contains("a4"), "{message}");

        let err = Options::parse(&serde_json::json!({ "page_size": { "width_pt": 10, "height_pt": 700 } }));
        assert_eq!(err.err().map(|e| e.path), Some(vec!["page_size".to_owned(), "width_pt".to_owned()]));

        let err = Options::parse(&serde_json::json!({ "margin": 300 }));
        assert_eq!(err.err().map(|e| e.path), Some(vec!["margin".to_owned()]));

        let err = Options::parse(&serde_json::json!({ "on_missing": "ignore" }));
        assert_eq!(err.err().map(|e| e.path), Some(vec!["on_missing".to_owned()]));
    }
}
