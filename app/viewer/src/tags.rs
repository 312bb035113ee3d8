//! The tag browser: every element of the current instance, read on a worker thread, filterable.

use std::path::Path;
use std::sync::Arc;

use crossbeam_channel::Receiver;
use radclip_dicom::dump::{self, TagRow};

pub struct TagBrowser {
    rx: Option<Receiver<Result<Vec<TagRow>, String>>>,
    rows: Result<Vec<TagRow>, String>,
    pub filter: String,
}

impl TagBrowser {
    pub fn open(path: Arc<Path>) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .name("radclip-tags".into())
            .spawn(move || {
                let r = radclip_dicom::pixel::open_full(&path)
                    .map(|obj| dump::rows(&obj))
                    .map_err(|e| e.to_string());
                let _ = tx.send(r);
            })?;
        Ok(TagBrowser {
            rx: Some(rx),
            rows: Ok(Vec::new()),
            filter: String::new(),
        })
    }

    pub fn poll(&mut self) {
        if let Some(rx) = &self.rx
            && let Ok(r) = rx.try_recv()
        {
            self.rows = r;
            self.rx = None;
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.label("Filter:");
            ui.text_edit_singleline(&mut self.filter);
        });
        if self.rx.is_some() {
            ui.ctx().request_repaint();
            ui.spinner();
            return;
        }
        let rows: Vec<&TagRow> = match &self.rows {
            Ok(r) => r.iter().filter(|r| r.matches(&self.filter)).collect(),
            Err(e) => {
                ui.colored_label(egui::Color32::LIGHT_RED, e);
                return;
            }
        };
        let h = ui.text_style_height(&egui::TextStyle::Monospace);
        egui::ScrollArea::both()
            .auto_shrink(false)
            .show_rows(ui, h, rows.len(), |ui, range| {
                for r in rows.get(range).unwrap_or_default() {
                    ui.monospace(format!(
                        "{}{} {:2} {:36} {}",
                        "  ".repeat(r.depth),
                        r.tag,
                        r.vr,
                        r.name,
                        r.value
                    ));
                }
            });
    }
}
