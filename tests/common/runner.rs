//! A test runner for targets without libtest's harness (`harness = false`):
//! targets whose `main` must do something first (a pool's drones are the
//! test binary started again, and `main` must call `serve` before anything
//! else), or that must stay single-threaded.
//!
//! It speaks the part of libtest's command line that `cargo test` and
//! `cargo nextest` use: `--list` (with `--format terse`; with `--ignored`
//! it lists the ignored tests only), name filters, `--exact`, `--skip
//! NAME`, `--ignored` (run the ignored tests only) and `--include-ignored`
//! (run them too); other flags are accepted and ignored. Each test runs
//! under `catch_unwind`; the process exits with 101 if any failed.

/// A named test.
pub type Test = (&'static str, fn());

/// Runs the tests the command line selects and exits.
#[allow(dead_code)]
pub fn run(tests: &[Test]) -> ! {
    run_with_ignored(tests, &[])
}

/// As [`run`], with tests that run only when asked for (`--ignored`,
/// `--include-ignored`), as libtest's `#[ignore]`d tests.
pub fn run_with_ignored(tests: &[Test], ignored: &[Test]) -> ! {
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
    let listed: Vec<&Test> = if has("--ignored") {
        ignored.iter().collect()
    } else if has("--include-ignored") || has("--list") {
        tests.iter().chain(ignored).collect()
    } else {
        tests.iter().collect()
    };
    let selected: Vec<&Test> = listed
        .into_iter()
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
        for (name, _) in &selected {
            println!("{name}: test");
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
