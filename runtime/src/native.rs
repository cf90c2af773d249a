//! The run-time support of native (JIT-compiled) Slope code.
//!
//! Input: calls from generated code, which receives a `*mut Ctx` and calls
//! the `extern "C"` functions below by the names [`symbols`] lists. Output:
//! arena memory, the recorded failure of a call, and host math.
//!
//! Invariants:
//! - Every function generated code calls is `#[no_mangle]` under the name
//!   [`symbols`] gives it: the JIT resolves the names through that list, and
//!   an ahead-of-time library (`slope build`) links the same names from
//!   `libslope_capi.a` (which contains this crate) and the C math library.
//! - [`Ctx`] is `#[repr(C)]` with `while_limit` first: generated code loads
//!   it at offset 0.
//! - Every buffer of a call comes from the arena: a list of blocks, each
//!   allocated from the system allocator (16-byte aligned, at least 16 bytes,
//!   zeroed; Note [Arena blocks come from the system allocator]),
//!   so blocks have distinct address ranges. Blocks are freed by
//!   [`slope_release`] (all blocks since a mark except those holding a kept
//!   pointer) and by [`Ctx::reset`], which the caller runs after every call:
//!   nothing leaks from one call to the next.
//! - The math functions compute exactly what the reference interpreter
//!   computes for the same operation (`f32` special functions go through
//!   `f64`, as there).

use crate::math;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;

/// Alignment and minimum size of every arena block.
const BLOCK_ALIGN: usize = 16;

/// The data pointer of every buffer of no elements: aligned for any element
/// type and not null, but no block of the arena (generated code never reads
/// or writes through it, and a release keeps nothing for it). An allocation
/// of zero elements is this constant, not a call (`Rhs::fold` in the
/// compiler's loops/mod.rs): lazily allocated `map` results start as one.
pub const EMPTY_BUFFER: i64 = BLOCK_ALIGN as i64;

/// One arena block: its start and the layout it was allocated with.
struct Block {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: a block owns its allocation exclusively (as a `Box<[u8]>` would):
// no other `Block` or `Ctx` holds its pointer, and it is freed only by the
// context that owns it. So a context, with its blocks, may move to another
// thread — which a compiled program called from several threads does
// (Note [Calls from several threads] in the compiler's `jit`).
unsafe impl Send for Block {}

/// The state of one native call: the `while` limit, the arena, the failure.
#[repr(C)]
pub struct Ctx {
    /// The `while` iteration limit (E0205); generated code reads it at offset 0.
    pub while_limit: i64,
    blocks: Vec<Block>,
    /// Pointers whose blocks the next [`slope_release`] keeps.
    keep: Vec<usize>,
    failure: Option<u32>,
    fail_args: Vec<i64>,
    /// The function whose site `failure` is, when not the function the
    /// host called: the innermost entry that a call of an entry failed in
    /// (recorded by [`slope_failed_in`]).
    failed_in: Option<u32>,
    held: usize,
    peak: usize,
    /// Freed blocks kept for reuse by a later allocation of the same size
    /// (at most [`CACHE_BYTES`]), oldest first: calls repeat their
    /// allocations, and fresh large blocks cost a page fault per page. Not
    /// counted as held (Note [The block cache]).
    cache: VecDeque<Block>,
    cached: usize,
    /// Threads parallel segments may use (`slope_parallel_for`); at least 1.
    pub threads: usize,
    /// When positive, parallel loops are cut into chunks of at most this
    /// many iterations, but no more than 65536 chunks (tests use it to
    /// exercise chunking on small inputs).
    pub chunk_limit: i64,
}

// Note [The block cache]
// ~~~~~~~~~~~~~~~~~~~~~~~
// A large block fresh from the allocator costs a page fault per 4 KiB page
// when first written, so a context keeps the blocks its calls free and hands
// them to later allocations of the same size: a call repeated on inputs of
// the same sizes allocates nothing new. The cache is bounded (CACHE_BYTES,
// CACHE_BLOCKS), and when a freed block does not fit, the *oldest* cached
// blocks go back to the allocator, not the new one: a process runs calls of
// changing sizes (GradBench's workloads one after another, a REPL session),
// and the blocks worth keeping are the recent call's. Keeping the first
// blocks instead filled the cache with sizes no later call asked for, and
// every later call paid its page faults again: GradBench's ba8 jacobian ran
// in 257 ms after ba1–ba7 against 90 ms on its own.

// Note [Arena blocks come from the system allocator]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The arena asks `std::alloc::System` (glibc's malloc on Linux) for its
// blocks, not the process's global allocator, so that generated code
// allocates the same way under every host: the `slope` binary, a Python
// interpreter, a C program. The binary's global allocator is mimalloc,
// chosen for the compiler's many small allocations; for the arena's large
// zeroed blocks it measured slower — GradBench's ba, replayed with
// `scripts/message_scaling.py`, took 845 ms against 534 ms on one thread
// when the arena went through mimalloc too, and 644 ms against 655 ms once
// it asked the system allocator (glibc maps a large zeroed block fresh from
// the kernel; what mimalloc does differently there was not investigated).

/// The most bytes of freed blocks a [`Ctx`] keeps for reuse.
pub const CACHE_BYTES: usize = 256 << 20;

/// The most freed blocks a [`Ctx`] keeps (an allocation searches them).
const CACHE_BLOCKS: usize = 256;

/// What a failed call of generated code recorded: the failure site (an
/// index into the sites of the function it is in), the arguments its
/// message is rendered from, and that function when it is not the one the
/// host called but an entry that one called (by index in the program; the
/// innermost such call).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub site: u32,
    pub args: Vec<i64>,
    pub function: Option<u32>,
}

impl Failure {
    /// The index of the function whose sites `site` indexes, given the
    /// index of the function the host called.
    pub fn function_or(&self, called: usize) -> usize {
        self.function.map_or(called, |k| k as usize)
    }
}

impl Ctx {
    /// An empty context whose `while` loops fail after `while_limit` iterations.
    pub fn new(while_limit: i64) -> Ctx {
        Ctx {
            while_limit,
            blocks: Vec::new(),
            keep: Vec::new(),
            failure: None,
            fail_args: Vec::new(),
            failed_in: None,
            held: 0,
            peak: 0,
            cache: VecDeque::new(),
            cached: 0,
            threads: 1,
            chunk_limit: 0,
        }
    }

    /// The failure the last call recorded, if any.
    pub fn take_failure(&mut self) -> Option<Failure> {
        let function = self.failed_in.take();
        let site = self.failure.take()?;
        Some(Failure { site, args: std::mem::take(&mut self.fail_args), function })
    }

    /// Frees every block and forgets any failure; the peak is kept.
    pub fn reset(&mut self) {
        self.free_from(0);
        self.keep.clear();
        self.failure = None;
        self.fail_args.clear();
        self.failed_in = None;
    }

    /// Records `failure` (a parallel segment's, handed from the worker's
    /// context to the caller's).
    pub fn set_failure(&mut self, failure: Failure) {
        self.failure = Some(failure.site);
        self.fail_args = failure.args;
        self.failed_in = failure.function;
    }

    /// Counts `bytes` held elsewhere on behalf of this call (workers' arenas,
    /// private accumulators) towards the peak, on top of what is held now.
    pub fn note_peak(&mut self, bytes: usize) {
        self.peak = self.peak.max(self.held + bytes);
    }

    /// The arena's mark: the number of blocks allocated so far.
    pub fn mark(&self) -> usize {
        self.blocks.len()
    }

    /// Frees every block allocated since `mark` (nothing kept).
    pub fn release_to(&mut self, mark: usize) {
        self.keep.clear();
        self.release(mark);
    }

    /// Starts a new peak measurement from what is held now.
    pub fn reset_peak(&mut self) {
        self.peak = self.held;
    }

    /// Bytes of arena blocks currently allocated.
    pub fn bytes_held(&self) -> usize {
        self.held
    }

    /// The most bytes ever held at once by this context.
    pub fn peak_bytes(&self) -> usize {
        self.peak
    }

    /// Number of blocks currently allocated.
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// A block for `count` elements of `size` bytes, or null when the
    /// request exceeds [`MAX_ELEMENTS`] or the allocator refuses it.
    fn alloc(&mut self, count: i64, size: i64) -> *mut u8 {
        let count = count.max(0) as u64;
        if count > MAX_ELEMENTS {
            return std::ptr::null_mut();
        }
        let size = (count * size.max(1) as u64) as usize;
        let size = size.max(BLOCK_ALIGN);
        let Ok(layout) = Layout::from_size_align(size, BLOCK_ALIGN) else {
            return std::ptr::null_mut();
        };
        // A cached block of the same size, else a fresh zeroed one. (A reused
        // block is not zeroed: lowering writes every element before reading it.)
        let ptr = match self.cache.iter().rposition(|b| b.layout == layout) {
            Some(k) => {
                let b = self.cache.remove(k).expect("a cached block at k");
                self.cached -= b.layout.size();
                b.ptr
            }
            // SAFETY: `layout` has a non-zero size.
            None => unsafe { System.alloc_zeroed(layout) },
        };
        if ptr.is_null() {
            return ptr;
        }
        self.blocks.push(Block { ptr, layout });
        self.held += size;
        self.peak = self.peak.max(self.held);
        ptr
    }

    /// Frees the blocks at `mark..` that hold no kept pointer and moves the
    /// kept ones down to `mark..` (in order); clears the keep-list.
    fn release(&mut self, mark: usize) {
        let mut keep = std::mem::take(&mut self.keep);
        keep.sort_unstable();
        let mark = mark.min(self.blocks.len());
        let mut kept = mark;
        for k in mark..self.blocks.len() {
            let start = self.blocks[k].ptr as usize;
            let end = start + self.blocks[k].layout.size();
            // The smallest kept pointer at or after `start` decides.
            let first = keep.partition_point(|&p| p < start);
            if keep.get(first).is_some_and(|&p| p <= end) {
                // Entries `kept..k` are freed blocks: swap this one below them.
                self.blocks.swap(kept, k);
                kept += 1;
            } else {
                self.free_block(k);
            }
        }
        self.blocks.truncate(kept);
        keep.clear();
        self.keep = keep;
    }

    /// Frees the block at `k` into the cache, returning the oldest cached
    /// blocks to the allocator to make room, or returns it to the allocator
    /// when it is larger than the whole cache (the entry is left dangling
    /// for the caller to drop). Note [The block cache].
    fn free_block(&mut self, k: usize) {
        let b = Block { ptr: self.blocks[k].ptr, layout: self.blocks[k].layout };
        let size = b.layout.size();
        self.held -= size;
        if size > CACHE_BYTES {
            // SAFETY: `b.ptr` was allocated with `b.layout` and is freed only
            // here, after which the entry is truncated away by every caller.
            unsafe { System.dealloc(b.ptr, b.layout) };
            return;
        }
        while self.cached + size > CACHE_BYTES || self.cache.len() >= CACHE_BLOCKS {
            let old = self.cache.pop_front().expect("a full cache holds a block");
            self.cached -= old.layout.size();
            // SAFETY: cached blocks are owned by the cache alone.
            unsafe { System.dealloc(old.ptr, old.layout) };
        }
        self.cached += size;
        self.cache.push_back(b);
    }

    /// Returns the cached blocks to the allocator.
    pub fn trim(&mut self) {
        for b in self.cache.drain(..) {
            // SAFETY: cached blocks are owned by the cache alone.
            unsafe { System.dealloc(b.ptr, b.layout) };
        }
        self.cached = 0;
    }

    /// Bytes of freed blocks kept for reuse.
    pub fn bytes_cached(&self) -> usize {
        self.cached
    }

    fn free_from(&mut self, mark: usize) {
        for k in mark..self.blocks.len() {
            self.free_block(k);
        }
        self.blocks.truncate(mark);
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        self.free_from(0);
        self.trim();
    }
}

/// Set by an interrupt (Ctrl-C in `slope repl`): code compiled to poll it
/// (`jit::compile` with `poll_interrupt`) and the interpreter stop with
/// E0208 at the next loop iteration. A byte generated code reads atomically.
static INTERRUPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks the running evaluation to stop (from a signal handler's thread).
pub fn request_interrupt() {
    INTERRUPT.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Forgets an interrupt request (before the next evaluation).
pub fn clear_interrupt() {
    INTERRUPT.store(false, std::sync::atomic::Ordering::Relaxed);
}

/// Whether an interrupt was requested.
pub fn interrupted() -> bool {
    INTERRUPT.load(std::sync::atomic::Ordering::Relaxed)
}

/// The address of the interrupt flag, which generated code polls (one byte,
/// non-zero when set).
pub fn interrupt_flag() -> *const u8 {
    INTERRUPT.as_ptr() as *const u8
}

/// The largest array (in elements) either engine allocates: 2^40. Larger
/// requests fail with E0207 instead of aborting the process in the allocator.
pub const MAX_ELEMENTS: u64 = 1 << 40;

/// A 16-byte aligned buffer for `count` elements of `size` bytes from the
/// arena (zeroed when fresh; a reused block holds old data); null when it
/// cannot be had (generated code then fails with E0207). A negative count
/// allocates an empty buffer.
///
/// # Safety
/// `ctx` must point to a live [`Ctx`] not otherwise borrowed.
#[inline(never)]
#[no_mangle]
pub unsafe extern "C" fn slope_alloc(ctx: *mut Ctx, count: i64, size: i64) -> *mut u8 {
    unsafe { (*ctx).alloc(count, size) }
}

/// The arena's mark: the number of blocks allocated so far.
///
/// # Safety
/// `ctx` must point to a live [`Ctx`].
#[inline(never)]
#[no_mangle]
pub unsafe extern "C" fn slope_mark(ctx: *mut Ctx) -> i64 {
    unsafe { (*ctx).blocks.len() as i64 }
}

/// Asks the next [`slope_release`] to keep the block containing `ptr`.
///
/// # Safety
/// `ctx` must point to a live [`Ctx`] not otherwise borrowed.
#[inline(never)]
#[no_mangle]
pub unsafe extern "C" fn slope_keep(ctx: *mut Ctx, ptr: i64) {
    unsafe { (*ctx).keep.push(ptr as usize) }
}

/// Frees the blocks allocated since `mark` except those containing a kept
/// pointer (`start <= p <= start + len`), which move down to index `mark`.
///
/// # Safety
/// `ctx` must point to a live [`Ctx`] not otherwise borrowed, and no pointer
/// into a freed block may be used afterwards.
#[inline(never)]
#[no_mangle]
pub unsafe extern "C" fn slope_release(ctx: *mut Ctx, mark: i64) {
    unsafe { (*ctx).release(mark.max(0) as usize) }
}

/// Appends one argument of the failure's message.
///
/// # Safety
/// `ctx` must point to a live [`Ctx`] not otherwise borrowed.
#[inline(never)]
#[no_mangle]
pub unsafe extern "C" fn slope_fail_arg(ctx: *mut Ctx, v: i64) {
    unsafe { (*ctx).fail_args.push(v) }
}

/// Records that the call failed at `site` (its arguments were pushed before).
///
/// # Safety
/// `ctx` must point to a live [`Ctx`] not otherwise borrowed.
#[inline(never)]
#[no_mangle]
pub unsafe extern "C" fn slope_fail(ctx: *mut Ctx, site: i64) {
    unsafe { (*ctx).failure = Some(site as u32) }
}

/// Records that the failure being returned happened in the function at
/// index `func` of the program, which the failing code called (an entry
/// called by an entry). The innermost call records first, and wins.
///
/// # Safety
/// `ctx` must point to a live [`Ctx`] not otherwise borrowed.
#[inline(never)]
#[no_mangle]
pub unsafe extern "C" fn slope_failed_in(ctx: *mut Ctx, func: i64) {
    let ctx = unsafe { &mut *ctx };
    ctx.failed_in.get_or_insert(func as u32);
}

/// Records a failure at `site` with its first `n` (at most 6) arguments in
/// one call: what a function's shared failure block calls.
///
/// # Safety
/// `ctx` must point to a live [`Ctx`] not otherwise borrowed.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
#[no_mangle]
pub unsafe extern "C" fn slope_fail_with(
    ctx: *mut Ctx,
    site: i64,
    n: i64,
    a0: i64,
    a1: i64,
    a2: i64,
    a3: i64,
    a4: i64,
    a5: i64,
) {
    let ctx = unsafe { &mut *ctx };
    ctx.fail_args.extend_from_slice(&[a0, a1, a2, a3, a4, a5][..n.clamp(0, 6) as usize]);
    ctx.failure = Some(site as u32);
}

/// Copies `bytes` bytes from `src` to `dst`; the ranges may overlap. A
/// large copy runs on the pool of the call's threads (Note [Large copies]
/// in `parallel.rs`).
///
/// # Safety
/// `ctx` must point to a live [`Ctx`]; both ranges must be valid for
/// `bytes` bytes.
#[inline(never)]
#[no_mangle]
pub unsafe extern "C" fn slope_copy(ctx: *mut Ctx, dst: *mut u8, src: *const u8, bytes: i64) {
    if bytes > 0 {
        unsafe { crate::parallel::copy((*ctx).threads, dst, src, bytes as usize) }
    }
}

/// Host functions `slope_argsort_{f64,f32,i64}(keys, n, out, descending)`:
/// write the stable sorting permutation of `keys[0..n]` into `out[0..n]`
/// (Note [Sorting] in `crate::sort`; the interpreter calls the same code).
macro_rules! host_argsort {
    ($($name:ident: $t:ty => $f:path;)*) => {$(
        /// # Safety
        /// `keys` and `out` must be valid for `n` elements and not overlap.
        #[inline(never)]
        #[no_mangle]
        pub unsafe extern "C" fn $name(keys: *const $t, n: i64, out: *mut i64, descending: i64) {
            if n > 0 {
                let (keys, out) = unsafe {
                    (std::slice::from_raw_parts(keys, n as usize), std::slice::from_raw_parts_mut(out, n as usize))
                };
                $f(keys, descending != 0, out)
            }
        }
    )*};
}

host_argsort! {
    slope_argsort_f64: f64 => crate::sort::argsort_f64;
    slope_argsort_f32: f32 => crate::sort::argsort_f32;
    slope_argsort_i64: i64 => crate::sort::argsort_i64;
}

/// `base ** exp` with wrapping multiplication (`exp >= 0`), as the interpreter.
#[inline(never)]
#[no_mangle]
pub extern "C" fn slope_ipow(base: i64, exp: i64) -> i64 {
    let (mut base, mut exp, mut acc) = (base, exp as u64, 1i64);
    while exp > 0 {
        if exp & 1 == 1 {
            acc = acc.wrapping_mul(base);
        }
        exp >>= 1;
        base = base.wrapping_mul(base);
    }
    acc
}

/// Defines `extern "C"` wrappers of host math, one per float type, and the
/// list of their symbols.
macro_rules! host_math {
    (unary { $($f64n:ident, $f32n:ident: |$x:ident| $e:expr;)* }
     binary { $($b64n:ident, $b32n:ident: |$a:ident, $b:ident| $be:expr;)* }
     special { $($s64n:ident, $s32n:ident: $sf:path;)* }) => {
        $(
            #[inline(never)]
            #[no_mangle]
            pub extern "C" fn $f64n($x: f64) -> f64 { $e }
            #[inline(never)]
            #[no_mangle]
            pub extern "C" fn $f32n($x: f32) -> f32 { $e }
        )*
        $(
            #[inline(never)]
            #[no_mangle]
            pub extern "C" fn $b64n($a: f64, $b: f64) -> f64 { $be }
            #[inline(never)]
            #[no_mangle]
            pub extern "C" fn $b32n($a: f32, $b: f32) -> f32 { $be }
        )*
        $(
            #[inline(never)]
            #[no_mangle]
            pub extern "C" fn $s64n(x: f64) -> f64 { $sf(x) }
            #[inline(never)]
            #[no_mangle]
            pub extern "C" fn $s32n(x: f32) -> f32 { $sf(x as f64) as f32 }
        )*
        /// The host math functions by symbol name.
        fn math_symbols() -> Vec<(&'static str, *const u8)> {
            vec![
                $((stringify!($f64n), $f64n as *const u8), (stringify!($f32n), $f32n as *const u8),)*
                $((stringify!($b64n), $b64n as *const u8), (stringify!($b32n), $b32n as *const u8),)*
                $((stringify!($s64n), $s64n as *const u8), (stringify!($s32n), $s32n as *const u8),)*
            ]
        }
    };
}

host_math! {
    unary {
        slope_exp_f64, slope_exp_f32: |x| x.exp();
        slope_log_f64, slope_log_f32: |x| x.ln();
        slope_sin_f64, slope_sin_f32: |x| x.sin();
        slope_cos_f64, slope_cos_f32: |x| x.cos();
        slope_tan_f64, slope_tan_f32: |x| x.tan();
        slope_tanh_f64, slope_tanh_f32: |x| x.tanh();
        slope_log1p_f64, slope_log1p_f32: |x| x.ln_1p();
        slope_expm1_f64, slope_expm1_f32: |x| x.exp_m1();
        slope_floor_f64, slope_floor_f32: |x| x.floor();
        slope_ceil_f64, slope_ceil_f32: |x| x.ceil();
        slope_sinh_f64, slope_sinh_f32: |x| x.sinh();
        slope_cosh_f64, slope_cosh_f32: |x| x.cosh();
        slope_asinh_f64, slope_asinh_f32: |x| x.asinh();
        slope_acosh_f64, slope_acosh_f32: |x| x.acosh();
        slope_atanh_f64, slope_atanh_f32: |x| x.atanh();
        slope_asin_f64, slope_asin_f32: |x| x.asin();
        slope_acos_f64, slope_acos_f32: |x| x.acos();
        slope_atan_f64, slope_atan_f32: |x| x.atan();
        slope_cbrt_f64, slope_cbrt_f32: |x| x.cbrt();
        slope_round_f64, slope_round_f32: |x| x.round_ties_even();
        slope_trunc_f64, slope_trunc_f32: |x| x.trunc();
        // Stable: max(x, 0) + log1p(exp(-|x|)) never overflows (NaN stays NaN).
        slope_softplus_f64, slope_softplus_f32: |x| if x.is_nan() { x } else { x.max(0.0) + (-x.abs()).exp().ln_1p() };
    }
    binary {
        slope_pow_f64, slope_pow_f32: |a, b| a.powf(b);
        slope_fmod_f64, slope_fmod_f32: |a, b| a % b;
        slope_atan2_f64, slope_atan2_f32: |a, b| a.atan2(b);
        slope_hypot_f64, slope_hypot_f32: |a, b| a.hypot(b);
    }
    special {
        slope_lgamma_f64, slope_lgamma_f32: math::lgamma;
        slope_digamma_f64, slope_digamma_f32: math::digamma;
        slope_trigamma_f64, slope_trigamma_f32: math::trigamma;
        slope_erf_f64, slope_erf_f32: math::erf;
    }
}

/// Every function generated code may call, by name, for `JITBuilder::symbol`.
pub fn symbols() -> Vec<(&'static str, *const u8)> {
    let mut s: Vec<(&'static str, *const u8)> = vec![
        ("slope_alloc", slope_alloc as *const u8),
        ("slope_mark", slope_mark as *const u8),
        ("slope_keep", slope_keep as *const u8),
        ("slope_release", slope_release as *const u8),
        ("slope_fail_arg", slope_fail_arg as *const u8),
        ("slope_fail", slope_fail as *const u8),
        ("slope_fail_with", slope_fail_with as *const u8),
        ("slope_failed_in", slope_failed_in as *const u8),
        ("slope_copy", slope_copy as *const u8),
        ("slope_ipow", slope_ipow as *const u8),
        ("slope_argsort_f64", slope_argsort_f64 as *const u8),
        ("slope_argsort_f32", slope_argsort_f32 as *const u8),
        ("slope_argsort_i64", slope_argsort_i64 as *const u8),
        ("slope_parallel_for", crate::parallel::slope_parallel_for as *const u8),
    ];
    s.extend(math_symbols());
    // Generated code calls the C library's own f64 functions where the
    // wrapper would only forward to them (Note [Math from the C library]).
    for (name, f) in c_math() {
        if let Some(entry) = s.iter_mut().find(|(n, _)| *n == name) {
            entry.1 = f;
        }
    }
    s
}

// Note [Math from the C library]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Rust's `f64::exp`, `ln`, `sin`, … call the platform's C math library, so
// the wrappers `slope_exp_f64` etc. (which the interpreter's operations are
// too) compute exactly what `exp`, `log`, `sin`, … of libm compute. Generated
// code links those libm symbols directly instead: the wrapper is a call level
// with its own frame per element, and a loop of exponentials (lse) ran 30%
// faster without it. The values are the same functions' values, so the
// engines still agree bit for bit (the differential tests check it). On
// Unix only, where `f64`'s math is the C library's by construction.
#[cfg(unix)]
fn c_math() -> Vec<(&'static str, *const u8)> {
    unsafe extern "C" {
        fn exp(x: f64) -> f64;
        fn log(x: f64) -> f64;
        fn sin(x: f64) -> f64;
        fn cos(x: f64) -> f64;
        fn tan(x: f64) -> f64;
        fn tanh(x: f64) -> f64;
        fn log1p(x: f64) -> f64;
        fn expm1(x: f64) -> f64;
        fn pow(x: f64, y: f64) -> f64;
    }
    vec![
        ("slope_exp_f64", exp as *const u8),
        ("slope_log_f64", log as *const u8),
        ("slope_sin_f64", sin as *const u8),
        ("slope_cos_f64", cos as *const u8),
        ("slope_tan_f64", tan as *const u8),
        ("slope_tanh_f64", tanh as *const u8),
        ("slope_log1p_f64", log1p as *const u8),
        ("slope_expm1_f64", expm1 as *const u8),
        ("slope_pow_f64", pow as *const u8),
    ]
}

/// Elsewhere the wrappers stay: the C library may not be what `f64` calls.
#[cfg(not(unix))]
fn c_math() -> Vec<(&'static str, *const u8)> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(ctx: &mut Ctx, bytes: i64) -> *mut u8 {
        unsafe { slope_alloc(ctx, bytes, 1) }
    }

    #[test]
    fn freed_blocks_are_reused_by_size_up_to_the_cache_limit() {
        let mut ctx = Ctx::new(10);
        let a = alloc(&mut ctx, 4096);
        let b = alloc(&mut ctx, 100);
        ctx.reset();
        assert_eq!((ctx.bytes_held(), ctx.bytes_cached()), (0, 4096 + 100));
        // The next call's allocations of the same sizes get the same blocks.
        assert_eq!(alloc(&mut ctx, 100), b);
        assert_eq!(alloc(&mut ctx, 4096), a);
        assert_eq!((ctx.bytes_held(), ctx.bytes_cached()), (4196, 0));
        // A block larger than the whole cache goes back to the allocator.
        let big = alloc(&mut ctx, CACHE_BYTES as i64 + 1);
        assert!(!big.is_null());
        ctx.reset();
        assert_eq!(ctx.bytes_cached(), 4196, "the big block was freed, not cached");
        // A block that fits only without older ones evicts them: the cache
        // keeps the most recent calls' blocks (Note [The block cache]).
        let fits = alloc(&mut ctx, CACHE_BYTES as i64 - 100);
        ctx.reset();
        // (The call before allocated the 100-byte block first, so it was
        // freed first and is the older one: evicting it alone is not room enough.)
        assert_eq!(ctx.bytes_cached(), CACHE_BYTES - 100, "both older blocks went back to the allocator");
        assert_eq!(alloc(&mut ctx, CACHE_BYTES as i64 - 100), fits);
        assert_eq!(ctx.bytes_cached(), 0);
        ctx.reset();
        ctx.trim();
        assert_eq!(ctx.bytes_cached(), 0);
    }

    #[test]
    fn the_cache_holds_at_most_its_block_count_newest_first() {
        let mut ctx = Ctx::new(10);
        for size in 1..=(CACHE_BLOCKS as i64 + 10) {
            alloc(&mut ctx, size * 64);
        }
        ctx.reset();
        assert_eq!(ctx.cache.len(), CACHE_BLOCKS);
        let smallest = ctx.cache.iter().map(|b| b.layout.size()).min().unwrap();
        assert_eq!(smallest, 11 * 64, "the ten oldest blocks went back to the allocator");
        ctx.trim();
    }

    #[test]
    fn blocks_are_aligned_zeroed_and_counted() {
        let mut ctx = Ctx::new(10);
        let a = alloc(&mut ctx, 0);
        let b = alloc(&mut ctx, 100);
        assert_ne!(a, b);
        assert_eq!(a as usize % 16, 0);
        assert_eq!(b as usize % 16, 0);
        assert!(unsafe { std::slice::from_raw_parts(b, 100) }.iter().all(|&x| x == 0));
        assert_eq!(ctx.bytes_held(), 116);
        assert_eq!(unsafe { slope_mark(&mut ctx) }, 2);
        ctx.reset();
        assert_eq!(ctx.bytes_held(), 0);
        assert_eq!(ctx.peak_bytes(), 116);
        assert_eq!(ctx.blocks(), 0);
    }

    #[test]
    fn release_keeps_exactly_the_blocks_holding_kept_pointers() {
        let mut ctx = Ctx::new(10);
        let before = alloc(&mut ctx, 64);
        let mark = unsafe { slope_mark(&mut ctx) };
        let a = alloc(&mut ctx, 32);
        let b = alloc(&mut ctx, 48);
        let c = alloc(&mut ctx, 80);
        let d = alloc(&mut ctx, 16);
        unsafe {
            b.write(7);
            d.add(3).write(9);
            // An interior pointer of `d`, the start of `b`, and a pointer into no block.
            slope_keep(&mut ctx, d.add(3) as i64);
            slope_keep(&mut ctx, b as i64);
            slope_keep(&mut ctx, 8);
            slope_release(&mut ctx, mark);
        }
        assert_eq!(ctx.blocks(), 3);
        assert_eq!(ctx.bytes_held(), 64 + 48 + 16);
        let starts: Vec<*mut u8> = ctx.blocks.iter().map(|b| b.ptr).collect();
        assert_eq!(starts, vec![before, b, d]);
        assert_eq!(unsafe { (b.read(), d.add(3).read()) }, (7, 9));
        assert!(ctx.keep.is_empty());
        let _ = (a, c);
        // Nothing kept: everything since the mark goes.
        unsafe { slope_release(&mut ctx, mark) };
        assert_eq!(ctx.blocks(), 1);
        assert_eq!(ctx.bytes_held(), 64);
        ctx.reset();
        assert_eq!(ctx.bytes_held(), 0);
    }

    #[test]
    fn one_past_the_end_counts_as_inside() {
        let mut ctx = Ctx::new(10);
        let a = alloc(&mut ctx, 32);
        unsafe {
            slope_keep(&mut ctx, a.add(32) as i64);
            slope_release(&mut ctx, 0);
        }
        assert_eq!(ctx.blocks(), 1);
    }

    #[test]
    fn failures_are_recorded_and_taken_once() {
        let mut ctx = Ctx::new(10);
        assert_eq!(ctx.take_failure(), None);
        unsafe {
            slope_fail_arg(&mut ctx, 5);
            slope_fail_arg(&mut ctx, -1);
            slope_fail(&mut ctx, 3);
        }
        assert_eq!(ctx.take_failure(), Some(Failure { site: 3, args: vec![5, -1], function: None }));
        assert_eq!(ctx.take_failure(), None);
    }

    #[test]
    fn the_innermost_failing_function_is_kept_until_reset() {
        let mut ctx = Ctx::new(10);
        unsafe {
            slope_fail(&mut ctx, 1);
            slope_failed_in(&mut ctx, 2);
            slope_failed_in(&mut ctx, 5);
        }
        let failure = ctx.take_failure().expect("a failure");
        assert_eq!((failure.site, failure.function, failure.function_or(7)), (1, Some(2), 2));
        unsafe {
            slope_fail(&mut ctx, 0);
            slope_failed_in(&mut ctx, 4);
        }
        ctx.reset();
        assert_eq!(ctx.take_failure(), None);
        unsafe { slope_fail(&mut ctx, 0) };
        assert_eq!(ctx.take_failure().map(|f| f.function_or(7)), Some(7), "the called function's own site");
    }

    #[test]
    fn ipow_and_math_match_the_interpreter() {
        assert_eq!(slope_ipow(3, 4), 81);
        assert_eq!(slope_ipow(-2, 0), 1);
        assert_eq!(slope_ipow(2, 64), 0);
        assert_eq!(slope_ipow(3, 41), 3i64.wrapping_pow(41));
        assert_eq!(slope_fmod_f64(7.5, 2.0), 1.5);
        assert_eq!(slope_fmod_f32(-7.5, 2.0), -1.5);
        assert_eq!(slope_lgamma_f32(3.0), math::lgamma(3.0) as f32);
        assert_eq!(slope_erf_f64(0.5), math::erf(0.5));
        let names: Vec<&str> = symbols().iter().map(|s| s.0).collect();
        assert!(names.contains(&"slope_trigamma_f32") && names.contains(&"slope_ceil_f64"));
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
    }

    #[test]
    fn copy_allows_overlap() {
        let mut ctx = Ctx::new(0);
        ctx.threads = 2;
        let mut v = [1u8, 2, 3, 4, 5];
        unsafe { slope_copy(&mut ctx, v.as_mut_ptr().add(1), v.as_ptr(), 3) };
        assert_eq!(v, [1, 1, 2, 3, 5]);
        // Large enough for the pool, but overlapping: still `memmove`
        // (Note [Large copies]).
        let n = 9 << 20;
        let mut big: Vec<u8> = (0..n + 8).map(|i| (i % 251) as u8).collect();
        let mut want = big.clone();
        want.copy_within(0..n, 8);
        unsafe { slope_copy(&mut ctx, big.as_mut_ptr().add(8), big.as_ptr(), n as i64) };
        assert!(big == want, "an overlapping large copy is not memmove's");
    }
}
