//! Reasoning Studio's desktop GUI (egui/eframe): a shell with one module per view
//! ([`views`]), reusable widgets ([`widgets`]), the workspace service that owns the window's
//! connections ([`workspace_service`]), one way to run background work ([`jobs`]) and a model
//! worker thread that owns the loaded model, so the UI never blocks on the disk, loading or
//! generation.

mod app;
pub mod context;
pub mod dialogs;
pub mod feed;
pub mod jobs;
pub mod series;
pub mod state;
pub mod views;
pub mod widgets;
mod worker;
pub mod workspace_service;

pub use app::{Studio, StudioApp};
pub use context::StudioOptions;
pub use worker::ModelSummary;

/// The window's size at start, in points.
pub const WINDOW_SIZE: [f32; 2] = [1280.0, 800.0];

/// Opens the studio window and runs until it is closed.
///
/// Tries the OpenGL (glow) renderer first, the most robust on virtual machines, then wgpu.
pub fn run_native(options: StudioOptions) -> anyhow::Result<()> {
    match run_with(eframe::Renderer::Glow, options.clone()) {
        Ok(()) => Ok(()),
        Err(glow_error) => {
            tracing::warn!("the OpenGL renderer failed ({glow_error}); trying wgpu");
            run_with(eframe::Renderer::Wgpu, options).map_err(|wgpu_error| {
                anyhow::anyhow!(
                    "could not open the studio window: OpenGL failed ({glow_error}) and wgpu failed ({wgpu_error})"
                )
            })
        }
    }
}

fn run_with(renderer: eframe::Renderer, options: StudioOptions) -> Result<(), String> {
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Reasoning Studio")
            .with_inner_size(WINDOW_SIZE)
            .with_min_inner_size([720.0, 480.0]),
        renderer,
        ..Default::default()
    };
    eframe::run_native(
        "Reasoning Studio",
        native,
        Box::new(move |cc| Ok(Box::new(StudioApp::new(cc, options)))),
    )
    .map_err(|e| e.to_string())
}
