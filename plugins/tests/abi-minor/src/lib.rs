//! A plugin built against a newer minor ABI than the host's: it may rely on fields the host
//! does not know, so the host must refuse it unread.

#[path = "../../tripwire.rs"]
mod tripwire;

static DESCRIPTOR: inkflow_sdk::PluginDescriptor =
    tripwire::descriptor(inkflow_sdk::ABI_MAJOR, inkflow_sdk::ABI_MINOR + 1);

/// The entry point, reporting a newer minor version.
#[unsafe(no_mangle)]
pub extern "C" fn inkflow_plugin_descriptor() -> *const inkflow_sdk::PluginDescriptor {
    &DESCRIPTOR
}
