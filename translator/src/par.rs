//! Data parallelism for large inputs: a cold translation of thousands of routes splits its
//! per-route and per-cluster work over the machine's cores (rayon's pool). Output order is
//! the input order, so results are the same as a sequential run, byte for byte. Small
//! inputs (an incremental call's few routes) stay on the calling thread: handing work to
//! the pool costs more than it saves there.

use rayon::prelude::*;

/// Below this many items, work runs on the calling thread.
pub const MIN_ITEMS: usize = 512;

/// Items per task: enough that splitting costs little against the work.
const MIN_LEN: usize = 128;

/// `items.iter().map(f).collect()`, in parallel when `items` is large.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
    if items.len() < MIN_ITEMS {
        return items.iter().map(f).collect();
    }
    items.par_iter().with_min_len(MIN_LEN).map(f).collect()
}

/// `f()`, run on the pool when `large`: its sequential parts then run on a pool thread while
/// the caller sleeps, instead of beside pool threads that wait for work spinning (on a
/// machine with as many cores as pool threads, three busy threads).
pub fn on_pool<R: Send>(large: bool, f: impl FnOnce() -> R + Send) -> R {
    if large { rayon::scope(|_| f()) } else { f() }
}

/// `(a(), b())`, the two on the pool's two threads when `large`.
pub fn join<A: Send, B: Send>(
    large: bool,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    if large { rayon::join(a, b) } else { (a(), b()) }
}

/// `items.into_iter().map(f).collect()`, in parallel when `items` is large.
pub fn map_owned<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync + Send) -> Vec<R> {
    if items.len() < MIN_ITEMS {
        return items.into_iter().map(f).collect();
    }
    items.into_par_iter().with_min_len(MIN_LEN).map(f).collect()
}

/// `items` mapped by `reuse` (called in order, on this thread) where it has the result, and
/// where it names what to make instead, by `make` (in parallel when many are left), in order.
pub fn map_or_make<'a, T, M: Sync, R: Send>(
    items: &'a [T],
    reuse: impl FnMut(&'a T) -> Result<R, M>,
    make: impl Fn(&M) -> R + Sync + Send,
) -> Vec<R> {
    let found: Vec<Result<R, M>> = items.iter().map(reuse).collect();
    let missing: Vec<&M> = found.iter().filter_map(|f| f.as_ref().err()).collect();
    let mut made = map(&missing, |m| make(m)).into_iter();
    found
        .into_iter()
        .filter_map(|f| f.ok().or_else(|| made.next()))
        .collect()
}

/// `items.sort_unstable()`, in parallel when `items` is large.
pub fn sort_unstable<T: Ord + Send>(items: &mut [T]) {
    if items.len() < MIN_ITEMS {
        items.sort_unstable();
    } else {
        items.par_sort_unstable();
    }
}

/// What a stage has finished with, to be freed on the pool while the next stage runs
/// (`with_freeing`): freeing thousands of nested allocations is work too, and the next
/// stage leaves a core idle at times (its sequential parts).
#[derive(Default)]
pub struct Garbage(Vec<Box<dyn Send>>);

impl Garbage {
    /// Adds `items`, in pieces of `MIN_LEN` when many, so that both cores free them.
    pub fn vec<T: Send + 'static>(&mut self, mut items: Vec<T>) {
        while items.len() > MIN_LEN {
            let piece = items.split_off(items.len() - MIN_LEN);
            self.0.push(Box::new(piece));
        }
        self.0.push(Box::new(items));
    }

    /// Adds one thing, freed whole.
    pub fn one<T: Send + 'static>(&mut self, thing: T) {
        self.0.push(Box::new(thing));
    }
}

/// `f()`, with `garbage` freed beside it on the pool when there is much of it. Returns once
/// both are done.
pub fn with_freeing<R: Send>(garbage: Garbage, f: impl FnOnce() -> R + Send) -> R {
    if garbage.0.len() < MIN_ITEMS / MIN_LEN {
        std::mem::drop(garbage);
        return f();
    }
    let free = move || garbage.0.into_par_iter().for_each(std::mem::drop);
    rayon::join(f, free).0
}
