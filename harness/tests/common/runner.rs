//! A test runner for targets without libtest's harness (`harness = false`)
//! whose `main` must do something first (a pool's drones are the test
//! binary started again, and `main` calls `serve` before anything else),
//! and that must stay single-threaded between tests (`run_pair` forks).
//!
//! Tests run one after another on the main thread. It speaks the part of
//! libtest's command line that `cargo test` and `cargo nextest` use:
//! `--list` (with `--format terse`; with `--ignored` it lists nothing),
//! name filters, `--exact`, `--skip NAME`; other flags are accepted and
//! ignored. Each test runs under `catch_unwind`; the process exits with
//! 101 if any failed.

/// A named test.
pub type Test = (&'static str, fn());

/// Runs the tests the command line selects and exits.
pub fn run(tests: &[Test]) -> ! {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let mut filters = Vec::new();
    let mut skips = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--skip" => skips.extend(it.next().cloned()),
            "--format" | "--test-threads" | "--color" | "--logfile" | "--shuffle-seed" | "-Z" => {
                it.next();
            }
            a if a.starts_with('-') => {}
            a => filters.push(a.to_owned()),
        }
    }
    let exact = has("--exact");
    let selected: Vec<&Test> = tests
        .iter()
        .filter(|(name, _)| {
            let matches = |f: &String| {
                if exact {
                    name == f
                } else {
                    name.contains(f.as_str())
                }
            };
            (filters.is_empty() || filters.iter().any(matches)) && !skips.iter().any(matches)
        })
        .collect();
    if has("--list") {
        if !has("--ignored") {
            for (name, _) in &selected {
                println!("{name}: test");
            }
        }
        std::process::exit(0);
    }
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, test) in &selected {
        let ok = std::panic::catch_unwind(test).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        if !ok {
            failed.push(*name);
        }
    }
    let passed = selected.len() - failed.len();
    if failed.is_empty() {
        println!("\ntest result: ok. {passed} passed; 0 failed\n");
        std::process::exit(0);
    }
    println!("\nfailures:");
    for name in &failed {
        println!("    {name}");
    }
    println!(
        "\ntest result: FAILED. {passed} passed; {} failed\n",
        failed.len()
    );
    std::process::exit(101);
}
