//! The bad rows: each line the file could not read, with why.

use egui::RichText;
use engine::data::Dataset;

pub(super) fn bad_rows_ui(ui: &mut egui::Ui, dataset: &Dataset) {
    let bad = dataset.bad_rows();
    ui.label(RichText::new(format!("Bad rows ({})", bad.len())).strong());
    if bad.is_empty() {
        ui.label(RichText::new("none: every row parsed").weak());
        return;
    }
    for b in bad.iter().take(200) {
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new(format!("line {}", b.line)).monospace());
            ui.colored_label(ui.visuals().warn_fg_color, &b.message);
        });
    }
    if bad.len() > 200 {
        ui.label(format!("… and {} more", bad.len() - 200));
    }
}
