//! A user's own report archive, read as library reports: a folder (searched recursively) of plain-text
//! reports (`.txt`), Open-i / IU X-ray XML files (`.xml`), CSV files (`.csv`) with one report per row in
//! a text column, or DICOM Structured Reports (their text, by heading); or one such file. Nothing is
//! written next to the archive.

use std::path::{Path, PathBuf};

use crate::library::LibraryReport;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Csv { path: PathBuf, message: String },
    #[error("{path} is not a folder of reports, nor a .txt, .xml, .csv or DICOM SR file")]
    Unknown { path: PathBuf },
    #[error("{0}")]
    Sr(#[from] radclip_dicom::Error),
}

/// A report of the archive and where it came from (a file, or a file and a CSV row: "a.csv#12").
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveReport {
    pub source: String,
    pub report: LibraryReport,
}

/// `text` without its sentences that only deny findings ("No pneumothorax or pleural effusion."): the
/// sentences in which `labeler` finds mentions, all negated. CLIP text towers read "no X" close to "X",
/// so a report indexed by its pertinent negatives is found for the finding it rules out. `None` when
/// nothing else is left (the report states no finding of the list).
pub fn asserted(text: &str, labeler: &radclip_report::Labeler) -> Option<String> {
    let kept: Vec<&str> = sentences(text)
        .into_iter()
        .filter(|s| {
            let m = labeler.mentions(s);
            m.is_empty() || m.iter().any(|m| m.assertion.is_stated())
        })
        .collect();
    let out = kept.join(" ").trim().to_string();
    (!out.is_empty()).then_some(out)
}

/// Sentences of a report: split after ". ", "? ", "! " and line breaks (not inside "2.5 cm").
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let end_here = match b {
            b'\n' => true,
            b'.' | b'?' | b'!' => bytes.get(i + 1).is_none_or(|n| n.is_ascii_whitespace()),
            _ => false,
        };
        if end_here {
            if let Some(s) = text.get(start..=i).map(str::trim).filter(|s| !s.is_empty()) {
                out.push(s);
            }
            start = i + 1;
        }
    }
    if let Some(s) = text.get(start..).map(str::trim).filter(|s| !s.is_empty()) {
        out.push(s);
    }
    out
}

/// Sets what an archive report is indexed by: its embedded part without the sentences that only deny
/// findings ([`asserted`]); a report that asserts nothing of the list is indexed by its impression.
pub fn assert_only(report: &mut LibraryReport, labeler: &radclip_report::Labeler) {
    if let Some(a) = asserted(&report.embedded, labeler) {
        report.embedded = a;
    } else if let Some(a) = asserted(&report.summary, labeler) {
        report.embedded = a;
    }
}

/// CSV columns taken as the report's text, in this order of preference (case-insensitive).
pub const TEXT_COLUMNS: &[&str] = &["report", "text", "report_text", "findings", "impression"];

/// The reports of `path`, in a stable order (files sorted by path, CSV rows in order). Files that are
/// not reports (other extensions, hidden files) are left out; a report without text is skipped.
pub fn read_reports(path: &Path) -> Result<Vec<ArchiveReport>, ArchiveError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| ArchiveError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    // Each file with its kind, found once (an SR is known by opening its header).
    let mut files = Vec::new();
    if path.is_dir() {
        walk(path, &mut files)?;
    } else if let Some(k) = kind_of_file(path) {
        files.push((path.to_path_buf(), k));
    } else {
        return Err(ArchiveError::Unknown {
            path: path.to_path_buf(),
        });
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut out, mut srs) = (Vec::new(), Vec::new());
    for (f, kind) in files {
        let name = f.display().to_string();
        match kind {
            Kind::Text => out.extend(from_text(&name, &read(&f)?)),
            Kind::OpenI => out.extend(from_open_i(&name, &read(&f)?)),
            Kind::Csv => out.extend(from_csv(&f)?),
            Kind::Sr => {
                let doc = radclip_dicom::sr::SrDocument::read(&f)?;
                srs.extend(from_text(&name, &doc.text()));
            }
        }
    }
    Ok(with_srs(out, srs))
}

/// The reports and the SRs, less each plain-text report that repeats an SR of its folder (the same
/// findings and impression): a text export kept beside its structured report is one report, not two.
fn with_srs(reports: Vec<ArchiveReport>, srs: Vec<ArchiveReport>) -> Vec<ArchiveReport> {
    let folder = |r: &ArchiveReport| Path::new(&r.source).parent().map(Path::to_path_buf);
    let same = |a: &ArchiveReport, b: &ArchiveReport| {
        folder(a) == folder(b)
            && a.report.embedded.trim() == b.report.embedded.trim()
            && a.report.summary.trim() == b.report.summary.trim()
    };
    let mut out: Vec<ArchiveReport> = reports
        .into_iter()
        .filter(|r| !srs.iter().any(|s| same(r, s)))
        .collect();
    out.extend(srs);
    out
}

/// Whether `path` is a report archive file: .txt, .xml or .csv by its name, or a DICOM SR.
pub fn is_archive_file(path: &Path) -> bool {
    kind_of_file(path).is_some()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    OpenI,
    Csv,
    /// A DICOM Structured Report.
    Sr,
}

/// [`kind`] by name, else a DICOM file whose header says it is a Structured Report.
fn kind_of_file(p: &Path) -> Option<Kind> {
    kind(p).or_else(|| {
        let hidden = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        (!hidden
            && p.is_file()
            && radclip_dicom::study::looks_like_dicom(p)
            && radclip_dicom::sr::is_sr_file(p))
        .then_some(Kind::Sr)
    })
}

fn kind(p: &Path) -> Option<Kind> {
    let hidden = p
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'));
    if hidden {
        return None;
    }
    match p
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .as_deref()
    {
        Some("txt") => Some(Kind::Text),
        Some("xml") => Some(Kind::OpenI),
        Some("csv") => Some(Kind::Csv),
        _ => None,
    }
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, Kind)>) -> Result<(), ArchiveError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ArchiveError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    for e in entries {
        let p = e
            .map_err(|source| ArchiveError::Read {
                path: dir.to_path_buf(),
                source,
            })?
            .path();
        let hidden = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if p.is_dir() && !hidden {
            walk(&p, out)?;
        } else if let Some(k) = kind_of_file(&p) {
            out.push((p, k));
        }
    }
    Ok(())
}

/// A report from its sections: the whole text labelled, the findings embedded (else the whole text),
/// the impression (else the first line) as the line shown.
fn report(
    title: String,
    findings: Option<String>,
    impression: Option<String>,
    text: String,
) -> LibraryReport {
    let first_line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    LibraryReport {
        title,
        summary: impression
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or(first_line)
            .replace('\n', " "),
        embedded: findings
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| text.clone()),
        text,
    }
}

/// The text after a heading such as "FINDINGS:" up to the next heading ("IMPRESSION:") or the end.
pub fn section(text: &str, heading: &str) -> Option<String> {
    let upper = text.to_ascii_uppercase();
    let at = upper.find(&format!("{heading}:"))? + heading.len() + 1;
    let rest = text.get(at..)?;
    let end = [
        "FINDINGS:",
        "IMPRESSION:",
        "COMPARISON:",
        "INDICATION:",
        "TECHNIQUE:",
        "HISTORY:",
    ]
    .iter()
    .filter_map(|h| rest.to_ascii_uppercase().find(h))
    .min()
    .unwrap_or(rest.len());
    Some(rest.get(..end)?.trim().to_string())
}

fn from_text(name: &str, text: &str) -> Option<ArchiveReport> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(ArchiveReport {
        source: name.to_string(),
        report: report(
            file_title(name),
            section(text, "FINDINGS"),
            section(text, "IMPRESSION"),
            text.to_string(),
        ),
    })
}

fn file_title(name: &str) -> String {
    Path::new(name)
        .file_name()
        .map_or_else(|| name.to_string(), |n| n.to_string_lossy().into_owned())
}

/// Open-i's `<AbstractText Label="FINDINGS">…</AbstractText>` and `Label="IMPRESSION"`.
fn from_open_i(name: &str, xml: &str) -> Option<ArchiveReport> {
    let label = |l: &str| -> Option<String> {
        let open = format!("Label=\"{l}\">");
        let at = xml.find(&open)? + open.len();
        let end = xml.get(at..)?.find("</AbstractText>")?;
        Some(unescape(xml.get(at..at + end)?.trim()))
    };
    let findings = label("FINDINGS").filter(|s| !s.is_empty());
    let impression = label("IMPRESSION").filter(|s| !s.is_empty());
    let text = match (&findings, &impression) {
        (None, None) => return None,
        (Some(f), None) => format!("FINDINGS: {f}"),
        (None, Some(i)) => format!("IMPRESSION: {i}"),
        (Some(f), Some(i)) => format!("FINDINGS: {f}\nIMPRESSION: {i}"),
    };
    Some(ArchiveReport {
        source: name.to_string(),
        report: report(file_title(name), findings, impression, text),
    })
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn from_csv(path: &Path) -> Result<Vec<ArchiveReport>, ArchiveError> {
    let err = |message: String| ArchiveError::Csv {
        path: path.to_path_buf(),
        message,
    };
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| err(e.to_string()))?;
    let headers: Vec<String> = r
        .headers()
        .map_err(|e| err(e.to_string()))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let Some(text_col) = TEXT_COLUMNS.iter().find_map(|c| col(c)) else {
        return Err(err(format!(
            "no report text column (one of {}) among {}",
            TEXT_COLUMNS.join(", "),
            headers.join(", ")
        )));
    };
    let (findings_col, impression_col) = (col("findings"), col("impression"));
    let id_col = ["id", "study_id", "uid", "accession"]
        .iter()
        .find_map(|c| col(c));
    let name = path.display().to_string();
    let mut out = Vec::new();
    for (i, row) in r.records().enumerate() {
        let row = row.map_err(|e| err(e.to_string()))?;
        let get = |c: Option<usize>| {
            c.and_then(|c| row.get(c))
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let Some(text) = get(Some(text_col)) else {
            continue;
        };
        let title = get(id_col).unwrap_or_else(|| format!("{} row {}", file_title(&name), i + 1));
        let findings = get(findings_col).or_else(|| section(&text, "FINDINGS"));
        let impression = get(impression_col).or_else(|| section(&text, "IMPRESSION"));
        out.push(ArchiveReport {
            source: format!("{name}#{}", i + 1),
            report: report(title, findings, impression, text),
        });
    }
    Ok(out)
}
