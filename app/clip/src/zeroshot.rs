//! Zero-shot findings, CheXzero style: per finding, softmax over a positive and a negative prompt,
//! each side a prompt ensemble (paraphrases averaged in embedding space). Each positive/negative pair
//! is also scored alone; the spread across pairs tells how much the answer depends on wording.
//!
//! With a reference set on the model card (unlabelled images of the model's domain, as image features),
//! each single pair is first put on its finding's scale: its margin `x·(p − n)` is mapped, quantile for
//! quantile over the reference images, onto the ensemble's margins there (histogram matching). Paraphrases
//! of a prompt rank images alike but each carries its own offset and scale (on the demo model, five
//! held-out pairs per finding had AUROCs within 0.02 of each other while their mean probabilities differed
//! by up to 0.3), and that is what a reader would otherwise take for disagreement. This is contextual
//! calibration (Zhao et al. 2021, "Calibrate before use") with the reference images as the context; the
//! ensemble itself is unchanged by it. Matching mean and spread only (an affine map) left twice the
//! pneumothorax range of the quantile map on the demo model: its paraphrases' margins differ in shape.

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
    /// Words reports use for the finding, for the report labeler (`radclip-report`); `*` stands
    /// for up to three words. Optional: a list without them still scores images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<String>,
    /// Look-alikes that are not the finding ("pericardial effusion" for a pleural effusion).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_mentions: Vec<String>,
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

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// `pos − neg`: the direction whose cosine with an image is a pair's margin.
fn margin_direction(pos: &[f32], neg: &[f32]) -> Vec<f32> {
    pos.iter().zip(neg).map(|(p, n)| p - n).collect()
}

/// Reference image features next to a model (`zero_shot.reference` in its card): unlabelled images of
/// the domain the model reads, L2-normalised, that single prompt pairs are standardised against.
#[derive(Debug, Clone)]
pub struct Reference {
    rows: Vec<Vec<f32>>,
}

/// The tensor of a reference file: [images, projection dim], f32.
pub const REFERENCE_TENSOR: &str = "image_embeds";

impl Reference {
    /// From image features (any norm; each row is normalised). Needs two images or more of one width.
    pub fn from_features(rows: &[Vec<f32>]) -> Result<Self> {
        let width = rows.first().map_or(0, Vec::len);
        if rows.len() < 2 || width == 0 || rows.iter().any(|r| r.len() != width) {
            return Err(Error::Input(
                "a reference set needs two or more image features of the same width".into(),
            ));
        }
        if rows.iter().flatten().any(|x| !x.is_finite()) {
            return Err(Error::Input(
                "a reference image feature is not a finite number".into(),
            ));
        }
        Ok(Reference {
            rows: rows.iter().map(|r| normalize(r)).collect(),
        })
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bad = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        let tensors =
            candle_core::safetensors::load(path, &candle_core::Device::Cpu).map_err(|e| {
                bad(format!(
                    "not a readable reference file ({})",
                    first_line(&e)
                ))
            })?;
        let t = tensors
            .get(REFERENCE_TENSOR)
            .ok_or_else(|| bad(format!("no tensor \"{REFERENCE_TENSOR}\"")))?;
        let rows = t
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.to_vec2::<f32>())
            .map_err(|e| {
                bad(format!(
                    "\"{REFERENCE_TENSOR}\" is not a matrix ({})",
                    first_line(&e)
                ))
            })?;
        Self::from_features(&rows).map_err(|e| bad(e.to_string()))
    }

    /// Writes the set to `path` (a temporary file, then a rename: never a half-written reference).
    pub fn save(&self, path: &Path) -> Result<()> {
        let (n, width) = (self.rows.len(), self.width());
        let flat: Vec<f32> = self.rows.iter().flatten().copied().collect();
        let t = candle_core::Tensor::from_vec(flat, (n, width), &candle_core::Device::Cpu)?;
        let bytes = safetensors::serialize([(REFERENCE_TENSOR, &t)], None)
            .map_err(|e| Error::Input(format!("cannot encode the reference set: {e}")))?;
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        std::io::Write::write_all(&mut tmp, &bytes).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn width(&self) -> usize {
        self.rows.first().map_or(0, Vec::len)
    }

    /// `x·d` for every reference image `x`.
    fn margins(&self, d: &[f32]) -> Vec<f64> {
        self.rows.iter().map(|r| dot(r, d)).collect()
    }
}

/// One positive/negative pair, ready to score images: its margin direction and, with a reference
/// set, the map that puts its margin on the finding ensemble's scale there.
#[derive(Debug, Clone)]
pub struct PairScorer {
    direction: Vec<f32>,
    calibration: Option<QuantileMap>,
    scale: f64,
    temperature: f64,
}

/// Piecewise-linear map from one sample's quantiles to another's (both sorted, same length ≥ 2);
/// beyond the sample, linear with the ratio of their spreads.
#[derive(Debug, Clone)]
struct QuantileMap {
    from: Vec<f64>,
    to: Vec<f64>,
    slope: f64,
}

impl QuantileMap {
    fn new(mut from: Vec<f64>, mut to: Vec<f64>) -> Option<Self> {
        let sd = |v: &[f64]| {
            let n = v.len() as f64;
            let m = v.iter().sum::<f64>() / n;
            (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt()
        };
        let (sf, st) = (sd(&from), sd(&to));
        // A pair that does not vary over the reference set has no scale to match: left raw.
        if from.len() != to.len() || from.len() < 2 || sf <= 1e-9 || st <= 1e-9 {
            return None;
        }
        from.sort_by(f64::total_cmp);
        to.sort_by(f64::total_cmp);
        Some(QuantileMap {
            from,
            to,
            slope: st / sf,
        })
    }

    fn apply(&self, v: f64) -> f64 {
        let (f, t) = (&self.from, &self.to);
        let last = f.len() - 1;
        if v <= f[0] {
            return t[0] + (v - f[0]) * self.slope;
        }
        if v >= f[last] {
            return t[last] + (v - f[last]) * self.slope;
        }
        // f[i] <= v < f[i + 1], 0 <= i < last.
        let i = f
            .partition_point(|x| *x <= v)
            .saturating_sub(1)
            .min(last - 1);
        let gap = f[i + 1] - f[i];
        let frac = if gap > 0.0 { (v - f[i]) / gap } else { 0.0 };
        t[i] + frac * (t[i + 1] - t[i])
    }
}

impl PairScorer {
    /// The calibrated cosine margin `x·(p − n)` of an L2-normalised image feature.
    pub fn margin(&self, img: &[f32]) -> f64 {
        let m = dot(img, &self.direction);
        self.calibration.as_ref().map_or(m, |q| q.apply(m))
    }

    /// The calibrated logit of an L2-normalised image feature.
    pub fn logit(&self, img: &[f32]) -> f64 {
        self.scale * self.margin(img) / self.temperature
    }

    /// P(positive) for an L2-normalised image feature.
    pub fn probability(&self, img: &[f32]) -> f64 {
        sigmoid(self.logit(img))
    }
}

/// A finding's name with its positive and negative prompts' text features (rows of any norm).
pub type FindingFeatures = (String, Vec<Vec<f32>>, Vec<Vec<f32>>);

/// A findings list with its prompts encoded once: scoring a new image is then a few dot products (the
/// viewer scores every frame the user stops on).
pub struct PromptSet {
    scale: f64,
    temperature: f64,
    reference: Option<Reference>,
    findings: Vec<EncodedFinding>,
}

struct EncodedFinding {
    name: String,
    ensemble: PairScorer,
    pairs: Vec<PairScorer>,
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
            .to_vec2::<f32>()?;
        let reference = match &engine.card.zero_shot.reference {
            Some(file) => Some(Reference::load(&engine.dir.join(file))?),
            None => None,
        };
        let mut at = 0;
        let mut encoded = Vec::new();
        for f in &list.finding {
            let positive = feats[at..at + f.positive.len()].to_vec();
            at += f.positive.len();
            let negative = feats[at..at + f.negative.len()].to_vec();
            at += f.negative.len();
            encoded.push((f.name.clone(), positive, negative));
        }
        let origin = engine.card.zero_shot.reference.clone().unwrap_or_default();
        Self::from_features(
            f64::from(engine.model.logit_scale_value()?),
            engine.card.zero_shot.temperature,
            encoded,
            reference,
        )
        .map_err(|e| match e {
            Error::Input(message) => Error::Config {
                path: engine.dir.join(origin),
                message,
            },
            other => other,
        })
    }

    /// From text features already computed: per finding (name, positive rows, negative rows), any norm.
    pub fn from_features(
        scale: f64,
        temperature: f64,
        findings: Vec<FindingFeatures>,
        reference: Option<Reference>,
    ) -> Result<Self> {
        let width = findings
            .iter()
            .flat_map(|(_, p, n)| p.iter().chain(n))
            .map(Vec::len)
            .next()
            .unwrap_or(0);
        if let Some(r) = &reference
            && width != 0
            && r.width() != width
        {
            return Err(Error::Input(format!(
                "the reference set holds {}-wide image features and the model's are {width}-wide",
                r.width()
            )));
        }
        let mut set = PromptSet {
            scale,
            temperature,
            reference,
            findings: Vec::new(),
        };
        for (name, positive, negative) in findings {
            let positive: Vec<Vec<f32>> = positive.iter().map(|r| normalize(r)).collect();
            let negative: Vec<Vec<f32>> = negative.iter().map(|r| normalize(r)).collect();
            let ensemble = set.raw_pair(&mean_direction(&positive), &mean_direction(&negative));
            let n = positive.len().max(negative.len());
            let pairs = (0..n)
                .map(|i| {
                    let pos = &positive[i % positive.len().max(1)];
                    let neg = &negative[i % negative.len().max(1)];
                    set.calibrated_pair(&ensemble, pos, neg)
                })
                .collect();
            set.findings.push(EncodedFinding {
                name,
                ensemble,
                pairs,
            });
        }
        Ok(set)
    }

    fn raw_pair(&self, pos: &[f32], neg: &[f32]) -> PairScorer {
        PairScorer {
            direction: margin_direction(pos, neg),
            calibration: None,
            scale: self.scale,
            temperature: self.temperature,
        }
    }

    /// `pos`/`neg` (L2-normalised) as a pair of the finding whose ensemble is `ensemble`: on the
    /// ensemble's scale over the reference set when there is one, else raw.
    fn calibrated_pair(&self, ensemble: &PairScorer, pos: &[f32], neg: &[f32]) -> PairScorer {
        let mut pair = self.raw_pair(pos, neg);
        if let Some(r) = &self.reference {
            pair.calibration =
                QuantileMap::new(r.margins(&pair.direction), r.margins(&ensemble.direction));
        }
        pair
    }

    /// Whether single pairs are calibrated against a reference set.
    pub fn has_reference(&self) -> bool {
        self.reference.is_some()
    }

    /// A pair of prompts (their text features, any norm) scored as one more paraphrase of finding
    /// `name`: what `radclip eval` measures unseen paraphrases with. `None` for an unknown name.
    pub fn pair_for(&self, name: &str, pos: &[f32], neg: &[f32]) -> Option<PairScorer> {
        let f = self.findings.iter().find(|f| f.name == name)?;
        Some(self.calibrated_pair(&f.ensemble, &normalize(pos), &normalize(neg)))
    }

    /// Scores every finding for each row of `image_features` [N, P] (or one image's [P]).
    pub fn score(&self, image_features: &candle_core::Tensor) -> Result<Vec<Vec<FindingScore>>> {
        let f32s = image_features.to_dtype(candle_core::DType::F32)?;
        let rows = if f32s.rank() == 1 {
            vec![f32s.to_vec1::<f32>()?]
        } else {
            f32s.to_vec2::<f32>()?
        };
        Ok(rows.iter().map(|r| self.score_row(r)).collect())
    }

    /// Scores every finding for one image feature (any norm).
    pub fn score_row(&self, feature: &[f32]) -> Vec<FindingScore> {
        let img = normalize(feature);
        self.findings.iter().map(|f| Self::one(f, &img)).collect()
    }

    fn one(f: &EncodedFinding, img: &[f32]) -> FindingScore {
        let pair_probabilities: Vec<f64> = f.pairs.iter().map(|p| p.probability(img)).collect();
        let n = pair_probabilities.len().max(1) as f64;
        let mean = pair_probabilities.iter().sum::<f64>() / n;
        let var = pair_probabilities
            .iter()
            .map(|p| (p - mean).powi(2))
            .sum::<f64>()
            / n;
        FindingScore {
            name: f.name.clone(),
            probability: f.ensemble.probability(img),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator, so the tests need no RNG crate.
    fn rows(seed: u64, n: usize, width: usize) -> Vec<Vec<f32>> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                (0..width)
                    .map(|_| {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((x >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                    })
                    .collect()
            })
            .collect()
    }

    fn stats(v: &[f64]) -> (f64, f64) {
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n;
        (
            m,
            (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt(),
        )
    }

    /// Over the reference images, every calibrated pair's logits have the ensemble's mean and spread,
    /// and the ensemble's own probability is the uncalibrated one.
    #[test]
    fn pairs_take_the_ensemble_scale_on_the_reference_set() -> Result<()> {
        let width = 16;
        let reference = Reference::from_features(&rows(1, 64, width))?;
        let (pos, neg) = (rows(2, 3, width), rows(3, 3, width));
        let finding = vec![("F".to_string(), pos.clone(), neg.clone())];
        let raw = PromptSet::from_features(50.0, 1.3, finding.clone(), None)?;
        let cal = PromptSet::from_features(50.0, 1.3, finding, Some(reference.clone()))?;
        assert!(cal.has_reference() && !raw.has_reference());
        let f = &cal.findings[0];
        let sorted = |p: &PairScorer| {
            let mut v: Vec<f64> = reference.rows.iter().map(|r| p.logit(r)).collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let ens = sorted(&f.ensemble);
        let (me, se) = stats(&ens);
        for pair in &f.pairs {
            // The same logits as the ensemble's, image for image in rank order.
            for (a, b) in sorted(pair).iter().zip(&ens) {
                assert!((a - b).abs() < 1e-9, "{a} vs {b}");
            }
            // Beyond the reference set the map goes on linearly: monotone, no jump at the ends.
            let q = pair
                .calibration
                .as_ref()
                .ok_or_else(|| Error::Input("raw".into()))?;
            let (lo, hi) = (q.from[0], q.from[q.from.len() - 1]);
            assert!(q.apply(lo - 1e-12) <= q.apply(lo) + 1e-9);
            assert!(q.apply(hi + 1.0) > q.apply(hi));
            assert!((q.apply(hi + 1e-12) - q.apply(hi)).abs() < 1e-9);
        }
        // Raw pairs differ from the ensemble's scale (else the check above proves nothing).
        let l: Vec<f64> = reference
            .rows
            .iter()
            .map(|r| raw.findings[0].pairs[0].logit(r))
            .collect();
        let (m, s) = stats(&l);
        assert!((m - me).abs() > 1e-3 || (s - se).abs() > 1e-3);
        for img in rows(4, 10, width) {
            let (a, b) = (&raw.score_row(&img)[0], &cal.score_row(&img)[0]);
            assert!((a.probability - b.probability).abs() < 1e-12);
            assert_eq!(a.pair_probabilities.len(), b.pair_probabilities.len());
        }
        // A paraphrase scored through `pair_for` is calibrated like the list's own pairs.
        let p = cal
            .pair_for("F", &pos[1], &neg[1])
            .ok_or_else(|| Error::Input("no finding F".into()))?;
        let img = normalize(&rows(5, 1, width)[0]);
        assert!((p.probability(&img) - f.pairs[1].probability(&img)).abs() < 1e-12);
        assert!(cal.pair_for("G", &pos[0], &neg[0]).is_none());
        Ok(())
    }

    #[test]
    fn a_reference_file_round_trips_and_bad_ones_are_errors() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Input(e.to_string()))?;
        let path = dir.path().join("reference.safetensors");
        let r = Reference::from_features(&rows(7, 5, 8))?;
        r.save(&path)?;
        let back = Reference::load(&path)?;
        assert_eq!((back.len(), back.width()), (5, 8));
        // (Rows are normalised again on load: equal to float rounding.)
        for (a, b) in back.rows.iter().flatten().zip(r.rows.iter().flatten()) {
            assert!((a - b).abs() < 1e-6, "{a} {b}");
        }
        // Nothing but the file itself is left in the folder.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .map_err(|e| Error::Input(e.to_string()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("reference.safetensors")]
        );
        // Truncated, missing, the wrong width: one clear error each, naming the file.
        let bytes = std::fs::read(&path).map_err(|e| Error::Input(e.to_string()))?;
        let cut = dir.path().join("cut.safetensors");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).map_err(|e| Error::Input(e.to_string()))?;
        let e = Reference::load(&cut)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("cut.safetensors") && e.contains("not a readable reference file"),
            "{e}"
        );
        assert!(Reference::load(&dir.path().join("none.safetensors")).is_err());
        let wide = PromptSet::from_features(
            10.0,
            1.0,
            vec![("F".into(), rows(8, 1, 4), rows(9, 1, 4))],
            Some(back),
        );
        let e = wide.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("8-wide") && e.contains("4-wide"), "{e}");
        assert!(Reference::from_features(&rows(1, 1, 4)).is_err());
        Ok(())
    }
}
