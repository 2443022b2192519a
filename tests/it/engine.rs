//! The engine on its own, with small test kinds: config errors and their positions, the
//! runtime's backpressure bound, failures confined to their item, fan-out and joins, and
//! fused chains of CPU stages.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::common::{Probe, registry, write_pipeline};
use inkflow::engine::diagnostic::ConfigErrors;
use inkflow::engine::pipeline::{self, LoadOptions};
use inkflow::engine::runtime::{self, RunSettings};
use inkflow::engine::summary::Summary;

fn errors_of(text: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = write_pipeline(dir.path(), text);
    let err: ConfigErrors =
        pipeline::load(&file, &LoadOptions::default(), &registry(&Arc::default())).unwrap_err();
    err.0.iter().map(|d| d.to_string().replace(&file.display().to_string(), "p.yaml")).collect()
}

async fn run(text: &str, overrides: &[&str], probe: &Arc<Probe>) -> Summary {
    run_with(text, overrides, probe, RunSettings::default()).await
}

async fn run_with(text: &str, overrides: &[&str], probe: &Arc<Probe>, settings: RunSettings) -> Summary {
    let dir = tempfile::tempdir().unwrap();
    let file = write_pipeline(dir.path(), text);
    let options = LoadOptions { overrides: overrides.iter().map(|s| s.to_string()).collect() };
    let pipeline = pipeline::load(&file, &options, &registry(probe)).unwrap();
    let batch = runtime::build(pipeline, &registry(probe), dir.path(), false).unwrap();
    batch.run(settings).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_from_outside_is_told_apart_from_a_finished_batch() {
    const COUNT: &str = "version: 1\nsources:\n  src: { kind: count, items: 6 }\nstages:\n  a: { kind: draw, inputs: [src] }\nsinks:\n  out: { kind: record, inputs: [a] }\n";
    let probe = Arc::new(Probe::default());
    let finished = run(COUNT, &[], &probe).await;
    assert!(!finished.interrupted && !finished.stopped_by_user, "{finished:?}");
    // Ctrl-C cancels the stop token: no item starts, and the summary says the user stopped it
    // (the exit code reads this flag, not the wording of the reason).
    let settings = RunSettings::default();
    settings.context.stop.cancel();
    let stopped = run_with(COUNT, &[], &probe, settings).await;
    assert!(stopped.interrupted && stopped.stopped_by_user, "{stopped:?}");
    assert_eq!((stopped.succeeded, stopped.not_started), (0, 6));
}

#[test]
fn every_config_error_is_reported_with_its_position() {
    let errors = errors_of(
        "version: 1
sources:
  src: { kind: count, items: 3 }
  idle: { kind: count, items: 1 }
stages:
  a: { kind: drw, inputs: [src] }
  b: { kind: draw, inputs: [src], sied: 3 }
  c: { kind: draw, inputs: [nowhere] }
  d: { kind: draw, inputs: [src], side: big }
sinks:
  out: { kind: record, inputs: [b, c, d] }
",
    );
    let expected = [
        "p.yaml:4:3: source \"idle\": source \"idle\" has no consumer",
        "p.yaml:6:14: stage \"a\": unknown kind \"drw\" (known stage kinds: draw, gate, retouch)",
        "p.yaml:7:35: stage \"b\": unknown field \"sied\" (expected: fail, side, track)",
        "p.yaml:8:29: stage \"c\": input \"nowhere\" doesn't match any source or stage",
        "p.yaml:9:41: stage \"d\": side: invalid type: string \"big\", expected u32",
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (got, want) in errors.iter().zip(expected) {
        assert!(got.starts_with(want), "got {got:?}\nwant {want:?}");
    }
}

#[test]
fn missing_fields_list_what_is_expected() {
    let errors = errors_of(
        "version: 1\nsources:\n  src: { kind: count }\nsinks:\n  out: { kind: record, inputs: [src] }\n",
    );
    assert_eq!(errors, ["p.yaml:3:3: source \"src\": missing field \"items\" (expected: items)"]);
}

#[test]
fn cycles_and_media_mismatches_are_reported() {
    let cycle = errors_of(
        "version: 1\nsources:\n  src: { kind: count, items: 1 }\nstages:\n  a: { kind: draw, inputs: [b] }\n  b: { kind: draw, inputs: [a] }\nsinks:\n  out: { kind: record, inputs: [src, b] }\n",
    );
    assert!(cycle.iter().any(|e| e.contains("cycle through a -> b")), "{cycle:#?}");
    let media = errors_of(
        "version: 1\nsources:\n  src: { kind: count, items: 1 }\nstages:\n  a: { kind: draw, inputs: [src] }\n  b: { kind: draw, inputs: [a] }\nsinks:\n  out: { kind: record, inputs: [b] }\n",
    );
    assert_eq!(media.len(), 1, "{media:#?}");
    assert!(
        media[0].starts_with("p.yaml:6:3: stage \"b\": kind \"draw\" cannot take a gray image from \"a\""),
        "{media:#?}"
    );
}

#[test]
fn semantic_option_errors_point_at_the_field() {
    let errors = errors_of(
        "version: 1\nsources:\n  src: { kind: count, items: 1 }\nstages:\n  a: { kind: draw, inputs: [src], side: 0 }\nsinks:\n  out: { kind: record, inputs: [a] }\n",
    );
    assert_eq!(errors, ["p.yaml:5:41: stage \"a\": side: must be at least 1"]);
}

#[test]
fn top_level_mistakes_are_reported() {
    let errors = errors_of("version: 2\nsorces: {}\nsinks:\n  out: { kind: record, inputs: [] }\n");
    assert!(errors.iter().any(|e| e.starts_with("p.yaml:1:10: unsupported version")), "{errors:#?}");
    assert!(errors.iter().any(|e| e.starts_with("p.yaml:2:1: unknown field \"sorces\"")), "{errors:#?}");
    assert!(errors.iter().any(|e| e.contains("missing field \"sources\"")), "{errors:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_item_fails_alone_and_reaches_the_sinks() {
    let probe = Arc::new(Probe::default());
    let summary = run(
        "version: 1\nsources:\n  src: { kind: count, items: 6 }\nstages:\n  a: { kind: draw, inputs: [src], fail: [3] }\nsinks:\n  out: { kind: record, inputs: [a] }\n",
        &[],
        &probe,
    )
    .await;
    assert_eq!((summary.succeeded, summary.failed, summary.total_items), (5, 1, 6));
    assert_eq!(summary.failures[0].key, "t-00003");
    assert_eq!(summary.failures[0].stage, "a");
    let seen = probe.seen.lock().unwrap();
    assert_eq!(seen.len(), 6);
    assert!(seen.iter().any(|(k, fate)| k == "t-00003" && fate == "failed at a: refused 3"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_change_the_run() {
    let probe = Arc::new(Probe::default());
    let summary = run(
        "version: 1\nsources:\n  src: { kind: count, items: 4 }\nstages:\n  a: { kind: draw, inputs: [src] }\nsinks:\n  out: { kind: record, inputs: [a] }\n",
        &["stages.a.fail=[1, 2]", "sources.src.items=5"],
        &probe,
    )
    .await;
    assert_eq!((summary.total_items, summary.failed), (5, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sink_holds_back_the_source() {
    let probe = Arc::new(Probe::default());
    let summary = run(
        "version: 1
defaults: { capacity: 2 }
sources:
  src: { kind: count, items: 60 }
stages:
  a: { kind: draw, inputs: [src], concurrency: 2 }
sinks:
  out: { kind: record, inputs: [a], delay_ms: 5 }
",
        &[],
        &probe,
    )
    .await;
    assert_eq!(summary.succeeded, 60);
    // Counted: items the source's listing made and the sink has not written yet (an engine that
    // made every item up front would count all 60). Upstream of the sink: source (concurrency 1,
    // plus one blocked send), edge (capacity 2), stage (concurrency 2, its blocked sends
    // included), edge (capacity 2), sink (concurrency 1).
    let bound = (1 + 1) + 2 + 2 + 2 + 1;
    let max = probe.max_in_flight.load(Ordering::SeqCst);
    assert!(max <= bound, "{max} items in flight, bound {bound}");
    assert!(max >= 4, "the sink should have been the bottleneck, saw only {max} in flight");
}

/// An item waiting for room downstream must not stall its stage's other items. Here the sink
/// holds its first item until the stage has let item 4 through, and item 4 can only go once
/// the sink has started: while items 2 and 3 wait for the full edge, item 4 must still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_waiting_for_room_does_not_stall_its_neighbours() {
    let probe = Arc::new(Probe::default());
    let summary = run(
        "version: 1
sources:
  src: { kind: count, items: 4, capacity: 4 }
stages:
  gate: { kind: gate, inputs: [src], gated: 4, concurrency: 4, capacity: 4 }
sinks:
  out: { kind: record, inputs: [gate], hold_for_gate: true, capacity: 1 }
",
        &[],
        &probe,
    )
    .await;
    assert_eq!(summary.succeeded, 4, "{:?}", summary.failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_shares_pixels_and_sinks_join_inputs() {
    let probe = Arc::new(Probe::default());
    let summary = run(
        "version: 1
sources:
  src: { kind: count, items: 3 }
stages:
  a: { kind: draw, inputs: [src], fail: [2] }
sinks:
  both: { kind: record, inputs: [a, src] }
  again: { kind: record, inputs: [a] }
",
        &[],
        &probe,
    )
    .await;
    assert_eq!((summary.succeeded, summary.failed), (2, 1));
    let seen = probe.seen.lock().unwrap();
    // Three items reach each sink once; the joining sink sees both inputs together.
    assert_eq!(seen.len(), 6);
    assert_eq!(seen.iter().filter(|(_, f)| f == "Gray + Prompt").count(), 2, "{seen:?}");
    assert_eq!(seen.iter().filter(|(_, f)| f.starts_with("failed at a")).count(), 2, "{seen:?}");
    // Each good item's image is the same allocation in both sinks: shared, not copied.
    let pointers = probe.sizes_seen.lock().unwrap();
    assert_eq!(pointers.len(), 4);
    let distinct: std::collections::HashSet<_> = pointers.iter().collect();
    assert_eq!(distinct.len(), 2);
}

/// `draw -> retouch -> retouch` is one fused chain: each failure or panic still names its
/// stage, and every stage's counts are what they would be unfused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fused_chain_reports_each_stage_as_its_own() {
    let probe = Arc::new(Probe::default());
    let summary = run(
        "version: 1
sources:
  src: { kind: count, items: 6 }
stages:
  a: { kind: draw, inputs: [src], fail: [2] }
  b: { kind: retouch, inputs: [a], fail: [3] }
  c: { kind: retouch, inputs: [b], panic: [4] }
sinks:
  out: { kind: record, inputs: [c] }
",
        &[],
        &probe,
    )
    .await;
    assert_eq!((summary.succeeded, summary.failed), (3, 3));
    let mut failures: Vec<(&str, &str, &str)> =
        summary.failures.iter().map(|f| (f.key.as_str(), f.stage.as_str(), f.error.as_str())).collect();
    failures.sort();
    assert_eq!(
        failures,
        [
            ("t-00002", "a", "refused 2"),
            ("t-00003", "b", "cannot retouch 3"),
            ("t-00004", "c", "panicked: retouch broke on 4"),
        ]
    );
    let counts: Vec<(&str, u64, u64)> =
        summary.components.iter().map(|c| (c.id.as_str(), c.done, c.failed)).collect();
    assert_eq!(counts, [("src", 6, 0), ("a", 5, 1), ("b", 4, 1), ("c", 3, 1), ("out", 6, 0)]);
    let seen = probe.seen.lock().unwrap();
    assert!(
        seen.iter().any(|(k, fate)| k == "t-00003" && fate == "failed at b: cannot retouch 3"),
        "{seen:?}"
    );
}

/// Fused, a stage's output lives only until the next stage of its chain is done with it: with
/// a slow second stage, no more of the first stage's images exist at once than the chain has
/// items in progress (2), where a channel between them would have filled up (capacity 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fused_chain_holds_no_image_between_its_stages() {
    let probe = Arc::new(Probe::default());
    let summary = run(
        "version: 1
defaults: { capacity: 4, concurrency: 2 }
sources:
  src: { kind: count, items: 24 }
stages:
  a: { kind: draw, inputs: [src], track: true }
  b: { kind: retouch, inputs: [a], work_ms: 5 }
sinks:
  out: { kind: record, inputs: [b] }
",
        &[],
        &probe,
    )
    .await;
    assert_eq!(summary.succeeded, 24);
    let alive = probe.max_drawn_alive.load(Ordering::SeqCst);
    assert!((1..=2).contains(&alive), "{alive} of a's images alive at once");
}
