//! The panels around the viewports: menu bar and toolbar, series browser, status bar.

use egui::{Color32, Rect, Sense, pos2, vec2};

use super::ViewerApp;
use super::textures::make_thumbnail;
use crate::actions::Action;
use crate::state::{Command, DragAction, Layout, Tool};
use crate::tags::TagBrowser;

impl ViewerApp {
    /// The status bar: what the viewer is doing, the cache, and the model's name and intended use.
    pub(super) fn status_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            if self.scan_rx.is_some() {
                ui.spinner();
            }
            ui.label(&self.status);
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                ui.label(format!("cache {} MB", self.loader.cache().bytes() >> 20));
                if let Some(m) = &self.model_label {
                    ui.separator();
                    ui.label(egui::RichText::new(m).color(Color32::from_rgb(230, 180, 60)));
                }
            });
        });
    }

    pub(super) fn menu_ui(&mut self, ui: &mut egui::Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("Open file…").clicked() {
                    self.pick(ui.ctx(), false);
                }
                if ui.button("Open folder or DICOMDIR…").clicked() {
                    self.pick(ui.ctx(), true);
                }
                if self.ai.is_some() {
                    ui.separator();
                    if ui
                        .button("Report archive folder…")
                        .on_hover_text(
                            "Folder of .txt, Open-i .xml or .csv reports: the AI panel's similar \
                             reports and drafts come from it",
                        )
                        .clicked()
                    {
                        self.pick_archive(ui.ctx(), true);
                    }
                    if ui
                        .button("Report archive or index file…")
                        .on_hover_text(
                            "A .csv or .xml archive, or an index made by `radclip index` with this model",
                        )
                        .clicked()
                    {
                        self.pick_archive(ui.ctx(), false);
                    }
                }
            });
            ui.menu_button("View", |ui| {
                for (l, name) in [
                    (Layout::One, "1 × 1"),
                    (Layout::OneByTwo, "1 × 2"),
                    (Layout::TwoByTwo, "2 × 2"),
                ] {
                    if ui.radio(self.layout == l, name).clicked() {
                        self.set_layout(l);
                    }
                }
                ui.separator();
                for a in [
                    Action::CornerText,
                    Action::HidePatientData,
                    Action::Segmentations,
                    Action::AiPanel,
                    Action::AttentionInspector,
                ] {
                    if let Some(on) = self.switch(a) {
                        ui.checkbox(on, a.menu_text());
                    }
                }
                let mut mpr = self.mpr.is_some();
                if ui.checkbox(&mut mpr, Action::Mpr.menu_text()).clicked() {
                    self.perform(Action::Mpr);
                }
                if ui.button(Action::Tags.menu_text()).clicked() {
                    self.perform(Action::Tags);
                }
            });
            ui.menu_button("Mouse", |ui| {
                let actions = [
                    (DragAction::WindowLevel, "Window/level"),
                    (DragAction::Pan, "Pan"),
                    (DragAction::Zoom, "Zoom"),
                    (DragAction::Measure, "Measure (active tool)"),
                ];
                for (label, slot) in [
                    ("Left drag", &mut self.bindings.primary),
                    ("Middle drag", &mut self.bindings.middle),
                    ("Right drag", &mut self.bindings.secondary),
                ] {
                    ui.menu_button(label, |ui| {
                        for (a, name) in actions {
                            ui.radio_value(slot, a, name);
                        }
                    });
                }
            });
            ui.separator();
            for (t, a) in [
                (Tool::WindowLevel, Action::WindowLevelTool),
                (Tool::Line, Action::LineTool),
                (Tool::Rectangle, Action::RectangleTool),
                (Tool::Ellipse, Action::EllipseTool),
            ] {
                if ui
                    .selectable_label(self.tool == t, a.spec().label)
                    .clicked()
                {
                    self.perform(a);
                }
            }
            ui.separator();
            let cine = self
                .viewports
                .get(self.active)
                .map(|v| (v.cine, v.cine_fps));
            if let Some((on, mut fps)) = cine {
                if ui.selectable_label(on, Action::Cine.spec().label).clicked() {
                    self.perform(Action::Cine);
                }
                if ui
                    .add(egui::Slider::new(&mut fps, 1.0..=60.0).text("fps"))
                    .changed()
                {
                    self.command(self.active, Command::SetCineFps(fps));
                }
            }
            if ui.button(Action::Help.spec().label).clicked() {
                self.perform(Action::Help);
            }
        });
    }

    pub(super) fn browser_ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        egui::ScrollArea::vertical().show(ui, |ui| {
            let mut last_study = String::new();
            let mut clicked = None;
            for (i, e) in self.series.iter().enumerate() {
                let study = format!("{} {}", e.study_date, e.study_description);
                if study != last_study {
                    let who = if self.hide_phi {
                        "Patient (hidden)".to_string()
                    } else {
                        e.patient_name.clone()
                    };
                    ui.strong(format!("{who} — {study}"));
                    last_study = study;
                }
                if !self.thumbs.contains_key(&i)
                    && let Some(t) = make_thumbnail(&ctx, &self.loader, &e.series, i)
                {
                    self.thumbs.insert(i, t);
                }
                let selected = self.viewports.get(self.active).and_then(|v| v.series) == Some(i);
                ui.horizontal(|ui| {
                    let (rect, resp) = ui.allocate_exact_size(vec2(64.0, 64.0), Sense::click());
                    ui.painter().rect_filled(rect, 2.0, Color32::from_gray(20));
                    if let Some(t) = self.thumbs.get(&i) {
                        let sz = t.size_vec2();
                        let s = 64.0 / sz.x.max(sz.y).max(1.0);
                        let r = Rect::from_center_size(rect.center(), sz * s);
                        ui.painter().image(
                            t.id(),
                            r,
                            Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0)),
                            Color32::WHITE,
                        );
                    }
                    let label = ui.selectable_label(selected, e.series.label());
                    if resp.clicked() || label.clicked() {
                        clicked = Some(i);
                    }
                });
            }
            if let Some(i) = clicked {
                self.show_series_in(self.active, i);
            }
            if !self.problems.is_empty() {
                ui.separator();
                ui.collapsing(format!("{} skipped file(s)", self.problems.len()), |ui| {
                    for p in &self.problems {
                        ui.label(format!("{}: {}", p.path.display(), p.message));
                    }
                });
            }
        });
    }

    pub(super) fn open_tags(&mut self) {
        let Some(v) = self.viewports.get(self.active) else {
            return;
        };
        if let Some(k) = self.frame_key(v) {
            self.tags = TagBrowser::open(k.path).ok();
        }
    }
}
