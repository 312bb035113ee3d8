//! `radclip train`: the demo CLIP, trained from scratch on phantom radiographs and their reports.
//!
//! Losses (all through candle autograd on the crate's own model):
//! - report–image contrastive loss with soft targets (studies with the same findings are not negatives of
//!   each other, as MedCLIP's semantic matching);
//! - the zero-shot decision itself: for a finding, the image against a positive statement and its negation
//!   (CheXzero's pair softmax, written as a binary cross-entropy): every image against a few composed
//!   statement pairs of every finding each step, plus one pair in its own report's words;
//! - localisation: MaskCLIP's patch features against the finding's statement, a softmax over patches
//!   whose target is the finding's mask coverage (what makes "where is the effusion?" point right).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::Optimizer;
use radclip_clip::config::{Activation, ClipConfig, TextConfig, VisionConfig};
use radclip_clip::model::{Fwd, l2_normalize};
use radclip_clip::preprocess::{Preprocess, resize_bicubic};
use radclip_clip::tokenizer::ClipTokenizer;
use radclip_clip::train::{Trainable, pair_loss, patch_loss, soft_clip_loss};
use radclip_phantom::{CxrCase, Kind, report};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

pub struct TrainArgs {
    pub out: PathBuf,
    pub seed: u64,
    pub images: u64,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    /// Input side in pixels (a multiple of the 16-px patch); the demo model's is 192.
    pub image_size: usize,
}

/// The demo model's shape: small enough to train on two CPU cores within the hour.
pub fn demo_config() -> ClipConfig {
    ClipConfig {
        text: TextConfig {
            vocab_size: 49408,
            hidden_size: 128,
            intermediate_size: 512,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            max_position_embeddings: 77,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-5,
            pad_token_id: 0,
            bos_token_id: 49406,
            eos_token_id: 49407,
        },
        vision: VisionConfig {
            hidden_size: 128,
            intermediate_size: 512,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_channels: 3,
            image_size: 192,
            patch_size: 16,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-5,
        },
        projection_dim: 128,
    }
}

/// One training image at model resolution with what is known about it.
pub struct Item {
    /// 8-bit grey, `side`², after the same windowing and bicubic resize as inference.
    pub grey: Vec<u8>,
    pub case: CxrCase,
    pub report: report::Report,
    /// Per finding (same order as `case.findings`): fraction of each patch its mask covers.
    pub coverage: Vec<Vec<f32>>,
}

/// Renders study `index` of `seed` as the engine would see its DICOM file (window from the file,
/// Pillow-bicubic resize), at a render size drawn from 256/384/512 so that resampling varies as it will
/// for users' images.
pub fn make_item(seed: u64, index: u64, side: usize, grid: usize) -> Item {
    let sample = radclip_phantom::cxr_sample(seed, index);
    let size = [256, 384, 512][radclip_phantom::study_rng(seed, index, 3).random_range(0..3)];
    let img = sample.case.render(size);
    let frame = radclip_phantom::as_frame(&img);
    let rgb = radclip_assist::frame::rgb(&radclip_dicom::render(&frame, None));
    let small = resize_bicubic(&rgb, side, side);
    let grey = small.data.iter().step_by(3).copied().collect();
    let cell = size as f64 / grid as f64;
    let coverage = img
        .masks
        .iter()
        .map(|m| {
            let mut cov = vec![0f32; grid * grid];
            for (i, _) in m.iter().enumerate().filter(|(_, v)| **v) {
                let (r, c) = (i / size, i % size);
                let (gr, gc) = ((r as f64 / cell) as usize, (c as f64 / cell) as usize);
                if let Some(v) = cov.get_mut(gr.min(grid - 1) * grid + gc.min(grid - 1)) {
                    *v += 1.0;
                }
            }
            let area = (cell * cell) as f32;
            cov.iter_mut().for_each(|v| *v /= area);
            cov
        })
        .collect();
    Item {
        grey,
        case: sample.case,
        report: sample.report,
        coverage,
    }
}

/// The pixel tensor [B, 3, S, S] of items, normalised as `pre` does.
pub fn pixels(
    items: &[&Item],
    pre: &Preprocess,
    side: usize,
    dev: &Device,
) -> anyhow::Result<Tensor> {
    let mut data = Vec::with_capacity(items.len() * 3 * side * side);
    for it in items {
        for c in 0..3 {
            data.extend(
                it.grey
                    .iter()
                    .map(|&g| (f32::from(g) / 255.0 - pre.mean[c]) / pre.std[c]),
            );
        }
    }
    Ok(Tensor::from_vec(data, (items.len(), 3, side, side), dev)?)
}

/// A report text for the contrastive loss: the impression, or the findings' sentences in a shuffled
/// order (each sentence stands alone, and shuffling keeps late sentences from always being truncated).
fn report_text(it: &Item, rng: &mut impl Rng) -> String {
    // Mostly the findings section: what a report library is searched by (the viewer and `radclip eval`
    // embed findings sections).
    if rng.random_bool(0.2) {
        return it.report.impression.replace('\n', " ");
    }
    let mut s: Vec<&str> = it
        .report
        .findings
        .split_inclusive(". ")
        .map(str::trim)
        .collect();
    use rand::seq::SliceRandom;
    s.shuffle(rng);
    s.join(" ")
}

/// The words the model will be trained on (their token rows get initialised; the rest stay zero).
fn corpus_tokens(tok: &ClipTokenizer, seed: u64) -> Vec<u32> {
    let mut ids = std::collections::BTreeSet::new();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7c);
    for i in 0..3000 {
        let s = radclip_phantom::cxr_sample(seed.wrapping_add(77), i);
        ids.extend(tok.encode(&s.report.text()));
        for k in Kind::ALL {
            ids.extend(tok.encode(&report::generic_positive(k, &mut rng)));
            ids.extend(tok.encode(report::negation(k, &mut rng)));
            let (p, n) = report::statement_pair(k, &mut rng);
            ids.extend(tok.encode(&p));
            ids.extend(tok.encode(&n));
        }
    }
    ids.into_iter().collect()
}

/// Text features [N, P] (unit rows) of `texts` in their order, encoded in batches of similar length so
/// short statements are not padded to the length of reports (the text tower's cost is in the padding).
fn encode_texts_bucketed(
    model: &radclip_clip::ClipModel,
    tok: &ClipTokenizer,
    texts: &[String],
    fwd: Fwd,
    dev: &Device,
) -> anyhow::Result<Tensor> {
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t)).collect();
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| ids[i].len());
    let mut feats = Vec::new();
    for chunk in order.chunks(48) {
        let rows = chunk.iter().map(|&i| ids[i].clone()).collect();
        let out = model
            .text
            .forward(&radclip_clip::tokenizer::pad_batch(rows, 0), fwd)?;
        feats.push(model.text_projection.forward(&out.pooled)?);
    }
    let all = l2_normalize(&Tensor::cat(&feats, 0)?)?;
    // Back to the callers' order.
    let mut inverse = vec![0u32; order.len()];
    for (pos, &i) in order.iter().enumerate() {
        inverse[i] = pos as u32;
    }
    let n = inverse.len();
    Ok(all.index_select(&Tensor::from_vec(inverse, n, dev)?, 0)?)
}

/// The share of each batch drawn from studies with a nodule (the rest uniformly from all studies).
const SMALL_FINDING_SHARE: f64 = 0.25;

/// Statement pairs per finding and step, each judged against every image of the batch.
const PAIRS_PER_FINDING: usize = 8;

/// Rows of zero-shot decisions: image, positive text, negative text, whether the image has the finding.
#[derive(Default)]
struct PairRows {
    image: Vec<u32>,
    positive: Vec<u32>,
    negative: Vec<u32>,
    label: Vec<f32>,
}

impl PairRows {
    fn push(&mut self, image: usize, positive: usize, negative: usize, present: bool) {
        self.image.push(image as u32);
        self.positive.push(positive as u32);
        self.negative.push(negative as u32);
        self.label.push(if present { 1.0 } else { 0.0 });
    }

    /// The pair loss over these rows, given unit image features [B, P] and text features [T, P].
    fn loss(
        &self,
        image: &Tensor,
        text: &Tensor,
        scale: &Tensor,
        dev: &Device,
    ) -> anyhow::Result<Tensor> {
        let n = self.image.len();
        let index = |v: &[u32]| Tensor::from_vec(v.to_vec(), n, dev);
        Ok(pair_loss(
            &image.index_select(&index(&self.image)?, 0)?,
            &text.index_select(&index(&self.positive)?, 0)?,
            &text.index_select(&index(&self.negative)?, 0)?,
            scale,
            &Tensor::from_vec(self.label.clone(), n, dev)?,
        )?)
    }
}

fn label_vec(case: &CxrCase) -> u8 {
    Kind::ALL
        .iter()
        .enumerate()
        .fold(0u8, |m, (i, k)| if case.has(*k) { m | (1 << i) } else { m })
}

pub fn train(args: &TrainArgs) -> anyhow::Result<()> {
    // Autograd frees and reallocates the same large buffers every step (measured: 30 → 41 images/s).
    crate::keep_freed_memory(1 << 30, 1 << 30);
    if args.batch < 2 || args.steps == 0 || args.images < args.batch as u64 {
        bail!("need a batch of at least 2, at least one step and at least one batch of images");
    }
    let dev = Device::Cpu;
    let mut config = demo_config();
    if args.image_size == 0 || !args.image_size.is_multiple_of(config.vision.patch_size) {
        bail!(
            "--image-size must be a positive multiple of the {}-pixel patch",
            config.vision.patch_size
        );
    }
    config.vision.image_size = args.image_size;
    let side = config.vision.image_size;
    let grid = config.vision.grid();
    let tok = ClipTokenizer::openai(config.text.max_position_embeddings);
    let pre = Preprocess::openai(side);

    let t0 = Instant::now();
    eprintln!(
        "radclip train: rendering {} phantom radiographs…",
        args.images
    );
    let items: Vec<Item> = (0..args.images)
        .into_par_iter()
        .map(|i| make_item(args.seed, i, side, grid))
        .collect();
    eprintln!(
        "radclip train: data ready in {:.0} s",
        t0.elapsed().as_secs_f64()
    );

    let used = corpus_tokens(&tok, args.seed);
    let net = Trainable::init(config.clone(), args.seed, Some(&used), &dev)?;
    let model = &net.model;
    let params = candle_nn::ParamsAdamW {
        lr: args.lr,
        weight_decay: 0.05,
        ..Default::default()
    };
    let mut opt = candle_nn::AdamW::new(net.var_list(), params)?;
    let logit_var = net
        .vars
        .iter()
        .find(|(n, _)| n == "logit_scale")
        .map(|(_, v)| v.clone())
        .context("no logit_scale variable")?;

    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0x5eed);
    // Nodules are the smallest finding (a few pixels at the model's input) and the last one learnt:
    // a share of every batch comes from studies that have one.
    let nodules: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, it)| it.case.has(Kind::Nodule))
        .map(|(i, _)| i)
        .collect();
    let grad = Fwd {
        grad: true,
        hidden_states: true,
        attentions: false,
    };
    let layers = config.vision.num_hidden_layers;
    let warmup = (args.steps / 20).max(1);
    let t_train = Instant::now();
    let mut avg = [0f64; 4];
    for step in 0..args.steps {
        // Warm-up, then cosine decay.
        let lr = if step < warmup {
            args.lr * (step + 1) as f64 / warmup as f64
        } else {
            let t = (step - warmup) as f64 / (args.steps - warmup).max(1) as f64;
            args.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        };
        opt.set_learning_rate(lr);

        let batch: Vec<&Item> = (0..args.batch)
            .map(|_| {
                let i = match nodules.choose(&mut rng) {
                    Some(&n) if rng.random_bool(SMALL_FINDING_SHARE) => n,
                    _ => rng.random_range(0..items.len()),
                };
                &items[i]
            })
            .collect();
        let px = pixels(&batch, &pre, side, &dev)?;

        // Texts: one report text per image, then the statements of the zero-shot decisions below.
        let mut texts: Vec<String> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut text_id = |t: String, texts: &mut Vec<String>| -> usize {
            *index.entry(t.clone()).or_insert_with(|| {
                texts.push(t);
                texts.len() - 1
            })
        };
        let report_ids: Vec<usize> = batch
            .iter()
            .map(|it| {
                let t = report_text(it, &mut rng);
                text_id(t, &mut texts)
            })
            .collect();
        // Dense zero-shot decisions: per finding, a few statement–negation pairs drawn for this step,
        // and every image judged on every one of them, so each step teaches every finding (the rare and
        // small ones too) in several phrasings at the cost of a few short texts.
        let mut dense: Vec<(usize, usize)> = Vec::new();
        for k in Kind::ALL {
            for _ in 0..PAIRS_PER_FINDING {
                let (pos, neg) = report::statement_pair(k, &mut rng);
                dense.push((text_id(pos, &mut texts), text_id(neg, &mut texts)));
            }
        }
        let mut dense_rows = PairRows::default();
        for (bi, it) in batch.iter().enumerate() {
            for (ki, k) in Kind::ALL.iter().enumerate() {
                let y = it.case.has(*k);
                for &(p, n) in &dense[ki * PAIRS_PER_FINDING..(ki + 1) * PAIRS_PER_FINDING] {
                    dense_rows.push(bi, p, n, y);
                }
            }
        }
        // Per image one pair in report language: a sentence of its own report (or a short prompt)
        // against a report's negation, for a finding it has most of the time.
        let mut sent_rows = PairRows::default();
        // Localisation rows: (image, positive text, coverage), for every finding with a mask.
        let mut loc: Vec<(usize, usize, Vec<f32>)> = Vec::new();
        for (bi, it) in batch.iter().enumerate() {
            let k = match it.case.findings.choose(&mut rng) {
                Some(f) if rng.random_bool(0.7) => f.kind,
                _ => Kind::ALL[rng.random_range(0..Kind::ALL.len())],
            };
            let found = it.case.findings.iter().position(|f| f.kind == k);
            let pos = match found {
                Some(fi) if rng.random_bool(0.6) => {
                    report::sentence(&it.case, &it.case.findings[fi], &mut rng)
                }
                _ => report::generic_positive(k, &mut rng),
            };
            let neg = report::negation(k, &mut rng).to_string();
            let (p, n) = (text_id(pos, &mut texts), text_id(neg, &mut texts));
            sent_rows.push(bi, p, n, found.is_some());
            for (f, cov) in it.case.findings.iter().zip(&it.coverage) {
                let total: f32 = cov.iter().sum();
                let ki = Kind::ALL.iter().position(|x| *x == f.kind).unwrap_or(0);
                let s = rng.random_range(0..PAIRS_PER_FINDING);
                if let Some(&(p, _)) = dense.get(ki * PAIRS_PER_FINDING + s)
                    && total > 0.0
                {
                    loc.push((bi, p, cov.iter().map(|v| v / total).collect()));
                }
            }
        }

        let tfeat = encode_texts_bucketed(model, &tok, &texts, grad, &dev)?;
        let vout = model.vision.forward(&px, grad)?;
        let ifeat = l2_normalize(&model.visual_projection.forward(&vout.pooled)?)?;
        let scale = net.model.logit_scale.exp()?;

        // Soft targets: same findings = a match.
        let labels: Vec<u8> = batch.iter().map(|it| label_vec(&it.case)).collect();
        let b = batch.len();
        let mut target = vec![0f32; b * b];
        for i in 0..b {
            let same: Vec<usize> = (0..b).filter(|&j| labels[j] == labels[i]).collect();
            for &j in &same {
                target[i * b + j] = 1.0 / same.len() as f32;
            }
        }
        let target = Tensor::from_vec(target, (b, b), &dev)?;
        let rid = Tensor::from_vec(
            report_ids.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            b,
            &dev,
        )?;
        let l_clip = soft_clip_loss(&ifeat, &tfeat.index_select(&rid, 0)?, &scale, &target)?;

        let l_dense = dense_rows.loss(&ifeat, &tfeat, &scale, &dev)?;
        let l_sent = sent_rows.loss(&ifeat, &tfeat, &scale, &dev)?;
        let l_pair = (&l_dense + (&l_sent * 0.5)?)?;

        let l_loc = if loc.is_empty() {
            Tensor::new(0f32, &dev)?
        } else {
            let last_in = vout
                .encoder
                .hidden_states
                .get(layers - 1)
                .context("missing hidden state")?;
            let li: Vec<u32> = loc.iter().map(|(b, _, _)| *b as u32).collect();
            let lt: Vec<u32> = loc.iter().map(|(_, t, _)| *t as u32).collect();
            let cov: Vec<f32> = loc.iter().flat_map(|(_, _, c)| c.iter().copied()).collect();
            let n = li.len();
            let li = Tensor::from_vec(li, n, &dev)?;
            let lt = Tensor::from_vec(lt, n, &dev)?;
            let patches = radclip_clip::heatmap::maskclip_features(
                model,
                &last_in.index_select(&li, 0)?,
                grad,
            )?;
            let patches = l2_normalize(&patches)?;
            let cov = Tensor::from_vec(cov, (n, grid * grid), &dev)?;
            patch_loss(&patches, &tfeat.index_select(&lt, 0)?, &scale, &cov)?
        };

        let loss = ((&l_clip + &l_pair)? + (&l_loc * 0.5)?)?;
        opt.backward_step(&loss)?;
        // CLIP's clamp of the logit scale at 100.
        let ls = logit_var.as_tensor().to_scalar::<f32>()?;
        if ls > 100f32.ln() {
            logit_var.set(&Tensor::new(100f32.ln(), &dev)?)?;
        }

        for (a, t) in avg.iter_mut().zip([&loss, &l_clip, &l_pair, &l_loc]) {
            *a = 0.9 * *a + 0.1 * f64::from(t.to_scalar::<f32>()?);
        }
        if step % 25 == 0 || step + 1 == args.steps {
            let el = t_train.elapsed().as_secs_f64();
            let rate = ((step + 1) * args.batch) as f64 / el;
            let eta = (args.steps - step - 1) as f64 * el / (step + 1) as f64;
            eprintln!(
                "step {step:>5}/{}  loss {:.3} (clip {:.3} pair {:.3} loc {:.3})  scale {:.1}  lr {lr:.2e}  {rate:.0} img/s  eta {:.0} min",
                args.steps,
                avg[0],
                avg[1],
                avg[2],
                avg[3],
                ls.exp(),
                eta / 60.0
            );
        }
        if (step + 1) % 500 == 0 {
            net.save(&args.out, DType::F16)?;
        }
    }
    net.save(&args.out, DType::F16)?;
    let minutes = t0.elapsed().as_secs_f64() / 60.0;
    eprintln!(
        "radclip train: wrote {} after {minutes:.1} min",
        args.out.display()
    );
    write_training_record(&args.out, args, minutes)?;
    Ok(())
}

fn write_training_record(out: &Path, args: &TrainArgs, minutes: f64) -> anyhow::Result<()> {
    let rec = serde_json::json!({
        "command": format!(
            "{}radclip train --out {} --seed {} --images {} --steps {} --batch {} --lr {} --image-size {}",
            // The matrix-product library changes the speed (and the last bits), so it is part of the record.
            std::env::var("RADCLIP_BLAS").map(|b| format!("RADCLIP_BLAS={b} ")).unwrap_or_default(),
            out.display(), args.seed, args.images, args.steps, args.batch, args.lr,
            args.image_size
        ),
        "seed": args.seed,
        "images": args.images,
        "steps": args.steps,
        "batch": args.batch,
        "image_size": args.image_size,
        "lr": args.lr,
        "minutes": (minutes * 10.0).round() / 10.0,
        "phantom_generator_version": radclip_phantom::GENERATOR_VERSION,
        "threads": rayon::current_num_threads(),
    });
    std::fs::write(out.join("training.json"), format!("{rec:#}\n"))
        .with_context(|| format!("cannot write {}", out.join("training.json").display()))
}
