//! `disk` sink: pages as PNG (bilevel as 1-bit, with the DPI in pHYs), further inputs such as
//! thumbnails beside them, a metadata JSON per item with the original script's fields, and
//! `batch_metadata.json` at the end.
//!
//! Every file is written under a temporary name in its final directory and renamed into place,
//! and the metadata file, written last, is the mark of a finished item: a re-run skips an item
//! only when its metadata says success and every output it lists is there. A process that dies
//! mid-write leaves at most a hidden `.*.tmp` file, never a half page under the real name.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::engine::cpu;
use crate::engine::item::{Item, State};
use crate::engine::media::{Media, Payload};
use crate::engine::options::{documented, parse_declared};
use crate::engine::output_path::{Claim, OutputPath};
use crate::engine::stage::{
    BuildContext, Component, KindInfo, OptionsError, OutputMedia, Receipt, Role, Sink, StageError, TypedKind,
};
use crate::engine::summary::Summary;
use crate::imaging::png::{PngCompression, page_png};
use crate::stages::naming::{NameTemplate, UniqueNames, sanitize_component, strip_extension};

/// The folder, under the sink's directory, that holds one metadata JSON per item.
const METADATA_DIR: &str = "metadata";
/// The batch summary, under the sink's directory.
const SUMMARY_FILE: &str = "batch_metadata.json";
/// Candidates of a page the judging stage rejected, kept because they were paid for.
const REJECTED_DIR: &str = "rejected";
/// Acceptable candidates that lost to a better one (best of N), to pick from later.
const CANDIDATES_DIR: &str = "candidates";

/// The `disk` kind.
pub struct Disk;

/// The `disk` options, as written in the pipeline file.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Folder for the files, relative to the batch output dir.
    #[serde(default = "default_dir")]
    dir: OutputPath,
    /// Name of the first input's file; further inputs go to <input id>/ with the same stem.
    #[serde(default = "default_filename")]
    #[schemars(extend("x-inkflow-type" = "template"))]
    filename: String,
    /// PNG effort: fast is quickest, best is smallest.
    #[serde(default)]
    png_compression: PngCompression,
}

fn default_dir() -> OutputPath {
    OutputPath::default()
}

fn default_filename() -> String {
    "{section}_{number:03}_{description}.png".into()
}

impl Options {
    fn parse(options: &Value) -> Result<(Self, NameTemplate), OptionsError> {
        let parsed: Options = parse_declared(options)?;
        let template = NameTemplate::parse(&parsed.filename).map_err(|e| OptionsError::at("filename", e))?;
        Ok((parsed, template))
    }
}

impl TypedKind for Disk {
    type Options = (Options, NameTemplate);

    fn describe(&self) -> &KindInfo {
        static INFO: LazyLock<KindInfo> = LazyLock::new(|| KindInfo {
            name: "disk".into(),
            role: Role::Sink,
            summary: "Writes pages (PNG with DPI, 1-bit when bilevel), thumbnails and per-item metadata JSON"
                .into(),
            options: documented::<Options>(),
            accepts: vec![Media::Rgb, Media::Gray, Media::Bilevel, Media::Encoded],
            output: OutputMedia::None,
        });
        &INFO
    }

    fn parse(&self, options: &Value) -> Result<(Options, NameTemplate), OptionsError> {
        Options::parse(options)
    }

    fn build_from(
        &self,
        (options, template): (Options, NameTemplate),
        ctx: &BuildContext,
    ) -> anyhow::Result<Component> {
        Ok(Component::Sink(Arc::new(DiskSink {
            id: ctx.id.clone(),
            dir: options.dir.under(&ctx.output_dir),
            names: UniqueNames::new(template),
            inputs: input_folders(&ctx.inputs),
            compression: options.png_compression,
        })))
    }

    /// The summary, the metadata folder and each further input's folder; a template's fixed
    /// leading folder is checked by the output-path rule too.
    fn writes_from(
        &self,
        (options, template): &(Options, NameTemplate),
        inputs: &[String],
    ) -> Result<Vec<Claim>, OptionsError> {
        let dir = &options.dir;
        let at = |option: &str, below: &str| {
            dir.join(below).map(|path| Claim::new(option, path)).map_err(|e| OptionsError::at(option, e))
        };
        if let Some(folder) = template.leading_folder() {
            at("filename", folder)?;
        }
        let mut claims = vec![
            at("dir", SUMMARY_FILE)?,
            at("dir", METADATA_DIR)?,
            at("dir", REJECTED_DIR)?,
            at("dir", CANDIDATES_DIR)?,
        ];
        for folder in input_folders(inputs).iter().skip(1) {
            if [METADATA_DIR, REJECTED_DIR, CANDIDATES_DIR].contains(&folder.as_str()) {
                let msg =
                    format!("an input named \"{folder}\" would mix its files with the sink's own {folder}/");
                return Err(OptionsError::at("inputs", msg));
            }
            claims.push(at("inputs", folder)?);
        }
        Ok(claims)
    }
}

/// The folder of each input's files: its id, made safe as a folder name (the first input's
/// files sit in the sink's directory itself).
fn input_folders(inputs: &[String]) -> Vec<String> {
    inputs.iter().map(|id| sanitize_component(id)).collect()
}

/// A built `disk` sink.
struct DiskSink {
    id: String,
    dir: PathBuf,
    names: UniqueNames,
    /// Input ids, made safe as folder names; the first input's files sit in `dir` itself.
    inputs: Vec<String>,
    compression: PngCompression,
}

/// What one item's files are called, relative to the sink's directory.
struct Names {
    /// The rendered name without its extension (may hold `/` from the template).
    stem: String,
    metadata: String,
}

impl DiskSink {
    fn names(&self, item: &Item) -> Result<Names, String> {
        let rendered = self.names.render(item)?;
        let stem = strip_extension(&rendered).to_owned();
        Ok(Names { metadata: format!("{METADATA_DIR}/{stem}.json"), stem })
    }

    fn fail(&self, item: &Item, message: impl std::fmt::Display) -> StageError {
        StageError::failed(format!("sink \"{}\": item {}: {message}", self.id, item.key))
    }
}

/// Where input `index` of an item goes, relative to the sink's directory: the first input
/// beside the metadata folder, the others in a folder named after their input.
fn output_path(inputs: &[String], index: usize, stem: &str, extension: &str) -> String {
    match index {
        0 => format!("{stem}.{extension}"),
        _ => format!("{}/{stem}.{extension}", inputs[index]),
    }
}

/// The metadata the original script wrote per image, plus the outputs and the item's facts.
fn metadata(item: &Item, output_filename: Option<&str>, outputs: Map<String, Value>, fate: &Fate) -> Value {
    let prompt = &item.prompt;
    let (success, error_message) = match fate {
        Fate::Written => (true, Value::Null),
        Fate::Failed { stage, error, attempts } => {
            (false, format!("stage \"{stage}\" failed after {attempts} attempt(s): {error}").into())
        }
        Fate::Filtered { stage, reason } => {
            (false, format!("filtered by stage \"{stage}\": {reason}").into())
        }
    };
    let mut meta = json!({
        "section": prompt.section,
        "image_number": prompt.number,
        "image_prompt": prompt.image_prompt,
        "description": prompt.description,
        "output_filename": output_filename,
        "generation_time": item.generation_time.map(|t| t.as_secs_f64()),
        "timestamp": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        "model": item.facts.get("model").cloned().unwrap_or(Value::Null),
        "resolution": item.facts.get("resolution").cloned().unwrap_or(Value::Null),
        "success": success,
        "error_message": error_message,
        "retry_count": item.retries,
        "key": item.key,
        "outputs": outputs,
    });
    if let Value::Object(fields) = &mut meta {
        match fate {
            Fate::Failed { stage, .. } => {
                fields.insert("failed_stage".into(), stage.clone().into());
            }
            Fate::Filtered { stage, reason } => {
                fields.insert("filtered_stage".into(), stage.clone().into());
                fields.insert("filtered_reason".into(), reason.clone().into());
            }
            Fate::Written => {}
        }
        if item.judgement.is_some() {
            fields.insert("candidate".into(), item.trial.number.into());
        }
        for (name, value) in &item.facts {
            fields.entry(name.clone()).or_insert_with(|| value.clone());
        }
    }
    meta
}

/// Where a candidate that is not the page goes: `rejected/` when the judging stage rejected it,
/// `candidates/` otherwise; named after the page with its number (`STEM.cN.png`).
fn aside_path(stem: &str, number: u64, rejected: bool, extension: &str) -> String {
    let folder = if rejected { REJECTED_DIR } else { CANDIDATES_DIR };
    format!("{folder}/{stem}.c{number}.{extension}")
}

/// Before candidate `number` becomes the page: moves the candidate that is the page now (with
/// its metadata) aside, and drops the aside copy of the new one, so every candidate is kept
/// exactly once.
fn set_aside_the_old_page(dir: &Path, names: &Names, key: &str, number: u32) -> std::io::Result<()> {
    for rejected in [true, false] {
        for extension in ["png", "jpg", "json"] {
            let stale = dir.join(aside_path(&names.stem, u64::from(number), rejected, extension));
            if stale.exists() {
                std::fs::remove_file(stale)?;
            }
        }
    }
    let Ok(text) = std::fs::read(dir.join(&names.metadata)) else { return Ok(()) };
    let Ok(mut meta) = serde_json::from_slice::<Value>(&text) else { return Ok(()) };
    let old = meta.get("candidate").and_then(Value::as_u64).unwrap_or(0);
    let page = meta.get("output_filename").and_then(Value::as_str).map(str::to_owned);
    let ours = meta.get("key").and_then(Value::as_str) == Some(key)
        && meta.get("success") == Some(&Value::Bool(true));
    let (Some(page), true) = (page, ours && old != u64::from(number)) else { return Ok(()) };
    let rejected = meta.pointer("/quality/verdict").and_then(Value::as_str) == Some("reject");
    let extension = Path::new(&page).extension().and_then(|e| e.to_str()).unwrap_or("png").to_owned();
    let moved = aside_path(&names.stem, old, rejected, &extension);
    if let Some(parent) = dir.join(&moved).parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(dir.join(&page), dir.join(&moved))?;
    meta["output_filename"] = moved.as_str().into();
    meta["outputs"] = Value::Object(Map::new());
    let text = serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other)?;
    write_atomic(&dir.join(aside_path(&names.stem, old, rejected, "json")), &text)
}

/// How an item ended, as the metadata records it.
enum Fate {
    Written,
    Failed { stage: String, error: String, attempts: u32 },
    Filtered { stage: String, reason: String },
}

fn fate(states: &[State]) -> Fate {
    for state in states {
        match state {
            State::Failed(f) => {
                return Fate::Failed { stage: f.stage.clone(), error: f.error.clone(), attempts: f.attempts };
            }
            State::Filtered { stage, reason } => {
                return Fate::Filtered { stage: stage.clone(), reason: reason.clone() };
            }
            State::Ready(_) => {}
        }
    }
    Fate::Written
}

/// Makes temporary names unique between concurrent writers of this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` through a hidden temporary file in the same directory and a rename,
/// so the final name only ever holds a whole file.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp = parent.join(format!(".{name}.{}-{n}.tmp", std::process::id()));
    let result = std::fs::write(&temp, bytes).and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        // Best effort: the error that matters is the one returned.
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// The encoded bytes and file extension of one input.
/// A page's PNG is shared with any other sink storing it with the same compression.
fn encode(payload: &Payload, compression: PngCompression) -> Result<(Bytes, &'static str), String> {
    match payload {
        Payload::Image(raster) => page_png(raster, compression).map(|png| (png, "png")),
        // Already encoded upstream (a thumbnail): written as is.
        Payload::Encoded(file) => Ok((Bytes::copy_from_slice(&file.bytes), file.format.extension())),
        Payload::Prompt => Err("a prompt has no image to write".into()),
        Payload::Undecoded(_) => Err("an undecoded image (the engine decodes them before sinks)".into()),
    }
}

#[async_trait]
impl Sink for DiskSink {
    fn is_complete(&self, item: &Item, _recorded: Option<&Receipt>) -> bool {
        let Ok(names) = self.names(item) else { return false };
        let Ok(text) = std::fs::read(self.dir.join(&names.metadata)) else { return false };
        let Ok(meta) = serde_json::from_slice::<Value>(&text) else { return false };
        let outputs = meta.get("outputs").and_then(Value::as_object);
        // Another item's files under this name (written before the clash was known) are not its.
        meta.get("key").and_then(Value::as_str) == Some(item.key.as_str())
            && meta.get("success") == Some(&Value::Bool(true))
            && outputs.is_some_and(|outputs| {
                outputs.len() == self.inputs.len()
                    && outputs.values().all(|path| path.as_str().is_some_and(|p| self.dir.join(p).is_file()))
            })
    }

    async fn begin(&self, items: &mut (dyn Iterator<Item = Item> + Send)) -> anyhow::Result<()> {
        self.names.plan(items);
        Ok(())
    }

    async fn write(&self, item: &Item, states: Vec<State>) -> Result<Receipt, StageError> {
        if states.len() != self.inputs.len() {
            return Err(
                self.fail(item, format!("expected {} inputs, got {}", self.inputs.len(), states.len()))
            );
        }
        let names = self.names(item).map_err(|e| self.fail(item, e))?;
        let fate = fate(&states);
        let payloads: Vec<Payload> =
            states.into_iter().filter_map(|s| if let State::Ready(p) = s { Some(p) } else { None }).collect();
        // A failed or filtered item writes only its metadata.
        let written = if matches!(fate, Fate::Written) { payloads } else { Vec::new() };
        let resolution = match written.first() {
            Some(Payload::Image(raster)) => Some(format!("{}x{}", raster.width, raster.height)),
            _ => None,
        };
        let (dir, inputs, compression, mut item_copy) =
            (self.dir.clone(), self.inputs.clone(), self.compression, item.clone());
        // One pool job encodes, then writes. Each image is freed as soon as it is encoded, before
        // any file is written. The writes stay on the pool: they only reach the page cache (no
        // fsync), and moving them to tokio's blocking threads cost 1-2 MB of peak RSS (more
        // threads, more malloc arenas) for no gain in speed (BENCHMARKS.md).
        let judged = item.judgement.is_some();
        let job = move || -> Result<(), String> {
            if judged && matches!(fate, Fate::Written) {
                set_aside_the_old_page(&dir, &names, &item_copy.key, item_copy.trial.number)
                    .map_err(|e| format!("setting aside the page this candidate replaces: {e}"))?;
            }
            let mut files = Vec::with_capacity(written.len());
            for (index, payload) in written.into_iter().enumerate() {
                let (bytes, extension) = encode(&payload, compression)?;
                files.push((output_path(&inputs, index, &names.stem, extension), bytes));
            }
            let mut outputs = Map::new();
            for ((relative, bytes), input) in files.iter().zip(inputs) {
                write_atomic(&dir.join(relative), bytes).map_err(|e| format!("writing {relative}: {e}"))?;
                outputs.insert(input, relative.as_str().into());
            }
            if let Some(resolution) = resolution
                && !item_copy.facts.contains_key("resolution")
            {
                item_copy.record("resolution", resolution);
            }
            let first = files.first().map(|(relative, _)| relative.as_str());
            let meta = metadata(&item_copy, first, outputs, &fate);
            let text = serde_json::to_vec_pretty(&meta).map_err(|e| e.to_string())?;
            write_atomic(&dir.join(&names.metadata), &text)
                .map_err(|e| format!("writing {}: {e}", names.metadata))
        };
        cpu::run(job).await.and_then(|r| r).map(|()| Receipt::default()).map_err(|e| self.fail(item, e))
    }

    async fn write_aside(&self, item: &Item, states: Vec<State>) -> Result<(), StageError> {
        // A failed candidate left nothing to keep; the journal records that it failed.
        let Some(State::Ready(payload)) = states.into_iter().next() else { return Ok(()) };
        let names = self.names(item).map_err(|e| self.fail(item, e))?;
        let rejected = item.judgement.as_ref().is_some_and(|j| !j.acceptable);
        let (dir, compression, candidate) = (self.dir.clone(), self.compression, item.clone());
        let job = move || -> Result<(), String> {
            let (bytes, extension) = encode(&payload, compression)?;
            drop(payload);
            let number = u64::from(candidate.trial.number);
            let relative = aside_path(&names.stem, number, rejected, extension);
            write_atomic(&dir.join(&relative), &bytes).map_err(|e| format!("writing {relative}: {e}"))?;
            let meta = metadata(&candidate, Some(&relative), Map::new(), &Fate::Written);
            let text = serde_json::to_vec_pretty(&meta).map_err(|e| e.to_string())?;
            let meta_path = aside_path(&names.stem, number, rejected, "json");
            write_atomic(&dir.join(&meta_path), &text).map_err(|e| format!("writing {meta_path}: {e}"))
        };
        cpu::run(job).await.and_then(|r| r).map_err(|e| self.fail(item, e))
    }

    /// After the book and the cover, so their preflight verdicts are in `batch_metadata.json`.
    fn finish_rank(&self) -> u8 {
        1
    }

    async fn finish(&self, summary: &Summary) -> anyhow::Result<()> {
        let text = serde_json::to_vec_pretty(summary)?;
        let path = self.dir.join(SUMMARY_FILE);
        let shown = path.display().to_string();
        cpu::run(move || write_atomic(&path, &text))
            .await
            .map_err(anyhow::Error::msg)?
            .map_err(|e| anyhow::anyhow!("sink \"{}\": writing {shown}: {e}", self.id))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::item::{Failure, Prompt};
    use crate::engine::media::{Encoded, EncodedFormat, Pixels, Raster};
    use crate::engine::stage::Kind;
    use crate::imaging::jpeg::encode_thumbnail;
    use crate::stages::test_support::{build_sink, context};

    fn item(description: &str) -> Item {
        let mut item = Item::new(
            0,
            Prompt {
                section: "animals".into(),
                number: 7,
                image_prompt: "a happy cat, line art".into(),
                description: description.into(),
                ..Prompt::default()
            },
        );
        item.record("model", "pattern");
        item.record("seed", 42);
        item.generation_time = Some(Duration::from_millis(1500));
        item.retries = 1;
        item
    }

    /// A 300 DPI bilevel page: white with a black square.
    fn page() -> Arc<Raster> {
        let (width, height) = (100u32, 60u32);
        let stride = Raster::bilevel_stride(width);
        let mut packed = vec![0xFFu8; stride * height as usize];
        for row in packed.chunks_exact_mut(stride).skip(10).take(20) {
            row[2..6].fill(0);
        }
        Arc::new(Raster::new(width, height, Some(300.0), Pixels::Bilevel(packed)))
    }

    fn thumb(page: &Raster) -> Arc<Encoded> {
        Arc::new(encode_thumbnail(page, 40, 40, 85).unwrap())
    }

    fn sink(out: &Path) -> Arc<dyn Sink> {
        build_sink(&Disk, json!({"dir": "pages"}), &context("pages", &["lineart", "thumb"], out))
    }

    fn read_json(path: &Path) -> Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// Every file under `dir`, relative, sorted.
    fn files(dir: &Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    found.push(path.strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/"));
                }
            }
        }
        found.sort();
        found
    }

    #[tokio::test]
    async fn writes_page_thumbnail_and_metadata() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = sink(tmp.path());
        let item = item("happy cat");
        let page = page();
        assert!(!sink.is_complete(&item, None));
        let states =
            [State::Ready(Payload::Image(page.clone())), State::Ready(Payload::Encoded(thumb(&page)))];
        sink.write(&item, states.to_vec()).await.unwrap();

        let dir = tmp.path().join("pages");
        assert_eq!(
            files(&dir),
            [
                "animals_007_happy_cat.png",
                "metadata/animals_007_happy_cat.json",
                "thumb/animals_007_happy_cat.jpg"
            ]
        );
        // The page: 1-bit, 300 DPI, the same pixels.
        let file = std::fs::File::open(dir.join("animals_007_happy_cat.png")).unwrap();
        let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info().unwrap();
        let dims = reader.info().pixel_dims.unwrap();
        assert_eq!((dims.xppu, dims.yppu), (11811, 11811));
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.bit_depth, png::BitDepth::One);
        let Pixels::Bilevel(want) = &page.pixels else { unreachable!() };
        assert_eq!(&buf[..info.buffer_size()], &want[..]);
        // The thumbnail is the JPEG as encoded.
        let jpeg = image::open(dir.join("thumb/animals_007_happy_cat.jpg")).unwrap();
        assert!(jpeg.width() <= 40 && jpeg.height() <= 40);

        let meta = read_json(&dir.join("metadata/animals_007_happy_cat.json"));
        assert_eq!(meta["section"], "animals");
        assert_eq!(meta["image_number"], 7);
        assert_eq!(meta["image_prompt"], "a happy cat, line art");
        assert_eq!(meta["description"], "happy cat");
        assert_eq!(meta["output_filename"], "animals_007_happy_cat.png");
        assert_eq!(meta["generation_time"], 1.5);
        assert!(
            humantime::parse_rfc3339(meta["timestamp"].as_str().unwrap()).is_ok(),
            "{}",
            meta["timestamp"]
        );
        assert_eq!(meta["model"], "pattern");
        assert_eq!(meta["resolution"], "100x60");
        assert_eq!(meta["success"], true);
        assert_eq!(meta["error_message"], Value::Null);
        assert_eq!(meta["retry_count"], 1);
        assert_eq!(meta["seed"], 42);
        assert_eq!(
            meta["outputs"],
            json!({"lineart": "animals_007_happy_cat.png", "thumb": "thumb/animals_007_happy_cat.jpg"})
        );
        assert!(sink.is_complete(&item, None));
    }

    #[tokio::test]
    async fn a_failed_item_writes_only_metadata_and_is_not_complete() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = sink(tmp.path());
        let item = item("sad dog");
        let failure = Failure {
            stage: "draw".into(),
            error: "model timed out".into(),
            attempts: 3,
            interrupted: false,
        };
        let states = [State::Failed(failure.clone()), State::Failed(failure)];
        sink.write(&item, states.to_vec()).await.unwrap();
        let dir = tmp.path().join("pages");
        assert_eq!(files(&dir), ["metadata/animals_007_sad_dog.json"]);
        let meta = read_json(&dir.join("metadata/animals_007_sad_dog.json"));
        assert_eq!(meta["success"], false);
        let message = meta["error_message"].as_str().unwrap();
        assert!(message.contains("draw") && message.contains("model timed out"), "{message}");
        assert_eq!(meta["output_filename"], Value::Null);
        assert!(!sink.is_complete(&item, None));

        let filtered = State::Filtered { stage: "safety".into(), reason: "nsfw".into() };
        sink.write(&item, vec![filtered.clone(), filtered]).await.unwrap();
        let meta = read_json(&dir.join("metadata/animals_007_sad_dog.json"));
        assert_eq!((meta["success"].clone(), meta["filtered_reason"].clone()), (json!(false), json!("nsfw")));
    }

    #[tokio::test]
    async fn is_complete_needs_every_listed_output() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = sink(tmp.path());
        let item = item("cat");
        let page = page();
        let states =
            [State::Ready(Payload::Image(page.clone())), State::Ready(Payload::Encoded(thumb(&page)))];
        sink.write(&item, states.to_vec()).await.unwrap();
        assert!(sink.is_complete(&item, None));
        std::fs::remove_file(tmp.path().join("pages/thumb/animals_007_cat.jpg")).unwrap();
        assert!(!sink.is_complete(&item, None), "a missing thumbnail must make the item incomplete");
        // An interrupted write leaves the outputs but no metadata: not complete either.
        sink.write(&item, states.to_vec()).await.unwrap();
        std::fs::remove_file(tmp.path().join("pages/metadata/animals_007_cat.json")).unwrap();
        assert!(!sink.is_complete(&item, None));
        // A sink with another input list does not trust these outputs.
        let one_input =
            build_sink(&Disk, json!({"dir": "pages"}), &context("pages", &["lineart"], tmp.path()));
        sink.write(&item, states.to_vec()).await.unwrap();
        assert!(sink.is_complete(&item, None) && !one_input.is_complete(&item, None));
    }

    #[tokio::test]
    async fn no_temporary_files_are_left_and_finish_writes_the_summary() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = sink(tmp.path());
        let page = page();
        for n in 0..5 {
            let mut item = item(&format!("page {n}"));
            item.prompt.number = n;
            let states =
                [State::Ready(Payload::Image(page.clone())), State::Ready(Payload::Encoded(thumb(&page)))];
            sink.write(&item, states.to_vec()).await.unwrap();
        }
        let summary =
            Summary { pipeline: "book.yaml".into(), total_items: 5, succeeded: 5, ..Summary::default() };
        sink.finish(&summary).await.unwrap();
        let dir = tmp.path().join("pages");
        let all = files(&dir);
        assert_eq!(all.len(), 5 * 3 + 1, "{all:?}");
        assert!(
            all.iter().all(|f| !f.ends_with(".tmp") && !f.contains("/.") && !f.starts_with('.')),
            "{all:?}"
        );
        let batch = read_json(&dir.join("batch_metadata.json"));
        assert_eq!((batch["pipeline"].clone(), batch["succeeded"].clone()), (json!("book.yaml"), json!(5)));
    }

    #[tokio::test]
    async fn hostile_descriptions_stay_inside_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let sink = build_sink(&Disk, json!({}), &context("pages", &["page"], &out));
        let raster = page();
        for hostile in ["../../escape", "..", "/etc/passwd", "a/../../b", "CON", "x\0y"] {
            let item = item(hostile);
            sink.write(&item, vec![State::Ready(Payload::Image(raster.clone()))]).await.unwrap();
            assert!(sink.is_complete(&item, None), "{hostile:?}");
        }
        let outside: Vec<_> =
            std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(outside, ["out"], "something was written outside the output dir");
        // Every page sits directly in the directory (no sub-folder made from a description).
        let pages: Vec<String> = files(&out).into_iter().filter(|f| f.ends_with(".png")).collect();
        assert_eq!(pages.len(), 6, "{pages:?}");
        assert!(pages.iter().all(|p| !p.contains('/')), "{pages:?}");
    }

    #[test]
    fn options_are_checked() {
        let kind = Disk;
        assert_eq!(kind.check(&json!({"filename": "../{key}.png"})).unwrap_err().path, vec!["filename"]);
        assert_eq!(kind.check(&json!({"png_compression": "max"})).unwrap_err().path, vec!["png_compression"]);
        assert!(
            kind.check(&json!({"dir": "pages", "png_compression": "fast", "filename": "{key}.png"})).is_ok()
        );
    }

    #[tokio::test]
    async fn encoded_first_input_keeps_its_format() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = build_sink(&Disk, json!({}), &context("thumbs", &["thumb"], tmp.path()));
        let jpeg = Encoded {
            format: EncodedFormat::Jpeg,
            bytes: thumb(&page()).bytes.clone(),
            width: 40,
            height: 24,
        };
        sink.write(&item("cat"), vec![State::Ready(Payload::Encoded(Arc::new(jpeg)))]).await.unwrap();
        assert!(tmp.path().join("animals_007_cat.jpg").is_file());
    }
}
