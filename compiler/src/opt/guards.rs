//! What a statement may fail on, and the checks that fail exactly when it does.
//!
//! Input: a statement and the run's facts ([`Cx`]). Output: the statement's
//! failure conditions that the facts do not prove impossible, as [`Cond`]s;
//! `None` when it may fail in a way no check expresses (a `while` loop's
//! iteration limit, a body that may fail, a slice not proved in range).
//! [`guards`] turns the conditions into `Check` statements (reading the sizes
//! they need with fresh `shape` statements).
//!
//! Who asks: dead-code elimination (a dead statement that may fail becomes its
//! guards, or stays), the rules that replace or drop an array-producing
//! statement (`index_pull`, `map_replicate_arg`, `map_identity`, the fusions),
//! and the check simplifier (a check proved to hold disappears).
//!
//! Invariant: a guard fails exactly when the statement it stands for would,
//! with the same code; with one failing condition, also the same message and
//! span. See Note \[Guards\].

use super::strategy::{Cx, Fact};
use super::walk;
use crate::diagnostic::Span;
use crate::ir::{Atom, Body, CheckKind, Const, Expr, IrType, LoopForm, Stmt, Var};
use crate::types::ScalarType;

/// One way a statement may fail: a check of `kind` on `args`.
#[derive(Clone, Debug, PartialEq)]
pub struct Cond {
    pub kind: CheckKind,
    pub args: Vec<Size>,
}

/// An operand of a condition: an atom in scope where the statement is, or
/// the size of a dimension of an array (read with `shape` when materialised).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Size {
    Atom(Atom),
    Dim(Var, u32),
}

/// A canonical name for an `i64` value, used to prove two sizes equal:
/// equal keys are equal values wherever both are defined (SSA).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Key {
    Const(i64),
    /// The size of dimension `d` of an array (after following aliases,
    /// replicates, iotas and map results to where the size comes from).
    Dim(Var, u32),
    Var(Var),
    /// Not an `i64` (never equal to anything).
    Other,
}

/// How deep key resolution follows facts (SSA has no cycles; this bounds the work).
const DEPTH: u32 = 64;

fn key(cx: &Cx, a: Atom, depth: u32) -> Key {
    match a {
        Atom::Const(Const::I64(c)) => Key::Const(c),
        Atom::Const(_) => Key::Other,
        Atom::Var(v) if depth == 0 => Key::Var(v),
        Atom::Var(v) => match cx.fact(v) {
            Some(Fact::Atom(b)) => key(cx, b, depth - 1),
            Some(Fact::Shape { array, dim }) => dim_key(cx, array, dim, depth - 1),
            _ => Key::Var(v),
        },
    }
}

fn dim_key(cx: &Cx, array: Var, dim: u32, depth: u32) -> Key {
    if depth == 0 {
        return Key::Dim(array, dim);
    }
    match (cx.fact(array), dim) {
        (Some(Fact::Atom(Atom::Var(b))), d) => dim_key(cx, b, d, depth - 1),
        (Some(Fact::Sub { array: b, skip }), d) => dim_key(cx, b, d + skip, depth - 1),
        (Some(Fact::Iota(n) | Fact::Replicate { count: n, .. } | Fact::Mapped { width: n }), 0) => {
            key(cx, n, depth - 1)
        }
        (Some(Fact::Replicate { value: Atom::Var(v), .. }), d) if d > 0 => dim_key(cx, v, d - 1, depth - 1),
        _ => Key::Dim(array, dim),
    }
}

fn size_key(cx: &Cx, s: Size) -> Key {
    match s {
        Size::Atom(a) => key(cx, a, DEPTH),
        Size::Dim(v, d) => dim_key(cx, v, d, DEPTH),
    }
}

/// `a` and `b` are provably the same size, from the facts alone.
pub fn same_size(cx: &Cx, a: Size, b: Size) -> bool {
    match (size_key(cx, a), size_key(cx, b)) {
        (Key::Other, _) | (_, Key::Other) => false,
        (x, y) => x == y,
    }
}

/// `a` and `b` are the same size, from the facts and the equality checks at
/// the top level of the function (Note [Guards]: not to remove those checks).
fn same_size_past_checks(cx: &Cx, a: Size, b: Size) -> bool {
    let (ka, kb) = (size_key(cx, a), size_key(cx, b));
    if matches!(ka, Key::Other) || matches!(kb, Key::Other) {
        return false;
    }
    if ka == kb {
        return true;
    }
    let pairs: Vec<(Key, Key)> = cx.size_eqs().iter().map(|(x, y)| (key(cx, *x, DEPTH), key(cx, *y, DEPTH))).collect();
    let mut reached = vec![ka];
    let mut grew = true;
    while grew {
        grew = false;
        for &(x, y) in &pairs {
            for (from, to) in [(x, y), (y, x)] {
                if reached.contains(&from) && !reached.contains(&to) {
                    reached.push(to);
                    grew = true;
                }
            }
        }
    }
    reached.contains(&kb)
}

/// `a >= 0` is provable: a non-negative constant, the size of an array, or
/// a loop index or a map parameter over an `iota`.
fn nonneg(cx: &Cx, a: Size) -> bool {
    if let Size::Atom(Atom::Var(v)) = a {
        if matches!(cx.fact(v), Some(Fact::Below(_))) {
            return true;
        }
    }
    match size_key(cx, a) {
        Key::Const(c) => c >= 0,
        Key::Dim(..) => true,
        Key::Var(_) | Key::Other => false,
    }
}

/// `0 <= i < n` is provable.
fn in_bounds(cx: &Cx, i: Size, n: Size) -> bool {
    match (size_key(cx, i), size_key(cx, n)) {
        (Key::Const(i), Key::Const(n)) => 0 <= i && i < n,
        _ => match i {
            Size::Atom(Atom::Var(v)) => match cx.fact(v) {
                Some(Fact::Below(m)) => same_size_past_checks(cx, Size::Atom(m), n),
                _ => false,
            },
            _ => false,
        },
    }
}

/// Whether a condition a statement tests is proved to hold, so the
/// statement's failure needs no guard.
fn holds(cx: &Cx, c: &Cond) -> bool {
    match (&c.kind, c.args.as_slice()) {
        (CheckKind::SizeEq { .. } | CheckKind::Iterated { .. }, &[a, b]) => same_size_past_checks(cx, a, b),
        (CheckKind::InBounds { .. }, &[i, n]) => in_bounds(cx, i, n),
        (CheckKind::Size, &[n]) => nonneg(cx, n),
        (CheckKind::Positive { .. }, &[n]) => matches!(size_key(cx, n), Key::Const(c) if c >= 1),
        _ => false,
    }
}

/// Whether the check statement `kind args` cannot fail, so it may go. An
/// equality check is proved by the facts alone: the top-level equality
/// checks must not prove themselves away.
pub fn check_holds(cx: &Cx, kind: &CheckKind, args: &[Atom]) -> bool {
    match (kind, args) {
        (CheckKind::SizeEq { .. } | CheckKind::Iterated { .. }, &[a, b]) => same_size(cx, Size::Atom(a), Size::Atom(b)),
        _ => holds(cx, &Cond { kind: kind.clone(), args: args.iter().map(|a| Size::Atom(*a)).collect() }),
    }
}

/// The conditions under which `s` fails that the facts do not rule out, in
/// the order the statement would test them; `None` when some failure has
/// no check that expresses it.
pub fn conditions(cx: &Cx, s: &Stmt) -> Option<Vec<Cond>> {
    let mut out = Vec::new();
    let mut need = |c: Cond| {
        if !holds(cx, &c) {
            out.push(c);
        }
    };
    let atom = Size::Atom;
    let int = |a: Atom| cx.vars.atom_type(a).elem == ScalarType::I64;
    match &s.expr {
        Expr::Atom(_)
        | Expr::Unary(..)
        | Expr::Convert(..)
        | Expr::Select(..)
        | Expr::Shape { .. }
        | Expr::Transpose(_)
        | Expr::Reverse(_)
        | Expr::Argsort { .. }
        | Expr::Flatten(_)
        | Expr::Opaque(_) => {}
        Expr::Binary(op, a, b) => {
            if int(*a) && !walk::int_binary_total(*op, *b) {
                return None;
            }
        }
        Expr::Iota(n) | Expr::Replicate { count: n, .. } => need(Cond { kind: CheckKind::Size, args: vec![atom(*n)] }),
        Expr::Index { array, indices } => {
            for (d, i) in indices.iter().enumerate() {
                let d = d as u32;
                need(Cond { kind: CheckKind::InBounds { dim: d }, args: vec![atom(*i), Size::Dim(*array, d)] });
            }
        }
        Expr::UpdateAt { array, indices, .. } if indices.len() as u32 == cx.vars.ty(*array).rank => {
            for (d, i) in indices.iter().enumerate() {
                let d = d as u32;
                need(Cond { kind: CheckKind::InBounds { dim: d }, args: vec![atom(*i), Size::Dim(*array, d)] });
            }
        }
        Expr::Slice { array, start, end } => {
            let full = matches!(start, Atom::Const(Const::I64(0))) && same_size(cx, atom(*end), Size::Dim(*array, 0));
            if !full {
                return None;
            }
        }
        Expr::Concat(a, _) if cx.vars.ty(*a).rank == 1 => {}
        Expr::ArrayLit { elem, .. } if elem.is_scalar() => {}
        Expr::Map { width, lam, arrays } => {
            if !body_total(cx, &lam.body) {
                return None;
            }
            out.extend(map_conds(cx, *width, arrays));
        }
        Expr::Reduce { lam, arrays, .. } | Expr::Scan { lam, arrays, .. } => {
            if !body_total(cx, &lam.body) {
                return None;
            }
            let what = if matches!(s.expr, Expr::Reduce { .. }) { "reduce" } else { "scan" };
            out.extend(iterated_conds(cx, what, arrays));
        }
        Expr::Loop { form: LoopForm::For { .. }, body, .. } => {
            if !body_total(cx, body) {
                return None;
            }
        }
        Expr::If { then_body, else_body, .. } => {
            if !(body_total(cx, then_body) && body_total(cx, else_body)) {
                return None;
            }
        }
        Expr::Custom { primal, .. } => {
            if !body_total(cx, &primal.body) {
                return None;
            }
        }
        // The callee's failures are its own: no check here expresses them.
        Expr::Call { .. } => return None,
        Expr::Check { kind, args } => {
            if !check_holds(cx, kind, args) {
                out.push(Cond { kind: kind.clone(), args: args.iter().map(|a| atom(*a)).collect() });
            }
        }
        Expr::Loop { form: LoopForm::While { .. }, .. }
        | Expr::UpdateAt { .. }
        | Expr::Concat(..)
        | Expr::ArrayLit { .. }
        | Expr::Unflatten { .. }
        | Expr::Scatter { .. }
        | Expr::Hist { .. }
        | Expr::Jvp { .. }
        | Expr::Vjp { .. } => return None,
    }
    Some(out)
}

/// Whether `s` can never fail.
pub fn total(cx: &Cx, s: &Stmt) -> bool {
    conditions(cx, s).is_some_and(|c| c.is_empty())
}

/// Whether no statement of `body` (nested bodies included) can fail.
pub fn body_total(cx: &Cx, body: &Body) -> bool {
    body.stmts.iter().all(|t| total(cx, t))
}

/// The checks a `map` of `width` over `arrays` makes before running its
/// body, in the interpreter's order: the width is a size, the arrays share
/// their outer size, and that size is the width.
pub fn map_conds(cx: &Cx, width: Atom, arrays: &[Var]) -> Vec<Cond> {
    let mut out = Vec::new();
    let size = Cond { kind: CheckKind::Size, args: vec![Size::Atom(width)] };
    if !holds(cx, &size) {
        out.push(size);
    }
    out.extend(iterated_conds(cx, "map", arrays));
    if let Some(first) = arrays.first() {
        let c = Cond {
            kind: CheckKind::Iterated { what: "map".into() },
            args: vec![Size::Atom(width), Size::Dim(*first, 0)],
        };
        if !holds(cx, &c) {
            out.push(c);
        }
    }
    out
}

/// The arrays a combinator iterates over share their outer size.
fn iterated_conds(cx: &Cx, what: &str, arrays: &[Var]) -> Vec<Cond> {
    let Some(first) = arrays.first() else { return Vec::new() };
    arrays[1..]
        .iter()
        .map(|a| Cond {
            kind: CheckKind::Iterated { what: what.into() },
            args: vec![Size::Dim(*first, 0), Size::Dim(*a, 0)],
        })
        .filter(|c| !holds(cx, c))
        .collect()
}

/// Check statements for `conds` (with `shape` reads for array sizes), at `span`.
pub fn materialise(cx: &mut Cx, conds: Vec<Cond>, span: Span) -> Vec<Stmt> {
    let mut out = Vec::new();
    for c in conds {
        let args = c
            .args
            .iter()
            .map(|s| match *s {
                Size::Atom(a) => a,
                Size::Dim(array, dim) => {
                    let n = cx.vars.fresh("n", IrType::I64);
                    out.push(Stmt { binds: vec![n], expr: Expr::Shape { array, dim }, span });
                    Atom::Var(n)
                }
            })
            .collect();
        out.push(Stmt { binds: Vec::new(), expr: Expr::Check { kind: c.kind, args }, span });
    }
    out
}

/// The guards of `s`: check statements that fail exactly when `s` would
/// (empty when it cannot fail), or `None` when no checks express its failures.
pub fn guards(cx: &mut Cx, s: &Stmt) -> Option<Vec<Stmt>> {
    let conds = conditions(cx, s)?;
    Some(materialise(cx, conds, s.span))
}

// Note [Guards]
// ~~~~~~~~~~~~~
// Every IR expression except `Check` computes a value or fails, and failing
// is observable: a program that fails must keep failing after optimisation,
// with the same error code (a wrong answer printed instead of an error is
// the worst thing a compiler can do). So a rule that removes a statement
// (dead code) or replaces it by something that no longer tests what it
// tested (`(iota n)[i] → i`, `length (replicate n v) → n` followed by the
// replicate's death, a fused map that no longer iterates the producer's
// arrays) must either prove that the statement cannot fail or leave behind
// a *guard*: `Check` statements of the kinds the interpreter's own tests
// have (`Size`, `InBounds`, `Iterated`, `SizeEq`), at the statement's span,
// that fail when it would have, with its code and message.
//
// Proofs use facts that hold wherever a variable is in scope (SSA): sizes
// are compared by a canonical key (the size of dimension d of array a,
// following aliases, iotas, replicates and map widths back to their source),
// loop indices and parameters of maps over `iota n` lie in 0..n, and sizes
// of arrays are non-negative. What the facts cannot prove stays a check; the
// lowering's own facts (scoped size equalities, loop ranges) remove most of
// those, and the remaining ones cost a compare and a branch.
//
// Two things are not preserved exactly. When several conditions fail, a
// rewritten program may report a different one of them first (a fused map
// tests the consumer's width before the producer's body): the code may then
// differ, never whether the program fails. And out of memory (E0207) is a
// property of the arrays a program builds: an array the optimiser never
// builds cannot run out of memory, so its guard checks only that its size is
// non-negative.
