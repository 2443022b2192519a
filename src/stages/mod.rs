//! The built-in stage kinds, one file each, and the helpers they share.

use std::sync::Arc;

use crate::engine::stage::Registry;

pub mod naming;
pub mod safety;

/// The registry of every built-in kind.
pub fn builtin() -> Registry {
    let mut registry = Registry::new();
    registry.register(Arc::new(safety::Safety::new()));
    registry
}
