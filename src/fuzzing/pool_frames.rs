//! The pool's frames from both ends: a task frame as a drone decodes and
//! runs it, the result as the master checks and decodes it, and arbitrary
//! bytes as a hostile drone's result. Never a panic, never an allocation
//! that grows with a forged count.
//!
//! Input: `[task, count, form, body...]`: `task` picks a task of
//! a small registry (values, pairs, a slice; beyond: unknown), `count` the
//! chunk's items, `body` the chunk's input bytes, and `form` how the same
//! body is read as a result.

use super::Input;
use crate::pool::decode_part;
use crate::pool::drone::run_items;
use crate::pool::master::{Part, check_body};
use crate::pool::task::{AnyTask, SliceTask, Task, Task2};

static HALVE: Task<u64, u64> = Task::new("halve", |x| x / 2);
static MIX: Task2<u32, u16, u64> = Task2::new("mix", |a, b| u64::from(a) << 16 | u64::from(b));
// No task panics: libFuzzer's panic hook aborts even on a caught panic
// (the panic path is covered by tests/pool.rs).
static SPREAD: SliceTask<u64, Vec<u64>> = SliceTask::new_vec("spread", |xs| {
    xs.iter().map(|x| x.wrapping_mul(3)).collect()
});
static TASKS: [&dyn AnyTask; 3] = [&HALVE, &MIX, &SPREAD];

/// The fuzz entry point (see the module docs). Never panics.
pub fn pool_frames(data: &[u8]) {
    let mut input = Input(data);
    let (Some(which), Some(count), Some(form)) = (input.byte(), input.byte(), input.byte()) else {
        return;
    };
    let count = usize::from(count);
    let body = input.0;
    let form = u32::from(form % 3);
    let task = TASKS.get(usize::from(which % 4)).copied();

    // The drone's side, then the master's on what the drone made: a
    // drone's own answer always passes the master's checks.
    if let Some(task) = task {
        let erased = task.erased();
        let mut out = Vec::new();
        let made = run_items(erased, count, body, &mut out, None);
        let body = check_body(made, count, erased.out_fixed, out)
            .unwrap_or_else(|| panic!("the master refused a drone's own answer"));
        let part = Part {
            first: 0,
            count,
            body,
        };
        let mut seen = 0;
        let _ = decode_part(
            &part,
            task.name(),
            |b: &[u8]| Some(b.len()),
            |_, _| {
                seen += 1;
                Ok(())
            },
        );
    }

    // A hostile drone's answer: checked, then decoded, or refused.
    let fixed = task.and_then(|t| t.erased().out_fixed);
    if let Some(body) = check_body(form, count, fixed, body.to_vec()) {
        let part = Part {
            first: 0,
            count,
            body,
        };
        let mut seen = 0;
        let r = decode_part(
            &part,
            "fuzz",
            |b: &[u8]| (b.len() == 8).then_some(()),
            |_, r| {
                seen += 1;
                r.map(drop)
            },
        );
        assert!(r.is_err() || seen == count, "a checked answer lost items");
    }
}
