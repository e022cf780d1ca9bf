//! The one place where atomics come from: std's in a normal build, loom's
//! under `--cfg loom`.
//!
//! Everything else in the crate takes its atomics from here, so that a loom
//! model exercises the same code as a real build (clippy's `disallowed-types`
//! in `clippy.toml` forbids the raw std types elsewhere).
//!
//! In a normal build the types are `#[repr(transparent)]` wrappers over std's
//! atomics: they have the layout of the plain integer, are valid for any bit
//! pattern (so they can be laid over zeroed or hostile shared memory) and
//! dereference to the std type for all of its methods.

#![allow(clippy::disallowed_types)]

#[cfg(not(loom))]
mod real {
    use core::ops::Deref;

    macro_rules! atomic_wrapper {
        ($name:ident, $std:ty, $int:ty) => {
            /// A shared-memory atomic: the std type in a normal build, loom's under loom.
            #[repr(transparent)]
            #[derive(Debug, Default)]
            pub struct $name($std);

            impl $name {
                /// A new atomic holding `v`.
                pub const fn new(v: $int) -> Self {
                    Self(<$std>::new(v))
                }
            }

            impl Deref for $name {
                type Target = $std;
                #[inline(always)]
                fn deref(&self) -> &$std {
                    &self.0
                }
            }
        };
    }

    atomic_wrapper!(AtomicU32, std::sync::atomic::AtomicU32, u32);
    atomic_wrapper!(AtomicU64, std::sync::atomic::AtomicU64, u64);
    atomic_wrapper!(AtomicUsize, std::sync::atomic::AtomicUsize, usize);
    atomic_wrapper!(AtomicBool, std::sync::atomic::AtomicBool, bool);

    // The wrappers must be layout-identical to the integers they stand for:
    // shared structs are laid over mapped bytes.
    const _: () = assert!(size_of::<AtomicU32>() == 4 && align_of::<AtomicU32>() == 4);
    const _: () = assert!(size_of::<AtomicU64>() == 8 && align_of::<AtomicU64>() == 8);

    pub use std::hint::spin_loop;
    pub use std::sync::atomic::{Ordering, fence};
}

#[cfg(not(loom))]
pub use real::*;

/// A function `$name(ptr)` that gives the CPU one cache-line hint
/// instruction about the line holding `ptr`: no effect on memory, registers,
/// flags or ordering, never faults, whatever the address; a no-op off
/// x86-64, under loom and under Miri (which runs no assembly).
macro_rules! line_hint {
    ($(#[$doc:meta])* $name:ident, $insn:literal) => {
        $(#[$doc])*
        #[inline(always)]
        pub fn $name(ptr: *const u8) {
            #[cfg(all(not(loom), not(miri), target_arch = "x86_64"))]
            // SAFETY: the instruction is a hint (see the macro): it reads
            // and writes nothing and cannot fault, whatever `ptr` is.
            unsafe {
                core::arch::asm!(
                    concat!($insn, " [{0}]"),
                    in(reg) ptr,
                    options(nostack, preserves_flags, readonly)
                );
            }
            #[cfg(any(loom, miri, not(target_arch = "x86_64")))]
            let _ = ptr;
        }
    };
}

line_hint!(
    /// Asks the CPU to fetch the cache line holding `ptr` for writing
    /// (`prefetchw`), so that a store there later finds the line local
    /// instead of stalling on another core's copy. (x86-64 CPUs without the
    /// PRFCHW feature decode it as a NOP; `_mm_prefetch` with `_MM_HINT_ET0`
    /// would need the feature enabled at compile time, hence the asm.)
    prefetch_write,
    "prefetchw"
);

line_hint!(
    /// Asks the CPU to fetch the cache line holding `ptr` for reading
    /// (`prefetcht0`), so that a load there later finds it close instead of
    /// waiting for it. For lines a consumer will read soon and that are
    /// published, so no longer written: fetching a line its producer is
    /// still writing takes it away from the producer.
    prefetch_read,
    "prefetcht0"
);

line_hint!(
    /// Asks the CPU to move the cache line holding `ptr` out of this core's
    /// private caches into the shared one (`cldemote`), so that another
    /// core's next read of it is served there instead of by a snoop into
    /// this core. Its encoding lies in the reserved-NOP space, so CPUs
    /// without the CLDEMOTE feature execute it as a NOP.
    demote,
    "cldemote"
);

#[cfg(all(not(loom), not(miri), target_arch = "x86_64"))]
std::thread_local! {
    /// The line to [`demote`] when this thread next waits (0: none).
    static DEMOTE_BEFORE_WAITING: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

/// Remembers the line of `ptr`, to [`demote`] when this thread next begins
/// a wait ([`demote_pending`]), in place of the one remembered before. For
/// a line a producer may still write: demoting it at once would make its
/// next write fetch it back (measured: an SPSC stream of 72-byte frames ran
/// at 2-5 M msg/s so, against 10-16 M without demoting), but a thread that
/// stops to wait (for a reply, for
/// room) will not write it soon, and the peer that reads it meanwhile
/// finds it in the shared cache.
#[inline(always)]
pub fn demote_before_waiting(ptr: *const u8) {
    #[cfg(all(not(loom), not(miri), target_arch = "x86_64"))]
    DEMOTE_BEFORE_WAITING.with(|p| p.set(ptr as usize));
    #[cfg(any(loom, miri, not(target_arch = "x86_64")))]
    let _ = ptr;
}

#[cfg(all(not(loom), not(miri), target_arch = "x86_64"))]
std::thread_local! {
    /// The CPU this thread ran on when it last began a wait, plus one
    /// (0: not known).
    static CPU_AT_WAIT: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
}

/// Reads the CPU this thread runs on now (the vDSO's `getcpu`, about 2 ns),
/// remembers it for [`cpu_at_wait`], and returns it plus one. 0 (not known)
/// off x86-64, under loom and under Miri. Every doorbell wait calls it.
#[inline]
pub fn note_cpu() -> u32 {
    #[cfg(all(not(loom), not(miri), target_arch = "x86_64"))]
    {
        // Saturating: a CPU number near u32::MAX only loses the hint.
        let cpu = u32::try_from(rustix::thread::sched_getcpu()).map_or(0, |c| c.saturating_add(1));
        CPU_AT_WAIT.with(|c| c.set(cpu));
        cpu
    }
    #[cfg(any(loom, miri, not(target_arch = "x86_64")))]
    0
}

/// The CPU this thread ran on when it last began a wait ([`note_cpu`]),
/// plus one; 0 if not known. A thread that waits on one CPU usually runs
/// on it afterwards: the scheduler moves a thread rarely.
#[inline(always)]
pub fn cpu_at_wait() -> u32 {
    #[cfg(all(not(loom), not(miri), target_arch = "x86_64"))]
    return CPU_AT_WAIT.with(core::cell::Cell::get);
    #[cfg(any(loom, miri, not(target_arch = "x86_64")))]
    0
}

#[cfg(all(not(loom), not(miri), target_arch = "x86_64"))]
std::thread_local! {
    /// Waits this thread began (wrapping): see [`waits_begun`].
    static WAITS_BEGUN: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
}

/// How many waits this thread has begun (wrapping): doorbell waits
/// ([`demote_pending`] counts them) and reads that found a ring empty
/// ([`note_wait`]). A producer that publishes again and again with no wait
/// in between is streaming (see the SPSC producer's `publish`); one that
/// waits for a reply between two publishes, by blocking or by polling,
/// is not.
///
/// Always 0 off x86-64, under loom and under Miri, where every SPSC
/// producer counts as streaming from its fifth publish on; the demotes and
/// prefetches that this decides between are no-ops there.
#[inline(always)]
pub fn waits_begun() -> u32 {
    #[cfg(all(not(loom), not(miri), target_arch = "x86_64"))]
    return WAITS_BEGUN.with(core::cell::Cell::get);
    #[cfg(any(loom, miri, not(target_arch = "x86_64")))]
    0
}

/// Counts a wait this thread began ([`waits_begun`]): called by every
/// doorbell wait, and by a ring consumer that found nothing to read (a
/// thread polling for a reply waits too).
#[inline(always)]
pub fn note_wait() {
    #[cfg(all(not(loom), not(miri), target_arch = "x86_64"))]
    WAITS_BEGUN.with(|w| w.set(w.get().wrapping_add(1)));
}

/// Demotes the line [`demote_before_waiting`] remembered, if any, and
/// counts the wait ([`waits_begun`]); every doorbell wait calls it before
/// it spins.
#[inline(always)]
pub fn demote_pending() {
    note_wait();
    #[cfg(all(not(loom), not(miri), target_arch = "x86_64"))]
    DEMOTE_BEFORE_WAITING.with(|p| {
        let line = p.replace(0);
        if line != 0 {
            demote(line as *const u8);
        }
    });
}

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

/// Under loom a spin is a yield, so that the model can schedule the peer.
#[cfg(loom)]
pub fn spin_loop() {
    loom::thread::yield_now();
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn wrappers_reach_the_std_methods() {
        let a = AtomicU64::new(5);
        assert_eq!(a.fetch_add(2, Ordering::Relaxed), 5);
        assert_eq!(a.load(Ordering::Relaxed), 7);
    }
}
