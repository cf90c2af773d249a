//! The runtime of an ahead-of-time library: contexts and calls.
//!
//! Input: the library's [`LibraryData`] (laid out by the compiler's
//! `jit::aot`: the JSON description of `slope_runtime::aot::Library`, the
//! code table, the plan slots) and calls from the library's generated C
//! functions (`NAME_context_new`, `NAME_ENTRY`, …), which forward here.
//! Output: contexts, result values and errors (`values`).
//! Invariants:
//! - A library is loaded once per process, on its first context: the
//!   description is parsed and checked, and each parallel segment's plan is
//!   built and stored in its slot, which generated code reads when it calls
//!   `slope_parallel_for`. Plans live as long as the process (the library's
//!   code may run until it is unloaded).
//! - A call checks its arguments against the entry's declared types before
//!   any code runs (the same checks and messages as `libslope_c`), runs on
//!   the context's arena, copies the results out and empties the arena:
//!   nothing a call allocates outlives it except the returned value.
//! - A context serialises the calls made on it (a mutex), so a context
//!   shared between threads is safe; threads that want to run at once use
//!   one context each.
//! - Nothing panics into C: every function runs under `catch_unwind`; a
//!   panic (a bug) is E0900.

use crate::values::{read_value, report, to_c, SlopeArg, SlopeError, SlopeValue};
use slope_runtime::aot::{Entry, Library};
use slope_runtime::native::Ctx;
use slope_runtime::parallel::{Code, Segment};
use slope_runtime::words::{leaf_words, push_words, read_results};
use slope_runtime::Value;
use std::ffi::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::Mutex;

/// What the compiler puts in a library's writable data (`slope.library`).
#[repr(C)]
pub struct LibraryData {
    /// The JSON text of a [`Library`].
    meta: *const u8,
    meta_len: usize,
    /// The code of each entry, then of each segment.
    codes: *const usize,
    /// One slot per segment, holding its plan once loaded.
    plans: *mut usize,
    /// The loaded library; null until the first context.
    loaded: AtomicPtr<Loaded>,
}

/// A library, loaded.
struct Loaded {
    library: Library,
    /// The code of each entry.
    codes: Vec<Code>,
}

/// A context: the arena and settings calls run with (`NAME_context` in C).
pub struct Context {
    loaded: &'static Loaded,
    ctx: Mutex<Ctx>,
    threads: AtomicUsize,
}

/// An error without a source location (bad arguments to the C functions).
fn plain(code: &str, message: String) -> Box<SlopeError> {
    SlopeError::new(code, &message, &format!("error[{code}]: {message}"))
}

/// Runs `f` under `catch_unwind`; a panic is E0900.
fn guarded<T>(f: impl FnOnce() -> Result<T, Box<SlopeError>>) -> Result<T, Box<SlopeError>> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(plain("E0900", "internal compiler error: the library's runtime panicked".into())))
}

/// Loads `data` once (Note [Loading a library]).
///
/// # Safety
/// `data` was laid out by the compiler for this runtime, and lives as long
/// as the process (it is the library's static data).
unsafe fn load(data: *mut LibraryData) -> Result<&'static Loaded, String> {
    static LOADING: Mutex<()> = Mutex::new(());
    // SAFETY: the library's static data (the caller's contract).
    let data = unsafe { &*data };
    let _guard = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    let done = data.loaded.load(Ordering::Acquire);
    if !done.is_null() {
        // SAFETY: stored below from a leaked box, never freed.
        return Ok(unsafe { &*done });
    }
    // SAFETY: the compiler wrote `meta_len` bytes of JSON at `meta`.
    let meta = unsafe { std::slice::from_raw_parts(data.meta, data.meta_len) };
    let library: Library =
        serde_json::from_slice(meta).map_err(|e| format!("the library's description is damaged: {e}"))?;
    let (entries, segments) = (library.entries.len(), library.segments.len());
    // SAFETY: the code table has one address per entry and per segment.
    let codes = unsafe { std::slice::from_raw_parts(data.codes, entries + segments) };
    for (k, segment) in library.segments.iter().enumerate() {
        let plan = Box::new(Segment { code: codes[entries + k], ..segment.clone() });
        // SAFETY: one slot per segment; generated code reads the slot only
        // after a context exists, so after this store (the mutex orders it).
        unsafe { *data.plans.add(k) = Box::leak(plan) as *const Segment as usize };
    }
    let codes = codes[..entries]
        .iter()
        // SAFETY: each address is a function of the entry signature.
        .map(|&c| unsafe { std::mem::transmute::<usize, Code>(c) })
        .collect();
    let loaded: &'static Loaded = Box::leak(Box::new(Loaded { library, codes }));
    data.loaded.store(loaded as *const Loaded as *mut Loaded, Ordering::Release);
    Ok(loaded)
}

// Note [Loading a library]
// ~~~~~~~~~~~~~~~~~~~~~~~~
// The machine code of an ahead-of-time library is position-independent and
// contains no addresses of run-time objects: a parallel loop loads its plan
// from a slot in the library's data, and everything the runtime needs to
// know of an entry (its types, the words of its arguments, the wording of
// its failures) is a JSON description the compiler wrote beside the code.
// The first context parses it and fills the slots; a lock makes two
// threads creating the first contexts at once load it once. Plans are never
// freed: they hold the only per-process state (the observed cost of each
// loop, Note [Pool or inline]), and the code that reads them stays mapped
// until the library is unloaded, which the runtime cannot observe.

/// Creates a context for `data`'s library; `threads` 0 means
/// `SLOPE_THREADS`, else every core.
///
/// # Safety
/// `data` is the library's own data; `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn slope_aot_context_new(
    data: *mut LibraryData,
    threads: c_int,
    error: *mut *mut SlopeError,
) -> *mut Context {
    let made = guarded(|| {
        // SAFETY: the caller's contract.
        let loaded = unsafe { load(data) }.map_err(|e| plain("E0900", e))?;
        let threads = thread_count(threads)?;
        let ctx = Mutex::new(Ctx::new(loaded.library.while_limit));
        Ok(Context { loaded, ctx, threads: AtomicUsize::new(threads) })
    });
    match made {
        Ok(c) => Box::into_raw(Box::new(c)),
        Err(e) => {
            // SAFETY: the caller's contract.
            unsafe { report(error, e) };
            std::ptr::null_mut()
        }
    }
}

fn thread_count(threads: c_int) -> Result<usize, Box<SlopeError>> {
    match threads {
        0 => slope_runtime::parallel::threads_from_env(),
        n => slope_runtime::parallel::thread_count(n.into()),
    }
    .map_err(|e| plain("E0305", e))
}

/// # Safety
/// `context` is NULL or came from `slope_aot_context_new`, no call on it is
/// running, and it is not used again.
#[no_mangle]
pub unsafe extern "C" fn slope_aot_context_free(context: *mut Context) {
    if !context.is_null() {
        // SAFETY: made by `Box::into_raw` above, freed once.
        drop(unsafe { Box::from_raw(context) });
    }
}

/// Parallel loops use `threads` threads (1 to 65535) from the next call on.
///
/// # Safety
/// `context` is NULL or live; `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn slope_aot_set_threads(
    context: *const Context,
    threads: c_int,
    error: *mut *mut SlopeError,
) -> c_int {
    let set = guarded(|| {
        // SAFETY: NULL or live.
        let c = unsafe { context.as_ref() }.ok_or_else(|| plain("E0302", "the context is NULL".into()))?;
        let n = slope_runtime::parallel::thread_count(threads.into()).map_err(|e| plain("E0305", e))?;
        c.threads.store(n, Ordering::Relaxed);
        Ok(())
    });
    finish(set.map(|()| std::ptr::null_mut()), std::ptr::null_mut(), error)
}

/// Calls entry number `entry` on `nargs` argument leaves (`args[k]` points
/// to leaf `k`): what the library's `NAME_ENTRY` functions call.
///
/// # Safety
/// `context` is NULL or live; `args` points to `nargs` pointers, each NULL
/// or pointing to a leaf whose shape and data are readable as it says;
/// `result` and `error` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn slope_aot_call(
    context: *const Context,
    entry: usize,
    args: *const *const SlopeArg,
    nargs: usize,
    result: *mut *mut SlopeValue,
    error: *mut *mut SlopeError,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe {
        call(context, result, error, |library| {
            let e = library.entries.get(entry).ok_or_else(|| plain("E0301", format!("no entry {entry}")))?;
            let pointers = leaves(args, nargs, e)?;
            let mut out = Vec::with_capacity(nargs);
            for (k, &p) in pointers.iter().enumerate() {
                out.push(p.as_ref().ok_or_else(|| invalid(e, format!("argument leaf {} is NULL", k + 1)))?);
            }
            Ok((entry, out))
        })
    }
}

/// Calls the entry named `entry` on the `nargs` leaves at `args`, as
/// `slope_call` does in `libslope_c`: what the library's `NAME_call` calls.
///
/// # Safety
/// `context` is NULL or live; `entry` is NULL or NUL-terminated; `args`
/// points to `nargs` leaves readable as they say; `result` and `error` are
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn slope_aot_call_named(
    context: *const Context,
    entry: *const std::ffi::c_char,
    args: *const SlopeArg,
    nargs: usize,
    result: *mut *mut SlopeValue,
    error: *mut *mut SlopeError,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe {
        call(context, result, error, |library| {
            if entry.is_null() {
                return Err(plain("E0302", "the entry name is NULL".into()));
            }
            let name = std::ffi::CStr::from_ptr(entry).to_string_lossy();
            let Some(k) = library.entries.iter().position(|e| e.name == name) else {
                let names: Vec<String> = library.entries.iter().map(|e| format!("`{}`", e.name)).collect();
                let message = format!("no entry point named `{name}` (the library has {})", names.join(", "));
                return Err(plain("E0301", message));
            };
            Ok((k, leaves(args, nargs, &library.entries[k])?.iter().collect()))
        })
    }
}

/// An E0302 for a call of `entry`, rendered as the CLI renders it.
fn invalid(entry: &Entry, message: String) -> Box<SlopeError> {
    SlopeError::new("E0302", &message, &entry.input_error.around(&message))
}

/// The `nargs` items at `args`, once their count is known to be right for
/// `entry` (checked before `args` is read at all).
///
/// # Safety
/// `args` points to `nargs` items when it is not NULL.
unsafe fn leaves<'a, T>(args: *const T, nargs: usize, entry: &Entry) -> Result<&'a [T], Box<SlopeError>> {
    let needed = entry.param_leaves.len();
    if nargs != needed {
        return Err(invalid(entry, format!("`{}` takes {needed} argument leaves, {nargs} given", entry.name)));
    }
    match nargs {
        0 => Ok(&[]),
        _ if args.is_null() => Err(invalid(entry, "the arguments are NULL".into())),
        // SAFETY: `nargs` items (the caller's contract).
        _ => Ok(unsafe { std::slice::from_raw_parts(args, nargs) }),
    }
}

/// A call: `pick` chooses the entry and its leaves from the library.
///
/// # Safety
/// As for [`slope_aot_call`]; `pick`'s leaves are readable as they say.
unsafe fn call<'a>(
    context: *const Context,
    result: *mut *mut SlopeValue,
    error: *mut *mut SlopeError,
    pick: impl FnOnce(&Library) -> Result<(usize, Vec<&'a SlopeArg>), Box<SlopeError>>,
) -> c_int {
    if !result.is_null() {
        // SAFETY: checked non-null; the caller provides the storage.
        unsafe { *result = std::ptr::null_mut() };
    }
    let outcome = guarded(|| {
        // SAFETY: NULL or live.
        let c = unsafe { context.as_ref() }.ok_or_else(|| plain("E0302", "the context is NULL".into()))?;
        let (entry, leaves) = pick(&c.loaded.library)?;
        let e = &c.loaded.library.entries[entry];
        if result.is_null() {
            return Err(invalid(e, "the result pointer is NULL".into()));
        }
        let mut next = leaves.into_iter();
        let mut values = Vec::with_capacity(e.params.len());
        for (name, ty) in &e.params {
            // SAFETY: each leaf is readable as it describes.
            values.push(unsafe { read_value(&mut next, ty, name) }.map_err(|m| invalid(e, m))?);
        }
        let mut ctx = c.ctx.lock().unwrap_or_else(|p| p.into_inner());
        // Empty already, unless a panic (a bug) stopped the last call midway.
        ctx.reset();
        ctx.threads = c.threads.load(Ordering::Relaxed);
        let out = run(&c.loaded.library.entries, entry, c.loaded.codes[entry], &values, &mut ctx);
        ctx.reset();
        out.map(|v| Box::into_raw(Box::new(to_c(v))))
    });
    finish(outcome, result, error)
}

/// Stores a result or an error; 0 on success, 1 on failure.
fn finish(
    outcome: Result<*mut SlopeValue, Box<SlopeError>>,
    result: *mut *mut SlopeValue,
    error: *mut *mut SlopeError,
) -> c_int {
    match outcome {
        Ok(value) => {
            if !result.is_null() {
                // SAFETY: checked non-null; the caller provides the storage.
                unsafe { *result = value };
            }
            0
        }
        Err(e) => {
            // SAFETY: the caller's contract.
            unsafe { report(error, e) };
            1
        }
    }
}

/// Runs `code` on `values` in `ctx`; the result is copied out of the arena.
/// `entries` are the library's; `code` is entry `index`'s. A failure names
/// a site of the entry it happened in: this one's, or that of an entry it
/// called (Note [Entries called by entries] in the compiler's ir/calls.rs).
fn run(entries: &[Entry], index: usize, code: Code, values: &[Value], ctx: &mut Ctx) -> Result<Value, Box<SlopeError>> {
    let entry = &entries[index];
    let mut words = Vec::new();
    for v in values {
        push_words(v, &mut words);
    }
    let n_results = entry.result_leaves.iter().map(|&(_, rank)| leaf_words(rank)).sum();
    let mut results = vec![0u64; n_results];
    // SAFETY: `words` holds the words of the entry's parameter leaves (the
    // values were checked against its types), whose arrays outlive the
    // call; `results` has a word per result word.
    let status = unsafe { code(words.as_ptr(), results.as_mut_ptr(), ctx) };
    if status != 0 {
        let failure = ctx.take_failure();
        let failed = failure.as_ref().and_then(|f| entries.get(f.function_or(index)));
        return Err(match (failure, failed) {
            (Some(failure), Some(failed)) if (failure.site as usize) < failed.sites.len() => {
                let s = &failed.sites[failure.site as usize];
                let message = s.message.render(&failure.args);
                SlopeError::new(&s.code, &message, &s.rendered.around(&message))
            }
            (other, _) => plain("E0900", format!("internal compiler error: native code failed with {other:?}")),
        });
    }
    // SAFETY: on success each array result word points to its elements
    // (the arena is not emptied yet).
    let mut leaves = unsafe { read_results(entry.result_leaves.iter().copied(), &results, ctx.threads) }.into_iter();
    match (entry.result.rebuild(&mut leaves), leaves.next()) {
        (Some(v), None) => Ok(v),
        _ => Err(plain("E0900", "internal compiler error: the result leaves do not match the result type".into())),
    }
}
