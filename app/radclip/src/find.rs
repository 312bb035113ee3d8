//! `radclip find`: where in a series a phrase matches, slice by slice. Wiring only; the embedding, its
//! cache and the scores are `radclip_assist::find`'s.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, bail};
use radclip_assist::find::{SliceCache, embed_series, phrase, scores, series_findings, top};

use crate::ai::ModelArgs;

pub struct FindArgs {
    pub input: PathBuf,
    pub text: String,
    pub top: usize,
    pub batch_size: usize,
    pub json: bool,
}

pub fn find(m: &ModelArgs, a: FindArgs) -> anyhow::Result<()> {
    let tree = radclip_dicom::scan(&a.input)?;
    let Some(series) = tree.largest_image_series() else {
        bail!("no image series in {}", a.input.display());
    };
    let engine = crate::ai::load_engine(m)?;
    let provenance = radclip_assist::provenance::model_provenance(&engine)?;
    let cache = SliceCache::for_model(&provenance);
    let n = series.frames.len();
    let bar = crate::store::progress_bar(n, "slices");
    let slices = embed_series(
        &engine,
        series,
        &cache,
        n / 2,
        a.batch_size,
        &mut |done, _, _| bar.set_position(done as u64),
        &AtomicBool::new(false),
    )
    .with_context(|| format!("cannot embed {}", series.label()))?;
    bar.finish_and_clear();
    let text = phrase(&engine, &a.text)?;
    let all = scores(series, &slices, &text);
    if all.is_empty() {
        bail!("no slice of {} could be read", series.label());
    }
    let best = top(&all, a.top);
    // Series-level findings: each finding's highest slice probability, and that slice.
    let list = radclip_clip::zeroshot::FindingList::for_engine(&engine)?;
    let prompts = radclip_clip::zeroshot::PromptSet::new(&engine, &list)?;
    let findings: Vec<serde_json::Value> = series_findings(&prompts, &slices)
        .into_iter()
        .filter_map(|f| {
            let (inst, _) = series.instance_of(f.index)?;
            Some(
                serde_json::json!({"name": f.name, "probability": f.probability,
                "instance_number": inst.instance_number,
                "sop_instance_uid": inst.sop_instance_uid}),
            )
        })
        .collect();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"series": series.label(), "text": a.text, "slices": all, "top": best,
                "findings": findings})
        );
    } else {
        println!("{}: \"{}\"", series.label(), a.text);
        for s in &best {
            let number = s
                .instance_number
                .map_or_else(|| "?".to_string(), |n| n.to_string());
            println!(
                "  image {number:>4}  score {:.4}  {}",
                s.score, s.sop_instance_uid
            );
        }
    }
    Ok(())
}
