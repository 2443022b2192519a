//! The pipeline engine: configuration, graph checks, the staged runtime and the batch summary.

pub mod atomic_file;
pub mod candidates;
pub mod cpu;
pub mod declared_kind;
pub mod diagnostic;
pub mod duration;
pub mod fusion;
pub mod item;
pub mod journal;
pub mod media;
pub mod options;
pub mod output_lock;
pub mod output_path;
pub mod pipeline;
pub mod pipeline_path;
pub mod raw_cache;
pub mod review;
pub mod run_context;
pub mod runtime;
pub mod stage;
pub mod summary;
pub mod yaml;
