//! The app-level context every view shares: the workspace feed (runs and live series), the run
//! launcher (worker processes started from the studio executable), and a command channel the
//! views use to ask for things another view does (show a run, open a model). Polled once per
//! frame whichever view is shown.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc::{Receiver, TryRecvError, channel};

use engine::discovery::ModelInfo;

use engine::store::{RunId, Workspace};

use crate::feed::{Feed, FeedUpdate, RunInfo, SeriesKey};
use crate::series::Series;
use crate::views::View;

/// The run "Try it" starts: the untrained tiny reasoner learning the built-in arithmetic task,
/// with held-out accuracy every 50 steps. About a minute on two cores.
pub const TRY_IT_RUN: &str = include_str!("../../assets/runs/try-it.toml");

/// Where the studio's data is and how it starts workers.
#[derive(Debug, Clone)]
pub struct StudioOptions {
    /// The workspace folder (created if missing).
    pub workspace: PathBuf,
    /// The studio executable workers are started from (`studio worker --run ID`); `None`
    /// disables starting runs (the launcher says so).
    pub worker_exe: Option<PathBuf>,
    /// The model the Playground opens at start (default: the built-in tiny reasoner).
    pub model: Option<String>,
    /// The view shown at start (default: the one shown when the window last closed, else Home).
    pub view: Option<View>,
    /// A run to show at start (in Runs, or in Traces when that is the view).
    pub run: Option<RunId>,
    /// The step of `run` the Traces view opens on (the nearest stored one).
    pub step: Option<u64>,
    /// A dataset file to open in the Datasets view at start.
    pub dataset: Option<PathBuf>,
    /// Checkpoints (or models) to compare at start, replacing the remembered ones.
    pub compare: Vec<String>,
}

impl StudioOptions {
    /// Options for a workspace, with workers started from `worker_exe`.
    pub fn new(workspace: impl Into<PathBuf>, worker_exe: Option<PathBuf>) -> Self {
        Self {
            workspace: workspace.into(),
            worker_exe,
            model: None,
            view: None,
            run: None,
            step: None,
            dataset: None,
            compare: Vec::new(),
        }
    }
}

/// What a view asks the shell or another view to do.
#[derive(Debug, Clone, PartialEq)]
pub enum AppCommand {
    /// Switch to the Runs view with this run selected (alone).
    ShowRun(RunId),
    /// Switch to the Traces view on this run, at this step (the nearest stored one).
    ShowTraces { run: RunId, step: Option<u64> },
    /// Switch to a view.
    ShowView(View),
    /// Open a model in the Playground.
    OpenInPlayground(String),
    /// Open the Launch form on a new run of this model.
    FineTune(String),
    /// Set the Launch form's dataset (and its role mapping) and show it.
    UseDataset {
        path: String,
        mapping: Option<engine::data::RoleMapping>,
    },
    /// Open a dataset file in the Datasets view.
    OpenDataset(std::path::PathBuf),
    /// Score a text (after the prompt it answered) in the Compare view.
    ScoreInCompare { prompt: String, text: String },
    /// Add checkpoints (or models) to the Compare view and show it.
    Compare(Vec<String>),
}

/// The shared context.
pub struct AppContext {
    pub workspace_dir: PathBuf,
    worker_exe: Option<PathBuf>,
    feed: Option<Feed>,
    /// Every run, newest first, as the feed last sent them.
    pub runs: Vec<RunInfo>,
    /// Each run's metric names.
    pub names: BTreeMap<RunId, Vec<String>>,
    /// The watched series received so far.
    pub series: HashMap<SeriesKey, Series>,
    /// Series the views asked for this frame (sent to the feed at the end of the frame).
    wanted: HashSet<SeriesKey>,
    /// Workers this window started, waited for so they never linger as zombies.
    children: Vec<Child>,
    /// The last error, shown in the window until dismissed.
    pub error: Option<String>,
    pub commands: Vec<AppCommand>,
    /// Whether the feed has sent the runs at least once.
    pub loaded: bool,
    /// The models found on disk (discovered once, in the background, when a view asks).
    models: Option<Vec<FoundModel>>,
    discovery: Option<Receiver<Vec<FoundModel>>>,
}

/// Opens the workspace at `dir`; the error names the folder.
pub fn open_workspace(dir: &Path) -> Result<Workspace, String> {
    Workspace::open(dir)
        .map_err(|e| format!("could not open the workspace at {}: {e}", dir.display()))
}

/// The workspace kept in `slot` by a background thread, opened at `dir` when first asked for
/// (a failure is returned and asked again next time).
pub fn kept_workspace<'a>(
    slot: &'a mut Option<Workspace>,
    dir: &Path,
) -> Result<&'a Workspace, String> {
    if slot.is_none() {
        *slot = Some(open_workspace(dir)?);
    }
    slot.as_ref()
        .ok_or_else(|| "the workspace is not open".to_string())
}

/// A model location found on disk: its summary, or why it could not be read.
pub type FoundModel = Result<ModelInfo, (String, String)>;

impl AppContext {
    pub fn new(options: &StudioOptions) -> Self {
        Self {
            workspace_dir: options.workspace.clone(),
            worker_exe: options.worker_exe.clone(),
            feed: None,
            runs: Vec::new(),
            names: BTreeMap::new(),
            series: HashMap::new(),
            wanted: HashSet::new(),
            children: Vec::new(),
            error: None,
            commands: Vec::new(),
            loaded: false,
            models: None,
            discovery: None,
        }
    }

    /// The models found on disk, or `None` while the background discovery still runs (the
    /// first call starts it; only headers are read).
    pub fn models(&mut self, egui_ctx: &egui::Context) -> Option<&[FoundModel]> {
        if self.models.is_none() && self.discovery.is_none() {
            let (tx, rx) = channel();
            let repaint = egui_ctx.clone();
            std::thread::spawn(move || {
                let found: Vec<FoundModel> = engine::discovery::discover(&[])
                    .into_iter()
                    .map(|r| r.map_err(|(path, e)| (path, e.to_string())))
                    .collect();
                let _ = tx.send(found);
                repaint.request_repaint();
            });
            self.discovery = Some(rx);
        }
        if let Some(rx) = &self.discovery {
            match rx.try_recv() {
                Ok(found) => {
                    self.models = Some(found);
                    self.discovery = None;
                }
                Err(TryRecvError::Disconnected) => {
                    self.models = Some(Vec::new());
                    self.discovery = None;
                }
                Err(TryRecvError::Empty) => {}
            }
        }
        self.models.as_deref()
    }

    /// Whether the discovery has finished.
    pub fn models_found(&self) -> bool {
        self.models.is_some()
    }

    /// Keeps only the found models `keep` accepts (image snapshots leave this machine's Hugging
    /// Face cache out of the picture).
    pub fn retain_models(&mut self, keep: impl Fn(&FoundModel) -> bool) {
        if let Some(models) = &mut self.models {
            models.retain(keep);
        }
    }

    /// Looks for models again (after the user added one).
    pub fn rediscover(&mut self) {
        if self.discovery.is_none() {
            self.models = None;
        }
    }

    /// Drains the feed and reaps finished workers; called at the start of every frame.
    pub fn begin_frame(&mut self, ctx: &egui::Context) {
        if self.feed.is_none() {
            let repaint = ctx.clone();
            self.feed = Some(Feed::start(self.workspace_dir.clone(), move || {
                repaint.request_repaint()
            }));
        }
        self.children
            .retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        let updates = self.feed.as_ref().map(Feed::drain).unwrap_or_default();
        for update in updates {
            match update {
                FeedUpdate::Runs(runs) => {
                    self.runs = runs;
                    self.loaded = true;
                }
                FeedUpdate::Names { run, names } => {
                    self.names.insert(run, names);
                }
                FeedUpdate::Points { key, points } => {
                    let series = self.series.entry(key).or_default();
                    for p in points {
                        series.push(p.step, p.value, p.wall_time);
                    }
                }
                FeedUpdate::Reset { key } => {
                    self.series.remove(&key);
                }
                FeedUpdate::Error(message) => self.error = Some(message),
            }
        }
        // While a run is live, look again soon even if nothing arrived.
        if self.runs.iter().any(RunInfo::is_live) {
            ctx.request_repaint_after(crate::feed::POLL_INTERVAL);
        }
    }

    /// Sends the series asked for this frame to the feed; called at the end of every frame.
    pub fn end_frame(&mut self) {
        let wanted = std::mem::take(&mut self.wanted);
        self.series.retain(|k, _| wanted.contains(k));
        if let Some(feed) = &mut self.feed {
            feed.watch(wanted);
        }
    }

    /// Asks for a series this frame; its points so far, if any arrived.
    pub fn want(&mut self, run: RunId, name: &str) -> Option<&Series> {
        let key = (run, name.to_string());
        self.wanted.insert(key.clone());
        self.series.get(&key)
    }

    pub fn run(&self, id: RunId) -> Option<&RunInfo> {
        self.runs.iter().find(|r| r.record.id == id)
    }

    fn workspace(&self) -> Result<Workspace, String> {
        open_workspace(&self.workspace_dir)
    }

    fn exe(&self) -> Result<&Path, String> {
        self.worker_exe.as_deref().ok_or_else(|| {
            "this window cannot start runs: it was opened without the studio executable".into()
        })
    }

    /// Registers a run from a config's TOML and starts its worker process.
    pub fn start_run(&mut self, config_toml: &str, origin: &str) -> Result<RunId, String> {
        let exe = self.exe()?.to_path_buf();
        let workspace = self.workspace()?;
        let (run, _, child) =
            engine::train::launch::start_run(&workspace, config_toml, origin, &exe)
                .map_err(|e| e.to_string())?;
        self.children.push(child);
        self.refresh();
        Ok(run)
    }

    /// Whether this window can start runs (it knows the studio executable).
    pub fn can_start_runs(&self) -> bool {
        self.worker_exe.is_some()
    }

    /// Starts a study (its runs one after another) in a background `studio study` process.
    pub fn start_study(&mut self, study_toml: &str) -> Result<(), String> {
        let exe = self.exe()?.to_path_buf();
        let workspace = self.workspace()?;
        let child = engine::train::launch::spawn_study(&workspace, study_toml, &exe)
            .map_err(|e| e.to_string())?;
        self.children.push(child);
        self.refresh();
        Ok(())
    }

    /// Continues a stopped, failed or dead run in a new worker.
    pub fn resume_run(&mut self, run: RunId) -> Result<(), String> {
        let exe = self.exe()?.to_path_buf();
        let workspace = self.workspace()?;
        let child =
            engine::train::launch::resume_run(&workspace, run, &exe).map_err(|e| e.to_string())?;
        self.children.push(child);
        self.refresh();
        Ok(())
    }

    /// Asks a run's worker to stop after its current step.
    pub fn stop_run(&mut self, run: RunId) -> Result<(), String> {
        let workspace = self.workspace()?;
        engine::train::launch::request_stop(&workspace, run).map_err(|e| e.to_string())?;
        self.refresh();
        Ok(())
    }

    fn refresh(&self) {
        if let Some(feed) = &self.feed {
            feed.refresh();
        }
    }

    /// Imports a `trainer_state.json` (dropped on the window) as a read-only run and shows it.
    pub fn import(&mut self, path: &Path) {
        let result = self
            .workspace()
            .and_then(|w| w.import_trainer_state(path).map_err(|e| e.to_string()));
        match result {
            Ok(imported) => {
                self.refresh();
                self.commands.push(AppCommand::ShowRun(imported.run));
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// Starts the Try it run and asks to show it.
    pub fn try_it(&mut self) {
        match self.start_run(TRY_IT_RUN, "the Try it run") {
            Ok(run) => self.commands.push(AppCommand::ShowRun(run)),
            Err(e) => self.error = Some(e),
        }
    }

    /// The tail of a run's worker log (at most `max_bytes`).
    pub fn worker_log(&self, run: RunId, max_bytes: u64) -> String {
        use std::io::{Read, Seek, SeekFrom};
        let path = self
            .workspace_dir
            .join("artifacts")
            .join(format!("run-{run}"))
            .join("worker.log");
        let Ok(mut file) = std::fs::File::open(&path) else {
            return String::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(max_bytes)));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
