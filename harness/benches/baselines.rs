//! Criterion benches of the baselines, over the same kernels as
//! `polycephaly bench` (`polycephaly_harness`), between two real processes.
//!
//! Every `iter_custom` call forks a fresh pair and returns only the timed
//! part, so criterion's estimates hold whatever the setup costs. The bench
//! process stays single-threaded (criterion is built without rayon), which
//! is what `run_pair`'s fork needs. `cargo test --benches` runs each once.
//!
//! `POLYCEPHALY_PIN=none|split|same` chooses the placement (default none).

use std::time::Duration;

use criterion::{Criterion, Throughput};
use polycephaly_harness::os::{self, Stream};
use polycephaly_harness::{PinMode, Plan, Timings, floors};

const MIB: usize = 1 << 20;

fn pin() -> PinMode {
    match std::env::var("POLYCEPHALY_PIN").as_deref() {
        Ok("split") => PinMode::Split,
        Ok("same") => PinMode::Same,
        _ => PinMode::None,
    }
}

/// The timed total of a kernel run, for `iter_custom`. A failing kernel
/// fails the bench loudly: a figure from a broken run means nothing.
fn total(name: &str, t: Result<Timings, polycephaly_harness::BenchError>) -> Duration {
    match t {
        Ok(t) => t.total(),
        Err(e) => panic!("{name}: {e}"),
    }
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let pin = pin();

    let mut g = c.benchmark_group("rtt");
    g.throughput(Throughput::Elements(1));
    g.bench_function("floor_spin_rtt", |b| {
        b.iter_custom(|n| total("floor_spin_rtt", floors::spin_rtt(pin, &Plan::one_batch(n))))
    });
    g.bench_function("floor_wake_rtt", |b| {
        // Every trip is timed alone (the wait for the sleeper is untimed).
        b.iter_custom(|n| {
            total(
                "floor_wake_rtt",
                floors::wake_rtt(pin, &Plan::singles(2, n)),
            )
        })
    });
    for (name, kind) in [("uds_rtt", Stream::Uds), ("pipe_rtt", Stream::Pipe)] {
        g.bench_function(name, |b| {
            b.iter_custom(|n| total(name, os::stream_rtt(pin, kind, &Plan::one_batch(n))))
        });
    }
    g.bench_function("pshared_mutex_rtt", |b| {
        b.iter_custom(|n| total("pshared", os::pshared_mutex_rtt(pin, &Plan::one_batch(n))))
    });
    g.finish();

    let mut g = c.benchmark_group("throughput_64b");
    g.throughput(Throughput::Elements(1));
    g.bench_function("floor_ring_64b_throughput", |b| {
        b.iter_custom(|n| {
            total(
                "ring",
                floors::ring_64b_throughput(pin, &Plan::one_batch(n)),
            )
        })
    });
    g.bench_function("uds_64b_throughput", |b| {
        b.iter_custom(|n| total("uds_64b", os::uds_64b_throughput(pin, &Plan::one_batch(n))))
    });
    g.finish();

    for (len, label) in [(MIB, "1mb"), (8 * MIB, "8mb")] {
        let mut g = c.benchmark_group(format!("bulk_{label}"));
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("memcpy_{label}"), |b| {
            b.iter_custom(|n| total("memcpy", floors::memcpy(len, &Plan::singles(1, n))))
        });
        g.bench_function(format!("floor_shm_transfer_{label}"), |b| {
            b.iter_custom(|n| {
                total(
                    "transfer",
                    floors::shm_transfer(pin, len, &Plan::singles(1, n)),
                )
            })
        });
        g.finish();
    }

    c.final_summary();
}
