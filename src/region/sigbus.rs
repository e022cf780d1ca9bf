//! A SIGBUS inside a region mapping, reported in one line instead of a bare
//! "Bus error".
//!
//! A region backed by a file under `/dev/shm` can be truncated by any
//! process of its user; the next access to a page past the new end raises
//! SIGBUS in every process that maps it (a memfd is sealed against that).
//! Nothing can make that access succeed, but the process can say why it
//! dies. [`install_sigbus_handler`] installs (once, on request: a library
//! does not take a signal over by itself) a handler that:
//!
//! - looks the faulting address up in a table of this process's mappings
//!   of `/dev/shm` regions ([`Registration`], one per handle, made when it
//!   maps; memfds are sealed and need none);
//! - if it lies in one, writes one line to stderr, e.g.
//!   `polycephaly: region "jobs" was truncated by another process (SIGBUS
//!   at offset 8192 of 16384; the file now has 4096 bytes)`, or, when the
//!   file still covers that offset (a full /dev/shm cannot supply the page),
//!   says so; then restores the default action and returns, so the access
//!   faults again and the process ends killed by SIGBUS, as before, with a
//!   core dump where those are enabled;
//! - otherwise hands the signal to the handler that was installed before
//!   (or to the default action), so other users of SIGBUS are unaffected.
//!
//! Everything the handler does is async-signal-safe: atomic loads of a
//! static table, `fstat`, `write` and `sigaction` system calls, and
//! formatting into a stack buffer; no allocation, no lock.
//!
//! The table has [`SLOTS`] entries; a handle that finds it full is simply
//! not covered (its fault stays a bare SIGBUS). Entries are keyed by
//! address range in this process, so a child made by `fork` (which inherits
//! the mappings and the table) is covered too.

use core::ffi::c_void;
use std::sync::OnceLock;

use crate::sync::shim::{AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

/// How many mappings the table covers.
pub const SLOTS: usize = 128;
/// Bytes of a region's name kept for the message (names are at most 200).
const NAME_WORDS: usize = 25;

/// One mapping. `state` is `generation << 2 | phase`; the other fields are
/// written only while the phase is [`WRITING`], by the thread that claimed
/// the entry, and read by the handler only between two equal loads of a
/// [`READY`] state (a seqlock: a torn read is detected and skipped).
struct Entry {
    state: AtomicU32,
    start: AtomicUsize,
    len: AtomicUsize,
    /// The descriptor of the mapped file (fstat'ed by the handler); -1 if
    /// unknown.
    fd: AtomicU32,
    name_len: AtomicUsize,
    name: [AtomicU64; NAME_WORDS],
}

const FREE: u32 = 0;
const WRITING: u32 = 1;
const READY: u32 = 2;
const PHASE: u32 = 3;

impl Entry {
    const fn new() -> Entry {
        Entry {
            state: AtomicU32::new(FREE),
            start: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            fd: AtomicU32::new(u32::MAX),
            name_len: AtomicUsize::new(0),
            name: [const { AtomicU64::new(0) }; NAME_WORDS],
        }
    }
}

static TABLE: [Entry; SLOTS] = [const { Entry::new() }; SLOTS];

/// A mapping's entry in the table, removed on drop. Drop it before the
/// mapping is unmapped and the descriptor closed.
#[derive(Debug)]
pub(crate) struct Registration {
    index: usize,
}

/// Enters `[start, start + len)`, mapped from `fd`, under `name` (`None`
/// for an anonymous memfd). `None` when the table is full.
pub(crate) fn register(
    start: *const u8,
    len: usize,
    fd: i32,
    name: Option<&str>,
) -> Option<Registration> {
    for (index, entry) in TABLE.iter().enumerate() {
        // Relaxed: only a guess for the CAS below.
        let state = entry.state.load(Ordering::Relaxed);
        if state & PHASE != FREE {
            continue;
        }
        let writing = (state & !PHASE).wrapping_add(4) | WRITING;
        // Acquire: pairs with the Release store of FREE by the last
        // unregister, so its writes are not reordered after ours.
        if entry
            .state
            .compare_exchange(state, writing, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        // Relaxed: published by the Release store of READY below.
        entry.start.store(start as usize, Ordering::Relaxed);
        entry.len.store(len, Ordering::Relaxed);
        entry.fd.store(fd as u32, Ordering::Relaxed);
        let bytes = name.map_or(&[][..], str::as_bytes);
        let bytes = &bytes[..bytes.len().min(NAME_WORDS * 8)];
        entry.name_len.store(bytes.len(), Ordering::Relaxed);
        for (word, chunk) in entry.name.iter().zip(bytes.chunks(8)) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            word.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        // Release: pairs with the handler's Acquire load of the state; the
        // fields above are visible to a handler that sees READY.
        entry
            .state
            .store((writing & !PHASE) | READY, Ordering::Release);
        return Some(Registration { index });
    }
    None
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Some(entry) = TABLE.get(self.index) else {
            return;
        };
        // Relaxed: only this registration writes the entry while it is
        // READY.
        let state = entry.state.load(Ordering::Relaxed);
        let generation = state & !PHASE;
        // Relaxed: a handler that read the fields before this store sees
        // the state change on its re-check (it loads after an Acquire
        // fence) and ignores them.
        entry.state.store(generation | WRITING, Ordering::Relaxed);
        entry.len.store(0, Ordering::Relaxed);
        // Release: pairs with the next register's Acquire CAS.
        entry.state.store(generation | FREE, Ordering::Release);
    }
}

/// The action that was installed before ours, for faults outside regions.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

/// Installs, once per process (later calls do nothing and return `Ok`), a
/// SIGBUS handler that reports a fault inside a region mapping in one line
/// instead of a bare "Bus error".
///
/// A region backed by a file under `/dev/shm`
/// ([`RegionBuilder::shm_file`](super::RegionBuilder::shm_file)) can be
/// truncated by any process of its user; the next access to a page past
/// the new end raises SIGBUS in every process that maps it (a memfd, the
/// other forms, is sealed against that). Nothing can make that access
/// succeed, but the process can say why it dies. The handler looks the
/// faulting address up in a table of this process's mappings of `/dev/shm`
/// regions (every such handle enters its mapping when it maps, up to 128 at
/// once; a handle that finds the table full is not covered) and, if the
/// address lies in one, writes for example
///
/// ```text
/// polycephaly: region "jobs" was truncated by another process (SIGBUS at offset 8192 of 16384; the file now has 4096 bytes)
/// ```
///
/// (or, when the file still covers the offset, that no page could be
/// supplied: a full `/dev/shm`), restores the default action and returns:
/// the access faults again and the process ends killed by SIGBUS as it would
/// have, with a core dump where those are enabled; its parent sees that
/// status. Any other SIGBUS goes to the action that was installed before
/// (or the default), so other users of the signal are unaffected. The
/// handler does only async-signal-safe work (atomic loads of a static
/// table, `fstat`, `write`, `sigaction`; no allocation, no lock).
///
/// Install it early, from `main`, before threads that might fault start; a
/// handler installed later by someone else replaces ours unless it chains
/// to it. A program that uses no `/dev/shm` region needs none of this.
///
/// ```
/// polycephaly::region::install_sigbus_handler()?;
/// polycephaly::region::install_sigbus_handler()?; // once is enough; harmless
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
/// `sigaction` failed (it does not, for SIGBUS, on Linux).
pub fn install_sigbus_handler() -> std::io::Result<()> {
    static INSTALL: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut installed = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if *installed {
        return Ok(());
    }
    // SAFETY: an all-zero sigaction is a valid value (SIG_DFL, empty mask,
    // no flags), to receive into.
    let mut previous: libc::sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: a null new action only reads the current one into
    // `previous`, a valid struct we own.
    if unsafe { libc::sigaction(libc::SIGBUS, core::ptr::null(), &mut previous) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Set before our handler can run, which reads it.
    let _ = PREVIOUS.set(previous);
    // SAFETY: as above; every field is then set or left empty.
    let mut action: libc::sigaction = unsafe { core::mem::zeroed() };
    action.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    // SAFETY: sigemptyset on a sigset_t we own.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `action` is a valid sigaction we own; its handler is an
    // `extern "C"` function of the SA_SIGINFO signature that does only
    // async-signal-safe work (see `on_sigbus`).
    if unsafe { libc::sigaction(libc::SIGBUS, &action, core::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    *installed = true;
    Ok(())
}

/// The handler. Async-signal-safe: atomic loads, `fstat`, `write`,
/// `sigaction`, a call to the previous handler; nothing allocates or locks.
extern "C" fn on_sigbus(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t; si_code
    // is always readable, si_addr is meaningful for a fault (si_code > 0,
    // the kernel's own codes), which is the only case we read it in.
    let addr = unsafe {
        match info.as_ref() {
            Some(info) if info.si_code > 0 => Some(info.si_addr() as usize),
            _ => None,
        }
    };
    if let Some(addr) = addr
        && let Some(found) = lookup(addr)
    {
        report(&found);
        // Default action, then return: the access faults again and the
        // process ends by SIGBUS as it would have without us.
        reset_to_default();
        return;
    }
    chain(signal, info, context);
}

/// What the handler learned about the mapping that faulted.
struct Found {
    offset: usize,
    len: usize,
    fd: i32,
    name: [u8; NAME_WORDS * 8],
    name_len: usize,
}

/// The READY entry whose range holds `addr`, read consistently.
fn lookup(addr: usize) -> Option<Found> {
    for entry in &TABLE {
        // Acquire: pairs with the Release store of READY in `register`.
        let state = entry.state.load(Ordering::Acquire);
        if state & PHASE != READY {
            continue;
        }
        // Relaxed: ordered by the Acquire load above; checked by the
        // re-load below.
        let start = entry.start.load(Ordering::Relaxed);
        let len = entry.len.load(Ordering::Relaxed);
        if addr < start || addr - start >= len {
            continue;
        }
        let fd = entry.fd.load(Ordering::Relaxed) as i32;
        let name_len = entry.name_len.load(Ordering::Relaxed).min(NAME_WORDS * 8);
        let mut name = [0u8; NAME_WORDS * 8];
        for (chunk, word) in name.chunks_mut(8).zip(&entry.name) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        // Acquire fence: keeps the re-load after the reads above; an
        // unchanged state means they all belong to this registration.
        fence(Ordering::Acquire);
        if entry.state.load(Ordering::Relaxed) != state {
            continue;
        }
        return Some(Found {
            offset: addr - start,
            len,
            fd,
            name,
            name_len,
        });
    }
    None
}

/// A line assembled on the stack.
struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    fn push(&mut self, bytes: &[u8]) {
        let room = self.buf.len() - self.len;
        let n = bytes.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn number(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

/// Writes the one-line report to stderr.
fn report(found: &Found) {
    // SAFETY: an all-zero stat is a valid value to receive into; fstat is
    // async-signal-safe and fails cleanly (EBADF) on a closed descriptor.
    let size = unsafe {
        let mut st: libc::stat = core::mem::zeroed();
        (libc::fstat(found.fd, &mut st) == 0).then_some(st.st_size)
    };
    let mut line = Line {
        buf: [0; 512],
        len: 0,
    };
    line.push(b"polycephaly: ");
    if found.name_len > 0 {
        line.push(b"region \"");
        line.push(&found.name[..found.name_len]);
        line.push(b"\"");
    } else {
        line.push(b"a region");
    }
    let offset = found.offset as u64;
    match size {
        Some(size) if u64::try_from(size).is_ok_and(|s| s <= offset) => {
            line.push(b" was truncated by another process (SIGBUS at offset ");
            line.number(offset);
            line.push(b" of ");
            line.number(found.len as u64);
            line.push(b"; the file now has ");
            line.number(u64::try_from(size).unwrap_or(0));
            line.push(b" bytes)\n");
        }
        _ => {
            line.push(b": no page could be supplied at offset ");
            line.number(offset);
            line.push(b" of ");
            line.number(found.len as u64);
            line.push(b" (SIGBUS; is /dev/shm full?)\n");
        }
    }
    // SAFETY: write(2) of our own stack buffer, async-signal-safe; a short
    // or failed write only loses the message.
    let _ = unsafe { libc::write(2, line.buf.as_ptr().cast(), line.len) };
}

/// SIG_DFL for SIGBUS.
fn reset_to_default() {
    // SAFETY: a zeroed sigaction is SIG_DFL with an empty mask; sigaction
    // is async-signal-safe.
    unsafe {
        let action: libc::sigaction = core::mem::zeroed();
        libc::sigaction(libc::SIGBUS, &action, core::ptr::null_mut());
    }
}

/// Hands a SIGBUS that is not ours to the action installed before us.
fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    let Some(previous) = PREVIOUS.get() else {
        reset_to_default();
        return;
    };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // Restore it and let it act: a fault repeats when we return; a
        // signal sent by kill(2) is raised again, and delivered with the
        // restored action once we return.
        // SAFETY: `previous` is the valid action the kernel gave us;
        // sigaction and raise are async-signal-safe.
        unsafe {
            libc::sigaction(libc::SIGBUS, previous, core::ptr::null_mut());
            if info.as_ref().is_none_or(|i| i.si_code <= 0) {
                libc::raise(signal);
            }
        }
        return;
    }
    if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous action was installed with SA_SIGINFO, so its
        // handler has this signature and expects these arguments, which
        // are the kernel's.
        unsafe {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void) =
                core::mem::transmute(handler);
            f(signal, info, context);
        }
    } else {
        // SAFETY: without SA_SIGINFO the handler takes the signal number
        // alone.
        unsafe {
            let f: extern "C" fn(libc::c_int) = core::mem::transmute(handler);
            f(signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_a_registered_range_and_forgets_it_on_drop() {
        let buf = [0u8; 64];
        let start = buf.as_ptr();
        let reg = register(start, 64, 2, Some("jobs")).unwrap();
        let found = lookup(start as usize + 10).unwrap();
        assert_eq!(found.offset, 10);
        assert_eq!(found.len, 64);
        assert_eq!(&found.name[..found.name_len], b"jobs");
        assert!(lookup(start as usize + 64).is_none());
        drop(reg);
        assert!(lookup(start as usize + 10).is_none());
    }

    #[test]
    fn numbers_format() {
        let mut line = Line {
            buf: [0; 512],
            len: 0,
        };
        line.number(0);
        line.push(b" ");
        line.number(18_446_744_073_709_551_615);
        assert_eq!(&line.buf[..line.len], b"0 18446744073709551615");
    }
}
