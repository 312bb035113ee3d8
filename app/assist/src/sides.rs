//! The side of the body on which the image shows each finding: where the MaskCLIP map of the finding's
//! prompt peaks, the patient's right being on the image's left (a chest radiograph as displayed, PA or AP,
//! the patient facing the viewer). Chosen on the demo model's calibration phantoms (seed 999, 122
//! lateral findings): the peak of MaskCLIP named the side right 0.959 of the time; the map's mass 0.869;
//! CLIP Surgery's peak 0.844; Grad-CAM's 0.754; and "left X" against "right X" as zero-shot prompts
//! 0.549, because the image embedding carries no side (`docs/benchmarks.md`).

use radclip_clip::engine::Engine;
use radclip_clip::heatmap::{EncodedImage, Method};
use radclip_clip::zeroshot::{FindingList, FindingScore};
use radclip_report::Sides;

use crate::Result;

/// A finding at this probability or more is judged present, and so placed on a side.
pub const PRESENT: f64 = 0.5;

/// Per finding of `list`, the side the image shows it on: for findings `scores` judges present, the
/// side of the peak of their first positive prompt's MaskCLIP map; for the others none.
pub fn image_sides(
    engine: &Engine,
    encoded: &EncodedImage,
    list: &FindingList,
    scores: &[FindingScore],
) -> Result<Vec<Sides>> {
    list.finding
        .iter()
        .map(|f| {
            let present = scores
                .iter()
                .find(|s| s.name == f.name)
                .is_some_and(|s| s.probability >= PRESENT);
            let Some(prompt) = f.positive.first().filter(|_| present) else {
                return Ok(Sides::default());
            };
            let map = engine.heatmap(encoded, Method::MaskClip, prompt)?;
            let width = map.placement.source.0 as f64;
            Ok(match map.peak() {
                Some((x, _)) if x < width / 2.0 => Sides::RIGHT,
                Some(_) => Sides::LEFT,
                None => Sides::default(),
            })
        })
        .collect()
}

/// What an encoded image shows: its findings (`prompts` scored on its features) and the side of each
/// present one, as the panel, `radclip draft` and `radclip eval` read an image.
pub fn findings_and_sides(
    engine: &Engine,
    prompts: &radclip_clip::zeroshot::PromptSet,
    list: &FindingList,
    encoded: &EncodedImage,
) -> Result<(Vec<FindingScore>, Vec<Sides>)> {
    let scores = prompts
        .score(&encoded.features)?
        .into_iter()
        .next()
        .unwrap_or_default();
    let sides = image_sides(engine, encoded, list, &scores)?;
    Ok((scores, sides))
}

/// Whether a report that states findings on `report` sides contradicts an image that shows them on
/// `image` sides: some finding named on a side by both, on no common side.
pub fn contradicts(report: &[Sides], image: &[Sides]) -> bool {
    report
        .iter()
        .zip(image)
        .any(|(r, i)| !(r.is_none() || i.is_none() || r.shares(*i)))
}
