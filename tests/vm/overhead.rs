//! The VM overhead bench: imprint (eBPF and evdev), `libinput record --all` and `evtest`, one
//! after another in one boot of Debian's kernel, each under the same uinput load
//! (`imprint-vm-guest load`: a keyboard and a mouse, paced at 1000 reports/s, then a flood as
//! fast as uinput goes), measured by `imprint-vm-guest measure` (CPU of every thread plus, for
//! imprint, its BPF programs' run time; wake-ups while idle and while other processes start;
//! peak RSS) and by what each tool wrote (events kept, bytes on disk).
//!
//! `IMPRINT_BENCH_RUNS=3 cargo test -p imprint-tests --test vm overhead -- --ignored --nocapture`
//! prints a table per boot and, over several boots, one with each figure's min–max. TCG
//! emulates the CPU, so only the ratios between tools mean anything.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::ebpf::{CONFIG, HELPERS};
use crate::harness::{Vm, VmRun};

const RECORDER: &str = "/usr/libexec/libinput/libinput-record";
const EVTEST: &str = "/usr/bin/evtest";
/// Reports per phase: the paced one at 1000/s for 10 s, the flood of the issue's 15 000.
const PACED_REPORTS: u64 = 10_000;
const FLOOD_REPORTS: u64 = 15_000;

/// The tools, in the order they run, and how each is started, stopped and counted.
const TOOLS: [&str; 4] = ["imprint-ebpf", "imprint-evdev", "libinput", "evtest"];

/// Counts the events (SYN_REPORT not counted) of each device in a tool's output, as lines of
/// `NAME COUNT` in `/tmp/count-TOOL`.
const COUNTERS: &str = r#"
count_imprint() { # DUMP
    awk '
    function num(key,   s) { if (!match($0, "\"" key "\":[0-9]+")) return -1; s = substr($0, RSTART, RLENGTH); sub(/.*:/, "", s); return s }
    /"kind":"device"/ { d = num("device"); match($0, /"name":"[^"]*"/); name[d] = substr($0, RSTART + 8, RLENGTH - 9) }
    /"kind":"event"/ { c[num("device")]++ }
    END { for (d in c) n[name[d]] += c[d]; for (k in n) print k, n[k] }' "$1"
}
count_libinput() { # YAML: one section per device, its events at 4 spaces
    awk '
    /^- node:/ { dev = "" }
    /^    name: "/ { if (dev == "") { dev = $0; sub(/^    name: "/, "", dev); sub(/".*/, "", dev) } }
    /^    - \[/ { line = $0; sub(/^    - \[/, "", line); split(line, f, ","); if (f[3] + 0 != 0) n[dev]++ }
    END { for (k in n) print k, n[k] }' "$1"
}
count_evtest() { # NAME FILE
    echo "$1 $(grep -c '^Event: time .*, type [1-9]' "$2")"
}
"#;

fn script() -> String {
    let mut s = format!(
        r#"{COUNTERS}
echo 1 > /proc/sys/kernel/bpf_stats_enabled
imprint-vm-guest load --dir /tmp/load --paced-reports {PACED_REPORTS} --per-second 1000 \
    --flood-reports {FLOOD_REPORTS} > /tmp/load.log 2>&1 &
load=$!
i=0; while [ ! -s /tmp/load/nodes ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
[ -s /tmp/load/nodes ] || {{ echo "the load created no devices"; cat /tmp/load.log; exit 1; }}
section nodes /tmp/load/nodes
: > /tmp/bench
"#
    );
    for tool in TOOLS {
        s.push_str(&tool_script(tool));
    }
    s.push_str("section bench /tmp/bench\n");
    s
}

/// Starts `tool`, measures it around both phases, stops it and counts what it kept.
fn tool_script(tool: &str) -> String {
    let measure = |pids: &str, spool: &str| {
        format!(
            "imprint-vm-guest measure --pids {pids} --load-dir /tmp/load {spool} --out /tmp/m-{tool} \
             || {{ echo 'measure {tool} failed'; exit 1; }}\n"
        )
    };
    let body = match tool {
        "imprint-ebpf" | "imprint-evdev" => {
            let (name, env) = if tool == "imprint-ebpf" {
                ("ebpf", "")
            } else {
                ("evdev", "IMPRINT_EBPF=off")
            };
            format!(
                r#"rm -rf /data/{name}
start_imprint {name} /data/{name} {env}
eval "pid=\$pid_{name}"
{measure}status {name} /data/{name} st-{name}
stop_imprint {name} /data/{name}
count_imprint /tmp/{name}.dump > /tmp/count-{tool}
sealed=$(find /data/{name} -name '*.sealed' -exec cat {{}} + | wc -c)
open=$(find /data/{name} -name '*.open' -exec cat {{}} + | wc -c)
section st-{name} /tmp/st-{name}.json
echo "{tool} disk_bytes=$((sealed + open)) sealed_bytes_end=$sealed open_bytes_end=$open $(cat /tmp/m-{tool})" >> /tmp/bench
"#,
                measure = measure("$pid", &format!("--spool /data/{name}")),
            )
        }
        "libinput" => format!(
            r#"rm -f /tmp/libinput.yml
{RECORDER} --all -o /tmp/libinput.yml > /tmp/libinput.log 2>&1 &
pid=$!
i=0; while ! grep -q '^- node:' /tmp/libinput.yml 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
{measure}kill -INT $pid; wait $pid
count_libinput /tmp/libinput.yml > /tmp/count-{tool}
echo "{tool} disk_bytes=$(wc -c < /tmp/libinput.yml) $(cat /tmp/m-{tool})" >> /tmp/bench
"#,
            measure = measure("$pid", ""),
        ),
        // evtest's SIGINT handler is installed with signal(), so read() restarts and it stops
        // only at its next event; ending the load removes the devices, its read fails, and it
        // exits through main, flushing its buffered output. So evtest runs last in the boot.
        "evtest" => format!(
            r#"pids=""
while read name node; do
    {EVTEST} "$node" > "/tmp/evtest-$name.txt" 2>&1 < /dev/null &
    pids="$pids${{pids:+,}}$!"
done < /tmp/load/nodes
while read name node; do
    i=0; while ! grep -q 'Testing' "/tmp/evtest-$name.txt" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    grep -q 'Testing' "/tmp/evtest-$name.txt" || {{ echo "evtest on $node did not start"; cat "/tmp/evtest-$name.txt"; exit 1; }}
done < /tmp/load/nodes
{measure}for p in $(echo $pids | tr , ' '); do kill -INT $p; done
touch /tmp/load/quit
wait $load
for p in $(echo $pids | tr , ' '); do wait $p; done
: > /tmp/count-{tool}
while read name node; do count_evtest "$name" "/tmp/evtest-$name.txt" >> /tmp/count-{tool}; done < /tmp/load/nodes
echo "{tool} disk_bytes=$(cat /tmp/evtest-*.txt | wc -c) $(cat /tmp/m-{tool})" >> /tmp/bench
"#,
            measure = measure("$pids", ""),
        ),
        other => panic!("no such tool {other}"),
    };
    format!("{body}echo \"{tool} counts $(tr '\\n' ' ' < /tmp/count-{tool})\" >> /tmp/bench\n")
}

/// One tool's figures from one boot.
#[derive(Clone, Debug, Default)]
struct Figures {
    paced_sent: u64,
    paced_kept: u64,
    flood_sent: u64,
    flood_kept: u64,
    paced_cpu_ns: u64,
    flood_cpu_ns: u64,
    idle_wakeups_per_s: f64,
    exec_wakeups: f64,
    hwm_mb: f64,
    bytes_per_event: f64,
    /// imprint only: sealed and open bytes per event after the paced phase.
    sealed_per_event: Option<f64>,
    open_bytes_paced: Option<u64>,
}

impl Figures {
    fn paced_ns_per_event(&self) -> f64 {
        self.paced_cpu_ns as f64 / self.paced_kept.max(1) as f64
    }
    fn flood_ns_per_event(&self) -> f64 {
        self.flood_cpu_ns as f64 / self.flood_kept.max(1) as f64
    }
}

fn parse_fields(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The figures of every tool in a boot, in order (several per tool when the boot ran more).
fn figures(run: &VmRun) -> Vec<(String, Figures)> {
    let bench = run.section("bench");
    let mut counts: Vec<(String, BTreeMap<String, u64>)> = Vec::new();
    let mut lines: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for line in bench.lines() {
        let mut words = line.split_whitespace();
        let Some(tool) = words.next() else { continue };
        let rest: Vec<&str> = words.collect();
        if rest.first() == Some(&"counts") {
            let mut map = BTreeMap::new();
            for pair in rest[1..].chunks(2) {
                if let [name, n] = pair {
                    map.insert((*name).to_owned(), n.parse().unwrap_or(0));
                }
            }
            counts.push((tool.to_owned(), map));
        } else {
            lines.push((tool.to_owned(), parse_fields(line)));
        }
    }
    if counts.len() != lines.len() || lines.is_empty() {
        run.fail(&format!("the bench section is incomplete:\n{bench}"));
    }
    let mut out = Vec::new();
    for ((tool, f), (_, c)) in lines.into_iter().zip(counts) {
        let num = |k: &str| -> u64 {
            f.get(k)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| run.fail(&format!("{tool}: no {k} in the bench line {f:?}")))
        };
        let kept = |phase: &str| -> u64 {
            c.iter()
                .filter(|(name, _)| name.starts_with(&format!("bench-{phase}-")))
                .map(|(_, n)| n)
                .sum()
        };
        if let Some(name) = tool.strip_prefix("imprint-") {
            let st = crate::ebpf::json(run, &format!("st-{name}"));
            let source = st
                .pointer("/ring/source")
                .and_then(serde_json::Value::as_str);
            if name == "ebpf" {
                crate::ebpf::require_ebpf_live(run, &st, "the eBPF row of the overhead bench");
            } else if source != Some(name) {
                run.fail(&format!(
                    "{tool} ran on source {source:?}: its row would be of something else"
                ));
            }
        }
        let paced_kept = kept("paced");
        let flood_kept = kept("flood");
        if paced_kept == 0 {
            run.fail(&format!("{tool} kept nothing of the paced phase: {c:?}"));
        }
        let all = (paced_kept + flood_kept).max(1) as f64;
        let idle_s = num("idle_ms") as f64 / 1000.0;
        let fig = Figures {
            paced_sent: num("paced_events"),
            paced_kept,
            flood_sent: num("flood_events"),
            flood_kept,
            paced_cpu_ns: num("paced_cpu_ns") + num("paced_bpf_ns"),
            flood_cpu_ns: num("flood_cpu_ns") + num("flood_bpf_ns"),
            idle_wakeups_per_s: num("idle_wakeups") as f64 / idle_s,
            exec_wakeups: num("exec_wakeups") as f64 / num("execs").max(1) as f64,
            hwm_mb: num("hwm_kb") as f64 / 1024.0,
            bytes_per_event: num("disk_bytes") as f64 / all,
            sealed_per_event: f
                .contains_key("sealed_bytes_end")
                .then(|| num("sealed_bytes_end") as f64 / all),
            open_bytes_paced: f
                .contains_key("paced_open_bytes")
                .then(|| num("paced_open_bytes")),
        };
        out.push((tool, fig));
    }
    out
}

fn table(rows: &[(String, Vec<Figures>)]) -> String {
    let libinput: Vec<&Figures> = rows
        .iter()
        .filter(|(t, _)| t == "libinput")
        .flat_map(|(_, f)| f)
        .collect();
    let base_paced =
        libinput.iter().map(|f| f.paced_ns_per_event()).sum::<f64>() / libinput.len().max(1) as f64;
    let base_flood =
        libinput.iter().map(|f| f.flood_ns_per_event()).sum::<f64>() / libinput.len().max(1) as f64;
    let range = |v: Vec<f64>, digits: usize| -> String {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if v.len() == 1 || (max - min).abs() < 10f64.powi(-(digits as i32)) {
            format!("{min:.digits$}")
        } else {
            format!("{min:.digits$}–{max:.digits$}")
        }
    };
    let mut s = String::from(
        "| tool | paced CPU/event vs `libinput record` | paced: kept of sent | flood CPU/event vs `libinput record` | flood: kept of sent | bytes/event on disk | idle wake-ups/s | wake-ups per process started | peak RSS (MB) |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for (tool, figs) in rows {
        let per = |f: &dyn Fn(&Figures) -> f64, d| range(figs.iter().map(f).collect(), d);
        let kept = |k: &dyn Fn(&Figures) -> (u64, u64)| {
            let (lo, hi) = figs
                .iter()
                .map(k)
                .fold((u64::MAX, 0), |(lo, hi), (kept, _)| {
                    (lo.min(kept), hi.max(kept))
                });
            let sent = figs.first().map(|f| k(f).1).unwrap_or(0);
            if lo == hi {
                format!("{lo} of {sent}")
            } else {
                format!("{lo}–{hi} of {sent}")
            }
        };
        let mut bytes = per(&|f| f.bytes_per_event, 1);
        if figs.iter().all(|f| f.sealed_per_event.is_some()) {
            let _ = write!(
                bytes,
                " (sealed {}; open after the paced phase {} B)",
                per(&|f| f.sealed_per_event.unwrap_or(0.0), 2),
                per(&|f| f.open_bytes_paced.unwrap_or(0) as f64, 0)
            );
        }
        let _ = writeln!(
            s,
            "| {tool} | {}× | {} | {}× | {} | {bytes} | {} | {} | {} |",
            per(&|f| f.paced_ns_per_event() / base_paced, 2),
            kept(&|f| (f.paced_kept, f.paced_sent)),
            per(&|f| f.flood_ns_per_event() / base_flood, 2),
            kept(&|f| (f.flood_kept, f.flood_sent)),
            per(&|f| f.idle_wakeups_per_s, 1),
            per(&|f| f.exec_wakeups, 1),
            per(&|f| f.hwm_mb, 1),
        );
    }
    let _ = writeln!(
        s,
        "\n`libinput record`: {base_paced:.0} ns/event paced, {base_flood:.0} ns/event flooded (TCG time)."
    );
    s
}

fn boot(index: usize) -> VmRun {
    let mut vm = Vm::new(&format!("overhead_vs_libinput_record_and_evtest-{index}"))
        .with_imprint()
        .timeout(Duration::from_secs(1200))
        .memory_mb(1024)
        .file(CONFIG, "[capture]\ndefault_level = \"full\"\n", 0o644)
        .script(&format!("{HELPERS}\n{}", script()));
    let fs = vm.initramfs();
    let setup = (|| -> anyhow::Result<()> {
        fs.copy_dynamic(Path::new(RECORDER))?;
        fs.copy_tree(Path::new("/usr/share/libinput"))?;
        fs.copy_dynamic(Path::new(EVTEST))?;
        fs.copy(Path::new("/etc/os-release"), "/etc/os-release")?;
        Ok(())
    })();
    setup.unwrap_or_else(|err| {
        panic!("putting libinput-record and evtest into the initramfs (apt-get install libinput-tools evtest): {err:#}")
    });
    let run = vm.run().unwrap_or_else(|err| panic!("{err:#}"));
    run.assert_success();
    run
}

#[test]
#[ignore = "benchmark: imprint vs libinput record and evtest; run with --ignored --nocapture"]
fn overhead_vs_libinput_record_and_evtest() {
    let runs: usize = std::env::var("IMPRINT_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut all: Vec<(String, Vec<Figures>)> =
        TOOLS.iter().map(|t| (t.to_string(), vec![])).collect();
    for index in 0..runs {
        let run = boot(index);
        let figs = figures(&run);
        let rows: Vec<(String, Vec<Figures>)> = figs
            .iter()
            .map(|(t, f)| (t.clone(), vec![f.clone()]))
            .collect();
        eprintln!(
            "overhead: boot {} of {runs} ({:.0} s, kernel {}):\n{}",
            index + 1,
            run.elapsed.as_secs_f64(),
            run.kernel.as_deref().unwrap_or("?"),
            table(&rows)
        );
        for (tool, f) in figs {
            if let Some((_, v)) = all.iter_mut().find(|(t, _)| *t == tool) {
                v.push(f);
            }
        }
    }
    if runs > 1 {
        eprintln!("overhead: {runs} boots, min–max:\n{}", table(&all));
    }
}
