//! inkflow runs YAML-declared image-generation pipelines: sources of prompts or images, stages
//! that generate and post-process pages, and sinks that write them out.
//!
//! The crate is split the way a stage author needs it: [`engine`] (config, graph, runtime) knows
//! no stage by name; [`stages`] holds one file per built-in kind; [`imaging`] holds the pixel
//! operations those stages and the benchmarks share.

pub mod engine;
pub mod imaging;
pub mod print;
pub mod report;
pub mod stages;
