//! `radclip eval`: the demo model's quality on held-out phantoms (a seed it was not trained on), measured
//! through the same path a user's DICOM takes (window from the file, the engine's preprocessing).
//!
//! - zero-shot AUROC per finding, with the model's own `findings.toml` (pos/neg prompt ensembles);
//! - expected calibration error of the shown probabilities (10 bins), with the card's temperature, and the
//!   temperature that minimises the log-loss on a separate calibration seed;
//! - paraphrase robustness: per image and finding, the range of the probabilities from five paraphrase
//!   pairs that appear neither in training nor in `findings.toml`;
//! - report retrieval: recall@5 of a report (of another study) stating the same findings, in the order
//!   the viewer lists them (the nearest report of each set of findings its text states, read by
//!   `radclip-report` with the list's words), by maximal marginal relevance and by similarity alone;
//!   and how often the labeler reads a report's findings back exactly as it was written;
//! - heatmaps, each method: pointing game (the top patch overlaps the mask) and IoU at the best threshold
//!   over the whole set (map bilinearly upsampled, min–max normalised, thresholds 0.05…0.95); each also
//!   refined along the image's edges (PAMR, `<method>+pamr`).

use std::collections::BTreeMap;

use anyhow::Context;
use candle_core::{DType, Tensor};
use radclip_assist::{Listing, ReportLibrary, Sides};
use radclip_clip::engine::Engine;
use radclip_clip::heatmap::{EncodedImage, Method};
use radclip_clip::preprocess::Rgb8;
use radclip_clip::refine::Refinement;
use radclip_clip::zeroshot::{FindingList, PromptSet};
use radclip_phantom::{Kind, cxr_sample};
use rayon::prelude::*;
use serde::Serialize;

use crate::ai::ModelArgs;

pub struct EvalArgs {
    pub model: ModelArgs,
    pub seed: u64,
    pub count: u64,
    pub size: usize,
    pub calibration_seed: u64,
    pub calibration_count: u64,
    pub heatmaps: u64,
}

/// Area under the ROC curve (Mann–Whitney, ties count half).
pub fn auroc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let pos: Vec<f64> = scores
        .iter()
        .zip(labels)
        .filter(|(_, l)| **l)
        .map(|(s, _)| *s)
        .collect();
    let neg: Vec<f64> = scores
        .iter()
        .zip(labels)
        .filter(|(_, l)| !**l)
        .map(|(s, _)| *s)
        .collect();
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let mut wins = 0.0;
    for p in &pos {
        for n in &neg {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    Some(wins / (pos.len() * neg.len()) as f64)
}

/// Expected calibration error over equal-width bins.
pub fn ece(probs: &[f64], labels: &[bool], bins: usize) -> f64 {
    let mut sum = vec![(0f64, 0f64, 0usize); bins];
    for (p, l) in probs.iter().zip(labels) {
        let b = ((p * bins as f64) as usize).min(bins - 1);
        sum[b].0 += p;
        sum[b].1 += f64::from(u8::from(*l));
        sum[b].2 += 1;
    }
    let n = probs.len().max(1) as f64;
    sum.iter()
        .filter(|b| b.2 > 0)
        .map(|(p, y, k)| (*k as f64 / n) * (p / *k as f64 - y / *k as f64).abs())
        .sum()
}

/// The logits z (before temperature) of every finding of every image: probability = σ(z / T).
fn logits(prompts: &PromptSet, feats: &Tensor, t: f64) -> anyhow::Result<Vec<Vec<f64>>> {
    let scores = prompts.score(feats)?;
    Ok(scores
        .iter()
        .map(|row| {
            row.iter()
                .map(|s| {
                    let p = s.probability.clamp(1e-12, 1.0 - 1e-12);
                    (p / (1.0 - p)).ln() * t
                })
                .collect()
        })
        .collect())
}

struct Rendered {
    truth: radclip_phantom::CxrSample,
    image: Rgb8,
    masks: Vec<Vec<bool>>,
}

fn render(seed: u64, i: u64, size: usize) -> Rendered {
    let s = cxr_sample(seed, i);
    let img = s.case.render(size);
    let frame = radclip_phantom::as_frame(&img);
    Rendered {
        image: radclip_assist::frame::rgb(&radclip_dicom::render(&frame, None)),
        masks: img.masks,
        truth: s,
    }
}

fn encode(engine: &Engine, set: &[Rendered]) -> anyhow::Result<Tensor> {
    let prepared = set
        .iter()
        .map(|r| engine.prepare(r.image.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<_> = prepared.iter().collect();
    Ok(engine.encode_images(&refs, 32)?)
}

/// What a report (drafted, or copied whole) states against the study's truth: per finding TP/FP/FN, and
/// of the findings the study has that it states with a side, how many on the true side.
struct DraftScore {
    counts: Vec<[usize; 3]>,
    sided: usize,
    side_right: usize,
}

impl DraftScore {
    fn new(n: usize) -> Self {
        DraftScore {
            counts: vec![[0; 3]; n],
            sided: 0,
            side_right: 0,
        }
    }

    fn add(
        &mut self,
        truth: &[Option<bool>],
        truth_sides: &[Sides],
        stated: &[bool],
        sides: &[Sides],
    ) {
        for (i, t) in truth.iter().enumerate() {
            let (Some(t), Some(s)) = (t, stated.get(i)) else {
                continue;
            };
            if let Some(c) = self.counts.get_mut(i) {
                match (*t, *s) {
                    (true, true) => c[0] += 1,
                    (false, true) => c[1] += 1,
                    (true, false) => c[2] += 1,
                    (false, false) => {}
                }
            }
            let (ts, ds) = (truth_sides.get(i), sides.get(i));
            if let (true, Some(ts), Some(ds)) = (*t && *s, ts, ds)
                && !ts.is_none()
                && !ds.is_none()
            {
                self.sided += 1;
                self.side_right += usize::from(ts == ds);
            }
        }
    }

    fn json(&self, list: &FindingList) -> serde_json::Value {
        let mut per = serde_json::Map::new();
        let mut f1s = Vec::new();
        for (f, [tp, fp, fn_]) in list.finding.iter().zip(&self.counts) {
            if tp + fp + fn_ == 0 {
                continue;
            }
            let f1 = 2.0 * *tp as f64 / (2 * tp + fp + fn_).max(1) as f64;
            f1s.push(f1);
            per.insert(
                f.name.clone(),
                serde_json::json!({"f1": f1, "tp": tp, "fp": fp, "fn": fn_}),
            );
        }
        serde_json::json!({
            "macro_f1": f1s.iter().sum::<f64>() / f1s.len().max(1) as f64,
            "per_finding": per,
            "side_accuracy": self.side_right as f64 / self.sided.max(1) as f64,
            "findings_with_a_side": self.sided,
        })
    }
}

/// Per finding of the list, the sides the study's truth has it on (none for findings it lacks or that
/// have no side).
fn truth_sides(r: &Rendered, kinds: &[Option<Kind>]) -> Vec<Sides> {
    kinds
        .iter()
        .map(|k| {
            r.truth
                .case
                .findings
                .iter()
                .filter(|f| Some(f.kind) == *k)
                .filter_map(|f| f.side)
                .fold(Sides::default(), |acc, s| {
                    acc.union(match s {
                        radclip_phantom::Side::Left => Sides::LEFT,
                        radclip_phantom::Side::Right => Sides::RIGHT,
                    })
                })
        })
        .collect()
}

fn kind_of(list_name: &str) -> Option<Kind> {
    Kind::ALL
        .into_iter()
        .find(|k| k.name().eq_ignore_ascii_case(list_name))
}

#[derive(Serialize, Default)]
struct MethodScore {
    /// The map's top patch overlaps the mask (a refined map averaged over each patch first).
    pointing_game: f64,
    /// The map's peak (cell centre) within 15 source pixels of the mask (Zhang et al. 2016).
    pointing_game_15px: f64,
    best_threshold: f64,
    mean_iou: f64,
    /// Per finding: (pointing game, IoU at the method's best threshold).
    per_finding: BTreeMap<String, (f64, f64)>,
    per_finding_15px: BTreeMap<String, f64>,
    maps: usize,
}

/// One heatmap of one finding, scored against its mask.
struct ScoredMap {
    /// [`map_name`]: the method, with "+pamr" when refined.
    name: String,
    kind: Kind,
    /// The min–max normalised map at 128² cell centres.
    up: Vec<f32>,
    /// Which of the findings' masks on that grid it is scored against.
    mask: usize,
    top_patch_hit: bool,
    peak_hit: bool,
}

/// The name a method's map is reported under, refined or not.
fn map_name(method: Method, refined: bool) -> String {
    if refined {
        format!("{}+pamr", method.name())
    } else {
        method.name().to_string()
    }
}

/// The pointing game's tolerance (Zhang et al., "Top-down neural attention by excitation backprop").
const POINTING_TOLERANCE_PX: f64 = 15.0;

/// Whether the top patch of `map` overlaps the square, uncropped source `mask` (`size`²): on the patch
/// grid `patch_grid`, so a refined map (one cell per input pixel) is averaged over each patch first and
/// every map is judged at the same granularity.
fn top_patch_hit(
    map: &radclip_clip::heatmap::Heatmap,
    patch_grid: (usize, usize),
    mask: &[bool],
    size: usize,
) -> bool {
    let (gh, gw) = patch_grid;
    let (mh, mw) = map.grid;
    let (fy, fx) = (mh / gh.max(1), mw / gw.max(1));
    let mut pooled = vec![0f64; gh * gw];
    for (i, v) in map.values.iter().enumerate() {
        let (r, c) = ((i / mw.max(1)) / fy.max(1), (i % mw.max(1)) / fx.max(1));
        if let Some(p) = pooled.get_mut(r.min(gh - 1) * gw + c.min(gw - 1)) {
            *p += f64::from(*v);
        }
    }
    let Some(top) = pooled
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
    else {
        return false;
    };
    let (pr, pc) = (top / gw, top % gw);
    let span = |i: usize, n: usize| (i * size) / n..((i + 1) * size).div_ceil(n).min(size);
    span(pr, gh).any(|y| span(pc, gw).any(|x| mask[y * size + x]))
}

/// Whether a mask pixel (its centre) lies within `tol` source pixels of `point`.
fn near_mask((px, py): (f64, f64), mask: &[bool], size: usize, tol: f64) -> bool {
    let lo = |v: f64| (v - tol - 1.0).max(0.0) as usize;
    let hi = |v: f64| ((v + tol + 1.0).max(0.0) as usize).min(size);
    (lo(py)..hi(py)).any(|y| {
        (lo(px)..hi(px)).any(|x| {
            let (dx, dy) = (x as f64 + 0.5 - px, y as f64 + 0.5 - py);
            mask[y * size + x] && dx * dx + dy * dy <= tol * tol
        })
    })
}

/// Per image, the range of the five pairs' probabilities (mean and 90th percentile over images); per
/// pair, its mean probability and AUROC: whether a pair that sits apart still ranks the images alike.
fn paraphrase_stats(
    pairs: &[(&str, &str)],
    probs: &[Vec<f64>],
    labels: &[bool],
) -> serde_json::Value {
    let n = probs.first().map_or(0, Vec::len);
    let mut ranges: Vec<f64> = (0..n)
        .map(|i| {
            let ps = probs.iter().map(|p| p[i]);
            ps.clone().fold(f64::MIN, f64::max) - ps.fold(f64::MAX, f64::min)
        })
        .collect();
    ranges.sort_by(f64::total_cmp);
    let mean = ranges.iter().sum::<f64>() / ranges.len().max(1) as f64;
    let p90 = ranges.get(ranges.len() * 9 / 10).copied().unwrap_or(0.0);
    let per_pair: Vec<serde_json::Value> = pairs
        .iter()
        .zip(probs)
        .map(|((pos, neg), ps)| {
            serde_json::json!({
                "positive": pos,
                "negative": neg,
                "mean_probability": ps.iter().sum::<f64>() / ps.len().max(1) as f64,
                "auroc": auroc(ps, labels),
            })
        })
        .collect();
    serde_json::json!({"mean": mean, "p90": p90, "pairs": per_pair})
}

pub fn eval(args: &EvalArgs) -> anyhow::Result<()> {
    let engine = crate::ai::load_engine(&args.model)?;
    let list = FindingList::for_engine(&engine)?;
    let kinds: Vec<Option<Kind>> = list.finding.iter().map(|f| kind_of(&f.name)).collect();
    eprintln!(
        "radclip eval: rendering {} held-out studies (seed {})…",
        args.count, args.seed
    );
    let set: Vec<Rendered> = (0..args.count)
        .into_par_iter()
        .map(|i| render(args.seed, i, args.size))
        .collect();
    let feats = encode(&engine, &set)?;
    // Encoded once (prompts, and the card's reference set when it has one) for every measure below.
    let prompts = PromptSet::new(&engine, &list)?;
    let t_card = engine.card.zero_shot.temperature;
    let z = logits(&prompts, &feats, t_card)?;

    // Zero-shot AUROC and calibration.
    let mut report = serde_json::Map::new();
    let mut aurocs = BTreeMap::new();
    let (mut all_p, mut all_y) = (Vec::new(), Vec::new());
    for (fi, f) in list.finding.iter().enumerate() {
        let Some(k) = kinds[fi] else { continue };
        let y: Vec<bool> = set.iter().map(|r| r.truth.case.has(k)).collect();
        let p: Vec<f64> = z
            .iter()
            .map(|row| 1.0 / (1.0 + (-row[fi] / t_card).exp()))
            .collect();
        if let Some(a) = auroc(&p, &y) {
            aurocs.insert(f.name.clone(), a);
        }
        all_p.extend(p);
        all_y.extend(y);
    }
    let mean_auc = aurocs.values().sum::<f64>() / aurocs.len().max(1) as f64;

    // Temperature from a separate calibration set: the T minimising the log-loss.
    let cal: Vec<Rendered> = (0..args.calibration_count)
        .into_par_iter()
        .map(|i| render(args.calibration_seed, i, args.size))
        .collect();
    let cz = logits(&prompts, &encode(&engine, &cal)?, t_card)?;
    let mut cal_pairs = Vec::new();
    for (fi, _) in list.finding.iter().enumerate() {
        let Some(k) = kinds[fi] else { continue };
        for (r, row) in cal.iter().zip(&cz) {
            cal_pairs.push((row[fi], r.truth.case.has(k)));
        }
    }
    let nll = |t: f64| -> f64 {
        cal_pairs
            .iter()
            .map(|(z, y)| {
                let p = (1.0 / (1.0 + (-z / t).exp())).clamp(1e-9, 1.0 - 1e-9);
                if *y { -p.ln() } else { -(1.0 - p).ln() }
            })
            .sum::<f64>()
    };
    let fitted = (1..=400)
        .map(|i| f64::from(i) * 0.025)
        .min_by(|a, b| nll(*a).total_cmp(&nll(*b)))
        .unwrap_or(1.0);
    let p_fitted: Vec<f64> = {
        let mut v = Vec::new();
        for (fi, _) in list.finding.iter().enumerate() {
            if kinds[fi].is_none() {
                continue;
            }
            v.extend(z.iter().map(|row| 1.0 / (1.0 + (-row[fi] / fitted).exp())));
        }
        v
    };

    // Paraphrase robustness: probability range across 5 unseen pairs, per image and finding.
    let scale = f64::from(engine.model.logit_scale_value()?);
    let imgs: Vec<Vec<f32>> = radclip_clip::model::l2_normalize(&feats)?
        .to_dtype(DType::F32)?
        .to_vec2()?;
    // With a reference set on the card, the same pairs as the zero-shot command scores them: each on
    // its finding's scale over the reference images (zeroshot.rs).
    let mut spread = BTreeMap::new();
    let mut spread_calibrated = BTreeMap::new();
    for k in Kind::ALL {
        let pairs = radclip_phantom::report::held_out_paraphrases(k);
        let texts: Vec<&str> = pairs.iter().flat_map(|(p, n)| [*p, *n]).collect();
        let tf: Vec<Vec<f32>> = radclip_clip::model::l2_normalize(&engine.encode_texts(&texts)?)?
            .to_dtype(DType::F32)?
            .to_vec2()?;
        let dot =
            |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| f64::from(x * y)).sum::<f64>();
        let sigmoid = |m: f64| 1.0 / (1.0 + (-scale * m / fitted).exp());
        let labels: Vec<bool> = set.iter().map(|r| r.truth.case.has(k)).collect();
        let raw: Vec<Vec<f64>> = (0..pairs.len())
            .map(|j| {
                imgs.iter()
                    .map(|img| sigmoid(dot(img, &tf[2 * j]) - dot(img, &tf[2 * j + 1])))
                    .collect()
            })
            .collect();
        spread.insert(
            k.name().to_string(),
            paraphrase_stats(&pairs, &raw, &labels),
        );
        let list_name = list
            .finding
            .iter()
            .zip(&kinds)
            .find(|(_, kind)| **kind == Some(k))
            .map(|(f, _)| f.name.as_str());
        if let (true, Some(name)) = (prompts.has_reference(), list_name) {
            let calibrated: Option<Vec<Vec<f64>>> = (0..pairs.len())
                .map(|j| {
                    let pair = prompts.pair_for(name, &tf[2 * j], &tf[2 * j + 1])?;
                    Some(imgs.iter().map(|img| sigmoid(pair.margin(img))).collect())
                })
                .collect();
            if let Some(c) = calibrated {
                spread_calibrated
                    .insert(k.name().to_string(), paraphrase_stats(&pairs, &c, &labels));
            }
        }
    }

    // Retrieval: each image's top 5 among the other studies' reports, listed by the library the viewer
    // lists from (radclip_assist): as shown, by maximal marginal relevance, and by similarity alone.
    let label =
        |r: &Rendered| -> Vec<bool> { Kind::ALL.iter().map(|k| r.truth.case.has(*k)).collect() };
    // What each report states, read from its text by the list's words (as the library reads it).
    let words = radclip_report::Labeler::new(radclip_assist::library::concepts(&list))?;
    let labelled = words.has_mentions();
    // Read back as written: the labeler's sets against the truth the reports were written from.
    let read_back = set
        .iter()
        .filter(|r| {
            kinds
                .iter()
                .zip(words.stated(&r.truth.report.text()))
                .all(|(k, st)| k.is_none_or(|k| r.truth.case.has(k) == st))
        })
        .count() as f64
        / set.len().max(1) as f64;
    // Each report's sides as written, for the wrong-side measure.
    let report_sides: Vec<Vec<Sides>> = set
        .iter()
        .map(|r| words.sides(&r.truth.report.text()))
        .collect();
    let mut library = ReportLibrary::new(Some(words).filter(radclip_report::Labeler::has_mentions));
    for (b, chunk) in set.chunks(64).enumerate() {
        let reports = chunk
            .iter()
            .enumerate()
            .map(|(j, r)| {
                crate::ai::library_report(format!("study {}", b * 64 + j), &r.truth.report)
            })
            .collect();
        library.add(&engine, reports)?;
    }
    // Drafted reports, from the calibration studies' reports (none of the held-out set's own): the
    // sentence bank, and for comparison the nearest whole report of the same reports as listed.
    let words = radclip_assist::library::labeler(&list)?;
    let cal_reports: Vec<_> = cal
        .iter()
        .enumerate()
        .map(|(i, r)| crate::ai::library_report(format!("calibration study {i}"), &r.truth.report))
        .collect();
    let bank = match &words {
        Some(w) => Some(radclip_assist::draft::SentenceBank::build(
            &engine,
            &cal_reports,
            w,
        )?),
        None => None,
    };
    let mut cal_library = ReportLibrary::new(words.clone());
    for chunk in cal_reports.chunks(64) {
        cal_library.add(&engine, chunk.to_vec())?;
    }
    let mut drafts = DraftScore::new(kinds.len());
    let mut nearest = DraftScore::new(kinds.len());
    let diversity = radclip_index::Diversity::default();
    let (mut hits, mut hits_mmr, mut hits_plain, mut hits_blind) = (0usize, 0usize, 0usize, 0usize);
    // Sides: the image's, read from its maps as the viewer reads them, against its truth; and how
    // often the first report listed names a finding the image has on a side it does not have.
    let (mut lateral_images, mut wrong_first, mut wrong_first_blind) = (0usize, 0usize, 0usize);
    let (mut sides_judged, mut sides_right) = (0usize, 0usize);
    for (qi, img) in imgs.iter().enumerate() {
        let want = label(&set[qi]);
        let truth_sides = truth_sides(&set[qi], &kinds);
        let encoded = EncodedImage::new(&engine, &engine.prepare(set[qi].image.clone())?)?;
        let (scores, sides) =
            radclip_assist::sides::findings_and_sides(&engine, &prompts, &list, &encoded)?;
        for (got, truth) in sides.iter().zip(&truth_sides) {
            if !got.is_none() && !truth.is_none() {
                sides_judged += 1;
                sides_right += usize::from(got == truth);
            }
        }
        let listed = |listing: Listing| library.list(img, &sides, 5, listing, |p| p != qi);
        let found = |l: &[radclip_assist::SimilarReport]| {
            usize::from(
                l.iter()
                    .any(|h| set.get(h.position).map(label) == Some(want.clone())),
            )
        };
        // A side named for a finding the image has, other than its side.
        let wrong_side = |l: &[radclip_assist::SimilarReport]| {
            l.first().is_some_and(|h| {
                report_sides[h.position]
                    .iter()
                    .zip(&truth_sides)
                    .any(|(r, t)| !r.is_none() && !t.is_none() && r != t)
            })
        };
        let shown = listed(Listing::Shown)?;
        let blind = listed(Listing::ByFindings)?;
        hits += found(&shown);
        hits_blind += found(&blind);
        hits_mmr += found(&listed(Listing::Diverse)?);
        hits_plain += found(&listed(Listing::Similarity)?);
        if truth_sides.iter().any(|s| !s.is_none()) {
            lateral_images += 1;
            wrong_first += usize::from(wrong_side(&shown));
            wrong_first_blind += usize::from(wrong_side(&blind));
        }
        if let (Some(bank), Some(w)) = (&bank, &words) {
            let truth: Vec<Option<bool>> = kinds
                .iter()
                .map(|k| k.map(|k| set[qi].truth.case.has(k)))
                .collect();
            let draft = bank.draft(img, &scores, &sides)?.text();
            drafts.add(&truth, &truth_sides, &w.stated(&draft), &w.sides(&draft));
            if let Some(first) = cal_library.similar(img, &sides, 1)?.first() {
                let text = &first.report.text;
                nearest.add(&truth, &truth_sides, &w.stated(text), &w.sides(text));
            }
        }
    }
    let recall5 = hits as f64 / set.len().max(1) as f64;
    let recall5_blind = hits_blind as f64 / set.len().max(1) as f64;
    let recall5_mmr = hits_mmr as f64 / set.len().max(1) as f64;
    let recall5_plain = hits_plain as f64 / set.len().max(1) as f64;
    let lateral = lateral_images.max(1) as f64;

    // Heatmaps on the first studies with findings.
    let prompt_of = |k: Kind| -> String {
        list.finding
            .iter()
            .zip(&kinds)
            .find(|(_, kk)| **kk == Some(k))
            .and_then(|(f, _)| f.positive.first().cloned())
            .unwrap_or_else(|| k.name().to_string())
    };
    let mut maps: Vec<ScoredMap> = Vec::new();
    let mut masks: Vec<Vec<bool>> = Vec::new();
    let grid_side = 128usize;
    let refinement = Refinement::default();
    for r in set
        .iter()
        .filter(|r| !r.truth.case.findings.is_empty())
        .take(args.heatmaps as usize)
    {
        let prepared = engine.prepare(r.image.clone())?;
        let enc = EncodedImage::new(&engine, &prepared)?;
        let size = r.image.width;
        for (f, mask) in r.truth.case.findings.iter().zip(&r.masks) {
            // Mask at 128² (a cell is in when half of it is).
            let cell = size / grid_side;
            let mut m = vec![false; grid_side * grid_side];
            for (gi, v) in m.iter_mut().enumerate() {
                let (gr, gc) = (gi / grid_side, gi % grid_side);
                let mut on = 0;
                for y in gr * cell..(gr + 1) * cell {
                    for x in gc * cell..(gc + 1) * cell {
                        on += usize::from(mask[y * size + x]);
                    }
                }
                *v = on * 2 >= cell * cell;
            }
            if !m.iter().any(|v| *v) {
                continue;
            }
            masks.push(m);
            for method in Method::ALL {
                let map = engine.heatmap(&enc, method, &prompt_of(f.kind))?;
                let refined = enc.refine(&map, &refinement)?;
                let patch_grid = map.grid;
                for (name, map) in [
                    (map_name(method, false), map),
                    (map_name(method, true), refined),
                ] {
                    let norm = map.normalized();
                    let up: Vec<f32> = (0..grid_side * grid_side)
                        .map(|gi| {
                            let (gr, gc) = (gi / grid_side, gi % grid_side);
                            map.sample(&norm, gc * cell + cell / 2, gr * cell + cell / 2)
                                .unwrap_or(0.0)
                        })
                        .collect();
                    maps.push(ScoredMap {
                        name,
                        kind: f.kind,
                        up,
                        mask: masks.len() - 1,
                        top_patch_hit: top_patch_hit(&map, patch_grid, mask, size),
                        peak_hit: map
                            .peak()
                            .is_some_and(|p| near_mask(p, mask, size, POINTING_TOLERANCE_PX)),
                    });
                }
            }
        }
    }
    let mut methods = BTreeMap::new();
    let names: Vec<String> = Method::ALL
        .iter()
        .flat_map(|m| [map_name(*m, false), map_name(*m, true)])
        .collect();
    for name in names {
        let mine: Vec<&ScoredMap> = maps.iter().filter(|m| m.name == name).collect();
        if mine.is_empty() {
            continue;
        }
        let iou_at = |t: f32, m: &ScoredMap| {
            let (mut inter, mut uni) = (0usize, 0usize);
            for (v, g) in m.up.iter().zip(&masks[m.mask]) {
                let p = *v >= t;
                inter += usize::from(p && *g);
                uni += usize::from(p || *g);
            }
            inter as f64 / uni.max(1) as f64
        };
        let share = |ms: &[&ScoredMap], f: fn(&ScoredMap) -> bool| {
            ms.iter().filter(|m| f(m)).count() as f64 / ms.len().max(1) as f64
        };
        let thresholds: Vec<f32> = (1..20).map(|i| i as f32 * 0.05).collect();
        let (best_t, best) = thresholds
            .iter()
            .map(|&t| {
                (
                    t,
                    mine.iter().map(|m| iou_at(t, m)).sum::<f64>() / mine.len() as f64,
                )
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((0.5, 0.0));
        let mut s = MethodScore {
            pointing_game: share(&mine, |m| m.top_patch_hit),
            pointing_game_15px: share(&mine, |m| m.peak_hit),
            best_threshold: f64::from(best_t),
            mean_iou: best,
            maps: mine.len(),
            ..Default::default()
        };
        for k in Kind::ALL {
            let km: Vec<&ScoredMap> = mine.iter().copied().filter(|m| m.kind == k).collect();
            if km.is_empty() {
                continue;
            }
            let iou = km.iter().map(|m| iou_at(best_t, m)).sum::<f64>() / km.len() as f64;
            s.per_finding
                .insert(k.name().to_string(), (share(&km, |m| m.top_patch_hit), iou));
            s.per_finding_15px
                .insert(k.name().to_string(), share(&km, |m| m.peak_hit));
        }
        methods.insert(name, s);
    }

    report.insert("model".into(), engine.dir.display().to_string().into());
    report.insert(
        "held_out".into(),
        serde_json::json!({"seed": args.seed, "studies": args.count, "size": args.size}),
    );
    report.insert("zero_shot_auroc".into(), serde_json::to_value(&aurocs)?);
    report.insert("zero_shot_auroc_mean".into(), mean_auc.into());
    report.insert(
        "calibration".into(),
        serde_json::json!({
            "card_temperature": t_card,
            "ece_card_temperature": ece(&all_p, &all_y, 10),
            "fitted_temperature": fitted,
            "ece_fitted_temperature": ece(&p_fitted, &all_y, 10),
            "calibration_set": {"seed": args.calibration_seed, "studies": args.calibration_count},
        }),
    );
    report.insert("paraphrase_range".into(), serde_json::to_value(&spread)?);
    if !spread_calibrated.is_empty() {
        report.insert(
            "paraphrase_range_reference_calibrated".into(),
            serde_json::to_value(&spread_calibrated)?,
        );
    }
    report.insert("retrieval_recall_at_5".into(), recall5.into());
    report.insert(
        "retrieval_recall_at_5_by_similarity".into(),
        recall5_plain.into(),
    );
    report.insert("retrieval_recall_at_5_mmr".into(), recall5_mmr.into());
    report.insert(
        "retrieval_recall_at_5_blind_to_sides".into(),
        recall5_blind.into(),
    );
    report.insert(
        "first_report_wrong_side".into(),
        serde_json::json!({
            "images_with_a_lateral_finding": lateral_images,
            "as_listed": wrong_first as f64 / lateral,
            "blind_to_sides": wrong_first_blind as f64 / lateral,
        }),
    );
    if bank.is_some() {
        report.insert(
            "drafted_reports".into(),
            serde_json::json!({
                "library": format!("the {} calibration studies' reports (seed {})", cal.len(), args.calibration_seed),
                "sentences": bank.as_ref().map_or(0, |b| b.len()),
                "draft": drafts.json(&list),
                "nearest_report": nearest.json(&list),
            }),
        );
    }
    report.insert(
        "image_side_accuracy".into(),
        serde_json::json!({
            "findings": sides_judged,
            "accuracy": sides_right as f64 / sides_judged.max(1) as f64,
        }),
    );
    report.insert(
        "retrieval_listing".into(),
        if labelled {
            "first report of each set of findings its text states, in order of similarity".into()
        } else {
            "maximal marginal relevance (the finding list has no mention words)".into()
        },
    );
    report.insert("report_labeler_read_back".into(), read_back.into());
    report.insert(
        "retrieval_diversity".into(),
        // f32 printed as its nearest short decimal, not 0.6000000238.
        serde_json::json!({"lambda": (f64::from(diversity.lambda) * 1e6).round() / 1e6, "pool": diversity.pool}),
    );
    report.insert("heatmaps".into(), serde_json::to_value(&methods)?);
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(report)).context("json")?;
    println!("{text}");
    Ok(())
}
