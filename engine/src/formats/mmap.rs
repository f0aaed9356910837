//! Read-only memory mapping of weight files (safetensors, GGUF).
#![allow(unsafe_code)]

use std::fs::File;
use std::path::Path;

pub use memmap2::Mmap;

/// Maps `path` read-only.
pub fn map_file(path: &Path) -> std::io::Result<Mmap> {
    let file = File::open(path)?;
    // SAFETY: the map is read-only; the studio never writes model files while they are mapped.
    // Another process truncating the file could fault, the same caveat every mmap loader has.
    unsafe { Mmap::map(&file) }
}
