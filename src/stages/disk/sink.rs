//! The built sink and the `Sink` calls the engine makes: is an item complete, write an item's
//! files and metadata, keep a candidate aside, write the batch summary at the end.

use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::files::{Names, output_path, set_aside_the_old_page, write_atomic};
use super::metadata::{Fate, fate, metadata};
use super::{METADATA_DIR, SUMMARY_FILE};
use crate::engine::cpu;
use crate::engine::item::{Item, State};
use crate::engine::media::Payload;
use crate::engine::review::REJECTED_IN_REVIEW_FACT;
use crate::engine::stage::{Receipt, Sink, StageError};
use crate::engine::summary::Summary;
use crate::imaging::png::{PngCompression, page_png};
use crate::stages::naming::aside_name;
use crate::stages::naming::{UniqueNames, strip_extension};

/// A built `disk` sink.
pub(super) struct DiskSink {
    pub(super) id: String,
    pub(super) dir: PathBuf,
    pub(super) names: UniqueNames,
    /// Input ids, made safe as folder names; the first input's files sit in `dir` itself.
    pub(super) inputs: Vec<String>,
    pub(super) compression: PngCompression,
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
                let rejected_in_review = item_copy.facts.get(REJECTED_IN_REVIEW_FACT).and_then(Value::as_u64);
                set_aside_the_old_page(
                    &dir,
                    &names,
                    &item_copy.key,
                    item_copy.trial.number,
                    rejected_in_review,
                )
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

    async fn write_aside(&self, item: &Item, states: Vec<State>) -> Result<Receipt, StageError> {
        // A failed candidate left nothing to keep; the journal records that it failed.
        let Some(State::Ready(payload)) = states.into_iter().next() else { return Ok(Receipt::default()) };
        let names = self.names(item).map_err(|e| self.fail(item, e))?;
        let rejected = item.judgement.as_ref().is_some_and(|j| !j.acceptable);
        let (dir, compression, candidate) = (self.dir.clone(), self.compression, item.clone());
        let job = move || -> Result<(), String> {
            let (bytes, extension) = encode(&payload, compression)?;
            drop(payload);
            let number = u64::from(candidate.trial.number);
            let relative = aside_name(&names.stem, number, rejected, extension);
            write_atomic(&dir.join(&relative), &bytes).map_err(|e| format!("writing {relative}: {e}"))?;
            let meta = metadata(&candidate, Some(&relative), Map::new(), &Fate::Written);
            let text = serde_json::to_vec_pretty(&meta).map_err(|e| e.to_string())?;
            let meta_path = aside_name(&names.stem, number, rejected, "json");
            write_atomic(&dir.join(&meta_path), &text).map_err(|e| format!("writing {meta_path}: {e}"))
        };
        cpu::run(job).await.and_then(|r| r).map(|()| Receipt::default()).map_err(|e| self.fail(item, e))
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
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::engine::item::{Failure, Prompt};
    use crate::engine::media::{Encoded, EncodedFormat, Pixels, Raster};
    use crate::imaging::jpeg::encode_thumbnail;
    use crate::stages::disk::Disk;
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
