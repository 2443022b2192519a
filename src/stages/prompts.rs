//! The `prompts` source: reads the prompt files of the original scripts (a `{"prompts": [...]}`
//! book, a list of scenes) and JSON Lines, so existing prompt files work unchanged.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::engine::declared_kind::TypedKind;
use crate::engine::item::{Item, Prompt};
use crate::engine::media::{Media, Payload};
use crate::engine::options::parse_declared;
use crate::engine::pipeline_path::PipelinePath;
use crate::engine::stage::{
    BuildContext, Component, Listing, OptionsError, OutputMedia, Role, Source, StageError,
};

/// Kind `prompts`: one item per prompt of a JSON or JSON Lines file.
pub struct Prompts;

/// The `prompts` options.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The prompt file (.json or .jsonl).
    path: PipelinePath,
    /// Take only the first N prompts (all when not given).
    #[serde(default)]
    limit: Option<usize>,
    /// A prompt for the cover's front art, added after the pages: drawn like any page (same
    /// model, same stages, paid once, resumed), left out of the pdf book, and used by a
    /// `cover` sink. An entry of the file with "cover": true is one too.
    #[serde(default)]
    cover_prompt: Option<String>,
}

impl TypedKind for Prompts {
    const NAME: &'static str = "prompts";
    const ROLE: Role = Role::Source;
    const SUMMARY: &'static str =
        "Reads prompts from a JSON book ({\"prompts\": [...]}), a list of scenes, or JSON Lines";
    const ACCEPTS: &'static [Media] = &[];
    const OUTPUT: OutputMedia = OutputMedia::Fixed(Media::Prompt);
    type Options = Options;
    type Parsed = Options;

    fn parse(&self, options: &Value) -> Result<Options, OptionsError> {
        let options: Options = parse_declared(options)?;
        if options.path.as_os_str().is_empty() {
            return Err(OptionsError::at("path", "the prompt file path is empty"));
        }
        if options.cover_prompt.as_deref().is_some_and(|p| p.trim().is_empty()) {
            return Err(OptionsError::at("cover_prompt", "the cover prompt is empty"));
        }
        Ok(options)
    }

    fn build_from(&self, options: Options, _ctx: &BuildContext) -> anyhow::Result<Component> {
        Ok(Component::Source(Arc::new(PromptFile {
            path: options.path.as_path().to_owned(),
            limit: options.limit,
            cover_prompt: options.cover_prompt,
        })))
    }
}

/// A built `prompts` source: the file is read when the engine lists the items.
struct PromptFile {
    path: PathBuf,
    limit: Option<usize>,
    cover_prompt: Option<String>,
}

impl Source for PromptFile {
    fn list(&self) -> anyhow::Result<Box<dyn Listing>> {
        let mut prompts = read_prompts(&self.path)?;
        if let Some(limit) = self.limit {
            prompts.truncate(limit);
        }
        if let Some(image_prompt) = &self.cover_prompt {
            prompts.push(cover(image_prompt.clone()));
        }
        Ok(Box::new(items(prompts)))
    }

    fn load(&self, _item: &mut Item) -> Result<Payload, StageError> {
        Ok(Payload::Prompt)
    }
}

/// Largest prompt file read (10,000 prompts take about 5 MB), so a wrong path such as
/// `/dev/zero` fails at once instead of filling memory.
const MAX_PROMPT_FILE_BYTES: u64 = 64 << 20;

/// Reads every prompt of a file: JSON Lines when it ends in `.jsonl` or `.ndjson`, JSON otherwise.
/// Errors name the file and the line and column (syntax) or the entry (a missing or mistyped field).
pub fn read_prompts(path: &Path) -> anyhow::Result<Vec<Prompt>> {
    use std::io::Read as _;
    let shown = path.display();
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_PROMPT_FILE_BYTES + 1).read_to_end(&mut bytes))
        .with_context(|| format!("cannot read prompt file {shown}"))?;
    if bytes.len() as u64 > MAX_PROMPT_FILE_BYTES {
        bail!("{shown}: a prompt file is at most {} MiB; this one is larger", MAX_PROMPT_FILE_BYTES >> 20);
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!("{shown}: not UTF-8 text (byte {} is not valid UTF-8)", e.utf8_error().valid_up_to())
    })?;
    // Editors on Windows start UTF-8 files with a byte order mark; it is not part of the JSON.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let lines = matches!(path.extension().and_then(|e| e.to_str()), Some("jsonl" | "ndjson"));
    if lines { parse_json_lines(path, text) } else { parse_json(path, text) }
}

/// Parses a JSON prompt file one entry at a time: the document is only checked and sliced
/// (`RawValue` borrows the text), so a 10,000-prompt file never exists as a whole JSON tree.
fn parse_json(path: &Path, text: &str) -> anyhow::Result<Vec<Prompt>> {
    let file = path.display();
    let syntax = |e: serde_json::Error| {
        anyhow::anyhow!("{file}:{}:{}: {}", e.line(), e.column(), without_position(&e))
    };
    let entries: Vec<&RawValue> = match text.trim_start().as_bytes().first() {
        Some(b'[') => serde_json::from_str(text).map_err(syntax)?,
        Some(b'{') => {
            let fields: HashMap<String, &RawValue> = serde_json::from_str(text).map_err(syntax)?;
            let Some((key, list)) =
                ["prompts", "scenes"].into_iter().find_map(|k| fields.get(k).map(|v| (k, v)))
            else {
                let mut keys: Vec<&str> = fields.keys().map(String::as_str).collect();
                keys.sort_unstable();
                bail!(
                    "{file}: expected {{\"prompts\": [...]}}, {{\"scenes\": [...]}} or a list of scenes; found an object with {}",
                    describe_keys(&keys)
                );
            };
            serde_json::from_str(list.get()).map_err(|_| {
                let got =
                    serde_json::from_str::<Value>(list.get()).map_or("something else", |v| type_name(&v));
                anyhow::anyhow!("{file}: \"{key}\" must be a list, got {got}")
            })?
        }
        _ => {
            let value: Value = serde_json::from_str(text).map_err(syntax)?;
            bail!("{file}: expected a list of prompts or an object holding one, got {}", type_name(&value))
        }
    };
    if entries.is_empty() {
        bail!("{file}: holds no prompts");
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            // Already checked as JSON above, so this parse cannot fail on syntax.
            let entry: Value = serde_json::from_str(raw.get()).map_err(syntax)?;
            parse_entry(&entry, i).map_err(|msg| anyhow::anyhow!("{file}: prompt #{}: {msg}", i + 1))
        })
        .collect()
}

fn parse_json_lines(path: &Path, text: &str) -> anyhow::Result<Vec<Prompt>> {
    let file = path.display();
    let mut prompts = Vec::new();
    for (index, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        let number = index + 1;
        let entry: Value = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("{file}:{number}:{}: {}", e.column(), without_position(&e)))?;
        let prompt =
            parse_entry(&entry, prompts.len()).map_err(|msg| anyhow::anyhow!("{file}:{number}: {msg}"))?;
        prompts.push(prompt);
    }
    if prompts.is_empty() {
        bail!("{file}: holds no prompts");
    }
    Ok(prompts)
}

/// serde_json appends " at line L column C" to its messages; the position is given up front instead.
fn without_position(e: &serde_json::Error) -> String {
    let message = e.to_string();
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message,
    }
}

/// Fields read into [`Prompt`]; any other field goes to `extra`.
const KNOWN_FIELDS: [&str; 5] = ["section", "image_number", "page_number", "image_prompt", "description"];

/// One entry of either shape. `index` (from 0) numbers entries that carry no number.
fn parse_entry(entry: &Value, index: usize) -> Result<Prompt, String> {
    let Value::Object(map) = entry else {
        return Err(format!("expected an object, got {}", type_name(entry)));
    };
    let image_prompt = string_field(map, "image_prompt")?.ok_or("missing \"image_prompt\"")?;
    if image_prompt.trim().is_empty() {
        return Err("\"image_prompt\" is empty".into());
    }
    let number = match number_field(map, "image_number")? {
        Some(n) => n,
        None => number_field(map, "page_number")?.unwrap_or(index as u32 + 1),
    };
    let extra: Map<String, Value> = map
        .iter()
        .filter(|(k, _)| !KNOWN_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if extra.get(Prompt::COVER_FIELD).is_some_and(|c| !c.is_boolean()) {
        return Err(format!("\"{}\" must be true or false", Prompt::COVER_FIELD));
    }
    Ok(Prompt {
        section: string_field(map, "section")?.unwrap_or_default(),
        number,
        image_prompt,
        description: string_field(map, "description")?.unwrap_or_default(),
        extra,
    })
}

/// The item of the `cover_prompt` option: section and description "cover", so its files are
/// named cover_000_cover.
fn cover(image_prompt: String) -> Prompt {
    let mut extra = Map::new();
    extra.insert(Prompt::COVER_FIELD.into(), Value::Bool(true));
    Prompt { section: "cover".into(), number: 0, image_prompt, description: "cover".into(), extra }
}

fn string_field(map: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("\"{name}\" must be a string, got {}", type_name(other))),
    }
}

fn number_field(map: &Map<String, Value>, name: &str) -> Result<Option<u32>, String> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("\"{name}\" must be a whole number from 0 to {}, got {n}", u32::MAX)),
        Some(other) => Err(format!("\"{name}\" must be a whole number, got {}", type_name(other))),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn describe_keys(keys: &[&str]) -> String {
    if keys.is_empty() {
        "no fields".into()
    } else {
        let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
        format!("fields {}", keys.join(", "))
    }
}

/// Items in file order; a key already taken (two prompts with the same section and number)
/// gets a `-2`, `-3`... suffix so outputs never overwrite each other.
pub(crate) fn items(prompts: Vec<Prompt>) -> Vec<Item> {
    let mut taken = HashSet::new();
    prompts
        .into_iter()
        .enumerate()
        .map(|(seq, prompt)| {
            let mut item = Item::new(seq as u64, prompt);
            let base = item.key.clone();
            let mut suffix = 1;
            while !taken.insert(item.key.clone()) {
                suffix += 1;
                item.key = format!("{base}-{suffix}");
            }
            item
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::stage::Kind;
    use std::io::Write;

    fn file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(name);
        std::fs::File::create(&path).and_then(|mut f| f.write_all(text.as_bytes())).expect("write");
        (dir, path)
    }

    fn list(path: &Path, limit: Option<usize>) -> anyhow::Result<Vec<Item>> {
        let mut options = serde_json::json!({ "path": path });
        if let Some(limit) = limit {
            options["limit"] = limit.into();
        }
        list_with(&options)
    }

    fn list_with(options: &Value) -> anyhow::Result<Vec<Item>> {
        let kind = Prompts;
        kind.check(options).map_err(|e| anyhow::anyhow!("{e}"))?;
        let ctx = BuildContext {
            id: "prompts".into(),
            inputs: vec![],
            output_dir: PathBuf::from("out"),
            pipeline_file: PathBuf::from("p.yaml"),
            dry_run: false,
            room_below: 4,
        };
        match kind.build(options, &ctx)? {
            Component::Source(source) => Ok(source.list()?.iter().collect()),
            _ => panic!("prompts must build a source"),
        }
    }

    fn error(name: &str, text: &str) -> String {
        let (_dir, path) = file(name, text);
        let err = list(&path, None).expect_err("the file is invalid");
        err.to_string()
    }

    #[test]
    fn a_byte_order_mark_is_accepted_and_an_endless_file_is_refused_at_the_cap() {
        let (_dir, path) = file("bom.json", "\u{feff}{\"prompts\": [{\"image_prompt\": \"a cat\"}]}");
        assert_eq!(read_prompts(&path).expect("a BOM is no error")[0].image_prompt, "a cat");
        #[cfg(unix)]
        {
            let err = read_prompts(Path::new("/dev/zero")).expect_err("no end").to_string();
            assert!(err.contains("at most 64 MiB"), "{err}");
        }
    }

    #[test]
    fn reads_the_book_format_with_extra_fields() {
        let (_dir, path) = file(
            "book.json",
            r#"{"title": "Zoo", "prompts": [
                {"section": "animals", "image_number": 1, "image_prompt": "a lion", "description": "lion", "style": "bold"},
                {"section": "animals", "image_number": 2, "image_prompt": "a zebra", "description": "zebra"}
            ]}"#,
        );
        let items = list(&path, None).expect("valid file");
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].prompt.section, "animals");
        assert_eq!(items[0].prompt.number, 1);
        assert_eq!(items[0].prompt.image_prompt, "a lion");
        assert_eq!(items[0].prompt.extra.get("style"), Some(&Value::from("bold")));
        assert_eq!(items[1].key, "animals-00002");
        assert!(items[1].prompt.extra.is_empty());
    }

    #[test]
    fn reads_scenes_as_a_list_or_under_a_key() {
        let scenes = r#"[{"page_number": 3, "description": "castle", "image_prompt": "a castle"},
                         {"page_number": 4, "description": "dragon", "image_prompt": "a dragon"}]"#;
        let (_a, list_path) = file("scenes.json", scenes);
        let (_b, keyed_path) = file("keyed.json", &format!("{{\"scenes\": {scenes}}}"));
        for path in [list_path, keyed_path] {
            let items = list(&path, None).expect("valid file");
            let numbers: Vec<u32> = items.iter().map(|i| i.prompt.number).collect();
            assert_eq!(numbers, [3, 4]);
            assert_eq!(items[1].prompt.description, "dragon");
            assert_eq!(items[0].prompt.section, "");
        }
    }

    #[test]
    fn reads_json_lines_of_either_shape_and_applies_the_limit() {
        let (_dir, path) = file(
            "p.jsonl",
            "{\"section\": \"sea\", \"image_number\": 1, \"image_prompt\": \"a whale\", \"description\": \"whale\"}\n\n\
             {\"page_number\": 2, \"image_prompt\": \"a crab\", \"description\": \"crab\"}\n\
             {\"image_prompt\": \"a shell\"}\n",
        );
        let items = list(&path, None).expect("valid file");
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].key, "sea-00001");
        assert_eq!(items[1].prompt.number, 2);
        assert_eq!(items[2].prompt.number, 3, "an entry without a number takes its position");
        assert_eq!(list(&path, Some(2)).expect("valid file").len(), 2);
    }

    #[test]
    fn duplicate_keys_get_a_suffix() {
        let (_dir, path) = file(
            "dup.json",
            r#"{"prompts": [
                {"section": "a", "image_number": 1, "image_prompt": "x"},
                {"section": "a", "image_number": 1, "image_prompt": "y"},
                {"section": "a", "image_number": 1, "image_prompt": "z"}]}"#,
        );
        let keys: Vec<String> = list(&path, None).expect("valid file").into_iter().map(|i| i.key).collect();
        assert_eq!(keys, ["a-00001", "a-00001-2", "a-00001-3"]);
    }

    #[test]
    fn syntax_errors_name_the_file_line_and_column() {
        let err = error("bad.json", "{\"prompts\": [\n  {\"image_prompt\": \"a cat\",}\n]}");
        assert!(err.contains("bad.json:2:"), "{err}");
        assert!(!err.contains(" at line "), "the position is not repeated: {err}");
        let err = error("bad.jsonl", "{\"image_prompt\": \"a\"}\n{\"image_prompt\": \n");
        assert!(err.contains("bad.jsonl:2:"), "{err}");
    }

    #[test]
    fn a_cover_prompt_comes_after_the_pages_it_is_not_counted_among() {
        let (_dir, path) =
            file("p.json", r#"[{"image_prompt": "a"}, {"image_prompt": "b"}, {"image_prompt": "c"}]"#);
        let options =
            serde_json::json!({ "path": path, "limit": 2, "cover_prompt": "a lion, bold outlines" });
        let items = list_with(&options).unwrap();
        let covers: Vec<bool> = items.iter().map(|i| i.prompt.is_cover()).collect();
        assert_eq!(covers, [false, false, true]);
        let cover = &items[2].prompt;
        assert_eq!((cover.section.as_str(), cover.description.as_str()), ("cover", "cover"));
        assert_eq!(cover.image_prompt, "a lion, bold outlines");

        let (_dir, path) = file(
            "q.json",
            r#"[{"image_prompt": "a", "cover": true}, {"image_prompt": "b", "cover": false}]"#,
        );
        let items = list_with(&serde_json::json!({ "path": path })).unwrap();
        assert_eq!(items.iter().map(|i| i.prompt.is_cover()).collect::<Vec<_>>(), [true, false]);

        let err = error("r.json", r#"[{"image_prompt": "a", "cover": "yes"}]"#);
        assert!(err.contains("prompt #1: \"cover\" must be true or false"), "{err}");
        let (_dir, path) = file("s.json", r#"[{"image_prompt": "a"}]"#);
        let err = list_with(&serde_json::json!({ "path": path, "cover_prompt": " " })).unwrap_err();
        assert!(err.to_string().contains("cover prompt is empty"), "{err}");
    }

    #[test]
    fn entry_errors_name_the_entry_and_field() {
        let err = error(
            "p.json",
            r#"{"prompts": [{"image_prompt": "a"}, {"image_prompt": "b"}, {"description": "c"}]}"#,
        );
        assert!(err.ends_with("p.json: prompt #3: missing \"image_prompt\""), "{err}");
        let err = error("p.json", r#"[{"image_prompt": "a", "page_number": "one"}]"#);
        assert!(err.contains("prompt #1: \"page_number\" must be a whole number, got a string"), "{err}");
        let err = error("p.json", r#"[{"image_prompt": 7}]"#);
        assert!(err.contains("\"image_prompt\" must be a string, got a number"), "{err}");
        let err = error("p.json", r#"[{"image_prompt": "  "}]"#);
        assert!(err.contains("\"image_prompt\" is empty"), "{err}");
        let err = error("p.jsonl", "{\"image_prompt\": \"a\"}\n[1]\n");
        assert!(err.contains("p.jsonl:2: expected an object, got a list"), "{err}");
    }

    #[test]
    fn wrong_shapes_and_empty_files_are_errors() {
        let err = error("p.json", r#"{"pages": []}"#);
        assert!(err.contains("expected {\"prompts\": [...]}") && err.contains("\"pages\""), "{err}");
        assert!(error("p.json", "[]").contains("holds no prompts"));
        assert!(error("p.json", r#"{"prompts": {}}"#).contains("must be a list"));
        let missing =
            list(Path::new("/nonexistent/prompts.json"), None).expect_err("no such file").to_string();
        assert!(missing.contains("/nonexistent/prompts.json"), "{missing}");
    }

    #[test]
    fn the_sample_file_has_32_prompts_in_9_sections() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/prompts/sample_image_prompts.json");
        let items = list(&path, None).expect("the sample file is valid");
        assert_eq!(items.len(), 32);
        let sections: HashSet<&str> = items.iter().map(|i| i.prompt.section.as_str()).collect();
        assert_eq!(sections.len(), 9);
        assert!(items.iter().all(|i| !i.prompt.description.is_empty()));
    }
}
