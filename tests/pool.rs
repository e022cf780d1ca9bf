//! The drone pool with real drone processes: the seed's example, many
//! tiny tasks, large arrays through the arena, streams, and every failure
//! the pool promises to survive (panics, stuck tasks, crashing tasks,
//! drones killed at random, masters killed at random; 200 of each in the
//! `long_` forms, run with `--ignored`).
//!
//! The drones are this test binary started again, so `main` calls `serve`
//! first and the tests run under our own runner (`harness = false`).

#[path = "common/fault.rs"]
mod fault;
#[path = "common/runner.rs"]
mod runner;

use polycephaly::sync::shim::{AtomicBool, Ordering};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use polycephaly::pool::{Pool, PoolError, Registry, SliceTask, Task, Task2, TaskError};

static ADD: Task2<u64, u64, u64> = Task2::new("add", |a, b| a + b);
static DOUBLE: Task<u64, u64> = Task::new("double", |x| 2 * x);
static SUM: SliceTask<u64, u64> = SliceTask::new("sum", |xs| xs.iter().sum());
static PID: Task<u64, u32> = Task::new("pid", |_| std::process::id());
static RANGE: Task<u32, Vec<u32>> = Task::new_vec("range", |n| (0..n).collect());
/// Panics on 7.
static PICKY: Task<u64, u64> = Task::new("picky", |x| {
    assert_ne!(x, 7, "seven is not allowed");
    x
});
/// Never returns on 1.
static STUCK: Task<u64, u64> = Task::new("stuck", |x| {
    if x == 1 {
        loop {
            std::thread::park();
        }
    }
    x
});
/// Kills the drone that runs it on 13.
static CRASH: Task<u64, u64> = Task::new("crash", |x| {
    if x == 13 {
        std::process::abort();
    }
    x + 1
});
/// About 100 µs of work.
static SPIN: Task<u64, u64> = Task::new("spin", |x| {
    let start = Instant::now();
    while start.elapsed() < Duration::from_micros(100) {
        std::hint::spin_loop();
    }
    3 * x
});

/// Sleeps `ms` milliseconds.
static NAP: Task<u64, u64> = Task::new("nap", |ms| {
    std::thread::sleep(Duration::from_millis(ms));
    ms
});

/// `x < 1_000_000` sleeps `x` ms. Otherwise, by marker files in the
/// directory `POOL_TEST_ONCE` names: the first drone to run it sleeps
/// `x - 1_000_000` ms and returns `x`; the second aborts; later ones return.
static SECOND_DIES: Task<u64, u64> = Task::new("second_dies", |x| {
    if x < 1_000_000 {
        std::thread::sleep(Duration::from_millis(x));
        return x;
    }
    let dir = std::path::PathBuf::from(std::env::var_os("POOL_TEST_ONCE").unwrap());
    let make = |name: &str| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(name))
            .is_ok()
    };
    if make("first") {
        std::thread::sleep(Duration::from_millis(x - 1_000_000));
    } else if make("second") {
        std::process::abort();
    }
    x
});
/// `x & 0xffff_ffff` u32s out; with a delay (`x >> 32` ms), first
/// writes its pid into the file `POOL_TEST_PIDFILE` names.
static BLOB: Task<u64, Vec<u32>> = Task::new_vec("blob", |x| {
    let (n, ms) = (x & 0xffff_ffff, x >> 32);
    if n >= 5000 {
        if let Some(f) = std::env::var_os("POOL_TEST_PIDFILE") {
            std::fs::write(f, std::process::id().to_string()).unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(ms));
    vec![7; n as usize]
});
/// A byte in, a byte out.
static INC8: Task<u8, u8> = Task::new("inc8", |x| x.wrapping_add(1));
/// The sum, after a millisecond's nap (a drone busy long enough to be
/// killed in the middle of a piece).
static SLOW_SUM: SliceTask<u64, u64> = SliceTask::new("slow_sum", |xs| {
    std::thread::sleep(Duration::from_millis(1));
    xs.iter().sum()
});
/// The sum, after a nap of 20 ms (pieces pile up in the master's queue
/// while one drone runs them).
static NAP_SUM: SliceTask<u64, u64> = SliceTask::new("nap_sum", |xs| {
    std::thread::sleep(Duration::from_millis(20));
    xs.iter().sum()
});

/// The sum, after a nap set by the first element `x`: `x < 1_000_000`
/// naps `x` ms at every run; otherwise, by a marker file in the directory
/// `POOL_TEST_ONCE` names, the first run naps `x - 1_000_000` ms and later
/// runs do not.
static FIRST_SLOW_SUM: SliceTask<u64, u64> = SliceTask::new("first_slow_sum", |xs| {
    let x = xs.first().copied().unwrap_or(0);
    let nap = if x < 1_000_000 {
        x
    } else {
        let dir = std::path::PathBuf::from(std::env::var_os("POOL_TEST_ONCE").unwrap());
        let first = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join("first"))
            .is_ok();
        if first { x - 1_000_000 } else { 0 }
    };
    std::thread::sleep(Duration::from_millis(nap));
    xs.iter().sum()
});

static TASKS: Registry = Registry::new(&[
    &ADD,
    &DOUBLE,
    &SUM,
    &PID,
    &RANGE,
    &PICKY,
    &STUCK,
    &CRASH,
    &SPIN,
    &NAP,
    &SECOND_DIES,
    &INC8,
    &BLOB,
    &SLOW_SUM,
    &NAP_SUM,
    &FIRST_SLOW_SUM,
]);

/// Not registered.
static GHOST: Task<u64, u64> = Task::new("ghost", |x| x);
/// Registered under this name is another function.
static IMPOSTOR: Task<u64, u64> = Task::new("double", |x| 3 * x);

/// What this process is, when started by a test as a helper process.
const ROLE: &str = "POOL_TEST_ROLE";
const MARKER: &str = "POOL_TEST_MARKER";

fn main() {
    let role = std::env::var(ROLE).ok();
    let drone = std::env::var_os("POLYCEPHALY_DRONE").is_some();
    // The helper whose drones forget `serve` (a drone then reaches
    // `Pool::build`, which must exit it at once).
    if !(drone && role.as_deref() == Some("drone_skips_serve")) {
        polycephaly::pool::serve(&TASKS);
    }
    // Only the master gets here (a drone never runs code after `serve`):
    // the marker test counts who does.
    if let Some(path) = std::env::var_os(MARKER) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(f, "{}", std::process::id()).unwrap();
    }
    match role.as_deref() {
        Some("doomed_master") => doomed_master(),
        Some("busy_master") => busy_master(),
        Some("stopped_master") => stopped_master(),
        Some("marker") => marker_master(),
        Some("drone_skips_serve") => drone_skips_serve_master(),
        Some("copy_strands") => copy_strands_master(),
        Some("reentrant_stream") => reentrant_stream_master(),
        Some("leaked_block") => leaked_block_master(),
        Some("sigchld_ignored") => sigchld_ignored_master(),
        _ => runner::run_with_ignored(
            &[
                ("the_seeds_example", the_seeds_example),
                ("endless_timeouts_are_valid", endless_timeouts_are_valid),
                (
                    "many_tiny_tasks_each_once_in_order",
                    many_tiny_tasks_each_once_in_order,
                ),
                (
                    "a_large_array_is_read_in_place",
                    a_large_array_is_read_in_place,
                ),
                ("map_chunks_over_an_array", map_chunks_over_an_array),
                (
                    "map_chunks_from_fn_pieces_in_order",
                    map_chunks_from_fn_pieces_in_order,
                ),
                (
                    "map_chunks_from_fn_larger_than_the_lane",
                    map_chunks_from_fn_larger_than_the_lane,
                ),
                (
                    "a_copy_still_reading_a_block_holds_up_no_call",
                    a_copy_still_reading_a_block_holds_up_no_call,
                ),
                (
                    "map_chunks_from_fn_reports_a_lane_held_by_an_untaken_result",
                    map_chunks_from_fn_reports_a_lane_held_by_an_untaken_result,
                ),
                (
                    "map_chunks_from_fn_a_panicking_builder_leaves_nothing",
                    map_chunks_from_fn_a_panicking_builder_leaves_nothing,
                ),
                (
                    "map_chunks_from_fn_survives_a_killed_drone",
                    map_chunks_from_fn_survives_a_killed_drone,
                ),
                ("large_outputs_come_back", large_outputs_come_back),
                ("submit_and_wait", submit_and_wait),
                (
                    "stream_yields_every_index_once",
                    stream_yields_every_index_once,
                ),
                ("a_panicking_task_fails_alone", a_panicking_task_fails_alone),
                ("unknown_and_mismatched_tasks", unknown_and_mismatched_tasks),
                ("a_stuck_task_times_out", a_stuck_task_times_out),
                (
                    "a_crashing_task_fails_after_its_retries",
                    a_crashing_task_fails_after_its_retries,
                ),
                ("drones_killed_at_random", drones_killed_at_random),
                (
                    "the_masters_death_takes_its_drones",
                    the_masters_death_takes_its_drones,
                ),
                (
                    "drones_run_nothing_before_serve",
                    drones_run_nothing_before_serve,
                ),
                (
                    "a_drone_without_serve_is_reported",
                    a_drone_without_serve_is_reported,
                ),
                ("shutdown_leaves_nothing", shutdown_leaves_nothing),
                ("a_master_with_other_threads", a_master_with_other_threads),
                ("threads_share_a_pool", threads_share_a_pool),
                (
                    "stream_slices_recycles_the_arena",
                    stream_slices_recycles_the_arena,
                ),
                ("stats_count_what_happened", stats_count_what_happened),
                (
                    "a_death_while_a_copy_is_out_strands_nothing",
                    a_death_while_a_copy_is_out_strands_nothing,
                ),
                (
                    "a_dropped_calls_late_answer_kills_no_drone",
                    a_dropped_calls_late_answer_kills_no_drone,
                ),
                (
                    "a_streams_iterator_may_use_the_pool",
                    a_streams_iterator_may_use_the_pool,
                ),
                (
                    "vec_outputs_too_large_together_are_cut_apart",
                    vec_outputs_too_large_together_are_cut_apart,
                ),
                ("a_large_ring_kills_no_drone", a_large_ring_kills_no_drone),
                (
                    "stream_slices_reports_a_lane_held_by_an_untaken_result",
                    stream_slices_reports_a_lane_held_by_an_untaken_result,
                ),
                (
                    "stream_slices_too_large_is_typed",
                    stream_slices_too_large_is_typed,
                ),
                (
                    "a_spent_chunks_copy_kills_no_healthy_drone",
                    a_spent_chunks_copy_kills_no_healthy_drone,
                ),
                (
                    "a_kill_after_publishing_leaks_no_block",
                    a_kill_after_publishing_leaks_no_block,
                ),
                (
                    "a_program_that_ignores_sigchld",
                    a_program_that_ignores_sigchld,
                ),
                (
                    "a_cancelled_call_blames_no_other",
                    a_cancelled_call_blames_no_other,
                ),
                (
                    "polling_does_not_stop_time_outs",
                    polling_does_not_stop_time_outs,
                ),
                (
                    "a_drone_waiting_on_a_full_results_ring_is_not_stuck",
                    a_drone_waiting_on_a_full_results_ring_is_not_stuck,
                ),
                ("masters_killed_at_random", masters_killed_at_random),
                ("a_stopped_drone_is_not_dead", a_stopped_drone_is_not_dead),
                (
                    "a_stopped_master_keeps_its_drones",
                    a_stopped_master_keeps_its_drones,
                ),
            ],
            &[
                ("long_drones_killed_at_random", long_drones_killed_at_random),
                (
                    "long_masters_killed_at_random",
                    long_masters_killed_at_random,
                ),
            ],
        ),
    }
}

fn pool(drones: usize) -> Pool {
    Pool::builder().drones(drones).build().expect("pool")
}

/// One drone, and a master lane of `lane` bytes.
fn one_drone_with_lane(lane: usize) -> Pool {
    Pool::builder()
        .drones(1)
        .arena_lane(lane)
        .build()
        .expect("pool")
}

fn the_seeds_example() {
    let drones = pool(4);
    let sums = drones
        .zip_map(&ADD, &[1, 2, 3, 4, 5], &[5, 4, 3, 2, 1])
        .unwrap();
    assert_eq!(sums, [6, 6, 6, 6, 6]);
    assert!(matches!(
        drones.zip_map(&ADD, &[1, 2], &[1]),
        Err(PoolError::LengthMismatch { left: 2, right: 1 })
    ));
    assert_eq!(drones.zip_map(&ADD, &[], &[]).unwrap(), Vec::<u64>::new());
}

/// Time-outs that never fire (`Duration::MAX`) are valid: the pool runs,
/// its timers do not overflow.
fn endless_timeouts_are_valid() {
    let drones = Pool::builder()
        .drones(2)
        .start_timeout(Duration::MAX)
        .task_timeout(Duration::MAX)
        .build()
        .expect("pool");
    let items: Vec<u64> = (0..64).collect();
    let sums = drones.zip_map(&ADD, &items, &items).unwrap();
    assert_eq!(sums, items.iter().map(|x| 2 * x).collect::<Vec<_>>());
}

fn many_tiny_tasks_each_once_in_order() {
    let drones = pool(2);
    let items: Vec<u64> = (0..100_000).collect();
    let doubled = drones.map(&DOUBLE, &items).unwrap();
    assert_eq!(doubled.len(), items.len());
    for (i, d) in doubled.iter().enumerate() {
        assert_eq!(*d, 2 * i as u64, "item {i}");
    }
    // Both drones took part.
    let pids: BTreeSet<u32> = drones
        .map(&PID, &vec![0; 1000])
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(pids.len(), 2, "{pids:?}");
}

fn a_large_array_is_read_in_place() {
    let drones = pool(2);
    for n in [10u64, 10_000, 1_000_000] {
        let data: Vec<u64> = (0..n).collect();
        let sum = drones.submit_slice(&SUM, &data).unwrap().wait().unwrap();
        assert_eq!(sum, n * (n - 1) / 2);
    }
    // Built in place (in the arena when large, in the frame when small).
    for n in [0u64, 10, 1_000_000] {
        let sum = drones
            .submit_slice_from_fn(&SUM, n as usize, |i| i as u64)
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(sum, n * n.saturating_sub(1) / 2);
    }
    // Larger than the arena's lane: a typed error, not a hang.
    let small = one_drone_with_lane(1 << 20);
    let big = vec![1u64; 1 << 18];
    assert!(matches!(
        small.submit_slice(&SUM, &big),
        Err(PoolError::TooLarge { .. })
    ));
}

fn map_chunks_over_an_array() {
    let drones = pool(2);
    let data: Vec<u64> = (0..1_000_003).collect();
    let sums = drones.map_chunks(&SUM, &data, 100_000).unwrap();
    assert_eq!(sums.len(), 11);
    let expect: Vec<u64> = data.chunks(100_000).map(|c| c.iter().sum()).collect();
    assert_eq!(sums, expect);
    // Small: in the frames.
    assert_eq!(
        drones.map_chunks(&SUM, &[1, 2, 3, 4, 5], 2).unwrap(),
        [3, 7, 5]
    );
}

/// The sums of the `chunk`-element pieces of `0..n`, as a plain model.
fn piece_sums(n: u64, chunk: u64) -> Vec<u64> {
    let chunk = chunk.max(1);
    (0..n.div_ceil(chunk))
        .map(|p| (p * chunk..((p + 1) * chunk).min(n)).sum())
        .collect()
}

fn map_chunks_from_fn_pieces_in_order() {
    let drones = pool(2);
    // Pieces of 80 KB (above the inline limit: each in a block of its
    // own), of 8 KB (in the frames), of one element; a short last piece.
    for (n, chunk) in [(1_000_003, 10_000), (100_003, 1_000), (5_000, 1)] {
        let got = drones
            .map_chunks_from_fn(&SUM, n as usize, chunk as usize, |i| i as u64)
            .unwrap();
        assert_eq!(got, piece_sums(n, chunk), "n = {n}, chunk = {chunk}");
    }
    // Both drones took pieces.
    assert!(drones.stats().chunks >= 1101);
    // Nothing to build; a chunk of 0 is taken as 1, as by `map_chunks`.
    let none = drones.map_chunks_from_fn(&SUM, 0, 1000, |_| unreachable!());
    assert_eq!(none.unwrap(), Vec::<u64>::new());
    assert_eq!(
        drones.map_chunks_from_fn(&SUM, 3, 0, |i| i as u64).unwrap(),
        [0, 1, 2]
    );
    assert_eq!(
        drones.map_chunks_from_fn(&SUM, 3, 0, |i| i as u64).unwrap(),
        drones.map_chunks(&SUM, &[0, 1, 2], 0).unwrap()
    );
    // A piece larger than a lane is a typed error, and leaves nothing.
    let small = one_drone_with_lane(1 << 20);
    assert!(matches!(
        small.map_chunks_from_fn(&SUM, 1 << 18, 1 << 18, |i| i as u64),
        Err(PoolError::TooLarge { .. })
    ));
    assert_eq!(small.map_chunks(&SUM, &[1, 2, 3], 2).unwrap(), [3, 3]);
}

/// A pool of `drones` whose master lane is 1 MiB: 131,072 u64 at most.
fn small_lane_pool(drones: usize) -> Pool {
    Pool::builder()
        .drones(drones)
        .arena_lane(1 << 20)
        .retries(10)
        .build()
        .unwrap()
}

/// The whole of a small lane's 1 MiB in one block: it fits only when no
/// block of the lane is held. A drone may still read a block whose chunk
/// was answered by another (a copy sent to an idle drone): the call waits
/// for that hold to end (it failed with `ArenaFull` at once before, and
/// this helper had to drive the pool and ask again).
fn the_whole_lane_is_free(drones: &Pool) {
    let whole = vec![1u64; 1 << 17];
    match drones.submit_slice(&SUM, &whole).and_then(|p| p.wait()) {
        Ok(sum) => assert_eq!(sum, 1 << 17),
        Err(e) => panic!("the lane is still held: {e}"),
    }
}

/// A call that returns while a drone still reads its block: slot 0 naps
/// 300 ms on piece 0 with piece 2 queued behind it; slot 1 sums piece 1
/// at once, then gets a copy of piece 2, whose first run (by the marker in
/// `dir`, removed first) naps 800 ms reading the call's block in place;
/// slot 0 answers piece 2 at once after its nap.
fn leave_a_copy_reading(drones: &Pool, dir: &std::path::Path) {
    let _ = std::fs::remove_file(dir.join("first"));
    let piece = 1usize << 15;
    let mut data = vec![1u64; 3 * piece];
    data[0] = 300;
    data[2 * piece] = 1_000_800;
    let before = drones.stats();
    let sums = drones.map_chunks(&FIRST_SLOW_SUM, &data, piece).unwrap();
    let want: Vec<u64> = data.chunks(piece).map(|c| c.iter().sum()).collect();
    assert_eq!(sums, want);
    let after = drones.stats();
    assert_eq!(after.chunks - before.chunks, 4, "three pieces and a copy");
    assert_eq!(after.late_answers, before.late_answers, "the copy runs on");
}

/// While a copy still reads a block of a call that returned, the next call
/// that needs the whole lane waits for that hold to end: a slice handed
/// over, and a stream's input. Before, the first failed at once with
/// `ArenaFull`, the second with "take the results of earlier calls first".
fn a_copy_still_reading_a_block_holds_up_no_call() {
    let dir = fresh_dir("reading");
    // SAFETY: this test process has no thread that reads the environment
    // now (the runner is single-threaded; no pool is alive).
    unsafe { std::env::set_var("POOL_TEST_ONCE", &dir) };
    let drones = small_lane_pool(2);
    // SAFETY: as above; the drones have their copy.
    unsafe { std::env::remove_var("POOL_TEST_ONCE") };
    leave_a_copy_reading(&drones, &dir);
    the_whole_lane_is_free(&drones);
    leave_a_copy_reading(&drones, &dir);
    let whole = vec![1u64; 1 << 17];
    let got: Vec<_> = drones.stream_slices(&SUM, [&whole]).unwrap().collect();
    assert!(
        matches!(got.as_slice(), [Ok((0, s))] if *s == 1 << 17),
        "{got:?}"
    );
    assert_eq!(drones.stats().late_answers, 2);
    assert_eq!(drones.stats().drones_lost, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

fn map_chunks_from_fn_larger_than_the_lane() {
    let drones = small_lane_pool(2);
    // 8 MiB through a 1 MiB lane, in 64 pieces of 128 KiB: each block must
    // come back as its piece is summed.
    let n = 1u64 << 20;
    let whole = vec![0u64; n as usize];
    assert!(matches!(
        drones.submit_slice(&SUM, &whole),
        Err(PoolError::TooLarge { .. })
    ));
    for _ in 0..3 {
        let got = drones
            .map_chunks_from_fn(&SUM, n as usize, 1 << 14, |i| i as u64)
            .unwrap();
        assert_eq!(got, piece_sums(n, 1 << 14));
    }
    the_whole_lane_is_free(&drones);
}

fn map_chunks_from_fn_reports_a_lane_held_by_an_untaken_result() {
    let drones = one_drone_with_lane(4 << 20);
    // 3 MiB of the 4 MiB lane held by a result taken only later: pieces of
    // 512 KiB fit behind it twice, then wait for room that cannot come
    // while we wait. A typed error after the grace, not a hang.
    let p = drones.submit_slice(&SUM, &vec![1u64; 3 << 17]).unwrap();
    let start = Instant::now();
    let got = drones.map_chunks_from_fn(&SUM, 1 << 20, 1 << 16, |i| i as u64);
    assert!(matches!(got, Err(PoolError::ArenaFull { .. })), "{got:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(p.wait().unwrap(), 3 << 17);
    // Taken: the same call goes through, the lane recycled 4 times over.
    let sums = drones
        .map_chunks_from_fn(&SUM, 1 << 21, 1 << 16, |i| i as u64)
        .unwrap();
    assert_eq!(sums, piece_sums(1 << 21, 1 << 16));
}

fn map_chunks_from_fn_a_panicking_builder_leaves_nothing() {
    let drones = small_lane_pool(2);
    // In a large piece (built in the arena, under the pool's lock), and
    // in a small one (in a frame).
    for (chunk, at) in [(1usize << 14, 300_000usize), (100, 3_000)] {
        // No `AssertUnwindSafe`: a pool is `RefUnwindSafe`.
        let panicked = std::panic::catch_unwind(|| {
            drones.map_chunks_from_fn(&SUM, 1 << 20, chunk, |i| {
                assert_ne!(i, at, "the builder gives up at {at}");
                i as u64
            })
        });
        let payload = panicked.expect_err("the builder's panic reaches the caller");
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or_default();
        assert!(message.contains("the builder gives up"), "{message:?}");
        // Usable, its blocks all given back, no drone lost.
        assert_eq!(drones.map(&DOUBLE, &[1, 2, 3]).unwrap(), [2, 4, 6]);
        the_whole_lane_is_free(&drones);
        let got = drones
            .map_chunks_from_fn(&SUM, 1 << 18, chunk, |i| i as u64)
            .unwrap();
        assert_eq!(got, piece_sums(1 << 18, chunk as u64));
    }
    assert_eq!(drones.stats().drones_lost, 0);
    // The call ends before the panic goes on: of 7 pieces built, those
    // not handed out yet are dropped, the answers of those in flight come
    // late. One drone holds 2 at a time and takes 20 ms each: 2 are out
    // (4 if the master stalled for 20 ms), not 7.
    let one = small_lane_pool(1);
    let before = one.stats();
    let chunk = 1usize << 14;
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        one.map_chunks_from_fn(&NAP_SUM, 1 << 20, chunk, |i| {
            assert_ne!(i, 7 * chunk, "the builder gives up");
            i as u64
        })
    }));
    assert!(panicked.is_err());
    // Behind the pieces in flight in the drone's ring: their answers are
    // in when it returns.
    assert_eq!(one.map(&DOUBLE, &[1, 2, 3]).unwrap(), [2, 4, 6]);
    let after = one.stats();
    let sent = after.chunks - before.chunks - 3;
    assert!((1..=4).contains(&sent), "{sent} pieces handed out");
    assert_eq!(after.late_answers - before.late_answers, sent);
    the_whole_lane_is_free(&one);
}

fn map_chunks_from_fn_survives_a_killed_drone() {
    let drones = small_lane_pool(2);
    let victim = drones.pids()[0];
    // 64 pieces of 128 KiB through the 1 MiB lane, each summed in a drone
    // for a millisecond at least; the builder kills a drone as it starts
    // on the 20th piece, while both drones hold pieces.
    let (n, chunk) = (1usize << 20, 1usize << 14);
    let got = drones
        .map_chunks_from_fn(&SLOW_SUM, n, chunk, |i| {
            if i == 20 * chunk {
                rustix::process::kill_process(
                    rustix::process::Pid::from_raw(victim as i32).unwrap(),
                    rustix::process::Signal::KILL,
                )
                .unwrap();
            }
            i as u64
        })
        .unwrap();
    assert_eq!(got, piece_sums(n as u64, chunk as u64));
    assert_eq!(drones.stats().drones_lost, 1);
    assert!(!drones.pids().contains(&victim));
    the_whole_lane_is_free(&drones);
}

fn large_outputs_come_back() {
    let drones = pool(2);
    let ns = [0u32, 1, 1000, 300_000];
    let out = drones.map(&RANGE, &ns).unwrap();
    for (n, v) in ns.iter().zip(&out) {
        assert_eq!(v.len(), *n as usize);
        assert!(v.iter().enumerate().all(|(i, x)| *x == i as u32));
    }
}

fn submit_and_wait() {
    let drones = pool(2);
    let a = drones.submit(&DOUBLE, 21).unwrap();
    let b = drones.submit2(&ADD, 40, 2).unwrap();
    assert_eq!(b.wait().unwrap(), 42);
    let mut a = a;
    assert_eq!(a.wait_timeout(Duration::from_secs(10)).unwrap(), 42);
    assert!(matches!(
        a.wait_timeout(Duration::from_secs(1)),
        Err(PoolError::Taken)
    ));
    // A task that cannot finish: the wait times out, the task stays.
    let stuck = Pool::builder().drones(1).build().unwrap();
    let mut p = stuck.submit(&STUCK, 1).unwrap();
    assert!(matches!(
        p.wait_timeout(Duration::from_millis(50)),
        Err(PoolError::Timeout)
    ));
    assert!(!p.is_ready());
    drop(p);
}

fn stream_yields_every_index_once() {
    let drones = pool(2);
    let mut seen = vec![false; 5000];
    for r in drones.stream(&DOUBLE, 0..5000u64).unwrap() {
        let (i, d) = r.unwrap();
        assert_eq!(d, 2 * i as u64);
        assert!(!seen[i], "index {i} twice");
        seen[i] = true;
    }
    assert!(seen.iter().all(|s| *s));
    // A failing item is reported with its index; the rest go on.
    let results: Vec<_> = drones.stream(&PICKY, 5..10u64).unwrap().collect();
    assert_eq!(results.len(), 5);
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(failed.len(), 1);
    assert!(
        matches!(failed[0], PoolError::Task { index: 2, .. }),
        "{:?}",
        failed[0]
    );
}

fn a_panicking_task_fails_alone() {
    let drones = pool(2);
    let before = drones.pids();
    let err = drones
        .map(&PICKY, &(0..20).collect::<Vec<_>>())
        .unwrap_err();
    match &err {
        PoolError::Task {
            task: "picky",
            index: 7,
            error: TaskError::Panicked { message },
        } => assert!(message.contains("seven is not allowed"), "{message}"),
        e => panic!("unexpected {e}"),
    }
    // The drones live on.
    assert_eq!(drones.pids(), before);
    assert_eq!(drones.map(&PICKY, &[1, 2, 3]).unwrap(), [1, 2, 3]);
}

fn unknown_and_mismatched_tasks() {
    let drones = pool(1);
    assert!(matches!(
        drones.submit(&GHOST, 1),
        Err(PoolError::UnknownTask { name: "ghost" })
    ));
    match drones.map(&IMPOSTOR, &[1]) {
        Err(PoolError::TaskMismatch { name: "double", .. }) => {}
        r => panic!("unexpected {r:?}"),
    }
}

fn a_stuck_task_times_out() {
    let drones = Pool::builder()
        .drones(2)
        .retries(1)
        .task_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = drones.map(&STUCK, &[0, 1, 2, 3]).unwrap_err();
    assert!(
        matches!(
            &err,
            PoolError::Task {
                index: 1,
                error: TaskError::TimedOut { drones: 2, .. },
                ..
            }
        ),
        "{err}"
    );
    // Replaced: the pool still works.
    assert_eq!(drones.map(&STUCK, &[0, 2, 3]).unwrap(), [0, 2, 3]);
}

fn a_crashing_task_fails_after_its_retries() {
    let drones = Pool::builder().drones(2).retries(2).build().unwrap();
    let items: Vec<u64> = (0..100).collect();
    let err = drones.map(&CRASH, &items).unwrap_err();
    match &err {
        PoolError::Task {
            index: 13,
            error:
                TaskError::Crashed {
                    drones: 3,
                    last_exit,
                },
            ..
        } => assert!(last_exit.contains("signal"), "{last_exit}"),
        e => panic!("unexpected {e}"),
    }
    // The others still run, on replacement drones.
    let ok: Vec<u64> = (0..100).filter(|&x| x != 13).collect();
    let out = drones.map(&CRASH, &ok).unwrap();
    assert!(out.iter().zip(&ok).all(|(o, i)| *o == i + 1));
}

/// This process's children (the drones: the keeper thread forks them).
fn children() -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn shm_listing() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn drones_killed_at_random() {
    drone_kills(1);
}

/// 200 drones SIGKILLed at random points of jobs of 10,000 tasks.
fn long_drones_killed_at_random() {
    drone_kills(200);
}

/// Jobs of 10,000 tasks run while a thread SIGKILLs drones at random
/// (each drone at a random instant once it has lived 100 ms: one killed
/// before its hello is a start failure, which the pool gives up on after
/// three in a row), until `kills` were killed: every item's result
/// arrives, once, right; nothing is left (child, descriptor, `/dev/shm`
/// entry).
fn drone_kills(kills: usize) {
    let (fds, shm) = (fd_count(), shm_listing());
    let drones = Pool::builder().drones(2).retries(1000).build().unwrap();
    let items: Vec<u64> = (0..10_000).collect();
    let stop = AtomicBool::new(false);
    let (killed, jobs) = std::thread::scope(|s| {
        let killer = s.spawn(|| {
            let mut killed = 0;
            let mut seen: std::collections::BTreeMap<u32, Instant> = Default::default();
            let mut rng = fault::Rng::new("drones_killed_at_random");
            while !stop.load(Ordering::Relaxed) {
                // Pacing, not synchronization: a look every 5..50 ms.
                std::thread::sleep(Duration::from_millis(5 + rng.below(45)));
                let kids = children();
                seen.retain(|pid, _| kids.contains(pid));
                for &k in &kids {
                    seen.entry(k).or_insert_with(Instant::now);
                }
                let ripe: Vec<u32> = seen
                    .iter()
                    .filter(|(_, t)| t.elapsed() >= Duration::from_millis(100))
                    .map(|(p, _)| *p)
                    .collect();
                if ripe.is_empty() {
                    continue;
                }
                let victim = ripe[rng.below(ripe.len() as u64) as usize];
                if rustix::process::kill_process(
                    rustix::process::Pid::from_raw(victim as i32).unwrap(),
                    rustix::process::Signal::KILL,
                )
                .is_ok()
                {
                    killed += 1;
                    seen.remove(&victim);
                }
            }
            killed
        });
        let mut jobs = 0;
        let mut failed = None;
        // At least one job; more until enough drones died.
        while failed.is_none() && (jobs == 0 || !enough(&drones, kills)) {
            match drones.map(&SPIN, &items) {
                Ok(out) => {
                    assert_eq!(out.len(), items.len());
                    for (i, o) in out.iter().enumerate() {
                        assert_eq!(*o, 3 * i as u64, "job {jobs} item {i}");
                    }
                }
                Err(e) => failed = Some(e),
            }
            jobs += 1;
        }
        stop.store(true, Ordering::Relaxed);
        let killed = killer.join().unwrap();
        if let Some(e) = failed {
            panic!("job {jobs} failed after {killed} kills: {e}");
        }
        (killed, jobs)
    });
    assert!(killed >= kills, "{killed} drones killed, {kills} wanted");
    println!(
        "    ({killed} drones killed during {jobs} jobs, {} seen lost)",
        drones.stats().drones_lost
    );
    drones.shutdown();
    assert!(children().is_empty(), "children left: {:?}", children());
    assert_eq!(fd_count(), fds);
    assert_eq!(shm_listing(), shm);
}

/// Whether the pool lost `kills` drones already.
fn enough(drones: &Pool, kills: usize) -> bool {
    drones.stats().drones_lost as usize >= kills
}

/// A helper process: builds a pool, prints its drones' pids, waits to be
/// killed.
fn doomed_master() {
    let drones = pool(2);
    // The drones are started; make them busy with nothing to show they
    // serve.
    assert_eq!(drones.map(&DOUBLE, &[1, 2]).unwrap(), [2, 4]);
    let pids: Vec<String> = drones.pids().iter().map(u32::to_string).collect();
    println!("{}", pids.join(" "));
    let mut line = String::new();
    // Until the test kills us.
    let _ = std::io::stdin().read_line(&mut line);
    std::process::exit(0);
}

fn helper(role: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.env(ROLE, role);
    c
}

fn the_masters_death_takes_its_drones() {
    let mut master = helper("doomed_master")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(master.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pids: Vec<i32> = line
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "{line:?}");
    // Opened while the drones surely live, so the pidfds are theirs.
    let fds: Vec<_> = pids
        .iter()
        .map(|&p| {
            rustix::process::pidfd_open(
                rustix::process::Pid::from_raw(p).unwrap(),
                rustix::process::PidfdFlags::empty(),
            )
            .unwrap()
        })
        .collect();
    master.kill().unwrap();
    master.wait().unwrap();
    let killed = Instant::now();
    for fd in &fds {
        let left = Duration::from_secs(1).saturating_sub(killed.elapsed());
        let mut pfd = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
        let ts = rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let n = rustix::event::poll(&mut pfd, Some(&ts)).unwrap();
        assert_eq!(n, 1, "a drone outlived its master by a second");
    }
    let _ = fds.iter().map(AsFd::as_fd).count();
}

/// A helper process: builds a pool, prints its drones' pids, and runs
/// jobs until killed.
fn busy_master() {
    let drones = pool(2);
    assert_eq!(drones.map(&DOUBLE, &[1, 2]).unwrap(), [2, 4]);
    let pids: Vec<String> = drones.pids().iter().map(u32::to_string).collect();
    println!("{}", pids.join(" "));
    let items: Vec<u64> = (0..1000).collect();
    loop {
        let out = drones.map(&SPIN, &items).unwrap();
        assert_eq!(out[999], 2997);
    }
}

fn masters_killed_at_random() {
    master_kills(5);
}

fn long_masters_killed_at_random() {
    master_kills(200);
}

/// Masters SIGKILLed at random points (idle, or in the middle of a job),
/// `rounds` times: each one's drones are gone within a second (seen
/// through their pidfds); nothing is left in `/dev/shm`, no child, no
/// descriptor.
fn master_kills(rounds: u32) {
    let (fds, shm) = (fd_count(), shm_listing());
    let mut rng = fault::Rng::new("masters_killed_at_random");
    for round in 0..rounds {
        let role = if round % 4 == 0 {
            "doomed_master"
        } else {
            "busy_master"
        };
        let mut master = helper(role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(master.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let fds_of: Vec<_> = line
            .split_whitespace()
            .map(|p| {
                rustix::process::pidfd_open(
                    rustix::process::Pid::from_raw(p.parse().unwrap()).unwrap(),
                    rustix::process::PidfdFlags::empty(),
                )
                .unwrap()
            })
            .collect();
        assert_eq!(fds_of.len(), 2, "round {round}: {line:?}");
        // A random point of its jobs.
        std::thread::sleep(Duration::from_micros(rng.below(20_000)));
        fault::kill_and_reap(&mut master, "the master");
        let killed = Instant::now();
        for fd in &fds_of {
            let left = Duration::from_secs(1).saturating_sub(killed.elapsed());
            let mut pfd = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
            let ts = rustix::time::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            let n = rustix::event::poll(&mut pfd, Some(&ts)).unwrap();
            assert_eq!(
                n, 1,
                "round {round}: a drone outlived its master by a second"
            );
        }
        drop(fds_of);
        drop(master);
        assert!(children().is_empty(), "round {round}: {:?}", children());
        assert_eq!(fd_count(), fds, "round {round}: descriptors");
    }
    assert_eq!(shm_listing(), shm);
}

/// A drone SIGSTOPped in the middle of a job, for longer than the
/// keeper's and the drones' checks (a quarter second) and the wait below:
/// it is not declared lost (no `task_timeout` was set: a stopped drone is
/// slow, not dead); the caller's bounded wait times out; after SIGCONT
/// the job completes, each item once.
fn a_stopped_drone_is_not_dead() {
    let drones = pool(2);
    let pids = drones.pids();
    // Both drones busy with naps of 200 ms, some queued.
    let mut pending: Vec<_> = (0..8u64)
        .map(|i| drones.submit(&NAP, 200 + i).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let victim = pids[0];
    fault::stop(victim);
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut early = vec![None; pending.len()];
    for (i, p) in pending.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        match fault::bounded("a wait", left, || p.wait_timeout(left)) {
            Ok(v) => early[i] = Some(v),
            Err(PoolError::Timeout) => {}
            Err(e) => panic!("item {i}: {e}"),
        }
    }
    assert!(
        early.iter().any(Option::is_none),
        "the stopped drone held none of the items"
    );
    // Long past the stop: still the same drones, none lost.
    assert_eq!(drones.pids(), pids);
    assert_eq!(drones.stats().drones_lost, 0);
    fault::cont(victim);
    for (i, (p, e)) in pending.into_iter().zip(early).enumerate() {
        let v = match e {
            Some(v) => v,
            None => p.wait().unwrap(),
        };
        assert_eq!(v, 200 + i as u64);
    }
    let items: Vec<u64> = (0..1000).collect();
    let out = drones.map(&DOUBLE, &items).unwrap();
    assert!(out.iter().zip(&items).all(|(o, i)| *o == 2 * i));
    assert_eq!(drones.pids(), pids);
    assert_eq!(drones.stats().drones_lost, 0);
}

/// A helper process: builds a pool, prints its drones' pids, waits for a
/// line (it is stopped and continued meanwhile), runs a job, prints its
/// drones' pids again.
fn stopped_master() {
    let drones = pool(2);
    assert_eq!(drones.map(&DOUBLE, &[1, 2]).unwrap(), [2, 4]);
    let pids: Vec<String> = drones.pids().iter().map(u32::to_string).collect();
    println!("{}", pids.join(" "));
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    let items: Vec<u64> = (0..1000).collect();
    let out = drones.map(&DOUBLE, &items).unwrap();
    assert!(out.iter().zip(&items).all(|(o, i)| *o == 2 * i));
    let pids: Vec<String> = drones.pids().iter().map(u32::to_string).collect();
    println!("{}", pids.join(" "));
    assert_eq!(drones.stats().drones_lost, 0);
    drones.shutdown();
}

/// A master SIGSTOPped for two seconds (its drones look at their parent
/// every quarter second): its drones do not take it for dead; after
/// SIGCONT it runs a job on the same drones.
fn a_stopped_master_keeps_its_drones() {
    use std::io::Write;
    let mut master = helper("stopped_master")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(master.stdout.take().unwrap());
    let mut before = String::new();
    out.read_line(&mut before).unwrap();
    fault::stop(master.id());
    std::thread::sleep(Duration::from_secs(2));
    for pid in before.split_whitespace() {
        let pid: u32 = pid.parse().unwrap();
        assert!(
            matches!(fault::proc_state(pid), Some(s) if s != b'Z'),
            "drone {pid} died while its master was stopped"
        );
    }
    fault::cont(master.id());
    writeln!(master.stdin.as_mut().unwrap()).unwrap();
    let mut after = String::new();
    out.read_line(&mut after).unwrap();
    assert!(master.wait().unwrap().success());
    assert_eq!(before, after, "the same drones");
}

/// A helper process: a pool that runs a few tasks, with the marker set.
fn marker_master() {
    let drones = pool(2);
    assert_eq!(drones.map(&DOUBLE, &[1, 2, 3, 4]).unwrap(), [2, 4, 6, 8]);
    drones.shutdown();
}

fn drones_run_nothing_before_serve() {
    let path = std::env::temp_dir().join(format!("polycephaly-marker-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let status = helper("marker").env(MARKER, &path).status().unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    // One line: the helper's own pid. Its two drones wrote nothing.
    assert_eq!(text.lines().count(), 1, "{text:?}");
}

/// A helper process whose drones skip `serve`: building fails, saying why.
fn drone_skips_serve_master() {
    match Pool::builder().drones(2).build() {
        Err(e) => println!("{e}"),
        Ok(_) => println!("built"),
    }
}

fn a_drone_without_serve_is_reported() {
    let out = helper("drone_skips_serve").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("did not start") && text.contains("serve"),
        "{text}"
    );
}

fn shutdown_leaves_nothing() {
    let (fds, shm) = (fd_count(), shm_listing());
    let drones = pool(2);
    assert_eq!(children().len(), 2);
    assert_eq!(drones.map(&DOUBLE, &[5]).unwrap(), [10]);
    assert_eq!(shm_listing(), shm, "a pool puts nothing in /dev/shm");
    drones.shutdown();
    assert!(children().is_empty());
    assert_eq!(fd_count(), fds);
    // Dropped without shutdown: the same.
    let drones = pool(2);
    let p = drones.submit(&STUCK, 1).unwrap();
    drop(p);
    drop(drones);
    assert!(children().is_empty());
    assert_eq!(fd_count(), fds);
}

fn a_master_with_other_threads() {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            });
        }
        let drones = pool(2);
        let r = drones.zip_map(&ADD, &[1, 2, 3], &[3, 2, 1]);
        stop.store(true, Ordering::Relaxed);
        assert_eq!(r.unwrap(), [4, 4, 4]);
    });
}

fn threads_share_a_pool() {
    let drones = pool(2);
    let slow_done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let slow = drones.submit(&NAP, 3000).unwrap();
        let waiter = s.spawn(|| {
            let r = slow.wait();
            slow_done.store(true, Ordering::SeqCst);
            r
        });
        // While that thread waits (and sleeps on the results ring), this
        // one hands out and gathers work of its own on the other drone.
        for _ in 0..50 {
            assert_eq!(drones.map(&DOUBLE, &[1, 2, 3]).unwrap(), [2, 4, 6]);
        }
        assert!(
            !slow_done.load(Ordering::SeqCst),
            "the calls waited for the slow one"
        );
        assert_eq!(waiter.join().unwrap().unwrap(), 3000);
    });
}

fn stream_slices_recycles_the_arena() {
    // 20 slices of 800 KB through a 4 MiB lane: each block must be given
    // back as soon as its output is in, or the stream would stall.
    let drones = Pool::builder()
        .drones(2)
        .arena_lane(4 << 20)
        .build()
        .unwrap();
    let slices: Vec<Vec<u64>> = (0..20u64)
        .map(|k| (0..100_000).map(|i| i * k).collect())
        .collect();
    let mut sums = vec![None; slices.len()];
    for r in drones.stream_slices(&SUM, &slices).unwrap() {
        let (i, sum) = r.unwrap();
        assert!(sums[i].is_none(), "index {i} twice");
        sums[i] = Some(sum);
    }
    for (k, s) in sums.iter().enumerate() {
        assert_eq!(*s, Some(k as u64 * 99_999 * 100_000 / 2));
    }
    // Small ones travel in the frames; an empty slice is a slice too.
    let words: Vec<&[u64]> = vec![&[1, 2], &[], &[5]];
    let mut got: Vec<(usize, u64)> = drones
        .stream_slices(&SUM, words)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    got.sort_unstable();
    assert_eq!(got, [(0, 3), (1, 0), (2, 5)]);
}

fn stats_count_what_happened() {
    let drones = pool(2);
    let before = drones.stats();
    assert_eq!(before.drones_started, 2);
    let data: Vec<u64> = (0..1_000_000).collect();
    drones.submit_slice(&SUM, &data).unwrap().wait().unwrap();
    drones.map(&NAP, &[20, 20]).unwrap();
    let after = drones.stats();
    assert_eq!(after.items - before.items, 3);
    assert!(after.bytes_in_arena - before.bytes_in_arena >= 8_000_000);
    assert!(after.busy - before.busy >= Duration::from_millis(40));
    assert_eq!(after.drones_lost, 0);
}

// ----- found by review: each of these failed before its fix ---------------

fn fresh_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("polycephaly-pool-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs helper `role` (a master of its own) and fails unless it exits
/// successfully within `limit` (a hang is the failure these tests catch).
fn helper_finishes(role: &str, env: &[(&str, &std::path::Path)], limit: Duration) {
    let mut c = helper(role);
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap();
    let mut pfd = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let ts = rustix::time::Timespec {
        tv_sec: limit.as_secs() as i64,
        tv_nsec: i64::from(limit.subsec_nanos()),
    };
    let ended = rustix::event::poll(&mut pfd, Some(&ts)).unwrap() == 1;
    if !ended {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    assert!(ended, "{role}: still running after {limit:?} (hung)");
    assert!(status.success(), "{role}: {status}");
}

/// Drives the pool (small maps) until `cond` holds, for at most 20 s.
fn drive_until(drones: &Pool, mut cond: impl FnMut(&Pool) -> bool) {
    let start = Instant::now();
    while !cond(drones) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "condition never came"
        );
        drones.map(&DOUBLE, &[1]).unwrap();
    }
}

/// 16 items, chunks of 2, 2 drones: slot 0 runs c0 (1 s) with c2 behind
/// it; slot 1 runs dry and gets a copy of c2, whose first run sleeps 3 s;
/// slot 0 then dies on c2 (its second run). The pieces of c2 must go back
/// to the queue, not into the copy holder's list, where nobody sends them.
fn copy_strands_master() {
    let drones = Pool::builder().drones(2).build().unwrap();
    let mut items = vec![0u64; 16];
    items[0] = 1000;
    items[4] = 1_003_000;
    assert_eq!(drones.map(&SECOND_DIES, &items).unwrap(), items);
}

fn a_death_while_a_copy_is_out_strands_nothing() {
    let dir = fresh_dir("copy");
    helper_finishes(
        "copy_strands",
        &[("POOL_TEST_ONCE", &dir)],
        Duration::from_secs(20),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn a_dropped_calls_late_answer_kills_no_drone() {
    let drones = pool(1);
    let before = drones.pids();
    // Cancelled while its drone runs it: its answer comes after the call
    // ended. The next call's answer comes after it (one drone, one ring).
    drop(drones.submit(&NAP, 50).unwrap());
    assert_eq!(drones.map(&DOUBLE, &[1, 2, 3]).unwrap(), [2, 4, 6]);
    let st = drones.stats();
    assert_eq!(st.late_answers, 1);
    assert_eq!(
        st.drones_lost, 0,
        "a drone was killed for a cancelled call's answer"
    );
    assert_eq!(drones.pids(), before);
}

fn a_cancelled_call_blames_no_other() {
    // Before: the late answer of the first made the master kill the drone,
    // and the crash was charged to what it ran next: the second call.
    let drones = Pool::builder().drones(1).retries(0).build().unwrap();
    drop(drones.submit(&NAP, 50).unwrap());
    let y = drones.submit(&NAP, 100).unwrap();
    assert_eq!(y.wait().unwrap(), 100);
    assert_eq!(drones.stats().drones_lost, 0);
}

/// 8 items, chunks of 1, 2 drones, no retries: slot 0 runs c0 (1 s) with
/// c2 behind it; slot 1 runs dry and gets a copy of c2 (first run: 3 s);
/// slot 0 dies on c2, which fails (out of tries) while the copy runs on.
/// The copy's good answer must not get its drone killed.
fn a_spent_chunks_copy_kills_no_healthy_drone() {
    let dir = fresh_dir("spent");
    // SAFETY: this test process has no thread that reads the environment
    // now (the runner is single-threaded; no pool is alive).
    unsafe { std::env::set_var("POOL_TEST_ONCE", &dir) };
    let drones = Pool::builder().drones(2).retries(0).build().unwrap();
    // SAFETY: as above; the drones have their copy.
    unsafe { std::env::remove_var("POOL_TEST_ONCE") };
    let mut items = vec![0u64; 8];
    items[0] = 1000;
    items[2] = 1_003_000;
    let err = drones.map(&SECOND_DIES, &items).unwrap_err();
    assert!(
        matches!(
            err,
            PoolError::Task {
                index: 2,
                error: TaskError::Crashed { .. },
                ..
            }
        ),
        "{err}"
    );
    // Until the copy's answer came (and was dropped as late).
    drive_until(&drones, |d| d.stats().late_answers >= 1);
    assert_eq!(
        drones.stats().drones_lost,
        1,
        "only the drone that crashed is lost"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn reentrant_stream_master() {
    let drones = pool(1);
    let inputs = (0..3u64).inspect(|_| {
        // Takes the pool's lock: the iterator must not run under it.
        let _ = drones.stats();
    });
    assert_eq!(drones.stream(&DOUBLE, inputs).unwrap().count(), 3);
}

fn a_streams_iterator_may_use_the_pool() {
    helper_finishes("reentrant_stream", &[], Duration::from_secs(20));
}

fn vec_outputs_too_large_together_are_cut_apart() {
    // Each output is 200 KB, well inside a 4 MiB lane; a chunk of 25 of
    // them is not: the chunk is cut until its outputs fit.
    let drones = one_drone_with_lane(4 << 20);
    let out = drones.map(&RANGE, &vec![50_000u32; 100]).unwrap();
    assert!(out.iter().all(|v| v.len() == 50_000));
    // One output alone larger than the lane: that item fails, typed.
    let err = drones.map(&RANGE, &[10, 2_000_000]).unwrap_err();
    assert!(
        matches!(
            err,
            PoolError::Task {
                index: 1,
                error: TaskError::TooLarge { bytes, .. },
                ..
            } if bytes >= 8_000_000
        ),
        "{err}"
    );
    assert_eq!(drones.stats().drones_lost, 0);
}

fn a_large_ring_kills_no_drone() {
    // inline_max ~ 2 MiB: chunks would be 2M one-byte items, past what a
    // drone accepts; the master cuts them smaller.
    let drones = Pool::builder()
        .drones(1)
        .ring_len(16 << 20)
        .build()
        .unwrap();
    let out = drones.map(&INC8, &vec![1u8; 8 << 20]).unwrap();
    assert!(out.iter().all(|&x| x == 2));
    assert_eq!(
        drones.stats().drones_lost,
        0,
        "drones killed for chunks the master cut"
    );
}

fn stream_slices_reports_a_lane_held_by_an_untaken_result() {
    let drones = one_drone_with_lane(4 << 20);
    // 3 MiB of the 4 MiB lane held by a result we take only later: the
    // stream's 2 MiB cannot get room while we wait in the stream. Before,
    // the stream ended at once with a bogus `ArenaFull { max: 0 }` and fed
    // nothing more; now that input fails, typed, and the others run.
    let p = drones.submit_slice(&SUM, &vec![1u64; 3 << 17]).unwrap();
    let got: Vec<_> = drones
        .stream_slices(&SUM, vec![vec![1u64; 2 << 17], vec![1u64; 5]])
        .unwrap()
        .collect();
    assert_eq!(p.wait().unwrap(), 3 << 17);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got.iter().any(|r| matches!(
            r,
            Err(PoolError::Task { index: 0, error: TaskError::BadInput { reason }, .. })
                if reason.contains("take the results of earlier calls first")
        )),
        "{got:?}"
    );
    assert!(got.iter().any(|r| matches!(r, Ok((1, 5)))), "{got:?}");
    // Taken: the same input now goes through.
    let again: Vec<_> = drones
        .stream_slices(&SUM, vec![vec![1u64; 2 << 17]])
        .unwrap()
        .collect();
    assert!(
        matches!(again.as_slice(), [Ok((0, s))] if *s == 2 << 17),
        "{again:?}"
    );
}

fn stream_slices_too_large_is_typed() {
    let small = one_drone_with_lane(1 << 20);
    let got: Vec<_> = small
        .stream_slices(&SUM, vec![vec![1u64; 1 << 18], vec![1u64; 3]])
        .unwrap()
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got.iter().any(|r| matches!(
            r,
            Err(PoolError::Task {
                index: 0,
                error: TaskError::TooLarge {
                    bytes: 2_097_152,
                    ..
                },
                ..
            })
        )),
        "{got:?}"
    );
    assert!(got.iter().any(|r| matches!(r, Ok((1, 3)))), "{got:?}");
}

/// Whether process `pid` sleeps in a futex wait (blocked on a ring).
fn in_futex_wait(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("futex"))
}

/// 5 drones, 4 KiB task rings (a 32 KiB results ring), 64 KiB lanes. A
/// stream hands out 10 inputs; we take one result and stop reading, so
/// the ~4 KiB results fill the ring. The victim (input 1) naps, puts its
/// 40 KB output in its lane, publishes it to the master and waits for
/// room in the ring: killed there, its block must not stay owed to the
/// master, or the slot's next drones could never wrap their lane past it.
fn leaked_block_master() {
    let drones = Pool::builder()
        .drones(5)
        .ring_len(4096)
        .arena_lane(64 << 10)
        .build()
        .unwrap();
    let pidfile = std::path::PathBuf::from(std::env::var_os("POOL_TEST_PIDFILE").unwrap());
    // Sizes picked so that, with the hellos and notices before them, the
    // first result (read) and seven of 4104 bytes leave no room for the
    // victim's 88-byte frame.
    let small = (50u64 << 32) | 1013;
    let mut inputs = vec![small; 10];
    inputs[0] = 973;
    inputs[1] = (300u64 << 32) | 10_000;
    {
        let mut stream = drones.stream(&BLOB, inputs).unwrap();
        let first = stream.next().unwrap().unwrap();
        assert_eq!((first.0, first.1.len()), (0, 973));
        // Until the victim wrote its pid, then sleeps on the full ring.
        let start = Instant::now();
        let pid = loop {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the victim never blocked"
            );
            let pid = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|p| p.parse::<u32>().ok());
            match pid {
                Some(pid) if in_futex_wait(pid) => break pid,
                _ => std::thread::yield_now(),
            }
        };
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::KILL,
        )
        .unwrap();
        assert_eq!(stream.map(Result::unwrap).count(), 9);
    }
    // Every slot now gets 40 KB outputs, through its lane many times over.
    assert_eq!(drones.map(&BLOB, &[10_000u64; 20]).unwrap().len(), 20);
}

fn a_kill_after_publishing_leaks_no_block() {
    let dir = fresh_dir("leak");
    helper_finishes(
        "leaked_block",
        &[("POOL_TEST_PIDFILE", &dir.join("pid"))],
        Duration::from_secs(30),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A program that ignores SIGCHLD (daemons do): the kernel reaps a dead
/// drone itself, and the keeper must still report the death.
fn sigchld_ignored_master() {
    // SAFETY: setting a signal's disposition, before any thread of ours.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    let drones = pool(2);
    assert_eq!(drones.map(&DOUBLE, &[1, 2, 3]).unwrap(), [2, 4, 6]);
    let victim = drones.pids()[0];
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(victim as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let items: Vec<u64> = (0..100).collect();
    assert_eq!(drones.map(&DOUBLE, &items).unwrap().len(), 100);
    drive_until(&drones, |d| {
        d.stats().drones_lost == 1 && !d.pids().contains(&victim) && !d.pids().contains(&0)
    });
    drop(drones);
}

fn a_program_that_ignores_sigchld() {
    helper_finishes("sigchld_ignored", &[], Duration::from_secs(20));
}

/// One thread waits on a stuck task (asleep on the results ring); another
/// polls `is_ready` on a second stuck task every 100 ms. Before, each poll
/// (finding the last look over 50 ms old) postponed every time-out:
/// neither task ever timed out.
fn polling_does_not_stop_time_outs() {
    let drones = Pool::builder()
        .drones(2)
        .retries(0)
        .task_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    std::thread::scope(|s| {
        let first = drones.submit(&STUCK, 1).unwrap();
        let waiter = s.spawn(|| first.wait());
        let second = drones.submit(&STUCK, 1).unwrap();
        let start = Instant::now();
        while !second.is_ready() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no time-out while polled"
            );
            // The polling pace is the scenario (not a synchronization).
            std::thread::sleep(Duration::from_millis(100));
        }
        for r in [waiter.join().unwrap(), second.wait()] {
            assert!(
                matches!(
                    &r,
                    Err(PoolError::Task {
                        error: TaskError::TimedOut { .. },
                        ..
                    })
                ),
                "{r:?}"
            );
        }
    });
}

/// Drones whose answers fill the results ring while the master is busy
/// elsewhere wait for room: they are not in a task, and must not be timed
/// out for it.
fn a_drone_waiting_on_a_full_results_ring_is_not_stuck() {
    // 5 drones, 4 KiB task rings: a 32 KiB results ring; 10 answers of
    // about 4 KB (inline) do not fit it together.
    let drones = Pool::builder()
        .drones(5)
        .ring_len(4096)
        .task_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let pending: Vec<_> = (0..10)
        .map(|_| drones.submit(&BLOB, 1000).unwrap())
        .collect();
    // The master's thread is busy with something else for a while (the
    // scenario, not a synchronization).
    std::thread::sleep(Duration::from_millis(800));
    for p in pending {
        assert_eq!(p.wait().unwrap().len(), 1000);
    }
    assert_eq!(
        drones.stats().drones_lost,
        0,
        "a drone waiting for room was timed out"
    );
}
