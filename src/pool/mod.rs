//! The drone pool: a master hands work to drone processes, one per CPU,
//! and survives them dying.
//!
//! The drones are this program started again: `main` begins with
//! [`serve`], which returns at once in the master and never returns in a
//! drone. Tasks are plain functions in `static`s ([`Task`], [`Task2`],
//! [`SliceTask`]) listed in a [`Registry`]; the master calls them through
//! those statics, so what it hands a task is what the task takes.
//!
//! ```no_run
//! use polycephaly::pool::{Pool, Registry, Task2};
//!
//! static ADD: Task2<u64, u64, u64> = Task2::new("add", |a, b| a + b);
//! static TASKS: Registry = Registry::new(&[&ADD]);
//!
//! fn main() -> Result<(), polycephaly::pool::PoolError> {
//!     polycephaly::pool::serve(&TASKS);
//!     let drones = Pool::builder().drones(4).build()?;
//!     assert_eq!(drones.zip_map(&ADD, &[1, 2, 3, 4, 5], &[5, 4, 3, 2, 1])?, [6, 6, 6, 6, 6]);
//!     Ok(())
//! }
//! ```
//!
//! # How work moves
//!
//! One shared region (a memfd: nothing in `/dev/shm`, nothing left by any
//! crash) holds a task ring per drone, one results ring, and an arena.
//! A call's items are cut into chunks; small inputs travel in the task
//! frame, large ones are written once into the master's arena lane and
//! read in place by the drones (a [`map_chunks`](Pool::map_chunks) over a
//! big array writes it once for all its chunks; a
//! [`map_chunks_from_fn`](Pool::map_chunks_from_fn) builds each piece in a
//! block of its own and hands it out at once, so the drones work while the
//! master builds the rest). Each drone has up to two
//! chunks in its ring, so a busy drone takes its next one without a system
//! call; an idle drone sleeps on a futex.
//!
//! # When a drone dies
//!
//! A keeper thread starts the drones, watches them through pidfds and
//! reaps them. A drone killed by a signal is noticed at once: its chunks
//! run again on the other drones, each result is delivered once, and a new
//! drone takes its place. The item it was running is charged a try; an
//! item that kills `retries + 1` drones fails with
//! [`TaskError::Crashed`]. A panicking task fails with
//! [`TaskError::Panicked`] and the drone lives on. With a
//! [`task_timeout`](PoolBuilder::task_timeout), a drone stuck in a task is
//! killed and replaced. When the master dies, its drones die with it (the
//! parent-death signal, armed in each drone before it runs any of our
//! code, and a look at the parent on every idle quarter second).

pub(crate) mod drone;
mod error;
mod keeper;
pub(crate) mod master;
pub(crate) mod task;
pub(crate) mod wire;

use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use bytemuck::Pod;

use crate::arena::{ArenaReader, ArenaSpec, ArenaWriter};
use crate::region::Region;
use crate::region::layout::MAX_PEERS;
use crate::ring::{mpsc, spsc};
use crate::sync::clock::Instant;

use self::master::{Body, Config, Core, Input, Part, Parts};
pub use drone::serve;
pub use error::{PoolError, TaskError};
#[doc(hidden)]
pub use task::Erased;
pub use task::{AnyTask, Registry, SliceTask, Task, Task2};

/// The most drones a pool holds (each is a peer of the pool's region, and
/// a producer of its results ring).
pub const MAX_DRONES: usize = {
    let peers = MAX_PEERS as usize - 2;
    let producers = mpsc::MAX_PRODUCERS - 2;
    if peers < producers { peers } else { producers }
};

/// Settings for a [`Pool`]; [`build`](Self::build) starts it.
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    drones: Option<usize>,
    retries: u32,
    task_timeout: Option<Duration>,
    start_timeout: Duration,
    ring_len: usize,
    arena_lane: usize,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        Self {
            drones: None,
            retries: 3,
            task_timeout: None,
            start_timeout: Duration::from_secs(10),
            ring_len: 256 << 10,
            arena_lane: 32 << 20,
        }
    }
}

impl PoolBuilder {
    /// `n` drones (default: the CPUs this process may run on).
    pub fn drones(mut self, n: usize) -> Self {
        self.drones = Some(n);
        self
    }

    /// How many times an item that killed its drone runs again before it
    /// fails with [`TaskError::Crashed`] (default 3).
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Kills and replaces a drone that spends longer than `timeout` in one
    /// item (default: no limit). The item is charged a try, as a crash.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// How long `build` waits for the drones to start (default 10 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Bytes of each drone's task ring (default 256 KiB; a power of two).
    /// Inputs up to a quarter of it travel in the ring, larger ones
    /// through the arena.
    pub fn ring_len(mut self, bytes: usize) -> Self {
        self.ring_len = bytes;
        self
    }

    /// Bytes of each arena lane (default 32 MiB): the master's holds the
    /// large inputs of the calls in flight, each drone's its large outputs.
    /// Memory is only used as it is touched.
    pub fn arena_lane(mut self, bytes: usize) -> Self {
        self.arena_lane = bytes;
        self
    }

    /// Starts the drones and waits until each has said hello.
    ///
    /// # Errors
    /// [`PoolError::NotServing`] if `main` did not call [`serve`];
    /// [`PoolError::DuplicateTask`]; [`PoolError::DroneCount`];
    /// [`PoolError::DroneStart`] if a drone could not start (with why:
    /// its exit status, or that it reached `build` without `serve`);
    /// [`PoolError::StartTimeout`]; region and arena errors.
    pub fn build(self) -> Result<Pool, PoolError> {
        if drone::is_drone_process() {
            // A drone that got here did not call `serve` first: running on
            // would build pools of pools.
            eprintln!(
                "polycephaly: this drone reached Pool::build without calling polycephaly::pool::serve first; exiting"
            );
            std::process::exit(drone::EXIT_NO_SERVE);
        }
        let registry = drone::registry().ok_or(PoolError::NotServing)?;
        if let Some(name) = registry.duplicate() {
            return Err(PoolError::DuplicateTask { name });
        }
        let n = match self.drones {
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if n == 0 || n > MAX_DRONES {
            return Err(PoolError::DroneCount {
                asked: n,
                max: MAX_DRONES,
            });
        }
        let size = |e: &dyn std::fmt::Display| PoolError::Size(e.to_string());
        let arena = ArenaSpec::new(n as u16 + 1, self.arena_lane);
        let results_len = self
            .ring_len
            .checked_mul(n)
            .map_or(mpsc::MAX_CAPACITY, usize::next_power_of_two)
            .min(mpsc::MAX_CAPACITY);
        let mut builder = Region::builder()
            .memfd()
            .section(wire::CONTROL_KIND, wire::control_len(n))
            .with(mpsc::Spec::new(results_len).map_err(|e| size(&e))?)
            .with(arena);
        let task_spec = spsc::Spec::new(self.ring_len).map_err(|e| size(&e))?;
        for _ in 0..n {
            builder = builder.with(task_spec);
        }
        let region = builder.build()?;
        let control = wire::Control::format(
            &region,
            wire::HeaderValues {
                slots: n,
                fingerprint: registry.fingerprint(),
                master_pid: std::process::id(),
                master_peer: region.peer_id().to_raw(),
            },
        )?;
        arena.format(&region, wire::ARENA)?;
        let results = mpsc::Consumer::attach(&region, wire::RESULTS)?;
        let notices = mpsc::Producer::attach(&region, wire::RESULTS)?;
        let writer = ArenaWriter::attach_lane(&region, wire::ARENA, 0)?;
        let reader = ArenaReader::attach(&region, wire::ARENA)?;
        let txs = (0..n)
            .map(|i| spsc::Producer::attach(&region, wire::task_ring(i)))
            .collect::<Result<Vec<_>, _>>()?;
        let events = Arc::new(Mutex::new(Vec::new()));
        let keeper = {
            let events = Arc::clone(&events);
            let mut notices = notices;
            keeper::KeeperHandle::start(region.clone(), move |e| {
                events.lock().unwrap_or_else(|e| e.into_inner()).push(e);
                // Wake the master if it sleeps on the ring; a full ring
                // wakes it anyway.
                if let Ok(mut c) = notices.try_claim(0) {
                    c.set_tag(wire::TAG_NOTICE);
                    let _ = c.commit();
                }
            })?
        };
        let cfg = Config {
            drones: n,
            retries: self.retries,
            task_timeout: self.task_timeout,
            start_timeout: self.start_timeout,
            depth: DEPTH,
        };
        let mut core = Core::new(Parts {
            cfg,
            registry,
            region,
            control,
            results,
            writer,
            reader,
            txs,
            keeper,
            events,
        });
        core.start_all()?;
        Ok(Pool {
            core: Mutex::new(core),
            turn: Condvar::new(),
            registry,
            drones: n,
        })
    }
}

/// A pool of drone processes. See the [module](self) for how it works.
///
/// All calls take `&self`: a pool can be shared by threads (one of them at
/// a time drives it; the others wait for it). It is `UnwindSafe` and
/// `RefUnwindSafe`: a panic that unwinds out of a call (a builder's, say)
/// leaves the pool usable, its bookkeeping as it was between two steps.
#[derive(Debug)]
pub struct Pool {
    core: Mutex<Core>,
    /// Signalled by the thread that slept on the results ring when it has
    /// handled what it read: the others look at their calls again.
    turn: Condvar,
    registry: &'static Registry,
    drones: usize,
}

/// What a pool has done so far ([`Pool::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Drones that said hello: the first ones and replacements.
    pub drones_started: u64,
    /// Drones that died while serving, or that the pool killed (a task
    /// time-out, a malformed answer).
    pub drones_lost: u64,
    /// Chunks handed to drones (runs again after a death, and copies to
    /// idle drones, included).
    pub chunks: u64,
    /// Items whose results were taken.
    pub items: u64,
    /// Bytes of task and result frames through the rings.
    pub bytes_in_rings: u64,
    /// Bytes of inputs and outputs through the arena (read in place).
    pub bytes_in_arena: u64,
    /// Time the drones spent running tasks, summed over drones.
    pub busy: Duration,
    /// Answers dropped because the chunk's result was already taken (from
    /// a copy sent to an idle drone, or a run before a death) or its call
    /// had ended (a dropped `Pending` or `Stream`).
    pub late_answers: u64,
}

/// Chunks each drone has in its ring at most (one it runs, one waiting).
const DEPTH: usize = 2;

/// How many chunks a call is cut into, per drone, at least: enough that a
/// drone that finishes early takes more.
const CHUNKS_PER_DRONE: usize = 4;

/// How long a call that builds an arena block (`submit_slice`,
/// `map_chunks`, `map_chunks_from_fn`, a stream's large input, ...) waits
/// for a full lane that no call of the pool accounts for (blocks still
/// read by a drone whose copy of a chunk was answered already, or by one
/// that just died) before it gives up with [`PoolError::ArenaFull`].
const ARENA_GRACE: Duration = Duration::from_secs(1);

/// Whether a call that found the lane full with no call accounting for it
/// still waits: within [`ARENA_GRACE`] of `since`, which is set at the
/// first such finding (and cleared by the caller once it gets room, or
/// waits for a running call).
fn within_grace(since: &mut Option<Instant>) -> bool {
    since.get_or_insert_with(Instant::now).elapsed() < ARENA_GRACE
}

impl Pool {
    /// A builder with the defaults.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// A pool of one drone per CPU, with the defaults.
    ///
    /// # Errors
    /// As [`PoolBuilder::build`].
    pub fn new() -> Result<Self, PoolError> {
        Self::builder().build()
    }

    /// How many drones.
    pub fn drones(&self) -> usize {
        self.drones
    }

    /// What the pool has done so far.
    ///
    /// ```no_run
    /// # use polycephaly::pool::Pool;
    /// # let pool = Pool::new()?;
    /// let before = pool.stats();
    /// // ... calls ...
    /// let after = pool.stats();
    /// println!("{} items, {:?} of drone time", after.items - before.items, after.busy - before.busy);
    /// # Ok::<(), polycephaly::pool::PoolError>(())
    /// ```
    pub fn stats(&self) -> PoolStats {
        self.lock().stats()
    }

    /// The drones' process ids, by slot (0 for a slot whose drone is being
    /// replaced).
    pub fn pids(&self) -> Vec<u32> {
        self.lock().pids()
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while driving the pool leaves its bookkeeping as it was
        // between two steps: usable.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drives the pool until `done` says so, or `deadline` passes
    /// ([`PoolError::Timeout`]), or no drone is left. One thread at a time
    /// sleeps on the results ring, without the lock, so that other threads
    /// can hand out work meanwhile; the others wait for its turn to end.
    fn drive<'a>(
        &'a self,
        mut core: MutexGuard<'a, Core>,
        deadline: Option<Instant>,
        mut done: impl FnMut(&mut Core) -> bool,
    ) -> Result<MutexGuard<'a, Core>, PoolError> {
        loop {
            core.pump();
            if done(&mut core) {
                return Ok(core);
            }
            if let Some(e) = core.fatal() {
                return Err(e);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(PoolError::Timeout);
            }
            let until = core.wake_by(deadline);
            match core.lend_results() {
                Some(mut rx) => {
                    drop(core);
                    let got = master::read_msg(&mut rx, until);
                    core = self.lock();
                    core.return_results(rx, got);
                    self.turn.notify_all();
                }
                None => {
                    let nap = until.map_or(Duration::from_millis(100), |u| {
                        u.saturating_duration_since(Instant::now())
                    });
                    core = self
                        .turn
                        .wait_timeout(core, nap.min(Duration::from_millis(100)))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    /// Builds a block of `n` elements in the master's arena lane for job
    /// `job` with `init`: a block of its own (given back when its piece is
    /// resolved) if `own`, else one the job holds until it ends. When the
    /// lane is full it drives the pool until one of the job's items is
    /// resolved or a little while, and tries again: for as long as running
    /// calls hold room, and for [`ARENA_GRACE`] when no call accounts for
    /// the full lane (drones may still read blocks of chunks answered
    /// already); then it gives up with [`PoolError::ArenaFull`].
    fn build_in_arena<'a, T: Pod, F>(
        &'a self,
        mut core: MutexGuard<'a, Core>,
        job: u64,
        n: usize,
        own: bool,
        mut init: F,
    ) -> (
        MutexGuard<'a, Core>,
        Result<crate::arena::BlockHandle, PoolError>,
    )
    where
        F: for<'b> FnMut(crate::arena::UninitBlock<'b, T>) -> Option<crate::arena::BlockMut<'b, T>>,
    {
        let mut full_since: Option<Instant> = None;
        loop {
            match core.try_build_in_arena(job, n, own, &mut init) {
                Ok(Some(h)) => return (core, Ok(h)),
                Ok(None) => full_since = None,
                Err(PoolError::ArenaFull { .. }) if within_grace(&mut full_since) => {}
                Err(e) => return (core, Err(e)),
            }
            let before = core.job_remaining(job);
            let soon = Instant::now().checked_add(Duration::from_millis(10));
            core = match self.drive(core, soon, |c| c.job_remaining(job) < before) {
                Ok(core) => core,
                Err(PoolError::Timeout) => self.lock(),
                Err(e) => return (self.lock(), Err(e)),
            };
        }
    }

    /// Copies `data` into the master's arena lane for job `job` (see
    /// [`build_in_arena`](Self::build_in_arena)).
    fn put_in_arena<'a, T: Pod>(
        &'a self,
        core: MutexGuard<'a, Core>,
        job: u64,
        data: &[T],
    ) -> (
        MutexGuard<'a, Core>,
        Result<crate::arena::BlockHandle, PoolError>,
    ) {
        self.build_in_arena(core, job, data.len(), false, |b| {
            b.copy_from_slice(data).ok()
        })
    }

    /// Waits for every item of `job` and decodes the outputs in order.
    fn finish_all<O>(
        &self,
        core: MutexGuard<'_, Core>,
        job: u64,
        name: &'static str,
        decode: fn(&[u8]) -> Option<O>,
    ) -> Result<Vec<O>, PoolError> {
        let (mut core, waited) = match self.drive(core, None, |c| c.job_done(job)) {
            Ok(core) => (core, Ok(())),
            Err(e) => (self.lock(), Err(e)),
        };
        let mut parts = core.take_parts(job);
        core.end_job(job);
        drop(core);
        waited?;
        parts.sort_unstable_by_key(|p| p.first);
        let total = parts.iter().map(|p| p.count).sum();
        let mut out = Vec::with_capacity(total);
        for part in &parts {
            decode_part(part, name, decode, |_, r| {
                out.push(r?);
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// `task` on each item of `items`, in drones; the outputs in order.
    /// The items are cut into chunks handed out as drones ask for work.
    ///
    /// # Errors
    /// The first item that failed ([`PoolError::Task`] with its index),
    /// [`PoolError::UnknownTask`], [`PoolError::NoDrones`].
    pub fn map<I: Pod, O: 'static>(
        &self,
        task: &Task<I, O>,
        items: &[I],
    ) -> Result<Vec<O>, PoolError> {
        let index = self.registry.find(task)?;
        let mut core = self.lock();
        let job = chunked(
            &mut core,
            index,
            task.erased().out_fixed,
            items.len(),
            size_of::<I>(),
            |range| bytemuck::cast_slice(&items[range]).to_vec(),
        );
        self.finish_all(core, job, task.name(), task.decode_fn())
    }

    /// `task` on each pair `(a[i], b[i])`, in drones; the outputs in order.
    /// The seed's `drones do: [:a :b | a + b] with: ... with: ...`.
    ///
    /// # Errors
    /// [`PoolError::LengthMismatch`], and as [`map`](Self::map).
    pub fn zip_map<A: Pod, B: Pod, O: 'static>(
        &self,
        task: &Task2<A, B, O>,
        a: &[A],
        b: &[B],
    ) -> Result<Vec<O>, PoolError> {
        if a.len() != b.len() {
            return Err(PoolError::LengthMismatch {
                left: a.len(),
                right: b.len(),
            });
        }
        let index = self.registry.find(task)?;
        let mut core = self.lock();
        let per = size_of::<A>() + size_of::<B>();
        let job = chunked(
            &mut core,
            index,
            task.erased().out_fixed,
            a.len(),
            per,
            |range| {
                let mut v = bytemuck::cast_slice::<A, u8>(&a[range.clone()]).to_vec();
                v.extend_from_slice(bytemuck::cast_slice(&b[range]));
                v
            },
        );
        self.finish_all(core, job, task.name(), task.decode_fn())
    }

    /// `task` on each `chunk`-element piece of `data` (the last may be
    /// shorter), in drones; the outputs in order. A large `data` is written
    /// once into the arena and every drone reads its pieces in place.
    ///
    /// # Errors
    /// [`PoolError::TooLarge`] if `data` does not fit an arena lane,
    /// [`PoolError::ArenaFull`] as for [`submit_slice`](Self::submit_slice),
    /// and as [`map`](Self::map).
    pub fn map_chunks<T: Pod, O: 'static>(
        &self,
        task: &SliceTask<T, O>,
        data: &[T],
        chunk: usize,
    ) -> Result<Vec<O>, PoolError> {
        let index = self.registry.find(task)?;
        let chunk = chunk.max(1);
        let pieces = data.len().div_ceil(chunk);
        let mut core = self.lock();
        let job = core.new_job(pieces, task.erased().out_fixed);
        let handle = if size_of_val(data) > core.inline_max {
            let (mut back, put) = self.put_in_arena(core, job, data);
            match put {
                Ok(h) => {
                    core = back;
                    Some(h)
                }
                Err(e) => {
                    back.end_job(job);
                    return Err(e);
                }
            }
        } else {
            None
        };
        for p in 0..pieces {
            let range = p * chunk..((p + 1) * chunk).min(data.len());
            let input = match handle {
                Some(handle) => Input::Arena(wire::ArenaRef {
                    handle,
                    offset: (range.start * size_of::<T>()) as u64,
                    len: (range.len() * size_of::<T>()) as u64,
                }),
                None => Input::Frame(bytemuck::cast_slice(&data[range]).to_vec()),
            };
            core.add_chunk(job, index, p, 1, input);
        }
        self.finish_all(core, job, task.name(), task.decode_fn())
    }

    /// As [`map_chunks`](Self::map_chunks) over an array of `n` elements
    /// that `f` builds (element `i` is `f(i)`), piece by piece: each
    /// `chunk`-element piece (the last may be shorter) is built where the
    /// drones read it, in an arena block of its own (in the task frame when
    /// small), and handed out as soon as it is built, so that the drones
    /// work on the first pieces while the master builds the next. Each
    /// block is given back as soon as its piece's output is in: the array
    /// may be larger than the arena's lane. The outputs come in piece
    /// order.
    ///
    /// While `f` builds a piece that goes through the arena the pool is
    /// locked: `f` must not call it. If `f` panics, the call ends first
    /// (its pieces not handed out are dropped, every block is given back)
    /// and the pool stays usable.
    ///
    /// ```no_run
    /// # use polycephaly::pool::{Pool, SliceTask};
    /// static SUM: SliceTask<u64, u64> = SliceTask::new("sum", |xs| xs.iter().sum());
    /// # let pool = Pool::new()?;
    /// // 10^7 u64 (80 MB): the drones sum each piece of 32 Ki elements
    /// // while the next is built.
    /// let n = 10_000_000;
    /// let sums = pool.map_chunks_from_fn(&SUM, n, 1 << 15, |i| i as u64)?;
    /// assert_eq!(sums.len(), n.div_ceil(1 << 15));
    /// assert_eq!(sums.iter().sum::<u64>(), 9_999_999 * 10_000_000 / 2);
    /// # Ok::<(), polycephaly::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// [`PoolError::TooLarge`] if a piece does not fit an arena lane,
    /// [`PoolError::ArenaFull`] if calls whose results were not taken yet
    /// hold the lane (after a second's wait: drones may still be reading
    /// blocks of chunks answered already), and as [`map`](Self::map).
    ///
    /// # Panics
    /// When `f` panics: its panic goes on to the caller.
    pub fn map_chunks_from_fn<T: Pod, O: 'static>(
        &self,
        task: &SliceTask<T, O>,
        n: usize,
        chunk: usize,
        mut f: impl FnMut(usize) -> T,
    ) -> Result<Vec<O>, PoolError> {
        let index = self.registry.find(task)?;
        let chunk = chunk.max(1);
        let job = self
            .lock()
            .new_job(n.div_ceil(chunk), task.erased().out_fixed);
        // Unwind safety: a panic in `f` leaves the pool's bookkeeping
        // between two steps (see `lock`); the job is ended below, before
        // the panic goes on.
        let fed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.feed_pieces(job, index, n, chunk, &mut f)
        }));
        match fed {
            Ok(Ok(core)) => self.finish_all(core, job, task.name(), task.decode_fn()),
            Ok(Err(e)) => {
                self.lock().end_job(job);
                Err(e)
            }
            Err(panic) => {
                self.lock().end_job(job);
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// Builds the pieces of a [`map_chunks_from_fn`](Self::map_chunks_from_fn)
    /// call, job `job`, queueing each and pumping at once; returns the
    /// lock, for the wait.
    fn feed_pieces<T: Pod>(
        &self,
        job: u64,
        task: u32,
        n: usize,
        chunk: usize,
        f: &mut impl FnMut(usize) -> T,
    ) -> Result<MutexGuard<'_, Core>, PoolError> {
        let mut core = self.lock();
        let mut first = 0;
        let mut piece = 0;
        while first < n {
            let len = chunk.min(n - first);
            let bytes = len.saturating_mul(size_of::<T>());
            if bytes <= core.inline_max {
                // Built without the lock, straight into the frame's bytes.
                drop(core);
                let mut frame = Vec::with_capacity(bytes);
                for i in first..first + len {
                    frame.extend_from_slice(bytemuck::bytes_of(&f(i)));
                }
                core = self.lock();
                core.add_chunk(job, task, piece, 1, Input::Frame(frame));
            } else {
                let (back, built) = self.build_piece(core, job, first, len, f);
                core = back;
                let r = wire::ArenaRef {
                    handle: built?,
                    offset: 0,
                    len: bytes as u64,
                };
                core.add_owned_chunk(job, task, piece, r);
            }
            // Handed out now: an idle drone wakes and sums this piece
            // while we build the next.
            core.pump();
            first += len;
            piece += 1;
        }
        Ok(core)
    }

    /// Builds elements `first..first + len` (`f(i)` each) in a block of
    /// their own in the master's lane for job `job` (see
    /// [`build_in_arena`](Self::build_in_arena)).
    fn build_piece<'a, T: Pod>(
        &'a self,
        core: MutexGuard<'a, Core>,
        job: u64,
        first: usize,
        len: usize,
        f: &mut impl FnMut(usize) -> T,
    ) -> (
        MutexGuard<'a, Core>,
        Result<crate::arena::BlockHandle, PoolError>,
    ) {
        self.build_in_arena(core, job, len, true, |b| {
            Some(b.init_with(|i| f(first + i)))
        })
    }

    /// Hands `task` one input; wait on the returned handle for the output.
    ///
    /// # Errors
    /// [`PoolError::UnknownTask`], [`PoolError::NoDrones`].
    pub fn submit<I: Pod, O: 'static>(
        &self,
        task: &Task<I, O>,
        input: I,
    ) -> Result<Pending<'_, O>, PoolError> {
        let index = self.registry.find(task)?;
        let mut core = self.lock();
        let job = core.new_job(1, task.erased().out_fixed);
        core.add_chunk(
            job,
            index,
            0,
            1,
            Input::Frame(bytemuck::bytes_of(&input).to_vec()),
        );
        core.pump();
        Ok(Pending::new(self, job, task.name(), task.decode_fn()))
    }

    /// As [`submit`](Self::submit), for a task of two inputs.
    ///
    /// # Errors
    /// As [`submit`](Self::submit).
    pub fn submit2<A: Pod, B: Pod, O: 'static>(
        &self,
        task: &Task2<A, B, O>,
        a: A,
        b: B,
    ) -> Result<Pending<'_, O>, PoolError> {
        let index = self.registry.find(task)?;
        let mut core = self.lock();
        let job = core.new_job(1, task.erased().out_fixed);
        let mut bytes = bytemuck::bytes_of(&a).to_vec();
        bytes.extend_from_slice(bytemuck::bytes_of(&b));
        core.add_chunk(job, index, 0, 1, Input::Frame(bytes));
        core.pump();
        Ok(Pending::new(self, job, task.name(), task.decode_fn()))
    }

    /// Hands `task` the slice `data`: in the task frame when small, else
    /// written once into the arena and read in place by the drone.
    ///
    /// # Errors
    /// [`PoolError::TooLarge`] if `data` does not fit an arena lane,
    /// [`PoolError::ArenaFull`] if calls whose results were not taken yet
    /// hold the lane (after a second's wait: drones may still be reading
    /// blocks of chunks answered already), and as [`submit`](Self::submit).
    pub fn submit_slice<T: Pod, O: 'static>(
        &self,
        task: &SliceTask<T, O>,
        data: &[T],
    ) -> Result<Pending<'_, O>, PoolError> {
        let index = self.registry.find(task)?;
        let mut core = self.lock();
        let job = core.new_job(1, task.erased().out_fixed);
        let input = if size_of_val(data) > core.inline_max {
            let (mut back, put) = self.put_in_arena(core, job, data);
            match put {
                Ok(handle) => {
                    core = back;
                    Input::Arena(wire::ArenaRef {
                        handle,
                        offset: 0,
                        len: size_of_val(data) as u64,
                    })
                }
                Err(e) => {
                    back.end_job(job);
                    return Err(e);
                }
            }
        } else {
            Input::Frame(bytemuck::cast_slice(data).to_vec())
        };
        core.add_chunk(job, index, 0, 1, input);
        core.pump();
        Ok(Pending::new(self, job, task.name(), task.decode_fn()))
    }

    /// Hands `task` a slice of `n` elements built in place by `f` (element
    /// `i` is `f(i)`): a large one is built directly in the arena, where
    /// the drone reads it, so it is written once and never copied. While
    /// `f` builds a large slice the pool is locked: `f` must not call it.
    ///
    /// ```no_run
    /// # use polycephaly::pool::{Pool, SliceTask};
    /// static SUM: SliceTask<u64, u64> = SliceTask::new("sum", |xs| xs.iter().sum());
    /// # let pool = Pool::new()?;
    /// let sum = pool.submit_slice_from_fn(&SUM, 1_000_000, |i| i as u64)?.wait()?;
    /// assert_eq!(sum, 999_999 * 1_000_000 / 2);
    /// # Ok::<(), polycephaly::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// As [`submit_slice`](Self::submit_slice).
    pub fn submit_slice_from_fn<T: Pod, O: 'static>(
        &self,
        task: &SliceTask<T, O>,
        n: usize,
        mut f: impl FnMut(usize) -> T,
    ) -> Result<Pending<'_, O>, PoolError> {
        let index = self.registry.find(task)?;
        let bytes = n.saturating_mul(size_of::<T>());
        let mut core = self.lock();
        // Built before the call is recorded: if `f` panics, the block is
        // given back and nothing is left behind.
        let input = if bytes > core.inline_max {
            let (back, built) =
                self.build_in_arena(core, 0, n, false, |b| Some(b.init_with(&mut f)));
            core = back;
            let handle = built?;
            Input::Arena(wire::ArenaRef {
                handle,
                offset: 0,
                len: bytes as u64,
            })
        } else {
            drop(core);
            let v: Vec<T> = (0..n).map(&mut f).collect();
            core = self.lock();
            Input::Frame(bytemuck::cast_slice(&v).to_vec())
        };
        let job = core.new_job(1, task.erased().out_fixed);
        if let Input::Arena(r) = &input {
            core.adopt_block(job, r.handle);
        }
        core.add_chunk(job, index, 0, 1, input);
        core.pump();
        Ok(Pending::new(self, job, task.name(), task.decode_fn()))
    }

    /// `task` on each input, yielding `(index, output)` as the outputs
    /// come, in whatever order the drones finish them. Inputs are taken
    /// from the iterator as drones have room, so a long (or endless)
    /// iterator is fine.
    ///
    /// ```no_run
    /// # use polycephaly::pool::{Pool, Registry, Task};
    /// # static SQUARE: Task<u64, u64> = Task::new("square", |x| x * x);
    /// # let pool = Pool::new()?;
    /// let mut total = 0;
    /// for result in pool.stream(&SQUARE, 0..1000u64)? {
    ///     let (index, square) = result?;
    ///     assert_eq!(square, (index as u64).pow(2));
    ///     total += square;
    /// }
    /// # Ok::<(), polycephaly::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// [`PoolError::UnknownTask`] at once; then each item yields its own
    /// result, [`PoolError::Task`] for a failed one; a pool-level error
    /// ([`PoolError::NoDrones`]) ends the stream.
    pub fn stream<'p, I: Pod, O: 'static, It>(
        &'p self,
        task: &Task<I, O>,
        inputs: It,
    ) -> Result<Stream<'p, O>, PoolError>
    where
        It: IntoIterator<Item = I>,
        It::IntoIter: 'p,
    {
        let index = self.registry.find(task)?;
        let mut inputs = inputs.into_iter();
        let feed = Box::new(move || inputs.next().map(|i| bytemuck::bytes_of(&i).to_vec()));
        Ok(Stream::new(
            self,
            index,
            task.name(),
            task.erased().out_fixed,
            task.decode_fn(),
            feed,
        ))
    }

    /// As [`stream`](Self::stream), for a task that takes a slice: each
    /// input is a slice (anything that gives one: `Vec<T>`, `&[T]`, ...);
    /// a large one goes through the arena, released as soon as its output
    /// is in.
    ///
    /// ```no_run
    /// # use polycephaly::pool::{Pool, SliceTask};
    /// static LEN: SliceTask<u8, u64> = SliceTask::new("len", |b| b.len() as u64);
    /// # let pool = Pool::new()?;
    /// let words = ["one", "three", "seventeen"];
    /// let mut lens = vec![0; words.len()];
    /// for r in pool.stream_slices(&LEN, words.iter().map(|w| w.as_bytes()))? {
    ///     let (i, len) = r?;
    ///     lens[i] = len;
    /// }
    /// assert_eq!(lens, [3, 5, 9]);
    /// # Ok::<(), polycephaly::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// As [`stream`](Self::stream); an input larger than the arena's lane
    /// yields [`PoolError::Task`] with [`TaskError::TooLarge`] for its
    /// index, and the stream goes on.
    pub fn stream_slices<'p, T: Pod, O: 'static, S, It>(
        &'p self,
        task: &SliceTask<T, O>,
        inputs: It,
    ) -> Result<Stream<'p, O>, PoolError>
    where
        S: AsRef<[T]>,
        It: IntoIterator<Item = S>,
        It::IntoIter: 'p,
    {
        let index = self.registry.find(task)?;
        let mut inputs = inputs.into_iter();
        let feed = Box::new(move || {
            inputs
                .next()
                .map(|s| bytemuck::cast_slice::<T, u8>(s.as_ref()).to_vec())
        });
        Ok(Stream::new(
            self,
            index,
            task.name(),
            task.erased().out_fixed,
            task.decode_fn(),
            feed,
        ))
    }

    /// Stops the drones: each exits once it has finished the chunks
    /// already in its ring; after a second, what still runs is killed.
    /// Every drone is reaped. Dropping the pool kills them at once.
    pub fn shutdown(self) {
        self.lock().stop(Duration::from_secs(1));
    }
}

/// Cuts `total` items of `per` bytes into chunks for a new job.
fn chunked(
    core: &mut Core,
    task: u32,
    fixed: Option<usize>,
    total: usize,
    per: usize,
    bytes_of: impl Fn(std::ops::Range<usize>) -> Vec<u8>,
) -> u64 {
    let job = core.new_job(total, fixed);
    // Enough chunks to balance, each small enough for a frame (input and
    // output alike).
    let widest = per.max(fixed.unwrap_or(64)).max(1);
    let fits = (core.inline_max / widest).max(1);
    let balanced = total.div_ceil(core.cfg.drones * CHUNKS_PER_DRONE).max(1);
    let size = balanced.min(fits).min(wire::MAX_CHUNK_ITEMS);
    let mut first = 0;
    while first < total {
        let end = (first + size).min(total);
        core.add_chunk(
            job,
            task,
            first,
            (end - first) as u32,
            Input::Frame(bytes_of(first..end)),
        );
        first = end;
    }
    job
}

/// Decodes each item of `part`, handing `f` its index and output.
pub(crate) fn decode_part<O>(
    part: &Part,
    name: &'static str,
    decode: fn(&[u8]) -> Option<O>,
    mut f: impl FnMut(usize, Result<O, PoolError>) -> Result<(), PoolError>,
) -> Result<(), PoolError> {
    let fail = |index, error| PoolError::Task {
        task: name,
        index,
        error,
    };
    match &part.body {
        Body::Dense(bytes) => {
            let size = bytes.len().checked_div(part.count).unwrap_or(0);
            for i in 0..part.count {
                let index = part.first + i;
                let r = decode(&bytes[i * size..(i + 1) * size])
                    .ok_or_else(|| fail(index, TaskError::BadOutput));
                f(index, r)?;
            }
        }
        Body::Entries(bytes) => {
            for (i, (status, data)) in master::entries(bytes).enumerate() {
                let index = part.first + i;
                let r = match status {
                    wire::ITEM_OK => decode(data).ok_or_else(|| fail(index, TaskError::BadOutput)),
                    wire::ITEM_PANICKED => Err(fail(
                        index,
                        TaskError::Panicked {
                            message: String::from_utf8_lossy(data).into_owned(),
                        },
                    )),
                    wire::ITEM_UNKNOWN_TASK => Err(fail(index, TaskError::UnknownToDrone)),
                    _ => Err(fail(
                        index,
                        TaskError::BadInput {
                            reason: String::from_utf8_lossy(data).into_owned(),
                        },
                    )),
                };
                f(index, r)?;
            }
        }
        Body::Failed(e) => {
            for i in 0..part.count {
                f(part.first + i, Err(fail(part.first + i, e.clone())))?;
            }
        }
    }
    Ok(())
}

/// The output of one submitted task, to wait for. Dropping it cancels the
/// task (its result is dropped when it comes).
#[must_use = "a task's result is only had by waiting for it"]
pub struct Pending<'p, O> {
    pool: &'p Pool,
    job: Option<u64>,
    name: &'static str,
    decode: fn(&[u8]) -> Option<O>,
    _o: PhantomData<fn() -> O>,
}

impl<O> core::fmt::Debug for Pending<'_, O> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pending")
            .field("task", &self.name)
            .field("job", &self.job)
            .finish()
    }
}

impl<'p, O> Pending<'p, O> {
    fn new(pool: &'p Pool, job: u64, name: &'static str, decode: fn(&[u8]) -> Option<O>) -> Self {
        Self {
            pool,
            job: Some(job),
            name,
            decode,
            _o: PhantomData,
        }
    }

    /// Waits for the output.
    ///
    /// # Errors
    /// [`PoolError::Task`] if the task failed, [`PoolError::NoDrones`].
    pub fn wait(mut self) -> Result<O, PoolError> {
        self.wait_deadline(None)
    }

    /// Waits at most `timeout` for the output; after
    /// [`PoolError::Timeout`] the task is still pending and can be waited
    /// for again.
    ///
    /// # Errors
    /// [`PoolError::Timeout`], [`PoolError::Taken`] once the output was
    /// returned, and as [`wait`](Self::wait).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<O, PoolError> {
        self.wait_deadline(Instant::now().checked_add(timeout))
    }

    /// Whether the output is there (a wait would not block).
    pub fn is_ready(&self) -> bool {
        let Some(job) = self.job else {
            return true;
        };
        let mut core = self.pool.lock();
        core.pump();
        core.job_done(job)
    }

    fn wait_deadline(&mut self, deadline: Option<Instant>) -> Result<O, PoolError> {
        let job = self.job.ok_or(PoolError::Taken)?;
        let core = self.pool.lock();
        let mut core = self.pool.drive(core, deadline, |c| c.job_done(job))?;
        let parts = core.take_parts(job);
        core.end_job(job);
        self.job = None;
        drop(core);
        let mut out = None;
        for part in &parts {
            decode_part(part, self.name, self.decode, |_, r| {
                out = Some(r?);
                Ok(())
            })?;
        }
        out.ok_or(PoolError::Taken)
    }
}

impl<O> Drop for Pending<'_, O> {
    fn drop(&mut self) {
        if let Some(job) = self.job {
            self.pool.lock().end_job(job);
        }
    }
}

/// Where a stream's inputs come from: each call gives the next input's
/// bytes.
type Feed<'p> = Box<dyn FnMut() -> Option<Vec<u8>> + 'p>;

/// The outputs of [`Pool::stream`] and [`Pool::stream_slices`], as they
/// come: `(index, output)`. Dropping it cancels the inputs not started;
/// those in drones run on, and their answers are dropped.
pub struct Stream<'p, O> {
    pool: &'p Pool,
    job: u64,
    task: u32,
    name: &'static str,
    decode: fn(&[u8]) -> Option<O>,
    feed: Feed<'p>,
    /// Inputs taken from the iterator and not queued yet (the first may
    /// wait for room in the arena).
    pending: std::collections::VecDeque<Vec<u8>>,
    fed: usize,
    outstanding: usize,
    ready: std::collections::VecDeque<Result<(usize, O), PoolError>>,
    done: bool,
    /// Since when the first pending input has found the lane full with no
    /// call accounting for it (see [`ARENA_GRACE`]).
    full_since: Option<Instant>,
}

impl<O> core::fmt::Debug for Stream<'_, O> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Stream")
            .field("task", &self.name)
            .field("fed", &self.fed)
            .field("outstanding", &self.outstanding)
            .finish_non_exhaustive()
    }
}

impl<'p, O> Stream<'p, O> {
    fn new(
        pool: &'p Pool,
        task: u32,
        name: &'static str,
        fixed: Option<usize>,
        decode: fn(&[u8]) -> Option<O>,
        feed: Feed<'p>,
    ) -> Self {
        let job = pool.lock().new_job(0, fixed);
        Self {
            pool,
            job,
            task,
            name,
            decode,
            feed,
            pending: std::collections::VecDeque::new(),
            fed: 0,
            outstanding: 0,
            ready: std::collections::VecDeque::new(),
            done: false,
            full_since: None,
        }
    }

    /// Queues the input `bytes` (the next index); `false` when it must
    /// wait for room in the arena (it is kept for the next round).
    fn feed_one(&mut self, core: &mut Core, bytes: Vec<u8>) -> bool {
        let index = self.fed;
        if bytes.len() <= core.inline_max {
            core.grow_job(self.job, 1);
            core.add_chunk(self.job, self.task, index, 1, Input::Frame(bytes));
        } else {
            match core.try_put_in_arena(self.job, &bytes, true) {
                Ok(Some(handle)) => {
                    self.full_since = None;
                    core.grow_job(self.job, 1);
                    let r = wire::ArenaRef {
                        handle,
                        offset: 0,
                        len: bytes.len() as u64,
                    };
                    core.add_owned_chunk(self.job, self.task, index, r);
                }
                Ok(None) => {
                    // Room comes back as running calls end.
                    self.full_since = None;
                    self.pending.push_front(bytes);
                    return false;
                }
                // No call holds the room: drones may still read blocks of
                // chunks answered already. Look again for a while.
                Err(PoolError::ArenaFull { .. }) if within_grace(&mut self.full_since) => {
                    self.pending.push_front(bytes);
                    return false;
                }
                Err(e) => {
                    self.full_since = None;
                    self.fed += 1;
                    let error = match e {
                        PoolError::TooLarge { bytes, max } => TaskError::TooLarge { bytes, max },
                        e => TaskError::BadInput {
                            reason: e.to_string(),
                        },
                    };
                    self.ready.push_back(Err(PoolError::Task {
                        task: self.name,
                        index,
                        error,
                    }));
                    return true;
                }
            }
        }
        self.fed += 1;
        self.outstanding += 1;
        true
    }
}

impl<O> Iterator for Stream<'_, O> {
    type Item = Result<(usize, O), PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            if self.done {
                return None;
            }
            // Keep every drone's ring full, and a chunk more each. The
            // inputs are taken from the caller's iterator before the pool
            // is locked: it may use the pool itself.
            let room = self.pool.drones * (DEPTH + 1);
            while self.outstanding + self.pending.len() < room {
                match (self.feed)() {
                    Some(bytes) => self.pending.push_back(bytes),
                    None => break,
                }
            }
            let mut core = self.pool.lock();
            while let Some(bytes) = self.pending.pop_front() {
                if !self.feed_one(&mut core, bytes) {
                    break;
                }
            }
            if !self.ready.is_empty() {
                continue;
            }
            if self.outstanding == 0 && self.pending.is_empty() {
                self.done = true;
                return None;
            }
            let job = self.job;
            let driven = if self.outstanding == 0 {
                // Nothing of ours out: an input waits for room that other
                // calls hold. Look again shortly.
                let soon = Instant::now().checked_add(Duration::from_millis(10));
                match self.pool.drive(core, soon, |_| false) {
                    Err(PoolError::Timeout) => Ok(self.pool.lock()),
                    r => r,
                }
            } else {
                self.pool.drive(core, None, |c| c.has_news(job))
            };
            let mut core = match driven {
                Ok(core) => core,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            let parts = core.take_parts(self.job);
            drop(core);
            for part in &parts {
                self.outstanding -= part.count.min(self.outstanding);
                let ready = &mut self.ready;
                let _ = decode_part(part, self.name, self.decode, |index, r| {
                    ready.push_back(r.map(|o| (index, o)));
                    Ok(())
                });
            }
        }
    }
}

impl<O> Drop for Stream<'_, O> {
    fn drop(&mut self) {
        self.pool.lock().end_job(self.job);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.lock().stop(Duration::ZERO);
    }
}
