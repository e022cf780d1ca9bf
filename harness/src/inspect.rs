//! `polycephaly inspect NAME [--watch]`: a read-only view of a named region.
//!
//! Everything goes through [`polycephaly::region::Observer`]: a read-only
//! mapping, no peer slot, no role, no store. The layers' state readers
//! (`ring::spsc::observe`, `ring::mpsc::observe`, `arena::observe::observe`,
//! `lock::observe_event`, `lock::observe_mutex`) check what they read and
//! list what does not hold; this module only formats.

use core::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use polycephaly::arena::observe::{ArenaState, BlockStatus};
use polycephaly::lock::{EventMode, EventState, MutexState};
use polycephaly::region::{
    Backing, ObserveError, Observer, PeerId, PeerInfo, SectionInfo, SectionKind,
};
use polycephaly::ring::observe::RingState;

/// How many blocks of a lane are listed one by one.
const BLOCKS_SHOWN: usize = 8;

/// The arguments of `inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct InspectArgs {
    /// The region's name (as given to `RegionBuilder::named`).
    name: String,
    /// Refresh the view in place until interrupted (Ctrl-C).
    #[arg(long)]
    watch: bool,
    /// Milliseconds between two views with --watch.
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    interval: u64,
    /// With --watch: stop after this many views (default: until
    /// interrupted).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
}

/// Runs `inspect`: 0 when the region looks sound, 1 when it cannot be
/// opened or a problem was found.
pub(crate) fn run(args: &InspectArgs) -> ExitCode {
    // A truncation of a /dev/shm file while we look would end us with a
    // bare "Bus error": say what happened instead.
    let _ = polycephaly::region::install_sigbus_handler();
    let obs = match Observer::open(&args.name) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("polycephaly inspect: region \"{}\": {e}", args.name);
            return ExitCode::FAILURE;
        }
    };
    let tty = std::io::stdout().is_terminal();
    let mut out = std::io::stdout();
    let mut views = 0u64;
    loop {
        if let Err(e) = obs.check_len() {
            eprintln!("polycephaly inspect: region \"{}\": {e}", args.name);
            return ExitCode::FAILURE;
        }
        let (text, sound) = report(&obs);
        if args.watch && tty {
            // Home and clear: the view is redrawn in place.
            let _ = write!(out, "\x1b[H\x1b[2J");
        }
        let _ = write!(out, "{text}");
        let _ = out.flush();
        views += 1;
        if !args.watch || args.count.is_some_and(|c| views >= c) {
            return if sound {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        if !tty {
            let _ = writeln!(out, "--");
        }
        std::thread::sleep(Duration::from_millis(args.interval));
    }
}

/// `1234567` as `1,234,567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `id (pid P, alive)` from the peer table, or `id (not in the peer
/// table)`.
fn who(id: PeerId, peers: &[PeerInfo]) -> String {
    match peers.iter().find(|p| p.id == id) {
        Some(p) => format!(
            "peer {id} (pid {}, {})",
            p.pid,
            if p.alive { "alive" } else { "dead" }
        ),
        None => format!("peer {id} (not in the peer table: gone)"),
    }
}

fn kind_name(k: SectionKind) -> String {
    match k {
        SectionKind::Raw => "raw".into(),
        SectionKind::SpscRing => "spsc ring".into(),
        SectionKind::MpscRing => "mpsc ring".into(),
        SectionKind::Arena => "arena".into(),
        SectionKind::Event => "event".into(),
        SectionKind::Mutex => "mutex".into(),
        SectionKind::User(n) => format!("user {n}"),
        _ => "unknown".into(),
    }
}

/// The whole view, and whether no problem was found.
pub(crate) fn report(obs: &Observer) -> (String, bool) {
    let mut s = String::new();
    let mut problems: Vec<String> = Vec::new();
    let peers = obs.peers();
    let sections = obs.sections();
    let _ = writeln!(
        s,
        "region \"{}\": {}, {} bytes, {} section(s), {} peer slots",
        obs.name(),
        match obs.backing() {
            Backing::Socket => "sealed memfd served over a socket",
            Backing::ShmFile => "file /dev/shm/NAME",
            _ => "memfd",
        }
        .replace("NAME", obs.name()),
        group(obs.len() as u64),
        sections.len(),
        obs.max_peers()
    );
    let c = obs.creator();
    let _ = writeln!(
        s,
        "creator: pid {} ({})",
        c.pid,
        if obs.creator_alive() { "alive" } else { "dead" }
    );
    let _ = writeln!(s, "sections:");
    for sec in &sections {
        let _ = writeln!(
            s,
            "  #{} {}: {} bytes at offset {}",
            sec.id.0,
            kind_name(sec.kind),
            group(sec.len as u64),
            group(sec.offset as u64)
        );
        let body = section_body(obs, sec, &peers, &mut problems);
        for line in body.lines() {
            let _ = writeln!(s, "     {line}");
        }
    }
    let _ = writeln!(
        s,
        "peers ({} of {} slots held):",
        peers.len(),
        obs.max_peers()
    );
    let now = polycephaly::sync::clock::monotonic_ns();
    for p in &peers {
        let beat = if p.heartbeat == 0 || p.heartbeat > now {
            "no heartbeat".to_owned()
        } else {
            format!("heartbeat {:.1} s ago", (now - p.heartbeat) as f64 / 1e9)
        };
        let _ = writeln!(
            s,
            "  peer {}: pid {}, role {}, {}, {beat}",
            p.id,
            p.pid,
            p.role,
            if p.alive { "alive" } else { "dead" }
        );
    }
    if problems.is_empty() {
        let _ = writeln!(s, "problems: none");
    } else {
        let _ = writeln!(s, "problems ({}):", problems.len());
        for p in &problems {
            let _ = writeln!(s, "  {p}");
        }
    }
    (s, problems.is_empty())
}

/// The lines describing one section; its problems go to `problems`.
fn section_body(
    obs: &Observer,
    sec: &SectionInfo,
    peers: &[PeerInfo],
    problems: &mut Vec<String>,
) -> String {
    let mut note = |what: Result<String, ObserveError>, found: Vec<String>| match what {
        Ok(text) => {
            problems.extend(
                found
                    .into_iter()
                    .map(|p| format!("section {}: {p}", sec.id.0)),
            );
            text
        }
        Err(e) => {
            problems.push(e.to_string());
            format!("unreadable: {e}")
        }
    };
    match sec.kind {
        SectionKind::SpscRing => match polycephaly::ring::spsc::observe(obs, sec.id) {
            Ok(r) => {
                let p = r.problems.clone();
                note(Ok(ring(&r, peers)), p)
            }
            Err(e) => note(Err(e), Vec::new()),
        },
        SectionKind::MpscRing => match polycephaly::ring::mpsc::observe(obs, sec.id) {
            Ok(r) => {
                let p = r.problems.clone();
                note(Ok(ring(&r, peers)), p)
            }
            Err(e) => note(Err(e), Vec::new()),
        },
        SectionKind::Arena => match polycephaly::arena::observe::observe(obs, sec.id) {
            Ok(a) => {
                let p = a
                    .lanes
                    .iter()
                    .flat_map(|l| {
                        l.problems
                            .iter()
                            .map(move |p| format!("lane {}: {p}", l.index))
                    })
                    .collect();
                note(Ok(arena(&a, peers)), p)
            }
            Err(e) => note(Err(e), Vec::new()),
        },
        SectionKind::Event => match polycephaly::lock::observe_event(obs, sec.id) {
            Ok(e) => {
                let p = e.problems.clone();
                note(Ok(event(&e)), p)
            }
            Err(e) => note(Err(e), Vec::new()),
        },
        SectionKind::Mutex => match polycephaly::lock::observe_mutex(obs, sec.id) {
            Ok(m) => {
                let p = m.problems.clone();
                note(Ok(mutex(&m, peers)), p)
            }
            Err(e) => note(Err(e), Vec::new()),
        },
        _ => String::new(),
    }
}

fn ring(r: &RingState, peers: &[PeerInfo]) -> String {
    let mut s = String::new();
    let used = r.used();
    let _ = write!(
        s,
        "capacity {} B; head {}, tail {}",
        group(r.capacity),
        group(r.head),
        group(r.tail)
    );
    if let Some(end) = r.release_end.filter(|e| *e != r.head) {
        let _ = write!(s, ", consumed to {} (released lazily)", group(end));
    }
    let _ = writeln!(
        s,
        "; used {} B ({:.1} %)",
        group(used),
        used as f64 * 100.0 / r.capacity.max(1) as f64
    );
    match r.frames {
        Some(f) => {
            let _ = write!(
                s,
                "frames: {}{} message(s), {} B payload",
                if f.more { "at least " } else { "" },
                group(f.messages),
                group(f.payload)
            );
            if f.padding > 0 {
                let _ = write!(s, ", {} padding", f.padding);
            }
            if f.in_flight > 0 {
                let _ = write!(s, ", {} being written", f.in_flight);
            }
            if f.abandoned > 0 {
                let _ = write!(s, ", {} abandoned", f.abandoned);
            }
            let _ = writeln!(s);
        }
        None if r.problems.is_empty() => {
            let _ = writeln!(s, "frames: not counted (the ring moved during every look)");
        }
        None => {
            let _ = writeln!(s, "frames: not counted (see problems)");
        }
    }
    let producers = if r.producers.is_empty() {
        "none".to_owned()
    } else {
        r.producers
            .iter()
            .map(|p| who(*p, peers))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = write!(s, "producer(s): {producers}");
    if let Some(n) = r.producer_attaches {
        let _ = write!(s, " ({n} attach(es))");
    }
    let _ = writeln!(
        s,
        "; consumer: {} ({} attach(es))",
        r.consumer
            .map_or_else(|| "none".to_owned(), |c| who(c, peers)),
        r.consumer_attaches
    );
    let _ = writeln!(
        s,
        "waiting: {} on data, {} on space; poisoned: {}",
        r.data_sleepers,
        r.space_sleepers,
        if r.poisoned { "YES" } else { "no" }
    );
    s
}

fn arena(a: &ArenaState, peers: &[PeerInfo]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} lane(s) x {} B, {} block descriptors each",
        a.lane_count,
        group(a.lane_len),
        a.blocks_per_lane
    );
    let mut idle = 0;
    for l in &a.lanes {
        if l.writer.is_none() && l.blocks.is_empty() && l.problems.is_empty() {
            idle += 1;
            continue;
        }
        let _ = writeln!(
            s,
            "lane {}: writer {} ({} attach(es)); blocks {}..{}: {} live, {} B; {} waiting",
            l.index,
            l.writer
                .map_or_else(|| "none".to_owned(), |w| who(w, peers)),
            l.attaches,
            l.head_seq,
            l.next_seq,
            l.blocks.len(),
            group(l.live_bytes()),
            l.sleepers
        );
        for b in l.blocks.iter().take(BLOCKS_SHOWN) {
            let status = match b.status {
                BlockStatus::Allocated => "being written",
                BlockStatus::Published => "published",
                BlockStatus::Retired => "retired",
                BlockStatus::Free => "free",
                _ => "moved on",
            };
            let _ = writeln!(
                s,
                "  block {}: {status}, {} B at {}, {} read guard(s), {} reader(s) owed",
                b.seq,
                group(b.bytes),
                group(b.start),
                b.guards,
                b.owed
            );
        }
        if l.blocks.len() > BLOCKS_SHOWN {
            let _ = writeln!(s, "  ... and {} more", l.blocks.len() - BLOCKS_SHOWN);
        }
    }
    if idle > 0 {
        let _ = writeln!(s, "{idle} idle lane(s) (no writer, no live block)");
    }
    s
}

fn event(e: &EventState) -> String {
    format!(
        "{}, {}, {} waiting\n",
        if e.signalled {
            "signalled"
        } else {
            "not signalled"
        },
        match e.mode {
            Some(EventMode::AutoReset) => "auto-reset",
            Some(EventMode::ManualReset) => "manual-reset",
            _ => "mode not bound yet",
        },
        e.sleepers
    )
}

fn mutex(m: &MutexState, peers: &[PeerInfo]) -> String {
    let mut s = String::new();
    match m.locked_by {
        None => {
            let _ = write!(s, "unlocked");
        }
        Some(tag) => {
            // Region-owned mutexes tag with the peer id (bit 31 dropped).
            let owner = PeerId::from_raw(tag)
                .and_then(|id| {
                    peers
                        .iter()
                        .find(|p| p.id.to_raw() & 0x7FFF_FFFF == id.to_raw())
                })
                .map_or_else(|| format!("tag {tag:#x}"), |p| who(p.id, peers));
            let _ = write!(s, "locked by {owner}");
            match m.owner_alive {
                Some(true) => {}
                Some(false) => {
                    let _ = write!(s, " (its process is dead: the next locker takes over)");
                }
                None => {}
            }
            if m.contended {
                let _ = write!(s, ", waiters asleep");
            }
        }
    }
    let _ = writeln!(
        s,
        "; {}",
        if m.poisoned {
            "poisoned (an owner died holding it)"
        } else {
            "consistent"
        }
    );
    if let Some((_, p)) = m.last_owner {
        let _ = writeln!(s, "last locked by pid {}", p.pid);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_digits() {
        assert_eq!(group(0), "0");
        assert_eq!(group(1234), "1,234");
        assert_eq!(group(1_000_000), "1,000,000");
    }
}
