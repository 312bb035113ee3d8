//! What reaches the GPU: viewport textures (or table indices and a display table for the VOI shader),
//! segment mask textures and series thumbnails, each made once and reused while its key holds.

use std::sync::Arc;

use egui::{Color32, TextureHandle, TextureOptions, Vec2, vec2};
use radclip_dicom::{self as dicom, FrameKey, Loader, Series, VoiFunction, Window};

use super::ViewerApp;
use crate::gpu::{GpuFrame, GpuTable};
use crate::state::Viewport;

impl ViewerApp {
    /// The mask texture of frame `frame` of segmentation `seg`, made on first use.
    pub(super) fn seg_texture(
        &mut self,
        ctx: &egui::Context,
        seg: usize,
        frame: usize,
    ) -> Option<TextureHandle> {
        if let Some(t) = self.seg_textures.get(&(seg, frame)) {
            return Some(t.clone());
        }
        let s = self.segmentations.get(seg)?;
        let f = s.frames.get(frame)?;
        let color = segment_color(f.segment);
        let pixels: Vec<Color32> = f
            .mask
            .iter()
            .map(|&on| if on { color } else { Color32::TRANSPARENT })
            .collect();
        let img = egui::ColorImage::new([s.cols as usize, s.rows as usize], pixels);
        // Nearest: a label map's edges stay where the mask puts them.
        let t = ctx.load_texture(format!("seg-{seg}-{frame}"), img, TextureOptions::NEAREST);
        self.seg_textures.insert((seg, frame), t.clone());
        Some(t)
    }

    pub(super) fn update_texture(
        &mut self,
        ctx: &egui::Context,
        index: usize,
        key: &FrameKey,
        frame: &dicom::Frame,
        v: &Viewport,
    ) {
        let wkey = v
            .window
            .map(|(w, _)| (w.center.to_bits(), w.width.to_bits()));
        let full_key = (key.clone(), wkey, v.invert);
        if self.shown.get(&index).is_some_and(|s| s.key == full_key) {
            return;
        }
        let size = vec2(frame.cols as f32, frame.rows as f32);
        if let Some(picture) = self.gpu_picture(index, key, frame, v) {
            self.shown.insert(
                index,
                ShownTexture {
                    key: full_key,
                    picture,
                    size,
                },
            );
            return;
        }
        let img = color_image(frame, v.window, v.invert);
        match self.shown.get_mut(&index) {
            Some(ShownTexture {
                picture: Picture::Texture(texture),
                key,
                size: s,
            }) => {
                texture.set(img, TextureOptions::LINEAR);
                *key = full_key;
                *s = size;
            }
            _ => {
                let texture =
                    ctx.load_texture(format!("viewport-{index}"), img, TextureOptions::LINEAR);
                self.shown.insert(
                    index,
                    ShownTexture {
                        key: full_key,
                        picture: Picture::Texture(texture),
                        size,
                    },
                );
            }
        }
    }

    /// The GPU picture of a monochrome frame: the frame's table indices are re-used while only the
    /// window or the invert toggle changes. `None` when the GPU path is off or cannot take the frame.
    pub(super) fn gpu_picture(
        &self,
        index: usize,
        key: &FrameKey,
        frame: &dicom::Frame,
        v: &Viewport,
    ) -> Option<Picture> {
        let side = self.gpu_side?;
        if frame.cols > side || frame.rows > side {
            return None;
        }
        let voi = v.window.map(|(w, f)| dicom::Voi::Window(w, f));
        let mut table = dicom::display_lut(frame, voi.as_ref())?.table;
        if v.invert {
            table.iter_mut().for_each(|p| *p = 255 - *p);
        }
        let same_frame = self.shown.get(&index).and_then(|s| match &s.picture {
            Picture::Gpu { frame, .. } if s.key.0 == *key => Some(frame.clone()),
            _ => None,
        });
        let frame = match same_frame {
            Some(f) => f,
            None => GpuFrame::new(frame.cols, frame.rows, dicom::lut_indices(frame)?),
        };
        Some(Picture::Gpu {
            frame,
            table: GpuTable::new(table),
        })
    }
}

pub(super) struct ShownTexture {
    pub(super) key: (FrameKey, Option<(u64, u64)>, bool),
    pub(super) picture: Picture,
    pub(super) size: Vec2,
}

/// How a viewport's image reaches the screen.
pub(super) enum Picture {
    /// The rendered 8-bit image as an egui texture (colour frames, 32-bit data, no wgpu).
    Texture(TextureHandle),
    /// Table indices plus the display table, combined by a shader (`gpu.rs`): a W/L change
    /// uploads only the table.
    Gpu {
        frame: Arc<GpuFrame>,
        table: Arc<GpuTable>,
    },
}

/// A segment's overlay colour (translucent), by its number.
pub(super) fn segment_color(number: u16) -> Color32 {
    const PALETTE: [(u8, u8, u8); 6] = [
        (255, 70, 70),
        (60, 200, 255),
        (255, 210, 40),
        (90, 230, 110),
        (210, 110, 255),
        (255, 140, 20),
    ];
    let (r, g, b) = PALETTE[usize::from(number.saturating_sub(1)) % PALETTE.len()];
    Color32::from_rgba_unmultiplied(r, g, b, 110)
}

/// The pixel pipeline's display output as an egui image; `invert` is the user's toggle.
pub fn color_image(
    frame: &dicom::Frame,
    window: Option<(Window, VoiFunction)>,
    invert: bool,
) -> egui::ColorImage {
    let size = [frame.cols as usize, frame.rows as usize];
    match dicom::render(frame, window) {
        dicom::Rendered::Grey { mut data, .. } => {
            if invert {
                data.iter_mut().for_each(|p| *p = 255 - *p);
            }
            egui::ColorImage::from_gray(size, &data)
        }
        dicom::Rendered::Rgb { mut data, .. } => {
            if invert {
                data.iter_mut().for_each(|p| *p = 255 - *p);
            }
            egui::ColorImage::from_rgb(size, &data)
        }
    }
}

pub(super) fn make_thumbnail(
    ctx: &egui::Context,
    loader: &Loader,
    series: &Series,
    index: usize,
) -> Option<TextureHandle> {
    let (inst, frame) = series.instance_of(series.frames.len() / 2)?;
    let f = loader.cache().get(&FrameKey {
        path: inst.path.clone(),
        frame,
    })?;
    let img = color_image(&f, None, false);
    let step = (img.size[0].max(img.size[1]) / 64).max(1);
    let (w, h) = (img.size[0] / step, img.size[1] / step);
    let pixels: Vec<Color32> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| {
            img.pixels
                .get(y * step * img.size[0] + x * step)
                .copied()
                .unwrap_or_default()
        })
        .collect();
    let small = egui::ColorImage::new([w.max(1), h.max(1)], pixels);
    Some(ctx.load_texture(format!("thumb-{index}"), small, TextureOptions::LINEAR))
}
