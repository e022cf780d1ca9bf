//! The seed's example: `drones := VirtualMachines new: 4. drones do:
//! [:a :b | a + b] with: #(1 2 3 4 5) with: #(5 4 3 2 1)` gives
//! `#(6 6 6 6 6)`. Then a large array summed in pieces by every drone,
//! read in place from shared memory.
//!
//! ```text
//! cargo run --release --example drones
//! ```

use std::time::Instant;

use polycephaly::pool::{Pool, PoolError, Registry, SliceTask, Task2};

static ADD: Task2<u64, u64, u64> = Task2::new("add", |a, b| a + b);
static SUM: SliceTask<f64, f64> = SliceTask::new("sum", |xs| xs.iter().sum());
static TASKS: Registry = Registry::new(&[&ADD, &SUM]);

fn main() -> Result<(), PoolError> {
    // First: in a drone (this program started again by the pool) this
    // never returns.
    polycephaly::pool::serve(&TASKS);

    let drones = Pool::builder().drones(4).build()?;
    let sums = drones.zip_map(&ADD, &[1, 2, 3, 4, 5], &[5, 4, 3, 2, 1])?;
    println!("drones do: [:a :b | a + b] -> {sums:?}");

    // 4 million doubles (32 MB), written once into the pool's arena (a
    // lane of 64 MiB here; the default is 32 MiB) and read in place by
    // every drone, one piece each at a time. One drone per CPU.
    drop(drones);
    let drones = Pool::builder().arena_lane(64 << 20).build()?;
    let data: Vec<f64> = (0..4_000_000).map(|i| i as f64).collect();
    let start = Instant::now();
    let parts = drones.map_chunks(&SUM, &data, 250_000)?;
    let total: f64 = parts.iter().sum();
    println!(
        "sum of {} doubles in {} pieces on {} drones: {total} in {:?}",
        data.len(),
        parts.len(),
        drones.drones(),
        start.elapsed()
    );
    Ok(())
}
