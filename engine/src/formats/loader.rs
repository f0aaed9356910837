//! Opening a model wherever it is: a Hugging Face folder, a `.gguf` file, or the built-in tiny
//! reasoner. Checks that the tokenizer fits the model before anything runs.

use std::path::{Path, PathBuf};

use super::gguf::GgufFile;
use super::hf_config::{HfConfig, parse_config, read_config};
use super::hf_tokenizer::tokenizer_from_hf_folder;
use super::safetensors::SafetensorsWeights;
use super::{FormatError, HostTensor, WeightSource};
use crate::backend::Backend;
use crate::models::ModelError;
use crate::models::tiny::{self, RandomInit, TINY_REASONER, TINY_REASONER_INIT};
use crate::models::{CausalLm, DecoderConfig};
use crate::text::chat_template::ChatTemplate;
use crate::text::tokenizer::TextTokenizer;

/// The kind of file a model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    Builtin,
    Hf,
    Gguf,
}

/// Where a model is, decided from the path alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelLocation {
    /// The built-in tiny reasoner: trained (`builtin:tiny-reasoner`) or its seeded
    /// initialization (`builtin:tiny-reasoner-init`).
    TinyReasoner {
        trained: bool,
    },
    HfFolder(PathBuf),
    Gguf(PathBuf),
}

impl ModelLocation {
    /// Reads a model argument: `builtin:tiny-reasoner[-init]`, a folder with `config.json`, or a
    /// `.gguf`.
    pub fn parse(spec: &str) -> Result<Self, FormatError> {
        if spec == TINY_REASONER || spec == "tiny-reasoner" {
            return Ok(Self::TinyReasoner { trained: true });
        }
        if spec == TINY_REASONER_INIT || spec == "tiny-reasoner-init" {
            return Ok(Self::TinyReasoner { trained: false });
        }
        let path = PathBuf::from(spec);
        if !path.exists() {
            return Err(FormatError::NotFound { path });
        }
        if path.is_dir() {
            if path.join("config.json").is_file() {
                return Ok(Self::HfFolder(path));
            }
            return Err(FormatError::NotAModel { path });
        }
        let mut magic = [0u8; 4];
        let is_gguf = std::fs::File::open(&path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok()
            && &magic == b"GGUF";
        if is_gguf
            || path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            return Ok(Self::Gguf(path));
        }
        if path.file_name().is_some_and(|n| n == "config.json")
            && let Some(parent) = path.parent()
        {
            return Ok(Self::HfFolder(parent.to_path_buf()));
        }
        Err(FormatError::NotAModel { path })
    }
}

/// A model ready to run, with its tokenizer.
#[derive(Debug)]
pub struct LoadedModel {
    /// A short display name (folder or file name).
    pub name: String,
    /// What the user gave to open it.
    pub spec: String,
    pub format: ModelFormat,
    pub model: CausalLm,
    pub tokenizer: TextTokenizer,
    /// Storage type of the weights on disk (e.g. `bfloat16`, `Q4_1`); computation is f32.
    pub dtype: String,
}

struct GgufWeights<'a>(&'a GgufFile);

impl WeightSource for GgufWeights<'_> {
    fn origin(&self) -> PathBuf {
        self.0.path().to_path_buf()
    }

    fn contains(&self, name: &str) -> bool {
        self.0.hf_tensor_kind(name).is_some()
    }

    fn tensor(&self, name: &str) -> Result<Option<HostTensor>, ModelError> {
        Ok(self
            .0
            .hf_tensor(name)
            .map_err(FormatError::from)?
            .map(|(values, shape)| HostTensor { values, shape }))
    }
}

/// A short name for a model path: the repository for Hugging Face cache snapshots, else the
/// file or folder name.
pub fn display_name(path: &Path) -> String {
    // Hugging Face cache snapshots are named by hash: use the repository folder instead.
    let components: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if let Some(i) = components.iter().position(|c| c == "snapshots")
        && let Some(repo) = i.checked_sub(1).and_then(|r| components.get(r))
    {
        return repo.trim_start_matches("models--").replace("--", "/");
    }
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Config and tokenizer of a GGUF file, without its weights.
pub fn gguf_config(gguf: &GgufFile) -> Result<(HfConfig, String), FormatError> {
    let config = parse_config(gguf.path(), &gguf.hf_config()?)?;
    let dtype = gguf
        .hf_tensor_kind("model.layers.0.self_attn.q_proj.weight")
        .unwrap_or("unknown")
        .to_string();
    Ok((config, dtype))
}

fn gguf_tokenizer(gguf: &GgufFile) -> Result<TextTokenizer, FormatError> {
    let inner = gguf.tokenizer()?;
    let name_of = |id: Option<u32>| id.and_then(|i| inner.id_to_token(i)).unwrap_or_default();
    let eos_ids = gguf.eos_token_ids();
    let chat_template = gguf
        .chat_template()
        .map(|src| {
            ChatTemplate::new(
                &src,
                gguf.path().to_path_buf(),
                name_of(gguf.bos_token_id()),
                name_of(eos_ids.first().copied()),
            )
        })
        .transpose()?;
    Ok(TextTokenizer::new(
        inner,
        chat_template,
        eos_ids,
        gguf.path().to_path_buf(),
    ))
}

fn check_tokenizer_fits(
    tokenizer: &TextTokenizer,
    config: &DecoderConfig,
    origin: &Path,
) -> Result<(), FormatError> {
    let max_id = tokenizer.max_token_id();
    if max_id as usize >= config.vocab_size {
        return Err(FormatError::TokenizerModelMismatch {
            path: origin.to_path_buf(),
            max_id,
            embedding_rows: config.vocab_size,
        });
    }
    Ok(())
}

/// Opens a model's tokenizer and config without its weights, with the same checks as
/// [`load_model`] (the tokenizer's ids fit the embedding): what a launcher validates before
/// it starts a run.
pub fn open_tokenizer(spec: &str) -> Result<(TextTokenizer, DecoderConfig), FormatError> {
    match ModelLocation::parse(spec)? {
        ModelLocation::TinyReasoner { .. } => Ok((tiny::tokenizer()?, tiny::config())),
        ModelLocation::HfFolder(folder) => {
            let config = read_config(&folder.join("config.json"))?;
            let tokenizer = tokenizer_from_hf_folder(&folder, &config.decoder.eos_token_ids)?;
            check_tokenizer_fits(&tokenizer, &config.decoder, &folder)?;
            Ok((tokenizer, config.decoder))
        }
        ModelLocation::Gguf(path) => {
            let gguf = GgufFile::open(&path)?;
            gguf.check_tensor_types()?;
            let (config, _) = gguf_config(&gguf)?;
            let tokenizer = gguf_tokenizer(&gguf)?;
            check_tokenizer_fits(&tokenizer, &config.decoder, &path)?;
            Ok((tokenizer, config.decoder))
        }
    }
}

/// Opens a model and its tokenizer on `backend`.
pub fn load_model(spec: &str, backend: &Backend) -> Result<LoadedModel, FormatError> {
    crate::alloc::with_huge_pages(|| load_model_here(spec, backend))
}

fn load_model_here(spec: &str, backend: &Backend) -> Result<LoadedModel, FormatError> {
    let location = ModelLocation::parse(spec)?;
    let device = &backend.device;
    match location {
        ModelLocation::TinyReasoner { trained } => {
            let config = tiny::config();
            let tokenizer = tiny::tokenizer()?;
            let (model, name, dtype) = if trained {
                let weights = SafetensorsWeights::from_static(
                    Path::new(TINY_REASONER),
                    tiny::TRAINED_WEIGHTS,
                )?;
                let model = CausalLm::from_weights(config, &weights, device)?;
                (model, "tiny-reasoner", "float32")
            } else {
                let weights = RandomInit::new(&config, tiny::INIT_SEED);
                let model = CausalLm::from_weights(config, &weights, device)?;
                (model, "tiny-reasoner-init", "float32")
            };
            Ok(LoadedModel {
                name: name.into(),
                spec: spec.to_string(),
                format: ModelFormat::Builtin,
                model,
                tokenizer,
                dtype: dtype.into(),
            })
        }
        ModelLocation::HfFolder(folder) => {
            let config_path = folder.join("config.json");
            let config = read_config(&config_path)?;
            let tokenizer = tokenizer_from_hf_folder(&folder, &config.decoder.eos_token_ids)?;
            check_tokenizer_fits(&tokenizer, &config.decoder, &folder)?;
            let weights = SafetensorsWeights::open(&folder)?;
            let mut decoder = config.decoder;
            decoder.eos_token_ids = tokenizer.eos_token_ids.clone();
            let model = CausalLm::from_weights(decoder, &weights, device)?;
            Ok(LoadedModel {
                name: display_name(&folder),
                spec: spec.to_string(),
                format: ModelFormat::Hf,
                model,
                tokenizer,
                dtype: config.dtype.unwrap_or_else(|| "float32".into()),
            })
        }
        ModelLocation::Gguf(path) => {
            let gguf = GgufFile::open(&path)?;
            gguf.check_tensor_types()?;
            let (config, dtype) = gguf_config(&gguf)?;
            let tokenizer = gguf_tokenizer(&gguf)?;
            check_tokenizer_fits(&tokenizer, &config.decoder, &path)?;
            let mut decoder = config.decoder;
            decoder.eos_token_ids = tokenizer.eos_token_ids.clone();
            let model = CausalLm::from_weights(decoder, &GgufWeights(&gguf), device)?;
            Ok(LoadedModel {
                name: display_name(&path),
                spec: spec.to_string(),
                format: ModelFormat::Gguf,
                model,
                tokenizer,
                dtype,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trained_weights_cover_the_architecture_and_differ_from_the_init() {
        let c = tiny::config();
        let trained = SafetensorsWeights::from_static(
            std::path::Path::new(TINY_REASONER),
            tiny::TRAINED_WEIGHTS,
        )
        .expect("the embedded weights parse");
        for (name, shape) in crate::models::decoder::tensor_shapes(&c) {
            let w = trained
                .require(&name, &shape)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(w.values.iter().all(|v| v.is_finite()), "{name}");
        }
        let name = "model.layers.0.mlp.up_proj.weight";
        let a = trained.require(name, &[384, 128]).expect("present");
        let b = RandomInit::new(&c, tiny::INIT_SEED)
            .require(name, &[384, 128])
            .expect("present");
        let moved = a
            .values
            .iter()
            .zip(&b.values)
            .filter(|(x, y)| (*x - *y).abs() > 1e-3)
            .count();
        assert!(moved > a.values.len() / 2, "only {moved} weights moved");
    }

    #[test]
    fn hub_cache_snapshots_are_named_by_repository() {
        let p = Path::new("/h/hub/models--HuggingFaceTB--SmolLM2-135M/snapshots/abc123");
        assert_eq!(display_name(p), "HuggingFaceTB/SmolLM2-135M");
        assert_eq!(display_name(Path::new("/m/model.gguf")), "model.gguf");
    }

    #[test]
    fn bad_locations_are_explained() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e =
            ModelLocation::parse(&dir.path().join("nope").to_string_lossy()).expect_err("missing");
        assert!(matches!(e, FormatError::NotFound { .. }));
        let e = ModelLocation::parse(&dir.path().to_string_lossy()).expect_err("empty folder");
        assert!(e.to_string().contains("is not a model"), "{e}");
    }
}
