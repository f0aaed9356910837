//! Command-line arguments (clap). Each subcommand's `--help` documents its contract.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Reasoning Studio: train language models to reason, watch them learn, read their traces.
/// Without a subcommand, opens the desktop app.
#[derive(Debug, Parser)]
#[command(name = "studio", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the desktop app (the default).
    Gui(GuiArgs),
    /// Score a text teacher-forced: per-token log-probability, entropy and top-k alternatives.
    Score(ScoreArgs),
    /// Generate a continuation with per-token log-probability and entropy.
    Generate(GenerateArgs),
    /// List models found on disk (built-in, Hugging Face cache, STUDIO_MODEL_DIRS, --dir).
    Models(ModelsArgs),
    /// Write a model as a Hugging Face folder (config.json, model.safetensors, tokenizer.json).
    Export(ExportArgs),
    /// Measure speed (benchmarks, not tests).
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct GuiArgs {
    /// Model to open in the Playground at start.
    #[arg(long)]
    pub model: Option<String>,
}

#[derive(Debug, Args)]
pub struct ModelArg {
    /// A Hugging Face model folder, a .gguf file, or `builtin:tiny-reasoner`.
    #[arg(long, value_name = "PATH")]
    pub model: String,
}

#[derive(Debug, Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// The text to score, tokenized with special tokens added by the tokenizer's post-processor.
    #[arg(long)]
    pub text: String,
    /// Alternatives reported per position.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Print one JSON object: {"model", "tokens": [{"id", "text", "logprob", "entropy", "top": [{"id", "text", "logprob"}]}]}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// The prompt.
    #[arg(long)]
    pub prompt: String,
    /// Wrap the prompt as one user message in the model's chat template, with the generation prompt.
    #[arg(long)]
    pub chat: bool,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Nucleus sampling: keep the most likely tokens whose probability sums to P.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Drop tokens less likely than P times the most likely one.
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// Penalize tokens already in the sequence (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Random seed for sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep generating past the model's end-of-sequence tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Print one JSON object: {"text", "tokens": [{"id", "text", "logprob", "entropy"}]} for the generated tokens.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Also search this folder (repeatable).
    #[arg(long = "dir", value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Output format (hf: a Hugging Face folder with f32 safetensors).
    #[arg(long, default_value = "hf", value_parser = ["hf"])]
    pub format: String,
    /// Output folder (created).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// Prompt processing (512-token prompt) and decode tokens/s at batch 1 and 16.
    Generate(BenchGenerateArgs),
}

#[derive(Debug, Args)]
pub struct BenchGenerateArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Small sizes (64-token prompt, 8 decode steps, batch 4) so the command runs in seconds.
    #[arg(long)]
    pub quick: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}
