//! Text a pipeline prints that no font can: found before anything runs (`inkflow validate` and
//! the start of `inkflow run`), so a title or an author's name never prints as empty boxes
//! unannounced.

use std::path::Path;

use serde_json::Value;

use super::{Font, Fonts};
use crate::engine::diagnostic::Diagnostic;
use crate::engine::pipeline::Pipeline;

/// The options of a kind that are printed as text, by kind.
fn printed_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "pdf" => crate::stages::pdf::PRINTED_FIELDS,
        "cover" => crate::stages::pdf::cover::PRINTED_FIELDS,
        _ => &[],
    }
}

/// A warning for each printed option with characters that neither the component's font nor a
/// bundled fallback has, naming each character and the option.
pub fn unprintable_text(pipeline: &Pipeline) -> Vec<Diagnostic> {
    let mut warnings = Vec::new();
    for component in &pipeline.components {
        let fields = printed_fields(&component.kind);
        if fields.is_empty() {
            continue;
        }
        // A font that cannot be read fails the build with its own message; until then the
        // built-in one stands in.
        let font = component
            .options
            .get("font")
            .and_then(Value::as_str)
            .and_then(|path| Font::load(Path::new(path)).ok())
            .unwrap_or_else(Font::builtin);
        let fonts = Fonts::with_fallbacks(font);
        for field in fields {
            let Some(text) = component.options.get(*field).and_then(Value::as_str) else { continue };
            let missing = fonts.uncovered(text);
            if missing.is_empty() {
                continue;
            }
            let characters: Vec<String> =
                missing.iter().map(|c| format!("U+{:04X} {c}", u32::from(*c))).collect();
            let section = format!("{}s", component.role.noun());
            let message = format!(
                "warning: `{section}.{}.{field}`: no font has a glyph for {}: it prints as an empty box \
                 (name a `font` that has it)",
                component.id,
                characters.join(", ")
            );
            warnings.push(
                Diagnostic::new(&pipeline.file, component.pos, message)
                    .about(component.role.noun(), &component.id),
            );
        }
    }
    warnings
}
