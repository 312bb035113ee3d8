//! Text shown next to measurements.

use radclip_dicom::SpacingSource;
use radclip_dicom::measure::{Length, RoiStats};

pub fn length_label(l: &Length) -> String {
    match (l.mm, l.source) {
        (Some(mm), Some(SpacingSource::Patient)) => format!("{mm:.1} mm"),
        // Radiographs without calibration: distances are at the detector, not in the patient.
        (Some(mm), Some(SpacingSource::Detector)) => format!("{mm:.1} mm (detector)"),
        _ => format!("{:.1} px", l.pixels),
    }
}

pub fn roi_label(s: &RoiStats) -> String {
    let area = match s.area_mm2 {
        Some(a) => format!("{a:.1} mm²"),
        None => format!("{:.0} px²", s.area_px),
    };
    format!(
        "mean {:.1}  SD {:.1}\nmin {:.0}  max {:.0}\narea {area}",
        s.mean, s.sd, s.min, s.max
    )
}
