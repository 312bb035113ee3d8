//! The radclip binary: the GUI by default, subcommands for scripts. Argument parsing and wiring only;
//! all work is done by the library crates, so the CLI and the GUI see the same results.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use radclip_dicom as dicom;

mod ai;
mod bench;
mod eval;
mod find;
mod info;
mod reslice;
mod store;
mod train;

#[derive(Parser)]
#[command(
    name = "radclip",
    version,
    about = "Radiology viewer with on-device CLIP assistance"
)]
struct Cli {
    /// A DICOM file, a folder or a DICOMDIR to open in the viewer (default: the bundled demo study).
    path: Option<PathBuf>,
    /// The viewer's AI model: a model folder (Hugging Face CLIPModel or open_clip layout), a cache
    /// entry, or org/name in the local HF cache (default: the bundled demo model).
    #[arg(long, value_name = "MODEL")]
    model: Option<String>,
    /// Where the viewer's AI model runs: cpu, cuda or auto (a GPU when this build and machine have
    /// one, else the CPU).
    #[arg(long, default_value = "auto", value_name = "DEVICE")]
    device: String,
    /// The AI panel's similar-reports library, for any model: a report archive (a folder of .txt,
    /// Open-i .xml, .csv or DICOM SR reports, or such a file) or an index made by `radclip index`
    /// (default: the demo model's synthetic archive).
    #[arg(long, value_name = "ARCHIVE")]
    reports: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the study tree of a folder or DICOMDIR, or the image description of a file.
    Info {
        path: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Also list every element of a file.
        #[arg(long)]
        tags: bool,
    },
    /// Render a frame through the pixel pipeline and write it as an 8-bit PNG.
    Export {
        file: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Frame index, from 0.
        #[arg(long, default_value_t = 0)]
        frame: u32,
        /// Window as CENTER,WIDTH in modality units (default: the file's first window, else min/max).
        #[arg(long, value_parser = parse_window, allow_hyphen_values = true)]
        window: Option<dicom::Window>,
    },
    /// Projected, un-normalised CLIP features of images (DICOM, PNG, JPEG; a folder: each file) or of a text,
    /// as Hugging Face `get_image_features` / `get_text_features` return them.
    Embed {
        /// A DICOM or image file, or a folder of them.
        input: Option<PathBuf>,
        /// Embed this text instead of an image.
        #[arg(long, conflicts_with = "input")]
        text: Option<String>,
        #[command(flatten)]
        model: ModelOpt,
        /// Frame of a multi-frame DICOM file, from 0.
        #[arg(long, default_value_t = 0)]
        frame: u32,
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        #[arg(long)]
        json: bool,
    },
    /// Zero-shot findings for an image: probability and spread across prompt paraphrases per finding.
    ZeroShot {
        file: PathBuf,
        #[command(flatten)]
        model: ModelOpt,
        /// A findings TOML (default: the model's, else CheXpert-14).
        #[arg(long)]
        findings: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        frame: u32,
        #[arg(long)]
        json: bool,
    },
    /// A text-prompted heatmap blended over the rendered frame.
    Heatmap {
        file: PathBuf,
        #[command(flatten)]
        model: ModelOpt,
        /// What to look for, e.g. "pleural effusion".
        #[arg(long)]
        prompt: String,
        /// clip-surgery, maskclip, rollout or gradcam.
        #[arg(long, default_value = "clip-surgery")]
        method: String,
        /// PNG of the overlay.
        #[arg(long)]
        out: PathBuf,
        /// Also write the raw map as .npy (rows × columns, float32): the patch grid, or the model's
        /// input pixels with --refine.
        #[arg(long)]
        raw: Option<PathBuf>,
        /// Overlay opacity, 0–1.
        #[arg(long, default_value_t = 0.45)]
        alpha: f32,
        #[arg(long, default_value_t = 0)]
        frame: u32,
        #[arg(long)]
        json: bool,
        /// Refine the map along the image's edges (PAMR): one value per input pixel, not per patch.
        #[arg(long)]
        refine: bool,
    },
    /// Embed reports (a folder of .txt, Open-i .xml, .csv or DICOM SR files, or such a file) and images
    /// (DICOM, PNG/JPEG) into one index file; run again on a grown folder, only new or changed items are
    /// embedded.
    Index {
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        #[command(flatten)]
        model: ModelOpt,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        frame: u32,
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        /// An HNSW graph for approximate search: auto (from 100,000 entries), always or never.
        #[arg(long, default_value = "auto")]
        graph: String,
        #[arg(long)]
        json: bool,
    },
    /// Where in a series a phrase matches: every slice's score (cosine of image and text features; slice
    /// embeddings cached in radclip's cache directory per model), then the best TOP.
    Find {
        /// A series folder, or a file; the image series with the most frames is searched.
        input: PathBuf,
        #[arg(long)]
        text: String,
        #[command(flatten)]
        model: ModelOpt,
        #[arg(long, default_value_t = 5)]
        top: usize,
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        #[arg(long)]
        json: bool,
    },
    /// The entries of an index nearest to a text or an image, best first.
    Search {
        index: PathBuf,
        #[command(flatten)]
        model: ModelOpt,
        #[arg(long)]
        text: Option<String>,
        #[arg(long)]
        image: Option<PathBuf>,
        #[arg(short = 'k', long, default_value_t = 10)]
        k: usize,
        /// reports, images or all.
        #[arg(long, default_value = "all")]
        only: String,
        #[arg(long, default_value_t = 0)]
        frame: u32,
        /// Scan every entry even when the index has an HNSW graph, and report the graph's recall
        /// against that exact list.
        #[arg(long)]
        exact: bool,
        #[arg(long)]
        json: bool,
    },
    /// A findings + impression draft for an image from the library's best sentences (each with its
    /// source report and score): findings judged present on the image's sides, pertinent negatives for
    /// those confidently absent.
    Draft {
        file: PathBuf,
        #[command(flatten)]
        model: ModelOpt,
        /// A report archive (folder or .txt/.xml/.csv/SR file); default: the demo model's synthetic
        /// archive.
        #[arg(long)]
        reports: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        frame: u32,
        #[arg(long)]
        json: bool,
    },
    /// A series as a volume, reformatted along a plane through a point in patient mm (LPS): the
    /// rendered plane as PNG, --raw the modality values (float32, HU for CT, [rows, columns], NaN
    /// outside the volume), --json the plane in DICOM's conventions.
    Reslice {
        input: PathBuf,
        /// axial, coronal or sagittal.
        #[arg(long, default_value = "axial")]
        plane: String,
        /// An oblique plane's normal instead (its row axis is the nearest standard plane's).
        #[arg(long, value_name = "X,Y,Z")]
        normal: Option<String>,
        /// The point the plane goes through (default: the volume's centre).
        #[arg(long, value_name = "X,Y,Z")]
        through: Option<String>,
        /// Slab thickness in mm (0: the plane alone).
        #[arg(long, default_value_t = 0.0, value_name = "MM")]
        slab: f64,
        /// How a slab is combined: mip, minip or mean.
        #[arg(long, default_value = "mip")]
        mode: String,
        /// Pixel spacing in mm (default: the volume's finest).
        #[arg(long, value_name = "MM")]
        spacing: Option<f64>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        raw: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Every layer's and head's attention from the class token (or a patch) to the patch grid:
    /// attention.npy (float32 [layers, heads, rows, columns]) and one PNG per layer, heads side by side.
    Attention {
        file: PathBuf,
        #[command(flatten)]
        model: ModelOpt,
        /// Folder to write into (made if missing).
        #[arg(long)]
        out: PathBuf,
        /// Read the attention of the patch at ROW,COL of the grid instead of the class token's.
        #[arg(long, value_name = "ROW,COL")]
        from_patch: Option<String>,
        #[arg(long, default_value_t = 0)]
        frame: u32,
        #[arg(long)]
        json: bool,
    },
    /// Embed unlabelled images of a model's domain (DICOM, PNG, JPEG) as its reference set:
    /// named as `reference` under [zero_shot] in the model's radclip.toml, it puts every single prompt
    /// pair on its finding's scale, so paraphrases of a prompt differ only where they rank images apart.
    Reference {
        /// Image files or folders of them (searched recursively).
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        #[command(flatten)]
        model: ModelOpt,
        /// The reference file to write (safetensors).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        frame: u32,
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
    },
    /// Convert an OpenAI-format CLIP checkpoint (OpenAI, CheXzero: .pt state dict or .safetensors) into the
    /// Hugging Face layout radclip loads. The .pt file is read without running any code from it.
    ConvertOpenai {
        input: PathBuf,
        /// Output model folder (config.json + model.safetensors).
        #[arg(long)]
        out: PathBuf,
        /// Attention heads of the vision tower (default: width / 64, as OpenAI's models).
        #[arg(long)]
        vision_heads: Option<usize>,
        /// Attention heads of the text tower (default: width / 64).
        #[arg(long)]
        text_heads: Option<usize>,
    },
    /// Convert an open_clip model published as a PyTorch pickle (BiomedCLIP's open_clip_pytorch_model.bin)
    /// into a folder with open_clip_model.safetensors, its config and tokenizer files. Nothing in the pickle
    /// is run, and the input folder is only read.
    ConvertOpenClip {
        /// The model folder (with open_clip_config.json), or its .bin file.
        input: PathBuf,
        /// Output model folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Generate synthetic phantom studies with ground truth (DICOM + report + masks), deterministic from
    /// a seed.
    Phantom {
        #[command(subcommand)]
        what: PhantomWhat,
    },
    /// Train the demo CLIP from scratch on phantom radiographs and their reports (CPU, candle autograd).
    Train {
        /// Output model folder (config.json, model.safetensors in f16, training.json).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Distinct training images (studies 0..N of the seed).
        #[arg(long, default_value_t = 12000)]
        images: u64,
        /// The defaults are the shipped demo model's recipe (models/radclip-demo/training.json).
        #[arg(long, default_value_t = 1300)]
        steps: usize,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// Input side in pixels, a multiple of the 16-px patch (the demo model's by default).
        #[arg(long, default_value_t = train::demo_config().vision.image_size)]
        image_size: usize,
    },
    /// Measure a model on held-out phantoms: zero-shot AUROC, calibration, paraphrase robustness, report
    /// retrieval and heatmap localisation (JSON on stdout).
    Eval {
        #[command(flatten)]
        model: ModelOpt,
        /// Seed of the held-out studies (the demo model was trained on seed 1).
        #[arg(long, default_value_t = 1000)]
        seed: u64,
        #[arg(long, default_value_t = 400)]
        count: u64,
        /// Rows and columns of the rendered studies (as the DICOM files would have).
        #[arg(long, default_value_t = 512)]
        size: usize,
        /// Seed and size of the set the temperature is fitted on.
        #[arg(long, default_value_t = 999)]
        calibration_seed: u64,
        #[arg(long, default_value_t = 200)]
        calibration_count: u64,
        /// Studies with findings whose heatmaps are measured.
        #[arg(long, default_value_t = 150)]
        heatmaps: u64,
    },
    /// Timings for docs/benchmarks.md (JSON lines).
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(clap::Args)]
struct ModelOpt {
    /// A model folder (Hugging Face CLIPModel layout), a cache entry, or org/name in the local HF cache.
    #[arg(long, default_value_os_t = default_model())]
    model: PathBuf,
    /// cpu, cuda or auto.
    #[arg(long, default_value = "cpu")]
    device: String,
}

impl ModelOpt {
    fn args(&self) -> ai::ModelArgs {
        ai::ModelArgs {
            model: self.model.to_string_lossy().into_owned(),
            device: self.device.clone(),
        }
    }
}

/// The bundled demo model, found like the demo study; when absent, the first place looked (for the
/// error message).
fn default_model() -> PathBuf {
    let candidates = bundled("RADCLIP_MODELS", "models", "radclip-demo");
    let first = candidates.first().cloned().unwrap_or_default();
    candidates.into_iter().find(|p| p.is_dir()).unwrap_or(first)
}

#[derive(Subcommand)]
enum PhantomWhat {
    /// PA chest radiographs: per study a folder with image.dcm (DX), report.dcm (Basic Text SR),
    /// report.txt, mask-<finding>.png and truth.json; plus index.jsonl.
    Cxr {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Number of studies.
        #[arg(long, default_value_t = 10)]
        count: u64,
        /// Index of the first study (a study depends only on seed and index).
        #[arg(long, default_value_t = 0)]
        first: u64,
        /// Image rows and columns.
        #[arg(long, default_value_t = 512)]
        size: usize,
    },
    /// A chest CT series (CT0001.dcm…) with lesions listed in truth.json.
    Ct {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// A cohort: this many chest CT series, one folder each (PHANTOM-CT-<seed>-<index>), each a
        /// build and 0–3 nodules of its own with truth.json, seg.dcm and report.txt; without it, the
        /// demo series (fixed lesions).
        #[arg(long)]
        count: Option<u64>,
        /// The cohort's first index.
        #[arg(long, default_value_t = 0)]
        first: u64,
        #[arg(long, default_value_t = 256)]
        size: usize,
        #[arg(long, default_value_t = 64)]
        slices: usize,
    },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Full decode of each file (read + codec + pipeline).
    Decode {
        files: Vec<PathBuf>,
        #[arg(long, default_value_t = 20)]
        repeat: usize,
    },
    /// Open a folder as the viewer does: first pixels, whole series decoded, peak RSS.
    Open { dir: PathBuf },
    /// MPR on a folder's largest series: decode alone vs into the volume, peak RSS, and a SIZE² reslice
    /// on the CPU and the GPU reslicer (lavapipe without a GPU).
    Mpr {
        dir: PathBuf,
        /// all, decode (decoding alone, frames kept) or volume (decoding into the volume): one part per
        /// process keeps the allocator's reuse of freed memory out of the comparison.
        #[arg(long, default_value = "all")]
        part: String,
        #[arg(long, default_value_t = 1024)]
        size: usize,
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        /// Also write the volume, planes and CPU values for tests/fixtures/bench_mpr_scipy.py.
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// CLIP image/text encode per batch size, and heatmaps (new image, new prompt) on a model folder.
    Clip {
        #[arg(long)]
        model: String,
        #[arg(long = "batch", default_values_t = [1usize, 8])]
        batches: Vec<usize>,
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        /// Time only these parts (image, text, attention, heatmap), e.g. for a profile of one of them.
        #[arg(long, value_delimiter = ',', default_values_t = ["image".to_string(), "text".into(), "attention".into(), "heatmap".into()])]
        only: Vec<String>,
        /// cpu, cuda or auto (f16 on a GPU, as the engine loads it).
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Exact top-k over random unit vectors, in memory (f32) and saved then memory-mapped (f16): build
    /// and search times, memory; --approximate also builds the HNSW graph and measures its recall@k
    /// against the exact scan. --write also writes the vectors and queries (PATH.vectors.f32,
    /// PATH.queries.f32) for tests/fixtures/bench_faiss.py.
    Index {
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        #[arg(long, default_value_t = 512)]
        dim: usize,
        /// Vectors of this many intrinsic dimensions (a random linear map of Gaussian latents, plus
        /// noise), like real embeddings; 0: uniform noise in all `dim` dimensions.
        #[arg(long, default_value_t = 0)]
        intrinsic: usize,
        #[arg(long, default_value_t = 20)]
        queries: usize,
        #[arg(short = 'k', long, default_value_t = 10)]
        k: usize,
        #[arg(long)]
        approximate: bool,
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// Write a random-weight model of a real CLIP shape (OpenAI's ViT-B/32 or ViT-B/16) for `bench clip`
    /// where PyTorch cannot make one (the GPU machine).
    MakeModel {
        /// b32 or b16.
        #[arg(long)]
        shape: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// One window/level change on a SIZE² 16-bit image: the CPU side of the viewer's texture path; with
    /// --gpu also whole frames on a wgpu device, texture path against the GPU VOI path.
    WindowLevel {
        #[arg(long, default_value_t = 2048)]
        size: u32,
        #[arg(long, default_value_t = 60)]
        repeat: usize,
        #[arg(long)]
        gpu: bool,
    },
}

fn parse_window(s: &str) -> Result<dicom::Window, String> {
    let (c, w) = s
        .split_once(',')
        .ok_or_else(|| "expected CENTER,WIDTH, e.g. 40,400".to_string())?;
    let center: f64 = c
        .trim()
        .parse()
        .map_err(|_| format!("{c:?} is not a number"))?;
    let width: f64 = w
        .trim()
        .parse()
        .map_err(|_| format!("{w:?} is not a number"))?;
    if !(width >= 1.0 && center.is_finite() && width.is_finite()) {
        return Err("the width must be at least 1".into());
    }
    Ok(dicom::Window { center, width })
}

fn main() -> ExitCode {
    // Before any thread exists: it may set an environment variable OpenBLAS reads when loaded.
    radclip_clip::blas::prefer_native_kernels();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RADCLIP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // Still single-threaded here. Training keeps candle's pool: its element-wise ops are on whole
    // batches and its throughput was measured with the pool.
    if !matches!(cli.command, Some(Command::Train { .. })) {
        radclip_clip::blas::prefer_one_elementwise_thread();
        // An encoder frees and allocates activations of up to ~20 MB per layer (B/16, batch 8), under
        // the 32 MB threshold: kept in the heap they are not page-faulted in anew each time (B/16
        // image encode 12–20 % faster).
        keep_freed_memory(32 << 20, 256 << 20);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("radclip: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// glibc hands freed buffers above its mmap threshold back to the OS at once, so the next buffer of
/// that size is page-faulted in again. Raising the threshold (buffers below it come from the heap)
/// and the trim threshold (free heap kept up to that size) keeps them.
fn keep_freed_memory(mmap_threshold: i32, trim_threshold: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator tuning parameters; it is called before other threads
    // allocate, and a failure (return 0) leaves the defaults in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, mmap_threshold);
        libc::mallopt(libc::M_TRIM_THRESHOLD, trim_threshold);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (mmap_threshold, trim_threshold);
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Info { path, json, tags }) => info::run(&path, json, tags),
        Some(Command::Export {
            file,
            out,
            frame,
            window,
        }) => export(&file, &out, frame, window),
        Some(Command::Embed {
            input,
            text,
            model,
            frame,
            batch_size,
            json,
        }) => ai::embed(
            &model.args(),
            ai::EmbedArgs {
                input,
                text,
                frame,
                batch_size,
                json,
            },
        ),
        Some(Command::ZeroShot {
            file,
            model,
            findings,
            frame,
            json,
        }) => ai::zero_shot(&model.args(), &file, frame, findings.as_deref(), json),
        Some(Command::Reference {
            inputs,
            model,
            out,
            frame,
            batch_size,
        }) => ai::reference(&model.args(), &inputs, &out, frame, batch_size),
        Some(Command::Heatmap {
            file,
            model,
            prompt,
            method,
            out,
            raw,
            alpha,
            frame,
            json,
            refine,
        }) => ai::heatmap(
            &model.args(),
            ai::HeatmapArgs {
                file,
                prompt,
                method,
                out,
                raw,
                alpha,
                frame,
                json,
                refine,
            },
        ),
        Some(Command::Index {
            inputs,
            model,
            out,
            frame,
            batch_size,
            graph,
            json,
        }) => store::index(
            &model.args(),
            store::IndexArgs {
                inputs,
                out,
                frame,
                batch_size,
                graph,
                json,
            },
        ),
        Some(Command::Find {
            input,
            text,
            model,
            top,
            batch_size,
            json,
        }) => find::find(
            &model.args(),
            find::FindArgs {
                input,
                text,
                top,
                batch_size,
                json,
            },
        ),
        Some(Command::Search {
            index,
            model,
            text,
            image,
            k,
            only,
            frame,
            exact,
            json,
        }) => store::search(
            &model.args(),
            store::SearchArgs {
                index,
                text,
                image,
                k,
                only,
                frame,
                exact,
                json,
            },
        ),
        Some(Command::Draft {
            file,
            model,
            reports,
            frame,
            json,
        }) => ai::draft(&model.args(), &file, reports.as_deref(), frame, json),
        Some(Command::Reslice {
            input,
            plane,
            normal,
            through,
            slab,
            mode,
            spacing,
            out,
            raw,
            json,
        }) => reslice::reslice(reslice::ResliceArgs {
            input,
            plane,
            normal,
            through,
            slab,
            mode,
            spacing,
            out,
            raw,
            json,
        }),
        Some(Command::Attention {
            file,
            model,
            out,
            from_patch,
            frame,
            json,
        }) => ai::attention(
            &model.args(),
            ai::AttentionArgs {
                file,
                out,
                from_patch,
                frame,
                json,
            },
        ),
        Some(Command::ConvertOpenai {
            input,
            out,
            vision_heads,
            text_heads,
        }) => {
            let dir = radclip_clip::convert::convert_openai(
                &input,
                &out,
                &radclip_clip::convert::ConvertOptions {
                    vision_heads,
                    text_heads,
                },
            )?;
            println!("wrote {}", dir.display());
            Ok(())
        }
        Some(Command::ConvertOpenClip { input, out }) => {
            let dir = radclip_clip::convert::convert_open_clip(&input, &out)?;
            println!("wrote {}", dir.display());
            Ok(())
        }
        Some(Command::Phantom { what }) => phantom(what),
        Some(Command::Eval {
            model,
            seed,
            count,
            size,
            calibration_seed,
            calibration_count,
            heatmaps,
        }) => eval::eval(&eval::EvalArgs {
            model: model.args(),
            seed,
            count,
            size,
            calibration_seed,
            calibration_count,
            heatmaps,
        }),
        Some(Command::Train {
            out,
            seed,
            images,
            steps,
            batch,
            lr,
            image_size,
        }) => train::train(&train::TrainArgs {
            out,
            seed,
            images,
            steps,
            batch,
            lr,
            image_size,
        }),
        Some(Command::Bench { what }) => match what {
            BenchWhat::Decode { files, repeat } => bench::decode(&files, repeat),
            BenchWhat::WindowLevel { size, repeat, gpu } => bench::window_level(size, repeat, gpu),
            BenchWhat::Open { dir } => bench::open(&dir),
            BenchWhat::Mpr {
                dir,
                part,
                size,
                repeat,
                write,
            } => bench::mpr(&dir, &part, size, repeat, write.as_deref()),
            BenchWhat::Clip {
                model,
                batches,
                repeat,
                only,
                device,
            } => bench::clip(&model, &batches, repeat, &only, &device),
            BenchWhat::MakeModel { shape, out } => bench::make_model(&shape, &out),
            BenchWhat::Index {
                rows,
                dim,
                intrinsic,
                queries,
                k,
                approximate,
                write,
            } => bench::index(bench::IndexBench {
                rows,
                dim,
                intrinsic,
                queries,
                k,
                approximate,
                write,
            }),
        },
        None => {
            let paths = match cli.path {
                Some(p) => vec![p],
                // The demo radiographs first (the demo model reads them), then the demo CT.
                None => {
                    let mut v: Vec<PathBuf> = demo_cxr().into_iter().collect();
                    v.push(demo_study().context("the bundled demo study was not found")?);
                    v
                }
            };
            // The AI panel's model: the one asked for (which must exist), else the bundled one if
            // it is there.
            let model = match &cli.model {
                Some(spec) => Some(
                    radclip_clip::hub::resolve(spec)
                        .with_context(|| format!("the model {spec:?} was not found"))?,
                ),
                None => Some(default_model()).filter(|d| d.join("config.json").is_file()),
            };
            let label = model.as_deref().and_then(model_label);
            if let Some(r) = cli.reports.as_ref().filter(|r| !r.exists()) {
                anyhow::bail!("the report library {} does not exist", r.display());
            }
            let setup = model.map(|dir| ai_setup(dir, cli.device, cli.reports));
            radclip_viewer::run(paths, label, setup)
                .map_err(|e| anyhow::anyhow!("the viewer stopped: {e}"))
        }
    }
}

/// "AI: <name> — <intended use>" of the card of the model in `dir`.
fn model_label(dir: &Path) -> Option<String> {
    let card = radclip_clip::card::ModelCard::for_model(dir).ok()?;
    let name = card.name.clone().unwrap_or_else(|| "model".into());
    Some(format!("AI: {name} — {}", card.intended_use))
}

fn phantom(what: PhantomWhat) -> anyhow::Result<()> {
    match what {
        PhantomWhat::Cxr {
            out,
            seed,
            count,
            first,
            size,
        } => {
            let truths = radclip_phantom::write_cxr_set(&out, seed, first, count, size)?;
            let with = truths.iter().filter(|t| !t.findings.is_empty()).count();
            println!(
                "wrote {} studies ({} with findings, {} normal) to {}",
                truths.len(),
                with,
                truths.len() - with,
                out.display()
            );
        }
        PhantomWhat::Ct {
            out,
            seed,
            count,
            first,
            size,
            slices,
        } => {
            let opts = radclip_phantom::ct::CtOptions {
                size,
                slices,
                seed,
                // Keep the field of view (358 mm) whatever the matrix.
                pixel_mm: 358.4 / size as f64,
                ..Default::default()
            };
            if let Some(count) = count {
                let cases = radclip_phantom::ct::write_ct_cohort(&out, &opts, first, count)?;
                let with = cases.iter().filter(|(_, l)| !l.is_empty()).count();
                println!(
                    "wrote {} CT series ({with} with findings, {} normal) to {}",
                    cases.len(),
                    cases.len() - with,
                    out.display()
                );
                return Ok(());
            }
            let lesions = radclip_phantom::ct::write_ct_series(&out, &opts)?;
            println!(
                "wrote {slices} slices with {} lesions to {}",
                lesions.len(),
                out.display()
            );
        }
    }
    Ok(())
}

fn export(
    file: &Path,
    out: &Path,
    frame: u32,
    window: Option<dicom::Window>,
) -> anyhow::Result<()> {
    let frames = dicom::pixel::decode_file(file)?;
    let n = frames.len() as u32;
    let f = frames
        .get(frame as usize)
        .ok_or(dicom::Error::FrameOutOfRange { frame, frames: n })?;
    if window.is_some() && f.is_color() {
        bail!("--window applies to greyscale images only; this one is colour");
    }
    // A user's window uses the linear function of PS3.3 C.11.2.1.2, as in the viewer.
    let img = dicom::render(f, window.map(|w| (w, dicom::VoiFunction::Linear)));
    dicom::export::write_png(&img, out)?;
    Ok(())
}

/// Where a bundled folder `<top>/<name>` may be, in order: `$<env>/<name>`, next to the executable
/// (installed layout, then beside it), or in the source tree.
fn bundled(env: &str, top: &str, name: &str) -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os(env) {
        candidates.push(PathBuf::from(dir).join(name));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        candidates.push(dir.join("../share/radclip").join(top).join(name));
        candidates.push(dir.join(top).join(name));
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(top)
            .join(name),
    );
    candidates
}

/// The demo study: `$RADCLIP_ASSETS/demo`, next to the executable (installed layout), or in the source tree.
/// The bundled demo radiographs (`assets/demo-cxr`).
pub fn demo_cxr() -> Option<PathBuf> {
    bundled("RADCLIP_ASSETS", "assets", "demo-cxr")
        .into_iter()
        .find(|p| p.is_dir())
}

/// The AI panel's model in `dir` on `device`, and its similar-reports library: `reports` (a user's archive
/// or index) for any model; without it, for the demo model, archive reports of phantom studies of the
/// training seed the model never saw (indices past its training set), as a hospital archive would hold.
fn ai_setup(dir: PathBuf, device: String, reports: Option<PathBuf>) -> radclip_viewer::ai::AiSetup {
    use radclip_viewer::ai::LibrarySource;
    let demo = dir.file_name().is_some_and(|n| n == "radclip-demo");
    let library = match reports {
        Some(p) => Some(LibrarySource::Path(p)),
        None => demo.then(|| LibrarySource::Reports(Box::new(demo_archive))),
    };
    radclip_viewer::ai::AiSetup {
        model: dir.display().to_string(),
        device,
        library,
    }
}

/// Demo report library: phantom seed 1 from this index on (training used 0–11,999).
pub const LIBRARY_FIRST: u64 = 20_000;
pub const LIBRARY_SIZE: u64 = 2_000;

/// The demo model's synthetic archive: phantom reports of seed 1 past its training indices.
pub fn demo_archive() -> Vec<radclip_assist::LibraryReport> {
    (LIBRARY_FIRST..LIBRARY_FIRST + LIBRARY_SIZE)
        .map(|i| {
            ai::library_report(
                format!("Archive study {i} (synthetic)"),
                &radclip_phantom::cxr_sample(1, i).report,
            )
        })
        .collect()
}

pub fn demo_study() -> Option<PathBuf> {
    bundled("RADCLIP_ASSETS", "assets", "demo")
        .into_iter()
        .find(|p| p.is_dir())
}
