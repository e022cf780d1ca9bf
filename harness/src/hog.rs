//! CPU hogs: busy processes that run beside a bench (`--hog N`), so that
//! its rows show what they cost when processes outnumber CPUs.
//!
//! Each hog is a forked process that spins until it is killed; it is not
//! pinned, so the scheduler shares every CPU between it and the bench's
//! pairs. The hogs die with the bench (`PR_SET_PDEATHSIG`) and are killed
//! and reaped when the [`Hogs`] value is dropped.

use rustix::process::{Pid, Signal};

use super::BenchError;

/// Running hogs; dropping the value kills and reaps them.
#[derive(Debug)]
pub struct Hogs {
    pids: Vec<Pid>,
}

impl Hogs {
    /// Starts `n` hogs (none for 0).
    ///
    /// Call it while this process has one thread: each hog is a fork that
    /// runs nothing but a loop.
    ///
    /// # Errors
    /// [`BenchError::Os`] if a fork fails (the hogs started before are
    /// killed).
    pub fn start(n: u32) -> Result<Self, BenchError> {
        let mut hogs = Self { pids: Vec::new() };
        let parent = rustix::process::getpid();
        for _ in 0..n {
            // SAFETY: the child runs only `hog`, which calls no allocator
            // and takes no lock (async-signal-safe work only), then never
            // returns; the caller has one thread.
            let pid = unsafe { libc::fork() };
            match pid {
                0 => hog(parent),
                p if p > 0 => hogs.pids.extend(Pid::from_raw(p)),
                _ => return Err(BenchError::last_os("fork (hog)")),
            }
        }
        Ok(hogs)
    }

    /// How many hogs run.
    pub fn len(&self) -> usize {
        self.pids.len()
    }

    /// Whether no hog runs.
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for &pid in &self.pids {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
        for &pid in &self.pids {
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
        }
    }
}

/// A hog's whole life: spin until killed, or until the bench is gone.
fn hog(parent: Pid) -> ! {
    // Dies with the bench; if the bench died before the prctl took effect,
    // the parent is already someone else.
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    if rustix::process::getppid() != Some(parent) {
        // SAFETY: ends this fork without running the parent's destructors.
        unsafe { libc::_exit(0) }
    }
    let mut x = 0u64;
    loop {
        x = core::hint::black_box(x.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hogs_run_until_dropped() {
        let hogs = Hogs::start(2).unwrap();
        assert_eq!(hogs.len(), 2);
        let pids = hogs.pids.clone();
        for &pid in &pids {
            // Signal 0: the process exists (ours, not yet reaped).
            assert!(rustix::process::test_kill_process(pid).is_ok());
        }
        drop(hogs);
        for &pid in &pids {
            assert!(rustix::process::test_kill_process(pid).is_err(), "reaped");
        }
    }
}
