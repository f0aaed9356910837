//! The step bar: a slider over the run's stored steps (with previous and next), and the stored
//! step nearest one asked for.

use super::TracesView;

impl TracesView {
    pub(super) fn step_bar_ui(&mut self, ui: &mut egui::Ui, steps: &[(u64, usize)], step: u64) {
        let mut index = steps.iter().position(|(s, _)| *s == step).unwrap_or(0);
        ui.horizontal(|ui| {
            if ui
                .add_enabled(index > 0, egui::Button::new("<"))
                .on_hover_text("Previous step")
                .clicked()
            {
                index -= 1;
            }
            let labels: Vec<u64> = steps.iter().map(|s| s.0).collect();
            // Room for the buttons, the value box and the label after the slider.
            ui.spacing_mut().slider_width = (ui.available_width() - 420.0).clamp(100.0, 900.0);
            let last = steps.len() - 1;
            ui.add(
                egui::Slider::new(&mut index, 0..=last)
                    .custom_formatter(move |i, _| {
                        labels
                            .get(i as usize)
                            .map_or_else(String::new, |s| s.to_string())
                    })
                    .custom_parser(|_| None)
                    .text("step"),
            );
            if ui
                .add_enabled(index < last, egui::Button::new(">"))
                .on_hover_text("Next step")
                .clicked()
            {
                index += 1;
            }
            let (shown, n) = steps[index];
            ui.label(format!(
                "step {shown}: {n} completions, {} steps",
                steps.len()
            ));
        });
        let chosen = steps[index].0;
        if chosen != step {
            self.step = Some(chosen);
            self.selected = None;
        }
    }
}

/// The stored step nearest `wanted` (the earlier one on a tie).
pub fn nearest_step(steps: &[(u64, usize)], wanted: u64) -> u64 {
    steps
        .iter()
        .map(|s| s.0)
        .min_by_key(|s| (s.abs_diff(wanted), *s))
        .unwrap_or(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wanted_step_snaps_to_the_nearest_stored_one() {
        let steps = [(0, 8), (10, 8), (20, 8)];
        assert_eq!(nearest_step(&steps, 12), 10);
        assert_eq!(nearest_step(&steps, 15), 10);
        assert_eq!(nearest_step(&steps, 16), 20);
        assert_eq!(nearest_step(&steps, 400), 20);
    }
}
