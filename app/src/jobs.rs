//! The one way the window runs background work, so a frame never waits on a disk, a model or
//! SQLite:
//!
//! - [`Job`]: one piece of work on its own named thread (`studio-NAME`), its answer on a
//!   bounded channel, with [`Progress`] (done of total), a cancel flag the work reads, and a
//!   panic in the work turned into an error message. Polled each frame; dropping it cancels.
//! - [`Worker`]: a long-lived named thread that owns state (an opened model, tokenizers, a
//!   connection) and handles requests one at a time: requests in and events out through bounded
//!   channels, jobs cancelled by id, and a panic while handling a request turned into events
//!   that say so (the thread goes on with the next request).
//!
//! Both wake the window (a [`Waker`]) whenever they have something to show.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Wakes the window when background work has something to show.
#[derive(Clone)]
pub struct Waker(Arc<dyn Fn() + Send + Sync>);

impl Waker {
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> Self {
        Self(Arc::new(wake))
    }

    /// A waker whose window is set later ([`LateWaker::set`]): for threads started before the
    /// first frame.
    pub fn late() -> (Self, LateWaker) {
        let slot: Arc<Mutex<Option<egui::Context>>> = Arc::new(Mutex::new(None));
        let reader = slot.clone();
        let waker = Self::new(move || {
            if let Ok(guard) = reader.lock()
                && let Some(ctx) = guard.as_ref()
            {
                ctx.request_repaint();
            }
        });
        (waker, LateWaker(slot))
    }

    pub fn wake(&self) {
        (self.0)();
    }
}

impl From<&egui::Context> for Waker {
    fn from(ctx: &egui::Context) -> Self {
        let ctx = ctx.clone();
        Self::new(move || ctx.request_repaint())
    }
}

/// Where a [`Waker::late`] finds its window.
#[derive(Clone)]
pub struct LateWaker(Arc<Mutex<Option<egui::Context>>>);

impl LateWaker {
    /// Sets the window to wake (the first time; later calls are cheap no-ops).
    pub fn set(&self, ctx: &egui::Context) {
        if let Ok(mut guard) = self.0.lock()
            && guard.is_none()
        {
            *guard = Some(ctx.clone());
        }
    }
}

/// What a panic carried, as text.
pub fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs `work`, turning a panic into the message the window shows.
pub fn catch<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(work)).map_err(|panic| {
        format!(
            "internal error (a bug in the studio): {}",
            panic_message(panic.as_ref())
        )
    })
}

/// Starts a thread named `name` (the OS and debuggers show it).
pub fn spawn_named(name: &str, work: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(work)
        .map(drop)
}

/// How far a [`Job`] is, and whether it was asked to stop.
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicUsize,
    total: AtomicUsize,
    cancel: AtomicBool,
}

impl Progress {
    pub fn set_total(&self, total: usize) {
        self.total.store(total, Ordering::Relaxed);
    }

    pub fn set_done(&self, done: usize) {
        self.done.store(done, Ordering::Relaxed);
    }

    /// Whether the window asked the work to stop (it should return soon with what it has).
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// (done, total).
    pub fn get(&self) -> (usize, usize) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}

/// One piece of background work and its answer.
pub struct Job<T> {
    name: String,
    answer: Receiver<Result<T, String>>,
    progress: Arc<Progress>,
    started: Instant,
}

impl<T: Send + 'static> Job<T> {
    /// Starts `work` on a thread named `studio-NAME`; `waker` is woken when it is done.
    pub fn spawn(
        name: &str,
        waker: impl Into<Waker>,
        work: impl FnOnce(&Progress) -> T + Send + 'static,
    ) -> Self {
        let (tx, answer) = sync_channel(1);
        let progress = Arc::new(Progress::default());
        let shared = progress.clone();
        let waker = waker.into();
        let sender = tx.clone();
        let spawned = spawn_named(&format!("studio-{name}"), move || {
            let out = catch(|| work(&shared));
            // The window may have dropped the job: then nobody wants the answer.
            let _ = sender.send(out);
            waker.wake();
        });
        if let Err(e) = spawned {
            let _ = tx.send(Err(format!("could not start the {name} thread: {e}")));
        }
        Self {
            name: name.to_string(),
            answer,
            progress,
            started: Instant::now(),
        }
    }
}

impl<T> Job<T> {
    /// The answer, once: `Err` when the work panicked or its thread could not start.
    pub fn poll(&mut self) -> Option<Result<T, String>> {
        match self.answer.try_recv() {
            Ok(out) => Some(out),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err(format!(
                "the {} thread ended without an answer",
                self.name
            ))),
        }
    }

    /// Asks the work to stop.
    pub fn cancel(&self) {
        self.progress.cancel.store(true, Ordering::Relaxed);
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// How long it has been running.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A progress bar ("WHAT done/total") and Cancel; returns whether Cancel was clicked (the
    /// job is then cancelled).
    pub fn progress_ui(&self, ui: &mut egui::Ui, what: &str) -> bool {
        let (done, total) = self.progress.get();
        let fraction = done as f32 / total.max(1) as f32;
        ui.add(
            egui::ProgressBar::new(fraction)
                .desired_width(180.0)
                .text(format!("{what} {done}/{total}")),
        );
        ui.ctx().request_repaint_after(Duration::from_millis(100));
        let clicked = ui.button("Cancel").clicked();
        if clicked {
            self.cancel();
        }
        clicked
    }
}

impl<T: Send + 'static> Job<Result<T, String>> {
    /// [`Job::poll`] of work that answers a `Result`, the two errors as one.
    pub fn poll_flat(&mut self) -> Option<Result<T, String>> {
        self.poll().map(|r| r.and_then(|x| x))
    }
}

impl<T> Drop for Job<T> {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// The window has gone: a [`Worker`] thread should end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

/// Why a request could not be handed to a [`Worker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// Too many requests are waiting.
    Busy,
    /// Its thread has ended.
    Stopped,
}

/// What a [`Worker`]'s handler sends events through.
pub struct Outbox<Ev> {
    events: SyncSender<Ev>,
    waker: Waker,
    cancelled_through: Arc<AtomicU64>,
}

impl<Ev> Outbox<Ev> {
    /// Sends an event (waiting while the window is this far behind) and wakes the window.
    pub fn send(&self, event: Ev) -> Result<(), Gone> {
        self.events.send(event).map_err(|_| Gone)?;
        self.waker.wake();
        Ok(())
    }

    /// Whether the job with this id has been cancelled.
    pub fn cancelled(&self, id: u64) -> bool {
        self.cancelled_through.load(Ordering::SeqCst) >= id
    }

    pub fn waker(&self) -> &Waker {
        &self.waker
    }
}

/// A long-lived thread that handles requests one at a time.
pub struct Worker<Req, Ev> {
    requests: SyncSender<Req>,
    events: Receiver<Ev>,
    cancelled_through: Arc<AtomicU64>,
}

impl<Req: Send + 'static, Ev: Send + 'static> Worker<Req, Ev> {
    /// Starts the thread `name`: `init` makes its state there (it never leaves the thread),
    /// `handle` answers each request through the [`Outbox`], and `on_panic` says what to send
    /// when handling one panicked. At most `requests` requests and `events` events wait.
    pub fn spawn<S>(
        name: &str,
        waker: impl Into<Waker>,
        (requests, events): (usize, usize),
        init: impl FnOnce() -> S + Send + 'static,
        mut handle: impl FnMut(&mut S, &Req, &Outbox<Ev>) -> Result<(), Gone> + Send + 'static,
        on_panic: impl Fn(&Req, String) -> Vec<Ev> + Send + 'static,
    ) -> std::io::Result<Self> {
        let (request_tx, request_rx) = sync_channel::<Req>(requests);
        let (event_tx, event_rx) = sync_channel::<Ev>(events);
        let cancelled_through = Arc::new(AtomicU64::new(0));
        let outbox = Outbox {
            events: event_tx,
            waker: waker.into(),
            cancelled_through: cancelled_through.clone(),
        };
        let thread = name.to_string();
        spawn_named(name, move || {
            let mut state = init();
            while let Ok(request) = request_rx.recv() {
                match catch(|| handle(&mut state, &request, &outbox)) {
                    Ok(Ok(())) => {}
                    Ok(Err(Gone)) => break,
                    Err(message) => {
                        tracing::error!("{thread}: {message}");
                        for event in on_panic(&request, message) {
                            if outbox.send(event).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            tracing::debug!("{thread}: the window has gone, ending");
        })?;
        Ok(Self {
            requests: request_tx,
            events: event_rx,
            cancelled_through,
        })
    }
}

impl<Req, Ev> Worker<Req, Ev> {
    /// Hands a request to the thread without waiting.
    pub fn send(&self, request: Req) -> Result<(), SendError> {
        self.requests.try_send(request).map_err(|e| match e {
            TrySendError::Full(_) => SendError::Busy,
            TrySendError::Disconnected(_) => SendError::Stopped,
        })
    }

    /// The next event, if one is waiting; `Err(Stopped)` once the thread is gone.
    pub fn try_event(&self) -> Result<Option<Ev>, SendError> {
        match self.events.try_recv() {
            Ok(event) => Ok(Some(event)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(SendError::Stopped),
        }
    }

    /// Every event waiting, for at most `budget`; `Err(Stopped)` once the thread is gone and
    /// nothing is left.
    pub fn drain(&self, budget: Duration) -> Result<Vec<Ev>, SendError> {
        let start = Instant::now();
        let mut out = Vec::new();
        loop {
            match self.try_event() {
                Ok(Some(event)) => out.push(event),
                Ok(None) => return Ok(out),
                Err(stopped) if out.is_empty() => return Err(stopped),
                Err(_) => return Ok(out),
            }
            if start.elapsed() > budget {
                return Ok(out);
            }
        }
    }

    /// Cancels the job with this id and every earlier one, started or not.
    pub fn cancel_through(&self, id: u64) {
        self.cancelled_through.fetch_max(id, Ordering::SeqCst);
    }
}

impl<Req, Ev> Drop for Worker<Req, Ev> {
    fn drop(&mut self) {
        self.cancelled_through.store(u64::MAX, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait<T>(job: &mut Job<T>) -> Result<T, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(out) = job.poll() {
                return out;
            }
            assert!(Instant::now() < deadline, "the job did not finish");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn a_job_answers_on_a_named_thread_with_its_progress() {
        let mut job = Job::spawn("test-job", Waker::new(|| {}), |progress| {
            progress.set_total(3);
            progress.set_done(3);
            std::thread::current().name().map(str::to_string)
        });
        assert_eq!(wait(&mut job), Ok(Some("studio-test-job".to_string())));
        assert_eq!(job.progress().get(), (3, 3));
    }

    #[test]
    fn a_panic_becomes_a_message_and_cancel_reaches_the_work() {
        let mut job: Job<()> = Job::spawn("test-panic", Waker::new(|| {}), |_| panic!("boom"));
        let error = wait(&mut job).expect_err("a panic is an error");
        assert!(
            error.contains("boom") && error.contains("internal error"),
            "{error}"
        );

        let mut job = Job::spawn("test-cancel", Waker::new(|| {}), |progress| {
            while !progress.cancelled() {
                std::thread::sleep(Duration::from_millis(1));
            }
            "stopped"
        });
        job.cancel();
        assert_eq!(wait(&mut job), Ok("stopped"));
    }

    #[test]
    fn a_worker_survives_a_panic_and_cancels_by_id() {
        let worker: Worker<u64, String> = Worker::spawn(
            "studio-test-worker",
            Waker::new(|| {}),
            (4, 4),
            || 0u64,
            |seen, &id, out| {
                *seen += 1;
                assert!(id != 2, "request two");
                let text = if out.cancelled(id) {
                    format!("{id} cancelled")
                } else {
                    format!("{id} done, {seen} seen")
                };
                out.send(text)
            },
            |id, message| vec![format!("{id} failed: {message}")],
        )
        .expect("spawn");
        worker.cancel_through(3);
        for id in [2, 3, 4] {
            worker.send(id).expect("send");
        }
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < 3 {
            assert!(Instant::now() < deadline, "events: {got:?}");
            got.extend(worker.drain(Duration::from_millis(5)).expect("running"));
        }
        assert!(got[0].starts_with("2 failed") && got[0].contains("request two"));
        assert_eq!(got[1..], ["3 cancelled", "4 done, 3 seen"]);
    }
}
