//! The attention inspector: for the image on screen, a grid of every layer's and head's attention from
//! the class token to the patch grid (the per-layer mean in the last column), each a thumbnail; a click
//! lays that map over the image, and the patch grid can be drawn over it. The maps are computed on the AI
//! worker (`radclip_assist::attention`); here they only become textures.

use egui::{Color32, TextureHandle, TextureOptions, vec2};
use radclip_assist::attention::AttentionMaps;
use radclip_dicom::FrameKey;

/// Which map is laid over the image: a layer, and a head or (`None`) the mean over heads.
pub type Selection = (usize, Option<usize>);

/// A source-image rectangle (x0, y0, x1, y1), in pixels.
pub type SourceRect = (f64, f64, f64, f64);

pub struct AttentionView {
    pub key: FrameKey,
    pub maps: AttentionMaps,
    /// The source-image rectangle the patch grid covers.
    pub source_rect: SourceRect,
    /// Per layer: each head's thumbnail, then the mean's.
    thumbs: Vec<Vec<TextureHandle>>,
    overlay: Option<(Selection, TextureHandle)>,
}

#[derive(Default)]
pub struct AttentionInspector {
    pub open: bool,
    pub view: Option<AttentionView>,
    pub selected: Option<Selection>,
    pub show_grid: bool,
    requested: Option<FrameKey>,
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
    /// The frame to ask the worker for, if the inspector is open and lacks its maps (`read`: the
    /// worker has read that frame, so its attention is at hand).
    pub fn wanted(&mut self, current: Option<&FrameKey>, read: bool) -> Option<FrameKey> {
        let key = current?;
        let have = self.view.as_ref().is_some_and(|v| &v.key == key);
        if !self.open || !read || have || self.requested.as_ref() == Some(key) {
            return None;
        }
        self.requested = Some(key.clone());
        Some(key.clone())
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
        let (layer, head) = sel;
        let values = match head {
            Some(h) => v.maps.map(layer, h).map(<[f32]>::to_vec),
            None => v.maps.layer_mean(layer),
        };
        // The thumbnail already is that map's texture.
        let col = head.unwrap_or(v.maps.heads);
        v.overlay = values
            .and_then(|_| v.thumbs.get(layer)?.get(col).cloned())
            .map(|t| (sel, t));
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
        let Some(v) = &self.view else {
            ui.label("Reading the image on screen…");
            return;
        };
        ui.small(format!(
            "{} layers × {} heads, attention from the class token to the {}×{} patches; the last \
             column is each layer's mean. Click a map to lay it over the image.",
            v.maps.layers, v.maps.heads, v.maps.grid.0, v.maps.grid.1
        ));
        ui.checkbox(&mut self.show_grid, "Patch grid");
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
                    ui.end_row();
                    for (l, row) in v.thumbs.iter().enumerate() {
                        ui.small(format!("L{l}"));
                        for (c, t) in row.iter().enumerate() {
                            let sel = (l, (c < v.maps.heads).then_some(c));
                            let name = match sel.1 {
                                Some(h) => format!("layer {l} head {h}"),
                                None => format!("layer {l} mean"),
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
