//! `inkflow validate`: every problem in a pipeline file, with positions, and nothing run.

use std::process::ExitCode;

use inkflow::print::font::coverage::unprintable_text;

use super::PipelineArgs;

/// Checks the file; config errors surface as exit code 2 through the caller. Warnings (text no
/// font can print) go to stderr and leave the file valid.
pub fn run(args: &PipelineArgs) -> anyhow::Result<ExitCode> {
    let (pipeline, _) = super::load(args)?;
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
