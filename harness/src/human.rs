//! What the commands share: numbers for people, progress bars, printing
//! that survives a closed pipe, the machine's name.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Prints a line on standard output; a closed pipe (`| head`) is not an
/// error worth a panic, so write errors are ignored.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
pub(crate) use say;

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A byte count in B, kB, MB or GB (powers of 1000).
pub fn bytes(n: u64) -> String {
    let n = n as f64;
    if n < 1e3 {
        format!("{n} B")
    } else if n < 1e6 {
        format!("{:.1} kB", n / 1e3)
    } else if n < 1e9 {
        format!("{:.1} MB", n / 1e6)
    } else {
        format!("{:.2} GB", n / 1e9)
    }
}

/// A duration in µs, ms or s, with three significant digits or so.
pub fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1e-3 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.0} ms", s * 1e3)
    } else if s < 10.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.1} s")
    }
}

/// `part / whole` as a percentage (0 when `whole` is zero).
pub fn percent(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.1}%", 100.0 * part / whole)
    } else {
        "0%".to_owned()
    }
}

/// A progress bar on standard error, `len` steps of `unit`; drawn only on
/// a terminal (indicatif hides it otherwise).
pub fn bar(len: u64, what: &str, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let template = format!("{{msg:>14}} [{{bar:40}}] {{pos}}/{{len}} {unit} {{elapsed}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// One line naming the machine: CPU model, logical CPUs, kernel release.
pub fn machine() -> String {
    let m = crate::report::Machine::detect();
    let release = m.kernel.split_whitespace().next().unwrap_or("unknown");
    format!(
        "{}, {} logical CPU(s), Linux {release}",
        m.cpu_model, m.logical_cpus
    )
}

/// The CPUs this process may run on (at least 1).
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Time each of `workers` spent outside its tasks during `wall`, on
/// average, given their summed time in tasks: handing work out, moving
/// results, waiting for work (the tail of a job included).
pub fn exchange(wall: Duration, busy: Duration, workers: usize) -> Duration {
    let per_worker = busy.as_secs_f64() / workers.max(1) as f64;
    Duration::from_secs_f64((wall.as_secs_f64() - per_worker).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_people() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(4_800_000), "4.8 MB");
        assert_eq!(secs(Duration::from_millis(1520)), "1.52 s");
        assert_eq!(secs(Duration::from_micros(12)), "12 µs");
        assert_eq!(percent(1.0, 4.0), "25.0%");
        let x = exchange(Duration::from_secs(2), Duration::from_secs(3), 2);
        assert_eq!(x, Duration::from_millis(500));
    }
}
