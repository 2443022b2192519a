//! Reading the PDF: its pages, their boxes and what their content draws, read once for the
//! interior and cover checks alike.

use std::collections::HashSet;
use std::path::Path;
use std::rc::Rc;

use lopdf::{Dictionary, Document, LoadOptions, Object, ObjectId};

use super::crop_marks::has_crop_marks;
use super::file::{Fault, LazyFile};
use super::ink::{Drawn, Findings, Ink, Resources, Walker};
use super::limits;
use crate::print::Trim;
use crate::print::area::Area;

/// What preflight reads of one page.
pub(super) struct PageFacts {
    pub(super) media: Area,
    pub(super) trim: Area,
    pub(super) bleed: Area,
    pub(super) has_trim_box: bool,
    /// What its content draws (shared by pages drawn alike).
    pub(super) drawn: Rc<Drawn>,
    pub(super) annotations: bool,
    /// Crop marks at the corners of the trim (or of the page, without a TrimBox).
    pub(super) crop_marks: bool,
}

impl PageFacts {
    pub(super) fn ink(&self) -> &[Ink] {
        &self.drawn.ink
    }

    /// No ink, and all of its content read: a page over a limit has content.
    pub(super) fn blank(&self) -> bool {
        self.drawn.ink.is_empty() && self.drawn.limit.is_none()
    }
}

/// What the file says of itself, beside its pages.
pub(super) struct Facts {
    pub(super) bytes: u64,
    pub(super) encrypted: bool,
    pub(super) pages: usize,
}

/// What a check gathers from the pages, one at a time and in order, so that no page is held
/// after it is judged.
pub(super) trait Gather {
    /// Page `number`, from 1.
    fn page(&mut self, number: usize, page: &PageFacts);
}

/// Loads a PDF, with lopdf's own decoding bounded as preflight's is.
fn load(path: &Path) -> Result<Document, String> {
    let options =
        LoadOptions { max_decompressed_size: Some(limits::MAX_DECODED_BYTES), ..LoadOptions::default() };
    Document::load_with_options(path, options)
        .map_err(|e| format!("{} is not a readable PDF: {e}", path.display()))
}

/// The document's pages in order, each page object once: a page tree that lists a page or a
/// subtree twice (or in a loop) is walked once per node, not once per path to it.
fn page_ids(doc: &Document) -> Vec<ObjectId> {
    let root = doc.catalog().ok().and_then(|c| c.get(b"Pages").ok()).and_then(|p| p.as_reference().ok());
    let mut seen = HashSet::new();
    let mut pages = Vec::new();
    let mut stack: Vec<ObjectId> = root.into_iter().collect();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let Ok(node) = doc.get_dictionary(id) else { continue };
        match node.get(b"Kids").map(|k| resolve(doc, k)) {
            Ok(Object::Array(kids)) => {
                stack.extend(kids.iter().rev().filter_map(|kid| kid.as_reference().ok()));
            }
            _ if node.get(b"Type").and_then(Object::as_name).is_ok_and(|t| t == b"Pages") => {}
            _ => pages.push(id),
        }
    }
    pages
}

/// Reads a PDF a page at a time where it reads as written, else whole with lopdf (which repairs
/// what it can), giving each page to what `start` makes for the page count.
pub(super) fn read<G: Gather>(path: &Path, start: impl Fn(usize) -> G) -> Result<(Facts, G), String> {
    let bytes = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?.len();
    match LazyFile::open(path).and_then(|file| read_lazily(file, &start)) {
        Ok((pages, gathered)) => return Ok((Facts { bytes, encrypted: false, pages }, gathered)),
        Err(Fault::Malformed(why) | Fault::Limit(why)) => {
            tracing::debug!("preflight reads {} whole: {why}", path.display());
        }
    }
    let doc = load(path)?;
    let encrypted = doc.is_encrypted() || doc.trailer.has(b"Encrypt");
    let mut found = Findings::new();
    let ids = page_ids(&doc);
    let mut gathered = start(ids.len());
    for (index, &id) in ids.iter().enumerate() {
        let page = read_page(&doc, &mut Walker::new(&doc, &mut found), id)
            .map_err(|e| format!("{}, page {}: {e}", path.display(), index + 1))?;
        gathered.page(index + 1, &page);
    }
    Ok((Facts { bytes, encrypted, pages: ids.len() }, gathered))
}

/// The pages of a file read on demand, each from a document of its own objects: their count and
/// what was gathered. Any error gives the file to lopdf; a page over a limit is one the content
/// rules could not check.
pub(super) fn read_lazily<G: Gather>(
    mut file: LazyFile,
    start: &impl Fn(usize) -> G,
) -> Result<(usize, G), Fault> {
    let mut found = Findings::new();
    let ids = file.page_ids()?;
    let mut gathered = start(ids.len());
    for (index, &id) in ids.iter().enumerate() {
        let page = match file.page_document(id, &|object| found.known(object)) {
            Ok(doc) => read_page(&doc, &mut Walker::new(&doc, &mut found), id),
            Err(Fault::Limit(limit)) => {
                let doc = file.page_document(id, &|_| true)?;
                read_page_over(&doc, id, limit)
            }
            Err(fault) => return Err(fault),
        };
        gathered.page(index + 1, &page.map_err(Fault::Malformed)?);
    }
    Ok((ids.len(), gathered))
}

pub(super) fn resolve<'a>(doc: &'a Document, object: &'a Object) -> &'a Object {
    match object {
        Object::Reference(id) => doc.get_object(*id).unwrap_or(&Object::Null),
        other => other,
    }
}

/// A page attribute, inherited through the page tree (MediaBox and Resources are).
fn inherited<'a>(doc: &'a Document, page: &'a Dictionary, key: &[u8]) -> Option<&'a Object> {
    inherited_from(doc, (0, 0), page, key).map(|(_, value)| value)
}

/// [`inherited`], with the object that holds the value: its own when it is a reference, else
/// the node (page `id` or an ancestor) it is written in.
fn inherited_from<'a>(
    doc: &'a Document,
    id: ObjectId,
    page: &'a Dictionary,
    key: &[u8],
) -> Option<(ObjectId, &'a Object)> {
    let (mut holder, mut node) = (id, page);
    for _ in 0..64 {
        if let Ok(value) = node.get(key) {
            return Some((value.as_reference().unwrap_or(holder), resolve(doc, value)));
        }
        holder = node.get(b"Parent").ok().and_then(|p| p.as_reference().ok())?;
        node = doc.get_dictionary(holder).ok()?;
    }
    None
}

fn rect(object: Option<&Object>, doc: &Document) -> Option<Area> {
    let values: Vec<f32> =
        object?.as_array().ok()?.iter().filter_map(|o| resolve(doc, o).as_float().ok()).collect();
    let [a, b, c, d] = values[..] else { return None };
    Some(Area { x0: a.min(c), y0: b.min(d), x1: a.max(c), y1: b.max(d) })
}

fn read_page<'a>(doc: &'a Document, walker: &mut Walker<'a>, id: ObjectId) -> Result<PageFacts, String> {
    let page = doc.get_dictionary(id).map_err(|e| e.to_string())?;
    let resources = inherited_from(doc, id, page, b"Resources");
    let resources = Resources {
        dict: resources.and_then(|(_, r)| r.as_dict().ok()),
        holder: resources.map(|(holder, _)| holder),
    };
    let drawn = walker.page(doc.get_page_contents(id), resources);
    page_facts(doc, page, drawn)
}

/// A page whose objects are over a limit: its boxes and annotations, its content unread.
fn read_page_over(doc: &Document, id: ObjectId, limit: String) -> Result<PageFacts, String> {
    let page = doc.get_dictionary(id).map_err(|e| e.to_string())?;
    page_facts(doc, page, Rc::new(Drawn { limit: Some(limit), ..Drawn::default() }))
}

fn page_facts(doc: &Document, page: &Dictionary, drawn: Rc<Drawn>) -> Result<PageFacts, String> {
    let media = rect(inherited(doc, page, b"MediaBox"), doc).ok_or("no MediaBox")?;
    let trim_box = rect(page.get(b"TrimBox").ok(), doc);
    let trim = trim_box.unwrap_or(media);
    let bleed = rect(page.get(b"BleedBox").ok(), doc).unwrap_or(media);
    let annotations = page
        .get(b"Annots")
        .ok()
        .map(|a| resolve(doc, a))
        .and_then(|a| a.as_array().ok())
        .is_some_and(|a| !a.is_empty());
    let crop_marks = has_crop_marks(&drawn.ink, trim_box, media);
    Ok(PageFacts { media, trim, bleed, has_trim_box: trim_box.is_some(), drawn, annotations, crop_marks })
}

/// The page count of a PDF, for sizing its cover.
pub fn page_count(path: &Path) -> Result<usize, String> {
    match LazyFile::open(path).and_then(|mut file| file.page_ids()) {
        Ok(pages) => Ok(pages.len()),
        Err(_) => Ok(page_ids(&load(path)?).len()),
    }
}

/// The trim of a PDF's first page (its TrimBox, else its MediaBox).
pub fn trim_of(path: &Path) -> Result<Trim, String> {
    let first_page = |file: &mut LazyFile| -> Result<Option<(Document, ObjectId)>, Fault> {
        let Some(&id) = file.page_ids()?.first() else { return Ok(None) };
        Ok(Some((file.page_document(id, &|_| false)?, id)))
    };
    let (doc, id) = match LazyFile::open(path).and_then(|mut file| first_page(&mut file)) {
        Ok(found) => found,
        Err(_) => {
            let doc = load(path)?;
            let first = page_ids(&doc).first().copied();
            first.map(|id| (doc, id))
        }
    }
    .ok_or_else(|| format!("{} has no pages", path.display()))?;
    let page = doc.get_dictionary(id).map_err(|e| e.to_string())?;
    let media = rect(inherited(&doc, page, b"MediaBox"), &doc);
    let trim = rect(page.get(b"TrimBox").ok(), &doc)
        .or(media)
        .ok_or_else(|| format!("{}: page 1 has no MediaBox", path.display()))?;
    Ok(Trim { width: trim.width(), height: trim.height() })
}
