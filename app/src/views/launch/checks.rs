//! The checks before Start: `engine::train::preflight` run on a background job (on the
//! window's shared workspace connection) once typing pauses after a change, their results
//! matched to the document's revision, and what they allow.

use std::time::Duration;

use engine::train::preflight::{Preflight, Problem};

use super::Launch;
use crate::jobs::Job;
use crate::workspace_service::SharedWorkspace;

/// How long the form waits after the last edit before it checks the document.
const CHECK_DELAY: Duration = Duration::from_millis(300);

impl Launch {
    /// Starts a check of the document when it changed and the user paused typing; collects a
    /// finished check.
    pub(super) fn poll_check(&mut self, ctx: &egui::Context, workspace: SharedWorkspace) {
        if let Some((rev, job)) = &mut self.checking
            && let Some(result) = job.poll()
        {
            let rev = *rev;
            self.checking = None;
            let check = result.unwrap_or_else(|e| Preflight {
                problems: vec![Problem {
                    setting: String::new(),
                    message: format!("the check failed: {e}"),
                }],
                ..Preflight::default()
            });
            self.checked = Some((rev, check));
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
        let run = self.run_toml();
        let study = self.is_study().then(|| self.toml());
        let job = Job::spawn("launch-check", ctx, move |_| {
            let workspace = workspace.get();
            let mut result = engine::train::preflight::check_toml(&run, workspace.as_deref().ok());
            // Without the workspace the run could not start either: said where Start is.
            if let Err(e) = &workspace {
                result.problems.insert(
                    0,
                    Problem {
                        setting: String::new(),
                        message: e.clone(),
                    },
                );
            }
            if let Some(study) = study
                && let Err(e) = engine::train::study::Study::from_toml(&study, "the study")
            {
                result.problems.insert(
                    0,
                    Problem {
                        setting: String::new(),
                        message: e.to_string(),
                    },
                );
            }
            result
        });
        self.checking = Some((self.revision, job));
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

    /// Whether Start is possible: the check of this revision passed, every field parses and no
    /// file is being read into the form.
    pub fn can_start(&self) -> bool {
        self.field_errors.is_empty()
            && !self.opening_file()
            && self.current_check().is_some_and(Preflight::ok)
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
