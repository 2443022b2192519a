//! A descriptor with any ABI version whose one stage aborts the process if the host calls it:
//! the loader tests use it to prove a refused plugin is never run.

use std::ffi::c_void;

use inkflow_sdk::{ErrorMessage, ImageBuffer, ImageView, PluginDescriptor, StageVTable, StrRef};

unsafe extern "C" fn create(_: *const u8, _: usize, _: *mut ErrorMessage) -> *mut c_void {
    std::process::abort()
}

unsafe extern "C" fn process(
    _: *mut c_void,
    _: *const ImageView,
    _: *const u8,
    _: usize,
    _: *mut ImageBuffer,
    _: *mut ErrorMessage,
) -> i32 {
    std::process::abort()
}

unsafe extern "C" fn destroy(_: *mut c_void) {
    std::process::abort()
}

static STAGES: &[StageVTable] = &[StageVTable {
    name: StrRef::new("tripwire"),
    description: StrRef::new(r#"{"summary": "aborts when called", "options": []}"#),
    create: Some(create),
    process: Some(process),
    destroy: Some(destroy),
}];

/// A current descriptor but for its version.
pub const fn descriptor(abi_major: u16, abi_minor: u16) -> PluginDescriptor {
    PluginDescriptor { abi_major, abi_minor, ..PluginDescriptor::new(STAGES) }
}
