//! Safetensors weights, a single `model.safetensors` or shards listed by
//! `model.safetensors.index.json`, memory-mapped; F32, F16 and BF16 converted to f32 on read.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use super::mmap::{Mmap, map_file};
use super::{FormatError, HostTensor, WeightSource};
use crate::models::ModelError;

struct Shard {
    path: PathBuf,
    bytes: ShardBytes,
}

/// A shard's bytes: a mapped file, or bytes compiled into the binary (the built-in model).
enum ShardBytes {
    Mapped(Mmap),
    Static(&'static [u8]),
}

impl std::ops::Deref for ShardBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Mapped(map) => map,
            Self::Static(bytes) => bytes,
        }
    }
}

/// The safetensors weights of one model folder.
pub struct SafetensorsWeights {
    folder: PathBuf,
    shards: Vec<Shard>,
    /// Tensor name → (shard index, dtype, shape).
    index: HashMap<String, (usize, Dtype, Vec<usize>)>,
}

impl std::fmt::Debug for SafetensorsWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsWeights")
            .field("folder", &self.folder)
            .field("tensors", &self.index.len())
            .finish()
    }
}

fn corrupt(path: &Path, e: impl std::fmt::Display) -> FormatError {
    FormatError::Safetensors {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

impl SafetensorsWeights {
    /// Opens the weights of `folder`: the shards of `model.safetensors.index.json` when present,
    /// else `model.safetensors`, else every `*.safetensors` in the folder.
    pub fn open(folder: &Path) -> Result<Self, FormatError> {
        let index_path = folder.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index_path.is_file() {
            let json = super::hf_config::read_json(&index_path)?;
            let map = json
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| FormatError::ConfigField {
                    path: index_path.clone(),
                    field: "weight_map".into(),
                    problem: "is missing or not an object".into(),
                })?;
            let mut names: Vec<String> = map
                .values()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            names.sort();
            names.dedup();
            names.into_iter().map(|n| folder.join(n)).collect()
        } else if folder.join("model.safetensors").is_file() {
            vec![folder.join("model.safetensors")]
        } else {
            let mut found: Vec<PathBuf> = std::fs::read_dir(folder)
                .map_err(|e| FormatError::io(folder, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(FormatError::MissingTensor {
                    path: folder.to_path_buf(),
                    name: "model.safetensors (no *.safetensors file in the folder)".into(),
                });
            }
            found
        };
        Self::from_files(folder, files)
    }

    /// Opens one safetensors file.
    pub fn open_file(path: &Path) -> Result<Self, FormatError> {
        Self::from_files(path, vec![path.to_path_buf()])
    }

    /// Reads safetensors bytes compiled into the binary; `origin` names them in errors.
    pub fn from_static(origin: &Path, bytes: &'static [u8]) -> Result<Self, FormatError> {
        Self::from_shards(
            origin,
            vec![(origin.to_path_buf(), ShardBytes::Static(bytes))],
        )
    }

    fn from_files(origin: &Path, files: Vec<PathBuf>) -> Result<Self, FormatError> {
        let shards = files
            .into_iter()
            .map(|path| {
                let map = map_file(&path).map_err(|e| FormatError::io(&path, e))?;
                Ok((path, ShardBytes::Mapped(map)))
            })
            .collect::<Result<Vec<_>, FormatError>>()?;
        Self::from_shards(origin, shards)
    }

    fn from_shards(origin: &Path, files: Vec<(PathBuf, ShardBytes)>) -> Result<Self, FormatError> {
        let mut shards = Vec::with_capacity(files.len());
        let mut index = HashMap::new();
        for (i, (path, bytes)) in files.into_iter().enumerate() {
            // `deserialize` validates the header and that every tensor lies inside the file.
            let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(&path, e))?;
            for (name, view) in st.tensors() {
                index.insert(name, (i, view.dtype(), view.shape().to_vec()));
            }
            shards.push(Shard { path, bytes });
        }
        Ok(Self {
            folder: origin.to_path_buf(),
            shards,
            index,
        })
    }

    /// Tensor names with their shapes and dtypes, sorted by name.
    pub fn summary(&self) -> BTreeMap<String, (String, Vec<usize>)> {
        self.index
            .iter()
            .map(|(n, (_, d, s))| (n.clone(), (format!("{d:?}"), s.clone())))
            .collect()
    }
}

/// Converts raw little-endian tensor bytes to f32.
pub fn f32_from_bytes(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

impl WeightSource for SafetensorsWeights {
    fn origin(&self) -> PathBuf {
        self.folder.clone()
    }

    fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn tensor(&self, name: &str) -> Result<Option<HostTensor>, ModelError> {
        let Some((shard, _, _)) = self.index.get(name) else {
            return Ok(None);
        };
        let shard = &self.shards[*shard];
        let st = SafeTensors::deserialize(&shard.bytes).map_err(|e| corrupt(&shard.path, e))?;
        let view = st.tensor(name).map_err(|e| corrupt(&shard.path, e))?;
        let values = f32_from_bytes(view.dtype(), view.data()).ok_or_else(|| {
            FormatError::UnsupportedDtype {
                path: shard.path.clone(),
                name: name.to_string(),
                dtype: format!("{:?}", view.dtype()),
            }
        })?;
        Ok(Some(HostTensor {
            values,
            shape: view.shape().to_vec(),
        }))
    }
}

/// The element type weights are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoredDtype {
    /// Exact (the default): what training checkpoints use.
    #[default]
    F32,
    /// Half the size, rounded to nearest even: for shipping weights.
    Bf16,
}

impl StoredDtype {
    /// The name `config.json` gives it (`dtype` / `torch_dtype`).
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::Bf16 => "bfloat16",
        }
    }
}

/// Writes f32 tensors to one safetensors file.
pub fn write_f32(path: &Path, tensors: &[(String, HostTensor)]) -> Result<(), FormatError> {
    write_tensors(path, tensors, StoredDtype::F32)
}

/// Writes tensors to one safetensors file as `dtype`.
pub fn write_tensors(
    path: &Path,
    tensors: &[(String, HostTensor)],
    dtype: StoredDtype,
) -> Result<(), FormatError> {
    let write_err = |e: &dyn std::fmt::Display| FormatError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(n, t)| {
            let raw: Vec<u8> = match dtype {
                StoredDtype::F32 => t.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                StoredDtype::Bf16 => t
                    .values
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
            };
            (n.clone(), raw, t.shape.clone())
        })
        .collect();
    let st_dtype = match dtype {
        StoredDtype::F32 => Dtype::F32,
        StoredDtype::Bf16 => Dtype::BF16,
    };
    let views = bytes
        .iter()
        .map(|(n, raw, shape)| {
            safetensors::tensor::TensorView::new(st_dtype, shape.clone(), raw)
                .map(|v| (n.clone(), v))
                .map_err(|e| write_err(&e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut metadata = HashMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    safetensors::serialize_to_file(views, Some(metadata), path).map_err(|e| write_err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.safetensors");
        let t = HostTensor {
            values: (0..12).map(|i| i as f32 * 0.5).collect(),
            shape: vec![3, 4],
        };
        write_f32(&path, &[("a.weight".into(), t.clone())]).expect("write");
        let w = SafetensorsWeights::open(dir.path()).expect("open");
        let back = w.require("a.weight", &[3, 4]).expect("present");
        assert_eq!(back.values, t.values);
        let e = w
            .require("a.weight", &[4, 3])
            .expect_err("wrong shape")
            .to_string();
        assert!(
            e.contains("a.weight") && e.contains("[3, 4]") && e.contains("[4, 3]"),
            "{e}"
        );
        let e = w
            .require("b.weight", &[1])
            .expect_err("missing")
            .to_string();
        assert!(e.contains("b.weight"), "{e}");

        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 10]).expect("truncate");
        let e = SafetensorsWeights::open(dir.path())
            .expect_err("truncated")
            .to_string();
        assert!(
            e.contains("model.safetensors") && e.contains("truncated"),
            "{e}"
        );
    }

    #[test]
    fn bf16_written_reads_back_within_its_rounding() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.safetensors");
        let values: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) * 0.013_7).collect();
        let t = HostTensor {
            values: values.clone(),
            shape: vec![8, 8],
        };
        write_tensors(&path, &[("w".into(), t)], StoredDtype::Bf16).expect("write");
        let bytes: &'static [u8] =
            Box::leak(std::fs::read(&path).expect("read").into_boxed_slice());
        assert!(bytes.len() < 64 * 4, "bf16 is 2 bytes a value");
        let back = SafetensorsWeights::from_static(Path::new("builtin:test"), bytes)
            .expect("open")
            .require("w", &[8, 8])
            .expect("present");
        for (a, b) in values.iter().zip(&back.values) {
            // bf16 keeps 8 significant bits: rounding to nearest moves a value by at most half
            // an ulp, 2^-8 of the value in the worst case (just above a power of two).
            assert!((a - b).abs() <= a.abs() / 256.0 + 1e-30, "{a} {b}");
        }
        assert!(
            SafetensorsWeights::from_static(Path::new("builtin:test"), &bytes[..20])
                .expect_err("truncated")
                .to_string()
                .contains("builtin:test")
        );
    }

    #[test]
    fn half_precision_converts() {
        let f16 = half::f16::from_f32(1.5).to_le_bytes();
        let bf16 = half::bf16::from_f32(-2.0).to_le_bytes();
        assert_eq!(f32_from_bytes(Dtype::F16, &f16), Some(vec![1.5]));
        assert_eq!(f32_from_bytes(Dtype::BF16, &bf16), Some(vec![-2.0]));
        assert_eq!(f32_from_bytes(Dtype::I64, &[0; 8]), None);
    }
}
