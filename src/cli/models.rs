//! `inkflow models [MODEL] [--refresh]`: the fal models inkflow knows, one model's inputs,
//! defaults and price, and the refresh of an entry (or the addition of a model) from fal's APIs.

use std::process::ExitCode;

use anyhow::Context as _;
use inkflow::stages::fal::{Environment, Model, all_models, find_model, refresh_model, show_value};

/// Arguments of `inkflow models`.
#[derive(clap::Args)]
pub struct ModelsArgs {
    /// A fal endpoint id to describe in full, e.g. fal-ai/flux/schnell.
    model: Option<String>,
    /// Fetch MODEL's schema and price from fal (needs FAL_KEY) into the user catalogue
    /// ($INKFLOW_MODELS_DIR, else ~/.config/inkflow/models), adding it if it is not listed.
    #[arg(long, requires = "model")]
    refresh: bool,
}

/// Prints the list, one model's page, or refreshes one.
pub fn run(args: &ModelsArgs) -> anyhow::Result<ExitCode> {
    let env = Environment::process();
    let Some(id) = &args.model else {
        for entry in all_models(&env) {
            let model = &entry.model;
            let mark = if entry.from_user { " (yours)" } else { "" };
            println!("{:<42} {:<38} {}{mark}", model.id, model.title, model.price.describe_short());
        }
        println!("\nRun `inkflow models MODEL` for a model's inputs, defaults and price.");
        return Ok(ExitCode::SUCCESS);
    };
    let model = if args.refresh {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start tokio")?;
        let (file, model) = runtime.block_on(refresh_model(id, &env)).map_err(anyhow::Error::msg)?;
        println!("wrote {}\n", file.display());
        model
    } else {
        match find_model(id, &env).map_err(anyhow::Error::msg)? {
            Some(model) => model,
            None => anyhow::bail!(
                "{id:?} is not in the catalogue: `inkflow models {id} --refresh` adds it from fal (needs FAL_KEY); \
                 `inkflow models` lists the known ones"
            ),
        }
    };
    describe(&model);
    Ok(ExitCode::SUCCESS)
}

/// One model's page, like `inkflow stages KIND`.
fn describe(model: &Model) {
    println!("{} ({})", model.id, model.title);
    println!("  price:             {}", model.price.describe());
    println!("  size input:        {}", model.size_input());
    println!("  images/request:    {}", model.images_per_request());
    println!(
        "  seed:              {}",
        if model.takes_seed() { "yes" } else { "no (a re-roll is a new request)" }
    );
    println!("  outputs:           {}", model.outputs.join(", "));
    if !model.image_inputs.is_empty() {
        let listed: Vec<String> = model.image_inputs.iter().map(ToString::to_string).collect();
        println!("  image inputs:      {} (set with `references`)", listed.join(", "));
    }
    println!("  loras:             {}", if model.loras { "yes" } else { "no" });
    println!("  source:            {}", model.source);
    if let Some(notes) = &model.notes {
        println!("  note:              {notes}");
    }
    println!("\n  inputs (set them by name or under `extra`; unset ones take the model's default):");
    for (name, input) in &model.inputs {
        let mut limits = Vec::new();
        match (input.min, input.max) {
            (Some(min), Some(max)) => {
                limits.push(format!("{}..{}", show_value(&min.into()), show_value(&max.into())))
            }
            (Some(min), None) => limits.push(format!(">= {}", show_value(&min.into()))),
            (None, Some(max)) => limits.push(format!("<= {}", show_value(&max.into()))),
            (None, None) => {}
        }
        if input.choices.is_some() {
            limits.push(format!("one of {}", input.choice_list()));
        }
        if !input.examples.is_empty() {
            let examples: Vec<String> = input.examples.iter().map(show_value).collect();
            limits.push(format!("e.g. {}", examples.join(", ")));
        }
        let default = input
            .default
            .as_ref()
            .map_or_else(|| "no default".to_owned(), |d| format!("default {}", show_value(d)));
        println!("    {name:<24} {:<8} {default}", input.kind.word());
        if !limits.is_empty() {
            println!("        {}", limits.join("; "));
        }
        if let Some(doc) = input.doc.as_ref().or(input.items.as_ref()) {
            println!("        {doc}");
        }
    }
}
