//! Zero-shot findings, CheXzero style: per finding, softmax over a positive and a negative prompt,
//! each side a prompt ensemble (paraphrases averaged in embedding space). Each positive/negative pair
//! is also scored alone; the spread across pairs tells how much the answer depends on wording.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::{Error, Result, first_line};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    pub name: String,
    pub positive: Vec<String>,
    pub negative: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FindingList {
    pub finding: Vec<Finding>,
}

/// The CheXpert-14 list shipped with radclip (`models/findings-chexpert14.toml`).
pub const CHEXPERT14: &str = include_str!("../../../models/findings-chexpert14.toml");

impl FindingList {
    pub fn parse(source: &Path, text: &str) -> Result<Self> {
        let list: FindingList = toml::from_str(text).map_err(|e| Error::Config {
            path: source.to_path_buf(),
            message: first_line(&e),
        })?;
        if let Some(f) = list
            .finding
            .iter()
            .find(|f| f.positive.is_empty() || f.negative.is_empty())
        {
            return Err(Error::Config {
                path: source.to_path_buf(),
                message: format!("finding \"{}\" needs positive and negative prompts", f.name),
            });
        }
        Ok(list)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn chexpert14() -> Result<Self> {
        Self::parse(Path::new("findings-chexpert14.toml"), CHEXPERT14)
    }

    /// The list a model uses: its card's `zero_shot.findings`, else `findings.toml` next to it, else CheXpert-14.
    pub fn for_engine(engine: &Engine) -> Result<Self> {
        if let Some(f) = &engine.card.zero_shot.findings {
            return Self::load(&engine.dir.join(f));
        }
        let local = engine.dir.join("findings.toml");
        if local.is_file() {
            return Self::load(&local);
        }
        Self::chexpert14()
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FindingScore {
    pub name: String,
    /// From the prompt ensembles, after temperature scaling.
    pub probability: f64,
    /// Standard deviation of the single-pair probabilities.
    pub spread: f64,
    pub pair_probabilities: Vec<f64>,
}

fn normalize(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / n).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

fn mean_direction(rows: &[Vec<f32>]) -> Vec<f32> {
    let d = rows.first().map_or(0, Vec::len);
    let mut m = vec![0f32; d];
    for r in rows {
        for (a, b) in m.iter_mut().zip(r) {
            *a += b;
        }
    }
    normalize(&m)
}

/// P(positive) of a 2-way softmax over scaled cosine similarities.
fn pair_prob(scale: f64, temperature: f64, img: &[f32], pos: &[f32], neg: &[f32]) -> f64 {
    let z = scale * (dot(img, pos) - dot(img, neg)) / temperature;
    1.0 / (1.0 + (-z).exp())
}

/// Scores every finding for each row of `image_features` [N, P].
pub fn score(
    engine: &Engine,
    image_features: &candle_core::Tensor,
    list: &FindingList,
) -> Result<Vec<Vec<FindingScore>>> {
    let scale = f64::from(engine.model.logit_scale_value()?);
    let temperature = engine.card.zero_shot.temperature;
    let images: Vec<Vec<f32>> = image_features
        .to_dtype(candle_core::DType::F32)?
        .to_vec2::<f32>()?
        .iter()
        .map(|r| normalize(r))
        .collect();
    let mut prompts: Vec<&str> = Vec::new();
    for f in &list.finding {
        prompts.extend(f.positive.iter().map(String::as_str));
        prompts.extend(f.negative.iter().map(String::as_str));
    }
    let feats: Vec<Vec<f32>> = engine
        .encode_texts(&prompts)?
        .to_dtype(candle_core::DType::F32)?
        .to_vec2::<f32>()?
        .iter()
        .map(|r| normalize(r))
        .collect();
    let mut at = 0;
    let mut per_finding = Vec::new();
    for f in &list.finding {
        let pos = &feats[at..at + f.positive.len()];
        at += f.positive.len();
        let neg = &feats[at..at + f.negative.len()];
        at += f.negative.len();
        per_finding.push((f, pos, neg, mean_direction(pos), mean_direction(neg)));
    }
    Ok(images
        .iter()
        .map(|img| {
            per_finding
                .iter()
                .map(|(f, pos, neg, ep, en)| {
                    let pairs = pos.len().max(neg.len());
                    let pair_probabilities: Vec<f64> = (0..pairs)
                        .map(|i| {
                            pair_prob(
                                scale,
                                temperature,
                                img,
                                &pos[i % pos.len()],
                                &neg[i % neg.len()],
                            )
                        })
                        .collect();
                    let mean = pair_probabilities.iter().sum::<f64>() / pairs as f64;
                    let var = pair_probabilities
                        .iter()
                        .map(|p| (p - mean).powi(2))
                        .sum::<f64>()
                        / pairs as f64;
                    FindingScore {
                        name: f.name.clone(),
                        probability: pair_prob(scale, temperature, img, ep, en),
                        spread: var.sqrt(),
                        pair_probabilities,
                    }
                })
                .collect()
        })
        .collect())
}
