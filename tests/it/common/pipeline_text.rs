//! The offline pipeline most binary tests start from, written once: prompts drawn by the
//! `pattern` generator and made gray, ready for the stages and sinks a test is about.

use std::path::Path;

/// A pipeline reading `prompts`, drawing each as `draw` (`pattern` with `draw_options`) and
/// graying it as `gray`; `stages_and_sinks` goes on with more stages and the `sinks:` section.
pub fn pattern_pipeline(prompts: &Path, draw_options: &str, stages_and_sinks: &str) -> String {
    format!(
        "version: 1
sources:
  prompts: {{ kind: prompts, path: {prompts} }}
stages:
  draw: {{ kind: pattern, inputs: [prompts], {draw_options} }}
  gray: {{ kind: grayscale, inputs: [draw] }}
{stages_and_sinks}",
        prompts = prompts.display()
    )
}
