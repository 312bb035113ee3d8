//! The viewer's app-wide actions. Each one's keyboard shortcuts, menu label and help line are written
//! here once: the key handler, the menus, the status bar and the help window all read them, so a key
//! cannot be bound in one place and described differently in another.

use egui::{Key, KeyboardShortcut, Modifiers};

/// Something the user asks of the viewer by key, menu or toolbar (mouse drags are `state::DragAction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    PreviousSlice,
    NextSlice,
    BackTen,
    ForwardTen,
    FirstSlice,
    LastSlice,
    Cine,
    /// The `n`th window preset of the active series' modality (`state::presets`).
    Preset(usize),
    ResetWindow,
    Fit,
    Rotate,
    FlipHorizontal,
    FlipVertical,
    Invert,
    CornerText,
    HidePatientData,
    Segmentations,
    Tags,
    AiPanel,
    AttentionInspector,
    /// The MPR layout of the active series (axial, coronal, sagittal with crosshairs), on or off.
    Mpr,
    WindowLevelTool,
    LineTool,
    RectangleTool,
    EllipseTool,
    UndoMeasurement,
    ClearMeasurements,
    Help,
}

/// The help window's sections, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Slices,
    Window,
    View,
    Tools,
}

impl Group {
    pub const ALL: [Group; 4] = [Group::Slices, Group::Window, Group::View, Group::Tools];

    pub fn name(self) -> &'static str {
        match self {
            Group::Slices => "Slices",
            Group::Window => "Window",
            Group::View => "View",
            Group::Tools => "Tools",
        }
    }
}

/// What the viewer shows of an action.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Any of these triggers it; none: only the menu or toolbar does.
    pub keys: &'static [KeyboardShortcut],
    /// The menu or toolbar label.
    pub label: &'static str,
    /// What it does, in the help window.
    pub help: &'static str,
    pub group: Group,
}

const fn key(k: Key) -> KeyboardShortcut {
    KeyboardShortcut::new(Modifiers::NONE, k)
}

const fn command(k: Key) -> KeyboardShortcut {
    KeyboardShortcut::new(Modifiers::COMMAND, k)
}

/// Number keys 1–5, one per preset.
const PRESET_KEYS: [[KeyboardShortcut; 1]; 5] = [
    [key(Key::Num1)],
    [key(Key::Num2)],
    [key(Key::Num3)],
    [key(Key::Num4)],
    [key(Key::Num5)],
];

impl Action {
    /// Every action, in the order the help window lists them.
    pub const ALL: [Action; 32] = [
        Action::PreviousSlice,
        Action::NextSlice,
        Action::BackTen,
        Action::ForwardTen,
        Action::FirstSlice,
        Action::LastSlice,
        Action::Cine,
        Action::Preset(0),
        Action::Preset(1),
        Action::Preset(2),
        Action::Preset(3),
        Action::Preset(4),
        Action::ResetWindow,
        Action::Fit,
        Action::Rotate,
        Action::FlipHorizontal,
        Action::FlipVertical,
        Action::Invert,
        Action::CornerText,
        Action::HidePatientData,
        Action::Segmentations,
        Action::Tags,
        Action::AiPanel,
        Action::AttentionInspector,
        Action::Mpr,
        Action::Help,
        Action::WindowLevelTool,
        Action::LineTool,
        Action::RectangleTool,
        Action::EllipseTool,
        Action::UndoMeasurement,
        Action::ClearMeasurements,
    ];

    pub fn spec(self) -> Spec {
        use Group::*;
        let s = |keys, label, help, group| Spec {
            keys,
            label,
            help,
            group,
        };
        match self {
            Action::PreviousSlice => s(
                &const { [key(Key::ArrowUp), key(Key::ArrowLeft)] },
                "Previous slice",
                "previous slice",
                Slices,
            ),
            Action::NextSlice => s(
                &const { [key(Key::ArrowDown), key(Key::ArrowRight)] },
                "Next slice",
                "next slice",
                Slices,
            ),
            Action::BackTen => s(
                &const { [key(Key::PageUp)] },
                "Back 10",
                "10 slices back",
                Slices,
            ),
            Action::ForwardTen => s(
                &const { [key(Key::PageDown)] },
                "Forward 10",
                "10 slices on",
                Slices,
            ),
            Action::FirstSlice => s(
                &const { [key(Key::Home)] },
                "First slice",
                "first slice",
                Slices,
            ),
            Action::LastSlice => s(
                &const { [key(Key::End)] },
                "Last slice",
                "last slice",
                Slices,
            ),
            Action::Cine => s(&const { [key(Key::Space)] }, "Cine", "cine on/off", Slices),
            Action::Preset(n) => s(
                PRESET_KEYS.get(n).map_or(&[], |k| k.as_slice()),
                "Window preset",
                "presets (CT: soft tissue, lung, bone, brain, file; others: file, min/max)",
                Window,
            ),
            Action::ResetWindow => s(&const { [key(Key::Num0)] }, "Reset window", "reset", Window),
            Action::Fit => s(&const { [key(Key::F)] }, "Fit", "fit", View),
            Action::Rotate => s(&const { [key(Key::R)] }, "Rotate", "rotate 90°", View),
            Action::FlipHorizontal => s(
                &const { [key(Key::H)] },
                "Flip horizontally",
                "flip horizontally",
                View,
            ),
            Action::FlipVertical => s(
                &const { [key(Key::V)] },
                "Flip vertically",
                "flip vertically",
                View,
            ),
            Action::Invert => s(&const { [key(Key::I)] }, "Invert", "invert", View),
            Action::CornerText => s(&const { [key(Key::O)] }, "Corner text", "corner text", View),
            Action::HidePatientData => s(
                &const { [key(Key::P)] },
                "Hide patient data",
                "hide patient data",
                View,
            ),
            Action::Segmentations => s(
                &const { [key(Key::S)] },
                "Segmentations",
                "segmentation masks (DICOM SEG)",
                View,
            ),
            Action::Tags => s(
                &const { [key(Key::T)] },
                "Tags of this image",
                "tag browser",
                View,
            ),
            Action::AiPanel => s(
                &const { [key(Key::A)] },
                "AI panel",
                "AI panel (findings, heatmap, similar reports)",
                View,
            ),
            Action::AttentionInspector => s(
                &const { [key(Key::N)] },
                "Attention inspector",
                "attention inspector (every layer's and head's map)",
                View,
            ),
            Action::Mpr => s(
                &const { [key(Key::M)] },
                "MPR",
                "MPR: axial, coronal, sagittal; click sets the crosshair, Shift+drag turns it \
                 (oblique), right drag W/L, R back to standard planes",
                View,
            ),
            Action::Help => s(&[], "?", "keys and mouse", View),
            Action::WindowLevelTool => s(
                &const { [key(Key::W), key(Key::Escape)] },
                "W/L",
                "window/level",
                Tools,
            ),
            Action::LineTool => s(&const { [key(Key::L)] }, "Line", "line", Tools),
            Action::RectangleTool => s(&const { [key(Key::B)] }, "Rect", "rectangle ROI", Tools),
            Action::EllipseTool => s(&const { [key(Key::E)] }, "Ellipse", "ellipse ROI", Tools),
            Action::UndoMeasurement => s(
                &const { [command(Key::Z)] },
                "Undo measurement",
                "undo measurement",
                Tools,
            ),
            Action::ClearMeasurements => s(
                &const { [key(Key::Delete)] },
                "Clear measurements",
                "clear measurements",
                Tools,
            ),
        }
    }

    /// The action a key press asks for. A shortcut without modifiers also answers with Shift or Alt
    /// held; one with Ctrl (⌘ on macOS) only with it.
    pub fn for_key(key: Key, modifiers: Modifiers) -> Option<Action> {
        Action::ALL.into_iter().find(|a| {
            a.spec()
                .keys
                .iter()
                .any(|s| s.logical_key == key && (!s.modifiers.command || modifiers.command))
        })
    }

    /// Its shortcuts as the help window and menus write them ("W/Escape", "Ctrl+Z"); empty if none.
    pub fn keys_text(self) -> String {
        self.spec()
            .keys
            .iter()
            .map(shortcut_text)
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The menu label with its first shortcut, e.g. "Corner text (O)".
    pub fn menu_text(self) -> String {
        let spec = self.spec();
        match spec.keys.first() {
            Some(k) => format!("{} ({})", spec.label, shortcut_text(k)),
            None => spec.label.to_string(),
        }
    }
}

fn shortcut_text(s: &KeyboardShortcut) -> String {
    let name = s.logical_key.name();
    if s.modifiers.command {
        format!("Ctrl+{name}")
    } else {
        name.to_string()
    }
}

/// The mouse, which is bound in the Mouse menu rather than here.
const MOUSE_HELP: &str = "\
Mouse: left drag = window/level (or the active measurement tool), middle drag = pan,
       right drag = zoom, wheel = next/previous slice, Ctrl+wheel = zoom (rebind in the Mouse menu)";

/// The help window's text: the mouse, then every action with a shortcut, a line per group. Actions
/// side by side with the same help (the presets) share one entry: "1–5 = presets (…)".
pub fn help_text() -> String {
    let mut out = MOUSE_HELP.to_string();
    for group in Group::ALL {
        let mut entries: Vec<(Vec<String>, &str)> = Vec::new();
        for a in Action::ALL {
            let spec = a.spec();
            if spec.group != group || spec.keys.is_empty() {
                continue;
            }
            match entries.last_mut() {
                Some((keys, help)) if *help == spec.help && matches!(a, Action::Preset(_)) => {
                    keys.push(a.keys_text())
                }
                _ => entries.push((vec![a.keys_text()], spec.help)),
            }
        }
        let line = entries
            .iter()
            .map(|(keys, help)| {
                let keys = match keys.as_slice() {
                    [one] => one.clone(),
                    [first, .., last] => format!("{first}–{last}"),
                    [] => String::new(),
                };
                format!("{keys} = {help}")
            })
            .collect::<Vec<_>>()
            .join(", ");
        out += &format!("\n{}: {line}", group.name());
    }
    out
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn no_key_is_bound_twice() {
        let mut seen: Vec<(KeyboardShortcut, Action)> = Vec::new();
        for a in Action::ALL {
            for k in a.spec().keys {
                if let Some((_, other)) = seen.iter().find(|(s, _)| s == k) {
                    panic!("{k:?} is bound to both {other:?} and {a:?}");
                }
                seen.push((*k, a));
            }
        }
    }

    #[test]
    fn keys_find_their_actions() {
        assert_eq!(
            Action::for_key(Key::S, Modifiers::NONE),
            Some(Action::Segmentations)
        );
        assert_eq!(
            Action::for_key(Key::Num3, Modifiers::SHIFT),
            Some(Action::Preset(2))
        );
        assert_eq!(
            Action::for_key(Key::Escape, Modifiers::NONE),
            Some(Action::WindowLevelTool)
        );
        // Undo needs Ctrl; plain Z does nothing.
        assert_eq!(
            Action::for_key(Key::Z, Modifiers::COMMAND),
            Some(Action::UndoMeasurement)
        );
        assert_eq!(Action::for_key(Key::Z, Modifiers::NONE), None);
    }

    #[test]
    fn help_lists_every_shortcut_once() {
        let help = help_text();
        assert!(help.contains("1–5 = presets (CT:"), "{help}");
        assert!(help.contains("Ctrl+Z = undo measurement"), "{help}");
        assert!(help.contains("W/Escape = window/level"), "{help}");
        assert!(help.contains("Up/Left = previous slice"), "{help}");
        for a in Action::ALL {
            if a.spec().keys.is_empty() || matches!(a, Action::Preset(_)) {
                continue;
            }
            let entry = format!("{} = {}", a.keys_text(), a.spec().help);
            assert_eq!(help.matches(&entry).count(), 1, "{entry} in\n{help}");
        }
        assert_eq!(Action::Segmentations.menu_text(), "Segmentations (S)");
    }
}
