//! Several processes count under one `ShmMutex`, then one is killed while
//! it holds the lock and the parent takes the lock over.
//!
//! Run: `cargo run --release --example mutex_counter`.

use std::process::Command;
use std::time::Duration;

use polycephaly::lock::{LockStatus, ShmMutex};
use polycephaly::region::{OpenOptions, REGION_FD_VAR, Region, SectionId};

const WORKERS: u64 = 3;
const EACH: u64 = 100_000;

#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Counter {
    count: u64,
    /// Set by the worker that is killed while it holds the lock.
    doomed: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os(REGION_FD_VAR).is_some() {
        // A worker: open the region handed over and count.
        let region = Region::inherited(&OpenOptions::default())?;
        let counter = ShmMutex::<Counter>::attach(&region, SectionId(0))?;
        if std::env::var("DOOMED").is_ok() {
            let mut g = counter.lock()?;
            g.doomed = 1;
            // Hold the lock until killed.
            loop {
                std::thread::park();
            }
        }
        for _ in 0..EACH {
            counter.lock()?.count += 1;
        }
        return Ok(());
    }

    let region = Region::builder()
        .with(ShmMutex::<Counter>::spec())
        .build()?;
    let counter = ShmMutex::<Counter>::attach(&region, SectionId(0))?;
    let spawn = |doomed: bool| -> Result<std::process::Child, Box<dyn std::error::Error>> {
        let mut cmd = Command::new(std::env::current_exe()?);
        region.share_with(&mut cmd)?;
        if doomed {
            cmd.env("DOOMED", "1");
        }
        Ok(cmd.spawn()?)
    };

    let workers: Vec<_> = (0..WORKERS)
        .map(|_| spawn(false))
        .collect::<Result<_, _>>()?;
    for mut w in workers {
        w.wait()?;
    }
    println!(
        "count = {} (expected {})",
        counter.lock()?.count,
        WORKERS * EACH
    );

    // A worker that dies holding the lock: the next locker is told.
    let mut doomed = spawn(true)?;
    while counter.try_lock().map(|g| g.doomed).unwrap_or(1) == 0 {
        std::thread::yield_now();
    }
    doomed.kill()?;
    doomed.wait()?;
    let mut g = counter.lock_timeout(Duration::from_secs(5))?;
    println!("after the kill: {:?}", g.status());
    assert_eq!(g.status(), LockStatus::OwnerDied);
    // The count was not touched in the middle of an update: repair nothing,
    // declare it consistent.
    g.doomed = 0;
    g.mark_consistent();
    Ok(())
}
