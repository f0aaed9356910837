//! Datasets: open a file (typed path, file dialog, drag and drop, the workspace's recent files
//! or a dataset in the Hugging Face cache), page through any number of rows (only the rows on
//! screen are read, through the file's row-offset index), search a column in the background
//! with progress and cancel, read one row in roles (prompt, reasoning, answer, messages, its
//! image), fix the column → role mapping for layouts the studio does not recognise (saved in
//! the workspace, offered to Launch), see the token-length histogram under a model's
//! tokenizer, and the bad rows with their line numbers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError, channel};

use egui::{RichText, TextEdit};
use engine::data::{Dataset, RoleMapping};

use crate::context::{AppCommand, AppContext};

/// Characters of a cell shown in the table.
const CELL_CHARS: usize = 80;
/// Rows whose cells are kept in memory (the table reads the rest again when scrolled back).
const CACHED_ROWS: usize = 2048;

/// Work on a background thread with progress and a cancel flag.
pub struct Job<T> {
    rx: Receiver<T>,
    pub done: Arc<AtomicUsize>,
    pub total: usize,
    cancel: Arc<AtomicBool>,
}

impl<T: Send + 'static> Job<T> {
    fn spawn(
        ctx: &egui::Context,
        total: usize,
        work: impl FnOnce(&AtomicUsize, &AtomicBool) -> T + Send + 'static,
    ) -> Self {
        let (tx, rx) = channel();
        let done = Arc::new(AtomicUsize::new(0));
        let cancel = Arc::new(AtomicBool::new(false));
        let (d, c, repaint) = (done.clone(), cancel.clone(), ctx.clone());
        std::thread::spawn(move || {
            let out = work(&d, &c);
            let _ = tx.send(out);
            repaint.request_repaint();
        });
        Self {
            rx,
            done,
            total,
            cancel,
        }
    }

    fn poll(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }

    fn progress_ui(&self, ui: &mut egui::Ui, what: &str) -> bool {
        let done = self.done.load(Ordering::Relaxed);
        let fraction = done as f32 / self.total.max(1) as f32;
        ui.add(
            egui::ProgressBar::new(fraction)
                .desired_width(180.0)
                .text(format!("{what} {done}/{}", self.total)),
        );
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_millis(100));
        ui.button("Cancel").clicked()
    }
}

/// Token lengths of every row under one tokenizer.
pub struct Lengths {
    pub model: String,
    pub lengths: Vec<usize>,
    pub cancelled: bool,
}

/// The Datasets view's state.
#[derive(Default)]
pub struct DatasetsView {
    /// The path typed in the path box.
    pub path: String,
    opening: Option<(String, Receiver<Result<Dataset, String>>)>,
    pub dataset: Option<Arc<Dataset>>,
    /// The mapping being edited (applied by reopening the file).
    pub mapping: RoleMapping,
    cells: HashMap<usize, Vec<String>>,
    pub selected: Option<usize>,
    /// Search: the column and the text.
    pub search_column: Option<String>,
    pub query: String,
    search: Option<Job<Option<Vec<usize>>>>,
    /// Rows that matched the last search (the table shows only these), or `None`.
    pub matches: Option<Vec<usize>>,
    /// The model whose tokenizer the histogram uses.
    pub tokenizer_model: String,
    lengths_job: Option<Job<Result<Lengths, String>>>,
    pub lengths: Option<Lengths>,
    image: Option<(String, Result<egui::TextureHandle, String>)>,
    hf_files: Option<Vec<PathBuf>>,
    hf_scan: Option<Receiver<Vec<PathBuf>>>,
    recent: Option<Vec<String>>,
    dialog: Option<Receiver<Option<PathBuf>>>,
    pub message: Option<String>,
}

fn cell_text(value: &serde_json::Value) -> String {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(CELL_CHARS + 1)
        .collect();
    if flat.chars().count() > CELL_CHARS {
        let cut: String = flat.chars().take(CELL_CHARS).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

impl DatasetsView {
    /// Opens `path` in the background, with `mapping` when given (else the one the workspace
    /// saved for it, else detection).
    pub fn open(
        &mut self,
        ctx: &mut AppContext,
        egui_ctx: &egui::Context,
        path: &Path,
        mapping: Option<RoleMapping>,
    ) {
        let key = path.display().to_string();
        self.path = key.clone();
        let workspace = engine::store::Workspace::open(&ctx.workspace_dir).ok();
        let mapping = mapping.or_else(|| {
            workspace
                .as_ref()
                .and_then(|w| w.dataset(&key).ok().flatten())
                .and_then(|r| r.mapping::<RoleMapping>())
        });
        if let Some(w) = &workspace {
            let _ = w.touch_dataset(&key);
            self.recent = None;
        }
        let (tx, rx) = channel();
        let path = path.to_path_buf();
        let repaint = egui_ctx.clone();
        std::thread::spawn(move || {
            let opened = Dataset::open(&path, mapping.as_ref()).map_err(|e| e.to_string());
            let _ = tx.send(opened);
            repaint.request_repaint();
        });
        self.opening = Some((key, rx));
    }

    fn poll(&mut self, ctx: &mut AppContext, egui_ctx: &egui::Context) {
        if let Some((_, rx)) = &self.opening {
            match rx.try_recv() {
                Ok(Ok(dataset)) => {
                    self.mapping = dataset.roles().clone();
                    self.dataset = Some(Arc::new(dataset));
                    self.cells.clear();
                    self.selected =
                        (!self.dataset.as_ref().is_some_and(|d| d.is_empty())).then_some(0);
                    self.matches = None;
                    self.lengths = None;
                    self.image = None;
                    self.opening = None;
                }
                Ok(Err(e)) => {
                    ctx.error = Some(e);
                    self.opening = None;
                }
                Err(TryRecvError::Disconnected) => self.opening = None,
                Err(TryRecvError::Empty) => {}
            }
        }
        if let Some(job) = &mut self.search
            && let Some(result) = job.poll()
        {
            self.matches = result;
            self.search = None;
            self.message = Some(match &self.matches {
                Some(m) => format!("{} matching rows", m.len()),
                None => "search cancelled".into(),
            });
        }
        if let Some(job) = &mut self.lengths_job
            && let Some(result) = job.poll()
        {
            self.lengths_job = None;
            match result {
                Ok(lengths) => self.lengths = Some(lengths),
                Err(e) => ctx.error = Some(e),
            }
        }
        if let Some(rx) = &self.hf_scan
            && let Ok(files) = rx.try_recv()
        {
            self.hf_files = Some(files);
            self.hf_scan = None;
        }
        if self.hf_files.is_none() && self.hf_scan.is_none() {
            let (tx, rx) = channel();
            let repaint = egui_ctx.clone();
            std::thread::spawn(move || {
                let _ = tx.send(engine::discovery::hf_cache_datasets());
                repaint.request_repaint();
            });
            self.hf_scan = Some(rx);
        }
        if self.recent.is_none() {
            self.recent = Some(
                engine::store::Workspace::open(&ctx.workspace_dir)
                    .and_then(|w| w.datasets())
                    .map(|list| list.into_iter().map(|r| r.path).collect())
                    .unwrap_or_default(),
            );
        }
        if let Some(rx) = &self.dialog {
            match rx.try_recv() {
                Ok(picked) => {
                    self.dialog = None;
                    if let Some(path) = picked {
                        self.open(ctx, egui_ctx, &path, None);
                    }
                }
                Err(TryRecvError::Disconnected) => self.dialog = None,
                Err(TryRecvError::Empty) => {}
            }
        }
    }

    pub fn is_busy(&self) -> bool {
        self.opening.is_some() || self.search.is_some() || self.lengths_job.is_some()
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext) {
        self.poll(ctx, &ui.ctx().clone());
        ui.heading("Datasets");
        self.open_bar_ui(ui, ctx);
        ui.separator();
        if let Some((path, _)) = &self.opening {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("indexing {path}…"));
            });
        }
        let Some(dataset) = self.dataset.clone() else {
            if self.opening.is_none() {
                ui.label(
                    "Open a JSONL, JSON, CSV/TSV or Parquet file: type its path, pick it, drop it on \
                     the window, or choose one the workspace or the Hugging Face cache has.",
                );
            }
            return;
        };
        self.summary_ui(ui, ctx, &dataset);
        ui.separator();
        let detail_width = (ui.available_width() * 0.36).max(300.0);
        egui::Panel::right("dataset_detail")
            .resizable(true)
            .default_size(detail_width)
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("dataset_detail_scroll")
                    .show(ui, |ui| {
                        self.detail_ui(ui, &dataset);
                        ui.separator();
                        self.mapping_ui(ui, ctx, &dataset);
                        ui.separator();
                        self.lengths_ui(ui, ctx, &dataset);
                        ui.separator();
                        bad_rows_ui(ui, &dataset);
                    });
            });
        egui::CentralPanel::default().show(ui, |ui| {
            self.search_ui(ui, &dataset);
            self.table_ui(ui, &dataset);
        });
    }

    fn open_bar_ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext) {
        ui.horizontal_wrapped(|ui| {
            let label = ui.label("Dataset path");
            let edit = ui.add(
                TextEdit::singleline(&mut self.path)
                    .hint_text("/path/to/data.jsonl")
                    .desired_width(360.0),
            );
            let edit = edit.labelled_by(label.id);
            let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if ui.button("Open").clicked() || enter {
                let path = PathBuf::from(self.path.trim());
                self.open(ctx, &ui.ctx().clone(), &path, None);
            }
            if crate::dialogs::button(ui, "Browse…", "Pick a dataset file") {
                let dialog = rfd::FileDialog::new()
                    .set_title("Open a dataset")
                    .add_filter("Datasets", &["jsonl", "json", "csv", "tsv", "parquet"]);
                self.dialog = crate::dialogs::pick_file(ui.ctx().clone(), dialog);
            }
            let mut pick = None;
            let recent = self.recent.clone().unwrap_or_default();
            ui.menu_button("Recent", |ui| {
                if recent.is_empty() {
                    ui.label("none yet");
                }
                for path in &recent {
                    if ui.selectable_label(false, path).clicked() {
                        pick = Some(PathBuf::from(path));
                    }
                }
            });
            let hf = self.hf_files.clone();
            ui.menu_button("Hugging Face cache", |ui| match &hf {
                None => {
                    ui.label("looking…");
                }
                Some(files) if files.is_empty() => {
                    ui.label("no datasets in the cache");
                }
                Some(files) => {
                    for path in files {
                        if ui
                            .selectable_label(false, hf_name(path))
                            .on_hover_text(path.display().to_string())
                            .clicked()
                        {
                            pick = Some(path.clone());
                        }
                    }
                }
            });
            if let Some(path) = pick {
                self.open(ctx, &ui.ctx().clone(), &path, None);
            }
        });
    }

    fn summary_ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext, dataset: &Dataset) {
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new(dataset.path().display().to_string()).strong());
            ui.label(format!(
                "{} · {} rows · layout {} · {} columns",
                dataset.format().name(),
                dataset.len(),
                dataset.schema().name(),
                dataset.columns().len()
            ));
            if !dataset.bad_rows().is_empty() {
                ui.colored_label(
                    ui.visuals().warn_fg_color,
                    format!("{} bad rows skipped", dataset.bad_rows().len()),
                );
            }
            if ui
                .button("Use in Launch")
                .on_hover_text("Open Launch on a run over this file with this role mapping")
                .clicked()
            {
                ctx.commands.push(AppCommand::UseDataset {
                    path: dataset.path().display().to_string(),
                    mapping: Some(self.mapping.clone()),
                });
            }
            if let Some(m) = &self.message {
                ui.label(RichText::new(m).weak());
            }
        });
    }

    fn search_ui(&mut self, ui: &mut egui::Ui, dataset: &Arc<Dataset>) {
        ui.horizontal_wrapped(|ui| {
            let columns = dataset.columns().to_vec();
            let column = self
                .search_column
                .clone()
                .filter(|c| columns.contains(c))
                .or_else(|| columns.first().cloned())
                .unwrap_or_default();
            let label = ui.label("Search column");
            egui::ComboBox::from_id_salt("datasets_search_column")
                .selected_text(&column)
                .show_ui(ui, |ui| {
                    for c in &columns {
                        ui.selectable_value(&mut self.search_column, Some(c.clone()), c);
                    }
                })
                .response
                .labelled_by(label.id);
            let label = ui.label("for");
            let edit = ui.add(TextEdit::singleline(&mut self.query).desired_width(200.0));
            let edit = edit.labelled_by(label.id);
            let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            match &self.search {
                Some(job) => {
                    if job.progress_ui(ui, "searching") {
                        job.cancel.store(true, Ordering::Relaxed);
                    }
                }
                None => {
                    if (ui.button("Search").clicked() || enter) && !self.query.is_empty() {
                        self.search = Some(search(
                            ui.ctx(),
                            dataset.clone(),
                            column.clone(),
                            self.query.clone(),
                        ));
                    }
                    if self.matches.is_some() && ui.button("Show all rows").clicked() {
                        self.matches = None;
                        self.message = None;
                    }
                }
            }
        });
    }

    fn cells(&mut self, dataset: &Dataset, row: usize) -> &[String] {
        if self.cells.len() > CACHED_ROWS {
            self.cells.clear();
        }
        self.cells
            .entry(row)
            .or_insert_with(|| match dataset.row(row) {
                Ok(map) => dataset
                    .columns()
                    .iter()
                    .map(|c| map.get(c).map(cell_text).unwrap_or_default())
                    .collect(),
                Err(e) => vec![format!("unreadable: {e}")],
            })
    }

    fn table_ui(&mut self, ui: &mut egui::Ui, dataset: &Arc<Dataset>) {
        let columns = dataset.columns().to_vec();
        let shown = self.matches.as_ref().map_or(dataset.len(), Vec::len);
        let row_height = ui.text_style_height(&egui::TextStyle::Body) + 6.0;
        let col_width =
            ((ui.available_width() - 60.0) / columns.len().max(1) as f32).clamp(120.0, 420.0);
        // The header.
        ui.horizontal(|ui| {
            ui.add_sized(
                [56.0, row_height],
                egui::Label::new(RichText::new("row").strong()),
            );
            for c in &columns {
                ui.add_sized(
                    [col_width, row_height],
                    egui::Label::new(RichText::new(c).strong()).truncate(),
                );
            }
        });
        egui::ScrollArea::both()
            .id_salt("dataset_rows")
            .auto_shrink([false, false])
            .show_rows(ui, row_height, shown, |ui, range| {
                for i in range {
                    let row = self.matches.as_ref().map_or(i, |m| m[i]);
                    let selected = self.selected == Some(row);
                    let cells = self.cells(dataset, row).to_vec();
                    let response = ui
                        .horizontal(|ui| {
                            let number = ui.add_sized(
                                [56.0, row_height],
                                egui::Button::selectable(selected, (row + 1).to_string()),
                            );
                            for text in &cells {
                                ui.add_sized(
                                    [col_width, row_height],
                                    egui::Label::new(text).truncate(),
                                );
                            }
                            number
                        })
                        .inner;
                    if response.clicked() {
                        self.selected = Some(row);
                        self.image = None;
                    }
                }
            });
    }

    fn detail_ui(&mut self, ui: &mut egui::Ui, dataset: &Dataset) {
        let Some(row) = self.selected.filter(|&r| r < dataset.len()) else {
            ui.label("Select a row to read it in roles.");
            return;
        };
        ui.label(RichText::new(format!("Row {}", row + 1)).strong());
        let example = match dataset.example(row) {
            Ok(e) => e,
            Err(e) => {
                ui.colored_label(ui.visuals().error_fg_color, e.to_string());
                return;
            }
        };
        if let Some(image) = &example.image {
            self.image_ui(ui, image);
        }
        role_text(ui, "prompt", Some(&example.prompt));
        role_text(ui, "reasoning", example.reasoning.as_deref());
        role_text(ui, "answer", example.answer.as_deref());
        for (role, content) in &example.messages {
            role_text(ui, role, Some(content));
        }
    }

    fn image_ui(&mut self, ui: &mut egui::Ui, source: &str) {
        if self.image.as_ref().is_none_or(|(s, _)| s != source) {
            let loaded = load_image(source).map(|img| {
                ui.ctx().load_texture(
                    format!("dataset-image-{source:.64}"),
                    img,
                    egui::TextureOptions::LINEAR,
                )
            });
            self.image = Some((source.to_string(), loaded));
        }
        match &self.image {
            Some((_, Ok(texture))) => {
                let size = texture.size_vec2();
                let scale = (240.0 / size.x.max(size.y)).min(4.0);
                ui.add(egui::Image::new(texture).fit_to_exact_size(size * scale))
                    .on_hover_text(if source.starts_with("data:") {
                        "embedded image"
                    } else {
                        source
                    });
            }
            Some((_, Err(e))) => {
                ui.colored_label(ui.visuals().warn_fg_color, format!("image: {e}"));
            }
            None => {}
        }
    }

    fn mapping_ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext, dataset: &Dataset) {
        ui.label(RichText::new("Role mapping").strong())
            .on_hover_text(
                "Which column holds each role, for layouts the studio does not recognise",
            );
        let columns = dataset.columns().to_vec();
        let mut changed = false;
        egui::Grid::new("dataset_mapping")
            .num_columns(2)
            .show(ui, |ui| {
                let roles: [(&str, &mut Option<String>); 5] = [
                    ("prompt", &mut self.mapping.prompt),
                    ("reasoning", &mut self.mapping.reasoning),
                    ("answer", &mut self.mapping.answer),
                    ("messages", &mut self.mapping.messages),
                    ("image", &mut self.mapping.image),
                ];
                for (role, slot) in roles {
                    let label = ui.label(role);
                    let before = slot.clone();
                    egui::ComboBox::from_id_salt(("dataset_role", role))
                        .selected_text(slot.as_deref().unwrap_or("—"))
                        .show_ui(ui, |ui| {
                            ui.selectable_value(slot, None, "—");
                            for c in &columns {
                                ui.selectable_value(slot, Some(c.clone()), c);
                            }
                        })
                        .response
                        .labelled_by(label.id);
                    changed |= *slot != before;
                    ui.end_row();
                }
            });
        let differs = &self.mapping != dataset.roles();
        ui.horizontal(|ui| {
            if ui
                .add_enabled(differs || changed, egui::Button::new("Apply"))
                .on_hover_text("Reopen the file with this mapping")
                .clicked()
            {
                let path = dataset.path().to_path_buf();
                let mapping = self.mapping.clone();
                self.open(ctx, &ui.ctx().clone(), &path, Some(mapping));
            }
            if ui
                .button("Save to workspace")
                .on_hover_text("Remember this mapping for the file (Launch and later opens use it)")
                .clicked()
            {
                let path = dataset.path().display().to_string();
                let saved = engine::store::Workspace::open(&ctx.workspace_dir)
                    .and_then(|w| w.save_dataset_mapping(&path, Some(&self.mapping)));
                match saved {
                    Ok(()) => self.message = Some("mapping saved".into()),
                    Err(e) => ctx.error = Some(e.to_string()),
                }
            }
        });
    }

    fn lengths_ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext, dataset: &Arc<Dataset>) {
        ui.label(RichText::new("Token lengths").strong())
            .on_hover_text(
                "Tokens of prompt + reasoning + answer of every row, under a model's tokenizer",
            );
        if self.tokenizer_model.is_empty() {
            self.tokenizer_model = engine::models::tiny::TINY_REASONER.to_string();
        }
        let models: Vec<String> = ctx
            .models(ui.ctx())
            .unwrap_or_default()
            .iter()
            .filter_map(|m| m.as_ref().ok().map(|m| m.path.clone()))
            .collect();
        ui.horizontal_wrapped(|ui| {
            let label = ui.label("Tokenizer of");
            egui::ComboBox::from_id_salt("dataset_tokenizer")
                .selected_text(short(&self.tokenizer_model))
                .width(200.0)
                .show_ui(ui, |ui| {
                    for m in &models {
                        ui.selectable_value(&mut self.tokenizer_model, m.clone(), short(m));
                    }
                })
                .response
                .labelled_by(label.id);
            match &self.lengths_job {
                Some(job) => {
                    if job.progress_ui(ui, "tokenizing") {
                        job.cancel.store(true, Ordering::Relaxed);
                    }
                }
                None => {
                    if ui.button("Compute").clicked() {
                        self.lengths_job = Some(token_lengths(
                            ui.ctx(),
                            dataset.clone(),
                            self.tokenizer_model.clone(),
                        ));
                    }
                }
            }
        });
        if let Some(lengths) = &self.lengths {
            histogram_ui(ui, lengths);
        }
    }
}

fn role_text(ui: &mut egui::Ui, role: &str, text: Option<&str>) {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return;
    };
    ui.label(RichText::new(role).small().weak());
    ui.add(egui::Label::new(text).wrap());
    ui.add_space(4.0);
}

fn bad_rows_ui(ui: &mut egui::Ui, dataset: &Dataset) {
    let bad = dataset.bad_rows();
    ui.label(RichText::new(format!("Bad rows ({})", bad.len())).strong());
    if bad.is_empty() {
        ui.label(RichText::new("none: every row parsed").weak());
        return;
    }
    for b in bad.iter().take(200) {
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new(format!("line {}", b.line)).monospace());
            ui.colored_label(ui.visuals().warn_fg_color, &b.message);
        });
    }
    if bad.len() > 200 {
        ui.label(format!("… and {} more", bad.len() - 200));
    }
}

fn short(spec: &str) -> &str {
    spec.rsplit('/').next().unwrap_or(spec)
}

/// `org/name: path/in/snapshot` for a file in the hub cache.
fn hf_name(path: &Path) -> String {
    let text = path.display().to_string();
    let Some(start) = text.find("datasets--") else {
        return text;
    };
    let rest = &text[start + "datasets--".len()..];
    let (repo, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let file = tail.splitn(3, '/').nth(2).unwrap_or(tail);
    format!("{}: {file}", repo.replacen("--", "/", 1))
}

/// Rows whose `column` contains `query` (case-insensitive), or `None` when cancelled.
fn search(
    ctx: &egui::Context,
    dataset: Arc<Dataset>,
    column: String,
    query: String,
) -> Job<Option<Vec<usize>>> {
    let total = dataset.len();
    Job::spawn(ctx, total, move |done, cancel| {
        let needle = query.to_lowercase();
        let mut found = Vec::new();
        for i in 0..total {
            if cancel.load(Ordering::Relaxed) {
                return None;
            }
            if let Ok(row) = dataset.row(i)
                && let Some(value) = row.get(&column)
            {
                let text = match value {
                    serde_json::Value::String(s) => s.to_lowercase(),
                    other => other.to_string().to_lowercase(),
                };
                if text.contains(&needle) {
                    found.push(i);
                }
            }
            done.store(i + 1, Ordering::Relaxed);
        }
        Some(found)
    })
}

/// Token lengths of every row's prompt + reasoning + answer (or messages) under `model`'s
/// tokenizer; cancelling keeps the rows done so far.
fn token_lengths(
    ctx: &egui::Context,
    dataset: Arc<Dataset>,
    model: String,
) -> Job<Result<Lengths, String>> {
    let total = dataset.len();
    Job::spawn(ctx, total, move |done, cancel| {
        let (tokenizer, _) =
            engine::formats::loader::open_tokenizer(&model).map_err(|e| e.to_string())?;
        let mut lengths = Vec::with_capacity(total);
        let mut cancelled = false;
        for i in 0..total {
            if cancel.load(Ordering::Relaxed) {
                cancelled = true;
                break;
            }
            if let Ok(e) = dataset.example(i) {
                let mut text = e.prompt.clone();
                for part in [&e.reasoning, &e.answer].into_iter().flatten() {
                    text.push('\n');
                    text.push_str(part);
                }
                if e.reasoning.is_none() && e.answer.is_none() {
                    for (_, content) in &e.messages {
                        text.push('\n');
                        text.push_str(content);
                    }
                }
                if let Ok(ids) = tokenizer.encode(&text, false) {
                    lengths.push(ids.len());
                }
            }
            done.store(i + 1, Ordering::Relaxed);
        }
        Ok(Lengths {
            model,
            lengths,
            cancelled,
        })
    })
}

/// The histogram bins of `lengths`: about 30 equal bins from 0 to the longest.
pub fn histogram(lengths: &[usize]) -> (usize, Vec<usize>) {
    let max = lengths.iter().copied().max().unwrap_or(0);
    let width = max.div_ceil(30).max(1);
    let mut bins = vec![0usize; max / width + 1];
    for &l in lengths {
        bins[l / width] += 1;
    }
    (width, bins)
}

/// The value at quantile `q` of sorted `values`.
fn quantile(sorted: &[usize], q: f64) -> usize {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

fn histogram_ui(ui: &mut egui::Ui, lengths: &Lengths) {
    let mut sorted = lengths.lengths.clone();
    sorted.sort_unstable();
    ui.label(format!(
        "{} rows{} · median {} · p95 {} · longest {} tokens ({})",
        sorted.len(),
        if lengths.cancelled {
            " (cancelled)"
        } else {
            ""
        },
        quantile(&sorted, 0.5),
        quantile(&sorted, 0.95),
        sorted.last().copied().unwrap_or(0),
        short(&lengths.model)
    ));
    let (width, bins) = histogram(&sorted);
    let bars: Vec<egui_plot::Bar> = bins
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            egui_plot::Bar::new((i * width) as f64 + width as f64 / 2.0, n as f64)
                .width(width as f64 * 0.9)
        })
        .collect();
    egui_plot::Plot::new("dataset_lengths")
        .height(160.0)
        .allow_scroll(false)
        .x_axis_label("tokens")
        .y_axis_label("rows")
        .show(ui, |plot| {
            plot.bar_chart(egui_plot::BarChart::new("rows", bars))
        });
}

/// Decodes an image from a file path or a `data:` URI into an egui image.
fn load_image(source: &str) -> Result<egui::ColorImage, String> {
    use base64::Engine as _;
    let bytes = if let Some(rest) = source.strip_prefix("data:") {
        let (_, b64) = rest
            .split_once(";base64,")
            .ok_or("a data URI without base64")?;
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| format!("bad base64: {e}"))?
    } else if source.starts_with("http://") || source.starts_with("https://") {
        return Err(format!(
            "{source} is on the network; the studio reads local files only"
        ));
    } else {
        std::fs::read(source).map_err(|e| format!("could not read {source}: {e}"))?
    };
    let image = image::load_from_memory(&bytes)
        .map_err(|e| format!("could not decode the image: {e}"))?
        .to_rgba8();
    let size = [image.width() as usize, image.height() as usize];
    Ok(egui::ColorImage::from_rgba_unmultiplied(
        size,
        image.as_raw(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_every_length_once() {
        let lengths = [0, 1, 5, 29, 30, 31, 59, 60, 100];
        let (width, bins) = histogram(&lengths);
        assert_eq!(width, 4); // ceil(100 / 30)
        assert_eq!(bins.iter().sum::<usize>(), lengths.len());
        assert_eq!(bins[0], 2); // 0 and 1
        assert_eq!(bins[100 / 4], 1);
        assert_eq!(histogram(&[]).1, vec![0]);
    }

    #[test]
    fn cells_are_one_line_and_bounded() {
        let long = serde_json::Value::String("a\nb".repeat(100));
        let text = cell_text(&long);
        assert!(!text.contains('\n'));
        assert_eq!(text.chars().count(), CELL_CHARS + 1);
        assert!(text.ends_with('…'));
        assert_eq!(cell_text(&serde_json::json!(42)), "42");
    }

    #[test]
    fn hub_cache_files_are_named_by_repository() {
        let p = Path::new("/h/hub/datasets--openai--gsm8k/snapshots/abc/main/train-0.parquet");
        assert_eq!(hf_name(p), "openai/gsm8k: main/train-0.parquet");
    }

    #[test]
    fn images_decode_from_files_and_data_uris() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.png");
        let mut img = image::RgbaImage::new(3, 2);
        img.put_pixel(2, 1, image::Rgba([255, 0, 0, 255]));
        img.save(&path).expect("save");
        let from_file = load_image(&path.display().to_string()).expect("decodes");
        assert_eq!(from_file.size, [3, 2]);
        assert_eq!(from_file.pixels[5], egui::Color32::from_rgb(255, 0, 0));
        let b64 =
            base64::engine::general_purpose::STANDARD.encode(std::fs::read(&path).expect("read"));
        let from_uri = load_image(&format!("data:image/png;base64,{b64}")).expect("decodes");
        assert_eq!(from_uri.pixels, from_file.pixels);
        assert!(load_image("https://x/y.png").is_err());
    }
}
