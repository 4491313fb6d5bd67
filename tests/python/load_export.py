#!/usr/bin/env python3
"""Loads an imprint export as training pipelines do and checks its values.

    load_export.py --parquet DIR --jsonl DIR --expect FILE.json

The Parquet export is loaded with pandas and with Hugging Face `datasets`
(load_dataset("parquet", data_files=...)), the JSONL export line by line with `json`.
FILE.json holds what the Rust side expects (counts, action types, the typed text, the
reason positions are unknown). Exits non-zero with a message on the first mismatch.
"""
import argparse
import json
import math
import os
import sys
import tempfile


def fail(msg):
    print(f"load_export: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def check_actions(rows, exp, where):
    """rows: list of dicts (one per action), from any loader."""
    check(len(rows) == exp["actions"], f"{where}: {len(rows)} actions, expected {exp['actions']}")
    types = {r["type"] for r in rows}
    for t in exp["types"]:
        check(t in types, f"{where}: no {t!r} action in {sorted(types)}")
    typed = [r for r in rows if r["type"] == "type"]
    check(typed, f"{where}: no type action")
    check(typed[0]["text"] == exp["text"], f"{where}: text {typed[0]['text']!r}, expected {exp['text']!r}")
    times = list(typed[0]["key_times_ms"])
    check(len(times) == exp["type_keys"], f"{where}: {len(times)} key times, expected {exp['type_keys']}")
    check(times[0] == 0.0 and all(b >= a for a, b in zip(times, times[1:])),
          f"{where}: key times are not offsets in order: {times}")
    check(typed[0]["pyautogui"] == exp["type_pyautogui"],
          f"{where}: pyautogui {typed[0]['pyautogui']!r}, expected {exp['type_pyautogui']!r}")
    for r in rows:
        if r["type"] in ("click", "right_click", "middle_click", "double_click", "drag", "scroll"):
            x = r["x"]
            check(x is None or (isinstance(x, float) and math.isnan(x)),
                  f"{where}: {r['type']} has a position {x!r}; the replay has no pointer source")
            check(r["position_unavailable"] == exp["position_unavailable"],
                  f"{where}: {r['type']} position_unavailable {r['position_unavailable']!r}")
        check(r["session_id"] == exp["session_id"], f"{where}: session_id {r['session_id']!r}")
        check(r["event_first"] is not None and r["event_first"] <= r["event_last"],
              f"{where}: {r['type']} has no raw-event range")
    scroll = [r for r in rows if r["type"] == "scroll"]
    check(scroll and scroll[0]["scroll_detents"] == exp["scroll_detents"],
          f"{where}: scroll detents {[s['scroll_detents'] for s in scroll]}")


def check_events(rows, exp, where):
    check(len(rows) == exp["events"], f"{where}: {len(rows)} events, expected {exp['events']}")
    codes = {r["code"] for r in rows}
    for c in ("KEY_H", "BTN_LEFT", "REL_WHEEL"):
        check(c in codes, f"{where}: no {c} event")
    check([r["event_index"] for r in rows] == list(range(len(rows))), f"{where}: event_index is not 0..n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--parquet", required=True)
    ap.add_argument("--jsonl", required=True)
    ap.add_argument("--expect", required=True)
    args = ap.parse_args()
    with open(args.expect) as f:
        exp = json.load(f)

    # pandas
    import pandas as pd

    acts = pd.read_parquet(os.path.join(args.parquet, "actions.parquet"))
    check_actions(acts.to_dict("records"), exp, "pandas actions")
    events = pd.read_parquet(os.path.join(args.parquet, "events.parquet"))
    check_events(events.to_dict("records"), exp, "pandas events")
    sessions = pd.read_parquet(os.path.join(args.parquet, "sessions.parquet"))
    check(len(sessions) == exp["sessions"], f"pandas: {len(sessions)} sessions")
    check(sessions["session_id"][0] == exp["session_id"], "pandas: session id")
    check(sessions["pointer_unavailable_reason"][0] == exp["position_unavailable"], "pandas: session pointer reason")

    # Hugging Face datasets, offline, with a private cache.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as cache:
        from datasets import load_dataset

        # One dataset per table: the splits of one dataset share a schema, tables do not.
        def table(name):
            path = os.path.join(args.parquet, f"{name}.parquet")
            return load_dataset("parquet", data_files={"train": path}, cache_dir=cache)["train"]

        ds = {"actions": table("actions"), "events": table("events"), "sessions": table("sessions")}
        check(len(ds["sessions"]) == exp["sessions"], "datasets: sessions")
        check_actions(list(ds["actions"]), exp, "datasets actions")
        check_events(list(ds["events"]), exp, "datasets events")
        check("path" in ds["actions"].features and "window_rect" in ds["actions"].features,
              "datasets: nested columns missing")

    # JSONL, line by line
    def lines(name):
        with open(os.path.join(args.jsonl, name)) as f:
            return [json.loads(line) for line in f]

    jacts = lines("actions.jsonl")
    check_actions(jacts, exp, "jsonl actions")
    check_events(lines("events.jsonl"), exp, "jsonl events")
    check(len(lines("sessions.jsonl")) == exp["sessions"], "jsonl sessions")
    check(list(jacts[0].keys()) == list(acts.columns), "jsonl keys are not the parquet columns")

    for d in (args.parquet, args.jsonl):
        with open(os.path.join(d, "manifest.json")) as f:
            m = json.load(f)
        check(m["schema"] == "imprint.actions/v1", f"manifest schema {m['schema']}")
        check(m["rows"] == {"sessions": exp["sessions"], "actions": exp["actions"], "events": exp["events"]},
              f"manifest rows {m['rows']}")

    print(f"load_export: ok ({exp['actions']} actions, {exp['events']} events; pandas, datasets, json)")


if __name__ == "__main__":
    main()
