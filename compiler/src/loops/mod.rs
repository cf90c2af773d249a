//! The loop IR: the optimised array IR lowered to loops over explicit memory.
//!
//! Input: an optimised [`crate::ir::Program`] (no `jvp`/`vjp` left).
//! Output: one [`Func`] per entry point, which [`crate::jit`] turns into
//! Cranelift IR and native code. `slope emit --stage loops` prints it.
//!
//! Shape of the IR:
//! - **Machine scalars only.** A [`LVar`] holds an `f64`, `f32`, `i64` or
//!   `bool`; an array of the array IR becomes a data pointer (an `i64`) and
//!   one `i64` per dimension. Arrays are row-major and contiguous.
//! - **Mutable variables, structured control.** `Let` assigns (loop-carried
//!   values are variables assigned in the loop body; Cranelift's SSA builder
//!   makes the φs). Control flow is `For`, `While` and `If` blocks; `Fail`
//!   leaves the function with an error.
//! - **Explicit memory.** Buffers come from `Alloc` (the call's arena, see
//!   `slope_runtime::native`); `Load`/`Store`/`Copy` address them by base and
//!   element index. `Mark`/`Release` bracket loop iterations that allocate:
//!   the release frees what the iteration allocated except the blocks holding
//!   `keep` pointers (the loop state), so memory stays bounded by the live
//!   data, not by the iteration count.
//!
//! Invariants (established by [`lower`]): every `Load`/`Store` index is in
//! bounds — lowering has either proved it or emitted a check that `Fail`s
//! first; integer `Div`/`Rem` never see a zero divisor and `Pow` never a
//! negative exponent (checked before); every variable is assigned before it
//! is read on every path.

pub mod lower;
mod print;
pub mod verify;

pub use print::print_func;

use crate::diagnostic::{Code, Span};
use crate::ir::{BinOp, Const, UnOp};
use crate::types::ScalarType;

/// A machine scalar type. `Bool` is one byte (0 or 1) in registers and memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MTy {
    F64,
    F32,
    I64,
    Bool,
}

impl MTy {
    pub fn of(s: ScalarType) -> MTy {
        match s {
            ScalarType::F64 => MTy::F64,
            ScalarType::F32 => MTy::F32,
            ScalarType::I64 => MTy::I64,
            ScalarType::Bool => MTy::Bool,
        }
    }
    /// Bytes per element in memory.
    pub fn size(self) -> i64 {
        match self {
            MTy::F64 | MTy::I64 => 8,
            MTy::F32 => 4,
            MTy::Bool => 1,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            MTy::F64 => "f64",
            MTy::F32 => "f32",
            MTy::I64 => "i64",
            MTy::Bool => "bool",
        }
    }
}

/// A variable of a loop function: an index into [`Func::vars`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LVar(pub u32);

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Operand {
    Var(LVar),
    Const(Const),
}

impl Operand {
    pub fn i64(v: i64) -> Operand {
        Operand::Const(Const::I64(v))
    }
    pub fn var(self) -> Option<LVar> {
        match self {
            Operand::Var(v) => Some(v),
            Operand::Const(_) => None,
        }
    }
    pub fn as_i64(self) -> Option<i64> {
        match self {
            Operand::Const(Const::I64(v)) => Some(v),
            _ => None,
        }
    }
}

impl From<LVar> for Operand {
    fn from(v: LVar) -> Operand {
        Operand::Var(v)
    }
}

/// The right-hand side of an assignment.
#[derive(Clone, Debug, PartialEq)]
pub enum Rhs {
    Use(Operand),
    /// Same semantics as the array IR's scalar operations (`ir::interp::unary`).
    Unary(UnOp, Operand),
    /// Same semantics as `ir::interp::binary`; integer arithmetic wraps,
    /// `i64::MIN / -1` included. Divisors and exponents are checked before.
    Binary(BinOp, Operand, Operand),
    Convert(MTy, Operand),
    Select(Operand, Operand, Operand),
    /// The element `index` of the buffer at `base`.
    Load {
        elem: MTy,
        base: Operand,
        index: Operand,
    },
    /// The address of element `index` of the buffer at `base`.
    Offset {
        elem: MTy,
        base: Operand,
        index: Operand,
    },
    /// A fresh buffer of `count` elements from the call's arena; when the
    /// memory cannot be had, the function fails with `sites[site]`.
    Alloc {
        elem: MTy,
        count: Operand,
        site: u32,
    },
    /// `0 <= index < bound` (one unsigned comparison; `bound >= 0`).
    InRange {
        index: Operand,
        bound: Operand,
    },
    /// The arena's current mark (for a later `Release`).
    Mark,
    /// The `while` iteration limit of this call (E0205).
    WhileLimit,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Inst {
    Let(LVar, Rhs),
    Store {
        elem: MTy,
        base: Operand,
        index: Operand,
        value: Operand,
    },
    /// Copies `count` elements from `src` to `dst` (the ranges may overlap).
    Copy {
        elem: MTy,
        dst: Operand,
        src: Operand,
        count: Operand,
    },
    /// `for index in 0..bound` (no iterations when `bound <= 0`).
    For {
        index: LVar,
        bound: Operand,
        body: Vec<Inst>,
    },
    /// `loop { cond; if !test { break } body }`.
    While {
        cond: Vec<Inst>,
        test: Operand,
        body: Vec<Inst>,
    },
    If {
        cond: Operand,
        then: Vec<Inst>,
        els: Vec<Inst>,
    },
    /// Returns from the function with the error of `sites[site]`, whose
    /// message is rendered from `args`.
    Fail {
        site: u32,
        args: Vec<Operand>,
    },
    /// Frees the arena blocks allocated since `mark`, except those holding a
    /// `keep` pointer.
    Release {
        mark: Operand,
        keep: Vec<Operand>,
    },
}

impl Inst {
    /// The nested blocks, in order: a loop's body (a `while`'s condition
    /// first), an `if`'s branches. The one enumeration passes walk through.
    pub fn blocks(&self) -> Vec<&[Inst]> {
        match self {
            Inst::For { body, .. } => vec![body],
            Inst::While { cond, body, .. } => vec![cond, body],
            Inst::If { then, els, .. } => vec![then, els],
            _ => Vec::new(),
        }
    }
}

/// How one parameter or result leaf of an entry point is passed: as a scalar
/// word, or as a data pointer followed by `rank` dimension words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    pub elem: MTy,
    pub rank: u32,
}

impl Leaf {
    /// Words this leaf takes in the argument or result vector.
    pub fn words(self) -> usize {
        if self.rank == 0 {
            1
        } else {
            1 + self.rank as usize
        }
    }
}

/// Where a `Fail` comes from: the error code and span, and how to say it.
#[derive(Clone, Debug, PartialEq)]
pub struct Site {
    pub code: Code,
    pub span: Span,
    pub message: Message,
}

/// The message of a run-time error, rendered from the `Fail`'s i64 arguments
/// exactly as the interpreter words it.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// args: index, size.
    IndexOutOfBounds { dim: u32 },
    /// args: start, end, size.
    SliceOutOfBounds,
    /// args: size.
    NegativeSize,
    /// args: dividend.
    DivisionByZero { op: BinOp },
    /// args: base, exponent.
    NegativeExponent,
    /// args: a, b (two sizes, or two scalars of `ty`).
    SizeEq { what: String, ty: MTy },
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
    ScatterLengths { what: &'static str },
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
            Message::DivisionByZero { op } => format!("integer division by zero: {} {} 0", a(0), op.symbol()),
            Message::NegativeExponent => format!("negative exponent in integer power: {} ** {}", a(0), a(1)),
            Message::SizeEq { what, ty } => {
                let show = |x: i64| match ty {
                    MTy::F64 => format!("{:?}", f64::from_bits(x as u64)),
                    MTy::F32 => format!("{:?}", f32::from_bits(x as u32)),
                    MTy::I64 => x.to_string(),
                    MTy::Bool => (x != 0).to_string(),
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

/// One entry point in loop form.
#[derive(Clone, Debug, PartialEq)]
pub struct Func {
    pub name: String,
    /// Name and type of every variable (pointers and sizes are `I64`).
    pub vars: Vec<(String, MTy)>,
    /// The argument words, in order: for each parameter leaf its scalar, or
    /// its data pointer then its dimensions.
    pub params: Vec<LVar>,
    pub param_leaves: Vec<Leaf>,
    pub body: Vec<Inst>,
    /// The result words, laid out like `params`.
    pub results: Vec<Operand>,
    pub result_leaves: Vec<Leaf>,
    pub sites: Vec<Site>,
}

impl Func {
    pub fn ty(&self, v: LVar) -> MTy {
        self.vars[v.0 as usize].1
    }
    pub fn operand_type(&self, o: Operand) -> MTy {
        match o {
            Operand::Var(v) => self.ty(v),
            Operand::Const(c) => MTy::of(c.ty()),
        }
    }
}

/// The lowered entry points of a program.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Program {
    pub funcs: Vec<Func>,
}

impl Program {
    pub fn func(&self, name: &str) -> Option<&Func> {
        self.funcs.iter().find(|f| f.name == name)
    }
}
