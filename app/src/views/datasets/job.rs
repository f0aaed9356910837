//! Work on a background thread with a progress bar and Cancel (the search and the token
//! lengths).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel};

/// Work on a background thread with progress and a cancel flag.
pub struct Job<T> {
    rx: Receiver<T>,
    pub done: Arc<AtomicUsize>,
    pub total: usize,
    pub(super) cancel: Arc<AtomicBool>,
}

impl<T: Send + 'static> Job<T> {
    pub(super) fn spawn(
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

    pub(super) fn poll(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }

    pub(super) fn progress_ui(&self, ui: &mut egui::Ui, what: &str) -> bool {
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
