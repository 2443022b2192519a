//! Renders sample pages of every pattern family to PNG files, to look at the offline generator's
//! output and time it: `cargo run --release --example pattern_preview -- DIR [SEEDS]`.

use std::time::Instant;

use anyhow::Context;
use inkflow::engine::media::Pixels;
use inkflow::imaging::pattern::{Family, draw_family};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().context("usage: pattern_preview DIR [SEEDS]")?;
    let seeds: u64 =
        args.next().map(|s| s.parse()).transpose().context("SEEDS must be a number")?.unwrap_or(3);
    let (width, height) = (768, 1024);
    for family in Family::ALL {
        for seed in 0..seeds {
            let started = Instant::now();
            let page = draw_family(family, "preview", seed, width, height);
            println!("{} seed {seed}: {:.1} ms", family.name(), started.elapsed().as_secs_f64() * 1000.0);
            let Pixels::Rgb(rgb) = page.pixels else { anyhow::bail!("the generator draws RGB") };
            let path = format!("{dir}/{}_{seed}.png", family.name());
            image::save_buffer(&path, &rgb, width, height, image::ColorType::Rgb8)
                .with_context(|| format!("cannot write {path}"))?;
        }
    }
    Ok(())
}
