//! The rows table (only the rows on screen are read, their cells cached) and the detail pane
//! that reads the selected row in roles, with its image.

use std::sync::Arc;

use egui::RichText;
use engine::data::Dataset;

use super::{DatasetsView, ImageState};
use crate::jobs::Job;

/// Characters of a cell shown in the table.
const CELL_CHARS: usize = 80;
/// Rows whose cells are kept in memory (the table reads the rest again when scrolled back).
const CACHED_ROWS: usize = 2048;

fn cell_text(value: &serde_json::Value) -> String {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(CELL_CHARS + 1)
        .collect();
    if flat.chars().count() > CELL_CHARS {
        let cut: String = flat.chars().take(CELL_CHARS).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

impl DatasetsView {
    fn cells(&mut self, dataset: &Dataset, row: usize) -> &[String] {
        if self.cells.len() > CACHED_ROWS {
            self.cells.clear();
        }
        self.cells
            .entry(row)
            .or_insert_with(|| match dataset.row(row) {
                Ok(map) => dataset
                    .columns()
                    .iter()
                    .map(|c| map.get(c).map(cell_text).unwrap_or_default())
                    .collect(),
                Err(e) => vec![format!("unreadable: {e}")],
            })
    }

    pub(super) fn table_ui(&mut self, ui: &mut egui::Ui, dataset: &Arc<Dataset>) {
        let columns = dataset.columns().to_vec();
        let shown = self.matches.as_ref().map_or(dataset.len(), Vec::len);
        let row_height = ui.text_style_height(&egui::TextStyle::Body) + 6.0;
        let col_width =
            ((ui.available_width() - 60.0) / columns.len().max(1) as f32).clamp(120.0, 420.0);
        // The header.
        ui.horizontal(|ui| {
            ui.add_sized(
                [56.0, row_height],
                egui::Label::new(RichText::new("row").strong()),
            );
            for c in &columns {
                ui.add_sized(
                    [col_width, row_height],
                    egui::Label::new(RichText::new(c).strong()).truncate(),
                );
            }
        });
        egui::ScrollArea::both()
            .id_salt("dataset_rows")
            .auto_shrink([false, false])
            .show_rows(ui, row_height, shown, |ui, range| {
                for i in range {
                    let row = self.matches.as_ref().map_or(i, |m| m[i]);
                    let selected = self.selected == Some(row);
                    let cells = self.cells(dataset, row).to_vec();
                    let response = ui
                        .horizontal(|ui| {
                            let number = ui.add_sized(
                                [56.0, row_height],
                                egui::Button::selectable(selected, (row + 1).to_string()),
                            );
                            for text in &cells {
                                ui.add_sized(
                                    [col_width, row_height],
                                    egui::Label::new(text).truncate(),
                                );
                            }
                            number
                        })
                        .inner;
                    if response.clicked() {
                        self.selected = Some(row);
                        self.image = None;
                    }
                }
            });
    }

    pub(super) fn detail_ui(&mut self, ui: &mut egui::Ui, dataset: &Dataset) {
        let Some(row) = self.selected.filter(|&r| r < dataset.len()) else {
            ui.label("Select a row to read it in roles.");
            return;
        };
        ui.label(RichText::new(format!("Row {}", row + 1)).strong());
        let example = match dataset.example(row) {
            Ok(e) => e,
            Err(e) => {
                ui.colored_label(ui.visuals().error_fg_color, e.to_string());
                return;
            }
        };
        if let Some(image) = &example.image {
            self.image_ui(ui, image);
        }
        role_text(ui, "prompt", Some(&example.prompt));
        role_text(ui, "reasoning", example.reasoning.as_deref());
        role_text(ui, "answer", example.answer.as_deref());
        for (role, content) in &example.messages {
            role_text(ui, role, Some(content));
        }
    }

    /// The row's image, read and decoded on a background job (a file may be large, or slow).
    fn image_ui(&mut self, ui: &mut egui::Ui, source: &str) {
        if self.image.as_ref().is_none_or(|(s, _)| s != source) {
            let from = source.to_string();
            let job = Job::spawn("dataset-image", ui.ctx(), move |_| load_image(&from));
            self.image = Some((source.to_string(), ImageState::Loading(job)));
        }
        if let Some((_, ImageState::Loading(job))) = &mut self.image
            && let Some(decoded) = job.poll_flat()
        {
            let loaded = decoded.map(|img| {
                ui.ctx().load_texture(
                    format!("dataset-image-{source:.64}"),
                    img,
                    egui::TextureOptions::LINEAR,
                )
            });
            self.image = Some((source.to_string(), ImageState::Ready(loaded)));
        }
        match &self.image {
            Some((_, ImageState::Ready(Ok(texture)))) => {
                let size = texture.size_vec2();
                let scale = (240.0 / size.x.max(size.y)).min(4.0);
                ui.add(egui::Image::new(texture).fit_to_exact_size(size * scale))
                    .on_hover_text(if source.starts_with("data:") {
                        "embedded image"
                    } else {
                        source
                    });
            }
            Some((_, ImageState::Ready(Err(e)))) => {
                ui.colored_label(ui.visuals().warn_fg_color, format!("image: {e}"));
            }
            Some((_, ImageState::Loading(_))) => {
                ui.spinner();
            }
            None => {}
        }
    }
}

fn role_text(ui: &mut egui::Ui, role: &str, text: Option<&str>) {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return;
    };
    ui.label(RichText::new(role).small().weak());
    ui.add(egui::Label::new(text).wrap());
    ui.add_space(4.0);
}

/// Decodes an image from a file path or a `data:` URI into an egui image.
fn load_image(source: &str) -> Result<egui::ColorImage, String> {
    use base64::Engine as _;
    let bytes = if let Some(rest) = source.strip_prefix("data:") {
        let (_, b64) = rest
            .split_once(";base64,")
            .ok_or("a data URI without base64")?;
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| format!("bad base64: {e}"))?
    } else if source.starts_with("http://") || source.starts_with("https://") {
        return Err(format!(
            "{source} is on the network; the studio reads local files only"
        ));
    } else {
        std::fs::read(source).map_err(|e| format!("could not read {source}: {e}"))?
    };
    let image = image::load_from_memory(&bytes)
        .map_err(|e| format!("could not decode the image: {e}"))?
        .to_rgba8();
    let size = [image.width() as usize, image.height() as usize];
    Ok(egui::ColorImage::from_rgba_unmultiplied(
        size,
        image.as_raw(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_one_line_and_bounded() {
        let long = serde_json::Value::String("a\nb".repeat(100));
        let text = cell_text(&long);
        assert!(!text.contains('\n'));
        assert_eq!(text.chars().count(), CELL_CHARS + 1);
        assert!(text.ends_with('…'));
        assert_eq!(cell_text(&serde_json::json!(42)), "42");
    }

    #[test]
    fn images_decode_from_files_and_data_uris() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.png");
        let mut img = image::RgbaImage::new(3, 2);
        img.put_pixel(2, 1, image::Rgba([255, 0, 0, 255]));
        img.save(&path).expect("save");
        let from_file = load_image(&path.display().to_string()).expect("decodes");
        assert_eq!(from_file.size, [3, 2]);
        assert_eq!(from_file.pixels[5], egui::Color32::from_rgb(255, 0, 0));
        let b64 =
            base64::engine::general_purpose::STANDARD.encode(std::fs::read(&path).expect("read"));
        let from_uri = load_image(&format!("data:image/png;base64,{b64}")).expect("decodes");
        assert_eq!(from_uri.pixels, from_file.pixels);
        assert!(load_image("https://x/y.png").is_err());
    }
}
