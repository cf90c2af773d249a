//! The typed array IR: the core every pass after elaboration works on.
//!
//! Shape of the IR (after Futhark's core language):
//! - **First order, monomorphic, flat.** All user functions are inlined by
//!   elaboration, except an entry point called at the top level of another
//!   entry's body: that is an [`Expr::Call`] (Note [Entries called by
//!   entries] in [`calls`]); lambdas appear only as operands of combinators and AD
//!   operators. Tuples and records are flattened away: every variable holds a
//!   scalar or a regular array of scalars, and multi-valued expressions (a
//!   `map` returning pairs, a loop with several accumulators) bind several
//!   variables at once.
//! - **ANF.** Operands are [`Atom`]s (variables or constants); every
//!   compound expression is bound by a [`Stmt`].
//! - **SSA.** Each [`Var`] is bound exactly once in a program; its type lives
//!   in the program's [`VarTable`] (entities are `u32` indices, as in
//!   Cranelift).
//!
//! Invariants (checked by [`verify`]): every use is dominated by its binding;
//! no variable is bound twice; every expression is applied to operands of the
//! types it expects; lambdas of `map` take one element per input array.

pub mod alias;
pub mod calls;
pub mod interp;
pub mod print;
pub mod scope;
pub mod shared;
pub mod verify;

pub use shared::Shared;

use crate::diagnostic::Span;
use crate::types::ScalarType;
use std::fmt;

/// A variable: an index into the program's [`VarTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Var(pub u32);

/// The type of an IR variable: a scalar (`rank == 0`) or a regular array.
/// Sizes are values in the IR (`Expr::Shape`), checked at run time where the
/// type checker could not prove them equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IrType {
    pub elem: ScalarType,
    pub rank: u32,
}

impl IrType {
    pub const F64: IrType = IrType { elem: ScalarType::F64, rank: 0 };
    pub const I64: IrType = IrType { elem: ScalarType::I64, rank: 0 };
    pub const BOOL: IrType = IrType { elem: ScalarType::Bool, rank: 0 };
    pub fn scalar(elem: ScalarType) -> IrType {
        IrType { elem, rank: 0 }
    }
    pub fn array(elem: ScalarType, rank: u32) -> IrType {
        IrType { elem, rank }
    }
    pub fn is_scalar(self) -> bool {
        self.rank == 0
    }
    /// The type of one element of the outer dimension.
    pub fn row(self) -> IrType {
        debug_assert!(self.rank > 0);
        IrType { elem: self.elem, rank: self.rank - 1 }
    }
    /// The type of an array whose elements have this type.
    pub fn lift(self) -> IrType {
        IrType { elem: self.elem, rank: self.rank + 1 }
    }
}

impl fmt::Display for IrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for _ in 0..self.rank {
            f.write_str("[]")?;
        }
        f.write_str(self.elem.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Const {
    F64(f64),
    F32(f32),
    I64(i64),
    Bool(bool),
}

impl Const {
    pub fn ty(self) -> ScalarType {
        match self {
            Const::F64(_) => ScalarType::F64,
            Const::F32(_) => ScalarType::F32,
            Const::I64(_) => ScalarType::I64,
            Const::Bool(_) => ScalarType::Bool,
        }
    }
    /// The constant `v` of a numeric type (`0` and `1` are the usual ones).
    pub fn of(ty: ScalarType, v: f64) -> Const {
        match ty {
            ScalarType::F64 => Const::F64(v),
            ScalarType::F32 => Const::F32(v as f32),
            ScalarType::I64 => Const::I64(v as i64),
            ScalarType::Bool => Const::Bool(v != 0.0),
        }
    }
    pub fn as_f64(self) -> f64 {
        match self {
            Const::F64(v) => v,
            Const::F32(v) => v as f64,
            Const::I64(v) => v as f64,
            Const::Bool(b) => b as i64 as f64,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Atom {
    Var(Var),
    Const(Const),
}

impl Atom {
    pub fn var(self) -> Option<Var> {
        match self {
            Atom::Var(v) => Some(v),
            Atom::Const(_) => None,
        }
    }
    pub fn f64(v: f64) -> Atom {
        Atom::Const(Const::F64(v))
    }
    pub fn i64(v: i64) -> Atom {
        Atom::Const(Const::I64(v))
    }
}

impl From<Var> for Atom {
    fn from(v: Var) -> Atom {
        Atom::Var(v)
    }
}

/// Scalar unary operations: the rows of `prims::UNARY`, in its order (a
/// primitive's name, evaluation, code generation and derivative are there).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnOp {
    Neg,
    Not,
    Exp,
    Log,
    Sin,
    Cos,
    Tan,
    Tanh,
    Sqrt,
    Abs,
    Log1p,
    Expm1,
    Sigmoid,
    Floor,
    Ceil,
    Lgamma,
    /// The derivative of `lgamma`.
    Digamma,
    /// The derivative of `digamma`.
    Trigamma,
    Erf,
    /// Identity on values; differentiation treats the result as a constant.
    StopGradient,
    Sinh,
    Cosh,
    Asinh,
    Acosh,
    Atanh,
    Asin,
    Acos,
    Atan,
    Cbrt,
    Round,
    Trunc,
    Sign,
    Softplus,
    IsNan,
    IsInf,
}

impl UnOp {
    /// Every operation (tests that must cover each one iterate this).
    pub const ALL: &'static [UnOp] = &[
        UnOp::Neg,
        UnOp::Not,
        UnOp::Exp,
        UnOp::Log,
        UnOp::Sin,
        UnOp::Cos,
        UnOp::Tan,
        UnOp::Tanh,
        UnOp::Sqrt,
        UnOp::Abs,
        UnOp::Log1p,
        UnOp::Expm1,
        UnOp::Sigmoid,
        UnOp::Floor,
        UnOp::Ceil,
        UnOp::Lgamma,
        UnOp::Digamma,
        UnOp::Trigamma,
        UnOp::Erf,
        UnOp::StopGradient,
        UnOp::Sinh,
        UnOp::Cosh,
        UnOp::Asinh,
        UnOp::Acosh,
        UnOp::Atanh,
        UnOp::Asin,
        UnOp::Acos,
        UnOp::Atan,
        UnOp::Cbrt,
        UnOp::Round,
        UnOp::Trunc,
        UnOp::Sign,
        UnOp::Softplus,
        UnOp::IsNan,
        UnOp::IsInf,
    ];

    /// The primitive's row: what every pass needs to know about it.
    pub fn prim(self) -> &'static crate::prims::Unary {
        crate::prims::unary(self)
    }

    pub fn name(self) -> &'static str {
        self.prim().name
    }

    /// A call of a host math function rather than an instruction or two:
    /// worth saving (reverse mode's residuals) or computing once for a whole
    /// array (the optimiser's `hoist_costly`) rather than recomputing.
    pub fn is_costly(self) -> bool {
        self.prim().cost >= crate::prims::HOST_CALL
    }

    /// The operation a math builtin (or an alias of one) names.
    pub fn from_builtin(name: &str) -> Option<UnOp> {
        if name == "stop_gradient" {
            return Some(UnOp::StopGradient);
        }
        crate::prims::unary_named(name).map(|r| r.op)
    }
}

/// Scalar binary operations. Comparisons and `And`/`Or` return `bool`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Pow,
    Min,
    Max,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    /// The bitwise operations on `i64` (two's complement): `bit_and`,
    /// `bit_or`, `bit_xor`, and the shifts `shl a k`, `shr a k` (logical:
    /// zeros come in), whose amount is taken modulo 64 (`k & 63`), as the
    /// machine's shift instructions do, so every amount is defined.
    BitAnd,
    BitOr,
    BitXor,
    Shl,
    Shr,
    /// `atan2 y x` (a row of `prims::BINARY`, as the two below).
    Atan2,
    Hypot,
    Copysign,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Atan2 | BinOp::Hypot | BinOp::Copysign => crate::prims::binary(self).expect("a primitive").name,
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Pow => "**",
            BinOp::Min => "min",
            BinOp::Max => "max",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "&&",
            BinOp::Or => "||",
            BinOp::BitAnd => "bit_and",
            BinOp::BitOr => "bit_or",
            BinOp::BitXor => "bit_xor",
            BinOp::Shl => "shl",
            BinOp::Shr => "shr",
        }
    }
    /// Written as a function (`min a b`) rather than infix.
    pub fn is_prefix(self) -> bool {
        matches!(self, BinOp::Min | BinOp::Max | BinOp::Atan2 | BinOp::Hypot | BinOp::Copysign) || self.is_bitwise()
    }
    /// The operations on the bits of an `i64` (integers only).
    pub fn is_bitwise(self) -> bool {
        matches!(self, BinOp::BitAnd | BinOp::BitOr | BinOp::BitXor | BinOp::Shl | BinOp::Shr)
    }
    /// The bitwise operation a builtin's name calls, if it is one.
    pub fn bitwise_named(name: &str) -> Option<BinOp> {
        [BinOp::BitAnd, BinOp::BitOr, BinOp::BitXor, BinOp::Shl, BinOp::Shr].into_iter().find(|op| op.symbol() == name)
    }
    /// Comparisons and `&&`/`||`: the result is a `bool` whatever the operands.
    pub fn returns_bool(self) -> bool {
        self.is_comparison() || matches!(self, BinOp::And | BinOp::Or)
    }

    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge)
    }
}

/// A function body: statements, then the returned atoms.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Body {
    /// Shared between copies of the tree: see Note [Shared statement lists].
    pub stmts: Shared<Vec<Stmt>>,
    pub result: Vec<Atom>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    /// The variables bound, one per value the expression produces (none for checks).
    pub binds: Vec<Var>,
    pub expr: Expr,
    pub span: Span,
}

/// An anonymous function: only as an operand of a combinator or AD operator.
#[derive(Clone, Debug, PartialEq)]
pub struct Lambda {
    pub params: Vec<Var>,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LoopForm {
    /// `for index < bound`.
    For { index: Var, bound: Atom },
    /// `while cond`, where `cond` is evaluated with the loop parameters bound.
    While { cond: Body },
}

/// Run-time checks: those elaboration inserts where sizes were not proved
/// equal, and the guards the optimiser leaves where it removes a statement
/// that could have failed (see Note \[Guards\] in `opt/guards.rs`). Each kind
/// fails with the code and message of the statement whose failure it stands
/// for, so a guard reports exactly what that statement would have.
#[derive(Clone, Debug, PartialEq)]
pub enum CheckKind {
    /// `args[0] == args[1]` (two sizes, or two scalars of one type); E0202
    /// "size mismatch: {what}: {a} vs {b}".
    SizeEq { what: String },
    /// `args[0] == args[1]`, the outer sizes of two arrays a combinator
    /// iterates over (or a map's width and such a size); E0202
    /// "size mismatch: {what} over arrays of sizes {a} and {b}".
    Iterated { what: String },
    /// `0 <= args[0] < args[1]`: an index into dimension `dim` of that size;
    /// E0201 "index {i} out of bounds for dimension {dim} of size {n}".
    InBounds { dim: u32 },
    /// `args[0] >= 0`: the size of an array; E0204 "negative size {n}".
    Size,
    /// `args[0] >= 1`: a count that must be positive (a checkpoint segment
    /// length); E0204 "{what} must be at least 1, got {n}".
    Positive { what: String },
}

impl CheckKind {
    /// How many operands a check of this kind takes.
    pub fn arity(&self) -> usize {
        match self {
            CheckKind::Size | CheckKind::Positive { .. } => 1,
            CheckKind::SizeEq { .. } | CheckKind::Iterated { .. } | CheckKind::InBounds { .. } => 2,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Atom(Atom),
    Unary(UnOp, Atom),
    Binary(BinOp, Atom, Atom),
    /// Numeric conversion.
    Convert(ScalarType, Atom),
    /// `if c then t else f` on scalars without branching (both operands are evaluated).
    Select(Atom, Atom, Atom),
    If {
        cond: Atom,
        then_body: Body,
        else_body: Body,
    },
    /// `a[i, j, …]`: a scalar, or a sub-array when fewer indices than the rank. Bounds-checked.
    Index {
        array: Var,
        indices: Vec<Atom>,
    },
    /// `a[start:end]` on the outer dimension. Bounds-checked.
    Slice {
        array: Var,
        start: Atom,
        end: Atom,
    },
    /// The size of dimension `dim` of an array.
    Shape {
        array: Var,
        dim: u32,
    },
    Iota(Atom),
    Replicate {
        count: Atom,
        value: Atom,
    },
    /// An array literal of scalars or of equally shaped arrays.
    ArrayLit {
        elem: IrType,
        elems: Vec<Atom>,
    },
    /// Applies `lam` to the elements of `arrays` (all of outer size `width`); binds one array per lambda result.
    Map {
        width: Atom,
        lam: Lambda,
        arrays: Vec<Var>,
    },
    /// Associative fold: `lam` takes `k` accumulators then `k` elements; `neutral` has `k` atoms.
    Reduce {
        lam: Lambda,
        neutral: Vec<Atom>,
        arrays: Vec<Var>,
    },
    /// Inclusive scan, same operator shape as `Reduce`.
    Scan {
        lam: Lambda,
        neutral: Vec<Atom>,
        arrays: Vec<Var>,
    },
    /// Sequential loop over `params` (initialised from `init`); binds the final values.
    Loop {
        params: Vec<Var>,
        init: Vec<Atom>,
        form: LoopForm,
        body: Body,
    },
    /// A copy of `dest` with `dest[indices[k]] = values[k]`; out-of-range indices are skipped.
    Scatter {
        dest: Var,
        indices: Var,
        values: Var,
    },
    /// A copy of `dest` with `dest[indices[k]] = lam(dest[indices[k]], values[k])`; out-of-range skipped.
    Hist {
        dest: Var,
        lam: Lambda,
        neutral: Atom,
        indices: Var,
        values: Var,
    },
    Transpose(Var),
    Reverse(Var),
    /// The stable sorting permutation of a one-dimensional array of numbers:
    /// `array[p[0]], array[p[1]], …` is in ascending (or `descending`) order,
    /// equal elements keep their order, and NaNs come last either way
    /// (Note [Sorting] in `slope_runtime::sort`). Not differentiable: its
    /// result is integers, and `sort` differentiates through the gather.
    Argsort {
        array: Var,
        descending: bool,
    },
    Concat(Var, Var),
    Flatten(Var),
    /// Splits the outer dimension into `rows × cols` (must multiply to it).
    Unflatten {
        array: Var,
        rows: Atom,
        cols: Atom,
    },
    /// `array` with the element or sub-array at `indices` replaced by `value`, or
    /// increased by it when `accumulate`. Bounds-checked. It *consumes* `array`:
    /// the passes that emit it (AD) guarantee `array` is not used afterwards, so
    /// implementations update in place. See Note [Consumed arrays].
    UpdateAt {
        array: Var,
        indices: Vec<Atom>,
        value: Atom,
        accumulate: bool,
    },
    /// The operand itself, which optimisations must treat as an unknown value
    /// (`opaque` in the language: benchmarks use it so the compiler cannot
    /// exploit that replicated inputs are equal).
    Opaque(Atom),
    /// Fails with a run-time error unless the condition of `kind` holds of
    /// `args` (`kind.arity()` of them). Binds nothing.
    Check {
        kind: CheckKind,
        args: Vec<Atom>,
    },
    /// A function with custom derivative rules (`def … with jvp … with vjp …`,
    /// at least one of them): evaluates `primal` on `args`, which returns
    /// the results and then `residuals` more values the rules read (Note
    /// [Named residuals] in elab/mod.rs); the statement binds both. Forward
    /// mode uses `jvp` (parameters: the primal arguments, the primal results,
    /// the residuals, then the arguments' tangents; results: the results'
    /// tangents). Reverse mode uses `vjp` (parameters: the arguments, the
    /// results, the residuals, then the results' cotangents; results: one
    /// cotangent per argument), or else the transpose of `jvp`. See Note
    /// [Custom derivatives] in ad/rev.rs.
    Custom {
        primal: Lambda,
        jvp: Option<Lambda>,
        vjp: Option<Lambda>,
        args: Vec<Atom>,
        residuals: usize,
    },
    /// A call of the entry point `func` of the same program on `args` (its
    /// flattened parameters); binds its flattened results. Elaboration emits
    /// it for an entry called by another entry, so the callee is compiled
    /// once (Note [Entries called by entries] in `ir/calls.rs`). Opaque to
    /// the optimiser; the AD pass inlines it before differentiating.
    Call {
        func: String,
        args: Vec<Atom>,
    },
    /// Forward-mode derivative of `lam` at `primals` applied to `tangents`;
    /// binds the result tangents. With `batch = Some(b)`, every tangent
    /// carries `b` directions at once: it has its primal's shape plus a last
    /// dimension of size `b` (vector mode, Note [Vector-mode forward AD] in
    /// ad/fwd.rs), and so do the result tangents. With `values`, it binds
    /// `lam`'s results first, then their tangents (`jvp2`: one pass computes
    /// both).
    Jvp {
        lam: Lambda,
        primals: Vec<Atom>,
        tangents: Vec<Atom>,
        batch: Option<Atom>,
        values: bool,
    },
    /// Reverse-mode derivative of `lam` at `primals` applied to `cotangents`;
    /// binds the input cotangents, after `lam`'s results with `values`
    /// (`vjp2`).
    Vjp {
        lam: Lambda,
        primals: Vec<Atom>,
        cotangents: Vec<Atom>,
        values: bool,
    },
}

/// Name and type of every variable in a program.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VarTable {
    names: Vec<String>,
    types: Vec<IrType>,
}

impl VarTable {
    pub fn fresh(&mut self, name: &str, ty: IrType) -> Var {
        self.names.push(name.to_string());
        self.types.push(ty);
        Var(self.names.len() as u32 - 1)
    }
    /// A fresh variable with `v`'s name and type (a copy of `v`'s binder).
    pub fn fresh_like(&mut self, v: Var) -> Var {
        let name = self.names[v.0 as usize].clone();
        self.fresh(&name, self.ty(v))
    }
    pub fn ty(&self, v: Var) -> IrType {
        self.types[v.0 as usize]
    }
    pub fn base_name(&self, v: Var) -> &str {
        &self.names[v.0 as usize]
    }
    /// The printed name: `base_N`, unique in the program.
    pub fn display(&self, v: Var) -> String {
        format!("{}_{}", self.names[v.0 as usize], v.0)
    }
    pub fn len(&self) -> usize {
        self.names.len()
    }
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
    /// The variables numbered `from` and above, removed from this table.
    pub fn split_off(&mut self, from: usize) -> VarTable {
        VarTable { names: self.names.split_off(from), types: self.types.split_off(from) }
    }
    /// Appends `more`'s variables, numbered from this table's length on.
    pub fn append(&mut self, mut more: VarTable) {
        self.names.append(&mut more.names);
        self.types.append(&mut more.types);
    }
    pub fn atom_type(&self, a: Atom) -> IrType {
        match a {
            Atom::Var(v) => self.ty(v),
            Atom::Const(c) => IrType::scalar(c.ty()),
        }
    }
}

/// The surface-level signature of an entry point: how to decode its arguments
/// and encode its result (records and tuples are flattened in the IR).
#[derive(Clone, Debug, PartialEq)]
pub struct Signature {
    pub params: Vec<(String, crate::types::Type)>,
    pub ret: crate::types::Type,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Func {
    pub name: String,
    /// The flattened parameters, in the order of the signature's leaves.
    pub params: Vec<Var>,
    pub body: Body,
    pub signature: Signature,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Program {
    pub funcs: Vec<Func>,
    pub vars: VarTable,
    /// Variables bound by statements whose every failure the program tests
    /// again later, unconditionally: the forward-sweep copies of maps and
    /// branches that a reverse rule recomputes (Note [Recomputed statements]
    /// in `ad/rev.rs`). Dead-code elimination may drop such a statement
    /// without leaving guards.
    pub recomputed: crate::hash::HashSet<Var>,
}

impl Program {
    pub fn func(&self, name: &str) -> Option<&Func> {
        self.funcs.iter().find(|f| f.name == name)
    }
}

// Note [One operand walk]
// ~~~~~~~~~~~~~~~~~~~~~~~
// Where each kind of expression keeps its operands is written once, in
// `walk_operands!`; `Expr::operands` (reading) and `Expr::map_operands`
// (renaming, substitution) are both that walk, over `&Expr` and `&mut Expr`
// (match ergonomics binds the operands as `&` or `&mut` accordingly). The
// order is fixed — it decides the order of first uses, and so of free
// variables and of the AD pass's output — and nested bodies are not entered
// (`Expr::bodies` and `Expr::lambdas` list those).
macro_rules! walk_operands {
    ($e:expr, $f:expr) => {{
        let f = &mut $f;
        match $e {
            Expr::Atom(a) | Expr::Opaque(a) | Expr::Unary(_, a) | Expr::Convert(_, a) | Expr::Iota(a) => {
                f(Operand::Atom(a))
            }
            Expr::Binary(_, a, b) => {
                f(Operand::Atom(a));
                f(Operand::Atom(b));
            }
            Expr::Select(c, a, b) => {
                f(Operand::Atom(c));
                f(Operand::Atom(a));
                f(Operand::Atom(b));
            }
            Expr::If { cond, .. } => f(Operand::Atom(cond)),
            Expr::Index { array, indices } => {
                f(Operand::Array(array));
                indices.into_iter().for_each(|i| f(Operand::Atom(i)));
            }
            Expr::Slice { array, start, end } => {
                f(Operand::Array(array));
                f(Operand::Atom(start));
                f(Operand::Atom(end));
            }
            Expr::Shape { array, .. }
            | Expr::Transpose(array)
            | Expr::Reverse(array)
            | Expr::Argsort { array, .. }
            | Expr::Flatten(array) => f(Operand::Array(array)),
            Expr::Replicate { count, value } => {
                f(Operand::Atom(count));
                f(Operand::Atom(value));
            }
            Expr::ArrayLit { elems, .. }
            | Expr::Check { args: elems, .. }
            | Expr::Custom { args: elems, .. }
            | Expr::Call { args: elems, .. } => {
                elems.into_iter().for_each(|a| f(Operand::Atom(a)))
            }
            Expr::Map { width, arrays, .. } => {
                f(Operand::Atom(width));
                arrays.into_iter().for_each(|v| f(Operand::Array(v)));
            }
            Expr::Reduce { neutral, arrays, .. } | Expr::Scan { neutral, arrays, .. } => {
                neutral.into_iter().for_each(|a| f(Operand::Atom(a)));
                arrays.into_iter().for_each(|v| f(Operand::Array(v)));
            }
            Expr::Loop { init, form, .. } => {
                init.into_iter().for_each(|a| f(Operand::Atom(a)));
                if let LoopForm::For { bound, .. } = form {
                    f(Operand::Atom(bound));
                }
            }
            Expr::Scatter { dest, indices, values } => {
                f(Operand::Array(dest));
                f(Operand::Array(indices));
                f(Operand::Array(values));
            }
            Expr::Hist { dest, neutral, indices, values, .. } => {
                f(Operand::Array(dest));
                f(Operand::Atom(neutral));
                f(Operand::Array(indices));
                f(Operand::Array(values));
            }
            Expr::Concat(a, b) => {
                f(Operand::Array(a));
                f(Operand::Array(b));
            }
            Expr::Unflatten { array, rows, cols } => {
                f(Operand::Array(array));
                f(Operand::Atom(rows));
                f(Operand::Atom(cols));
            }
            Expr::UpdateAt { array, indices, value, .. } => {
                f(Operand::Array(array));
                indices.into_iter().for_each(|i| f(Operand::Atom(i)));
                f(Operand::Atom(value));
            }
            Expr::Jvp { primals, tangents, batch, .. } => {
                primals.into_iter().for_each(|a| f(Operand::Atom(a)));
                tangents.into_iter().for_each(|a| f(Operand::Atom(a)));
                if let Some(b) = batch {
                    f(Operand::Atom(b));
                }
            }
            Expr::Vjp { primals, cotangents, .. } => {
                primals.into_iter().for_each(|a| f(Operand::Atom(a)));
                cotangents.into_iter().for_each(|a| f(Operand::Atom(a)));
            }
        }
    }};
}

/// Where an expression keeps its lambdas, in a fixed order, written once
/// for `&Expr` and `&mut Expr` (as `walk_operands!`).
macro_rules! lambdas_of {
    ($e:expr) => {
        match $e {
            Expr::Map { lam, .. }
            | Expr::Reduce { lam, .. }
            | Expr::Scan { lam, .. }
            | Expr::Hist { lam, .. }
            | Expr::Jvp { lam, .. }
            | Expr::Vjp { lam, .. } => vec![lam],
            Expr::Custom { primal, jvp, vjp, .. } => std::iter::once(primal).chain(jvp).chain(vjp).collect(),
            _ => Vec::new(),
        }
    };
}

impl Expr {
    /// Calls `f` on each nested body (lambda bodies, branches, loop bodies).
    /// Same order as [`Self::bodies`], without building a vector (the
    /// optimiser's use counts call this for every statement it accounts).
    pub fn for_each_body<'a>(&'a self, f: &mut dyn FnMut(&'a Body)) {
        match self {
            Expr::If { then_body, else_body, .. } => {
                f(then_body);
                f(else_body);
            }
            Expr::Loop { form: LoopForm::While { cond }, body, .. } => {
                f(cond);
                f(body);
            }
            Expr::Loop { body, .. } => f(body),
            Expr::Map { lam, .. }
            | Expr::Reduce { lam, .. }
            | Expr::Scan { lam, .. }
            | Expr::Hist { lam, .. }
            | Expr::Jvp { lam, .. }
            | Expr::Vjp { lam, .. } => f(&lam.body),
            Expr::Custom { primal, jvp, vjp, .. } => {
                f(&primal.body);
                jvp.iter().chain(vjp).for_each(|l| f(&l.body));
            }
            _ => {}
        }
    }

    /// The nested bodies, in a fixed order: branches; lambda bodies; a while
    /// loop's condition, then the loop body; a custom rule's primal, then its rule.
    pub fn bodies(&self) -> Vec<&Body> {
        let mut out = Vec::with_capacity(2);
        self.for_each_body(&mut |b| out.push(b));
        out
    }

    /// [`Self::bodies`], mutably (same order).
    pub fn bodies_mut(&mut self) -> Vec<&mut Body> {
        match self {
            Expr::If { then_body, else_body, .. } => vec![then_body, else_body],
            Expr::Loop { form: LoopForm::While { cond }, body, .. } => vec![cond, body],
            Expr::Loop { body, .. } => vec![body],
            e => e.lambdas_mut().into_iter().map(|l| &mut l.body).collect(),
        }
    }

    /// A copy of this expression with every nested body (those
    /// [`Self::bodies`] lists) empty, for a caller about to fill them in: a
    /// large body is not copied only to be overwritten.
    pub fn clone_without_bodies(&self) -> Expr {
        let lam = |l: &Lambda| Lambda { params: l.params.clone(), body: Body::default() };
        match self {
            Expr::If { cond, .. } => Expr::If { cond: *cond, then_body: Body::default(), else_body: Body::default() },
            Expr::Loop { params, init, form, .. } => Expr::Loop {
                params: params.clone(),
                init: init.clone(),
                form: match form {
                    LoopForm::While { .. } => LoopForm::While { cond: Body::default() },
                    other => other.clone(),
                },
                body: Body::default(),
            },
            Expr::Map { width, lam: l, arrays } => Expr::Map { width: *width, lam: lam(l), arrays: arrays.clone() },
            Expr::Reduce { lam: l, neutral, arrays } => {
                Expr::Reduce { lam: lam(l), neutral: neutral.clone(), arrays: arrays.clone() }
            }
            Expr::Scan { lam: l, neutral, arrays } => {
                Expr::Scan { lam: lam(l), neutral: neutral.clone(), arrays: arrays.clone() }
            }
            Expr::Hist { dest, lam: l, neutral, indices, values } => {
                Expr::Hist { dest: *dest, lam: lam(l), neutral: *neutral, indices: *indices, values: *values }
            }
            Expr::Jvp { lam: l, primals, tangents, batch, values } => Expr::Jvp {
                lam: lam(l),
                primals: primals.clone(),
                tangents: tangents.clone(),
                batch: *batch,
                values: *values,
            },
            Expr::Vjp { lam: l, primals, cotangents, values } => {
                Expr::Vjp { lam: lam(l), primals: primals.clone(), cotangents: cotangents.clone(), values: *values }
            }
            Expr::Custom { primal, jvp, vjp, args, residuals } => Expr::Custom {
                primal: lam(primal),
                jvp: jvp.as_ref().map(lam),
                vjp: vjp.as_ref().map(lam),
                args: args.clone(),
                residuals: *residuals,
            },
            other => {
                debug_assert!(other.bodies().is_empty(), "every expression with bodies is listed above");
                other.clone()
            }
        }
    }

    /// The lambdas this expression carries (combinator operands, AD operands,
    /// a custom rule's primal and rule).
    pub fn lambdas(&self) -> Vec<&Lambda> {
        lambdas_of!(self)
    }

    /// The lambdas this expression carries, mutably (same order as [`Self::lambdas`]).
    pub fn lambdas_mut(&mut self) -> Vec<&mut Lambda> {
        lambdas_of!(self)
    }

    /// Calls `f` on every variable this expression binds for the code
    /// nested in it: its lambdas' parameters, then its loop's parameters
    /// and index. (What a statement binds for the code after it is
    /// `Stmt::binds`.)
    pub fn for_each_binder(&self, mut f: impl FnMut(Var)) {
        for lam in self.lambdas() {
            lam.params.iter().for_each(|&v| f(v));
        }
        if let Expr::Loop { params, form, .. } = self {
            params.iter().for_each(|&v| f(v));
            if let LoopForm::For { index, .. } = form {
                f(*index);
            }
        }
    }

    /// [`Self::for_each_binder`], mutably (same order).
    pub fn for_each_binder_mut(&mut self, mut f: impl FnMut(&mut Var)) {
        for lam in self.lambdas_mut() {
            lam.params.iter_mut().for_each(&mut f);
        }
        if let Expr::Loop { params, form, .. } = self {
            params.iter_mut().for_each(&mut f);
            if let LoopForm::For { index, .. } = form {
                f(index);
            }
        }
    }

    /// The atoms this expression reads directly (not those inside nested
    /// bodies), array operands as `Atom::Var`, in the order of Note [One
    /// operand walk].
    pub fn operands(&self) -> Vec<Atom> {
        // Most expressions read at most four: one allocation, no growth.
        let mut out = Vec::with_capacity(4);
        walk_operands!(self, |o: Operand<&Atom, &Var>| out.push(match o {
            Operand::Atom(a) => *a,
            Operand::Array(v) => Atom::Var(*v),
        }));
        out
    }

    /// [`Self::operands`] without building a vector.
    pub fn for_each_operand(&self, mut f: impl FnMut(Atom)) {
        walk_operands!(self, |o: Operand<&Atom, &Var>| f(match o {
            Operand::Atom(a) => *a,
            Operand::Array(v) => Atom::Var(*v),
        }));
    }

    /// Calls `f` on every direct operand, mutably (renaming, substitution).
    pub fn map_operands(&mut self, mut f: impl FnMut(Operand<&mut Atom, &mut Var>)) {
        walk_operands!(self, f);
    }
}

/// A direct operand of an expression: an atom, or a variable in an array
/// position (which only a variable may replace).
pub enum Operand<A, V> {
    Atom(A),
    Array(V),
}

// Note [Consumed arrays]
// ~~~~~~~~~~~~~~~~~~~~~~
// Reverse mode accumulates adjoints of indexed arrays one element at a time
// (`x_adj[i] += z`). Copying the adjoint array for each update would make a
// loop of n indexings cost O(n²) — the classic one-hot adjoint trap. Instead
// `UpdateAt` consumes its array operand: the AD pass threads each adjoint
// array linearly (every version is used exactly once), so the interpreter and
// the code generator may update the buffer in place and stay O(1) per update.
// The meaning stays pure: the result is a new array value.
