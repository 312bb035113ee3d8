//! The demo model's finding list as labeler concepts (only the fields the labeler reads).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use radclip_report::{Concept, Labeler};

#[derive(serde::Deserialize)]
struct List {
    finding: Vec<Finding>,
}

#[derive(serde::Deserialize)]
struct Finding {
    name: String,
    #[serde(default)]
    mentions: Vec<String>,
    #[serde(default)]
    not_mentions: Vec<String>,
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The labeler of a finding list in `models/`.
pub fn labeler(list: &str) -> Labeler {
    let text = std::fs::read_to_string(workspace().join("models").join(list)).unwrap();
    let list: List = toml::from_str(&text).unwrap();
    Labeler::new(list.finding.into_iter().map(|f| Concept {
        name: f.name,
        mentions: f.mentions,
        not_mentions: f.not_mentions,
    }))
    .unwrap()
}

pub fn demo_labeler() -> Labeler {
    labeler("radclip-demo/findings.toml")
}
