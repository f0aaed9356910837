//! Helpers shared by the integration tests: finding `../shared` fixtures and the SmolLM2 GGUF
//! (through `engine::test_files`), and running the `studio` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file under `../shared` (see `engine::test_files`: missing fails under `CI`, else skips).
pub fn shared_file(relative: &str) -> Option<PathBuf> {
    engine::test_files::shared_file(relative)
}

/// The SmolLM2-135M-Instruct GGUF `scripts/test.sh` fetches (see `engine::test_files`).
pub fn smollm2_gguf() -> Option<PathBuf> {
    engine::test_files::smollm2_gguf()
}

/// Runs `studio` with `args`.
pub fn studio<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_studio"))
        .args(args)
        .env("STUDIO_NO_DIALOGS", "1")
        .output()
        .expect("studio binary runs")
}

/// Runs `studio` and parses its stdout as JSON, failing with stderr shown if it did not succeed.
pub fn studio_json<I, S>(args: I) -> serde_json::Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = studio(args);
    assert!(
        out.status.success(),
        "studio failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

/// Copies a folder's files (not recursive) to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}
