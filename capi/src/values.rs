//! Slope values and errors as C sees them (`c/include/slope_values.h`):
//! argument leaves in, result trees and errors out.
//!
//! Input: [`SlopeArg`] leaves from C, checked against a [`ValueType`];
//! results as runtime [`Value`]s. Output: owned [`SlopeValue`] trees and
//! [`SlopeError`]s the caller frees, and the accessor functions of the header.
//! Invariants:
//! - Every pointer is checked for NULL, every shape for negative sizes or
//!   sizes beyond Slope's largest array; data is copied byte for byte (any
//!   alignment) and a `bool` is read as a byte (never as a Rust `bool`).
//!   Bad input is an `Err` message (E0302 for the caller), never undefined
//!   behaviour here — given that each pointer points to as much memory as
//!   the caller says.
//! - Both C libraries share this module: the JIT-backed `libslope_c` and
//!   every ahead-of-time library `slope build` makes (which links it from
//!   `libslope_capi.a`), so a value or an error reads the same from either.

use slope_runtime::{Array, ArrayData, ElemType, Scalar, Value, ValueType};
use std::ffi::{c_char, c_void, CString};

/// A failure: code, message and rendered diagnostic.
pub struct SlopeError {
    code: CString,
    message: CString,
    diagnostic: CString,
}

impl SlopeError {
    /// An error with its code (`"E0302"`), message and rendered diagnostic.
    pub fn new(code: &str, message: &str, diagnostic: &str) -> Box<SlopeError> {
        Box::new(SlopeError { code: c_string(code), message: c_string(message), diagnostic: c_string(diagnostic) })
    }
}

/// A result (see `slope_values.h`).
pub struct SlopeValue {
    /// 0 for a scalar, the number of dimensions of an array, -1 for a tuple or record.
    rank: i64,
    dtype: i32,
    shape: Vec<i64>,
    data: Option<ArrayData>,
    items: Vec<SlopeValue>,
    fields: Vec<CString>,
}

/// One argument leaf (see `slope_values.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SlopeArg {
    pub dtype: i32,
    pub rank: i64,
    pub shape: *const i64,
    pub data: *const c_void,
}

pub const F64: i32 = 0;
pub const F32: i32 = 1;
pub const I64: i32 = 2;
pub const BOOL: i32 = 3;

pub fn dtype_of(elem: ElemType) -> i32 {
    match elem {
        ElemType::F64 => F64,
        ElemType::F32 => F32,
        ElemType::I64 => I64,
        ElemType::Bool => BOOL,
    }
}

pub fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', " ")).unwrap_or_default()
}

/// Stores `e` in `*error` when the caller asked for errors.
///
/// # Safety
/// `error` is NULL or points to writable storage for a pointer.
pub unsafe fn report(error: *mut *mut SlopeError, e: Box<SlopeError>) {
    if !error.is_null() {
        // SAFETY: checked non-null; the caller provides the storage.
        unsafe { *error = Box::into_raw(e) };
    }
}

/// How many argument leaves a parameter of type `ty` takes.
pub fn leaf_count(ty: &ValueType) -> usize {
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
pub unsafe fn read_value<'a>(
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
pub fn to_c(value: Value) -> SlopeValue {
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
