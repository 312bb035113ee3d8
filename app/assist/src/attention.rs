//! The attention inspector's data: for the image on screen, every layer's and head's attention from one
//! token (the class token, or a patch the user points at) to the patch grid, as the vision tower computed
//! it (softmax probabilities, nothing rescaled), plus the per-layer mean over heads and the attention
//! rollout through each layer. Works for every tower radclip loads: HF CLIP ViTs and timm ViTs
//! (BiomedCLIP) both put the class token first.

use radclip_clip::heatmap::{EncodedImage, npy_f32, turbo};
use radclip_clip::preprocess::Rgb8;
use radclip_clip::{Error, Result};

/// Which token's attention is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    ClassToken,
    /// A patch by its place on the grid (row, column from the top left).
    Patch {
        row: usize,
        col: usize,
    },
}

impl Query {
    /// "class token" or "patch (3, 7)".
    pub fn name(self) -> String {
        match self {
            Query::ClassToken => "class token".into(),
            Query::Patch { row, col } => format!("patch ({row}, {col})"),
        }
    }
}

/// Attention from one token to each patch: `values` is [layers, heads, rows, columns], row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionMaps {
    pub layers: usize,
    pub heads: usize,
    /// (rows, columns) of patches.
    pub grid: (usize, usize),
    pub query: Query,
    pub values: Vec<f32>,
    /// Attention rollout from the same token through each layer, [layers, rows, columns].
    pub rollout: Vec<f32>,
}

impl AttentionMaps {
    /// The maps of `encoded` (its attention probabilities, kept for every layer) from `query`.
    pub fn of(encoded: &EncodedImage, query: Query) -> Result<Self> {
        let (gh, gw) = encoded.grid;
        let patches = gh * gw;
        let q = match query {
            Query::ClassToken => 0,
            Query::Patch { row, col } if row < gh && col < gw => 1 + row * gw + col,
            Query::Patch { row, col } => {
                return Err(Error::Input(format!(
                    "patch ({row}, {col}) is outside the {gh}×{gw} patch grid"
                )));
            }
        };
        let mut values = Vec::new();
        let mut heads = 0;
        let rollout = radclip_clip::heatmap::rollout_rows(&encoded.attentions, q)?
            .into_iter()
            .flatten()
            .collect();
        for (layer, att) in encoded.attentions.iter().enumerate() {
            let (_, h, n, _) = att.dims4()?;
            if n != patches + 1 {
                return Err(Error::Input(format!(
                    "layer {layer} has {n} tokens where a class token and {gh}×{gw} patches make {}",
                    patches + 1
                )));
            }
            heads = h;
            // [H, patches]: the query's row, keys past the class token.
            let rows = att
                .get(0)?
                .narrow(1, q, 1)?
                .narrow(2, 1, patches)?
                .flatten_all()?
                .to_dtype(candle_core::DType::F32)?
                .to_vec1::<f32>()?;
            values.extend(rows);
        }
        Ok(AttentionMaps {
            layers: encoded.attentions.len(),
            heads,
            grid: (gh, gw),
            query,
            values,
            rollout,
        })
    }

    /// The rollout map through `layer` (rows × columns).
    pub fn rollout(&self, layer: usize) -> Option<&[f32]> {
        let n = self.grid.0 * self.grid.1;
        (layer < self.layers)
            .then(|| self.rollout.get(layer * n..(layer + 1) * n))
            .flatten()
    }

    /// One head's map of one layer (rows × columns), `None` past the last.
    pub fn map(&self, layer: usize, head: usize) -> Option<&[f32]> {
        let n = self.grid.0 * self.grid.1;
        if layer >= self.layers || head >= self.heads {
            return None;
        }
        let at = (layer * self.heads + head) * n;
        self.values.get(at..at + n)
    }

    /// The mean over heads of one layer's maps.
    pub fn layer_mean(&self, layer: usize) -> Option<Vec<f32>> {
        let n = self.grid.0 * self.grid.1;
        let mut mean = vec![0f32; n];
        for head in 0..self.heads {
            for (m, v) in mean.iter_mut().zip(self.map(layer, head)?) {
                *m += v / self.heads as f32;
            }
        }
        Some(mean)
    }

    /// All maps as a NumPy `.npy` file, float32 [layers, heads, rows, columns].
    pub fn npy(&self) -> Vec<u8> {
        npy_f32(
            &[self.layers, self.heads, self.grid.0, self.grid.1],
            &self.values,
        )
    }

    /// All rollout maps as a NumPy `.npy` file, float32 [layers, rows, columns].
    pub fn rollout_npy(&self) -> Vec<u8> {
        npy_f32(&[self.layers, self.grid.0, self.grid.1], &self.rollout)
    }

    /// One layer's heads side by side, each scaled to its own range and colour-mapped, `cell` pixels per
    /// patch, with a 2-pixel dark gap between heads.
    pub fn layer_image(&self, layer: usize, cell: usize) -> Option<Rgb8> {
        let (gh, gw) = self.grid;
        let (cell, gap) = (cell.max(1), 2usize);
        let (tile_w, tile_h) = (gw * cell, gh * cell);
        let width = self.heads * tile_w + self.heads.saturating_sub(1) * gap;
        let mut data = vec![24u8; width * tile_h * 3];
        for head in 0..self.heads {
            let tile = map_image(self.map(layer, head)?, self.grid, cell);
            for y in 0..tile_h {
                let from = tile.data.get(y * tile_w * 3..(y + 1) * tile_w * 3)?;
                let at = (y * width + head * (tile_w + gap)) * 3;
                data.get_mut(at..at + tile_w * 3)?.copy_from_slice(from);
            }
        }
        Some(Rgb8 {
            width,
            height: tile_h,
            data,
        })
    }
}

/// One map (rows × columns of `grid`) scaled to its own range and colour-mapped, `cell` pixels per
/// patch.
pub fn map_image(values: &[f32], grid: (usize, usize), cell: usize) -> Rgb8 {
    let (gh, gw) = grid;
    let cell = cell.max(1);
    let (width, height) = (gw * cell, gh * cell);
    let lo = values.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut data = vec![0u8; width * height * 3];
    for y in 0..height {
        for x in 0..width {
            let v = values
                .get((y / cell) * gw + x / cell)
                .copied()
                .unwrap_or(lo);
            let c = turbo((v - lo) / span);
            let at = (y * width + x) * 3;
            if let Some(px) = data.get_mut(at..at + 3) {
                px.copy_from_slice(&c.map(|c| c as u8));
            }
        }
    }
    Rgb8 {
        width,
        height,
        data,
    }
}
