//! Datasets: open a file (typed path, file dialog, drag and drop, the workspace's recent files
//! or a dataset in the Hugging Face cache), page through any number of rows (only the rows on
//! screen are read, through the file's row-offset index), search a column in the background
//! with progress and cancel, read one row in roles (prompt, reasoning, answer, messages, its
//! image), fix the column → role mapping for layouts the studio does not recognise (saved in
//! the workspace, offered to Launch), see the token-length histogram under a model's
//! tokenizer, and the bad rows with their line numbers.

mod bad_rows;
mod lengths;
mod mapping;
mod open;
mod search;
mod summary;
mod table;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use engine::data::{Dataset, RoleMapping};
use engine::store::DatasetRecord;

use crate::context::AppContext;
use crate::dialogs::DialogJob;
use crate::jobs::Job;
use crate::workspace_service::Ticket;
use bad_rows::bad_rows_ui;
pub use lengths::{Lengths, histogram};

/// A file being opened.
enum Opening {
    /// Asking the workspace for the mapping saved for it (which remembers the file).
    Mapping(Ticket<Option<RoleMapping>>),
    /// Indexing the file with this mapping.
    Indexing(Job<Result<Dataset, String>>),
}

/// The selected row's image: being read and decoded, or ready.
enum ImageState {
    Loading(Job<Result<egui::ColorImage, String>>),
    Ready(Result<egui::TextureHandle, String>),
}

/// The Datasets view's state.
#[derive(Default)]
pub struct DatasetsView {
    /// The path typed in the path box.
    pub path: String,
    /// The file being opened: the workspace's saved mapping asked for first (and the file
    /// remembered), then the file indexed.
    opening: Option<(String, Opening)>,
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
    image: Option<(String, ImageState)>,
    hf_files: Option<Vec<PathBuf>>,
    hf_scan: Option<Job<Vec<PathBuf>>>,
    /// The workspace's dataset files, newest first (`None` until read, or to read again).
    recent: Option<Result<Vec<String>, String>>,
    recent_asked: Option<Ticket<Vec<DatasetRecord>>>,
    /// Save to workspace, on its way.
    saving: Option<Ticket<()>>,
    /// The workspace remembering a file opened with a given mapping.
    remember: Option<Ticket<Option<RoleMapping>>>,
    dialog: Option<DialogJob>,
    pub message: Option<String>,
}

impl DatasetsView {
    fn poll(&mut self, ctx: &mut AppContext, egui_ctx: &egui::Context) {
        self.poll_opening(ctx, egui_ctx);
        if let Some(job) = &mut self.search
            && let Some(result) = job.poll()
        {
            self.search = None;
            match result {
                Ok(matches) => {
                    self.matches = matches;
                    self.message = Some(match &self.matches {
                        Some(m) => format!("{} matching rows", m.len()),
                        None => "search cancelled".into(),
                    });
                }
                Err(e) => ctx.error = Some(e),
            }
        }
        if let Some(job) = &mut self.lengths_job
            && let Some(result) = job.poll_flat()
        {
            self.lengths_job = None;
            match result {
                Ok(lengths) => self.lengths = Some(lengths),
                Err(e) => ctx.error = Some(e),
            }
        }
        if let Some(job) = &mut self.hf_scan
            && let Some(files) = job.poll()
        {
            self.hf_scan = None;
            self.hf_files = Some(files.unwrap_or_else(|e| {
                ctx.error = Some(format!("could not look in the Hugging Face cache: {e}"));
                Vec::new()
            }));
        }
        if self.hf_files.is_none() && self.hf_scan.is_none() {
            self.hf_scan = Some(Job::spawn("hf-datasets", egui_ctx, |_| {
                engine::discovery::hf_cache_datasets()
            }));
        }
        if self.recent.is_none() && self.recent_asked.is_none() {
            self.recent_asked = Some(ctx.workspace.datasets());
        }
        if let Some(ticket) = &mut self.recent_asked
            && let Some(answer) = ticket.poll()
        {
            self.recent_asked = None;
            self.recent = Some(answer.map(|list| list.into_iter().map(|r| r.path).collect()));
        }
        if let Some(ticket) = &mut self.saving
            && let Some(answer) = ticket.poll()
        {
            self.saving = None;
            match answer {
                Ok(()) => self.message = Some("mapping saved".into()),
                Err(e) => ctx.error = Some(e),
            }
        }
        if let Some(picked) = crate::dialogs::poll(&mut self.dialog, &mut ctx.error)
            && let Some(path) = picked
        {
            self.open(ctx, egui_ctx, &path, None);
        }
    }

    pub fn is_busy(&self) -> bool {
        self.opening.is_some()
            || self.search.is_some()
            || self.lengths_job.is_some()
            || self.saving.is_some()
            || matches!(self.image, Some((_, ImageState::Loading(_))))
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext) {
        self.poll(ctx, &ui.ctx().clone());
        ui.heading("Datasets");
        self.open_bar_ui(ui, ctx);
        ui.separator();
        if let Some((path, opening)) = &self.opening {
            ui.horizontal(|ui| {
                ui.spinner();
                match opening {
                    Opening::Mapping(ticket) if ticket.is_slow() => {
                        ui.label(format!("{path}: waiting for the workspace…"));
                    }
                    Opening::Mapping(_) => {}
                    Opening::Indexing(_) => {
                        ui.label(format!("indexing {path}…"));
                    }
                }
            });
        }
        if self.opening.is_some() || self.saving.is_some() || self.recent_asked.is_some() {
            ctx.workspace_note_ui(ui);
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
