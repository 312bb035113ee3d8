//! Image preprocessing as the original CLIP does it (and Hugging Face's PIL image processor): resize the
//! shortest side with Pillow's bicubic filter, centre crop, scale to [0, 1], normalise by the model's
//! mean/std. The resize reproduces Pillow's fixed-point two-pass convolution, so pixel values match
//! transformers' `CLIPImageProcessorPil` to float rounding.
//!
//! The medical path turns a DICOM frame into such an image first (`radclip-assist`'s `frame`: modality
//! LUT, VOI window, the viewer's or the model card's, presentation, grey replicated to three channels).

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::Deserialize;

use crate::error::{Error, Result};

/// 8-bit RGB pixels, row-major, interleaved.
#[derive(Debug, Clone, PartialEq)]
pub struct Rgb8 {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Rgb8 {
    pub fn from_grey(width: usize, height: usize, grey: &[u8]) -> Self {
        Rgb8 {
            width,
            height,
            data: grey.iter().flat_map(|&g| [g, g, g]).collect(),
        }
    }

    /// A PNG/JPEG/… file, converted to RGB as PIL's `convert("RGB")` does for 8-bit images.
    pub fn open(path: &Path) -> Result<Self> {
        let img =
            image::open(path).map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
        let rgb = img.to_rgb8();
        Ok(Rgb8 {
            width: rgb.width() as usize,
            height: rgb.height() as usize,
            data: rgb.into_raw(),
        })
    }
}

/// What the model expects, from `preprocessor_config.json` (HF) or the vision config.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    pub shortest_edge: usize,
    pub crop: (usize, usize),
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

// OpenAI's values, to f32 precision.
pub const OPENAI_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const OPENAI_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeSpec {
    Int(usize),
    Map {
        shortest_edge: Option<usize>,
        height: Option<usize>,
        width: Option<usize>,
    },
}

#[derive(Deserialize)]
struct RawPreprocessor {
    size: Option<SizeSpec>,
    crop_size: Option<SizeSpec>,
    image_mean: Option<Vec<f32>>,
    image_std: Option<Vec<f32>>,
}

impl Preprocess {
    /// OpenAI's CLIP preprocessing at `size`.
    pub fn openai(size: usize) -> Self {
        Preprocess {
            shortest_edge: size,
            crop: (size, size),
            mean: OPENAI_MEAN,
            std: OPENAI_STD,
        }
    }

    /// Reads `preprocessor_config.json` in `dir` if there is one, else OpenAI's at `image_size`.
    pub fn for_model(dir: &Path, image_size: usize) -> Result<Self> {
        let path = dir.join("preprocessor_config.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(Self::openai(image_size));
        };
        let bad = |message: String| Error::Config {
            path: path.clone(),
            message,
        };
        let raw: RawPreprocessor = serde_json::from_str(&text)
            .map_err(|e| bad(format!("not a preprocessor config: {e}")))?;
        let mut p = Self::openai(image_size);
        match raw.size {
            Some(SizeSpec::Int(s)) => p.shortest_edge = s,
            Some(SizeSpec::Map {
                shortest_edge: Some(s),
                ..
            }) => p.shortest_edge = s,
            Some(SizeSpec::Map {
                height: Some(h),
                width: Some(w),
                ..
            }) => p.shortest_edge = h.min(w),
            _ => {}
        }
        match raw.crop_size {
            Some(SizeSpec::Int(s)) => p.crop = (s, s),
            Some(SizeSpec::Map {
                height: Some(h),
                width: Some(w),
                ..
            }) => p.crop = (h, w),
            _ => p.crop = (p.shortest_edge, p.shortest_edge),
        }
        for (dst, src, name) in [
            (&mut p.mean, raw.image_mean, "image_mean"),
            (&mut p.std, raw.image_std, "image_std"),
        ] {
            if let Some(v) = src {
                *dst = <[f32; 3]>::try_from(v.as_slice())
                    .map_err(|_| bad(format!("{name} must have 3 values")))?;
            }
        }
        if p.std.contains(&0.0) || p.shortest_edge == 0 || p.crop.0 == 0 || p.crop.1 == 0 {
            return Err(bad("zero size or standard deviation".into()));
        }
        Ok(p)
    }
}

/// Where the model's input pixels come from in the source image, so a patch-grid map can be laid
/// back onto the frame: source x = (input x + left + 0.5) · scale_x − 0.5, likewise for y.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    pub source: (usize, usize),
    pub resized: (usize, usize),
    /// Crop offset (left, top) in resized pixels.
    pub crop_offset: (usize, usize),
    pub crop: (usize, usize),
}

impl Placement {
    /// The source-image rectangle (x0, y0, x1, y1), in pixel-edge coordinates, that the crop covers.
    pub fn source_rect(&self) -> (f64, f64, f64, f64) {
        let sx = self.source.0 as f64 / self.resized.0 as f64;
        let sy = self.source.1 as f64 / self.resized.1 as f64;
        let (l, t) = (self.crop_offset.0 as f64, self.crop_offset.1 as f64);
        (
            l * sx,
            t * sy,
            (l + self.crop.0 as f64) * sx,
            (t + self.crop.1 as f64) * sy,
        )
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic(x: f64) -> f64 {
    let a = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`: per output sample, the first input index,
/// the count, and fixed-point weights.
fn coefficients(in_size: usize, out_size: usize) -> (Vec<(usize, usize)>, Vec<i32>, usize) {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut kk = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // `as i64` truncates toward zero, as C's (int) cast does.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
        let (xmin, xmax) = (xmin as usize, xmax.max(0) as usize);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            *kx = bicubic((x as f64 + xmin as f64 - center + 0.5) * ss);
            ww += *kx;
        }
        for x in 0..xmax {
            let w = if ww != 0.0 { k[x] / ww } else { k[x] };
            let scaled = w * f64::from(1u32 << PRECISION_BITS);
            kk[xx * ksize + x] = if w < 0.0 {
                (scaled - 0.5) as i32
            } else {
                (scaled + 0.5) as i32
            };
        }
        bounds.push((xmin, xmax));
    }
    (bounds, kk, ksize)
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One separable pass over interleaved RGB rows: `horizontal` resamples along x.
fn pass(src: &Rgb8, out_size: usize, horizontal: bool) -> Rgb8 {
    let in_size = if horizontal { src.width } else { src.height };
    let (bounds, kk, ksize) = coefficients(in_size, out_size);
    let (w, h) = if horizontal {
        (out_size, src.height)
    } else {
        (src.width, out_size)
    };
    let mut data = vec![0u8; w * h * 3];
    let at = |x: usize, y: usize, c: usize| i64::from(src.data[(y * src.width + x) * 3 + c]);
    for y in 0..h {
        for x in 0..w {
            let o = if horizontal { x } else { y };
            let (min, n) = bounds[o];
            let k = &kk[o * ksize..o * ksize + n];
            for c in 0..3 {
                let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                for (i, &kv) in k.iter().enumerate() {
                    let v = if horizontal {
                        at(min + i, y, c)
                    } else {
                        at(x, min + i, c)
                    };
                    ss += v * i64::from(kv);
                }
                data[(y * w + x) * 3 + c] = clip8(ss);
            }
        }
    }
    Rgb8 {
        width: w,
        height: h,
        data,
    }
}

/// Pillow's `Image.resize((w, h), Image.BICUBIC)` for 8-bit RGB: horizontal pass, then vertical.
pub fn resize_bicubic(img: &Rgb8, width: usize, height: usize) -> Rgb8 {
    let mut out = img.clone();
    if width != img.width {
        out = pass(&out, width, true);
    }
    if height != img.height {
        out = pass(&out, height, false);
    }
    out
}

impl Preprocess {
    /// The size after resizing the shortest side, as transformers' `get_resize_output_image_size`.
    pub fn resized_size(&self, width: usize, height: usize) -> (usize, usize) {
        let s = self.shortest_edge;
        if width <= height {
            (s, s * height / width.max(1))
        } else {
            (s * width / height.max(1), s)
        }
    }

    /// Pixel values [3, crop_h, crop_w] and where they came from.
    pub fn apply(&self, img: &Rgb8, device: &Device) -> Result<(Tensor, Placement)> {
        if img.width == 0 || img.height == 0 || img.data.len() != img.width * img.height * 3 {
            return Err(Error::Input("empty or inconsistent image".into()));
        }
        let (rw, rh) = self.resized_size(img.width, img.height);
        let resized = resize_bicubic(img, rw, rh);
        let (ch, cw) = self.crop;
        // Crops larger than the image are not padded here: the shortest side always equals the crop.
        let (cw, ch) = (cw.min(rw), ch.min(rh));
        let left = (rw - cw) / 2;
        let top = (rh - ch) / 2;
        let mut planes = vec![0f32; 3 * ch * cw];
        for y in 0..ch {
            for x in 0..cw {
                let p = ((top + y) * rw + left + x) * 3;
                for c in 0..3 {
                    let v = f32::from(resized.data[p + c]) * (1.0 / 255.0);
                    planes[(c * ch + y) * cw + x] = (v - self.mean[c]) / self.std[c];
                }
            }
        }
        let t = Tensor::from_vec(planes, (3, ch, cw), device)?;
        Ok((
            t,
            Placement {
                source: (img.width, img.height),
                resized: (rw, rh),
                crop_offset: (left, top),
                crop: (cw, ch),
            },
        ))
    }
}
