//! The studio's views, one module each. The left panel switches between them (Ctrl+1…).

pub mod compare;
pub mod datasets;
pub mod home;
pub mod launch;
pub mod models;
pub mod playground;
pub mod runs;
pub mod traces;

use serde::{Deserialize, Serialize};

/// A view the left panel can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum View {
    /// What the studio is for, Try it, and the workspace at a glance.
    #[default]
    Home,
    /// Every run with live, overlaid curves.
    Runs,
    /// A run's completions token by token, and its entropy analytics.
    Traces,
    /// 2–4 checkpoints side by side: generation, scoring, evaluations, curves.
    Compare,
    /// The form that starts a run: every setting, presets, checks before Start.
    Launch,
    /// Dataset files: rows, roles, search, token lengths.
    Datasets,
    /// Models found on disk with their config summary.
    Models,
    /// Chat with a model; tokens coloured by entropy as they stream.
    Playground,
}

impl View {
    /// Every view, in the order the left panel lists them (Ctrl+1 is the first).
    pub const ALL: [Self; 8] = [
        Self::Home,
        Self::Runs,
        Self::Traces,
        Self::Compare,
        Self::Launch,
        Self::Datasets,
        Self::Models,
        Self::Playground,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Self::Home => "Home",
            Self::Runs => "Runs",
            Self::Traces => "Traces",
            Self::Compare => "Compare",
            Self::Launch => "Launch",
            Self::Datasets => "Datasets",
            Self::Models => "Models",
            Self::Playground => "Playground",
        }
    }

    /// The view named on the command line (`studio gui --view NAME`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.title().eq_ignore_ascii_case(name))
    }
}
