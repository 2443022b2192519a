//! Pixel operations shared by the stages and the benchmarks, free of any engine types but
//! [`crate::engine::media`].

pub mod pattern;
