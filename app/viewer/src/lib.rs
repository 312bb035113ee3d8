//! radclip's viewer: egui state, input and drawing over the `radclip-dicom` engine. It owns no
//! algorithm: decoding, the pixel pipeline and measurements live in the engine.

pub mod actions;
pub mod ai;
pub mod ai_panel;
pub mod app;
pub mod attention_panel;
pub mod cases_panel;
pub mod find_panel;
pub mod gpu;
pub mod gpu_mpr;
pub mod labels;
pub mod mpr;
pub mod state;
pub mod tags;
pub mod transform;

pub use app::ViewerApp;

struct EframeApp(ViewerApp);

impl eframe::App for EframeApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.0.ui(ui);
    }
}

/// Opens the viewer window on `paths` (read as one tree) and returns when it is closed. `model_label`:
/// the configured AI model's name and intended use, always on screen; `ai`: the AI panel's model.
pub fn run(
    paths: Vec<std::path::PathBuf>,
    model_label: Option<String>,
    ai: Option<ai::AiSetup>,
) -> Result<(), eframe::Error> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("radclip")
            // Matches StartupWMClass in packaging/radclip.desktop so the launcher groups the window.
            .with_app_id("radclip")
            .with_inner_size([1280.0, 800.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        "radclip",
        options,
        Box::new(move |cc| {
            let mut app = ViewerApp::new(&cc.egui_ctx, None)?;
            app.open_all(&cc.egui_ctx, paths);
            app.model_label = model_label;
            if let Some(setup) = ai {
                app.enable_ai(&cc.egui_ctx, setup);
            }
            if let Some(rs) = &cc.wgpu_render_state {
                app.enable_gpu_voi(rs);
            }
            Ok(Box::new(EframeApp(app)))
        }),
    )
}
