//! The built-in stage kinds, one file each, and the helpers they share.

use std::sync::Arc;

use crate::engine::stage::Registry;

pub mod naming;
pub mod r2;

/// The registry of every built-in kind.
pub fn builtin() -> Registry {
    let mut registry = Registry::new();
    registry.register(Arc::new(r2::R2::new()));
    registry.register(Arc::new(r2::R2::s3()));
    registry
}
