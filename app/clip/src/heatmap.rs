//! Text-prompted heatmaps without training, from the vision encoder's internals.
//!
//! - MaskCLIP (Zhou et al. 2022): the last block's attention replaced by identity (value path through
//!   out_proj, residual and MLP kept), every token through post_layernorm and the projection; cosine with
//!   the text. Uses the model's own activation and eps.
//! - CLIP Surgery (Li et al. 2023, xmed-lab/CLIP_Surgery after its "fix norm" commit): a second path of
//!   v–v self-attention over the last 6 blocks, fed by the original path, MLP skipped; then feature
//!   surgery, subtracting the embedding of the empty prompt (the reference's single-text case).
//! - Attention rollout (Abnar & Zuidema 2020): head mean, (A + I) row-normalised, product over layers,
//!   class-token row. Text-independent: the researchers' view of where the encoder looks.
//! - Grad-CAM on the tokens after the last block's `layer_norm1` (as pytorch-grad-cam for ViTs), target
//!   the image–text cosine, through candle autograd.
//!
//! An image is encoded once ([`EncodedImage`]); each method's per-image work is done on its first map and
//! kept, so a new prompt then costs one dot product per token (one backward pass for Grad-CAM).

use std::sync::OnceLock;

use candle_core::{D, DType, IndexOp, Tensor, Var};
use serde::Serialize;

use crate::engine::{Engine, Prepared};
use crate::error::{Error, Result};
use crate::model::{ClipModel, Fwd, l2_normalize};
use crate::preprocess::{Placement, Rgb8};
use crate::refine::Affinity;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    ClipSurgery,
    MaskClip,
    Rollout,
    GradCam,
}

impl Method {
    pub const ALL: [Method; 4] = [
        Method::ClipSurgery,
        Method::MaskClip,
        Method::Rollout,
        Method::GradCam,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::ClipSurgery => "clip-surgery",
            Method::MaskClip => "maskclip",
            Method::Rollout => "rollout",
            Method::GradCam => "gradcam",
        }
    }

    pub fn parse(s: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// A map over the patch grid, row-major, with where the grid lies on the source image.
#[derive(Debug, Clone, Serialize)]
pub struct Heatmap {
    pub method: Method,
    /// (rows, columns) of patches.
    pub grid: (usize, usize),
    /// Raw scores, one per patch (higher = more related to the prompt).
    pub values: Vec<f32>,
    #[serde(skip)]
    pub placement: Placement,
    /// Input pixels per grid cell: the model's patch, or 1 for a refined map.
    pub patch_size: usize,
    /// Edge-guided at the model's input pixels ([`EncodedImage::refine`]) rather than per patch.
    pub refined: bool,
}

impl Heatmap {
    /// Values scaled to [0, 1] by min and max (all 0 for a constant map).
    pub fn normalized(&self) -> Vec<f32> {
        let lo = self.values.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = self
            .values
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        let span = hi - lo;
        self.values
            .iter()
            .map(|v| {
                if span > 0.0 && span.is_finite() {
                    (v - lo) / span
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// The map bilinearly resampled at source-image pixel (x, y) (pixel centres), `None` outside the
    /// region the model saw.
    pub fn sample(&self, norm: &[f32], x: usize, y: usize) -> Option<f32> {
        let p = &self.placement;
        let sx = p.source.0 as f64 / p.resized.0 as f64;
        let sy = p.source.1 as f64 / p.resized.1 as f64;
        // Source pixel centre → model-input coordinates (pixel-centre convention).
        let ix = (x as f64 + 0.5) / sx - p.crop_offset.0 as f64;
        let iy = (y as f64 + 0.5) / sy - p.crop_offset.1 as f64;
        self.sample_input(norm, ix, iy)
    }

    /// The map bilinearly resampled at model-input point (ix, iy) (pixel-edge coordinates, so (0.5, 0.5)
    /// is the first input pixel's centre), `None` outside the grid.
    fn sample_input(&self, norm: &[f32], ix: f64, iy: f64) -> Option<f32> {
        let (gh, gw) = self.grid;
        let ps = self.patch_size as f64;
        if ix < 0.0 || iy < 0.0 || ix >= (gw as f64 * ps) || iy >= (gh as f64 * ps) {
            return None;
        }
        let gx = (ix / ps - 0.5).clamp(0.0, (gw - 1) as f64);
        let gy = (iy / ps - 0.5).clamp(0.0, (gh - 1) as f64);
        let (x0, y0) = (gx.floor() as usize, gy.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(gw - 1), (y0 + 1).min(gh - 1));
        let (tx, ty) = ((gx - x0 as f64) as f32, (gy - y0 as f64) as f32);
        let v = |r: usize, c: usize| norm.get(r * gw + c).copied().unwrap_or(0.0);
        let top = v(y0, x0) * (1.0 - tx) + v(y0, x1) * tx;
        let bottom = v(y1, x0) * (1.0 - tx) + v(y1, x1) * tx;
        Some(top * (1.0 - ty) + bottom * ty)
    }

    /// The source-image point (pixel-edge coordinates) at the centre of the highest cell: where the map
    /// points. `None` for an empty map.
    pub fn peak(&self) -> Option<(f64, f64)> {
        let (_, gw) = self.grid;
        let top = self
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)?;
        let (r, c) = (top / gw.max(1), top % gw.max(1));
        let p = &self.placement;
        let ps = self.patch_size as f64;
        let ix = (c as f64 + 0.5) * ps + p.crop_offset.0 as f64;
        let iy = (r as f64 + 0.5) * ps + p.crop_offset.1 as f64;
        Some((
            ix * p.source.0 as f64 / p.resized.0 as f64,
            iy * p.source.1 as f64 / p.resized.1 as f64,
        ))
    }

    /// The map over `image` (the source the placement refers to), colour-mapped and blended with `alpha`.
    pub fn overlay(&self, image: &Rgb8, alpha: f32) -> Rgb8 {
        let norm = self.normalized();
        let mut out = image.clone();
        for y in 0..image.height {
            for x in 0..image.width {
                let Some(v) = self.sample(&norm, x, y) else {
                    continue;
                };
                let c = turbo(v);
                let i = (y * image.width + x) * 3;
                for (px, ck) in out.data[i..i + 3].iter_mut().zip(c) {
                    let base = f32::from(*px);
                    *px = (base * (1.0 - alpha) + ck * alpha)
                        .round()
                        .clamp(0.0, 255.0) as u8;
                }
            }
        }
        out
    }
}

/// Google's Turbo colour map (polynomial fit), t in [0, 1] → RGB 0–255.
pub fn turbo(t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0) as f64;
    let r = 0.13572138
        + t * (4.6153926
            + t * (-42.66032258 + t * (132.13108234 + t * (-152.94239396 + t * 59.28637943))));
    let g = 0.09140261
        + t * (2.19418839
            + t * (4.84296658 + t * (-14.18503333 + t * (4.27729857 + t * 2.82956604))));
    let b = 0.1066733
        + t * (12.64194608
            + t * (-60.58204836 + t * (110.36276771 + t * (-89.90310912 + t * 27.34824973))));
    [r, g, b].map(|c| (c.clamp(0.0, 1.0) * 255.0) as f32)
}

/// Per-image state kept so that a new prompt is cheap.
pub struct EncodedImage {
    pub placement: Placement,
    pub grid: (usize, usize),
    /// Image features [P] (projected, un-normalised).
    pub features: Tensor,
    /// Input of every encoder layer, then the last output ([1, N, D] each).
    pub hidden_states: Vec<Tensor>,
    /// Attention probabilities per layer, [1, H, N, N].
    pub attentions: Vec<Tensor>,
    // Per-method work derived from the states above, done on the first map of that method: a caller
    // that wants one method pays for that one only.
    /// Unit-length MaskCLIP patch embeddings [gh·gw, P].
    maskclip_tokens: OnceLock<Tensor>,
    /// Unit-length CLIP Surgery patch embeddings [gh·gw, P].
    surgery_tokens: OnceLock<Tensor>,
    rollout: OnceLock<Vec<f32>>,
    /// The model's input [3, H, W], kept (it is shared, not copied) for [`EncodedImage::refine`] to
    /// follow the edges of.
    input: Tensor,
    /// The refinement's neighbour weights for this image, made by the first [`EncodedImage::refine`]
    /// (with its settings): a new prompt then pays only for the iterations.
    affinity: OnceLock<Option<Affinity>>,
}

/// The value in `cell`, made by `make` the first time.
fn cached<T: Clone>(cell: &OnceLock<T>, make: impl FnOnce() -> Result<T>) -> Result<T> {
    if let Some(v) = cell.get() {
        return Ok(v.clone());
    }
    let v = make()?;
    Ok(cell.get_or_init(|| v).clone())
}

/// How many final blocks get the v–v path in CLIP Surgery (the reference uses 6 for ViTs).
pub const SURGERY_BLOCKS: usize = 6;

/// MaskCLIP's patch features [B, gh·gw, P] (projected, not normalised) from the last block's input:
/// the block with its attention replaced by the value path. With `fwd.grad` it can be trained through.
pub fn maskclip_features(model: &ClipModel, last_input: &Tensor, fwd: Fwd) -> Result<Tensor> {
    let Some(layer) = model.vision.encoder.layers.last() else {
        return Err(Error::Input("the vision encoder has no layers".into()));
    };
    let y = layer.layer_norm1.forward(last_input, fwd)?;
    let a = &layer.self_attn;
    let v = (a.out_proj.forward(&a.v_proj.forward(&y)?)? + last_input)?;
    let v = (&v + layer.mlp.forward(&layer.layer_norm2.forward(&v, fwd)?)?)?;
    let v = model.vision.post_layernorm.forward(&v, fwd)?;
    let f = model.visual_projection.forward(&v)?;
    let n = f.dim(1)?;
    Ok(f.narrow(1, 1, n - 1)?)
}

fn maskclip_tokens(model: &ClipModel, last_input: &Tensor) -> Result<Tensor> {
    let f = maskclip_features(model, last_input, Fwd::default())?;
    Ok(l2_normalize(&f.i(0)?)?)
}

fn surgery_tokens(model: &ClipModel, hidden_states: &[Tensor]) -> Result<Tensor> {
    let fwd = Fwd::default();
    let layers = &model.vision.encoder.layers;
    let depth = SURGERY_BLOCKS.min(layers.len());
    let start = layers.len() - depth;
    let mut x_ori = hidden_states
        .get(start)
        .cloned()
        .ok_or_else(|| Error::Input("missing hidden state".into()))?;
    let mut x_new: Option<Tensor> = None;
    for layer in &layers[start..] {
        let a = &layer.self_attn;
        let y = layer.layer_norm1.forward(&x_ori, fwd)?;
        let q = a.split_heads(&a.q_proj.forward(&y)?)?;
        let k = a.split_heads(&a.k_proj.forward(&y)?)?;
        let v = a.split_heads(&a.v_proj.forward(&y)?)?;
        let ori = crate::model::softmax_last(&(q.matmul(&k.t()?)? * a.scale())?, fwd)?;
        let vv = crate::model::softmax_last(&(v.matmul(&v.t()?)? * a.scale())?, fwd)?;
        let o = a.out_proj.forward(&a.merge_heads(&ori.matmul(&v)?)?)?;
        let n = a.out_proj.forward(&a.merge_heads(&vv.matmul(&v)?)?)?;
        x_new = Some(match x_new {
            None => (&x_ori + n)?,
            Some(xn) => (xn + n)?,
        });
        x_ori = (x_ori + o)?;
        x_ori = (&x_ori
            + layer
                .mlp
                .forward(&layer.layer_norm2.forward(&x_ori, fwd)?)?)?;
    }
    let x_new = x_new.ok_or_else(|| Error::Input("the vision encoder has no layers".into()))?;
    let n = x_new.dim(1)?;
    let f = model
        .visual_projection
        .forward(&model.vision.post_layernorm.forward(&x_new, fwd)?)?;
    // Only patch tokens are mapped; the class token (copied from the original path) is dropped.
    Ok(l2_normalize(&f.i(0)?.narrow(0, 1, n - 1)?)?)
}

fn rollout(attentions: &[Tensor]) -> Result<Vec<f32>> {
    rollout_rows(attentions, 0)?
        .pop()
        .ok_or_else(|| Error::Input("no attention maps".into()))
}

/// Attention rollout (Abnar & Zuidema, 2020) through each layer: row `query` of the product of the
/// head-averaged, identity-added, row-normalised attention matrices up to that layer, over the
/// patches (the class token left out). The last row is the rollout heatmap of the class token.
pub fn rollout_rows(attentions: &[Tensor], query: usize) -> Result<Vec<Vec<f32>>> {
    let mut joint: Option<Tensor> = None;
    let mut rows = Vec::with_capacity(attentions.len());
    for a in attentions {
        let a = a.i(0)?.mean(0)?; // [N, N], heads averaged
        let n = a.dim(0)?;
        if query >= n {
            return Err(Error::Input(format!(
                "token {query} is past the {n} tokens of the attention"
            )));
        }
        let eye = Tensor::eye(n, a.dtype(), a.device())?;
        let a = (a + eye)?;
        let a = a.broadcast_div(&a.sum_keepdim(D::Minus1)?)?;
        let j = match joint {
            None => a,
            Some(j) => a.matmul(&j)?,
        };
        rows.push(
            j.i(query)?
                .narrow(0, 1, n - 1)?
                .to_dtype(DType::F32)?
                .to_vec1()?,
        );
        joint = Some(j);
    }
    Ok(rows)
}

impl EncodedImage {
    pub fn new(engine: &Engine, prepared: &Prepared) -> Result<Self> {
        let model = &engine.model;
        let px = prepared.pixel_values.unsqueeze(0)?;
        let out = model.vision.forward(
            &px,
            Fwd {
                hidden_states: true,
                attentions: true,
                grad: false,
            },
        )?;
        let features = model.visual_projection.forward(&out.pooled)?.i(0)?;
        Ok(EncodedImage {
            placement: prepared.placement,
            grid: out.grid,
            features,
            hidden_states: out.encoder.hidden_states,
            attentions: out.encoder.attentions,
            maskclip_tokens: OnceLock::new(),
            surgery_tokens: OnceLock::new(),
            rollout: OnceLock::new(),
            input: prepared.pixel_values.clone(),
            affinity: OnceLock::new(),
        })
    }

    /// `map` (a patch-grid map of this image) bilinearly upsampled to the model's input pixels and
    /// refined along the input image's edges ([`crate::refine::pamr`]). The result is a [`Heatmap`]
    /// with one cell per input pixel, placed on the source image like the patch grid it came from.
    pub fn refine(&self, map: &Heatmap, settings: &crate::refine::Refinement) -> Result<Heatmap> {
        if map.refined {
            return Ok(map.clone());
        }
        let (gh, gw) = map.grid;
        let ps = map.patch_size;
        let (h, w) = (gh * ps, gw * ps);
        let (_, guide_h, guide_w) = self.input.dims3()?;
        if map.values.len() != gh * gw || h > guide_h || w > guide_w || h == 0 || w == 0 {
            return Err(Error::Input(format!(
                "a {gh}×{gw} map of {ps}-pixel patches does not fit this {guide_h}×{guide_w} input"
            )));
        }
        // The guide: the input as one channel (the mean of its three), over the top-left gh·ps × gw·ps
        // pixels the grid covers (the rest, if any, no patch saw). Made only when a map is refined.
        let make = || -> Result<Option<Affinity>> {
            let guide = self
                .input
                .to_dtype(DType::F32)?
                .mean(0)?
                .narrow(0, 0, h)?
                .narrow(1, 0, w)?
                .flatten_all()?
                .to_vec1()?;
            Ok(Affinity::new(&guide, w, h, settings))
        };
        let fits = |a: &Affinity| a.settings() == settings && a.size() == (w, h);
        let fresh;
        let affinity = match self.affinity.get() {
            Some(Some(a)) if fits(a) => Some(a),
            // Weights for other settings than the kept ones: made for this call only.
            Some(_) => {
                fresh = make()?;
                fresh.as_ref()
            }
            None => {
                let made = make()?;
                self.affinity.get_or_init(|| made).as_ref()
            }
        }
        .filter(|a| fits(a))
        .ok_or_else(|| Error::Input("nothing to refine".into()))?;
        let up: Vec<f32> = (0..h * w)
            .map(|i| {
                let (x, y) = ((i % w) as f64 + 0.5, (i / w) as f64 + 0.5);
                map.sample_input(&map.values, x, y).unwrap_or(0.0)
            })
            .collect();
        Ok(Heatmap {
            method: map.method,
            grid: (h, w),
            values: affinity.apply(&up),
            placement: map.placement,
            patch_size: 1,
            refined: true,
        })
    }

    /// The input of the last encoder block, [1, N, D].
    fn last_block_input(&self) -> Result<&Tensor> {
        self.hidden_states
            .len()
            .checked_sub(2)
            .and_then(|i| self.hidden_states.get(i))
            .ok_or_else(|| Error::Input("the vision encoder has no layers".into()))
    }

    fn grad_cam(&self, model: &ClipModel, text: &Tensor) -> Result<Vec<f32>> {
        let fwd = Fwd {
            grad: true,
            ..Fwd::default()
        };
        let Some(layer) = model.vision.encoder.layers.last() else {
            return Err(Error::Input("the vision encoder has no layers".into()));
        };
        let x = self.last_block_input()?.detach();
        let a = Var::from_tensor(&layer.layer_norm1.forward(&x, Fwd::default())?)?;
        // Only the class token's output reaches the image features, and in the last block it depends on the
        // other tokens only as keys and values: so the graph is the class-token query alone (same gradient
        // as the full block, at a fraction of the backward cost).
        let att = &layer.self_attn;
        let cls = a.as_tensor().narrow(1, 0, 1)?;
        let q = att.split_heads(&att.q_proj.forward(&cls)?)?;
        let k = att.split_heads(&att.k_proj.forward(a.as_tensor())?)?;
        let v = att.split_heads(&att.v_proj.forward(a.as_tensor())?)?;
        let probs = crate::model::softmax_last(&(q.matmul(&k.t()?)? * att.scale())?, fwd)?;
        let ctx = att
            .out_proj
            .forward(&att.merge_heads(&probs.matmul(&v)?)?)?;
        let y = (x.narrow(1, 0, 1)? + ctx)?;
        let y = (&y + layer.mlp.forward(&layer.layer_norm2.forward(&y, fwd)?)?)?;
        let pooled = model.vision.post_layernorm.forward(&y.i((.., 0))?, fwd)?;
        let f = model.visual_projection.forward(&pooled)?;
        let t = l2_normalize(&text.unsqueeze(0)?)?.detach();
        let cos = (l2_normalize(&f)? * t)?.sum_all()?;
        let grads = cos.backward()?;
        let g = grads
            .get(a.as_tensor())
            .ok_or_else(|| Error::Input("no gradient reached the last block".into()))?
            .i(0)?;
        let act = a.as_tensor().i(0)?;
        let n = act.dim(0)?;
        let (g, act) = (g.narrow(0, 1, n - 1)?, act.narrow(0, 1, n - 1)?);
        let alpha = g.mean_keepdim(0)?; // [1, D]: channel weights
        let cam = act.broadcast_mul(&alpha)?.sum(D::Minus1)?.relu()?;
        Ok(cam.to_dtype(DType::F32)?.to_vec1()?)
    }

    /// The map of `method` for the prompt with text features `text` [P] (and, for CLIP Surgery, the
    /// features of the empty prompt `empty` [P]).
    pub fn heatmap(
        &self,
        engine: &Engine,
        method: Method,
        text: &Tensor,
        empty: &Tensor,
    ) -> Result<Heatmap> {
        let model = &engine.model;
        let values: Vec<f32> = match method {
            Method::MaskClip => {
                let tokens = cached(&self.maskclip_tokens, || {
                    maskclip_tokens(model, self.last_block_input()?)
                })?;
                let t = l2_normalize(&text.unsqueeze(0)?)?;
                tokens
                    .matmul(&t.to_dtype(tokens.dtype())?.t()?)?
                    .flatten_all()?
                    .to_dtype(DType::F32)?
                    .to_vec1()?
            }
            Method::ClipSurgery => {
                let t = l2_normalize(&text.unsqueeze(0)?)?;
                let r = l2_normalize(&empty.unsqueeze(0)?)?;
                let tokens = cached(&self.surgery_tokens, || {
                    surgery_tokens(model, &self.hidden_states)
                })?;
                tokens
                    .matmul(&(t - r)?.to_dtype(tokens.dtype())?.t()?)?
                    .flatten_all()?
                    .to_dtype(DType::F32)?
                    .to_vec1()?
            }
            Method::Rollout => cached(&self.rollout, || rollout(&self.attentions))?,
            Method::GradCam => self.grad_cam(model, text)?,
        };
        Ok(Heatmap {
            method,
            grid: self.grid,
            values,
            placement: self.placement,
            patch_size: model.vision.config.patch_size,
            refined: false,
        })
    }
}

impl Engine {
    /// Heatmap for `prompt` on an encoded image.
    pub fn heatmap(&self, image: &EncodedImage, method: Method, prompt: &str) -> Result<Heatmap> {
        let feats = self.encode_texts(&[prompt, ""])?;
        image.heatmap(self, method, &feats.get(0)?, &feats.get(1)?)
    }
}

/// An NPY (v1.0) file of a little-endian f32 array, for `--raw`.
pub fn npy_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}
