//! A plugin built against a future incompatible ABI: the host must refuse it unread.

#[path = "../../tripwire.rs"]
mod tripwire;

static DESCRIPTOR: inkflow_sdk::PluginDescriptor = tripwire::descriptor(inkflow_sdk::ABI_MAJOR + 1, 0);

/// The entry point, reporting the wrong major version.
#[unsafe(no_mangle)]
pub extern "C" fn inkflow_plugin_descriptor() -> *const inkflow_sdk::PluginDescriptor {
    &DESCRIPTOR
}
