//! Radiology reports written from a case's truth: a FINDINGS and an IMPRESSION section, with varied
//! phrasing, laterality and zones, sizes in millimetres, and negations of what is absent ("No
//! pneumothorax."), as radiologists write them.

use rand::Rng;
use rand::seq::IndexedRandom;

use crate::cxr::{CxrCase, Finding, Kind};

/// Detector field of view across the image width, in mm (a 43 cm cassette).
pub const FIELD_MM: f64 = 430.0;

#[derive(Debug, Clone)]
pub struct Report {
    pub findings: String,
    pub impression: String,
}

impl Report {
    /// The report as plain text, as it is written next to the study.
    pub fn text(&self) -> String {
        format!(
            "EXAMINATION: Chest radiograph, PA view.\n\nFINDINGS:\n{}\n\nIMPRESSION:\n{}\n",
            self.findings, self.impression
        )
    }
}

fn pick<'a>(rng: &mut impl Rng, options: &[&'a str]) -> &'a str {
    options.choose(rng).copied().unwrap_or_default()
}

fn cap(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn mm(case: &CxrCase, size: f64) -> u32 {
    (size * case.anatomy.scale * FIELD_MM).round() as u32
}

/// "right upper zone" / "left lung base" …
fn place(f: &Finding, rng: &mut impl Rng) -> String {
    let side = f.side.map_or("", |s| s.name());
    match f.zone {
        Some(z) => {
            let forms = [
                format!("{side} {} zone", z.name()),
                format!("{side} {} lung zone", z.name()),
            ];
            forms.choose(rng).cloned().unwrap_or_default()
        }
        None => side.to_string(),
    }
}

/// One sentence stating finding `f` of `case`, phrased at random.
pub fn sentence(case: &CxrCase, f: &Finding, rng: &mut impl Rng) -> String {
    let side = f.side.map_or("", |s| s.name());
    let sev = f.severity.unwrap_or("small");
    match f.kind {
        Kind::Nodule => {
            let (s, p) = (mm(case, f.size), place(f, rng));
            match rng.random_range(0..6) {
                0 => format!("A {s} mm nodule in the {p}."),
                1 => format!("There is a {s}-mm pulmonary nodule projecting over the {p}."),
                2 => format!("{} nodular opacity measuring {s} mm.", cap(&p)),
                3 => format!("Small rounded opacity in the {p}, likely a nodule."),
                4 => format!("Solitary {s} mm nodule in the {p}."),
                _ => format!("Well-circumscribed {s} mm nodule in the {p}."),
            }
        }
        Kind::Mass => {
            let (s, p) = (mm(case, f.size), place(f, rng));
            let cm = f64::from(s) / 10.0;
            match rng.random_range(0..4) {
                0 => format!("A {cm:.1} cm mass in the {p}."),
                1 => format!("There is a lobulated {cm:.1} cm mass projecting over the {p}."),
                2 => format!("Large rounded mass in the {p}."),
                _ => format!("{} mass lesion measuring {cm:.1} cm.", cap(&p)),
            }
        }
        Kind::PleuralEffusion => match rng.random_range(0..5) {
            4 => {
                format!("Fluid layering at the {side} lung base, in keeping with a {sev} effusion.")
            }
            0 => format!("{} {side} pleural effusion.", cap(sev)),
            1 => format!(
                "There is a {sev} {side} pleural effusion with blunting of the costophrenic angle."
            ),
            2 => format!("{} {side} pleural effusion with a meniscus.", cap(sev)),
            _ => format!(
                "Blunting of the {side} costophrenic angle consistent with a {sev} effusion."
            ),
        },
        Kind::Pneumothorax => match rng.random_range(0..4) {
            3 => format!(
                "Air in the {side} pleural space with a partially collapsed lung ({sev} pneumothorax)."
            ),
            0 => format!("{} {side} pneumothorax.", cap(sev)),
            1 => format!(
                "There is a {sev} {side} apical pneumothorax; the visceral pleural line is visible."
            ),
            _ => format!(
                "{} {side} pneumothorax with absent lung markings peripherally.",
                cap(sev)
            ),
        },
        Kind::Consolidation => {
            let p = place(f, rng);
            match rng.random_range(0..5) {
                4 => format!("Airspace opacity in the {p}, in keeping with consolidation."),
                0 => format!("Consolidation in the {p}."),
                1 => format!("There is patchy airspace consolidation in the {p}."),
                2 => format!(
                    "{} airspace opacity consistent with consolidation.",
                    cap(&p)
                ),
                _ => format!("Focal consolidation in the {p}, which may represent pneumonia."),
            }
        }
        Kind::Cardiomegaly => {
            let ctr = (f.size * 100.0).round();
            match rng.random_range(0..5) {
                3 => "The cardiothoracic ratio is increased.".to_string(),
                4 => "Large heart.".to_string(),
                0 => "The heart is enlarged.".to_string(),
                1 => format!("Cardiomegaly, cardiothoracic ratio about {ctr:.0}%."),
                _ => "The cardiac silhouette is enlarged.".to_string(),
            }
        }
    }
}

/// One sentence saying `kind` is absent, phrased at random.
pub fn negation(kind: Kind, rng: &mut impl Rng) -> &'static str {
    match kind {
        Kind::Nodule => pick(
            rng,
            &[
                "No pulmonary nodule.",
                "No suspicious pulmonary nodule is seen.",
                "No nodules are seen.",
                "No focal nodular opacity.",
            ],
        ),
        Kind::Mass => pick(
            rng,
            &[
                "No mass.",
                "No lung mass is identified.",
                "No pulmonary mass.",
            ],
        ),
        Kind::PleuralEffusion => pick(
            rng,
            &[
                "No pleural effusion.",
                "The costophrenic angles are sharp.",
                "No pleural effusion is seen.",
                "No pleural fluid is seen.",
            ],
        ),
        Kind::Pneumothorax => pick(
            rng,
            &[
                "No pneumothorax.",
                "There is no pneumothorax.",
                "No pleural air; no pneumothorax.",
            ],
        ),
        Kind::Consolidation => pick(
            rng,
            &[
                "No focal consolidation.",
                "The lungs are clear without consolidation.",
                "No airspace consolidation.",
                "No airspace opacity or consolidation.",
            ],
        ),
        Kind::Cardiomegaly => pick(
            rng,
            &[
                "Heart size is normal.",
                "The cardiomediastinal silhouette is within normal limits.",
                "Normal heart size.",
                "The heart is not enlarged.",
            ],
        ),
    }
}

/// A statement that `kind` is present, without specifics (short prompt-like or sentence forms).
pub fn generic_positive(kind: Kind, rng: &mut impl Rng) -> String {
    let side = ["right", "left"][rng.random_range(0..2)];
    let name = kind.name();
    let extra = match kind {
        Kind::Nodule => ["lung nodule", "a rounded nodule is seen"],
        Kind::Mass => ["pulmonary mass", "a large mass is seen"],
        Kind::PleuralEffusion => ["pleural fluid collection", "fluid in the pleural cavity"],
        Kind::Pneumothorax => ["pleural air", "collapsed lung"],
        Kind::Consolidation => ["airspace opacity", "pneumonia"],
        Kind::Cardiomegaly => ["large heart", "the cardiothoracic ratio is increased"],
    };
    match rng.random_range(0..6) {
        4 => extra[0].to_string(),
        5 => extra[1].to_string(),
        0 => name.to_string(),
        1 => format!("There is {}.", article(name)),
        2 => format!("Findings consistent with {name}."),
        _ => match kind {
            Kind::Cardiomegaly => "The heart is enlarged.".to_string(),
            Kind::Consolidation => format!("{} lung consolidation.", cap(side)),
            _ => format!("{} {name}.", cap(side)),
        },
    }
}

fn article(name: &str) -> String {
    match name {
        "cardiomegaly" | "consolidation" => name.to_string(),
        _ => format!("a {name}"),
    }
}

fn impression_item(case: &CxrCase, f: &Finding) -> String {
    let side = f.side.map_or("", |s| s.name());
    let sev = f.severity.unwrap_or("");
    match f.kind {
        Kind::Nodule => format!("{} mm {side} pulmonary nodule", mm(case, f.size)),
        Kind::Mass => format!("{side} lung mass"),
        Kind::PleuralEffusion => format!("{sev} {side} pleural effusion"),
        Kind::Pneumothorax => format!("{sev} {side} pneumothorax"),
        Kind::Consolidation => format!(
            "{side} {} zone consolidation",
            f.zone.map_or("", |z| z.name())
        ),
        Kind::Cardiomegaly => "cardiomegaly".to_string(),
    }
}

/// Writes the report of `case`. The phrasing is drawn from `rng`; the facts come only from the case.
pub fn write(case: &CxrCase, rng: &mut impl Rng) -> Report {
    let mut lines: Vec<String> = Vec::new();
    // Lungs, then pleura, then heart: the order most reports follow.
    let order = [
        Kind::Consolidation,
        Kind::Mass,
        Kind::Nodule,
        Kind::PleuralEffusion,
        Kind::Pneumothorax,
        Kind::Cardiomegaly,
    ];
    for kind in order {
        let present: Vec<&Finding> = case.findings.iter().filter(|f| f.kind == kind).collect();
        if present.is_empty() {
            // Most reports state the pertinent negatives; some leave a few out.
            if rng.random_bool(0.8) {
                lines.push(negation(kind, rng).to_string());
            }
        } else {
            for f in present {
                lines.push(sentence(case, f, rng));
            }
        }
    }
    if rng.random_bool(0.5) {
        lines.push(
            pick(
                rng,
                &[
                    "The visualized osseous structures are intact.",
                    "No acute osseous abnormality.",
                ],
            )
            .to_string(),
        );
    }
    let impression = if case.findings.is_empty() {
        pick(
            rng,
            &[
                "No acute cardiopulmonary abnormality.",
                "Normal chest radiograph.",
                "No acute cardiopulmonary process.",
            ],
        )
        .to_string()
    } else {
        let items: Vec<String> = order
            .iter()
            .flat_map(|k| case.findings.iter().filter(move |f| f.kind == *k))
            .map(|f| {
                impression_item(case, f)
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        items
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{}. {}.", i + 1, cap(s)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Report {
        findings: lines.join(" "),
        impression,
    }
}

/// Names of each finding as radiologists write them: (text, takes an article).
fn nouns(kind: Kind) -> &'static [(&'static str, bool)] {
    match kind {
        Kind::Nodule => &[
            ("nodule", true),
            ("pulmonary nodule", true),
            ("nodular opacity", true),
            ("rounded opacity", true),
            ("small nodule", true),
            ("well-defined nodule", true),
            ("nodular lesion", true),
            ("focal nodule", true),
        ],
        Kind::Mass => &[
            ("mass", true),
            ("pulmonary mass", true),
            ("lung mass", true),
            ("mass lesion", true),
            ("large mass", true),
            ("rounded mass", true),
            ("soft tissue mass", true),
            ("large rounded opacity", true),
        ],
        Kind::PleuralEffusion => &[
            ("pleural effusion", true),
            ("effusion", true),
            ("pleural fluid", false),
            ("layering pleural fluid", false),
            ("blunting of the costophrenic angle", false),
            ("costophrenic angle blunting", false),
            ("hydrothorax", false),
        ],
        Kind::Pneumothorax => &[
            ("pneumothorax", true),
            ("apical pneumothorax", true),
            ("ptx", false),
            ("pleural air", false),
            ("visible visceral pleural line", true),
            ("partially collapsed lung", true),
        ],
        Kind::Consolidation => &[
            ("consolidation", false),
            ("airspace consolidation", false),
            ("airspace opacity", true),
            ("pneumonia", false),
            ("lobar consolidation", false),
            ("patchy consolidation", false),
            ("infiltrate", true),
            ("air bronchograms", false),
        ],
        Kind::Cardiomegaly => &[
            ("cardiomegaly", false),
            ("cardiac enlargement", false),
            ("enlarged cardiac silhouette", true),
            ("increased heart size", false),
            ("large heart", true),
            ("heart enlargement", false),
        ],
    }
}

/// A matched statement and negation of `kind` ("there is a small nodule" / "there is no small
/// nodule"), composed from the finding's names and common report templates: the hard negatives that
/// teach the text tower what "no" does, in more words than the reports use. Never one of the held-out
/// paraphrases (those are redrawn).
pub fn statement_pair(kind: Kind, rng: &mut impl Rng) -> (String, String) {
    let held = held_out_paraphrases(kind);
    let norm = |s: &str| s.trim().trim_end_matches('.').to_lowercase();
    loop {
        let (noun, countable) = nouns(kind).choose(rng).copied().unwrap_or(("", false));
        let a = if !countable {
            noun.to_string()
        } else if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
            format!("an {noun}")
        } else {
            format!("a {noun}")
        };
        let side = ["right", "left"][rng.random_range(0..2)];
        let (p, n) = match rng.random_range(0..18) {
            0 => (format!("{a} is seen"), format!("no {noun} is seen")),
            1 => (format!("there is {a}"), format!("there is no {noun}")),
            2 => (format!("evidence of {a}"), format!("no evidence of {noun}")),
            3 => (noun.to_string(), format!("no {noun}")),
            4 => (
                format!("{a} is identified"),
                format!("no {noun} is identified"),
            ),
            5 => (
                format!("consistent with {a}"),
                format!("negative for {noun}"),
            ),
            6 => (format!("{side} {noun}"), format!("no {side} {noun}")),
            7 => (format!("suspicious for {a}"), format!("without {noun}")),
            8 => (format!("{a} is noted"), format!("no definite {noun}")),
            10 => (format!("{a} is present"), format!("no {noun} is present")),
            11 => (
                format!("{a} is demonstrated"),
                format!("no {noun} is demonstrated"),
            ),
            12 => (format!("{a} is visible"), format!("no visible {noun}")),
            13 => (format!("positive for {noun}"), format!("{noun} is absent")),
            14 => (
                format!("findings suggest {a}"),
                format!("nothing to suggest {noun}"),
            ),
            15 => (
                format!("{a} in the {side} lung"),
                format!("no {noun} in either lung"),
            ),
            16 => (format!("{a} is evident"), format!("{noun} is not seen")),
            _ => (
                format!("the image shows {a}"),
                format!("the image shows no {noun}"),
            ),
        };
        if held
            .iter()
            .flat_map(|(hp, hn)| [norm(hp), norm(hn)])
            .any(|h| h == norm(&p) || h == norm(&n))
        {
            continue;
        }
        return if rng.random_bool(0.5) {
            (format!("{}.", cap(&p)), format!("{}.", cap(&n)))
        } else {
            (p, n)
        };
    }
}

/// Five (positive, negative) phrasings per finding that the generator never writes as a whole text: the
/// paraphrase-robustness test of `radclip eval`. A test checks the generator against them.
pub fn held_out_paraphrases(kind: Kind) -> [(&'static str, &'static str); 5] {
    match kind {
        Kind::Nodule => [
            ("small round lung nodule", "no lung nodule"),
            (
                "a solitary pulmonary nodule is seen",
                "no solitary pulmonary nodule",
            ),
            ("nodule in the lung", "lungs without nodules"),
            ("focal nodular density", "no focal nodular density"),
            (
                "findings of a pulmonary nodule",
                "no findings of a pulmonary nodule",
            ),
        ],
        Kind::Mass => [
            ("large lung mass", "no lung mass"),
            (
                "a pulmonary mass is present",
                "no pulmonary mass is present",
            ),
            ("mass in the lung", "lungs without a mass"),
            ("lobulated pulmonary mass", "no lobulated mass in the lung"),
            ("findings of a lung mass", "no findings of a lung mass"),
        ],
        Kind::PleuralEffusion => [
            (
                "fluid in the pleural space",
                "no fluid in the pleural space",
            ),
            (
                "blunted costophrenic angle",
                "costophrenic angles are sharp",
            ),
            ("pleural fluid is present", "no pleural fluid"),
            ("effusion at the lung base", "no effusion at the lung base"),
            (
                "findings of pleural effusion",
                "no findings of pleural effusion",
            ),
        ],
        Kind::Pneumothorax => [
            ("air in the pleural space", "no air in the pleural space"),
            ("collapsed lung with pleural air", "no collapsed lung"),
            ("pneumothorax is present", "pneumothorax is absent"),
            (
                "visible pleural line with absent markings",
                "normal lung markings to the periphery",
            ),
            ("findings of pneumothorax", "no findings of pneumothorax"),
        ],
        Kind::Consolidation => [
            ("airspace disease in the lung", "no airspace disease"),
            ("patchy lung opacity", "no lung opacity"),
            ("consolidation is present", "consolidation is absent"),
            ("pneumonia with consolidation", "no pneumonia"),
            ("findings of consolidation", "no findings of consolidation"),
        ],
        Kind::Cardiomegaly => [
            ("enlarged heart", "heart not enlarged"),
            (
                "increased cardiothoracic ratio",
                "normal cardiothoracic ratio",
            ),
            ("cardiomegaly is present", "cardiomegaly is absent"),
            ("large cardiac silhouette", "normal cardiac silhouette"),
            ("findings of cardiomegaly", "no findings of cardiomegaly"),
        ],
    }
}
