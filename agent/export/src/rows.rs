//! The one row model of an export: the rows of the `sessions`, `actions` and `events` tables.
//! Parquet columns ([`crate::parquet`]) and JSONL objects ([`crate::jsonl`]) are both made from
//! these structs, so the two formats cannot drift apart.

use serde::Serialize;

/// The schema id of the tables, in the manifest and in every file's metadata.
pub const SCHEMA_ID: &str = "imprint.actions/v1";
/// Bumped only when a column is added; columns are never removed or retyped within `v1`.
pub const SCHEMA_MINOR: u32 = 0;

/// One monitor of a session's screen, in the display server's root coordinates.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MonitorRow {
    pub name: String,
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
    pub scale: f64,
    pub primary: bool,
}

/// One point of a drag or move path: ms after the action's start, root coordinates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PathPoint {
    pub t_ms: f64,
    pub x: f64,
    pub y: f64,
}

/// A rectangle in root coordinates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
}

/// One row of `sessions`: one boot of one display session.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Session {
    pub session_id: String,
    pub boot_id: String,
    pub subject_id: Option<String>,
    pub machine_id: String,
    pub notice_version: Option<u32>,
    pub policy_hash: Option<String>,
    pub policy_version: Option<u64>,
    pub display_server: Option<String>,
    pub screen_width: Option<u32>,
    pub screen_height: Option<u32>,
    pub monitors: Vec<MonitorRow>,
    pub keymap: Option<String>,
    pub realtime_offset_ns: i64,
    pub start_mono_ns: u64,
    pub end_mono_ns: u64,
    pub start_unix_ms: Option<i64>,
    pub end_unix_ms: Option<i64>,
    pub double_click_ms: Option<u32>,
    pub double_click_distance: Option<u32>,
    pub pointer_available: bool,
    pub pointer_unavailable_reason: Option<String>,
    pub action_count: u64,
    pub event_count: u64,
}

/// One row of `actions`: what the person did, in the terms training pipelines use.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Action {
    pub action_index: u64,
    pub session_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub start_mono_ns: u64,
    pub end_mono_ns: u64,
    pub start_unix_ms: Option<i64>,
    pub end_unix_ms: Option<i64>,
    pub event_first: Option<u64>,
    pub event_last: Option<u64>,
    pub ring_epoch: Option<u64>,
    pub ring_seq_first: Option<u64>,
    pub ring_seq_last: Option<u64>,
    pub button: Option<String>,
    pub click_count: Option<u32>,
    pub x: Option<f64>,
    pub y: Option<f64>,
    pub position_unavailable: Option<String>,
    pub position_lag_ms: Option<f64>,
    pub x_norm: Option<f64>,
    pub y_norm: Option<f64>,
    pub monitor: Option<String>,
    pub end_x: Option<f64>,
    pub end_y: Option<f64>,
    pub end_x_norm: Option<f64>,
    pub end_y_norm: Option<f64>,
    pub window_x: Option<f64>,
    pub window_y: Option<f64>,
    pub window_rect: Option<Rect>,
    pub path: Option<Vec<PathPoint>>,
    pub scroll_detents: Option<i64>,
    pub scroll_hi_res: Option<i64>,
    pub text: Option<String>,
    pub key_times_ms: Option<Vec<f64>>,
    pub keys: Option<Vec<String>>,
    pub modifiers: Option<Vec<String>>,
    pub repeat_count: Option<u32>,
    pub level: Option<String>,
    pub redaction_rule: Option<String>,
    pub redaction_count: Option<u32>,
    pub redaction_placeholder: Option<String>,
    pub gap_stage: Option<String>,
    pub gap_count: Option<u64>,
    pub focus_seq: Option<u64>,
    pub app_id: Option<String>,
    pub wm_class: Option<String>,
    pub exe: Option<String>,
    pub title: Option<String>,
    pub pyautogui: Option<String>,
    pub element_role: Option<String>,
    pub element_name: Option<String>,
    pub element_bounds: Option<Rect>,
}

/// One row of `events`: a raw input event as the spool holds it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Event {
    pub event_index: u64,
    pub session_id: String,
    pub mono_ns: u64,
    pub unix_ms: Option<i64>,
    pub device: u32,
    pub device_name: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub code: String,
    pub value: i32,
    pub focus_seq: u64,
}

/// The three tables of one export.
#[derive(Clone, Debug, Default)]
pub struct Tables {
    pub sessions: Vec<Session>,
    pub actions: Vec<Action>,
    pub events: Vec<Event>,
}

/// Unix time in ms of a monotonic instant, when the batch recorded its clock offset.
pub fn unix_ms(mono_ns: u64, realtime_offset_ns: i64) -> Option<i64> {
    if realtime_offset_ns == 0 {
        return None;
    }
    let ns = i128::from(mono_ns) + i128::from(realtime_offset_ns);
    i64::try_from(ns.div_euclid(1_000_000)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_needs_the_offset() {
        assert_eq!(unix_ms(5_000_000, 0), None);
        assert_eq!(
            unix_ms(2_500_000, 1_700_000_000_000_000_000),
            Some(1_700_000_000_002)
        );
    }
}
