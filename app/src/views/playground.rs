//! Playground: open any model, type a prompt, and watch the continuation stream in as tokens
//! coloured by entropy. Loading and generation run on the model worker thread; this view only
//! sends commands and drains events. Its model list is the window's one model discovery
//! ([`AppContext::models`]).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use egui::{RichText, TextEdit};
use engine::backend::BackendKind;
use engine::models::tiny::TINY_REASONER;

use crate::context::{AppContext, FoundModel};
use crate::dialogs::DialogJob;
use crate::state::{PlaygroundSettings, State};
use crate::widgets::token_heatmap::{
    HeatmapToken, entropy_legend_ui, printable_text, token_heatmap_ui,
};
use crate::worker::{Command, Event, GenerateJob, ModelSummary, ModelWorker};

/// The prompt the Playground starts with on the built-in tiny reasoner.
pub const EXAMPLE_PROMPT: &str = "(12+7)*3=";
/// Time spent draining worker events per frame before yielding to drawing.
const EVENT_BUDGET: Duration = Duration::from_millis(4);
/// The most tokens one generation may ask for.
const MAX_NEW_TOKENS_LIMIT: usize = 8192;

/// A model found on disk, as the model list shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveredModel {
    /// What the list shows.
    pub title: String,
    /// What loading takes.
    pub spec: String,
    /// Why it cannot be opened, if it cannot.
    pub problem: Option<String>,
}

/// Where the model stands.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelStatus {
    /// Nothing loaded yet.
    Empty,
    Loading {
        spec: String,
    },
    Loaded(ModelSummary),
}

/// The latest generation and its tokens.
#[derive(Debug, Clone, Default)]
pub struct Generation {
    pub job_id: u64,
    pub running: bool,
    pub prompt_tokens: Option<usize>,
    pub tokens: Vec<HeatmapToken>,
    /// The continuation; token texts joined while streaming, decoded as a whole at the end.
    pub text: String,
    pub elapsed_secs: f64,
    pub cancelled: bool,
}

impl Generation {
    pub fn mean_entropy_nats(&self) -> Option<f32> {
        (!self.tokens.is_empty()).then(|| {
            self.tokens.iter().map(|t| t.entropy_nats).sum::<f32>() / self.tokens.len() as f32
        })
    }

    pub fn tokens_per_sec(&self) -> Option<f64> {
        (self.elapsed_secs > 0.0 && !self.tokens.is_empty())
            .then(|| self.tokens.len() as f64 / self.elapsed_secs)
    }
}

/// The Playground's runtime state (its settings live in [`State`]).
pub struct Playground {
    /// The model path being typed or chosen.
    pub model_path: String,
    /// Where the model is loaded and runs (the device picker).
    pub backend: BackendKind,
    /// Load `model_path` on the first frame.
    load_on_first_frame: bool,
    worker: Option<ModelWorker>,
    pub model: ModelStatus,
    /// The last load failure, shown until the next load.
    pub load_error: Option<String>,
    /// The window's discovery as this list shows it, and which discovery it came from.
    discovered: Option<(u64, Vec<DiscoveredModel>)>,
    browse: Option<DialogJob>,
    pub prompt: String,
    pub generation: Generation,
    /// The last generation failure (or a refused setting), shown until the next one starts.
    pub generate_error: Option<String>,
    next_job_id: u64,
}

impl Playground {
    /// A Playground that loads `model` (default: the built-in tiny reasoner) when first shown.
    pub fn new(model: Option<String>) -> Self {
        Self {
            model_path: model.clone().unwrap_or_else(|| TINY_REASONER.to_string()),
            backend: BackendKind::Cpu,
            load_on_first_frame: true,
            worker: None,
            model: ModelStatus::Empty,
            load_error: None,
            discovered: None,
            browse: None,
            // The built-in tiny reasoner was trained on arithmetic: a problem it answers.
            prompt: if model.as_deref().is_none_or(|m| m == TINY_REASONER) {
                EXAMPLE_PROMPT.to_string()
            } else {
                String::new()
            },
            generation: Generation::default(),
            generate_error: None,
            next_job_id: 1,
        }
    }

    /// Whether a load or a generation is under way.
    pub fn is_busy(&self) -> bool {
        matches!(self.model, ModelStatus::Loading { .. }) || self.generation.running
    }

    /// Models found on disk, once discovery has finished.
    pub fn discovered_models(&self) -> Option<&[DiscoveredModel]> {
        self.discovered.as_ref().map(|(_, m)| m.as_slice())
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext, state: &mut State) {
        self.poll(ui.ctx(), ctx, state);
        if std::mem::take(&mut self.load_on_first_frame) {
            self.load(ui.ctx());
        }

        ui.heading("Playground");
        ui.add_space(4.0);
        self.model_ui(ui, state);
        ui.separator();
        self.prompt_ui(ui, &mut state.playground);
        ui.separator();
        self.output_ui(ui);
    }

    /// Drains worker, discovery and dialog results within a small time budget.
    fn poll(&mut self, ctx: &egui::Context, app: &mut AppContext, state: &mut State) {
        let generation = app.models_generation;
        if self
            .discovered
            .as_ref()
            .is_none_or(|(g, _)| *g != generation)
            && let Some(found) = app.models(ctx)
        {
            let listed = found.iter().map(discovered_model).collect();
            // Asked again by the call above if a discovery finished in it.
            self.discovered = Some((app.models_generation, listed));
        }
        if let Some(picked) = crate::dialogs::poll(&mut self.browse, &mut self.load_error)
            && let Some(path) = picked
        {
            self.model_path = path.display().to_string();
        }

        let start = Instant::now();
        loop {
            let Some(worker) = &self.worker else { return };
            let event = match worker.try_event() {
                Ok(Some(event)) => event,
                Ok(None) => return,
                Err(stopped) => {
                    self.worker_stopped(&stopped.to_string());
                    return;
                }
            };
            self.apply(event, state);
            if start.elapsed() > EVENT_BUDGET {
                // More may be waiting: come back next frame.
                ctx.request_repaint();
                return;
            }
        }
    }

    fn apply(&mut self, event: Event, state: &mut State) {
        match event {
            Event::Loaded(summary) => {
                state.remember_model(&summary.spec);
                self.load_error = None;
                self.model = ModelStatus::Loaded(summary);
            }
            Event::LoadFailed { spec, message } => {
                self.load_error = Some(format!("Could not load `{spec}`: {message}"));
                self.model = ModelStatus::Empty;
            }
            Event::Started {
                job_id,
                prompt_tokens,
            } if job_id == self.generation.job_id => {
                self.generation.prompt_tokens = Some(prompt_tokens);
            }
            Event::Token {
                job_id,
                token,
                elapsed_secs,
            } if job_id == self.generation.job_id => {
                self.generation.text.push_str(&token.text);
                self.generation.tokens.push(token);
                self.generation.elapsed_secs = elapsed_secs;
            }
            Event::Finished {
                job_id,
                text,
                elapsed_secs,
                cancelled,
            } if job_id == self.generation.job_id => {
                self.generation.text = text;
                self.generation.elapsed_secs = elapsed_secs;
                self.generation.cancelled = cancelled;
                self.generation.running = false;
            }
            Event::GenerateFailed { job_id, message } if job_id == self.generation.job_id => {
                self.generate_error = Some(message);
                self.generation.running = false;
            }
            Event::Started { .. }
            | Event::Token { .. }
            | Event::Finished { .. }
            | Event::GenerateFailed { .. } => {
                tracing::trace!("dropping an event of an earlier generation");
            }
        }
    }

    fn worker_stopped(&mut self, reason: &str) {
        tracing::error!("model worker stopped: {reason}");
        self.worker = None;
        if let ModelStatus::Loading { spec } = &self.model {
            self.load_error = Some(format!("Could not load `{spec}`: {reason}"));
        }
        self.model = ModelStatus::Empty;
        if self.generation.running {
            self.generation.running = false;
            self.generate_error = Some(reason.to_string());
        }
    }

    /// Sends a command, starting the worker if needed. Returns a readable error on failure.
    fn send(&mut self, ctx: &egui::Context, command: Command) -> Result<(), String> {
        if self.worker.is_none() {
            let ctx = ctx.clone();
            let worker = ModelWorker::spawn(move || ctx.request_repaint())
                .map_err(|e| format!("could not start the model worker thread: {e}"))?;
            self.worker = Some(worker);
        }
        let Some(worker) = &self.worker else {
            return Err("the model worker is not running".into());
        };
        worker.send(command).map_err(|e| e.to_string())
    }

    /// Opens `spec` (from another view: Home's model list, Models' "Open in Playground").
    pub fn open(&mut self, ctx: &egui::Context, spec: &str) {
        self.model_path = spec.to_string();
        self.load_on_first_frame = false;
        self.load(ctx);
    }

    fn load(&mut self, ctx: &egui::Context) {
        let spec = self.model_path.trim().to_string();
        if spec.is_empty() {
            self.load_error =
                Some("Type a model path, browse for one, or pick one from the list.".into());
            return;
        }
        self.load_error = None;
        let backend = self.backend;
        match self.send(
            ctx,
            Command::Load {
                spec: spec.clone(),
                backend,
            },
        ) {
            Ok(()) => self.model = ModelStatus::Loading { spec },
            Err(e) => self.load_error = Some(format!("Could not load `{spec}`: {e}")),
        }
    }

    fn start_generation(&mut self, ctx: &egui::Context, settings: &PlaygroundSettings) {
        self.generate_error = None;
        if let Err(e) = settings.sampling.validate() {
            self.generate_error = Some(format!("Check the sampling settings: {e}"));
            return;
        }
        let has_chat_template =
            matches!(&self.model, ModelStatus::Loaded(m) if m.has_chat_template);
        let job_id = self.next_job_id;
        self.next_job_id += 1;
        let job = GenerateJob {
            job_id,
            prompt: self.prompt.clone(),
            use_chat_template: settings.use_chat_template && has_chat_template,
            max_new_tokens: settings.max_new_tokens,
            sampling: settings.sampling.clone(),
        };
        match self.send(ctx, Command::Generate(job)) {
            Ok(()) => {
                self.generation = Generation {
                    job_id,
                    running: true,
                    ..Generation::default()
                };
            }
            Err(e) => self.generate_error = Some(e),
        }
    }

    fn stop_generation(&self) {
        if let Some(worker) = &self.worker {
            worker.cancel(self.generation.job_id);
        }
    }

    fn model_ui(&mut self, ui: &mut egui::Ui, state: &State) {
        let busy = self.is_busy();
        ui.horizontal(|ui| {
            let label = ui.label("Model path");
            ui.add(
                TextEdit::singleline(&mut self.model_path)
                    .desired_width(420.0)
                    .hint_text("folder with config.json, a .gguf file, or builtin:tiny-reasoner"),
            )
            .labelled_by(label.id);

            let dialog_block = crate::dialogs::unavailable_reason();
            let browse_enabled = dialog_block.is_none() && self.browse.is_none();
            let browse = ui.add_enabled(browse_enabled, egui::Button::new("Browse…"));
            let browse = match dialog_block {
                Some(reason) => browse.on_disabled_hover_text(reason),
                None => browse.on_hover_text("Pick a .gguf file or a model's config.json"),
            };
            if browse.clicked() {
                self.browse = Some(start_browse(ui.ctx()));
            }

            self.backend_ui(ui, busy);

            let load = ui
                .add_enabled(!busy, egui::Button::new("Load"))
                .on_disabled_hover_text("Wait for the current load or generation to finish");
            if load.clicked() {
                self.load(ui.ctx());
            }
        });

        self.model_list_ui(ui, state);

        match &self.model {
            ModelStatus::Empty => {
                if self.load_error.is_none() {
                    ui.label(RichText::new("No model loaded.").weak());
                }
            }
            ModelStatus::Loading { spec } => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(format!("Loading {spec}…"));
                });
            }
            ModelStatus::Loaded(m) => {
                ui.label(format!(
                    "Loaded {} on {} · {} · {} · {} parameters · {} layers · vocab {} · context {}",
                    m.name,
                    m.backend,
                    m.format,
                    m.dtype,
                    human_count(m.parameters),
                    m.layers,
                    m.vocab_size,
                    m.context_tokens
                ));
            }
        }
        if let Some(error) = &self.load_error {
            ui.colored_label(ui.visuals().error_fg_color, error);
        }
    }

    /// The device picker: where the next load puts the model. A backend this build lacks is
    /// listed, disabled, with the reason; one the machine cannot start fails the load with its
    /// reason.
    fn backend_ui(&mut self, ui: &mut egui::Ui, busy: bool) {
        let label = ui.label("Device");
        let mut chosen = None;
        let combo = egui::ComboBox::from_id_salt("playground_backend")
            .selected_text(self.backend.to_string())
            .show_ui(ui, |ui| {
                for kind in BackendKind::ALL {
                    let (enabled, hover) = match kind {
                        BackendKind::Cpu => (true, "The CPU: always works".to_string()),
                        BackendKind::Wgpu => (
                            true,
                            "Any GPU through Vulkan, Metal or DX12 (Mesa's lavapipe on a machine \
                             without one); the first run compiles its kernels"
                                .to_string(),
                        ),
                        BackendKind::Cuda => {
                            (false, engine::backend::CUDA_NOT_COMPILED.to_string())
                        }
                    };
                    let item = ui.add_enabled(
                        enabled,
                        egui::Button::selectable(self.backend == kind, kind.to_string()),
                    );
                    let item = if enabled {
                        item.on_hover_text(hover)
                    } else {
                        item.on_disabled_hover_text(hover)
                    };
                    if item.clicked() {
                        chosen = Some(kind);
                    }
                }
            });
        combo
            .response
            .labelled_by(label.id)
            .on_hover_text("Where the model runs; press Load to move it there");
        if let Some(kind) = chosen
            && kind != self.backend
            && !busy
        {
            self.backend = kind;
            self.load(ui.ctx());
        }
    }

    /// The list of discovered and recent models; choosing one fills in the path.
    fn model_list_ui(&mut self, ui: &mut egui::Ui, state: &State) {
        let discovered = self.discovered_models().map(<[DiscoveredModel]>::to_vec);
        let current = self.model_path.clone();
        let selected_text = discovered
            .as_deref()
            .and_then(|models| models.iter().find(|m| m.spec == current))
            .map_or_else(|| "Choose…".to_string(), |m| m.title.clone());
        egui::ComboBox::from_label("Found on this machine")
            .selected_text(selected_text)
            .width(420.0)
            .show_ui(ui, |ui| {
                match &discovered {
                    None => {
                        ui.horizontal(|ui| {
                            ui.spinner();
                            ui.label("Looking for models…");
                        });
                    }
                    Some(models) => {
                        for m in models {
                            match &m.problem {
                                None => {
                                    ui.selectable_value(
                                        &mut self.model_path,
                                        m.spec.clone(),
                                        &m.title,
                                    );
                                }
                                Some(problem) => {
                                    ui.add_enabled(
                                        false,
                                        egui::Button::selectable(false, &m.title),
                                    )
                                    .on_disabled_hover_text(problem);
                                }
                            }
                        }
                    }
                }
                let known = |spec: &String| discovered.iter().flatten().any(|m| &m.spec == spec);
                let recent: Vec<&String> =
                    state.recent_models.iter().filter(|s| !known(s)).collect();
                if !recent.is_empty() {
                    ui.separator();
                    ui.label(RichText::new("Recent").weak());
                    for spec in recent {
                        ui.selectable_value(&mut self.model_path, spec.clone(), spec);
                    }
                }
            });
    }

    fn prompt_ui(&mut self, ui: &mut egui::Ui, settings: &mut PlaygroundSettings) {
        let label = ui.label("Prompt");
        ui.add(
            TextEdit::multiline(&mut self.prompt)
                .desired_rows(4)
                .desired_width(f32::INFINITY)
                .hint_text("Ask something, e.g. What is 17 × 3? Think step by step."),
        )
        .labelled_by(label.id);

        let has_chat_template = match &self.model {
            ModelStatus::Loaded(m) => Some(m.has_chat_template),
            _ => None,
        };
        ui.horizontal_wrapped(|ui| {
            let chat = ui.add_enabled(
                has_chat_template == Some(true),
                egui::Checkbox::new(&mut settings.use_chat_template, "Chat template"),
            );
            if has_chat_template == Some(false) {
                chat.on_disabled_hover_text(
                    "This model has no chat template; the prompt is used as is",
                );
            } else {
                chat.on_hover_text(
                    "Wrap the prompt as a user message in the model's chat template",
                );
            }
            ui.separator();
            sampling_ui(ui, settings);
        });

        ui.horizontal(|ui| {
            let loaded = matches!(self.model, ModelStatus::Loaded(_));
            let can_generate = loaded && !self.is_busy();
            let generate = ui
                .add_enabled(can_generate, egui::Button::new("Generate"))
                .on_disabled_hover_text(if loaded {
                    "Wait for the current generation to finish"
                } else {
                    "Load a model first"
                });
            if generate.clicked() {
                self.start_generation(ui.ctx(), settings);
            }
            if ui
                .add_enabled(self.generation.running, egui::Button::new("Stop"))
                .on_hover_text("Stop generating; the tokens so far are kept")
                .clicked()
            {
                self.stop_generation();
            }
            if self.generation.running {
                ui.spinner();
                ui.label(format!(
                    "Generating… {} tokens",
                    self.generation.tokens.len()
                ));
            }
        });
        if let Some(error) = &self.generate_error {
            ui.colored_label(ui.visuals().error_fg_color, error);
        }
    }

    fn output_ui(&mut self, ui: &mut egui::Ui) {
        let generation = &self.generation;
        ui.horizontal(|ui| {
            ui.strong("Output");
            entropy_legend_ui(ui);
        });
        if generation.tokens.is_empty() {
            if !generation.running {
                ui.label(
                    RichText::new(
                        "Generated tokens appear here, coloured by entropy. Hover one for details.",
                    )
                    .weak(),
                );
            }
            return;
        }
        ui.label(counts_line(generation));
        egui::ScrollArea::vertical()
            .id_salt("playground_output")
            .auto_shrink([false, true])
            .stick_to_bottom(generation.running)
            .show(ui, |ui| {
                token_heatmap_ui(ui, &generation.tokens);
                ui.add_space(8.0);
                let label = ui.label(RichText::new("Decoded text").weak());
                let font_id = egui::TextStyle::Monospace.resolve(ui.style());
                let printable = printable_text(ui.ctx(), &font_id, &generation.text);
                let mut text = printable.as_str();
                ui.add(
                    TextEdit::multiline(&mut text)
                        .desired_rows(3)
                        .desired_width(f32::INFINITY)
                        .font(egui::TextStyle::Monospace),
                )
                .labelled_by(label.id);
            });
    }
}

/// "N tokens · mean entropy X nats · Y tokens/s", plus the prompt length and how it ended.
pub fn counts_line(generation: &Generation) -> String {
    let mut line = format!("{} tokens", generation.tokens.len());
    if let Some(mean) = generation.mean_entropy_nats() {
        line.push_str(&format!(" · mean entropy {mean:.2} nats"));
    }
    if let Some(rate) = generation.tokens_per_sec() {
        line.push_str(&format!(" · {rate:.1} tokens/s"));
    }
    if let Some(prompt) = generation.prompt_tokens {
        line.push_str(&format!(" · prompt {prompt} tokens"));
    }
    if generation.cancelled {
        line.push_str(" · stopped");
    }
    line
}

fn sampling_ui(ui: &mut egui::Ui, settings: &mut PlaygroundSettings) {
    let sampling = &mut settings.sampling;
    labeled_drag_ui(
        ui,
        "Temperature",
        "0 picks the most likely token (greedy)",
        egui::DragValue::new(&mut sampling.temperature)
            .range(0.0..=5.0)
            .speed(0.01)
            .max_decimals(2),
    );
    labeled_drag_ui(
        ui,
        "Top-k",
        "Keep the k most likely tokens; 0 keeps all",
        egui::DragValue::new(&mut sampling.top_k)
            .range(0..=1000)
            .speed(1),
    );
    labeled_drag_ui(
        ui,
        "Top-p",
        "Keep the smallest set of tokens reaching this probability; 1 keeps all",
        egui::DragValue::new(&mut sampling.top_p)
            .range(0.01..=1.0)
            .speed(0.01)
            .max_decimals(2),
    );
    labeled_drag_ui(
        ui,
        "Min-p",
        "Drop tokens less likely than this × the top token's probability; 0 keeps all",
        egui::DragValue::new(&mut sampling.min_p)
            .range(0.0..=1.0)
            .speed(0.01)
            .max_decimals(2),
    );
    labeled_drag_ui(
        ui,
        "Repetition penalty",
        "Penalise tokens already seen; 1 is off",
        egui::DragValue::new(&mut sampling.repetition_penalty)
            .range(0.5..=3.0)
            .speed(0.01)
            .max_decimals(2),
    );
    labeled_drag_ui(
        ui,
        "Max new tokens",
        "Stop after this many tokens",
        egui::DragValue::new(&mut settings.max_new_tokens)
            .range(1..=MAX_NEW_TOKENS_LIMIT)
            .speed(1),
    );
    labeled_drag_ui(
        ui,
        "Seed",
        "Random seed: the same seed and settings give the same output",
        egui::DragValue::new(&mut sampling.seed).speed(1),
    );
}

/// A label and a drag value tied to it, so the value has an accessible name.
fn labeled_drag_ui(ui: &mut egui::Ui, name: &str, help: &str, drag: egui::DragValue<'_>) {
    ui.horizontal(|ui| {
        let label = ui.label(name).on_hover_text(help);
        ui.add(drag).labelled_by(label.id).on_hover_text(help);
    });
}

/// "0.9 M", "1.5 B".
fn human_count(n: usize) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.1} B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} K", n / 1e3)
    } else {
        format!("{n}")
    }
}

/// Opens the model file dialog on a background job.
fn start_browse(ctx: &egui::Context) -> DialogJob {
    let dialog = rfd::FileDialog::new()
        .set_title("Open a model (.gguf file or config.json)")
        .add_filter("Models", &["gguf", "json"]);
    crate::dialogs::run(ctx, move || {
        // A Hugging Face model is its folder.
        dialog.pick_file().map(|path| {
            if path.file_name().is_some_and(|n| n == "config.json") {
                path.parent().map_or(path.clone(), PathBuf::from)
            } else {
                path
            }
        })
    })
}

/// A model the window's discovery found, as the list shows it.
fn discovered_model(found: &FoundModel) -> DiscoveredModel {
    match found {
        Ok(info) => DiscoveredModel {
            title: format!(
                "{} ({}, {})",
                info.name,
                info.architecture,
                human_count(info.parameters)
            ),
            spec: info.path.clone(),
            problem: None,
        },
        Err((spec, error)) => DiscoveredModel {
            title: spec.clone(),
            spec: spec.clone(),
            problem: Some(error.clone()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_line_reports_tokens_entropy_and_rate() {
        let token = |entropy_nats| HeatmapToken {
            id: 1,
            text: "a".into(),
            logprob: -0.5,
            entropy_nats,
            alternatives: Vec::new(),
        };
        let generation = Generation {
            tokens: vec![token(1.0), token(2.0)],
            elapsed_secs: 0.5,
            prompt_tokens: Some(7),
            ..Generation::default()
        };
        assert_eq!(
            counts_line(&generation),
            "2 tokens · mean entropy 1.50 nats · 4.0 tokens/s · prompt 7 tokens"
        );
        assert_eq!(counts_line(&Generation::default()), "0 tokens");
    }

    #[test]
    fn human_counts() {
        assert_eq!(human_count(917_000), "917.0 K");
        assert_eq!(human_count(7_000_000), "7.0 M");
        assert_eq!(human_count(1_500_000_000), "1.5 B");
        assert_eq!(human_count(12), "12");
    }
}
