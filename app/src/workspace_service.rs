//! The window's workspace: the `studio-workspace` thread opens it once and owns its two
//! connections, so the UI thread never waits on SQLite.
//!
//! - Views send typed [`Request`]s through a bounded channel and get a [`Ticket`] at once; the
//!   answer comes on the ticket's own bounded channel, and the view draws what it has (or
//!   "workspace busy") until then. The service handles requests in order on its connection.
//! - Threads that call the engine with a `&Workspace` (the traces loader, Compare's threads,
//!   Launch's checks) borrow the second connection through a [`SharedWorkspace`], so their
//!   reads never queue behind a write that waits for another process's lock.
//! - What the service is doing and what last failed are shared with the window
//!   ([`WorkspaceService::status`]): a request that has waited longer than [`BUSY_AFTER`] makes
//!   the status busy; a workspace that cannot be opened (corrupt, unreadable, read-only) or a
//!   request that failed on it is an error, until it opens or a request succeeds. The service
//!   tries to open it again every [`REOPEN_EVERY`] while it is not open.
//!
//! The feed ([`crate::feed`]) reads runs and series through its own connection on its own thread.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use engine::data::RoleMapping;
use engine::store::{DatasetRecord, RunId, Workspace};

use crate::jobs::{Waker, catch, spawn_named};

/// A request waiting this long makes the workspace busy (another process holds its lock).
pub const BUSY_AFTER: Duration = Duration::from_millis(250);
/// How often the service tries again to open a workspace that would not open.
pub const REOPEN_EVERY: Duration = Duration::from_secs(2);
/// Requests that may wait for the service.
const QUEUE: usize = 64;

/// What the window knows of the workspace.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum WorkspaceStatus {
    #[default]
    Ok,
    /// A request has waited since `since` (another process holds the workspace's lock).
    Busy { what: String, since: Instant },
    /// The workspace could not be opened or read, or a request on it failed.
    Error(String),
}

impl WorkspaceStatus {
    /// The status line's text, or `None` when all is well.
    pub fn text(&self) -> Option<String> {
        match self {
            Self::Ok => None,
            Self::Busy { what, since } => Some(format!(
                "workspace busy: waiting {:.0} s to {what} (another process holds its lock)",
                since.elapsed().as_secs_f64().floor()
            )),
            Self::Error(message) => Some(format!("workspace: {message}")),
        }
    }

    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Busy { .. })
    }
}

/// What the service answers: the value, or why not.
type Answer<T> = Result<T, String>;
type Reply<T> = SyncSender<Answer<T>>;

/// What the service is asked.
pub enum Request {
    /// The dataset files opened in the workspace, newest first.
    Datasets(Reply<Vec<DatasetRecord>>),
    /// Remember that a dataset file was opened; answers the role mapping saved for it.
    OpenedDataset {
        path: String,
        reply: Reply<Option<RoleMapping>>,
    },
    SaveMapping {
        path: String,
        mapping: RoleMapping,
        reply: Reply<()>,
    },
    /// Register a run and start its worker process.
    StartRun {
        toml: String,
        origin: String,
        exe: PathBuf,
        reply: Reply<(RunId, Child)>,
    },
    StartStudy {
        toml: String,
        exe: PathBuf,
        reply: Reply<Child>,
    },
    Resume {
        run: RunId,
        exe: PathBuf,
        reply: Reply<Child>,
    },
    Stop {
        run: RunId,
        reply: Reply<()>,
    },
    /// Import a `trainer_state.json` as a run.
    Import {
        path: PathBuf,
        reply: Reply<RunId>,
    },
}

impl Request {
    /// What it does, as the status line says it ("waiting to …").
    fn what(&self) -> String {
        match self {
            Self::Datasets(_) => "list the datasets".into(),
            Self::OpenedDataset { .. } => "remember the dataset".into(),
            Self::SaveMapping { .. } => "save the role mapping".into(),
            Self::StartRun { .. } => "register the run".into(),
            Self::StartStudy { .. } => "start the study".into(),
            Self::Resume { run, .. } => format!("resume run {run}"),
            Self::Stop { run, .. } => format!("stop run {run}"),
            Self::Import { .. } => "import the run".into(),
        }
    }
}

/// An answer on its way.
pub struct Ticket<T> {
    answer: Receiver<Answer<T>>,
    what: String,
    asked: Instant,
}

impl<T> Ticket<T> {
    /// The answer, once it has come.
    pub fn poll(&mut self) -> Option<Answer<T>> {
        match self.answer.try_recv() {
            Ok(answer) => Some(answer),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err(format!(
                "could not {}: the workspace service stopped",
                self.what
            ))),
        }
    }

    /// How long it has waited.
    pub fn waited(&self) -> Duration {
        self.asked.elapsed()
    }

    /// Whether it has waited long enough to say the workspace is busy.
    pub fn is_slow(&self) -> bool {
        self.waited() >= BUSY_AFTER
    }

    pub fn what(&self) -> &str {
        &self.what
    }
}

#[derive(Debug, Default)]
struct State {
    /// Why the workspace would not open, while it does not.
    open_error: Option<String>,
    /// The request being handled, and since when.
    current: Option<(String, Instant)>,
    /// The last request that failed on the workspace itself, and why (cleared by the next
    /// request that does not).
    failed: Option<(String, String)>,
}

struct Shared {
    dir: PathBuf,
    state: Mutex<State>,
    /// The connection lent to other threads: `None` until the first try to open.
    lent: Mutex<Option<Answer<Arc<Workspace>>>>,
    opened: Condvar,
}

/// The window's handle on the service.
pub struct WorkspaceService {
    requests: SyncSender<Request>,
    shared: Arc<Shared>,
}

/// The connection other threads borrow (cheap to clone; [`SharedWorkspace::get`] may wait).
#[derive(Clone)]
pub struct SharedWorkspace(Arc<Shared>);

impl SharedWorkspace {
    /// The workspace, or why it is not open. Waits for the service's first try to open it, so
    /// it is called on background threads only, never on the UI thread.
    pub fn get(&self) -> Answer<Arc<Workspace>> {
        let Ok(mut lent) = self.0.lent.lock() else {
            return Err("the workspace service panicked".into());
        };
        while lent.is_none() {
            lent = match self.0.opened.wait(lent) {
                Ok(l) => l,
                Err(_) => return Err("the workspace service panicked".into()),
            };
        }
        lent.clone()
            .unwrap_or_else(|| Err("the workspace is not open".into()))
    }

    pub fn dir(&self) -> &Path {
        &self.0.dir
    }
}

impl WorkspaceService {
    /// Starts the service on the workspace at `dir` (opened at once, on its thread).
    pub fn start(dir: PathBuf, waker: Waker) -> Self {
        let (requests, inbox) = std::sync::mpsc::sync_channel(QUEUE);
        let shared = Arc::new(Shared {
            dir,
            state: Mutex::new(State::default()),
            lent: Mutex::new(None),
            opened: Condvar::new(),
        });
        let thread_shared = shared.clone();
        let spawned = spawn_named("studio-workspace", move || {
            Service {
                shared: thread_shared,
                workspace: None,
                waker,
            }
            .run(&inbox);
        });
        if let Err(e) = spawned {
            let message = format!("could not start the workspace thread: {e}");
            shared.set_lent(Err(message.clone()));
            shared.update(|s| s.open_error = Some(message));
        }
        Self { requests, shared }
    }

    /// The connection for background threads.
    pub fn shared(&self) -> SharedWorkspace {
        SharedWorkspace(self.shared.clone())
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The status now: never waits (the service holds its state's lock only to update it).
    pub fn status(&self) -> WorkspaceStatus {
        let Ok(state) = self.shared.state.lock() else {
            return WorkspaceStatus::Error("the workspace service panicked".into());
        };
        if let Some(e) = &state.open_error {
            return WorkspaceStatus::Error(e.clone());
        }
        if let Some((what, since)) = &state.current
            && since.elapsed() >= BUSY_AFTER
        {
            return WorkspaceStatus::Busy {
                what: what.clone(),
                since: *since,
            };
        }
        match &state.failed {
            Some((what, why)) => WorkspaceStatus::Error(format!("could not {what}: {why}")),
            None => WorkspaceStatus::Ok,
        }
    }

    fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Ticket<T> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let request = make(reply);
        let what = request.what();
        if let Err(e) = self.requests.try_send(request) {
            let why = match e {
                TrySendError::Full(_) => "too many requests are waiting for the workspace",
                TrySendError::Disconnected(_) => "the workspace service stopped",
            };
            // The request (with its reply) is dropped: the ticket says why instead.
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let _ = tx.send(Err(format!("could not {what}: {why}")));
            return Ticket {
                answer: rx,
                what,
                asked: Instant::now(),
            };
        }
        Ticket {
            answer,
            what,
            asked: Instant::now(),
        }
    }

    pub fn datasets(&self) -> Ticket<Vec<DatasetRecord>> {
        self.ask(Request::Datasets)
    }

    pub fn opened_dataset(&self, path: &str) -> Ticket<Option<RoleMapping>> {
        let path = path.to_string();
        self.ask(|reply| Request::OpenedDataset { path, reply })
    }

    pub fn save_mapping(&self, path: &str, mapping: RoleMapping) -> Ticket<()> {
        let path = path.to_string();
        self.ask(|reply| Request::SaveMapping {
            path,
            mapping,
            reply,
        })
    }

    pub fn start_run(&self, toml: &str, origin: &str, exe: &Path) -> Ticket<(RunId, Child)> {
        let (toml, origin, exe) = (toml.to_string(), origin.to_string(), exe.to_path_buf());
        self.ask(|reply| Request::StartRun {
            toml,
            origin,
            exe,
            reply,
        })
    }

    pub fn start_study(&self, toml: &str, exe: &Path) -> Ticket<Child> {
        let (toml, exe) = (toml.to_string(), exe.to_path_buf());
        self.ask(|reply| Request::StartStudy { toml, exe, reply })
    }

    pub fn resume(&self, run: RunId, exe: &Path) -> Ticket<Child> {
        let exe = exe.to_path_buf();
        self.ask(|reply| Request::Resume { run, exe, reply })
    }

    pub fn stop(&self, run: RunId) -> Ticket<()> {
        self.ask(|reply| Request::Stop { run, reply })
    }

    pub fn import(&self, path: &Path) -> Ticket<RunId> {
        let path = path.to_path_buf();
        self.ask(|reply| Request::Import { path, reply })
    }
}

impl Shared {
    fn update(&self, change: impl FnOnce(&mut State)) {
        if let Ok(mut state) = self.state.lock() {
            change(&mut state);
        }
    }

    fn set_lent(&self, lent: Answer<Arc<Workspace>>) {
        if let Ok(mut slot) = self.lent.lock() {
            *slot = Some(lent);
        }
        self.opened.notify_all();
    }
}

/// The service thread's side.
struct Service {
    shared: Arc<Shared>,
    workspace: Option<Workspace>,
    waker: Waker,
}

/// The error for a failure to open, naming the folder.
fn open_error(dir: &Path, e: &engine::store::StoreError) -> String {
    format!("could not open the workspace at {}: {e}", dir.display())
}

impl Service {
    fn run(&mut self, inbox: &Receiver<Request>) {
        self.open();
        loop {
            let request = match inbox.recv_timeout(REOPEN_EVERY) {
                Ok(request) => Some(request),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if self.workspace.is_none() {
                self.open();
            }
            if let Some(request) = request {
                self.handle(request);
            }
        }
    }

    /// Opens both connections; a failure is kept for the status line and tried again later.
    fn open(&mut self) {
        let dir = self.shared.dir.clone();
        let opened = catch(|| {
            let own = Workspace::open(&dir).map_err(|e| open_error(&dir, &e))?;
            let lent = Workspace::open(&dir).map_err(|e| open_error(&dir, &e))?;
            Ok::<_, String>((own, lent))
        })
        .and_then(|r| r);
        match opened {
            Ok((own, lent)) => {
                self.workspace = Some(own);
                self.shared.set_lent(Ok(Arc::new(lent)));
                self.shared.update(|s| s.open_error = None);
            }
            Err(e) => {
                let was = self
                    .shared
                    .state
                    .lock()
                    .ok()
                    .and_then(|s| s.open_error.clone());
                if was.as_ref() != Some(&e) {
                    tracing::warn!("{e}");
                }
                self.shared.set_lent(Err(e.clone()));
                self.shared.update(|s| s.open_error = Some(e));
            }
        }
        self.waker.wake();
    }

    fn handle(&mut self, request: Request) {
        let what = request.what();
        match request {
            Request::Datasets(reply) => {
                self.answer(&what, reply, |ws| ws.datasets().map_err(|e| e.to_string()))
            }
            Request::OpenedDataset { path, reply } => self.answer(&what, reply, |ws| {
                let saved = ws
                    .dataset(&path)
                    .map_err(|e| e.to_string())?
                    .and_then(|r| r.mapping::<RoleMapping>());
                ws.touch_dataset(&path).map_err(|e| e.to_string())?;
                Ok(saved)
            }),
            Request::SaveMapping {
                path,
                mapping,
                reply,
            } => self.answer(&what, reply, |ws| {
                ws.save_dataset_mapping(&path, Some(&mapping))
                    .map_err(|e| e.to_string())
            }),
            Request::StartRun {
                toml,
                origin,
                exe,
                reply,
            } => self.answer(&what, reply, |ws| {
                engine::train::launch::start_run(ws, &toml, &origin, &exe)
                    .map(|(run, _, child)| (run, child))
                    .map_err(|e| e.to_string())
            }),
            Request::StartStudy { toml, exe, reply } => self.answer(&what, reply, |ws| {
                engine::train::launch::spawn_study(ws, &toml, &exe).map_err(|e| e.to_string())
            }),
            Request::Resume { run, exe, reply } => self.answer(&what, reply, |ws| {
                engine::train::launch::resume_run(ws, run, &exe).map_err(|e| e.to_string())
            }),
            Request::Stop { run, reply } => self.answer(&what, reply, |ws| {
                engine::train::launch::request_stop(ws, run)
                    .map(drop)
                    .map_err(|e| e.to_string())
            }),
            Request::Import { path, reply } => self.answer(&what, reply, |ws| {
                ws.import_trainer_state(&path)
                    .map(|imported| imported.run)
                    .map_err(|e| e.to_string())
            }),
        }
    }

    /// Runs `work` on the workspace (an error when it is not open), keeping the status up to
    /// date, and sends the answer.
    fn answer<T>(
        &mut self,
        what: &str,
        reply: Reply<T>,
        work: impl FnOnce(&Workspace) -> Answer<T>,
    ) {
        let Some(ws) = &self.workspace else {
            let why = self
                .shared
                .state
                .lock()
                .ok()
                .and_then(|s| s.open_error.clone())
                .unwrap_or_else(|| "the workspace is not open".into());
            let _ = reply.send(Err(why));
            self.waker.wake();
            return;
        };
        self.shared
            .update(|s| s.current = Some((what.to_string(), Instant::now())));
        let answer = catch(|| work(ws)).and_then(|a| a);
        // Only the workspace's own failures are its status (a bad run config is the view's).
        let failed = answer
            .as_ref()
            .err()
            .filter(|e| is_workspace_failure(e))
            .map(|e| (what.to_string(), locked(e)));
        self.shared.update(|s| {
            s.current = None;
            s.failed = failed;
        });
        // The view may have gone; then nobody wants the answer.
        let _ = reply.send(answer.map_err(|e| locked(&e)));
        self.waker.wake();
    }
}

/// Whether an error is the workspace's own (its database or folder), not the request's.
fn is_workspace_failure(error: &str) -> bool {
    error.contains("workspace database") || error.contains("workspace folder")
}

/// SQLite's "database is locked" said as what it means here.
fn locked(error: &str) -> String {
    if error.contains("database is locked") {
        format!(
            "{error} (another process held the workspace's write lock for {} s)",
            engine::store::BUSY_TIMEOUT.as_secs()
        )
    } else {
        error.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait<T>(mut ticket: Ticket<T>) -> Answer<T> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(answer) = ticket.poll() {
                return answer;
            }
            assert!(Instant::now() < deadline, "no answer to {}", ticket.what());
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn requests_are_answered_and_the_connection_is_lent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let service = WorkspaceService::start(dir.path().join("ws"), Waker::new(|| {}));
        assert_eq!(wait(service.opened_dataset("/d/a.jsonl")), Ok(None));
        let mapping = RoleMapping {
            prompt: Some("q".into()),
            ..RoleMapping::default()
        };
        assert_eq!(
            wait(service.save_mapping("/d/a.jsonl", mapping.clone())),
            Ok(())
        );
        assert_eq!(
            wait(service.opened_dataset("/d/a.jsonl")),
            Ok(Some(mapping))
        );
        let listed = wait(service.datasets()).expect("listed");
        assert_eq!(listed[0].path, "/d/a.jsonl");
        let lent = service.shared().get().expect("open");
        assert_eq!(lent.datasets().expect("read").len(), 1);
        assert_eq!(service.status(), WorkspaceStatus::Ok);
    }

    #[test]
    fn a_corrupt_workspace_is_an_error_in_the_status_and_every_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(&ws).expect("mkdir");
        std::fs::write(ws.join(engine::store::DB_FILE_NAME), vec![7u8; 4096]).expect("write");
        let service = WorkspaceService::start(ws, Waker::new(|| {}));
        let error = wait(service.datasets()).expect_err("not a database");
        assert!(error.contains("could not open the workspace"), "{error}");
        assert!(service.shared().get().is_err());
        match service.status() {
            WorkspaceStatus::Error(e) => assert_eq!(e, error),
            other => panic!("status {other:?}"),
        }
    }
}
