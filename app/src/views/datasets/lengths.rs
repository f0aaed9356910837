//! Token lengths: every row tokenized in the background under a model's tokenizer, and their
//! histogram with the median, p95 and longest.

use std::sync::Arc;

use egui::RichText;
use engine::data::Dataset;

use super::DatasetsView;
use crate::context::AppContext;
use crate::jobs::Job;

/// Token lengths of every row under one tokenizer.
pub struct Lengths {
    pub model: String,
    pub lengths: Vec<usize>,
    pub cancelled: bool,
}

impl DatasetsView {
    pub(super) fn lengths_ui(
        &mut self,
        ui: &mut egui::Ui,
        ctx: &mut AppContext,
        dataset: &Arc<Dataset>,
    ) {
        ui.label(RichText::new("Token lengths").strong())
            .on_hover_text(
                "Tokens of prompt + reasoning + answer of every row, under a model's tokenizer",
            );
        if self.tokenizer_model.is_empty() {
            self.tokenizer_model = engine::models::tiny::TINY_REASONER.to_string();
        }
        let models: Vec<String> = ctx
            .models(ui.ctx())
            .unwrap_or_default()
            .iter()
            .filter_map(|m| m.as_ref().ok().map(|m| m.path.clone()))
            .collect();
        ui.horizontal_wrapped(|ui| {
            let label = ui.label("Tokenizer of");
            egui::ComboBox::from_id_salt("dataset_tokenizer")
                .selected_text(short(&self.tokenizer_model))
                .width(200.0)
                .show_ui(ui, |ui| {
                    for m in &models {
                        ui.selectable_value(&mut self.tokenizer_model, m.clone(), short(m));
                    }
                })
                .response
                .labelled_by(label.id);
            match &self.lengths_job {
                Some(job) => {
                    job.progress_ui(ui, "tokenizing");
                }
                None => {
                    if ui.button("Compute").clicked() {
                        self.lengths_job = Some(token_lengths(
                            ui.ctx(),
                            dataset.clone(),
                            self.tokenizer_model.clone(),
                        ));
                    }
                }
            }
        });
        if let Some(lengths) = &self.lengths {
            histogram_ui(ui, lengths);
        }
    }
}

fn short(spec: &str) -> &str {
    spec.rsplit('/').next().unwrap_or(spec)
}

/// Token lengths of every row's prompt + reasoning + answer (or messages) under `model`'s
/// tokenizer; cancelling keeps the rows done so far.
fn token_lengths(
    ctx: &egui::Context,
    dataset: Arc<Dataset>,
    model: String,
) -> Job<Result<Lengths, String>> {
    Job::spawn("token-lengths", ctx, move |progress| {
        let total = dataset.len();
        progress.set_total(total);
        let (tokenizer, _) =
            engine::formats::loader::open_tokenizer(&model).map_err(|e| e.to_string())?;
        let mut lengths = Vec::with_capacity(total);
        let mut cancelled = false;
        for i in 0..total {
            if progress.cancelled() {
                cancelled = true;
                break;
            }
            if let Ok(e) = dataset.example(i) {
                let mut text = e.prompt.clone();
                for part in [&e.reasoning, &e.answer].into_iter().flatten() {
                    text.push('\n');
                    text.push_str(part);
                }
                if e.reasoning.is_none() && e.answer.is_none() {
                    for (_, content) in &e.messages {
                        text.push('\n');
                        text.push_str(content);
                    }
                }
                if let Ok(ids) = tokenizer.encode(&text, false) {
                    lengths.push(ids.len());
                }
            }
            progress.set_done(i + 1);
        }
        Ok(Lengths {
            model,
            lengths,
            cancelled,
        })
    })
}

/// The histogram bins of `lengths`: about 30 equal bins from 0 to the longest.
pub fn histogram(lengths: &[usize]) -> (usize, Vec<usize>) {
    let max = lengths.iter().copied().max().unwrap_or(0);
    let width = max.div_ceil(30).max(1);
    let mut bins = vec![0usize; max / width + 1];
    for &l in lengths {
        bins[l / width] += 1;
    }
    (width, bins)
}

/// The value at quantile `q` of sorted `values`.
fn quantile(sorted: &[usize], q: f64) -> usize {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

fn histogram_ui(ui: &mut egui::Ui, lengths: &Lengths) {
    let mut sorted = lengths.lengths.clone();
    sorted.sort_unstable();
    ui.label(format!(
        "{} rows{} · median {} · p95 {} · longest {} tokens ({})",
        sorted.len(),
        if lengths.cancelled {
            " (cancelled)"
        } else {
            ""
        },
        quantile(&sorted, 0.5),
        quantile(&sorted, 0.95),
        sorted.last().copied().unwrap_or(0),
        short(&lengths.model)
    ));
    let (width, bins) = histogram(&sorted);
    let bars: Vec<egui_plot::Bar> = bins
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            egui_plot::Bar::new((i * width) as f64 + width as f64 / 2.0, n as f64)
                .width(width as f64 * 0.9)
        })
        .collect();
    egui_plot::Plot::new("dataset_lengths")
        .height(160.0)
        .allow_scroll(false)
        .x_axis_label("tokens")
        .y_axis_label("rows")
        .show(ui, |plot| {
            plot.bar_chart(egui_plot::BarChart::new("rows", bars))
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_every_length_once() {
        let lengths = [0, 1, 5, 29, 30, 31, 59, 60, 100];
        let (width, bins) = histogram(&lengths);
        assert_eq!(width, 4); // ceil(100 / 30)
        assert_eq!(bins.iter().sum::<usize>(), lengths.len());
        assert_eq!(bins[0], 2); // 0 and 1
        assert_eq!(bins[100 / 4], 1);
        assert_eq!(histogram(&[]).1, vec![0]);
    }
}
