//! What the studio remembers between frames and between launches (eframe persistence): the
//! selected view, recently opened models, the Playground's settings, the Runs view's selection
//! and plot settings, the Traces and Compare views' settings, the theme. Runtime handles (threads, channels,
//! loaded models) live beside it in the views, never in it.

use engine::infer::SamplingConfig;
use serde::{Deserialize, Serialize};

use crate::views::View;
use crate::views::compare::CompareSettings;
use crate::views::runs::RunsSettings;
use crate::views::traces::TracesSettings;

/// Recent model paths kept.
pub const RECENT_MODELS_MAX: usize = 10;

/// The studio's persisted state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// The view shown in the central panel. Default: Home.
    pub selected_view: View,
    /// Models opened successfully, most recent first. Default: none.
    pub recent_models: Vec<String>,
    pub playground: PlaygroundSettings,
    /// The Runs view's selection and plot settings.
    pub runs: RunsSettings,
    /// The Traces view's run, colouring and analysis settings.
    pub traces: TracesSettings,
    /// The Compare view's checkpoints and the settings of its tabs.
    pub compare: CompareSettings,
    /// Dark theme (default) or light.
    pub dark_theme: bool,
}

impl Default for State {
    fn default() -> Self {
        Self {
            selected_view: View::default(),
            recent_models: Vec::new(),
            playground: PlaygroundSettings::default(),
            runs: RunsSettings::default(),
            traces: TracesSettings::default(),
            compare: CompareSettings::default(),
            dark_theme: true,
        }
    }
}

impl State {
    /// Puts `spec` first among the recent models.
    pub fn remember_model(&mut self, spec: &str) {
        self.recent_models.retain(|m| m != spec);
        self.recent_models.insert(0, spec.to_string());
        self.recent_models.truncate(RECENT_MODELS_MAX);
    }
}

/// The Playground's generation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlaygroundSettings {
    /// Temperature, top-k, top-p, min-p, repetition penalty and seed. Default: the engine's
    /// (temperature 0.7, seed 0), so a run can be repeated.
    pub sampling: SamplingConfig,
    /// Tokens generated at most. Default 128.
    pub max_new_tokens: usize,
    /// Wrap the prompt as a user message in the model's chat template when it has one.
    /// Default: true.
    pub use_chat_template: bool,
}

impl Default for PlaygroundSettings {
    fn default() -> Self {
        Self {
            sampling: SamplingConfig::default(),
            max_new_tokens: 128,
            use_chat_template: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_models_are_deduplicated_and_bounded() {
        let mut state = State::default();
        for i in 0..RECENT_MODELS_MAX + 3 {
            state.remember_model(&format!("m{i}"));
        }
        state.remember_model("m5");
        assert_eq!(state.recent_models.len(), RECENT_MODELS_MAX);
        assert_eq!(state.recent_models[0], "m5");
        assert_eq!(state.recent_models.iter().filter(|m| *m == "m5").count(), 1);
    }
}
