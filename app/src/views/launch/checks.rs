//! The checks before Start: `engine::train::preflight` run on a background thread once typing
//! pauses after a change, their results matched to the document's revision, and what they allow.

use std::sync::mpsc::{TryRecvError, channel};
use std::time::Duration;

use engine::train::preflight::Preflight;

use super::Launch;

/// How long the form waits after the last edit before it checks the document.
const CHECK_DELAY: Duration = Duration::from_millis(300);

impl Launch {
    /// Starts a check of the document when it changed and the user paused typing; collects a
    /// finished check.
    pub(super) fn poll_check(&mut self, ctx: &egui::Context, workspace: &std::path::Path) {
        if let Some((rev, rx)) = &self.checking {
            match rx.try_recv() {
                Ok(result) => {
                    self.checked = Some((*rev, result));
                    self.checking = None;
                }
                Err(TryRecvError::Disconnected) => self.checking = None,
                Err(TryRecvError::Empty) => {}
            }
        }
        let stale = self
            .checked
            .as_ref()
            .is_none_or(|(r, _)| *r != self.revision);
        let in_flight = self
            .checking
            .as_ref()
            .is_some_and(|(r, _)| *r == self.revision);
        if !stale || in_flight {
            return;
        }
        let waited = self.changed_at.is_none_or(|t| t.elapsed() >= CHECK_DELAY);
        if !waited || self.checking.is_some() {
            ctx.request_repaint_after(CHECK_DELAY);
            return;
        }
        let (tx, rx) = channel();
        let run = self.run_toml();
        let study = self.is_study().then(|| self.toml());
        let dir = workspace.to_path_buf();
        let repaint = ctx.clone();
        std::thread::spawn(move || {
            let workspace = engine::store::Workspace::open(&dir).ok();
            let mut result = engine::train::preflight::check_toml(&run, workspace.as_ref());
            if let Some(study) = study
                && let Err(e) = engine::train::study::Study::from_toml(&study, "the study")
            {
                result.problems.insert(
                    0,
                    engine::train::preflight::Problem {
                        setting: String::new(),
                        message: e.to_string(),
                    },
                );
            }
            let _ = tx.send(result);
            repaint.request_repaint();
        });
        self.checking = Some((self.revision, rx));
    }

    /// The current check, if it is of the document as it is now.
    pub(super) fn current_check(&self) -> Option<&Preflight> {
        self.checked
            .as_ref()
            .filter(|(r, _)| *r == self.revision)
            .map(|(_, p)| p)
    }

    /// Whether the document as it is now has been checked.
    pub fn checked(&self) -> bool {
        self.current_check().is_some()
    }

    /// Whether Start is possible: the check of this revision passed and every field parses.
    pub fn can_start(&self) -> bool {
        self.field_errors.is_empty() && self.current_check().is_some_and(Preflight::ok)
    }

    pub(super) fn problem_for(&self, key: &str) -> Option<String> {
        if let Some(e) = self.field_errors.get(key) {
            return Some(e.clone());
        }
        self.current_check()?
            .problems
            .iter()
            .find(|p| p.setting == key)
            .map(|p| p.message.clone())
    }
}
