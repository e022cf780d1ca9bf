//! The pool tasks of the `polycephaly` command, in one registry: `main`
//! hands it to [`polycephaly::pool::serve`] first thing, so that the
//! command's drones (the command started again) know every task.
//!
//! Each command keeps its tasks as `pub static`s in its own module; this
//! list is the one place that names them all.

use polycephaly::pool::Registry;

use crate::{assess, demo, fractal, pool, soak};

/// Every task the command's drones run.
pub static TASKS: Registry = Registry::new(&[
    &demo::ADD,
    &demo::COLLATZ,
    &demo::SUM_SINES,
    &fractal::render::TILE,
    &assess::task::ANALYSE,
    &pool::EMPTY,
    &pool::SUM,
    &pool::TINY,
    &soak::SOAK_MIX,
    &soak::SOAK_SUM,
]);
