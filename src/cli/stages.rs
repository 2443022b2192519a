//! `inkflow stages [KIND]`: what each kind does, takes, gives and which options it has.

use std::process::ExitCode;

use inkflow::engine::stage::OutputMedia;

/// Arguments of `inkflow stages`.
#[derive(clap::Args)]
pub struct StagesArgs {
    /// A kind to describe in full.
    kind: Option<String>,
    /// Also list the stages of these plugin libraries or folders (repeatable).
    #[arg(long, value_name = "PATH")]
    plugins: Vec<std::path::PathBuf>,
}

/// Prints the list, or one kind's page.
pub fn run(args: &StagesArgs) -> anyhow::Result<ExitCode> {
    let registry = super::registry_with_plugins(&args.plugins)?;
    let Some(name) = &args.kind else {
        for kind in registry.all() {
            let info = kind.info();
            println!("{:<7} {:<12} {}", info.role.noun(), info.name, info.summary);
        }
        println!("\nRun `inkflow stages KIND` for a kind's options.");
        return Ok(ExitCode::SUCCESS);
    };
    let Some(kind) = registry.get(name) else {
        let known: Vec<String> = registry.all().iter().map(|k| k.info().name.clone()).collect();
        anyhow::bail!("unknown kind \"{name}\" (known kinds: {})", known.join(", "));
    };
    let info = kind.info();
    println!("{} ({})\n  {}\n", info.name, info.role.noun(), info.summary);
    if !info.accepts.is_empty() {
        let takes: Vec<String> = info.accepts.iter().map(ToString::to_string).collect();
        println!("  takes: {}", takes.join(", "));
    }
    match info.output {
        OutputMedia::Fixed(m) => println!("  gives: {m}"),
        OutputMedia::SameAsInput => println!("  gives: the same media it takes"),
        OutputMedia::None => {}
    }
    println!("\n  options:");
    for option in &info.options {
        let default = option.default.as_deref().map_or("required".to_owned(), |d| format!("default {d}"));
        println!("    {:<22} {:<28} {default}", option.name, option.ty);
        println!("        {}", option.doc);
    }
    println!("\n  every {} also takes: inputs, capacity, concurrency", info.role.noun());
    Ok(ExitCode::SUCCESS)
}
