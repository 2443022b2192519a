//! `report.html` for a batch of 1,000 items: how long gathering (journal, metadata files,
//! candidate folders) and rendering take, and how large the page is. The batch is made once,
//! offline, with small pattern pages, a quality check that rejects some, and re-rolls, so the
//! report has verdicts, problems and rejected candidates to show.

use criterion::{Criterion, criterion_group, criterion_main};
use inkflow::report::{RunFacts, write_report};

#[path = "common/offline_batch.rs"]
mod offline_batch;

use offline_batch::{ITEMS, make_batch};

fn report(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    make_batch(dir.path());
    let path = write_report(dir.path(), RunFacts::default()).unwrap();
    let bytes = std::fs::metadata(&path).unwrap().len();
    let rejected = std::fs::read_dir(dir.path().join("rejected")).map_or(0, |d| d.count());
    println!("report.html for {ITEMS} items: {} KiB ({rejected} rejected candidate files)", bytes / 1024);
    assert!(bytes < 2 * 1024 * 1024, "the report stays under 2 MB: {bytes} bytes");
    let mut group = c.benchmark_group("report");
    group.sample_size(10);
    group.bench_function("gather_and_write_1000_items", |b| {
        b.iter(|| write_report(dir.path(), RunFacts::default()).unwrap())
    });
    group.finish();
}

criterion_group!(benches, report);
criterion_main!(benches);
