//! The running sink and the book it assembles: pages recorded as they arrive, written in page order at the end.

use super::*;
use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use async_trait::async_trait;
use pdf_writer::writers::{Catalog, DocumentInfo};
use pdf_writer::{Chunk, Content, Finish, Ref, TextStr};

use crate::print::font::FontUse;
use crate::print::preflight::{Target, check_interior};

use crate::engine::cpu;
use crate::engine::item::{Item, State};
use crate::engine::media::{Payload, Raster};
use crate::engine::stage::{Receipt, Sink, StageError};
use crate::engine::summary::Summary;
use crate::stages::lineart_check::Verdict;

/// The running sink. Writes may run concurrently: the encoding runs on the CPU pool outside the
/// lock, only the append to the file holds it.
pub(super) struct BookSink {
    pub(super) settings: Arc<Settings>,
    pub(super) book: Arc<Mutex<Book>>,
}

/// What the sink remembers between writes: no pixels, only a record per page.
#[derive(Default)]
pub(super) struct Book {
    /// Opened on the first image, so `validate` and a batch with no pages create no file.
    pub(super) file: Option<ObjectFile>,
    /// Every item the batch listed, in source order, with what it got so far: pages never
    /// written in this run (batch stopped, resumed items) are the ones still `None` at the end.
    pub(super) pages: Vec<ListedPage>,
    /// Set when an append failed: the file's offsets can no longer be trusted.
    pub(super) broken: Option<String>,
    pub(super) finished: bool,
    /// The finished book's preflight verdict, for the run's summary.
    pub(super) verdict: Option<String>,
}

/// Sorts pages into book order: sections in the order the items (in source order) first name
/// them, then page number, then source order. The cover picks its art page by the same order.
pub(crate) fn book_order<T>(pages: &mut [T], info: impl Fn(&T) -> &PageInfo) {
    let mut by_seq: Vec<&PageInfo> = pages.iter().map(&info).collect();
    by_seq.sort_by_key(|p| p.seq);
    let mut section_rank: HashMap<String, usize> = HashMap::new();
    for page in by_seq {
        let next = section_rank.len();
        section_rank.entry(page.section.clone()).or_insert(next);
    }
    pages.sort_by_cached_key(|p| {
        let p = info(p);
        (section_rank.get(p.section.as_str()).copied().unwrap_or(usize::MAX), p.number, p.seq)
    });
}

/// Who a page belongs to, for ordering and for the placeholder text.
#[derive(Clone, Debug)]
pub(crate) struct PageInfo {
    pub(crate) key: String,
    pub(super) seq: u64,
    pub(super) section: String,
    pub(super) number: u32,
    pub(super) description: String,
    pub(super) prompt: String,
}

impl PageInfo {
    pub(crate) fn of(item: &Item) -> Self {
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
pub(super) struct ListedPage {
    pub(super) info: PageInfo,
    pub(super) content: Option<PageContent>,
}

/// One page of the book, ready to be laid out.
pub(super) struct PageRecord {
    pub(super) info: PageInfo,
    pub(super) content: PageContent,
}

pub(super) enum PageContent {
    /// The image is already in the file as object `xobject`.
    Image { xobject: Ref, width: u32, height: u32, dpi: Option<f32> },
    /// No image, and why.
    Missing { reason: String },
    /// A page the quality check rejected, shown as a text page saying why.
    Rejected { reason: String },
    /// A rejected page left out.
    Omitted,
}

/// What the sink got for an item.
pub(crate) enum Arrival {
    Image(Arc<Raster>),
    Missing(String),
}

/// Why the quality check rejected an item, for its placeholder page.
fn rejection(item: &Item) -> String {
    let problems = item.facts.get("quality").and_then(|q| q.get("problems")).and_then(|p| p.as_array());
    let codes: Vec<&str> = problems.into_iter().flatten().filter_map(|p| p.as_str()).collect();
    format!("rejected by the quality check: {}", codes.join(", "))
}

pub(crate) fn arrival(states: &[State]) -> Result<Arrival, StageError> {
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
    pub(super) fn lock(&self) -> Result<MutexGuard<'_, Book>, String> {
        lock_book(&self.book)
    }
}

pub(super) fn lock_book(book: &Mutex<Book>) -> Result<MutexGuard<'_, Book>, String> {
    book.lock().map_err(|_| "the pdf sink's state was poisoned by an earlier panic".to_owned())
}

#[async_trait]
impl Sink for BookSink {
    /// The cover's art is not a page of the book, so the book never waits for it. A rejected
    /// page the book printed as a placeholder (or left out) is as done as an image.
    fn is_complete(&self, item: &Item, _recorded: Option<&Receipt>) -> bool {
        let pages = &self.settings.pages;
        item.prompt.is_cover() || pages.has(&item.key) || pages.has_stand_in(&item.key)
    }

    async fn begin(&self, items: &mut (dyn Iterator<Item = Item> + Send)) -> anyhow::Result<()> {
        let mut book = self.lock().map_err(anyhow::Error::msg)?;
        book.pages = items
            .filter(|item| !item.prompt.is_cover())
            .map(|item| ListedPage { info: PageInfo::of(&item), content: None })
            .collect();
        book.pages.sort_by_key(|page| page.info.seq);
        Ok(())
    }

    async fn write(&self, item: &Item, states: Vec<State>) -> Result<Receipt, StageError> {
        if item.prompt.is_cover() {
            return Ok(Receipt::default());
        }
        let info = PageInfo::of(item);
        if Verdict::of(item) == Some(Verdict::Reject) && self.settings.rejected != OnRejected::Include {
            let content = match self.settings.rejected {
                OnRejected::Skip => PageContent::Omitted,
                _ => PageContent::Rejected { reason: rejection(item) },
            };
            let reason = match &content {
                PageContent::Rejected { reason } => Some(reason.as_str()),
                _ => None,
            };
            self.settings.pages.save_stand_in(&item.key, reason).map_err(StageError::failed)?;
            self.lock().map_err(StageError::failed)?.record(info, content);
            return Ok(Receipt::default());
        }
        let raster = match arrival(&states)? {
            Arrival::Image(raster) => raster,
            Arrival::Missing(reason) => {
                self.lock().map_err(StageError::failed)?.record(info, PageContent::Missing { reason });
                return Ok(Receipt::default());
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
        // A candidate a re-roll may still replace waits in the page store, where the book takes
        // it from once it stays the page: appended now, a replaced page's image would be left in
        // the published PDF as an unreferenced object.
        let is_final = item.trial.last;
        tokio::task::spawn_blocking(move || {
            settings.pages.save(&info.key, &stream)?;
            if !is_final {
                return Ok(());
            }
            lock_book(&book)?.append_image(&settings, info, stream)
        })
        .await
        .map_err(|e| StageError::failed(format!("the pdf writer task failed: {e}")))?
        .map_err(StageError::failed)?;
        Ok(Receipt::default())
    }

    fn note(&self) -> Option<String> {
        self.lock().ok()?.verdict.clone()
    }

    async fn finish(&self, summary: &Summary) -> anyhow::Result<()> {
        if summary.interrupted {
            // A book of placeholders for pages that never started helps no one; the page cache
            // keeps every page done, and the run that completes the batch assembles the book.
            tracing::warn!(
                "the batch stopped early: the book is assembled by the run that completes the batch"
            );
            return Ok(());
        }
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
    pub(super) fn record(&mut self, info: PageInfo, content: PageContent) {
        match self.pages.binary_search_by_key(&info.seq, |page| page.info.seq) {
            Ok(at) if self.pages[at].info.key == info.key => self.pages[at].content = Some(content),
            Ok(at) | Err(at) => self.pages.insert(at, ListedPage { info, content: Some(content) }),
        }
    }

    /// Appends an encoded image to the partial file and remembers its page.
    pub(super) fn append_image(
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

    pub(super) fn write_image(&mut self, partial_path: &Path, stream: &ImageStream) -> io::Result<Ref> {
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

    /// Copies a page an earlier run made from the page store into the file.
    fn load_image(&mut self, settings: &Settings, key: &str) -> anyhow::Result<PageContent> {
        let Ok(stream) = settings.pages.load(key) else {
            return Ok(PageContent::Missing {
                reason: "not written in this run (the batch stopped before it)".into(),
            });
        };
        let xobject = self
            .write_image(&settings.partial_path, &stream)
            .with_context(|| format!("writing {}", settings.partial_path.display()))?;
        Ok(PageContent::Image { xobject, width: stream.width, height: stream.height, dpi: stream.dpi })
    }

    /// Writes the rest of the book after its images and renames it into place.
    pub(super) fn assemble(&mut self, settings: &Settings) -> anyhow::Result<()> {
        anyhow::ensure!(!self.finished, "the book {} was already finished", settings.final_path.display());
        if let Some(error) = self.broken.take() {
            self.finished = true;
            // Dropping the file removes the partial book.
            self.file = None;
            anyhow::bail!("no book was written to {}: {error}", settings.final_path.display());
        }
        let listed = std::mem::take(&mut self.pages);
        let mut pages = Vec::with_capacity(listed.len());
        for ListedPage { info, content } in listed {
            let content = match content {
                Some(content) => content,
                // Pages an earlier run made come from the page store, one at a time.
                None => match settings.pages.load_stand_in(&info.key) {
                    Some(Some(reason)) => PageContent::Rejected { reason },
                    Some(None) => PageContent::Omitted,
                    None => self.load_image(settings, &info.key)?,
                },
            };
            pages.push(PageRecord { info, content });
        }
        self.finished = true;
        book_order(&mut pages, |p| &p.info);

        pages.retain(|p| !matches!(p.content, PageContent::Omitted));
        let missing: Vec<String> = pages
            .iter()
            .filter_map(|p| match &p.content {
                PageContent::Missing { reason } => Some(format!("{} ({reason})", p.info.key)),
                _ => None,
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
            OnMissing::Skip => pages.retain(|p| !matches!(p.content, PageContent::Missing { .. })),
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
        let target = Target {
            trim: Some(settings.layout.trim),
            bleed: Some(settings.layout.bleed),
            ..Target::default()
        };
        self.verdict = Some(match check_interior(&settings.final_path, target) {
            Ok(report) => {
                tracing::info!("pdf: {report}");
                report.verdict()
            }
            Err(e) => format!("KDP preflight could not read the book: {e}"),
        });
        Ok(())
    }
}

/// Writes everything but the images: the pages in order, the page tree, the catalog and the info
/// dictionary. Returns the catalog and info references for the trailer.
pub(super) fn write_document(
    file: &mut ObjectFile,
    pages: &[PageRecord],
    settings: &Settings,
) -> io::Result<(Ref, Ref)> {
    let tree = file.alloc();
    let font = file.alloc();
    let mut fonts = FontUse::new(settings.font.clone());
    let front = FrontText {
        title: settings.title.as_deref(),
        subtitle: settings.subtitle.as_deref(),
        author: settings.author.as_deref(),
        copyright: settings.copyright.as_deref(),
        belongs_to: settings.belongs_to.as_deref(),
    };
    let layout = settings.layout;
    let slots = layout.plan(&front.pages(), pages.len());

    let mut kids = Vec::with_capacity(slots.len());
    for (index, slot) in slots.iter().enumerate() {
        let frame = layout.frame(index, slots.len());
        let mut refs = PageRefs { tree, font: Some(font), image: None };
        let content = match *slot {
            Slot::Blank => {
                refs.font = None;
                Vec::new()
            }
            Slot::Front(page) => front.content(page, &mut fonts, frame.safe),
            Slot::Art(at) => {
                let page = &pages[at];
                let mut content = Content::new();
                match &page.content {
                    PageContent::Image { xobject, width, height, dpi } => {
                        let fill = layout.art == ArtArea::Bleed;
                        draw_image(&mut content, place_image(frame.art, *width, *height, *dpi, fill));
                        refs.image = Some(*xobject);
                    }
                    PageContent::Missing { reason } | PageContent::Rejected { reason } => {
                        placeholder_text(&mut fonts, &mut content, &page.info, reason, frame.art);
                    }
                    // Left out by `assemble` before the book is laid out.
                    PageContent::Omitted => {}
                }
                if layout.page_numbers {
                    page_number(&mut fonts, &mut content, at + 1, frame.safe);
                }
                content.finish().into_vec()
            }
        };
        kids.push(write_page(file, refs, &content, &frame)?);
    }

    for chunk in fonts.write(font, || file.alloc()).map_err(io::Error::other)? {
        file.write(&chunk)?;
    }
    if !fonts.missing().is_empty() {
        tracing::warn!(
            "pdf: no font has a glyph for {:?}: they print as empty boxes (name a `font` that has them)",
            fonts.missing().iter().collect::<String>()
        );
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
