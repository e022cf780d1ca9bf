//! A drone: this program started again by the pool's keeper, which
//! [`serve`] turns into a loop that runs tasks until the master stops it or
//! dies.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::Duration;

use crate::arena::{ArenaReader, ArenaWriter, BlockHandle};
use crate::region::{OpenOptions, PeerId, Region};
use crate::ring::{RecvError, mpsc, spsc};
use crate::sync::clock::Instant;
use crate::sync::shim::Ordering;

use super::keeper::{DRONE_VAR, REGION_VAR};
use super::task::{ItemOutcome, Registry, Shape};
use super::wire::{self, ArenaRef, Control, Hello, ResultHeader, TaskHeader};

/// The registry the master's `serve` call recorded.
static REGISTRY: OnceLock<&'static Registry> = OnceLock::new();

/// How long a drone waits before it looks at its parent again, when idle
/// or blocked on a full ring: the master's death is caught within this
/// even if the parent-death signal were lost.
const SLICE: Duration = Duration::from_millis(250);

/// How a drone waits for its next chunk: a busy drone finds it in its
/// ring already (the master keeps two there), so only a short spin, to
/// catch a master that answers a result with the next task at once; then
/// it sleeps, burning no CPU while idle.
const IDLE: crate::sync::WaitStrategy = crate::sync::WaitStrategy {
    spin: Duration::from_micros(5),
    spin_only: false,
    slice: SLICE,
};

/// The first line of `main` in a program that uses a [`Pool`](super::Pool).
///
/// In the master (the program as the user started it) it records
/// `registry` and returns at once. In a drone (the same program, started
/// again by the pool) it never returns: it serves tasks from `registry`
/// until the pool stops it, and exits. Call it before anything else: what
/// `main` does before the call, every drone does too.
///
/// ```no_run
/// use polycephaly::pool::{Pool, Registry, Task2};
///
/// static ADD: Task2<u64, u64, u64> = Task2::new("add", |a, b| a + b);
/// static TASKS: Registry = Registry::new(&[&ADD]);
///
/// fn main() -> Result<(), polycephaly::pool::PoolError> {
///     polycephaly::pool::serve(&TASKS);
///     let pool = Pool::builder().drones(4).build()?;
///     let sums = pool.zip_map(&ADD, &[1, 2, 3, 4, 5], &[5, 4, 3, 2, 1])?;
///     assert_eq!(sums, [6, 6, 6, 6, 6]);
///     Ok(())
/// }
/// ```
pub fn serve(registry: &'static Registry) {
    let Some(var) = std::env::var_os(DRONE_VAR) else {
        // The master: the first registry counts.
        let _ = REGISTRY.set(registry);
        return;
    };
    // SAFETY: nothing else runs yet in this process (a drone's `main`
    // calls `serve` first): no thread reads the environment meanwhile.
    // What the tasks start (other programs) must not think it is a drone.
    unsafe { std::env::remove_var(DRONE_VAR) };
    let code = match var.to_str().and_then(wire::parse_drone_var) {
        Some((slot, generation)) => match Drone::start(registry, slot, generation) {
            Ok(drone) => drone.run(),
            Err(e) => {
                eprintln!("polycephaly drone {slot}.{generation}: cannot start: {e}");
                EXIT_CANNOT_START
            }
        },
        None => {
            eprintln!("polycephaly: {DRONE_VAR} is not `slot.generation`; not a drone");
            EXIT_CANNOT_START
        }
    };
    std::process::exit(code);
}

/// The registry `serve` recorded, in the master.
pub(crate) fn registry() -> Option<&'static Registry> {
    REGISTRY.get().copied()
}

/// Whether this process was started as a drone (and so must not build a
/// pool of its own: it reached `Pool::build` without calling `serve`).
pub(crate) fn is_drone_process() -> bool {
    std::env::var_os(DRONE_VAR).is_some()
}

/// Exit codes of a drone.
pub(crate) const EXIT_STOPPED: i32 = 0;
pub(crate) const EXIT_CANNOT_START: i32 = 70;
pub(crate) const EXIT_ORPHANED: i32 = 71;
/// The drone reached `Pool::build` without calling `serve`.
pub(crate) const EXIT_NO_SERVE: i32 = 72;

thread_local! {
    /// The message of the last panic in this thread, recorded by the
    /// drone's panic hook.
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The message the drone's panic hook recorded for the panic just caught.
pub(crate) fn take_panic_message() -> Option<String> {
    PANIC.with(|p| p.borrow_mut().take())
}

/// Records panics instead of printing them: they go to the master, in the
/// task's error.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with a payload that is not a string".to_owned());
        let full = match info.location() {
            Some(l) => format!("{message} (at {}:{})", l.file(), l.line()),
            None => message,
        };
        PANIC.with(|p| *p.borrow_mut() = Some(full));
    }));
}

/// Why a drone could not start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("the pool's region: {0}")]
    Open(#[from] crate::region::OpenError),
    #[error("the pool's region: {0}")]
    Attach(#[from] AttachError),
    #[error("slot {slot} is not one of the pool's {slots}")]
    NoSuchSlot { slot: usize, slots: usize },
    #[error("the master (pid {0}) is gone")]
    Orphaned(u32),
    #[error("saying hello: {0}")]
    Hello(#[from] crate::ring::ClaimError),
}

use crate::AttachError;

struct Drone {
    registry: &'static Registry,
    slot: usize,
    generation: u32,
    master_pid: u32,
    master_peer: PeerId,
    control: Control,
    tasks: spsc::Consumer,
    results: mpsc::Producer,
    writer: ArenaWriter,
    reader: ArenaReader,
    /// Where results are built.
    out: Vec<u8>,
    /// Keeps the mapping.
    _region: Region,
}

impl Drone {
    fn start(
        registry: &'static Registry,
        slot: usize,
        generation: u32,
    ) -> Result<Self, StartError> {
        let region = Region::inherited_from(REGION_VAR, &OpenOptions::default())?;
        // SAFETY: as for `DRONE_VAR` in `serve`: no other thread yet.
        unsafe { std::env::remove_var(REGION_VAR) };
        let (control, header) = Control::attach(&region)?;
        // The keeper armed our parent-death signal before `exec`; a master
        // that died before that is caught here.
        if parent_gone(header.master_pid) {
            return Err(StartError::Orphaned(header.master_pid));
        }
        if slot >= header.slots {
            return Err(StartError::NoSuchSlot {
                slot,
                slots: header.slots,
            });
        }
        let master_peer = PeerId::from_raw(header.master_peer).ok_or(AttachError::Corrupted {
            what: "pool master peer id",
        })?;
        let mut tasks = spsc::Consumer::attach(&region, wire::task_ring(slot))?;
        tasks.set_wait_strategy(IDLE);
        let mut results = mpsc::Producer::attach(&region, wire::RESULTS)?;
        let writer = ArenaWriter::attach_lane(&region, wire::ARENA, wire::drone_lane(slot))?;
        let reader = ArenaReader::attach(&region, wire::ARENA)?;
        // What an earlier drone of this slot left in the ring was for it;
        // the master sends us nothing before our hello.
        while let Ok(frame) = tasks.try_read() {
            drop(frame);
        }
        install_panic_hook();
        let status = if header.fingerprint == registry.fingerprint() {
            wire::HELLO_OK
        } else {
            wire::HELLO_WRONG_REGISTRY
        };
        let hello = Hello {
            slot: slot as u32,
            generation,
            pid: std::process::id(),
            status,
        };
        // The ring may be full while the master is busy elsewhere: wait,
        // looking at the master between slices.
        let mut claim = loop {
            let slice = Instant::now().checked_add(SLICE);
            match results.claim_deadline(size_of::<Hello>(), slice) {
                Ok(claim) => break claim,
                Err(crate::ring::ClaimError::TimedOut) if !parent_gone(header.master_pid) => {}
                Err(crate::ring::ClaimError::TimedOut) => {
                    return Err(StartError::Orphaned(header.master_pid));
                }
                Err(e) => return Err(e.into()),
            }
        };
        claim.copy_from_slice(bytemuck::bytes_of(&hello));
        claim.set_tag(wire::TAG_HELLO);
        claim.commit().map_err(|_| AttachError::Corrupted {
            what: "pool results ring",
        })?;
        if status != wire::HELLO_OK {
            // The master reports it; nothing for us to serve.
            std::process::exit(EXIT_CANNOT_START);
        }
        Ok(Self {
            registry,
            slot,
            generation,
            master_pid: header.master_pid,
            master_peer,
            control,
            tasks,
            results,
            writer,
            reader,
            out: Vec::new(),
            _region: region,
        })
    }

    /// Serves until stopped; returns the exit code.
    fn run(mut self) -> i32 {
        loop {
            let deadline = Instant::now().checked_add(SLICE);
            let frame = match self.tasks.read_deadline(deadline) {
                Ok(frame) => frame,
                Err(RecvError::TimedOut) => {
                    if parent_gone(self.master_pid) {
                        return EXIT_ORPHANED;
                    }
                    continue;
                }
                // The master's handle is gone (it died or dropped the pool
                // without a stop), or the ring is unusable.
                Err(_) => return EXIT_ORPHANED,
            };
            match frame.tag() {
                wire::TAG_STOP => return EXIT_STOPPED,
                wire::TAG_TASK => {}
                _ => continue,
            }
            let Some((head, rest)) = wire::read_head::<TaskHeader>(&frame) else {
                continue;
            };
            if head.generation != self.generation {
                continue;
            }
            // The frame stays borrowed while the chunk runs: the input is
            // read in place.
            let rest: &[u8] = rest;
            let outcome = run_chunk(
                self.registry,
                &self.reader,
                &self.control,
                self.slot,
                &head,
                rest,
                &mut self.out,
            );
            drop(frame);
            if let Err(code) = self.send_result(&head, outcome) {
                return code;
            }
        }
    }

    /// Sends the chunk's result (in the frame, or through our arena lane
    /// when it is large).
    fn send_result(&mut self, head: &TaskHeader, mut form: u32) -> Result<(), i32> {
        let inline_max = self.results.max_payload() / 4;
        let mut arena = None;
        if self.out.len() > inline_max {
            match self.put_in_arena()? {
                Some(handle) => {
                    arena = Some(ArenaRef {
                        handle,
                        offset: 0,
                        len: self.out.len() as u64,
                    });
                }
                None => {
                    // The master cuts the chunk, or fails a lone item.
                    let sizes = [self.out.len() as u64, self.writer.capacity()];
                    self.out.clear();
                    self.out.extend_from_slice(bytemuck::bytes_of(&sizes));
                    form = wire::TOO_LARGE;
                }
            }
        }
        let header = ResultHeader {
            seq: head.seq,
            slot: self.slot as u32,
            generation: self.generation,
            count: head.count,
            form,
            place: if arena.is_some() {
                wire::IN_ARENA
            } else {
                wire::IN_FRAME
            },
            _pad: 0,
        };
        let body_len = match arena {
            Some(_) => size_of::<ArenaRef>(),
            None => self.out.len(),
        };
        let len = size_of::<ResultHeader>() + body_len;
        loop {
            let deadline = Instant::now().checked_add(SLICE);
            match self.results.claim_deadline(len, deadline) {
                Ok(mut claim) => {
                    claim[..size_of::<ResultHeader>()].copy_from_slice(bytemuck::bytes_of(&header));
                    let body = &mut claim[size_of::<ResultHeader>()..];
                    match &arena {
                        Some(a) => body.copy_from_slice(bytemuck::bytes_of(a)),
                        None => body.copy_from_slice(&self.out),
                    }
                    claim.set_tag(wire::TAG_RESULT);
                    claim.commit().map_err(|_| EXIT_ORPHANED)?;
                    if arena.is_some() {
                        if let Some(w) = self.control.slot(self.slot) {
                            w.clear_block();
                        }
                    }
                    return Ok(());
                }
                Err(crate::ring::ClaimError::TimedOut) => {
                    if parent_gone(self.master_pid) {
                        return Err(EXIT_ORPHANED);
                    }
                }
                Err(_) => return Err(EXIT_ORPHANED),
            }
        }
    }

    /// Copies `out` into a block of our lane published to the master;
    /// `None` when it cannot fit the lane.
    fn put_in_arena(&mut self) -> Result<Option<BlockHandle>, i32> {
        loop {
            let deadline = Instant::now().checked_add(SLICE);
            match self
                .writer
                .alloc_uninit_deadline::<u8>(self.out.len(), deadline)
            {
                Ok(block) => {
                    // Same length by construction; a mismatch would be a
                    // bug, reported as the items failing.
                    let Ok(block) = block.copy_from_slice(&self.out) else {
                        return Ok(None);
                    };
                    let handle = block.publish_to(self.master_peer);
                    // Until a committed frame names it, the master must
                    // be able to release it should we die.
                    if let Some(w) = self.control.slot(self.slot) {
                        w.record_block(&handle);
                    }
                    return Ok(Some(handle));
                }
                Err(crate::arena::AllocError::TimedOut) => {
                    if parent_gone(self.master_pid) {
                        return Err(EXIT_ORPHANED);
                    }
                }
                // Larger than our lane, or the lane is unusable.
                Err(_) => return Ok(None),
            }
        }
    }
}

impl core::fmt::Debug for Drone {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Drone")
            .field("slot", &self.slot)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// Runs one chunk and leaves its result in `out`; returns the form.
#[allow(clippy::too_many_arguments)]
fn run_chunk(
    registry: &Registry,
    reader: &ArenaReader,
    control: &Control,
    slot: usize,
    head: &TaskHeader,
    body: &[u8],
    out: &mut Vec<u8>,
) -> u32 {
    out.clear();
    let count = head.count as usize;
    if count > wire::MAX_CHUNK_ITEMS {
        // No master sends this many: an empty answer, which it rejects.
        return wire::ENTRIES;
    }
    let Some(task) = registry.get(head.task) else {
        return all_failed(
            out,
            count,
            wire::ITEM_UNKNOWN_TASK,
            b"no such task in the drone",
        );
    };
    let task = task.erased();
    // The input: in the frame, or a range of an arena block.
    let guard;
    let input: &[u8] = match head.place {
        wire::IN_FRAME => body,
        wire::IN_ARENA => {
            let Some((r, _)) = wire::read_head::<ArenaRef>(body) else {
                return all_failed(out, count, wire::ITEM_BAD_INPUT, b"short arena reference");
            };
            guard = match reader.read_bytes(&r.handle) {
                Ok(g) => g,
                Err(e) => {
                    return all_failed(out, count, wire::ITEM_BAD_INPUT, e.to_string().as_bytes());
                }
            };
            let range = usize::try_from(r.offset).ok().and_then(|o| {
                let end = o.checked_add(usize::try_from(r.len).ok()?)?;
                guard.get(o..end)
            });
            match range {
                Some(bytes) => bytes,
                None => {
                    return all_failed(
                        out,
                        count,
                        wire::ITEM_BAD_INPUT,
                        b"arena range out of bounds",
                    );
                }
            }
        }
        _ => return all_failed(out, count, wire::ITEM_BAD_INPUT, b"unknown input place"),
    };
    run_items(
        task,
        count,
        input,
        out,
        control.slot(slot).map(|w| (w, head.seq)),
    )
}

/// Runs the `count` items of a chunk of `task` whose input is `input`,
/// leaving the result in `out`; returns its form. `words`, when given,
/// gets the progress reports for chunk `seq`: `(words, seq)`.
pub(crate) fn run_items(
    task: super::task::Erased<'_>,
    count: usize,
    input: &[u8],
    out: &mut Vec<u8>,
    words: Option<(&wire::SlotWords, u64)>,
) -> u32 {
    let (words, seq) = (words.map(|(w, _)| w), words.map_or(0, |(_, s)| s));
    out.clear();
    let input_ok = match task.shape {
        Shape::Slice { .. } => count == 1,
        shape => shape.input_len(count) == Some(input.len()),
    };
    if !input_ok {
        return all_failed(
            out,
            count,
            wire::ITEM_BAD_INPUT,
            b"the input does not fit the task",
        );
    }
    let started = crate::sync::clock::monotonic_ns();
    if let Some(w) = words {
        // Relaxed (all four): advice for the master's time-outs and
        // blame, read after our death (when the exit orders everything) or
        // for a time-out (a stale value only delays it by a look).
        w.running.store(seq.wrapping_add(1), Ordering::Relaxed);
    }
    // Dense while every item succeeds with the fixed size; entries from
    // the first that does not.
    let mut dense = task.out_fixed.is_some();
    let mut item = Vec::new();
    for i in 0..count {
        if let Some(w) = words {
            w.item.store(i as u64, Ordering::Relaxed);
            w.progress.fetch_add(1, Ordering::Relaxed);
        }
        if dense {
            let before = out.len();
            match task.run.call_item(input, count, i, out) {
                ItemOutcome::Done if Some(out.len() - before) == task.out_fixed => continue,
                outcome => {
                    // Re-encode what came before as entries.
                    let done = std::mem::take(out);
                    let size = task.out_fixed.unwrap_or(0);
                    for k in 0..i {
                        wire::push_entry(out, wire::ITEM_OK, &done[k * size..(k + 1) * size]);
                    }
                    let last = &done[before..];
                    push_outcome(out, outcome, last);
                    dense = false;
                }
            }
        } else {
            item.clear();
            let outcome = task.run.call_item(input, count, i, &mut item);
            let bytes = std::mem::take(&mut item);
            push_outcome(out, outcome, &bytes);
            item = bytes;
        }
    }
    if let Some(w) = words {
        w.running.store(0, Ordering::Relaxed);
        let spent = crate::sync::clock::monotonic_ns().saturating_sub(started);
        w.busy_ns.fetch_add(spent, Ordering::Relaxed);
    }
    if dense { wire::DENSE } else { wire::ENTRIES }
}

fn push_outcome(out: &mut Vec<u8>, outcome: ItemOutcome, output: &[u8]) {
    match outcome {
        ItemOutcome::Done => wire::push_entry(out, wire::ITEM_OK, output),
        ItemOutcome::Panicked(m) => wire::push_entry(out, wire::ITEM_PANICKED, m.as_bytes()),
        ItemOutcome::BadInput(m) => wire::push_entry(out, wire::ITEM_BAD_INPUT, m.as_bytes()),
    }
}

fn all_failed(out: &mut Vec<u8>, count: usize, status: u32, message: &[u8]) -> u32 {
    out.clear();
    for _ in 0..count {
        wire::push_entry(out, status, message);
    }
    wire::ENTRIES
}

/// Whether our parent is no longer the master (it died and we were
/// re-parented).
fn parent_gone(master_pid: u32) -> bool {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32) != master_pid
}
