//! A real dynamic library that is not an inkflow plugin: it exports no descriptor.

/// Some unrelated export, so the library is not empty.
#[unsafe(no_mangle)]
pub extern "C" fn unrelated_function() -> u32 {
    42
}
