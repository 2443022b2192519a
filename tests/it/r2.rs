//! The r2 sink against a real S3 server: s3s-fs serving a temporary directory on loopback,
//! verifying SigV4 signatures, with every request recorded so tests can count PUTs and parts.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use inkflow::engine::item::{Failure, Item, Prompt, State};
use inkflow::engine::media::{Encoded, EncodedFormat, Payload, Pixels, Raster};
use inkflow::engine::stage::{BuildContext, Component, Kind, Sink, StageError};
use inkflow::engine::summary::Summary;
use inkflow::stages::r2::R2;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{Attribute, ObjectStoreExt};
use serde_json::{Value, json};

use crate::common::pipeline_text::pattern_pipeline;
use crate::common::s3::{BUCKET, KEY_ID, SECRET, Server};

impl Server {
    fn count(&self, matches: impl Fn(&str) -> bool) -> usize {
        self.requests.lock().unwrap().iter().filter(|r| matches(r)).count()
    }

    /// Single-request object uploads (multipart parts carry `partNumber`).
    fn object_puts(&self) -> usize {
        self.count(|r| r.starts_with("PUT ") && !r.contains("partNumber="))
    }

    fn options(&self, extra: Value) -> Value {
        let mut options =
            json!({ "endpoint": self.endpoint, "bucket": BUCKET, "cache_control": "public, max-age=60" });
        for (k, v) in extra.as_object().unwrap() {
            options[k] = v.clone();
        }
        options
    }

    /// A client of our own to read objects back with their headers.
    fn reader(&self) -> object_store::aws::AmazonS3 {
        inkflow::tls::install_crypto_provider();
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_bucket_name(BUCKET)
            .with_region("auto")
            .with_access_key_id(KEY_ID)
            .with_secret_access_key(SECRET)
            .with_allow_http(true)
            .build()
            .unwrap()
    }
}

fn build(kind: R2, secret: &str, options: &Value, output_dir: &Path) -> anyhow::Result<Arc<dyn Sink>> {
    let kind = kind.with_env([("R2_ACCESS_KEY_ID", KEY_ID), ("R2_SECRET_ACCESS_KEY", secret)]);
    let ctx = BuildContext {
        id: "publish".into(),
        inputs: vec!["lineart".into(), "thumb".into()],
        output_dir: output_dir.to_path_buf(),
        pipeline_file: "pipeline.yaml".into(),
        dry_run: false,
        room_below: 4,
    };
    match kind.build(options, &ctx)? {
        Component::Sink(sink) => Ok(sink),
        _ => panic!("r2 must build a sink"),
    }
}

fn item(number: u32, description: &str) -> Item {
    Item::new(
        u64::from(number),
        Prompt {
            section: "animals".into(),
            number,
            image_prompt: "a cat".into(),
            description: description.into(),
            ..Prompt::default()
        },
    )
}

/// A 40x30 bilevel page at 300 DPI with a stripe pattern that depends on `seed`, and a real
/// JPEG thumbnail.
fn page_states(seed: u8) -> Vec<State> {
    let (width, height) = (40u32, 30u32);
    let stride = Raster::bilevel_stride(width);
    let bits = (0..stride * height as usize).map(|i| (i as u8).wrapping_mul(37) ^ seed).collect();
    let page = Raster::new(width, height, Some(300.0), Pixels::Bilevel(bits));
    let thumb = image::RgbImage::from_fn(8, 6, |x, y| image::Rgb([x as u8 * 30, y as u8 * 40, seed]));
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageRgb8(thumb)
        .write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
        .unwrap();
    vec![
        State::Ready(Payload::Image(Arc::new(page))),
        State::Ready(Payload::Encoded(Arc::new(Encoded {
            format: EncodedFormat::Jpeg,
            bytes: jpeg,
            width: 8,
            height: 6,
        }))),
    ]
}

fn encoded_bytes(states: &[State]) -> Vec<u8> {
    match &states[1] {
        State::Ready(Payload::Encoded(e)) => e.bytes.clone(),
        _ => unreachable!(),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test]
async fn uploads_page_thumbnail_and_metadata_that_read_back_identical() {
    let server = Server::start(true).await;
    let out = tempfile::tempdir().unwrap();
    let sink =
        build(R2::new(), SECRET, &server.options(json!({ "prefix": "/book-1/" })), out.path()).unwrap();
    let states = page_states(1);
    sink.begin(&mut std::iter::once(item(7, "happy cat"))).await.unwrap();
    sink.write(&item(7, "happy cat"), states.clone()).await.unwrap();

    // The page: a 1-bit PNG with the same pixels and 300 DPI.
    let png_bytes = std::fs::read(server.object_file("book-1/animals_007_happy_cat.png")).unwrap();
    let mut reader = png::Decoder::new(Cursor::new(png_bytes.clone())).read_info().unwrap();
    assert_eq!(reader.info().bit_depth, png::BitDepth::One);
    assert_eq!(reader.info().pixel_dims.map(|d| d.xppu), Some(11811));
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    reader.next_frame(&mut pixels).unwrap();
    let State::Ready(Payload::Image(page)) = &states[0] else { unreachable!() };
    let Pixels::Bilevel(expected) = &page.pixels else { unreachable!() };
    assert_eq!(&pixels, expected);

    // The thumbnail, byte for byte, under its input's folder.
    let thumb = std::fs::read(server.object_file("book-1/thumb/animals_007_happy_cat.jpg")).unwrap();
    assert_eq!(thumb, encoded_bytes(&states));

    // Metadata lists both objects with hashes of what the server holds.
    let metadata: Value = serde_json::from_slice(
        &std::fs::read(server.object_file("book-1/metadata/animals_007_happy_cat.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(metadata["prompt"]["description"], "happy cat");
    assert_eq!(metadata["objects"][0]["sha256"], sha256_hex(&png_bytes));
    assert_eq!(metadata["objects"][1]["key"], "book-1/thumb/animals_007_happy_cat.jpg");
    assert_eq!(metadata["objects"][1]["sha256"], sha256_hex(&thumb));

    // Read back through S3: same bytes, and the headers the pipeline asked for.
    let store = server.reader();
    for (key, content_type, bytes) in [
        ("book-1/animals_007_happy_cat.png", "image/png", &png_bytes),
        ("book-1/thumb/animals_007_happy_cat.jpg", "image/jpeg", &thumb),
    ] {
        let got = store.get(&Key::from(key)).await.unwrap();
        assert_eq!(got.attributes.get(&Attribute::ContentType).map(|v| v.as_ref()), Some(content_type));
        assert_eq!(
            got.attributes.get(&Attribute::CacheControl).map(|v| v.as_ref()),
            Some("public, max-age=60")
        );
        assert_eq!(&got.bytes().await.unwrap()[..], &bytes[..]);
    }
    let metadata_object = store.head(&Key::from("book-1/metadata/animals_007_happy_cat.json")).await;
    assert!(metadata_object.is_ok());
}

#[tokio::test]
async fn identical_objects_are_not_uploaded_again_and_changed_ones_are() {
    let server = Server::start(true).await;
    let out = tempfile::tempdir().unwrap();
    let options = server.options(json!({}));
    let first_run = build(R2::s3(), SECRET, &options, out.path()).unwrap();
    first_run.write(&item(1, "owl"), page_states(5)).await.unwrap();
    assert_eq!(server.object_puts(), 3, "page, thumbnail and metadata");

    // A new run (a new sink) with the same content sends no PUT at all.
    let second_run = build(R2::s3(), SECRET, &options, out.path()).unwrap();
    second_run.write(&item(1, "owl"), page_states(5)).await.unwrap();
    assert_eq!(server.object_puts(), 3);

    // A changed page is uploaded again with its metadata (which lists the page's hash); the
    // unchanged thumbnail is not.
    let mut changed = page_states(5);
    changed[0] = page_states(6).remove(0);
    second_run.write(&item(1, "owl"), changed).await.unwrap();
    assert_eq!(server.object_puts(), 5, "page and metadata uploaded again, thumbnail not");
}

#[tokio::test]
async fn wrong_credentials_stop_the_batch_without_showing_the_secret() {
    let server = Server::start(true).await;
    let out = tempfile::tempdir().unwrap();
    let wrong = "wrong-secret-do-not-print-42";
    let sink = build(R2::new(), wrong, &server.options(json!({})), out.path()).unwrap();

    let begin = sink.begin(&mut std::iter::once(item(1, "owl"))).await.unwrap_err().to_string();
    assert!(begin.contains("publish") && begin.contains("R2_SECRET_ACCESS_KEY"), "{begin}");
    assert!(!begin.contains(wrong), "{begin}");

    match sink.write(&item(1, "owl"), page_states(1)).await {
        Err(StageError::Fatal(message)) => {
            assert!(
                message.contains("\"publish\"") && message.contains("refused the credentials"),
                "{message}"
            );
            assert!(!message.contains(wrong), "{message}");
        }
        other => panic!("expected a fatal error, got {other:?}"),
    }
    assert!(!server.object_file("animals_001_owl.png").exists());
}

#[tokio::test]
async fn a_missing_bucket_is_named_before_anything_is_generated() {
    let server = Server::start(false).await;
    let out = tempfile::tempdir().unwrap();
    let sink = build(R2::new(), SECRET, &server.options(json!({})), out.path()).unwrap();
    let err = sink.begin(&mut std::iter::once(item(1, "owl"))).await.unwrap_err().to_string();
    assert!(err.contains("publish") && err.contains("bucket \"books\" does not exist"), "{err}");
}

#[tokio::test]
async fn server_down_mid_batch_fails_the_items_it_could_not_store() {
    let server = Server::start(true).await;
    let out = tempfile::tempdir().unwrap();
    let sink = build(R2::new(), SECRET, &server.options(json!({ "retries": 1 })), out.path()).unwrap();
    sink.write(&item(1, "owl"), page_states(1)).await.unwrap();
    server.stop().await;

    for number in [2, 3] {
        match sink.write(&item(number, "fox"), page_states(2)).await {
            Err(StageError::Failed { message, .. }) => {
                assert!(message.contains("publish") && message.contains("fox"), "{message}")
            }
            other => panic!("item {number} must fail while the server is down, got {other:?}"),
        }
    }
    assert!(server.object_file("animals_001_owl.png").exists());
    assert!(server.object_file("metadata/animals_001_owl.json").exists());
    assert!(!server.object_file("animals_002_fox.png").exists());
}

#[tokio::test]
async fn a_large_book_goes_up_in_equal_parts_and_only_once() {
    let server = Server::start(true).await;
    let out = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut book = b"%PDF-1.7\n".to_vec();
    book.extend((0..12_000_000).map(|_| rng.u8(..)));
    std::fs::write(out.path().join("book.pdf"), &book).unwrap();
    let options = server.options(json!({
        "upload_files": ["book.pdf"], "part_size_mib": 5, "multipart_threshold_mib": 5, "prefix": "b"
    }));

    let sink = build(R2::new(), SECRET, &options, out.path()).unwrap();
    sink.finish(&Summary::default()).await.unwrap();
    assert!(std::fs::read(server.object_file("b/book.pdf")).unwrap() == book, "the book differs");
    assert_eq!(server.count(|r| r.starts_with("POST ") && r.contains("uploads")), 1, "one multipart upload");
    let mut part_sizes: Vec<u64> = server
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.starts_with("PUT ") && r.contains("partNumber="))
        .map(|r| r.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    part_sizes.sort_unstable();
    let mib = 1024 * 1024;
    assert_eq!(part_sizes, [book.len() as u64 - 10 * mib, 5 * mib, 5 * mib], "equal parts but the last");
    assert_eq!(server.object_puts(), 0);
    let head = server.reader().get(&Key::from("b/book.pdf")).await.unwrap();
    assert_eq!(head.attributes.get(&Attribute::ContentType).map(|v| v.as_ref()), Some("application/pdf"));

    // The multipart ETag is not an MD5, yet the stored hash lets a re-run skip the book.
    let again = build(R2::new(), SECRET, &options, out.path()).unwrap();
    again.finish(&Summary::default()).await.unwrap();
    assert_eq!(server.count(|r| r.contains("partNumber=") || r.contains("uploads")), 4);
}

#[tokio::test]
async fn a_listed_file_that_is_missing_fails_finish_with_its_path() {
    let server = Server::start(true).await;
    let out = tempfile::tempdir().unwrap();
    let sink = build(R2::new(), SECRET, &server.options(json!({ "upload_files": ["book.pdf"] })), out.path())
        .unwrap();
    let err = sink.finish(&Summary::default()).await.unwrap_err().to_string();
    assert!(err.contains("publish") && err.contains("book.pdf"), "{err}");
}

#[tokio::test]
async fn failed_inputs_are_recorded_in_metadata_and_nothing_is_uploaded_for_them() {
    let server = Server::start(true).await;
    let out = tempfile::tempdir().unwrap();
    let sink = build(R2::new(), SECRET, &server.options(json!({})), out.path()).unwrap();
    let mut states = page_states(1);
    states[1] = State::Failed(Failure {
        stage: "thumb".into(),
        error: "too small".into(),
        attempts: 1,
        interrupted: false,
    });
    sink.write(&item(4, "bee"), states).await.unwrap();
    assert!(server.object_file("animals_004_bee.png").exists());
    assert!(!server.object_file("thumb/animals_004_bee.jpg").exists());
    let metadata: Value =
        serde_json::from_slice(&std::fs::read(server.object_file("metadata/animals_004_bee.json")).unwrap())
            .unwrap();
    assert_eq!(metadata["not_uploaded"][0]["error"], "too small");

    // An item no stage produced anything for leaves no object at all.
    let failed = State::Failed(Failure {
        stage: "draw".into(),
        error: "boom".into(),
        attempts: 2,
        interrupted: false,
    });
    let before = server.object_puts();
    sink.write(&item(5, "ant"), vec![failed.clone(), failed]).await.unwrap();
    assert_eq!(server.object_puts(), before);
}

#[test]
fn credentials_are_required_except_in_a_dry_run() {
    let ctx = |dry_run| BuildContext {
        id: "publish".into(),
        inputs: vec!["lineart".into()],
        output_dir: "out".into(),
        pipeline_file: "pipeline.yaml".into(),
        dry_run,
        room_below: 4,
    };
    let options = json!({ "endpoint": "https://acc.r2.cloudflarestorage.com", "bucket": BUCKET });
    let kind = R2::new().with_env([]);
    let err = kind.build(&options, &ctx(false)).err().unwrap().to_string();
    assert!(err.contains("publish") && err.contains("R2_ACCESS_KEY_ID"), "{err}");
    assert!(kind.build(&options, &ctx(true)).is_ok());
}

/// Runs the real binary on `pipeline` with the test server's credentials.
async fn run_inkflow(pipeline: &Path, out: &Path) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_inkflow"))
        .args(["run", pipeline.to_str().unwrap(), "--output", out.to_str().unwrap()])
        .env("R2_ACCESS_KEY_ID", KEY_ID)
        .env("R2_SECRET_ACCESS_KEY", SECRET)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .await
        .unwrap()
}

/// Writes a prompts file of `descriptions` (the `edited` one with another prompt) and an offline
/// pipeline that keeps pages on disk and uploads them with their metadata.
fn offline_upload_pipeline(
    dir: &Path,
    server: &Server,
    descriptions: &[&str],
    edited: Option<&str>,
) -> PathBuf {
    let prompts: Vec<Value> = descriptions
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let drawing = if Some(*d) == edited { "a tall lighthouse" } else { "a round mandala" };
            json!({ "section": "s", "image_number": i + 1, "description": d, "image_prompt": format!("{drawing} for {d}") })
        })
        .collect();
    std::fs::write(dir.join("prompts.json"), json!({ "prompts": prompts }).to_string()).unwrap();
    let file = dir.join("upload.yaml");
    let rest = format!(
        "  lineart: {{ kind: threshold, inputs: [gray] }}
sinks:
  pages: {{ kind: disk, inputs: [lineart] }}
  publish: {{ kind: s3, inputs: [lineart], endpoint: \"{endpoint}\", bucket: {BUCKET}, prefix: book }}
",
        endpoint = server.endpoint,
    );
    let text = pattern_pipeline(&dir.join("prompts.json"), "size: { width: 64, height: 80 }", &rest);
    std::fs::write(&file, text).unwrap();
    file
}

#[tokio::test]
async fn a_resume_with_nothing_to_do_asks_the_store_nothing_and_uploads_nothing() {
    let server = Server::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let names = ["owl", "fox", "bee", "ant"];
    let pipeline = offline_upload_pipeline(dir.path(), &server, &names, None);

    let first = run_inkflow(&pipeline, &out).await;
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert_eq!(server.object_puts(), 8, "a page and its metadata per item");

    // The journal holds each item's receipt: the objects and the hashes the server stores.
    let journal = rusqlite::Connection::open(out.join("journal.sqlite")).unwrap();
    let stored: Vec<(String, String, i64)> = journal
        .prepare("SELECT object, sha256, bytes FROM stored WHERE sink = 'publish' ORDER BY key, position")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(stored.len(), 8, "{stored:?}");
    for (object, sha256, bytes) in &stored {
        let held = std::fs::read(server.object_file(object)).unwrap();
        assert_eq!((sha256_hex(&held), held.len() as i64), (sha256.clone(), *bytes), "{object}");
        // The page is encoded once: the disk sink's file is the very object uploaded.
        if let Some(name) = object.strip_prefix("book/").filter(|name| name.ends_with(".png")) {
            let on_disk = std::fs::read(out.join(name)).unwrap();
            assert_eq!(sha256_hex(&on_disk), *sha256, "{name} on disk and in the bucket");
        }
    }
    let pages = stored.iter().filter(|(object, ..)| object.ends_with(".png")).count();
    assert_eq!(pages, names.len(), "{stored:?}");
    drop(journal);

    // Nothing to do: no item is processed again, and the store sees only the listing the sink
    // makes before anything runs (no HEAD, no PUT).
    server.requests.lock().unwrap().clear();
    let second = run_inkflow(&pipeline, &out).await;
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("batch_metadata.json")).unwrap()).unwrap();
    assert_eq!(summary["skipped"], 4, "{summary:#}");
    let requests = server.requests.lock().unwrap().clone();
    assert!(requests.iter().all(|r| r.starts_with("GET ") && r.contains("list-type=2")), "{requests:?}");

    // An edited prompt runs that item alone again: its page and metadata go up, nothing else.
    let pipeline = offline_upload_pipeline(dir.path(), &server, &names, Some("bee"));
    server.requests.lock().unwrap().clear();
    let third = run_inkflow(&pipeline, &out).await;
    assert!(third.status.success(), "{}", String::from_utf8_lossy(&third.stderr));
    let puts: Vec<String> =
        server.requests.lock().unwrap().iter().filter(|r| r.starts_with("PUT ")).cloned().collect();
    assert_eq!(puts.len(), 2, "{puts:?}");
    assert!(puts.iter().all(|r| r.contains("s_003_bee")), "{puts:?}");
}

/// The offline book's way of making pages (a judging stage that re-rolls rejected pages) with
/// a disk sink and two buckets sinks, one keeping the candidates and one not.
fn rerolling_upload_pipeline(dir: &Path, server: &Server) -> PathBuf {
    let prompts: Vec<Value> = (1..=10)
        .map(|i| json!({ "section": "s", "image_number": i, "description": format!("page {i}"), "image_prompt": format!("a mandala of leaves number {i}") }))
        .collect();
    std::fs::write(dir.join("prompts.json"), json!({ "prompts": prompts }).to_string()).unwrap();
    let file = dir.join("rerolls.yaml");
    let rest = format!(
        "  print: {{ kind: upscale, inputs: [gray], width: 638, height: 825, dpi: 75 }}
  quality: {{ kind: lineart-check, inputs: [print], max_rerolls: 2 }}
  lineart: {{ kind: threshold, inputs: [quality] }}
sinks:
  pages: {{ kind: disk, inputs: [lineart] }}
  publish: {{ kind: s3, inputs: [lineart], endpoint: \"{endpoint}\", bucket: {BUCKET}, prefix: book }}
  gallery: {{ kind: s3, inputs: [lineart], endpoint: \"{endpoint}\", bucket: {BUCKET}, prefix: gallery, candidates: skip, upload_metadata: false }}
",
        endpoint = server.endpoint,
    );
    let draw = "size: { width: 192, height: 256 }, seed: 7, defects: 0.5";
    std::fs::write(&file, pattern_pipeline(Path::new("prompts.json"), draw, &rest)).unwrap();
    file
}

/// Every file under `dir`, relative, with its bytes (inkflow's own files left out).
fn files_under(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut found = std::collections::BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/");
                found.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    found
}

/// A re-rolled page goes up once, when its rounds are over, as the page that won; its other
/// candidates go under rejected/ and candidates/ as on disk (or nowhere with `candidates:
/// skip`); no key is written twice; and a resume uploads nothing.
#[tokio::test]
async fn a_rerolled_page_goes_up_once_as_the_winner_with_its_candidates_beside_it() {
    let server = Server::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let pipeline = rerolling_upload_pipeline(dir.path(), &server);

    let first = run_inkflow(&pipeline, &out).await;
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let puts: Vec<String> = server
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.starts_with("PUT "))
        .map(|r| r.split(' ').nth(1).unwrap().to_owned())
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    let twice: Vec<&String> = puts.iter().filter(|key| !seen.insert(*key)).collect();
    assert!(twice.is_empty(), "keys written twice in one run: {twice:?}");

    // The bucket mirrors the disk sink: each page is the page on disk, and every candidate set
    // aside on disk is under the same name in the bucket, byte for byte.
    let on_disk = files_under(&out);
    let aside: Vec<&String> =
        on_disk.keys().filter(|k| k.starts_with("rejected/") || k.starts_with("candidates/")).collect();
    assert!(aside.iter().any(|k| k.ends_with(".png")), "some pages were re-rolled: {:?}", on_disk.keys());
    let pages: Vec<&String> = on_disk.keys().filter(|k| !k.contains('/') && k.ends_with(".png")).collect();
    assert_eq!(pages.len(), 10, "{:?}", on_disk.keys());
    let bucket = files_under(&server.object_file(""));
    for page in &pages {
        assert_eq!(bucket.get(&format!("book/{page}")), Some(&on_disk[*page]), "book/{page} is the winner");
        assert_eq!(bucket.get(&format!("gallery/{page}")), Some(&on_disk[*page]), "gallery/{page}");
    }
    for name in aside.iter().filter(|k| k.ends_with(".png")) {
        assert_eq!(bucket.get(&format!("book/{name}")), Some(&on_disk[*name]), "book/{name}");
    }
    let book_aside =
        bucket.keys().filter(|k| k.starts_with("book/rejected/") || k.starts_with("book/candidates/"));
    assert_eq!(
        book_aside.filter(|k| k.ends_with(".png")).count(),
        aside.iter().filter(|k| k.ends_with(".png")).count()
    );
    let gallery: Vec<&String> = bucket.keys().filter(|k| k.starts_with("gallery/")).collect();
    assert_eq!(gallery.len(), 10, "candidates: skip keeps the pages only: {gallery:?}");
    // Nothing is left held back once the batch is over.
    assert!(
        !out.join("cache").join("r2-held").exists()
            || files_under(&out.join("cache").join("r2-held")).is_empty()
    );

    // A resume uploads nothing.
    server.requests.lock().unwrap().clear();
    let second = run_inkflow(&pipeline, &out).await;
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert_eq!(server.object_puts(), 0, "{:?}", server.requests.lock().unwrap());
}
