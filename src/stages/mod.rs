//! The built-in stage kinds, one file each, and the helpers they share.

use std::sync::Arc;

use crate::engine::stage::Registry;

pub mod fal;
pub mod files;
pub mod naming;
pub mod pattern;
pub mod pdf;
pub mod plugin;
pub mod prompts;

/// The registry of every built-in kind.
pub fn builtin() -> Registry {
    let mut registry = Registry::new();
    registry.register(Arc::new(prompts::Prompts::new()));
    registry.register(Arc::new(files::Files::new()));
    registry.register(Arc::new(pattern::Pattern::new()));
    registry.register(Arc::new(fal::Fal::new()));
    registry.register(Arc::new(plugin::Plugin::new()));
    registry.register(Arc::new(pdf::PdfBook::new()));
    registry
}

