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

/// A findings list with its prompts encoded once: scoring a new image is then a few dot products (the
/// viewer scores every frame the user stops on).
pub struct PromptSet {
    scale: f64,
    temperature: f64,
    findings: Vec<EncodedFinding>,
}

struct EncodedFinding {
    name: String,
    positive: Vec<Vec<f32>>,
    negative: Vec<Vec<f32>>,
    mean_positive: Vec<f32>,
    mean_negative: Vec<f32>,
}

impl PromptSet {
    pub fn new(engine: &Engine, list: &FindingList) -> Result<Self> {
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
        let mut findings = Vec::new();
        for f in &list.finding {
            let positive = feats[at..at + f.positive.len()].to_vec();
            at += f.positive.len();
            let negative = feats[at..at + f.negative.len()].to_vec();
            at += f.negative.len();
            findings.push(EncodedFinding {
                name: f.name.clone(),
                mean_positive: mean_direction(&positive),
                mean_negative: mean_direction(&negative),
                positive,
                negative,
            });
        }
        Ok(PromptSet {
            scale: f64::from(engine.model.logit_scale_value()?),
            temperature: engine.card.zero_shot.temperature,
            findings,
        })
    }

    /// Scores every finding for each row of `image_features` [N, P] (or one image's [P]).
    pub fn score(&self, image_features: &candle_core::Tensor) -> Result<Vec<Vec<FindingScore>>> {
        let f32s = image_features.to_dtype(candle_core::DType::F32)?;
        let rows = if f32s.rank() == 1 {
            vec![f32s.to_vec1::<f32>()?]
        } else {
            f32s.to_vec2::<f32>()?
        };
        Ok(rows
            .iter()
            .map(|r| normalize(r))
            .map(|img| self.findings.iter().map(|f| self.one(f, &img)).collect())
            .collect())
    }

    fn one(&self, f: &EncodedFinding, img: &[f32]) -> FindingScore {
        let (pos, neg) = (&f.positive, &f.negative);
        let pairs = pos.len().max(neg.len());
        let pair_probabilities: Vec<f64> = (0..pairs)
            .map(|i| {
                pair_prob(
                    self.scale,
                    self.temperature,
                    img,
                    &pos[i % pos.len()],
                    &neg[i % neg.len()],
                )
            })
            .collect();
        let mean = pair_probabilities.iter().sum::<f64>() / pairs.max(1) as f64;
        let var = pair_probabilities
            .iter()
            .map(|p| (p - mean).powi(2))
            .sum::<f64>()
            / pairs.max(1) as f64;
        FindingScore {
            name: f.name.clone(),
            probability: pair_prob(
                self.scale,
                self.temperature,
                img,
                &f.mean_positive,
                &f.mean_negative,
            ),
            spread: var.sqrt(),
            pair_probabilities,
        }
    }
}

/// Scores every finding for each row of `image_features` [N, P].
pub fn score(
    engine: &Engine,
    image_features: &candle_core::Tensor,
    list: &FindingList,
) -> Result<Vec<Vec<FindingScore>>> {
    PromptSet::new(engine, list)?.score(image_features)
}
