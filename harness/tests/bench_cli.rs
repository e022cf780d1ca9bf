//! Runs the built `polycephaly bench` on two quick rows and checks the JSON
//! it writes (shape and positive figures, never their size).

use std::process::Command;

/// The number after `"key": ` in `text`.
fn number_after(text: &str, key: &str) -> Option<f64> {
    let at = text.find(&format!("\"{key}\": "))? + key.len() + 4;
    let rest = text.get(at..)?;
    let end = rest.find([',', '}'])?;
    rest.get(..end)?.trim().parse().ok()
}

/// Runs the built command with `args`, checks that it succeeded (its
/// output in the message if not) and returns its standard output.
fn run_ok<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_polycephaly"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `bench --quick <args> --json <file>` (the file in a directory of
/// its own, named by `tag`), checks it succeeded, and returns its stdout
/// and the JSON it wrote.
fn run_quick_json(tag: &str, args: &[&str]) -> (String, String) {
    let dir = std::env::temp_dir().join(format!("polycephaly-bench-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json_path = dir.join("out.json");
    let mut all = vec!["bench", "--quick"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--json", json_path.to_str().unwrap()]);
    let stdout = run_ok(all);
    let json = std::fs::read_to_string(&json_path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (stdout, json)
}

#[test]
fn quick_bench_writes_the_requested_rows_as_json() {
    let (stdout, json) = run_quick_json("cli", &["--only", "memcpy,floor_spin"]);
    assert!(stdout.contains("floor_spin_rtt"), "{stdout}");

    let (machine, measurements) = json.split_once("\"measurements\": {").unwrap();
    assert!(machine.contains("\"machine\": {"), "{json}");
    for key in ["cpu_model", "logical_cpus", "kernel", "pin"] {
        assert!(machine.contains(&format!("\"{key}\": ")), "{key} in {json}");
    }
    let measurements = measurements.split("\"notes\"").next().unwrap();
    for (name, unit) in [
        ("floor_spin_rtt", "ns"),
        ("memcpy_1mb", "B/s"),
        ("memcpy_8mb", "B/s"),
    ] {
        let at = measurements
            .find(&format!("\"{name}\": {{"))
            .unwrap_or_else(|| panic!("{name} missing from {json}"));
        let row = &measurements[at..];
        let row = &row[..row.find('}').unwrap()];
        for stat in ["median", "p99"] {
            let v = number_after(row, stat).unwrap_or_else(|| panic!("{name}.{stat}: {row}"));
            assert!(v > 0.0, "{name}.{stat} = {v}");
        }
        assert!(row.contains(&format!("\"unit\": \"{unit}\"")), "{row}");
    }
    // Only the requested rows.
    assert_eq!(measurements.matches("\"median\"").count(), 3, "{json}");
}

/// The pool rows run from the command itself, whose drones are the command
/// started again (its `main` calls `serve` first); their targets come out
/// in the JSON beside them.
#[test]
fn quick_pool_rows_run_with_their_targets() {
    let (stdout, json) = run_quick_json(
        "pool",
        &[
            "--only",
            "spsc_block_rtt,pool_empty,pool_uds_empty,pool_map",
        ],
    );
    assert!(stdout.contains("seed: 12,519 us"), "{stdout}");
    assert!(
        stdout.contains("pool_empty_task_rtt / pool_uds_empty_task_rtt"),
        "{stdout}"
    );
    for (name, unit) in [
        ("pool_empty_task_rtt", "ns"),
        ("pool_uds_empty_task_rtt", "ns"),
        ("pool_map_tiny_throughput", "task/s"),
    ] {
        let at = json
            .find(&format!("\"{name}\": {{\"median\""))
            .unwrap_or_else(|| panic!("{name} missing from {json}"));
        let row = &json[at..];
        let row = &row[..row.find('}').unwrap()];
        assert!(number_after(row, "median").unwrap() > 0.0, "{row}");
        assert!(row.contains(&format!("\"unit\": \"{unit}\"")), "{row}");
    }
    let targets = json.split("\"targets\": [").nth(1).unwrap();
    for vs in ["spsc_block_rtt", "pool_uds_empty_task_rtt"] {
        let at = targets
            .find(&format!("\"vs\": \"{vs}\""))
            .unwrap_or_else(|| panic!("target vs {vs} missing from {json}"));
        assert!(number_after(&targets[at..], "ratio").unwrap() > 0.0);
    }
    // The array targets' rows were not asked for.
    assert_eq!(targets.matches("\"row\"").count(), 2, "{json}");
}

/// `--repeat N` runs the rows N times and reports the median of the
/// per-run ratios: the JSON holds every run, each row's ratio to its floor
/// per run, and the targets' ratios with their median, min and max.
#[test]
fn repeat_reports_medians_of_per_run_ratios() {
    let (stdout, json) = run_quick_json(
        "repeat",
        &["--repeat", "3", "--only", "floor_spin,spsc_spin_rtt"],
    );
    assert!(stdout.contains("over 3 runs"), "{stdout}");
    assert!(
        stdout.contains("spsc_spin_rtt / floor_spin_rtt"),
        "{stdout}"
    );
    assert_eq!(number_after(&json, "repeat"), Some(3.0), "{json}");
    // Three runs, each with its own measurements of both rows.
    let runs = &json[json.find("\"runs\": [").unwrap()..];
    assert_eq!(
        runs.matches("\"spsc_spin_rtt\": {\"median\"").count(),
        3,
        "{json}"
    );
    // The target's ratio in each run, and their median between min and max.
    let t = &json[json.find("\"target_ratios\": [").unwrap()..];
    let t = &t[..t.find(']').unwrap()];
    assert!(t.contains("\"row\": \"spsc_spin_rtt\""), "{t}");
    let (lo, mid, hi) = (
        number_after(t, "min").unwrap(),
        number_after(t, "median").unwrap(),
        number_after(t, "max").unwrap(),
    );
    assert!(lo > 0.0 && lo <= mid && mid <= hi, "{t}");
    // A count that is not a number, or 0, is one line and a failure.
    let out = Command::new(env!("CARGO_BIN_EXE_polycephaly"))
        .args(["bench", "--repeat", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// `--hog N` runs N busy processes beside the bench: the header names them,
/// the JSON records how many, and none is left running afterwards.
#[test]
fn hogs_run_beside_the_bench_and_end_with_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_polycephaly"))
        .args([
            "bench",
            "--quick",
            "--only",
            "floor_spin",
            "--hog",
            "2",
            "--json",
            "-",
        ])
        .output()
        .unwrap();
    let (json, text) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("2 busy hog process(es) beside it"), "{text}");
    assert_eq!(number_after(&json, "hogs"), Some(2.0), "{json}");
    // The hogs were children of the command: with it reaped, a child still
    // spinning would be one of ours reparented to init, under the same name.
    let ours = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.contains("--hog"))
        })
        .count();
    assert_eq!(ours, 0, "a hog outlived the bench");
    // A count past the limit is a usage error.
    let out = Command::new(env!("CARGO_BIN_EXE_polycephaly"))
        .args(["bench", "--hog", "65"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The 64-byte stream is shown against the floor of its own layout (the
/// bare ring with its messages 72 bytes apart), while its target stays
/// against the bare ring of 64-byte slots.
#[test]
fn the_64b_stream_names_both_floors() {
    let stdout = run_ok(["bench", "--quick", "--only", "floor_ring,spsc_64b"]);
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} row in {stdout}"))
            .to_owned()
    };
    let stride = line("floor_ring_64b_stride72_throughput");
    assert!(stride.contains("msg/s"), "{stride}");
    assert!(
        stride.trim_end().ends_with(" floor_ring_64b_throughput"),
        "{stride}"
    );
    let row = line("spsc_64b_throughput");
    assert!(
        row.trim_end()
            .ends_with(" floor_ring_64b_stride72_throughput"),
        "{row}"
    );
    assert!(
        stdout.contains("spsc_64b_throughput / floor_ring_64b_throughput "),
        "{stdout}"
    );
}

/// The frame format's own round trip runs between real processes and is
/// shown against the line ping-pong, as the SPSC round trip is.
#[test]
fn the_frame_floor_is_shown_against_the_line_floor() {
    let stdout = run_ok([
        "bench",
        "--quick",
        "--only",
        "floor_spin,floor_frame,spsc_spin",
    ]);
    for name in ["floor_frame_rtt", "spsc_spin_rtt"] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} row in {stdout}"));
        assert!(row.contains(" ns "), "{row}");
        assert!(row.trim_end().ends_with(" floor_spin_rtt"), "{row}");
    }
}
