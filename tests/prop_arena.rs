//! Property test: random sequences of allocations (zeroed or not,
//! published for a count or for named readers, or dropped unpublished),
//! reads, releases, reader deaths (with a new reader in the dead one's
//! slot), explicit reclaims and writer hand-overs on a small heap arena,
//! against a plain model: the live blocks in lane order, each
//! descriptor's hold words, and the placement rule. Lanes are tiny, so
//! wrap-around and full lanes happen all the time; every `Full` the
//! implementation reports is one the model predicts, and every block
//! read holds the values it was filled with until it is released.

use std::collections::VecDeque;
use std::sync::Arc;

use polycephaly::arena::{
    ArenaReader, ArenaSpec, ArenaWriter, BlockHandle, HeapArena, ReadError, ReadGuard, Readers,
    TryAllocError,
};
use polycephaly::region::PeerId;
use proptest::prelude::*;

const READERS: usize = 3;

#[derive(Debug, Clone)]
enum Mode {
    Count(u32),
    /// A mask of reader indices.
    Named(u8),
}

#[derive(Debug, Clone)]
enum Op {
    Alloc {
        n: usize,
        mode: Mode,
        publish: bool,
        zeroed: bool,
    },
    Read {
        r: usize,
        pick: usize,
    },
    Release {
        r: usize,
        pick: usize,
    },
    Kill {
        r: usize,
    },
    Reclaim,
    NewWriter,
}

fn op() -> impl Strategy<Value = Op> {
    let mode = prop_oneof![
        (0u32..4).prop_map(Mode::Count),
        (0u8..8).prop_map(Mode::Named),
    ];
    prop_oneof![
        6 => (0usize..41, mode, prop::bool::weighted(0.9), any::<bool>())
            .prop_map(|(n, mode, publish, zeroed)| Op::Alloc { n, mode, publish, zeroed }),
        6 => (0..READERS, any::<usize>()).prop_map(|(r, pick)| Op::Read { r, pick }),
        5 => (0..READERS, any::<usize>()).prop_map(|(r, pick)| Op::Release { r, pick }),
        1 => (0..READERS).prop_map(|r| Op::Kill { r }),
        1 => Just(Op::Reclaim),
        1 => Just(Op::NewWriter),
    ]
}

/// A hold word: its peer, owed bit, count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Word {
    peer: Option<PeerId>,
    owed: bool,
    count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Published,
    Retired,
}

#[derive(Debug, Clone)]
struct Block {
    handle: BlockHandle,
    start: u64,
    end: u64,
    count_mode: bool,
    remaining: u32,
    state: State,
}

/// The model: live blocks in lane order, hold words per descriptor, who
/// is alive, and the handles already reclaimed.
struct Model {
    cap: u64,
    blocks: usize,
    live: VecDeque<Block>,
    words: Vec<Vec<Word>>,
    dead: Vec<PeerId>,
    gone: Vec<BlockHandle>,
}

impl Model {
    fn alive(&self, id: Option<PeerId>) -> bool {
        id.is_some_and(|id| !self.dead.contains(&id))
    }

    fn words_of(&mut self, seq: u64) -> &mut Vec<Word> {
        let i = seq as usize % self.blocks;
        &mut self.words[i]
    }

    fn held(&self, seq: u64, owed: bool, slow: bool) -> bool {
        self.words[seq as usize % self.blocks]
            .iter()
            .any(|w| (w.count > 0 || (owed && w.owed)) && (!slow || self.alive(w.peer)))
    }

    /// One reclaim pass, as the writer runs it.
    fn pass(&mut self, slow: bool) {
        while let Some(b) = self.live.front() {
            let seq = b.handle.generation();
            if b.state == State::Published {
                let done = if b.count_mode {
                    b.remaining == 0
                } else {
                    !self.held(seq, true, slow)
                };
                if !done {
                    break;
                }
                self.live[0].state = State::Retired;
            }
            if self.held(seq, false, slow) {
                break;
            }
            if slow {
                let dead = self.dead.clone();
                for w in self.words_of(seq).iter_mut() {
                    if (w.count > 0 || w.owed) && w.peer.is_none_or(|p| dead.contains(&p)) {
                        *w = Word::default();
                    }
                }
            }
            let b = self.live.pop_front().unwrap();
            self.gone.push(b.handle);
        }
    }

    fn place(&self, span: u64) -> Option<u64> {
        if self.live.len() >= self.blocks {
            return None;
        }
        let (Some(first), Some(last)) = (self.live.front(), self.live.back()) else {
            return (span <= self.cap).then_some(0);
        };
        let (head, tail) = (first.start, last.end);
        if head < tail {
            if span <= self.cap - tail {
                Some(tail)
            } else {
                (span <= head).then_some(0)
            }
        } else {
            (span <= head - tail).then_some(tail)
        }
    }

    /// Where a try_alloc of `span` bytes goes: fast pass, then slow pass.
    fn alloc(&mut self, span: u64) -> Option<u64> {
        self.pass(false);
        if let Some(s) = self.place(span) {
            return Some(s);
        }
        self.pass(true);
        self.place(span)
    }
}

fn span(bytes: u64) -> u64 {
    bytes.div_ceil(64).max(1) * 64
}

struct Reader {
    r: &'static ArenaReader,
    guards: Vec<(ReadGuard<'static, u64>, u64)>,
}

fn new_reader(a: &Arc<HeapArena>) -> Reader {
    Reader {
        r: Box::leak(Box::new(a.reader().unwrap())),
        guards: Vec::new(),
    }
}

fn run(cap: usize, blocks: u32, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let a = HeapArena::new(ArenaSpec::new(1, cap).with_blocks(blocks)).unwrap();
    let mut w: ArenaWriter = a.writer().unwrap();
    let mut readers: Vec<Reader> = (0..READERS).map(|_| new_reader(&a)).collect();
    let mut m = Model {
        cap: cap as u64,
        blocks: blocks as usize,
        live: VecDeque::new(),
        words: vec![vec![Word::default(); 48]; blocks as usize],
        dead: Vec::new(),
        gone: Vec::new(),
    };
    let mut next_value = 1u64;
    for op in ops {
        match op {
            Op::Alloc {
                n,
                mode,
                publish,
                zeroed,
            } => {
                let bytes = n as u64 * 8;
                let too_large = bytes > m.cap;
                let want = if too_large {
                    None
                } else {
                    m.alloc(span(bytes))
                };
                let v = next_value;
                next_value += 1;
                let block = if zeroed {
                    w.try_alloc::<u64>(n).map(|mut b| {
                        assert!(b.iter().all(|&x| x == 0));
                        b.fill(v);
                        b
                    })
                } else {
                    w.try_alloc_uninit::<u64>(n).map(|b| b.fill(v))
                };
                let block = match (block, want) {
                    (Ok(b), Some(_)) => b,
                    (Err(TryAllocError::Full), None) if !too_large => continue,
                    (Err(TryAllocError::TooLarge { .. }), None) if too_large => continue,
                    (got, want) => {
                        return Err(TestCaseError::fail(format!(
                            "alloc of {n}: got {:?}, model {want:?}",
                            got.map(|_| ())
                        )));
                    }
                };
                if !publish {
                    drop(block);
                    continue;
                }
                let ids: Vec<PeerId> = match mode {
                    Mode::Named(mask) => (0..READERS)
                        .filter(|i| mask & (1 << i) != 0)
                        .map(|i| readers[i].r.peer_id())
                        .collect(),
                    Mode::Count(_) => Vec::new(),
                };
                let (count_mode, remaining, h) = match mode {
                    Mode::Count(k) => (true, k, block.publish(Readers::Count(k))),
                    Mode::Named(_) => (false, 0, block.publish(Readers::Peers(&ids))),
                };
                prop_assert_eq!(Some(h.offset()), want);
                for id in ids {
                    let word = &mut m.words_of(h.generation())[id.slot()];
                    if word.peer == Some(id) {
                        word.owed = true;
                    } else {
                        *word = Word {
                            peer: Some(id),
                            owed: true,
                            count: 0,
                        };
                    }
                }
                m.live.push_back(Block {
                    handle: h,
                    start: h.offset(),
                    end: h.offset() + span(bytes),
                    count_mode,
                    remaining,
                    state: State::Published,
                });
            }
            Op::Read { r, pick } => {
                let all: Vec<BlockHandle> = m
                    .live
                    .iter()
                    .map(|b| b.handle)
                    .chain(m.gone.iter().rev().take(4).copied())
                    .collect();
                if all.is_empty() {
                    continue;
                }
                let h = all[pick % all.len()];
                let me = readers[r].r.peer_id();
                let got = readers[r].r.read::<u64>(&h);
                let live = m
                    .live
                    .iter_mut()
                    .find(|b| b.handle == h && b.state == State::Published);
                match (got, live) {
                    (Ok(g), Some(b)) => {
                        let v = g.first().copied().unwrap_or(0);
                        prop_assert!(g.iter().all(|&x| x == v), "mixed values");
                        if b.count_mode {
                            b.remaining = b.remaining.saturating_sub(1);
                        }
                        let count_mode = b.count_mode;
                        let word = &mut m.words_of(h.generation())[me.slot()];
                        if word.peer == Some(me) {
                            word.count += 1;
                            if !count_mode {
                                word.owed = false;
                            }
                        } else {
                            *word = Word {
                                peer: Some(me),
                                owed: false,
                                count: 1,
                            };
                        }
                        readers[r].guards.push((g, v));
                    }
                    (Err(ReadError::Stale), None) => {}
                    (got, model) => {
                        return Err(TestCaseError::fail(format!(
                            "read: got {:?}, model live {:?}",
                            got.map(|_| ()),
                            model.map(|b| b.state)
                        )));
                    }
                }
            }
            Op::Release { r, pick } => {
                let rd = &mut readers[r];
                if rd.guards.is_empty() {
                    continue;
                }
                let i = pick % rd.guards.len();
                let (g, v) = rd.guards.swap_remove(i);
                prop_assert!(g.iter().all(|&x| x == v), "a held block changed");
                let (seq, me) = (g.handle().generation(), rd.r.peer_id());
                drop(g);
                let word = &mut m.words_of(seq)[me.slot()];
                if word.peer == Some(me) && word.count > 0 {
                    word.count -= 1;
                }
            }
            Op::Kill { r } => {
                let id = readers[r].r.peer_id();
                a.mark_dead(id);
                m.dead.push(id);
                // Its process is gone: its guards are never released.
                for g in readers[r].guards.drain(..) {
                    std::mem::forget(g);
                }
                readers[r] = new_reader(&a);
                prop_assert_eq!(readers[r].r.peer_id().slot(), id.slot());
            }
            Op::Reclaim => {
                m.pass(true);
                prop_assert_eq!(w.reclaim().unwrap(), m.live.len());
            }
            Op::NewWriter => {
                drop(w);
                w = a.writer().unwrap();
            }
        }
        prop_assert_eq!(w.live_blocks(), m.live.len());
    }
    // Every guard still holds its values.
    for rd in &readers {
        for (g, v) in &rd.guards {
            prop_assert!(g.iter().all(|x| x == v));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arena_matches_the_model(
        cap in prop::sample::select(vec![256usize, 320, 512, 1024]),
        blocks in prop::sample::select(vec![2u32, 4, 8]),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        run(cap, blocks, ops)?;
    }
}
