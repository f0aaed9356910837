//! The workspace feed: a thread with its own connection to the workspace that looks every
//! [`POLL_INTERVAL`] for runs and for new points of the series the views watch, and sends only
//! what changed. Reads are incremental (the points after the last step sent), so a live run
//! costs the UI thread nothing but appending what arrived. Both channels are bounded; a
//! failure is sent (once per message) and so is the recovery, and a workspace that would not
//! open is tried again every [`POLL_INTERVAL`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::Duration;

use engine::store::{MetricPoint, RunId, RunRecord, Workspace};
use engine::train::config::Algorithm;

/// How often the feed looks at the workspace.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Points read per series per look, so a million-point series arrives in slices and the
/// first ones show at once.
pub const POINTS_PER_READ: usize = 200_000;
/// Updates waiting for the UI; the feed waits while the UI is this far behind.
const UPDATES: usize = 256;
/// Requests waiting for the feed.
const REQUESTS: usize = 16;

/// A series of a run, as the views name it.
pub type SeriesKey = (RunId, String);

/// A run as the views show it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    pub record: RunRecord,
    /// `algorithm` of its config (`sft` when absent or not one the studio knows).
    pub algorithm: Algorithm,
    /// `model` of its config.
    pub model: String,
    /// Its worker process is gone though the run says it is going (it can be resumed).
    pub died: bool,
    /// Imported from elsewhere (a `trainer_state.json`): curves only, no worker.
    pub imported: bool,
}

impl RunInfo {
    fn new(record: RunRecord) -> Self {
        let config: Option<toml::Table> = toml::from_str(&record.config_toml).ok();
        let field = |key: &str| {
            config
                .as_ref()
                .and_then(|c| c.get(key))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let died = engine::train::launch::worker_died(&record);
        Self {
            algorithm: field("algorithm")
                .and_then(|a| Algorithm::from_name(&a))
                .unwrap_or_default(),
            model: field("model").unwrap_or_default(),
            imported: field("imported_from").is_some(),
            died,
            record,
        }
    }

    /// What the status column says: the stored status, or "died at step N".
    pub fn status_text(&self) -> String {
        if self.died {
            format!("died at step {}", self.record.last_step.unwrap_or(0))
        } else if self.imported {
            "imported".into()
        } else {
            self.record.status.as_str().to_string()
        }
    }

    /// Whether a worker is (or should be) executing it.
    pub fn is_live(&self) -> bool {
        !self.died && !self.imported && !self.record.status.is_finished()
    }
}

/// What the feed sends.
#[derive(Debug)]
pub enum FeedUpdate {
    /// Every run, newest first (sent when any changed).
    Runs(Vec<RunInfo>),
    /// A run's metric names (sent when they changed).
    Names { run: RunId, names: Vec<String> },
    /// New points of a series, after those sent before.
    Points {
        key: SeriesKey,
        points: Vec<MetricPoint>,
    },
    /// A series was rewritten from an earlier step (a resumed run dropped points after its
    /// checkpoint): forget it; its points come again.
    Reset { key: SeriesKey },
    /// The workspace could not be opened or read.
    Error(String),
    /// The workspace reads again after an [`FeedUpdate::Error`].
    Healthy,
}

enum Request {
    Watch(HashSet<SeriesKey>),
    Refresh,
}

/// The UI side of the feed.
pub struct Feed {
    requests: SyncSender<Request>,
    updates: Receiver<FeedUpdate>,
    watched: HashSet<SeriesKey>,
}

impl Feed {
    /// Starts the feed thread on the workspace at `dir`; `repaint` is called when something
    /// arrives.
    pub fn start(dir: PathBuf, repaint: impl Fn() + Send + 'static) -> Self {
        let (requests, request_rx) = sync_channel(REQUESTS);
        let (update_tx, updates) = sync_channel(UPDATES);
        if let Err(e) = crate::jobs::spawn_named("workspace-feed", move || {
            feed_thread(dir, request_rx, update_tx, repaint)
        }) {
            // The receiver is still here: say why nothing will come.
            let (tx, rx) = sync_channel(1);
            let _ = tx.send(FeedUpdate::Error(format!(
                "could not start the workspace feed thread: {e}"
            )));
            return Self {
                requests,
                updates: rx,
                watched: HashSet::new(),
            };
        }
        Self {
            requests,
            updates,
            watched: HashSet::new(),
        }
    }

    /// Asks for these series (and no others) from now on; unchanged sets are not resent.
    pub fn watch(&mut self, keys: HashSet<SeriesKey>) {
        // A full queue is tried again next frame (the set is not remembered as sent).
        if keys != self.watched && self.requests.try_send(Request::Watch(keys.clone())).is_ok() {
            self.watched = keys;
        }
    }

    /// Looks at the workspace now rather than at the next tick (after a start or a stop).
    pub fn refresh(&self) {
        // A full queue already holds a request that makes the feed look.
        if let Err(TrySendError::Disconnected(_)) = self.requests.try_send(Request::Refresh) {
            tracing::warn!("the workspace feed has stopped");
        }
    }

    /// What arrived since the last call.
    pub fn drain(&self) -> Vec<FeedUpdate> {
        let mut out = Vec::new();
        loop {
            match self.updates.try_recv() {
                Ok(u) => out.push(u),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return out,
            }
        }
    }
}

fn feed_thread(
    dir: PathBuf,
    requests: Receiver<Request>,
    updates: SyncSender<FeedUpdate>,
    repaint: impl Fn(),
) {
    let mut last_error: Option<String> = None;
    let mut watched: HashSet<SeriesKey> = HashSet::new();
    let workspace = loop {
        match Workspace::open(&dir) {
            Ok(w) => break w,
            Err(e) => {
                let message = format!("could not open the workspace at {}: {e}", dir.display());
                if last_error.as_ref() != Some(&message) {
                    if updates.send(FeedUpdate::Error(message.clone())).is_err() {
                        return;
                    }
                    repaint();
                    last_error = Some(message);
                }
            }
        }
        // Asked-for series are kept until the workspace opens; a gone window ends the thread.
        match requests.recv_timeout(POLL_INTERVAL) {
            Ok(Request::Watch(keys)) => watched = keys,
            Ok(Request::Refresh) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
    };
    // The last step sent of each watched series.
    let mut sent: HashMap<SeriesKey, u64> = HashMap::new();
    let mut last_runs: Vec<RunInfo> = Vec::new();
    let mut names: BTreeMap<RunId, Vec<String>> = BTreeMap::new();
    // The first list is sent even when empty: a fresh workspace is loaded too.
    let mut listed = false;
    loop {
        match requests.recv_timeout(POLL_INTERVAL) {
            Ok(Request::Watch(keys)) => {
                sent.retain(|k, _| keys.contains(k));
                watched = keys;
            }
            Ok(Request::Refresh) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let mut changed = false;
        let mut send = |u: FeedUpdate| {
            changed = true;
            updates.send(u).is_ok()
        };
        let result = (|| -> Result<bool, engine::store::StoreError> {
            let runs: Vec<RunInfo> = workspace.runs()?.into_iter().map(RunInfo::new).collect();
            if runs != last_runs || !listed {
                listed = true;
                for run in &runs {
                    let previous = last_runs.iter().find(|r| r.record.id == run.record.id);
                    let moved = previous.is_none_or(|p| p.record.last_step != run.record.last_step);
                    if moved || !names.contains_key(&run.record.id) {
                        let now = workspace.metric_names(run.record.id)?;
                        if names.get(&run.record.id) != Some(&now) {
                            names.insert(run.record.id, now.clone());
                            if !send(FeedUpdate::Names {
                                run: run.record.id,
                                names: now,
                            }) {
                                return Ok(false);
                            }
                        }
                    }
                }
                last_runs = runs.clone();
                if !send(FeedUpdate::Runs(runs)) {
                    return Ok(false);
                }
            }
            for key in &watched {
                let last_step = last_runs
                    .iter()
                    .find(|r| r.record.id == key.0)
                    .and_then(|r| r.record.last_step);
                let mut after = sent.get(key).copied();
                // A resumed run dropped the points after its checkpoint: start the series over.
                if let (Some(a), Some(last)) = (after, last_step)
                    && last < a
                {
                    sent.remove(key);
                    after = None;
                    if !send(FeedUpdate::Reset { key: key.clone() }) {
                        return Ok(false);
                    }
                }
                let points =
                    workspace.metric_points_after(key.0, &key.1, after, POINTS_PER_READ)?;
                if let Some(last) = points.last() {
                    sent.insert(key.clone(), last.step);
                    if !send(FeedUpdate::Points {
                        key: key.clone(),
                        points,
                    }) {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        })();
        match result {
            Ok(true) => {
                if last_error.take().is_some() {
                    let _ = updates.send(FeedUpdate::Healthy);
                    changed = true;
                }
            }
            Ok(false) => return,
            Err(e) => {
                let message = e.to_string();
                if last_error.as_ref() != Some(&message) {
                    last_error = Some(message.clone());
                    let _ = updates.send(FeedUpdate::Error(message));
                    changed = true;
                }
            }
        }
        if changed {
            repaint();
        }
    }
}
