//! Command-line arguments (clap). Each subcommand's `--help` documents its contract.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

/// Reasoning Studio: train language models to reason, watch them learn, read their traces.
/// Without a subcommand, opens the desktop app.
#[derive(Debug, Parser)]
#[command(name = "studio", version, about)]
pub struct Cli {
    /// The workspace folder (SQLite database + artifacts). Default: $STUDIO_WORKSPACE, else the
    /// OS data directory.
    #[arg(long, global = true, value_name = "DIR", env = "STUDIO_WORKSPACE")]
    pub workspace: Option<PathBuf>,
    /// Where the commands that run a model (score, generate, bench, eval, compare) run it: cpu,
    /// wgpu (any GPU through Vulkan, Metal or DX12; Mesa's lavapipe on a machine without one) or
    /// cuda. `studio devices` lists which this machine and build have. A run's backend is its
    /// config's `backend`.
    #[arg(
        long,
        global = true,
        value_name = "BACKEND",
        env = "STUDIO_BACKEND",
        default_value = "cpu"
    )]
    pub backend: engine::backend::BackendKind,
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
    /// The compute backends: which this machine and build have (with the adapter or processor
    /// and its memory) and, for each missing one, why (`--json`: {"devices": [{"backend",
    /// "present", "name", "memory_bytes", "detail", "reason"}]}).
    Devices(DevicesArgs),
    /// Inspect datasets and the built-in tasks.
    Data(crate::commands::data::DataArgs),
    /// Register a run from a TOML config and start its worker process (follows its progress).
    Train(TrainArgs),
    /// Execute one run (started by `train`/`resume` or the GUI; not usually run by hand).
    Worker(WorkerArgs),
    /// List runs, or show one.
    Runs(RunsArgs),
    /// Ask a run's worker to stop after its current step (it checkpoints first).
    Stop(RunIdArg),
    /// Continue a stopped, failed or killed run from its last checkpoint.
    Resume(ResumeArgs),
    /// A run's metric series: every one, or those named (`--json`: {"run", "series": {NAME:
    /// [[STEP, VALUE|null], …]}}; `--csv`: step,name,value).
    Metrics(MetricsArgs),
    /// A run's stored rollouts: the steps that have them, or one step's token by token
    /// (`--json`: {"run", "steps": [{"step", "rollouts"}]} or {"run", "step", "rollouts": [...]}).
    Traces(TracesArgs),
    /// Entropy analytics of a run's rollouts over its steps: mean entropy, the share above a
    /// threshold, the forking tokens (each step's top-ρ by entropy) by text, reflection words
    /// per rollout, length of correct and wrong answers, and the fit R = −a·exp(H) + b
    /// (`--json`: {"run", "kind", "steps": [...], "forking_tokens": [...], "fit": {...}|null}).
    Analyze(AnalyzeArgs),
    /// Score one text teacher-forced under 2–4 checkpoints or models: per token each one's
    /// log-prob and entropy, and the KL between the first two's next-token distributions
    /// (`--json`: {"checkpoints": [STR], "tokens": [{"id", "text", "logprob": [NUM per
    /// checkpoint], "entropy": [...], "kl": NUM|null}]}).
    Compare(CompareArgs),
    /// Evaluate a checkpoint (or a model) greedily on a built-in task's held-out problems or a
    /// dataset file's first rows: prints the accuracy and every problem, and stores the
    /// evaluation in the workspace; `--list` lists the stored ones, `--flipped A B` the problems
    /// whose verdict changed between two of them (`--json`: {"evaluation", "checkpoint",
    /// "source", "count", "accuracy", "items": [{"index", "prompt", "answer": STR|null,
    /// "completion", "extracted", "correct", "finish_reason"}]}).
    Eval(EvalArgs),
    /// Import a run made elsewhere: a Hugging Face Trainer / TRL `trainer_state.json` becomes a
    /// read-only run whose `log_history` curves overlay the studio's (`eval_X` is stored as
    /// `eval/X`).
    Import(ImportArgs),
    /// Run a study (several runs one after another, e.g. a preset of assets/presets/) and
    /// print each compared metric per arm as mean ± sd over the seeds (`--seeds N`) and the
    /// verdict of its `[effect]`; `--check` checks every run as Launch does, without running.
    Study(StudyArgs),
    /// Score completions given in a file (JSONL, JSON, CSV/TSV, Parquet: `prompt`,
    /// `completion` and the dataset's answer column per row) with a run config's [[rewards]],
    /// exactly as its training and evaluation score them: each row's total reward, its parts
    /// and the verdict (`--json`: {"rows": [{"line", "reward", "rewards": {NAME: VALUE},
    /// "correct": BOOL|null}], "bad_rows": [{"line", "message"}]}, rows in file order).
    Rewards(RewardsArgs),
}

#[derive(Debug, Args)]
pub struct RewardsArgs {
    /// The run config whose [[rewards]] score the completions (a built-in task's run judges
    /// each row by the problem its prompt states; another run by the answer column its
    /// `[data] mapping` names, else `answer`, `solution`, `ground_truth` or `reference`).
    #[arg(long, value_name = "RUN.toml")]
    pub config: PathBuf,
    /// The completions.
    #[arg(long, value_name = "FILE")]
    pub completions: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The `trainer_state.json` file.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct StudyArgs {
    /// The study file (TOML); `-` reads it from standard input.
    pub file: PathBuf,
    /// Check every run as Launch does before Start (settings, model and tokenizer, dataset
    /// roles, rewards, memory), without running anything.
    #[arg(long)]
    pub check: bool,
    /// Run every run once per seed: S, S+1, … (each seed's `init_from` names that seed's run).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub seeds: usize,
    /// The first seed. Default: the study's `seed`; with one seed and none given, each run
    /// keeps its own.
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Print JSON (progress goes to stderr): {"study", "window", "effect": {"statement",
    /// "metric", "arm", "than", "expect", "window", "margin", "holds", "difference", "ratio",
    /// "seeds_holding", "seeds": [{"seed", "arm", "than", "difference", "holds"}]} | null,
    /// "arms": [{"key", "runs": [{"seed", "run"}], "metrics": {NAME: {"mean", "sd",
    /// "values"}}}]}; each value is the metric's mean over the effect's window (the whole run
    /// without an effect) of one seed's run, re-derivable from `studio metrics`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// The run.
    pub run: i64,
    /// Only this series (repeatable).
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// Print JSON.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV.
    #[arg(long)]
    pub csv: bool,
}

#[derive(Debug, Args)]
pub struct TracesArgs {
    /// The run.
    pub run: i64,
    /// This step's rollouts (prompt, completion, reward and its parts, advantage, tokens with
    /// log-prob, entropy and top alternatives).
    #[arg(long)]
    pub step: Option<u64>,
    /// The evaluation's greedy answers (one per held-out item, reward 1 when correct) instead of
    /// the rollouts; every run keeps them, SFT runs too.
    #[arg(long)]
    pub eval: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// A checkpoint id (`studio runs show RUN` lists them), RUN:STEP (the run's checkpoint at
    /// that step), or a model (path, or builtin:NAME). Give it 2 to 4 times.
    #[arg(
        long = "checkpoint",
        value_name = "CHECKPOINT",
        required = true,
        num_args = 1
    )]
    pub checkpoints: Vec<String>,
    /// The text, tokenized by the first checkpoint's tokenizer (special tokens added).
    #[arg(long)]
    pub text: String,
    /// How many of the tokens where the first two disagree most to list (table output).
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// The share of tokens, by entropy, that count as forking tokens under each checkpoint; the
    /// output says how many of the first checkpoint's each other one shares.
    #[arg(long, default_value_t = 0.2)]
    pub rho: f64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("mode").required(true).args(["checkpoint", "list", "flipped"])),
    group(ArgGroup::new("problems").args(["data", "builtin"])),
    after_help = "A checkpoint's run config gives the chat setting, [eval] max_new_tokens and count, \
and for a built-in task the seed and difficulty, so the final checkpoint of a run on that task \
answers exactly the held-out problems the run evaluated. A model path takes the defaults \
(chat template on, 96 new tokens, 32 problems, seed 0, difficulty 1).

--list --json: {\"evaluations\": [{\"id\", \"checkpoint\", \"checkpoint_id\", \"run_id\", \"step\", \
\"model\", \"source\", \"difficulty\", \"seed\", \"count\", \"chat\", \"max_new_tokens\", \
\"accuracy\", \"created_at\"}]}.
--flipped A B --json: {\"a\", \"b\", \"source\", \"right_to_wrong\": [{\"index\", \"index_b\", \
\"prompt\", \"answer\", \"completion_a\", \"completion_b\"}], \"wrong_to_right\": [...], \
\"only_in_a\": [INDEX], \"only_in_b\": [INDEX]}; problems are matched by prompt."
)]
pub struct EvalArgs {
    /// What to evaluate: a checkpoint id (`studio runs show RUN` lists them), RUN:STEP (the
    /// run's checkpoint at that step), or a model (path, or builtin:NAME).
    #[arg(long, value_name = "CHECKPOINT", requires = "problems")]
    pub checkpoint: Option<String>,
    /// A dataset file (JSONL, JSON, CSV/TSV, Parquet) with an answer column: its first --count
    /// rows, roles from the run's [data.mapping] for its own file, else the mapping saved for
    /// the file in the workspace, else detected.
    #[arg(long, value_name = "FILE", requires = "checkpoint")]
    pub data: Option<PathBuf>,
    /// A built-in task (arithmetic, countdown, linear_equation): its held-out problems.
    #[arg(long, value_name = "TASK", requires = "checkpoint")]
    pub builtin: Option<String>,
    /// Problems to answer (default: the run's [eval] count, else 32).
    #[arg(long, value_name = "N", requires = "checkpoint")]
    pub count: Option<usize>,
    /// Seed of the built-in task's problems (default: the run's seed, else 0).
    #[arg(long, value_name = "S", requires = "builtin")]
    pub seed: Option<u64>,
    /// Difficulty of the built-in task's problems, 0 to 3 (default: the run's, else 1).
    #[arg(long, value_name = "D", requires = "builtin", value_parser = clap::value_parser!(u8).range(0..=3))]
    pub difficulty: Option<u8>,
    /// List the stored evaluations.
    #[arg(long)]
    pub list: bool,
    /// The problems right in evaluation A and wrong in B, and the other way round (two stored
    /// evaluations of the same problems).
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    pub flipped: Option<Vec<i64>>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// The run.
    pub run: i64,
    /// Analyse the evaluation answers instead of the rollouts.
    #[arg(long)]
    pub eval: bool,
    /// A token is high-entropy above this many nats.
    #[arg(long, default_value_t = 0.672)]
    pub threshold: f32,
    /// The share of each step's tokens, by entropy, counted as its forking tokens.
    #[arg(long, default_value_t = 0.2)]
    pub rho: f64,
    /// A reflection phrase to count (repeat it; replaces the default list: wait, let me check,
    /// hmm, alternatively, but wait, let me verify, double-check, on second thought, actually).
    #[arg(long = "reflection", value_name = "PHRASE")]
    pub reflection: Vec<String>,
    /// How many forking-token texts to list.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The run configuration (TOML); `-` reads it from standard input.
    pub config: PathBuf,
    /// Return once the worker has started instead of following its progress.
    #[arg(long)]
    pub detach: bool,
    /// Check the config without starting a run (the model and dataset open, the rewards
    /// compile) and print it with every default filled in.
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The run to execute.
    #[arg(long)]
    pub run: i64,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub what: Option<RunsWhat>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RunsWhat {
    /// One run: status, warnings (a dead signal: frac_reward_zero_std at 1 for 10 logged
    /// steps; an entropy collapse: entropy under 0.05 nats for 10 steps; each with the step it
    /// began), latest metrics, checkpoints, config (`--json`: {"run", "last_metrics",
    /// "checkpoints", "warnings": [{"kind", "since_step", "until_step", "ongoing",
    /// "message"}]}).
    Show {
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct RunIdArg {
    pub id: i64,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    pub id: i64,
    /// Return once the worker has started.
    #[arg(long)]
    pub detach: bool,
}

#[derive(Debug, Args)]
pub struct GuiArgs {
    /// Model to open in the Playground at start.
    #[arg(long)]
    pub model: Option<String>,
    /// The view to open on (default: the one shown when the window last closed, else home).
    #[arg(long, value_parser = ["home", "runs", "traces", "compare", "launch", "datasets", "models", "playground"])]
    pub view: Option<String>,
    /// A run to show in the Runs view (implies --view runs), or in Traces with --view traces.
    #[arg(long, value_name = "ID")]
    pub run: Option<i64>,
    /// The step of --run whose traces to show (implies --view traces; the nearest stored step).
    #[arg(long, value_name = "N", requires = "run")]
    pub step: Option<u64>,
    /// A dataset file to open in the Datasets view (implies --view datasets).
    #[arg(long, value_name = "FILE")]
    pub data: Option<std::path::PathBuf>,
    /// A checkpoint (id or RUN:STEP) or model to compare; give it up to 4 times (implies
    /// --view compare).
    #[arg(long = "checkpoint", value_name = "CHECKPOINT", num_args = 1)]
    pub checkpoints: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ModelArg {
    /// A Hugging Face model folder, a .gguf file, or `builtin:tiny-reasoner`.
    #[arg(long, value_name = "PATH")]
    pub model: String,
    /// A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) to apply.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
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
    /// A model to export (a Hugging Face folder, a .gguf file, or `builtin:tiny-reasoner`).
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "checkpoint",
        conflicts_with = "checkpoint"
    )]
    pub model: Option<String>,
    /// A checkpoint of a run (its id from `studio runs show`).
    #[arg(long, value_name = "ID")]
    pub checkpoint: Option<i64>,
    /// hf: a Hugging Face folder with merged weights; peft: the LoRA adapter in PEFT's layout.
    #[arg(long, default_value = "hf", value_parser = ["hf", "peft"])]
    pub format: String,
    /// The weights' element type with --format hf: f32 (exact) or bf16 (half the size).
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    pub dtype: String,
    /// Output folder (created).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Without a subcommand, runs every part (prompt processing, decode at batch 1 and 16, \
SFT LoRA r16 and full, a GRPO step split, token statistics) and prints each figure with \
this machine's limit for it, measured first (f32 matrix-product GFLOP/s, memory read GB/s). \
It prints the CPU, its vector instruction sets and the path the engine's kernels took: the \
widest the CPU has, or the one STUDIO_SIMD=avx512|avx2|neon|scalar caps them at. It also \
prints the gemm crate's path for the matrix products: the crate picks it from the CPU alone, and \
a build with `--no-default-features` leaves out its AVX-512 kernels, to measure the AVX2 ones."
)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: Option<BenchWhat>,
    /// The model for the full benchmark: a Hugging Face folder, a .gguf file, or
    /// `builtin:tiny-reasoner`.
    #[arg(long, value_name = "PATH", default_value = "builtin:tiny-reasoner")]
    pub model: String,
    /// Small sizes, so the whole benchmark runs in seconds (used by the test script).
    #[arg(long)]
    pub quick: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// Prompt processing (512-token prompt) and decode tokens/s at batch 1 and 16.
    Generate(BenchGenerateArgs),
    /// SFT step tokens/s, LoRA r16 and full fine-tuning, at a fixed batch and sequence length.
    Train(BenchTrainArgs),
    /// Real GRPO steps (the loop of `studio train`, in a scratch workspace), each split into
    /// rollout, scoring and update, and the rollout's tokens/s against batch-16 decode.
    Grpo(BenchGrpoArgs),
}

#[derive(Debug, Args)]
#[command(
    after_help = "Each model runs --steps GRPO steps on the task or file of --data with accuracy and \
format rewards; the first step warms up, the rest are averaged. Rollout tokens/s is compared with \
the same model's batch-16 decode after a prompt of the rollouts' mean length. \
benches/peers/grpo.sh runs TRL's GRPOTrainer on the same prompts and settings."
)]
pub struct BenchGrpoArgs {
    /// A model to benchmark: a Hugging Face folder, a .gguf file or `builtin:tiny-reasoner`;
    /// repeat for several. Default: the tiny reasoner.
    #[arg(long, value_name = "PATH")]
    pub model: Vec<String>,
    /// The prompts: `builtin:TASK` (arithmetic, countdown, linear_equation) or a dataset file
    /// with an answer column.
    #[arg(long, value_name = "DATA", default_value = "builtin:arithmetic")]
    pub data: String,
    /// Prompts per step.
    #[arg(long, default_value_t = 8)]
    pub prompts: usize,
    /// Completions sampled per prompt (G).
    #[arg(long, default_value_t = 8)]
    pub num_generations: usize,
    /// Tokens per completion at most.
    #[arg(long, default_value_t = 128)]
    pub max_completion_length: usize,
    /// LoRA rank on the attention projections (alpha = 2 × rank); 0 trains every weight.
    #[arg(long, default_value_t = 16)]
    pub lora_rank: usize,
    /// Weight of the KL to the frozen reference; non-zero makes the step score every rollout
    /// under the reference (TRL's default is 0).
    #[arg(long, default_value_t = 0.04)]
    pub beta: f64,
    /// Steps per model, the first a warm-up.
    #[arg(long, default_value_t = 2)]
    pub steps: u64,
    /// Two prompts × two completions of 16 tokens, so the command runs in seconds.
    #[arg(long)]
    pub quick: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Sequences per step.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 256)]
    pub seq_len: usize,
    /// Timed steps per mode (after one warm-up step).
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// Only this mode (lora or full); both by default.
    #[arg(long, value_parser = ["lora", "full"])]
    pub mode: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
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
