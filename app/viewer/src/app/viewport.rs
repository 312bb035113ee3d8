//! One viewport drawn: the image (texture or GPU path), the AI overlay, segment masks, measurements,
//! corner text and the slice scrollbar.

use egui::{Color32, Pos2, Rect, Sense, Vec2, pos2, vec2};
use radclip_dicom::measure;
use radclip_dicom::{self as dicom};

use super::ViewerApp;
use super::input::{pos, pt};
use super::textures::Picture;
use super::textures::segment_color;
use crate::gpu::VoiCallback;
use crate::state::{Command, DragAction, Layout, Measurement, MeasurementKind, Viewport};
use crate::transform::ViewTransform;
use radclip_dicom::measure::RoiShape;

impl ViewerApp {
    /// (segmentation, frame, label, colour) of every mask laid over image `sop_uid` of `cols × rows`
    /// (`plane`: its frame of reference, position and orientation, for SEG frames that name no source).
    pub(super) fn masks_over(
        &self,
        sop_uid: &str,
        cols: u32,
        rows: u32,
        plane: Option<(&str, [f64; 3], [f64; 6])>,
    ) -> Vec<(usize, usize, String, Color32)> {
        self.segmentations
            .iter()
            .enumerate()
            .filter(|(_, s)| s.cols == cols && s.rows == rows)
            .flat_map(|(si, s)| {
                s.frames_over(sop_uid, plane).map(move |(fi, info, f)| {
                    (si, fi, info.label.clone(), segment_color(f.segment))
                })
            })
            .collect()
    }

    pub(super) fn viewports_ui(&mut self, ui: &mut egui::Ui) {
        let full = ui.max_rect();
        let (rows, cols) = self.layout.grid();
        let cell = vec2(full.width() / cols as f32, full.height() / rows as f32);
        for i in 0..self.viewports.len() {
            let (r, c) = (i / cols, i % cols);
            let rect =
                Rect::from_min_size(full.min + vec2(c as f32 * cell.x, r as f32 * cell.y), cell)
                    .shrink(1.0);
            self.viewport_ui(ui, i, rect);
        }
    }

    pub(super) fn viewport_ui(&mut self, ui: &mut egui::Ui, index: usize, rect: Rect) {
        let ctx = ui.ctx().clone();
        let resp = ui.interact(
            rect,
            ui.scope_id().with(("viewport", index)),
            Sense::click_and_drag(),
        );
        let painter = ui.painter_at(rect);
        if self.layout != Layout::One {
            let stroke = if index == self.active {
                Color32::from_rgb(80, 160, 255)
            } else {
                Color32::from_gray(60)
            };
            painter.rect_stroke(rect, 0.0, (1.0, stroke), egui::StrokeKind::Inside);
        }
        if resp.clicked() || resp.drag_started() {
            self.active = index;
        }
        let Some(v) = self.viewports.get(index).cloned() else {
            return;
        };
        let Some(entry) = v.series.and_then(|s| self.series.get(s)) else {
            painter.text(
                rect.center(),
                egui::Align2::CENTER_CENTER,
                "No series",
                egui::FontId::proportional(14.0),
                Color32::GRAY,
            );
            return;
        };
        let series = entry.series.clone();
        let Some(key) = self.frame_key(&v) else {
            return;
        };
        let frame = self.loader.cache().get(&key);
        if let Some(f) = &frame {
            self.update_texture(&ctx, index, &key, f, &v);
        }
        let Some(shown) = self.shown.get(&index) else {
            let msg = match self.loader.cache().failure(&key.path) {
                Some(e) => format!("Cannot display this image:\n{e}"),
                None => "Loading…".into(),
            };
            painter.text(
                rect.center(),
                egui::Align2::CENTER_CENTER,
                msg,
                egui::FontId::proportional(14.0),
                Color32::LIGHT_RED,
            );
            return;
        };
        let t = ViewTransform {
            rect,
            image_size: shown.size,
            zoom: v.zoom,
            pan: Vec2::from(v.pan),
            rotation: v.rotation,
            flip_h: v.flip_h,
            flip_v: v.flip_v,
        };
        match &shown.picture {
            Picture::Texture(texture) => draw_image(&painter, texture.id(), &t),
            Picture::Gpu { frame, table } => {
                let corners = image_corners(&t).map(|(p, _)| p);
                painter.add(eframe::egui_wgpu::Callback::new_paint_callback(
                    rect,
                    VoiCallback {
                        viewport: index,
                        frame: frame.clone(),
                        table: table.clone(),
                        corners,
                    },
                ));
            }
        }
        self.transforms.insert(index, t);
        let attention = self
            .ai
            .as_ref()
            .filter(|_| index == self.active)
            .and_then(|a| {
                Some((
                    a.attention.overlay_for(&key)?,
                    a.opacity,
                    a.attention.show_grid,
                ))
            });
        if let Some(((texture, rect, grid), opacity, show_grid)) = attention {
            // The inspector's map over the region the model saw, in place of the heatmap.
            draw_over_rect(
                &painter,
                texture.id(),
                &t,
                rect,
                Color32::from_white_alpha((opacity * 255.0) as u8),
            );
            if show_grid {
                patch_grid(&painter, &t, rect, grid);
            }
        } else if let Some((texture, opacity)) = self.ai.as_ref().and_then(|a| {
            // Side by side, the first viewport shows the panel's map and the second the other one.
            match (a.compare.is_some(), index) {
                (true, 0) => a.overlay_for(&key),
                (true, 1) => a.overlay_b_for(&key),
                (false, i) if i == self.active => a.overlay_for(&key),
                _ => None,
            }
        }) {
            draw_textured(
                &painter,
                texture.id(),
                &t,
                Color32::from_white_alpha((opacity * 255.0) as u8),
            );
        }
        if let Some(label) = self
            .ai
            .as_ref()
            .and_then(|a| a.compare_labels())
            .and_then(|l| l.get(index).cloned())
        {
            let at = pos2(rect.center().x, rect.top() + 56.0);
            let galley =
                painter.layout_no_wrap(label, egui::FontId::proportional(14.0), Color32::WHITE);
            let band = Rect::from_center_size(
                pos2(at.x, at.y + galley.size().y / 2.0),
                galley.size() + vec2(12.0, 6.0),
            );
            painter.rect_filled(band, 4.0, Color32::from_black_alpha(170));
            painter.galley(band.min + vec2(6.0, 3.0), galley, Color32::WHITE);
        }
        if self.show_segmentations
            && let Some((inst, frame_no)) = series.instance_of(v.slice)
        {
            let (cols, rows) = (t.image_size.x as u32, t.image_size.y as u32);
            let plane = series.frame_of_reference.as_deref().and_then(|f| {
                let g = inst.frame_geometry.get(frame_no as usize)?.as_ref()?;
                Some((f, g.position, g.orientation))
            });
            let masks = self.masks_over(&inst.sop_instance_uid, cols, rows, plane);
            for (si, fi, _, _) in &masks {
                if let Some(tex) = self.seg_texture(&ctx, *si, *fi) {
                    draw_textured(&painter, tex.id(), &t, Color32::WHITE);
                }
            }
            segment_legend(&painter, rect, &masks);
        }
        if frame.is_none()
            && let Some(e) = self.loader.cache().failure(&key.path)
        {
            painter.text(
                rect.center(),
                egui::Align2::CENTER_CENTER,
                format!("Cannot display this image:\n{e}"),
                egui::FontId::proportional(14.0),
                Color32::LIGHT_RED,
            );
        }
        let spacing = series
            .instance_of(v.slice)
            .and_then(|(inst, _)| inst.spacing);
        self.measurements_ui(&painter, &t, &v, frame.as_deref(), spacing);
        self.viewport_input(&ctx, &resp, index, &t, frame.as_deref());
        if self.show_overlay {
            self.overlay_ui(&painter, rect, index, frame.as_deref(), &t);
        }
        // Scrollbar along the right edge.
        if v.slice_count > 1 {
            let bar = Rect::from_min_max(
                pos2(rect.right() - 8.0, rect.top() + 20.0),
                pos2(rect.right() - 2.0, rect.bottom() - 20.0),
            );
            let bresp = ui.interact(
                bar,
                ui.scope_id().with(("scrollbar", index)),
                Sense::click_and_drag(),
            );
            painter.rect_filled(bar, 2.0, Color32::from_gray(40));
            // "Find in series": each slice's score as a heat track beside the scrollbar, filling in
            // as slices are read (brighter: closer to the phrase).
            if let Some(r) = self.ai.as_ref().and_then(|a| a.find.track_for(&series.uid)) {
                let known = r.scores.iter().flatten();
                let (lo, hi) = known.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), s| {
                    (a.min(*s), b.max(*s))
                });
                let n = r.scores.len().max(2) - 1;
                let h = (bar.height() / n as f32).max(1.0);
                for (k, s) in r.scores.iter().enumerate() {
                    let Some(s) = s else {
                        continue;
                    };
                    let t = ((s - lo) / (hi - lo).max(1e-6)).clamp(0.0, 1.0);
                    let y = bar.top() + k as f32 / n as f32 * bar.height();
                    let mark = Rect::from_center_size(pos2(bar.left() - 5.0, y), vec2(6.0, h));
                    let a = (40.0 + 215.0 * t) as u8;
                    painter.rect_filled(
                        mark,
                        0.0,
                        Color32::from_rgba_unmultiplied(255, 150, 30, a),
                    );
                }
            }
            let frac = v.slice as f32 / (v.slice_count - 1) as f32;
            let y = bar.top() + frac * bar.height();
            painter.rect_filled(
                Rect::from_center_size(pos2(bar.center().x, y), vec2(8.0, 10.0)),
                2.0,
                Color32::from_gray(160),
            );
            if let Some(p) = bresp.interact_pointer_pos() {
                let f = ((p.y - bar.top()) / bar.height()).clamp(0.0, 1.0);
                self.command(
                    index,
                    Command::GoTo((f * (v.slice_count - 1) as f32).round() as usize),
                );
            }
        }
    }

    pub(super) fn measurements_ui(
        &self,
        painter: &egui::Painter,
        t: &ViewTransform,
        v: &Viewport,
        frame: Option<&dicom::Frame>,
        spacing: Option<([f64; 2], dicom::SpacingSource)>,
    ) {
        let mut all: Vec<Measurement> = v
            .measurements
            .iter()
            .filter(|m| m.slice == v.slice)
            .copied()
            .collect();
        // The measurement being drawn.
        if let (Some(d), Some(kind)) = (&self.drag, self.measurement_kind())
            && d.action == DragAction::Measure
            && let Some(p) = painter.ctx().pointer_interact_pos()
        {
            all.push(Measurement {
                slice: v.slice,
                kind,
                a: pt(d.start_image),
                b: pt(t.image_from_screen(p)),
            });
        }
        let color = Color32::from_rgb(255, 220, 0);
        for m in all {
            let (a, b) = (t.screen_from_image(pos(m.a)), t.screen_from_image(pos(m.b)));
            let text = match m.kind {
                MeasurementKind::Line => {
                    painter.line_segment([a, b], (1.5, color));
                    crate::labels::length_label(&measure::line_length(m.a, m.b, spacing))
                }
                MeasurementKind::Roi(shape) => {
                    let corners = [
                        pos(m.a),
                        pos2(m.b.x as f32, m.a.y as f32),
                        pos(m.b),
                        pos2(m.a.x as f32, m.b.y as f32),
                    ];
                    let pts: Vec<Pos2> = match shape {
                        RoiShape::Rectangle => {
                            corners.iter().map(|&p| t.screen_from_image(p)).collect()
                        }
                        RoiShape::Ellipse => {
                            let c = (pos(m.a).to_vec2() + pos(m.b).to_vec2()) / 2.0;
                            let r = (pos(m.b) - pos(m.a)).abs() / 2.0;
                            (0..64)
                                .map(|k| {
                                    let th = k as f32 / 64.0 * std::f32::consts::TAU;
                                    t.screen_from_image(pos2(
                                        c.x + r.x * th.cos(),
                                        c.y + r.y * th.sin(),
                                    ))
                                })
                                .collect()
                        }
                    };
                    painter.add(egui::Shape::closed_line(pts, (1.5, color)));
                    match frame.and_then(|f| measure::roi_stats(f, shape, m.a, m.b, spacing)) {
                        Some(s) => crate::labels::roi_label(&s),
                        None => "no pixels".into(),
                    }
                }
            };
            painter.text(
                b + vec2(6.0, 6.0),
                egui::Align2::LEFT_TOP,
                text,
                egui::FontId::monospace(12.0),
                color,
            );
        }
    }

    pub(super) fn overlay_ui(
        &self,
        painter: &egui::Painter,
        rect: Rect,
        index: usize,
        frame: Option<&dicom::Frame>,
        t: &ViewTransform,
    ) {
        let Some(v) = self.viewports.get(index) else {
            return;
        };
        let Some(e) = v.series.and_then(|s| self.series.get(s)) else {
            return;
        };
        let font = egui::FontId::monospace(12.0);
        let col = Color32::from_rgb(230, 230, 230);
        let m = 6.0;
        let tl = if self.hide_phi {
            "Patient data hidden".to_string()
        } else {
            format!(
                "{}\nID {}\nDOB {}",
                e.patient_name, e.patient_id, e.birth_date
            )
        };
        // Each corner gets half the viewport's width; longer lines end in "…" instead of running into
        // the opposite corner.
        let half = (rect.width() / 2.0 - 2.0 * m - 10.0).max(40.0);
        corner_text(
            painter,
            rect.left_top() + vec2(m, m),
            egui::Align2::LEFT_TOP,
            &tl,
            &font,
            col,
            half,
        );
        let tr = format!(
            "{}\n{}\n{}",
            e.study_date,
            e.study_description,
            e.series.label()
        );
        corner_text(
            painter,
            rect.right_top() + vec2(-m - 10.0, m),
            egui::Align2::RIGHT_TOP,
            &tr,
            &font,
            col,
            half,
        );
        let mut bl = format!("Im {}/{}", v.slice + 1, v.slice_count);
        if let Some(g) = e.series.geometry_of(v.slice) {
            bl += &format!("\nLoc {:.2} mm", g.distance_along_normal());
            if let Some(th) = g.slice_thickness {
                bl += &format!("\nThk {th:.2} mm");
            }
        }
        corner_text(
            painter,
            rect.left_bottom() + vec2(m, -m),
            egui::Align2::LEFT_BOTTOM,
            &bl,
            &font,
            col,
            half,
        );
        let voi = v
            .window
            .map(|(w, f)| dicom::Voi::Window(w, f))
            .or_else(|| frame.filter(|f| !f.is_color()).map(|f| f.default_voi()));
        let mut br = match voi {
            Some(dicom::Voi::Window(w, _)) => format!("W {:.0} L {:.0}", w.width, w.center),
            // The file's VOI LUT table is shown as it is named, not as an equivalent window.
            Some(dicom::Voi::Table(t)) => match &t.explanation {
                Some(e) => format!("VOI LUT: {e}"),
                None => "VOI LUT".into(),
            },
            None => String::new(),
        };
        br += &format!("\nZoom {:.0}%", t.scale() * 100.0);
        corner_text(
            painter,
            rect.right_bottom() + vec2(-m - 10.0, -m),
            egui::Align2::RIGHT_BOTTOM,
            &br,
            &font,
            col,
            half,
        );
        if let Some(g) = e.series.geometry_of(v.slice) {
            orientation_letters(painter, rect, t, g.row_dir(), g.col_dir(), col);
        } else if let Some((row, column)) = e
            .series
            .instance_of(v.slice)
            .and_then(|(inst, _)| inst.patient_orientation)
        {
            // Radiographs: Patient Orientation names the directions along a row and down a column.
            orientation_letters(painter, rect, t, row, column, col);
        }
    }
}

/// The patient directions at the middle of each edge of the viewport (A/P, R/L, H/F), from the image's
/// direction cosines through the view's rotation and flips.
pub(super) fn orientation_letters(
    painter: &egui::Painter,
    rect: Rect,
    t: &ViewTransform,
    row_dir: [f64; 3],
    col_dir: [f64; 3],
    colour: Color32,
) {
    let [r, l, top, bottom] = t.edge_letters(row_dir, col_dir);
    let font = egui::FontId::proportional(15.0);
    let m = 4.0;
    for (at, align, text) in [
        (
            pos2(rect.right() - m - 10.0, rect.center().y),
            egui::Align2::RIGHT_CENTER,
            r,
        ),
        (
            pos2(rect.left() + m, rect.center().y),
            egui::Align2::LEFT_CENTER,
            l,
        ),
        (
            pos2(rect.center().x, rect.top() + m),
            egui::Align2::CENTER_TOP,
            top,
        ),
        (
            pos2(rect.center().x, rect.bottom() - m),
            egui::Align2::CENTER_BOTTOM,
            bottom,
        ),
    ] {
        if !text.is_empty() {
            painter.text(at, align, text, font.clone(), colour);
        }
    }
}

/// Lines of corner text anchored at `at`, each cut to `max_width` with "…".
pub(super) fn corner_text(
    painter: &egui::Painter,
    at: Pos2,
    align: egui::Align2,
    text: &str,
    font: &egui::FontId,
    color: Color32,
    max_width: f32,
) {
    let galleys: Vec<_> = text
        .lines()
        .map(|line| {
            let mut job =
                egui::text::LayoutJob::simple_singleline(line.to_string(), font.clone(), color);
            job.wrap = egui::text::TextWrapping {
                max_width,
                max_rows: 1,
                break_anywhere: true,
                overflow_character: Some('…'),
            };
            painter.layout_job(job)
        })
        .collect();
    let total: f32 = galleys.iter().map(|g| g.size().y).sum();
    let mut y = if align.y() == egui::Align::Max {
        at.y - total
    } else {
        at.y
    };
    for g in galleys {
        let x = if align.x() == egui::Align::Max {
            at.x - g.size().x
        } else {
            at.x
        };
        let h = g.size().y;
        painter.galley(pos2(x, y), g, color);
        y += h;
    }
}

/// The drawn segments' labels with their colours, on a dark band along the bottom of the viewport (the
/// image under it may be bright).
pub(super) fn segment_legend(
    painter: &egui::Painter,
    rect: Rect,
    masks: &[(usize, usize, String, Color32)],
) {
    if masks.is_empty() {
        return;
    }
    let font = egui::FontId::proportional(13.0);
    let text = Color32::from_rgb(235, 235, 235);
    let galleys: Vec<_> = masks
        .iter()
        .map(|(_, _, label, _)| painter.layout_no_wrap(label.clone(), font.clone(), text))
        .collect();
    let (swatch, gap) = (10.0, 14.0);
    let width: f32 = galleys
        .iter()
        .map(|g| swatch + 4.0 + g.size().x)
        .sum::<f32>()
        + gap * (galleys.len() - 1) as f32;
    let height = galleys.iter().map(|g| g.size().y).fold(swatch, f32::max);
    let band = Rect::from_center_size(
        pos2(rect.center().x, rect.bottom() - 34.0),
        vec2(width + 16.0, height + 8.0),
    );
    painter.rect_filled(band, 4.0, Color32::from_black_alpha(170));
    let mut x = band.left() + 8.0;
    let y = band.center().y;
    for ((_, _, _, color), galley) in masks.iter().zip(galleys) {
        let sq = Rect::from_min_size(pos2(x, y - swatch / 2.0), vec2(swatch, swatch));
        painter.rect_filled(sq, 2.0, color.to_opaque());
        let w = galley.size().x;
        painter.galley(
            pos2(x + swatch + 4.0, y - galley.size().y / 2.0),
            galley,
            text,
        );
        x += swatch + 4.0 + w + gap;
    }
}

/// Draws the image texture as a quad whose corners follow the view transform (rotation and flips included).
pub(super) fn draw_image(painter: &egui::Painter, texture: egui::TextureId, t: &ViewTransform) {
    draw_textured(painter, texture, t, Color32::WHITE);
}

/// A texture stretched over the whole image, tinted (white with alpha for an overlay).
fn draw_textured(
    painter: &egui::Painter,
    texture: egui::TextureId,
    t: &ViewTransform,
    tint: Color32,
) {
    let (w, h) = (f64::from(t.image_size.x), f64::from(t.image_size.y));
    draw_over_rect(painter, texture, t, (0.0, 0.0, w, h), tint);
}

/// A texture stretched over the image rectangle `rect` (x0, y0, x1, y1, image pixels), tinted.
fn draw_over_rect(
    painter: &egui::Painter,
    texture: egui::TextureId,
    t: &ViewTransform,
    (x0, y0, x1, y1): (f64, f64, f64, f64),
    tint: Color32,
) {
    let (x0, y0, x1, y1) = (x0 as f32, y0 as f32, x1 as f32, y1 as f32);
    let mut mesh = egui::Mesh::with_texture(texture);
    for (p, uv) in [
        (pos2(x0, y0), pos2(0.0, 0.0)),
        (pos2(x1, y0), pos2(1.0, 0.0)),
        (pos2(x1, y1), pos2(1.0, 1.0)),
        (pos2(x0, y1), pos2(0.0, 1.0)),
    ] {
        mesh.vertices.push(egui::epaint::Vertex {
            pos: t.screen_from_image(p),
            uv,
            color: tint,
        });
    }
    mesh.indices.extend_from_slice(&[0, 1, 2, 0, 2, 3]);
    painter.add(egui::Shape::mesh(mesh));
}

/// The model's patch grid (rows, columns) over the image rectangle `rect` it covers.
fn patch_grid(
    painter: &egui::Painter,
    t: &ViewTransform,
    (x0, y0, x1, y1): (f64, f64, f64, f64),
    (rows, cols): (usize, usize),
) {
    let stroke = (1.0, Color32::from_white_alpha(90));
    for c in 0..=cols {
        let x = (x0 + (x1 - x0) * c as f64 / cols.max(1) as f64) as f32;
        let a = t.screen_from_image(pos2(x, y0 as f32));
        let b = t.screen_from_image(pos2(x, y1 as f32));
        painter.line_segment([a, b], stroke);
    }
    for r in 0..=rows {
        let y = (y0 + (y1 - y0) * r as f64 / rows.max(1) as f64) as f32;
        let a = t.screen_from_image(pos2(x0 as f32, y));
        let b = t.screen_from_image(pos2(x1 as f32, y));
        painter.line_segment([a, b], stroke);
    }
}

/// The image's corners (0,0), (w,0), (w,h), (0,h) on screen, with their texture coordinates: one quad
/// for the texture path, the overlay and the GPU path alike.
pub(super) fn image_corners(t: &ViewTransform) -> [(Pos2, Pos2); 4] {
    let (w, h) = (t.image_size.x, t.image_size.y);
    [
        (pos2(0.0, 0.0), pos2(0.0, 0.0)),
        (pos2(w, 0.0), pos2(1.0, 0.0)),
        (pos2(w, h), pos2(1.0, 1.0)),
        (pos2(0.0, h), pos2(0.0, 1.0)),
    ]
    .map(|(p, uv)| (t.screen_from_image(p), uv))
}
