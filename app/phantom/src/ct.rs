//! A chest CT phantom series with Hounsfield-correct tissues and a few lesions of known size and
//! position: air −1000, lung −850, fat −100, soft tissue/blood 40, liver 60, bone 250–700, and solid,
//! ground-glass and cystic lesions. Patient coordinates are DICOM's LPS in mm (x to the patient's left,
//! y posterior, z superior); rows run posterior, columns to the patient's left.

use std::path::Path;

use dicom_core::VR;
use dicom_dictionary_std::{tags, uids};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::dicom_out::{self, Builder, StudyIds, uid};
use crate::error::Result;

#[derive(Debug, Clone, Copy)]
pub struct CtOptions {
    pub size: usize,
    pub slices: usize,
    pub pixel_mm: f64,
    pub slice_mm: f64,
    pub seed: u64,
}

impl Default for CtOptions {
    fn default() -> Self {
        CtOptions {
            size: 256,
            slices: 64,
            pixel_mm: 1.4,
            slice_mm: 4.0,
            seed: 1,
        }
    }
}

/// A finding of the phantom: a sphere (a nodule, a cyst), so its mask is exact from these numbers; or
/// a layer of one lung's pleural space (`layer`: fluid behind, air in front), exact from its bounds.
#[derive(Debug, Clone, Serialize)]
pub struct Lesion {
    pub kind: &'static str,
    pub location: &'static str,
    /// Centre in patient coordinates (mm).
    pub center_mm: [f64; 3],
    pub diameter_mm: f64,
    pub hu: f64,
    /// For a pleural effusion or pneumothorax: the part of one lung it replaces.
    #[serde(skip)]
    pub layer: Option<Layer>,
    /// For consolidation or emphysema: the sphere only where it is lung (the build's width and depth
    /// scale patient points to the template's).
    #[serde(skip)]
    pub lung_only: Option<(f64, f64)>,
}

/// The part of a lung (template coordinates, front-to-back band `from_y..to_y`) a layer fills; the
/// build's scale maps patient points to the template.
#[derive(Debug, Clone, Copy)]
pub struct Layer {
    pub side: f64,
    pub from_y: f64,
    pub to_y: f64,
    pub width: f64,
    pub depth: f64,
}

impl Lesion {
    /// Whether patient point (x, y, z) mm is inside the lesion: the one test the image and the SEG share.
    fn contains(&self, x: f64, y: f64, z: f64) -> bool {
        if let Some(l) = &self.layer {
            let (tx, ty) = (x / l.width, y / l.depth);
            return tx * l.side > 0.0
                && (l.from_y..=l.to_y).contains(&ty)
                && hu(tx, ty, z, &Anatomy::default(), &[], &[]) == -850.0;
        }
        let c = self.center_mm;
        let r = self.diameter_mm / 2.0;
        let sphere = (x - c[0]).powi(2) + (y - c[1]).powi(2) + (z - c[2]).powi(2) <= r * r;
        match self.lung_only {
            Some((w, d)) => sphere && hu(x / w, y / d, z, &Anatomy::default(), &[], &[]) == -850.0,
            None => sphere,
        }
    }
}

/// The lesions of the phantom (fixed: the demo's radiologist knows where to look).
pub fn lesions() -> Vec<Lesion> {
    vec![
        Lesion {
            kind: "solid nodule",
            location: "right upper lobe",
            center_mm: [-70.0, -10.0, 62.0],
            diameter_mm: 12.0,
            hu: 30.0,
            layer: None,
            lung_only: None,
        },
        Lesion {
            kind: "solid nodule",
            location: "left lower lobe",
            center_mm: [78.0, 25.0, -22.0],
            diameter_mm: 20.0,
            hu: 40.0,
            layer: None,
            lung_only: None,
        },
        Lesion {
            kind: "ground-glass nodule",
            location: "right lower lobe",
            center_mm: [-88.0, 15.0, 2.0],
            diameter_mm: 18.0,
            hu: -550.0,
            layer: None,
            lung_only: None,
        },
        Lesion {
            kind: "cyst",
            location: "liver",
            center_mm: [-65.0, -5.0, -100.0],
            diameter_mm: 30.0,
            hu: 8.0,
            layer: None,
            lung_only: None,
        },
    ]
}

/// A patient's build, as the cohort varies it: the template body scaled across (x) and front to back
/// (y), and the scanner's noise (standard deviation in HU, roughly).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Anatomy {
    pub width: f64,
    pub depth: f64,
    pub noise_hu: f64,
}

impl Default for Anatomy {
    /// The demo's: the template itself.
    fn default() -> Self {
        Anatomy {
            width: 1.0,
            depth: 1.0,
            noise_hu: 6.0,
        }
    }
}

/// One CT phantom: its seed (UIDs, vessels, noise), build and lesions.
#[derive(Debug, Clone)]
pub struct CtCase {
    pub seed: u64,
    pub anatomy: Anatomy,
    pub lesions: Vec<Lesion>,
}

/// The lobe a point of a lung lies in, by height (and, on the right, front to back for the middle
/// lobe): a phantom's stand-in for the fissures.
fn lobe_at(x: f64, y: f64, z: f64) -> &'static str {
    if x < 0.0 {
        if z > 25.0 {
            "right upper lobe"
        } else if z > -20.0 && y < 10.0 {
            "right middle lobe"
        } else {
            "right lower lobe"
        }
    } else if z > 0.0 {
        "left upper lobe"
    } else {
        "left lower lobe"
    }
}

/// ("right" / "left", "upper" / "middle" / "lower") of a lobe's name; ("", "") for other places.
pub fn side_and_lobe(location: &str) -> (&'static str, &'static str) {
    let side = if location.starts_with("right") {
        "right"
    } else if location.starts_with("left") {
        "left"
    } else {
        ""
    };
    let lobe = ["upper", "middle", "lower"]
        .into_iter()
        .find(|l| location.contains(&format!("{l} lobe")))
        .unwrap_or("");
    (side, lobe)
}

/// Case `index` of the cohort of `seed`: a build; at times a pleural effusion, a pneumothorax,
/// consolidation or emphysema; and up to three nodules (solid or ground-glass, 4–30 mm), each wholly
/// inside a lung, clear of the other findings and within the scanned range. Deterministic from
/// (seed, index).
pub fn ct_case(seed: u64, index: u64, opts: &CtOptions) -> CtCase {
    let case_seed = seed
        .wrapping_mul(1_000_003)
        .wrapping_add(index)
        .wrapping_add(0x00C7_0000_0000);
    let mut rng = ChaCha8Rng::seed_from_u64(case_seed ^ 0x5EED);
    let anatomy = Anatomy {
        width: rng.random_range(0.88..1.08),
        depth: rng.random_range(0.88..1.1),
        noise_hu: rng.random_range(4.0..10.0),
    };
    let count = if rng.random_bool(0.3) {
        0
    } else {
        rng.random_range(1..=3)
    };
    let half_z = opts.slices as f64 * opts.slice_mm / 2.0;
    let lung = |x: f64, y: f64, z: f64| hu(x, y, z, &Anatomy::default(), &[], &[]) == -850.0;
    let mut lesions: Vec<Lesion> = Vec::new();
    // Pleural layers first (the nodules keep out of them): fluid in the back of a lung (supine),
    // air in front of one. The template lungs reach y = −87 in front and y = 97 behind.
    let layer = |kind: &'static str, behind: bool, depth_mm: f64, hu: f64, rng: &mut ChaCha8Rng| {
        let side = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
        let (from_y, to_y) = if behind {
            (97.0 - depth_mm, 200.0)
        } else {
            (-200.0, -87.0 + depth_mm)
        };
        let mid_y = if behind {
            97.0 - depth_mm / 2.0
        } else {
            -87.0 + depth_mm / 2.0
        };
        Lesion {
            kind,
            location: if side < 0.0 {
                "right pleural space"
            } else {
                "left pleural space"
            },
            center_mm: [side * 80.0 * anatomy.width, mid_y * anatomy.depth, 5.0],
            diameter_mm: depth_mm,
            hu,
            layer: Some(Layer {
                side,
                from_y,
                to_y,
                width: anatomy.width,
                depth: anatomy.depth,
            }),
            lung_only: None,
        }
    };
    if rng.random_bool(0.25) {
        let depth = rng.random_range(15.0..50.0f64).round();
        lesions.push(layer("pleural effusion", true, depth, 10.0, &mut rng));
    }
    if rng.random_bool(0.15) {
        let depth = rng.random_range(8.0..30.0f64).round();
        lesions.push(layer("pneumothorax", false, depth, -1000.0, &mut rng));
    }
    // Consolidation (dense lung, anywhere) and emphysema (lucent lung, in an upper lobe): a sphere of
    // lung around a point of it.
    for (kind, p, radius, hu_value, upper) in [
        ("consolidation", 0.15, 20.0..35.0f64, 35.0, false),
        ("emphysema", 0.15, 25.0..40.0, -950.0, true),
    ] {
        if !rng.random_bool(p) {
            continue;
        }
        let r: f64 = rng.random_range(radius).round();
        for _ in 0..400 {
            let side = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
            let t = [
                side * rng.random_range(50.0..130.0),
                rng.random_range(-70.0..80.0),
                if upper {
                    rng.random_range(40.0..110.0)
                } else {
                    rng.random_range(-60.0..110.0)
                },
            ];
            let centre = [t[0] * anatomy.width, t[1] * anatomy.depth, t[2]];
            let apart = lesions.iter().all(|l| {
                let d: f64 = (0..3)
                    .map(|k| (l.center_mm[k] - centre[k]).powi(2))
                    .sum::<f64>()
                    .sqrt();
                l.layer.is_some() || d > l.diameter_mm / 2.0 + r + 5.0
            });
            if lung(t[0], t[1], t[2]) && apart && centre[2].abs() + r < half_z - opts.slice_mm {
                lesions.push(Lesion {
                    kind,
                    location: lobe_at(t[0], t[1], t[2]),
                    center_mm: centre,
                    diameter_mm: 2.0 * r,
                    hu: hu_value,
                    layer: None,
                    lung_only: Some((anatomy.width, anatomy.depth)),
                });
                break;
            }
        }
    }
    for _ in 0..count {
        let solid = rng.random_bool(0.7);
        let diameter = if solid {
            rng.random_range(4.0..30.0f64)
        } else {
            rng.random_range(6.0..30.0f64)
        }
        .round();
        let r = diameter / 2.0;
        for _ in 0..400 {
            let side = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
            let t = [
                side * rng.random_range(40.0..140.0),
                rng.random_range(-80.0..90.0),
                rng.random_range(-70.0..120.0),
            ];
            // The whole sphere (its centre and six poles, 2 mm beyond) in template lung.
            let inside = [
                [0.0, 0.0, 0.0],
                [1.0, 0.0, 0.0],
                [-1.0, 0.0, 0.0],
                [0.0, 1.0, 0.0],
                [0.0, -1.0, 0.0],
                [0.0, 0.0, 1.0],
                [0.0, 0.0, -1.0],
            ]
            .iter()
            .all(|d| {
                lung(
                    t[0] + d[0] * (r + 2.0),
                    t[1] + d[1] * (r + 2.0),
                    t[2] + d[2] * (r + 2.0),
                )
            });
            let centre = [t[0] * anatomy.width, t[1] * anatomy.depth, t[2]];
            let apart = lesions.iter().all(|l| {
                if l.layer.is_some() {
                    // Clear of the layer: none of its poles in it.
                    return [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [0.0, 0.0]]
                        .iter()
                        .all(|d| {
                            !l.contains(
                                centre[0] + d[0] * (r + 3.0),
                                centre[1] + d[1] * (r + 3.0),
                                centre[2],
                            )
                        });
                }
                let d: f64 = (0..3)
                    .map(|k| (l.center_mm[k] - centre[k]).powi(2))
                    .sum::<f64>()
                    .sqrt();
                d > l.diameter_mm / 2.0 + r + 5.0
            });
            if inside && apart && centre[2].abs() + r < half_z - opts.slice_mm {
                lesions.push(Lesion {
                    kind: if solid {
                        "solid nodule"
                    } else {
                        "ground-glass nodule"
                    },
                    location: lobe_at(t[0], t[1], t[2]),
                    center_mm: centre,
                    diameter_mm: diameter,
                    hu: if solid {
                        rng.random_range(20.0..50.0f64).round()
                    } else {
                        rng.random_range(-650.0..-450.0f64).round()
                    },
                    layer: None,
                    lung_only: None,
                });
                break;
            }
        }
    }
    CtCase {
        seed: case_seed,
        anatomy,
        lesions,
    }
}

/// A radiologist's report of a case: each nodule with its size, lobe and images, an impression, and
/// the pertinent negatives.
fn case_report(ls: &[Lesion], slices_of: &dyn Fn(usize) -> Vec<usize>) -> String {
    let images = |i: usize| {
        let s = slices_of(i);
        match (s.first(), s.last()) {
            (Some(a), Some(b)) if a != b => format!("images {a}–{b}"),
            (Some(a), _) => format!("image {a}"),
            _ => "no image".into(),
        }
    };
    let side = |l: &Lesion| side_and_lobe(l.location).0;
    let grade = |l: &Lesion| match (l.kind, l.diameter_mm) {
        ("pleural effusion", d) if d < 25.0 => "Small",
        ("pleural effusion", d) if d < 40.0 => "Moderate",
        ("pleural effusion", _) => "Large",
        (_, d) if d < 15.0 => "Small",
        _ => "Moderate",
    };
    let mut impression: Vec<String> = Vec::new();
    let nodules: Vec<String> = ls
        .iter()
        .enumerate()
        .filter(|(_, l)| l.layer.is_none())
        .map(|(i, l)| {
            if l.lung_only.is_some() {
                let kind = format!("{}{}", l.kind[..1].to_uppercase(), &l.kind[1..]);
                impression.push(format!("{kind}, {}.", l.location));
                return format!("{kind} in the {} ({}).", l.location, images(i));
            }
            impression.push(format!(
                "{:.0} mm {}, {}.",
                l.diameter_mm, l.kind, l.location
            ));
            // "An 8 mm", "an 11 mm", "an 18 mm", "an 80 mm": as the number is said.
            let n = format!("{:.0}", l.diameter_mm);
            let an = n.starts_with('8') || n == "11" || n == "18";
            format!(
                "{} {n} mm {} in the {} ({}).",
                if an { "An" } else { "A" },
                l.kind,
                l.location,
                images(i)
            )
        })
        .collect();
    let lungs = if nodules.is_empty() {
        "The lungs are clear. No pulmonary nodule or mass.".to_string()
    } else {
        nodules.join(" ")
    };
    let mut pleura = Vec::new();
    for kind in ["pleural effusion", "pneumothorax"] {
        match ls.iter().find(|l| l.kind == kind) {
            Some(l) => {
                let s = format!("{} {} {kind}", grade(l), side(l));
                pleura.push(format!("{s}."));
                impression.push(format!("{s}."));
            }
            None => pleura.push(format!("No {kind}.")),
        }
    }
    if impression.is_empty() {
        impression.push("No pulmonary nodule.".into());
    }
    let impression: Vec<String> = impression
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{}. {s}", i + 1))
        .collect();
    format!(
        "FINDINGS:\nLungs: {lungs}\nPleura: {}\nIMPRESSION:\n{}\n",
        pleura.join(" "),
        impression.join("\n")
    )
}

/// Writes cases `first .. first + count` of the cohort of `opts.seed` into `out`, one folder each
/// (`PHANTOM-CT-<seed>-<index>`), every one a series as the demo's (`CT0001.dcm`…, `seg.dcm`,
/// `truth.json`) plus `report.txt`; `truth.json` also gives each lesion's side and lobe and the case's
/// build. Returns each case's folder and lesions.
pub fn write_ct_cohort(
    out: &Path,
    opts: &CtOptions,
    first: u64,
    count: u64,
) -> Result<Vec<(std::path::PathBuf, Vec<Lesion>)>> {
    let mut written = Vec::new();
    for index in first..first + count {
        let case = ct_case(opts.seed, index, opts);
        let name = format!("PHANTOM-CT-{}-{index:04}", opts.seed);
        let dir = out.join(&name);
        write_case(&dir, opts, &case, &name, true)?;
        written.push((dir, case.lesions));
    }
    Ok(written)
}

fn ell(x: f64, y: f64, cx: f64, cy: f64, rx: f64, ry: f64) -> f64 {
    ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2)
}

/// Diaphragm height (mm) under (x, y): domes, the right one (x < 0) higher.
fn diaphragm(x: f64, y: f64) -> f64 {
    let base = if x < 0.0 { -62.0 } else { -72.0 };
    let t = ell(x.abs(), y, 75.0, 0.0, 90.0, 90.0).min(1.0);
    base + 30.0 * (1.0 - t)
}

struct Vessel {
    a: [f64; 3],
    b: [f64; 3],
    r: f64,
}

fn vessels(rng: &mut ChaCha8Rng) -> Vec<Vessel> {
    let mut out = Vec::new();
    for side in [-1.0, 1.0] {
        let mut stack: Vec<([f64; 3], [f64; 3], f64, u32)> = (0..6)
            .map(|_| {
                let d = [
                    side * rng.random_range(0.3..1.0),
                    rng.random_range(-0.6..0.6),
                    rng.random_range(-0.9..0.9),
                ];
                ([side * 35.0, 0.0, rng.random_range(-20.0..20.0)], d, 3.5, 0)
            })
            .collect();
        while let Some((p, d, r, depth)) = stack.pop() {
            let norm = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt().max(1e-6);
            let len = rng.random_range(20.0..40.0);
            let q = [
                p[0] + d[0] / norm * len,
                p[1] + d[1] / norm * len,
                p[2] + d[2] / norm * len,
            ];
            out.push(Vessel { a: p, b: q, r });
            if depth < 3 {
                for _ in 0..2 {
                    let nd = [
                        d[0] / norm + rng.random_range(-0.5..0.5),
                        d[1] / norm + rng.random_range(-0.5..0.5),
                        d[2] / norm + rng.random_range(-0.5..0.5),
                    ];
                    stack.push((q, nd, r * 0.7, depth + 1));
                }
            }
        }
    }
    out
}

fn seg_dist2(p: [f64; 3], v: &Vessel) -> f64 {
    let ab = [v.b[0] - v.a[0], v.b[1] - v.a[1], v.b[2] - v.a[2]];
    let ap = [p[0] - v.a[0], p[1] - v.a[1], p[2] - v.a[2]];
    let l2 = (ab[0] * ab[0] + ab[1] * ab[1] + ab[2] * ab[2]).max(1e-9);
    let t = ((ap[0] * ab[0] + ap[1] * ab[1] + ap[2] * ab[2]) / l2).clamp(0.0, 1.0);
    let d = [ap[0] - t * ab[0], ap[1] - t * ab[1], ap[2] - t * ab[2]];
    d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
}

/// Hounsfield units at patient point (x, y, z), without noise.
fn hu(x: f64, y: f64, z: f64, a: &Anatomy, vs: &[Vessel], ls: &[Lesion]) -> f64 {
    // Lesions are placed in patient coordinates; the body is the template's, scaled.
    let (px, py) = (x, y);
    let (x, y) = (x / a.width, y / a.depth);
    let body = ell(x, y, 0.0, 0.0, 165.0, 118.0);
    if body > 1.0 {
        return -1000.0;
    }
    if let Some(l) = ls.iter().find(|l| l.contains(px, py, z)) {
        return l.hu;
    }
    // Subcutaneous fat, then muscle.
    if ell(x, y, 0.0, 0.0, 157.0, 110.0) > 1.0 {
        return -100.0;
    }
    // Spine: vertebral body (cortex and cancellous bone), canal, posterior arch.
    let vb = ell(x, y, 0.0, 70.0, 20.0, 18.0);
    if vb <= 1.0 {
        return if vb > 0.8 { 700.0 } else { 250.0 };
    }
    let canal = ell(x, y, 0.0, 97.0, 9.0, 8.0);
    if canal <= 1.0 {
        return 10.0;
    }
    if ell(x, y, 0.0, 100.0, 22.0, 16.0) <= 1.0 && canal > 1.0 {
        return 500.0;
    }
    // Ribs: arcs just inside the chest wall, one every 26 mm of height.
    let ring = ell(x, y, 0.0, 5.0, 150.0, 103.0);
    if (0.88..0.97).contains(&ring) && z > -110.0 {
        let ang = y.atan2(x);
        let phase = ((z + 12.0 * ang.sin()) / 26.0).rem_euclid(1.0);
        if phase < 0.32 {
            return if !(0.9..0.95).contains(&ring) {
                650.0
            } else {
                300.0
            };
        }
    }
    // Sternum.
    if (x.abs() < 14.0) && (-108.0..-96.0).contains(&y) && (-50.0..70.0).contains(&z) {
        return 450.0;
    }
    // Descending aorta and, higher, the arch.
    if ell(x, y, 22.0, 48.0, 13.0, 13.0) <= 1.0 && z < 55.0 {
        return 45.0;
    }
    if (55.0..75.0).contains(&z)
        && ell(x, y, 8.0, 10.0, 30.0, 45.0) <= 1.0
        && ell(x, y, 8.0, 10.0, 18.0, 32.0) > 1.0
    {
        return 45.0;
    }
    let dia = diaphragm(x, y);
    if z < dia {
        // Upper abdomen: liver on the right, spleen and stomach on the left.
        if x < 25.0 && ell(x, y, -45.0, 0.0, 105.0, 95.0) <= 1.0 {
            return 60.0;
        }
        if ell(x, y, 70.0, 45.0, 35.0, 45.0) <= 1.0 {
            return 48.0;
        }
        if ell(x, y, 55.0, -40.0, 40.0, 30.0) <= 1.0 {
            return if z > dia - 25.0 && y < -45.0 {
                -1000.0
            } else {
                25.0
            };
        }
        return 40.0;
    }
    // Heart with its fat pad.
    let h = ((x - 18.0) / 58.0).powi(2) + ((y + 22.0) / 48.0).powi(2) + ((z + 25.0) / 52.0).powi(2);
    if h <= 1.0 {
        return 40.0;
    }
    if h <= 1.12 {
        return -90.0;
    }
    // Mediastinum.
    if x.abs() < 30.0 && y < 45.0 && y > -95.0 && z > -20.0 {
        return if ell(x, y, -5.0, 0.0, 8.0, 8.0) <= 1.0 && z > 20.0 {
            -1000.0
        } else {
            35.0
        };
    }
    // Lungs, with their vessels.
    for side in [-1.0f64, 1.0] {
        let l = ((x - side * 80.0) / 70.0).powi(2)
            + ((y - 5.0) / 92.0).powi(2)
            + ((z - 5.0) / 125.0).powi(2);
        if l <= 1.0 && side * x > 32.0 {
            let p = [x, y, z];
            if vs.iter().any(|v| seg_dist2(p, v) <= v.r * v.r) {
                return 40.0;
            }
            return -850.0;
        }
    }
    40.0
}

/// A lesion's mask on one slice it crosses (indices from 0), with the slice's SOP instance and position.
struct LesionSlice {
    lesion: usize,
    slice: usize,
    sop: String,
    position: [f64; 3],
    mask: Vec<bool>,
}

/// The coded meaning of a lesion's mask (SNOMED CT): (category, property type).
fn lesion_codes(l: &Lesion) -> (dicom_out::Code, dicom_out::Code) {
    let abnormal = dicom_out::MORPHOLOGICALLY_ABNORMAL;
    if l.kind == "cyst" {
        (abnormal, ("441457006", "SCT", "Cyst"))
    } else if l.kind == "pleural effusion" {
        (abnormal, ("60046008", "SCT", "Pleural effusion"))
    } else if l.kind == "pneumothorax" {
        (abnormal, ("36118008", "SCT", "Pneumothorax"))
    } else if l.kind == "consolidation" {
        (abnormal, ("95436008", "SCT", "Lung consolidation"))
    } else if l.kind == "emphysema" {
        (abnormal, ("87433001", "SCT", "Pulmonary emphysema"))
    } else {
        (abnormal, ("27925004", "SCT", "Nodule"))
    }
}

/// Writes the demo series into `dir` as `CT0001.dcm`… (explicit VR little endian, unsigned with
/// intercept −1024 as most scanners store CT), the lesions' masks as `seg.dcm` (one frame per lesion
/// and slice it crosses) and `truth.json` with the lesions. Returns the lesions.
pub fn write_ct_series(dir: &Path, opts: &CtOptions) -> Result<Vec<Lesion>> {
    let case = CtCase {
        seed: opts.seed,
        anatomy: Anatomy::default(),
        lesions: lesions(),
    };
    write_case(
        dir,
        opts,
        &case,
        &format!("PHANTOM-CT-{}", opts.seed),
        false,
    )?;
    Ok(case.lesions)
}

fn write_case(
    dir: &Path,
    opts: &CtOptions,
    case: &CtCase,
    patient: &str,
    cohort: bool,
) -> Result<()> {
    if !(16..=2048).contains(&opts.size) || !(1..=1024).contains(&opts.slices) {
        return Err(crate::Error::Input(format!(
            "a CT of {}² × {} slices is outside 16–2048 pixels and 1–1024 slices",
            opts.size, opts.slices
        )));
    }
    if !(opts.pixel_mm > 0.0 && opts.slice_mm > 0.0) {
        return Err(crate::Error::Input(
            "pixel and slice spacing must be positive".into(),
        ));
    }
    let dir = dicom_out::ensure_dir(dir)?;
    let mut rng = ChaCha8Rng::seed_from_u64(case.seed);
    let vs = vessels(&mut rng);
    let ls = &case.lesions;
    let seed = case.seed;
    let a = &case.anatomy;
    let ids = StudyIds {
        patient_name: format!(
            "SYNTHETIC^{}",
            patient.replace("PHANTOM-CT-", "PHANTOM CT ")
        ),
        patient_id: patient.to_string(),
        sex: "O",
        birth_date: "19700101".into(),
        study_uid: uid(&[seed, 0xC7, 1]),
        study_date: "20260101".into(),
        accession: format!("SYNCT{seed:04}"),
    };
    let series = uid(&[seed, 0xC7, 2]);
    let frame_of_ref = uid(&[seed, 0xC7, 3]);
    let n = opts.size;
    let half = n as f64 / 2.0;
    let rows = u16::try_from(n).map_err(|_| crate::Error::Input("CT size too large".into()))?;
    // Every slice a lesion crosses, for the SEG.
    let mut masks: Vec<LesionSlice> = Vec::new();
    for s in 0..opts.slices {
        // Slice 1 is the most superior, as scanners number a chest from the top.
        let z = (opts.slices as f64 / 2.0 - s as f64 - 0.5) * opts.slice_mm;
        let mut px = Vec::with_capacity(n * n);
        let mut noise = ChaCha8Rng::seed_from_u64(seed ^ ((s as u64 + 1) << 20));
        for r in 0..n {
            let y = (r as f64 + 0.5 - half) * opts.pixel_mm;
            for c in 0..n {
                let x = (c as f64 + 0.5 - half) * opts.pixel_mm;
                let g: f64 =
                    (0..4).map(|_| noise.random_range(-1.0..1.0)).sum::<f64>() * a.noise_hu;
                let v = hu(x, y, z, a, &vs, ls) + g + 1024.0;
                px.push(v.round().clamp(0.0, 4095.0) as u16);
            }
        }
        let sop = uid(&[seed, 0xC7, 100 + s as u64]);
        let origin = -half * opts.pixel_mm + opts.pixel_mm / 2.0;
        for (li, l) in ls.iter().enumerate() {
            if l.layer.is_none() && (z - l.center_mm[2]).abs() > l.diameter_mm / 2.0 {
                continue;
            }
            // The pixel centres `hu` was sampled at.
            let mask: Vec<bool> = (0..n * n)
                .map(|i| {
                    let y = ((i / n) as f64 + 0.5 - half) * opts.pixel_mm;
                    let x = ((i % n) as f64 + 0.5 - half) * opts.pixel_mm;
                    l.contains(x, y, z)
                })
                .collect();
            if mask.iter().any(|m| *m) {
                masks.push(LesionSlice {
                    lesion: li,
                    slice: s,
                    sop: sop.clone(),
                    position: [origin, origin, z],
                    mask,
                });
            }
        }
        let mut b = Builder::new();
        b.patient_study(&ids)
            .s(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE)
            .s(tags::SOP_INSTANCE_UID, VR::UI, &sop)
            .s(tags::IMAGE_TYPE, VR::CS, "DERIVED\\PRIMARY\\AXIAL")
            .s(tags::MODALITY, VR::CS, "CT")
            .s(
                tags::STUDY_DESCRIPTION,
                VR::LO,
                "SYNTHETIC CHEST CT PHANTOM",
            )
            .s(
                tags::SERIES_DESCRIPTION,
                VR::LO,
                &format!("Axial {} mm (synthetic, not a patient)", opts.slice_mm),
            )
            .s(tags::BODY_PART_EXAMINED, VR::CS, "CHEST")
            .s(tags::SERIES_INSTANCE_UID, VR::UI, &series)
            .s(tags::SERIES_NUMBER, VR::IS, "1")
            .s(tags::INSTANCE_NUMBER, VR::IS, &format!("{}", s + 1))
            .s(tags::KVP, VR::DS, "120")
            .s(tags::SLICE_THICKNESS, VR::DS, &format!("{}", opts.slice_mm))
            .s(tags::PATIENT_POSITION, VR::CS, "HFS")
            .s(tags::FRAME_OF_REFERENCE_UID, VR::UI, &frame_of_ref)
            .s(tags::POSITION_REFERENCE_INDICATOR, VR::LO, "")
            .s(
                tags::IMAGE_POSITION_PATIENT,
                VR::DS,
                &format!("{origin:.3}\\{origin:.3}\\{z:.3}"),
            )
            .s(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, "1\\0\\0\\0\\1\\0")
            .s(tags::SLICE_LOCATION, VR::DS, &format!("{z:.3}"))
            .mono12(rows, px)
            .s(
                tags::PIXEL_SPACING,
                VR::DS,
                &format!("{}\\{}", opts.pixel_mm, opts.pixel_mm),
            )
            .s(tags::WINDOW_CENTER, VR::DS, "40\\-600")
            .s(tags::WINDOW_WIDTH, VR::DS, "400\\1500")
            .s(
                tags::WINDOW_CENTER_WIDTH_EXPLANATION,
                VR::LO,
                "MEDIASTINUM\\LUNG",
            )
            .s(tags::RESCALE_INTERCEPT, VR::DS, "-1024")
            .s(tags::RESCALE_SLOPE, VR::DS, "1")
            .s(tags::RESCALE_TYPE, VR::LO, "HU");
        dicom_out::write_file(
            &dir.join(format!("CT{:04}.dcm", s + 1)),
            b.done(),
            uids::CT_IMAGE_STORAGE,
            &sop,
        )?;
    }
    let segments = ls
        .iter()
        .map(|l| {
            let (category, property) = lesion_codes(l);
            dicom_out::Segment {
                label: format!("{} ({})", l.kind, l.location),
                description: format!("Ground truth: {} in the {}", l.kind, l.location),
                category,
                property,
            }
        })
        .collect();
    let frames = masks
        .iter()
        .map(|m| dicom_out::SegFrame {
            segment: m.lesion as u16 + 1,
            source: (uids::CT_IMAGE_STORAGE.to_string(), m.sop.clone()),
            position: Some(m.position),
            mask: &m.mask,
        })
        .collect();
    // A normal series has no segment to write.
    if !ls.is_empty() {
        dicom_out::write_seg(
            &dir.join("seg.dcm"),
            &ids,
            &dicom_out::SegObject {
                size: n,
                pixel_mm: opts.pixel_mm,
                series_uid: uid(&[seed, 0xC7, 4]),
                sop_uid: uid(&[seed, 0xC7, 5]),
                source_series: series.clone(),
                volume: Some(dicom_out::SegVolume {
                    frame_of_reference: frame_of_ref.clone(),
                    orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                    slice_mm: opts.slice_mm,
                }),
                segments,
                frames,
            },
        )?;
    }
    let lesion_truth: Vec<serde_json::Value> = ls
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut v = serde_json::json!(l);
            v["segment"] = serde_json::json!(i + 1);
            v["slices"] = serde_json::json!(
                masks
                    .iter()
                    .filter(|m| m.lesion == i)
                    .map(|m| m.slice + 1)
                    .collect::<Vec<_>>()
            );
            v
        })
        .collect();
    let mut truth = serde_json::json!({
        "generator": "radclip phantom ct",
        "generator_version": crate::GENERATOR_VERSION,
        "seed": seed,
        "patient_id": ids.patient_id,
        "rows": n, "columns": n, "slices": opts.slices,
        "pixel_spacing_mm": opts.pixel_mm, "slice_spacing_mm": opts.slice_mm,
        "coordinates": "DICOM patient (LPS) mm; slice 1 is the most superior",
        "segmentation": if ls.is_empty() { serde_json::Value::Null } else { "seg.dcm".into() },
        "lesions": lesion_truth,
    });
    if cohort {
        truth["anatomy"] = serde_json::json!(a);
        truth["report"] = serde_json::json!("report.txt");
        if let Some(list) = truth["lesions"].as_array_mut() {
            for (v, l) in list.iter_mut().zip(ls.iter()) {
                let (side, lobe) = side_and_lobe(l.location);
                v["side"] = serde_json::json!(side);
                v["lobe"] = if lobe.is_empty() {
                    serde_json::Value::Null
                } else {
                    serde_json::json!(lobe)
                };
                // A layer has a depth (mm from the back or front of the lung), not a centre and diameter.
                if l.layer.is_some()
                    && let Some(o) = v.as_object_mut()
                {
                    o.remove("center_mm");
                    o.remove("diameter_mm");
                    o.insert("depth_mm".into(), serde_json::json!(l.diameter_mm));
                }
            }
        }
        let slices_of = |i: usize| -> Vec<usize> {
            masks
                .iter()
                .filter(|m| m.lesion == i)
                .map(|m| m.slice + 1)
                .collect()
        };
        dicom_out::write_text(&dir.join("report.txt"), &case_report(ls, &slices_of))?;
    }
    dicom_out::write_text(&dir.join("truth.json"), &format!("{truth:#}\n"))?;
    Ok(())
}
