//! The integration tests, as one crate: one link of the library instead of one per file, and
//! one binary that runs them all in parallel. Each module is what a file under `tests/` was;
//! `cargo test --test it MODULE::` runs one of them.

mod common;

mod bakeoff;
mod batch;
mod cli;
mod cluster;
mod engine;
mod fal;
mod fal_batch;
mod fusion;
mod journal;
mod kill;
mod models;
mod pdf;
mod plan;
mod plugins;
mod preflight;
mod quality;
mod r2;
mod references;
mod report;
mod rerun;
mod review;
mod safety;
