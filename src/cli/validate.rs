//! `inkflow validate`: every problem in a pipeline file, with positions, and nothing run.

use std::process::ExitCode;

use inkflow::engine::diagnostic::Diagnostic;
use inkflow::engine::pipeline::{self, LoadOptions};
use inkflow::print::font::coverage::unprintable_text;

use super::PipelineArgs;

/// Checks the file; config errors surface as exit code 2 through the caller. Warnings (options
/// accepted but worth a word, text no font can print) are printed with their position and do
/// not fail the check.
pub fn run(args: &PipelineArgs) -> anyhow::Result<ExitCode> {
    let (pipeline, registry) = super::load(args)?;
    let root = pipeline::read_tree(&args.pipeline, &LoadOptions { overrides: args.overrides.clone() })?;
    for component in &pipeline.components {
        let Some(kind) = registry.get(&component.kind) else { continue };
        let noun = component.role.noun();
        let node = root.get(&format!("{noun}s")).and_then(|section| section.get(&component.id));
        for warning in kind.warnings(&component.options) {
            let pos = node.map_or(component.pos, |node| node.position_of(&warning.path));
            let diagnostic =
                Diagnostic::new(&args.pipeline, pos, format!("warning: {}", warning.qualified()));
            eprintln!("{}", diagnostic.about(noun, &component.id));
        }
    }
    for warning in unprintable_text(&pipeline) {
        eprintln!("{warning}");
    }
    println!(
        "{}: ok ({} components: {})",
        args.pipeline.display(),
        pipeline.components.len(),
        pipeline.components.iter().map(|c| format!("{} ({})", c.id, c.kind)).collect::<Vec<_>>().join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
