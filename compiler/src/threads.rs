//! Work shared among threads at compile time: the passes that treat each
//! function of a program on its own (the array optimiser, lowering, the loop
//! optimiser, CLIF building and Cranelift's code generation) run the
//! functions on as many threads as the machine has
//! cores. See Note [Functions compiled in parallel].
//!
//! The result is the same as one function after the other, in program order:
//! each function is worked on by one thread, and results come back in the
//! order of the items.

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
    if threads <= 1 {
        return items.iter_mut().map(work).collect();
    }
    // A queue of the items, the largest last: each thread takes the largest
    // left, so one large item does not wait behind small ones.
    let mut queue: Vec<(usize, &mut T)> = items.iter_mut().enumerate().collect();
    queue.sort_by_key(|(k, item)| (size(item), std::cmp::Reverse(*k)));
    let queue = std::sync::Mutex::new(queue);
    let drain = || {
        let mut done = Vec::new();
        loop {
            let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some((k, item)) = next else { break };
            done.push((k, work(item)));
        }
        done
    };
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        // Workers get the compiler's big stack (the passes recurse as deep as
        // the program nests, `driver::with_stack`); one that cannot be had
        // leaves its share to the others, and the calling thread drains what
        // is left.
        let workers: Vec<_> = (1..threads)
            .filter_map(|_| {
                std::thread::Builder::new().stack_size(crate::driver::STACK_BYTES).spawn_scoped(scope, drain).ok()
            })
            .collect();
        let mut done = drain();
        for w in workers {
            done.extend(w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        done
    });
    done.sort_by_key(|(k, _)| *k);
    done.into_iter().map(|(_, r)| r).collect()
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
    fn no_items_and_one_item() {
        assert!(map_largest_first(&mut Vec::<u8>::new(), |_| 0, |_| 1).is_empty());
        assert_eq!(map_largest_first(&mut [5u8], |_| 0, |x| *x * 2), vec![10]);
    }
}
