//! Parallel segments: the run-time half of the multicore back end.
//!
//! Input: a call from generated code, `slope_parallel_for(ctx, segment, f,
//! args, start, bound)`, where `f` is the segment's compiled function — it
//! runs `for index in args[0]..args[1]` of a loop the compiler outlined
//! (`loops/parallel.rs` in the compiler) and returns the partial results of
//! the loop's reductions — and [`Segment`] says how its arguments and results
//! are laid out. Output: the loop's effect, as if it had run sequentially:
//! its stores, its reductions' totals written back into `args`, its
//! accumulations added into their buffers, or the failure the sequential loop
//! would have reported.
//!
//! Invariants:
//! - **Chunks by size, never by thread count** (Note [Deterministic
//!   chunks]): a loop that reduces or accumulates is cut into chunks whose
//!   size depends only on the segment and the range, and partial results are
//!   combined in chunk order, so results are bit-identical for every number
//!   of threads. A loop with nothing to combine may be cut any way (Note
//!   [Chunks of a map]).
//! - A range of one chunk runs inline, in the caller's context: exactly the
//!   sequential loop.
//! - Each chunk allocates from the arena of the thread that runs it (the
//!   caller's when it runs inline, else a per-thread context) and frees all
//!   of it before the chunk ends: nothing a chunk allocates outlives it.
//! - The failure reported is the one of the lowest-numbered failing chunk:
//!   the first failure in index order, as in sequential execution.

use crate::native::{Ctx, Failure};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The signature of compiled code (entries and segments alike).
pub type Code = unsafe extern "C" fn(*const u64, *mut u64, *mut Ctx) -> i32;

/// Element types of reductions and accumulators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Elem {
    F64,
    F32,
    I64,
}

/// An associative operator a loop reduces with (floating-point `+` and `*`
/// are associative only up to rounding: Note [Deterministic chunks]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReduceOp {
    Add,
    Mul,
    Min,
    Max,
}

/// A scalar the loop carries as `acc = acc op x`: its initial value is
/// argument word `word`, and the total is written back there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reduction {
    pub word: usize,
    pub op: ReduceOp,
    pub elem: Elem,
}

/// A buffer the loop stores a reduction's running value into, at the loop
/// index (`t = acc op x; b[i] = t; acc = t`: an inclusive scan): reduction
/// number `reduction` of the segment, buffer pointer at argument word
/// `word`, elements of the reduction's type. After the chunks ran, each
/// chunk's part of the buffer has the totals of the chunks before it
/// combined in (Note [Scans] in the compiler's loops/parallel.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scan {
    pub reduction: usize,
    pub word: usize,
}

/// A buffer the loop only combines into (`b[i] = b[i] op x`, any `i`: a
/// histogram, or reverse mode's `+=`): its pointer is argument word `word`,
/// its element count word `count_word`. Chunks after the first combine into
/// a private buffer instead, which starts at `op`'s neutral element and is
/// combined in afterwards, in chunk order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accumulator {
    pub word: usize,
    pub count_word: usize,
    pub elem: Elem,
    pub op: ReduceOp,
}

/// How to run one outlined loop (built by the compiler, owned by the code).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// The address of the segment's compiled function (set when the code is
    /// linked; 0 before, and in an ahead-of-time library's description,
    /// which names the code by index instead).
    #[serde(skip)]
    pub code: usize,
    /// Words of the argument block: `lo`, `hi`, then the loop's inputs.
    pub words: usize,
    /// Iterations per chunk: the compiler's estimate of what makes a chunk
    /// worth a task (Note [Deterministic chunks]).
    pub chunk: i64,
    /// The first results of the segment function, in order.
    pub reductions: Vec<Reduction>,
    pub scans: Vec<Scan>,
    pub accumulators: Vec<Accumulator>,
    /// Argument words of variables only the loop's first iteration assigns
    /// (a result allocated there): the segment function's results after the
    /// reductions. The first iteration runs alone, first; later chunks get
    /// its values, and so does the caller.
    pub firsts: Vec<usize>,
    /// What the loop cost per iteration when it last ran (Note [Pool or
    /// inline]).
    pub observed: Observed,
}

impl Segment {
    /// Whether every way of cutting the loop into chunks gives the same
    /// bits: all it combines, it combines exactly (Note [Chunks of a map]).
    pub fn exact(&self) -> bool {
        self.reductions.iter().all(|r| r.op.exact(r.elem)) && self.accumulators.iter().all(|a| a.op.exact(a.elem))
    }
}

/// Picoseconds per iteration a segment took when it last ran (0: never),
/// shared by every call of the compiled code.
#[derive(Debug, Default)]
pub struct Observed(AtomicU64);

impl Observed {
    /// A first estimate, before the loop has run: `ps` picoseconds per iteration.
    pub fn new(ps: u64) -> Observed {
        Observed(AtomicU64::new(ps))
    }
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    /// Records a run of `n` iterations that kept threads busy for `work`
    /// nanoseconds in all.
    fn record(&self, work: u128, n: i64) {
        let ps = work * 1000 / n.max(1) as u128;
        self.0.store((ps.min(u64::MAX as u128) as u64).max(1), Ordering::Relaxed)
    }
}

impl Clone for Observed {
    fn clone(&self) -> Observed {
        Observed(AtomicU64::new(self.get()))
    }
}

/// An ahead-of-time library keeps the compiler's first estimate.
impl Serialize for Observed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.get())
    }
}

impl<'de> Deserialize<'de> for Observed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Observed, D::Error> {
        u64::deserialize(d).map(Observed::new)
    }
}

/// Observations are not part of what a plan means.
impl PartialEq for Observed {
    fn eq(&self, _: &Observed) -> bool {
        true
    }
}

// Note [Pool or inline]
// ~~~~~~~~~~~~~~~~~~~~~
// Whether a loop's chunks run on the thread pool or one after another on
// the calling thread does not change its results (Note [Deterministic
// chunks]), only its speed: waking the pool's threads costs tens of
// microseconds, more than a loop of a few microseconds takes. The compiler's
// cost estimate cannot tell (it does not know inner trip counts), so the
// runtime measures: each run records the loop's time per iteration, and a
// run goes to the pool only when the last observed time per iteration times
// the iterations exceeds `POOL_WORK_NS` and the time the other threads would
// save exceeds what the pool costs. Before the first run, the time per
// iteration is the compiler's estimate (a large loop's first run — perhaps
// its only one — should not run on one core). What is recorded is the work
// alone: the time each chunk ran, summed, not the time from the call to the
// last chunk's end. The latter counts the pool's wake-up as work, and a
// small loop whose first run went to the pool (on the compiler's estimate)
// then looked expensive enough to go to the pool every time: GradBench's
// smallest `lse` workloads ran 4–6× slower on two threads than on one.
//
// What the pool costs is measured too (`POOL_OVERHEAD_NS`): after each run
// on the pool, the time it took beyond its work shared among its threads,
// averaged over recent runs. It is tens of microseconds on a quiet machine
// and hundreds on a virtual one, where a sleeping thread's core is woken
// through the hypervisor: there `lse` at n = 80,000 (230 µs of work) took
// 510 µs on two threads. A run adds at most `MOST_OVERHEAD_NS` to the
// average, so one preempted run cannot keep loops off the pool for long:
// any loop of more than twice that much work still goes to the pool and
// measures again.
//
// A loop of less work than that would not: only runs on the pool measure
// its cost, so an estimate a few slow wake-ups pushed up stayed up as long
// as every loop was small enough to be refused — for a whole GradBench
// workload. `lse` at n = 160,000 (a 0.7 ms loop, 0.35 ms saved on two
// threads) ran on one thread in some sessions and on two in others: its
// speed-up from one thread to two was 1.51–1.85 between sessions. So each
// time a loop of at least `POOL_WORK_NS` of work is refused for the pool's
// cost alone, the estimate fades by a sixteenth; after a few dozen such
// refusals at most the loop goes to the pool and measures it again. Where
// the pool really is that slow, the measurement puts the estimate back, and
// the loop has paid the difference once in a few dozen runs.

/// Below this much estimated sequential work a loop runs inline.
const POOL_WORK_NS: u64 = 100_000;

/// What running a loop on the pool costs beyond its work shared among the
/// threads — waking them, waiting for the last — in nanoseconds: a running
/// average over the pool's recent runs, of every segment (Note [Pool or
/// inline]).
static POOL_OVERHEAD_NS: AtomicU64 = AtomicU64::new(POOL_WORK_NS / 2);

/// The most a single run adds to [`POOL_OVERHEAD_NS`]'s average: one run
/// preempted for milliseconds must not keep every later loop off the pool.
const MOST_OVERHEAD_NS: u64 = 4 * POOL_WORK_NS;

/// Below this much estimated sequential work a loop runs inline even while
/// the pool's workers are awake (Note [Where the data is]).
const AWAKE_WORK_NS: u64 = 10_000;

/// What a pool run costs beyond its work while the workers are awake: the
/// jobs are taken at once by threads already spinning (Note [Where the
/// data is]).
const AWAKE_OVERHEAD_NS: u64 = 5_000;

/// Whether a loop of `work` nanoseconds of sequential work is worth running
/// on `threads` threads when the pool costs `overhead` nanoseconds: the time
/// the other threads save must exceed it. While the workers are `awake`
/// from a pool run a moment ago, the pool costs little and the loop's data
/// is likely spread over their caches (Note [Where the data is]); `awake`
/// reads the clock, so it is asked only about loops it could decide.
fn worth_the_pool(work: u128, threads: usize, overhead: u64, awake: impl FnOnce() -> bool) -> bool {
    let threads = threads.max(1) as u128;
    let saved = work * (threads - 1) / threads;
    let cold = work >= POOL_WORK_NS as u128 && saved > overhead as u128;
    cold || (work >= AWAKE_WORK_NS as u128 && saved > AWAKE_OVERHEAD_NS.min(overhead) as u128 && awake())
}

/// The pool's overhead after a loop worth running on the pool but for that
/// overhead ran inline: one sixteenth less (Note [Pool or inline]).
fn faded_overhead(old: u64) -> u64 {
    old - old / 16
}

/// The pool's overhead after a run that took `wall` nanoseconds for `work`
/// nanoseconds of chunks on `busy` threads, from the average `old`.
fn next_overhead(old: u64, wall: u128, work: u128, busy: usize) -> u64 {
    let sample = wall.saturating_sub(work / busy.max(1) as u128).min(MOST_OVERHEAD_NS as u128) as u64;
    (3 * old.min(MOST_OVERHEAD_NS) + sample) / 4
}

// Note [Deterministic chunks]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A loop's reductions in floating point depend on the order of additions.
// To give the same bits on 1, 2 or 64 threads, the range is cut into chunks
// by a rule that reads only the segment and the range: `chunk` iterations
// each (the compiler sizes `chunk` from the loop body's estimated cost), at
// most `MAX_CHUNKS` chunks, at most `MAX_ACCUMULATOR_CHUNKS` when the loop
// adds into buffers (each extra
// chunk costs a private buffer and a pass adding it in). Chunk 0 starts
// from the loop's initial values and adds into the real buffers; chunk k > 0
// starts from the operator's neutral element (`-0.0` for float `+`, the
// exact identity) and a private buffer of neutral elements. The partial
// results are then combined in chunk order, on the calling thread. With one
// chunk this is exactly the sequential loop; with several, a float sum is
// summed in a different (but fixed) association than the sequential one.
// Min and max (NaN first, ties keep the earlier value) and wrapping integer
// arithmetic are associative, so for them any chunking gives the
// sequential result bit for bit.

/// Chunks per round (at least four per thread): a round ends with every
/// thread waiting for the slowest, so rounds are long.
const ROUND_CHUNKS: i64 = 4096;

/// The bytes of scan results a round of chunks writes, at most (but at
/// least two chunks per thread): the round's results are corrected while
/// they are still in the last-level cache (Note [Scans] in the compiler).
const SCAN_ROUND_BYTES: i64 = 4 << 20;

/// The most chunks of any loop: the compiler's estimate of an iteration's
/// cost can be far too high (it assumes 16 trips of an inner loop of unknown
/// length), and a chunk costs a task and a few allocations.
const MAX_CHUNKS: i64 = 1024;

/// The most chunks a chunk limit (`Ctx::chunk_limit`, for tests) may cut a
/// loop into.
const MAX_LIMITED_CHUNKS: i64 = 1 << 16;

/// The most chunks of a loop that adds into buffers.
const MAX_ACCUMULATOR_CHUNKS: i64 = 16;

/// The most bytes of private accumulator buffers one loop may take;
/// beyond it, fewer chunks (still decided by the sizes alone).
const ACCUMULATOR_BYTES: i64 = 256 << 20;

impl ReduceOp {
    /// `a op b` on argument words of type `elem` (`f32` in the low half),
    /// with the semantics of generated code and the interpreter.
    pub fn combine(self, elem: Elem, a: u64, b: u64) -> u64 {
        fn min_max<T: PartialOrd + Copy>(op: ReduceOp, a: T, b: T, nan: impl Fn(T) -> bool) -> T {
            let better = if op == ReduceOp::Min { b < a } else { b > a };
            if nan(a) {
                a
            } else if nan(b) || better {
                b
            } else {
                a
            }
        }
        match elem {
            Elem::F64 => {
                let (x, y) = (f64::from_bits(a), f64::from_bits(b));
                let r = match self {
                    ReduceOp::Add => x + y,
                    ReduceOp::Mul => x * y,
                    op => min_max(op, x, y, f64::is_nan),
                };
                r.to_bits()
            }
            Elem::F32 => {
                let (x, y) = (f32::from_bits(a as u32), f32::from_bits(b as u32));
                let r = match self {
                    ReduceOp::Add => x + y,
                    ReduceOp::Mul => x * y,
                    op => min_max(op, x, y, f32::is_nan),
                };
                r.to_bits() as u64
            }
            Elem::I64 => {
                let (x, y) = (a as i64, b as i64);
                (match self {
                    ReduceOp::Add => x.wrapping_add(y),
                    ReduceOp::Mul => x.wrapping_mul(y),
                    ReduceOp::Min => x.min(y),
                    ReduceOp::Max => x.max(y),
                }) as u64
            }
        }
    }

    /// Whether combining partial results gives the bits of one sequential
    /// pass however the range is cut (Note [Chunks of a map]).
    pub fn exact(self, elem: Elem) -> bool {
        elem == Elem::I64 || matches!(self, ReduceOp::Min | ReduceOp::Max)
    }

    /// The word `e` with `e op x == x` for every `x`.
    pub fn neutral(self, elem: Elem) -> u64 {
        match (self, elem) {
            (ReduceOp::Add, Elem::F64) => (-0.0f64).to_bits(),
            (ReduceOp::Add, Elem::F32) => (-0.0f32).to_bits() as u64,
            (ReduceOp::Add, Elem::I64) => 0,
            (ReduceOp::Mul, Elem::F64) => 1.0f64.to_bits(),
            (ReduceOp::Mul, Elem::F32) => 1.0f32.to_bits() as u64,
            (ReduceOp::Mul, Elem::I64) => 1,
            (ReduceOp::Min, Elem::F64) => f64::INFINITY.to_bits(),
            (ReduceOp::Min, Elem::F32) => f32::INFINITY.to_bits() as u64,
            (ReduceOp::Min, Elem::I64) => i64::MAX as u64,
            (ReduceOp::Max, Elem::F64) => f64::NEG_INFINITY.to_bits(),
            (ReduceOp::Max, Elem::F32) => f32::NEG_INFINITY.to_bits() as u64,
            (ReduceOp::Max, Elem::I64) => i64::MIN as u64,
        }
    }
}

impl Elem {
    fn bytes(self) -> i64 {
        if self == Elem::F32 {
            4
        } else {
            8
        }
    }
}

/// The thread count [`set_default_threads`] chose (0: not chosen).
static DEFAULT_THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Makes `n` (at least 1) the thread count of code compiled from now on.
pub fn set_default_threads(n: usize) {
    DEFAULT_THREADS.store(n.max(1), Ordering::Relaxed);
}

/// The number of threads compiled code runs on unless told otherwise: what
/// [`set_default_threads`] chose, else `SLOPE_THREADS` when it is a positive
/// number, else every core.
pub fn default_threads() -> usize {
    match DEFAULT_THREADS.load(Ordering::Relaxed) {
        0 => threads_from_env().unwrap_or_else(|_| all_cores()),
        n => n,
    }
}

fn all_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The thread counts a caller may ask for.
pub const THREADS: std::ops::RangeInclusive<i64> = 1..=65535;

/// `n` as a thread count, or the message saying which counts there are
/// (the Python package and the C library check their callers' counts so).
pub fn thread_count(n: i64) -> Result<usize, String> {
    if THREADS.contains(&n) {
        Ok(n as usize)
    } else {
        Err(format!("threads must be from {} to {}, not {n}", THREADS.start(), THREADS.end()))
    }
}

/// `SLOPE_THREADS` when set (an error message when it is not a positive
/// number), else every core.
pub fn threads_from_env() -> Result<usize, String> {
    match std::env::var("SLOPE_THREADS") {
        Err(_) => Ok(all_cores()),
        Ok(s) => match s.trim().parse::<i64>().ok().map(thread_count) {
            Some(Ok(n)) => Ok(n),
            _ => Err(format!("SLOPE_THREADS must be a number of threads from 1 to 65535, not `{s}`")),
        },
    }
}

// Note [The caller runs chunks too]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A segment's chunks are taken one at a time (from the shares of Note
// [Contiguous shares]) by the calling thread and by `threads - 1` jobs on
// the pool, each chunk's outcome
// kept under its index, so the outcomes come back in chunk order whoever ran
// them (Note [Deterministic chunks]). Handing the round to the pool with
// `install` instead made the caller wait idle while the workers were woken.
// As the caller is one of the call's threads, the pool has `threads - 1`
// workers: with `threads` of them, a worker looking for work (rayon spins
// and yields before it sleeps) competed for a core with the two threads
// running chunks. On 2026-12-04 (2 vCPUs, 2 threads,
// `scripts/message_scaling.py` replaying GradBench's sessions, median of 3
// or 5 rounds) the smaller pool took ba from 298 to 282 ms (the `install`
// of the twenty-third session took 275), lse from 21.5 to 21.0 (`install`:
// 22.5), ht from 161.6 to 149.5, gmm from 2181 to 2135 (one round).
// A chunk runs in the running thread's worker context (`WORKER`), on the
// caller's thread as on a worker's. The other work the runtime hands the
// pool — the pieces of a large copy (Note [Large copies]) and the offsets
// a scan's chunks add (Note [Scans] in the compiler) — is shared the same
// way; ba's copies so shared, its session took 287 ms instead of 298.
//
// Note [Contiguous shares]
// ~~~~~~~~~~~~~~~~~~~~~~~~
// The chunks are not dealt from one counter: each running thread has a
// contiguous share of them — the caller the first, the pool's jobs the
// next ones in order — and takes its own share's chunks first, then helps
// the others with theirs (each share has its own counter, so a helper takes
// chunks from the front of the share it helps). Consecutive segments over
// one array then give each thread the same part of it, which is still in
// that core's cache from the segment before: `lse`'s gradient runs a max
// over `x`, then the exponentials of `x` into `out`, then a scaling of
// `out`. Dealt from one counter, which thread ran which chunk depended on
// timing: at n = 160,000, in six short GradBench sessions on two threads,
// the gradient took 0.49–0.77 ms dealt from one counter and 0.49–0.51 ms
// in contiguous shares (2026-12-05). A thread that finishes its share
// early still takes work from the others, so a share that runs slow is not
// waited for. Results do not depend on it (Note [Deterministic chunks]).
//
// Note [Workers awake between segments]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Waking a sleeping worker costs tens of µs on a quiet machine and hundreds
// on a virtual one (Note [Pool or inline]), and a call runs its segments a
// few µs apart (lse's primal: a maximum, then a sum of exponentials). So
// after a segment, one job per worker keeps the pool spinning for up to
// `AWAKE_NS`, until the next pool run starts (`STARTS` changes) — its jobs
// then find the workers awake — or the time is up. Every pool run does this,
// the pieces of a large copy and a scan's offsets too (`run_shared`).
// Measured on 2026-12-04 (2 vCPUs; `scripts/message_scaling.py`,
// GradBench's sessions replayed, 2 threads): lse 22.3 → 19.5 ms (1.62× →
// 1.85× over one thread), ht 154.9 → 150.5 ms, gmm 2126 → 2104 ms. The
// cost is a core busy for at most `AWAKE_NS` after a call's last pool run;
// results do not change. Keeping them awake for 3 ms instead made no
// measurable difference (docs/performance.md, twenty-sixth session).

// Note [Where the data is]
// ~~~~~~~~~~~~~~~~~~~~~~~~
// After a loop ran on the pool, its array is spread over the threads'
// caches: the caller's share in the caller's core, each worker's in its own
// (Note [Contiguous shares]). A later loop over that array run inline, or
// the caller copying the result out of the arena, pulls the workers' lines
// to the caller's core — and the next call's parallel loop pulls them back.
// Moving a line between the two vCPUs of this virtual machine costs far
// more than a hit in the core's own cache, and how much more changes over
// time (the host places the vCPUs). lse's gradient (a maximum; exponentials
// stored into `out` and summed; `out` scaled) took 0.94 or 1.40 ms at
// n = 320,000 in GradBench sessions of the same code, steady within a
// process and different between processes; the second figure only in
// periods when the worker ran its chunks of the exponentials 3-4× slower
// than the caller (traced per segment, 2026-12-05). Its part of `out` had
// been read by the caller twice: by the scaling, which ran inline at the
// smaller sizes (under `POOL_WORK_NS`), and when the result was copied out.
// The primal, which writes no array, never slowed.
//
// So while the workers are awake from a pool run that ended less than half
// of `AWAKE_NS` ago (`workers_awake`), the pool costs next to nothing
// (`AWAKE_OVERHEAD_NS`: no thread is woken) and a loop goes to it from
// `AWAKE_WORK_NS` of work; a result of at least `AWAKE_COPY_BYTES` is
// copied out of the arena by the pool too (`words::read_results` through
// `copy_result`), in pieces of `COPY_PIECE_BYTES`, small enough that the
// shares' boundaries fall near those of the loops that wrote it. Each part
// of the array then stays with the core that wrote it, from one call to the
// next. Neither changes a result (Note [Deterministic chunks], Note [Chunks
// of a map]). Copies inside generated code keep the larger threshold of
// Note [Large copies]: their source is as often written by the caller
// alone, and shared while awake they made lstm 2-4% slower.
// Measured on 2026-12-05, old and new binary alternated, each process
// replaying one GradBench lse session on 2 threads: old 15.2-18.2 ms, new
// 15.3-15.6 ms, four processes each (docs/performance.md, thirty-fourth
// session).

/// How long workers stay awake after a segment (Note [Workers awake between segments]).
const AWAKE_NS: u64 = 300_000;

/// Counts the pool runs started: a change ends the spinning of the workers
/// kept awake (Note [Workers awake between segments]).
static STARTS: AtomicU64 = AtomicU64::new(0);

/// When the last pool run ended, in nanoseconds since [`epoch`] (0: never).
static LAST_POOL_END_NS: AtomicU64 = AtomicU64::new(0);

/// The instant the runtime's clock counts from.
fn epoch() -> std::time::Instant {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos().min(u64::MAX as u128) as u64
}

/// Whether the pool's workers are still spinning after the last pool run
/// (Note [Workers awake between segments]): it ended less than half of
/// [`AWAKE_NS`] ago, the other half a margin for a worker that was slow
/// to start spinning.
fn workers_awake() -> bool {
    awake_at(LAST_POOL_END_NS.load(Ordering::Relaxed), now_ns())
}

/// Whether workers whose last pool run ended at `last` (0: never) are still
/// awake at `now`.
fn awake_at(last: u64, now: u64) -> bool {
    last != 0 && now.saturating_sub(last) < AWAKE_NS / 2
}

/// A share's chunk counter on a cache line of its own, so that one thread
/// taking a chunk does not take the line holding another share's counter
/// from the core that runs that share (Note [Contiguous shares]). 128
/// bytes, two 64-byte lines: x86's adjacent-line prefetcher fetches lines
/// in pairs.
#[repr(align(128))]
struct OwnLine(AtomicI64);

/// `run` of every chunk of `chunks`, on the calling thread and `threads - 1`
/// jobs of `pool`; the outcomes in chunk order (Note [The caller runs chunks
/// too]). Then keeps the workers awake for the next segment.
fn run_shared<T: Send>(
    pool: &rayon::ThreadPool,
    threads: usize,
    chunks: std::ops::Range<i64>,
    run: &(dyn Fn(i64) -> T + Sync),
) -> Vec<T> {
    let started = STARTS.fetch_add(1, Ordering::SeqCst) + 1;
    let count = (chunks.end - chunks.start).max(0);
    let done: Mutex<Vec<(i64, T)>> = Mutex::new(Vec::with_capacity(count as usize));
    let helpers = (threads - 1).min(count.max(1) as usize - 1);
    // One contiguous share of the chunks per running thread, each with its
    // own counter (Note [Contiguous shares]).
    let shares = helpers + 1;
    let bounds: Vec<i64> = (0..=shares).map(|t| chunks.start + count * t as i64 / shares as i64).collect();
    let next: Vec<OwnLine> = bounds[..shares].iter().map(|&b| OwnLine(AtomicI64::new(b))).collect();
    let drain = |own: usize| {
        let mut mine = Vec::new();
        for t in (0..shares).map(|i| (own + i) % shares) {
            loop {
                let k = next[t].0.fetch_add(1, Ordering::Relaxed);
                if k >= bounds[t + 1] {
                    break;
                }
                mine.push((k, run(k)));
            }
        }
        done.lock().unwrap_or_else(|p| p.into_inner()).append(&mut mine);
    };
    pool.in_place_scope(|scope| {
        for t in 1..shares {
            let drain = &drain;
            scope.spawn(move |_| drain(t));
        }
        drain(0);
    });
    keep_awake(pool, threads - 1, started);
    LAST_POOL_END_NS.store(now_ns().max(1), Ordering::Relaxed);
    let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    done.sort_by_key(|(k, _)| *k);
    done.into_iter().map(|(_, outcome)| outcome).collect()
}

/// Keeps `workers` of `pool` spinning until a pool run after the one
/// numbered `started` begins (by any caller) or [`AWAKE_NS`] pass (Note
/// [Workers awake between segments]).
fn keep_awake(pool: &rayon::ThreadPool, workers: usize, started: u64) {
    for _ in 0..workers {
        pool.spawn(move || {
            let until = std::time::Instant::now() + std::time::Duration::from_nanos(AWAKE_NS);
            while STARTS.load(Ordering::Relaxed) == started && std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
        });
    }
}

/// The pool that helps a call running on `threads` threads: `threads - 1`
/// workers, the calling thread being the other one (Note [The caller runs
/// chunks too]). Built once per count, shared by every call.
fn pool(threads: usize) -> Option<Arc<rayon::ThreadPool>> {
    static POOLS: OnceLock<Mutex<Vec<(usize, Arc<rayon::ThreadPool>)>>> = OnceLock::new();
    let mut pools = POOLS.get_or_init(|| Mutex::new(Vec::new())).lock().ok()?;
    if let Some((_, p)) = pools.iter().find(|(n, _)| *n == threads) {
        return Some(p.clone());
    }
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.saturating_sub(1).max(1))
        .thread_name(|i| format!("slope-worker-{i}"))
        .build()
        .ok()?;
    let p = Arc::new(p);
    pools.push((threads, p.clone()));
    Some(p)
}

// Note [Large copies]
// ~~~~~~~~~~~~~~~~~~~~
// A copy of at least PARALLEL_COPY_BYTES between buffers that do not
// overlap is cut into pieces of COPY_PIECE_BYTES that the calling thread
// and the pool's `threads - 1` workers share (Note [The caller runs chunks
// too]), when the call may use more than one thread and does not itself run
// on the pool (a chunk of a parallel loop already has its thread). The bytes
// copied are the same however the copy is cut. ba's Jacobian concatenates
// 31·p doubles (92 MB at GradBench's largest p) after its parallel loop:
// copied on the calling thread alone, that was a tenth of its time on two
// threads (`perf record`, 2026-12-03). A call's result leaving the arena
// goes to the pool from a smaller size while the workers are awake (Note
// [Where the data is]).

/// The smallest copy worth the pool.
const PARALLEL_COPY_BYTES: usize = 8 << 20;

/// The smallest copy worth the pool while its workers are awake (Note
/// [Where the data is]).
const AWAKE_COPY_BYTES: usize = 256 << 10;

/// The bytes each task of a large copy copies: small, so that the shares'
/// boundaries fall near those of the loops that wrote the source (Note
/// [Where the data is]).
const COPY_PIECE_BYTES: usize = 64 << 10;

/// Copies `bytes` bytes from `src` to `dst` (`memmove`), on `threads`
/// threads (the caller and the pool's workers) when the copy is large and
/// the ranges are apart (Note [Large copies]).
///
/// # Safety
/// Both ranges must be valid for `bytes` bytes.
pub unsafe fn copy(threads: usize, dst: *mut u8, src: *const u8, bytes: usize) {
    // SAFETY: as the caller promises.
    unsafe { copy_shared_if(false, threads, dst, src, bytes) }
}

/// [`copy`] for a call's result leaving the arena: shared with the pool
/// from [`AWAKE_COPY_BYTES`] too while its workers are awake, so that each
/// thread reads the part its loops wrote (Note [Where the data is]).
///
/// # Safety
/// Both ranges must be valid for `bytes` bytes.
pub unsafe fn copy_result(threads: usize, dst: *mut u8, src: *const u8, bytes: usize) {
    let awake = bytes >= AWAKE_COPY_BYTES && workers_awake();
    // SAFETY: as the caller promises.
    unsafe { copy_shared_if(awake, threads, dst, src, bytes) }
}

/// The copy, in pieces the caller and the pool share when it is large (or
/// `small_too`), there is more than one thread, the ranges are apart and
/// the caller is not itself on the pool.
///
/// # Safety
/// Both ranges must be valid for `bytes` bytes.
unsafe fn copy_shared_if(small_too: bool, threads: usize, dst: *mut u8, src: *const u8, bytes: usize) {
    let share = bytes >= PARALLEL_COPY_BYTES || small_too;
    let apart = (dst as usize).abs_diff(src as usize) >= bytes;
    let on_pool = share && threads > 1 && apart && rayon::current_thread_index().is_none();
    match on_pool.then(|| pool(threads)).flatten() {
        Some(p) => {
            let (dst, src) = (dst as usize, src as usize);
            let pieces = bytes.div_ceil(COPY_PIECE_BYTES) as i64;
            run_shared(&p, threads, 0..pieces, &|k| {
                let at = k as usize * COPY_PIECE_BYTES;
                let n = COPY_PIECE_BYTES.min(bytes - at);
                // SAFETY: the pieces are disjoint parts of the valid,
                // non-overlapping ranges the caller vouches for.
                unsafe { std::ptr::copy_nonoverlapping((src + at) as *const u8, (dst + at) as *mut u8, n) }
            });
        }
        // SAFETY: as the caller promises.
        None => unsafe { std::ptr::copy(src, dst, bytes) },
    }
}

thread_local! {
    /// The arena of chunks run on this (worker) thread; reset after each.
    static WORKER: RefCell<Option<Ctx>> = const { RefCell::new(None) };
}

/// What one chunk did.
struct Outcome {
    status: i32,
    failure: Option<Failure>,
    results: Vec<u64>,
    peak: usize,
    /// How long the chunk ran, in nanoseconds.
    work: u128,
}

/// Runs `f` over `args[0]..args[1]` in `ctx`, freeing what it allocates.
///
/// # Safety
/// `f` is a segment function whose argument block is `args` and which
/// writes at most `results.len()` result words.
unsafe fn run_chunk(ctx: &mut Ctx, f: Code, args: &[u64], results: &mut [u64]) -> i32 {
    let mark = ctx.mark();
    // SAFETY: as the caller promises.
    let status = unsafe { f(args.as_ptr(), results.as_mut_ptr(), ctx) };
    ctx.release_to(mark);
    status
}

/// What a loop with nothing to combine may be chunked by.
#[derive(Clone, Copy)]
struct Free {
    threads: usize,
    ps_per_iteration: u64,
    worth_it: bool,
}

// Note [Chunks of a map]
// ~~~~~~~~~~~~~~~~~~~~~~
// A loop without reductions or accumulators (a `map`: each iteration writes
// its own slot) gives the same result however it is cut, and so does one
// whose combining is exact: integer `+` and `*` (they wrap), `min` and `max`
// (the earlier of a tie is kept however the chunks fall). Such a loop's
// chunks are sized by time, not by the compiler's estimate: about `CHUNK_PS` each by
// the last observed time per iteration, at least four per thread, or the
// whole range inline when the loop is not worth the pool (Note [Pool or
// inline]). The compiler's estimate assumes 16 trips of an inner loop of
// unknown length, and a loop of 31 iterations over 380,000-element rows
// (the sparse Jacobian of `ba`) would otherwise be one chunk.

/// The time a chunk of a map aims at, in picoseconds (50 µs).
const CHUNK_PS: u64 = 50_000_000;

/// `a / b` rounded up, for `a >= 0`, `b > 0`.
fn ceil_div(a: i64, b: i64) -> i64 {
    a / b + i64::from(a % b != 0)
}

/// How the range is cut: iterations per chunk and the number of chunks.
fn plan(seg: &Segment, args: &[u64], n: i64, limit: i64, free: Option<Free>) -> (i64, i64) {
    let mut chunk = seg.chunk.max(1).max(ceil_div(n, MAX_CHUNKS));
    if let (Some(free), 0, true) = (free, limit, seg.exact()) {
        // Nothing to combine, or combined exactly: any chunking gives the
        // same result (Note [Chunks of a map]).
        chunk = if free.threads <= 1 || !free.worth_it {
            n
        } else {
            let by_time = (CHUNK_PS / free.ps_per_iteration.max(1)).max(1) as i64;
            by_time.min(ceil_div(n, 4 * free.threads as i64)).max(ceil_div(n, MAX_CHUNKS))
        };
    }
    if limit > 0 {
        // A test's limit, but no more than `MAX_LIMITED_CHUNKS` chunks.
        chunk = seg.chunk.max(1).min(limit).max(ceil_div(n, MAX_LIMITED_CHUNKS));
    }
    if !seg.accumulators.is_empty() {
        let bytes: i64 = seg
            .accumulators
            .iter()
            .map(|a| (args[a.count_word] as i64).max(0).saturating_mul(a.elem.bytes()))
            .fold(0i64, |s, b| s.saturating_add(b))
            .max(1);
        let most = (ACCUMULATOR_BYTES / bytes).clamp(1, MAX_ACCUMULATOR_CHUNKS);
        chunk = chunk.max(ceil_div(n, most));
    }
    (chunk, ceil_div(n, chunk))
}

/// Runs the loop of segment `seg` over `start..bound` (see the module header).
/// Returns 0, or the status of the first failing chunk (its failure recorded
/// in `ctx`).
///
/// # Safety
/// `ctx` points to the caller's live context, `seg` to a live [`Segment`]
/// whose `code` is its compiled function, and `args` holds `seg.words` words.
#[inline(never)]
#[no_mangle]
pub unsafe extern "C" fn slope_parallel_for(
    ctx: *mut Ctx,
    seg: *const Segment,
    args: *mut u64,
    start: i64,
    bound: i64,
) -> i32 {
    // SAFETY: as the caller promises.
    let (ctx, seg) = unsafe { (&mut *ctx, &*seg) };
    // SAFETY: `code` is a compiled function of the `Code` signature.
    let f = unsafe { std::mem::transmute::<usize, Code>(seg.code) };
    let args = unsafe { std::slice::from_raw_parts_mut(args, seg.words) };
    if bound <= start {
        return 0;
    }
    let mut start = start;
    if !seg.firsts.is_empty() {
        // The first iteration alone, inline; what it allocates for later
        // iterations outlives it (its own temporaries it releases itself).
        args[0] = start as u64;
        args[1] = (start + 1) as u64;
        let mut results = vec![0u64; seg.reductions.len() + seg.firsts.len()];
        // SAFETY: `args` is the segment's argument block.
        let status = unsafe { f(args.as_ptr(), results.as_mut_ptr(), ctx) };
        if status != 0 {
            return status;
        }
        let words = seg.reductions.iter().map(|r| r.word).chain(seg.firsts.iter().copied());
        for (w, v) in words.zip(results) {
            args[w] = v;
        }
        start += 1;
    }
    let n = bound.saturating_sub(start);
    if n <= 0 {
        return 0;
    }
    let threads = ctx.threads.max(1);
    let observed = seg.observed.get();
    let overhead = POOL_OVERHEAD_NS.load(Ordering::Relaxed);
    let estimate = (observed as u128) * (n as u128) / 1000;
    let worth_it = worth_the_pool(estimate, threads, overhead, workers_awake);
    if !worth_it && threads > 1 && estimate >= POOL_WORK_NS as u128 {
        // Kept off the pool by its cost alone: let the estimate of that cost
        // fade, so that the pool is measured again (Note [Pool or inline]).
        POOL_OVERHEAD_NS.store(faded_overhead(overhead), Ordering::Relaxed);
    }
    let free = Free { threads, ps_per_iteration: observed, worth_it };
    let (chunk, chunks) = plan(seg, args, n, ctx.chunk_limit, Some(free));
    let began = std::time::Instant::now();
    if chunks == 1 {
        let status = run_whole(ctx, seg, f, args, start, bound);
        seg.observed.record(began.elapsed().as_nanos(), n);
        return status;
    }
    // Private buffers of the accumulators, for chunks 1.. (chunk 0 adds into
    // the real ones). Without the memory, run as one chunk.
    let mut private: Vec<Vec<Vec<u64>>> = Vec::new();
    for _ in 1..chunks {
        let mut bufs = Vec::new();
        for a in &seg.accumulators {
            let count = (args[a.count_word] as i64).max(0) as usize;
            let words = if a.elem == Elem::F32 { count.div_ceil(2) } else { count };
            // Two `f32`s to a word.
            let neutral = a.op.neutral(a.elem);
            let fill = if a.elem == Elem::F32 { neutral * 0x1_0000_0001 } else { neutral };
            let mut b = Vec::new();
            if b.try_reserve_exact(words).is_err() {
                return run_whole(ctx, seg, f, args, start, bound);
            }
            b.resize(words, fill);
            bufs.push(b);
        }
        private.push(bufs);
    }
    // The iterations of chunk `k`.
    let chunk_range = |k: i64| (start + k * chunk, (start + k * chunk).saturating_add(chunk).min(bound));
    let chunk_args = |k: i64| {
        let mut a = args.to_vec();
        let (lo, hi) = chunk_range(k);
        (a[0], a[1]) = (lo as u64, hi as u64);
        if k > 0 {
            for r in &seg.reductions {
                a[r.word] = r.op.neutral(r.elem);
            }
            for (acc, buf) in seg.accumulators.iter().zip(&private[k as usize - 1]) {
                a[acc.word] = buf.as_ptr() as u64;
            }
        }
        a
    };
    let limit = ctx.while_limit;
    let run = |k: i64| {
        let a = chunk_args(k);
        let mut results = vec![0u64; seg.reductions.len() + seg.firsts.len()];
        WORKER.with(|w| {
            let mut w = w.borrow_mut();
            let c = w.get_or_insert_with(|| Ctx::new(limit));
            c.while_limit = limit;
            c.reset();
            c.reset_peak();
            let began = std::time::Instant::now();
            // SAFETY: `a` is the segment's argument block; private buffers
            // outlive the chunk and are written by this chunk alone.
            let status = unsafe { run_chunk(c, f, &a, &mut results) };
            let work = began.elapsed().as_nanos();
            let failure = if status == 1 { c.take_failure() } else { None };
            let peak = c.peak_bytes();
            c.reset();
            Outcome { status, failure, results, peak, work }
        })
    };
    // Chunks run in rounds of a few per thread, combined in chunk order
    // after each round; a failing chunk ends the loop after its round (all
    // chunks before it succeeded, so its failure is the first in index
    // order). Rounds bound the memory of a loop of billions of chunks.
    let pool = (threads > 1 && worth_it).then(|| pool(threads)).flatten();
    // A scan's chunks are corrected while their part of the result is still
    // in cache: on one thread each right after it ran, on the pool a round
    // of about `SCAN_ROUND_BYTES` at a time.
    let round = if seg.scans.is_empty() {
        ROUND_CHUNKS.max(4 * threads as i64)
    } else if pool.is_none() {
        1
    } else {
        let bytes: i64 = seg.scans.iter().map(|s| seg.reductions[s.reduction].elem.bytes()).sum();
        (SCAN_ROUND_BYTES / chunk.saturating_mul(bytes).max(1)).clamp(2 * threads as i64, ROUND_CHUNKS)
    };
    let mut totals: Vec<u64> = Vec::new();
    let mut work = 0;
    let mut first = 0;
    while first < chunks {
        let last = (first + round).min(chunks);
        let outcomes: Vec<Outcome> = match &pool {
            Some(pool) => run_shared(pool, threads, first..last, &run),
            None => (first..last).map(run).collect(),
        };
        // What the chunks before each chunk of the round add up to, for its scans.
        let mut offsets: Vec<(i64, Vec<u64>)> = Vec::new();
        let most_peak = outcomes.iter().map(|o| o.peak).max().unwrap_or(0);
        let private_bytes: usize = private.iter().flatten().map(|b| b.len() * 8).sum();
        ctx.note_peak(most_peak * threads.min(outcomes.len()) + private_bytes);
        for (k, o) in (first..last).zip(outcomes) {
            work += o.work;
            if o.status != 0 {
                if let Some(failure) = o.failure {
                    ctx.set_failure(failure);
                }
                return o.status;
            }
            if totals.is_empty() {
                totals = o.results;
            } else {
                if !seg.scans.is_empty() {
                    offsets.push((k, totals.clone()));
                }
                for ((t, r), v) in totals.iter_mut().zip(&seg.reductions).zip(o.results) {
                    *t = r.op.combine(r.elem, *t, v);
                }
            }
        }
        let offset_chunk = |(k, offset): &(i64, Vec<u64>)| {
            let (lo, hi) = chunk_range(*k);
            for s in &seg.scans {
                let r = seg.reductions[s.reduction];
                // SAFETY: the loop stored to every index of lo..hi of this
                // buffer (Note [Scans]); chunks are disjoint ranges of it.
                unsafe { combine_range(r.op, r.elem, offset[s.reduction], args[s.word] as *mut u8, lo, hi) };
            }
        };
        match &pool {
            Some(pool) if offsets.len() > 1 => {
                run_shared(pool, threads, 0..offsets.len() as i64, &|i| offset_chunk(&offsets[i as usize]));
            }
            _ => offsets.iter().for_each(offset_chunk),
        }
        first = last;
    }
    for (r, t) in seg.reductions.iter().zip(totals) {
        args[r.word] = t;
    }
    seg.observed.record(work, n);
    if pool.is_some() {
        let busy = threads.min(chunks as usize);
        let next = next_overhead(overhead, began.elapsed().as_nanos(), work, busy);
        POOL_OVERHEAD_NS.store(next, Ordering::Relaxed);
    }
    for (j, acc) in seg.accumulators.iter().enumerate() {
        let count = (args[acc.count_word] as i64).max(0) as usize;
        let dst = args[acc.word] as *mut u8;
        for bufs in &private {
            // SAFETY: the accumulator's buffer holds `count` elements (the
            // compiler passes its allocation's count), the private one too.
            unsafe { combine_into(acc.op, acc.elem, dst, bufs[j].as_ptr() as *const u8, count) };
        }
    }
    0
}

/// The whole range as one chunk in the caller's context (the sequential loop).
fn run_whole(ctx: &mut Ctx, seg: &Segment, f: Code, args: &mut [u64], start: i64, bound: i64) -> i32 {
    args[0] = start as u64;
    args[1] = bound as u64;
    let mut results = vec![0u64; seg.reductions.len() + seg.firsts.len()];
    // SAFETY: `args` is the segment's argument block.
    let status = unsafe { run_chunk(ctx, f, args, &mut results) };
    if status == 0 {
        for (r, v) in seg.reductions.iter().zip(results) {
            args[r.word] = v;
        }
    }
    status
}

/// `buf[i] = offset op buf[i]` for `lo <= i < hi`.
///
/// # Safety
/// `buf` points to at least `hi` elements of type `elem`, `0 <= lo`.
unsafe fn combine_range(op: ReduceOp, elem: Elem, offset: u64, buf: *mut u8, lo: i64, hi: i64) {
    let (lo, n) = (lo as usize, (hi - lo).max(0) as usize);
    // SAFETY: elements lo..hi of `buf`, as the caller promises.
    unsafe { update_elements(elem, buf.add(lo * elem.bytes() as usize), n, |_, x| op.combine(elem, offset, x)) };
}

/// `dst[i] = dst[i] op src[i]` for `i < count`.
///
/// # Safety
/// Both point to `count` elements of type `elem`.
unsafe fn combine_into(op: ReduceOp, elem: Elem, dst: *mut u8, src: *const u8, count: usize) {
    // SAFETY: `src` and `dst` hold `count` elements, as the caller promises.
    unsafe { update_elements(elem, dst, count, |i, d| op.combine(elem, d, element(elem, src, i))) };
}

/// Replaces each of the `count` elements of type `elem` at `dst` by
/// `f(i, x)`, `x` element `i` as an argument word (`f32` in the low half).
///
/// # Safety
/// `dst` points to `count` elements of type `elem`.
unsafe fn update_elements(elem: Elem, dst: *mut u8, count: usize, mut f: impl FnMut(usize, u64) -> u64) {
    unsafe {
        match elem {
            Elem::F64 | Elem::I64 => {
                let d = std::slice::from_raw_parts_mut(dst as *mut u64, count);
                d.iter_mut().enumerate().for_each(|(i, x)| *x = f(i, *x));
            }
            Elem::F32 => {
                let d = std::slice::from_raw_parts_mut(dst as *mut u32, count);
                d.iter_mut().enumerate().for_each(|(i, x)| *x = f(i, *x as u64) as u32);
            }
        }
    }
}

/// Element `i` of type `elem` at `src`, as an argument word.
///
/// # Safety
/// `src` points to more than `i` elements of type `elem`.
unsafe fn element(elem: Elem, src: *const u8, i: usize) -> u64 {
    unsafe {
        match elem {
            Elem::F64 | Elem::I64 => *(src as *const u64).add(i),
            Elem::F32 => *(src as *const u32).add(i) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutral_elements_are_identities() {
        let xs = [0.0f64, -0.0, 1.5, -2.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN];
        for op in [ReduceOp::Add, ReduceOp::Mul, ReduceOp::Min, ReduceOp::Max] {
            for &x in &xs {
                let r = f64::from_bits(op.combine(Elem::F64, op.neutral(Elem::F64), x.to_bits()));
                assert!(r.to_bits() == x.to_bits() || (r.is_nan() && x.is_nan()), "{op:?} {x} -> {r}");
            }
            for x in [0i64, 5, -7, i64::MAX, i64::MIN] {
                assert_eq!(op.combine(Elem::I64, op.neutral(Elem::I64), x as u64) as i64, x, "{op:?}");
            }
        }
    }

    #[test]
    fn min_and_max_keep_nan_and_the_earlier_tie() {
        let c = |op: ReduceOp, a: f64, b: f64| f64::from_bits(op.combine(Elem::F64, a.to_bits(), b.to_bits()));
        assert!(c(ReduceOp::Max, f64::NAN, 1.0).is_nan());
        assert!(c(ReduceOp::Min, 1.0, f64::NAN).is_nan());
        assert!(c(ReduceOp::Max, 0.0, -0.0).is_sign_positive());
        assert!(c(ReduceOp::Max, -0.0, 0.0).is_sign_negative());
    }

    #[test]
    fn private_buffers_are_combined_in_with_their_operator() {
        let combined = |op: ReduceOp, dst: &[f64], src: &[f64]| {
            let mut d = dst.to_vec();
            // SAFETY: both hold `d.len()` elements.
            unsafe { combine_into(op, Elem::F64, d.as_mut_ptr() as *mut u8, src.as_ptr() as *const u8, d.len()) };
            d
        };
        assert_eq!(combined(ReduceOp::Add, &[1.0, 2.0], &[0.5, -2.0]), [1.5, 0.0]);
        assert_eq!(combined(ReduceOp::Max, &[1.0, 2.0], &[0.5, 3.0]), [1.0, 3.0]);
        assert_eq!(combined(ReduceOp::Min, &[1.0, 2.0], &[0.5, 3.0]), [0.5, 2.0]);
        assert_eq!(combined(ReduceOp::Mul, &[1.0, 2.0], &[0.5, 3.0]), [0.5, 6.0]);
        // A private buffer nothing combined into changes nothing.
        for op in [ReduceOp::Add, ReduceOp::Mul, ReduceOp::Min, ReduceOp::Max] {
            let neutral = [f64::from_bits(op.neutral(Elem::F64)); 3];
            let bits: Vec<u64> = combined(op, &[1.0, -0.0, 7.5], &neutral).iter().map(|x| x.to_bits()).collect();
            assert_eq!(bits, [1.0f64, -0.0, 7.5].map(f64::to_bits), "{op:?}");
        }
        // Two `f32`s to a word, each combined on its own.
        let mut d = [1.0f32, 5.0];
        let s = [4.0f32, 2.0];
        // SAFETY: both hold two elements.
        unsafe { combine_into(ReduceOp::Max, Elem::F32, d.as_mut_ptr() as *mut u8, s.as_ptr() as *const u8, 2) };
        assert_eq!(d, [4.0, 5.0]);
        let mut i = [3i64, -4];
        // SAFETY: both hold two elements.
        unsafe {
            combine_into(ReduceOp::Min, Elem::I64, i.as_mut_ptr() as *mut u8, [5i64, -9].as_ptr() as *const u8, 2)
        };
        assert_eq!(i, [3, -9]);
    }

    #[test]
    fn chunk_plans_depend_on_sizes_and_for_maps_on_time() {
        let seg = Segment {
            code: 0,
            words: 3,
            chunk: 10,
            reductions: vec![],
            scans: vec![],
            accumulators: vec![],
            firsts: vec![],
            observed: Observed::default(),
        };
        assert_eq!(plan(&seg, &[0, 0, 0], 95, 0, None), (10, 10));
        // At most 1024 chunks, whatever the compiler estimated.
        assert_eq!(plan(&seg, &[0, 0, 0], 1_000_000, 0, None), (977, 1024));
        assert_eq!(plan(&seg, &[0, 0, 0], 95, 3, None), (3, 32));
        let acc = Segment {
            accumulators: vec![Accumulator { word: 2, count_word: 2, elem: Elem::F64, op: ReduceOp::Add }],
            ..seg.clone()
        };
        // At most 16 chunks of a loop that adds into buffers.
        assert_eq!(plan(&acc, &[0, 0, 4], 1000, 0, None), (63, 16));
        // A map (nothing to combine) is cut by time, at least four chunks
        // per thread: 1 µs per iteration, 2 threads, worth the pool.
        let free = Free { threads: 2, ps_per_iteration: 1_000_000, worth_it: true };
        assert_eq!(plan(&seg, &[0, 0, 0], 31, 0, Some(free)), (4, 8));
        assert_eq!(plan(&seg, &[0, 0, 0], 1_000_000, 0, Some(free)), (977, 1024));
        let not_worth_it = Free { worth_it: false, ..free };
        assert_eq!(plan(&seg, &[0, 0, 0], 31, 0, Some(not_worth_it)), (31, 1));
        // A `max` or an integer sum combines exactly: cut like a map; a
        // float sum by the compiler's sizes whatever the time.
        let reduce = |op, elem| Segment { reductions: vec![Reduction { word: 2, op, elem }], ..seg.clone() };
        for exact in [reduce(ReduceOp::Max, Elem::F64), reduce(ReduceOp::Add, Elem::I64)] {
            assert_eq!(plan(&exact, &[0, 0, 0], 31, 0, Some(not_worth_it)), (31, 1));
            assert_eq!(plan(&exact, &[0, 0, 0], 31, 0, Some(free)), (4, 8));
        }
        assert_eq!(plan(&reduce(ReduceOp::Add, Elem::F64), &[0, 0, 0], 95, 0, Some(not_worth_it)), (10, 10));
    }

    #[test]
    fn the_pool_runs_loops_whose_saved_time_exceeds_its_cost() {
        // 300 µs of work on two threads saves 150 µs.
        assert!(worth_the_pool(300_000, 2, 100_000, || false));
        assert!(!worth_the_pool(300_000, 2, 200_000, || false));
        // More threads save more of it; one thread saves nothing.
        assert!(worth_the_pool(300_000, 4, 200_000, || false));
        assert!(!worth_the_pool(300_000, 1, 0, || false));
        // Below `POOL_WORK_NS`, never, however cheap the pool.
        assert!(!worth_the_pool(POOL_WORK_NS as u128 - 1, 8, 0, || false));
        // While the workers are awake, from `AWAKE_WORK_NS` of work, whatever
        // waking them cost (Note [Where the data is]); never on one thread.
        // 20 µs of work saves 10 µs on two threads, more than the awake cost.
        assert!(worth_the_pool(20_000, 2, MOST_OVERHEAD_NS, || true));
        assert!(!worth_the_pool(AWAKE_WORK_NS as u128 - 1, 8, 0, || true));
        assert!(!worth_the_pool(300_000, 1, 0, || true));
        // 10 µs saves 5 µs: not more than the awake cost, unless the
        // measured cost is lower still.
        assert!(!worth_the_pool(AWAKE_WORK_NS as u128, 2, MOST_OVERHEAD_NS, || true));
        assert!(worth_the_pool(AWAKE_WORK_NS as u128, 2, 1_000, || true));
    }

    #[test]
    fn the_workers_are_awake_just_after_a_pool_run_only() {
        assert!(awake_at(1_000, 1_000 + AWAKE_NS / 2 - 1));
        assert!(!awake_at(1_000, 1_000 + AWAKE_NS / 2));
        assert!(!awake_at(0, 5));
        let p = pool(2).expect("a pool");
        run_shared(&p, 2, 0..4, &|k| k);
        assert!(LAST_POOL_END_NS.load(Ordering::Relaxed) > 0);
    }

    /// A copy the awake pool shares lands where one `memmove` puts it, for
    /// every thread count and a length that is no multiple of a piece.
    #[test]
    fn a_copy_shared_by_awake_workers_is_a_plain_copy() {
        let n = AWAKE_COPY_BYTES / 8 + 12_345;
        let src: Vec<u64> = (0..n as u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
        for threads in [1, 2, 3, 8] {
            let mut dst = vec![0u64; n];
            LAST_POOL_END_NS.store(now_ns().max(1), Ordering::Relaxed);
            // SAFETY: both hold `n` elements and do not overlap.
            unsafe { copy_result(threads, dst.as_mut_ptr() as *mut u8, src.as_ptr() as *const u8, n * 8) };
            assert!(dst == src, "{threads} threads");
        }
    }

    #[test]
    fn every_chunk_runs_once_and_outcomes_come_back_in_order_however_shared() {
        for threads in 1..=5 {
            let p = pool(threads).expect("a pool");
            for (start, end) in [(0, 0), (0, 1), (3, 5), (0, 7), (10, 111)] {
                let runs: Vec<AtomicI64> = (start..end).map(|_| AtomicI64::new(0)).collect();
                let got = run_shared(&p, threads, start..end, &|k| {
                    runs[(k - start) as usize].fetch_add(1, Ordering::Relaxed);
                    k * 2
                });
                assert_eq!(got, (start..end).map(|k| k * 2).collect::<Vec<_>>(), "{threads} threads, {start}..{end}");
                assert!(runs.iter().all(|r| r.load(Ordering::Relaxed) == 1), "{threads} threads, {start}..{end}");
            }
        }
    }

    #[test]
    fn a_refused_loop_fades_the_pool_cost_until_it_is_measured_again() {
        // 700 µs of work saves 350 µs on two threads: refused at 380 µs.
        let mut overhead = 380_000;
        let mut refusals = 0;
        while !worth_the_pool(700_000, 2, overhead, || false) {
            overhead = faded_overhead(overhead);
            refusals += 1;
        }
        assert_eq!(refusals, 2);
        // From the cap, a loop saving a tenth of it is tried within a few dozen runs.
        let (mut overhead, mut refusals) = (MOST_OVERHEAD_NS, 0);
        while !worth_the_pool(2 * POOL_WORK_NS as u128, 2, overhead, || false) {
            overhead = faded_overhead(overhead);
            refusals += 1;
        }
        assert!((20..=40).contains(&refusals), "{refusals}");
    }

    #[test]
    fn the_pool_cost_is_a_bounded_running_average() {
        // 1 ms of work on two threads in 700 µs: 200 µs beyond the shared work.
        assert_eq!(next_overhead(0, 700_000, 1_000_000, 2), 50_000);
        assert_eq!(next_overhead(200_000, 700_000, 1_000_000, 2), 200_000);
        // A run faster than its shared work adds nothing.
        assert_eq!(next_overhead(40_000, 400_000, 1_000_000, 2), 30_000);
        // A run preempted for a second counts as `MOST_OVERHEAD_NS`, so a
        // loop of twice that much work still goes to the pool after it.
        let after = next_overhead(POOL_WORK_NS / 2, 1_000_000_000, 1_000_000, 2);
        assert!(after <= MOST_OVERHEAD_NS);
        assert!(worth_the_pool(2 * MOST_OVERHEAD_NS as u128 + 2, 2, after, || false));
    }
}
