//! Prompts per second through the `safety` stage with about 300 rules: the shipped children's
//! deny list, generated terms to fill it up, an allow list and two regex rules. One prompt in
//! ten hides a denied word behind a trick: look-alike letters of other scripts, invisible
//! fillers, enclosed letters, masks, compounds.

use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use inkflow::engine::item::{Item, Prompt};
use inkflow::engine::media::Payload;
use inkflow::engine::stage::{BuildContext, Component, CpuStage, Kind};
use inkflow::stages::safety::Safety;
use serde_json::json;

const SYLLABLES: [&str; 12] = ["ka", "lo", "mi", "ru", "sen", "ta", "vo", "zel", "pim", "dra", "qu", "fen"];

const WORDS: [&str; 24] = [
    "a", "cute", "bunny", "dragon", "castle", "reading", "under", "tree", "with", "flowers", "knight",
    "ship", "ocean", "rainbow", "garden", "cat", "playing", "simple", "line", "art", "coloring", "page",
    "happy", "forest",
];

/// Made-up words that never occur in the prompts, so every prompt is scanned against them.
fn generated_terms(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let n = SYLLABLES.len();
            format!("{}{}{}", SYLLABLES[i % n], SYLLABLES[(i / n) % n], SYLLABLES[(i / n / n) % n])
        })
        .collect()
}

/// Coloring-book prompts of 12-30 words; one in ten hides a denied word behind a trick.
fn prompts(count: usize) -> Vec<String> {
    let mut rng = fastrand::Rng::with_seed(7);
    let tricks = [
        "a g u n",
        "n4k3d",
        "nud\u{0435}",
        "ｂｅｅｒ",
        "b.l.o.o.d",
        "nu\u{115F}de",
        "gսn",
        "🅽🆄🅳🅴",
        "p*rn",
        "a gunfight",
    ];
    (0..count)
        .map(|i| {
            let len = rng.usize(12..30);
            let mut words: Vec<&str> = (0..len).map(|_| WORDS[rng.usize(..WORDS.len())]).collect();
            if i % 10 == 0 {
                words.insert(len / 2, tricks[i / 10 % tricks.len()]);
            }
            words.join(" ")
        })
        .collect()
}

fn stage() -> (Arc<dyn CpuStage>, usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/safety");
    let deny_file = dir.join("children-deny.txt");
    let file_terms = std::fs::read_to_string(&deny_file)
        .expect("the shipped deny list")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .count();
    let extra = generated_terms(300 - 2 - file_terms);
    let rules = file_terms + extra.len() + 2;
    let options = json!({
        "deny_files": [deny_file],
        "allow_files": [dir.join("children-allow.txt")],
        "deny": extra,
        "regex": [
            { "name": "ages", "pattern": "\\b\\d+ years? old\\b" },
            { "name": "gore words", "pattern": "\\b(blood|gore)\\w*" }
        ],
    });
    let ctx = BuildContext {
        id: "safe".into(),
        inputs: vec!["prompts".into()],
        output_dir: "output".into(),
        pipeline_file: "bench.yaml".into(),
        dry_run: false,
        room_below: 4,
    };
    match Safety.build(&options, &ctx) {
        Ok(Component::Cpu(stage)) => (stage, rules),
        _ => panic!("the safety stage should build"),
    }
}

fn bench(c: &mut Criterion) {
    let (stage, rules) = stage();
    let items: Vec<Item> = prompts(1000)
        .into_iter()
        .enumerate()
        .map(|(i, text)| Item::new(i as u64, Prompt { image_prompt: text, ..Prompt::default() }))
        .collect();
    let mut group = c.benchmark_group("safety");
    group.throughput(Throughput::Elements(items.len() as u64));
    group.bench_function(format!("1000 prompts, {rules} rules"), |b| {
        b.iter(|| {
            let mut rejected = 0;
            for item in &items {
                let mut item = item.clone();
                if stage.process(&mut item, Payload::Prompt).is_err() {
                    rejected += 1;
                }
            }
            assert_eq!(rejected, 100, "one prompt in ten hides a denied word");
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
