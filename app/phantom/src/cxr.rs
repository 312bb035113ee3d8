//! PA chest radiograph phantoms: anatomy with patient-to-patient variation, findings with a pixel mask
//! each, rendered to 12-bit MONOCHROME2 pixels (dense = bright, as a radiograph is displayed).
//!
//! Geometry is in resolution-free units (image width = 1), so one case renders at any size with the same
//! truth: the demo study at 512² and the training images at the model's input size.

use rand::Rng;
use rand::seq::SliceRandom;
use serde::Serialize;

/// A finding's kind. The names are those of the reports and of the demo model's `findings.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Nodule,
    Mass,
    PleuralEffusion,
    Pneumothorax,
    Consolidation,
    Cardiomegaly,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Nodule,
        Kind::Mass,
        Kind::PleuralEffusion,
        Kind::Pneumothorax,
        Kind::Consolidation,
        Kind::Cardiomegaly,
    ];

    /// Human name, as in reports and finding lists.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Nodule => "nodule",
            Kind::Mass => "mass",
            Kind::PleuralEffusion => "pleural effusion",
            Kind::Pneumothorax => "pneumothorax",
            Kind::Consolidation => "consolidation",
            Kind::Cardiomegaly => "cardiomegaly",
        }
    }

    /// File-name form.
    pub fn slug(self) -> &'static str {
        match self {
            Kind::Nodule => "nodule",
            Kind::Mass => "mass",
            Kind::PleuralEffusion => "pleural_effusion",
            Kind::Pneumothorax => "pneumothorax",
            Kind::Consolidation => "consolidation",
            Kind::Cardiomegaly => "cardiomegaly",
        }
    }

    /// How often a generated study has it (before the "normal" draw).
    fn prevalence(self) -> f64 {
        match self {
            Kind::Nodule => 0.2,
            Kind::Mass => 0.12,
            Kind::PleuralEffusion => 0.2,
            Kind::Pneumothorax => 0.15,
            Kind::Consolidation => 0.2,
            Kind::Cardiomegaly => 0.18,
        }
    }
}

/// The patient's side (a PA image shows the patient's right on the image's left).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Right,
    Left,
}

impl Side {
    /// −1 for the patient's right (image left), +1 for the left.
    fn sign(self) -> f64 {
        match self {
            Side::Right => -1.0,
            Side::Left => 1.0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Side::Right => "right",
            Side::Left => "left",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Zone {
    Upper,
    Middle,
    Lower,
}

impl Zone {
    pub fn name(self) -> &'static str {
        match self {
            Zone::Upper => "upper",
            Zone::Middle => "middle",
            Zone::Lower => "lower",
        }
    }
}

/// One finding of a case, with what a report says about it. Geometry is in image-width units.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub kind: Kind,
    /// None for cardiomegaly (central).
    pub side: Option<Side>,
    pub zone: Option<Zone>,
    /// Centre (x, y) in image-width units.
    pub center: (f64, f64),
    /// Nodule/mass diameter; effusion fluid height; pneumothorax rim; consolidation extent.
    pub size: f64,
    /// "small", "moderate", "large" where radiologists grade it.
    pub severity: Option<&'static str>,
    #[serde(skip)]
    shape: Shape,
}

#[derive(Debug, Clone, Default)]
enum Shape {
    #[default]
    None,
    Disc {
        r: f64,
        lobes: [(f64, f64); 2],
    },
    Blob {
        bumps: Vec<(f64, f64, f64)>,
    },
}

/// The patient: anatomy with per-patient variation (positioning, size, exposure, noise).
#[derive(Debug, Clone, Serialize)]
pub struct Anatomy {
    /// Centre shift (x, y) and scale of the thorax in the image.
    pub shift: (f64, f64),
    pub scale: f64,
    /// Rotation in degrees (positioning).
    pub rotation_deg: f64,
    /// Lung half-width and half-height.
    pub lung: (f64, f64),
    /// Cardiothoracic ratio (heart width / thoracic width).
    pub ctr: f64,
    /// Diaphragm dome heights (right, left).
    pub dome: (f64, f64),
    pub exposure: f64,
    pub noise: f64,
    /// Seed of the texture (vessels, ribs' jitter, noise).
    pub texture_seed: u64,
}

/// One chest radiograph: the patient and the findings.
#[derive(Debug, Clone, Serialize)]
pub struct CxrCase {
    pub anatomy: Anatomy,
    pub findings: Vec<Finding>,
}

/// Pixels and one mask per finding (same order as `case.findings`).
pub struct CxrImage {
    pub size: usize,
    /// 12-bit values, row-major.
    pub pixels: Vec<u16>,
    pub masks: Vec<Vec<bool>>,
}

impl Anatomy {
    fn sample(rng: &mut impl Rng) -> Self {
        Anatomy {
            shift: (
                rng.random_range(-0.025..0.025),
                rng.random_range(-0.03..0.02),
            ),
            scale: rng.random_range(0.9..1.06),
            rotation_deg: rng.random_range(-3.0..3.0),
            lung: (rng.random_range(0.13..0.16), rng.random_range(0.27..0.31)),
            ctr: rng.random_range(0.40..0.49),
            dome: (rng.random_range(0.21..0.25), rng.random_range(0.24..0.28)),
            exposure: rng.random_range(0.85..1.15),
            noise: rng.random_range(12.0..30.0),
            texture_seed: rng.random(),
        }
    }

    /// Image (u, v) → thorax coordinates (x right on the image, y down; origin mid-chest).
    fn to_local(&self, u: f64, v: f64) -> (f64, f64) {
        let (x, y) = (u - 0.5 - self.shift.0, v - 0.5 - self.shift.1);
        let (s, c) = self.rotation_deg.to_radians().sin_cos();
        ((c * x + s * y) / self.scale, (-s * x + c * y) / self.scale)
    }

    /// Thorax coordinates → image (u, v).
    fn to_image(&self, x: f64, y: f64) -> (f64, f64) {
        let (x, y) = (x * self.scale, y * self.scale);
        let (s, c) = self.rotation_deg.to_radians().sin_cos();
        (
            c * x - s * y + 0.5 + self.shift.0,
            s * x + c * y + 0.5 + self.shift.1,
        )
    }

    fn lung_center(&self, side: Side) -> (f64, f64) {
        (side.sign() * 0.175, -0.04)
    }

    fn dome_base(&self, side: Side) -> f64 {
        match side {
            Side::Right => self.dome.0,
            Side::Left => self.dome.1,
        }
    }

    /// Diaphragm height under x on `side` (a dome, highest mid-lung).
    fn diaphragm(&self, side: Side, x: f64) -> f64 {
        let c = self.lung_center(side).0;
        let t = ((x - c) / 0.2).clamp(-1.0, 1.0);
        self.dome_base(side) - 0.06 * (1.0 - t * t)
    }

    /// Whether thorax point (x, y) is in the lung field on `side` (the lung as the radiograph shows it,
    /// heart excluded): rounded apex, straighter sides and a sharp costophrenic angle where the lateral
    /// wall meets the dome.
    pub(crate) fn in_lung(&self, side: Side, x: f64, y: f64) -> bool {
        let (cx, cy) = self.lung_center(side);
        let (rx, ry) = self.lung;
        let dx = ((x - cx) / rx).abs();
        let dy = (y - cy) / ry;
        let inside = if dy < 0.0 {
            dx * dx + dy * dy <= 1.0
        } else {
            dx.powi(4) + dy.powi(4) <= 1.0
        };
        inside && y < self.diaphragm(side, x) && side.sign() * x > 0.05 && !self.in_heart(x, y)
    }

    /// Lateral extent of the thorax (lung outer walls), for the cardiothoracic ratio.
    pub fn thoracic_width(&self) -> f64 {
        2.0 * (0.175 + self.lung.0)
    }

    fn heart_radius(&self) -> f64 {
        self.ctr * self.thoracic_width() / 2.0
    }

    fn in_heart(&self, x: f64, y: f64) -> bool {
        let rx = self.heart_radius();
        let (cx, cy, ry) = (0.035, 0.13, 0.12);
        ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2) <= 1.0 && y < self.dome.1 + 0.02
    }

    /// Zone of a point in a lung by thirds of the lung's height.
    fn zone(&self, side: Side, y: f64) -> Zone {
        let top = self.lung_center(side).1 - self.lung.1;
        let bottom = self.dome_base(side);
        let t = (y - top) / (bottom - top);
        if t < 1.0 / 3.0 {
            Zone::Upper
        } else if t < 2.0 / 3.0 {
            Zone::Middle
        } else {
            Zone::Lower
        }
    }
}

/// Whether (x, y) is inside the collapsed lung of a pneumothorax of rim fraction `f` on `side`: the lung
/// shrunk towards its hilum-base, leaving air at the apex and along the lateral wall.
fn in_collapsed(a: &Anatomy, side: Side, f: f64, x: f64, y: f64) -> bool {
    let (px, py) = (side.sign() * 0.07, 0.12);
    let k = 1.0 - f;
    a.in_lung(side, px + (x - px) / k, py + (y - py) / k)
}

/// Top of the fluid of an effusion of height `h` at x: a meniscus climbing the lateral wall.
fn effusion_top(a: &Anatomy, side: Side, h: f64, x: f64) -> f64 {
    let t = ((side.sign() * x - 0.05) / (0.175 + a.lung.0 - 0.05)).clamp(0.0, 1.0);
    a.dome_base(side) - h * (0.55 + 0.75 * t * t)
}

/// Whether (x, y) is aerated lung given the findings placed so far (not pneumothorax, not fluid).
fn aerated(a: &Anatomy, placed: &[Finding], side: Side, x: f64, y: f64) -> bool {
    a.in_lung(side, x, y)
        && placed
            .iter()
            .filter(|f| f.side == Some(side))
            .all(|f| match f.kind {
                Kind::Pneumothorax => in_collapsed(a, side, f.size, x, y),
                Kind::PleuralEffusion => y < effusion_top(a, side, f.size, x) - 0.01,
                _ => true,
            })
}

fn pick_side(rng: &mut impl Rng) -> Side {
    if rng.random_bool(0.5) {
        Side::Right
    } else {
        Side::Left
    }
}

/// A random point inside the lung on `side`, at least `margin` from its edges (in thorax units), and
/// away from the heart. `zone` restricts it when given.
fn point_in_lung(
    a: &Anatomy,
    placed: &[Finding],
    side: Side,
    margin: f64,
    zone: Option<Zone>,
    rng: &mut impl Rng,
) -> Option<(f64, f64)> {
    let (cx, cy) = a.lung_center(side);
    for _ in 0..400 {
        let x = cx + rng.random_range(-a.lung.0..a.lung.0);
        let y = cy + rng.random_range(-a.lung.1..a.lung.1);
        let ok = (0..8).all(|k| {
            let t = f64::from(k) * std::f64::consts::FRAC_PI_4;
            aerated(a, placed, side, x + margin * t.cos(), y + margin * t.sin())
        }) && aerated(a, placed, side, x, y);
        if ok && zone.is_none_or(|z| a.zone(side, y) == z) {
            return Some((x, y));
        }
    }
    None
}

impl CxrCase {
    /// A random case: each finding with its prevalence, or none.
    pub fn sample(rng: &mut impl Rng) -> Self {
        let mut kinds: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|k| rng.random_bool(k.prevalence()))
            .collect();
        kinds.shuffle(rng);
        Self::with_findings(rng, &kinds)
    }

    /// A case with exactly these findings (where anatomy allows: a lesion that finds no room is left out).
    pub fn with_findings(rng: &mut impl Rng, kinds: &[Kind]) -> Self {
        let mut a = Anatomy::sample(rng);
        let mut findings = Vec::new();
        // The heart's size, air and fluid first: lesions are placed in the aerated lung they leave.
        let mut kinds = kinds.to_vec();
        kinds.sort_by_key(|k| match k {
            Kind::Cardiomegaly => 0,
            Kind::Pneumothorax => 1,
            Kind::PleuralEffusion => 2,
            _ => 3,
        });
        for kind in kinds {
            if let Some(f) = Self::make_finding(&mut a, &findings, kind, rng) {
                findings.push(f);
            }
        }
        CxrCase {
            anatomy: a,
            findings,
        }
    }

    fn make_finding(
        a: &mut Anatomy,
        placed: &[Finding],
        kind: Kind,
        rng: &mut impl Rng,
    ) -> Option<Finding> {
        let side = pick_side(rng);
        let lobes = |rng: &mut dyn rand::RngCore| {
            [
                (rng.random_range(0.0..0.18), rng.random_range(0.0..6.3)),
                (rng.random_range(0.0..0.1), rng.random_range(0.0..6.3)),
            ]
        };
        match kind {
            Kind::Nodule => {
                let r = rng.random_range(0.012..0.024);
                let (x, y) = point_in_lung(a, placed, side, r * 1.5, None, rng)?;
                Some(Finding {
                    kind,
                    side: Some(side),
                    zone: Some(a.zone(side, y)),
                    center: (x, y),
                    size: 2.0 * r,
                    severity: None,
                    shape: Shape::Disc {
                        r,
                        lobes: [(0.05, 0.0), (0.0, 0.0)],
                    },
                })
            }
            Kind::Mass => {
                let r = rng.random_range(0.04..0.065);
                let (x, y) = point_in_lung(a, placed, side, r * 0.9, None, rng)?;
                Some(Finding {
                    kind,
                    side: Some(side),
                    zone: Some(a.zone(side, y)),
                    center: (x, y),
                    size: 2.0 * r,
                    severity: None,
                    shape: Shape::Disc {
                        r,
                        lobes: lobes(rng),
                    },
                })
            }
            Kind::PleuralEffusion => {
                let (sev, h) = match rng.random_range(0..3) {
                    0 => ("small", rng.random_range(0.05..0.08)),
                    1 => ("moderate", rng.random_range(0.1..0.15)),
                    _ => ("large", rng.random_range(0.17..0.24)),
                };
                let cx = a.lung_center(side).0 + side.sign() * 0.05;
                Some(Finding {
                    kind,
                    side: Some(side),
                    zone: Some(Zone::Lower),
                    center: (cx, a.dome_base(side) - h / 2.0),
                    size: h,
                    severity: Some(sev),
                    shape: Shape::None,
                })
            }
            Kind::Pneumothorax => {
                let (sev, f) = match rng.random_range(0..3) {
                    0 => ("small", rng.random_range(0.1..0.16)),
                    1 => ("moderate", rng.random_range(0.18..0.26)),
                    _ => ("large", rng.random_range(0.28..0.38)),
                };
                let (cx, cy) = a.lung_center(side);
                Some(Finding {
                    kind,
                    side: Some(side),
                    zone: Some(Zone::Upper),
                    center: (cx + side.sign() * a.lung.0 * 0.4, cy - a.lung.1 * 0.6),
                    size: f,
                    severity: Some(sev),
                    shape: Shape::None,
                })
            }
            Kind::Consolidation => {
                let zone = [Zone::Upper, Zone::Middle, Zone::Lower][rng.random_range(0..3)];
                let (x, y) = point_in_lung(a, placed, side, 0.03, Some(zone), rng)?;
                let ext = rng.random_range(0.05..0.085);
                let bumps = (0..5)
                    .map(|_| {
                        (
                            x + rng.random_range(-ext..ext) * 0.7,
                            y + rng.random_range(-ext..ext) * 0.7,
                            ext * rng.random_range(0.35..0.6),
                        )
                    })
                    .collect();
                Some(Finding {
                    kind,
                    side: Some(side),
                    zone: Some(zone),
                    center: (x, y),
                    size: 2.0 * ext,
                    severity: None,
                    shape: Shape::Blob { bumps },
                })
            }
            Kind::Cardiomegaly => {
                a.ctr = rng.random_range(0.56..0.66);
                Some(Finding {
                    kind,
                    side: None,
                    zone: None,
                    center: (0.035, 0.13),
                    size: a.ctr,
                    severity: None,
                    shape: Shape::None,
                })
            }
        }
    }

    pub fn has(&self, kind: Kind) -> bool {
        self.findings.iter().any(|f| f.kind == kind)
    }

    /// Renders the case at `size`×`size`.
    pub fn render(&self, size: usize) -> CxrImage {
        render(self, size)
    }
}

/// Small deterministic generator for texture (independent of the case's sampling order).
struct Tex(u64);

impl Tex {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    fn gauss(&mut self) -> f64 {
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

fn smoothstep(e0: f64, e1: f64, x: f64) -> f64 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Draws a soft line segment of half-width `w` (thorax units) into `acc` where `keep` allows.
#[allow(clippy::too_many_arguments)]
fn line(
    acc: &mut [f32],
    n: usize,
    a: &Anatomy,
    p0: (f64, f64),
    p1: (f64, f64),
    w: f64,
    value: f32,
    keep: &dyn Fn(usize) -> bool,
) {
    let (u0, v0) = a.to_image(p0.0, p0.1);
    let (u1, v1) = a.to_image(p1.0, p1.1);
    let wn = w * a.scale;
    let nf = n as f64;
    let lo_x = ((u0.min(u1) - wn * 2.0) * nf).floor().max(0.0) as usize;
    let hi_x = (((u0.max(u1) + wn * 2.0) * nf).ceil() as usize).min(n);
    let lo_y = ((v0.min(v1) - wn * 2.0) * nf).floor().max(0.0) as usize;
    let hi_y = (((v0.max(v1) + wn * 2.0) * nf).ceil() as usize).min(n);
    let (dx, dy) = (u1 - u0, v1 - v0);
    let len2 = (dx * dx + dy * dy).max(1e-12);
    for r in lo_y..hi_y {
        let v = (r as f64 + 0.5) / nf;
        for c in lo_x..hi_x {
            let u = (c as f64 + 0.5) / nf;
            let t = (((u - u0) * dx + (v - v0) * dy) / len2).clamp(0.0, 1.0);
            let (px, py) = (u0 + t * dx - u, v0 + t * dy - v);
            let d = (px * px + py * py).sqrt();
            let i = r * n + c;
            if d < wn * 1.5 && keep(i) {
                acc[i] += value * (1.0 - smoothstep(wn * 0.5, wn * 1.5, d)) as f32;
            }
        }
    }
}

fn render(case: &CxrCase, n: usize) -> CxrImage {
    let a = &case.anatomy;
    let nf = n as f64;
    let mut tex = Tex(a.texture_seed);
    let mut dens = vec![0f32; n * n];
    let mut lung_mask = [vec![false; n * n], vec![false; n * n]];
    let mut masks: Vec<Vec<bool>> = vec![vec![false; n * n]; case.findings.len()];
    let sides = [Side::Right, Side::Left];

    let ptx: Vec<(usize, Side, f64)> = case
        .findings
        .iter()
        .enumerate()
        .filter(|(_, f)| f.kind == Kind::Pneumothorax)
        .filter_map(|(i, f)| f.side.map(|s| (i, s, f.size)))
        .collect();
    // The collapsed lung of a pneumothorax: the lung shrunk towards its hilum-base.
    let collapsed = |side: Side, f: f64, x: f64, y: f64| in_collapsed(a, side, f, x, y);
    let in_ptx = |side: Side, x: f64, y: f64| -> Option<(usize, f64)> {
        ptx.iter()
            .find(|(_, s, f)| *s == side && a.in_lung(side, x, y) && !collapsed(side, *f, x, y))
            .map(|(i, _, f)| (*i, *f))
    };

    // Base tissue: air, body, lungs, heart, mediastinum, abdomen.
    for r in 0..n {
        let v = (r as f64 + 0.5) / nf;
        for c in 0..n {
            let u = (c as f64 + 0.5) / nf;
            let (x, y) = a.to_local(u, v);
            let i = r * n + c;
            // Square shoulders: a superellipse.
            let body = (x / 0.45).powi(4) + ((y - 0.14) / 0.66).powi(4) <= 1.0
                || (x.abs() < 0.085 && y < -0.3);
            let mut d: f64 = if body { 0.74 } else { 0.02 };
            for (k, &side) in sides.iter().enumerate() {
                if a.in_lung(side, x, y) {
                    lung_mask[k][i] = true;
                    d = 0.2;
                }
            }
            // Mediastinum, with the aortic knob bulging to the left.
            if body && (x.abs() < 0.055 && y < 0.05) {
                d = d.max(0.8);
            }
            if ((x - 0.05) / 0.03).powi(2) + ((y + 0.13) / 0.035).powi(2) <= 1.0 {
                d = d.max(0.8);
            }
            if a.in_heart(x, y) {
                d = 0.85;
            }
            // Spine, seen through the mediastinum, with darker disc spaces.
            if x.abs() < 0.03 && body {
                let disc = ((y + 0.5) / 0.045).fract();
                d += if disc < 0.18 { 0.12 } else { 0.3 };
            }
            dens[i] = d as f32;
        }
    }

    // Vessels: branching trees from each hilum, inside the (collapsed) lung only.
    for (k, &side) in sides.iter().enumerate() {
        let s = side.sign();
        let mut stack: Vec<((f64, f64), f64, f64, u32)> = Vec::new();
        for _ in 0..7 {
            let ang = tex.range(-2.6, 2.6) * 0.5 + if s < 0.0 { std::f64::consts::PI } else { 0.0 };
            stack.push(((s * 0.09, -0.01 + tex.range(-0.04, 0.06)), ang, 0.0065, 0));
        }
        while let Some((p, ang, w, depth)) = stack.pop() {
            let len = tex.range(0.03, 0.06);
            let q = (p.0 + len * ang.cos(), p.1 + len * ang.sin());
            let lm = &lung_mask[k];
            let keep = |i: usize| {
                if !lm[i] {
                    return false;
                }
                let (u, v) = (((i % n) as f64 + 0.5) / nf, ((i / n) as f64 + 0.5) / nf);
                let (x, y) = a.to_local(u, v);
                in_ptx(side, x, y).is_none()
            };
            line(
                &mut dens,
                n,
                a,
                p,
                q,
                w,
                0.13 * (w / 0.0065) as f32 + 0.03,
                &keep,
            );
            if depth < 4 {
                for _ in 0..2 {
                    stack.push((q, ang + tex.range(-0.6, 0.6), w * 0.72, depth + 1));
                }
            }
        }
    }

    // Posterior ribs and clavicles.
    for side in sides {
        let s = side.sign();
        let x_end = 0.175 + a.lung.0 + 0.03;
        for k in 0..10 {
            let y0 = -0.36 + f64::from(k) * 0.063 + tex.range(-0.005, 0.005);
            let steps = 24;
            let mut prev: Option<(f64, f64)> = None;
            for j in 0..=steps {
                let t = 0.03 + (x_end - 0.03) * f64::from(j) / f64::from(steps);
                // Up from the spine, then curving down to the lateral wall.
                let y = y0 - 0.12 * (t - 0.03) + 1.1 * (t - 0.03).powi(2);
                let p = (s * t, y);
                if let Some(q) = prev {
                    line(&mut dens, n, a, q, p, 0.007, 0.12, &|_| true);
                }
                prev = Some(p);
            }
        }
        line(
            &mut dens,
            n,
            a,
            (s * 0.04, -0.31),
            (s * 0.29, -0.36),
            0.012,
            0.32,
            &|_| true,
        );
    }

    // Findings.
    for (fi, f) in case.findings.iter().enumerate() {
        let mask = &mut masks[fi];
        match (f.kind, &f.shape) {
            (Kind::Nodule | Kind::Mass, Shape::Disc { r, lobes }) => {
                let amp = if f.kind == Kind::Nodule { 0.42 } else { 0.5 };
                for_pixels(a, n, f.center, r * 1.4, |i, x, y| {
                    let (dx, dy) = (x - f.center.0, y - f.center.1);
                    let th = dy.atan2(dx);
                    let rr = r
                        * (1.0
                            + lobes[0].0 * (3.0 * th + lobes[0].1).sin()
                            + lobes[1].0 * (5.0 * th + lobes[1].1).sin());
                    let d = (dx * dx + dy * dy).sqrt();
                    if d < rr {
                        mask[i] = true;
                    }
                    dens[i] += (amp * (1.0 - smoothstep(rr * 0.75, rr * 1.05, d))) as f32;
                });
            }
            (Kind::Consolidation, Shape::Blob { bumps }) => {
                let side = f.side.unwrap_or(Side::Right);
                let reach = f.size;
                for_pixels(a, n, f.center, reach * 1.2, |i, x, y| {
                    if !a.in_lung(side, x, y) {
                        return;
                    }
                    let field: f64 = bumps
                        .iter()
                        .map(|&(bx, by, br)| {
                            (-((x - bx).powi(2) + (y - by).powi(2)) / (br * br)).exp()
                        })
                        .sum();
                    let o = smoothstep(0.35, 0.9, field);
                    if field > 0.5 {
                        mask[i] = true;
                    }
                    dens[i] += (0.4 * o) as f32;
                });
            }
            (Kind::PleuralEffusion, _) => {
                let side = f.side.unwrap_or(Side::Right);
                let h = f.size;
                let (cx, _) = a.lung_center(side);
                for_pixels(a, n, (cx, a.dome_base(side) - 0.15), 0.36, |i, x, y| {
                    if !a.in_lung(side, x, y) {
                        return;
                    }
                    let top = effusion_top(a, side, h, x);
                    if y > top {
                        mask[i] = true;
                        dens[i] = dens[i].max(0.74) + 0.02;
                    } else {
                        dens[i] += (0.3 * (1.0 - smoothstep(0.0, 0.015, top - y))) as f32;
                    }
                });
            }
            (Kind::Pneumothorax, _) => {
                let side = f.side.unwrap_or(Side::Right);
                let (cx, cy) = a.lung_center(side);
                for_pixels(a, n, (cx, cy), 0.36, |i, x, y| {
                    if in_ptx(side, x, y).is_some_and(|(j, _)| j == fi) {
                        mask[i] = true;
                        dens[i] = 0.1;
                    }
                });
                // The visceral pleural line at the collapsed lung's edge.
                for_pixels(a, n, (cx, cy), 0.36, |i, x, y| {
                    let edge = a.in_lung(side, x, y)
                        && collapsed(side, f.size, x, y)
                        && (0..4).any(|k| {
                            let t = f64::from(k) * std::f64::consts::FRAC_PI_2;
                            let e = 0.004;
                            !collapsed(side, f.size, x + e * t.cos(), y + e * t.sin())
                        });
                    if edge {
                        dens[i] += 0.22;
                    }
                });
            }
            (Kind::Cardiomegaly, _) => {
                for_pixels(a, n, (0.035, 0.13), 0.4, |i, x, y| {
                    if a.in_heart(x, y) {
                        mask[i] = true;
                    }
                });
            }
            _ => {}
        }
    }

    let dens = blur(&blur(&dens, n), n);
    let gain = 2900.0 * a.exposure;
    let pixels = dens
        .iter()
        .map(|&d| {
            let v = 180.0 + gain * f64::from(d).powf(0.9) + a.noise * tex.gauss();
            v.round().clamp(0.0, 4095.0) as u16
        })
        .collect();
    CxrImage {
        size: n,
        pixels,
        masks,
    }
}

/// Calls `f(index, x, y)` for every pixel whose thorax point lies within `reach` of `center` (a bounding
/// box in image space, so cost follows the finding's size, not the image's).
fn for_pixels(
    a: &Anatomy,
    n: usize,
    center: (f64, f64),
    reach: f64,
    mut f: impl FnMut(usize, f64, f64),
) {
    let (u, v) = a.to_image(center.0, center.1);
    let rr = reach * a.scale * 1.1;
    let nf = n as f64;
    let lo_c = ((u - rr) * nf).floor().max(0.0) as usize;
    let hi_c = (((u + rr) * nf).ceil().max(0.0) as usize).min(n);
    let lo_r = ((v - rr) * nf).floor().max(0.0) as usize;
    let hi_r = (((v + rr) * nf).ceil().max(0.0) as usize).min(n);
    for r in lo_r..hi_r {
        for c in lo_c..hi_c {
            let (x, y) = a.to_local((c as f64 + 0.5) / nf, (r as f64 + 0.5) / nf);
            f(r * n + c, x, y);
        }
    }
}

/// A [1 2 1]/4 blur in both directions (the detector's unsharpness).
fn blur(src: &[f32], n: usize) -> Vec<f32> {
    let mut tmp = vec![0f32; n * n];
    for r in 0..n {
        for c in 0..n {
            let l = src[r * n + c.saturating_sub(1)];
            let m = src[r * n + c];
            let rt = src[r * n + (c + 1).min(n - 1)];
            tmp[r * n + c] = 0.25 * l + 0.5 * m + 0.25 * rt;
        }
    }
    let mut out = vec![0f32; n * n];
    for r in 0..n {
        for c in 0..n {
            let t = tmp[r.saturating_sub(1) * n + c];
            let m = tmp[r * n + c];
            let b = tmp[(r + 1).min(n - 1) * n + c];
            out[r * n + c] = 0.25 * t + 0.5 * m + 0.25 * b;
        }
    }
    out
}

/// Measured truth of a rendered finding: pixel area, bounding box and centroid of its mask.
#[derive(Debug, Clone, Serialize)]
pub struct MaskStats {
    pub area_px: usize,
    /// (row0, col0, row1, col1), inclusive.
    pub bbox: Option<(usize, usize, usize, usize)>,
    pub centroid: Option<(f64, f64)>,
}

pub fn mask_stats(mask: &[bool], n: usize) -> MaskStats {
    let mut area = 0usize;
    let (mut r0, mut c0, mut r1, mut c1) = (usize::MAX, usize::MAX, 0, 0);
    let (mut sr, mut sc) = (0f64, 0f64);
    for (i, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
        let (r, c) = (i / n, i % n);
        area += 1;
        r0 = r0.min(r);
        c0 = c0.min(c);
        r1 = r1.max(r);
        c1 = c1.max(c);
        sr += r as f64;
        sc += c as f64;
    }
    MaskStats {
        area_px: area,
        bbox: (area > 0).then_some((r0, c0, r1, c1)),
        centroid: (area > 0).then(|| (sr / area as f64, sc / area as f64)),
    }
}
