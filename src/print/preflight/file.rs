//! A PDF read on demand: its cross-reference data first, then only the objects a page draws
//! with, so judging a 20,000-page book holds one page's objects at a time, not the whole file
//! (lopdf's `Document::load` parses every object of the file before the first can be looked at).
//!
//! Strict on purpose: a file whose cross-reference data or objects do not read as written
//! (damaged, hand-edited, encrypted) is not repaired here; the caller reads it whole with lopdf,
//! which repairs what it can. The work stays bounded either way (see `limits`).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;

use lopdf::{Dictionary, Document, Object, ObjectId, Stream};

use super::limits::*;
use super::tokens::Tokens;

/// Why an object or a page could not be read.
pub(super) enum Fault {
    /// Over one of the limits: the page is one preflight could not check.
    Limit(String),
    /// Not as the file says: the file is read whole instead.
    Malformed(String),
}

/// Where the cross-reference data says an object is.
#[derive(Clone, Copy)]
enum Entry {
    At(u64),
    InStream { container: u32, index: u32 },
}

/// An object stream, decoded: its content and where each of its objects starts.
struct ObjectStream {
    number: u32,
    content: Vec<u8>,
    starts: Vec<(u32, usize)>,
}

/// Cross-reference sections chained by `/Prev` and `/XRefStm`, this many at most.
const MAX_XREF_SECTIONS: usize = 64;
/// The first read of an object; it grows fourfold while the object runs past it.
const FIRST_WINDOW: u64 = 4096;
/// Page tree keys a page inherits, the only ones kept of the tree's inner nodes.
const INHERITED: [&[u8]; 3] = [b"Parent", b"MediaBox", b"Resources"];
/// Keys of a page that its checks read (its annotations only as a list: not followed).
const PAGE_KEYS: [&[u8]; 5] = [b"Contents", b"Resources", b"MediaBox", b"TrimBox", b"BleedBox"];

pub(super) struct LazyFile {
    file: File,
    len: u64,
    /// By object number, the newest revision's entry.
    entries: Vec<(u32, Entry)>,
    trailer: Dictionary,
    /// The page tree's inner nodes met by [`LazyFile::page_ids`], with only what pages inherit.
    nodes: HashMap<ObjectId, Dictionary>,
    /// The last object stream decoded: objects stored together are mostly read together.
    object_stream: Option<Rc<ObjectStream>>,
    read_left: u64,
    page_read_left: u64,
    decoded_left: u64,
}

fn malformed(what: String) -> Fault {
    Fault::Malformed(what)
}

impl LazyFile {
    /// Opens a file and reads its cross-reference data; an encrypted file is left to lopdf.
    pub(super) fn open(path: &Path) -> Result<LazyFile, Fault> {
        let file = File::open(path).map_err(|e| malformed(e.to_string()))?;
        let len = file.metadata().map_err(|e| malformed(e.to_string()))?.len();
        let mut lazy = LazyFile {
            file,
            len,
            entries: Vec::new(),
            trailer: Dictionary::new(),
            nodes: HashMap::new(),
            object_stream: None,
            read_left: MAX_READ_BYTES_PER_DOCUMENT,
            page_read_left: MAX_READ_BYTES_PER_DOCUMENT,
            decoded_left: MAX_DECODED_BYTES_PER_DOCUMENT,
        };
        lazy.read_xref()?;
        if lazy.trailer.has(b"Encrypt") {
            return Err(malformed("encrypted".into()));
        }
        Ok(lazy)
    }

    /// Up to `want` bytes from `offset` (fewer at the end of the file), within the budgets.
    fn read_at(&mut self, offset: u64, want: u64) -> Result<Vec<u8>, Fault> {
        let want = want.min(self.len.saturating_sub(offset));
        if want > self.page_read_left.min(self.read_left) {
            return Err(Fault::Limit(if want > self.read_left {
                format!("the document reads more than {} MB (the limit)", MAX_READ_BYTES_PER_DOCUMENT >> 20)
            } else {
                format!("the page's objects take more than {} MB (the limit)", MAX_READ_BYTES_PER_PAGE >> 20)
            }));
        }
        self.read_left -= want;
        self.page_read_left -= want;
        let mut bytes = Vec::new();
        self.file.seek(SeekFrom::Start(offset)).map_err(|e| malformed(e.to_string()))?;
        (&mut self.file).take(want).read_to_end(&mut bytes).map_err(|e| malformed(e.to_string()))?;
        Ok(bytes)
    }

    /// The cross-reference sections from the last `startxref` back, newest entries first.
    fn read_xref(&mut self) -> Result<(), Fault> {
        let tail_at = self.len.saturating_sub(1024);
        let tail = self.read_at(tail_at, 1024)?;
        let at = tail
            .windows(9)
            .rposition(|w| w == b"startxref")
            .ok_or_else(|| malformed("no startxref".into()))?;
        let start = Tokens::new(&tail[at + 9..]).keyword();
        let start = std::str::from_utf8(start).ok().and_then(|s| s.parse::<u64>().ok());
        let mut pending: Vec<u64> = start.into_iter().collect();
        let mut seen = HashSet::new();
        let mut trailer = None;
        while let Some(offset) = pending.pop() {
            if !seen.insert(offset) || seen.len() > MAX_XREF_SECTIONS {
                continue;
            }
            let head = self.read_at(offset, 16)?;
            let mut tokens = Tokens::new(&head);
            let dictionary = if tokens.keyword() == b"xref" {
                let dictionary = self.xref_table(offset + tokens.position() as u64)?;
                // A hybrid file's stream section holds the objects its table lists as free.
                pending.extend(dictionary.get(b"Prev").and_then(Object::as_i64).ok().map(|p| p as u64));
                pending.extend(dictionary.get(b"XRefStm").and_then(Object::as_i64).ok().map(|p| p as u64));
                dictionary
            } else {
                let dictionary = self.xref_stream(offset)?;
                pending.extend(dictionary.get(b"Prev").and_then(Object::as_i64).ok().map(|p| p as u64));
                dictionary
            };
            trailer.get_or_insert(dictionary);
        }
        self.trailer = trailer.ok_or_else(|| malformed("no cross-reference section".into()))?;
        // Newest first, and a stable sort: the first entry of each number is the one in force.
        self.entries.sort_by_key(|&(number, _)| number);
        self.entries.dedup_by_key(|&mut (number, _)| number);
        self.entries.shrink_to_fit();
        Ok(())
    }

    /// A classic `xref` table from `offset` (after the keyword), returning its trailer.
    fn xref_table(&mut self, mut offset: u64) -> Result<Dictionary, Fault> {
        loop {
            let head = self.read_at(offset, 64)?;
            let mut tokens = Tokens::new(&head);
            let word = tokens.keyword();
            if word == b"trailer" {
                let at = offset + tokens.position() as u64;
                return match self.object_at(at, Expect::Bare, false)? {
                    Object::Dictionary(dictionary) => Ok(dictionary),
                    _ => Err(malformed("the trailer is not a dictionary".into())),
                };
            }
            let number = |word: &[u8]| std::str::from_utf8(word).ok().and_then(|s| s.parse::<u64>().ok());
            let (Some(first), Some(count)) = (number(word), number(tokens.keyword())) else {
                return Err(malformed("a cross-reference subsection without its numbers".into()));
            };
            offset += tokens.position() as u64;
            // Each entry is 20 bytes: `oooooooooo ggggg n` and an end of line.
            if count.saturating_mul(20) > self.len.saturating_sub(offset) {
                return Err(malformed("a cross-reference subsection past the end of the file".into()));
            }
            let rows = self.read_at(offset, count * 20 + 2)?;
            let mut tokens = Tokens::new(&rows);
            for index in 0..count {
                let (at, _, kind) = (number(tokens.keyword()), tokens.keyword(), tokens.keyword());
                let object = u32::try_from(first + index)
                    .map_err(|_| malformed("an object number past 2^32".into()))?;
                match (at, kind) {
                    (Some(at), b"n") if at > 0 => self.entries.push((object, Entry::At(at))),
                    (Some(_), b"n" | b"f") => {}
                    _ => return Err(malformed("a cross-reference entry that does not read".into())),
                }
            }
            offset += tokens.position() as u64;
        }
    }

    /// A cross-reference stream at `offset`, decoded by lopdf, returning its dictionary.
    fn xref_stream(&mut self, offset: u64) -> Result<Dictionary, Fault> {
        let Object::Stream(stream) = self.object_at(offset, Expect::Indirect(None), true)? else {
            return Err(malformed("startxref points at neither a table nor a stream".into()));
        };
        let (xref, dictionary) = lopdf::xref::decode_xref_stream_with_limit(stream, Some(MAX_DECODED_BYTES))
            .map_err(|e| malformed(e.to_string()))?;
        for (&number, entry) in &xref.entries {
            match *entry {
                lopdf::xref::XrefEntry::Normal { offset, .. } if offset > 0 => {
                    self.entries.push((number, Entry::At(offset.into())));
                }
                lopdf::xref::XrefEntry::Compressed { container, index } => {
                    self.entries.push((number, Entry::InStream { container, index: index.into() }));
                }
                _ => {}
            }
        }
        Ok(dictionary)
    }

    /// The object at `offset`, as `expect`ed (an indirect object's number must match). A
    /// stream's data is read only `with_data`.
    fn object_at(&mut self, offset: u64, expect: Expect, with_data: bool) -> Result<Object, Fault> {
        self.object_read_at(offset, expect, with_data, &mut |tokens: &mut Tokens<'_>| tokens.object())
    }

    /// [`LazyFile::object_at`], the object read by `read` (tried again on more bytes when the
    /// first read ends short).
    fn object_read_at(
        &mut self,
        offset: u64,
        expect: Expect,
        with_data: bool,
        read: &mut dyn FnMut(&mut Tokens<'_>) -> Option<Object>,
    ) -> Result<Object, Fault> {
        let mut window = FIRST_WINDOW;
        loop {
            let bytes = self.read_at(offset, window)?;
            let whole = offset + bytes.len() as u64 >= self.len;
            match parse_object(&bytes, expect, whole, read) {
                Parsed::Object(object) => return Ok(object),
                Parsed::Stream(dictionary, _) if !with_data => {
                    return Ok(Object::Stream(Stream::new(dictionary, Vec::new())));
                }
                Parsed::Stream(dictionary, data_at) => {
                    let length = match dictionary.get(b"Length") {
                        Ok(Object::Reference(id)) => self.get(*id, false)?.as_i64().ok(),
                        Ok(length) => length.as_i64().ok(),
                        Err(_) => None,
                    };
                    let length = length
                        .and_then(|l| u64::try_from(l).ok())
                        .ok_or_else(|| malformed(format!("a stream at byte {offset} without its Length")))?;
                    if length > MAX_STREAM_BYTES {
                        return Err(Fault::Limit(format!(
                            "a stream of more than {} MB (the limit)",
                            MAX_STREAM_BYTES >> 20
                        )));
                    }
                    let start = offset + data_at as u64;
                    if start.saturating_add(length) > self.len {
                        return Err(malformed(format!(
                            "a stream at byte {offset} runs past the end of the file"
                        )));
                    }
                    let data = self.read_at(start, length)?;
                    return Ok(Object::Stream(Stream::new(dictionary, data)));
                }
                Parsed::Short if !whole && window < MAX_OBJECT_BYTES => window *= 4,
                Parsed::Short | Parsed::Bad => {
                    return Err(malformed(format!("byte {offset} does not start an object")));
                }
            }
        }
    }

    /// Object `id`; `Null` if the file has none. A stream's data is read only `with_data`.
    pub(super) fn get(&mut self, id: ObjectId, with_data: bool) -> Result<Object, Fault> {
        self.get_read(id, with_data, &mut |tokens: &mut Tokens<'_>| tokens.object())
    }

    /// [`LazyFile::get`], the object read by `read`.
    fn get_read(
        &mut self,
        id: ObjectId,
        with_data: bool,
        read: &mut dyn FnMut(&mut Tokens<'_>) -> Option<Object>,
    ) -> Result<Object, Fault> {
        let found = self.entries.binary_search_by_key(&id.0, |&(number, _)| number);
        let Ok(found) = found else { return Ok(Object::Null) };
        match self.entries[found].1 {
            Entry::At(offset) => self.object_read_at(offset, Expect::Indirect(Some(id.0)), with_data, read),
            Entry::InStream { container, index } => {
                let stream = self.object_stream(container)?;
                let at = stream
                    .starts
                    .get(index as usize)
                    .filter(|&&(number, _)| number == id.0)
                    .map(|&(_, at)| at)
                    .ok_or_else(|| {
                        malformed(format!("object {} is not where its object stream says", id.0))
                    })?;
                let mut tokens = Tokens::new(stream.content.get(at..).unwrap_or_default());
                read(&mut tokens).ok_or_else(|| malformed(format!("object {} does not read", id.0)))
            }
        }
    }

    /// Object stream `number`, decoded (the last one is kept).
    fn object_stream(&mut self, number: u32) -> Result<Rc<ObjectStream>, Fault> {
        if let Some(kept) = self.object_stream.as_ref().filter(|s| s.number == number) {
            return Ok(Rc::clone(kept));
        }
        let found = self.entries.binary_search_by_key(&number, |&(n, _)| n);
        let Some(Entry::At(offset)) = found.ok().map(|i| self.entries[i].1) else {
            return Err(malformed(format!("object stream {number} is not in the file")));
        };
        let Object::Stream(stream) = self.object_at(offset, Expect::Indirect(Some(number)), true)? else {
            return Err(malformed(format!("object stream {number} is not a stream")));
        };
        let allowed = MAX_DECODED_BYTES.min(usize::try_from(self.decoded_left).unwrap_or(usize::MAX));
        let content = stream.decompressed_content_with_limit(allowed).map_err(|e| match e {
            lopdf::Error::Decompress(_) => Fault::Limit(format!(
                "an object stream decodes to more than {} MB (the limit)",
                allowed >> 20
            )),
            e => malformed(e.to_string()),
        })?;
        self.decoded_left -= content.len() as u64;
        let first =
            stream.dict.get(b"First").and_then(Object::as_i64).ok().and_then(|f| usize::try_from(f).ok());
        let header = first
            .and_then(|f| content.get(..f))
            .ok_or_else(|| malformed("an object stream without its First".into()))?;
        let mut tokens = Tokens::new(header);
        let mut starts = Vec::new();
        let number_of = |word: &[u8]| std::str::from_utf8(word).ok().and_then(|s| s.parse::<usize>().ok());
        while let (Some(object), Some(at)) = (number_of(tokens.keyword()), number_of(tokens.keyword())) {
            starts.push((u32::try_from(object).unwrap_or(u32::MAX), first.unwrap_or(0).saturating_add(at)));
        }
        let decoded = Rc::new(ObjectStream { number, content, starts });
        self.object_stream = Some(Rc::clone(&decoded));
        Ok(decoded)
    }

    /// The document's pages in order, each page object once (a page tree that lists a page or a
    /// subtree twice, or in a loop, is walked once per node). Keeps the inner nodes' inherited
    /// keys for [`LazyFile::page_document`].
    pub(super) fn page_ids(&mut self) -> Result<Vec<ObjectId>, Fault> {
        let catalog = match self.trailer.get(b"Root") {
            Ok(Object::Reference(id)) => self.get(*id, false)?,
            _ => return Err(malformed("no catalog".into())),
        };
        let root =
            catalog.as_dict().ok().and_then(|c| c.get(b"Pages").ok()).and_then(|p| p.as_reference().ok());
        let mut seen = HashSet::new();
        let mut pages = Vec::new();
        let mut stack: Vec<ObjectId> = root.into_iter().collect();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let mut kids = Vec::new();
            let read = &mut |tokens: &mut Tokens<'_>| {
                kids.clear();
                tokens.page_node(&mut kids)
            };
            let Object::Dictionary(mut node) = self.get_read(id, false, read)? else { continue };
            let inner = match node.get(b"Kids") {
                Ok(&Object::Reference(list)) => match self.get(list, false)? {
                    Object::Array(list) => {
                        kids.extend(list.iter().filter_map(|kid| kid.as_reference().ok()));
                        true
                    }
                    _ => false,
                },
                Ok(Object::Array(_)) => true,
                _ => false,
            };
            if inner {
                stack.extend(kids.iter().rev());
                let mut kept = Dictionary::new();
                for key in INHERITED {
                    if let Some(value) = node.remove(key) {
                        kept.set(key, value);
                    }
                }
                self.nodes.insert(id, kept);
            } else if !node.get(b"Type").and_then(Object::as_name).is_ok_and(|t| t == b"Pages") {
                pages.push(id);
            }
        }
        Ok(pages)
    }

    /// The objects page `id` draws with, in a document of their own: the page, the inner nodes
    /// it inherits from, and what they refer to (other pages excepted). An object whose findings
    /// the caller kept (`known`) comes without its stream data or what it refers to.
    pub(super) fn page_document(
        &mut self,
        id: ObjectId,
        known: &dyn Fn(ObjectId) -> bool,
    ) -> Result<Document, Fault> {
        self.page_read_left = MAX_READ_BYTES_PER_PAGE;
        let mut doc = Document::new();
        let Object::Dictionary(page) = self.get(id, false)? else {
            return Err(malformed(format!("page object {} is not a dictionary", id.0)));
        };
        let mut wanted = Vec::new();
        for key in PAGE_KEYS {
            if let Ok(value) = page.get(key) {
                references(value, &mut wanted);
            }
        }
        if let Ok(&Object::Reference(annotations)) = page.get(b"Annots") {
            let list = self.get(annotations, false)?;
            doc.objects.insert(annotations, list);
        }
        let mut parent = page.get(b"Parent").and_then(Object::as_reference).ok();
        doc.objects.insert(id, Object::Dictionary(page));
        for _ in 0..64 {
            let Some(node) = parent.and_then(|p| Some((p, self.nodes.get(&p)?.clone()))) else { break };
            references_in(&node.1, &mut wanted);
            parent = node.1.get(b"Parent").and_then(Object::as_reference).ok();
            doc.objects.insert(node.0, Object::Dictionary(node.1));
        }
        while let Some(next) = wanted.pop() {
            if doc.objects.contains_key(&next) || self.nodes.contains_key(&next) {
                continue;
            }
            if doc.objects.len() >= MAX_OBJECTS_PER_PAGE {
                return Err(Fault::Limit(format!(
                    "a page draws with more than {MAX_OBJECTS_PER_PAGE} objects (the limit)"
                )));
            }
            let kept = known(next);
            let object = self.get(next, !kept)?;
            let dictionary = match &object {
                Object::Dictionary(d) => Some(d),
                Object::Stream(s) => Some(&s.dict),
                _ => None,
            };
            if dictionary
                .and_then(|d| d.get(b"Type").ok())
                .and_then(|t| t.as_name().ok())
                .is_some_and(|t| t == b"Page" || t == b"Pages")
            {
                continue;
            }
            if !kept {
                references(&object, &mut wanted);
            }
            doc.objects.insert(next, object);
        }
        Ok(doc)
    }
}

/// The references inside an object (a dictionary's `/Parent` excepted: pages are not followed
/// up the tree from their resources).
fn references(object: &Object, out: &mut Vec<ObjectId>) {
    match object {
        Object::Reference(id) => out.push(*id),
        Object::Array(items) => items.iter().for_each(|item| references(item, out)),
        Object::Dictionary(dictionary) => references_in(dictionary, out),
        Object::Stream(stream) => references_in(&stream.dict, out),
        _ => {}
    }
}

fn references_in(dictionary: &Dictionary, out: &mut Vec<ObjectId>) {
    for (key, value) in dictionary.iter() {
        if key != b"Parent" {
            references(value, out);
        }
    }
}

/// What starts where an object is read.
#[derive(Clone, Copy)]
enum Expect {
    /// A bare object (a trailer).
    Bare,
    /// `n g obj ... endobj`, with the number `n` when it is known.
    Indirect(Option<u32>),
}

enum Parsed {
    Object(Object),
    /// A stream's dictionary, and where its data starts.
    Stream(Dictionary, usize),
    /// The bytes end before the object does.
    Short,
    Bad,
}

/// An object from the start of `bytes`, as `expect`ed. `whole` says the bytes run to the end
/// of the file (then nothing more can be read).
fn parse_object(
    bytes: &[u8],
    expect: Expect,
    whole: bool,
    read: &mut dyn FnMut(&mut Tokens<'_>) -> Option<Object>,
) -> Parsed {
    let mut tokens = Tokens::new(bytes);
    let short = |tokens: &Tokens| {
        if !whole && tokens.position() >= bytes.len() { Parsed::Short } else { Parsed::Bad }
    };
    if let Expect::Indirect(number) = expect {
        let found = std::str::from_utf8(tokens.keyword()).ok().and_then(|s| s.parse::<u32>().ok());
        let (_generation, obj) = (tokens.keyword(), tokens.keyword());
        if obj != b"obj" {
            return short(&tokens);
        }
        if found.is_none() || number.is_some_and(|n| found != Some(n)) {
            return Parsed::Bad;
        }
    }
    let Some(object) = read(&mut tokens) else { return short(&tokens) };
    let after = tokens.keyword();
    if after.is_empty() && !whole && tokens.position() >= bytes.len() {
        return Parsed::Short;
    }
    match (after, object) {
        (b"stream", Object::Dictionary(dictionary)) => {
            let mut at = tokens.position();
            if bytes.get(at) == Some(&b'\r') {
                at += 1;
            }
            if bytes.get(at) == Some(&b'\n') {
                at += 1;
            }
            Parsed::Stream(dictionary, at)
        }
        (b"stream", _) => Parsed::Bad,
        (_, object) => Parsed::Object(object),
    }
}

#[cfg(test)]
mod tests {
    use lopdf::{SaveOptions, dictionary};

    use super::super::reading::{Gather, PageFacts, read, read_lazily};
    use super::*;

    /// Each page's MediaBox corner and its marks of ink.
    #[derive(Default)]
    struct Seen(Vec<((f32, f32), usize)>);

    impl Gather for Seen {
        fn page(&mut self, _: usize, page: &PageFacts) {
            self.0.push(((page.media.x1, page.media.y1), page.ink().len()));
        }
    }

    /// Three letter pages, each drawing an image of its own, inheriting their MediaBox and
    /// resources (one font for all) from the page tree. Returns the file and the images' ids.
    fn three_pages(
        dir: &Path,
        name: &str,
        save: fn(&mut Document, &Path),
    ) -> (std::path::PathBuf, Vec<ObjectId>) {
        let mut doc = Document::with_version("1.7");
        let tree = doc.new_object_id();
        let font =
            doc.add_object(dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica" });
        let mut kids = Vec::new();
        let mut images = Vec::new();
        for page in 0..3u8 {
            let image = doc.add_object(Stream::new(
                dictionary! {
                    "Type" => "XObject", "Subtype" => "Image", "Width" => 4, "Height" => 1,
                    "ColorSpace" => "DeviceGray", "BitsPerComponent" => 8,
                },
                vec![page, 0, 0, 0],
            ));
            let resources = dictionary! { "XObject" => dictionary! { "Im" => image }, "Font" => dictionary! { "F" => font } };
            let content = doc.add_object(Stream::new(
                Dictionary::new(),
                b"q 400 0 0 100 100 300 cm /Im Do Q BT /F 12 Tf 100 100 Td (page) Tj ET".to_vec(),
            ));
            kids.push(Object::from(doc.add_object(dictionary! {
                "Type" => "Page", "Parent" => tree, "Contents" => content, "Resources" => resources,
            })));
            images.push(image);
        }
        doc.objects.insert(
            tree,
            Object::Dictionary(dictionary! {
                "Type" => "Pages", "Kids" => kids, "Count" => 3,
                "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
            }),
        );
        let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => tree });
        doc.trailer.set("Root", catalog);
        let path = dir.join(name);
        save(&mut doc, &path);
        (path, images)
    }

    /// Writes a document one way.
    type Save = fn(&mut Document, &Path);

    fn classic(doc: &mut Document, path: &Path) {
        doc.reference_table.cross_reference_type = lopdf::xref::XrefType::CrossReferenceTable;
        doc.save(path).unwrap();
    }

    fn xref_stream(doc: &mut Document, path: &Path) {
        doc.save(path).unwrap();
    }

    fn object_streams(doc: &mut Document, path: &Path) {
        let options = SaveOptions::builder().use_object_streams(true).use_xref_streams(true).build();
        doc.save_with_options(&mut File::create(path).unwrap(), options).unwrap();
    }

    #[test]
    fn each_page_is_read_with_its_own_objects_only_whatever_the_xref() {
        let dir = tempfile::tempdir().unwrap();
        let savers: [(&str, Save); 3] =
            [("table", classic), ("stream", xref_stream), ("objstm", object_streams)];
        for (name, save) in savers {
            let (path, images) = three_pages(dir.path(), &format!("{name}.pdf"), save);
            let mut file = LazyFile::open(&path).unwrap_or_else(|_| panic!("{name}: the xref reads"));
            let pages = file.page_ids().unwrap_or_else(|_| panic!("{name}: the page tree reads"));
            assert_eq!(pages.len(), 3, "{name}");
            let doc =
                file.page_document(pages[1], &|_| false).unwrap_or_else(|_| panic!("{name}: page 2 reads"));
            let image = doc.get_object(images[1]).and_then(Object::as_stream).unwrap();
            assert_eq!(image.content, [1, 0, 0, 0], "{name}: page 2's image, data and all");
            assert!(
                !doc.has_object(images[0]) && !doc.has_object(images[2]),
                "{name}: no other page's image"
            );
            assert!(doc.get_page_contents(pages[1]).len() == 1, "{name}");
            // An object whose findings are kept comes as its dictionary alone.
            let doc =
                file.page_document(pages[2], &|id| id == images[2]).unwrap_or_else(|_| panic!("{name}"));
            let image = doc.get_object(images[2]).and_then(Object::as_stream).unwrap();
            assert!(image.content.is_empty() && image.dict.has(b"Width"), "{name}");

            let file = LazyFile::open(&path).ok().unwrap();
            let (count, seen) = read_lazily(file, &|_| Seen::default()).unwrap_or_else(|_| panic!("{name}"));
            // The inherited MediaBox; the image and the text, by the inherited resources.
            assert_eq!((count, seen.0), (3, vec![((612.0, 792.0), 2); 3]), "{name}");
        }
    }

    #[test]
    fn a_file_whose_offsets_are_off_is_read_whole_by_lopdf() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = three_pages(dir.path(), "shifted.pdf", classic);
        let mut bytes = std::fs::read(&path).unwrap();
        // A comment after the header moves every object three bytes past where the xref says.
        let header = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
        bytes.splice(header..header, *b"%x\n");
        std::fs::write(&path, &bytes).unwrap();
        let lazily = LazyFile::open(&path).and_then(|file| read_lazily(file, &|_| Seen::default()));
        assert!(matches!(lazily, Err(Fault::Malformed(_))), "the strict reader refuses it");
        let (facts, seen) = read(&path, |_| Seen::default()).unwrap();
        assert_eq!((facts.pages, seen.0), (3, vec![((612.0, 792.0), 2); 3]), "lopdf repairs it");
    }
}
