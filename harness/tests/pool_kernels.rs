//! The pool kernels on tiny plans, between this process and real drones.
//!
//! The drones are this test binary started again, so `main` calls
//! `serve` first, and the tests run under our own runner (`harness =
//! false`): one after another on the main thread, since the socket twins
//! fork (`run_pair`), which needs a single-threaded process, and so needs
//! every pool before them dropped and its keeper thread joined.

#[path = "common/runner.rs"]
mod runner;

use polycephaly::pool::Pool;
use polycephaly_harness::pool::{self, SUM, TASKS};
use polycephaly_harness::{PinMode, Plan, thread_count};

fn main() {
    polycephaly::pool::serve(&TASKS);
    runner::run(&[
        (
            "pool_kernels_run_on_tiny_plans",
            pool_kernels_run_on_tiny_plans,
        ),
        (
            "socket_twins_run_on_tiny_plans",
            socket_twins_run_on_tiny_plans,
        ),
        (
            "split_places_master_and_drone_apart",
            split_places_master_and_drone_apart,
        ),
        (
            "a_dropped_pool_leaves_one_thread_and_no_child",
            a_dropped_pool_leaves_one_thread_and_no_child,
        ),
    ]);
}

/// The process is as the runner left it: one thread, no child.
fn assert_alone() {
    assert_eq!(thread_count(), Some(1), "a pool left its keeper thread");
    // ECHILD: no child at all, running or a zombie (NOHANG: a running one
    // would give Ok(None)).
    let w = rustix::process::waitpid(None, rustix::process::WaitOptions::NOHANG);
    assert!(
        matches!(w, Err(rustix::io::Errno::CHILD)),
        "a child is left: {w:?}"
    );
}

fn pool_kernels_run_on_tiny_plans() {
    assert_alone();
    let plan = Plan::new(2, 5, 1);
    let t = pool::empty_task_rtt(PinMode::None, &plan).unwrap();
    assert_eq!((t.samples.len(), t.ops_per_sample), (5, 1));
    assert!(t.placement.is_some());
    assert_alone();
    for n in [0, 10, 100_000] {
        let t = pool::array_task_rtt(PinMode::None, n, &plan).unwrap();
        assert_eq!(t.samples.len(), 5, "n = {n}");
        assert_alone();
    }
    // Piped: pieces in blocks of their own (and in frames, 1,000
    // elements), a last piece shorter, one piece only.
    for (n, piece) in [
        (100_000, pool::PIPED_PIECE),
        (100_000, 1_000),
        (10, 4),
        (10, 100),
    ] {
        let t = pool::array_piped_task_rtt(PinMode::None, n, piece, &plan).unwrap();
        assert_eq!(t.samples.len(), 5, "n = {n}, piece = {piece}");
        assert!(t.placement.is_some());
        assert_alone();
    }
    let t = pool::map_tiny_throughput(&Plan::new(1, 3, 1_000)).unwrap();
    assert_eq!((t.samples.len(), t.ops_per_sample), (3, 1_000));
    assert_alone();
}

fn socket_twins_run_on_tiny_plans() {
    let plan = Plan::new(2, 5, 1);
    let t = pool::uds_empty_task_rtt(PinMode::None, &plan).unwrap();
    assert_eq!(t.samples.len(), 5);
    for n in [0, 10, 100_000] {
        let t = pool::uds_array_task_rtt(PinMode::None, n, &plan).unwrap();
        assert_eq!(t.samples.len(), 5, "n = {n}");
    }
    assert_alone();
}

fn split_places_master_and_drone_apart() {
    let before = rustix::thread::sched_getaffinity(None).unwrap();
    if before.count() < 2 {
        println!("(one CPU: split placement is not possible here; skipped)");
        return;
    }
    let t = pool::empty_task_rtt(PinMode::Split, &Plan::new(1, 3, 1)).unwrap();
    let p = t.placement.unwrap();
    assert_eq!(p.parent[0], p.parent[1], "{p:?}");
    assert_eq!(p.child[0], p.child[1], "{p:?}");
    assert_ne!(p.parent[0], p.child[0], "{p:?}");
    let after = rustix::thread::sched_getaffinity(None).unwrap();
    assert_eq!(before, after, "the master's CPU mask is put back");
    assert_alone();
}

fn a_dropped_pool_leaves_one_thread_and_no_child() {
    assert_alone();
    let p = Pool::builder().drones(2).build().unwrap();
    assert_eq!(thread_count(), Some(2), "the master and the pool's keeper");
    assert_eq!(p.submit_slice(&SUM, &[1, 2, 3]).unwrap().wait().unwrap(), 6);
    drop(p);
    assert_alone();
}
