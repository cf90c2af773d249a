//! The C API of Slope (`include/slope.h`): compile a program, call its
//! entries on pointer-and-shape arguments, read results, report errors.
//! Values and errors (`include/slope_values.h`) are `slope_capi::values`,
//! shared with the ahead-of-time libraries of `slope build`.
//!
//! Input: C strings and [`SlopeArg`] leaves. Output: opaque handles
//! ([`SlopeProgram`], [`SlopeValue`], [`SlopeError`]) the caller frees.
//! Invariants:
//! - Nothing panics across the boundary: every function runs inside
//!   `catch_unwind`, and a panic (a bug) becomes error E0900.
//! - Every pointer is checked for NULL, the number of leaves against the
//!   entry before the leaves are read, every shape for negative sizes or
//!   sizes beyond Slope's largest array, every string for UTF-8; data is
//!   copied byte for byte (any alignment) and a `bool` is read as a byte
//!   (never as a Rust `bool`); bad input is E0302 (or E0301 for an unknown
//!   entry), never undefined behaviour here — given that each pointer points
//!   to as much memory as the caller says.
//! - Arguments are checked against the entry's declared types before any
//!   code runs, exactly as the Python package checks them.
//! - Like the Python package, it goes through `slope::api::Program` only.

use slope::api::{Failure, Program};
use slope::diagnostic::{Code, Diagnostic, RenderStyle, Span};
pub use slope_capi::values::*;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A compiled program and its entry names as C strings.
pub struct SlopeProgram {
    program: Program,
    entries: Vec<CString>,
}

fn error_of(failure: &Failure) -> Box<SlopeError> {
    let first = failure.diagnostics.first();
    SlopeError::new(
        first.map(|d| d.code.as_str()).unwrap_or("E0900"),
        &first.map(|d| d.message.clone()).unwrap_or_default(),
        &failure.render(RenderStyle::Short),
    )
}

fn failure(code: Code, message: String) -> Failure {
    let d = Diagnostic::error(code, message, Span::default(), "in this call");
    Failure { sources: Default::default(), diagnostics: vec![d] }
}

/// Runs `f` and renders its failure, both inside `catch_unwind`: a panic
/// (a bug) becomes E0900 and never unwinds into C.
fn guarded<T>(f: impl FnOnce() -> Result<T, Failure>) -> Result<T, Box<SlopeError>> {
    let panicked = || error_of(&failure(Code::E0900, "internal compiler error: the C API panicked".into()));
    catch_unwind(AssertUnwindSafe(|| f().map_err(|e| error_of(&e)))).unwrap_or_else(|_| Err(panicked()))
}

/// A C string argument as UTF-8.
///
/// # Safety
/// `s` is NULL or a NUL-terminated string.
unsafe fn text<'a>(s: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if s.is_null() {
        return Err(failure(Code::E0302, format!("{what} is NULL")));
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(s) }.to_str().map_err(|_| failure(Code::E0302, format!("{what} is not UTF-8")))
}

/// `slope_options` (slope.h): a zeroed struct is the default.
#[repr(C)]
pub struct SlopeOptions {
    pub threads: c_int,
    pub checkpoint: c_int,
    pub save: *const c_char,
    pub reassociate: c_int,
}

/// The compiler options a `slope_options` pointer (NULL: the defaults) asks for.
///
/// # Safety
/// `options` is NULL or points to a `slope_options` whose `save` is NULL or
/// a NUL-terminated string.
unsafe fn options(options: *const SlopeOptions) -> Result<(c_int, slope::driver::Options), Failure> {
    let mut out = slope::driver::Options::default();
    if options.is_null() {
        return Ok((0, out));
    }
    // SAFETY: the caller's contract.
    let o = unsafe { &*options };
    out.ad.checkpoint = o.checkpoint != 0;
    out.reassociate = o.reassociate != 0;
    if !o.save.is_null() {
        // SAFETY: the caller's contract.
        let name = unsafe { text(o.save, "the save policy") }?;
        out.ad.save = slope::driver::Save::from_name(name).map_err(|e| failure(Code::E0305, e))?;
    }
    Ok((o.threads, out))
}

fn compile(name: &str, source: &str, threads: c_int) -> Result<SlopeProgram, Failure> {
    compile_with(name, source, threads, &slope::driver::Options::default())
}

fn compile_with(
    name: &str,
    source: &str,
    threads: c_int,
    options: &slope::driver::Options,
) -> Result<SlopeProgram, Failure> {
    let threads = match threads {
        0 => slope_runtime::parallel::threads_from_env().map_err(|e| failure(Code::E0305, e))?,
        n => slope_runtime::parallel::thread_count(n.into()).map_err(|e| failure(Code::E0305, e))?,
    };
    // (`Program::compile_with` runs the compiler on its own big stack.)
    let program = Program::compile_with(name, source, &slope::driver::file_loader, options)?;
    program.set_threads(threads)?;
    let entries = program.entries().iter().map(|e| c_string(e)).collect();
    Ok(SlopeProgram { program, entries })
}

fn finish_program(result: Result<SlopeProgram, Box<SlopeError>>, error: *mut *mut SlopeError) -> *mut SlopeProgram {
    match result {
        Ok(p) => Box::into_raw(Box::new(p)),
        Err(e) => {
            // SAFETY: `error` is the caller's (see `report`).
            unsafe { report(error, e) };
            std::ptr::null_mut()
        }
    }
}

/// # Safety
/// `path` is a NUL-terminated string; `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn slope_compile_file(
    path: *const c_char,
    threads: c_int,
    error: *mut *mut SlopeError,
) -> *mut SlopeProgram {
    let result = guarded(|| {
        // SAFETY: the caller's contract.
        let path = unsafe { text(path, "the path") }?;
        let source =
            std::fs::read_to_string(path).map_err(|e| failure(Code::E0303, format!("cannot read {path}: {e}")))?;
        compile(path, &source, threads)
    });
    finish_program(result, error)
}

/// # Safety
/// `name` and `source` are NUL-terminated strings; `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn slope_compile_source(
    name: *const c_char,
    source: *const c_char,
    threads: c_int,
    error: *mut *mut SlopeError,
) -> *mut SlopeProgram {
    let result = guarded(|| {
        // SAFETY: the caller's contract.
        let (name, source) = unsafe { (text(name, "the name")?, text(source, "the source")?) };
        compile(name, source, threads)
    });
    finish_program(result, error)
}

/// # Safety
/// `path` is a NUL-terminated string; `options` is NULL or a valid
/// `slope_options`; `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn slope_compile_file_with(
    path: *const c_char,
    options: *const SlopeOptions,
    error: *mut *mut SlopeError,
) -> *mut SlopeProgram {
    let result = guarded(|| {
        // SAFETY: the caller's contract.
        let (path, (threads, options)) = unsafe { (text(path, "the path")?, self::options(options)?) };
        let source =
            std::fs::read_to_string(path).map_err(|e| failure(Code::E0303, format!("cannot read {path}: {e}")))?;
        compile_with(path, &source, threads, &options)
    });
    finish_program(result, error)
}

/// # Safety
/// `name` and `source` are NUL-terminated strings; `options` is NULL or a
/// valid `slope_options`; `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn slope_compile_source_with(
    name: *const c_char,
    source: *const c_char,
    options: *const SlopeOptions,
    error: *mut *mut SlopeError,
) -> *mut SlopeProgram {
    let result = guarded(|| {
        // SAFETY: the caller's contract.
        let (name, source, (threads, options)) =
            unsafe { (text(name, "the name")?, text(source, "the source")?, self::options(options)?) };
        compile_with(name, source, threads, &options)
    });
    finish_program(result, error)
}

/// # Safety
/// `program` is NULL or came from `slope_compile_*` and is not used again.
#[no_mangle]
pub unsafe extern "C" fn slope_program_free(program: *mut SlopeProgram) {
    if !program.is_null() {
        // SAFETY: made by `Box::into_raw` in `finish_program`, freed once.
        drop(unsafe { Box::from_raw(program) });
    }
}

/// # Safety
/// `program` is NULL or a live program.
#[no_mangle]
pub unsafe extern "C" fn slope_entry_count(program: *const SlopeProgram) -> usize {
    // SAFETY: NULL or live.
    unsafe { program.as_ref() }.map_or(0, |p| p.entries.len())
}

/// # Safety
/// `program` is NULL or a live program.
#[no_mangle]
pub unsafe extern "C" fn slope_entry_name(program: *const SlopeProgram, i: usize) -> *const c_char {
    // SAFETY: NULL or live.
    match unsafe { program.as_ref() }.and_then(|p| p.entries.get(i)) {
        Some(name) => name.as_ptr(),
        None => std::ptr::null(),
    }
}

/// # Safety
/// `program` is NULL or a live program; `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn slope_set_threads(
    program: *mut SlopeProgram,
    threads: c_int,
    error: *mut *mut SlopeError,
) -> c_int {
    let result = guarded(|| {
        // SAFETY: NULL or live.
        let p = unsafe { program.as_ref() }.ok_or_else(|| failure(Code::E0302, "the program is NULL".into()))?;
        let threads = slope_runtime::parallel::thread_count(threads.into()).map_err(|e| failure(Code::E0305, e))?;
        p.program.set_threads(threads)
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            // SAFETY: the caller's contract.
            unsafe { report(error, e) };
            1
        }
    }
}

/// # Safety
/// `program` is NULL or live; `entry` NUL-terminated; `args` points to
/// `nargs` leaves whose shapes and data are readable as they describe;
/// `result` is writable; `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn slope_call(
    program: *const SlopeProgram,
    entry: *const c_char,
    args: *const SlopeArg,
    nargs: usize,
    result: *mut *mut SlopeValue,
    error: *mut *mut SlopeError,
) -> c_int {
    if !result.is_null() {
        // SAFETY: checked non-null; the caller provides the storage.
        unsafe { *result = std::ptr::null_mut() };
    }
    let outcome = guarded(|| {
        // SAFETY: the caller's contract (see above).
        let p = unsafe { program.as_ref() }.ok_or_else(|| failure(Code::E0302, "the program is NULL".into()))?;
        let entry = unsafe { text(entry, "the entry name") }?;
        if result.is_null() {
            return Err(failure(Code::E0302, "the result pointer is NULL".into()));
        }
        let program = &p.program;
        let sig = program.entry_signature(entry)?;
        let invalid = |message: String| program.invalid_input(entry, message);
        // The count is checked before `args` is read at all.
        let needed: usize = sig.params.iter().map(|(_, t)| leaf_count(&slope::values::value_type(t))).sum();
        if nargs != needed {
            return Err(invalid(format!("`{entry}` takes {needed} argument leaves, {nargs} given")));
        }
        let leaves: &[SlopeArg] = match nargs {
            0 => &[],
            _ if args.is_null() => return Err(invalid("the arguments are NULL".into())),
            // SAFETY: `args` points to `nargs` leaves (the caller's contract),
            // and `nargs` is what the entry takes.
            _ => unsafe { std::slice::from_raw_parts(args, nargs) },
        };
        let mut next = leaves.iter();
        let mut values = Vec::with_capacity(sig.params.len());
        for (name, ty) in &sig.params {
            // SAFETY: each leaf's pointers are readable as it describes.
            values.push(unsafe { read_value(&mut next, &slope::values::value_type(ty), name) }.map_err(invalid)?);
        }
        program.call_values(entry, &values).map(to_c)
    });
    match outcome {
        Ok(value) => {
            // SAFETY: checked non-null inside.
            unsafe { *result = Box::into_raw(Box::new(value)) };
            0
        }
        Err(e) => {
            // SAFETY: the caller's contract.
            unsafe { report(error, e) };
            1
        }
    }
}
