//! Two processes and two SPSC rings: the parent sends commands, the child
//! (this same executable, re-executed) answers each one. The region is an
//! anonymous memfd that the child inherits.
//!
//! ```text
//! cargo run --release --example spsc_two_processes [round_trips]
//! ```

use std::process::Command;
use std::time::Instant;

use polycephaly::region::{OpenOptions, REGION_FD_VAR, Region, SectionId};
use polycephaly::ring::{Receiver, Sender, spsc};
use polycephaly::sync::WaitStrategy;

const COMMANDS: SectionId = SectionId(0);
const REPLIES: SectionId = SectionId(1);

/// A command: add `a` and `b`. A zero-length frame means "stop".
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Add {
    a: u64,
    b: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os(REGION_FD_VAR).is_some() {
        return child();
    }
    let n: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let region = Region::builder()
        .with(spsc::Spec::new(1 << 16)?)
        .with(spsc::Spec::new(1 << 16)?)
        .build()?;
    let mut commands = spsc::Producer::attach(&region, COMMANDS)?;
    let mut replies = spsc::Consumer::attach(&region, REPLIES)?;
    replies.set_wait_strategy(WaitStrategy::BLOCK);

    // The child is this program again, handed the region.
    let mut command = Command::new(std::env::current_exe()?);
    region.share_with(&mut command)?;
    let mut drone = command.spawn()?;

    let start = Instant::now();
    for i in 0..n {
        commands.send_value(&Add { a: i, b: 2 * i })?;
        let sum: u64 = replies.recv_value()?;
        assert_eq!(sum, 3 * i);
    }
    let elapsed = start.elapsed();
    commands.send(&[])?;
    let status = drone.wait()?;
    println!(
        "{n} round trips in {elapsed:?}: {:.2} us each; child {status}",
        elapsed.as_secs_f64() * 1e6 / n as f64
    );
    Ok(())
}

fn child() -> Result<(), Box<dyn std::error::Error>> {
    let region = Region::inherited(&OpenOptions::default())?;
    let mut commands = spsc::Consumer::attach(&region, COMMANDS)?;
    let mut replies = spsc::Producer::attach(&region, REPLIES)?;
    loop {
        let frame = commands.read()?;
        if frame.is_empty() {
            return Ok(());
        }
        let add: Add = bytemuck::pod_read_unaligned(&frame);
        frame.release();
        replies.send_value(&(add.a + add.b))?;
    }
}
