//! The most work preflight does for one document, so a small hostile PDF (a decompression bomb,
//! a page tree shared a thousand ways, forms drawn inside forms, millions of operators) ends in
//! seconds and a bounded amount of memory. Over a limit, the rules that read the page's content
//! report it as "could not check", naming the limit; the other pages and rules are still checked.
//!
//! Each is far above what a real book needs: a 600-page coloring book, or a page of dense vector
//! art (a million operators), stays well inside them. Every object is read once: a page, form,
//! image or font used again reuses what was found the first time.

/// Bytes one stream may decode to: a page's content (its streams together), a form's content, an
/// embedded font, and every stream lopdf decodes while loading (object and xref streams)...
pub const MAX_DECODED_BYTES: usize = 32 << 20;
/// ...and all of them together, for the document.
pub const MAX_DECODED_BYTES_PER_DOCUMENT: u64 = 1 << 30;

/// Content operators walked for one page, its forms included...
pub const MAX_OPERATORS_PER_PAGE: u64 = 5_000_000;
/// ...and for the whole document.
pub const MAX_OPERATORS_PER_DOCUMENT: u64 = 50_000_000;

/// Marks of ink (a painted subpath, a line of text, an image) found on one page or in one form,
/// and in the whole document: what the rules are checked against is held in memory.
pub const MAX_INK_PER_PAGE: usize = 1_000_000;
pub const MAX_INK_PER_DOCUMENT: usize = 1_500_000;

/// Forms drawn inside forms, this deep.
pub const MAX_FORM_DEPTH: usize = 12;

/// Graphics states saved (`q`) and not yet restored. The PDF reference suggests 28; real files
/// that forget their `Q`s go deeper, hostile ones far deeper.
pub const MAX_SAVED_STATES: usize = 256;

/// Bytes one image decodes to, and all of a document's images together. Images are read a row
/// at a time, so these bound the time spent, not the memory; a row is at most
/// [`MAX_IMAGE_ROW_BYTES`].
pub const MAX_IMAGE_BYTES: u64 = 512 << 20;
pub const MAX_IMAGE_BYTES_PER_DOCUMENT: u64 = 4 << 30;
pub const MAX_IMAGE_ROW_BYTES: u64 = 1 << 20;

/// Reading the file on demand (see `file`): bytes one object may take outside its stream data
/// (a dictionary or an array)...
pub const MAX_OBJECT_BYTES: u64 = 16 << 20;
/// ...the stream data of one object, as stored (before decoding)...
pub const MAX_STREAM_BYTES: u64 = 64 << 20;
/// ...what one page's objects take together, and what the whole document reads (an object used
/// by many pages is read again for each page whose findings were not kept)...
pub const MAX_READ_BYTES_PER_PAGE: u64 = 128 << 20;
pub const MAX_READ_BYTES_PER_DOCUMENT: u64 = 4 << 30;
/// ...and how many objects one page draws with.
pub const MAX_OBJECTS_PER_PAGE: usize = 100_000;
