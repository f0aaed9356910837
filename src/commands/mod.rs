//! What each subcommand does; thin over the engine.

mod bench;
pub mod data;
mod eval;
mod inspect;
mod rewards;
mod runs;
mod study;

use std::io::Write;
use std::ops::ControlFlow;

use anyhow::{Context, Result};
use engine::backend::{Backend, BackendKind};
use engine::formats::loader::{LoadedModel, load_model};
use engine::infer::{GenerateRequest, SamplingConfig, generate, score};
use engine::text::chat_template::ChatMessage;
use serde_json::json;

use crate::cli::{
    Cli, Command, ExportArgs, GenerateArgs, ModelArg, ModelsArgs, RunsWhat, ScoreArgs,
};

pub fn run(cli: Cli) -> Result<()> {
    let ws = cli.workspace.as_deref();
    let backend = cli.backend;
    match cli.command {
        None => app::run_native(gui_options(ws, None)),
        Some(Command::Gui(args)) => app::run_native(gui_options(ws, Some(args))),
        Some(Command::Import(args)) => runs::import(ws, &args.file),
        Some(Command::Score(args)) => score_cmd(&args, backend),
        Some(Command::Generate(args)) => generate_cmd(&args, backend),
        Some(Command::Devices(args)) => devices_cmd(args.json),
        Some(Command::Models(args)) => models_cmd(&args),
        Some(Command::Export(args)) => export_cmd(ws, &args),
        Some(Command::Bench(args)) => bench::run(&args, backend),
        Some(Command::Data(args)) => data::run(&args),
        Some(Command::Train(args)) if args.check => runs::check(ws, &args.config),
        Some(Command::Train(args)) => runs::train(ws, &args.config, args.detach),
        Some(Command::Worker(args)) => runs::worker(ws, args.run),
        Some(Command::Runs(args)) => match args.what {
            None => runs::list(ws, args.json),
            Some(RunsWhat::Show { id, json }) => runs::show(ws, id, json || args.json),
        },
        Some(Command::Stop(args)) => runs::stop(ws, args.id),
        Some(Command::Resume(args)) => runs::resume(ws, args.id, args.detach),
        Some(Command::Metrics(args)) => {
            inspect::metrics(ws, args.run, &args.names, args.json, args.csv)
        }
        Some(Command::Traces(args)) => {
            let kind = if args.eval {
                engine::store::TraceKind::Eval
            } else {
                engine::store::TraceKind::Rollout
            };
            inspect::traces(ws, args.run, args.step, kind, args.json)
        }
        Some(Command::Analyze(args)) => inspect::analyze(ws, &args),
        Some(Command::Compare(args)) => runs::compare(ws, &args, backend),
        Some(Command::Eval(args)) => eval::run(ws, &args, backend),
        Some(Command::Study(args)) if args.check => study::check(&args.file),
        Some(Command::Study(args)) => study::run(ws, &args),
        Some(Command::Rewards(args)) => rewards::run(&args),
    }
}

/// Writes `text` to stdout; a reader that went away (`| head`) is not an error.
pub(crate) fn emit(text: &str) -> Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// The backend of `kind`, or why this machine or build cannot run it.
pub(crate) fn backend_of(kind: BackendKind) -> Result<Backend> {
    Backend::new(kind).with_context(|| {
        format!("--backend {kind} (`studio devices` lists the backends that work here)")
    })
}

pub(crate) fn open_model(arg: &ModelArg, backend: BackendKind) -> Result<LoadedModel> {
    let spec = &arg.model;
    let mut loaded = load_model(spec, &backend_of(backend)?)
        .with_context(|| format!("could not load model `{spec}`"))?;
    if let Some(dir) = &arg.adapter {
        loaded.model = engine::formats::peft::apply_peft(loaded.model, dir)
            .with_context(|| format!("could not apply the adapter {}", dir.display()))?;
    }
    Ok(loaded)
}

fn devices_cmd(json: bool) -> Result<()> {
    let devices = engine::backend::devices();
    if json {
        return emit(&format!("{}\n", json!({ "devices": devices })));
    }
    let mut out = String::new();
    for d in &devices {
        let memory = match (d.memory_bytes, d.present, &d.name) {
            (Some(b), _, _) => format!(", {:.1} GiB", b as f64 / (1u64 << 30) as f64),
            (None, true, Some(_)) => ", memory not reported by the graphics API".to_string(),
            _ => String::new(),
        };
        out += &format!(
            "{:<5} {}{}{}\n",
            d.backend.to_string(),
            if d.present { "present: " } else { "missing: " },
            d.name.as_deref().unwrap_or("-"),
            memory
        );
        if !d.detail.is_empty() {
            out += &format!("      {}\n", d.detail);
        }
        if let Some(why) = &d.reason {
            out += &format!("      why: {why}\n");
        }
    }
    emit(&out)
}

fn score_cmd(args: &ScoreArgs, backend: BackendKind) -> Result<()> {
    let loaded = open_model(&args.model, backend)?;
    let ids = loaded.tokenizer.encode(&args.text, true)?;
    let scored = score(&loaded.model, &ids, args.top_k)?;
    let tok = &loaded.tokenizer;
    if args.json {
        let tokens = scored
            .iter()
            .map(|t| -> Result<serde_json::Value> {
                let top = t
                    .top
                    .iter()
                    .map(|(id, lp)| {
                        Ok(json!({"id": id, "text": tok.token_text(*id)?, "logprob": lp}))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(json!({
                    "id": t.id,
                    "text": tok.token_text(t.id)?,
                    "logprob": t.logprob,
                    "entropy": t.entropy,
                    "top": top,
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        println!("{}", json!({ "model": loaded.name, "tokens": tokens }));
    } else {
        println!(
            "{:>6}  {:<20} {:>9} {:>8}  top",
            "id", "token", "logprob", "entropy"
        );
        for t in &scored {
            let fmt = |v: Option<f32>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
            let top = t
                .top
                .iter()
                .take(3)
                .map(|(id, lp)| Ok(format!("{:?} {lp:.2}", tok.token_text(*id)?)))
                .collect::<Result<Vec<String>>>()?;
            println!(
                "{:>6}  {:<20} {:>9} {:>8}  {}",
                t.id,
                format!("{:?}", tok.token_text(t.id)?),
                fmt(t.logprob),
                fmt(t.entropy),
                top.join(", ")
            );
        }
        let total: f32 = scored.iter().filter_map(|t| t.logprob).sum();
        println!(
            "total logprob {total:.4} over {} predicted tokens",
            scored.len().saturating_sub(1)
        );
    }
    Ok(())
}

fn generate_cmd(args: &GenerateArgs, backend: BackendKind) -> Result<()> {
    let loaded = open_model(&args.model, backend)?;
    let tok = &loaded.tokenizer;
    let prompt = if args.chat {
        tok.encode_chat(&[ChatMessage::user(args.prompt.clone())])?
    } else {
        tok.encode(&args.prompt, true)?
    };
    let request = GenerateRequest {
        prompts: vec![prompt],
        max_new_tokens: args.max_new_tokens,
        sampling: SamplingConfig {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            min_p: args.min_p,
            repetition_penalty: args.repetition_penalty,
            seed: args.seed,
        },
        stop_token_ids: if args.ignore_eos {
            Vec::new()
        } else {
            loaded.model.config.eos_token_ids.clone()
        },
        top_k_alternatives: 0,
    };
    let mut stdout = std::io::stdout().lock();
    let mut streamed = Vec::new();
    let mut printed = 0usize;
    let mut decode_failure = None;
    let rows = generate(&loaded.model, &request, |_, token| {
        if !args.json {
            // Print the text as it grows (decoding the whole suffix keeps multi-byte characters whole).
            streamed.push(token.id);
            let text = match tok.decode(&streamed) {
                Ok(text) => text,
                Err(e) => {
                    decode_failure = Some(e);
                    return ControlFlow::Break(());
                }
            };
            if text.len() > printed && text.is_char_boundary(printed) {
                let _ = write!(stdout, "{}", &text[printed..]);
                let _ = stdout.flush();
                printed = text.len();
            }
        }
        ControlFlow::Continue(())
    })?;
    if let Some(e) = decode_failure {
        return Err(e.into());
    }
    let tokens = rows.into_iter().next().unwrap_or_default();
    let ids: Vec<u32> = tokens.iter().map(|t| t.id).collect();
    if args.json {
        let items = tokens
            .iter()
            .map(|t| Ok(json!({"id": t.id, "text": tok.token_text(t.id)?, "logprob": t.logprob, "entropy": t.entropy})))
            .collect::<Result<Vec<_>>>()?;
        writeln!(
            stdout,
            "{}",
            json!({ "text": tok.decode(&ids)?, "tokens": items })
        )?;
    } else {
        writeln!(stdout)?;
    }
    Ok(())
}

fn models_cmd(args: &ModelsArgs) -> Result<()> {
    let found = engine::discovery::discover(&args.dirs);
    if args.json {
        let items: Vec<_> = found
            .iter()
            .map(|r| match r {
                Ok(info) => serde_json::to_value(info).unwrap_or_default(),
                Err((path, e)) => json!({"path": path, "error": e.to_string()}),
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
        return Ok(());
    }
    println!(
        "{:<40} {:<7} {:<6} {:>12} {:>7} {:<10} path",
        "name", "arch", "format", "parameters", "vocab", "dtype"
    );
    for r in &found {
        match r {
            Ok(i) => println!(
                "{:<40} {:<7} {:<6} {:>12} {:>7} {:<10} {}",
                i.name,
                i.architecture,
                serde_json::to_value(i.format)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                i.parameters,
                i.vocab_size,
                i.dtype,
                i.path
            ),
            Err((path, e)) => println!("{path}: unreadable: {e}"),
        }
    }
    Ok(())
}

/// What the window opens on: the workspace (`--workspace`, else the default one), workers
/// started from this executable, and the view, run and model of `studio gui`.
fn gui_options(
    ws: Option<&std::path::Path>,
    args: Option<crate::cli::GuiArgs>,
) -> app::StudioOptions {
    let workspace = ws
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(engine::store::Workspace::default_dir);
    let mut options = app::StudioOptions::new(workspace, std::env::current_exe().ok());
    if let Some(args) = args {
        options.model = args.model;
        options.view = args.view.as_deref().and_then(app::views::View::from_name);
        options.run = args.run;
        options.step = args.step;
        options.dataset = args.data;
        options.compare = args.checkpoints;
    }
    options
}

fn export_cmd(ws: Option<&std::path::Path>, args: &ExportArgs) -> Result<()> {
    let (loaded, lora) = match (&args.model, args.checkpoint) {
        (Some(model), _) => (
            open_model(
                &ModelArg {
                    model: model.clone(),
                    adapter: None,
                },
                BackendKind::Cpu,
            )?,
            None,
        ),
        (None, Some(id)) => {
            let workspace = runs::open_workspace(ws)?;
            let checkpoint = workspace.checkpoint(id)?;
            let opened = engine::train::checkpoint::open_checkpoint(
                &workspace,
                &checkpoint,
                &Backend::cpu(),
            )?;
            (opened.loaded, opened.lora)
        }
        (None, None) => anyhow::bail!("give --model PATH or --checkpoint ID"),
    };
    match args.format.as_str() {
        "peft" => {
            let lora = lora.context("this checkpoint has no LoRA adapter (a full fine-tune): export it with --format hf")?;
            engine::formats::peft::write_peft(&loaded.model, &lora, &loaded.spec, &args.out)
                .with_context(|| format!("could not export to {}", args.out.display()))?;
            println!(
                "exported the LoRA adapter of {} in PEFT's layout to {}",
                loaded.name,
                args.out.display()
            );
        }
        _ => {
            let dtype = match args.dtype.as_str() {
                "bf16" => engine::formats::safetensors::StoredDtype::Bf16,
                _ => engine::formats::safetensors::StoredDtype::F32,
            };
            engine::formats::export::export_hf(&loaded, &args.out, dtype)
                .with_context(|| format!("could not export to {}", args.out.display()))?;
            println!(
                "exported {} as a Hugging Face folder to {}",
                loaded.name,
                args.out.display()
            );
        }
    }
    Ok(())
}
