//! How reference images reach a model: which of its inputs takes images, and what an image
//! there does (the picture to start from or edit, a character to keep, a style to follow).
//! Each model names its own input for each, so the catalogue, not the pipeline, decides.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a reference image does for a model.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceKind {
    /// The picture the model starts from or edits: Kontext's image, FLUX image-to-image (with
    /// `strength`), an image prompt.
    Image,
    /// A character to keep from page to page (Ideogram's character reference).
    Character,
    /// A style to follow (Ideogram's style references).
    Style,
}

impl ReferenceKind {
    /// The word used in options and messages.
    pub fn word(self) -> &'static str {
        match self {
            ReferenceKind::Image => "image",
            ReferenceKind::Character => "character",
            ReferenceKind::Style => "style",
        }
    }

    /// A guess from an input's name, for a model read from fal's OpenAPI schema.
    pub(super) fn guess(input: &str) -> ReferenceKind {
        if input.contains("style") {
            ReferenceKind::Style
        } else if input.contains("reference") || input.contains("character") {
            ReferenceKind::Character
        } else {
            ReferenceKind::Image
        }
    }
}

impl fmt::Display for ReferenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// One input of a model that takes images (a URL, or a list of them for a list input; the
/// input's own `max` bounds the list).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(from = "Written")]
pub struct ImageInput {
    /// The input's name, e.g. `image_url`.
    pub input: String,
    /// What an image there does.
    pub kind: ReferenceKind,
}

/// An image input as a catalogue entry writes it: its name alone (an image to start from), or
/// its name and kind.
#[derive(Deserialize)]
#[serde(untagged)]
enum Written {
    Name(String),
    Full { input: String, kind: ReferenceKind },
}

impl From<Written> for ImageInput {
    fn from(written: Written) -> Self {
        match written {
            Written::Name(input) => ImageInput { input, kind: ReferenceKind::Image },
            Written::Full { input, kind } => ImageInput { input, kind },
        }
    }
}

impl fmt::Display for ImageInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.input, self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_names_the_input_alone_or_with_its_kind() {
        let read: Vec<ImageInput> =
            serde_json::from_str(r#"["image_url", {"input": "image_urls", "kind": "style"}]"#).unwrap();
        assert_eq!(read[0], ImageInput { input: "image_url".into(), kind: ReferenceKind::Image });
        assert_eq!(read[1].kind, ReferenceKind::Style);
        assert_eq!(ReferenceKind::guess("reference_image_urls"), ReferenceKind::Character);
        assert_eq!(ReferenceKind::guess("style_image_urls"), ReferenceKind::Style);
    }
}
