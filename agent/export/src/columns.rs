//! The Arrow columns of the three tables, made from the row model. The schemas are the
//! columns of an empty table, so a column is declared in exactly one place.

use crate::rows::{Action, Event, MonitorRow, PathPoint, Rect, Session};
use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Float64Builder, Int32Builder, ListBuilder, StringBuilder,
    StructBuilder, UInt32Builder,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    UInt32Array, UInt64Array,
};
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema};
use std::sync::Arc;

/// Columns being assembled.
#[derive(Default)]
struct Cols {
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
}

impl Cols {
    fn add(&mut self, name: &str, nullable: bool, a: impl Array + 'static) {
        self.fields
            .push(Field::new(name, a.data_type().clone(), nullable));
        self.arrays.push(Arc::new(a));
    }

    fn u64(&mut self, name: &str, v: impl Iterator<Item = u64>) {
        self.add(name, false, UInt64Array::from_iter_values(v));
    }

    fn u64_opt(&mut self, name: &str, v: impl Iterator<Item = Option<u64>>) {
        self.add(name, true, v.collect::<UInt64Array>());
    }

    fn i64(&mut self, name: &str, v: impl Iterator<Item = i64>) {
        self.add(name, false, Int64Array::from_iter_values(v));
    }

    fn i64_opt(&mut self, name: &str, v: impl Iterator<Item = Option<i64>>) {
        self.add(name, true, v.collect::<Int64Array>());
    }

    fn u32(&mut self, name: &str, v: impl Iterator<Item = u32>) {
        self.add(name, false, UInt32Array::from_iter_values(v));
    }

    fn u32_opt(&mut self, name: &str, v: impl Iterator<Item = Option<u32>>) {
        self.add(name, true, v.collect::<UInt32Array>());
    }

    fn i32(&mut self, name: &str, v: impl Iterator<Item = i32>) {
        self.add(name, false, Int32Array::from_iter_values(v));
    }

    fn f64_opt(&mut self, name: &str, v: impl Iterator<Item = Option<f64>>) {
        self.add(name, true, v.collect::<Float64Array>());
    }

    fn bool(&mut self, name: &str, v: impl Iterator<Item = bool>) {
        self.add(name, false, v.map(Some).collect::<BooleanArray>());
    }

    fn str<'a>(&mut self, name: &str, v: impl Iterator<Item = &'a str>) {
        self.add(name, false, v.map(Some).collect::<StringArray>());
    }

    fn str_opt<'a>(&mut self, name: &str, v: impl Iterator<Item = Option<&'a str>>) {
        self.add(name, true, v.collect::<StringArray>());
    }

    fn f64_list<'a>(&mut self, name: &str, v: impl Iterator<Item = Option<&'a Vec<f64>>>) {
        let mut b = ListBuilder::new(Float64Builder::new()).with_field(Field::new(
            "item",
            DataType::Float64,
            false,
        ));
        for row in v {
            match row {
                Some(xs) => {
                    b.values().append_slice(xs);
                    b.append(true);
                }
                None => b.append(false),
            }
        }
        self.add(name, true, b.finish());
    }

    fn str_list<'a>(&mut self, name: &str, v: impl Iterator<Item = Option<&'a Vec<String>>>) {
        let mut b = ListBuilder::new(StringBuilder::new()).with_field(Field::new(
            "item",
            DataType::Utf8,
            false,
        ));
        for row in v {
            match row {
                Some(xs) => {
                    for x in xs {
                        b.values().append_value(x);
                    }
                    b.append(true);
                }
                None => b.append(false),
            }
        }
        self.add(name, true, b.finish());
    }

    fn rect<'a>(&mut self, name: &str, v: impl Iterator<Item = Option<&'a Rect>>) {
        let mut b = StructBuilder::new(rect_fields(), rect_builders());
        for r in v {
            append_rect(&mut b, r);
        }
        self.add(name, true, b.finish());
    }

    fn path<'a>(&mut self, name: &str, v: impl Iterator<Item = Option<&'a Vec<PathPoint>>>) {
        let fields = point_fields();
        let item = Field::new("item", DataType::Struct(fields.clone()), false);
        let values = StructBuilder::new(
            fields,
            vec![
                Box::new(Float64Builder::new()),
                Box::new(Float64Builder::new()),
                Box::new(Float64Builder::new()),
            ],
        );
        let mut b = ListBuilder::new(values).with_field(item);
        for row in v {
            match row {
                Some(points) => {
                    for p in points {
                        let s = b.values();
                        for (i, x) in [p.t_ms, p.x, p.y].into_iter().enumerate() {
                            if let Some(f) = s.field_builder::<Float64Builder>(i) {
                                f.append_value(x);
                            }
                        }
                        s.append(true);
                    }
                    b.append(true);
                }
                None => b.append(false),
            }
        }
        self.add(name, true, b.finish());
    }

    fn monitors<'a>(&mut self, name: &str, v: impl Iterator<Item = &'a Vec<MonitorRow>>) {
        let fields = monitor_fields();
        let item = Field::new("item", DataType::Struct(fields.clone()), false);
        let values = StructBuilder::new(
            fields,
            vec![
                Box::new(StringBuilder::new()),
                Box::new(Int32Builder::new()),
                Box::new(Int32Builder::new()),
                Box::new(UInt32Builder::new()),
                Box::new(UInt32Builder::new()),
                Box::new(Float64Builder::new()),
                Box::new(BooleanBuilder::new()),
            ],
        );
        let mut b = ListBuilder::new(values).with_field(item);
        for row in v {
            for m in row {
                let s = b.values();
                if let Some(f) = s.field_builder::<StringBuilder>(0) {
                    f.append_value(&m.name);
                }
                for (i, x) in [(1, m.x), (2, m.y)] {
                    if let Some(f) = s.field_builder::<Int32Builder>(i) {
                        f.append_value(x);
                    }
                }
                for (i, x) in [(3, m.width), (4, m.height)] {
                    if let Some(f) = s.field_builder::<UInt32Builder>(i) {
                        f.append_value(x);
                    }
                }
                if let Some(f) = s.field_builder::<Float64Builder>(5) {
                    f.append_value(m.scale);
                }
                if let Some(f) = s.field_builder::<BooleanBuilder>(6) {
                    f.append_value(m.primary);
                }
                s.append(true);
            }
            b.append(true);
        }
        self.add(name, false, b.finish());
    }

    fn batch(self) -> Result<RecordBatch, ArrowError> {
        RecordBatch::try_new(Arc::new(Schema::new(self.fields)), self.arrays)
    }
}

fn rect_fields() -> Fields {
    Fields::from(vec![
        Field::new("x", DataType::Int32, false),
        Field::new("y", DataType::Int32, false),
        Field::new("width", DataType::UInt32, false),
        Field::new("height", DataType::UInt32, false),
    ])
}

fn rect_builders() -> Vec<Box<dyn ArrayBuilder>> {
    vec![
        Box::new(Int32Builder::new()),
        Box::new(Int32Builder::new()),
        Box::new(UInt32Builder::new()),
        Box::new(UInt32Builder::new()),
    ]
}

fn append_rect(b: &mut StructBuilder, r: Option<&Rect>) {
    let (x, y, w, h) = r.map_or((None, None, None, None), |r| {
        (Some(r.x), Some(r.y), Some(r.width), Some(r.height))
    });
    for (i, v) in [(0, x), (1, y)] {
        if let Some(f) = b.field_builder::<Int32Builder>(i) {
            f.append_option(v);
        }
    }
    for (i, v) in [(2, w), (3, h)] {
        if let Some(f) = b.field_builder::<UInt32Builder>(i) {
            f.append_option(v);
        }
    }
    b.append(r.is_some());
}

fn point_fields() -> Fields {
    Fields::from(vec![
        Field::new("t_ms", DataType::Float64, false),
        Field::new("x", DataType::Float64, false),
        Field::new("y", DataType::Float64, false),
    ])
}

fn monitor_fields() -> Fields {
    Fields::from(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("x", DataType::Int32, false),
        Field::new("y", DataType::Int32, false),
        Field::new("width", DataType::UInt32, false),
        Field::new("height", DataType::UInt32, false),
        Field::new("scale", DataType::Float64, false),
        Field::new("primary", DataType::Boolean, false),
    ])
}

/// The `sessions` rows as one Arrow batch.
pub fn sessions(rows: &[Session]) -> Result<RecordBatch, ArrowError> {
    let mut c = Cols::default();
    c.str("session_id", rows.iter().map(|r| r.session_id.as_str()));
    c.str("boot_id", rows.iter().map(|r| r.boot_id.as_str()));
    c.str_opt("subject_id", rows.iter().map(|r| r.subject_id.as_deref()));
    c.str("machine_id", rows.iter().map(|r| r.machine_id.as_str()));
    c.u32_opt("notice_version", rows.iter().map(|r| r.notice_version));
    c.str_opt("policy_hash", rows.iter().map(|r| r.policy_hash.as_deref()));
    c.u64_opt("policy_version", rows.iter().map(|r| r.policy_version));
    c.str_opt(
        "display_server",
        rows.iter().map(|r| r.display_server.as_deref()),
    );
    c.u32_opt("screen_width", rows.iter().map(|r| r.screen_width));
    c.u32_opt("screen_height", rows.iter().map(|r| r.screen_height));
    c.monitors("monitors", rows.iter().map(|r| &r.monitors));
    c.str_opt("keymap", rows.iter().map(|r| r.keymap.as_deref()));
    c.i64(
        "realtime_offset_ns",
        rows.iter().map(|r| r.realtime_offset_ns),
    );
    c.u64("start_mono_ns", rows.iter().map(|r| r.start_mono_ns));
    c.u64("end_mono_ns", rows.iter().map(|r| r.end_mono_ns));
    c.i64_opt("start_unix_ms", rows.iter().map(|r| r.start_unix_ms));
    c.i64_opt("end_unix_ms", rows.iter().map(|r| r.end_unix_ms));
    c.u32_opt("double_click_ms", rows.iter().map(|r| r.double_click_ms));
    c.u32_opt(
        "double_click_distance",
        rows.iter().map(|r| r.double_click_distance),
    );
    c.bool(
        "pointer_available",
        rows.iter().map(|r| r.pointer_available),
    );
    c.str_opt(
        "pointer_unavailable_reason",
        rows.iter().map(|r| r.pointer_unavailable_reason.as_deref()),
    );
    c.u64("action_count", rows.iter().map(|r| r.action_count));
    c.u64("event_count", rows.iter().map(|r| r.event_count));
    c.batch()
}

/// The `actions` rows as one Arrow batch.
pub fn actions(rows: &[Action]) -> Result<RecordBatch, ArrowError> {
    let mut c = Cols::default();
    let r = || rows.iter();
    c.u64("action_index", r().map(|a| a.action_index));
    c.str("session_id", r().map(|a| a.session_id.as_str()));
    c.str("type", r().map(|a| a.kind.as_str()));
    c.u64("start_mono_ns", r().map(|a| a.start_mono_ns));
    c.u64("end_mono_ns", r().map(|a| a.end_mono_ns));
    c.i64_opt("start_unix_ms", r().map(|a| a.start_unix_ms));
    c.i64_opt("end_unix_ms", r().map(|a| a.end_unix_ms));
    c.u64_opt("event_first", r().map(|a| a.event_first));
    c.u64_opt("event_last", r().map(|a| a.event_last));
    c.u64_opt("ring_epoch", r().map(|a| a.ring_epoch));
    c.u64_opt("ring_seq_first", r().map(|a| a.ring_seq_first));
    c.u64_opt("ring_seq_last", r().map(|a| a.ring_seq_last));
    c.str_opt("button", r().map(|a| a.button.as_deref()));
    c.u32_opt("click_count", r().map(|a| a.click_count));
    c.f64_opt("x", r().map(|a| a.x));
    c.f64_opt("y", r().map(|a| a.y));
    c.str_opt(
        "position_unavailable",
        r().map(|a| a.position_unavailable.as_deref()),
    );
    c.f64_opt("position_lag_ms", r().map(|a| a.position_lag_ms));
    c.f64_opt("x_norm", r().map(|a| a.x_norm));
    c.f64_opt("y_norm", r().map(|a| a.y_norm));
    c.str_opt("monitor", r().map(|a| a.monitor.as_deref()));
    c.f64_opt("end_x", r().map(|a| a.end_x));
    c.f64_opt("end_y", r().map(|a| a.end_y));
    c.f64_opt("end_x_norm", r().map(|a| a.end_x_norm));
    c.f64_opt("end_y_norm", r().map(|a| a.end_y_norm));
    c.f64_opt("window_x", r().map(|a| a.window_x));
    c.f64_opt("window_y", r().map(|a| a.window_y));
    c.rect("window_rect", r().map(|a| a.window_rect.as_ref()));
    c.path("path", r().map(|a| a.path.as_ref()));
    c.i64_opt("scroll_detents", r().map(|a| a.scroll_detents));
    c.i64_opt("scroll_hi_res", r().map(|a| a.scroll_hi_res));
    c.str_opt("text", r().map(|a| a.text.as_deref()));
    c.f64_list("key_times_ms", r().map(|a| a.key_times_ms.as_ref()));
    c.str_list("keys", r().map(|a| a.keys.as_ref()));
    c.str_list("modifiers", r().map(|a| a.modifiers.as_ref()));
    c.u32_opt("repeat_count", r().map(|a| a.repeat_count));
    c.str_opt("level", r().map(|a| a.level.as_deref()));
    c.str_opt("redaction_rule", r().map(|a| a.redaction_rule.as_deref()));
    c.u32_opt("redaction_count", r().map(|a| a.redaction_count));
    c.str_opt(
        "redaction_placeholder",
        r().map(|a| a.redaction_placeholder.as_deref()),
    );
    c.str_opt("gap_stage", r().map(|a| a.gap_stage.as_deref()));
    c.u64_opt("gap_count", r().map(|a| a.gap_count));
    c.u64_opt("focus_seq", r().map(|a| a.focus_seq));
    c.str_opt("app_id", r().map(|a| a.app_id.as_deref()));
    c.str_opt("wm_class", r().map(|a| a.wm_class.as_deref()));
    c.str_opt("exe", r().map(|a| a.exe.as_deref()));
    c.str_opt("title", r().map(|a| a.title.as_deref()));
    c.str_opt("pyautogui", r().map(|a| a.pyautogui.as_deref()));
    c.str_opt("element_role", r().map(|a| a.element_role.as_deref()));
    c.str_opt("element_name", r().map(|a| a.element_name.as_deref()));
    c.rect("element_bounds", r().map(|a| a.element_bounds.as_ref()));
    c.batch()
}

/// The `events` rows as one Arrow batch.
pub fn events(rows: &[Event]) -> Result<RecordBatch, ArrowError> {
    let mut c = Cols::default();
    let r = || rows.iter();
    c.u64("event_index", r().map(|e| e.event_index));
    c.str("session_id", r().map(|e| e.session_id.as_str()));
    c.u64("mono_ns", r().map(|e| e.mono_ns));
    c.i64_opt("unix_ms", r().map(|e| e.unix_ms));
    c.u32("device", r().map(|e| e.device));
    c.str_opt("device_name", r().map(|e| e.device_name.as_deref()));
    c.str("type", r().map(|e| e.kind.as_str()));
    c.str("code", r().map(|e| e.code.as_str()));
    c.i32("value", r().map(|e| e.value));
    c.u64("focus_seq", r().map(|e| e.focus_seq));
    c.batch()
}

/// The schemas of the three tables, by table name.
pub fn schemas() -> Result<Vec<(&'static str, Arc<Schema>)>, ArrowError> {
    Ok(vec![
        ("sessions", sessions(&[])?.schema()),
        ("actions", actions(&[])?.schema()),
        ("events", events(&[])?.schema()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn json_keys(v: &impl serde::Serialize) -> BTreeSet<String> {
        serde_json::to_value(v)
            .ok()
            .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect()))
            .unwrap_or_default()
    }

    fn arrow_names(s: &Schema) -> BTreeSet<String> {
        s.fields().iter().map(|f| f.name().clone()).collect()
    }

    /// JSONL and Parquet come from one row model: every JSON key is a column and back.
    #[test]
    fn json_fields_are_the_arrow_columns() {
        let s = schemas().expect("schemas");
        assert_eq!(json_keys(&Session::default()), arrow_names(&s[0].1));
        assert_eq!(json_keys(&Action::default()), arrow_names(&s[1].1));
        assert_eq!(json_keys(&Event::default()), arrow_names(&s[2].1));
        let order: Vec<String> = serde_json::to_value(Action::default())
            .ok()
            .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect()))
            .unwrap_or_default();
        let cols: Vec<String> = s[1].1.fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(order, cols, "the same order, too");
        assert_eq!(json_keys(&PathPoint::default()).len(), point_fields().len());
        assert_eq!(
            json_keys(&MonitorRow::default()).len(),
            monitor_fields().len()
        );
        assert_eq!(json_keys(&Rect::default()).len(), rect_fields().len());
    }

    #[test]
    fn nested_values_round_trip_into_arrow() {
        let a = Action {
            kind: "drag".into(),
            path: Some(vec![PathPoint {
                t_ms: 1.5,
                x: 2.0,
                y: 3.0,
            }]),
            window_rect: Some(Rect {
                x: 1,
                y: 2,
                width: 3,
                height: 4,
            }),
            keys: Some(vec!["ctrl".into(), "s".into()]),
            ..Default::default()
        };
        let b = actions(&[a, Action::default()]).expect("batch");
        assert_eq!(b.num_rows(), 2);
        let path = b.column_by_name("path").expect("path");
        assert!(path.is_valid(0) && path.is_null(1));
        let rect = b.column_by_name("window_rect").expect("rect");
        assert!(rect.is_valid(0) && rect.is_null(1));
    }
}

#[cfg(test)]
mod schema_doc {
    use super::*;

    /// SCHEMA.md lists every column of every table, with its nullability, and nothing else.
    #[test]
    fn the_schema_document_lists_every_column() {
        let doc = include_str!("../SCHEMA.md");
        for (table, schema) in schemas().expect("schemas") {
            let heading = format!("## {table}\n");
            let start = doc.find(&heading).unwrap_or_else(|| panic!("no {heading}"));
            let section = &doc[start + heading.len()..];
            let section = &section[..section.find("\n## ").unwrap_or(section.len())];
            let documented: Vec<(String, bool)> = section
                .lines()
                .filter_map(|l| {
                    let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                    let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                    Some((name.to_owned(), *cells.get(3)? == "yes"))
                })
                .collect();
            let actual: Vec<(String, bool)> = schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.is_nullable()))
                .collect();
            assert_eq!(documented, actual, "SCHEMA.md, table {table}");
        }
    }
}
