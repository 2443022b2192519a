//! Reading PDFs back as a user's tools would: lopdf for the structure, the fax crate's
//! decoder for the Group 4 page images.

use std::path::Path;

use lopdf::{Document, ObjectId};

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
