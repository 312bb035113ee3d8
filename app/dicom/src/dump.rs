//! A flat listing of every element of a data set, nested sequences indented, for the tag browser and
//! `radclip info --tags`.

use dicom_core::header::Header;
use dicom_core::value::Value;
use dicom_core::{DataDictionary, Tag};
use dicom_dictionary_std::StandardDataDictionary;
use serde::Serialize;

use crate::attrs::Obj;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TagRow {
    pub depth: usize,
    pub tag: String,
    pub vr: String,
    pub name: String,
    pub value: String,
}

impl TagRow {
    /// Case-insensitive match on the tag ("0010,0010" or "00100010") or the name.
    pub fn matches(&self, filter: &str) -> bool {
        let f = filter.trim().to_lowercase();
        if f.is_empty() {
            return true;
        }
        let compact = self.tag.replace([',', '(', ')'], "").to_lowercase();
        self.tag.to_lowercase().contains(&f)
            || compact.contains(&f.replace([',', '(', ')'], ""))
            || self.name.to_lowercase().contains(&f)
    }
}

const MAX_VALUE_CHARS: usize = 120;

/// All elements of `obj`, depth-first.
pub fn rows(obj: &Obj) -> Vec<TagRow> {
    let mut out = Vec::new();
    walk(obj, 0, &mut out);
    out
}

fn walk(obj: &Obj, depth: usize, out: &mut Vec<TagRow>) {
    for elem in obj.iter() {
        let tag: Tag = elem.tag();
        let name = StandardDataDictionary
            .by_tag(tag)
            .map(|e| e.alias.to_string())
            .unwrap_or_else(|| {
                if tag.group() % 2 == 1 {
                    "(private)".into()
                } else {
                    "(unknown)".into()
                }
            });
        let value = match elem.value() {
            Value::Sequence(seq) => format!("{} item(s)", seq.items().len()),
            Value::PixelSequence(seq) => format!("{} fragment(s)", seq.fragments().len()),
            Value::Primitive(p) => {
                if p.calculate_byte_len() > 4096 {
                    format!("({} bytes)", p.calculate_byte_len())
                } else {
                    let s = p.to_str();
                    let s = s.trim_end_matches(['\0', ' ']);
                    if s.chars().count() > MAX_VALUE_CHARS {
                        let cut: String = s.chars().take(MAX_VALUE_CHARS).collect();
                        format!("{cut}…")
                    } else {
                        s.to_string()
                    }
                }
            }
        };
        out.push(TagRow {
            depth,
            tag: format!("({:04X},{:04X})", tag.group(), tag.element()),
            vr: elem.vr().to_string().to_string(),
            name,
            value,
        });
        if let Value::Sequence(seq) = elem.value() {
            for (i, item) in seq.items().iter().enumerate() {
                out.push(TagRow {
                    depth: depth + 1,
                    tag: "(FFFE,E000)".into(),
                    vr: String::new(),
                    name: format!("Item {}", i + 1),
                    value: String::new(),
                });
                walk(item, depth + 2, out);
            }
        }
    }
}
