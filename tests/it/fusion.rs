//! The fused CPU chain as a user runs it: how many pages it works on at once.

use std::path::Path;

use crate::common::binary::inkflow;
use crate::common::pipeline_text::pattern_pipeline;

/// A CPU stage whose `concurrency` the file leaves unset works on as many items at once as
/// the CPU pool has threads (`--threads`, else the machine's cores); set values are kept, and
/// other components still take one at a time.
#[test]
fn cpu_stages_default_to_one_item_per_pool_thread() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/prompts/sample_image_prompts.json");
    let file = dir.path().join("book.yaml");
    let rest = "  print:   { kind: upscale, inputs: [gray], width: 120, height: 160, concurrency: 5 }
  lineart: { kind: threshold, inputs: [print] }
sinks:
  pages: { kind: disk, inputs: [lineart] }
";
    std::fs::write(&file, pattern_pipeline(&prompts, "size: { width: 64, height: 80 }", rest)).unwrap();
    let out = dir.path().join("out");
    let output = inkflow()
        .args(["run", "--dry-run", "--threads", "3", "--output"])
        .arg(&out)
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let concurrency = |id: &str| {
        let line = stdout.lines().find(|l| l.split_whitespace().nth(1) == Some(id)).unwrap_or_default();
        line.rsplit("concurrency ").next().and_then(|n| n.trim_end_matches(')').parse::<usize>().ok())
    };
    let seen: Vec<_> = ["prompts", "draw", "gray", "print", "lineart", "pages"].map(concurrency).into();
    assert_eq!(seen, [Some(1), Some(3), Some(3), Some(5), Some(3), Some(1)], "{stdout}");
}
