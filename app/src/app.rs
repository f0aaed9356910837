//! The studio shell: a left panel listing the views and the selected view in the centre.
//! [`Studio`] is the whole UI as a plain state struct (tests drive it with `egui_kittest`);
//! [`StudioApp`] wraps it as the `eframe::App`.

use crate::state::State;
use crate::views::View;
use crate::views::playground::Playground;

/// The studio's UI: persisted [`State`] plus each view's runtime state.
pub struct Studio {
    pub state: State,
    pub playground: Playground,
}

impl Studio {
    /// A studio whose Playground opens `model` (default: the built-in tiny reasoner).
    pub fn new(model: Option<String>) -> Self {
        Self {
            state: State::default(),
            playground: Playground::new(model),
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui) {
        egui::Panel::left("studio_views")
            .resizable(false)
            .exact_size(150.0)
            .show(ui, |ui| self.views_ui(ui));
        egui::CentralPanel::default().show(ui, |ui| match self.state.selected_view {
            View::Playground => self.playground.ui(ui, &mut self.state),
        });
    }

    fn views_ui(&mut self, ui: &mut egui::Ui) {
        ui.add_space(6.0);
        ui.heading("Reasoning Studio");
        ui.separator();
        for view in View::ALL {
            ui.selectable_value(&mut self.state.selected_view, view, view.title());
        }
    }
}

/// The `eframe` application.
pub struct StudioApp {
    studio: Studio,
}

impl StudioApp {
    pub fn new(_cc: &eframe::CreationContext<'_>, model: Option<String>) -> Self {
        Self {
            studio: Studio::new(model),
        }
    }
}

impl eframe::App for StudioApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.studio.ui(ui);
    }
}
