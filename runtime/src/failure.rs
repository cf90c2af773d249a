//! What a run-time failure says: the error every back end reports
//! ([`RuntimeError`]), and the messages of native code's failure sites.
//!
//! Input: a failure site's [`Message`] and the i64 arguments the failing
//! check recorded. Output: the message text, worded exactly as the
//! interpreter words the same error (the differential tests compare them).
//! The compiler attaches a `Message` to every failure site of the loop IR;
//! the JIT renders it in-process, and an ahead-of-time library renders it
//! from the site table `slope build` serialises into the library, so the
//! wording lives here, in the runtime, once.

use crate::code::Code;
use crate::span::Span;
use crate::ElemType;
use serde::{Deserialize, Serialize};

/// A run-time error as every back end reports it: the stable code, the
/// message (worded by the interpreter, or rendered from a [`Message`]) and
/// the span of the failing statement. The compiler turns it into a
/// diagnostic; no back end needs another's types to report one.
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeError {
    pub code: Code,
    pub message: String,
    pub span: Span,
}

/// The message of a run-time error, rendered from the `Fail`'s i64 arguments
/// exactly as the interpreter words it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// args: index, size.
    IndexOutOfBounds { dim: u32 },
    /// args: start, end, size.
    SliceOutOfBounds,
    /// args: size.
    NegativeSize,
    /// args: the count.
    NotPositive { what: String },
    /// args: dividend.
    DivisionByZero { op: String },
    /// args: base, exponent.
    NegativeExponent,
    /// args: a, b (two sizes, or two scalars of `ty`).
    SizeEq { what: String, ty: ElemType },
    /// args: the two outer sizes.
    IteratedSizes { what: String },
    /// args: width, size.
    MapWidth,
    /// args: the `rank` dims of the first shape, then the `rank` of the second.
    /// `template` has two `{}` holes.
    Shapes { template: String, rank: u32 },
    /// args: rows, cols, size.
    Unflatten,
    /// args: number of indices, number of values.
    ScatterLengths { what: String },
    /// args: the limit.
    WhileLimit,
    /// args: the number of elements.
    OutOfMemory,
    /// args: rows, elements per row.
    OutOfMemoryRows,
}

impl Message {
    /// The message text, as `ir::interp` words the same error.
    pub fn render(&self, args: &[i64]) -> String {
        let a = |i: usize| args.get(i).copied().unwrap_or(0);
        let shape =
            |from: usize, rank: u32| format!("{:?}", (0..rank as usize).map(|k| a(from + k)).collect::<Vec<_>>());
        match self {
            Message::IndexOutOfBounds { dim } => {
                format!("index {} out of bounds for dimension {dim} of size {}", a(0), a(1))
            }
            Message::SliceOutOfBounds => {
                format!("slice {}:{} out of bounds for dimension 0 of size {}", a(0), a(1), a(2))
            }
            Message::NegativeSize => format!("negative size {}", a(0)),
            Message::NotPositive { what } => format!("{what} must be at least 1, got {}", a(0)),
            Message::DivisionByZero { op } => format!("integer division by zero: {} {} 0", a(0), op),
            Message::NegativeExponent => format!("negative exponent in integer power: {} ** {}", a(0), a(1)),
            Message::SizeEq { what, ty } => {
                let show = |x: i64| match ty {
                    ElemType::F64 => format!("{:?}", f64::from_bits(x as u64)),
                    ElemType::F32 => format!("{:?}", f32::from_bits(x as u32)),
                    ElemType::I64 => x.to_string(),
                    ElemType::Bool => (x != 0).to_string(),
                };
                format!("size mismatch: {what}: {} vs {}", show(a(0)), show(a(1)))
            }
            Message::IteratedSizes { what } => {
                format!("size mismatch: {what} over arrays of sizes {} and {}", a(0), a(1))
            }
            Message::MapWidth => format!("size mismatch: map over arrays of sizes {} and {}", a(0), a(1)),
            Message::Shapes { template, rank } => {
                template.replacen("{}", &shape(0, *rank), 1).replacen("{}", &shape(*rank as usize, *rank), 1)
            }
            Message::Unflatten => {
                format!("size mismatch: cannot unflatten an outer dimension of size {} into {} × {}", a(2), a(0), a(1))
            }
            Message::ScatterLengths { what } => {
                format!("size mismatch: {what} with {} indices and {} values", a(0), a(1))
            }
            Message::WhileLimit => format!("while loop exceeded {} iterations", a(0)),
            Message::OutOfMemory => format!("cannot allocate an array of {} elements", a(0)),
            Message::OutOfMemoryRows => format!("cannot allocate an array of {} rows of {} elements", a(0), a(1)),
        }
    }
}
