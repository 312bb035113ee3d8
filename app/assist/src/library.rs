//! The report library: reports embedded by the model's text tower, each read by the report labeler for
//! the findings it states, and listed for an image as the viewer shows them. One listing rule, here:
//! the viewer's panel and `radclip eval` both call [`ReportLibrary::list`].

use radclip_clip::engine::Engine;
use radclip_clip::zeroshot::FindingList;
use radclip_index::{Diversity, Hit, Index};
use radclip_report::{Concept, Labeler, Sides};

use crate::Result;

/// A report of the library: a short title (no patient data), the text shown, and the part of it that
/// is embedded for the search (e.g. the findings section; CLIP text towers read 77 tokens).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LibraryReport {
    pub title: String,
    /// One line shown in the list (e.g. the impression).
    pub summary: String,
    pub text: String,
    pub embedded: String,
}

#[derive(Debug, Clone)]
pub struct SimilarReport {
    /// Its place in the library, in the order reports were added.
    pub position: usize,
    pub score: f32,
    pub report: LibraryReport,
    /// The findings of the model's list the report states (present or hedged), as its text reads;
    /// `None` when the list has no words to read reports with.
    pub stated: Option<Vec<String>>,
    /// The sides it names each of those findings on (in `stated`'s order; none where it names none).
    pub stated_sides: Option<Vec<Sides>>,
}

/// How a short list of similar reports is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// As the viewer shows it: the nearest report of each set of stated findings over the whole
    /// library, reports that name a finding on a side the image does not show it on after the others;
    /// by maximal marginal relevance where the finding list has no words.
    Shown,
    /// As shown, but blind to sides (the listing before sides were read).
    ByFindings,
    /// Maximal marginal relevance among the nearest ([`Diversity::default`]).
    Diverse,
    /// By similarity alone.
    Similarity,
}

/// A library report and, per finding of the list, whether its text states it and on which sides.
#[derive(Debug, Clone)]
struct Entry {
    report: LibraryReport,
    stated: Vec<bool>,
    sides: Vec<Sides>,
}

/// The words of a finding list as the labeler's concepts.
pub fn concepts(list: &FindingList) -> Vec<Concept> {
    list.finding
        .iter()
        .map(|f| Concept {
            name: f.name.clone(),
            mentions: f.mentions.clone(),
            not_mentions: f.not_mentions.clone(),
        })
        .collect()
}

/// The labeler that reads reports with `list`'s words; `None` when the list has none.
pub fn labeler(list: &FindingList) -> Result<Option<Labeler>> {
    Ok(Some(Labeler::new(concepts(list))?).filter(Labeler::has_mentions))
}

/// The text features [N][P] of `reports`' embedded parts, as one padded batch.
pub fn embed_reports(engine: &Engine, reports: &[LibraryReport]) -> Result<Vec<Vec<f32>>> {
    if reports.is_empty() {
        return Ok(Vec::new());
    }
    let texts: Vec<&str> = reports.iter().map(|r| r.embedded.as_str()).collect();
    Ok(engine
        .model
        .text_features(&engine.tokenizer.batch(&texts)?)?
        .to_dtype(candle_core::DType::F32)?
        .to_vec2::<f32>()?)
}

/// Reports, their text features and what each states; empty until [`ReportLibrary::add`].
#[derive(Debug, Clone)]
pub struct ReportLibrary {
    index: Option<Index<Entry>>,
    labeler: Option<Labeler>,
}

impl ReportLibrary {
    /// An empty library whose reports `labeler` reads (`None`: listed by maximal marginal relevance).
    pub fn new(labeler: Option<Labeler>) -> Self {
        ReportLibrary {
            index: None,
            labeler,
        }
    }

    /// The library's reports, in the order they were added.
    pub fn reports(&self) -> Vec<&LibraryReport> {
        self.index
            .as_ref()
            .map(|i| i.items().iter().map(|e| &e.report).collect())
            .unwrap_or_default()
    }

    /// The labeler that reads the library's reports, if the finding list has words.
    pub fn labeler(&self) -> Option<&Labeler> {
        self.labeler.as_ref()
    }

    /// Whether similar reports are listed one per set of stated findings.
    pub fn by_findings(&self) -> bool {
        self.labeler.is_some()
    }

    pub fn len(&self) -> usize {
        self.index.as_ref().map_or(0, Index::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Embeds `reports` (one padded batch: callers pass tens, not thousands) and labels each.
    pub fn add(&mut self, engine: &Engine, reports: Vec<LibraryReport>) -> Result<()> {
        let feats = embed_reports(engine, &reports)?;
        self.add_embedded(reports.into_iter().zip(feats).collect())
    }

    /// Adds reports already embedded (an index made by `radclip index`): `features` per report.
    pub fn add_embedded(&mut self, reports: Vec<(LibraryReport, Vec<f32>)>) -> Result<()> {
        for (report, f) in reports {
            let (stated, sides) = self
                .labeler
                .as_ref()
                .map(|l| (l.stated(&report.text), l.sides(&report.text)))
                .unwrap_or_default();
            self.index.get_or_insert_with(|| Index::new(f.len())).add(
                &f,
                Entry {
                    report,
                    stated,
                    sides,
                },
            )?;
        }
        Ok(())
    }

    /// The `k` reports listed as the viewer shows them for an image with features `features` that
    /// shows the list's findings on `sides` (per finding; empty: unknown, see [`crate::sides`]).
    pub fn similar(
        &self,
        features: &[f32],
        sides: &[Sides],
        k: usize,
    ) -> Result<Vec<SimilarReport>> {
        self.list(features, sides, k, Listing::Shown, |_| true)
    }

    /// The `k` reports listed for `features` (and the image's `sides`) by `listing`, among those whose
    /// position `keep` accepts (`radclip eval` leaves out the query's own report).
    pub fn list(
        &self,
        features: &[f32],
        sides: &[Sides],
        k: usize,
        listing: Listing,
        keep: impl Fn(usize) -> bool,
    ) -> Result<Vec<SimilarReport>> {
        let Some(index) = &self.index else {
            return Ok(Vec::new());
        };
        // One search of the whole library, best first: the diverse listing's pool is its head. The
        // whole library, because the fifth set of findings may be far (its score says so); exact
        // search is milliseconds at archive sizes.
        let ranked: Vec<Hit<'_, Entry>> = index
            .search(features, index.len())?
            .into_iter()
            .filter(|h| keep(h.position))
            .collect();
        let diversity = Diversity::default();
        let hits = match (listing, &self.labeler) {
            (Listing::Shown, Some(_)) => {
                // The sets of findings as the side-blind listing picks them (so recall is the same),
                // each shown by its nearest report on the image's sides where it has one; those on
                // the image's sides first, each group in order of similarity.
                let contradicts =
                    |h: &Hit<'_, Entry>| crate::sides::contradicts(&h.item.sides, sides);
                let sets = radclip_index::first_per_key(ranked.clone(), k, |h| &h.item.stated);
                let mut hits: Vec<Hit<'_, Entry>> = Vec::with_capacity(sets.len());
                for set in sets {
                    let free = |h: &&Hit<'_, Entry>| {
                        h.item.stated == set.item.stated
                            && !hits.iter().any(|u| u.position == h.position)
                    };
                    let pick = ranked
                        .iter()
                        .filter(free)
                        .find(|h| !contradicts(h))
                        .or_else(|| ranked.iter().find(free))
                        .cloned()
                        .unwrap_or(set);
                    hits.push(pick);
                }
                hits.sort_by(|a, b| {
                    b.score
                        .total_cmp(&a.score)
                        .then(a.position.cmp(&b.position))
                });
                hits.sort_by_key(contradicts);
                hits
            }
            (Listing::ByFindings, Some(_)) => {
                radclip_index::first_per_key(ranked, k, |h| &h.item.stated)
            }
            (Listing::Shown | Listing::ByFindings, None) | (Listing::Diverse, _) => {
                let pool: Vec<_> = ranked.into_iter().take(diversity.pool.max(k)).collect();
                index.rerank(pool, k, diversity.lambda)
            }
            (Listing::Similarity, _) => ranked.into_iter().take(k).collect(),
        };
        Ok(hits
            .into_iter()
            .map(|h| SimilarReport {
                position: h.position,
                score: h.score,
                report: h.item.report.clone(),
                stated: self.labeler.as_ref().map(|l| {
                    l.names()
                        .iter()
                        .zip(&h.item.stated)
                        .filter(|(_, s)| **s)
                        .map(|(n, _)| n.clone())
                        .collect()
                }),
                stated_sides: self.labeler.as_ref().map(|_| {
                    h.item
                        .sides
                        .iter()
                        .zip(&h.item.stated)
                        .filter(|(_, s)| **s)
                        .map(|(side, _)| *side)
                        .collect()
                }),
            })
            .collect())
    }
}
