//! `radclip index` and `radclip search`: a user's reports (text, Open-i XML, CSV) and images (DICOM,
//! PNG/JPEG) embedded into one index file, re-run to add what is new; then searched by text or by image.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use radclip_assist::archive::read_reports;
use radclip_assist::provenance::{Provenance, model_provenance, sidecar};
use radclip_assist::store::{Entry, Store, made_by, made_with, sha256};
use radclip_clip::engine::Engine;

use crate::ai::{ModelArgs, encode_files, files_under, load_engine};

pub struct IndexArgs {
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    pub frame: u32,
    pub batch_size: usize,
    pub json: bool,
}

/// Reports embedded per batch (one padded batch of thousands would be mostly padding).
const REPORT_BATCH: usize = 64;

/// What an input holds: its reports (archive files) and its images.
fn gather(
    inputs: &[PathBuf],
    labeler: Option<&radclip_report::Labeler>,
) -> anyhow::Result<(Vec<Entry>, Vec<PathBuf>)> {
    let report_entry = |mut r: radclip_assist::archive::ArchiveReport| {
        if let Some(l) = labeler {
            radclip_assist::archive::assert_only(&mut r.report, l);
        }
        Entry {
            source: r.source,
            sha256: sha256(r.report.embedded.as_bytes()),
            report: Some(r.report),
        }
    };
    let (mut reports, mut images) = (Vec::new(), Vec::new());
    for input in inputs {
        let is_archive_file = input.extension().is_some_and(|e| {
            ["txt", "xml", "csv"]
                .iter()
                .any(|x| e.eq_ignore_ascii_case(x))
        });
        if input.is_dir() {
            reports.extend(read_reports(input)?.into_iter().map(report_entry));
            images.extend(files_under(input)?.0);
        } else if input.is_file() && is_archive_file {
            reports.extend(read_reports(input)?.into_iter().map(report_entry));
        } else if input.is_file() {
            images.push(input.clone());
        } else {
            bail!("{} is not a file or folder", input.display());
        }
    }
    Ok((reports, images))
}

fn progress(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} ({per_sec}, {eta} left)")
    {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar
}

pub fn index(m: &ModelArgs, a: IndexArgs) -> anyhow::Result<()> {
    let engine = load_engine(m)?;
    // Reports are indexed by what they assert, read with the model's finding list's words.
    let list = radclip_clip::zeroshot::FindingList::for_engine(&engine)?;
    let labeler = radclip_assist::library::labeler(&list)?;
    let (reports, image_files) = gather(&a.inputs, labeler.as_ref())?;
    if reports.is_empty() && image_files.is_empty() {
        bail!("no reports (.txt, .xml, .csv) or images (DICOM, PNG, JPEG) to index");
    }
    let model = model_provenance(&engine)?;
    let t = Instant::now();
    // What the index already holds, by source and content, when the same weights made it.
    let mut known: HashMap<(String, String), Vec<f32>> = HashMap::new();
    let mut before = 0usize;
    if a.out.is_file() {
        let old = Store::load(&a.out)?;
        before = old.len();
        if made_by(&a.out, &model) {
            for (i, e) in old.items().iter().enumerate() {
                if let Some(row) = old.row(i) {
                    known.insert((e.source.clone(), e.sha256.clone()), row.to_vec());
                }
            }
        } else {
            eprintln!(
                "radclip: {} was made with other weights; embedding everything again",
                a.out.display()
            );
        }
    }
    let mut rows: Vec<(Entry, Option<Vec<f32>>)> = reports
        .into_iter()
        .map(|e| {
            let row = known.get(&(e.source.clone(), e.sha256.clone())).cloned();
            (e, row)
        })
        .collect();
    // Reports not yet embedded, a batch at a time.
    let todo: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].1.is_none()).collect();
    let (mut embedded, mut reused) = (0usize, rows.len() - todo.len());
    if !todo.is_empty() {
        let bar = progress(todo.len(), "reports");
        for chunk in todo.chunks(REPORT_BATCH) {
            let batch: Vec<_> = chunk
                .iter()
                .filter_map(|&i| rows[i].0.report.clone())
                .collect();
            let feats = radclip_assist::library::embed_reports(&engine, &batch)?;
            for (&i, f) in chunk.iter().zip(feats) {
                rows[i].1 = Some(f);
            }
            embedded += chunk.len();
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
    }
    // Images: hashed, and embedded when new or changed.
    let mut image_rows: Vec<(Entry, Option<Vec<f32>>)> = Vec::new();
    for p in &image_files {
        let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
        let e = Entry {
            source: p.display().to_string(),
            sha256: sha256(&bytes),
            report: None,
        };
        let row = known.get(&(e.source.clone(), e.sha256.clone())).cloned();
        image_rows.push((e, row));
    }
    let todo: Vec<PathBuf> = image_rows
        .iter()
        .filter(|(_, r)| r.is_none())
        .map(|(e, _)| PathBuf::from(&e.source))
        .collect();
    reused += image_rows.len() - todo.len();
    let mut skipped = 0usize;
    if !todo.is_empty() {
        let bar = progress(todo.len(), "images");
        let mut got: HashMap<PathBuf, Vec<f32>> = HashMap::new();
        for chunk in todo.chunks(a.batch_size.max(1)) {
            // Files that are not images (segmentations, SR reports) are skipped.
            let (paths, feats) = encode_files(&engine, chunk, a.frame, a.batch_size, |_| {
                skipped += 1;
                Ok(())
            })?;
            embedded += paths.len();
            got.extend(paths.into_iter().zip(feats));
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        for (e, row) in &mut image_rows {
            if row.is_none() {
                *row = got.remove(Path::new(&e.source));
            }
        }
    }
    let mut store: Option<Store> = None;
    for (e, row) in rows.into_iter().chain(image_rows) {
        let Some(row) = row else { continue };
        store
            .get_or_insert_with(|| Store::new(row.len()))
            .add(&row, e)?;
    }
    let Some(store) = store else {
        bail!("nothing could be embedded");
    };
    let ms = t.elapsed().as_secs_f64() * 1e3;
    store.save(&a.out)?;
    let p = Provenance::new(&model, "index", Vec::new(), ms);
    radclip_dicom::export::write_atomic(&sidecar(&a.out), p.text().as_bytes())?;
    let reports_n = store.items().iter().filter(|e| e.is_report()).count();
    let removed = (before + embedded).saturating_sub(store.len()).min(before);
    if a.json {
        println!(
            "{}",
            serde_json::json!({"index": a.out.display().to_string(), "entries": store.len(),
                "reports": reports_n, "images": store.len() - reports_n, "embedded": embedded,
                "reused": reused, "removed": removed, "not_images": skipped, "seconds": ms / 1e3,
                "provenance": p})
        );
    } else {
        println!(
            "{}: {} entries ({reports_n} reports, {} images); {embedded} embedded, {reused} reused, \
             {skipped} files that are not images skipped, in {:.1} s",
            a.out.display(),
            store.len(),
            store.len() - reports_n,
            ms / 1e3
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
    // Exact search over every row, then the kind asked for (milliseconds at archive sizes).
    let hits: Vec<_> = store
        .search(&q, store.len())?
        .into_iter()
        .filter(|h| keep(h.item))
        .take(a.k)
        .collect();
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
                "hits": list, "provenance": Provenance::new(&model, method, prompts, ms)})
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
    }
    Ok(())
}
