//! Tokens laid out as text on a background coloured by the entropy of the distribution each was
//! drawn from (cool = the model was sure, warm = it hesitated), with a hover card showing the
//! token's log-probability, entropy and the alternatives the model considered.

use egui::{Color32, RichText, Sense, TextWrapMode};

/// Entropy (nats) at which the colour scale saturates. Fixed rather than `ln(vocab)`, so colours
/// mean the same across models: most tokens of a trained model sit well below it.
pub const ENTROPY_SCALE_MAX_NATS: f32 = 4.0;

/// A token the model considered instead.
#[derive(Debug, Clone, PartialEq)]
pub struct Alternative {
    pub id: u32,
    pub text: String,
    pub logprob: f32,
}

/// One token to show, with its statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapToken {
    pub id: u32,
    /// The token's text as it appears in decoded output.
    pub text: String,
    /// Natural-log probability of this token under the model.
    pub logprob: f32,
    /// Entropy of the distribution it was drawn from, in nats.
    pub entropy_nats: f32,
    /// Most likely tokens at this position, most likely first.
    pub alternatives: Vec<Alternative>,
}

/// A token's text made visible: whitespace escapes stand in for line breaks and tabs, control
/// characters and characters the font lacks become `\u{..}` escapes. Returns the text and
/// whether the token ends a line.
pub fn visible_token_text(text: &str, mut has_glyph: impl FnMut(char) -> bool) -> (String, bool) {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            '\t' => shown.push_str("\\t"),
            ' ' => shown.push(' '),
            // Bytes that are not a whole UTF-8 character on their own; no default font draws �.
            char::REPLACEMENT_CHARACTER => shown.push('?'),
            c if c.is_control() || !has_glyph(c) => {
                shown.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => shown.push(c),
        }
    }
    if shown.is_empty() {
        shown.push_str("\"\"");
    }
    (shown, text.ends_with('\n'))
}

/// `text` with every character the font lacks written as a `\u{..}` escape and U+FFFD (bytes
/// that are not a whole UTF-8 character) as `?`; line breaks and tabs are kept.
pub fn printable_text(ctx: &egui::Context, font_id: &egui::FontId, text: &str) -> String {
    ctx.fonts_mut(|fonts| {
        text.chars()
            .map(|c| {
                if c == char::REPLACEMENT_CHARACTER {
                    "?".to_string()
                } else if c == '\n' || c == '\t' || (!c.is_control() && fonts.has_glyph(font_id, c))
                {
                    c.to_string()
                } else {
                    format!("\\u{{{:x}}}", c as u32)
                }
            })
            .collect()
    })
}

/// A token's text for a label: quoted, escaped, every character drawable.
fn quoted_token_text(ctx: &egui::Context, font_id: &egui::FontId, text: &str) -> String {
    let (shown, _) =
        ctx.fonts_mut(|fonts| visible_token_text(text, |c| fonts.has_glyph(font_id, c)));
    format!("\"{shown}\"")
}

/// Background colour for a token of this entropy: neutral blue-grey at 0, orange-red at
/// [`ENTROPY_SCALE_MAX_NATS`] and above.
pub fn entropy_color(entropy_nats: f32) -> Color32 {
    heat_color(entropy_nats / ENTROPY_SCALE_MAX_NATS)
}

/// The heat scale at `t` in [0, 1] (clamped; NaN is the hot end): neutral blue-grey, yellow,
/// orange-red.
pub fn heat_color(t: f32) -> Color32 {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        1.0
    };
    let cool = egui::Rgba::from(Color32::from_rgba_unmultiplied(90, 120, 160, 50));
    let mid = egui::Rgba::from(Color32::from_rgba_unmultiplied(220, 190, 60, 130));
    let warm = egui::Rgba::from(Color32::from_rgba_unmultiplied(230, 70, 40, 200));
    let rgba = if t < 0.5 {
        egui::lerp(cool..=mid, t * 2.0)
    } else {
        egui::lerp(mid..=warm, (t - 0.5) * 2.0)
    };
    Color32::from(rgba)
}

/// Shows `tokens` as wrapped text coloured by entropy, each with a hover card.
pub fn token_heatmap_ui(ui: &mut egui::Ui, tokens: &[HeatmapToken]) {
    let font_id = egui::TextStyle::Monospace.resolve(ui.style());
    let text_color = ui.visuals().strong_text_color();
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing = egui::vec2(2.0, 3.0);
        for (position, token) in tokens.iter().enumerate() {
            let (shown, ends_line) = ui.ctx().fonts_mut(|fonts| {
                visible_token_text(&token.text, |c| fonts.has_glyph(&font_id, c))
            });
            let label = egui::Label::new(
                RichText::new(shown)
                    .font(font_id.clone())
                    .color(text_color)
                    .background_color(entropy_color(token.entropy_nats)),
            )
            .wrap_mode(TextWrapMode::Extend)
            .sense(Sense::hover());
            ui.add(label)
                .on_hover_ui(|ui| token_card_ui(ui, position, token));
            if ends_line {
                ui.end_row();
            }
        }
    });
}

/// The hover card of one token.
pub fn token_card_ui(ui: &mut egui::Ui, position: usize, token: &HeatmapToken) {
    let font_id = egui::TextStyle::Monospace.resolve(ui.style());
    ui.label(
        RichText::new(quoted_token_text(ui.ctx(), &font_id, &token.text))
            .monospace()
            .strong(),
    );
    if token.text.contains(char::REPLACEMENT_CHARACTER) {
        ui.label(
            RichText::new("? marks bytes that are not a whole UTF-8 character on their own").weak(),
        );
    }
    egui::Grid::new("token_card").num_columns(2).show(ui, |ui| {
        ui.label("position");
        ui.label(position.to_string());
        ui.end_row();
        ui.label("id");
        ui.label(token.id.to_string());
        ui.end_row();
        ui.label("log-prob");
        ui.label(format!(
            "{:.3} (p = {})",
            token.logprob,
            percent(token.logprob)
        ));
        ui.end_row();
        ui.label("entropy");
        ui.label(format!("{:.3} nats", token.entropy_nats));
        ui.end_row();
    });
    if !token.alternatives.is_empty() {
        ui.separator();
        ui.label(RichText::new("Top alternatives").weak());
        egui::Grid::new("token_card_alternatives")
            .num_columns(3)
            .show(ui, |ui| {
                for alt in &token.alternatives {
                    let text =
                        RichText::new(quoted_token_text(ui.ctx(), &font_id, &alt.text)).monospace();
                    ui.label(if alt.id == token.id {
                        text.strong()
                    } else {
                        text
                    });
                    ui.label(format!("#{}", alt.id));
                    ui.label(percent(alt.logprob));
                    ui.end_row();
                }
            });
    }
}

fn percent(logprob: f32) -> String {
    format!("{:.1}%", 100.0 * logprob.exp())
}

/// A small legend: the colour scale from 0 to [`ENTROPY_SCALE_MAX_NATS`] nats.
pub fn entropy_legend_ui(ui: &mut egui::Ui) {
    gradient_legend_ui(
        ui,
        "entropy",
        "0",
        &format!("{ENTROPY_SCALE_MAX_NATS:.0}+ nats"),
        heat_color,
    );
}

/// A legend: `label`, then a bar of `color(t)` for t from 0 to 1 between two end labels.
pub fn gradient_legend_ui(
    ui: &mut egui::Ui,
    label: &str,
    low: &str,
    high: &str,
    color: impl Fn(f32) -> Color32,
) {
    ui.horizontal(|ui| {
        ui.label(RichText::new(label).weak());
        ui.label(low);
        let (rect, _) = ui.allocate_exact_size(egui::vec2(120.0, 12.0), Sense::hover());
        const STEPS: usize = 24;
        let step_width = rect.width() / STEPS as f32;
        for i in 0..STEPS {
            let t = (i as f32 + 0.5) / STEPS as f32;
            let x = rect.left() + i as f32 * step_width;
            let cell = egui::Rect::from_min_size(
                egui::pos2(x, rect.top()),
                egui::vec2(step_width + 0.5, rect.height()),
            );
            ui.painter().rect_filled(cell, 0.0, color(t));
        }
        ui.label(high);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_and_missing_glyphs_are_made_visible() {
        let all = |_| true;
        assert_eq!(visible_token_text("a\n", all), ("a\\n".to_string(), true));
        assert_eq!(
            visible_token_text("\t x", all),
            ("\\t x".to_string(), false)
        );
        assert_eq!(visible_token_text("", all), ("\"\"".to_string(), false));
        assert_eq!(
            visible_token_text("\u{1}", all),
            ("\\u{1}".to_string(), false)
        );
        assert_eq!(
            visible_token_text("\u{fffd}", all),
            ("?".to_string(), false)
        );
        let no_e = |c| c != 'é';
        assert_eq!(
            visible_token_text("é!", no_e),
            ("\\u{e9}!".to_string(), false)
        );
    }

    #[test]
    fn colour_warms_with_entropy_and_saturates() {
        let low = entropy_color(0.0);
        let high = entropy_color(ENTROPY_SCALE_MAX_NATS);
        assert!(high.r() > low.r() && high.a() > low.a());
        assert_eq!(entropy_color(ENTROPY_SCALE_MAX_NATS * 3.0), high);
        assert_eq!(entropy_color(f32::NAN), high);
    }
}
