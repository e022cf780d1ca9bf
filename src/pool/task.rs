//! Tasks: plain functions with a name, typed by what they take and give;
//! and the registry that drones look them up in.
//!
//! A task is a `static` made from a function or a closure that captures
//! nothing. Its type carries its input and output, so the master can only
//! hand it what the function takes:
//!
//! ```
//! use polycephaly::pool::{Registry, SliceTask, Task, Task2};
//!
//! static ADD: Task2<u64, u64, u64> = Task2::new("add", |a, b| a + b);
//! static SQUARE: Task<f64, f64> = Task::new("square", |x| x * x);
//! static SUM: SliceTask<u64, u64> = SliceTask::new("sum", |xs| xs.iter().sum());
//! static RANGE: Task<u32, Vec<u32>> = Task::new_vec("range", |n| (0..n).collect());
//!
//! static TASKS: Registry = Registry::new(&[&ADD, &SQUARE, &SUM, &RANGE]);
//! # assert_eq!(TASKS.len(), 4);
//! ```
//!
//! Inputs are [`Pod`] values (a [`Task`] takes one, a [`Task2`] two) or a
//! slice of them (a [`SliceTask`]); outputs are a `Pod` value (`new`) or a
//! `Vec` of them (`new_vec`). Everything crosses as bytes whose length the
//! receiver checks, so a value can never be reinterpreted as another type.

use std::panic::{AssertUnwindSafe, catch_unwind};

use bytemuck::Pod;

/// How an output crosses: its encoding and decoding, chosen by the
/// constructor (`new` for a `Pod` value, `new_vec` for a `Vec` of them).
struct Codec<O> {
    /// `Some(n)`: every output is exactly `n` bytes.
    fixed: Option<usize>,
    encode: fn(&O, &mut Vec<u8>),
    decode: fn(&[u8]) -> Option<O>,
    /// The output type, for the signature.
    name: fn() -> &'static str,
}

impl<O> Clone for Codec<O> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<O> Copy for Codec<O> {}

fn encode_pod<O: Pod>(o: &O, out: &mut Vec<u8>) {
    out.extend_from_slice(bytemuck::bytes_of(o));
}

fn decode_pod<O: Pod>(bytes: &[u8]) -> Option<O> {
    (bytes.len() == size_of::<O>()).then(|| bytemuck::pod_read_unaligned(bytes))
}

/// `bytes` (a whole number of `T`s) copied into a `Vec<T>`.
fn collect<T: Pod>(bytes: &[u8]) -> Vec<T> {
    let mut v = vec![T::zeroed(); bytes.len() / size_of::<T>()];
    bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(bytes);
    v
}

#[allow(clippy::ptr_arg)] // the codec's signature is `fn(&O, ...)` with `O = Vec<T>`
fn encode_vec<T: Pod>(o: &Vec<T>, out: &mut Vec<u8>) {
    out.extend_from_slice(bytemuck::cast_slice(o));
}

fn decode_vec<T: Pod>(bytes: &[u8]) -> Option<Vec<T>> {
    if size_of::<T>() == 0 {
        return bytes.is_empty().then(Vec::new);
    }
    (bytes.len() % size_of::<T>() == 0).then(|| collect(bytes))
}

impl<O: Pod> Codec<O> {
    const POD: Self = Self {
        fixed: Some(size_of::<O>()),
        encode: encode_pod::<O>,
        decode: decode_pod::<O>,
        name: core::any::type_name::<O>,
    };
}

impl<T: Pod> Codec<Vec<T>> {
    const VEC: Self = Self {
        fixed: None,
        encode: encode_vec::<T>,
        decode: decode_vec::<T>,
        name: core::any::type_name::<Vec<T>>,
    };
}

/// A task taking one `Pod` value: `fn(I) -> O`. Used by
/// [`Pool::map`](super::Pool::map), [`Pool::submit`](super::Pool::submit)
/// and [`Pool::stream`](super::Pool::stream).
pub struct Task<I, O> {
    name: &'static str,
    run: fn(I) -> O,
    out: Codec<O>,
}

/// A task taking two `Pod` values: `fn(A, B) -> O`. Used by
/// [`Pool::zip_map`](super::Pool::zip_map) and
/// [`Pool::submit2`](super::Pool::submit2).
pub struct Task2<A, B, O> {
    name: &'static str,
    run: fn(A, B) -> O,
    out: Codec<O>,
}

/// A task taking a slice of `Pod` values: `fn(&[T]) -> O`. Large slices go
/// through the arena and are read in place by the drone. Used by
/// [`Pool::submit_slice`](super::Pool::submit_slice) and
/// [`Pool::map_chunks`](super::Pool::map_chunks).
pub struct SliceTask<T, O> {
    name: &'static str,
    run: fn(&[T]) -> O,
    out: Codec<O>,
}

impl<I: Pod, O: Pod> Task<I, O> {
    /// The task `name`, running `run`, giving a `Pod` value.
    pub const fn new(name: &'static str, run: fn(I) -> O) -> Self {
        Self {
            name,
            run,
            out: Codec::POD,
        }
    }
}

impl<I: Pod, T: Pod> Task<I, Vec<T>> {
    /// The task `name`, running `run`, giving a `Vec` of `Pod` values.
    pub const fn new_vec(name: &'static str, run: fn(I) -> Vec<T>) -> Self {
        Self {
            name,
            run,
            out: Codec::VEC,
        }
    }
}

impl<A: Pod, B: Pod, O: Pod> Task2<A, B, O> {
    /// The task `name`, running `run`, giving a `Pod` value.
    pub const fn new(name: &'static str, run: fn(A, B) -> O) -> Self {
        Self {
            name,
            run,
            out: Codec::POD,
        }
    }
}

impl<A: Pod, B: Pod, T: Pod> Task2<A, B, Vec<T>> {
    /// The task `name`, running `run`, giving a `Vec` of `Pod` values.
    pub const fn new_vec(name: &'static str, run: fn(A, B) -> Vec<T>) -> Self {
        Self {
            name,
            run,
            out: Codec::VEC,
        }
    }
}

impl<T: Pod, O: Pod> SliceTask<T, O> {
    /// The task `name`, running `run`, giving a `Pod` value.
    pub const fn new(name: &'static str, run: fn(&[T]) -> O) -> Self {
        Self {
            name,
            run,
            out: Codec::POD,
        }
    }
}

impl<T: Pod, U: Pod> SliceTask<T, Vec<U>> {
    /// The task `name`, running `run`, giving a `Vec` of `Pod` values.
    pub const fn new_vec(name: &'static str, run: fn(&[T]) -> Vec<U>) -> Self {
        Self {
            name,
            run,
            out: Codec::VEC,
        }
    }
}

macro_rules! debug_task {
    ($ty:ident < $($p:ident),* >) => {
        impl<$($p),*> core::fmt::Debug for $ty<$($p),*> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("name", &self.name)
                    .field("signature", &self.signature_string())
                    .finish()
            }
        }
    };
}
debug_task!(Task<I, O>);
debug_task!(Task2<A, B, O>);
debug_task!(SliceTask<T, O>);

impl<I, O> Task<I, O> {
    /// How the master decodes an output.
    pub(crate) fn decode_fn(&self) -> fn(&[u8]) -> Option<O> {
        self.out.decode
    }
    /// The task's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
    fn signature_string(&self) -> String {
        format!(
            "fn({}) -> {}",
            core::any::type_name::<I>(),
            (self.out.name)()
        )
    }
}
impl<A, B, O> Task2<A, B, O> {
    /// How the master decodes an output.
    pub(crate) fn decode_fn(&self) -> fn(&[u8]) -> Option<O> {
        self.out.decode
    }
    /// The task's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
    fn signature_string(&self) -> String {
        format!(
            "fn({}, {}) -> {}",
            core::any::type_name::<A>(),
            core::any::type_name::<B>(),
            (self.out.name)()
        )
    }
}
impl<T, O> SliceTask<T, O> {
    /// How the master decodes an output.
    pub(crate) fn decode_fn(&self) -> fn(&[u8]) -> Option<O> {
        self.out.decode
    }
    /// The task's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
    fn signature_string(&self) -> String {
        format!(
            "fn(&[{}]) -> {}",
            core::any::type_name::<T>(),
            (self.out.name)()
        )
    }
}

/// What one item of a chunk came to, in a drone.
pub(crate) enum ItemOutcome {
    /// The output's bytes were appended.
    Done,
    /// The function panicked, with this message.
    Panicked(String),
    /// The input's bytes do not make this task's input.
    BadInput(&'static str),
}

pub(crate) mod sealed {
    /// Only this crate's task types are tasks.
    pub trait Sealed {}
}

/// A task of any type, as the registry holds it: implemented by [`Task`],
/// [`Task2`] and [`SliceTask`] only. `RefUnwindSafe` (a task is a name and
/// function pointers), so that a [`Pool`](super::Pool), which refers to its
/// registry, may be used across `catch_unwind`.
pub trait AnyTask: Sync + std::panic::RefUnwindSafe + sealed::Sealed {
    /// The task's name.
    fn name(&self) -> &'static str;
    /// The task's signature, in words (`fn(u64, u64) -> u64`).
    fn signature(&self) -> String;
    /// The drone's side, not part of the API.
    #[doc(hidden)]
    fn erased(&self) -> Erased<'_>;
}

/// A task's drone-side entry points, without its types.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct Erased<'a> {
    pub(crate) shape: Shape,
    /// Bytes per output, when fixed.
    pub(crate) out_fixed: Option<usize>,
    /// Runs item `i` of the chunk `input` (the chunk's bytes), appending
    /// its output to `out`.
    pub(crate) run: &'a dyn CallItem,
    /// Identifies the function (for the master's identity check).
    pub(crate) id: usize,
}

impl core::fmt::Debug for Erased<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Erased")
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

/// How a chunk's input bytes hold its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `count` values of `size` bytes, packed.
    Values { size: usize },
    /// `count` values of `a` bytes, then `count` values of `b` bytes.
    Pairs { a: usize, b: usize },
    /// One slice of `elem`-byte values (a chunk holds one item).
    Slice { elem: usize },
}

impl Shape {
    /// The input bytes of `count` items, or `None` when it overflows.
    pub(crate) fn input_len(self, count: usize) -> Option<usize> {
        match self {
            Self::Values { size } => size.checked_mul(count),
            Self::Pairs { a, b } => a.checked_add(b)?.checked_mul(count),
            Self::Slice { .. } => None,
        }
    }
}

/// Runs `f` and catches a panic, taking its message from the drone's panic
/// hook (or from the payload when no hook recorded one).
fn guarded<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        super::drone::take_panic_message().unwrap_or_else(|| {
            payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic with a payload that is not a string".to_owned())
        })
    })
}

fn finish<O>(r: Result<O, String>, codec: Codec<O>, out: &mut Vec<u8>) -> ItemOutcome {
    match r {
        Ok(o) => {
            (codec.encode)(&o, out);
            ItemOutcome::Done
        }
        Err(message) => ItemOutcome::Panicked(message),
    }
}

impl<I, O> sealed::Sealed for Task<I, O> {}
impl<I: Pod, O: 'static> AnyTask for Task<I, O> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn signature(&self) -> String {
        self.signature_string()
    }
    fn erased(&self) -> Erased<'_> {
        Erased {
            shape: Shape::Values {
                size: size_of::<I>(),
            },
            out_fixed: self.out.fixed,
            run: self,
            id: self.run as usize,
        }
    }
}

impl<I: Pod, O> Task<I, O> {
    fn call(&self, input: &[u8], _count: usize, i: usize, out: &mut Vec<u8>) -> ItemOutcome {
        let size = size_of::<I>();
        let Some(bytes) = i
            .checked_mul(size)
            .and_then(|at| input.get(at..at.checked_add(size)?))
        else {
            return ItemOutcome::BadInput("the chunk is shorter than its items");
        };
        let x: I = bytemuck::pod_read_unaligned(bytes);
        let run = self.run;
        finish(guarded(|| run(x)), self.out, out)
    }
}

impl<A, B, O> sealed::Sealed for Task2<A, B, O> {}
impl<A: Pod, B: Pod, O: 'static> AnyTask for Task2<A, B, O> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn signature(&self) -> String {
        self.signature_string()
    }
    fn erased(&self) -> Erased<'_> {
        Erased {
            shape: Shape::Pairs {
                a: size_of::<A>(),
                b: size_of::<B>(),
            },
            out_fixed: self.out.fixed,
            run: self,
            id: self.run as usize,
        }
    }
}

impl<A: Pod, B: Pod, O> Task2<A, B, O> {
    fn call(&self, input: &[u8], count: usize, i: usize, out: &mut Vec<u8>) -> ItemOutcome {
        let (sa, sb) = (size_of::<A>(), size_of::<B>());
        let at_a = i.checked_mul(sa);
        let at_b = count
            .checked_mul(sa)
            .and_then(|base| base.checked_add(i.checked_mul(sb)?));
        let (Some(ba), Some(bb)) = (
            at_a.and_then(|at| input.get(at..at.checked_add(sa)?)),
            at_b.and_then(|at| input.get(at..at.checked_add(sb)?)),
        ) else {
            return ItemOutcome::BadInput("the chunk is shorter than its items");
        };
        let (a, b): (A, B) = (
            bytemuck::pod_read_unaligned(ba),
            bytemuck::pod_read_unaligned(bb),
        );
        let run = self.run;
        finish(guarded(|| run(a, b)), self.out, out)
    }
}

impl<T, O> sealed::Sealed for SliceTask<T, O> {}
impl<T: Pod, O: 'static> AnyTask for SliceTask<T, O> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn signature(&self) -> String {
        self.signature_string()
    }
    fn erased(&self) -> Erased<'_> {
        Erased {
            shape: Shape::Slice {
                elem: size_of::<T>(),
            },
            out_fixed: self.out.fixed,
            run: self,
            id: self.run as usize,
        }
    }
}

impl<T: Pod, O> SliceTask<T, O> {
    fn call(&self, input: &[u8], _count: usize, _i: usize, out: &mut Vec<u8>) -> ItemOutcome {
        let run = self.run;
        let size = size_of::<T>();
        if size == 0 || input.len() % size != 0 {
            return ItemOutcome::BadInput("the slice's length is not a whole number of elements");
        }
        // In place when the bytes are aligned for `T` (the arena's blocks
        // and the ring's frames are aligned to 8); copied otherwise.
        match bytemuck::try_cast_slice::<u8, T>(input) {
            Ok(xs) => finish(guarded(|| run(xs)), self.out, out),
            Err(_) => {
                let xs: Vec<T> = collect(input);
                finish(guarded(|| run(&xs)), self.out, out)
            }
        }
    }
}

// The erased entry point: a `dyn Fn` made from each task's `call`.
impl<I: Pod, O> CallItem for Task<I, O> {
    fn call_item(&self, input: &[u8], count: usize, i: usize, out: &mut Vec<u8>) -> ItemOutcome {
        self.call(input, count, i, out)
    }
}
impl<A: Pod, B: Pod, O> CallItem for Task2<A, B, O> {
    fn call_item(&self, input: &[u8], count: usize, i: usize, out: &mut Vec<u8>) -> ItemOutcome {
        self.call(input, count, i, out)
    }
}
impl<T: Pod, O> CallItem for SliceTask<T, O> {
    fn call_item(&self, input: &[u8], count: usize, i: usize, out: &mut Vec<u8>) -> ItemOutcome {
        self.call(input, count, i, out)
    }
}

/// Runs item `i` of a chunk.
pub(crate) trait CallItem: Sync {
    fn call_item(&self, input: &[u8], count: usize, i: usize, out: &mut Vec<u8>) -> ItemOutcome;
}

/// The tasks drones can run, in a `static` handed to
/// [`serve`](super::serve).
///
/// ```
/// use polycephaly::pool::{Registry, Task2};
///
/// static ADD: Task2<u64, u64, u64> = Task2::new("add", |a, b| a + b);
/// static TASKS: Registry = Registry::new(&[&ADD]);
/// assert_eq!(TASKS.names().collect::<Vec<_>>(), ["add"]);
/// ```
pub struct Registry {
    tasks: &'static [&'static dyn AnyTask],
}

impl core::fmt::Debug for Registry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Registry {
    /// A registry of `tasks`. Names must be unique: a duplicate is reported
    /// by [`Pool::builder`](super::Pool::builder)'s `build`
    /// ([`PoolError::DuplicateTask`](super::PoolError::DuplicateTask)).
    pub const fn new(tasks: &'static [&'static dyn AnyTask]) -> Self {
        Self { tasks }
    }

    /// How many tasks.
    pub const fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether there are none.
    pub const fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The tasks' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.tasks.iter().map(|t| t.name())
    }

    pub(crate) fn get(&self, index: u32) -> Option<&'static dyn AnyTask> {
        self.tasks.get(index as usize).copied()
    }

    /// The first name given twice, if any.
    pub(crate) fn duplicate(&self) -> Option<&'static str> {
        let mut names: Vec<&str> = self.names().collect();
        names.sort_unstable();
        names.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
    }

    /// Where `task` is, checked: by name, then by signature and function.
    pub(crate) fn find(&self, task: &dyn AnyTask) -> Result<u32, super::PoolError> {
        let name = task.name();
        let Some(i) = self.tasks.iter().position(|t| t.name() == name) else {
            return Err(super::PoolError::UnknownTask { name });
        };
        let found = self.tasks[i];
        let same = core::ptr::addr_eq(found as *const dyn AnyTask, task as *const dyn AnyTask)
            || (found.signature() == task.signature() && found.erased().id == task.erased().id);
        if !same {
            return Err(super::PoolError::TaskMismatch {
                name,
                registered: found.signature(),
                called: task.signature(),
            });
        }
        Ok(i as u32)
    }

    /// A fingerprint of names and signatures, which master and drones
    /// compare (FNV-1a, 64 bits).
    pub(crate) fn fingerprint(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for t in self.tasks {
            for b in t
                .name()
                .bytes()
                .chain([0])
                .chain(t.signature().into_bytes())
                .chain([0])
            {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::PoolError;

    static ADD: Task2<u64, u64, u64> = Task2::new("add", |a, b| a + b);
    static NEG: Task<i32, i32> = Task::new("neg", |x| -x);
    static LEN: SliceTask<u8, u64> = SliceTask::new("len", |xs| xs.len() as u64);
    static ADD_AGAIN: Task2<u64, u64, u64> = Task2::new("add", |a, b| a * b);
    static ADD_F: Task2<f64, f64, f64> = Task2::new("add", |a, b| a + b);
    static GHOST: Task<i32, i32> = Task::new("ghost", |x| x);

    static TASKS: Registry = Registry::new(&[&ADD, &NEG, &LEN]);
    static TWICE: Registry = Registry::new(&[&ADD, &NEG, &ADD_AGAIN]);

    #[test]
    fn tasks_are_found_by_name_and_checked() {
        assert_eq!(TASKS.find(&NEG).unwrap(), 1);
        assert_eq!(TASKS.find(&LEN).unwrap(), 2);
        assert!(matches!(
            TASKS.find(&GHOST),
            Err(PoolError::UnknownTask { name: "ghost" })
        ));
        // Same name, other function; same name, other types.
        for other in [&ADD_AGAIN as &dyn AnyTask, &ADD_F] {
            match TASKS.find(other) {
                Err(PoolError::TaskMismatch {
                    name: "add",
                    registered,
                    called,
                }) => {
                    assert_eq!(registered, "fn(u64, u64) -> u64");
                    assert_ne!(called, "");
                }
                r => panic!("unexpected {r:?}"),
            }
        }
    }

    #[test]
    fn duplicates_and_fingerprints() {
        assert_eq!(TASKS.duplicate(), None);
        assert_eq!(TWICE.duplicate(), Some("add"));
        assert_eq!(TASKS.fingerprint(), TASKS.fingerprint());
        assert_ne!(TASKS.fingerprint(), TWICE.fingerprint());
        assert_eq!(LEN.signature(), "fn(&[u8]) -> u64");
    }

    #[test]
    fn items_run_from_bytes() {
        let mut out = Vec::new();
        let input: Vec<u8> = [1u64, 2, 10, 20]
            .iter()
            .flat_map(|x| x.to_ne_bytes())
            .collect();
        let e = ADD.erased();
        assert!(matches!(
            e.run.call_item(&input, 2, 1, &mut out),
            ItemOutcome::Done
        ));
        assert_eq!(out, 22u64.to_ne_bytes());
        // Short input: refused, not sliced out of bounds.
        assert!(matches!(
            e.run.call_item(&input[..20], 2, 1, &mut out),
            ItemOutcome::BadInput(_)
        ));
        assert!(matches!(
            LEN.erased().run.call_item(&[1, 2, 3], 1, 0, &mut out),
            ItemOutcome::Done
        ));
    }
}
