//! The master's side of the pool: jobs cut into chunks, chunks handed to
//! drones through their task rings, results gathered from the one results
//! ring, and what to do when a drone dies.
//!
//! # Bookkeeping
//!
//! A *job* is one call (`map`, `submit`, a stream); its items are cut into
//! *chunks*, each with a sequence number unique in the pool's life. A chunk
//! is queued, or in flight at one drone (its slot and generation), until
//! its result arrives; the first result for a sequence number is taken and
//! any later one dropped, so each result is delivered once however often
//! the chunk ran.
//!
//! Each drone has at most `depth` chunks in flight, so that a busy drone
//! finds its next chunk in its ring without a system call, and an idle one
//! is handed work as soon as it asks (by sending a result).
//!
//! # A drone's death
//!
//! The keeper reports it (pidfd) and wakes us through the results ring.
//! Results the drone sent before dying are taken first; then its chunks
//! still in flight go back to the front of the queue. The one it was
//! running (the slot's `running` and `item` words say which item) is split
//! so that the item it died on is charged a try and runs alone; the items
//! around it run again uncharged. An item charged more than `retries + 1`
//! times fails with [`TaskError::Crashed`] (or [`TaskError::TimedOut`]
//! when we killed the drones for running too long).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::arena::{ArenaReader, ArenaWriter, BlockHandle, BlockMut, TryAllocError, UninitBlock};
use crate::region::{PeerId, Region};
use crate::ring::{RecvError, TryClaimError, mpsc, spsc};
use crate::sync::clock::Instant;
use crate::sync::shim::Ordering;

use super::error::{PoolError, TaskError};
use super::keeper::{Event, KeeperHandle};
use super::task::{Registry, Shape};
use super::wire::{self, ArenaRef, Control, Entry, Hello, ResultHeader, TaskHeader};

/// The pool's settings, from the builder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub(crate) drones: usize,
    pub(crate) retries: u32,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) start_timeout: Duration,
    pub(crate) depth: usize,
}

/// Where a chunk's input is.
#[derive(Debug)]
pub(crate) enum Input {
    /// In the frame: these bytes.
    Frame(Vec<u8>),
    /// A range of an arena block of the master's lane.
    Arena(ArenaRef),
}

#[derive(Debug)]
struct Chunk {
    job: u64,
    task: u32,
    /// The index of its first item in the job.
    first: usize,
    count: u32,
    /// Tries charged to it (see the module's notes).
    charged: u32,
    /// Whether its last charge was a time-out.
    timed_out: bool,
    input: Input,
    /// In flight at (slot, generation) (the last drone it was sent to).
    at: Option<(usize, u32)>,
    /// A copy was sent to an idle drone (see `dispatch`).
    copied: bool,
    /// An arena block of its own (a stream's large input), released when
    /// the chunk is resolved or dropped.
    owned: Option<BlockHandle>,
}

/// One chunk's outcome, as the job keeps it until the call decodes it.
#[derive(Debug)]
pub(crate) enum Body {
    /// Outputs of the fixed size, packed.
    Dense(Vec<u8>),
    /// One [`Entry`] per item (checked on arrival).
    Entries(Vec<u8>),
    /// The chunk's single item failed here.
    Failed(TaskError),
}

#[derive(Debug)]
pub(crate) struct Part {
    pub(crate) first: usize,
    pub(crate) count: usize,
    pub(crate) body: Body,
}

#[derive(Debug)]
struct Job {
    /// Items not yet resolved.
    remaining: usize,
    parts: Vec<Part>,
    /// Arena blocks the master published for it, released when it ends.
    blocks: Vec<BlockHandle>,
    /// Fixed output size of its task.
    fixed: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Asked for at this instant; no hello yet.
    Starting(Instant),
    /// Said hello; takes chunks.
    Live,
    /// Asked to die (a time-out); its death is pending.
    Dying,
    /// Could not be started again: no more tries.
    Failed,
}

/// Why the master killed a drone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Killed {
    /// It did not: the drone died (a signal, a crash): blame what its slot
    /// words say it ran.
    NotByUs,
    /// It ran item `.1` of chunk `.0` longer than the task time-out.
    TimedOut(u64, u64),
    /// Its answer or its ring did not add up (already charged).
    Rejected,
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    state: State,
    tx: spsc::Producer,
    inflight: VecDeque<u64>,
    /// The slot's progress count when last seen to change, and when.
    watch: (u64, Instant),
    /// Deaths before hello in a row.
    early_deaths: u32,
    /// Why we killed the drone, if we did.
    killed: Killed,
    pid: u32,
}

/// What the master holds.
pub(crate) struct Core {
    pub(crate) cfg: Config,
    pub(crate) registry: &'static Registry,
    /// Set while the pool is being built: a drone that fails then fails
    /// the build.
    building: bool,
    region: Region,
    control: Control,
    /// The results ring's consumer; lent to the thread that sleeps on it
    /// (see [`lend_results`](Self::lend_results)).
    results: Option<mpsc::Consumer>,
    writer: ArenaWriter,
    reader: ArenaReader,
    me: PeerId,
    keeper: Option<KeeperHandle>,
    events: Arc<Mutex<Vec<Event>>>,
    slots: Vec<Slot>,
    chunks: HashMap<u64, Chunk>,
    queue: VecDeque<u64>,
    jobs: HashMap<u64, Job>,
    next_seq: u64,
    next_job: u64,
    /// Set when no drone is left.
    fatal: Option<String>,
    /// A start failure, while the pool is being built.
    start_error: Option<PoolError>,
    /// Largest input kept in a frame.
    pub(crate) inline_max: usize,
    /// Counts for [`PoolStats`](super::PoolStats); `busy` holds only the
    /// dead drones' time (the live ones' is in their slot words).
    pub(crate) stats: super::PoolStats,
}

impl core::fmt::Debug for Core {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Core")
            .field("slots", &self.slots)
            .field("queued", &self.queue.len())
            .field("jobs", &self.jobs.len())
            .finish_non_exhaustive()
    }
}

/// The parts that `Core::new` is made from.
pub(crate) struct Parts {
    pub(crate) cfg: Config,
    pub(crate) registry: &'static Registry,
    pub(crate) region: Region,
    pub(crate) control: Control,
    pub(crate) results: mpsc::Consumer,
    pub(crate) writer: ArenaWriter,
    pub(crate) reader: ArenaReader,
    pub(crate) txs: Vec<spsc::Producer>,
    pub(crate) keeper: KeeperHandle,
    pub(crate) events: Arc<Mutex<Vec<Event>>>,
}

/// How long a wait sleeps at most before looking around anyway.
const MAX_NAP: Duration = Duration::from_secs(1);
/// Deaths before hello in a row after which a slot is given up.
const MAX_EARLY_DEATHS: u32 = 3;

impl Core {
    pub(crate) fn new(p: Parts) -> Self {
        let now = Instant::now();
        let inline_max = p.txs.first().map_or(4096, |t| t.max_payload() / 4);
        let slots = p
            .txs
            .into_iter()
            .map(|tx| Slot {
                generation: 0,
                state: State::Failed,
                tx,
                inflight: VecDeque::new(),
                watch: (0, now),
                early_deaths: 0,
                killed: Killed::NotByUs,
                pid: 0,
            })
            .collect();
        let me = p.region.peer_id();
        Self {
            cfg: p.cfg,
            registry: p.registry,
            building: false,
            region: p.region,
            control: p.control,
            results: Some(p.results),
            writer: p.writer,
            reader: p.reader,
            me,
            keeper: Some(p.keeper),
            events: p.events,
            slots,
            chunks: HashMap::new(),
            queue: VecDeque::new(),
            jobs: HashMap::new(),
            next_seq: 1,
            next_job: 1,
            fatal: None,
            start_error: None,
            inline_max,
            stats: super::PoolStats::default(),
        }
    }

    /// Starts every drone and waits for their hellos.
    pub(crate) fn start_all(&mut self) -> Result<(), PoolError> {
        for slot in 0..self.slots.len() {
            self.respawn(slot);
        }
        self.building = true;
        let deadline = Instant::now().checked_add(self.cfg.start_timeout);
        loop {
            self.pump();
            if let Some(e) = self.start_error.take() {
                return Err(e);
            }
            if self.slots.iter().all(|s| s.state == State::Live) {
                self.building = false;
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(PoolError::StartTimeout(self.cfg.start_timeout));
            }
            self.wait_for_frame(deadline);
        }
    }

    /// Asks the keeper to kill drone `slot` of `generation` (nothing once
    /// the pool stopped).
    fn kill(&self, slot: usize, generation: u32) {
        if let Some(k) = &self.keeper {
            k.kill(slot, generation);
        }
    }

    fn respawn(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        s.generation = s.generation.wrapping_add(1);
        s.state = State::Starting(Instant::now());
        s.killed = Killed::NotByUs;
        s.pid = 0;
        let generation = s.generation;
        if let Some(w) = self.control.slot(slot) {
            // Relaxed: no drone of this slot runs now (the last one was
            // reaped: its stores are done); the next one starts after the
            // fork that follows, which orders these before it.
            w.running.store(0, Ordering::Relaxed);
            let busy = w.busy_ns.swap(0, Ordering::Relaxed);
            self.stats.busy += Duration::from_nanos(busy);
            // An output the last drone published and died before sending
            // (the ring's frames were taken before this death was handled):
            // our named read releases it, or fails on a stale handle.
            if let Some(h) = w.take_block() {
                drop(self.reader.read_bytes(&h));
            }
        }
        if let Some(k) = &self.keeper {
            k.spawn(slot, generation);
        }
    }

    // ----- jobs -------------------------------------------------------

    /// A new job of `total` items whose task gives `fixed`-size outputs.
    pub(crate) fn new_job(&mut self, total: usize, fixed: Option<usize>) -> u64 {
        let id = self.next_job;
        self.next_job += 1;
        self.jobs.insert(
            id,
            Job {
                remaining: total,
                parts: Vec::new(),
                blocks: Vec::new(),
                fixed,
            },
        );
        id
    }

    /// Adds `count` more items to job `job` (a stream feeding it).
    pub(crate) fn grow_job(&mut self, job: u64, count: usize) {
        if let Some(j) = self.jobs.get_mut(&job) {
            j.remaining += count;
        }
    }

    /// Queues a one-item chunk of job `job` whose input is a block of
    /// its own (from [`try_put_in_arena`](Self::try_put_in_arena) with
    /// `own`), released when the chunk is done.
    pub(crate) fn add_owned_chunk(&mut self, job: u64, task: u32, first: usize, input: ArenaRef) {
        self.add_chunk(job, task, first, 1, Input::Arena(input));
        if let Some(c) = self.chunks.get_mut(&(self.next_seq - 1)) {
            c.owned = Some(input.handle);
        }
    }

    /// Releases what chunk `c` owns (its input block).
    fn release_chunk(&self, c: &Chunk) {
        if let Some(h) = c.owned {
            // Our named read: the block is reclaimed once no drone holds it.
            drop(self.reader.read_bytes(&h));
        }
    }

    /// Queues a chunk of job `job`: items `first..first + count`.
    pub(crate) fn add_chunk(
        &mut self,
        job: u64,
        task: u32,
        first: usize,
        count: u32,
        input: Input,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.chunks.insert(
            seq,
            Chunk {
                job,
                task,
                first,
                count,
                charged: 0,
                timed_out: false,
                input,
                at: None,
                copied: false,
                owned: None,
            },
        );
        self.queue.push_back(seq);
    }

    /// Copies `data` into a block of the master's lane, kept until job
    /// `job` ends. `Ok(None)`: no room now, but a running call holds some
    /// and will give it back (drive the pool, then try again).
    pub(crate) fn try_put_in_arena<T: bytemuck::Pod>(
        &mut self,
        job: u64,
        data: &[T],
        own: bool,
    ) -> Result<Option<BlockHandle>, PoolError> {
        self.try_build_in_arena(job, data.len(), own, |b| b.copy_from_slice(data).ok())
    }

    /// As [`try_put_in_arena`](Self::try_put_in_arena), for a block of `n`
    /// elements that `init` builds in place (`None`: it could not).
    pub(crate) fn try_build_in_arena<T: bytemuck::Pod, F>(
        &mut self,
        job: u64,
        n: usize,
        own: bool,
        mut init: F,
    ) -> Result<Option<BlockHandle>, PoolError>
    where
        F: for<'b> FnMut(UninitBlock<'b, T>) -> Option<BlockMut<'b, T>>,
    {
        let me = self.me;
        let tried = self
            .writer
            .try_alloc_uninit::<T>(n)
            .map(|block| init(block).map(|block| block.publish_to(me)).ok_or(()));
        match tried {
            Ok(Ok(handle)) => {
                if !own {
                    if let Some(j) = self.jobs.get_mut(&job) {
                        j.blocks.push(handle);
                    }
                }
                Ok(Some(handle))
            }
            Ok(Err(())) => Err(PoolError::Size("arena block length".into())),
            Err(TryAllocError::Full) => {
                // Room comes back as calls end. Wait while a call that
                // holds some is still running; calls that are done but
                // whose results were not taken yet will not give it back
                // while we wait.
                let running = self
                    .jobs
                    .iter()
                    .any(|(&id, j)| id != job && !j.blocks.is_empty() && j.remaining > 0)
                    || self.chunks.values().any(|c| c.owned.is_some());
                if running {
                    Ok(None)
                } else {
                    Err(PoolError::ArenaFull {
                        bytes: (n * size_of::<T>()) as u64,
                        max: self.writer.capacity(),
                    })
                }
            }
            Err(TryAllocError::TooLarge { bytes, max }) => Err(PoolError::TooLarge { bytes, max }),
            Err(e) => Err(PoolError::Size(e.to_string())),
        }
    }

    /// Makes job `job` hold `handle` (a block built before the job was),
    /// released when the job ends.
    pub(crate) fn adopt_block(&mut self, job: u64, handle: BlockHandle) {
        match self.jobs.get_mut(&job) {
            Some(j) => j.blocks.push(handle),
            None => drop(self.reader.read_bytes(&handle)),
        }
    }

    /// Items of job `job` not resolved yet (0 for a job that ended).
    pub(crate) fn job_remaining(&self, job: u64) -> usize {
        self.jobs.get(&job).map_or(0, |j| j.remaining)
    }

    /// Whether job `job` has every item resolved.
    pub(crate) fn job_done(&self, job: u64) -> bool {
        self.jobs.get(&job).is_none_or(|j| j.remaining == 0)
    }

    /// Takes the parts that arrived for job `job` so far.
    pub(crate) fn take_parts(&mut self, job: u64) -> Vec<Part> {
        self.jobs
            .get_mut(&job)
            .map(|j| std::mem::take(&mut j.parts))
            .unwrap_or_default()
    }

    /// Ends job `job`: drops its queued chunks (chunks in flight are
    /// dropped when their results come) and releases its arena blocks.
    pub(crate) fn end_job(&mut self, job: u64) {
        let Some(j) = self.jobs.remove(&job) else {
            return;
        };
        let chunks = &mut self.chunks;
        let mut dropped = Vec::new();
        self.queue.retain(|seq| match chunks.get(seq) {
            Some(c) if c.job == job => {
                dropped.extend(chunks.remove(seq));
                false
            }
            _ => true,
        });
        for c in &dropped {
            self.release_chunk(c);
        }
        for h in j.blocks {
            // Our named read: the block is reclaimed once no drone holds it.
            drop(self.reader.read_bytes(&h));
        }
    }

    /// The pool-level failure, if no drone is left.
    pub(crate) fn fatal(&self) -> Option<PoolError> {
        self.fatal.as_ref().map(|reason| PoolError::NoDrones {
            reason: reason.clone(),
        })
    }

    /// Whether job `job` has a part to take, or is done.
    pub(crate) fn has_news(&self, job: u64) -> bool {
        self.jobs
            .get(&job)
            .is_none_or(|j| !j.parts.is_empty() || j.remaining == 0)
    }

    // ----- the pump ---------------------------------------------------

    /// Everything that needs doing now, without sleeping: results taken,
    /// deaths handled, time-outs checked, chunks handed out.
    pub(crate) fn pump(&mut self) {
        // Deaths known now; the dead drones' results are all in the ring,
        // so take the ring's frames before handling them.
        // Only the thread that holds the ring's consumer handles deaths:
        // while another thread sleeps on it, frames a dead drone sent may
        // still be there unread; that thread handles them when it is back.
        let events: Vec<Event> = if self.results.is_some() {
            std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
        } else {
            Vec::new()
        };
        let now = Instant::now();
        while let Some(msg) = self.next_msg(Some(now)) {
            self.handle(msg);
        }
        for e in events {
            self.handle_event(e);
        }
        self.check_time_outs();
        self.dispatch();
    }

    /// Sleeps until a frame comes (handled) or `deadline` (or a nap).
    fn wait_for_frame(&mut self, deadline: Option<Instant>) {
        let until = self.wake_by(deadline);
        let msg = self.next_msg(until);
        if let Some(msg) = msg {
            self.handle(msg);
        }
    }

    /// How long until a time-out could fire.
    fn next_timer(&self) -> Duration {
        let now = Instant::now();
        let mut t = MAX_NAP;
        for s in &self.slots {
            let left = match s.state {
                State::Starting(at) => self
                    .cfg
                    .start_timeout
                    .saturating_sub(now.saturating_duration_since(at)),
                State::Live if !s.inflight.is_empty() => match self.cfg.task_timeout {
                    Some(limit) => limit.saturating_sub(now.saturating_duration_since(s.watch.1)),
                    None => continue,
                },
                _ => continue,
            };
            t = t.min(left.saturating_add(Duration::from_millis(1)));
        }
        t
    }

    /// Reads one frame (waiting until `deadline`) and makes it a message;
    /// `None` when nothing came, or the consumer is lent out.
    fn next_msg(&mut self, deadline: Option<Instant>) -> Option<Msg> {
        let rx = self.results.as_mut()?;
        match read_msg(rx, deadline) {
            Ok(msg) => msg,
            Err(fatal) => {
                self.fatal.get_or_insert(fatal);
                None
            }
        }
    }

    /// Lends the results consumer to a thread that sleeps on it without
    /// holding the pool's lock (`None` if another thread has it).
    pub(crate) fn lend_results(&mut self) -> Option<mpsc::Consumer> {
        self.results.take()
    }

    /// Takes the consumer back, with what the borrower read.
    pub(crate) fn return_results(&mut self, rx: mpsc::Consumer, got: Result<Option<Msg>, String>) {
        self.results = Some(rx);
        match got {
            Ok(Some(msg)) => self.handle(msg),
            Ok(None) => {}
            Err(fatal) => {
                self.fatal.get_or_insert(fatal);
            }
        }
    }

    /// When the driving thread should wake at the latest to look at
    /// time-outs, given its own `deadline`.
    pub(crate) fn wake_by(&self, deadline: Option<Instant>) -> Option<Instant> {
        let nap = Instant::now().checked_add(self.next_timer());
        match (deadline, nap) {
            (Some(d), Some(n)) => Some(d.min(n)),
            (d, n) => d.or(n),
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Result(h, body) => self.on_result(h, body),
            Msg::Hello(h) => self.on_hello(h),
            Msg::Nothing => {}
        }
    }

    fn on_hello(&mut self, h: Hello) {
        let slot = h.slot as usize;
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        if h.generation != s.generation || !matches!(s.state, State::Starting(_)) {
            return;
        }
        if h.status != wire::HELLO_OK {
            self.start_error.get_or_insert(PoolError::DroneStart {
                slot,
                reason: "its registry is not the master's (serve was given another one)".into(),
            });
            return;
        }
        s.state = State::Live;
        self.stats.drones_started += 1;
        s.early_deaths = 0;
        s.pid = h.pid;
        s.watch = (0, Instant::now());
    }

    fn on_result(&mut self, h: ResultHeader, body: Vec<u8>) {
        let from = (h.slot as usize, h.generation);
        let Some(chunk) = self.chunks.get(&h.seq) else {
            // Taken already (from a copy), cut up after a death, or its job
            // ended: only its block to release, and its place in the
            // sender's list.
            self.stats.late_answers += 1;
            self.release_result_block(&h, &body);
            for s in &mut self.slots {
                s.inflight.retain(|&q| q != h.seq);
            }
            return;
        };
        let (first, count, job) = (chunk.first, chunk.count as usize, chunk.job);
        // A chunk resolved meanwhile (spent: count 0) or whose call ended:
        // nothing to check the answer against; dropped, as for an unknown
        // sequence number.
        if count == 0 || !self.jobs.contains_key(&job) {
            self.stats.late_answers += 1;
            if let Some(c) = self.chunks.remove(&h.seq) {
                self.release_chunk(&c);
            }
            self.release_result_block(&h, &body);
            for s in &mut self.slots {
                s.inflight.retain(|&q| q != h.seq);
            }
            return;
        }
        let fixed = self.jobs.get(&job).and_then(|j| j.fixed);
        let from_arena = h.place == wire::IN_ARENA;
        let bytes = if from_arena {
            match self.fetch_block(&body) {
                Some(b) => b,
                None => return self.reject(from, h.seq),
            }
        } else {
            body
        };
        if h.count as usize != count {
            return self.reject(from, h.seq);
        }
        if h.form == wire::TOO_LARGE {
            return self.too_large(h.seq, &bytes);
        }
        let Some(body) = check_body(h.form, count, fixed, bytes) else {
            return self.reject(from, h.seq);
        };
        let Some(chunk) = self.chunks.remove(&h.seq) else {
            return;
        };
        self.release_chunk(&chunk);
        // In flight at one drone, or two (a copy).
        for s in &mut self.slots {
            if let Some(i) = s.inflight.iter().position(|&q| q == h.seq) {
                s.inflight.remove(i);
                s.watch.1 = Instant::now();
            }
        }
        self.stats.items += count as u64;
        let (bytes, arena) = match &body {
            Body::Dense(b) | Body::Entries(b) => (b.len() as u64, from_arena),
            Body::Failed(_) => (0, false),
        };
        if arena {
            self.stats.bytes_in_arena += bytes;
        } else {
            self.stats.bytes_in_rings += size_of::<ResultHeader>() as u64 + bytes;
        }
        if let Some(j) = self.jobs.get_mut(&job) {
            j.remaining = j.remaining.saturating_sub(count);
            j.parts.push(Part { first, count, body });
        }
    }

    /// A chunk whose outputs together did not fit its drone's lane: cut
    /// in halves and queued again (nobody is charged), or, for one item,
    /// failed with [`TaskError::TooLarge`].
    fn too_large(&mut self, seq: u64, body: &[u8]) {
        let sizes = wire::read_head::<[u64; 2]>(body).map_or([0, 0], |(s, _)| s);
        for s in &mut self.slots {
            s.inflight.retain(|&q| q != seq);
        }
        let Some(mut c) = self.chunks.remove(&seq) else {
            return;
        };
        let half = c.count as usize / 2;
        match self.split(&c, &[half]) {
            Some(pieces) => {
                for (new_seq, piece) in pieces.into_iter().rev() {
                    self.chunks.insert(new_seq, piece);
                    self.queue.push_front(new_seq);
                }
            }
            None => {
                if let Some(j) = self.jobs.get_mut(&c.job) {
                    j.remaining = j.remaining.saturating_sub(c.count as usize);
                    j.parts.push(Part {
                        first: c.first,
                        count: c.count as usize,
                        body: Body::Failed(TaskError::TooLarge {
                            bytes: sizes[0],
                            max: sizes[1],
                        }),
                    });
                }
                c.count = 0;
                self.release_chunk(&c);
            }
        }
    }

    /// Copies the output a drone left in its lane, and releases it.
    fn fetch_block(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        let (r, _) = wire::read_head::<ArenaRef>(body)?;
        let guard = self.reader.read_bytes(&r.handle).ok()?;
        let start = usize::try_from(r.offset).ok()?;
        let end = start.checked_add(usize::try_from(r.len).ok()?)?;
        guard.get(start..end).map(<[u8]>::to_vec)
    }

    fn release_result_block(&mut self, h: &ResultHeader, body: &[u8]) {
        if h.place == wire::IN_ARENA {
            if let Some((r, _)) = wire::read_head::<ArenaRef>(body) {
                drop(self.reader.read_bytes(&r.handle));
            }
        }
    }

    /// A result that does not add up: the drone that sent it is killed and
    /// the chunk charged and run again.
    fn reject(&mut self, (slot, generation): (usize, u32), seq: u64) {
        if let Some(mut c) = self.chunks.remove(&seq) {
            c.charged += 1;
            self.fail_if_spent(&mut c, "it answered with a malformed result and was killed");
            self.chunks.insert(seq, c);
        }
        if self
            .slots
            .get(slot)
            .is_some_and(|s| s.generation == generation)
        {
            self.kill(slot, generation);
            let s = &mut self.slots[slot];
            s.state = State::Dying;
            s.killed = Killed::Rejected;
        }
    }

    fn handle_event(&mut self, e: Event) {
        match e {
            Event::Started {
                slot,
                generation,
                pid,
            } => {
                if let Some(s) = self.slots.get_mut(slot) {
                    if s.generation == generation {
                        s.pid = pid;
                    }
                }
            }
            Event::SpawnFailed {
                slot,
                generation,
                error,
            } => {
                if self
                    .slots
                    .get(slot)
                    .is_some_and(|s| s.generation == generation)
                {
                    self.early_death(slot, format!("could not be started: {error}"));
                }
            }
            Event::Died {
                slot,
                generation,
                status,
            } => {
                if self
                    .slots
                    .get(slot)
                    .is_none_or(|s| s.generation != generation)
                {
                    return;
                }
                let exit = describe_exit(status);
                if matches!(self.slots[slot].state, State::Starting(_)) {
                    self.early_death(slot, format!("it ended before saying hello ({exit})"));
                } else {
                    self.died(slot, &exit);
                }
            }
        }
    }

    /// A drone that died (or was not started) before its hello.
    fn early_death(&mut self, slot: usize, reason: String) {
        self.requeue_all(slot);
        let s = &mut self.slots[slot];
        s.early_deaths += 1;
        if self.building {
            // While building: report it rather than retry.
            self.start_error
                .get_or_insert(PoolError::DroneStart { slot, reason });
            self.slots[slot].state = State::Failed;
            return;
        }
        if self.slots[slot].early_deaths >= MAX_EARLY_DEATHS {
            self.slots[slot].state = State::Failed;
            if self.slots.iter().all(|s| s.state == State::Failed) {
                self.fatal = Some(format!("drone {slot}: {reason}"));
            }
            return;
        }
        self.respawn(slot);
    }

    /// A live drone died: its chunks go back, the one it ran charged.
    fn died(&mut self, slot: usize, exit: &str) {
        self.stats.drones_lost += 1;
        let s = &self.slots[slot];
        // Relaxed: the drone is dead and reaped, its stores are all done;
        // the exit and our `waitpid` order them before these loads.
        let from_words = || {
            let w = self.control.slot(slot)?;
            let running = w.running.load(Ordering::Relaxed);
            let item = w.item.load(Ordering::Relaxed);
            (running != 0).then(|| (running - 1, item))
        };
        let (blamed, timed_out) = match s.killed {
            Killed::NotByUs => (from_words(), false),
            Killed::TimedOut(seq, item) => (Some((seq, item)), true),
            // We killed it for a bad answer, already charged: what it ran
            // next is innocent.
            Killed::Rejected => (None, false),
        };
        // The blamed chunk must be one of this drone's.
        let blamed = blamed.filter(|(seq, _)| s.inflight.contains(seq));
        if let Some((seq, item)) = blamed {
            self.charge(slot, seq, item, timed_out, exit);
        }
        self.requeue_all(slot);
        self.respawn(slot);
    }

    /// Charges item `item` of chunk `seq` a try, splitting the chunk so
    /// that the item runs alone next time; fails it when out of tries.
    fn charge(&mut self, dead: usize, seq: u64, item: u64, timed_out: bool, exit: &str) {
        let Some(mut c) = self.chunks.remove(&seq) else {
            return;
        };
        let count = c.count as usize;
        let item = (item as usize).min(count.saturating_sub(1));
        if count > 1 {
            // Split into [..item], [item], [item + 1..], as chunks of their
            // own; the input is cut by the task's shape.
            let pieces = self.split(&c, &[item, item + 1]);
            if let Some(pieces) = pieces {
                let at = c.at;
                // The pieces replace `seq` in the slot's in-flight list, so
                // that requeueing takes them.
                // The dead drone's list, not that of the last drone the
                // chunk was sent to (a copy's holder).
                {
                    let s = &mut self.slots[dead];
                    s.inflight.retain(|&q| q != seq);
                    for (new_seq, _) in &pieces {
                        s.inflight.push_back(*new_seq);
                    }
                }
                for (new_seq, mut piece) in pieces {
                    if piece.first == c.first + item {
                        piece.charged = c.charged + 1;
                        piece.timed_out = timed_out;
                        self.fail_if_spent(&mut piece, exit);
                    }
                    piece.at = at;
                    self.chunks.insert(new_seq, piece);
                }
                return;
            }
        }
        c.charged += 1;
        c.timed_out = timed_out;
        self.fail_if_spent(&mut c, exit);
        self.chunks.insert(seq, c);
    }

    /// Marks `c` failed (resolved as such) when it has used up its tries.
    fn fail_if_spent(&mut self, c: &mut Chunk, exit: &str) {
        if c.charged <= self.cfg.retries {
            return;
        }
        let error = match (c.timed_out, self.cfg.task_timeout) {
            (true, Some(timeout)) => TaskError::TimedOut {
                timeout,
                drones: c.charged,
            },
            _ => TaskError::Crashed {
                drones: c.charged,
                last_exit: exit.to_owned(),
            },
        };
        if let Some(j) = self.jobs.get_mut(&c.job) {
            j.remaining = j.remaining.saturating_sub(c.count as usize);
            j.parts.push(Part {
                first: c.first,
                count: c.count as usize,
                body: Body::Failed(error),
            });
        }
        // Resolved: a zero count marks it for `requeue_all` to drop.
        c.count = 0;
    }

    /// Cuts chunk `c` at the item indices `cuts` (increasing, inside it):
    /// new chunks with new sequence numbers, in order. `None` for chunks
    /// that cannot be cut (one item, or an input in the arena).
    fn split(&mut self, c: &Chunk, cuts: &[usize]) -> Option<Vec<(u64, Chunk)>> {
        let Input::Frame(bytes) = &c.input else {
            return None;
        };
        let count = c.count as usize;
        let shape = self.registry.get(c.task)?.erased().shape;
        if count < 2 || shape.input_len(count) != Some(bytes.len()) {
            return None;
        }
        let mut out = Vec::new();
        let mut a = 0;
        for b in cuts.iter().copied().chain([count]) {
            if b <= a || b > count {
                continue;
            }
            let input = match shape {
                Shape::Values { size } => bytes[a * size..b * size].to_vec(),
                Shape::Pairs { a: sa, b: sb } => {
                    // Two arrays, the `A`s then the `B`s: cut each.
                    let mut v = bytes[a * sa..b * sa].to_vec();
                    let base = count * sa;
                    v.extend_from_slice(&bytes[base + a * sb..base + b * sb]);
                    v
                }
                Shape::Slice { .. } => return None,
            };
            let seq = self.next_seq;
            self.next_seq += 1;
            out.push((
                seq,
                Chunk {
                    job: c.job,
                    task: c.task,
                    first: c.first + a,
                    count: (b - a) as u32,
                    charged: c.charged,
                    timed_out: c.timed_out,
                    input: Input::Frame(input),
                    at: None,
                    copied: false,
                    owned: None,
                },
            ));
            a = b;
        }
        Some(out)
    }

    /// Puts every chunk in flight at `slot` back at the queue's front, in
    /// order (dropping those resolved meanwhile). Chunks of several items
    /// go back halved: when drones die often, chunks shrink until they
    /// finish between two deaths.
    fn requeue_all(&mut self, slot: usize) {
        let inflight = std::mem::take(&mut self.slots[slot].inflight);
        for seq in inflight.into_iter().rev() {
            // Still in flight at another drone (a copy): it will answer.
            if self.slots.iter().any(|s| s.inflight.contains(&seq)) {
                continue;
            }
            let Some(c) = self.chunks.remove(&seq) else {
                continue;
            };
            // Resolved meanwhile (out of tries), or its call ended.
            if c.count == 0 || !self.jobs.contains_key(&c.job) {
                self.release_chunk(&c);
                continue;
            }
            let half = c.count as usize / 2;
            match self.split(&c, &[half]) {
                Some(pieces) => {
                    for (new_seq, piece) in pieces.into_iter().rev() {
                        self.chunks.insert(new_seq, piece);
                        self.queue.push_front(new_seq);
                    }
                }
                None => {
                    self.chunks.insert(
                        seq,
                        Chunk {
                            at: None,
                            copied: false,
                            ..c
                        },
                    );
                    self.queue.push_front(seq);
                }
            }
        }
    }

    /// Kills drones stuck in a task, and drones that do not start.
    fn check_time_outs(&mut self) {
        let now = Instant::now();
        for slot in 0..self.slots.len() {
            let s = &self.slots[slot];
            match s.state {
                State::Starting(at)
                    if now.saturating_duration_since(at) >= self.cfg.start_timeout =>
                {
                    let generation = s.generation;
                    self.kill(slot, generation);
                    // Its death is counted as an early one when it comes.
                    self.slots[slot].state = State::Starting(now);
                }
                State::Live if !s.inflight.is_empty() => {
                    let Some(limit) = self.cfg.task_timeout else {
                        continue;
                    };
                    let Some(w) = self.control.slot(slot) else {
                        continue;
                    };
                    // Relaxed: advice (see `SlotWords`).
                    let progress = w.progress.load(Ordering::Relaxed);
                    let running = w.running.load(Ordering::Relaxed);
                    // Between items (reading its ring, or waiting for room
                    // in a full results ring nobody drains) a drone is not
                    // in a task: that time does not count.
                    if progress != s.watch.0 || running == 0 {
                        self.slots[slot].watch = (progress, now);
                        continue;
                    }
                    if now.saturating_duration_since(s.watch.1) < limit {
                        continue;
                    }
                    let item = w.item.load(Ordering::Relaxed);
                    let blamed = (running - 1, item);
                    let generation = s.generation;
                    self.kill(slot, generation);
                    let s = &mut self.slots[slot];
                    s.state = State::Dying;
                    s.killed = Killed::TimedOut(blamed.0, blamed.1);
                }
                _ => {}
            }
        }
    }

    /// Hands queued chunks to live drones with room, the least loaded
    /// first. Then, when the queue is empty and a drone is idle while
    /// another has a chunk waiting behind the one it runs, sends the idle
    /// drone a copy of that chunk (once): a long task does not hold up the
    /// chunk queued behind it. The first result is taken, as always.
    fn dispatch(&mut self) {
        // Drones whose ring was found full this round (an old frame a new
        // drone has not skipped yet): the others still get work.
        let mut full = vec![false; self.slots.len()];
        while let Some(&seq) = self.queue.front() {
            let Some(slot) = (0..self.slots.len())
                .filter(|&i| {
                    let s = &self.slots[i];
                    !full[i] && s.state == State::Live && s.inflight.len() < self.cfg.depth
                })
                .min_by_key(|&i| self.slots[i].inflight.len())
            else {
                return;
            };
            match self.chunks.get(&seq) {
                Some(c) if c.count > 0 => {}
                _ => {
                    if let Some(c) = self.chunks.remove(&seq) {
                        self.release_chunk(&c);
                    }
                    self.queue.pop_front();
                    continue;
                }
            }
            match self.send(slot, seq) {
                Sent::Yes => {
                    self.queue.pop_front();
                }
                Sent::Full => full[slot] = true,
                Sent::Broken => {}
            }
        }
        // By index: `send` needs `&mut self` inside the loop.
        #[allow(clippy::needless_range_loop)]
        for idle in 0..self.slots.len() {
            if full[idle]
                || self.slots[idle].state != State::Live
                || !self.slots[idle].inflight.is_empty()
            {
                continue;
            }
            let waiting = self.slots.iter().find_map(|s| {
                s.inflight
                    .iter()
                    .skip(1)
                    .copied()
                    .find(|q| self.chunks.get(q).is_some_and(|c| !c.copied && c.count > 0))
            });
            let Some(seq) = waiting else {
                return;
            };
            if let Some(c) = self.chunks.get_mut(&seq) {
                c.copied = true;
            }
            if let Sent::Full = self.send(idle, seq) {
                full[idle] = true;
                if let Some(c) = self.chunks.get_mut(&seq) {
                    c.copied = false;
                }
            }
        }
    }

    /// Writes chunk `seq` into drone `slot`'s ring and records it there.
    fn send(&mut self, slot: usize, seq: u64) -> Sent {
        let Some(c) = self.chunks.get(&seq) else {
            return Sent::Broken;
        };
        let s = &mut self.slots[slot];
        let header = TaskHeader {
            seq,
            generation: s.generation,
            task: c.task,
            count: c.count,
            place: match c.input {
                Input::Frame(_) => wire::IN_FRAME,
                Input::Arena(_) => wire::IN_ARENA,
            },
        };
        let body: &[u8] = match &c.input {
            Input::Frame(b) => b,
            Input::Arena(r) => bytemuck::bytes_of(r),
        };
        match s.tx.try_claim(size_of::<TaskHeader>() + body.len()) {
            Ok(mut claim) => {
                claim[..size_of::<TaskHeader>()].copy_from_slice(bytemuck::bytes_of(&header));
                claim[size_of::<TaskHeader>()..].copy_from_slice(body);
                claim.set_tag(wire::TAG_TASK);
                // An SPSC commit cannot fail.
                claim.commit();
                self.stats.chunks += 1;
                self.stats.bytes_in_rings += (size_of::<TaskHeader>() + body.len()) as u64;
                if let Input::Arena(r) = &c.input {
                    self.stats.bytes_in_arena += r.len;
                }
            }
            // Its ring is full (an old frame the new drone has not skipped
            // yet): try again at the next pump.
            Err(TryClaimError::Full) => return Sent::Full,
            Err(_) => {
                // Too large for the ring (cannot be: inputs beyond
                // `inline_max` go through the arena) or corrupted.
                let generation = s.generation;
                s.state = State::Dying;
                s.killed = Killed::Rejected;
                self.kill(slot, generation);
                return Sent::Broken;
            }
        }
        let generation = s.generation;
        if s.inflight.is_empty() {
            s.watch.1 = Instant::now();
        }
        s.inflight.push_back(seq);
        if let Some(c) = self.chunks.get_mut(&seq) {
            c.at = Some((slot, generation));
        }
        Sent::Yes
    }

    /// Stops the drones (a stop frame, then a kill after `grace`), reaps
    /// them, and ends the keeper.
    pub(crate) fn stop(&mut self, grace: Duration) {
        if self.keeper.is_none() {
            return;
        }
        for s in &mut self.slots {
            if s.state == State::Live {
                let _ = s.tx.try_claim(0).map(|mut c| {
                    c.set_tag(wire::TAG_STOP);
                    c.commit()
                });
            }
        }
        if let Some(k) = self.keeper.take() {
            k.stop(grace);
        }
        for s in &mut self.slots {
            s.state = State::Failed;
        }
        self.fatal
            .get_or_insert_with(|| "the pool was shut down".into());
        let jobs: Vec<u64> = self.jobs.keys().copied().collect();
        for j in jobs {
            self.end_job(j);
        }
        let _ = &self.region;
    }

    /// The counts so far, with the live drones' busy time added.
    pub(crate) fn stats(&self) -> super::PoolStats {
        let mut st = self.stats;
        for slot in 0..self.slots.len() {
            if let Some(w) = self.control.slot(slot) {
                // Relaxed: a statistic.
                st.busy += Duration::from_nanos(w.busy_ns.load(Ordering::Relaxed));
            }
        }
        st
    }

    /// The drones' process ids (0 for a slot with none now).
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.slots
            .iter()
            .map(|s| if s.state == State::Live { s.pid } else { 0 })
            .collect()
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if self.keeper.is_some() {
            self.stop(Duration::ZERO);
        }
    }
}

/// What became of a chunk handed to a drone.
enum Sent {
    Yes,
    /// The drone's ring is full.
    Full,
    /// The drone cannot take it (it is being killed), or the chunk is gone.
    Broken,
}

/// A frame of the results ring, copied out.
#[derive(Debug)]
pub(crate) enum Msg {
    Result(ResultHeader, Vec<u8>),
    Hello(Hello),
    Nothing,
}

/// Reads one frame from the results ring, waiting until `deadline`:
/// `Ok(None)` when none came, `Err` when the ring is unusable (a hostile
/// drone broke it: nothing more will come).
pub(crate) fn read_msg(
    rx: &mut mpsc::Consumer,
    deadline: Option<Instant>,
) -> Result<Option<Msg>, String> {
    let frame = match rx.read_deadline(deadline) {
        Ok(frame) => frame,
        Err(RecvError::TimedOut) => return Ok(None),
        Err(e) => return Err(format!("the results ring: {e}")),
    };
    let msg = match frame.tag() {
        wire::TAG_RESULT => match wire::read_head::<ResultHeader>(&frame) {
            Some((h, body)) => Msg::Result(h, body.to_vec()),
            None => Msg::Nothing,
        },
        wire::TAG_HELLO => match wire::read_head::<Hello>(&frame) {
            Some((h, _)) => Msg::Hello(h),
            None => Msg::Nothing,
        },
        _ => Msg::Nothing,
    };
    Ok(Some(msg))
}

/// A chunk's result as a drone sent it, checked: `None` unless it is
/// exactly `count` outputs of the fixed size (dense), or exactly `count`
/// well-formed entries.
pub(crate) fn check_body(
    form: u32,
    count: usize,
    fixed: Option<usize>,
    bytes: Vec<u8>,
) -> Option<Body> {
    match form {
        wire::DENSE if fixed.and_then(|f| f.checked_mul(count)) == Some(bytes.len()) => {
            Some(Body::Dense(bytes))
        }
        wire::ENTRIES if entries_ok(&bytes, count) => Some(Body::Entries(bytes)),
        _ => None,
    }
}

/// Whether `bytes` holds exactly `count` well-formed entries.
fn entries_ok(mut bytes: &[u8], count: usize) -> bool {
    for _ in 0..count {
        let Some((e, rest)) = wire::read_head::<Entry>(bytes) else {
            return false;
        };
        let padded = (e.len as usize).next_multiple_of(8);
        if e.status > wire::ITEM_UNKNOWN_TASK || rest.len() < padded {
            return false;
        }
        bytes = &rest[padded..];
    }
    bytes.is_empty()
}

/// Walks the entries of a checked [`Body::Entries`].
pub(crate) fn entries(mut bytes: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    core::iter::from_fn(move || {
        let (e, rest) = wire::read_head::<Entry>(bytes)?;
        let len = e.len as usize;
        let padded = len.next_multiple_of(8);
        let data = rest.get(..len)?;
        bytes = rest.get(padded..)?;
        Some((e.status, data))
    })
}

/// `signal: 9 (SIGKILL)`, `exit status: 3`, with what our own codes mean.
fn describe_exit(status: Option<std::process::ExitStatus>) -> String {
    use super::drone::{EXIT_CANNOT_START, EXIT_NO_SERVE, EXIT_ORPHANED};
    let Some(status) = status else {
        return "it ended, reaped by somebody else (does this program ignore SIGCHLD?)".into();
    };
    match status.code() {
        Some(EXIT_NO_SERVE) => {
            "it reached Pool::build without calling polycephaly::pool::serve first: make serve(&TASKS) the first line of main".into()
        }
        Some(EXIT_CANNOT_START) => format!("{status}: it could not attach to the pool (see its stderr)"),
        Some(EXIT_ORPHANED) => format!("{status}: it lost its master"),
        _ => status.to_string(),
    }
}
