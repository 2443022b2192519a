//! The built-in stage kinds, one file each.

use std::sync::Arc;

use crate::engine::stage::Registry;

/// The registry of every built-in kind.
pub fn builtin() -> Registry {
    let registry = Registry::new();
    let _ = Arc::new(());
    registry
}
