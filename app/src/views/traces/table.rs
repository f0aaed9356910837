//! The step's completions table: filtered by text and verdict, sorted by a column, grouped by
//! prompt (each group headed by its right count and mean reward).

use std::collections::HashMap;

use egui::{Color32, RichText};
use engine::store::Trace;

use super::{TracesSettings, TracesView, drawable, mean_entropy, one_line};

/// Which completions the table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verdict {
    #[default]
    All,
    Correct,
    Wrong,
}

/// A column the table sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    #[default]
    Order,
    Reward,
    Length,
    Entropy,
    Advantage,
}

/// A completion's figures for the table.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) index: usize,
    mean_entropy: f64,
    reflection: usize,
}

impl TracesView {
    pub(super) fn prepare_rows(&mut self, settings: &TracesSettings) {
        let Some(step) = self.loaded_step() else {
            return;
        };
        if !self.rows.is_empty() || step.traces.is_empty() {
            return;
        }
        let rows = step
            .traces
            .iter()
            .enumerate()
            .map(|(index, t)| Row {
                index,
                mean_entropy: mean_entropy(t),
                reflection: settings
                    .reflection_words
                    .iter()
                    .map(|w| engine::analysis::count_phrase(&t.completion, w))
                    .sum(),
            })
            .collect();
        self.rows = rows;
    }

    /// Whether the table groups by prompt: asked for, and some prompt has several completions
    /// (evaluation answers have one each).
    fn grouped(&self, settings: &TracesSettings) -> bool {
        settings.group_by_prompt
            && self
                .loaded_step()
                .is_some_and(|s| s.traces.iter().any(|t| t.sample_index > 0))
    }

    /// The rows shown, in order: (prompt group starts here, row).
    pub(super) fn shown_rows(&self, settings: &TracesSettings) -> Vec<&Row> {
        let Some(step) = self.loaded_step() else {
            return Vec::new();
        };
        let needle = self.filter.trim().to_lowercase();
        let mut shown: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| {
                let t = &step.traces[r.index];
                let verdict = match self.verdict {
                    Verdict::All => true,
                    Verdict::Correct => t.correct == Some(true),
                    Verdict::Wrong => t.correct == Some(false),
                };
                verdict
                    && (needle.is_empty()
                        || t.completion.to_lowercase().contains(&needle)
                        || t.prompt.to_lowercase().contains(&needle))
            })
            .collect();
        let value = |r: &Row| -> f64 {
            let t = &step.traces[r.index];
            match self.sort {
                SortBy::Order => r.index as f64,
                SortBy::Reward => t.reward,
                SortBy::Length => t.tokens.len() as f64,
                SortBy::Entropy => r.mean_entropy,
                SortBy::Advantage => t.advantage,
            }
        };
        shown.sort_by(|a, b| {
            let group = if self.grouped(settings) {
                step.traces[a.index]
                    .prompt_index
                    .cmp(&step.traces[b.index].prompt_index)
            } else {
                std::cmp::Ordering::Equal
            };
            let by = value(a).total_cmp(&value(b));
            group.then(if self.sort_descending {
                by.reverse()
            } else {
                by
            })
        });
        shown
    }

    pub(super) fn table_ui(&mut self, ui: &mut egui::Ui, settings: &mut TracesSettings) {
        ui.horizontal(|ui| {
            let label = ui.label("Filter");
            ui.add(
                egui::TextEdit::singleline(&mut self.filter)
                    .hint_text("text in prompt or completion")
                    .desired_width(180.0),
            )
            .labelled_by(label.id);
            ui.selectable_value(&mut self.verdict, Verdict::All, "All");
            ui.selectable_value(&mut self.verdict, Verdict::Correct, "Correct");
            ui.selectable_value(&mut self.verdict, Verdict::Wrong, "Wrong");
            ui.checkbox(&mut settings.group_by_prompt, "By prompt");
        });
        const WIDTHS: [f32; 8] = [58.0, 56.0, 50.0, 44.0, 50.0, 50.0, 56.0, 40.0];
        ui.horizontal(|ui| {
            let columns: [(&str, Option<SortBy>, &str); 8] = [
                ("#", Some(SortBy::Order), "prompt/sample"),
                (
                    "reward",
                    Some(SortBy::Reward),
                    "the weighted sum of the reward parts",
                ),
                ("right", None, "the verifier's verdict"),
                ("len", Some(SortBy::Length), "completion tokens"),
                ("end", None, "finish reason: eos, length or stop"),
                (
                    "H",
                    Some(SortBy::Entropy),
                    "mean entropy of the completion's tokens, nats",
                ),
                ("adv", Some(SortBy::Advantage), "advantage"),
                ("refl", None, "reflection phrases in the completion"),
            ];
            for ((title, sort, help), width) in columns.into_iter().zip(WIDTHS) {
                match sort {
                    Some(by) => {
                        let arrow = if self.sort == by {
                            if self.sort_descending { " v" } else { " ^" }
                        } else {
                            ""
                        };
                        let clicked = ui
                            .add_sized(
                                [width, 18.0],
                                egui::Button::new(format!("{title}{arrow}")).small(),
                            )
                            .on_hover_text(format!("Sort by {help}"))
                            .clicked();
                        if clicked {
                            if self.sort == by {
                                self.sort_descending = !self.sort_descending;
                            } else {
                                self.sort = by;
                                self.sort_descending = by != SortBy::Order;
                            }
                        }
                    }
                    None => {
                        ui.add_sized(
                            [width, 18.0],
                            egui::Label::new(RichText::new(title).small()),
                        )
                        .on_hover_text(help);
                    }
                }
            }
        });
        ui.separator();
        let Some(step) = self.loaded_step() else {
            return;
        };
        // Lines: a prompt's heading (when grouping), then its completions.
        let grouped = self.grouped(settings);
        let mut lines: Vec<(bool, usize)> = Vec::new();
        let mut last_prompt = None;
        for r in self.shown_rows(settings) {
            let p = step.traces[r.index].prompt_index;
            if grouped && last_prompt != Some(p) {
                lines.push((true, r.index));
                last_prompt = Some(p);
            }
            lines.push((false, r.index));
        }
        if lines.is_empty() {
            ui.label(RichText::new("No completion matches the filter.").weak());
            return;
        }
        let row_height = ui.spacing().interact_size.y;
        let mut clicked = None;
        let rows_by_index: HashMap<usize, &Row> = self.rows.iter().map(|r| (r.index, r)).collect();
        egui::ScrollArea::vertical()
            .id_salt("traces_table_scroll")
            .auto_shrink([false, false])
            .show_rows(ui, row_height, lines.len(), |ui, range| {
                for &(heading, index) in &lines[range] {
                    let t = &step.traces[index];
                    if heading {
                        let group: Vec<&Trace> = step
                            .traces
                            .iter()
                            .filter(|x| x.prompt_index == t.prompt_index)
                            .collect();
                        let right = group.iter().filter(|x| x.correct == Some(true)).count();
                        let mean_reward =
                            group.iter().map(|x| x.reward).sum::<f64>() / group.len() as f64;
                        ui.horizontal(|ui| {
                            ui.set_height(row_height);
                            ui.label(
                                RichText::new(format!(
                                    "prompt {} · {right}/{} right · mean reward {mean_reward:.2}",
                                    t.prompt_index,
                                    group.len()
                                ))
                                .strong(),
                            );
                            ui.add(
                                egui::Label::new(
                                    RichText::new(drawable(ui, &one_line(&t.prompt))).weak(),
                                )
                                .truncate(),
                            )
                            .on_hover_text(drawable(ui, &t.prompt));
                        });
                        continue;
                    }
                    let Some(r) = rows_by_index.get(&index) else {
                        continue;
                    };
                    let selected = self.selected == Some(index);
                    ui.horizontal(|ui| {
                        ui.set_height(row_height);
                        let cells = [
                            format!("{}/{}", t.prompt_index, t.sample_index),
                            format!("{:.2}", t.reward),
                            match t.correct {
                                Some(true) => "yes".into(),
                                Some(false) => "no".into(),
                                None => "-".into(),
                            },
                            t.tokens.len().to_string(),
                            t.finish_reason.clone(),
                            format!("{:.2}", r.mean_entropy),
                            format!("{:+.2}", t.advantage),
                            r.reflection.to_string(),
                        ];
                        for (i, (cell, width)) in cells.into_iter().zip(WIDTHS).enumerate() {
                            let mut text = RichText::new(cell).monospace();
                            if i == 2 {
                                text = text.color(match t.correct {
                                    Some(true) => Color32::from_rgb(60, 170, 80),
                                    Some(false) => Color32::from_rgb(220, 80, 60),
                                    None => ui.visuals().weak_text_color(),
                                });
                            }
                            let response = ui.add_sized(
                                [width, row_height],
                                egui::Button::selectable(selected, text),
                            );
                            if response.clicked() {
                                clicked = Some(index);
                            }
                            if i == 1 && !t.rewards.is_empty() {
                                response.on_hover_text(
                                    t.rewards
                                        .iter()
                                        .map(|(n, v)| format!("{n}: {v:.3}"))
                                        .collect::<Vec<_>>()
                                        .join("\n"),
                                );
                            }
                        }
                    });
                }
            });
        if clicked.is_some() {
            self.selected = clicked;
        }
    }
}
