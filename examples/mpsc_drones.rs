//! A master and three drone processes reporting to it over one MPSC ring;
//! the master kills one drone with SIGKILL halfway and goes on: whatever
//! the dead drone had claimed and not committed is skipped after the claim
//! timeout, and every frame the others commit arrives once, in order.
//!
//! ```text
//! cargo run --release --example mpsc_drones [reports_per_drone]
//! ```

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use polycephaly::region::{OpenOptions, Region, SectionId};
use polycephaly::ring::mpsc;
use polycephaly::ring::{Receiver, Sender};

const RING: SectionId = SectionId(0);
const DRONE_VAR: &str = "MPSC_EXAMPLE_DRONE";
const DRONES: usize = 3;
/// The drone the master kills.
const DOOMED: usize = 0;

/// What a drone reports: its sequence number and a result.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Report {
    seq: u64,
    square: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(drone) = std::env::var(DRONE_VAR) {
        return drone_main(drone.parse()?);
    }
    let reports: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let region = Region::builder().with(mpsc::Spec::new(1 << 16)?).build()?;
    let mut rx = mpsc::Consumer::attach(&region, RING)?;

    // Each drone is this program again, handed the region.
    let mut drones: Vec<Child> = (0..DRONES)
        .map(|i| {
            let mut command = Command::new(std::env::current_exe()?);
            command
                .env(DRONE_VAR, i.to_string())
                .arg(reports.to_string());
            region.share_with(&mut command)?;
            command.spawn()
        })
        .collect::<Result<_, _>>()?;

    let start = Instant::now();
    let mut next = [0u64; DRONES];
    let mut killed_at = None;
    // The doomed drone never stops on its own (it is killed once it has
    // sent half as many as the others will); the others send `reports`.
    while killed_at.is_none() || (0..DRONES).any(|d| d != DOOMED && next[d] < reports) {
        let frame = rx.read_timeout(Duration::from_secs(10))?;
        let drone = frame.tag() as usize;
        let report: Report = bytemuck::pod_read_unaligned(&frame);
        drop(frame);
        assert!(drone < DRONES, "a report from an unknown drone");
        assert_eq!(report.seq, next[drone], "drone {drone} out of order");
        assert_eq!(report.square, report.seq.wrapping_mul(report.seq));
        next[drone] += 1;
        if drone == DOOMED && killed_at.is_none() && next[drone] == reports / 2 {
            drones[DOOMED].kill()?;
            killed_at = Some(start.elapsed());
        }
    }
    let elapsed = start.elapsed();
    for (i, d) in drones.iter_mut().enumerate() {
        println!("drone {i}: {} reports, {}", next[i], d.wait()?);
    }
    let total: u64 = next.iter().sum();
    println!(
        "{total} reports in {elapsed:?} ({:.1} M/s); drone {DOOMED} killed at {killed_at:?}",
        total as f64 / elapsed.as_secs_f64() / 1e6
    );
    // The killed drone's entry stays in the table, marked dead, until a new
    // producer takes it over.
    for p in rx.producers() {
        println!(
            "producer entry {} (peer {}): alive {}",
            p.entry,
            p.id.map_or("?".into(), |id| id.to_string()),
            p.alive
        );
    }
    Ok(())
}

fn drone_main(drone: u32) -> Result<(), Box<dyn std::error::Error>> {
    let reports: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(0);
    let region = Region::inherited(&OpenOptions::default())?;
    let mut tx = mpsc::Producer::attach(&region, RING)?;
    let forever = drone as usize == DOOMED;
    let mut seq = 0;
    while forever || seq < reports {
        let mut claim = tx.claim(size_of::<Report>())?;
        claim.copy_from_slice(bytemuck::bytes_of(&Report {
            seq,
            square: seq.wrapping_mul(seq),
        }));
        claim.set_tag(drone);
        claim.commit()?;
        seq += 1;
    }
    Ok(())
}
