//! The app-level context every view shares: the workspace service (every read and write of the
//! workspace, off the UI thread) and its status, the workspace feed (runs and live series), the
//! run launcher (worker processes started from the studio executable, registered through the
//! service), the one model discovery, and a command channel the views use to ask for things
//! another view does (show a run, open a model). Polled once per frame whichever view is shown.

use engine::discovery::ModelInfo;
use engine::store::RunId;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Child;

use crate::feed::{Feed, FeedUpdate, RunInfo, SeriesKey};
use crate::jobs::{Job, LateWaker, Waker};
use crate::series::Series;
use crate::views::View;
use crate::workspace_service::{Ticket, WorkspaceService, WorkspaceStatus};

/// The run "Try it" starts: the untrained tiny reasoner learning the built-in arithmetic task,
/// at difficulty 0, with held-out accuracy every 50 steps: from 0 to about 0.75 (0.66 at worst
/// over six seeds) in 300 steps, under a minute on two cores (release build).
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
    /// The window's workspace: every view's reads and writes go through it.
    pub workspace: WorkspaceService,
    /// Where the workspace stands: shown in the shell's status line, and by views that wait.
    pub workspace_status: WorkspaceStatus,
    /// Wakes the window from threads started before the first frame.
    late_waker: LateWaker,
    feed: Option<Feed>,
    /// The feed's last failure, until it reads again.
    feed_error: Option<String>,
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
    /// Run actions (start, stop, resume, import) waiting for the workspace.
    actions: Vec<Action>,
    /// The last error, shown in the window until dismissed.
    pub error: Option<String>,
    pub commands: Vec<AppCommand>,
    /// Whether the feed has sent the runs at least once.
    pub loaded: bool,
    /// The models found on disk (discovered once, in the background, when a view asks).
    models: Option<Vec<FoundModel>>,
    discovery: Option<Job<Vec<FoundModel>>>,
    /// Bumped each time a discovery finishes (views that derive lists from it redo them).
    pub models_generation: u64,
}

/// A run action on its way through the workspace service.
enum Action {
    /// A run registered and its worker started; `show` opens its plots.
    Started {
        ticket: Ticket<(RunId, Child)>,
        show: bool,
    },
    /// A worker process started (a study, a resumed run).
    Spawned(Ticket<Child>),
    Stopped(Ticket<()>),
    Imported(Ticket<RunId>),
}

impl Action {
    fn what(&self) -> &str {
        match self {
            Self::Started { ticket, .. } => ticket.what(),
            Self::Spawned(t) => t.what(),
            Self::Stopped(t) => t.what(),
            Self::Imported(t) => t.what(),
        }
    }

    fn waited(&self) -> std::time::Duration {
        match self {
            Self::Started { ticket, .. } => ticket.waited(),
            Self::Spawned(t) => t.waited(),
            Self::Stopped(t) => t.waited(),
            Self::Imported(t) => t.waited(),
        }
    }
}

/// A model location found on disk: its summary, or why it could not be read.
pub type FoundModel = Result<ModelInfo, (String, String)>;

impl AppContext {
    pub fn new(options: &StudioOptions) -> Self {
        let (waker, late_waker) = Waker::late();
        Self {
            workspace_dir: options.workspace.clone(),
            worker_exe: options.worker_exe.clone(),
            workspace: WorkspaceService::start(options.workspace.clone(), waker),
            workspace_status: WorkspaceStatus::Ok,
            late_waker,
            feed: None,
            feed_error: None,
            runs: Vec::new(),
            names: BTreeMap::new(),
            series: HashMap::new(),
            wanted: HashSet::new(),
            children: Vec::new(),
            actions: Vec::new(),
            error: None,
            commands: Vec::new(),
            loaded: false,
            models: None,
            discovery: None,
            models_generation: 0,
        }
    }

    /// The models found on disk, or `None` while the background discovery still runs (the
    /// first call starts it; only headers are read).
    pub fn models(&mut self, egui_ctx: &egui::Context) -> Option<&[FoundModel]> {
        if self.models.is_none() && self.discovery.is_none() {
            self.discovery = Some(Job::spawn("model-discovery", egui_ctx, |_| {
                engine::discovery::discover(&[])
                    .into_iter()
                    .map(|r| r.map_err(|(path, e)| (path, e.to_string())))
                    .collect()
            }));
        }
        if let Some(job) = &mut self.discovery
            && let Some(found) = job.poll()
        {
            self.discovery = None;
            self.models_generation += 1;
            self.models = Some(match found {
                Ok(found) => found,
                Err(e) => vec![Err(("model discovery".into(), e))],
            });
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

    /// Drains the feed, collects finished run actions, reaps finished workers and reads the
    /// workspace's status; called at the start of every frame.
    pub fn begin_frame(&mut self, ctx: &egui::Context) {
        self.late_waker.set(ctx);
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
                FeedUpdate::Error(message) => self.feed_error = Some(message),
                FeedUpdate::Healthy => self.feed_error = None,
            }
        }
        self.poll_actions();
        self.workspace_status = match (self.workspace.status(), &self.feed_error) {
            (WorkspaceStatus::Ok, Some(e)) => WorkspaceStatus::Error(e.clone()),
            (status, _) => status,
        };
        // While something waits on the workspace, look again soon: the status line counts.
        if self.workspace_status.is_busy() || !self.actions.is_empty() {
            ctx.request_repaint_after(std::time::Duration::from_millis(200));
        }
        // While a run is live, look again soon even if nothing arrived.
        if self.runs.iter().any(RunInfo::is_live) {
            ctx.request_repaint_after(crate::feed::POLL_INTERVAL);
        }
    }

    fn poll_actions(&mut self) {
        let mut finished = Vec::new();
        let mut i = 0;
        while i < self.actions.len() {
            let answer: Option<Result<(), String>> = match &mut self.actions[i] {
                Action::Started { ticket, show } => {
                    let show = *show;
                    ticket.poll().map(|answer| {
                        answer.map(|(run, child)| {
                            self.children.push(child);
                            if show {
                                self.commands.push(AppCommand::ShowRun(run));
                            }
                        })
                    })
                }
                Action::Spawned(ticket) => ticket
                    .poll()
                    .map(|answer| answer.map(|child| self.children.push(child))),
                Action::Stopped(ticket) => ticket.poll(),
                Action::Imported(ticket) => ticket
                    .poll()
                    .map(|answer| answer.map(|run| self.commands.push(AppCommand::ShowRun(run)))),
            };
            match answer {
                Some(result) => {
                    self.actions.remove(i);
                    finished.push(result);
                }
                None => i += 1,
            }
        }
        if !finished.is_empty() {
            self.refresh();
        }
        for result in finished {
            if let Err(e) = result {
                self.error = Some(e);
            }
        }
    }

    /// The run action waiting for the workspace, if one is (what it does, how long it waited).
    pub fn pending_action(&self) -> Option<(&str, std::time::Duration)> {
        self.actions.first().map(|a| (a.what(), a.waited()))
    }

    /// Whether a run is being registered or a worker started (Start and Try it wait for it).
    pub fn starting(&self) -> bool {
        self.actions
            .iter()
            .any(|a| matches!(a, Action::Started { .. } | Action::Spawned(_)))
    }

    /// A line saying the workspace is busy or failing, for a view that waits on it.
    pub fn workspace_note_ui(&self, ui: &mut egui::Ui) {
        if let Some(text) = self.workspace_status.text() {
            let color = match self.workspace_status {
                WorkspaceStatus::Busy { .. } => ui.visuals().warn_fg_color,
                _ => ui.visuals().error_fg_color,
            };
            ui.colored_label(color, text);
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

    fn exe(&self) -> Result<&Path, String> {
        self.worker_exe.as_deref().ok_or_else(|| {
            "this window cannot start runs: it was opened without the studio executable".into()
        })
    }

    /// Registers a run from a config's TOML and starts its worker process, in the background;
    /// the window then shows its plots (a failure lands in [`AppContext::error`]).
    pub fn start_run(&mut self, config_toml: &str, origin: &str) -> Result<(), String> {
        let exe = self.exe()?.to_path_buf();
        let ticket = self.workspace.start_run(config_toml, origin, &exe);
        self.actions.push(Action::Started { ticket, show: true });
        Ok(())
    }

    /// Whether this window can start runs (it knows the studio executable).
    pub fn can_start_runs(&self) -> bool {
        self.worker_exe.is_some()
    }

    /// Starts a study (its runs one after another) in a background `studio study` process.
    pub fn start_study(&mut self, study_toml: &str) -> Result<(), String> {
        let exe = self.exe()?.to_path_buf();
        let ticket = self.workspace.start_study(study_toml, &exe);
        self.actions.push(Action::Spawned(ticket));
        Ok(())
    }

    /// Continues a stopped, failed or dead run in a new worker.
    pub fn resume_run(&mut self, run: RunId) -> Result<(), String> {
        let exe = self.exe()?.to_path_buf();
        let ticket = self.workspace.resume(run, &exe);
        self.actions.push(Action::Spawned(ticket));
        Ok(())
    }

    /// Asks a run's worker to stop after its current step.
    pub fn stop_run(&mut self, run: RunId) -> Result<(), String> {
        let ticket = self.workspace.stop(run);
        self.actions.push(Action::Stopped(ticket));
        Ok(())
    }

    fn refresh(&self) {
        if let Some(feed) = &self.feed {
            feed.refresh();
        }
    }

    /// Imports a `trainer_state.json` (dropped on the window) as a read-only run and shows it.
    pub fn import(&mut self, path: &Path) {
        let ticket = self.workspace.import(path);
        self.actions.push(Action::Imported(ticket));
    }

    /// Starts the Try it run and asks to show it.
    pub fn try_it(&mut self) {
        if let Err(e) = self.start_run(TRY_IT_RUN, "the Try it run") {
            self.error = Some(e);
        }
    }
}

/// The tail of a run's worker log (at most `max_bytes`), read from disk: call it from a
/// background job.
pub fn read_worker_log(workspace_dir: &Path, run: RunId, max_bytes: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let path = workspace_dir
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
