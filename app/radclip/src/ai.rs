//! The CLIP subcommands: embed, zero-shot, heatmap. Wiring only; the work is in radclip-clip.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use radclip_assist::frame::{encode_files, files_under, prepare_file};
use radclip_assist::provenance::{Provenance, model_provenance, prompts_of, sidecar};
use radclip_clip::engine::Engine;
use radclip_clip::zeroshot::{self, FindingList};

pub struct ModelArgs {
    pub model: String,
    pub device: String,
}

pub fn load_engine(m: &ModelArgs) -> anyhow::Result<Engine> {
    let (device, note) = radclip_clip::device::select(&m.device);
    if let Some(n) = note {
        eprintln!("radclip: {n}");
    }
    Engine::load(&m.model, &device).with_context(|| format!("cannot load the model {}", m.model))
}

fn rows(t: &candle_core::Tensor) -> anyhow::Result<Vec<Vec<f32>>> {
    Ok(t.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?)
}

fn print_vector(label: &str, v: &[f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let head: Vec<String> = v.iter().take(6).map(|x| format!("{x:+.4}")).collect();
    println!(
        "{label}: {} dims, norm {norm:.4}, [{} …]",
        v.len(),
        head.join(", ")
    );
}

pub struct EmbedArgs {
    pub input: Option<PathBuf>,
    pub text: Option<String>,
    pub frame: u32,
    pub batch_size: usize,
    pub json: bool,
}

pub fn embed(m: &ModelArgs, a: EmbedArgs) -> anyhow::Result<()> {
    let engine = load_engine(m)?;
    // Hashed (or read from the cache) before the clock starts: the time is the work's.
    let model = a.json.then(|| model_provenance(&engine)).transpose()?;
    let t = Instant::now();
    let provenance = |method: &str, prompts: Vec<String>| {
        model
            .as_ref()
            .map(|m| Provenance::new(m, method, prompts, t.elapsed().as_secs_f64() * 1e3))
    };
    match (a.input, a.text) {
        (None, Some(text)) => {
            let f = rows(&engine.encode_texts(&[text.as_str()])?)?;
            let v = f.into_iter().next().unwrap_or_default();
            if a.json {
                let p = provenance("text embedding", vec![text.clone()]);
                println!(
                    "{}",
                    serde_json::json!({"text": text, "embedding": v, "provenance": p})
                );
            } else {
                print_vector(&format!("{text:?}"), &v);
            }
        }
        (Some(input), None) => {
            let dir = input.is_dir();
            let files = if dir {
                let (files, sidecars) = files_under(&input)?;
                if sidecars > 0 {
                    eprintln!(
                        "radclip: {sidecars} PNG/JPEG files beside DICOM files left out (masks, thumbnails)"
                    );
                }
                files
            } else {
                vec![input.clone()]
            };
            if files.is_empty() {
                bail!("no DICOM or image files under {}", input.display());
            }
            let (paths, feats) = encode_files(&engine, &files, a.frame, a.batch_size, |e| {
                // One bad file in a folder is reported and skipped; a single bad file is an error.
                if dir {
                    eprintln!("radclip: skipped: {e}");
                    Ok(())
                } else {
                    Err(e.into())
                }
            })?;
            let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            if a.json {
                let p = provenance("image embedding", Vec::new());
                let v = if dir {
                    serde_json::json!({"paths": paths, "embedding": feats, "provenance": p})
                } else {
                    serde_json::json!({"path": paths.first(), "embedding": feats.first(), "provenance": p})
                };
                println!("{v}");
            } else {
                for (p, v) in paths.iter().zip(&feats) {
                    print_vector(p, v);
                }
            }
        }
        _ => bail!("give either a FILE/DIR or --text \"…\""),
    }
    Ok(())
}

/// `radclip reference`: the image features of the given images (folders searched), written as a
/// reference set. Files that are not images (reports, segmentations) are skipped and counted.
pub fn reference(
    m: &ModelArgs,
    inputs: &[PathBuf],
    out: &Path,
    frame: u32,
    batch_size: usize,
) -> anyhow::Result<()> {
    let mut files = Vec::new();
    let mut sidecars = 0;
    for input in inputs {
        if input.is_dir() {
            let (found, left_out) = files_under(input)?;
            files.extend(found);
            sidecars += left_out;
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            bail!("{} is not a file or folder", input.display());
        }
    }
    let engine = load_engine(m)?;
    let mut skipped = 0usize;
    let (_, feats) = encode_files(&engine, &files, frame, batch_size, |_| {
        skipped += 1;
        Ok(())
    })?;
    if feats.len() < 2 {
        bail!(
            "a reference set needs two or more images; {} found",
            feats.len()
        );
    }
    let set = zeroshot::Reference::from_features(&feats)?;
    set.save(out)?;
    eprintln!(
        "radclip: wrote {} reference image features to {} ({skipped} files that are not images skipped, \
         {sidecars} PNG/JPEG files beside DICOM files left out); name the file as `reference` under \
         [zero_shot] in the model's radclip.toml",
        set.len(),
        out.display()
    );
    Ok(())
}

pub fn zero_shot(
    m: &ModelArgs,
    file: &Path,
    frame: u32,
    findings: Option<&Path>,
    json: bool,
) -> anyhow::Result<()> {
    let engine = load_engine(m)?;
    let t = Instant::now();
    let list = match findings {
        Some(f) => FindingList::load(f)?,
        None => FindingList::for_engine(&engine)?,
    };
    let p = prepare_file(&engine, file, frame)?;
    let feats = engine.encode_images(&[&p], 1)?;
    let scores = zeroshot::score(&engine, &feats, &list)?
        .into_iter()
        .next()
        .unwrap_or_default();
    if json {
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let p = Provenance::new(
            &model_provenance(&engine)?,
            "zero-shot",
            prompts_of(&list),
            ms,
        );
        println!(
            "{}",
            serde_json::json!({"path": file.display().to_string(), "intended_use": engine.card.intended_use,
                "temperature": engine.card.zero_shot.temperature,
                "reference": engine.card.zero_shot.reference.as_ref().map(|r| r.display().to_string()),
                "findings": scores, "provenance": p})
        );
    } else {
        println!("{} ({})", file.display(), engine.card.intended_use);
        let width = scores.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for s in &scores {
            let bar = "#".repeat((s.probability * 20.0).round() as usize);
            println!(
                "  {:<width$}  {:>5.1}% ± {:>4.1}  {bar}",
                s.name,
                100.0 * s.probability,
                100.0 * s.spread
            );
        }
    }
    Ok(())
}

pub struct HeatmapArgs {
    pub file: PathBuf,
    pub prompt: String,
    pub method: String,
    pub out: PathBuf,
    pub raw: Option<PathBuf>,
    pub alpha: f32,
    pub frame: u32,
    pub json: bool,
    pub refine: bool,
}

pub fn heatmap(m: &ModelArgs, a: HeatmapArgs) -> anyhow::Result<()> {
    use radclip_clip::heatmap::{EncodedImage, Method, npy_f32};
    let Some(method) = Method::parse(&a.method) else {
        bail!(
            "unknown method \"{}\" (clip-surgery, maskclip, rollout, gradcam)",
            a.method
        );
    };
    if !(0.0..=1.0).contains(&a.alpha) {
        bail!("--alpha must be between 0 and 1");
    }
    let engine = load_engine(m)?;
    let t = Instant::now();
    let prepared = prepare_file(&engine, &a.file, a.frame)?;
    let encoded = EncodedImage::new(&engine, &prepared)?;
    let mut map = engine.heatmap(&encoded, method, &a.prompt)?;
    if a.refine {
        map = encoded.refine(&map, &radclip_clip::refine::Refinement::default())?;
    }
    let img = map.overlay(&prepared.image, a.alpha);
    let rendered = radclip_dicom::Rendered::Rgb {
        rows: img.height as u32,
        cols: img.width as u32,
        data: img.data,
    };
    radclip_dicom::export::write_png(&rendered, &a.out)?;
    if let Some(raw) = &a.raw {
        let bytes = npy_f32(&[map.grid.0, map.grid.1], &map.values);
        radclip_dicom::export::write_atomic(raw, &bytes)
            .with_context(|| format!("cannot write {}", raw.display()))?;
    }
    // The map's provenance beside each file written, and in the JSON.
    let method_name = if map.refined {
        format!("{} + pamr", method.name())
    } else {
        method.name().to_string()
    };
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let p = Provenance::new(
        &model_provenance(&engine)?,
        &method_name,
        vec![a.prompt.clone()],
        ms,
    );
    for out in std::iter::once(&a.out).chain(&a.raw) {
        let side = sidecar(out);
        radclip_dicom::export::write_atomic(&side, p.text().as_bytes())
            .with_context(|| format!("cannot write {}", side.display()))?;
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({"path": a.file.display().to_string(), "prompt": a.prompt,
                "method": method.name(), "refined": map.refined, "grid": [map.grid.0, map.grid.1], "values": map.values,
                "source_rect": map.placement.source_rect(), "out": a.out.display().to_string(), "provenance": p})
        );
    }
    Ok(())
}

/// `radclip draft`: the drafted report of one image.
pub fn draft(
    m: &ModelArgs,
    file: &Path,
    reports: Option<&Path>,
    frame: u32,
    json: bool,
) -> anyhow::Result<()> {
    use radclip_clip::heatmap::EncodedImage;
    let engine = load_engine(m)?;
    let list = FindingList::for_engine(&engine)?;
    let Some(labeler) = radclip_assist::library::labeler(&list)? else {
        bail!("the model's finding list has no report words (mentions) to read sentences with");
    };
    let library: Vec<radclip_assist::LibraryReport> = match reports {
        Some(p) => radclip_assist::archive::read_reports(p)?
            .into_iter()
            .map(|r| r.report)
            .collect(),
        None if engine.dir.file_name().is_some_and(|n| n == "radclip-demo") => {
            crate::demo_archive()
        }
        None => bail!("give --reports: a report archive to draft from"),
    };
    let t = Instant::now();
    let bank = radclip_assist::draft::SentenceBank::build(&engine, &library, &labeler)?;
    let bank_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let prepared = prepare_file(&engine, file, frame)?;
    let encoded = EncodedImage::new(&engine, &prepared)?;
    let prompts = zeroshot::PromptSet::new(&engine, &list)?;
    let (scores, sides) =
        radclip_assist::sides::findings_and_sides(&engine, &prompts, &list, &encoded)?;
    let q = encoded
        .features
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?;
    let draft = bank.draft(&q, &scores, &sides)?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if json {
        let p = Provenance::new(
            &model_provenance(&engine)?,
            "drafted report (sentence retrieval)",
            prompts_of(&list),
            ms,
        );
        println!(
            "{}",
            serde_json::json!({"path": file.display().to_string(), "text": draft.text(),
                "findings": draft.findings, "impression": draft.impression,
                "sentences_in_library": bank.len(), "library_ms": bank_ms, "provenance": p})
        );
    } else {
        println!("{} ({})", file.display(), engine.card.intended_use);
        println!("{}", draft.text());
        for s in draft.findings.iter().chain(&draft.impression) {
            eprintln!("  {:.2}  {}  [{}]", s.score, s.text, s.source);
        }
    }
    Ok(())
}

pub struct AttentionArgs {
    pub file: PathBuf,
    pub out: PathBuf,
    pub from_patch: Option<String>,
    pub frame: u32,
    pub json: bool,
}

/// Longest side of a layer's PNG per head, about: each patch is drawn as a square of this over the grid.
const ATTENTION_PNG_SIDE: usize = 224;

/// `radclip attention`: the inspector's maps of one image, as .npy and one PNG per layer.
pub fn attention(m: &ModelArgs, a: AttentionArgs) -> anyhow::Result<()> {
    use radclip_assist::attention::{AttentionMaps, Query};
    use radclip_clip::heatmap::EncodedImage;
    let query = match &a.from_patch {
        None => Query::ClassToken,
        Some(s) => {
            let parsed = s
                .split_once(',')
                .and_then(|(r, c)| Some((r.trim().parse().ok()?, c.trim().parse().ok()?)));
            let Some((row, col)) = parsed else {
                bail!("--from-patch takes ROW,COL (e.g. 3,7), not \"{s}\"");
            };
            Query::Patch { row, col }
        }
    };
    let engine = load_engine(m)?;
    let t = Instant::now();
    let prepared = prepare_file(&engine, &a.file, a.frame)?;
    let encoded = EncodedImage::new(&engine, &prepared)?;
    let maps = AttentionMaps::of(&encoded, query)?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot make {}", a.out.display()))?;
    let npy = a.out.join("attention.npy");
    radclip_dicom::export::write_atomic(&npy, &maps.npy())
        .with_context(|| format!("cannot write {}", npy.display()))?;
    let rollout = a.out.join("rollout.npy");
    radclip_dicom::export::write_atomic(&rollout, &maps.rollout_npy())
        .with_context(|| format!("cannot write {}", rollout.display()))?;
    let cell = (ATTENTION_PNG_SIDE / maps.grid.0.max(maps.grid.1).max(1)).max(1);
    let mut written = vec![npy.clone(), rollout];
    for layer in 0..maps.layers {
        let Some(img) = maps.layer_image(layer, cell) else {
            continue;
        };
        let png = a.out.join(format!("layer-{layer:02}.png"));
        let rendered = radclip_dicom::Rendered::Rgb {
            rows: img.height as u32,
            cols: img.width as u32,
            data: img.data,
        };
        radclip_dicom::export::write_png(&rendered, &png)?;
        written.push(png);
    }
    let p = Provenance::new(
        &model_provenance(&engine)?,
        &format!("attention from the {}", query.name()),
        Vec::new(),
        ms,
    );
    let side = sidecar(&npy);
    radclip_dicom::export::write_atomic(&side, p.text().as_bytes())
        .with_context(|| format!("cannot write {}", side.display()))?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"path": a.file.display().to_string(), "layers": maps.layers,
                "heads": maps.heads, "grid": [maps.grid.0, maps.grid.1], "query": maps.query,
                "shape": [maps.layers, maps.heads, maps.grid.0, maps.grid.1],
                "files": written.iter().map(|w| w.display().to_string()).collect::<Vec<_>>(),
                "provenance": p})
        );
    } else {
        eprintln!(
            "radclip: {} layers × {} heads on a {}×{} grid, from the {}, written to {}",
            maps.layers,
            maps.heads,
            maps.grid.0,
            maps.grid.1,
            query.name(),
            a.out.display()
        );
    }
    Ok(())
}

/// A phantom study's report as a library report, as the demo archive and `radclip eval` both hold it:
/// the whole text labelled, the findings section embedded (CLIP text towers read 77 tokens).
pub fn library_report(
    title: String,
    r: &radclip_phantom::report::Report,
) -> radclip_assist::LibraryReport {
    radclip_assist::LibraryReport {
        title,
        summary: r.impression.replace('\n', " "),
        text: r.text(),
        embedded: r.findings.clone(),
    }
}
