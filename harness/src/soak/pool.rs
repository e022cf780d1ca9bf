//! The soak's pool: two drones, jobs of small tasks and of chunks of a
//! large array (through the arena), every result checked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use polycephaly::pool::Pool;

use super::{Cfg, Chaos, Report, SOAK_MIX, SOAK_SUM, STALL, splitmix, wrapping_sum};

pub(super) fn pool_component(cfg: &Cfg, chaos: &Chaos) -> Report {
    let mut r = Report::new("pool", "items");
    if let Err(e) = pool_run(cfg, chaos, &mut r) {
        r.discrepancy(e);
    }
    chaos.unregister_pools();
    r
}

fn pool_run(cfg: &Cfg, chaos: &Chaos, r: &mut Report) -> Result<(), String> {
    let pool = Arc::new(
        Pool::builder()
            .drones(2)
            .retries(1_000_000)
            .build()
            .map_err(|e| e.to_string())?,
    );
    chaos.register_pool(&pool);
    let mut round = 0u64;
    let items: Vec<u64> = (0..20_000).collect();
    let mut array = vec![0u64; 1 << 20];
    while Instant::now() < cfg.deadline {
        round += 1;
        let base = splitmix(round);
        let xs: Vec<u64> = items.iter().map(|i| i ^ base).collect();
        let out = pool.map(&SOAK_MIX, &xs).map_err(|e| e.to_string())?;
        let bad = out
            .iter()
            .zip(&xs)
            .filter(|(o, x)| **o != splitmix(**x))
            .count();
        if bad > 0 || out.len() != xs.len() {
            r.discrepancy(format!("round {round}: {bad} wrong results"));
        }
        r.count += xs.len() as u64;
        r.bytes += 16 * xs.len() as u64;
        for (k, x) in array.iter_mut().enumerate() {
            *x = splitmix(base ^ k as u64);
        }
        let chunk = 100_000;
        let sums = pool
            .map_chunks(&SOAK_SUM, &array, chunk)
            .map_err(|e| e.to_string())?;
        let want: Vec<u64> = array.chunks(chunk).map(wrapping_sum).collect();
        if sums != want {
            r.discrepancy(format!("round {round}: chunk sums differ"));
        }
        r.count += sums.len() as u64;
        r.bytes += 8 * array.len() as u64;
    }
    chaos.unregister_pools();
    r.deaths = pool.stats().drones_lost;
    // The chaos thread may hold it for a moment longer.
    let mut pool = pool;
    let start = Instant::now();
    loop {
        match Arc::try_unwrap(pool) {
            Ok(p) => {
                p.shutdown();
                return Ok(());
            }
            Err(p) if start.elapsed() < STALL => {
                pool = p;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => return Err("the pool is still shared".into()),
        }
    }
}
