//! `inkflow graph`: the pipeline as a picture (Graphviz dot or Mermaid), edges labelled by media.

use std::process::ExitCode;

use clap::ValueEnum;
use inkflow::engine::stage::Role;

use super::PipelineArgs;

/// Output formats of `inkflow graph`.
#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// Graphviz: `inkflow graph p.yaml | dot -Tsvg > p.svg`.
    Dot,
    /// Mermaid, for Markdown files.
    Mermaid,
}

/// Arguments of `inkflow graph`.
#[derive(clap::Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "dot")]
    format: Format,
}

/// Prints the graph.
pub fn run(args: &GraphArgs) -> anyhow::Result<ExitCode> {
    let (pipeline, _) = super::load(&args.pipeline)?;
    let mut out = String::new();
    match args.format {
        Format::Dot => out.push_str(&format!("digraph \"{}\" {{\n  rankdir=LR;\n", pipeline.name)),
        Format::Mermaid => out.push_str("flowchart LR\n"),
    }
    for c in &pipeline.components {
        let shape = match c.role {
            Role::Source => ("invhouse", "[/", "/]"),
            Role::Stage => ("box", "[", "]"),
            Role::Sink => ("house", "[(", ")]"),
        };
        match args.format {
            Format::Dot => out.push_str(&format!(
                "  \"{}\" [shape={} label=\"{}\\n({})\"];\n",
                c.id, shape.0, c.id, c.kind
            )),
            Format::Mermaid => {
                out.push_str(&format!("  {}{}\"{} ({})\"{}\n", c.id, shape.1, c.id, c.kind, shape.2))
            }
        }
    }
    for c in &pipeline.components {
        for &input in &c.inputs {
            let from = &pipeline.components[input];
            let media = from.output.map(|m| m.to_string()).unwrap_or_default();
            match args.format {
                Format::Dot => {
                    out.push_str(&format!("  \"{}\" -> \"{}\" [label=\"{media}\"];\n", from.id, c.id))
                }
                Format::Mermaid => out.push_str(&format!("  {} -->|{media}| {}\n", from.id, c.id)),
            }
        }
    }
    if let Format::Dot = args.format {
        out.push_str("}\n");
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}
