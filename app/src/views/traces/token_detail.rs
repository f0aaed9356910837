//! The chosen completion in detail: its header (reward, verdict, marks, reflection), its tokens
//! coloured by entropy, log-prob, rank bucket or advantage with forking tokens, masks, segments
//! and reflection phrases marked (each token's alternatives on hover), and the colouring controls.

use std::collections::HashMap;

use egui::RichText;
use engine::analysis::Segment;
use engine::store::{RunId, TraceKind, TraceToken};

use super::loader::{LoadedStep, StepKey};
use super::plots::PlotData;
use super::{TracesSettings, TracesView, drawable, mean_entropy, one_line};
use crate::context::{AppCommand, AppContext};
use crate::widgets::token_heatmap::{Alternative, HeatmapToken, gradient_legend_ui, heat_color};
use crate::widgets::token_view::{
    Colouring, Marks, RankBucket, TokenView, ViewToken, advantage_color, marks_legend_ui,
};

/// The tokens of a completion as the token view draws them: texts, rank buckets, and marks
/// (forking, loss masks, reflection phrases, think/answer segments over the joined texts).
pub fn view_tokens(
    tokens: &[TraceToken],
    texts: &HashMap<u32, String>,
    forking: &[bool],
    reflection_words: &[String],
) -> Vec<ViewToken> {
    let text_of = |id: u32| {
        texts
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("<id {id}>"))
    };
    let pieces: Vec<String> = tokens.iter().map(|t| text_of(t.id)).collect();
    // Byte offsets of each token in the joined text, which the phrase and tag search read.
    let mut joined = String::new();
    let mut starts = Vec::with_capacity(pieces.len());
    for p in &pieces {
        starts.push(joined.len());
        joined.push_str(p);
    }
    let token_at = |byte: usize| starts.partition_point(|&s| s <= byte).saturating_sub(1);
    let mut reflection = vec![false; pieces.len()];
    for word in reflection_words {
        for range in engine::analysis::phrase_matches(&joined, word) {
            if range.is_empty() {
                continue;
            }
            for flag in &mut reflection[token_at(range.start)..=token_at(range.end - 1)] {
                *flag = true;
            }
        }
    }
    let mut segment = vec![Segment::Other; pieces.len()];
    for (range, s) in engine::analysis::segments(&joined) {
        if s == Segment::Other || range.is_empty() {
            continue;
        }
        for slot in &mut segment[token_at(range.start)..=token_at(range.end - 1)] {
            // A token that holds a tag and text keeps the text's segment.
            if *slot == Segment::Other || *slot == Segment::Tag {
                *slot = s;
            }
        }
    }
    tokens
        .iter()
        .zip(pieces)
        .enumerate()
        .map(|(i, (t, text))| {
            let alternatives: Vec<Alternative> = t
                .top
                .iter()
                .map(|&(id, logprob)| Alternative {
                    id,
                    text: text_of(id),
                    logprob,
                })
                .collect();
            ViewToken {
                rank: RankBucket::of(t.id, &alternatives),
                token: HeatmapToken {
                    id: t.id,
                    text,
                    logprob: t.logprob,
                    entropy_nats: t.entropy,
                    alternatives,
                },
                marks: Marks {
                    forking: forking.get(i).copied().unwrap_or(false),
                    counted: t.counted,
                    trained: t.trained,
                    reflection: reflection[i],
                    segment: segment[i],
                },
            }
        })
        .collect()
}

/// The completion shown: its token view, the plots' data and the header's lines, all made
/// once when it is chosen (a frame only draws them).
pub(super) struct Shown {
    /// (step, completion, reflection phrases) it was made for.
    key: (StepKey, usize, Vec<String>),
    view: TokenView,
    pub(super) plots: PlotData,
    prompt: String,
    lines: [String; 3],
}

impl Shown {
    fn new(
        step: &LoadedStep,
        index: usize,
        key: (StepKey, usize, Vec<String>),
        words: &[String],
    ) -> Self {
        let trace = &step.traces[index];
        let mut tokens = view_tokens(
            &trace.tokens,
            &step.texts,
            step.forking.get(index).map_or(&[][..], Vec::as_slice),
            words,
        );
        // An evaluation answer was never trained on: its loss masks mean nothing.
        if key.0.1 == TraceKind::Eval {
            for t in &mut tokens {
                t.marks.counted = true;
                t.marks.trained = true;
            }
        }
        let mut parts = vec![
            format!(
                "prompt {} · sample {}",
                trace.prompt_index, trace.sample_index
            ),
            format!("reward {:.3}", trace.reward),
        ];
        if !trace.rewards.is_empty() {
            parts.push(
                trace
                    .rewards
                    .iter()
                    .map(|(n, v)| format!("{n} {v:.2}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        parts.push(format!("advantage {:+.3}", trace.advantage));
        parts.push(
            match trace.correct {
                Some(true) => "correct",
                Some(false) => "wrong",
                None => "no verdict",
            }
            .into(),
        );
        parts.push(format!(
            "{} tokens ({})",
            trace.tokens.len(),
            trace.finish_reason
        ));
        parts.push(format!("mean entropy {:.3}", mean_entropy(trace)));
        let count = |f: &dyn Fn(&ViewToken) -> bool| tokens.iter().filter(|t| f(t)).count();
        let marks = format!(
            "think {} tokens · answer {} tokens · forking {} · masked {}",
            count(&|t| t.marks.segment == Segment::Think),
            count(&|t| t.marks.segment == Segment::Answer),
            count(&|t| t.marks.forking),
            count(&|t| !t.marks.counted),
        );
        let reflections: Vec<String> = words
            .iter()
            .filter_map(|word| {
                let n = engine::analysis::count_phrase(&trace.completion, word);
                (n > 0).then(|| format!("\"{word}\" x{n}"))
            })
            .collect();
        let reflection = if reflections.is_empty() {
            "reflection: none".to_string()
        } else {
            format!("reflection: {}", reflections.join(", "))
        };
        Self {
            key,
            view: TokenView::new(tokens, trace.advantage),
            plots: PlotData::new(&step.traces, trace),
            prompt: trace.prompt.clone(),
            lines: [parts.join(" · "), marks, reflection],
        }
    }

    fn header_ui(&self, ui: &mut egui::Ui) {
        ui.label(RichText::new(&self.lines[0]).strong());
        ui.label(&self.lines[1]);
        ui.label(&self.lines[2]);
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new("prompt").weak());
            let shown = drawable(ui, &one_line(&self.prompt));
            ui.add(egui::Label::new(RichText::new(shown).monospace()).truncate())
                .on_hover_text(drawable(ui, &self.prompt));
        });
    }
}

impl TracesView {
    pub(super) fn detail_ui(
        &mut self,
        ui: &mut egui::Ui,
        ctx: &mut AppContext,
        settings: &mut TracesSettings,
        run: RunId,
        kind: TraceKind,
        steps: &[(u64, usize)],
        key: StepKey,
    ) {
        let Some(step) = self.loaded_step() else {
            return;
        };
        if step.traces.is_empty() {
            return;
        }
        let index = match self.selected {
            Some(i) if i < step.traces.len() => i,
            _ => {
                // Start on the first completion of the table's order.
                let first = self.shown_rows(settings).first().map_or(0, |r| r.index);
                self.selected = Some(first);
                first
            }
        };
        let view_key = (key, index, settings.reflection_words.clone());
        if self.shown.as_ref().is_none_or(|s| s.key != view_key) {
            let Some(step) = self.loaded_step() else {
                return;
            };
            let shown = Shown::new(step, index, view_key, &settings.reflection_words);
            self.shown = Some(shown);
        }
        let Some(shown) = &self.shown else {
            return;
        };
        let prompt = shown.prompt.clone();
        shown.header_ui(ui);
        if ui
            .button("Score in Compare")
            .on_hover_text(
                "Score this completion, after its prompt, under the checkpoints picked in \
                 Compare: per-token Δ log-prob and KL",
            )
            .clicked()
            && let Some(trace) = self.loaded_step().and_then(|s| s.traces.get(index))
        {
            ctx.commands.push(AppCommand::ScoreInCompare {
                prompt: trace.prompt.clone(),
                text: trace.completion.clone(),
            });
        }
        self.colouring_ui(ui, settings);
        let scale = settings
            .scale
            .unwrap_or_else(|| settings.colouring.default_scale());
        let max_height = (ui.available_height() * 0.45).max(160.0);
        if let Some(shown) = &mut self.shown {
            egui::Frame::group(ui.style()).show(ui, |ui| {
                shown.view.ui(ui, settings.colouring, scale, max_height);
            });
        }
        ui.add_space(6.0);
        self.plots_ui(ui, ctx, run, kind, steps, &prompt, key.2);
    }

    fn colouring_ui(&mut self, ui: &mut egui::Ui, settings: &mut TracesSettings) {
        ui.horizontal_wrapped(|ui| {
            ui.label("Colour by");
            for c in Colouring::ALL {
                if ui
                    .selectable_value(&mut settings.colouring, c, c.label())
                    .clicked()
                {
                    settings.scale = None;
                }
            }
            let mut scale = settings
                .scale
                .unwrap_or_else(|| settings.colouring.default_scale());
            if settings.colouring != Colouring::Rank {
                let response = ui.add(
                    egui::Slider::new(&mut scale, 0.1..=12.0)
                        .logarithmic(true)
                        .text("scale"),
                );
                if response.changed() {
                    settings.scale = Some(scale);
                }
            }
        });
        ui.horizontal_wrapped(|ui| {
            let label = ui.label("forking ρ");
            ui.add(
                egui::DragValue::new(&mut settings.rho)
                    .range(0.01..=1.0)
                    .speed(0.01),
            )
            .labelled_by(label.id)
            .on_hover_text("Forking tokens: the step's top ρ share of tokens by entropy");
            ui.separator();
            let scale = settings
                .scale
                .unwrap_or_else(|| settings.colouring.default_scale());
            match settings.colouring {
                Colouring::Entropy => {
                    gradient_legend_ui(ui, "entropy", "0", &format!("{scale:.1}+ nats"), heat_color)
                }
                Colouring::LogProb => gradient_legend_ui(
                    ui,
                    "log-prob",
                    "0",
                    &format!("-{scale:.1} or less"),
                    heat_color,
                ),
                Colouring::Advantage => gradient_legend_ui(
                    ui,
                    "advantage",
                    &format!("-{scale:.1}"),
                    &format!("+{scale:.1}"),
                    |t| advantage_color(2.0 * t - 1.0),
                ),
                Colouring::Rank => {
                    for (bucket, text) in [
                        (RankBucket::First, "top 1"),
                        (RankBucket::TopK, "top k stored"),
                        (RankBucket::Below, "below"),
                    ] {
                        let (rect, _) =
                            ui.allocate_exact_size(egui::vec2(14.0, 12.0), egui::Sense::hover());
                        ui.painter().rect_filled(rect, 2.0, bucket.color());
                        ui.label(text);
                    }
                }
            }
            ui.separator();
            marks_legend_ui(ui);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::traces::tests::trace;

    #[test]
    fn view_tokens_mark_reflection_words_and_segments_across_token_boundaries() {
        // "<think>wa" + "it, 2</think>" + "<answer>" + "4</answer>"
        let texts: HashMap<u32, String> = [
            (1, "<think>wa"),
            (2, "it, 2</think>"),
            (3, "<answer>"),
            (4, "4</answer>"),
            (5, " ok"),
        ]
        .into_iter()
        .map(|(id, t)| (id, t.to_string()))
        .collect();
        let t = trace(&[1, 2, 3, 4, 5], &[0.0; 5]);
        let tokens = view_tokens(
            &t.tokens,
            &texts,
            &[false, true, false, false, false],
            &["wait".into()],
        );
        let reflection: Vec<bool> = tokens.iter().map(|t| t.marks.reflection).collect();
        assert_eq!(reflection, [true, true, false, false, false]);
        let segments: Vec<Segment> = tokens.iter().map(|t| t.marks.segment).collect();
        assert_eq!(
            segments,
            [
                Segment::Think,
                Segment::Think,
                Segment::Tag,
                Segment::Answer,
                Segment::Other
            ]
        );
        assert!(tokens[1].marks.forking && !tokens[0].marks.forking);
        assert_eq!(tokens[0].rank, RankBucket::First);
    }
}
