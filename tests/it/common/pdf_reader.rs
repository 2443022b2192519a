//! Reading PDFs back as a user's tools would: lopdf for the structure, the fax crate's
//! decoder for the Group 4 page images.

use std::path::Path;

use lopdf::{Document, Object, ObjectId};

pub fn load(path: &Path) -> Document {
    Document::load(path).unwrap_or_else(|e| panic!("lopdf cannot read {}: {e}", path.display()))
}

pub fn pages(doc: &Document) -> Vec<ObjectId> {
    doc.get_pages().into_values().collect()
}

/// The one image of a page: its stream dictionary and raw (still encoded) data.
pub fn page_image(doc: &Document, page: ObjectId) -> Option<(lopdf::Dictionary, Vec<u8>)> {
    let images = doc.get_page_images(page).unwrap_or_default();
    assert!(images.len() <= 1, "a page holds {} images", images.len());
    images.first().map(|i| (i.origin_dict.clone(), i.content.to_vec()))
}

/// Decodes a Group 4 stream back into rows of booleans, true = black.
pub fn decode_g4(data: &[u8], width: u32, height: u32) -> Vec<Vec<bool>> {
    let mut rows = Vec::new();
    let decoded = fax::decoder::decode_g4(data.iter().copied(), width, Some(height), |transitions| {
        rows.push(fax::decoder::pels(transitions, width).map(|c| c == fax::Color::Black).collect());
    });
    assert!(decoded.is_some(), "the Group 4 stream does not decode");
    rows
}

/// The fonts a page's resources name, each with its descendant CID font and font file, as
/// `pdffonts` reads them.
pub fn embedded_fonts(doc: &Document, page: ObjectId) -> Vec<(String, bool)> {
    let deref = |o: &Object| match o {
        Object::Reference(id) => doc.get_object(*id).ok().cloned().unwrap_or(Object::Null),
        other => other.clone(),
    };
    let page = doc.get_dictionary(page).unwrap_or_else(|e| panic!("{e}"));
    let resources = deref(page.get(b"Resources").unwrap_or(&Object::Null));
    let fonts = resources.as_dict().ok().and_then(|r| r.get(b"Font").ok()).map(deref);
    let mut found = Vec::new();
    for (_, font) in fonts.as_ref().and_then(|f| f.as_dict().ok()).into_iter().flat_map(|f| f.iter()) {
        let font = deref(font);
        let font = font.as_dict().unwrap_or_else(|e| panic!("{e}"));
        let name =
            font.get(b"BaseFont").and_then(|n| n.as_name()).map(|n| String::from_utf8_lossy(n).into_owned());
        let descendant =
            font.get(b"DescendantFonts").ok().and_then(|d| d.as_array().ok()).and_then(|d| d.first());
        let descriptor = descendant
            .map(deref)
            .and_then(|d| d.as_dict().ok().and_then(|d| d.get(b"FontDescriptor").ok()).map(deref));
        let file =
            descriptor.and_then(|d| d.as_dict().ok().map(|d| d.has(b"FontFile2") || d.has(b"FontFile3")));
        found.push((name.unwrap_or_default(), file.unwrap_or(false)));
    }
    found
}
