//! The Score a text tab: one text teacher-forced under each checkpoint, one token view coloured
//! by Δlog-prob, KL or either's entropy (`ScoreColouring`, `ScoredShown`), the tokens where they
//! disagree most, and how many forking tokens they share.

use std::collections::BTreeSet;

use egui::RichText;
use serde::{Deserialize, Serialize};

use super::worker::{Job, Scored};
use super::{CompareSettings, CompareTab, CompareView, Running};
use crate::context::AppContext;
use crate::views::traces::{drawable, empty_ui};
use crate::widgets::token_heatmap::{HeatmapToken, gradient_legend_ui, heat_color};
use crate::widgets::token_view::{
    Colouring, Marks, RankBucket, TokenView, ViewToken, advantage_color,
};

/// What the scored text's backgrounds show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ScoreColouring {
    /// log p under the chosen checkpoint minus under the first (green: it finds the token
    /// likelier).
    #[default]
    DeltaLogProb,
    /// KL(first ‖ second) of the next-token distributions.
    Kl,
    /// The chosen checkpoint's entropy.
    Entropy,
    /// The chosen checkpoint's log-prob.
    LogProb,
}

impl ScoreColouring {
    pub const ALL: [Self; 4] = [Self::DeltaLogProb, Self::Kl, Self::Entropy, Self::LogProb];

    pub fn label(self) -> &'static str {
        match self {
            Self::DeltaLogProb => "Δ log-prob",
            Self::Kl => "KL([1] || [2])",
            Self::Entropy => "Entropy",
            Self::LogProb => "Log-prob",
        }
    }

    /// The default top of the scale.
    pub(super) fn default_scale(self) -> f32 {
        match self {
            Self::DeltaLogProb => 2.0,
            Self::Kl => 1.0,
            Self::Entropy => 4.0,
            Self::LogProb => 6.0,
        }
    }
}

/// A scored text as shown.
pub(super) struct ScoredShown {
    scored: Scored,
    specs: Vec<String>,
    /// (colouring, slot, scale bits) the view was made for.
    key: (ScoreColouring, usize),
    view: TokenView,
    /// Token indices by KL, largest first.
    ranked: Vec<usize>,
}

impl CompareView {
    /// Puts a text (and the prompt it answered) in the Score tab, and scores it as soon as two
    /// checkpoints are picked.
    pub fn score_text(&mut self, settings: &mut CompareSettings, prompt: &str, text: &str) {
        settings.score_prompt = prompt.to_string();
        settings.score_text = text.to_string();
        settings.tab = CompareTab::Score;
        self.scored = None;
        self.score_error = None;
        self.score_soon = true;
    }

    /// The scored text shown, or why scoring failed.
    pub fn scored(&self) -> Option<Result<&Scored, &str>> {
        match (&self.scored, &self.score_error) {
            (_, Some(e)) => Some(Err(e.as_str())),
            (Some(s), None) => Some(Ok(&s.scored)),
            (None, None) => None,
        }
    }

    pub(super) fn score_ui(
        &mut self,
        ui: &mut egui::Ui,
        ctx: &AppContext,
        settings: &mut CompareSettings,
    ) {
        ui.horizontal(|ui| {
            ui.label("Prompt");
            ui.label(
                RichText::new(
                    "fed to each checkpoint as its run saw prompts, not scored; may be empty",
                )
                .weak(),
            );
        });
        ui.add(
            egui::TextEdit::multiline(&mut settings.score_prompt)
                .desired_rows(1)
                .desired_width(f32::INFINITY),
        );
        ui.label("Text to score");
        ui.add(
            egui::TextEdit::multiline(&mut settings.score_text)
                .desired_rows(3)
                .desired_width(f32::INFINITY)
                .hint_text("Type a text, or press \"Score in Compare\" on a rollout in Traces"),
        );
        let busy = self.running.is_some_and(|r| r.1 == Running::Score);
        let soon = std::mem::take(&mut self.score_soon);
        ui.horizontal(|ui| {
            ui.label("forking share ρ");
            ui.add(
                egui::DragValue::new(&mut settings.rho)
                    .range(0.01..=1.0)
                    .speed(0.01),
            )
            .on_hover_text("Each checkpoint's forking tokens are its top ρ of the text by entropy");
            if busy {
                if ui.button("Cancel").clicked() {
                    self.cancel();
                }
                ui.spinner();
            } else if ui
                .add_enabled(!settings.score_text.is_empty(), egui::Button::new("Score"))
                .on_hover_text("Teacher-forced: one forward pass per checkpoint")
                .clicked()
                || (soon && !settings.score_text.is_empty())
            {
                let prompt = settings.score_prompt.trim();
                let job = Job::Score {
                    specs: settings.specs.clone(),
                    prompt: (!prompt.is_empty()).then(|| settings.score_prompt.clone()),
                    chat: settings.chat,
                    text: settings.score_text.clone(),
                    rho: settings.rho,
                };
                self.start(ctx, ui.ctx(), Running::Score, job);
            }
        });
        if let Some(e) = &self.score_error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        ui.separator();
        let Some(shown) = &mut self.scored else {
            empty_ui(
                ui,
                "Score a text to see, token by token, how differently the checkpoints predict it.",
            );
            return;
        };
        let n = shown.specs.len();
        let before = (settings.score_colouring, settings.score_slot);
        ui.horizontal_wrapped(|ui| {
            ui.label("colour by");
            for c in ScoreColouring::ALL {
                if ui
                    .selectable_label(settings.score_colouring == c, c.label())
                    .clicked()
                    && settings.score_colouring != c
                {
                    settings.score_colouring = c;
                    settings.score_scale = c.default_scale();
                }
            }
            if settings.score_colouring != ScoreColouring::Kl {
                ui.label("of");
                let first = usize::from(settings.score_colouring == ScoreColouring::DeltaLogProb);
                for k in first..n {
                    ui.selectable_value(&mut settings.score_slot, k, format!("[{}]", k + 1));
                }
            }
            ui.label("scale");
            ui.add(
                egui::DragValue::new(&mut settings.score_scale)
                    .range(0.01..=50.0)
                    .speed(0.02),
            );
        });
        settings.score_slot = settings.score_slot.min(n - 1);
        if settings.score_colouring == ScoreColouring::DeltaLogProb && settings.score_slot == 0 {
            settings.score_slot = 1;
        }
        if before != (settings.score_colouring, settings.score_slot) || shown.key != before {
            shown.rebuild(settings);
        }
        let scale = format!("{:.2}", settings.score_scale);
        match settings.score_colouring {
            ScoreColouring::DeltaLogProb => gradient_legend_ui(
                ui,
                &format!("log p[{}] − log p[1]", settings.score_slot + 1),
                &format!("−{scale}"),
                &format!("+{scale}"),
                |t| advantage_color(2.0 * t - 1.0),
            ),
            ScoreColouring::Kl => gradient_legend_ui(
                ui,
                "KL([1] || [2])",
                "0",
                &format!("{scale}+ nats"),
                heat_color,
            ),
            ScoreColouring::Entropy => {
                gradient_legend_ui(ui, "entropy", "0", &format!("{scale}+ nats"), heat_color)
            }
            ScoreColouring::LogProb => {
                gradient_legend_ui(ui, "−log p", "0", &format!("{scale}+"), heat_color)
            }
        }
        let shares: Vec<String> = shown
            .scored
            .forking
            .shared_with_first
            .iter()
            .enumerate()
            .skip(1)
            .map(|(k, s)| {
                format!(
                    "[{}] {}",
                    k + 1,
                    s.map_or("–".into(), |s| format!("{:.0} %", s * 100.0))
                )
            })
            .collect();
        ui.label(format!(
            "Forking tokens (top {:.0} % by entropy; outlined: [{}]'s) of [1] that each shares: {}",
            settings.rho * 100.0,
            settings.score_slot + 1,
            shares.join(" · ")
        ));
        let height = ui.available_height();
        ui.horizontal_top(|ui| {
            // The disagreement table: token, position, KL and a log-prob per checkpoint.
            let table = 190.0 + 56.0 * n as f32;
            let width = (ui.available_width() - table).max(200.0);
            ui.allocate_ui_with_layout(
                egui::vec2(width, height),
                egui::Layout::top_down(egui::Align::Min),
                |ui| {
                    shown
                        .view
                        .ui(ui, Colouring::Entropy, settings.score_scale, height - 8.0);
                },
            );
            ui.separator();
            ui.vertical(|ui| {
                ui.label(RichText::new("Where [1] and [2] disagree most").strong());
                egui::ScrollArea::vertical()
                    .id_salt("compare_disagreements")
                    .max_height(height - 30.0)
                    .show(ui, |ui| {
                        egui::Grid::new("compare_disagreements_grid")
                            .striped(true)
                            .num_columns(3 + n)
                            .show(ui, |ui| {
                                ui.label(RichText::new("token").weak());
                                ui.label(RichText::new("pos").weak());
                                ui.label(RichText::new("KL").weak());
                                for k in 0..n {
                                    ui.label(RichText::new(format!("lp[{}]", k + 1)).weak());
                                }
                                ui.end_row();
                                for &i in shown.ranked.iter().take(25) {
                                    let t = &shown.scored.tokens[i];
                                    let text =
                                        shown.scored.texts.get(&t.id).cloned().unwrap_or_default();
                                    ui.label(
                                        RichText::new(drawable(ui, &format!("{text:?}")))
                                            .monospace(),
                                    );
                                    ui.label(i.to_string());
                                    ui.label(format!("{:.4}", t.kl.unwrap_or(0.0)));
                                    for lp in &t.logprob {
                                        ui.label(lp.map_or("–".into(), |v| format!("{v:.2}")));
                                    }
                                    ui.end_row();
                                }
                            });
                    });
            });
        });
    }
}

impl ScoredShown {
    pub(super) fn new(scored: Scored, settings: &CompareSettings) -> Self {
        let mut ranked: Vec<usize> = (0..scored.tokens.len())
            .filter(|&i| scored.tokens[i].kl.is_some())
            .collect();
        ranked.sort_by(|&a, &b| {
            let kl = |i: usize| scored.tokens[i].kl.unwrap_or(0.0);
            kl(b).total_cmp(&kl(a))
        });
        let specs = settings.specs.clone();
        let mut shown = Self {
            scored,
            specs,
            key: (settings.score_colouring, settings.score_slot),
            view: TokenView::new(Vec::new(), 0.0),
            ranked,
        };
        shown.rebuild(settings);
        shown
    }

    fn rebuild(&mut self, settings: &CompareSettings) {
        let n = self.specs.len();
        let slot = settings.score_slot.min(n.saturating_sub(1));
        let s = &self.scored;
        let forking: BTreeSet<usize> = s
            .forking
            .positions
            .get(slot)
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default();
        let mut values = Vec::with_capacity(s.tokens.len());
        let mut notes = Vec::with_capacity(s.tokens.len());
        let tokens = s
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let lp = |k: usize| t.logprob.get(k).copied().flatten();
                let h = |k: usize| t.entropy.get(k).copied().flatten();
                values.push(match settings.score_colouring {
                    ScoreColouring::DeltaLogProb => lp(slot).zip(lp(0)).map_or(0.0, |(b, a)| b - a),
                    ScoreColouring::Kl => t.kl.unwrap_or(0.0) as f32,
                    ScoreColouring::Entropy => h(slot).unwrap_or(0.0),
                    ScoreColouring::LogProb => -lp(slot).unwrap_or(0.0),
                });
                let mut note = String::new();
                for k in 0..n {
                    note.push_str(&format!(
                        "[{}] log-prob {}  entropy {}\n",
                        k + 1,
                        lp(k).map_or("–".into(), |v| format!("{v:8.4}")),
                        h(k).map_or("–".into(), |v| format!("{v:.3}")),
                    ));
                }
                for k in 1..n {
                    if let (Some(b), Some(a)) = (lp(k), lp(0)) {
                        note.push_str(&format!("Δ[{}]−[1] {:+.4}\n", k + 1, b - a));
                    }
                }
                note.push_str(&format!(
                    "KL([1] || [2]) {}",
                    t.kl.map_or("–".into(), |v| format!("{v:.5} nats"))
                ));
                notes.push(note);
                ViewToken {
                    token: HeatmapToken {
                        id: t.id,
                        text: s.texts.get(&t.id).cloned().unwrap_or_default(),
                        logprob: lp(slot).unwrap_or(0.0),
                        entropy_nats: h(slot).unwrap_or(0.0),
                        alternatives: Vec::new(),
                    },
                    rank: RankBucket::Below,
                    marks: Marks {
                        forking: forking.contains(&i),
                        ..Marks::default()
                    },
                }
            })
            .collect();
        let diverging = settings.score_colouring == ScoreColouring::DeltaLogProb;
        self.view = TokenView::new(tokens, 0.0)
            .with_values(values, diverging)
            .with_notes(notes);
        self.key = (settings.score_colouring, settings.score_slot);
    }
}
