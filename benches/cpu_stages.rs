//! CPU cost of each post-processing step on a realistic page, and of the whole per-page chain:
//! a 768x1024 anti-aliased line-art PNG (benches/fixtures, from shared/reference/make_inputs.py)
//! → gray → Lanczos3 to 2550x3300 → threshold → 1-bit PNG + 400x518 JPEG thumbnail, and the
//! quality stages on that page (`lineart-check` on the gray page, `lineart-cleanup` on the bits).
//!
//! `cargo bench --bench cpu_stages` (add `-- --quick` on a shared machine). Page sizes per PNG
//! compression level are printed once at the start.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use inkflow::engine::item::{Item, Prompt};
use inkflow::engine::media::Payload;
use inkflow::engine::media::{Pixels, Raster};
use inkflow::engine::stage::{BuildContext, Component, CpuStage, Kind};
use inkflow::imaging::fused::upscale_threshold;
use inkflow::imaging::gray::to_gray;
use inkflow::imaging::jpeg::encode_thumbnail;
use inkflow::imaging::png::{PngCompression, encode_png};
use inkflow::imaging::resize::{Fit, resize};
use inkflow::imaging::threshold::threshold;
use inkflow::stages::lineart_check::LineartCheck;
use inkflow::stages::lineart_cleanup::LineartCleanup;
use std::sync::Arc;

const FIXTURES: [&str; 2] = ["page_000.png", "page_002.png"];
const COMPRESSIONS: [(&str, PngCompression); 3] =
    [("fast", PngCompression::Fast), ("default", PngCompression::Default), ("best", PngCompression::Best)];

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/benches/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn decode(bytes: &[u8]) -> Raster {
    let rgb = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .expect("fixture decodes")
        .to_rgb8();
    let (width, height) = rgb.dimensions();
    Raster::new(width, height, None, Pixels::Rgb(rgb.into_raw()))
}

fn upscale(gray: &Raster) -> Raster {
    let mut page = resize(gray, 2550, 3300, Fit::Contain).expect("resize");
    page.dpi = Some(300.0);
    page
}

/// The whole per-page work of `pipelines/postprocess.yaml`, minus the file writes.
fn page_chain(png: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let page = threshold(&upscale(&to_gray(&decode(png))), 128);
    let file = encode_png(&page, PngCompression::Default).expect("png");
    let thumb = encode_thumbnail(&page, 400, 518, 85).expect("jpeg");
    (file, thumb.bytes)
}

/// [`page_chain`] with upscale and threshold fused, as a chain without a check between them
/// runs (`pipelines/kdp-book.yaml`): the same page, without the full-size gray page.
fn fused_chain(png: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut page = upscale_threshold(&to_gray(&decode(png)), 2550, 3300, Fit::Contain, 128).expect("fused");
    page.dpi = Some(300.0);
    let file = encode_png(&page, PngCompression::Default).expect("png");
    let thumb = encode_thumbnail(&page, 400, 518, 85).expect("jpeg");
    (file, thumb.bytes)
}

/// A quality stage with its default options, as a pipeline builds it.
fn quality_stage(kind: &dyn Kind) -> Arc<dyn CpuStage> {
    let ctx = BuildContext {
        id: "bench".into(),
        inputs: vec!["print".into()],
        output_dir: std::env::temp_dir(),
        pipeline_file: "bench.yaml".into(),
        dry_run: true,
        room_below: 4,
    };
    match kind.build(&serde_json::json!({}), &ctx) {
        Ok(Component::Cpu(stage)) => stage,
        _ => panic!("{} builds a CPU stage", kind.info().name),
    }
}

/// `lineart-check` on the gray print page, then `lineart-cleanup` on its 1-bit page: what
/// the two stages add to a page of `pipelines/postprocess.yaml`.
fn check_and_clean(
    check: &dyn CpuStage,
    clean: &dyn CpuStage,
    gray: &Arc<Raster>,
    page: &Arc<Raster>,
) -> Payload {
    let mut item = Item::new(0, Prompt::default());
    check.process(&mut item, Payload::Image(gray.clone())).expect("check");
    clean.process(&mut item, Payload::Image(page.clone())).expect("cleanup")
}

fn benches(c: &mut Criterion) {
    let png = fixture(FIXTURES[0]);
    let rgb = decode(&png);
    let gray = to_gray(&rgb);
    let big = upscale(&gray);
    let page = threshold(&big, 128);

    for name in FIXTURES {
        let page = threshold(&upscale(&to_gray(&decode(&fixture(name)))), 128);
        for (level, compression) in COMPRESSIONS {
            let size = encode_png(&page, compression).expect("png").len();
            eprintln!("{name}: 1-bit page PNG, {level}: {} KiB", size / 1024);
        }
    }

    let mut g = c.benchmark_group("page");
    g.bench_function("decode_png", |b| b.iter(|| decode(black_box(&png))));
    g.bench_function("grayscale", |b| b.iter(|| to_gray(black_box(&rgb))));
    g.bench_function("upscale_lanczos3", |b| b.iter(|| upscale(black_box(&gray))));
    g.bench_function("threshold", |b| b.iter(|| threshold(black_box(&big), 128)));
    g.bench_function("upscale_threshold_fused", |b| {
        b.iter(|| upscale_threshold(black_box(&gray), 2550, 3300, Fit::Contain, 128))
    });
    for (level, compression) in COMPRESSIONS {
        g.bench_function(format!("png_1bit_{level}"), |b| {
            b.iter(|| encode_png(black_box(&page), compression))
        });
    }
    g.bench_function("thumbnail_jpeg", |b| b.iter(|| encode_thumbnail(black_box(&page), 400, 518, 85)));
    let (check, clean) = (quality_stage(&LineartCheck), quality_stage(&LineartCleanup));
    let (big, page) = (Arc::new(big.clone()), Arc::new(page.clone()));
    let item = || Item::new(0, Prompt::default());
    g.bench_function("lineart_check", |b| {
        b.iter(|| check.process(&mut item(), Payload::Image(black_box(big.clone()))))
    });
    g.bench_function("lineart_cleanup", |b| {
        b.iter(|| clean.process(&mut item(), Payload::Image(black_box(page.clone()))))
    });
    g.bench_function("check_and_cleanup", |b| {
        b.iter(|| check_and_clean(check.as_ref(), clean.as_ref(), black_box(&big), black_box(&page)))
    });
    g.bench_function("whole_chain", |b| b.iter(|| page_chain(black_box(&png))));
    g.bench_function("whole_chain_fused", |b| b.iter(|| fused_chain(black_box(&png))));
    g.finish();
}

criterion_group! {
    name = cpu_stages;
    // Short runs: the machines this runs on are shared.
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(cpu_stages);
