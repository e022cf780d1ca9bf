//! `polycephaly soak`: messages, requests and arrays through every
//! primitive at once, for a given time, every one checked; with
//! `--chaos`, workers SIGKILLed at random while they run.
//!
//! Five components run side by side, each in a thread of this process
//! with worker processes of its own (this binary started again as
//! `polycephaly soak --worker KIND`, the region handed down):
//!
//! | component | workers | what is checked |
//! | --- | --- | --- |
//! | `spsc` | one producer | every frame once, in order, its checksum; after a kill, every frame the producer counted as committed (and at most the one it was counting) |
//! | `mpsc` | `--producers` producers | per producer and incarnation: order, checksums, the committed count |
//! | `arena` | one writer | every array handed on arrives whole (its checksum), once; a dead writer's lane is taken over |
//! | `channel` | `--producers` clients of one server (a thread here) | every reply is its request's (echo, checksum); the clients count their calls and discrepancies |
//! | `pool` | two drones | every item's result, every chunk's sum over an array in the arena |
//!
//! With `--chaos` a thread kills a random worker (a producer, a writer, a
//! client or a drone) every 100 to 600 ms; each component notices, checks
//! what the dead one left, and starts another. The report gives counts,
//! rates, kills survived and discrepancies; the command fails if there is
//! any discrepancy.
//!
//! A process that builds a [`Pool`] must call
//! [`serve`](polycephaly::pool::serve) first thing in `main` with a
//! registry that holds [`SOAK_TASKS`]' tasks: the drones are this binary
//! started again.

mod arena;
mod channel;
mod pool;
mod rings;

use std::io::Write as _;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use polycephaly::pool::{Pool, Registry, SliceTask, Task};
use polycephaly::region::{OpenOptions, Region, SectionId};
use polycephaly::ring::RecvError;
use polycephaly::sync::shim::{AtomicBool, AtomicU64, Ordering};

/// The arguments of `polycephaly soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Producer processes of the MPSC ring, and clients of the channel.
    #[arg(long, default_value_t = 2)]
    pub producers: usize,
    /// Kill workers (producers, writers, clients, drones) at random with
    /// SIGKILL while they run.
    #[arg(long)]
    pub chaos: bool,
    /// Internal: run as a worker of a soak (started by the soak itself).
    #[arg(long, hide = true, value_name = "KIND")]
    pub worker: Option<String>,
}

/// A pool task of the soak: a mix of the bits of `x`.
pub static SOAK_MIX: Task<u64, u64> = Task::new("soak_mix", splitmix);
/// A pool task of the soak: the wrapping sum of a slice.
pub static SOAK_SUM: SliceTask<u64, u64> = SliceTask::new("soak_sum", wrapping_sum);
/// The soak's pool tasks; `main` serves them (see the module docs).
pub static SOAK_TASKS: Registry = Registry::new(&[&SOAK_MIX, &SOAK_SUM]);

/// The environment variables a worker gets.
const NEXT_VAR: &str = "POLYCEPHALY_SOAK_NEXT";
const SLOT_VAR: &str = "POLYCEPHALY_SOAK_SLOT";
const WORDS_VAR: &str = "POLYCEPHALY_SOAK_WORDS";
/// A bound on any one wait: only a hang reaches it.
const STALL: Duration = Duration::from_secs(30);
/// How often a component looks at its workers while it waits.
const LOOK: Duration = Duration::from_millis(50);
/// The tag of a producer's last frame (its count follows).
const END_TAG: u32 = u32::MAX;
/// Words of a component's raw section: stop, then one per worker slot
/// (its committed count), then counters.
const STOP: usize = 0;
const SLOTS: usize = 1;
const MAX_SLOTS: usize = 64;

/// Runs `polycephaly soak` (or one of its workers) and returns the exit
/// code: failure when any discrepancy was found.
pub fn run(args: &SoakArgs) -> ExitCode {
    if let Some(kind) = &args.worker {
        return match worker(kind) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("soak worker {kind}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let producers = args.producers.clamp(1, MAX_SLOTS - 1);
    println!(
        "soak: {} s, {producers} producers and clients, chaos {}",
        args.seconds,
        if args.chaos { "on" } else { "off" }
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let chaos = Arc::new(Chaos::default());
    let cfg = Cfg {
        deadline,
        producers,
    };
    let reports: Vec<Report> = std::thread::scope(|s| {
        let components: Vec<_> = [
            ("spsc", rings::spsc_component as fn(&Cfg, &Chaos) -> Report),
            ("mpsc", rings::mpsc_component),
            ("arena", arena::arena_component),
            ("channel", channel::channel_component),
            ("pool", pool::pool_component),
        ]
        .into_iter()
        .map(|(name, f)| {
            let (cfg, chaos) = (&cfg, &*chaos);
            std::thread::Builder::new()
                .name(format!("soak-{name}"))
                .spawn_scoped(s, move || f(cfg, chaos))
                .expect("spawn a component thread")
        })
        .collect();
        let killer = args.chaos.then(|| {
            let chaos = &*chaos;
            s.spawn(move || chaos.run(deadline))
        });
        let reports = components
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| Report {
                    discrepancies: vec!["the component panicked".into()],
                    ..Report::new("?", "?")
                })
            })
            .collect();
        chaos.done.store(true, Ordering::Relaxed);
        if let Some(k) = killer {
            let _ = k.join();
        }
        reports
    });
    let elapsed = started.elapsed().as_secs_f64();
    print_report(&reports, &chaos, elapsed)
}

/// What every component knows.
#[derive(Debug)]
struct Cfg {
    deadline: Instant,
    producers: usize,
}

/// What a component did.
#[derive(Debug, Default)]
struct Report {
    name: &'static str,
    unit: &'static str,
    count: u64,
    bytes: u64,
    /// Workers this component saw die (killed) and replaced (the pool:
    /// drones it lost).
    deaths: u64,
    discrepancies: Vec<String>,
}

impl Report {
    fn new(name: &'static str, unit: &'static str) -> Self {
        Self {
            name,
            unit,
            ..Default::default()
        }
    }

    fn discrepancy(&mut self, what: String) {
        if self.discrepancies.len() < 20 {
            eprintln!("soak {}: DISCREPANCY: {what}", self.name);
        }
        self.discrepancies.push(what);
    }
}

fn print_report(reports: &[Report], chaos: &Chaos, elapsed: f64) -> ExitCode {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<8} {:>8} {:>14} {:>12} {:>10} {:>9} {:>7} {:>7} {:>13}\n",
        "", "what", "count", "per s", "MB", "MB/s", "kills", "deaths", "discrepancies"
    ));
    let mut total_kills = 0;
    let mut total_bad = 0;
    for r in reports {
        let kills = chaos.kills_of(r.name);
        total_kills += kills;
        total_bad += r.discrepancies.len();
        let mb = r.bytes as f64 / 1e6;
        out.push_str(&format!(
            "{:<8} {:>8} {:>14} {:>12.0} {:>10.1} {:>9.1} {:>7} {:>7} {:>13}\n",
            r.name,
            r.unit,
            r.count,
            r.count as f64 / elapsed,
            mb,
            mb / elapsed,
            kills,
            r.deaths,
            r.discrepancies.len()
        ));
    }
    out.push_str(&format!(
        "{elapsed:.1} s; kills survived: {total_kills}; discrepancies: {total_bad}\n"
    ));
    for r in reports {
        for d in r.discrepancies.iter().take(5) {
            out.push_str(&format!("  {}: {d}\n", r.name));
        }
    }
    print!("{out}");
    let _ = std::io::stdout().flush();
    if total_bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

// ---------------------------------------------------------------------
// Chaos: who may be killed, and the thread that kills.

/// A worker slot: the process running in it now (taken out to be reaped
/// and replaced), and the component it belongs to.
type Slot = Arc<Mutex<Option<Child>>>;

/// The workers chaos may kill.
#[derive(Default)]
struct Chaos {
    slots: Mutex<Vec<(&'static str, Slot)>>,
    pools: Mutex<Vec<Arc<Pool>>>,
    kills: Mutex<Vec<(&'static str, u64)>>,
    done: AtomicBool,
}

impl std::fmt::Debug for Chaos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chaos").finish_non_exhaustive()
    }
}

impl Chaos {
    fn register(&self, component: &'static str, slot: &Slot) {
        lock(&self.slots).push((component, Arc::clone(slot)));
    }

    fn register_pool(&self, pool: &Arc<Pool>) {
        lock(&self.pools).push(Arc::clone(pool));
    }

    fn unregister_pools(&self) {
        lock(&self.pools).clear();
    }

    fn count(&self, component: &'static str) {
        let mut k = lock(&self.kills);
        match k.iter_mut().find(|(c, _)| *c == component) {
            Some((_, n)) => *n += 1,
            None => k.push((component, 1)),
        }
    }

    fn kills_of(&self, component: &str) -> u64 {
        lock(&self.kills)
            .iter()
            .find(|(c, _)| *c == component)
            .map_or(0, |(_, n)| *n)
    }

    /// Kills a random worker every 100 to 600 ms until `deadline` (or
    /// until the components are done).
    fn run(&self, deadline: Instant) {
        let mut rng = splitmix(u64::from(std::process::id()) ^ 0xC4A0);
        while Instant::now() < deadline && !self.done.load(Ordering::Relaxed) {
            rng = splitmix(rng);
            std::thread::sleep(Duration::from_millis(100 + rng % 500));
            if Instant::now() >= deadline {
                return;
            }
            let slots = lock(&self.slots).len();
            let pools = lock(&self.pools).len();
            if slots + pools == 0 {
                continue;
            }
            let pick = (rng >> 16) as usize % (slots + pools);
            if pick < slots {
                let (component, slot) = {
                    let s = lock(&self.slots);
                    (s[pick].0, Arc::clone(&s[pick].1))
                };
                let mut child = lock(&slot);
                // A child not reaped yet: its pid cannot have been reused.
                if let Some(c) = child.as_mut() {
                    if matches!(c.try_wait(), Ok(None)) && c.kill().is_ok() {
                        self.count(component);
                    }
                }
            } else {
                let pool = Arc::clone(&lock(&self.pools)[pick - slots]);
                let pids = pool.pids();
                if pids.is_empty() {
                    continue;
                }
                let pid = pids[(rng >> 32) as usize % pids.len()];
                if kill_drone(&pool, pid) {
                    self.count("pool");
                }
            }
        }
    }
}

/// SIGKILLs drone `pid` through a pidfd opened while it is still one of
/// the pool's drones (so a reused pid is never hit).
fn kill_drone(pool: &Pool, pid: u32) -> bool {
    let Some(p) = rustix::process::Pid::from_raw(pid as i32) else {
        return false;
    };
    let Ok(fd) = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) else {
        return false;
    };
    if !pool.pids().contains(&pid) {
        return false;
    }
    rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::KILL).is_ok()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ---------------------------------------------------------------------
// Workers: this binary started again.

/// A worker process of kind `kind`, handed `region` (and `words`, as
/// `WORDS_VAR`), with `env`. It dies with the thread that starts it.
fn start_worker(
    kind: &str,
    region: &Region,
    words: Option<&Region>,
    env: &[(&str, String)],
) -> std::io::Result<Child> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["soak", "--worker", kind]).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    region.share_with(&mut cmd)?;
    if let Some(w) = words {
        w.share_with_var(&mut cmd, WORDS_VAR)?;
    }
    // SAFETY: between fork and exec the child makes one system call
    // (prctl), async-signal-safe, and touches no memory of the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
    cmd.spawn()
}

/// The worker's body.
fn worker(kind: &str) -> Result<(), String> {
    let opts = OpenOptions::default();
    let region = Region::inherited(&opts).map_err(|e| e.to_string())?;
    let env_u64 = |var: &str| -> Result<u64, String> {
        std::env::var(var)
            .map_err(|e| format!("{var}: {e}"))?
            .parse()
            .map_err(|e| format!("{var}: {e}"))
    };
    match kind {
        "spsc" => rings::spsc_producer(&region, env_u64(NEXT_VAR)?),
        "mpsc" => rings::mpsc_producer(&region, env_u64(SLOT_VAR)?, env_u64(NEXT_VAR)?),
        "arena" => arena::arena_writer(&region, env_u64(NEXT_VAR)?),
        "channel" => {
            let words = Region::inherited_from(WORDS_VAR, &opts).map_err(|e| e.to_string())?;
            channel::channel_client(&region, &words, env_u64(SLOT_VAR)?)
        }
        other => Err(format!("no worker kind {other}")),
    }
}

/// Whether the worker of `slot` has exited (`try_wait` reaps it and keeps
/// its status: its pid cannot be killed any more).
fn is_dead(slot: &Slot) -> bool {
    lock(slot)
        .as_mut()
        .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
}

/// Takes the worker of `slot` out if it has exited (reaped), with its
/// status; `None` while it runs (or if there is none).
fn reap_if_dead(slot: &Slot) -> Option<std::process::ExitStatus> {
    let mut c = lock(slot);
    let status = c.as_mut()?.try_wait().ok()??;
    c.take();
    Some(status)
}

/// What a reader does after a wait for its one writer ended with nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quiet {
    /// Wait again.
    Wait,
    /// The writer died and was reaped (counted in the report): check what
    /// it handed on, then start the next one.
    Reaped,
}

/// A reader's wait for the writer of `slot` ended with `e` (timed out, or
/// the writer's role is free). A dead writer is dealt with once the ring
/// holds nothing of it: at `PeerDead` (the role names it), or after a whole
/// wait of nothing since its death was seen (one killed before it attached
/// left the role as it was). `seen_dead` carries that between waits,
/// `quiet` is when the reader last got something, and `who` names the
/// writer in the report.
fn writer_quiet(
    e: RecvError,
    slot: &Slot,
    seen_dead: &mut bool,
    quiet: Instant,
    r: &mut Report,
    who: &str,
) -> Result<Quiet, String> {
    if !is_dead(slot) {
        *seen_dead = false;
        if e == RecvError::PeerDead {
            // The next one has not attached yet.
            std::thread::sleep(Duration::from_millis(1));
        } else if quiet.elapsed() > STALL {
            return Err("nothing for 30 s".into());
        }
        return Ok(Quiet::Wait);
    }
    if e == RecvError::TimedOut && !*seen_dead {
        *seen_dead = true;
        return Ok(Quiet::Wait);
    }
    *seen_dead = false;
    let Some(status) = reap_if_dead(slot) else {
        return Ok(Quiet::Wait);
    };
    r.deaths += 1;
    if status.code().is_some() {
        r.discrepancy(format!("the {who} ended: {status}"));
    }
    Ok(Quiet::Reaped)
}

/// Reaps the worker of `slot` (it was told to stop; a bounded wait).
fn finish(slot: &Slot, r: &mut Report) {
    let Some(mut child) = lock(slot).take() else {
        return;
    };
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(s)) if s.success() || s.code().is_none() => return,
            Ok(Some(s)) => return r.discrepancy(format!("a worker failed: {s}")),
            Ok(None) if start.elapsed() > STALL => {
                let _ = child.kill();
                let _ = child.wait();
                return r.discrepancy("a worker did not stop".into());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return r.discrepancy(format!("wait: {e}")),
        }
    }
}

// ---------------------------------------------------------------------
// Payloads: deterministic bytes and their checksums.

/// splitmix64.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn wrapping_sum(xs: &[u64]) -> u64 {
    xs.iter().fold(0u64, |a, &x| a.wrapping_add(x))
}

/// FNV-1a over the bytes, then the length.
fn checksum(bytes: &[u8]) -> u64 {
    let mut c = 0xCBF2_9CE4_8422_2325u64;
    for &b in bytes {
        c = (c ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
    }
    c ^ bytes.len() as u64
}

/// Deterministic bytes for `seed`.
fn fill(seed: u64, out: &mut [u8]) {
    let mut k = seed;
    for chunk in out.chunks_mut(8) {
        k = splitmix(k);
        let b = k.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

/// A message's body length: mostly small, up to `max`.
fn len_of(seed: u64, max: u64) -> usize {
    let r = splitmix(seed ^ 0x5EED);
    (if r % 8 == 0 { r % (max + 1) } else { r % 65 }) as usize
}

/// A frame's head: sequence number, slot and incarnation, body length and
/// checksum (the body follows).
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Head {
    seq: u64,
    slot: u32,
    len: u32,
    sum: u64,
}

const HEAD: usize = size_of::<Head>();

/// Writes the frame of `seq` (head and body) into `out`, which is
/// `HEAD + len_of(seq)` bytes.
fn write_frame(out: &mut [u8], slot: u32, seq: u64) {
    let (head, body) = out.split_at_mut(HEAD);
    fill(seq ^ u64::from(slot) << 48, body);
    let h = Head {
        seq,
        slot,
        len: body.len() as u32,
        sum: checksum(body),
    };
    head.copy_from_slice(bytemuck::bytes_of(&h));
}

/// Checks a frame: its head, its body against the head's checksum and
/// against the bytes of its sequence number. Returns the head.
fn check_frame(bytes: &[u8]) -> Result<Head, String> {
    if bytes.len() < HEAD {
        return Err(format!("a frame of {} bytes", bytes.len()));
    }
    let h: Head = bytemuck::pod_read_unaligned(&bytes[..HEAD]);
    let body = &bytes[HEAD..];
    if body.len() != h.len as usize || checksum(body) != h.sum {
        return Err(format!("frame {}: checksum or length", h.seq));
    }
    let mut want = vec![0u8; body.len()];
    fill(h.seq ^ u64::from(h.slot) << 48, &mut want);
    if want != body {
        return Err(format!("frame {}: contents", h.seq));
    }
    Ok(h)
}

/// Word `i` of section `id` (raw, zeroed at creation) of `region`.
fn word(region: &Region, id: SectionId, i: usize) -> &AtomicU64 {
    let s = region.section(id).expect("a raw section");
    assert!((i + 1) * 8 <= s.len);
    // SAFETY: in bounds, 8-aligned (sections are 64-aligned), zero-filled
    // at creation (a valid AtomicU64), and alive as long as `region`.
    unsafe { &*s.ptr.as_ptr().add(i * 8).cast::<AtomicU64>() }
}

fn stopped(region: &Region, words: SectionId) -> bool {
    // Relaxed: a stop request; nothing is published with it.
    word(region, words, STOP).load(Ordering::Relaxed) != 0
}
