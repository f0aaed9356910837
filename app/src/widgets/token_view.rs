//! A completion of any length as coloured tokens: laid out once per width into rows, and only
//! the rows in view are drawn, so a 20,000-token rollout costs what its visible lines cost.
//!
//! Each token's background shows one statistic (entropy, log-prob, GLTR's rank bucket, or the
//! rollout's advantage); marks show what the analysis and the loss saw: forking tokens (an
//! outline), tokens the loss did not count (struck through) or gave no gradient (a dashed
//! underline), reflection phrases (an underline), and the `<think>`/`<answer>` segments (a bar
//! above). Hovering a token shows its card: id, log-prob, entropy, rank and the alternatives.

use std::ops::Range;

use egui::{Color32, Rect, Sense, Stroke, pos2, vec2};
use engine::analysis::Segment;
use serde::{Deserialize, Serialize};

use super::token_heatmap::{
    Alternative, HeatmapToken, heat_color, token_card_ui, visible_token_text,
};

/// What a token's background shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Colouring {
    /// Entropy of the distribution the token was drawn from (cool = sure).
    #[default]
    Entropy,
    /// The token's log-probability (warm = unlikely).
    LogProb,
    /// GLTR's buckets, as far as the stored alternatives tell: the most likely token, among
    /// the top k, or below them.
    Rank,
    /// The rollout's advantage (green above 0, red below).
    Advantage,
}

impl Colouring {
    pub const ALL: [Self; 4] = [Self::Entropy, Self::LogProb, Self::Rank, Self::Advantage];

    pub fn label(self) -> &'static str {
        match self {
            Self::Entropy => "Entropy",
            Self::LogProb => "Log-prob",
            Self::Rank => "Rank",
            Self::Advantage => "Advantage",
        }
    }

    /// The default top of the scale (nats of entropy, negative log-prob, or |advantage|).
    pub fn default_scale(self) -> f32 {
        match self {
            Self::Entropy => 4.0,
            Self::LogProb => 6.0,
            Self::Rank => 1.0,
            Self::Advantage => 2.0,
        }
    }
}

/// The rank bucket of a token among the alternatives stored with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankBucket {
    /// The most likely token.
    First,
    /// Among the stored top k, not first.
    TopK,
    /// Below the stored top k.
    Below,
}

impl RankBucket {
    pub fn of(id: u32, top: &[Alternative]) -> Self {
        match top.iter().position(|a| a.id == id) {
            Some(0) => Self::First,
            Some(_) => Self::TopK,
            None => Self::Below,
        }
    }

    pub fn color(self) -> Color32 {
        match self {
            Self::First => Color32::from_rgba_unmultiplied(70, 170, 90, 150),
            Self::TopK => Color32::from_rgba_unmultiplied(220, 190, 60, 150),
            Self::Below => Color32::from_rgba_unmultiplied(220, 70, 60, 170),
        }
    }
}

/// What the marks of a token say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    /// Among the step's top-ρ tokens by entropy.
    pub forking: bool,
    /// The loss counted the token (false: masked, e.g. a truncated completion).
    pub counted: bool,
    /// The token got gradient (false: outside the top-entropy share).
    pub trained: bool,
    /// Inside a reflection phrase.
    pub reflection: bool,
    pub segment: Segment,
}

impl Default for Marks {
    fn default() -> Self {
        Self {
            forking: false,
            counted: true,
            trained: true,
            reflection: false,
            segment: Segment::Other,
        }
    }
}

/// One token to show.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewToken {
    pub token: HeatmapToken,
    pub rank: RankBucket,
    pub marks: Marks,
}

/// Colours of the marks, the same in the view and its legend.
pub const FORKING_COLOR: Color32 = Color32::from_rgb(200, 70, 220);
pub const REFLECTION_COLOR: Color32 = Color32::from_rgb(240, 140, 20);
pub const THINK_COLOR: Color32 = Color32::from_rgb(110, 110, 240);
pub const ANSWER_COLOR: Color32 = Color32::from_rgb(40, 180, 90);

/// The background of a token under `colouring`, with `scale` the top of the scale.
pub fn token_color(t: &ViewToken, colouring: Colouring, scale: f32, advantage: f64) -> Color32 {
    let scale = scale.max(1e-6);
    match colouring {
        Colouring::Entropy => heat_color(t.token.entropy_nats / scale),
        Colouring::LogProb => heat_color(-t.token.logprob / scale),
        Colouring::Rank => t.rank.color(),
        Colouring::Advantage => advantage_color(advantage as f32 / scale),
    }
}

/// Diverging: red below 0, green above, stronger with |t| (t in [−1, 1], clamped).
pub fn advantage_color(t: f32) -> Color32 {
    let t = if t.is_finite() {
        t.clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let alpha = (40.0 + 170.0 * t.abs()) as u8;
    if t >= 0.0 {
        Color32::from_rgba_unmultiplied(60, 180, 90, alpha)
    } else {
        Color32::from_rgba_unmultiplied(220, 70, 60, alpha)
    }
}

/// A token as drawn: its visible text and width.
struct Cell {
    shown: String,
    width: f32,
    ends_line: bool,
}

/// The rows for one width.
struct Layout {
    width: f32,
    rows: Vec<Range<usize>>,
    /// Each token's x offset in its row.
    x: Vec<f32>,
}

/// Horizontal padding inside a token's background, and the gap between tokens.
const PAD_X: f32 = 1.0;
const GAP_X: f32 = 2.0;
const ROW_GAP: f32 = 5.0;

/// A completion ready to draw; keep it between frames (it caches the layout).
pub struct TokenView {
    tokens: Vec<ViewToken>,
    advantage: f64,
    /// Per-token values drawn instead of the colouring's statistic, and whether they diverge
    /// around 0 ([`TokenView::with_values`]).
    values: Option<(Vec<f32>, bool)>,
    /// Per-token lines the hover card shows instead of one model's statistics.
    notes: Option<Vec<String>>,
    cells: Option<(egui::FontId, Vec<Cell>)>,
    layout: Option<Layout>,
}

impl TokenView {
    pub fn new(tokens: Vec<ViewToken>, advantage: f64) -> Self {
        Self {
            tokens,
            advantage,
            values: None,
            notes: None,
            cells: None,
            layout: None,
        }
    }

    /// Backgrounds from `values` (one per token) instead of a statistic of the tokens: on a
    /// red–green scale around 0 when `diverging`, else on the heat scale from 0.
    pub fn with_values(mut self, values: Vec<f32>, diverging: bool) -> Self {
        self.values = Some((values, diverging));
        self
    }

    /// Hover cards of the token's text and id, then `notes[i]` (one per token), instead of the
    /// token's own statistics and marks.
    pub fn with_notes(mut self, notes: Vec<String>) -> Self {
        self.notes = Some(notes);
        self
    }

    pub fn tokens(&self) -> &[ViewToken] {
        &self.tokens
    }

    /// Rows of the last layout (0 before the first frame).
    pub fn rows(&self) -> usize {
        self.layout.as_ref().map_or(0, |l| l.rows.len())
    }

    fn prepare(&mut self, ui: &egui::Ui, font_id: &egui::FontId) {
        if self.cells.as_ref().is_some_and(|(f, _)| f == font_id) {
            return;
        }
        let cells = ui.ctx().fonts_mut(|fonts| {
            self.tokens
                .iter()
                .map(|t| {
                    let (shown, ends_line) =
                        visible_token_text(&t.token.text, |c| fonts.has_glyph(font_id, c));
                    let width = shown.chars().map(|c| fonts.glyph_width(font_id, c)).sum();
                    Cell {
                        shown,
                        width,
                        ends_line,
                    }
                })
                .collect()
        });
        self.cells = Some((font_id.clone(), cells));
        self.layout = None;
    }

    fn lay_out(&mut self, width: f32) {
        if self.layout.as_ref().is_some_and(|l| l.width == width) {
            return;
        }
        let Some((_, cells)) = &self.cells else {
            return;
        };
        let mut rows = Vec::new();
        let mut x = Vec::with_capacity(cells.len());
        let mut row_start = 0;
        let mut at = 0.0f32;
        for (i, cell) in cells.iter().enumerate() {
            let w = cell.width + 2.0 * PAD_X;
            if at > 0.0 && at + w > width {
                rows.push(row_start..i);
                row_start = i;
                at = 0.0;
            }
            x.push(at);
            at += w + GAP_X;
            if cell.ends_line {
                rows.push(row_start..i + 1);
                row_start = i + 1;
                at = 0.0;
            }
        }
        if row_start < cells.len() || rows.is_empty() {
            rows.push(row_start..cells.len());
        }
        self.layout = Some(Layout { width, rows, x });
    }

    /// Draws the tokens in a vertical scroll area of at most `max_height`.
    pub fn ui(&mut self, ui: &mut egui::Ui, colouring: Colouring, scale: f32, max_height: f32) {
        let font_id = egui::TextStyle::Monospace.resolve(ui.style());
        self.prepare(ui, &font_id);
        let row_height = ui.ctx().fonts_mut(|f| f.row_height(&font_id)) + ROW_GAP;
        egui::ScrollArea::vertical()
            .id_salt("token_view_scroll")
            .max_height(max_height)
            .auto_shrink([false, true])
            .show_rows(ui, row_height, self.rows_for(ui), |ui, visible| {
                let rows = self.rows();
                self.lay_out(ui.available_width().max(40.0));
                if self.rows() != rows {
                    // The scroll area sized itself for the old rows: draw again with the new.
                    ui.ctx().request_repaint();
                }
                for row in visible {
                    self.row_ui(ui, row, row_height, &font_id, colouring, scale);
                }
            });
    }

    /// The row count show_rows needs before the closure lays out for the inner width: the last
    /// layout's (a width change re-lays out inside, one frame behind at most).
    fn rows_for(&mut self, ui: &egui::Ui) -> usize {
        if self.layout.is_none() {
            // The scroll bar takes some width; close enough for the first frame.
            self.lay_out((ui.available_width() - ui.spacing().scroll.bar_width).max(40.0));
        }
        self.rows()
    }

    fn row_ui(
        &self,
        ui: &mut egui::Ui,
        row: usize,
        row_height: f32,
        font_id: &egui::FontId,
        colouring: Colouring,
        scale: f32,
    ) {
        let (Some(layout), Some((_, cells))) = (&self.layout, &self.cells) else {
            return;
        };
        let Some(range) = layout.rows.get(row).cloned() else {
            ui.allocate_exact_size(vec2(ui.available_width(), row_height), Sense::hover());
            return;
        };
        let (rect, response) =
            ui.allocate_exact_size(vec2(ui.available_width(), row_height), Sense::hover());
        let text: String = range.clone().map(|i| cells[i].shown.as_str()).collect();
        response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, &text));
        if !ui.is_rect_visible(rect) {
            return;
        }
        let painter = ui.painter_at(rect.expand(2.0));
        let text_color = ui.visuals().strong_text_color();
        let weak = ui.visuals().weak_text_color();
        let glyph_height = row_height - ROW_GAP;
        let mut hovered = None;
        for i in range {
            let (cell, token) = (&cells[i], &self.tokens[i]);
            let min = pos2(rect.left() + layout.x[i], rect.top() + ROW_GAP / 2.0);
            let cell_rect = Rect::from_min_size(min, vec2(cell.width + 2.0 * PAD_X, glyph_height));
            let background = match &self.values {
                Some((values, diverging)) => {
                    let v = values.get(i).copied().unwrap_or(0.0) / scale.max(1e-6);
                    if *diverging {
                        advantage_color(v)
                    } else {
                        heat_color(v)
                    }
                }
                None => token_color(token, colouring, scale, self.advantage),
            };
            painter.rect_filled(cell_rect, 2.0, background);
            let marks = token.marks;
            painter.text(
                pos2(cell_rect.left() + PAD_X, cell_rect.top()),
                egui::Align2::LEFT_TOP,
                &cell.shown,
                font_id.clone(),
                if marks.counted { text_color } else { weak },
            );
            if marks.forking {
                painter.rect_stroke(
                    cell_rect.expand(0.5),
                    2.0,
                    Stroke::new(1.5, FORKING_COLOR),
                    egui::StrokeKind::Outside,
                );
            }
            if !marks.counted {
                let y = cell_rect.center().y;
                painter.hline(cell_rect.x_range(), y, Stroke::new(1.0, text_color));
            } else if !marks.trained {
                let y = cell_rect.bottom() + 1.0;
                let mut x = cell_rect.left();
                while x < cell_rect.right() {
                    painter.hline(
                        x..=(x + 2.0).min(cell_rect.right()),
                        y,
                        Stroke::new(1.0, weak),
                    );
                    x += 4.0;
                }
            }
            if marks.reflection {
                painter.hline(
                    cell_rect.x_range(),
                    cell_rect.bottom() + 1.0,
                    Stroke::new(2.0, REFLECTION_COLOR),
                );
            }
            let bar = match marks.segment {
                Segment::Think => Some(THINK_COLOR),
                Segment::Answer => Some(ANSWER_COLOR),
                Segment::Tag => Some(weak),
                Segment::Other => None,
            };
            if let Some(color) = bar {
                painter.hline(
                    cell_rect.x_range(),
                    cell_rect.top() - 1.5,
                    Stroke::new(2.0, color),
                );
            }
            if response
                .hover_pos()
                .is_some_and(|p| p.x >= cell_rect.left() && p.x < cell_rect.right() + GAP_X)
            {
                hovered = Some(i);
            }
        }
        if let Some(i) = hovered {
            let token = &self.tokens[i];
            response.on_hover_ui_at_pointer(|ui| match &self.notes {
                Some(notes) => {
                    ui.label(
                        egui::RichText::new(format!("{:?}", token.token.text))
                            .monospace()
                            .strong(),
                    );
                    ui.label(format!("position {i} · id {}", token.token.id));
                    if let Some(note) = notes.get(i) {
                        ui.label(egui::RichText::new(note).monospace());
                    }
                }
                None => {
                    token_card_ui(ui, i, &token.token);
                    marks_card_ui(ui, token);
                }
            });
        }
    }
}

/// The rank and marks of a hovered token, below its card.
fn marks_card_ui(ui: &mut egui::Ui, token: &ViewToken) {
    ui.separator();
    ui.label(match token.rank {
        RankBucket::First => "rank: the most likely token",
        RankBucket::TopK => "rank: among the top alternatives",
        RankBucket::Below => "rank: below the stored alternatives",
    });
    let m = token.marks;
    if m.forking {
        ui.colored_label(FORKING_COLOR, "forking token (the step's top-ρ by entropy)");
    }
    if !m.counted {
        ui.label("masked: the loss did not count it (truncated completion)");
    } else if !m.trained {
        ui.label("no gradient: outside the top-entropy share");
    }
    if m.reflection {
        ui.colored_label(REFLECTION_COLOR, "in a reflection phrase");
    }
    match m.segment {
        Segment::Think => {
            ui.colored_label(THINK_COLOR, "inside <think>");
        }
        Segment::Answer => {
            ui.colored_label(ANSWER_COLOR, "inside <answer>");
        }
        Segment::Tag | Segment::Other => {}
    }
}

/// The legend of the marks.
pub fn marks_legend_ui(ui: &mut egui::Ui) {
    ui.horizontal_wrapped(|ui| {
        let swatch = |ui: &mut egui::Ui, color: Color32, text: &str, style: u8| {
            let (rect, _) = ui.allocate_exact_size(vec2(18.0, 12.0), Sense::hover());
            let painter = ui.painter();
            match style {
                0 => {
                    painter.rect_stroke(
                        rect,
                        2.0,
                        Stroke::new(1.5, color),
                        egui::StrokeKind::Inside,
                    );
                }
                1 => {
                    painter.hline(rect.x_range(), rect.bottom() - 1.0, Stroke::new(2.0, color));
                }
                2 => {
                    painter.hline(rect.x_range(), rect.top() + 1.0, Stroke::new(2.0, color));
                }
                _ => {
                    painter.hline(rect.x_range(), rect.center().y, Stroke::new(1.0, color));
                }
            }
            ui.label(egui::RichText::new(text).small());
        };
        swatch(ui, FORKING_COLOR, "forking", 0);
        swatch(ui, REFLECTION_COLOR, "reflection", 1);
        swatch(ui, THINK_COLOR, "think", 2);
        swatch(ui, ANSWER_COLOR, "answer", 2);
        swatch(ui, ui.visuals().strong_text_color(), "masked", 3);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: u32, text: &str, top: &[u32]) -> ViewToken {
        let top: Vec<Alternative> = top
            .iter()
            .map(|&id| Alternative {
                id,
                text: String::new(),
                logprob: -1.0,
            })
            .collect();
        ViewToken {
            rank: RankBucket::of(id, &top),
            token: HeatmapToken {
                id,
                text: text.into(),
                logprob: -1.0,
                entropy_nats: 1.0,
                alternatives: top,
            },
            marks: Marks::default(),
        }
    }

    #[test]
    fn rank_buckets_follow_the_stored_alternatives() {
        assert_eq!(token(7, "a", &[7, 3]).rank, RankBucket::First);
        assert_eq!(token(3, "a", &[7, 3]).rank, RankBucket::TopK);
        assert_eq!(token(9, "a", &[7, 3]).rank, RankBucket::Below);
        assert_eq!(token(9, "a", &[]).rank, RankBucket::Below);
    }

    #[test]
    fn rows_wrap_at_the_width_and_after_line_breaks() {
        let mut view = TokenView::new(
            vec![
                token(1, "aaaa", &[]),
                token(2, "bb\n", &[]),
                token(3, "cc", &[]),
                token(4, "dddd", &[]),
                token(5, "e", &[]),
            ],
            0.0,
        );
        // Widths as if every character were 10 px: 40, 40 ("bb\\n" shows as 4), 20, 40, 10.
        view.cells = Some((
            egui::FontId::monospace(10.0),
            view.tokens
                .iter()
                .map(|t| {
                    let (shown, ends_line) = visible_token_text(&t.token.text, |_| true);
                    Cell {
                        width: 10.0 * shown.chars().count() as f32,
                        shown,
                        ends_line,
                    }
                })
                .collect(),
        ));
        // Each cell takes its width + 2 px padding, and 2 px gap before the next.
        view.lay_out(70.0);
        let layout = view.layout.as_ref().expect("laid out");
        assert_eq!(layout.rows, vec![0..1, 1..2, 2..4, 4..5]);
        view.lay_out(200.0);
        let layout = view.layout.as_ref().expect("laid out");
        assert_eq!(layout.rows, vec![0..2, 2..5]);
        assert_eq!(layout.x[1], 44.0);
        assert_eq!(layout.x[4], 68.0);
    }

    #[test]
    fn advantage_colours_diverge_around_zero() {
        assert!(advantage_color(1.0).g() > advantage_color(1.0).r());
        assert!(advantage_color(-1.0).r() > advantage_color(-1.0).g());
        assert!(advantage_color(1.0).a() > advantage_color(0.1).a());
        assert_eq!(advantage_color(5.0), advantage_color(1.0));
    }
}
