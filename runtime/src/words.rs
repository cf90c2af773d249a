//! The words compiled code takes and returns.
//!
//! Input: runtime [`Value`]s (arguments), or the result words of a call
//! with the element type and rank of each result leaf. Output: argument
//! words, or result values copied out of the call's arena.
//! Invariants: a leaf is one word if it is a scalar (its bits in the low
//! bytes: `f32` in the low 4, `bool` as 0/1 in the low byte) and `1 + rank`
//! words if it is an array (its data pointer, then its dimensions); leaves
//! come depth first, record fields in their declared order. The JIT and
//! ahead-of-time libraries both pass values this way.

use crate::{Array, ArrayData, ElemType, Scalar, Value};
use std::rc::Rc;

/// Words of a leaf of rank `rank`.
pub fn leaf_words(rank: u32) -> usize {
    if rank == 0 {
        1
    } else {
        1 + rank as usize
    }
}

/// Appends the argument words of `value`, leaf by leaf. An array's pointer
/// points into `value`, which must outlive the call.
pub fn push_words(value: &Value, out: &mut Vec<u64>) {
    match value {
        Value::Tuple(items) => items.iter().for_each(|v| push_words(v, out)),
        Value::Record(fields) => fields.iter().for_each(|(_, v)| push_words(v, out)),
        Value::Scalar(s) => out.push(match *s {
            Scalar::F64(x) => x.to_bits(),
            Scalar::F32(x) => u64::from(x.to_bits()),
            Scalar::I64(x) => x as u64,
            Scalar::Bool(x) => u64::from(x),
        }),
        Value::Array(a) => {
            out.push(match &a.data {
                ArrayData::F64(v) => v.as_ptr() as u64,
                ArrayData::F32(v) => v.as_ptr() as u64,
                ArrayData::I64(v) => v.as_ptr() as u64,
                ArrayData::Bool(v) => v.as_ptr() as u64,
            });
            out.extend(a.shape.iter().map(|&d| d as u64));
        }
    }
}

/// The result leaves of a call, one per `(element type, rank)` of `leaves`,
/// copied out of the words (and the arena they point into) — a large array
/// by the call's `threads` threads (Note [Where the data is] in
/// parallel.rs).
///
/// # Safety
/// `words` holds the words of `leaves`, and every array leaf's pointer
/// points to `product(dims)` live elements of its type.
pub unsafe fn read_results(
    leaves: impl IntoIterator<Item = (ElemType, u32)>,
    words: &[u64],
    threads: usize,
) -> Vec<Value> {
    let mut at = 0;
    let mut out = Vec::new();
    for (elem, rank) in leaves {
        let w = words[at];
        if rank == 0 {
            out.push(Value::Scalar(match elem {
                ElemType::F64 => Scalar::F64(f64::from_bits(w)),
                ElemType::F32 => Scalar::F32(f32::from_bits(w as u32)),
                ElemType::I64 => Scalar::I64(w as i64),
                ElemType::Bool => Scalar::Bool(w as u8 != 0),
            }));
        } else {
            let shape: Vec<usize> =
                words[at + 1..at + 1 + rank as usize].iter().map(|&d| (d as i64).max(0) as usize).collect();
            let n: usize = shape.iter().product();
            // SAFETY: the caller's promise; nothing is read when `n == 0`.
            let data = unsafe {
                match elem {
                    ElemType::F64 => ArrayData::F64(read(w, n, threads)),
                    ElemType::F32 => ArrayData::F32(read(w, n, threads)),
                    ElemType::I64 => ArrayData::I64(read(w, n, threads)),
                    // Converted on this thread anyway: one thread copies.
                    ElemType::Bool => ArrayData::Bool(read::<u8>(w, n, 1).into_iter().map(|b| b != 0).collect()),
                }
            };
            out.push(Value::Array(Rc::new(Array::new(shape, data))));
        }
        at += leaf_words(rank);
    }
    out
}

/// `n` elements of type `T` at `ptr`, copied on `threads` threads when the
/// copy is large (Note [Where the data is] in parallel.rs).
///
/// # Safety
/// When `n > 0`, `ptr` points to `n` initialised, aligned elements.
unsafe fn read<T: Copy>(ptr: u64, n: usize, threads: usize) -> Vec<T> {
    if n == 0 {
        return Vec::new();
    }
    let mut v: Vec<T> = Vec::with_capacity(n);
    // SAFETY: the caller's promise for the source; `v` has room for `n`
    // elements, all of which the copy initialises.
    unsafe {
        crate::parallel::copy_result(
            threads,
            v.as_mut_ptr() as *mut u8,
            ptr as *const u8,
            n * std::mem::size_of::<T>(),
        );
        v.set_len(n);
    }
    v
}
