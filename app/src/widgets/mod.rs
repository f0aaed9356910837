//! Reusable pieces of UI shared by the views.

pub mod token_heatmap;
pub mod token_view;
