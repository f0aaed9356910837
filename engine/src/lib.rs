//! The Reasoning Studio engine: model formats, decoder-only transformer models built from burn
//! modules, inference (generation, sampling, per-token statistics), training, the SQLite
//! workspace and the backend choice. It knows nothing of the GUI.
//!
//! Layers, top to bottom; each names only those below it (checked by a test in this file):
//!
//! - `train` (run configs, SFT, AdamW, checkpoints, the run loop) → anything below;
//! - `discovery` (models on disk) → `formats`, `models`;
//! - `analysis` (entropy analytics over stored traces) → `store`;
//! - `formats` (safetensors, GGUF, `config.json`, PEFT, export) → `models`, `text`, `kernels`,
//!   `backend`; weights reach the model through `models::WeightSource`;
//! - `infer` (scoring, generation, sampling) → `models`, `kernels`, `text`; it never opens files;
//! - `models` (the decoder, LoRA, parameters by path) → `kernels`, `text`;
//! - `kernels` (the engine's CPU kernels and the facade of fused ops the model calls) → burn only;
//! - leaves: `text` (tokenizer, chat templates), `data` (datasets, built-in tasks), `store` (the
//!   workspace), `backend` (which burn backend), `alloc` (the block-reusing allocator),
//!   `test_files` (where tests find the files the repository does not hold).

pub mod alloc;
pub mod analysis;
pub mod backend;
pub mod data;
pub mod discovery;
pub mod formats;
pub mod infer;
pub mod kernels;
pub mod models;
pub mod store;
pub mod test_files;
pub mod text;
pub mod train;

/// The layers above point only down: a file in one folder may not name a module its layer sits
/// under (checked on the source text, comments excluded, so an added `use crate::infer` in
/// `kernels/` fails here before it becomes a cycle).
#[cfg(test)]
mod layering {
    use std::path::Path;

    /// Each top-level module of the crate, and the crate modules it may name.
    const ALLOWED: &[(&str, &[&str])] = &[
        ("kernels", &[]),
        ("text", &[]),
        ("data", &[]),
        ("store", &[]),
        ("alloc", &[]),
        // The CPU's report names the kernels' instruction-set path.
        ("backend", &["kernels"]),
        // Tests that need a GPU backend get it here, with the same missing-means-fail rule.
        ("test_files", &["backend"]),
        ("models", &["kernels", "text"]),
        ("infer", &["models", "kernels", "text"]),
        // `alloc::with_huge_pages` around loading and the optimizer's update (a leaf).
        (
            "formats",
            &["models", "kernels", "text", "backend", "alloc"],
        ),
        ("discovery", &["formats", "models"]),
        ("analysis", &["store"]),
        (
            "train",
            &[
                "infer", "models", "kernels", "text", "formats", "data", "store", "backend",
                "alloc",
            ],
        ),
    ];

    /// The crate modules named by `crate::…` paths in `source`, comments excluded.
    fn named_modules(source: &str) -> Vec<String> {
        let mut named = Vec::new();
        for line in source.lines() {
            let code = line.split("//").next().unwrap_or("");
            let mut rest = code;
            while let Some(at) = rest.find("crate::") {
                // `$crate::` in macros names the crate itself, not a layer.
                let is_macro = rest[..at].ends_with('$');
                rest = &rest[at + "crate::".len()..];
                if is_macro {
                    continue;
                }
                if let Some(group) = rest.strip_prefix('{') {
                    let inner = group.split('}').next().unwrap_or("");
                    named.extend(
                        inner
                            .split(',')
                            .filter_map(|p| p.trim().split("::").next())
                            .filter(|m| !m.is_empty())
                            .map(str::to_string),
                    );
                } else {
                    let module: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    named.push(module);
                }
            }
        }
        named
    }

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("source folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn lower_layers_never_name_higher_ones() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut violations = Vec::new();
        let mut checked = 0;
        for file in &files {
            let relative = file.strip_prefix(&src).expect("under src");
            let top = relative
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .map(|c| c.trim_end_matches(".rs"))
                .unwrap_or_default();
            let Some((_, allowed)) = ALLOWED.iter().find(|(m, _)| *m == top) else {
                assert!(
                    top == "lib",
                    "{}: a module the layering test does not know",
                    relative.display()
                );
                continue;
            };
            checked += 1;
            let source = std::fs::read_to_string(file).expect("read source");
            for module in named_modules(&source) {
                // Any layer's tests may find their files through the `test_files` leaf.
                if module != top && module != "test_files" && !allowed.contains(&module.as_str()) {
                    violations.push(format!("{} names crate::{module}", relative.display()));
                }
            }
        }
        assert!(checked > 40, "only {checked} files checked");
        assert!(
            violations.is_empty(),
            "layer violations:\n{}",
            violations.join("\n")
        );
    }

    #[test]
    fn the_check_sees_paths_and_groups() {
        let named = named_modules(
            "use crate::infer::x;\nuse crate::{models::y, text};\n// crate::train\n$crate::kernels",
        );
        assert_eq!(named, ["infer", "models", "text"]);
    }
}
