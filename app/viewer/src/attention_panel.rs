//! The attention inspector: for the image on screen, a grid of every layer's and head's attention from
//! the class token or a patch the user clicks on the image to the patch grid (then each layer's mean
//! over heads, and the attention rollout through it), each a thumbnail; a click lays that map over the
//! image, and the patch grid can be drawn over it. The shown map saves as PNG, all maps as `.npy`, each
//! with its provenance. The maps are computed on the AI worker (`radclip_assist::attention`); here they
//! only become textures.

use std::path::PathBuf;

use egui::{Color32, TextureHandle, TextureOptions, vec2};
use radclip_assist::attention::{AttentionMaps, Query};
use radclip_dicom::FrameKey;

/// A column of the grid: one head, the mean over heads, or the rollout through the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Head(usize),
    Mean,
    Rollout,
}

/// Which map is laid over the image: a layer, and its column.
pub type Selection = (usize, Column);

/// A source-image rectangle (x0, y0, x1, y1), in pixels.
pub type SourceRect = (f64, f64, f64, f64);

pub struct AttentionView {
    pub key: FrameKey,
    pub maps: AttentionMaps,
    /// The source-image rectangle the patch grid covers.
    pub source_rect: SourceRect,
    /// Per layer: each head's thumbnail, then the mean's and the rollout's.
    thumbs: Vec<Vec<TextureHandle>>,
    overlay: Option<(Selection, TextureHandle)>,
}

#[derive(Default)]
pub struct AttentionInspector {
    pub open: bool,
    pub view: Option<AttentionView>,
    pub selected: Option<Selection>,
    pub show_grid: bool,
    /// The token whose attention is shown; a click on the image picks a patch while `picking`.
    pub query: Option<Query>,
    pub picking: bool,
    requested: Option<(FrameKey, Query)>,
    /// The model's provenance, written beside exported maps.
    pub provenance: Option<Box<radclip_assist::ModelProvenance>>,
    /// The last export's outcome, in a sentence.
    pub saved: Option<String>,
    save_rx: Option<crossbeam_channel::Receiver<Option<String>>>,
}

/// A map as a texture of one pixel per patch (scaled to its own range, Turbo colours), drawn stretched
/// with linear filtering.
fn map_texture(
    ctx: &egui::Context,
    name: String,
    values: &[f32],
    grid: (usize, usize),
) -> TextureHandle {
    let lo = values.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let pixels: Vec<Color32> = values
        .iter()
        .map(|v| {
            let t = (v - lo) / span;
            let [r, g, b] = radclip_clip::heatmap::turbo(t).map(|c| c as u8);
            // Hot patches opaque, cold ones faint, as the heatmap overlay.
            Color32::from_rgba_unmultiplied(r, g, b, ((0.25 + 0.75 * t) * 255.0) as u8)
        })
        .collect();
    let img = egui::ColorImage::new([grid.1, grid.0], pixels);
    ctx.load_texture(name, img, TextureOptions::LINEAR)
}

impl AttentionInspector {
    /// The frame and token to ask the worker for, if the inspector is open and lacks those maps
    /// (`read`: the worker has read that frame, so its attention is at hand).
    pub fn wanted(&mut self, current: Option<&FrameKey>, read: bool) -> Option<(FrameKey, Query)> {
        let key = current?;
        let query = self.query();
        let have = self
            .view
            .as_ref()
            .is_some_and(|v| &v.key == key && v.maps.query == query);
        let want = (key.clone(), query);
        if !self.open || !read || have || self.requested.as_ref() == Some(&want) {
            return None;
        }
        self.requested = Some(want.clone());
        Some(want)
    }

    /// The token whose attention is shown (the class token unless a patch was picked).
    pub fn query(&self) -> Query {
        self.query.unwrap_or(Query::ClassToken)
    }

    /// Picks the patch under source-image point (x, y) as the token whose attention is shown; a point
    /// outside the region the model saw is ignored.
    pub fn pick(&mut self, x: f64, y: f64) {
        let Some(v) = &self.view else {
            return;
        };
        let (x0, y0, x1, y1) = v.source_rect;
        let (gh, gw) = v.maps.grid;
        let (u, w) = ((x - x0) / (x1 - x0), (y - y0) / (y1 - y0));
        if !((0.0..1.0).contains(&u) && (0.0..1.0).contains(&w)) {
            return;
        }
        self.query = Some(Query::Patch {
            row: ((w * gh as f64) as usize).min(gh.saturating_sub(1)),
            col: ((u * gw as f64) as usize).min(gw.saturating_sub(1)),
        });
        self.picking = false;
    }

    pub fn receive(
        &mut self,
        ctx: &egui::Context,
        key: FrameKey,
        maps: AttentionMaps,
        source_rect: SourceRect,
    ) {
        let thumbs = (0..maps.layers)
            .map(|l| {
                let mut row: Vec<TextureHandle> = (0..maps.heads)
                    .filter_map(|h| {
                        let m = maps.map(l, h)?;
                        Some(map_texture(ctx, format!("attention-{l}-{h}"), m, maps.grid))
                    })
                    .collect();
                if let Some(mean) = maps.layer_mean(l) {
                    row.push(map_texture(
                        ctx,
                        format!("attention-{l}-mean"),
                        &mean,
                        maps.grid,
                    ));
                }
                if let Some(r) = maps.rollout(l) {
                    row.push(map_texture(
                        ctx,
                        format!("attention-{l}-rollout"),
                        r,
                        maps.grid,
                    ));
                }
                row
            })
            .collect();
        self.view = Some(AttentionView {
            key,
            maps,
            source_rect,
            thumbs,
            overlay: None,
        });
        self.refresh_overlay();
    }

    fn refresh_overlay(&mut self) {
        let (Some(v), Some(sel)) = (&mut self.view, self.selected) else {
            return;
        };
        if v.overlay.as_ref().is_some_and(|(s, _)| *s == sel) {
            return;
        }
        // The thumbnail already is that map's texture.
        let (layer, column) = sel;
        let col = match column {
            Column::Head(h) => h,
            Column::Mean => v.maps.heads,
            Column::Rollout => v.maps.heads + 1,
        };
        v.overlay = v
            .thumbs
            .get(layer)
            .and_then(|row| row.get(col))
            .cloned()
            .map(|t| (sel, t));
    }

    /// The values of map `sel`.
    fn values(maps: &AttentionMaps, sel: Selection) -> Option<Vec<f32>> {
        let (layer, column) = sel;
        match column {
            Column::Head(h) => maps.map(layer, h).map(<[f32]>::to_vec),
            Column::Mean => maps.layer_mean(layer),
            Column::Rollout => maps.rollout(layer).map(<[f32]>::to_vec),
        }
    }

    /// What an export writes: the file's bytes and its provenance's.
    fn export(&self, all: bool) -> Option<(Vec<u8>, Option<String>, String)> {
        let v = self.view.as_ref()?;
        let (bytes, what, name) = if all {
            (
                v.maps.npy(),
                "every layer's and head's attention".to_string(),
                "attention.npy".to_string(),
            )
        } else {
            let sel = self.selected?;
            let values = Self::values(&v.maps, sel)?;
            let cell = (512 / v.maps.grid.0.max(v.maps.grid.1).max(1)).max(1);
            let img = radclip_assist::attention::map_image(&values, v.maps.grid, cell);
            let rendered = radclip_dicom::Rendered::Rgb {
                rows: img.height as u32,
                cols: img.width as u32,
                data: img.data,
            };
            let png = radclip_dicom::export::png_bytes(&rendered).ok()?;
            let (layer, column) = sel;
            let (what, file) = match column {
                Column::Head(h) => (
                    format!("layer {layer} head {h} attention"),
                    format!("attention-layer{layer}-head{h}.png"),
                ),
                Column::Mean => (
                    format!("layer {layer} attention, mean over heads"),
                    format!("attention-layer{layer}-mean.png"),
                ),
                Column::Rollout => (
                    format!("attention rollout through layer {layer}"),
                    format!("attention-layer{layer}-rollout.png"),
                ),
            };
            (png, what, file)
        };
        let method = format!("{what} from the {}", v.maps.query.name());
        let provenance = self
            .provenance
            .as_deref()
            .map(|m| radclip_assist::Provenance::new(m, &method, Vec::new(), 0.0).text());
        Some((bytes, provenance, name))
    }

    /// Asks where to save the shown map (PNG) or all maps (.npy) in a dialog off the GUI thread, and
    /// writes the file there atomically with its provenance beside it.
    fn save(&mut self, ctx: &egui::Context, all: bool) {
        let Some((bytes, provenance, name)) = self.export(all) else {
            return;
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        let waker = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("radclip-save".into())
            .spawn(move || {
                let Some(path) = rfd::FileDialog::new().set_file_name(&name).save_file() else {
                    let _ = tx.send(None);
                    return;
                };
                let _ = tx.send(Some(write_export(&path, &bytes, provenance.as_deref())));
                waker.request_repaint();
            });
        match spawned {
            Ok(_) => self.save_rx = Some(rx),
            Err(e) => self.saved = Some(format!("Could not save: {e}")),
        }
    }

    /// The map laid over frame `key`: its texture, the source rectangle it covers and the patch grid.
    pub fn overlay_for(
        &self,
        key: &FrameKey,
    ) -> Option<(&TextureHandle, SourceRect, (usize, usize))> {
        let v = self.view.as_ref().filter(|v| &v.key == key)?;
        let (_, t) = v.overlay.as_ref()?;
        self.open.then_some((t, v.source_rect, v.maps.grid))
    }

    pub fn ui(&mut self, ui: &mut egui::Ui) {
        if let Some(rx) = &self.save_rx
            && let Ok(r) = rx.try_recv()
        {
            self.save_rx = None;
            if r.is_some() {
                self.saved = r;
            }
        }
        let Some(v) = &self.view else {
            ui.label("Reading the image on screen…");
            return;
        };
        ui.small(format!(
            "{} layers × {} heads, attention from the {} to the {}×{} patches; then each layer's \
             mean over heads, and the rollout through it. Click a map to lay it over the image.",
            v.maps.layers,
            v.maps.heads,
            v.maps.query.name(),
            v.maps.grid.0,
            v.maps.grid.1
        ));
        ui.horizontal(|ui| {
            ui.checkbox(&mut self.show_grid, "Patch grid");
            if ui
                .selectable_label(self.picking, "Pick a patch")
                .on_hover_text("Then click the image: the maps show that patch's attention.")
                .clicked()
            {
                self.picking = !self.picking;
            }
            if self.query.is_some() && ui.button("Class token").clicked() {
                self.query = None;
                self.picking = false;
            }
        });
        if self.picking {
            ui.small("Click a patch on the image.");
        }
        ui.horizontal(|ui| {
            let shown = self.selected.is_some();
            let png = ui.add_enabled(shown, egui::Button::new("Save shown map (PNG)…"));
            let npy = ui.button("Save all maps (.npy)…").on_hover_text(
                "float32 [layers, heads, rows, columns], with its provenance beside it",
            );
            let ctx = ui.ctx().clone();
            if png.clicked() {
                self.save(&ctx, false);
            }
            if npy.clicked() {
                self.save(&ctx, true);
            }
        });
        if let Some(m) = &self.saved {
            ui.small(m);
        }
        let Some(v) = &self.view else {
            return;
        };
        let mut clicked = None;
        egui::ScrollArea::both().show(ui, |ui| {
            egui::Grid::new("attention-grid")
                .spacing(vec2(2.0, 2.0))
                .show(ui, |ui| {
                    ui.label("");
                    for h in 0..v.maps.heads {
                        ui.small(format!("H{h}"));
                    }
                    ui.small("mean");
                    ui.small("rollout");
                    ui.end_row();
                    for (l, row) in v.thumbs.iter().enumerate() {
                        ui.small(format!("L{l}"));
                        for (c, t) in row.iter().enumerate() {
                            let column = match c {
                                c if c < v.maps.heads => Column::Head(c),
                                c if c == v.maps.heads => Column::Mean,
                                _ => Column::Rollout,
                            };
                            let sel = (l, column);
                            let name = match column {
                                Column::Head(h) => format!("layer {l} head {h}"),
                                Column::Mean => format!("layer {l} mean"),
                                Column::Rollout => format!("layer {l} rollout"),
                            };
                            let img = egui::Image::new(t)
                                .fit_to_exact_size(vec2(36.0, 36.0))
                                .alt_text(&name);
                            let button =
                                egui::Button::image(img).selected(self.selected == Some(sel));
                            if ui.add(button).on_hover_text(&name).clicked() {
                                clicked = Some(sel);
                            }
                        }
                        ui.end_row();
                    }
                });
        });
        if let Some(sel) = clicked {
            self.selected = if self.selected == Some(sel) {
                None
            } else {
                Some(sel)
            };
            if let Some(v) = &mut self.view {
                v.overlay = None;
            }
            self.refresh_overlay();
        }
    }
}

/// Writes an exported map atomically, with its provenance beside it; the outcome in a sentence.
fn write_export(path: &std::path::Path, bytes: &[u8], provenance: Option<&str>) -> String {
    let written =
        radclip_dicom::export::write_atomic(path, bytes).and_then(|()| match provenance {
            Some(p) => radclip_dicom::export::write_atomic(
                &radclip_assist::provenance::sidecar(path),
                p.as_bytes(),
            ),
            None => Ok(()),
        });
    match written {
        Ok(()) => format!("Saved {}.", path.display()),
        Err(e) => format!("Could not save {}: {e}", PathBuf::from(path).display()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    /// Maps of one layer of two heads on a 2 × 3 grid.
    fn maps() -> AttentionMaps {
        AttentionMaps {
            layers: 1,
            heads: 2,
            grid: (2, 3),
            query: Query::ClassToken,
            values: (0..12).map(|v| v as f32 / 12.0).collect(),
            rollout: vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        }
    }

    #[test]
    fn the_shown_map_saves_as_a_png_of_the_grid_and_all_maps_as_npy() {
        let ctx = egui::Context::default();
        let mut inspector = AttentionInspector::default();
        let key = FrameKey {
            path: std::path::Path::new("/x.dcm").into(),
            frame: 0,
        };
        inspector.receive(&ctx, key, maps(), (0.0, 0.0, 30.0, 20.0));
        assert!(
            inspector.export(false).is_none(),
            "no map shown, none to save"
        );
        inspector.selected = Some((0, Column::Rollout));
        let (png, provenance, name) = inspector.export(false).unwrap();
        assert_eq!(name, "attention-layer0-rollout.png");
        assert!(provenance.is_none());
        let img = image::load_from_memory(&png).unwrap();
        // 512 px over the longer side of the grid: 170 px a patch.
        assert_eq!((img.width(), img.height()), (3 * 170, 2 * 170));
        let (npy, _, name) = inspector.export(true).unwrap();
        assert_eq!(name, "attention.npy");
        assert_eq!(npy, maps().npy());
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a.png");
        let said = write_export(&out, &png, Some("{}"));
        assert!(said.starts_with("Saved"), "{said}");
        assert_eq!(std::fs::read(&out).unwrap(), png);
        assert!(radclip_assist::provenance::sidecar(&out).is_file());
        // A click picks the patch under it; outside the region the model saw, nothing.
        inspector.picking = true;
        inspector.pick(25.0, 15.0);
        assert_eq!(inspector.query(), Query::Patch { row: 1, col: 2 });
        assert!(!inspector.picking);
        inspector.pick(31.0, 5.0);
        assert_eq!(inspector.query(), Query::Patch { row: 1, col: 2 });
    }
}
