//! The C API of Slope (`include/slope.h`): compile a program, call its
//! entries on pointer-and-shape arguments, read results, report errors.
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
use slope_runtime::{Array, ArrayData, ElemType, Scalar, Value, ValueType};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A compiled program and its entry names as C strings.
pub struct SlopeProgram {
    program: Program,
    entries: Vec<CString>,
}

/// A failure: code, message and rendered diagnostic.
pub struct SlopeError {
    code: CString,
    message: CString,
    diagnostic: CString,
}

/// A result (see `slope.h`).
pub struct SlopeValue {
    /// 0 for a scalar, the number of dimensions of an array, -1 for a tuple or record.
    rank: i64,
    dtype: i32,
    shape: Vec<i64>,
    data: Option<ArrayData>,
    items: Vec<SlopeValue>,
    fields: Vec<CString>,
}

/// One argument leaf (see `slope.h`).
#[repr(C)]
pub struct SlopeArg {
    pub dtype: i32,
    pub rank: i64,
    pub shape: *const i64,
    pub data: *const c_void,
}

const F64: i32 = 0;
const F32: i32 = 1;
const I64: i32 = 2;
const BOOL: i32 = 3;

fn dtype_of(elem: ElemType) -> i32 {
    match elem {
        ElemType::F64 => F64,
        ElemType::F32 => F32,
        ElemType::I64 => I64,
        ElemType::Bool => BOOL,
    }
}

fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', " ")).unwrap_or_default()
}

fn error_of(failure: &Failure) -> Box<SlopeError> {
    let first = failure.diagnostics.first();
    Box::new(SlopeError {
        code: c_string(first.map(|d| d.code.as_str()).unwrap_or("E0900")),
        message: c_string(&first.map(|d| d.message.clone()).unwrap_or_default()),
        diagnostic: c_string(&failure.render(RenderStyle::Short)),
    })
}

fn failure(code: Code, message: String) -> Failure {
    let d = Diagnostic::error(code, message, Span::default(), "in this call");
    Failure { sources: Default::default(), diagnostics: vec![d] }
}

/// Stores `e` in `*error` when the caller asked for errors.
///
/// # Safety
/// `error` is NULL or points to writable storage for a pointer.
unsafe fn report(error: *mut *mut SlopeError, e: Box<SlopeError>) {
    if !error.is_null() {
        // SAFETY: checked non-null; the caller provides the storage.
        unsafe { *error = Box::into_raw(e) };
    }
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
    if !o.save.is_null() {
        // SAFETY: the caller's contract.
        let name = unsafe { text(o.save, "the save policy") }?;
        out.ad.save = slope::ad::Save::from_name(name).map_err(|e| failure(Code::E0305, e))?;
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

/// How many argument leaves a parameter of type `ty` takes.
fn leaf_count(ty: &ValueType) -> usize {
    match ty {
        ValueType::Tuple(items) => items.iter().map(leaf_count).sum(),
        ValueType::Record(fields) => fields.iter().map(|(_, t)| leaf_count(t)).sum(),
        _ => 1,
    }
}

/// Reads the leaves of one parameter of type `ty`.
///
/// # Safety
/// Every leaf's `shape` and `data` are readable as the leaf describes.
unsafe fn read_value<'a>(
    leaves: &mut impl Iterator<Item = &'a SlopeArg>,
    ty: &ValueType,
    path: &str,
) -> Result<Value, String> {
    match ty {
        ValueType::Tuple(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, t) in items.iter().enumerate() {
                // SAFETY: passed on.
                out.push(unsafe { read_value(leaves, t, &format!("{path}.{i}")) }?);
            }
            Ok(Value::Tuple(out))
        }
        ValueType::Record(fields) => {
            let mut out = Vec::with_capacity(fields.len());
            for (name, t) in fields {
                // SAFETY: passed on.
                out.push((name.clone(), unsafe { read_value(leaves, t, &format!("{path}.{name}")) }?));
            }
            Ok(Value::Record(out))
        }
        _ => {
            let leaf = leaves.next().ok_or_else(|| format!("`{path}` is missing (too few argument leaves)"))?;
            // SAFETY: passed on.
            unsafe { read_leaf(leaf, ty, path) }
        }
    }
}

/// One scalar or array leaf, checked against `ty`.
///
/// # Safety
/// `leaf.shape` points to `leaf.rank` sizes and `leaf.data` to their
/// product of elements (one for a scalar), or the leaf says otherwise in a
/// way that is rejected before reading.
unsafe fn read_leaf(leaf: &SlopeArg, ty: &ValueType, path: &str) -> Result<Value, String> {
    let Some((elem, lens)) = ty.scalar_leaf() else {
        return Err(format!("`{path}` is an array of tuples or records, which C callers cannot pass yet"));
    };
    let want = format!("{}{}", "[]".repeat(lens.len()), elem.name());
    if leaf.dtype != dtype_of(elem) {
        let names = ["SLOPE_F64", "SLOPE_F32", "SLOPE_I64", "SLOPE_BOOL"];
        let given = usize::try_from(leaf.dtype).ok().and_then(|d| names.get(d)).map_or("invalid", |n| n);
        return Err(format!("`{path}` must be {want}, but the leaf's dtype is {given} ({})", leaf.dtype));
    }
    if leaf.rank != lens.len() as i64 {
        return Err(format!("`{path}` must be {want}, but the leaf has rank {}", leaf.rank));
    }
    let shape: Vec<usize> = if lens.is_empty() {
        Vec::new()
    } else if leaf.shape.is_null() {
        return Err(format!("`{path}`: the shape is NULL"));
    } else {
        // SAFETY: `shape` points to `rank` sizes.
        let sizes = unsafe { std::slice::from_raw_parts(leaf.shape, lens.len()) };
        sizes
            .iter()
            .map(|&n| usize::try_from(n).map_err(|_| format!("`{path}` has a negative size {n}")))
            .collect::<Result<_, _>>()?
    };
    if let Some((d, k)) =
        lens.iter().zip(&shape).enumerate().find_map(|(d, (k, n))| k.filter(|k| k != n).map(|k| (d, k)))
    {
        return Err(format!("`{path}` must have length {k} in dimension {d}, not {}", shape[d]));
    }
    // Every dimension and the element count within MAX_ELEMENTS (2^40), as
    // for every array Slope makes: the loop optimiser relies on it.
    let limit = slope_runtime::native::MAX_ELEMENTS as usize;
    let count = shape.iter().try_fold(1usize, |a, &n| a.checked_mul(n)).filter(|&c| c <= limit);
    let count = match count {
        Some(c) if shape.iter().all(|&n| n <= limit) => c,
        _ => return Err(format!("`{path}` is larger than Slope's largest array ({limit} elements)")),
    };
    if count > 0 && leaf.data.is_null() {
        return Err(format!("`{path}`: the data is NULL"));
    }
    /// Copies `count` elements byte for byte, so `data` need not be aligned.
    ///
    /// # Safety
    /// `data` points to `count * size_of::<T>()` readable bytes (or `count`
    /// is 0), and every bit pattern is a valid `T` (f64, f32, i64, u8).
    unsafe fn copy<T: Copy>(data: *const c_void, count: usize) -> Vec<T> {
        let mut out: Vec<T> = Vec::with_capacity(count);
        if count > 0 {
            // SAFETY: the source has the bytes (caller's contract); `out` has
            // room for `count` elements, now all written.
            unsafe {
                std::ptr::copy_nonoverlapping(data as *const u8, out.as_mut_ptr() as *mut u8, count * size_of::<T>());
                out.set_len(count);
            }
        }
        out
    }
    // SAFETY: `data` points to `count` elements of the leaf's dtype.
    let data = unsafe {
        match elem {
            ElemType::F64 => ArrayData::F64(copy(leaf.data, count)),
            ElemType::F32 => ArrayData::F32(copy(leaf.data, count)),
            ElemType::I64 => ArrayData::I64(copy(leaf.data, count)),
            // Bytes, never read as `bool`: any non-zero byte is true.
            ElemType::Bool => ArrayData::Bool(copy::<u8>(leaf.data, count).into_iter().map(|b| b != 0).collect()),
        }
    };
    Ok(if shape.is_empty() {
        Value::Scalar(data.get(0))
    } else {
        Value::Array(std::rc::Rc::new(Array::new(shape, data)))
    })
}

/// A result as a C value tree.
fn to_c(value: Value) -> SlopeValue {
    let empty = |rank: i64, dtype: i32| SlopeValue {
        rank,
        dtype,
        shape: Vec::new(),
        data: None,
        items: Vec::new(),
        fields: Vec::new(),
    };
    match value {
        Value::Scalar(s) => {
            let data = match s {
                Scalar::F64(x) => ArrayData::F64(vec![x]),
                Scalar::F32(x) => ArrayData::F32(vec![x]),
                Scalar::I64(x) => ArrayData::I64(vec![x]),
                Scalar::Bool(x) => ArrayData::Bool(vec![x]),
            };
            SlopeValue { data: Some(data), ..empty(0, dtype_of(s.elem_type())) }
        }
        Value::Array(a) => {
            let a = std::rc::Rc::try_unwrap(a).unwrap_or_else(|shared| (*shared).clone());
            let header = empty(a.shape.len() as i64, dtype_of(a.data.elem_type()));
            SlopeValue { shape: a.shape.iter().map(|&n| n as i64).collect(), data: Some(a.data), ..header }
        }
        Value::Tuple(items) => SlopeValue { items: items.into_iter().map(to_c).collect(), ..empty(-1, -1) },
        Value::Record(fields) => {
            let (names, items): (Vec<_>, Vec<_>) = fields.into_iter().map(|(n, v)| (c_string(&n), to_c(v))).unzip();
            SlopeValue { items, fields: names, ..empty(-1, -1) }
        }
    }
}

/// # Safety
/// `value` is NULL or a live value.
#[no_mangle]
pub unsafe extern "C" fn slope_value_rank(value: *const SlopeValue) -> i64 {
    // SAFETY: NULL or live.
    unsafe { value.as_ref() }.map_or(-1, |v| v.rank)
}

/// # Safety
/// `value` is NULL or a live value.
#[no_mangle]
pub unsafe extern "C" fn slope_value_dtype(value: *const SlopeValue) -> i32 {
    // SAFETY: NULL or live.
    unsafe { value.as_ref() }.map_or(-1, |v| v.dtype)
}

/// # Safety
/// `value` is NULL or a live value.
#[no_mangle]
pub unsafe extern "C" fn slope_value_shape(value: *const SlopeValue) -> *const i64 {
    // SAFETY: NULL or live.
    match unsafe { value.as_ref() } {
        Some(v) if v.rank > 0 => v.shape.as_ptr(),
        _ => std::ptr::null(),
    }
}

/// # Safety
/// `value` is NULL or a live value.
#[no_mangle]
pub unsafe extern "C" fn slope_value_data(value: *const SlopeValue) -> *const c_void {
    // SAFETY: NULL or live.
    match unsafe { value.as_ref() }.and_then(|v| v.data.as_ref()) {
        Some(ArrayData::F64(d)) => d.as_ptr() as *const c_void,
        Some(ArrayData::F32(d)) => d.as_ptr() as *const c_void,
        Some(ArrayData::I64(d)) => d.as_ptr() as *const c_void,
        // A Rust `bool` is one byte, 0 or 1: what slope.h promises.
        Some(ArrayData::Bool(d)) => d.as_ptr() as *const c_void,
        None => std::ptr::null(),
    }
}

/// # Safety
/// `value` is NULL or a live value.
#[no_mangle]
pub unsafe extern "C" fn slope_value_count(value: *const SlopeValue) -> usize {
    // SAFETY: NULL or live.
    unsafe { value.as_ref() }.map_or(0, |v| v.data.as_ref().map_or(v.items.len(), ArrayData::len))
}

/// # Safety
/// `value` is NULL or a live value.
#[no_mangle]
pub unsafe extern "C" fn slope_value_item(value: *const SlopeValue, i: usize) -> *const SlopeValue {
    // SAFETY: NULL or live.
    unsafe { value.as_ref() }.and_then(|v| v.items.get(i)).map_or(std::ptr::null(), |item| item as *const _)
}

/// # Safety
/// `value` is NULL or a live value.
#[no_mangle]
pub unsafe extern "C" fn slope_value_field(value: *const SlopeValue, i: usize) -> *const c_char {
    // SAFETY: NULL or live.
    unsafe { value.as_ref() }.and_then(|v| v.fields.get(i)).map_or(std::ptr::null(), |f| f.as_ptr())
}

/// # Safety
/// `value` is NULL or came from `slope_call` and is not used again.
#[no_mangle]
pub unsafe extern "C" fn slope_value_free(value: *mut SlopeValue) {
    if !value.is_null() {
        // SAFETY: made by `Box::into_raw` in `slope_call`, freed once.
        drop(unsafe { Box::from_raw(value) });
    }
}

/// # Safety
/// `error` is NULL or a live error.
#[no_mangle]
pub unsafe extern "C" fn slope_error_code(error: *const SlopeError) -> *const c_char {
    // SAFETY: NULL or live.
    unsafe { error.as_ref() }.map_or(std::ptr::null(), |e| e.code.as_ptr())
}

/// # Safety
/// `error` is NULL or a live error.
#[no_mangle]
pub unsafe extern "C" fn slope_error_message(error: *const SlopeError) -> *const c_char {
    // SAFETY: NULL or live.
    unsafe { error.as_ref() }.map_or(std::ptr::null(), |e| e.message.as_ptr())
}

/// # Safety
/// `error` is NULL or a live error.
#[no_mangle]
pub unsafe extern "C" fn slope_error_diagnostic(error: *const SlopeError) -> *const c_char {
    // SAFETY: NULL or live.
    unsafe { error.as_ref() }.map_or(std::ptr::null(), |e| e.diagnostic.as_ptr())
}

/// # Safety
/// `error` is NULL or came from a Slope function and is not used again.
#[no_mangle]
pub unsafe extern "C" fn slope_error_free(error: *mut SlopeError) {
    if !error.is_null() {
        // SAFETY: made by `Box::into_raw` in `report`, freed once.
        drop(unsafe { Box::from_raw(error) });
    }
}
