//! Reader for GGUF model files, the format of llama.cpp (versions 2 and 3).
//!
//! A GGUF file is a little-endian container: the magic `GGUF`, a version, a typed key/value
//! metadata section (architecture hyper-parameters, the tokenizer's vocabulary and merges, the
//! chat template), a table of tensor descriptions and finally the tensor data, each tensor stored
//! in one of ggml's (possibly block-quantized) types and aligned to `general.alignment` bytes.
//!
//! [`GgufFile::open`] memory-maps the file and parses everything but the tensor data, checking
//! every read against the file's length, so a truncated or corrupt download gives a
//! [`GgufError`] rather than a panic or a huge allocation. On top of that the reader presents
//! the model the way the rest of the studio sees Hugging Face checkpoints:
//!
//! * [`GgufFile::hf_config`] builds a `config.json` equivalent,
//! * [`GgufFile::hf_tensor`] returns tensors under their Hugging Face names, dequantized to
//!   `f32`, in Hugging Face layout (for `llama` this undoes the q/k row permutation that
//!   llama.cpp's converter applies so that its interleaved RoPE works),
//! * [`GgufFile::tokenizer`] rebuilds a `tokenizers::Tokenizer` from the embedded vocabulary.
//!
//! Supported architectures are `llama` and `qwen2`; supported tensor types are F32, F16, BF16,
//! F64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K (see
//! [`dequantize`]). Dequantization follows ggml's reference C code (`ggml-quants.c`).
//!
//! - this file: the opened file, its errors and metadata accessors;
//! - [`header`]: the bounds-checked reading of header, metadata and tensor table;
//! - [`types`]: ggml's tensor types and their block layouts;
//! - [`dequant`]: dequantization to `f32`;
//! - [`hf`]: the Hugging Face view (config, tensor names, q/k un-permutation);
//! - [`tokenizer`]: the tokenizer and chat template from `tokenizer.ggml.*` metadata;
//! - [`writer`]: a minimal GGUF writer for the files tests read.

pub mod dequant;
pub mod header;
pub mod hf;
#[cfg(test)]
mod tests;
pub mod tokenizer;
pub mod types;
pub mod writer;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

pub use dequant::{DequantizeError, dequantize};
pub use header::{GgufTensorInfo, GgufValue};
pub use types::GgmlType;

use hf::Arch;
use types::SUPPORTED_TYPES;

/// The architectures [`GgufFile::hf_config`] and [`GgufFile::hf_tensor`] understand.
const SUPPORTED_ARCHITECTURES: &str = "llama, qwen2";

/// A dequantized tensor: `f32` values in row-major order and their shape.
pub type TensorData = (Vec<f32>, Vec<usize>);

/// Everything that can go wrong reading a GGUF file. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened or mapped.
    #[error("cannot read GGUF file {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file ends before the structure it announces (typically an incomplete download).
    #[error(
        "GGUF file {} is truncated: it ends inside {what}; the download is probably incomplete, fetch the file again",
        .path.display()
    )]
    Truncated { path: PathBuf, what: String },
    /// The file does not start with the `GGUF` magic.
    #[error("{} is not a GGUF file (it does not start with the magic bytes \"GGUF\")", .path.display())]
    BadMagic { path: PathBuf },
    /// A GGUF version other than 2 or 3 (version 1 predates 64-bit counts; big-endian files
    /// show up here with a byte-swapped version).
    #[error(
        "GGUF file {} has format version {version}; only versions 2 and 3 (little-endian) are supported, re-convert it with a current llama.cpp",
        .path.display()
    )]
    UnsupportedVersion { path: PathBuf, version: u32 },
    /// `general.architecture` names a model family this reader cannot map to Hugging Face.
    #[error(
        "GGUF file {} holds a model of architecture `{arch}`, which is not supported; supported: {SUPPORTED_ARCHITECTURES}",
        .path.display()
    )]
    UnsupportedArchitecture { path: PathBuf, arch: String },
    /// A tensor is stored in a ggml type without a dequantizer here.
    #[error(
        "tensor `{tensor}` in GGUF file {} is stored as {kind}, which is not supported; supported types: {SUPPORTED_TYPES}; pick a file quantized with one of those",
        .path.display()
    )]
    UnsupportedQuantization {
        path: PathBuf,
        tensor: String,
        kind: String,
    },
    /// A metadata key the operation needs is absent (or has the wrong type).
    #[error("GGUF file {} lacks the metadata key `{key}` (or it has an unexpected type)", .path.display())]
    MissingMetadata { path: PathBuf, key: String },
    /// A tensor the operation needs is absent.
    #[error("GGUF file {} lacks the tensor `{name}`", .path.display())]
    MissingTensor { path: PathBuf, name: String },
    /// The file is structurally invalid in a way other than truncation.
    #[error("GGUF file {} is malformed: {message}", .path.display())]
    Malformed { path: PathBuf, message: String },
    /// The embedded tokenizer cannot be rebuilt.
    #[error("cannot build the tokenizer of GGUF file {}: {message}", .path.display())]
    Tokenizer { path: PathBuf, message: String },
}

/// An opened, memory-mapped GGUF file.
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    version: u32,
    metadata: HashMap<String, GgufValue>,
    metadata_order: Vec<String>,
    tensors: Vec<GgufTensorInfo>,
    tensor_index: HashMap<String, usize>,
    data_offset: usize,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

impl GgufFile {
    /// Maps `path` and parses its header, metadata and tensor table.
    ///
    /// Every count and length is checked against the file size: a truncated file gives
    /// [`GgufError::Truncated`], including when only tensor data is missing. Tensors of types
    /// without a dequantizer are accepted here; reading them gives
    /// [`GgufError::UnsupportedQuantization`].
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let path_buf = path.to_path_buf();
        let mmap = crate::formats::mmap::map_file(path).map_err(|source| GgufError::Io {
            path: path_buf.clone(),
            source,
        })?;
        let parsed = header::parse(&mmap, path)?;
        tracing::debug!(
            path = %path.display(),
            version = parsed.version,
            tensors = parsed.tensors.len(),
            metadata = parsed.metadata.len(),
            "opened GGUF file"
        );
        Ok(Self {
            path: path_buf,
            mmap,
            version: parsed.version,
            metadata: parsed.metadata,
            metadata_order: parsed.metadata_order,
            tensor_index: parsed
                .tensors
                .iter()
                .enumerate()
                .map(|(i, t)| (t.name.clone(), i))
                .collect(),
            tensors: parsed.tensors,
            data_offset: parsed.data_offset,
        })
    }

    /// The file this was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// `general.architecture`, e.g. `"llama"`.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.metadata("general.architecture")
            .and_then(GgufValue::as_str)
            .ok_or_else(|| self.missing("general.architecture"))
    }

    /// The metadata value under `key`.
    pub fn metadata(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// All metadata keys, in file order.
    pub fn metadata_keys(&self) -> impl Iterator<Item = &str> {
        self.metadata_order.iter().map(String::as_str)
    }

    /// The tensor table, in file order.
    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    /// The tensor named `name` (GGUF naming), if present.
    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// Fails with [`GgufError::UnsupportedQuantization`] naming the first tensor stored in a type
    /// this reader cannot dequantize, so a load fails before any work is done.
    pub fn check_tensor_types(&self) -> Result<(), GgufError> {
        match self.tensors.iter().find(|t| !t.kind.can_dequantize()) {
            Some(info) => Err(GgufError::UnsupportedQuantization {
                path: self.path.clone(),
                tensor: info.name.clone(),
                kind: info.kind.describe(),
            }),
            None => Ok(()),
        }
    }

    /// A tensor under its GGUF name, dequantized to `f32`, with its row-major shape; no
    /// layout changes are applied (see [`GgufFile::hf_tensor`] for that).
    pub fn raw_tensor(&self, name: &str) -> Result<Option<TensorData>, GgufError> {
        let Some(info) = self.tensor_info(name) else {
            return Ok(None);
        };
        let unsupported = || GgufError::UnsupportedQuantization {
            path: self.path.clone(),
            tensor: info.name.clone(),
            kind: info.kind.describe(),
        };
        if !info.kind.can_dequantize() {
            return Err(unsupported());
        }
        let n_bytes = info.n_bytes.ok_or_else(unsupported)?;
        let start = self.data_offset + info.offset as usize;
        let bytes = self
            .mmap
            .get(start..)
            .and_then(|rest| rest.get(..n_bytes))
            .ok_or_else(|| GgufError::Truncated {
                path: self.path.clone(),
                what: format!("the data of tensor `{}`", info.name),
            })?;
        let n = info.n_elements();
        let mut out = vec![0f32; n];
        dequantize(info.kind, bytes, n, &mut out).map_err(|e| GgufError::Malformed {
            path: self.path.clone(),
            message: format!("tensor `{}`: {e}", info.name),
        })?;
        Ok(Some((out, info.shape())))
    }

    fn token_id(&self, key: &str) -> Option<u32> {
        self.metadata(key)
            .and_then(GgufValue::as_u64)
            .and_then(|v| u32::try_from(v).ok())
    }

    fn missing(&self, key: &str) -> GgufError {
        GgufError::MissingMetadata {
            path: self.path.clone(),
            key: key.to_owned(),
        }
    }

    fn supported_arch(&self) -> Result<Arch, GgufError> {
        match self.architecture()? {
            "llama" => Ok(Arch::Llama),
            "qwen2" => Ok(Arch::Qwen2),
            other => Err(GgufError::UnsupportedArchitecture {
                path: self.path.clone(),
                arch: other.to_owned(),
            }),
        }
    }

    /// An integer hyper-parameter that may be absent. Per-layer arrays (which some converters
    /// write for head counts) are accepted when all layers agree.
    fn opt_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        let Some(value) = self.metadata(key) else {
            return Ok(None);
        };
        let single = match value {
            GgufValue::Array(items) => {
                let mut values = items.iter().map(GgufValue::as_u64);
                let first = values.next().flatten();
                if values.all(|v| v == first) {
                    first
                } else {
                    return Err(GgufError::Malformed {
                        path: self.path.clone(),
                        message: format!("`{key}` differs between layers, which is not supported"),
                    });
                }
            }
            other => other.as_u64(),
        };
        single.map(Some).ok_or_else(|| self.missing(key))
    }

    fn req_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.opt_u64(key)?.ok_or_else(|| self.missing(key))
    }

    fn string_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        self.metadata(key)
            .and_then(GgufValue::as_array)
            .and_then(|items| {
                items
                    .iter()
                    .map(GgufValue::as_str)
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| self.missing(key))
    }
}
