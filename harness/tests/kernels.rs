//! The measurement kernels on tiny plans, and `run_pair` itself.
//!
//! `run_pair` forks, which it does only in a single-threaded process, so
//! this test target has no libtest harness (`harness = false` in
//! `Cargo.toml`): `main` runs the checks one after another on the one
//! thread, and the last check starts a second thread to see the fork
//! refused.

use polycephaly::sync::shim::{AtomicU64, Ordering};
use polycephaly_harness::os::{self, Stream};
use polycephaly_harness::{
    BenchError, PinMode, Plan, ShmArea, arena, floors, lock, mpsc, run_pair, thread_count,
};

fn child_error_comes_back_with_its_text() {
    let err = run_pair(
        PinMode::None,
        |pair| pair.barrier(),
        |_| Err(BenchError::Corrupt("child says no".into())),
    )
    .unwrap_err();
    match err {
        BenchError::ChildFailed { status, message } => {
            assert_eq!(status, "exit code 1");
            assert!(message.contains("child says no"), "{message}");
        }
        e => panic!("unexpected {e}"),
    }
}

fn shared_area_crosses_the_fork_and_barriers_order() {
    let area = ShmArea::new(AtomicU64::new(0), 64).unwrap();
    let ((), placement) = run_pair(
        PinMode::None,
        |pair| {
            pair.barrier()?;
            // Relaxed: the barrier orders the child's store before this.
            assert_eq!(area.get().load(Ordering::Relaxed), 41);
            area.get().store(42, Ordering::Relaxed);
            pair.barrier()
        },
        |pair| {
            area.get().store(41, Ordering::Relaxed);
            pair.barrier()?;
            pair.barrier()?;
            if area.get().load(Ordering::Relaxed) == 42 {
                Ok(())
            } else {
                Err(BenchError::Corrupt("no 42".into()))
            }
        },
    )
    .unwrap();
    assert!(placement.child[0] < u32::MAX);
}

fn a_dead_child_stops_a_waiting_parent() {
    let area = ShmArea::new(AtomicU64::new(0), 0).unwrap();
    let err = run_pair(
        PinMode::None,
        |pair| pair.spin_until(|| area.get().load(Ordering::Acquire) == 1),
        |_| std::process::exit(3),
    )
    .unwrap_err();
    assert!(
        matches!(&err, BenchError::ChildFailed { status, .. } if status == "exit code 3"),
        "{err}"
    );
}

fn floor_kernels_run_on_tiny_plans() {
    let plan = Plan::new(2, 5, 3);
    let t = floors::spin_rtt(PinMode::None, &plan).unwrap();
    assert_eq!((t.samples.len(), t.ops_per_sample), (5, 3));
    assert!(t.placement.is_some());
    let t = floors::wake_rtt(PinMode::None, &plan).unwrap();
    assert_eq!(t.samples.len() as u64 + t.dropped, 5);
    let t = floors::ring_64b_throughput(PinMode::None, &Plan::new(1, 3, 5_000)).unwrap();
    assert_eq!(t.samples.len(), 3);
    let t = floors::memcpy(4096, &plan).unwrap();
    assert_eq!(t.samples.len(), 5);
    let t = floors::shm_transfer(PinMode::None, 64 * 1024, &plan).unwrap();
    assert_eq!(t.samples.len(), 5);
}

fn lock_kernels_run_on_tiny_plans() {
    let plan = Plan::new(2, 5, 3);
    let t = lock::event_wake_rtt(PinMode::None, &plan).unwrap();
    assert_eq!(t.samples.len() as u64 + t.dropped, 5);
    assert_eq!(lock::mutex_uncontended(&plan).unwrap().samples.len(), 5);
    assert_eq!(lock::std_mutex_uncontended(&plan).unwrap().samples.len(), 5);
    let t = lock::mutex_handoff_rtt(PinMode::None, &plan).unwrap();
    assert_eq!(t.samples.len(), 5);
    let t = lock::mutex_event_rtt(PinMode::None, &plan).unwrap();
    assert_eq!(t.samples.len(), 5);
}

fn mpsc_kernels_deliver_in_order_with_several_producers() {
    for n in [1, 2, 4] {
        let t = mpsc::throughput(n, &Plan::new(1, 3, 2_000), PinMode::None).unwrap();
        assert_eq!(t.samples.len(), 3);
    }
    let t = mpsc::block_rtt(PinMode::None, &Plan::new(2, 20, 1)).unwrap();
    assert_eq!(t.samples.len(), 20);
}

fn os_kernels_run_on_tiny_plans() {
    let plan = Plan::new(2, 5, 3);
    for kind in [Stream::Uds, Stream::Pipe] {
        let t = os::stream_rtt(PinMode::None, kind, &plan).unwrap();
        assert_eq!((t.samples.len(), t.ops_per_sample), (5, 3));
    }
    let t = os::pshared_mutex_rtt(PinMode::None, &plan).unwrap();
    assert_eq!(t.samples.len(), 5);
    let t = os::uds_64b_throughput(PinMode::None, &Plan::new(1, 3, 1_000)).unwrap();
    assert_eq!(t.samples.len(), 3);
}

fn arena_kernels_run_on_tiny_plans() {
    let plan = Plan::new(2, 5, 1);
    for len in [1024, 100 * 1024] {
        let (w, r) = arena::shm_write_read(PinMode::None, len, &plan).unwrap();
        assert_eq!((w.samples.len(), r.samples.len()), (5, 5));
    }
    for n in [0, 10, 100_000] {
        let t = arena::arena_array_rtt(PinMode::None, n, &plan).unwrap();
        assert_eq!(t.samples.len(), 5);
        let t = arena::uds_array_rtt(PinMode::None, n, &plan).unwrap();
        assert_eq!(t.samples.len(), 5);
    }
    // In pieces (the last one short), and whole.
    for piece in [30_000, usize::MAX] {
        let t = arena::arena_array_rtt_in(PinMode::None, 100_000, piece, &plan).unwrap();
        assert_eq!(t.samples.len(), 5);
    }
}

/// Last: leaves a second thread running.
fn a_multi_threaded_process_is_refused() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || rx.recv());
    let err = run_pair(PinMode::None, |_| Ok(()), |_| Ok(())).unwrap_err();
    assert!(
        matches!(err, BenchError::MultiThreaded { threads: Some(2) }),
        "{err}"
    );
    drop(tx);
    let _ = other.join();
}

/// Runs the checks, speaking the part of libtest's command line that
/// `cargo test` and `cargo nextest` use: `--list` (with `--format terse`,
/// and `--ignored`, which lists nothing), a name filter, `--exact`.
fn channel_kernels_run_on_tiny_plans() {
    use polycephaly_harness::channel::{self, Mode};
    let plan = Plan::new(2, 20, 1);
    for n in [0, 10, 10_000] {
        let t = channel::channel_rtt(PinMode::None, n, &plan, Mode::Spin).unwrap();
        assert_eq!(t.samples.len(), 20);
        let t = channel::uds_rtt(PinMode::None, n, &plan).unwrap();
        assert_eq!(t.samples.len(), 20);
    }
    let t = channel::channel_rtt(PinMode::None, 0, &plan, Mode::WakeSleeper).unwrap();
    assert_eq!(t.samples.len(), 20);
}

fn main() {
    let checks: &[(&str, fn())] = &[
        (
            "child_error_comes_back_with_its_text",
            child_error_comes_back_with_its_text,
        ),
        (
            "shared_area_crosses_the_fork_and_barriers_order",
            shared_area_crosses_the_fork_and_barriers_order,
        ),
        (
            "a_dead_child_stops_a_waiting_parent",
            a_dead_child_stops_a_waiting_parent,
        ),
        (
            "floor_kernels_run_on_tiny_plans",
            floor_kernels_run_on_tiny_plans,
        ),
        (
            "lock_kernels_run_on_tiny_plans",
            lock_kernels_run_on_tiny_plans,
        ),
        (
            "mpsc_kernels_deliver_in_order_with_several_producers",
            mpsc_kernels_deliver_in_order_with_several_producers,
        ),
        ("os_kernels_run_on_tiny_plans", os_kernels_run_on_tiny_plans),
        (
            "arena_kernels_run_on_tiny_plans",
            arena_kernels_run_on_tiny_plans,
        ),
        (
            "channel_kernels_run_on_tiny_plans",
            channel_kernels_run_on_tiny_plans,
        ),
        (
            "a_multi_threaded_process_is_refused",
            a_multi_threaded_process_is_refused,
        ),
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    // The first argument that is neither a flag nor a flag's value.
    let mut filter = None;
    let mut skip_value = false;
    for a in &args {
        if skip_value {
            skip_value = false;
        } else if a == "--format" || a == "--test-threads" || a == "--skip" {
            skip_value = true;
        } else if !a.starts_with('-') && filter.is_none() {
            filter = Some(a.as_str());
        }
    }
    let selected = |name: &str| match filter {
        None => true,
        Some(f) if flag("--exact") => name == f,
        Some(f) => name.contains(f),
    };
    if flag("--list") {
        if !flag("--ignored") {
            for (name, _) in checks.iter().filter(|(n, _)| selected(n)) {
                println!("{name}: test");
            }
        }
        return;
    }
    assert_eq!(thread_count(), Some(1), "this test runs without a harness");
    let mut passed = 0;
    for (name, check) in checks.iter().filter(|(n, _)| selected(n)) {
        check();
        println!("test {name} ... ok");
        passed += 1;
    }
    println!("test result: ok. {passed} passed");
}
