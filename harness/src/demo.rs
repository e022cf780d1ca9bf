//! `polycephaly demo`: the seed's example on four drones, then two maps
//! over large arrays (one through the rings, one through the arena), and
//! a one-screen account of what the pool did.

use std::time::{Duration, Instant};

use polycephaly::pool::{Pool, PoolStats, SliceTask, Task, Task2};

use crate::human::{self, bytes, percent, say, secs, thousands};

/// The seed's `[:a :b | a + b]`.
pub static ADD: Task2<u64, u64, u64> = Task2::new("demo_add", |a, b| a + b);

/// Steps of the Collatz sequence from `n` down to 1: a little work whose
/// cost varies from item to item.
pub static COLLATZ: Task<u64, u32> = Task::new("demo_collatz", collatz_steps);

/// The sum of the sines of a slice of doubles (a few nanoseconds of work
/// per element, so that the drones have something to do with what they
/// read).
pub static SUM_SINES: SliceTask<f64, f64> = SliceTask::new("demo_sum_sines", sum_sines);

/// The sum of the sines of `xs`.
pub fn sum_sines(xs: &[f64]) -> f64 {
    xs.iter().map(|x| x.sin()).sum()
}

/// Steps from `n` to 1 (`n / 2` if even, else `3n + 1`); 0 for 0 and 1.
pub fn collatz_steps(mut n: u64) -> u32 {
    let mut steps = 0;
    while n > 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

/// Numbers for the map through the rings.
const COLLATZ_ITEMS: u64 = 2_000_000;
/// Doubles for the map through the arena (64 MB).
const DOUBLES: usize = 8_000_000;
/// Doubles per piece of that map.
const PIECE: usize = 500_000;

/// Runs `polycephaly demo`.
///
/// # Errors
/// One line: a pool that could not start or a call that failed.
pub fn run() -> Result<(), String> {
    let pool_err = |e: polycephaly::pool::PoolError| e.to_string();
    say!("polycephaly demo: the seed's example, then arrays through a pool of drones");
    say!("machine: {}", human::machine());
    say!("");

    let started = Instant::now();
    let drones = Pool::builder()
        .drones(4)
        .arena_lane(128 << 20)
        .build()
        .map_err(|e| format!("cannot start the drones: {e}"))?;
    let start_time = started.elapsed();
    let pids: Vec<String> = drones.pids().iter().map(u32::to_string).collect();
    say!(
        "drones := 4 drones    (started in {}; pids {})",
        secs(start_time),
        pids.join(" ")
    );

    let mut calls = Duration::ZERO;
    let t = Instant::now();
    let sums = drones
        .zip_map(&ADD, &[1, 2, 3, 4, 5], &[5, 4, 3, 2, 1])
        .map_err(pool_err)?;
    let took = t.elapsed();
    calls += took;
    say!("drones do: [:a :b | a + b] with: #(1 2 3 4 5) with: #(5 4 3 2 1)");
    say!("  -> {sums:?}    in {}", secs(took));
    say!("");

    // A map over a large array, in chunks through the drones' rings.
    let numbers: Vec<u64> = (1..=COLLATZ_ITEMS).collect();
    let t = Instant::now();
    let steps = drones.map(&COLLATZ, &numbers).map_err(pool_err)?;
    let took = t.elapsed();
    calls += took;
    let t = Instant::now();
    let alone: Vec<u32> = numbers.iter().map(|&n| collatz_steps(n)).collect();
    let alone_took = t.elapsed();
    let (most_at, most) = steps
        .iter()
        .enumerate()
        .max_by_key(|&(_, s)| *s)
        .map_or((0, 0), |(i, s)| (i + 1, *s));
    say!(
        "drones map: Collatz steps of 1..={}  ({} of u64 in, {} of u32 out, in chunks through the rings)",
        thousands(COLLATZ_ITEMS),
        bytes(COLLATZ_ITEMS * 8),
        bytes(COLLATZ_ITEMS * 4)
    );
    say!(
        "  -> {} takes the most steps ({most}); {} on 4 drones, {} in one process ({:.2}x), results {}",
        thousands(most_at as u64),
        secs(took),
        secs(alone_took),
        alone_took.as_secs_f64() / took.as_secs_f64(),
        same(steps == alone)
    );

    // A map over pieces of an array written once into the arena, twice:
    // the first call also touches the arena's fresh pages.
    let doubles: Vec<f64> = (0..DOUBLES).map(|i| i as f64 / 1000.0).collect();
    let mut times = [Duration::ZERO; 2];
    let mut parts = Vec::new();
    for t in &mut times {
        let start = Instant::now();
        parts = drones
            .map_chunks(&SUM_SINES, &doubles, PIECE)
            .map_err(pool_err)?;
        *t = start.elapsed();
        calls += *t;
    }
    let t = Instant::now();
    let alone: Vec<f64> = doubles.chunks(PIECE).map(sum_sines).collect();
    let alone_took = t.elapsed();
    say!(
        "drones map_chunks: sums of the sines of {} doubles  ({} written once into the arena, read in place, {} pieces)",
        thousands(DOUBLES as u64),
        bytes((DOUBLES * 8) as u64),
        parts.len()
    );
    say!(
        "  -> {:.3} in {} on 4 drones (the first call, fresh arena pages: {}), {} in one process ({:.2}x), results {}",
        parts.iter().sum::<f64>(),
        secs(times[1]),
        secs(times[0]),
        secs(alone_took),
        alone_took.as_secs_f64() / times[1].as_secs_f64(),
        same(parts == alone)
    );
    say!("");

    let stats = drones.stats();
    drones.shutdown();
    account(&stats, calls);
    if sums == [6, 6, 6, 6, 6] {
        Ok(())
    } else {
        Err(format!("the seed's example gave {sums:?}"))
    }
}

fn same(equal: bool) -> &'static str {
    if equal { "identical" } else { "DIFFERENT" }
}

/// The one-screen account of what the pool did during `calls`.
fn account(s: &PoolStats, calls: Duration) {
    let drones = 4;
    let outside = human::exchange(calls, s.busy, drones);
    say!("what happened (Pool::stats)");
    say!(
        "  drones started          {} ({} lost)",
        s.drones_started,
        s.drones_lost
    );
    say!("  chunks handed out       {}", thousands(s.chunks));
    say!("  items computed          {}", thousands(s.items));
    say!(
        "  bytes through rings     {:<10} task and result frames (the numbers, their steps)",
        bytes(s.bytes_in_rings)
    );
    say!(
        "  bytes through arena     {:<10} read in place (the doubles, twice)",
        bytes(s.bytes_in_arena)
    );
    say!(
        "  time in work            {:<10} drones running tasks, summed over the 4",
        secs(s.busy)
    );
    say!(
        "  time in exchange        {:<10} per drone outside tasks during the calls ({}): handing out, returning results, waiting",
        secs(outside),
        percent(outside.as_secs_f64(), calls.as_secs_f64())
    );
    say!(
        "  wall time of the calls  {:<10} on {} CPU(s)",
        secs(calls),
        human::cpus()
    );
}
