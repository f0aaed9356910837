//! Reading a GGUF file's header, typed metadata and tensor table from its mapped bytes, every
//! count and length checked against the bytes that are there.

use std::collections::HashMap;
use std::path::Path;

use super::{GgmlType, GgufError};

/// Alignment of the tensor data section when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;

/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;

/// How deeply arrays may nest inside metadata values (GGUF files in the wild never nest).
const MAX_ARRAY_DEPTH: u32 = 4;

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

/// What [`parse`] extracts from the mapped bytes.
pub(super) struct Parsed {
    pub(super) version: u32,
    pub(super) metadata: HashMap<String, GgufValue>,
    pub(super) metadata_order: Vec<String>,
    pub(super) tensors: Vec<GgufTensorInfo>,
    pub(super) data_offset: usize,
}

pub(super) fn parse(bytes: &[u8], path: &Path) -> Result<Parsed, GgufError> {
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
