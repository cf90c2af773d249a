//! Running a case in this process: `slope-fuzz replay`.
//!
//! Input: the corpus and a saved case. Output: its [`Outcome`]. The case
//! runs on a thread with the compiler's big stack (as the CLI runs programs,
//! `slope::driver::with_stack`), panics quiet and caught. Unlike a worker's,
//! an abort or a hang here is one of the caller: that is the reproduction.

use crate::case::Record;
use crate::corpus::Corpus;
use crate::panics;
use crate::targets::{Executor, Outcome, Unobserved};
use std::sync::Arc;

/// Runs one saved case again.
pub fn replay(corpus: Arc<Corpus>, record: &Record) -> Outcome {
    let (target, case) = (record.target, record.case.clone());
    on_big_stack(move || panics::quietly(|| Executor::new(corpus).run(target, &case, &mut Unobserved)))
}

/// Runs `f` on a thread with the compiler's stack size.
pub fn on_big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .name("slope-fuzz-cases".into())
        .stack_size(slope::driver::STACK_BYTES)
        .spawn(f)
        .expect("a thread for the cases")
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}
