//! A drafted report for the image on screen, assembled from the library's best sentences (sentence-level
//! retrieval in the manner of CXR-RePaiR, Endo et al. 2021, and X-REM, Jeong et al. 2023): for each
//! finding judged present, the sentence most similar to the image among those that state only findings
//! judged present, on the sides the image shows them; for each finding judged confidently absent, the
//! most similar sentence that rules it out (a pertinent negative); and an impression sentence. Every
//! sentence keeps its source report and its score, so a reader can see where it came from.

use radclip_clip::engine::Engine;
use radclip_clip::zeroshot::FindingScore;
use radclip_index::Index;
use radclip_report::{Assertion, Labeler, Sides};
use serde::Serialize;

use crate::Result;
use crate::archive::{section, sentences};
use crate::library::LibraryReport;

/// A finding at this probability or less is ruled out in the draft (a pertinent negative).
pub const ABSENT: f64 = 0.1;
/// Sentences embedded per batch.
const BATCH: usize = 64;

/// A sentence of the library, with what it says of each finding of the list.
#[derive(Debug, Clone)]
struct Sentence {
    text: String,
    /// The report it was first found in.
    source: String,
    impression: bool,
    label: Vec<Option<Assertion>>,
    sides: Vec<Sides>,
}

/// One sentence of a draft.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DraftSentence {
    pub text: String,
    /// The title of the report it was taken from.
    pub source: String,
    /// Cosine similarity to the image.
    pub score: f32,
    /// The findings it was chosen for (stated, or ruled out).
    pub findings: Vec<String>,
    /// A pertinent negative.
    pub negative: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Draft {
    pub findings: Vec<DraftSentence>,
    pub impression: Vec<DraftSentence>,
}

impl Draft {
    /// As a report reads: "FINDINGS: … IMPRESSION: …".
    pub fn text(&self) -> String {
        let join = |s: &[DraftSentence]| {
            s.iter()
                .map(|d| d.text.clone())
                .collect::<Vec<_>>()
                .join(" ")
        };
        format!(
            "FINDINGS: {}\nIMPRESSION: {}",
            join(&self.findings),
            join(&self.impression)
        )
    }
}

/// The library's distinct sentences, embedded and labelled.
pub struct SentenceBank {
    sentences: Index<Sentence>,
    names: Vec<String>,
}

impl SentenceBank {
    /// The sentences of `reports` (findings and impression sections; a report without headings counts
    /// as findings), each distinct text once, read by `labeler`.
    pub fn build(engine: &Engine, reports: &[LibraryReport], labeler: &Labeler) -> Result<Self> {
        let mut seen = std::collections::HashSet::new();
        let mut todo: Vec<Sentence> = Vec::new();
        for r in reports {
            let findings = section(&r.text, "FINDINGS");
            let impression = section(&r.text, "IMPRESSION");
            let parts: Vec<(String, bool)> = match (findings, impression) {
                (None, None) => vec![(r.text.clone(), false)],
                (f, i) => f
                    .map(|f| (f, false))
                    .into_iter()
                    .chain(i.map(|i| (i, true)))
                    .collect(),
            };
            for (part, impression) in parts {
                for s in sentences(&part) {
                    if seen.insert((s.to_string(), impression)) {
                        todo.push(Sentence {
                            text: s.to_string(),
                            source: r.title.clone(),
                            impression,
                            label: labeler.label(s),
                            sides: labeler.sides(s),
                        });
                    }
                }
            }
        }
        let mut index: Option<Index<Sentence>> = None;
        for chunk in todo.chunks(BATCH) {
            let texts: Vec<&str> = chunk.iter().map(|s| s.text.as_str()).collect();
            let feats = engine
                .model
                .text_features(&engine.tokenizer.batch(&texts)?)?
                .to_dtype(candle_core::DType::F32)?
                .to_vec2::<f32>()?;
            for (s, f) in chunk.iter().zip(feats) {
                index
                    .get_or_insert_with(|| Index::new(f.len()))
                    .add(&f, s.clone())?;
            }
        }
        Ok(SentenceBank {
            sentences: index.unwrap_or_else(|| Index::new(0)),
            names: labeler.names().to_vec(),
        })
    }

    pub fn len(&self) -> usize {
        self.sentences.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sentences.is_empty()
    }

    /// The draft for an image with features `features`, findings `scores` (by the list's names) and
    /// `sides` per finding ([`crate::sides::image_sides`]).
    pub fn draft(
        &self,
        features: &[f32],
        scores: &[FindingScore],
        sides: &[Sides],
    ) -> Result<Draft> {
        let p = |i: usize| {
            let name = self.names.get(i);
            scores
                .iter()
                .find(|s| Some(&s.name) == name)
                // A finding without a score is neither present nor absent.
                .map_or(f64::NAN, |s| s.probability)
        };
        let n = self.names.len();
        let present: Vec<bool> = (0..n).map(|i| p(i) >= crate::sides::PRESENT).collect();
        let absent: Vec<bool> = (0..n).map(|i| p(i) <= ABSENT).collect();
        let ranked = self.sentences.search(features, self.sentences.len())?;
        let states = |s: &Sentence, i: usize| {
            s.label
                .get(i)
                .copied()
                .flatten()
                .is_some_and(Assertion::is_stated)
        };
        let denies =
            |s: &Sentence, i: usize| s.label.get(i).copied().flatten() == Some(Assertion::Absent);
        // A sentence fits the image when every finding it states is judged present (on the image's
        // sides) and every finding it rules out is judged absent.
        let fits = |s: &Sentence| {
            (0..n).all(|i| (!states(s, i) || present[i]) && (!denies(s, i) || absent[i]))
                && !crate::sides::contradicts(&s.sides, sides)
        };
        let pick = |h: &radclip_index::Hit<'_, Sentence>,
                    chosen_for: Vec<usize>,
                    negative: bool| DraftSentence {
            text: h.item.text.clone(),
            source: h.item.source.clone(),
            score: h.score,
            findings: chosen_for
                .iter()
                .filter_map(|&i| self.names.get(i).cloned())
                .collect(),
            negative,
        };
        let (mut covered, mut denied) = (vec![false; n], vec![false; n]);
        let mut findings = Vec::new();
        // Positives, most probable first.
        let mut order: Vec<usize> = (0..n).filter(|&i| present[i]).collect();
        order.sort_by(|a, b| p(*b).total_cmp(&p(*a)));
        for i in order {
            if covered[i] {
                continue;
            }
            if let Some(h) = ranked
                .iter()
                .find(|h| !h.item.impression && states(h.item, i) && fits(h.item))
            {
                let stated: Vec<usize> = (0..n).filter(|&j| states(h.item, j)).collect();
                stated.iter().for_each(|&j| covered[j] = true);
                findings.push(pick(h, stated, false));
            }
        }
        // Pertinent negatives.
        for i in (0..n).filter(|&i| absent[i]) {
            if denied[i] {
                continue;
            }
            if let Some(h) = ranked
                .iter()
                .find(|h| !h.item.impression && denies(h.item, i) && fits(h.item))
            {
                let ruled: Vec<usize> = (0..n).filter(|&j| denies(h.item, j)).collect();
                ruled.iter().for_each(|&j| denied[j] = true);
                findings.push(pick(h, ruled, true));
            }
        }
        // The impression: the fitting impression sentence that states the most findings judged
        // present, the most similar first (with none present, the most similar stating none).
        let count = |s: &Sentence| (0..n).filter(|&j| states(s, j)).count();
        let fitting: Vec<_> = ranked
            .iter()
            .filter(|h| h.item.impression && fits(h.item))
            .collect();
        let most = fitting.iter().map(|h| count(h.item)).max();
        let impression = fitting
            .into_iter()
            .find(|h| Some(count(h.item)) == most)
            .map(|h| {
                let stated: Vec<usize> = (0..n).filter(|&j| states(h.item, j)).collect();
                pick(h, stated, false)
            });
        Ok(Draft {
            findings,
            impression: impression.into_iter().collect(),
        })
    }
}
