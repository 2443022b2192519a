//! The pipeline engine: configuration, graph checks, the staged runtime and the batch summary.

pub mod cpu;
pub mod item;
pub mod media;
pub mod run_context;
pub mod stage;
pub mod summary;
