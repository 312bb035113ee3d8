//! Edge-guided refinement of a patch-grid heatmap: PAMR, pixel-adaptive mask refinement (Araslanov &
//! Roth, CVPR 2020), as training-free open-vocabulary segmentation uses it after CLIP's dense maps
//! (TCL, SCLIP, ClearCLIP).
//!
//! A patch map is coarse: one value per 16 or 32 input pixels, so its edges fall on the patch grid, not
//! on the finding's. PAMR upsamples it to the model's input pixels and then, a few times over, replaces
//! each pixel's value by an average of its neighbours (at several dilations) weighted by how alike the
//! input image is there: values spread along regions of even intensity and stop at edges. Every step is
//! a convex combination, so the map's range never grows and an affine change of the map commutes with it
//! (min–max normalising before or after gives the same picture).

use rayon::prelude::*;

/// PAMR's settings. The defaults were chosen on the demo model's calibration phantoms (seed 999), not
/// on the held-out set `radclip eval` reports; see docs/benchmarks.md.
#[derive(Debug, Clone, PartialEq)]
pub struct Refinement {
    /// Neighbour rings, in input pixels: the 8 neighbours at each distance.
    pub dilations: Vec<usize>,
    pub iterations: usize,
    /// Affinity temperature relative to the local spread of intensities (PAMR's 0.1).
    pub sharpness: f32,
}

impl Default for Refinement {
    fn default() -> Self {
        Refinement {
            dilations: vec![1, 2, 4],
            iterations: 10,
            sharpness: 0.1,
        }
    }
}

/// Refines `map` (row-major, `w`×`h`, already at the guide's resolution) by the image `guide` (same
/// shape, any intensity scale). Returns the refined map; sizes that do not agree return the map as is.
pub fn pamr(guide: &[f32], w: usize, h: usize, map: &[f32], r: &Refinement) -> Vec<f32> {
    match Affinity::new(guide, w, h, r) {
        Some(a) => a.apply(map),
        None => map.to_vec(),
    }
}

/// PAMR's neighbour weights for one guide image: computed once per image, applied to every map of it.
#[derive(Debug, Clone)]
pub struct Affinity {
    w: usize,
    h: usize,
    /// The largest dilation: the replicated border of the padded map.
    pad: usize,
    /// Each neighbour's offset in the padded map.
    offsets: Vec<isize>,
    /// `weights[k][y·w + x]`: neighbour k's weight at pixel (x, y) (per pixel they sum to 1).
    weights: Vec<Vec<f32>>,
    settings: Refinement,
}

impl Affinity {
    /// `None` when the guide is not `w`×`h` or there is nothing to do.
    pub fn new(guide: &[f32], w: usize, h: usize, r: &Refinement) -> Option<Affinity> {
        let n = w * h;
        if guide.len() != n || n == 0 || r.dilations.is_empty() {
            return None;
        }
        let pad = r.dilations.iter().copied().max().unwrap_or(1);
        let pw = w + 2 * pad;
        // The 8 neighbours at each dilation (the centre takes no part in the average, only in the
        // local spread).
        let mut rings: Vec<(isize, isize)> = Vec::new();
        for &d in &r.dilations {
            let d = d as isize;
            for dy in [-d, 0, d] {
                for dx in [-d, 0, d] {
                    if dy != 0 || dx != 0 {
                        rings.push((dy, dx));
                    }
                }
            }
        }
        let k = rings.len();
        let offsets: Vec<isize> = rings.iter().map(|(dy, dx)| dy * pw as isize + dx).collect();
        let g = padded(guide, w, h, pad);
        let centres = r.dilations.len() as f64;
        // Per pixel, softmax over neighbours of −|I(p) − I(q)| / (sharpness · σ(p)), σ the standard
        // deviation (unbiased, as torch.std) of the pixel's rings with the centre counted once per ring.
        let per_pixel: Vec<f32> = (0..h)
            .into_par_iter()
            .flat_map_iter(|y| {
                let mut row = Vec::with_capacity(w * k);
                let mut logits = vec![0f32; k];
                for x in 0..w {
                    let base = ((y + pad) * pw + x + pad) as isize;
                    let c = g[base as usize];
                    let (mut s, mut s2) = (f64::from(c) * centres, f64::from(c * c) * centres);
                    for &o in &offsets {
                        let v = f64::from(g[(base + o) as usize]);
                        s += v;
                        s2 += v * v;
                    }
                    let cnt = k as f64 + centres;
                    let mean = s / cnt;
                    let var = ((s2 - mean * s) / (cnt - 1.0).max(1.0)).max(0.0);
                    let scale = 1.0 / (1e-8 + f64::from(r.sharpness) * var.sqrt());
                    let mut hi = f32::NEG_INFINITY;
                    for (l, &o) in logits.iter_mut().zip(&offsets) {
                        *l = (-f64::from((c - g[(base + o) as usize]).abs()) * scale) as f32;
                        hi = hi.max(*l);
                    }
                    let mut sum = 0f32;
                    for l in &mut logits {
                        *l = (*l - hi).exp();
                        sum += *l;
                    }
                    row.extend(logits.iter().map(|l| l / sum));
                }
                row
            })
            .collect();
        // Neighbour-major, so the iterations run along rows.
        let weights = (0..k)
            .map(|j| per_pixel.iter().skip(j).step_by(k).copied().collect())
            .collect();
        Some(Affinity {
            w,
            h,
            pad,
            offsets,
            weights,
            settings: r.clone(),
        })
    }

    /// (columns, rows) of the maps these weights apply to.
    pub fn size(&self) -> (usize, usize) {
        (self.w, self.h)
    }

    /// The settings these weights were made with.
    pub fn settings(&self) -> &Refinement {
        &self.settings
    }

    /// `map` (`w`×`h`, row-major) after the iterations; a map of another size is returned as is.
    pub fn apply(&self, map: &[f32]) -> Vec<f32> {
        let (w, h, pad) = (self.w, self.h, self.pad);
        if map.len() != w * h {
            return map.to_vec();
        }
        let pw = w + 2 * pad;
        let mut cur = map.to_vec();
        for _ in 0..self.settings.iterations {
            let p = padded(&cur, w, h, pad);
            cur.par_chunks_mut(w).enumerate().for_each(|(y, out)| {
                out.iter_mut().for_each(|v| *v = 0.0);
                let row = (y + pad) * pw + pad;
                for (o, wk) in self.offsets.iter().zip(&self.weights) {
                    let start = (row as isize + o) as usize;
                    let src = &p[start..start + w];
                    let wts = &wk[y * w..(y + 1) * w];
                    for ((v, s), a) in out.iter_mut().zip(src).zip(wts) {
                        *v += a * s;
                    }
                }
            });
        }
        cur
    }
}

/// `v` (`w`×`h`) with a border of `pad` replicating its edge pixels, as PAMR pads.
fn padded(v: &[f32], w: usize, h: usize, pad: usize) -> Vec<f32> {
    let pw = w + 2 * pad;
    let mut out = Vec::with_capacity(pw * (h + 2 * pad));
    for py in 0..h + 2 * pad {
        let y = py.saturating_sub(pad).min(h - 1);
        let row = &v[y * w..(y + 1) * w];
        out.extend(std::iter::repeat_n(row[0], pad));
        out.extend_from_slice(row);
        out.extend(std::iter::repeat_n(row[w - 1], pad));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bright square on a dark ground; a blurred blob over it that spills into the ground.
    fn scene(w: usize) -> (Vec<f32>, Vec<f32>, Vec<bool>) {
        let inside = |x: usize, y: usize| (20..36).contains(&x) && (20..36).contains(&y);
        let mut guide = Vec::new();
        let mut map = Vec::new();
        let mut truth = Vec::new();
        for y in 0..w {
            for x in 0..w {
                guide.push(if inside(x, y) { 0.8 } else { 0.2 });
                truth.push(inside(x, y));
                let d = ((x as f32 - 30.0).powi(2) + (y as f32 - 30.0).powi(2)).sqrt();
                map.push((-d / 14.0).exp());
            }
        }
        (guide, map, truth)
    }

    fn best_iou(map: &[f32], truth: &[bool]) -> f64 {
        let lo = map.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = map.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        (1..20)
            .map(|i| {
                let t = lo + (hi - lo) * i as f32 * 0.05;
                let (mut inter, mut uni) = (0, 0);
                for (v, g) in map.iter().zip(truth) {
                    let p = *v >= t;
                    inter += usize::from(p && *g);
                    uni += usize::from(p || *g);
                }
                inter as f64 / uni.max(1) as f64
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn values_follow_the_image_edges() {
        let w = 64;
        let (guide, map, truth) = scene(w);
        let refined = pamr(&guide, w, w, &map, &Refinement::default());
        let (before, after) = (best_iou(&map, &truth), best_iou(&refined, &truth));
        assert!(after > before + 0.1, "IoU {before:.3} → {after:.3}");
        // Convex combinations: the range does not grow.
        let (lo, hi) = (
            map.iter().copied().fold(f32::INFINITY, f32::min),
            map.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        );
        assert!(refined.iter().all(|v| *v >= lo - 1e-6 && *v <= hi + 1e-6));
    }

    #[test]
    fn a_flat_image_only_smooths_and_an_affine_map_change_commutes() {
        let w = 32;
        let guide = vec![0.5f32; w * w];
        let map: Vec<f32> = (0..w * w).map(|i| (i % 7) as f32).collect();
        let r = Refinement::default();
        let a = pamr(&guide, w, w, &map, &r);
        let scaled: Vec<f32> = map.iter().map(|v| 3.0 * v - 2.0).collect();
        let b = pamr(&guide, w, w, &scaled, &r);
        for (x, y) in a.iter().zip(&b) {
            assert!((3.0 * x - 2.0 - y).abs() < 1e-3);
        }
        // On a flat image every neighbour weighs the same: the mean is kept and the spread shrinks.
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        assert!((mean(&a) - mean(&map)).abs() < 0.1);
        let spread = |v: &[f32]| v.iter().map(|x| (x - mean(v)).powi(2)).sum::<f32>();
        assert!(spread(&a) < 0.2 * spread(&map));
        // Shapes that do not agree leave the map as it was.
        assert_eq!(pamr(&guide[1..], w, w, &map, &r), map);
    }
}
