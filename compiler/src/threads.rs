//! Work shared among threads at compile time: the passes that treat each
//! function of a program on its own (the array optimiser, lowering, the loop
//! optimiser, CLIF building and Cranelift's code generation) run the
//! functions on as many threads as the machine has
//! cores. See Note [Functions compiled in parallel].
//!
//! The result is the same as one function after the other, in program order:
//! each function is worked on by one thread, and results come back in the
//! order of the items. The threads besides the caller's are one pool for the
//! whole process (Note [One pool of compiler threads]).

use std::sync::{Mutex, MutexGuard};

/// `work` applied to every item, the largest (by `size`) first, on up to as
/// many threads as there are cores, the calling thread one of them; the
/// results in item order. One item, or one core, runs on the calling thread
/// alone.
pub fn map_largest_first<T: Send, R: Send>(
    items: &mut [T],
    size: impl Fn(&T) -> usize,
    work: impl Fn(&mut T) -> R + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.len());
    // On a thread of a rayon pool (a host compiling inside its own parallel
    // loop), waiting for our pool would run that pool's other jobs on this
    // thread meanwhile (rayon waits by stealing): one of them might be a
    // compile of the same program, waiting on this one. Work alone there.
    let foreign = rayon::current_thread_index().is_some();
    let Some(pool) = pool().filter(|_| threads > 1 && !foreign) else {
        return items.iter_mut().map(work).collect();
    };
    // A queue of the items, the largest last: each thread takes the largest
    // left, so one large item does not wait behind small ones.
    let mut queue: Vec<(usize, &mut T)> = items.iter_mut().enumerate().collect();
    queue.sort_by_key(|(k, item)| (size(item), std::cmp::Reverse(*k)));
    let done: Mutex<Vec<(usize, R)>> = Mutex::new(Vec::with_capacity(queue.len()));
    let queue = Mutex::new(queue);
    let drain = || loop {
        let next = lock(&queue).pop();
        let Some((k, item)) = next else { break };
        let result = work(item);
        lock(&done).push((k, result));
    };
    // The calling thread drains the queue too, so the work is done even when
    // the pool's threads are busy with another compile (tests, a host
    // compiling on several threads): they find the queue empty.
    pool.in_place_scope(|scope| {
        for _ in 1..threads {
            scope.spawn(|_| drain());
        }
        drain();
    });
    let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    done.sort_by_key(|(k, _)| *k);
    done.into_iter().map(|(_, r)| r).collect()
}

/// A lock that a panic on another thread does not poison for good (the
/// panic itself reaches the caller through the pool's scope).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// Note [One pool of compiler threads]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Every per-function stage spreads its functions over the cores. Starting
// threads for each stage (as the compiler once did) cost more than the
// spawn: each new thread's allocator heap starts empty, so the first
// function it takes pays for fresh pages (on ht, building the largest
// function's CLIF took 7–10 ms on a new thread, under 1 ms for one of
// similar size on a warm one). One rayon pool of `cores - 1` threads, made
// on first use and kept for the process, keeps its heaps warm from stage
// to stage; it saved 4–7% of the compile of ht and implicit_ridge
// (docs/performance.md, twenty-second session). Its threads have the
// compiler's big stack (`driver::STACK_BYTES`: the passes recurse as deep
// as the program nests). A pool that cannot be made leaves the work to the
// calling thread. It is not the generated code's pool (runtime/src/parallel.rs),
// so a compile never waits behind a running program's segments. A compile
// started on a thread of any rayon pool runs on that thread alone (rayon
// waits by running other jobs of the waiting thread's pool, which could
// re-enter the compile).

/// The compiler's worker threads: one fewer than the cores (the calling
/// thread works too), or none on one core or when they cannot be started.
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).saturating_sub(1);
        (workers > 0)
            .then(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(workers)
                    .stack_size(crate::driver::STACK_BYTES)
                    .thread_name(|i| format!("slope-compile-{i}"))
                    .build()
                    .ok()
            })
            .flatten()
    })
    .as_ref()
}

#[cfg(test)]
mod tests {
    use super::map_largest_first;

    #[test]
    fn results_come_back_in_item_order_whatever_the_sizes() {
        let mut items: Vec<u64> = (0..50).map(|k| (k * 37) % 11).collect();
        let expected: Vec<u64> = items.iter().map(|x| x * x + 1).collect();
        let got = map_largest_first(
            &mut items,
            |x| *x as usize,
            |x| {
                *x += 1;
                (*x - 1) * (*x - 1) + 1
            },
        );
        assert_eq!(got, expected);
        assert!(items.iter().zip(0..).all(|(x, k)| *x == (k * 37) % 11 + 1), "every item worked on once");
    }

    #[test]
    fn work_started_inside_another_rayon_pool_is_done_on_its_thread() {
        let other = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("a pool");
        let (got, threads) = other.install(|| {
            let mut items: Vec<u64> = (0..20).collect();
            let seen = std::sync::Mutex::new(std::collections::HashSet::new());
            let got = map_largest_first(
                &mut items,
                |x| *x as usize,
                |x| {
                    seen.lock().unwrap().insert(std::thread::current().id());
                    *x * 2
                },
            );
            (got, seen.into_inner().unwrap())
        });
        assert_eq!(got, (0..20).map(|x| x * 2).collect::<Vec<u64>>());
        assert_eq!(threads.len(), 1, "one thread: {threads:?}");
    }

    #[test]
    fn no_items_and_one_item() {
        assert!(map_largest_first(&mut Vec::<u8>::new(), |_| 0, |_| 1).is_empty());
        assert_eq!(map_largest_first(&mut [5u8], |_| 0, |x| *x * 2), vec![10]);
    }
}
