//! Output names from templates like `{section}_{number:03}_{description}.png`, shared by the
//! sinks that name files or objects (disk, r2).
//!
//! Values come from prompt files, which may be hostile: every substituted value is sanitised
//! to one safe path component (no separators, no `..`, no control or reserved characters, no
//! Windows device names), while the template itself, written by the pipeline author, may use
//! `/` to make sub-folders.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use serde_json::Value;

use crate::engine::item::Item;

/// Longest substituted value kept, in characters, so names stay under filesystem limits.
const MAX_VALUE_CHARS: usize = 80;

/// Where a sink keeps the candidates of a page the judging stage rejected, paid for and kept.
pub const REJECTED_DIR: &str = "rejected";
/// Where a sink keeps acceptable candidates that lost to a better one (best of N).
pub const CANDIDATES_DIR: &str = "candidates";

/// The name of candidate `number` of the page named `stem` when it is not the page:
/// `rejected/STEM.cN.EXT` when the judging stage rejected it, `candidates/STEM.cN.EXT`
/// otherwise. The disk sink and the r2 sink name them alike, so the bucket mirrors the folder.
pub fn aside_name(stem: &str, number: u64, rejected: bool, extension: &str) -> String {
    let folder = if rejected { REJECTED_DIR } else { CANDIDATES_DIR };
    format!("{folder}/{stem}.c{number}.{extension}")
}

/// Placeholders every template may use, for error messages.
pub const PLACEHOLDERS: &str = "{section}, {number}, {description}, {key}, {seq}, or any field of the prompt";

/// A parsed output-name template.
#[derive(Clone, Debug)]
pub struct NameTemplate {
    parts: Vec<Part>,
}

#[derive(Clone, Debug)]
enum Part {
    Literal(String),
    Field { name: String, zero_pad: usize },
}

impl NameTemplate {
    /// Parses and checks a template: balanced braces, a known width syntax, and no absolute
    /// path or `..` segment in its literal parts.
    pub fn parse(template: &str) -> Result<Self, String> {
        if template.trim().is_empty() {
            return Err("the name template is empty".into());
        }
        if template.starts_with('/') || template.starts_with('\\') {
            return Err(format!("name template {template:?} must be a relative path"));
        }
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .map(|c| open + c)
                .ok_or_else(|| format!("name template {template:?} has an unclosed '{{'"))?;
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            parts.push(parse_field(&rest[open + 1..close], template)?);
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("name template {template:?} has a '}}' without its '{{'"));
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        let literal: String = parts
            .iter()
            .filter_map(|p| if let Part::Literal(s) = p { Some(s.as_str()) } else { None })
            .collect();
        if literal.contains(':') {
            return Err(format!("name template {template:?} must be a relative path (no ':')"));
        }
        if literal.split(['/', '\\']).any(|seg| seg == "..") {
            return Err(format!("name template {template:?} must not climb out of the output directory"));
        }
        Ok(NameTemplate { parts })
    }

    /// The folder the template always names first (`pages` in `pages/{key}.png`), if any.
    pub fn leading_folder(&self) -> Option<&str> {
        match self.parts.first() {
            Some(Part::Literal(text)) => text.split_once(['/', '\\']).map(|(folder, _)| folder),
            _ => None,
        }
    }

    /// The relative path for an item, with `/` separators. Fails when the template names a
    /// field the item does not have.
    pub fn render(&self, item: &Item) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Field { name, zero_pad } => {
                    let value = field_value(item, name).ok_or_else(|| {
                        format!("the name template uses {{{name}}}, which item {} does not have", item.key)
                    })?;
                    let value = match value.parse::<u64>() {
                        Ok(n) if *zero_pad > 0 => format!("{n:0width$}", width = *zero_pad),
                        _ => value,
                    };
                    out.push_str(&sanitize_component(&value));
                }
            }
        }
        Ok(out.replace('\\', "/").split('/').map(cap_component).collect::<Vec<_>>().join("/"))
    }
}

/// Longest path component a template renders, in bytes (the output-path rule's): with a sink's
/// own extension (up to 5 bytes, `.json`) and a clash suffix (`_2`...) it stays far under the
/// 255 bytes file systems allow.
pub const MAX_COMPONENT_BYTES: usize = crate::engine::output_path::MAX_SEGMENT_BYTES;

/// A component cut to [`MAX_COMPONENT_BYTES`] on a character boundary, its extension kept and a
/// short hash of the whole text added, so two long names that start alike stay apart.
fn cap_component(component: &str) -> String {
    if component.len() <= MAX_COMPONENT_BYTES {
        return component.to_owned();
    }
    use sha2::Digest as _;
    let hash = hex::encode(&sha2::Sha256::digest(component.as_bytes())[..4]);
    let extension = match component.rfind('.') {
        Some(dot) if component.len() - dot <= 10 => &component[dot..],
        _ => "",
    };
    let mut end = MAX_COMPONENT_BYTES - extension.len() - hash.len() - 1;
    while !component.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}~{hash}{extension}", &component[..end])
}

/// A template's names made unique over a batch. Names are known from the listing, so clashes
/// (a repeated `image_number`, a template without `{number}`) are found before anything is
/// generated: in listing order, the first item keeps the name, each later one gets `_2`, `_3`...
/// before its extension, so no page is ever written over another. Names differing only in case
/// clash too (one file on macOS and Windows).
#[derive(Debug)]
pub struct UniqueNames {
    template: NameTemplate,
    /// Item key to suffix, for the items whose name clashed; filled by [`UniqueNames::plan`].
    suffixes: RwLock<HashMap<String, u32>>,
}

impl UniqueNames {
    /// Names from `template`; without [`UniqueNames::plan`], clashing items share a name.
    pub fn new(template: NameTemplate) -> Self {
        UniqueNames { template, suffixes: RwLock::default() }
    }

    /// Finds the clashes among every listed item (a sink's `begin`); an item whose name does
    /// not render is left to fail when written.
    pub fn plan(&self, items: &mut dyn Iterator<Item = Item>) {
        let mut taken = HashSet::new();
        let mut clashed = Vec::new();
        for item in items {
            let Ok(name) = self.template.render(&item) else { continue };
            if !taken.insert(fold(&name)) {
                clashed.push((item.key, name));
            }
        }
        let mut suffixes = HashMap::new();
        for (key, name) in clashed {
            let n = (2..).find(|&n| taken.insert(fold(&with_suffix(&name, n)))).unwrap_or(2);
            tracing::warn!(
                "item {key}: its name {name:?} is another item's; writing it as {:?}",
                with_suffix(&name, n)
            );
            suffixes.insert(key, n);
        }
        *self.suffixes.write().unwrap_or_else(|e| e.into_inner()) = suffixes;
    }

    /// The item's unique relative path, with `/` separators.
    pub fn render(&self, item: &Item) -> Result<String, String> {
        let name = self.template.render(item)?;
        Ok(match self.suffixes.read().unwrap_or_else(|e| e.into_inner()).get(&item.key) {
            Some(&n) => with_suffix(&name, n),
            None => name,
        })
    }
}

/// A name as a case-insensitive file system compares it, without its extension (a sink writes
/// one stem with several extensions).
fn fold(name: &str) -> String {
    strip_extension(name).to_lowercase()
}

/// The name without the extension of its last component.
pub fn strip_extension(name: &str) -> &str {
    let file_start = name.rfind('/').map_or(0, |i| i + 1);
    match name[file_start..].rfind('.') {
        Some(dot) if dot > 0 => &name[..file_start + dot],
        _ => name,
    }
}

/// `name` with `_n` before the extension of its last component.
fn with_suffix(name: &str, n: u32) -> String {
    let stem = strip_extension(name);
    format!("{stem}_{n}{}", &name[stem.len()..])
}

fn parse_field(spec: &str, template: &str) -> Result<Part, String> {
    let (name, width) = match spec.split_once(':') {
        Some((name, width)) => (name, Some(width)),
        None => (spec, None),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "name template {template:?} has a bad placeholder {{{spec}}}; use {PLACEHOLDERS}"
        ));
    }
    let zero_pad = match width {
        None => 0,
        Some(w) => w.parse::<usize>().ok().filter(|n| *n <= 20).ok_or_else(|| {
            format!("name template {template:?}: {{{spec}}} needs a width like {{{name}:03}}")
        })?,
    };
    Ok(Part::Field { name: name.to_owned(), zero_pad })
}

/// The text of a field: the prompt's own fields first, then extra prompt fields, then facts.
fn field_value(item: &Item, name: &str) -> Option<String> {
    let prompt = &item.prompt;
    match name {
        "section" => Some(if prompt.section.is_empty() { "page".to_owned() } else { prompt.section.clone() }),
        "number" | "image_number" | "page_number" => Some(prompt.number.to_string()),
        "description" => Some(prompt.description.clone()),
        "key" => Some(item.key.clone()),
        "seq" => Some(item.seq.to_string()),
        _ => prompt.extra.get(name).or_else(|| item.facts.get(name)).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
    }
}

/// Makes any text one safe path component on Linux, macOS and Windows: spaces become `_`,
/// separators and reserved or control characters become `_`, bidi controls go, leading dots and trailing dots
/// or spaces go, device names (`CON`, `NUL`, `COM1`...) get a `_` prefix, and the length is capped.
pub fn sanitize_component(value: &str) -> String {
    let mapped: String = value
        .chars()
        .filter(|c| !is_bidi_control(*c))
        .map(|c| match c {
            c if c.is_whitespace() => '_',
            '/' | '\\' | '<' | '>' | ':' | '"' | '|' | '?' | '*' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .take(MAX_VALUE_CHARS)
        .collect();
    let trimmed = mapped.trim_start_matches('.').trim_end_matches(['.', ' ']);
    let mut safe = if trimmed.is_empty() { "_".to_owned() } else { trimmed.to_owned() };
    let stem = safe.split('.').next().unwrap_or_default().to_ascii_uppercase();
    let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit());
    if reserved {
        safe.insert(0, '_');
    }
    safe
}

/// Characters that reorder the text around them (U+202E shows `gnp.exe` as `exe.png`): a file
/// name must read as it is.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::item::Prompt;

    fn item(section: &str, number: u32, description: &str) -> Item {
        Item::new(
            0,
            Prompt {
                section: section.into(),
                number,
                image_prompt: "a cat".into(),
                description: description.into(),
                ..Prompt::default()
            },
        )
    }

    fn render(template: &str, item: &Item) -> String {
        NameTemplate::parse(template).unwrap().render(item).unwrap()
    }

    #[test]
    fn renders_the_original_scripts_names() {
        let name = render("{section}_{number:03}_{description}.png", &item("animals", 7, "happy cat"));
        assert_eq!(name, "animals_007_happy_cat.png");
    }

    #[test]
    fn hostile_descriptions_stay_inside_one_component() {
        for hostile in
            ["../../etc/passwd", "..\\..\\windows\\system32", "/abs/path", "a\0b\nc", "CON", "nul.txt", "..."]
        {
            let name = render("{description}.png", &item("s", 1, hostile));
            assert!(!name.contains('/') && !name.contains('\\'), "{hostile:?} -> {name:?}");
            assert!(!name.starts_with('.'), "{hostile:?} -> {name:?}");
            assert!(!name.chars().any(char::is_control), "{hostile:?} -> {name:?}");
            let stem = name.split('.').next().unwrap().to_ascii_uppercase();
            assert!(!["CON", "NUL"].contains(&stem.as_str()), "{hostile:?} -> {name:?}");
        }
    }

    #[test]
    fn bidi_controls_are_stripped() {
        let name = render("{description}.png", &item("s", 1, "cat\u{202E}gnp.exe\u{2066}x\u{200F}"));
        assert_eq!(name, "catgnp.exex.png");
    }

    #[test]
    fn long_values_are_capped() {
        let name = render("{description}", &item("s", 1, &"x".repeat(1000)));
        assert_eq!(name.chars().count(), MAX_VALUE_CHARS);
    }

    #[test]
    fn a_long_multibyte_component_is_capped_in_bytes_on_a_char_boundary_and_stays_unique() {
        let long = |last: char| format!("{}{last}", "é".repeat(40));
        let template = "{section}_{number:03}_{description}_{extra}.png";
        let named = |d: char| {
            let mut item = item(&"猫".repeat(300), 7, &long(d));
            item.prompt.extra.insert("extra".into(), Value::String("🐈".repeat(80)));
            render(template, &item)
        };
        let (a, b) = (named('a'), named('b'));
        assert!(a.len() <= MAX_COMPONENT_BYTES && a.ends_with(".png"), "{} bytes: {a}", a.len());
        assert!(a.starts_with(&"猫".repeat(60)), "{a}");
        assert_ne!(a, b, "names that differ only past the cap stay apart");
        assert_eq!(
            render("{section}/{description}.png", &item("sea", 1, "x")),
            "sea/x.png",
            "short names as they were"
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(NameTemplate::parse("../{key}.png").is_err());
        assert!(NameTemplate::parse("/tmp/{key}.png").is_err());
        assert!(NameTemplate::parse("{key.png").is_err());
        assert!(NameTemplate::parse("{number:abc}.png").is_err());
        assert!(NameTemplate::parse("{bad-name}.png").is_err());
    }

    #[test]
    fn unknown_fields_name_the_item() {
        let template = NameTemplate::parse("{colour}.png").unwrap();
        let err = template.render(&item("animals", 2, "dog")).unwrap_err();
        assert!(err.contains("{colour}") && err.contains("animals-00002"), "{err}");
    }

    #[test]
    fn template_subfolders_are_kept() {
        assert_eq!(render("{section}/{number:02}.png", &item("sea", 3, "x")), "sea/03.png");
    }

    #[test]
    fn extension_is_removed_from_the_last_segment_only() {
        assert_eq!(strip_extension("animals_007_cat.png"), "animals_007_cat");
        assert_eq!(strip_extension("v1.2/page"), "v1.2/page");
        assert_eq!(strip_extension("sea/03.png"), "sea/03");
    }
}
