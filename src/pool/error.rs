//! The pool's errors.

use std::time::Duration;

/// Why one task (one item of a job) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The function panicked; the drone lives on.
    #[error("panicked: {message}")]
    Panicked {
        /// The panic's message and place.
        message: String,
    },
    /// Every drone that ran the task died while running it, `drones` of
    /// them (the first run and each retry).
    #[error("killed {drones} drone(s) that ran it (the last one: {last_exit})")]
    Crashed {
        /// Drones it killed.
        drones: u32,
        /// How the last one ended (`signal: 9 (SIGKILL)`).
        last_exit: String,
    },
    /// It ran longer than the pool's task time-out, on every try; each
    /// stuck drone was killed and replaced.
    #[error("ran longer than {timeout:?} on {drones} drone(s), which were killed")]
    TimedOut {
        /// The pool's task time-out.
        timeout: Duration,
        /// Drones it got stuck in.
        drones: u32,
    },
    /// The drone could not make the task's input from what it got (a bug
    /// or a hostile peer), or the output does not fit.
    #[error("bad input: {reason}")]
    BadInput {
        /// What did not add up.
        reason: String,
    },
    /// Its input or its output is larger than an arena lane (raise
    /// `PoolBuilder::arena_lane`).
    #[error("{bytes} bytes do not fit the arena's lane of {max}")]
    TooLarge {
        /// The input's or output's size.
        bytes: u64,
        /// The lane's size.
        max: u64,
    },
    /// The output's bytes do not make the task's output type.
    #[error("the drone's output does not decode as the task's output")]
    BadOutput,
    /// The drone does not know the task (its registry differs).
    #[error("the drone does not have it")]
    UnknownToDrone,
}

/// Why the pool, or a call on it, failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// `main` does not call [`serve`](super::serve) before building a pool.
    #[error(
        "this program never called polycephaly::pool::serve(&TASKS): make it the first line of main (drones are this program started again, and serve is what turns them into drones)"
    )]
    NotServing,
    /// Two tasks of the registry have this name.
    #[error("two tasks of the registry are named {name:?}: names must be unique")]
    DuplicateTask {
        /// The name.
        name: &'static str,
    },
    /// No task of the registry has this name.
    #[error("task {name:?} is not in the registry given to serve: add it there")]
    UnknownTask {
        /// The name.
        name: &'static str,
    },
    /// The registry's task of this name is another function or has
    /// another signature.
    #[error("task {name:?} in the registry is {registered}, but the one called is {called}")]
    TaskMismatch {
        /// The name.
        name: &'static str,
        /// The registered task's signature.
        registered: String,
        /// The called task's signature.
        called: String,
    },
    /// More drones than the pool can hold.
    #[error("{asked} drones asked for; a pool holds 1 to {max}")]
    DroneCount {
        /// Drones asked for.
        asked: usize,
        /// The most a pool holds.
        max: usize,
    },
    /// The two inputs of a `zip_map` differ in length.
    #[error("zip_map over inputs of {left} and {right} items")]
    LengthMismatch {
        /// Items on the left.
        left: usize,
        /// Items on the right.
        right: usize,
    },
    /// An input larger than the arena's lanes.
    #[error(
        "an input of {bytes} bytes does not fit the arena's lane of {max}: raise PoolBuilder::arena_lane"
    )]
    TooLarge {
        /// The input's size.
        bytes: u64,
        /// The lane's size.
        max: u64,
    },
    /// The master's arena lane is held by calls whose results were not
    /// taken yet; this input would fit once they are.
    #[error(
        "an input of {bytes} bytes does not fit the free part of the arena's lane of {max}: take the results of earlier calls first, or raise PoolBuilder::arena_lane"
    )]
    ArenaFull {
        /// The input's size.
        bytes: u64,
        /// The lane's size.
        max: u64,
    },
    /// A task failed.
    #[error("task {task:?}, item {index}: {error}")]
    Task {
        /// The task's name.
        task: &'static str,
        /// The item's index in the call's input.
        index: usize,
        /// Why.
        error: TaskError,
    },
    /// A drone could not be started, or ended before it said hello.
    #[error("drone {slot} did not start: {reason}")]
    DroneStart {
        /// The drone's slot.
        slot: usize,
        /// What happened.
        reason: String,
    },
    /// The drones did not all say hello within the start time-out.
    #[error("drones did not start within {0:?}")]
    StartTimeout(Duration),
    /// Every drone slot failed to restart: the pool cannot run tasks.
    #[error("no drone is left: {reason}")]
    NoDrones {
        /// The last failure.
        reason: String,
    },
    /// A wait's time-out passed; the task is still pending.
    #[error("timed out waiting for the result")]
    Timeout,
    /// The result was already taken from this handle.
    #[error("the result was already taken")]
    Taken,
    /// Making the pool's shared region failed.
    #[error("the pool's region: {0}")]
    Region(#[from] crate::region::CreateError),
    /// A structure in the pool's region could not be attached or formatted.
    #[error("the pool's region: {0}")]
    Attach(#[from] crate::AttachError),
    /// The arena could not be formatted.
    #[error("the pool's arena: {0}")]
    Arena(#[from] crate::arena::FormatError),
    /// The rings' or the arena's sizes.
    #[error("the pool's sizes: {0}")]
    Size(String),
    /// A system call failed (the keeper thread, an eventfd).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl PoolError {
    /// The task error inside, if this is one.
    pub fn task_error(&self) -> Option<&TaskError> {
        match self {
            Self::Task { error, .. } => Some(error),
            _ => None,
        }
    }
}
