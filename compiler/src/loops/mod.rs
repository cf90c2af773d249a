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

pub mod buffers;
pub mod lower;
pub mod opt;
pub mod pack;
pub mod parallel;
pub mod strands;
mod print;
pub mod verify;

pub use print::{print_func, print_program};

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
    /// The scalar type this machine type holds.
    pub fn scalar(self) -> ScalarType {
        match self {
            MTy::F64 => ScalarType::F64,
            MTy::F32 => ScalarType::F32,
            MTy::I64 => ScalarType::I64,
            MTy::Bool => ScalarType::Bool,
        }
    }
    /// The runtime's name for the same element type.
    pub fn elem_type(self) -> slope_runtime::ElemType {
        crate::values::elem_type(self.scalar())
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
    /// memory cannot be had, the function fails with `sites[site]` — unless
    /// the allocation is `hoisted` out of the loop that uses it: then it
    /// gives a null buffer, and the place it came from checks for null and
    /// fails there (Note [Hoisted buffers] in `buffers.rs`).
    Alloc {
        elem: MTy,
        count: Operand,
        site: u32,
        hoisted: bool,
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
    /// Writes the stable sorting permutation of the `count` keys at `keys`
    /// into the `i64` buffer `perm` (Note [Sorting] in `slope_runtime::sort`)
    /// by calling the runtime's `slope_argsort_{elem}`. Reads
    /// `keys[0..count]` and writes `perm[0..count]`, as a `Copy` reads `src`
    /// and writes `dst`; the two buffers are distinct.
    Argsort {
        elem: MTy,
        keys: Operand,
        count: Operand,
        perm: Operand,
        descending: bool,
    },
    /// `for index in start..bound` (no iterations when `bound <= start`).
    /// With `lanes > 1`, code generation runs `lanes` consecutive iterations
    /// at once in vector registers (then the remaining ones one by one);
    /// the loop optimiser sets it only where that computes the same values
    /// (Note [Vector loops] in `opt/simd.rs`).
    ///
    /// `parallel`: the loop runs an iteration space the parallel level made
    /// a parallel segment (`segments`, Note [Outermost parallelism first]);
    /// the `parallel` stage outlines it when its iterations are independent,
    /// and only then. Lowering sets it; the loop passes keep it.
    For {
        index: LVar,
        start: Operand,
        bound: Operand,
        body: Vec<Inst>,
        lanes: u32,
        parallel: bool,
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
    /// Calls the function `func` of the program — an entry point called at
    /// the top level of another (Note [Entries called by entries] in
    /// ir/calls.rs) — with the argument words `args`, laid out as its
    /// `params`, and assigns its result words to `results`, laid out as its
    /// `results`. When the callee fails, this function fails with the
    /// callee's error. Only in a function's top-level block: never in a
    /// loop, a branch or a segment. It reads the buffers its arguments point
    /// to and writes none of them; its results are the callee's buffers,
    /// which may be its arguments'.
    Call {
        func: String,
        args: Vec<Operand>,
        results: Vec<LVar>,
    },
    /// Runs the loop outlined into `Program::segments[segment]` over
    /// `start..bound`, in chunks on the thread pool (Note [Parallel
    /// segments] in `parallel.rs`) — or, when `inline`, by one call of the
    /// segment's function over the whole range on the calling thread (Note
    /// [Loops called inline]). `args` are the segment's arguments after
    /// `lo` and `hi`; afterwards `results[k]` holds the total of the
    /// segment's reduction `k`. Only the `parallel` stage makes these.
    Parallel {
        segment: u32,
        inline: bool,
        start: Operand,
        bound: Operand,
        args: Vec<Operand>,
        results: Vec<LVar>,
    },
}

impl Rhs {
    /// The test that a hoisted allocation got its memory: `ptr != 0`
    /// (Note [Hoisted buffers] in `buffers.rs`).
    pub fn null_test(ptr: LVar) -> Rhs {
        Rhs::Binary(BinOp::Ne, Operand::Var(ptr), Operand::i64(0))
    }

    /// The buffer this tests for null, if it is [`Rhs::null_test`].
    pub fn tested_for_null(&self) -> Option<LVar> {
        match self {
            Rhs::Binary(BinOp::Ne, Operand::Var(p), Operand::Const(Const::I64(0))) => Some(*p),
            _ => None,
        }
    }

    /// The operands the right-hand side reads.
    pub fn operands(&self) -> Vec<Operand> {
        let mut out = Vec::new();
        self.for_each_operand(|o| out.push(o));
        out
    }

    /// [`Self::operands`] without building a vector.
    pub fn for_each_operand(&self, mut f: impl FnMut(Operand)) {
        match self {
            Rhs::Use(a) | Rhs::Unary(_, a) | Rhs::Convert(_, a) | Rhs::Alloc { count: a, .. } => f(*a),
            Rhs::Binary(_, a, b)
            | Rhs::Load { base: a, index: b, .. }
            | Rhs::Offset { base: a, index: b, .. }
            | Rhs::InRange { index: a, bound: b } => {
                f(*a);
                f(*b);
            }
            Rhs::Select(c, a, b) => {
                f(*c);
                f(*a);
                f(*b);
            }
            Rhs::Mark | Rhs::WhileLimit => {}
        }
    }

    /// [`Self::operands`], mutably (same order), without building a vector.
    pub fn operands_mut(&mut self) -> impl Iterator<Item = &mut Operand> {
        self.operand_slots().into_iter().flatten()
    }

    /// The operands, mutably, in order, padded with `None`: every
    /// right-hand side reads at most three.
    fn operand_slots(&mut self) -> [Option<&mut Operand>; 3] {
        match self {
            Rhs::Use(a) | Rhs::Unary(_, a) | Rhs::Convert(_, a) | Rhs::Alloc { count: a, .. } => [Some(a), None, None],
            Rhs::Binary(_, a, b)
            | Rhs::Load { base: a, index: b, .. }
            | Rhs::Offset { base: a, index: b, .. }
            | Rhs::InRange { index: a, bound: b } => [Some(a), Some(b), None],
            Rhs::Select(c, a, b) => [Some(c), Some(a), Some(b)],
            Rhs::Mark | Rhs::WhileLimit => [None, None, None],
        }
    }

    /// The operand this computes when that is known without running it:
    /// a copy, an operation on constants (with the interpreter's exact
    /// semantics), an identity (`x + 0`, `x * 1` on integers, `true && x`,
    /// a select of equal operands, an offset of 0), or a buffer of no
    /// elements (the runtime's `EMPTY_BUFFER`: nothing reads or writes it).
    pub fn fold(&self) -> Option<Operand> {
        use crate::ir::interp::{self, Val};
        let val = |c: Const| match c {
            Const::F64(x) => Val::F64(x),
            Const::F32(x) => Val::F32(x),
            Const::I64(x) => Val::I64(x),
            Const::Bool(x) => Val::Bool(x),
        };
        let back = |v: Val| match v {
            Val::F64(x) => Some(Operand::Const(Const::F64(x))),
            Val::F32(x) => Some(Operand::Const(Const::F32(x))),
            Val::I64(x) => Some(Operand::i64(x)),
            Val::Bool(x) => Some(Operand::Const(Const::Bool(x))),
            Val::Arr(_) => None,
        };
        let span = crate::diagnostic::Span::default();
        let c = |o: &Operand| o.as_i64();
        let t = Operand::Const(Const::Bool(true));
        let f = Operand::Const(Const::Bool(false));
        match self {
            Rhs::Use(o) => Some(*o),
            Rhs::Unary(op, Operand::Const(x)) => interp::unary(*op, val(*x), span).ok().and_then(back),
            Rhs::Binary(op, Operand::Const(x), Operand::Const(y)) => {
                interp::binary(*op, val(*x), val(*y), span).ok().and_then(back)
            }
            Rhs::Convert(to, Operand::Const(x)) => {
                let to = match to {
                    MTy::F64 => ScalarType::F64,
                    MTy::F32 => ScalarType::F32,
                    MTy::I64 => ScalarType::I64,
                    MTy::Bool => ScalarType::Bool,
                };
                interp::convert(to, val(*x), span).ok().and_then(back)
            }
            Rhs::Binary(op, a, b) => match (op, c(a), c(b)) {
                (BinOp::Mul, Some(1), _) | (BinOp::Add, Some(0), _) => Some(*b),
                (BinOp::Mul, _, Some(1)) | (BinOp::Add, _, Some(0)) | (BinOp::Sub, _, Some(0)) => Some(*a),
                (BinOp::Mul, Some(0), _) | (BinOp::Mul, _, Some(0)) => Some(Operand::i64(0)),
                (BinOp::And, _, _) if *a == t => Some(*b),
                (BinOp::And, _, _) if *b == t => Some(*a),
                (BinOp::And, _, _) if *a == f || *b == f => Some(f),
                (BinOp::Or, _, _) if *a == f => Some(*b),
                (BinOp::Or, _, _) if *b == f => Some(*a),
                (BinOp::Or, _, _) if *a == t || *b == t => Some(t),
                _ => None,
            },
            Rhs::Select(Operand::Const(Const::Bool(k)), a, b) => Some(if *k { *a } else { *b }),
            Rhs::Select(_, a, b) if a == b && !matches!(a, Operand::Const(Const::F64(_) | Const::F32(_))) => Some(*a),
            Rhs::InRange { index: Operand::Const(Const::I64(i)), bound: Operand::Const(Const::I64(n)) } => {
                Some(Operand::Const(Const::Bool(0 <= *i && *i < *n)))
            }
            Rhs::Offset { index: Operand::Const(Const::I64(0)), base, .. } => Some(*base),
            Rhs::Alloc { count: Operand::Const(Const::I64(0)), .. } => Some(Operand::i64(slope_runtime::native::EMPTY_BUFFER)),
            _ => None,
        }
    }

    /// Computes a value from its operands alone — no memory, no arena, no
    /// trap — so it may move to wherever its operands hold the same values.
    /// Integer division, remainder and power qualify only with a constant
    /// divisor or exponent that needs no check: otherwise their operands were
    /// checked just before them, and they must not move above the check.
    pub fn is_arithmetic(&self, ty: impl Fn(Operand) -> MTy) -> bool {
        match self {
            Rhs::Binary(op @ (BinOp::Div | BinOp::Rem | BinOp::Pow), a, b) if ty(*a) == MTy::I64 => match (op, b) {
                (BinOp::Pow, Operand::Const(Const::I64(e))) => *e >= 0,
                (BinOp::Div | BinOp::Rem, Operand::Const(Const::I64(d))) => *d != 0,
                _ => false,
            },
            Rhs::Use(_)
            | Rhs::Unary(..)
            | Rhs::Binary(..)
            | Rhs::Convert(..)
            | Rhs::Select(..)
            | Rhs::InRange { .. }
            | Rhs::Offset { .. } => true,
            Rhs::Load { .. } | Rhs::Alloc { .. } | Rhs::Mark | Rhs::WhileLimit => false,
        }
    }
}

impl Inst {
    /// The nested blocks, in order: a loop's body (a `while`'s condition
    /// first), an `if`'s branches. The one enumeration passes walk through.
    pub fn blocks(&self) -> impl Iterator<Item = &[Inst]> {
        let (first, second): (Option<&[Inst]>, Option<&[Inst]>) = match self {
            Inst::For { body, .. } => (Some(body), None),
            Inst::While { cond, body, .. } => (Some(cond), Some(body)),
            Inst::If { then, els, .. } => (Some(then), Some(els)),
            _ => (None, None),
        };
        first.into_iter().chain(second)
    }

    /// Calls `f` on each of [`Self::blocks`] (for walks written as callbacks).
    pub fn for_each_block<'a>(&'a self, f: impl FnMut(&'a [Inst])) {
        self.blocks().for_each(f)
    }

    /// [`Self::blocks`], mutably (same order), without building a vector.
    pub fn blocks_mut(&mut self) -> impl Iterator<Item = &mut Vec<Inst>> {
        let (first, second) = match self {
            Inst::For { body, .. } => (Some(body), None),
            Inst::While { cond, body, .. } => (Some(cond), Some(body)),
            Inst::If { then, els, .. } => (Some(then), Some(els)),
            _ => (None, None),
        };
        first.into_iter().chain(second)
    }

    /// The operands the instruction reads itself (not in nested blocks).
    pub fn operands(&self) -> Vec<Operand> {
        // Most instructions read at most three: one allocation, no growth.
        let mut out = Vec::with_capacity(3);
        self.for_each_operand(|o| out.push(o));
        out
    }

    /// [`Self::operands`] without building a vector.
    pub fn for_each_operand(&self, mut f: impl FnMut(Operand)) {
        match self {
            Inst::Let(_, r) => r.for_each_operand(f),
            Inst::Store { base: a, index: b, value: c, .. }
            | Inst::Copy { dst: a, src: b, count: c, .. }
            | Inst::Argsort { perm: a, keys: b, count: c, .. } => {
                f(*a);
                f(*b);
                f(*c);
            }
            Inst::For { start, bound, .. } => {
                f(*start);
                f(*bound);
            }
            Inst::While { test: a, .. } | Inst::If { cond: a, .. } => f(*a),
            Inst::Fail { args, .. } => args.iter().copied().for_each(f),
            Inst::Release { mark, keep } => std::iter::once(mark).chain(keep).copied().for_each(f),
            Inst::Parallel { start, bound, args, .. } => [start, bound].into_iter().chain(args).copied().for_each(f),
            Inst::Call { args, .. } => args.iter().copied().for_each(f),
        }
    }

    /// The variables among [`Self::operands`], without building a vector.
    pub fn for_each_use(&self, mut f: impl FnMut(LVar)) {
        self.for_each_operand(|o| {
            if let Some(v) = o.var() {
                f(v)
            }
        })
    }

    /// [`Self::operands`], mutably (same order), without building a vector:
    /// at most three fixed operands, then a list (a failure's arguments, a
    /// release's kept pointers, a parallel loop's captures).
    pub fn operands_mut(&mut self) -> impl Iterator<Item = &mut Operand> {
        let (fixed, list): ([Option<&mut Operand>; 3], &mut [Operand]) = match self {
            Inst::Let(_, r) => (r.operand_slots(), &mut []),
            Inst::Store { base: a, index: b, value: c, .. }
            | Inst::Copy { dst: a, src: b, count: c, .. }
            | Inst::Argsort { perm: a, keys: b, count: c, .. } => ([Some(a), Some(b), Some(c)], &mut []),
            Inst::For { start, bound, .. } => ([Some(start), Some(bound), None], &mut []),
            Inst::While { test: a, .. } | Inst::If { cond: a, .. } => ([Some(a), None, None], &mut []),
            Inst::Fail { args, .. } => ([None, None, None], args),
            Inst::Release { mark, keep } => ([Some(mark), None, None], keep),
            Inst::Parallel { start, bound, args, .. } => ([Some(start), Some(bound), None], args),
            Inst::Call { args, .. } => ([None, None, None], args),
        };
        fixed.into_iter().flatten().chain(list)
    }

    /// Calls `f` on every variable the instruction itself assigns (not in
    /// nested blocks): a `Let`'s, a `For`'s index, a `Call`'s or a
    /// `Parallel`'s results.
    pub fn for_each_def(&self, mut f: impl FnMut(LVar)) {
        match self {
            Inst::Let(v, _) | Inst::For { index: v, .. } => f(*v),
            Inst::Call { results, .. } | Inst::Parallel { results, .. } => results.iter().copied().for_each(f),
            _ => {}
        }
    }

    /// Every variable the instruction itself assigns ([`Self::for_each_def`]).
    pub fn defs(&self) -> Vec<LVar> {
        let mut out = Vec::with_capacity(1);
        self.for_each_def(|v| out.push(v));
        out
    }

    /// Whether the instruction itself assigns `v`.
    pub fn defines(&self, v: LVar) -> bool {
        let mut found = false;
        self.for_each_def(|w| found |= w == v);
        found
    }

    /// `for index in 0..bound`.
    pub fn for_(index: LVar, bound: Operand, body: Vec<Inst>) -> Inst {
        Inst::For { index, start: Operand::i64(0), bound, body, lanes: 1, parallel: false }
    }
}

/// Calls `f` on every instruction of `insts`, nested blocks included (pre-order).
pub fn for_each_inst(insts: &[Inst], f: &mut dyn FnMut(&Inst)) {
    for i in insts {
        f(i);
        i.for_each_block(|b| for_each_inst(b, f));
    }
}

/// Every variable read anywhere in `insts` (nested blocks included).
pub fn for_each_use(insts: &[Inst], f: &mut dyn FnMut(LVar)) {
    for_each_inst(insts, &mut |i| i.for_each_use(&mut *f));
}

/// How many instructions `insts` has, nested blocks included: a measure of
/// the work a pass does on them.
pub fn size(insts: &[Inst]) -> usize {
    let mut n = 0;
    for_each_inst(insts, &mut |_| n += 1);
    n
}

/// Renames the variables of `insts` that `map` names, where they are read
/// and where they are assigned (nested blocks included); the others stay.
pub fn rename_block(insts: &mut [Inst], map: &crate::hash::HashMap<LVar, LVar>) {
    let rename = |v: &mut LVar| *v = map.get(v).copied().unwrap_or(*v);
    for i in insts {
        for o in i.operands_mut() {
            if let Operand::Var(v) = o {
                rename(v);
            }
        }
        match i {
            Inst::Let(v, _) | Inst::For { index: v, .. } => rename(v),
            Inst::Parallel { results, .. } => results.iter_mut().for_each(rename),
            _ => {}
        }
        for b in i.blocks_mut() {
            rename_block(b, map);
        }
    }
}

/// A copy of a loop body with a fresh index and fresh `locals`. Returns the
/// body and the renaming (of the index and each local).
pub fn fresh_copy(
    f: &mut Func,
    index: LVar,
    body: &[Inst],
    locals: &crate::hash::HashSet<LVar>,
) -> (Vec<Inst>, crate::hash::HashMap<LVar, LVar>) {
    let mut rename: crate::hash::HashMap<LVar, LVar> = Default::default();
    let mut locals: Vec<LVar> = locals.iter().copied().collect();
    locals.sort();
    for v in std::iter::once(index).chain(locals) {
        let (name, ty) = f.vars[v.0 as usize].clone();
        rename.insert(v, f.fresh(&name, ty));
    }
    let mut body = body.to_vec();
    rename_block(&mut body, &rename);
    (body, rename)
}

/// Variables assigned anywhere in `insts` (nested blocks included).
pub fn assigned_in(insts: &[Inst]) -> crate::hash::HashSet<LVar> {
    let mut out = crate::hash::HashSet::default();
    for_each_inst(insts, &mut |i| i.for_each_def(|v| {
        out.insert(v);
    }));
    out
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
        slope_runtime::words::leaf_words(self.rank)
    }
}

/// Where a `Fail` comes from: the error code and span, and how to say it.
#[derive(Clone, Debug, PartialEq)]
pub struct Site {
    pub code: Code,
    pub span: Span,
    pub message: Message,
}

/// How a `Fail` is worded (in the runtime: an ahead-of-time library renders
/// it without the compiler).
pub use slope_runtime::failure::Message;

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
    /// Variables that only ever hold array dimensions (so are `>= 0`); the
    /// loop optimiser's range analysis starts from them.
    pub dims: Vec<LVar>,
    /// What lowering knows of each loop it emitted that memory planning
    /// needs (`buffers.rs`, Note [What lowering tells memory planning]);
    /// empty after the `buffers` stage.
    pub loop_facts: Vec<LoopFacts>,
}

/// Lowering's facts about one loop, for memory planning (`buffers.rs`).
#[derive(Clone, Debug, PartialEq)]
pub struct LoopFacts {
    /// The loop's index (`None`: a `while` loop).
    pub index: Option<LVar>,
    /// The pointers that survive an iteration: the loop state's, a lazily
    /// allocated result's.
    pub keep: Vec<Operand>,
    /// Sizes of allocations in the body known non-negative where the loop starts.
    pub nonneg: crate::hash::HashSet<LVar>,
    /// Whether the body may allocate what an iteration should release.
    pub allocates: bool,
}

/// Does any instruction of `insts` (nested blocks included) allocate?
pub fn allocates(insts: &[Inst]) -> bool {
    insts.iter().any(|i| matches!(i, Inst::Let(_, Rhs::Alloc { .. })) || i.blocks().any(allocates))
}

impl Func {
    /// A function named `name` with nothing in it yet.
    pub fn empty(name: &str) -> Func {
        Func {
            name: name.to_string(),
            vars: Vec::new(),
            params: Vec::new(),
            param_leaves: Vec::new(),
            body: Vec::new(),
            results: Vec::new(),
            result_leaves: Vec::new(),
            sites: Vec::new(),
            dims: Vec::new(),
            loop_facts: Vec::new(),
        }
    }

    /// A fresh variable of type `ty`.
    pub fn fresh(&mut self, name: &str, ty: MTy) -> LVar {
        self.vars.push((name.to_string(), ty));
        LVar(self.vars.len() as u32 - 1)
    }

    /// `v` as printed: its name and number (`acc_3`).
    pub fn var_name(&self, v: LVar) -> String {
        format!("{}_{}", self.vars[v.0 as usize].0, v.0)
    }

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

/// A loop outlined by the `parallel` stage: its function (arguments `lo`,
/// `hi`, then the loop's inputs; results the partial values of its
/// reductions) and how the runtime runs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub func: Func,
    pub plan: slope_runtime::parallel::Segment,
}

/// The lowered entry points of a program.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Program {
    pub funcs: Vec<Func>,
    /// Loops the `parallel` stage outlined, named by `Inst::Parallel`.
    pub segments: Vec<Segment>,
}

impl Program {
    pub fn func(&self, name: &str) -> Option<&Func> {
        self.funcs.iter().find(|f| f.name == name)
    }
}
