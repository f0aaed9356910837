//! The studio shell: a left panel listing the views and the selected view in the centre, the
//! shared [`AppContext`] polled every frame whichever view is shown, keyboard shortcuts, and
//! errors shown in the window, and the workspace's status line (busy or failing) along the
//! bottom while there is something to say. [`Studio`] is the whole UI as a plain state struct
//! (tests drive it with `egui_kittest`); [`StudioApp`] wraps it as the `eframe::App` and
//! persists [`State`].

use egui::{Key, KeyboardShortcut, Modifiers, RichText};

use crate::context::{AppCommand, AppContext, StudioOptions};
use crate::state::State;
use crate::views::View;
use crate::views::compare::CompareView;
use crate::views::datasets::DatasetsView;
use crate::views::home::Home;
use crate::views::launch::Launch;
use crate::views::models::ModelsView;
use crate::views::playground::Playground;
use crate::views::runs::RunsView;
use crate::views::traces::TracesView;

/// The key eframe stores [`State`] under.
const STATE_KEY: &str = "studio_state";

/// The studio's UI: persisted [`State`] plus each view's runtime state.
pub struct Studio {
    pub state: State,
    pub ctx: AppContext,
    pub home: Home,
    pub runs: RunsView,
    pub traces: TracesView,
    pub compare: CompareView,
    pub launch: Launch,
    pub datasets: DatasetsView,
    pub models: ModelsView,
    pub playground: Playground,
    /// The shortcuts window (F1).
    pub show_shortcuts: bool,
}

impl Studio {
    /// A studio on `options.workspace`, with `state` as remembered (default: a first launch).
    pub fn new(options: StudioOptions, mut state: State) -> Self {
        if let Some(view) = options.view {
            state.selected_view = view;
        }
        let mut traces = TracesView::default();
        if let Some(run) = options.run {
            state.runs.selected = vec![run];
            if options.view.is_none() {
                state.selected_view = if options.step.is_some() {
                    View::Traces
                } else {
                    View::Runs
                };
            }
            if state.selected_view == View::Traces {
                traces.show(&mut state.traces, run, options.step);
            }
        }
        let mut compare = CompareView::default();
        if !options.compare.is_empty() {
            if options.compare.len() > crate::views::compare::MAX_CHECKPOINTS {
                tracing::warn!(
                    "{} checkpoints to compare given; the first {} are",
                    options.compare.len(),
                    crate::views::compare::MAX_CHECKPOINTS
                );
            }
            state.compare.specs.clear();
            for spec in &options.compare {
                compare.add(&mut state.compare, spec);
            }
            if options.view.is_none() {
                state.selected_view = View::Compare;
            }
        }
        let mut ctx = AppContext::new(&options);
        if let Some(file) = &options.dataset {
            ctx.commands.push(AppCommand::OpenDataset(file.clone()));
            if options.view.is_none() {
                state.selected_view = View::Datasets;
            }
        }
        Self {
            ctx,
            home: Home::default(),
            runs: RunsView::default(),
            traces,
            compare,
            launch: Launch::default(),
            datasets: DatasetsView::default(),
            models: ModelsView::default(),
            playground: Playground::new(options.model.clone()),
            state,
            show_shortcuts: false,
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui) {
        self.ctx.begin_frame(ui.ctx());
        self.shortcuts(ui.ctx());
        // A run or study TOML dropped on the window opens in Launch, a trainer_state.json is
        // imported as a run, any other file opens in Datasets.
        let dropped: Vec<std::path::PathBuf> = ui.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        });
        for path in dropped {
            if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
            {
                self.launch.open_file(ui.ctx(), &path);
                self.state.selected_view = View::Launch;
            } else if path.file_name().is_some_and(|n| n == "trainer_state.json") {
                self.ctx.import(&path);
            } else {
                self.ctx.commands.push(AppCommand::OpenDataset(path));
            }
        }
        egui::Panel::left("studio_views")
            .resizable(false)
            .exact_size(150.0)
            .show(ui, |ui| self.views_ui(ui));
        if let Some(error) = self.ctx.error.clone() {
            egui::Panel::top("studio_error").show(ui, |ui| {
                ui.horizontal_wrapped(|ui| {
                    ui.colored_label(ui.visuals().error_fg_color, RichText::new(error).strong());
                    if ui.small_button("Dismiss").clicked() {
                        self.ctx.error = None;
                    }
                });
            });
        }
        if let Some(status) = self.ctx.workspace_status.text() {
            egui::Panel::bottom("studio_workspace_status").show(ui, |ui| {
                ui.horizontal_wrapped(|ui| {
                    let color = if self.ctx.workspace_status.is_busy() {
                        ui.spinner();
                        ui.visuals().warn_fg_color
                    } else {
                        ui.visuals().error_fg_color
                    };
                    ui.colored_label(color, status);
                });
            });
        }
        egui::CentralPanel::default().show(ui, |ui| match self.state.selected_view {
            View::Home => self.home.ui(ui, &mut self.ctx),
            View::Runs => self.runs.ui(ui, &mut self.ctx, &mut self.state.runs),
            View::Traces => self.traces.ui(ui, &mut self.ctx, &mut self.state.traces),
            View::Compare => self.compare.ui(
                ui,
                &mut self.ctx,
                &mut self.state.compare,
                &self.state.recent_models,
            ),
            View::Launch => self.launch.ui(ui, &mut self.ctx),
            View::Datasets => self.datasets.ui(ui, &mut self.ctx),
            View::Models => self.models.ui(ui, &mut self.ctx),
            View::Playground => self.playground.ui(ui, &mut self.ctx, &mut self.state),
        });
        self.shortcuts_window(ui.ctx());
        self.apply_commands(ui.ctx());
        self.ctx.end_frame();
    }

    fn apply_commands(&mut self, egui_ctx: &egui::Context) {
        let commands = std::mem::take(&mut self.ctx.commands);
        for command in &commands {
            match command {
                AppCommand::ShowRun(run) => {
                    self.state.runs.selected = vec![*run];
                    self.state.selected_view = View::Runs;
                }
                AppCommand::ShowTraces { run, step } => {
                    self.traces.show(&mut self.state.traces, *run, *step);
                    self.state.selected_view = View::Traces;
                }
                AppCommand::ShowView(view) => self.state.selected_view = *view,
                AppCommand::OpenInPlayground(spec) => {
                    self.playground.open(egui_ctx, spec);
                    self.state.selected_view = View::Playground;
                }
                AppCommand::FineTune(spec) => {
                    self.launch.fine_tune(spec);
                    self.state.selected_view = View::Launch;
                }
                AppCommand::UseDataset { path, mapping } => {
                    self.launch.use_dataset(path, mapping.as_ref());
                    self.state.selected_view = View::Launch;
                }
                AppCommand::ScoreInCompare { prompt, text } => {
                    self.compare
                        .score_text(&mut self.state.compare, prompt, text);
                    self.state.selected_view = View::Compare;
                }
                AppCommand::Compare(specs) => {
                    for spec in specs {
                        self.compare.add(&mut self.state.compare, spec);
                    }
                    self.state.selected_view = View::Compare;
                }
                AppCommand::OpenDataset(path) => {
                    self.datasets.open(&mut self.ctx, egui_ctx, path, None);
                    self.state.selected_view = View::Datasets;
                }
            }
        }
        if !commands.is_empty() {
            egui_ctx.request_repaint();
        }
    }

    fn shortcuts(&mut self, egui_ctx: &egui::Context) {
        const KEYS: [Key; 9] = [
            Key::Num1,
            Key::Num2,
            Key::Num3,
            Key::Num4,
            Key::Num5,
            Key::Num6,
            Key::Num7,
            Key::Num8,
            Key::Num9,
        ];
        egui_ctx.input_mut(|input| {
            for (key, view) in KEYS.iter().zip(View::ALL) {
                if input.consume_shortcut(&KeyboardShortcut::new(Modifiers::COMMAND, *key)) {
                    self.state.selected_view = view;
                }
            }
            if input.consume_key(Modifiers::NONE, Key::F1) {
                self.show_shortcuts = !self.show_shortcuts;
            }
        });
    }

    fn shortcuts_window(&mut self, egui_ctx: &egui::Context) {
        let mut open = self.show_shortcuts;
        egui::Window::new("Keyboard shortcuts")
            .open(&mut open)
            .resizable(false)
            .collapsible(false)
            .show(egui_ctx, |ui| {
                egui::Grid::new("shortcuts").num_columns(2).show(ui, |ui| {
                    for (i, view) in View::ALL.iter().enumerate() {
                        ui.label(RichText::new(format!("Ctrl+{}", i + 1)).monospace());
                        ui.label(view.title());
                        ui.end_row();
                    }
                    ui.label(RichText::new("Ctrl+Enter").monospace());
                    ui.label("Generate (Playground)");
                    ui.end_row();
                    ui.label(RichText::new("F1").monospace());
                    ui.label("This list");
                    ui.end_row();
                });
            });
        self.show_shortcuts = open;
    }

    fn views_ui(&mut self, ui: &mut egui::Ui) {
        ui.add_space(6.0);
        ui.heading("Reasoning Studio");
        ui.separator();
        for (i, view) in View::ALL.into_iter().enumerate() {
            ui.selectable_value(&mut self.state.selected_view, view, view.title())
                .on_hover_text(format!("Ctrl+{}", i + 1));
        }
        ui.with_layout(egui::Layout::bottom_up(egui::Align::LEFT), |ui| {
            ui.add_space(4.0);
            let dark = ui.visuals().dark_mode;
            if ui
                .small_button(if dark { "Light theme" } else { "Dark theme" })
                .clicked()
            {
                self.state.dark_theme = !dark;
                ui.ctx().set_theme(if dark {
                    egui::Theme::Light
                } else {
                    egui::Theme::Dark
                });
            }
            ui.label(RichText::new("F1: shortcuts").weak().small());
            let folder = self.ctx.workspace_dir.file_name().map_or_else(
                || self.ctx.workspace_dir.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            ui.label(RichText::new(format!("workspace: {folder}")).weak().small())
                .on_hover_text(self.ctx.workspace_dir.display().to_string());
        });
    }
}

/// The `eframe` application.
pub struct StudioApp {
    studio: Studio,
}

impl StudioApp {
    pub fn new(cc: &eframe::CreationContext<'_>, options: StudioOptions) -> Self {
        let state: State = cc
            .storage
            .and_then(|s| eframe::get_value(s, STATE_KEY))
            .unwrap_or_default();
        cc.egui_ctx.set_theme(if state.dark_theme {
            egui::Theme::Dark
        } else {
            egui::Theme::Light
        });
        Self {
            studio: Studio::new(options, state),
        }
    }
}

impl eframe::App for StudioApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.studio.ui(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, STATE_KEY, &self.studio.state);
    }
}
