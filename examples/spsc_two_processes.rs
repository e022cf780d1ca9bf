//! Two processes and two SPSC rings: the parent sends commands, the child
//! (this same executable, re-executed) answers each one. The region is an
//! anonymous memfd that the child inherits.
//!
//! ```text
//! cargo run --release --example spsc_two_processes [round_trips]
//! ```

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Command;
use std::time::Instant;

use polycephaly::region::{OpenOptions, Region, SectionId, SectionKind};
use polycephaly::ring::{SpscConsumer, SpscProducer, section_len};
use polycephaly::sync::WaitStrategy;

const COMMANDS: SectionId = SectionId(0);
const REPLIES: SectionId = SectionId(1);
const FD_VAR: &str = "SPSC_EXAMPLE_FD";

/// A command: add `a` and `b`. A zero-length frame means "stop".
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Add {
    a: u64,
    b: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(fd) = std::env::var(FD_VAR) {
        return child(fd.parse()?);
    }
    let n: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let region = Region::builder()
        .section(SectionKind::SpscRing, section_len(1 << 16)?)
        .section(SectionKind::SpscRing, section_len(1 << 16)?)
        .build()?;
    let mut commands = SpscProducer::attach(&region, COMMANDS)?;
    let mut replies = SpscConsumer::attach(&region, REPLIES)?;
    replies.set_wait_strategy(WaitStrategy::BLOCK);

    let fd = region.inheritable_fd()?;
    let mut drone = Command::new(std::env::current_exe()?)
        .env(FD_VAR, fd.to_string())
        .spawn()?;
    // SAFETY: `fd` is ours (from `inheritable_fd`) and the child has its
    // own copy now; close ours.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });

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

fn child(fd: i32) -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: the parent passed us this inherited descriptor; nobody else in
    // this process owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let region = Region::from_fd(fd, &OpenOptions::default())?;
    let mut commands = SpscConsumer::attach(&region, COMMANDS)?;
    let mut replies = SpscProducer::attach(&region, REPLIES)?;
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
