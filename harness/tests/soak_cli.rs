//! Runs the built `polycephaly soak` for a few seconds, with chaos: every
//! component reports work done and no discrepancy, and kills were
//! survived. (The long runs are `.ci/run`'s minute and the ten minutes of
//! the note.)

use std::process::Command;

/// The numbers of the report line of `component`: count, per s, MB,
/// MB/s, kills, deaths, discrepancies.
fn row(stdout: &str, component: &str) -> Vec<f64> {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(component))
        .unwrap_or_else(|| panic!("no row {component} in\n{stdout}"));
    line.split_whitespace()
        .skip(2)
        .map(|x| x.parse().unwrap())
        .collect()
}

#[test]
fn a_short_soak_with_chaos_finds_no_discrepancy() {
    let out = Command::new(env!("CARGO_BIN_EXE_polycephaly"))
        .args(["soak", "--seconds", "4", "--producers", "2", "--chaos"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("discrepancies: 0"), "{stdout}");
    for c in ["spsc", "mpsc", "arena", "channel", "pool"] {
        let r = row(&stdout, c);
        assert!(r[0] > 0.0, "{c} did nothing:\n{stdout}");
        assert_eq!(r[6], 0.0, "{c}:\n{stdout}");
    }
    assert!(
        !stdout.contains("kills survived: 0;"),
        "four seconds of chaos and no kill:\n{stdout}"
    );
}
