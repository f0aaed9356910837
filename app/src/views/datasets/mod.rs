//! Datasets: open a file (typed path, file dialog, drag and drop, the workspace's recent files
//! or a dataset in the Hugging Face cache), page through any number of rows (only the rows on
//! screen are read, through the file's row-offset index), search a column in the background
//! with progress and cancel, read one row in roles (prompt, reasoning, answer, messages, its
//! image), fix the column → role mapping for layouts the studio does not recognise (saved in
//! the workspace, offered to Launch), see the token-length histogram under a model's
//! tokenizer, and the bad rows with their line numbers.

mod bad_rows;
mod job;
mod lengths;
mod mapping;
mod open;
mod search;
mod summary;
mod table;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError, channel};

use engine::data::{Dataset, RoleMapping};

use crate::context::AppContext;
use bad_rows::bad_rows_ui;
pub use job::Job;
pub use lengths::{Lengths, histogram};

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

impl DatasetsView {
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
}
