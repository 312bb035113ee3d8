//! The text of DICOM Structured Reports (PS3.3 C.17.3): the document's title and, per heading, what its
//! content tree says in words (TEXT items, coded values by their meaning, numbers with their units), so
//! a radiology report stored as SR can join a report archive. Reading only; nothing is written.

use std::path::Path;

use dicom_dictionary_std::tags;

use crate::attrs::{self, Obj};
use crate::error::{Error, Result};

/// SOP classes whose documents are read: the SR storage classes (1.2.840.10008.5.1.4.1.1.88.*).
const SR_CLASS_PREFIX: &str = "1.2.840.10008.5.1.4.1.1.88.";

/// One heading of a report and its text.
#[derive(Debug, Clone, PartialEq)]
pub struct SrSection {
    /// The concept name of the container or item ("Findings", "Impression"), or "" at the top level.
    pub heading: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SrDocument {
    /// The root concept name ("Diagnostic Imaging Report").
    pub title: String,
    pub sections: Vec<SrSection>,
}

/// Whether the SOP class UID is a Structured Report's.
pub fn is_sr_class(uid: &str) -> bool {
    uid.starts_with(SR_CLASS_PREFIX)
}

/// A coded concept's meaning (its first item's CodeMeaning).
fn meaning(obj: &Obj, seq: dicom_core::Tag) -> String {
    attrs::item(obj, seq)
        .and_then(|c| attrs::string(c, tags::CODE_MEANING))
        .unwrap_or_default()
}

/// An item's value in words, when it has one: TEXT as written, CODE by its meaning, NUM with units.
fn value_text(item: &Obj) -> Option<String> {
    let text = match attrs::string(item, tags::VALUE_TYPE)?.as_str() {
        "TEXT" => attrs::string(item, tags::TEXT_VALUE)?,
        "CODE" => {
            let name = meaning(item, tags::CONCEPT_NAME_CODE_SEQUENCE);
            let value = meaning(item, tags::CONCEPT_CODE_SEQUENCE);
            if value.is_empty() {
                return None;
            }
            if name.is_empty() {
                value
            } else {
                format!("{name}: {value}")
            }
        }
        "NUM" => {
            let m = attrs::item(item, tags::MEASURED_VALUE_SEQUENCE)?;
            let v = attrs::string(m, tags::NUMERIC_VALUE)?;
            let units = meaning(m, tags::MEASUREMENT_UNITS_CODE_SEQUENCE);
            let name = meaning(item, tags::CONCEPT_NAME_CODE_SEQUENCE);
            format!("{name} {v} {units}").trim().to_string()
        }
        _ => return None,
    };
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// Walks `obj`'s content tree, adding each value's words to the section of its nearest heading: a
/// container's concept name, or at the top level a text item's own.
fn collect(obj: &Obj, heading: &str, depth: usize, out: &mut Vec<SrSection>) {
    // Deeper trees than any report are a damaged or hostile file: stop there.
    if depth > 32 {
        return;
    }
    for item in attrs::items(obj, tags::CONTENT_SEQUENCE) {
        let name = meaning(item, tags::CONCEPT_NAME_CODE_SEQUENCE);
        let is_container = attrs::string(item, tags::VALUE_TYPE).as_deref() == Some("CONTAINER");
        let here = if (is_container || depth == 0) && !name.is_empty() {
            name.as_str()
        } else {
            heading
        };
        if !is_container && let Some(t) = value_text(item) {
            match out.last_mut().filter(|s| s.heading == here) {
                Some(s) => {
                    s.text.push(' ');
                    s.text.push_str(&t);
                }
                None => out.push(SrSection {
                    heading: here.to_string(),
                    text: t,
                }),
            }
        }
        collect(item, here, depth + 1, out);
    }
}

impl SrDocument {
    /// Reads the SR document at `path`; a file of another SOP class is an error.
    pub fn read(path: &Path) -> Result<Self> {
        let obj = crate::pixel::open_full(path)?;
        let class = attrs::string(&obj, tags::SOP_CLASS_UID).unwrap_or_default();
        if !is_sr_class(&class) {
            return Err(Error::Decode {
                path: path.to_path_buf(),
                reason: "not a DICOM Structured Report".into(),
            });
        }
        let mut sections = Vec::new();
        collect(&obj, "", 0, &mut sections);
        Ok(SrDocument {
            title: meaning(&obj, tags::CONCEPT_NAME_CODE_SEQUENCE),
            sections,
        })
    }

    /// The report as plain text: each section under its heading in capitals ("FINDINGS:"), as a
    /// radiology report is written.
    pub fn text(&self) -> String {
        self.sections
            .iter()
            .map(|s| {
                if s.heading.is_empty() {
                    s.text.clone()
                } else {
                    format!("{}:\n{}", s.heading.to_uppercase(), s.text)
                }
            })
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

/// Whether the file at `path` is a Structured Report, by its header (pixel data never read).
pub fn is_sr_file(path: &Path) -> bool {
    crate::pixel::open_object(path, true)
        .ok()
        .and_then(|o| attrs::string(&o, tags::SOP_CLASS_UID))
        .is_some_and(|c| is_sr_class(&c))
}
