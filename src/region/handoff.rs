//! Handing a region to a child process that the parent starts (`exec`):
//! [`Region::share_with`] in the parent, [`Region::inherited`] in the child.
//!
//! The parent's descriptor is duplicated with `FD_CLOEXEC` set (so no other
//! child, started by another thread meanwhile, inherits it), and the flag
//! is cleared in the child alone, between its `fork` and its `exec`. The
//! child learns the descriptor's number, and the identity of the file it
//! must be (device and inode), from an environment variable; it checks that
//! identity before it takes the descriptor over, and sets `FD_CLOEXEC` on
//! it, so that neither a stale variable inherited by a grandchild nor a
//! descriptor that happens to have the same number is ever mistaken for the
//! region.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Mutex;

use super::{OpenError, OpenOptions, Region};

/// The environment variable [`Region::share_with`] sets and
/// [`Region::inherited`] reads: `fd:DEV:INO`.
pub const REGION_FD_VAR: &str = "POLYCEPHALY_REGION_FD";

/// The descriptors this process already took over, so that each is owned
/// once (a second `inherited` call gets an error, not a second owner).
static TAKEN: Mutex<Vec<i32>> = Mutex::new(Vec::new());

impl Region {
    /// Prepares `cmd` so that the child it starts inherits this region: a
    /// duplicate of the region's descriptor survives the child's `exec`
    /// (and no other process's), and [`REGION_FD_VAR`] tells the child
    /// where it is. The child calls [`Region::inherited`]. The duplicate is
    /// kept by `cmd` and closed when `cmd` is dropped.
    ///
    /// ```no_run
    /// use polycephaly::region::{OpenOptions, Region};
    ///
    /// // In the parent:
    /// let region = Region::builder().build()?;
    /// let mut cmd = std::process::Command::new(std::env::current_exe()?);
    /// region.share_with(&mut cmd)?;
    /// let mut child = cmd.spawn()?;
    /// // In the child (the same program, started with the variable set):
    /// let region = Region::inherited(&OpenOptions::default())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// The descriptor could not be duplicated or examined (too many open
    /// files).
    pub fn share_with(&self, cmd: &mut Command) -> io::Result<()> {
        self.share_with_var(cmd, REGION_FD_VAR)
    }

    /// As [`share_with`](Self::share_with), through the environment
    /// variable `var` (for a child that inherits several regions; it calls
    /// [`Region::inherited_from`] with the same name).
    ///
    /// # Errors
    /// As [`share_with`](Self::share_with).
    pub fn share_with_var(&self, cmd: &mut Command, var: &str) -> io::Result<()> {
        // FD_CLOEXEC set on our copy: only the child that clears it below
        // keeps it across its exec.
        let dup = rustix::io::fcntl_dupfd_cloexec(&self.inner.fd, 0)?;
        let st = rustix::fs::fstat(&dup)?;
        let raw = dup.as_raw_fd();
        cmd.env(var, format!("{raw}:{}:{}", st.st_dev, st.st_ino));
        // SAFETY: the closure runs in the child between fork and exec; it
        // makes one fcntl system call (async-signal-safe), allocates
        // nothing and takes no lock. `dup` moves into the closure, so the
        // descriptor stays open in the parent until `cmd` is dropped, and
        // its number is valid in every child `cmd` starts.
        unsafe {
            cmd.pre_exec(move || {
                rustix::io::fcntl_setfd(dup.as_fd(), rustix::io::FdFlags::empty())?;
                Ok(())
            });
        }
        Ok(())
    }

    /// In a child started by a parent that called
    /// [`share_with`](Self::share_with): opens the region it handed over,
    /// with a peer slot of this process's own.
    ///
    /// # Errors
    /// [`OpenError::NotInherited`] when the variable is missing or
    /// malformed, names no open descriptor, or one that is not the file
    /// the parent shared (a variable inherited by a grandchild, say), or the
    /// descriptor was taken over already; then any error of
    /// [`Region::from_fd`].
    pub fn inherited(opts: &OpenOptions) -> Result<Region, OpenError> {
        Self::inherited_from(REGION_FD_VAR, opts)
    }

    /// As [`inherited`](Self::inherited), from the environment variable
    /// `var` (see [`share_with_var`](Self::share_with_var)).
    ///
    /// # Errors
    /// As [`inherited`](Self::inherited).
    pub fn inherited_from(var: &str, opts: &OpenOptions) -> Result<Region, OpenError> {
        let not = |why: &'static str| OpenError::NotInherited {
            var: var.to_owned(),
            why,
        };
        let value = std::env::var(var).map_err(|_| not("the variable is not set"))?;
        let mut parts = value.split(':').map(str::parse::<u64>);
        let (Some(Ok(raw)), Some(Ok(dev)), Some(Ok(ino)), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(not("the variable is not fd:dev:ino"));
        };
        let raw = i32::try_from(raw).map_err(|_| not("the variable is not fd:dev:ino"))?;
        let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
        if taken.contains(&raw) {
            return Err(not("the descriptor was taken over already"));
        }
        // SAFETY: `raw` is only looked at here (fstat through a borrowed
        // descriptor that is not closed); fstat fails cleanly (EBADF) if
        // nothing is open under that number.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
        let st =
            rustix::fs::fstat(borrowed).map_err(|_| not("no open descriptor has that number"))?;
        if st.st_dev != dev || st.st_ino != ino {
            return Err(not("the descriptor is not the file the parent shared"));
        }
        taken.push(raw);
        drop(taken);
        // SAFETY: the descriptor is open and is the very file the parent
        // shared with this process (device and inode checked above); the
        // parent made it for this child alone, and `TAKEN` makes this the
        // one place in the process that takes ownership of it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Not to be inherited further: a grandchild gets its own handoff.
        rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC).map_err(io::Error::from)?;
        Region::from_fd(fd, opts)
    }
}
