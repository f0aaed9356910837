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

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use rayon::prelude::*;
use serde_json::{Map, Value, json};

/// The architectures [`GgufFile::hf_config`] and [`GgufFile::hf_tensor`] understand.
const SUPPORTED_ARCHITECTURES: &str = "llama, qwen2";

/// Alignment of the tensor data section when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;

/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;

/// How deeply arrays may nest inside metadata values (GGUF files in the wild never nest).
const MAX_ARRAY_DEPTH: u32 = 4;

/// Elements per block in ggml's k-quants (`QK_K`).
const QK_K: usize = 256;

/// A dequantized tensor: `f32` values in row-major order and their shape.
pub type TensorData = (Vec<f32>, Vec<usize>);

/// Tensors with more elements than this are dequantized on the rayon pool.
const PARALLEL_THRESHOLD: usize = 1 << 16;

/// Elements handed to one rayon task when dequantizing in parallel (a multiple of every block).
const PARALLEL_CHUNK: usize = 1 << 14;

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

/// The tensor types [`dequantize`] handles, for error messages.
const SUPPORTED_TYPES: &str =
    "F32, F16, BF16, F64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K";

/// A ggml tensor type, as numbered in `ggml.h` (`enum ggml_type`).
///
/// Every type ggml defines is named so that errors can say which one a file uses; only some
/// can be dequantized (see [`GgmlType::can_dequantize`]).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
    NVFP4,
    Q1_0,
    /// A type id this reader does not know.
    Unknown(u32),
}

impl GgmlType {
    /// The type with ggml id `id` ([`GgmlType::Unknown`] for ids not listed in `ggml.h`).
    pub fn from_id(id: u32) -> Self {
        use GgmlType::*;
        match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            16 => IQ2_XXS,
            17 => IQ2_XS,
            18 => IQ3_XXS,
            19 => IQ1_S,
            20 => IQ4_NL,
            21 => IQ3_S,
            22 => IQ2_S,
            23 => IQ4_XS,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            29 => IQ1_M,
            30 => BF16,
            34 => TQ1_0,
            35 => TQ2_0,
            39 => MXFP4,
            40 => NVFP4,
            41 => Q1_0,
            other => Unknown(other),
        }
    }

    /// The ggml id of the type.
    pub fn id(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2_K => 10,
            Q3_K => 11,
            Q4_K => 12,
            Q5_K => 13,
            Q6_K => 14,
            Q8_K => 15,
            IQ2_XXS => 16,
            IQ2_XS => 17,
            IQ3_XXS => 18,
            IQ1_S => 19,
            IQ4_NL => 20,
            IQ3_S => 21,
            IQ2_S => 22,
            IQ4_XS => 23,
            I8 => 24,
            I16 => 25,
            I32 => 26,
            I64 => 27,
            F64 => 28,
            IQ1_M => 29,
            BF16 => 30,
            TQ1_0 => 34,
            TQ2_0 => 35,
            MXFP4 => 39,
            NVFP4 => 40,
            Q1_0 => 41,
            Unknown(id) => id,
        }
    }

    /// ggml's name of the type (`"Q4_K"`, `"BF16"`, …; `"unknown"` for unknown ids).
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2_K => "Q2_K",
            Q3_K => "Q3_K",
            Q4_K => "Q4_K",
            Q5_K => "Q5_K",
            Q6_K => "Q6_K",
            Q8_K => "Q8_K",
            IQ2_XXS => "IQ2_XXS",
            IQ2_XS => "IQ2_XS",
            IQ3_XXS => "IQ3_XXS",
            IQ1_S => "IQ1_S",
            IQ4_NL => "IQ4_NL",
            IQ3_S => "IQ3_S",
            IQ2_S => "IQ2_S",
            IQ4_XS => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            IQ1_M => "IQ1_M",
            BF16 => "BF16",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            MXFP4 => "MXFP4",
            NVFP4 => "NVFP4",
            Q1_0 => "Q1_0",
            Unknown(_) => "unknown",
        }
    }

    /// `(elements per block, bytes per block)` of the type's storage, `None` if unknown.
    pub fn block_layout(self) -> Option<(usize, usize)> {
        use GgmlType::*;
        Some(match self {
            F32 => (1, 4),
            F16 | BF16 => (1, 2),
            F64 | I64 => (1, 8),
            I8 => (1, 1),
            I16 => (1, 2),
            I32 => (1, 4),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 36),
            Q2_K => (QK_K, 84),
            Q3_K => (QK_K, 110),
            Q4_K => (QK_K, 144),
            Q5_K => (QK_K, 176),
            Q6_K => (QK_K, 210),
            Q8_K => (QK_K, 292),
            IQ2_XXS => (QK_K, 66),
            IQ2_XS => (QK_K, 74),
            IQ3_XXS => (QK_K, 98),
            IQ1_S => (QK_K, 50),
            IQ4_NL => (32, 18),
            IQ3_S => (QK_K, 110),
            IQ2_S => (QK_K, 82),
            IQ4_XS => (QK_K, 136),
            IQ1_M => (QK_K, 56),
            TQ1_0 => (QK_K, 54),
            TQ2_0 => (QK_K, 66),
            MXFP4 => (32, 17),
            NVFP4 => (64, 36),
            Q1_0 => (128, 18),
            Unknown(_) => return None,
        })
    }

    /// Whether [`dequantize`] handles this type.
    pub fn can_dequantize(self) -> bool {
        use GgmlType::*;
        matches!(
            self,
            F32 | F16
                | BF16
                | F64
                | Q4_0
                | Q4_1
                | Q5_0
                | Q5_1
                | Q8_0
                | Q2_K
                | Q3_K
                | Q4_K
                | Q5_K
                | Q6_K
                | Q8_K
        )
    }

    /// `"Q5_K (ggml type 13)"`: the form used in error messages.
    fn describe(self) -> String {
        format!("{} (ggml type {})", self.name(), self.id())
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why [`dequantize`] refused a buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DequantizeError {
    /// The type has no dequantizer here.
    #[error("ggml type {} is not supported (supported: {SUPPORTED_TYPES})", .0.describe())]
    Unsupported(GgmlType),
    /// `n_elements` is not a whole number of the type's blocks.
    #[error("{n_elements} elements are not a whole number of {kind} blocks of {block}")]
    PartialBlock {
        kind: GgmlType,
        n_elements: usize,
        block: usize,
    },
    /// The input or output buffer has the wrong length.
    #[error(
        "{kind}: {n_elements} elements need {expected_bytes} input bytes and {n_elements} outputs, got {bytes} bytes and {outputs} outputs"
    )]
    Length {
        kind: GgmlType,
        n_elements: usize,
        expected_bytes: usize,
        bytes: usize,
        outputs: usize,
    },
}

/// A metadata value. GGUF values are typed; arrays hold values of one type.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl GgufValue {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer, if it is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            GgufValue::I8(v) => Some(v.into()),
            GgufValue::I16(v) => Some(v.into()),
            GgufValue::I32(v) => Some(v.into()),
            GgufValue::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// The value as a float. `F32` values are widened through their shortest decimal form, so
    /// `1e-5f32` becomes `1e-5`, not `9.999999747378752e-6`; integers convert too.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(f32_to_f64_decimal(v)),
            GgufValue::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// The value as a string slice.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The elements of an array value.
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// Widens an `f32` via its shortest round-tripping decimal representation.
fn f32_to_f64_decimal(v: f32) -> f64 {
    if !v.is_finite() {
        return f64::from(v);
    }
    v.to_string().parse().unwrap_or(f64::from(v))
}

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensorInfo {
    /// The tensor's GGUF name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// ggml dimensions `ne`, fastest-varying first (the reverse of the row-major shape).
    pub dims: Vec<u64>,
    /// Storage type.
    pub kind: GgmlType,
    /// Byte offset relative to the start of the data section.
    pub offset: u64,
    /// Byte length of the data, when the type's layout is known.
    pub n_bytes: Option<usize>,
}

impl GgufTensorInfo {
    /// Number of elements (product of the dimensions).
    pub fn n_elements(&self) -> usize {
        // Checked against overflow when the file was opened.
        self.dims.iter().map(|&d| d as usize).product()
    }

    /// Row-major shape (ggml `ne` reversed), the way PyTorch and Hugging Face write it.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
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

/// The reader ran out of bytes.
struct Short;

/// A bounds-checked little-endian cursor over the mapped file.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Short> {
        let end = self.pos.checked_add(n).ok_or(Short)?;
        let slice = self.bytes.get(self.pos..end).ok_or(Short)?;
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, Short> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, Short> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, Short> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A GGUF string: `u64` byte length, then UTF-8 bytes (invalid sequences are replaced).
    fn string(&mut self) -> Result<String, Short> {
        let len = usize::try_from(self.u64()?).map_err(|_| Short)?;
        let bytes = self.take(len)?;
        Ok(match std::str::from_utf8(bytes) {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(bytes).into_owned(),
        })
    }
}

/// Why a metadata value could not be read.
enum ValueError {
    Short,
    BadType(u32),
    TooDeep,
}

impl From<Short> for ValueError {
    fn from(_: Short) -> Self {
        ValueError::Short
    }
}

/// Fewest bytes one value of GGUF value type `ty` occupies (for bounding array allocations).
fn min_value_size(ty: u32) -> Option<usize> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 => 8,
        9 => 12,
        10..=12 => 8,
        _ => return None,
    })
}

fn read_value(cur: &mut Cursor<'_>, ty: u32, depth: u32) -> Result<GgufValue, ValueError> {
    Ok(match ty {
        0 => GgufValue::U8(cur.u8()?),
        1 => GgufValue::I8(i8::from_le_bytes(cur.array()?)),
        2 => GgufValue::U16(cur.u16()?),
        3 => GgufValue::I16(i16::from_le_bytes(cur.array()?)),
        4 => GgufValue::U32(cur.u32()?),
        5 => GgufValue::I32(i32::from_le_bytes(cur.array()?)),
        6 => GgufValue::F32(f32::from_le_bytes(cur.array()?)),
        7 => GgufValue::Bool(cur.u8()? != 0),
        8 => GgufValue::String(cur.string()?),
        9 => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(ValueError::TooDeep);
            }
            let item_ty = cur.u32()?;
            let count = cur.u64()?;
            let min = min_value_size(item_ty).ok_or(ValueError::BadType(item_ty))?;
            // Refuse counts the rest of the file cannot hold before allocating for them.
            let count = usize::try_from(count).map_err(|_| Short)?;
            if count
                .checked_mul(min)
                .is_none_or(|need| need > cur.remaining())
            {
                return Err(ValueError::Short);
            }
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                items.push(read_value(cur, item_ty, depth + 1)?);
            }
            GgufValue::Array(items)
        }
        10 => GgufValue::U64(cur.u64()?),
        11 => GgufValue::I64(i64::from_le_bytes(cur.array()?)),
        12 => GgufValue::F64(f64::from_le_bytes(cur.array()?)),
        other => return Err(ValueError::BadType(other)),
    })
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
        let parsed = parse(&mmap, path)?;
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

    /// A `config.json` equivalent in Hugging Face style, for architectures `llama` and `qwen2`.
    ///
    /// Keys: `model_type`, `architectures`, `hidden_size`, `intermediate_size`,
    /// `num_hidden_layers`, `num_attention_heads`, `num_key_value_heads`, `rms_norm_eps`,
    /// `rope_theta`, `max_position_embeddings`, `vocab_size` (rows of `token_embd.weight`),
    /// `tie_word_embeddings` (no `output.weight` tensor), `head_dim` (when
    /// `{arch}.attention.key_length` is given), `bos_token_id`, `eos_token_id` (when given),
    /// `hidden_act`, `torch_dtype` (`"float32"`, what [`GgufFile::hf_tensor`] returns),
    /// `attention_bias`, and `rope_scaling` when the metadata describes one.
    pub fn hf_config(&self) -> Result<Value, GgufError> {
        let arch = self.supported_arch()?;
        let (model_type, class) = match arch {
            Arch::Llama => ("llama", "LlamaForCausalLM"),
            Arch::Qwen2 => ("qwen2", "Qwen2ForCausalLM"),
        };
        let a = model_type;
        let hidden = self.req_u64(&format!("{a}.embedding_length"))?;
        let layers = self.req_u64(&format!("{a}.block_count"))?;
        let intermediate = self.req_u64(&format!("{a}.feed_forward_length"))?;
        let heads = self.req_u64(&format!("{a}.attention.head_count"))?;
        let kv_heads = self
            .opt_u64(&format!("{a}.attention.head_count_kv"))?
            .unwrap_or(heads);
        let eps_key = format!("{a}.attention.layer_norm_rms_epsilon");
        let eps = self
            .metadata(&eps_key)
            .and_then(GgufValue::as_f64)
            .ok_or_else(|| self.missing(&eps_key))?;
        let rope_theta = self
            .metadata(&format!("{a}.rope.freq_base"))
            .and_then(GgufValue::as_f64)
            .unwrap_or(10_000.0);
        let context = self.req_u64(&format!("{a}.context_length"))?;
        let embd =
            self.tensor_info("token_embd.weight")
                .ok_or_else(|| GgufError::MissingTensor {
                    path: self.path.clone(),
                    name: "token_embd.weight".into(),
                })?;
        let vocab = embd
            .dims
            .get(1)
            .copied()
            .ok_or_else(|| GgufError::Malformed {
                path: self.path.clone(),
                message: format!("token_embd.weight has dims {:?}, expected 2", embd.dims),
            })?;
        let tied = self.tensor_info("output.weight").is_none();
        let attention_bias = match arch {
            Arch::Qwen2 => true,
            Arch::Llama => self.tensor_info("blk.0.attn_q.bias").is_some(),
        };

        let mut config = Map::new();
        config.insert("model_type".into(), json!(model_type));
        config.insert("architectures".into(), json!([class]));
        config.insert("hidden_size".into(), json!(hidden));
        config.insert("intermediate_size".into(), json!(intermediate));
        config.insert("num_hidden_layers".into(), json!(layers));
        config.insert("num_attention_heads".into(), json!(heads));
        config.insert("num_key_value_heads".into(), json!(kv_heads));
        config.insert("rms_norm_eps".into(), json!(eps));
        config.insert("rope_theta".into(), json!(rope_theta));
        config.insert("max_position_embeddings".into(), json!(context));
        config.insert("vocab_size".into(), json!(vocab));
        config.insert("tie_word_embeddings".into(), json!(tied));
        if let Some(head_dim) = self.opt_u64(&format!("{a}.attention.key_length"))? {
            config.insert("head_dim".into(), json!(head_dim));
        }
        if let Some(bos) = self.bos_token_id() {
            config.insert("bos_token_id".into(), json!(bos));
        }
        if let Some(eos) = self.token_id("tokenizer.ggml.eos_token_id") {
            config.insert("eos_token_id".into(), json!(eos));
        }
        config.insert("hidden_act".into(), json!("silu"));
        config.insert("torch_dtype".into(), json!("float32"));
        config.insert("attention_bias".into(), json!(attention_bias));
        if let Some(scaling) = self.rope_scaling(a) {
            config.insert("rope_scaling".into(), scaling);
        }
        Ok(Value::Object(config))
    }

    /// `rope_scaling` in Hugging Face form from `{arch}.rope.scaling.*` (or the legacy
    /// `{arch}.rope.scale_linear`), `None` when the file describes no scaling.
    fn rope_scaling(&self, a: &str) -> Option<Value> {
        let get_f = |k: &str| {
            self.metadata(&format!("{a}.rope.scaling.{k}"))
                .and_then(GgufValue::as_f64)
        };
        let get_u = |k: &str| {
            self.metadata(&format!("{a}.rope.scaling.{k}"))
                .and_then(GgufValue::as_u64)
        };
        let ty = self
            .metadata(&format!("{a}.rope.scaling.type"))
            .and_then(GgufValue::as_str);
        let factor = get_f("factor").or_else(|| {
            self.metadata(&format!("{a}.rope.scale_linear"))
                .and_then(GgufValue::as_f64)
        });
        let ty = match (ty, factor) {
            (Some("none"), _) | (None, None) => return None,
            (Some(t), _) => t,
            (None, Some(_)) => "linear",
        };
        let factor = factor?;
        if factor == 1.0 && ty == "linear" {
            return None;
        }
        let mut out = Map::new();
        out.insert("rope_type".into(), json!(ty));
        out.insert("factor".into(), json!(factor));
        if let Some(orig) = get_u("original_context_length") {
            out.insert("original_max_position_embeddings".into(), json!(orig));
        }
        // llama3-style keys, when a converter wrote them.
        for (gguf_key, hf_key) in [
            ("low_freq_factor", "low_freq_factor"),
            ("high_freq_factor", "high_freq_factor"),
            ("attn_factor", "attention_factor"),
            ("beta_fast", "beta_fast"),
            ("beta_slow", "beta_slow"),
        ] {
            if let Some(v) = get_f(gguf_key) {
                out.insert(hf_key.into(), json!(v));
            }
        }
        Some(Value::Object(out))
    }

    /// Hugging Face names of the tensors this file provides, in file order.
    pub fn hf_tensor_names(&self) -> Vec<String> {
        self.tensors
            .iter()
            .filter_map(|t| gguf_to_hf_name(&t.name))
            .collect()
    }

    /// The tensor under its Hugging Face name, dequantized to `f32`, row-major, with its
    /// Hugging Face shape (`q_proj.weight` is `[out, in]`, the ggml dims reversed).
    ///
    /// For `llama` files the rows of `q_proj`/`k_proj` (weights and biases) are put back in
    /// Hugging Face's "rotate half" order: llama.cpp's converter interleaves the two halves of
    /// every head (`reshape(n_head, 2, head_dim / 2, ..).swapaxes(1, 2)`, with `n_head` for q
    /// and `n_head_kv` for k) because its llama RoPE rotates adjacent pairs. `qwen2` files are
    /// converted without that permutation (llama.cpp applies NeoX-style RoPE to them), so
    /// their tensors are returned as stored.
    ///
    /// `Ok(None)` when the file lacks the tensor (e.g. `lm_head.weight` with tied embeddings).
    pub fn hf_tensor(&self, hf_name: &str) -> Result<Option<TensorData>, GgufError> {
        let arch = self.supported_arch()?;
        let Some(gguf_name) = hf_to_gguf_name(hf_name) else {
            return Ok(None);
        };
        let Some((mut data, shape)) = self.raw_tensor(&gguf_name)? else {
            return Ok(None);
        };
        if arch == Arch::Llama {
            let heads_key = if gguf_name.contains(".attn_q.") {
                Some("llama.attention.head_count")
            } else if gguf_name.contains(".attn_k.") {
                Some("llama.attention.head_count_kv")
            } else {
                None
            };
            if let Some(key) = heads_key {
                let n_head = match self.opt_u64(key)? {
                    Some(n) => n,
                    // head_count_kv defaults to head_count.
                    None => self.req_u64("llama.attention.head_count")?,
                };
                let rows = shape.first().copied().unwrap_or(0);
                let cols = shape.iter().skip(1).product::<usize>();
                let n_head = usize::try_from(n_head).unwrap_or(0);
                if n_head == 0 || rows % n_head != 0 || (rows / n_head) % 2 != 0 {
                    return Err(GgufError::Malformed {
                        path: self.path.clone(),
                        message: format!(
                            "tensor `{gguf_name}` has {rows} rows, which do not split into {n_head} heads of even size"
                        ),
                    });
                }
                data = unpermute_rows(&data, rows, cols, n_head);
            }
        }
        Ok(Some((data, shape)))
    }

    /// ggml type name of the tensor behind a Hugging Face name (e.g. `"Q4_1"`).
    pub fn hf_tensor_kind(&self, hf_name: &str) -> Option<&'static str> {
        let gguf_name = hf_to_gguf_name(hf_name)?;
        self.tensor_info(&gguf_name).map(|t| t.kind.name())
    }

    /// A `tokenizers::Tokenizer` rebuilt from the `tokenizer.ggml.*` metadata.
    ///
    /// Only byte-level BPE vocabularies (`tokenizer.ggml.model = "gpt2"`) are supported. The
    /// pre-tokenizer follows `tokenizer.ggml.pre` (`smollm`/`starcoder`/`refact`: digits split
    /// off one by one, then GPT-2's byte-level regex; `gpt2`/`default`/absent: GPT-2's
    /// byte-level regex; `qwen2`, `deepseek-r1-qwen`, `llama-bpe`/`llama3`: the model's split
    /// regex, then byte-level mapping), mirroring each model's Hugging Face `tokenizer.json`.
    /// Control tokens (type 3) become special added tokens, user-defined tokens (type 4)
    /// non-special added tokens: both are matched atomically, and decoding with
    /// `skip_special_tokens` drops only the control ones. BOS (and EOS) are added by a
    /// template post-processor when `tokenizer.ggml.add_bos_token` (`add_eos_token`) is true.
    pub fn tokenizer(&self) -> Result<tokenizers::Tokenizer, GgufError> {
        let err = |message: String| GgufError::Tokenizer {
            path: self.path.clone(),
            message,
        };
        let model = self
            .metadata("tokenizer.ggml.model")
            .and_then(GgufValue::as_str)
            .ok_or_else(|| self.missing("tokenizer.ggml.model"))?;
        if model != "gpt2" {
            let what = match model {
                "llama" => "SentencePiece (\"llama\")".to_string(),
                other => format!("\"{other}\""),
            };
            return Err(err(format!(
                "tokenizer model {what} is not supported yet; only byte-level BPE (\"gpt2\") vocabularies are"
            )));
        }
        let pre = self
            .metadata("tokenizer.ggml.pre")
            .and_then(GgufValue::as_str)
            .unwrap_or("default");
        let (normalizer, pre_tokenizer, ignore_merges) = pre_tokenizer_for(pre).ok_or_else(|| {
            err(format!(
                "pre-tokenizer \"{pre}\" (tokenizer.ggml.pre) is not supported; supported: smollm, starcoder, refact, gpt2, default, qwen2, deepseek-r1-qwen, llama-bpe, llama3"
            ))
        })?;

        let tokens = self.string_array("tokenizer.ggml.tokens")?;
        let merges = self.string_array("tokenizer.ggml.merges")?;
        let types: Vec<i64> = match self.metadata("tokenizer.ggml.token_type") {
            Some(v) => v
                .as_array()
                .ok_or_else(|| self.missing("tokenizer.ggml.token_type"))?
                .iter()
                .map(|t| t.as_i64().unwrap_or(1))
                .collect(),
            None => Vec::new(),
        };

        let mut vocab = Map::new();
        let mut added = Vec::new();
        for (id, token) in tokens.iter().enumerate() {
            // Keep the first id of a duplicated string, as llama.cpp's token-to-id map does.
            if !vocab.contains_key(*token) {
                vocab.insert((*token).to_owned(), json!(id));
            }
            let ty = types.get(id).copied().unwrap_or(1);
            if ty == 3 || ty == 4 {
                added.push(json!({
                    "id": id,
                    "content": token,
                    "single_word": false,
                    "lstrip": false,
                    "rstrip": false,
                    "normalized": false,
                    "special": ty == 3,
                }));
            }
        }

        let byte_level_post = json!({
            "type": "ByteLevel",
            "add_prefix_space": true,
            "trim_offsets": false,
            "use_regex": true,
        });
        let flag = |k: &str| {
            self.metadata(k)
                .and_then(GgufValue::as_bool)
                .unwrap_or(false)
        };
        let token_text = |id: u32| -> Result<&str, GgufError> {
            tokens.get(id as usize).copied().ok_or_else(|| {
                err(format!(
                    "special token id {id} is outside the vocabulary of {}",
                    tokens.len()
                ))
            })
        };
        let bos = if flag("tokenizer.ggml.add_bos_token") {
            let id = self
                .bos_token_id()
                .ok_or_else(|| self.missing("tokenizer.ggml.bos_token_id"))?;
            Some((id, token_text(id)?))
        } else {
            None
        };
        let eos = if flag("tokenizer.ggml.add_eos_token") {
            let id = self
                .token_id("tokenizer.ggml.eos_token_id")
                .ok_or_else(|| self.missing("tokenizer.ggml.eos_token_id"))?;
            Some((id, token_text(id)?))
        } else {
            None
        };
        let post_processor = if bos.is_some() || eos.is_some() {
            let special = |text: &str, type_id: u32| json!({"SpecialToken": {"id": text, "type_id": type_id}});
            let seq = |id: &str, type_id: u32| json!({"Sequence": {"id": id, "type_id": type_id}});
            let mut single = Vec::new();
            let mut pair = Vec::new();
            let mut special_tokens = Map::new();
            for (part, type_id) in [("A", 0u32), ("B", 1u32)] {
                let target = if part == "A" { &mut single } else { &mut pair };
                if let Some((_, text)) = bos {
                    target.push(special(text, type_id));
                }
                target.push(seq(part, type_id));
                if let Some((_, text)) = eos {
                    target.push(special(text, type_id));
                }
            }
            let pair: Vec<Value> = single.iter().cloned().chain(pair).collect();
            for (id, text) in bos.iter().chain(eos.iter()) {
                special_tokens.insert(
                    (*text).to_owned(),
                    json!({"id": text, "ids": [id], "tokens": [text]}),
                );
            }
            json!({
                "type": "Sequence",
                "processors": [
                    byte_level_post,
                    {
                        "type": "TemplateProcessing",
                        "single": single,
                        "pair": pair,
                        "special_tokens": special_tokens,
                    },
                ],
            })
        } else {
            byte_level_post
        };

        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": normalizer,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": post_processor,
            "decoder": {
                "type": "ByteLevel",
                "add_prefix_space": true,
                "trim_offsets": true,
                "use_regex": true,
            },
            "model": {
                "type": "BPE",
                "dropout": null,
                "unk_token": null,
                "continuing_subword_prefix": null,
                "end_of_word_suffix": null,
                "fuse_unk": false,
                "byte_fallback": false,
                "ignore_merges": ignore_merges,
                "vocab": vocab,
                "merges": merges,
            },
        });
        let bytes = serde_json::to_vec(&spec).map_err(|e| err(e.to_string()))?;
        tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| err(e.to_string()))
    }

    /// `tokenizer.chat_template`, the model's Jinja chat template.
    pub fn chat_template(&self) -> Option<String> {
        self.metadata("tokenizer.chat_template")
            .and_then(GgufValue::as_str)
            .map(str::to_owned)
    }

    /// Token ids that end generation: `tokenizer.ggml.eos_token_id`, then
    /// `tokenizer.ggml.eot_token_id` when present and different.
    pub fn eos_token_ids(&self) -> Vec<u32> {
        let mut ids = Vec::new();
        for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
            if let Some(id) = self.token_id(key)
                && !ids.contains(&id)
            {
                ids.push(id);
            }
        }
        ids
    }

    /// `tokenizer.ggml.bos_token_id`.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.token_id("tokenizer.ggml.bos_token_id")
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

/// The architectures with a Hugging Face mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arch {
    Llama,
    Qwen2,
}

/// The Split regex of Llama 3's `tokenizer.json` (llama.cpp pre-tokenizer `llama-bpe`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The Split regex of Qwen2's `tokenizer.json` (single digits instead of runs of up to 3).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// `(normalizer, pre_tokenizer, ignore_merges)` of the Hugging Face `tokenizer.json` that
/// llama.cpp's pre-tokenizer name `pre` stands for; `None` for names not handled.
fn pre_tokenizer_for(pre: &str) -> Option<(Value, Value, bool)> {
    let byte_level = |trim_offsets: bool, use_regex: bool| {
        json!({
            "type": "ByteLevel",
            "add_prefix_space": false,
            "trim_offsets": trim_offsets,
            "use_regex": use_regex,
        })
    };
    let split = |regex: &str| {
        json!({
            "type": "Split",
            "pattern": {"Regex": regex},
            "behavior": "Isolated",
            "invert": false,
        })
    };
    Some(match pre {
        "smollm" | "starcoder" | "refact" => (
            Value::Null,
            json!({
                "type": "Sequence",
                "pretokenizers": [
                    {"type": "Digits", "individual_digits": true},
                    byte_level(true, true),
                ],
            }),
            false,
        ),
        "gpt2" | "default" => (Value::Null, byte_level(true, true), false),
        "qwen2" | "deepseek-r1-qwen" => (
            json!({"type": "NFC"}),
            json!({"type": "Sequence", "pretokenizers": [split(QWEN2_SPLIT), byte_level(false, false)]}),
            false,
        ),
        "llama-bpe" | "llama3" | "llama-v3" => (
            Value::Null,
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(true, false)]}),
            true,
        ),
        _ => return None,
    })
}

/// Maps a GGUF tensor name of the llama/qwen2 families to its Hugging Face name.
fn gguf_to_hf_name(name: &str) -> Option<String> {
    match name {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, suffix) = rest.split_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let hf = BLOCK_NAMES.iter().find(|(g, _)| *g == module)?.1;
    if hf.ends_with("layernorm") && suffix != "weight" {
        return None;
    }
    Some(format!("model.layers.{layer}.{hf}.{suffix}"))
}

/// Maps a Hugging Face tensor name to its GGUF name (the inverse of [`gguf_to_hf_name`]).
fn hf_to_gguf_name(name: &str) -> Option<String> {
    match name {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, suffix) = rest.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let gguf = BLOCK_NAMES.iter().find(|(_, h)| *h == module)?.0;
    if module.ends_with("layernorm") && suffix != "weight" {
        return None;
    }
    Some(format!("blk.{layer}.{gguf}.{suffix}"))
}

/// `(GGUF block tensor, Hugging Face module)` pairs of a llama/qwen2 decoder layer.
const BLOCK_NAMES: [(&str, &str); 9] = [
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
];

/// Undoes llama.cpp's q/k permutation on a `[rows, cols]` row-major matrix (a bias is
/// `cols = 1`). Within each head of `dim = rows / n_head` rows the converter stored Hugging
/// Face row `i * dim/2 + j` (half `i`, pair `j`) at row `2 * j + i`; this reads it back.
fn unpermute_rows(data: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    let dim = rows / n_head;
    let half = dim / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for i in 0..2 {
            for j in 0..half {
                let hf_row = h * dim + i * half + j;
                let gguf_row = h * dim + 2 * j + i;
                out[hf_row * cols..(hf_row + 1) * cols]
                    .copy_from_slice(&data[gguf_row * cols..(gguf_row + 1) * cols]);
            }
        }
    }
    out
}

/// What [`parse`] extracts from the mapped bytes.
struct Parsed {
    version: u32,
    metadata: HashMap<String, GgufValue>,
    metadata_order: Vec<String>,
    tensors: Vec<GgufTensorInfo>,
    data_offset: usize,
}

fn parse(bytes: &[u8], path: &Path) -> Result<Parsed, GgufError> {
    let truncated = |what: String| GgufError::Truncated {
        path: path.to_path_buf(),
        what,
    };
    let malformed = |message: String| GgufError::Malformed {
        path: path.to_path_buf(),
        message,
    };
    let mut cur = Cursor { bytes, pos: 0 };

    let magic = cur.take(4).map_err(|_| {
        if bytes.is_empty() || !b"GGUF".starts_with(bytes) {
            GgufError::BadMagic {
                path: path.to_path_buf(),
            }
        } else {
            truncated("the magic bytes".into())
        }
    })?;
    if magic != b"GGUF" {
        return Err(GgufError::BadMagic {
            path: path.to_path_buf(),
        });
    }
    let version = cur.u32().map_err(|_| truncated("the header".into()))?;
    if version != 2 && version != 3 {
        return Err(GgufError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
        });
    }
    let n_tensors = cur.u64().map_err(|_| truncated("the header".into()))?;
    let n_kv = cur.u64().map_err(|_| truncated("the header".into()))?;

    // Each metadata entry takes at least 8 (key length) + 4 (type) + 1 bytes.
    let n_kv = usize::try_from(n_kv)
        .ok()
        .filter(|n| n.checked_mul(13).is_some_and(|b| b <= cur.remaining()))
        .ok_or_else(|| truncated(format!("the metadata section ({n_kv} entries announced)")))?;
    let mut metadata = HashMap::with_capacity(n_kv);
    let mut metadata_order = Vec::with_capacity(n_kv);
    for index in 0..n_kv {
        let key = cur
            .string()
            .map_err(|_| truncated(format!("the key of metadata entry #{index}")))?;
        let ty = cur
            .u32()
            .map_err(|_| truncated(format!("the type of metadata `{key}`")))?;
        let value = read_value(&mut cur, ty, 0).map_err(|e| match e {
            ValueError::Short => truncated(format!("the value of metadata `{key}`")),
            ValueError::BadType(t) => {
                malformed(format!("metadata `{key}` has unknown value type {t}"))
            }
            ValueError::TooDeep => malformed(format!("metadata `{key}` nests arrays too deeply")),
        })?;
        if metadata.insert(key.clone(), value).is_none() {
            metadata_order.push(key);
        }
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => v
            .as_u64()
            .filter(|a| *a > 0 && a.is_power_of_two())
            .ok_or_else(|| malformed(format!("general.alignment is {v:?}, not a power of two")))?,
    };

    // Each tensor entry takes at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
    let n_tensors = usize::try_from(n_tensors)
        .ok()
        .filter(|n| n.checked_mul(24).is_some_and(|b| b <= cur.remaining()))
        .ok_or_else(|| truncated(format!("the tensor table ({n_tensors} tensors announced)")))?;
    let mut tensors = Vec::with_capacity(n_tensors);
    for index in 0..n_tensors {
        let name = cur
            .string()
            .map_err(|_| truncated(format!("the name of tensor #{index}")))?;
        let short = |_| truncated(format!("the description of tensor `{name}`"));
        let n_dims = cur.u32().map_err(short)?;
        if n_dims > MAX_DIMS {
            return Err(malformed(format!(
                "tensor `{name}` has {n_dims} dimensions (at most {MAX_DIMS})"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(cur.u64().map_err(short)?);
        }
        let kind = GgmlType::from_id(cur.u32().map_err(short)?);
        let offset = cur.u64().map_err(short)?;
        let n_elements = dims
            .iter()
            .try_fold(1usize, |acc, &d| {
                usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
            })
            .filter(|&n| n <= isize::MAX as usize / 8)
            .ok_or_else(|| {
                malformed(format!(
                    "tensor `{name}` has impossible dimensions {dims:?}"
                ))
            })?;
        if offset % alignment != 0 {
            return Err(malformed(format!(
                "tensor `{name}` starts at offset {offset}, not a multiple of the alignment {alignment}"
            )));
        }
        let n_bytes = match kind.block_layout() {
            Some((block, block_bytes)) => {
                let row = dims.first().map_or(1, |&d| d as usize);
                if row % block != 0 {
                    return Err(malformed(format!(
                        "tensor `{name}` ({}) has rows of {row} elements, not a multiple of its block size {block}",
                        kind.name()
                    )));
                }
                Some(n_elements / block * block_bytes)
            }
            None => None,
        };
        tensors.push(GgufTensorInfo {
            name,
            dims,
            kind,
            offset,
            n_bytes,
        });
    }

    let header_end = cur.pos as u64;
    let data_offset = header_end.div_ceil(alignment) * alignment;
    for t in &tensors {
        let end = t
            .n_bytes
            .and_then(|n| data_offset.checked_add(t.offset)?.checked_add(n as u64));
        match end {
            Some(end) if end <= bytes.len() as u64 => {}
            Some(_) => return Err(truncated(format!("the data of tensor `{}`", t.name))),
            // Unknown layout: at least the start must lie inside the file.
            None if data_offset.saturating_add(t.offset) <= bytes.len() as u64 => {}
            None => return Err(truncated(format!("the data of tensor `{}`", t.name))),
        }
    }
    let data_offset = usize::try_from(data_offset)
        .map_err(|_| malformed("data section offset does not fit in memory".into()))?;
    Ok(Parsed {
        version,
        metadata,
        metadata_order,
        tensors,
        data_offset,
    })
}

// ---------------------------------------------------------------------------------------------
// Dequantization (ggml-quants.c reference semantics).
// ---------------------------------------------------------------------------------------------

/// Dequantizes `n_elements` values of ggml type `kind` from `bytes` into `out`.
///
/// `bytes` must hold exactly the blocks for `n_elements` (a multiple of the type's block size)
/// and `out` exactly `n_elements` slots. Large buffers are split into block ranges and
/// dequantized on the rayon pool.
pub fn dequantize(
    kind: GgmlType,
    bytes: &[u8],
    n_elements: usize,
    out: &mut [f32],
) -> Result<(), DequantizeError> {
    if !kind.can_dequantize() {
        return Err(DequantizeError::Unsupported(kind));
    }
    let (block, block_bytes) = kind
        .block_layout()
        .ok_or(DequantizeError::Unsupported(kind))?;
    if !n_elements.is_multiple_of(block) {
        return Err(DequantizeError::PartialBlock {
            kind,
            n_elements,
            block,
        });
    }
    let expected_bytes = n_elements / block * block_bytes;
    if bytes.len() != expected_bytes || out.len() != n_elements {
        return Err(DequantizeError::Length {
            kind,
            n_elements,
            expected_bytes,
            bytes: bytes.len(),
            outputs: out.len(),
        });
    }
    if n_elements > PARALLEL_THRESHOLD {
        // PARALLEL_CHUNK is a multiple of every block size (1, 32 and 256).
        let chunk_bytes = PARALLEL_CHUNK / block * block_bytes;
        out.par_chunks_mut(PARALLEL_CHUNK)
            .zip(bytes.par_chunks(chunk_bytes))
            .for_each(|(o, b)| dequantize_serial(kind, b, o));
    } else {
        dequantize_serial(kind, bytes, out);
    }
    Ok(())
}

/// Dequantizes whole blocks; lengths are already validated.
fn dequantize_serial(kind: GgmlType, bytes: &[u8], out: &mut [f32]) {
    use GgmlType::*;
    match kind {
        F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        BF16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        F64 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                *o = f64::from_le_bytes(a) as f32;
            }
        }
        Q4_0 => blocks(bytes, out, 18, 32, block_q4_0),
        Q4_1 => blocks(bytes, out, 20, 32, block_q4_1),
        Q5_0 => blocks(bytes, out, 22, 32, block_q5_0),
        Q5_1 => blocks(bytes, out, 24, 32, block_q5_1),
        Q8_0 => blocks(bytes, out, 34, 32, block_q8_0),
        Q2_K => blocks(bytes, out, 84, QK_K, block_q2_k),
        Q3_K => blocks(bytes, out, 110, QK_K, block_q3_k),
        Q4_K => blocks(bytes, out, 144, QK_K, block_q4_k),
        Q5_K => blocks(bytes, out, 176, QK_K, block_q5_k),
        Q6_K => blocks(bytes, out, 210, QK_K, block_q6_k),
        Q8_K => blocks(bytes, out, 292, QK_K, block_q8_k),
        // `dequantize` rejects everything else before getting here.
        _ => out.fill(f32::NAN),
    }
}

/// Runs `f` over each `(block bytes, block outputs)` pair.
fn blocks(
    bytes: &[u8],
    out: &mut [f32],
    block_bytes: usize,
    block: usize,
    f: fn(&[u8], &mut [f32]),
) {
    for (b, o) in bytes
        .chunks_exact(block_bytes)
        .zip(out.chunks_exact_mut(block))
    {
        f(b, o);
    }
}

/// A little-endian `f16` at `b[at..at + 2]`, widened.
fn half_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Q4_0: `d: f16`, 16 bytes of nibbles; `x = (q - 8) * d`, low nibbles are elements 0..16,
/// high nibbles 16..32.
fn block_q4_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        y[j] = (i32::from(qs[j] & 0x0F) - 8) as f32 * d;
        y[j + 16] = (i32::from(qs[j] >> 4) - 8) as f32 * d;
    }
}

/// Q4_1: `d: f16`, `m: f16`, 16 bytes of nibbles; `x = q * d + m`.
fn block_q4_1(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let m = half_at(b, 2);
    let qs = &b[4..20];
    for j in 0..16 {
        y[j] = f32::from(qs[j] & 0x0F) * d + m;
        y[j + 16] = f32::from(qs[j] >> 4) * d + m;
    }
}

/// Q5_0: `d: f16`, `qh: u32` (fifth bits), 16 bytes of nibbles; `x = (q - 16) * d`.
fn block_q5_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) << 4;
        let h1 = ((qh >> (j + 16)) & 1) << 4;
        y[j] = ((u32::from(qs[j] & 0x0F) | h0) as i32 - 16) as f32 * d;
        y[j + 16] = ((u32::from(qs[j] >> 4) | h1) as i32 - 16) as f32 * d;
    }
}

/// Q5_1: `d: f16`, `m: f16`, `qh: u32`, 16 bytes of nibbles; `x = q * d + m`.
fn block_q5_1(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let m = half_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) << 4;
        let h1 = ((qh >> (j + 16)) & 1) << 4;
        y[j] = (u32::from(qs[j] & 0x0F) | h0) as f32 * d + m;
        y[j + 16] = (u32::from(qs[j] >> 4) | h1) as f32 * d + m;
    }
}

/// Q8_0: `d: f16`, 32 × `i8`; `x = q * d`.
fn block_q8_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    for (o, &q) in y.iter_mut().zip(&b[2..34]) {
        *o = f32::from(q as i8) * d;
    }
}

/// Scale and min `j` (0..8) of a Q4_K/Q5_K super-block from its 12 packed bytes of 6-bit
/// values (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q2_K: `scales[16]` (low nibble scale, high nibble min), `qs[64]` (2-bit), `d`, `dmin`.
fn block_q2_k(b: &[u8], y: &mut [f32]) {
    let scales = &b[0..16];
    let d = half_at(b, 80);
    let dmin = half_at(b, 82);
    let mut is = 0;
    let mut o = 0;
    for n in 0..2 {
        let q = &b[16 + 32 * n..16 + 32 * (n + 1)];
        for shift in [0u32, 2, 4, 6] {
            for half in 0..2 {
                let sc = scales[is];
                is += 1;
                let dl = d * f32::from(sc & 0x0F);
                let ml = dmin * f32::from(sc >> 4);
                for l in 0..16 {
                    y[o] = dl * f32::from((q[l + 16 * half] >> shift) & 3) - ml;
                    o += 1;
                }
            }
        }
    }
}

/// Q3_K: `hmask[32]` (third bits), `qs[64]` (low 2 bits), `scales[12]` (16 × 6-bit, offset
/// by 32), `d`. A clear hmask bit subtracts 4.
fn block_q3_k(b: &[u8], y: &mut [f32]) {
    let hm = &b[0..32];
    let s = &b[96..108];
    let d = half_at(b, 108);
    let mut sc = [0i32; 16];
    for k in 0..4 {
        sc[k] = i32::from((s[k] & 0x0F) | ((s[8 + k] & 3) << 4)) - 32;
        sc[4 + k] = i32::from((s[4 + k] & 0x0F) | (((s[8 + k] >> 2) & 3) << 4)) - 32;
        sc[8 + k] = i32::from((s[k] >> 4) | (((s[8 + k] >> 4) & 3) << 4)) - 32;
        sc[12 + k] = i32::from((s[4 + k] >> 4) | (((s[8 + k] >> 6) & 3) << 4)) - 32;
    }
    let mut is = 0;
    let mut o = 0;
    let mut m: u8 = 1;
    for n in 0..2 {
        let q = &b[32 + 32 * n..32 + 32 * (n + 1)];
        for shift in [0u32, 2, 4, 6] {
            for half in 0..2 {
                let dl = d * sc[is] as f32;
                is += 1;
                for l in 0..16 {
                    let idx = l + 16 * half;
                    let low = i32::from((q[idx] >> shift) & 3);
                    let high = if hm[idx] & m != 0 { 0 } else { 4 };
                    y[o] = dl * (low - high) as f32;
                    o += 1;
                }
            }
            m = m.wrapping_shl(1);
        }
    }
}

/// Q4_K: `d`, `dmin`, `scales[12]` (8 × 6-bit scale/min pairs), `qs[128]` nibbles; each
/// 64-element group uses low nibbles with one scale/min pair, then high nibbles with the next.
fn block_q4_k(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let dmin = half_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for g in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * g, scales);
        let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
        let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
        let q = &qs[32 * g..32 * (g + 1)];
        let y = &mut y[64 * g..64 * (g + 1)];
        for l in 0..32 {
            y[l] = d1 * f32::from(q[l] & 0x0F) - m1;
            y[l + 32] = d2 * f32::from(q[l] >> 4) - m2;
        }
    }
}

/// Q5_K: like Q4_K plus `qh[32]` holding each element's fifth bit.
fn block_q5_k(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let dmin = half_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for g in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * g, scales);
        let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
        let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
        let u1 = 1u8 << (2 * g);
        let u2 = 2u8 << (2 * g);
        let q = &qs[32 * g..32 * (g + 1)];
        let y = &mut y[64 * g..64 * (g + 1)];
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d1 * f32::from((q[l] & 0x0F) + h1) - m1;
            y[l + 32] = d2 * f32::from((q[l] >> 4) + h2) - m2;
        }
    }
}

/// Q6_K: `ql[128]` (low 4 bits), `qh[64]` (high 2 bits), `scales[16]` (`i8`), `d`;
/// `x = d * scale * (q - 32)`.
fn block_q6_k(b: &[u8], y: &mut [f32]) {
    let ql_all = &b[0..128];
    let qh_all = &b[128..192];
    let sc_all = &b[192..208];
    let d = half_at(b, 208);
    for n in 0..2 {
        let ql = &ql_all[64 * n..64 * (n + 1)];
        let qh = &qh_all[32 * n..32 * (n + 1)];
        let sc = &sc_all[8 * n..8 * (n + 1)];
        let y = &mut y[128 * n..128 * (n + 1)];
        for l in 0..32 {
            let is = l / 16;
            let q1 = i32::from((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) - 32;
            let q2 = i32::from((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
            let q3 = i32::from((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            let q4 = i32::from((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            let s = |k: usize| f32::from(sc[k] as i8);
            y[l] = d * s(is) * q1 as f32;
            y[l + 32] = d * s(is + 2) * q2 as f32;
            y[l + 64] = d * s(is + 4) * q3 as f32;
            y[l + 96] = d * s(is + 6) * q4 as f32;
        }
    }
}

/// Q8_K: `d: f32`, 256 × `i8`, then 16 `i16` block sums (unused here); `x = q * d`.
fn block_q8_k(b: &[u8], y: &mut [f32]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (o, &q) in y.iter_mut().zip(&b[4..260]) {
        *o = f32::from(q as i8) * d;
    }
}

#[cfg(test)]
// Reference values are printed by Python at full f64 precision; they are exact in f32.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::excessive_precision)]
mod tests {
    use super::*;
    use std::io::Write;

    // -----------------------------------------------------------------------------------------
    // Dequantization: hand-built blocks, expected values computed from the format definition.
    // -----------------------------------------------------------------------------------------

    fn f16_bytes(v: f32) -> [u8; 2] {
        f16::from_f32(v).to_le_bytes()
    }

    fn deq(kind: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
        let mut out = vec![0f32; n];
        dequantize(kind, bytes, n, &mut out).unwrap();
        out
    }

    #[test]
    fn float_types() {
        let vals = [1.0f32, -2.5, 0.15625, 65504.0];
        let f32_bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(deq(GgmlType::F32, &f32_bytes, 4), vals);
        let f16b: Vec<u8> = vals.iter().flat_map(|&v| f16_bytes(v)).collect();
        assert_eq!(deq(GgmlType::F16, &f16b, 4), vals);
        // bf16 is the high half of an f32.
        let bf16b: Vec<u8> = vals[..3]
            .iter()
            .flat_map(|v| [v.to_le_bytes()[2], v.to_le_bytes()[3]])
            .collect();
        assert_eq!(deq(GgmlType::BF16, &bf16b, 3), &vals[..3]);
        let f64b: Vec<u8> = vals
            .iter()
            .flat_map(|&v| f64::from(v).to_le_bytes())
            .collect();
        assert_eq!(deq(GgmlType::F64, &f64b, 4), vals);
    }

    #[test]
    fn q4_0_block() {
        // d = 0.5; byte j holds element j in its low nibble and element j + 16 in its high one.
        let mut b = f16_bytes(0.5).to_vec();
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let y = deq(GgmlType::Q4_0, &b, 32);
        for j in 0..16 {
            assert_eq!(y[j], (j as f32 - 8.0) * 0.5);
            assert_eq!(y[j + 16], ((15 - j) as f32 - 8.0) * 0.5);
        }
    }

    #[test]
    fn q4_1_block() {
        let mut b = f16_bytes(0.25).to_vec();
        b.extend(f16_bytes(-1.0));
        b.extend((0..16u8).map(|j| j | ((j ^ 5) << 4)));
        let y = deq(GgmlType::Q4_1, &b, 32);
        for j in 0..16 {
            assert_eq!(y[j], j as f32 * 0.25 - 1.0);
            assert_eq!(y[j + 16], (j ^ 5) as f32 * 0.25 - 1.0);
        }
    }

    #[test]
    fn q5_0_block() {
        let qh: u32 = 0xA5A5_0F0F;
        let mut b = f16_bytes(1.0).to_vec();
        b.extend(qh.to_le_bytes());
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let y = deq(GgmlType::Q5_0, &b, 32);
        for j in 0..16 {
            let hi0 = (qh >> j) & 1;
            let hi1 = (qh >> (j + 16)) & 1;
            assert_eq!(y[j], (j as f32 + 16.0 * hi0 as f32) - 16.0);
            assert_eq!(y[j + 16], ((15 - j) as f32 + 16.0 * hi1 as f32) - 16.0);
        }
    }

    #[test]
    fn q8_0_block() {
        let mut b = f16_bytes(0.125).to_vec();
        b.extend((0..32i32).map(|j| (j - 16) as i8 as u8));
        let y = deq(GgmlType::Q8_0, &b, 32);
        for j in 0..32 {
            assert_eq!(y[j], (j as f32 - 16.0) * 0.125);
        }
    }

    #[test]
    fn q8_k_block() {
        let mut b = 0.75f32.to_le_bytes().to_vec();
        b.extend((0..256i32).map(|j| (j - 128) as i8 as u8));
        b.extend([0u8; 32]);
        let y = deq(GgmlType::Q8_K, &b, 256);
        for j in 0..256 {
            assert_eq!(y[j], (j as f32 - 128.0) * 0.75);
        }
    }

    /// Packs eight 6-bit (scale, min) pairs the way ggml's k-quants (Q4_K, Q5_K) store them:
    /// pairs 0..4 in the low 6 bits of bytes 0..4 (scales) and 4..8 (mins); pairs 4..8 split
    /// into a low nibble in bytes 8..12 (scale low, min high) and their top two bits in the
    /// spare bits 6..8 of bytes 0..4 (scales) and 4..8 (mins).
    fn pack_k4_scales(sc: [u8; 8], mn: [u8; 8]) -> [u8; 12] {
        let mut p = [0u8; 12];
        for j in 0..4 {
            p[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
            p[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
            p[j + 8] = (sc[j + 4] & 0x0F) | ((mn[j + 4] & 0x0F) << 4);
        }
        p
    }

    #[test]
    fn q4_k_block() {
        let sc = [1u8, 5, 10, 63, 33, 17, 2, 48];
        let mn = [0u8, 3, 7, 62, 41, 9, 60, 1];
        let (d, dmin) = (0.5f32, 0.25f32);
        let qs: Vec<u8> = (0..128u32).map(|i| ((i * 7 + 3) & 0xFF) as u8).collect();
        let mut b = f16_bytes(d).to_vec();
        b.extend(f16_bytes(dmin));
        b.extend(pack_k4_scales(sc, mn));
        b.extend(&qs);
        let y = deq(GgmlType::Q4_K, &b, 256);
        for e in 0..256 {
            // 64-element groups: first 32 from low nibbles (sub-block 2g), next 32 from the
            // high nibbles of the same 32 bytes (sub-block 2g + 1).
            let (g, r) = (e / 64, e % 64);
            let (sub, q) = if r < 32 {
                (2 * g, qs[32 * g + r] & 0x0F)
            } else {
                (2 * g + 1, qs[32 * g + r - 32] >> 4)
            };
            let expected = d * f32::from(sc[sub]) * f32::from(q) - dmin * f32::from(mn[sub]);
            assert!(
                (y[e] - expected).abs() < 1e-6,
                "element {e}: {} vs {expected}",
                y[e]
            );
        }
    }

    #[test]
    fn q6_k_block() {
        let scales: [i8; 16] = [-3, 5, 7, -1, 2, 100, -128, 9, 1, 2, 3, 4, -5, -6, 7, 8];
        let d = 0.5f32;
        let q6: Vec<u8> = (0..256u32).map(|e| ((e * 37 + 11) % 64) as u8).collect();
        let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
        // Each 128-element half: element 32k + l keeps its low 4 bits in byte l (k = 0, 2) or
        // l + 32 (k = 1, 3) of the half's 64 `ql` bytes (low nibble for k < 2), and its top two
        // bits at bits 2k..2k+2 of `qh` byte l.
        for n in 0..2 {
            for l in 0..32 {
                for k in 0..4 {
                    let v = q6[128 * n + 32 * k + l];
                    let byte = 64 * n + l + if k % 2 == 1 { 32 } else { 0 };
                    ql[byte] |= if k < 2 { v & 0x0F } else { (v & 0x0F) << 4 };
                    qh[32 * n + l] |= (v >> 4) << (2 * k);
                }
            }
        }
        let mut b = ql.to_vec();
        b.extend(qh);
        b.extend(scales.iter().map(|&s| s as u8));
        b.extend(f16_bytes(d));
        let y = deq(GgmlType::Q6_K, &b, 256);
        for e in 0..256 {
            // Scales cover 16 consecutive elements.
            let expected = d * f32::from(scales[e / 16]) * (f32::from(q6[e]) - 32.0);
            assert_eq!(y[e], expected, "element {e}");
        }
    }

    /// Deterministic bytes (a 64-bit LCG); the same generator produced the reference values.
    fn lcg_bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) & 0xFF) as u8
            })
            .collect()
    }

    /// Two pseudo-random blocks of `kind`, with the super-block scales (`d`, `dmin`) set to
    /// 0.0123·(k+1) and 0.0045·(k+1) so that they are finite.
    fn random_blocks(kind: GgmlType, seed: u64) -> Vec<u8> {
        let (_, block_bytes) = kind.block_layout().unwrap();
        let f16_fields: &[usize] = match kind {
            GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
            GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
            GgmlType::Q2_K => &[80, 82],
            GgmlType::Q3_K => &[108],
            GgmlType::Q6_K => &[208],
            _ => unreachable!(),
        };
        let mut out = Vec::new();
        for k in 0..2u64 {
            let mut b = lcg_bytes(seed * 1000 + k, block_bytes);
            for (i, &off) in f16_fields.iter().enumerate() {
                let v = if i == 0 { 0.0123 } else { 0.0045 } * (k + 1) as f32;
                b[off..off + 2].copy_from_slice(&f16_bytes(v));
            }
            out.extend(b);
        }
        out
    }

    /// Reference values from gguf-py 0.19.0 (`gguf.quants.dequantize`, a numpy port of
    /// ggml-quants.c) applied to the same `random_blocks` bytes (script: LCG above, f16 scales
    /// written with numpy.float16): (type, seed, sum, sum of |x|, [(index, value)]).
    #[allow(clippy::type_complexity)]
    const GGUF_PY_REFERENCE: &[(GgmlType, u64, f64, f64, &[(usize, f64)])] = &[
        (
            GgmlType::Q4_0,
            1,
            0.873199462890625,
            5.177703857421875,
            &[
                (0, -0.07379150390625),
                (1, 0.07379150390625),
                (15, 0.07379150390625),
                (16, -0.02459716796875),
                (17, 0.07379150390625),
                (31, -0.012298583984375),
                (32, 0.12298583984375),
                (63, 0.0),
            ],
        ),
        (
            GgmlType::Q4_1,
            2,
            10.676849365234375,
            10.676849365234375,
            &[
                (0, 0.1766815185546875),
                (1, 0.1889801025390625),
                (15, 0.0290985107421875),
                (16, 0.0536956787109375),
                (17, 0.0659942626953125),
                (31, 0.1766815185546875),
                (32, 0.279571533203125),
                (63, 0.377960205078125),
            ],
        ),
        (
            GgmlType::Q5_0,
            3,
            -0.66412353515625,
            8.8057861328125,
            &[
                (0, 0.012298583984375),
                (1, 0.0491943359375),
                (15, 0.0),
                (16, 0.159881591796875),
                (17, 0.135284423828125),
                (31, -0.036895751953125),
                (32, 0.07379150390625),
                (63, 0.0491943359375),
            ],
        ),
        (
            GgmlType::Q5_1,
            4,
            21.0445556640625,
            21.0445556640625,
            &[
                (0, 0.3242645263671875),
                (1, 0.2135772705078125),
                (15, 0.0782928466796875),
                (16, 0.3488616943359375),
                (17, 0.0782928466796875),
                (31, 0.2504730224609375),
                (32, 0.476348876953125),
                (63, 0.476348876953125),
            ],
        ),
        (
            GgmlType::Q8_0,
            5,
            -0.12298583984375,
            85.794921875,
            &[
                (0, -1.119171142578125),
                (1, -0.51654052734375),
                (15, 0.59033203125),
                (16, 1.54962158203125),
                (17, 1.561920166015625),
                (31, 0.98388671875),
                (32, 2.38592529296875),
                (63, 1.20526123046875),
            ],
        ),
        (
            GgmlType::Q2_K,
            6,
            81.41867065429688,
            100.25442504882812,
            &[
                (0, 0.0578765869140625),
                (1, 0.0578765869140625),
                (15, -0.0405120849609375),
                (16, 0.099273681640625),
                (17, 0.099273681640625),
                (31, 0.23455810546875),
                (32, -0.0675201416015625),
                (63, -0.0225067138671875),
                (64, -0.0045013427734375),
                (100, -0.063018798828125),
                (127, -0.045013427734375),
                (128, 0.5039215087890625),
                (200, 0.1340789794921875),
                (255, 0.0623779296875),
                (256, 0.64788818359375),
                (300, 0.048553466796875),
                (511, 0.084564208984375),
            ],
        ),
        (
            GgmlType::Q3_K,
            7,
            -78.19439697265625,
            375.549560546875,
            &[
                (0, -0.2459716796875),
                (1, -0.2459716796875),
                (15, -0.98388671875),
                (16, 0.3443603515625),
                (17, 1.0330810546875),
                (31, -0.3443603515625),
                (32, -0.356658935546875),
                (63, -0.0),
                (64, -1.3282470703125),
                (100, -1.1806640625),
                (127, -0.098388671875),
                (128, 0.0),
                (200, 0.110687255859375),
                (255, 0.31976318359375),
                (256, -0.36895751953125),
                (300, -0.61492919921875),
                (511, 0.295166015625),
            ],
        ),
        (
            GgmlType::Q4_K,
            8,
            2544.0025329589844,
            2553.8726806640625,
            &[
                (0, 5.30029296875),
                (1, 3.45550537109375),
                (15, 6.5301513671875),
                (16, 5.30029296875),
                (17, 0.380859375),
                (31, 5.91522216796875),
                (32, 7.0560150146484375),
                (63, 4.4733123779296875),
                (64, 5.7824249267578125),
                (100, 0.6451568603515625),
                (127, 3.6214141845703125),
                (128, 0.9936981201171875),
                (200, 9.133590698242188),
                (255, 2.932373046875),
                (256, 7.0849609375),
                (300, 0.68389892578125),
                (511, 21.22430419921875),
            ],
        ),
        (
            GgmlType::Q5_K,
            9,
            4828.287658691406,
            4834.294036865234,
            &[
                (0, 7.5365447998046875),
                (1, 10.119247436523438),
                (15, 9.258346557617188),
                (16, 12.271499633789062),
                (17, 0.6493377685546875),
                (31, 5.8147430419921875),
                (32, 0.9205474853515625),
                (63, 0.0350494384765625),
                (64, 1.45782470703125),
                (100, 5.313873291015625),
                (127, 1.993255615234375),
                (128, 10.27679443359375),
                (200, 0.4769134521484375),
                (255, 13.948043823242188),
                (256, 4.621063232421875),
                (300, -0.504150390625),
                (511, 18.80413818359375),
            ],
        ),
        (
            GgmlType::Q6_K,
            10,
            -44.20111083984375,
            8348.131225585938,
            &[
                (0, -5.53436279296875),
                (1, 3.32061767578125),
                (15, 2.58270263671875),
                (16, -28.594207763671875),
                (17, -0.922393798828125),
                (31, 16.60308837890625),
                (32, -23.133636474609375),
                (63, -38.568359375),
                (64, -11.179412841796875),
                (100, -21.03057861328125),
                (127, -3.6895751953125),
                (128, -11.622161865234375),
                (200, -25.70404052734375),
                (255, 5.1162109375),
                (256, -1.0330810546875),
                (300, -22.727783203125),
                (511, -27.1552734375),
            ],
        ),
    ];

    #[test]
    fn matches_gguf_py_on_random_blocks() {
        for &(kind, seed, sum, abs_sum, picks) in GGUF_PY_REFERENCE {
            let bytes = random_blocks(kind, seed);
            let n = 2 * kind.block_layout().unwrap().0;
            let y = deq(kind, &bytes, n);
            let got_sum: f64 = y.iter().map(|&v| f64::from(v)).sum();
            let got_abs: f64 = y.iter().map(|&v| f64::from(v).abs()).sum();
            let tol = 1e-5 * abs_sum.max(1.0);
            assert!(
                (got_sum - sum).abs() < tol,
                "{kind}: sum {got_sum} vs {sum}"
            );
            assert!(
                (got_abs - abs_sum).abs() < tol,
                "{kind}: |sum| {got_abs} vs {abs_sum}"
            );
            for &(i, v) in picks {
                assert!(
                    (f64::from(y[i]) - v).abs() < 1e-5,
                    "{kind}[{i}]: {} vs {v}",
                    y[i]
                );
            }
        }
    }

    #[test]
    fn parallel_path_equals_serial() {
        // More than PARALLEL_THRESHOLD elements, with a tail chunk shorter than the others.
        let kind = GgmlType::Q4_K;
        let n_blocks = PARALLEL_THRESHOLD / QK_K * 2 + 3;
        let mut bytes = Vec::new();
        for i in 0..n_blocks / 2 + 1 {
            bytes.extend(random_blocks(kind, 100 + i as u64));
        }
        bytes.truncate(n_blocks * 144);
        let n = n_blocks * QK_K;
        let par = deq(kind, &bytes, n);
        let mut ser = vec![0f32; n];
        dequantize_serial(kind, &bytes, &mut ser);
        assert_eq!(par, ser);
    }

    #[test]
    fn dequantize_rejects_bad_input() {
        let mut out = vec![0f32; 32];
        assert_eq!(
            dequantize(GgmlType::IQ2_XXS, &[0; 66], 256, &mut [0f32; 256]),
            Err(DequantizeError::Unsupported(GgmlType::IQ2_XXS))
        );
        assert!(matches!(
            dequantize(GgmlType::Q8_0, &[0; 34], 31, &mut out[..31]),
            Err(DequantizeError::PartialBlock { .. })
        ));
        assert!(matches!(
            dequantize(GgmlType::Q8_0, &[0; 33], 32, &mut out),
            Err(DequantizeError::Length { .. })
        ));
        let msg = DequantizeError::Unsupported(GgmlType::Unknown(99)).to_string();
        assert!(msg.contains("unknown (ggml type 99)"), "{msg}");
    }

    // -----------------------------------------------------------------------------------------
    // q/k permutation.
    // -----------------------------------------------------------------------------------------

    /// llama.cpp's `LlamaModel.permute`: `w.reshape(n_head, 2, rows / n_head / 2, cols)
    /// .swapaxes(1, 2).reshape(rows, cols)`, written out as index arithmetic: output row
    /// `(h, j, i)` (shape `[n_head, half, 2]`) is input row `(h, i, j)` (shape `[n_head, 2, half]`).
    fn converter_permute(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
        let half = rows / n_head / 2;
        let mut out = Vec::with_capacity(w.len());
        for h in 0..n_head {
            for j in 0..half {
                for i in 0..2 {
                    let src = (h * 2 + i) * half + j;
                    out.extend_from_slice(&w[src * cols..(src + 1) * cols]);
                }
            }
        }
        out
    }

    #[test]
    fn unpermute_inverts_the_converter() {
        for (rows, cols, n_head) in [(8, 3, 2), (576, 5, 9), (192, 4, 3), (16, 1, 1), (64, 2, 4)] {
            let w: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
            let permuted = converter_permute(&w, rows, cols, n_head);
            assert_ne!(
                permuted, w,
                "the permutation should move rows ({rows}, {n_head})"
            );
            assert_eq!(unpermute_rows(&permuted, rows, cols, n_head), w);
        }
        // A concrete case: one head of 4 rows [r0 r1 | r2 r3] is stored as [r0 r2 r1 r3].
        let stored = [0.0, 2.0, 1.0, 3.0];
        assert_eq!(unpermute_rows(&stored, 4, 1, 1), [0.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn name_mapping_round_trips() {
        for g in [
            "token_embd.weight",
            "output_norm.weight",
            "output.weight",
            "blk.0.attn_q.weight",
            "blk.3.attn_q.bias",
            "blk.12.attn_k.bias",
            "blk.7.attn_v.weight",
            "blk.7.attn_output.weight",
            "blk.1.ffn_gate.weight",
            "blk.1.ffn_up.weight",
            "blk.29.ffn_down.weight",
            "blk.2.attn_norm.weight",
            "blk.2.ffn_norm.weight",
        ] {
            let hf = gguf_to_hf_name(g).unwrap();
            assert_eq!(hf_to_gguf_name(&hf).as_deref(), Some(g), "{hf}");
        }
        assert_eq!(
            gguf_to_hf_name("blk.4.attn_output.weight").as_deref(),
            Some("model.layers.4.self_attn.o_proj.weight")
        );
        assert_eq!(
            gguf_to_hf_name("blk.4.ffn_norm.weight").as_deref(),
            Some("model.layers.4.post_attention_layernorm.weight")
        );
        assert_eq!(gguf_to_hf_name("rope_freqs.weight"), None);
        assert_eq!(hf_to_gguf_name("model.layers.x.mlp.up_proj.weight"), None);
        assert_eq!(hf_to_gguf_name("model.layers.0.input_layernorm.bias"), None);
    }

    // -----------------------------------------------------------------------------------------
    // Synthetic files.
    // -----------------------------------------------------------------------------------------

    /// Metadata values for the test writer.
    enum Kv<'a> {
        U32(u32),
        F32(f32),
        Bool(bool),
        Str(&'a str),
        Strs(Vec<&'a str>),
        I32s(Vec<i32>),
    }

    /// A tensor for the test writer: name, ggml dims, type id, raw data.
    struct T<'a> {
        name: &'a str,
        dims: Vec<u64>,
        kind: u32,
        data: Vec<u8>,
    }

    fn put_str(buf: &mut Vec<u8>, s: &str) {
        buf.extend((s.len() as u64).to_le_bytes());
        buf.extend(s.as_bytes());
    }

    /// Writes a GGUF v3 file with alignment 32 and no trailing padding.
    fn write_gguf(kvs: &[(&str, Kv<'_>)], tensors: &[T<'_>]) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend((tensors.len() as u64).to_le_bytes());
        b.extend((kvs.len() as u64).to_le_bytes());
        for (key, value) in kvs {
            put_str(&mut b, key);
            match value {
                Kv::U32(v) => {
                    b.extend(4u32.to_le_bytes());
                    b.extend(v.to_le_bytes());
                }
                Kv::F32(v) => {
                    b.extend(6u32.to_le_bytes());
                    b.extend(v.to_le_bytes());
                }
                Kv::Bool(v) => {
                    b.extend(7u32.to_le_bytes());
                    b.push(u8::from(*v));
                }
                Kv::Str(s) => {
                    b.extend(8u32.to_le_bytes());
                    put_str(&mut b, s);
                }
                Kv::Strs(items) => {
                    b.extend(9u32.to_le_bytes());
                    b.extend(8u32.to_le_bytes());
                    b.extend((items.len() as u64).to_le_bytes());
                    for s in items {
                        put_str(&mut b, s);
                    }
                }
                Kv::I32s(items) => {
                    b.extend(9u32.to_le_bytes());
                    b.extend(5u32.to_le_bytes());
                    b.extend((items.len() as u64).to_le_bytes());
                    for v in items {
                        b.extend(v.to_le_bytes());
                    }
                }
            }
        }
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for t in tensors {
            put_str(&mut b, t.name);
            b.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                b.extend(d.to_le_bytes());
            }
            b.extend(t.kind.to_le_bytes());
            b.extend(offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + t.data.len() as u64).div_ceil(32) * 32;
        }
        b.resize(b.len().div_ceil(32) * 32, 0);
        let data_start = b.len();
        for (t, off) in tensors.iter().zip(offsets) {
            b.resize(data_start + off as usize, 0);
            b.extend(&t.data);
        }
        b
    }

    fn f32_data(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    const HIDDEN: usize = 32;
    const HEADS: usize = 4;
    const KV_HEADS: usize = 2;
    const VOCAB: usize = 10;

    /// The Hugging Face q_proj / k_proj of the synthetic model (row-major `[out, in]`).
    fn hf_q() -> Vec<f32> {
        (0..HIDDEN * HIDDEN).map(|i| i as f32 * 0.01).collect()
    }

    fn hf_k() -> Vec<f32> {
        (0..HIDDEN / 2 * HIDDEN)
            .map(|i| -(i as f32) * 0.5)
            .collect()
    }

    /// A tiny model of architecture `arch`, its q/k stored the way llama.cpp's converter
    /// stores them for that architecture.
    fn synthetic_model(arch: &str) -> Vec<u8> {
        let permute = arch == "llama";
        let q = if permute {
            converter_permute(&hf_q(), HIDDEN, HIDDEN, HEADS)
        } else {
            hf_q()
        };
        let k = if permute {
            converter_permute(&hf_k(), HIDDEN / 2, HIDDEN, KV_HEADS)
        } else {
            hf_k()
        };
        // Q8_0 embeddings: row r has d = 0.5 and quants r - 16 + j.
        let mut embd = Vec::new();
        for r in 0..VOCAB {
            embd.extend(f16_bytes(0.5));
            embd.extend((0..32i32).map(|j| (r as i32 - 16 + j) as i8 as u8));
        }
        let k16: Vec<u8> = k.iter().flat_map(|&v| f16_bytes(v)).collect();
        let key = |k: &str| format!("{arch}.{k}");
        let keys: Vec<String> = [
            "embedding_length",
            "block_count",
            "feed_forward_length",
            "attention.head_count",
            "attention.head_count_kv",
            "attention.layer_norm_rms_epsilon",
            "rope.freq_base",
            "context_length",
        ]
        .iter()
        .map(|k| key(k))
        .collect();
        let tokens = vec![
            "<|bos|>", "<|user|>", "a", "b", "ab", "Ġ", "Ġab", "c", "d", "e",
        ];
        let kvs = vec![
            ("general.architecture", Kv::Str(arch)),
            (keys[0].as_str(), Kv::U32(HIDDEN as u32)),
            (keys[1].as_str(), Kv::U32(1)),
            (keys[2].as_str(), Kv::U32(64)),
            (keys[3].as_str(), Kv::U32(HEADS as u32)),
            (keys[4].as_str(), Kv::U32(KV_HEADS as u32)),
            (keys[5].as_str(), Kv::F32(1e-6)),
            (keys[6].as_str(), Kv::F32(500_000.0)),
            (keys[7].as_str(), Kv::U32(2048)),
            ("tokenizer.ggml.model", Kv::Str("gpt2")),
            ("tokenizer.ggml.pre", Kv::Str("gpt2")),
            ("tokenizer.ggml.tokens", Kv::Strs(tokens)),
            (
                "tokenizer.ggml.token_type",
                Kv::I32s(vec![3, 4, 1, 1, 1, 1, 1, 1, 1, 1]),
            ),
            ("tokenizer.ggml.merges", Kv::Strs(vec!["a b", "Ġ ab"])),
            ("tokenizer.ggml.bos_token_id", Kv::U32(0)),
            ("tokenizer.ggml.eos_token_id", Kv::U32(9)),
            ("tokenizer.ggml.eot_token_id", Kv::U32(8)),
            ("tokenizer.ggml.add_bos_token", Kv::Bool(true)),
            ("tokenizer.chat_template", Kv::Str("{{ messages }}")),
        ];
        let tensors = vec![
            T {
                name: "token_embd.weight",
                dims: vec![32, VOCAB as u64],
                kind: 8,
                data: embd,
            },
            T {
                name: "blk.0.attn_norm.weight",
                dims: vec![32],
                kind: 0,
                data: f32_data(&[1.5; 32]),
            },
            T {
                name: "blk.0.attn_q.weight",
                dims: vec![32, 32],
                kind: 0,
                data: f32_data(&q),
            },
            T {
                name: "blk.0.attn_k.weight",
                dims: vec![32, 16],
                kind: 1,
                data: k16,
            },
            T {
                name: "output_norm.weight",
                dims: vec![32],
                kind: 0,
                data: f32_data(&[0.25; 32]),
            },
        ];
        write_gguf(&kvs, &tensors)
    }

    fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
        path
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gguf-test-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn synthetic_llama_round_trip() {
        let dir = temp_dir("llama");
        let path = write_temp(&dir, "tiny.gguf", &synthetic_model("llama"));
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.path(), path);
        assert_eq!(f.version(), 3);
        assert_eq!(f.architecture().unwrap(), "llama");
        assert_eq!(f.metadata("llama.block_count"), Some(&GgufValue::U32(1)));
        assert_eq!(f.metadata_keys().next(), Some("general.architecture"));

        let c = f.hf_config().unwrap();
        assert_eq!(c["model_type"], "llama");
        assert_eq!(c["architectures"], json!(["LlamaForCausalLM"]));
        assert_eq!(c["hidden_size"], 32);
        assert_eq!(c["intermediate_size"], 64);
        assert_eq!(c["num_hidden_layers"], 1);
        assert_eq!(c["num_attention_heads"], 4);
        assert_eq!(c["num_key_value_heads"], 2);
        assert_eq!(c["rms_norm_eps"], 1e-6);
        assert_eq!(c["rope_theta"], 500_000.0);
        assert_eq!(c["max_position_embeddings"], 2048);
        assert_eq!(c["vocab_size"], VOCAB);
        assert_eq!(c["tie_word_embeddings"], true);
        assert_eq!(c["bos_token_id"], 0);
        assert_eq!(c["eos_token_id"], 9);
        assert_eq!(c["torch_dtype"], "float32");
        assert_eq!(c["attention_bias"], false);
        assert!(c.get("head_dim").is_none() && c.get("rope_scaling").is_none());

        assert_eq!(
            f.hf_tensor_names(),
            [
                "model.embed_tokens.weight",
                "model.layers.0.input_layernorm.weight",
                "model.layers.0.self_attn.q_proj.weight",
                "model.layers.0.self_attn.k_proj.weight",
                "model.norm.weight",
            ]
        );
        assert_eq!(f.hf_tensor_kind("model.embed_tokens.weight"), Some("Q8_0"));
        assert_eq!(
            f.hf_tensor_kind("model.layers.0.self_attn.k_proj.weight"),
            Some("F16")
        );
        assert_eq!(f.hf_tensor_kind("lm_head.weight"), None);
        assert!(f.hf_tensor("lm_head.weight").unwrap().is_none());
        assert!(
            f.hf_tensor("model.layers.0.mlp.up_proj.weight")
                .unwrap()
                .is_none()
        );

        let (embd, shape) = f.hf_tensor("model.embed_tokens.weight").unwrap().unwrap();
        assert_eq!(shape, [VOCAB, 32]);
        for r in 0..VOCAB {
            for j in 0..32 {
                assert_eq!(embd[r * 32 + j], (r as f32 - 16.0 + j as f32) * 0.5);
            }
        }
        let (norm, shape) = f.hf_tensor("model.norm.weight").unwrap().unwrap();
        assert_eq!((norm, shape), (vec![0.25; 32], vec![32]));

        // q and k come back in Hugging Face order although the file stores them permuted.
        let (q, shape) = f
            .hf_tensor("model.layers.0.self_attn.q_proj.weight")
            .unwrap()
            .unwrap();
        assert_eq!(shape, [32, 32]);
        assert_eq!(q, hf_q());
        let (k, shape) = f
            .hf_tensor("model.layers.0.self_attn.k_proj.weight")
            .unwrap()
            .unwrap();
        assert_eq!(shape, [16, 32]);
        let expected_k: Vec<f32> = hf_k().iter().map(|&v| f16::from_f32(v).to_f32()).collect();
        assert_eq!(k, expected_k);
        // raw_tensor shows the stored (permuted) layout.
        let (raw_q, _) = f.raw_tensor("blk.0.attn_q.weight").unwrap().unwrap();
        assert_ne!(raw_q, hf_q());

        assert_eq!(f.chat_template().as_deref(), Some("{{ messages }}"));
        assert_eq!(f.eos_token_ids(), [9, 8]);
        assert_eq!(f.bos_token_id(), Some(0));

        // Tokenizer: BOS template, merges, a user-defined token matched atomically.
        let tok = f.tokenizer().unwrap();
        let enc = tok.encode("ab<|user|> ab", true).unwrap();
        assert_eq!(enc.get_ids(), [0, 4, 1, 6]);
        assert_eq!(tok.decode(enc.get_ids(), true).unwrap(), "ab<|user|> ab");
        assert_eq!(
            tok.decode(enc.get_ids(), false).unwrap(),
            "<|bos|>ab<|user|> ab"
        );
        assert_eq!(tok.encode("ab", false).unwrap().get_ids(), [4]);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn synthetic_qwen2_is_not_unpermuted() {
        let dir = temp_dir("qwen2");
        let path = write_temp(&dir, "tiny.gguf", &synthetic_model("qwen2"));
        let f = GgufFile::open(&path).unwrap();
        let c = f.hf_config().unwrap();
        assert_eq!(c["model_type"], "qwen2");
        assert_eq!(c["architectures"], json!(["Qwen2ForCausalLM"]));
        assert_eq!(c["attention_bias"], true);
        let (q, _) = f
            .hf_tensor("model.layers.0.self_attn.q_proj.weight")
            .unwrap()
            .unwrap();
        assert_eq!(q, hf_q());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn truncated_files_give_truncated() {
        let dir = temp_dir("trunc");
        let full = synthetic_model("llama");
        // Every cut: inside the magic, header, metadata, tensor table, padding and data.
        for cut in 1..full.len() {
            let path = write_temp(&dir, "cut.gguf", &full[..cut]);
            match GgufFile::open(&path) {
                Err(GgufError::Truncated { path: p, what }) => {
                    assert_eq!(p, path);
                    assert!(!what.is_empty());
                }
                other => panic!(
                    "cut at {cut} of {}: expected Truncated, got {other:?}",
                    full.len()
                ),
            }
        }
        let err = GgufFile::open(&write_temp(&dir, "cut.gguf", &full[..100])).unwrap_err();
        assert!(
            err.to_string().contains("cut.gguf") && err.to_string().contains("truncated"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        let dir = temp_dir("huge");
        // Header announcing u64::MAX metadata entries.
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(u64::MAX.to_le_bytes());
        let path = write_temp(&dir, "huge.gguf", &b);
        assert!(matches!(
            GgufFile::open(&path),
            Err(GgufError::Truncated { .. })
        ));
        // A string claiming 2^62 bytes, and an array claiming 2^60 elements.
        for tail in [
            [(1u64 << 62).to_le_bytes().to_vec()].concat(),
            [
                1u64.to_le_bytes().to_vec(),
                b"k".to_vec(),
                9u32.to_le_bytes().to_vec(),
                4u32.to_le_bytes().to_vec(),
                (1u64 << 60).to_le_bytes().to_vec(),
            ]
            .concat(),
        ] {
            let mut b = b"GGUF".to_vec();
            b.extend(3u32.to_le_bytes());
            b.extend(0u64.to_le_bytes());
            b.extend(1u64.to_le_bytes());
            b.extend(&tail);
            b.extend([0u8; 16]);
            let path = write_temp(&dir, "huge.gguf", &b);
            assert!(matches!(
                GgufFile::open(&path),
                Err(GgufError::Truncated { .. })
            ));
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn header_errors() {
        let dir = temp_dir("header");
        let path = write_temp(&dir, "bad.gguf", b"GGML\x03\0\0\0");
        assert!(matches!(
            GgufFile::open(&path),
            Err(GgufError::BadMagic { .. })
        ));
        let mut v1 = synthetic_model("llama");
        v1[4..8].copy_from_slice(&1u32.to_le_bytes());
        let path = write_temp(&dir, "v1.gguf", &v1);
        match GgufFile::open(&path) {
            Err(e @ GgufError::UnsupportedVersion { version: 1, .. }) => {
                assert!(e.to_string().contains("v1.gguf"), "{e}")
            }
            other => panic!("expected UnsupportedVersion, got {other:?}"),
        }
        let missing = dir.join("does-not-exist.gguf");
        match GgufFile::open(&missing) {
            Err(e @ GgufError::Io { .. }) => assert!(e.to_string().contains("does-not-exist.gguf")),
            other => panic!("expected Io, got {other:?}"),
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn unknown_architecture_is_named() {
        let dir = temp_dir("arch");
        let path = write_temp(&dir, "mamba.gguf", &synthetic_model("mamba"));
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.architecture().unwrap(), "mamba");
        let err = f.hf_config().unwrap_err();
        assert!(matches!(&err, GgufError::UnsupportedArchitecture { arch, .. } if arch == "mamba"));
        let msg = err.to_string();
        assert!(
            msg.contains("mamba")
                && msg.contains("supported: llama, qwen2")
                && msg.contains("mamba.gguf"),
            "{msg}"
        );
        assert!(matches!(
            f.hf_tensor("model.norm.weight"),
            Err(GgufError::UnsupportedArchitecture { .. })
        ));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn unsupported_types_are_named() {
        let dir = temp_dir("types");
        let kvs = [("general.architecture", Kv::Str("llama"))];
        let tensors = [
            T {
                name: "blk.0.ffn_up.weight",
                dims: vec![256, 1],
                kind: 16,
                data: vec![0; 66],
            },
            T {
                name: "blk.0.ffn_down.weight",
                dims: vec![8],
                kind: 99,
                data: vec![0; 8],
            },
        ];
        let path = write_temp(&dir, "iq.gguf", &write_gguf(&kvs, &tensors));
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(
            f.hf_tensor_kind("model.layers.0.mlp.up_proj.weight"),
            Some("IQ2_XXS")
        );
        for (name, kind) in [
            (
                "model.layers.0.mlp.up_proj.weight",
                "IQ2_XXS (ggml type 16)",
            ),
            (
                "model.layers.0.mlp.down_proj.weight",
                "unknown (ggml type 99)",
            ),
        ] {
            match f.hf_tensor(name) {
                Err(e @ GgufError::UnsupportedQuantization { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(kind) && msg.contains("iq.gguf"), "{msg}");
                }
                other => panic!("{name}: expected UnsupportedQuantization, got {other:?}"),
            }
        }
        // Missing metadata is named too.
        assert!(
            matches!(f.hf_config(), Err(GgufError::MissingMetadata { key, .. }) if key == "llama.embedding_length")
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn tokenizer_errors_name_the_cause() {
        let dir = temp_dir("tok");
        for (model, pre, needle) in [
            ("llama", "default", "SentencePiece"),
            ("gpt2", "exotic-pre", "exotic-pre"),
        ] {
            let kvs = [
                ("general.architecture", Kv::Str("llama")),
                ("tokenizer.ggml.model", Kv::Str(model)),
                ("tokenizer.ggml.pre", Kv::Str(pre)),
                ("tokenizer.ggml.tokens", Kv::Strs(vec!["a"])),
                ("tokenizer.ggml.merges", Kv::Strs(vec![])),
            ];
            let path = write_temp(&dir, "tok.gguf", &write_gguf(&kvs, &[]));
            let f = GgufFile::open(&path).unwrap();
            match f.tokenizer() {
                Err(e @ GgufError::Tokenizer { .. }) => {
                    assert!(e.to_string().contains(needle), "{e}")
                }
                other => panic!("expected a Tokenizer error, got {:?}", other.map(|_| ())),
            }
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn metadata_value_accessors() {
        assert_eq!(GgufValue::F32(1e-5).as_f64(), Some(1e-5));
        assert_eq!(GgufValue::I32(-1).as_u64(), None);
        assert_eq!(GgufValue::U16(7).as_i64(), Some(7));
        assert_eq!(GgufValue::U32(3).as_f64(), Some(3.0));
        assert_eq!(GgufValue::String("x".into()).as_str(), Some("x"));
        assert_eq!(GgufValue::Bool(true).as_bool(), Some(true));
        assert_eq!(
            GgufValue::Array(vec![GgufValue::U8(1)])
                .as_array()
                .map(<[_]>::len),
            Some(1)
        );
    }

    // -----------------------------------------------------------------------------------------
    // The real SmolLM2-135M-Instruct Q4_1 file.
    // -----------------------------------------------------------------------------------------

    /// The SmolLM2 file, or `None` (test skipped) when it is absent outside CI.
    fn smollm2() -> Option<GgufFile> {
        let path = std::env::var_os("STUDIO_SMOLLM2_GGUF")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("..")
                    .join(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf")
            });
        if !path.exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "SmolLM2 GGUF missing at {} (set STUDIO_SMOLLM2_GGUF)",
                path.display()
            );
            println!("skipped: file missing: {}", path.display());
            return None;
        }
        Some(GgufFile::open(&path).unwrap())
    }

    #[test]
    fn smollm2_config_and_metadata() {
        let Some(f) = smollm2() else { return };
        assert_eq!(f.architecture().unwrap(), "llama");
        let c = f.hf_config().unwrap();
        assert_eq!(c["model_type"], "llama");
        assert_eq!(c["hidden_size"], 576);
        assert_eq!(c["num_hidden_layers"], 30);
        assert_eq!(c["num_attention_heads"], 9);
        assert_eq!(c["num_key_value_heads"], 3);
        assert_eq!(c["intermediate_size"], 1536);
        assert_eq!(c["vocab_size"], 49152);
        assert_eq!(c["tie_word_embeddings"], true);
        assert_eq!(c["rms_norm_eps"], 1e-5);
        assert_eq!(c["rope_theta"], 100_000.0);
        assert_eq!(c["max_position_embeddings"], 8192);
        assert_eq!(c["bos_token_id"], 1);
        assert_eq!(c["eos_token_id"], 2);
        assert_eq!(f.eos_token_ids(), [2]);
        assert!(f.chat_template().unwrap().contains("<|im_start|>"));
        let names = f.hf_tensor_names();
        // 30 layers × 9 tensors + embeddings + final norm; no lm_head (tied).
        assert_eq!(names.len(), 30 * 9 + 2);
        assert!(!names.iter().any(|n| n == "lm_head.weight"));
        assert_eq!(f.hf_tensor_kind("model.embed_tokens.weight"), Some("Q8_0"));
        assert_eq!(
            f.hf_tensor_kind("model.layers.0.self_attn.q_proj.weight"),
            Some("Q4_1")
        );
        assert_eq!(f.hf_tensor_kind("model.norm.weight"), Some("F32"));
    }

    #[test]
    fn smollm2_tokenizer_matches_hf() {
        let Some(f) = smollm2() else { return };
        let tok = f.tokenizer().unwrap();
        // Expected ids from the Python `tokenizers` 0.23.3 package, with a Tokenizer assembled
        // exactly like SmolLM2-135M-Instruct's tokenizer.json (BPE over this file's tokens and
        // merges; pre-tokenizer Sequence[Digits(individual_digits=True), ByteLevel(
        // add_prefix_space=False, trim_offsets=True, use_regex=True)]; the 17 control tokens
        // as special added tokens; ByteLevel decoder).
        let cases: [(&str, &[u32]); 5] = [
            (
                "What is the capital of France?",
                &[1780, 314, 260, 3575, 282, 4649, 47],
            ),
            (
                "12345 apples\n\n  x",
                &[33, 34, 35, 36, 37, 13855, 8866, 1792],
            ),
            (
                "<|im_start|>user\nHi<|im_end|>\n",
                &[1, 4093, 198, 26843, 2, 198],
            ),
            (
                "Hello, world! It's 2024-06-01.\tTabs and  double  spaces",
                &[
                    19556, 28, 905, 17, 657, 506, 216, 34, 32, 34, 36, 29, 32, 38, 29, 32, 33, 30,
                    197, 68, 7366, 284, 216, 5561, 216, 5600,
                ],
            ),
            (
                "naïve café 😀 日本語",
                &[
                    3546, 46494, 37366, 40303, 218, 17097, 241, 115, 40993, 179, 120, 248,
                ],
            ),
        ];
        for (text, ids) in cases {
            let enc = tok.encode(text, true).unwrap();
            assert_eq!(enc.get_ids(), ids, "{text:?}");
            assert_eq!(tok.decode(ids, false).unwrap(), text);
        }
        assert_eq!(
            tok.decode(&[1, 4093, 198, 26843, 2, 198], true).unwrap(),
            "user\nHi\n"
        );
    }

    #[test]
    fn smollm2_tensors_match_gguf_py() {
        let Some(f) = smollm2() else { return };
        // Reference: gguf-py 0.19.0 `gguf.quants.dequantize` on the same tensors, reshaped to
        // the reversed ggml dims; q/k then passed through transformers 5.23's
        // `LlamaTensorProcessor._reverse_permute_weights` formula (reshape(n_head, dim, 2, ..)
        // .swapaxes(2, 1)) with n_head 9 for q and 3 for k.
        // (hf name, shape, sum, sum of |x|, [((row, col), value)])
        #[allow(clippy::type_complexity)]
        let cases: [(&str, [usize; 2], f64, f64, &[((usize, usize), f32)]); 4] = [
            (
                "model.embed_tokens.weight",
                [49152, 576],
                -15353.04449415207,
                2802153.619805813,
                &[
                    ((0, 0), -0.10654449462890625),
                    ((1, 0), -0.0238037109375),
                    ((2, 5), -0.016357421875),
                    ((31, 7), -0.10756683349609375),
                    ((32, 7), 0.021839141845703125),
                    ((33, 100), 0.1413717269897461),
                    ((63, 575), 0.020923614501953125),
                    ((64, 3), -0.11484909057617188),
                    ((49151, 575), -0.0417022705078125),
                ],
            ),
            (
                "model.layers.0.self_attn.q_proj.weight",
                [576, 576],
                59.22322082519531,
                63395.39872741699,
                &[
                    ((0, 0), -0.0963134765625),
                    ((1, 0), -0.1591796875),
                    ((2, 5), -0.109375),
                    ((31, 7), -0.027099609375),
                    ((32, 7), -0.04180908203125),
                    ((33, 100), 0.30572509765625),
                    ((63, 575), -0.061248779296875),
                    ((64, 3), 0.3507080078125),
                    ((575, 575), -0.255859375),
                ],
            ),
            (
                "model.layers.0.self_attn.k_proj.weight",
                [192, 576],
                26.937057495117188,
                29794.78126525879,
                &[
                    ((0, 0), -0.1552734375),
                    ((1, 0), 0.203369140625),
                    ((2, 5), 0.04052734375),
                    ((31, 7), 0.2586669921875),
                    ((32, 7), -0.40234375),
                    ((33, 100), -0.503173828125),
                    ((63, 575), 0.043701171875),
                    ((64, 3), 0.9891357421875),
                    ((191, 575), 0.3636474609375),
                ],
            ),
            (
                "model.layers.5.mlp.down_proj.weight",
                [576, 1536],
                21.782142639160156,
                127540.6024093628,
                &[
                    ((0, 0), 0.15875244140625),
                    ((1, 0), 0.1392822265625),
                    ((2, 5), -0.1583251953125),
                    ((31, 7), -0.0968017578125),
                    ((32, 7), -0.16650390625),
                    ((33, 100), -0.30950927734375),
                    ((63, 575), 0.10247802734375),
                    ((64, 3), 0.0579833984375),
                    ((575, 1535), 0.173095703125),
                ],
            ),
        ];
        for (name, shape, sum, abs_sum, picks) in cases {
            let (data, got_shape) = f.hf_tensor(name).unwrap().unwrap();
            assert_eq!(got_shape, shape, "{name}");
            let got_sum: f64 = data.iter().map(|&v| f64::from(v)).sum();
            let got_abs: f64 = data.iter().map(|&v| f64::from(v).abs()).sum();
            assert!(
                (got_sum - sum).abs() < 1e-6 * abs_sum,
                "{name}: sum {got_sum} vs {sum}"
            );
            assert!(
                (got_abs - abs_sum).abs() < 1e-6 * abs_sum,
                "{name}: |sum| {got_abs} vs {abs_sum}"
            );
            for &((r, c), v) in picks {
                assert_eq!(data[r * shape[1] + c], v, "{name}[{r}, {c}]");
            }
        }
        let (norm, shape) = f
            .hf_tensor("model.layers.0.input_layernorm.weight")
            .unwrap()
            .unwrap();
        assert_eq!(shape, [576]);
        assert_eq!(
            (norm[0], norm[1], norm[100], norm[575]),
            (
                0.01397705078125,
                0.0238037109375,
                -0.047119140625,
                -0.038330078125
            )
        );
        let (norm, _) = f.hf_tensor("model.norm.weight").unwrap().unwrap();
        assert_eq!((norm[0], norm[575]), (1.7578125, 1.984375));
    }
}
