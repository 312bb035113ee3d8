//! `radclip index` and `radclip search`: a user's reports (text, Open-i XML, CSV) and images (DICOM,
//! PNG/JPEG) embedded into one index file, re-run to add what is new; then searched by text or by image.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use radclip_assist::provenance::{Provenance, model_provenance};
use radclip_assist::store::{
    BuildOptions, Entry, Graph, Stage, Store, build, made_by, made_with, write,
};
use radclip_clip::engine::Engine;

use crate::ai::{ModelArgs, load_engine};

pub(crate) fn progress_bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} ({per_sec}, {eta} left)")
    {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar
}

pub struct IndexArgs {
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    pub frame: u32,
    pub batch_size: usize,
    /// "auto", "always" or "never".
    pub graph: String,
    pub json: bool,
}

pub fn index(m: &ModelArgs, a: IndexArgs) -> anyhow::Result<()> {
    let graph = match a.graph.as_str() {
        "auto" => Graph::Auto,
        "always" => Graph::Always,
        "never" => Graph::Never,
        other => bail!("--graph takes auto, always or never, not \"{other}\""),
    };
    let engine = load_engine(m)?;
    let options = BuildOptions {
        frame: a.frame,
        batch_size: a.batch_size,
        graph,
    };
    let mut bar: Option<(Stage, ProgressBar)> = None;
    let mut progress = |stage: Stage, done: usize, total: usize| {
        if bar.as_ref().is_none_or(|(s, _)| *s != stage) {
            if let Some((_, b)) = bar.take() {
                b.finish_and_clear();
            }
            let what = match stage {
                Stage::Reports => "reports",
                Stage::Images => "images",
                Stage::Graph => "graph",
            };
            bar = Some((stage, progress_bar(total, what)));
        }
        if let Some((_, b)) = &bar {
            b.set_position(done as u64);
        }
    };
    let built = build(
        &engine,
        &a.inputs,
        Some(&a.out),
        &options,
        &mut progress,
        &AtomicBool::new(false),
    )?;
    if let Some((_, b)) = bar.take() {
        b.finish_and_clear();
    }
    if built.other_weights {
        eprintln!(
            "radclip: {} was made with other weights; embedded everything again",
            a.out.display()
        );
    }
    let p = write(&built, &a.out)?;
    let store = &built.store;
    let reports_n = store.items().iter().filter(|e| e.is_report()).count();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"index": a.out.display().to_string(), "entries": store.len(),
                "reports": reports_n, "images": store.len() - reports_n, "embedded": built.embedded,
                "reused": built.reused, "removed": built.removed, "not_images": built.not_images,
                "graph": store.approximate(), "seconds": built.seconds, "provenance": p})
        );
    } else {
        println!(
            "{}: {} entries ({reports_n} reports, {} images){}; {} embedded, {} reused, {} files \
             that are not images skipped, in {:.1} s",
            a.out.display(),
            store.len(),
            store.len() - reports_n,
            if store.approximate().is_some() {
                ", with an HNSW graph"
            } else {
                ""
            },
            built.embedded,
            built.reused,
            built.not_images,
            built.seconds
        );
    }
    Ok(())
}

pub struct SearchArgs {
    pub index: PathBuf,
    pub text: Option<String>,
    pub image: Option<PathBuf>,
    pub k: usize,
    /// "reports", "images" or "all".
    pub only: String,
    pub frame: u32,
    pub exact: bool,
    pub json: bool,
}

/// The query's features: a text's or an image's.
fn query(engine: &Engine, a: &SearchArgs) -> anyhow::Result<Vec<f32>> {
    let t = match (&a.text, &a.image) {
        (Some(text), None) => engine.encode_texts(&[text.as_str()])?,
        (None, Some(image)) => {
            let p = radclip_assist::frame::prepare_file(engine, image, a.frame)?;
            engine.encode_images(&[&p], 1)?
        }
        _ => bail!("give either --text \"…\" or --image FILE"),
    };
    Ok(t.to_dtype(candle_core::DType::F32)?
        .to_vec2::<f32>()?
        .into_iter()
        .next()
        .unwrap_or_default())
}

pub fn search(m: &ModelArgs, a: SearchArgs) -> anyhow::Result<()> {
    let store = Store::load(&a.index)?;
    let engine = load_engine(m)?;
    let model = model_provenance(&engine)?;
    if made_with(&a.index).is_some() && !made_by(&a.index, &model) {
        bail!(
            "{} was made with other weights than {}; search it with the model that made it",
            a.index.display(),
            model.path
        );
    }
    let keep = |e: &Entry| match a.only.as_str() {
        "reports" => e.is_report(),
        "images" => !e.is_report(),
        _ => true,
    };
    if !["reports", "images", "all"].contains(&a.only.as_str()) {
        bail!("--only takes reports, images or all, not \"{}\"", a.only);
    }
    let t = Instant::now();
    let q = query(&engine, &a)?;
    let hits = if a.exact {
        store.search_exact_filtered(&q, a.k, keep)?
    } else {
        store.search_filtered(&q, a.k, keep)?
    };
    // With --exact on an index with a graph: how many of the exact hits the graph finds.
    let graph_recall = match (a.exact, store.approximate()) {
        (true, Some(_)) => {
            let found = store.search_filtered(&q, a.k, keep)?;
            let same = found
                .iter()
                .filter(|f| hits.iter().any(|h| h.position == f.position))
                .count();
            Some(same as f64 / hits.len().max(1) as f64)
        }
        _ => None,
    };
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if a.json {
        let method = if a.text.is_some() {
            "search by text"
        } else {
            "search by image"
        };
        let prompts = a.text.iter().cloned().collect();
        let list: Vec<serde_json::Value> = hits
            .iter()
            .map(|h| {
                serde_json::json!({"source": h.item.source, "score": h.score,
                    "kind": if h.item.is_report() { "report" } else { "image" },
                    "title": h.item.report.as_ref().map(|r| &r.title),
                    "text": h.item.report.as_ref().map(|r| &r.text)})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"index": a.index.display().to_string(), "entries": store.len(),
                "hits": list, "exact": a.exact || store.approximate().is_none(),
                "graph_recall": graph_recall,
                "provenance": Provenance::new(&model, method, prompts, ms)})
        );
    } else {
        for h in &hits {
            let what = h
                .item
                .report
                .as_ref()
                .map_or_else(String::new, |r| format!("  {}", r.summary));
            println!("{:.3}  {}{what}", h.score, h.item.source);
        }
        if let Some(r) = graph_recall {
            println!(
                "the HNSW graph finds {:.0} % of these {} (its recall@{} for this query)",
                r * 100.0,
                hits.len(),
                a.k
            );
        }
    }
    Ok(())
}
