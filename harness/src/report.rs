//! The report of a bench run: machine details, the text table and the JSON
//! file (written by hand: a small escaping writer is all it needs).
//!
//! JSON shape (names are the rows' stable snake_case names):
//!
//! ```text
//! {"machine": {"cpu_model": "...", "logical_cpus": 2, "kernel": "...",
//!              "pin": "none", "quick": true, "hogs": 0,
//!              "placement": {"NAME": {"parent": [0, 0], "child": [1, 1]}}},
//!  "measurements": {"NAME": {"median": N, "p99": N, "unit": "ns", "samples": N}},
//!  "notes": {"NAME": "..."},
//!  "targets": [{"row": "NAME", "vs": "NAME", "ratio": N, "max": N}],
//!  "seed_tables": [...]}
//! ```
//!
//! `seed_tables` is added by the command ([`crate::tables::add_to_json`]):
//! the seed's tables with this run's figures.
//!
//! `targets` holds each [`Target`] whose two rows were measured, with this
//! run's ratio of their medians.

use core::fmt::Write as _;

use super::{Config, Measurement, PinMode, Row, Target, targets};

/// What the report says about the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The first `model name` of `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Logical CPUs this process may run on.
    pub logical_cpus: usize,
    /// Kernel release and version from `/proc/sys/kernel`.
    pub kernel: String,
}

impl Machine {
    /// Reads the machine's details; unknown parts read `unknown`.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".to_owned())
        };
        let kernel = format!(
            "{} {}",
            read("/proc/sys/kernel/osrelease"),
            read("/proc/sys/kernel/version")
        );
        let logical_cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        Self {
            cpu_model,
            logical_cpus,
            kernel,
        }
    }
}

/// One row's outcome in a run.
#[derive(Debug)]
pub struct Outcome {
    /// The row.
    pub row: Row,
    /// Its figures, or why it failed.
    pub result: Result<Measurement, String>,
}

/// `cost(row) / cost(floor)` when both were measured: how many times the
/// floor's cost (time, or inverse rate) this row's median is.
pub fn ratio(outcomes: &[Outcome], o: &Outcome) -> Option<f64> {
    ratio_of(outcomes, o.row.name, o.row.floor?)
}

/// `cost(row) / cost(vs)` when both rows were measured in the same unit.
pub fn ratio_of(outcomes: &[Outcome], row: &str, vs: &str) -> Option<f64> {
    let measured = |name: &str| {
        outcomes
            .iter()
            .find(|x| x.row.name == name)?
            .result
            .as_ref()
            .ok()
    };
    let (m, f) = (measured(row)?, measured(vs)?);
    if f.unit() != m.unit() || f.cost() <= 0.0 {
        return None;
    }
    Some(m.cost() / f.cost())
}

/// The targets whose two rows were measured, with this run's ratio.
fn measured_targets(outcomes: &[Outcome]) -> Vec<(Target, f64)> {
    targets()
        .into_iter()
        .filter_map(|t| Some((t, ratio_of(outcomes, t.row, t.vs)?)))
        .collect()
}

/// A figure for the table: plain nanoseconds, rates with an SI prefix.
fn human(v: f64, rate: bool) -> String {
    if !rate {
        return format!("{v:.0}");
    }
    let (d, p) = match v {
        v if v >= 1e9 => (1e9, "G"),
        v if v >= 1e6 => (1e6, "M"),
        v if v >= 1e3 => (1e3, "k"),
        _ => (1.0, ""),
    };
    format!("{:.2} {p}", v / d)
}

/// The header lines: machine, run, and what the columns mean.
pub fn header(machine: &Machine, cfg: &Config) -> String {
    format!(
        "polycephaly bench{} | {} | {} logical CPUs | kernel {} | pin {}{}\n\
         wait: spin = both processes busy-poll shared memory (no system call); \
         block = the waiting process sleeps in the kernel and is woken; local = one process\n\
         p99: the bad tail (slowest 1 % of times, lowest 1 % of rates). \
         x floor: this row's cost / the cost of the row named in 'vs' (>1 = slower)\n{}",
        if cfg.quick { " --quick" } else { "" },
        machine.cpu_model,
        machine.logical_cpus,
        machine
            .kernel
            .split_whitespace()
            .next()
            .unwrap_or("unknown"),
        cfg.pin.as_str(),
        if cfg.hogs > 0 {
            format!(" | {} busy hog process(es) beside it", cfg.hogs)
        } else {
            String::new()
        },
        if cfg.pin == PinMode::Same {
            "pin same: a spinning waiter yields its CPU at once (its peer needs that CPU to answer)\n"
        } else {
            ""
        }
    )
}

/// The width of the name column: the longest name, 28 at least.
fn name_width<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    names.map(str::len).fold(28, usize::max)
}

/// The width of a target's "row / vs" column: the longest, 60 at least.
fn target_width<'a>(targets: impl Iterator<Item = &'a Target>) -> usize {
    targets
        .map(|t| t.row.len() + 3 + t.vs.len())
        .fold(60, usize::max)
}

/// The table of `outcomes`.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    let w = name_width(outcomes.iter().map(|o| o.row.name));
    let _ = writeln!(
        s,
        "{:<w$} {:<11} {:<6} {:>11} {:>11} {:<6} {:>8}  vs",
        "name", "payload", "wait", "median", "p99", "unit", "x floor"
    );
    for o in outcomes {
        let r = &o.row;
        match &o.result {
            Ok(m) => {
                let rate = m.unit().is_rate();
                let x = ratio(outcomes, o).map_or_else(|| "-".to_owned(), |x| format!("{x:.2}"));
                let _ = writeln!(
                    s,
                    "{:<w$} {:<11} {:<6} {:>11} {:>11} {:<6} {:>8}  {}",
                    r.name,
                    r.payload,
                    r.wait.as_str(),
                    human(m.median(), rate),
                    human(m.p99(), rate),
                    m.unit().as_str(),
                    x,
                    r.floor.unwrap_or("-")
                );
            }
            Err(e) => {
                let _ = writeln!(s, "{:<w$} FAILED: {e}", r.name);
            }
        }
    }
    let notes: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            let m = o.result.as_ref().ok()?;
            let mut line = String::new();
            if let Some(p) = m.placement {
                let _ = write!(
                    line,
                    "cpus parent {}->{} child {}->{}",
                    p.parent[0], p.parent[1], p.child[0], p.child[1]
                );
            }
            for n in &m.notes {
                let sep = if line.is_empty() { "" } else { "; " };
                let _ = write!(line, "{sep}{n}");
            }
            (!line.is_empty()).then(|| format!("  {}: {line}", o.row.name))
        })
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(s, "placement (cpu at start->end) and notes:");
        for n in notes {
            let _ = writeln!(s, "{n}");
        }
    }
    let measured = measured_targets(outcomes);
    let tw = target_width(measured.iter().map(|(t, _)| t));
    if !measured.is_empty() {
        let _ = writeln!(
            s,
            "targets (this run's ratio of medians; a target holds for the median of several runs' ratios):"
        );
        for (t, x) in measured {
            let _ = writeln!(
                s,
                "  {:<tw$} {:>7.3}  target <= {:.3}  {}",
                format!("{} / {}", t.row, t.vs),
                x,
                t.max,
                if x <= t.max { "met" } else { "missed" }
            );
        }
    }
    s
}

/// The median of `v` (the mean of the middle two for an even count);
/// `None` when empty.
fn median_of(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// `[min, max]` of `v`.
fn span(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        })
}

/// One row over repeated runs: its median in each run.
fn medians(runs: &[Vec<Outcome>], name: &str) -> Vec<f64> {
    runs.iter()
        .filter_map(|run| {
            let o = run.iter().find(|o| o.row.name == name)?;
            Some(o.result.as_ref().ok()?.median())
        })
        .collect()
}

/// `cost(row) / cost(vs)` in each run where both were measured.
fn ratios(runs: &[Vec<Outcome>], row: &str, vs: &str) -> Vec<f64> {
    runs.iter()
        .filter_map(|run| ratio_of(run, row, vs))
        .collect()
}

/// The outcomes of `runs` (the same rows, run in turn) folded into one
/// list: each row's samples are its per-run medians (so its median is the
/// median of the medians), with the last run's placement and notes.
pub fn fold_runs(runs: Vec<Vec<Outcome>>) -> Vec<Outcome> {
    let Some(last) = runs.last() else {
        return Vec::new();
    };
    last.iter()
        .map(|o| {
            let meds = medians(&runs, o.row.name);
            let result = match &o.result {
                Ok(m) => Measurement::new(m.unit(), meds)
                    .map_err(|e| e.to_string())
                    .map(|mut f| {
                        f.placement = m.placement;
                        f.notes.clone_from(&m.notes);
                        f
                    }),
                Err(e) => Err(e.clone()),
            };
            Outcome { row: o.row, result }
        })
        .collect()
}

/// The summary of repeated runs: each row's median of medians with their
/// spread, each ratio to its floor as the median of the per-run ratios
/// (with min and max), and the targets judged on those medians.
pub fn repeat_summary(runs: &[Vec<Outcome>]) -> String {
    let mut s = String::new();
    let Some(last) = runs.last() else {
        return s;
    };
    let w = name_width(last.iter().map(|o| o.row.name));
    let _ = writeln!(
        s,
        "over {} runs (rows interleaved: each round runs every row once):\n\
         {:<w$} {:<6} {:>11} {:>23} {:<6} {:>8} {:>15}  vs",
        runs.len(),
        "name",
        "wait",
        "median",
        "min .. max of medians",
        "unit",
        "x floor",
        "min .. max"
    );
    for o in last {
        let r = &o.row;
        let meds = medians(runs, r.name);
        let Some(m) = median_of(&meds) else {
            let _ = writeln!(s, "{:<w$} FAILED in every run", r.name);
            continue;
        };
        let rate = r.unit.is_rate();
        let (lo, hi) = span(&meds);
        let xs = r.floor.map(|f| ratios(runs, r.name, f)).unwrap_or_default();
        let (x, xr) = match median_of(&xs) {
            Some(x) => {
                let (a, b) = span(&xs);
                (format!("{x:.2}"), format!("{a:.2} .. {b:.2}"))
            }
            None => ("-".to_owned(), String::new()),
        };
        let _ = writeln!(
            s,
            "{:<w$} {:<6} {:>11} {:>23} {:<6} {:>8} {:>15}  {}",
            r.name,
            r.wait.as_str(),
            human(m, rate),
            format!("{} .. {}", human(lo, rate), human(hi, rate)),
            r.unit.as_str(),
            x,
            xr,
            r.floor.unwrap_or("-")
        );
    }
    let judged: Vec<_> = targets()
        .into_iter()
        .filter_map(|t| {
            let xs = ratios(runs, t.row, t.vs);
            Some((t, median_of(&xs)?, xs))
        })
        .collect();
    let tw = target_width(judged.iter().map(|(t, _, _)| t));
    if !judged.is_empty() {
        let _ = writeln!(s, "targets (median of the per-run ratios):");
        for (t, x, xs) in judged {
            let (a, b) = span(&xs);
            let met = xs.iter().filter(|r| **r <= t.max).count();
            let _ = writeln!(
                s,
                "  {:<tw$} {:>7.3} ({a:.3} .. {b:.3})  target <= {:.3}  {} ({met} of {} runs met it)",
                format!("{} / {}", t.row, t.vs),
                x,
                t.max,
                if x <= t.max { "met" } else { "missed" },
                xs.len()
            );
        }
    }
    s
}

/// The JSON of repeated runs: the folded runs in the usual shape (each
/// measurement's median is the median of the per-run medians; its
/// `samples` is the number of runs), then `"repeat"`, the ratios of every
/// row to its floor and of every target over the runs, and each run's own
/// measurements.
pub fn repeat_json(machine: &Machine, cfg: &Config, runs: Vec<Vec<Outcome>>) -> String {
    let per_run: Vec<String> = runs
        .iter()
        .map(|run| json(machine, cfg, run).trim_end().to_owned())
        .collect();
    let ratio_list = |row: &str, vs: &str| -> String {
        let xs = ratios(&runs, row, vs);
        let (a, b) = span(&xs);
        format!(
            "{{\"row\": {}, \"vs\": {}, \"median\": {}, \"min\": {}, \"max\": {}, \"runs\": [{}]}}",
            json_string(row),
            json_string(vs),
            median_of(&xs).map_or_else(|| "null".to_owned(), json_ratio),
            if xs.is_empty() {
                "null".to_owned()
            } else {
                json_ratio(a)
            },
            if xs.is_empty() {
                "null".to_owned()
            } else {
                json_ratio(b)
            },
            xs.iter()
                .map(|x| json_ratio(*x))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let floors: Vec<String> = runs
        .last()
        .map(|run| {
            run.iter()
                .filter_map(|o| Some(format!("\n    {}", ratio_list(o.row.name, o.row.floor?))))
                .collect()
        })
        .unwrap_or_default();
    let judged: Vec<String> = targets()
        .into_iter()
        .filter(|t| !ratios(&runs, t.row, t.vs).is_empty())
        .map(|t| {
            let line = ratio_list(t.row, t.vs);
            format!(
                "\n    {}, \"target\": {}}}",
                line.trim_end_matches('}'),
                json_ratio(t.max)
            )
        })
        .collect();
    let n = runs.len();
    let folded = json(machine, cfg, &fold_runs(runs));
    let body = folded.trim_end().trim_end_matches('}').trim_end();
    format!(
        "{body},\n  \"repeat\": {n},\n  \"floor_ratios\": [{}\n  ],\n  \"target_ratios\": [{}\n  ],\n  \"runs\": [\n{}\n  ]\n}}\n",
        floors.join(","),
        judged.join(","),
        per_run.join(",\n")
    )
}

/// `text` as a JSON string literal.
pub fn json_string(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push('"');
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// A JSON number: finite figures with one decimal, anything else `null`.
fn json_number(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "null".to_owned()
    }
}

/// The JSON document of a run (failed rows are left out of `measurements`
/// and named in `notes`).
pub fn json(machine: &Machine, cfg: &Config, outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "{{\n  \"machine\": {{\n    \"cpu_model\": {},\n    \"logical_cpus\": {},\n    \
         \"kernel\": {},\n    \"pin\": {},\n    \"quick\": {},\n    \"hogs\": {},\n    \"placement\": {{",
        json_string(&machine.cpu_model),
        machine.logical_cpus,
        json_string(&machine.kernel),
        json_string(cfg.pin.as_str()),
        cfg.quick,
        cfg.hogs
    );
    let placed: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            let p = o.result.as_ref().ok()?.placement?;
            Some(format!(
                "\n      {}: {{\"parent\": [{}, {}], \"child\": [{}, {}]}}",
                json_string(o.row.name),
                p.parent[0],
                p.parent[1],
                p.child[0],
                p.child[1]
            ))
        })
        .collect();
    let _ = write!(
        s,
        "{}\n    }}\n  }},\n  \"measurements\": {{",
        placed.join(",")
    );
    let rows: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            let m = o.result.as_ref().ok()?;
            Some(format!(
                "\n    {}: {{\"median\": {}, \"p99\": {}, \"unit\": {}, \"samples\": {}}}",
                json_string(o.row.name),
                json_number(m.median()),
                json_number(m.p99()),
                json_string(m.unit().as_str()),
                m.samples().len()
            ))
        })
        .collect();
    let _ = write!(s, "{}\n  }},\n  \"notes\": {{", rows.join(","));
    let notes: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            let text = match &o.result {
                Ok(m) if !m.notes.is_empty() => m.notes.join("; "),
                Ok(_) => return None,
                Err(e) => format!("failed: {e}"),
            };
            Some(format!(
                "\n    {}: {}",
                json_string(o.row.name),
                json_string(&text)
            ))
        })
        .collect();
    let _ = write!(s, "{}\n  }},\n  \"targets\": [", notes.join(","));
    let targets: Vec<String> = measured_targets(outcomes)
        .into_iter()
        .map(|(t, x)| {
            format!(
                "\n    {{\"row\": {}, \"vs\": {}, \"ratio\": {}, \"max\": {}}}",
                json_string(t.row),
                json_string(t.vs),
                json_ratio(x),
                json_ratio(t.max)
            )
        })
        .collect();
    let _ = write!(s, "{}\n  ]\n}}\n", targets.join(","));
    s
}

/// A JSON ratio: finite ones with four decimals, anything else `null`.
fn json_ratio(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "null".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Placement, Unit, rows};

    #[test]
    fn strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }

    #[test]
    fn json_and_table_hold_rows_ratios_and_failures() {
        let all = rows();
        let row = |n: &str| *all.iter().find(|r| r.name == n).unwrap();
        let mut spin = Measurement::new(Unit::Ns, vec![100.0, 200.0, 300.0]).unwrap();
        spin.placement = Some(Placement {
            parent: [0, 0],
            child: [1, 1],
        });
        let wake = Measurement::new(Unit::Ns, vec![1000.0]).unwrap();
        let outcomes = vec![
            Outcome {
                row: row("floor_spin_rtt"),
                result: Ok(spin),
            },
            Outcome {
                row: row("floor_wake_rtt"),
                result: Ok(wake),
            },
            Outcome {
                row: row("uds_rtt"),
                result: Err("boom \"x\"".into()),
            },
        ];
        assert_eq!(ratio(&outcomes, &outcomes[1]), Some(5.0));
        assert_eq!(ratio(&outcomes, &outcomes[0]), None);
        let machine = Machine {
            cpu_model: "Test \"CPU\"".into(),
            logical_cpus: 2,
            kernel: "6.0".into(),
        };
        let j = json(&machine, &Config::default(), &outcomes);
        assert!(
            j.contains("\"floor_spin_rtt\": {\"median\": 200.0, \"p99\": 300.0, \"unit\": \"ns\"")
        );
        assert!(j.contains("\"floor_spin_rtt\": {\"parent\": [0, 0], \"child\": [1, 1]}"));
        assert!(j.contains("\"uds_rtt\": \"failed: boom \\\"x\\\"\""));
        assert!(!j.contains("\"uds_rtt\": {"));
        let t = table(&outcomes);
        assert!(t.contains("5.00"), "{t}");
        assert!(t.contains("uds_rtt                      FAILED"), "{t}");
        assert!(!t.contains("targets"), "no target has both rows: {t}");
        assert!(j.ends_with("\"targets\": [\n  ]\n}\n"), "{j}");
    }

    #[test]
    fn targets_are_reported_with_this_runs_ratio() {
        let all = rows();
        let row = |n: &str| *all.iter().find(|r| r.name == n).unwrap();
        let ns = |v: f64| Ok(Measurement::new(Unit::Ns, vec![v]).unwrap());
        let outcomes = vec![
            Outcome {
                row: row("spsc_block_rtt"),
                result: ns(2000.0),
            },
            Outcome {
                row: row("pool_empty_task_rtt"),
                result: ns(4000.0),
            },
            Outcome {
                row: row("pool_uds_empty_task_rtt"),
                result: ns(40000.0),
            },
        ];
        let t = table(&outcomes);
        assert!(
            t.contains("pool_empty_task_rtt / spsc_block_rtt")
                && t.contains("2.000  target <= 1.500  missed"),
            "{t}"
        );
        assert!(t.contains("0.100  target <= 0.300  met"), "{t}");
        assert!(!t.contains("pool_array_task_rtt_100000 /"), "{t}");
        let j = json(&Machine::detect(), &Config::default(), &outcomes);
        assert!(
            j.contains("{\"row\": \"pool_empty_task_rtt\", \"vs\": \"spsc_block_rtt\", \"ratio\": 2.0000, \"max\": 1.5000}"),
            "{j}"
        );
    }
}
