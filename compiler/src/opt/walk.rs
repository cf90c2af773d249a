//! Traversal helpers the optimiser's engine and rules share (the nested
//! bodies of a statement are `Expr::bodies`): use counts, substitution of variables, the variables a body
//! binds, and whether an expression can fail.
//!
//! Everything here works on one body and everything nested in it; nothing
//! reads or changes enclosing bodies. Substitution never renames binders, so
//! it keeps SSA as long as the substituted atoms are in scope at every use
//! (the callers' side condition).

use crate::hash::{HashMap, HashSet};
use crate::ir::{Atom, BinOp, Body, Const, Expr, Operand, Stmt, Var};

// The use and statement walks live in `ir::scope` (AD asks them too).
pub use crate::ir::scope::{for_each_stmt, for_each_use, for_each_use_in};

/// Every variable bound in `body` or below: statement binders, lambda and
/// loop parameters, loop indices.
pub fn bound_in(body: &Body, out: &mut HashSet<Var>) {
    for s in &body.stmts {
        out.extend(s.binds.iter().copied());
        s.expr.for_each_binder(|v| {
            out.insert(v);
        });
        for b in s.expr.bodies() {
            bound_in(b, out);
        }
    }
}

pub use crate::ir::scope::free_in_expr;

/// Replaces every use of a key of `subst` in `body` (nested bodies included).
/// An array position (`Var` operand) can only be replaced by a variable;
/// callers never map an array to a constant.
pub fn substitute(body: &mut Body, subst: &HashMap<Var, Atom>) {
    if subst.is_empty() {
        return;
    }
    // Only the statements that mention a key are written, so nested bodies
    // that do not are not copied (Note [Shared statement lists]).
    let hits: Vec<usize> = (0..body.stmts.len()).filter(|&i| mentions(&body.stmts[i], subst)).collect();
    if !hits.is_empty() {
        let stmts = &mut *body.stmts;
        for i in hits {
            substitute_expr(&mut stmts[i].expr, subst);
        }
    }
    for a in &mut body.result {
        sub_atom(a, subst);
    }
}

fn sub_atom(a: &mut Atom, subst: &HashMap<Var, Atom>) {
    if let Atom::Var(v) = a {
        if let Some(r) = subst.get(v) {
            *a = *r;
        }
    }
}

fn sub_var(v: &mut Var, subst: &HashMap<Var, Atom>) {
    if let Some(Atom::Var(w)) = subst.get(v) {
        *v = *w;
    }
}

/// Substitutes `e`'s own operands, not those in its nested bodies (for a
/// caller that visits those itself).
pub fn substitute_operands(e: &mut Expr, subst: &HashMap<Var, Atom>) {
    e.map_operands(|o| match o {
        Operand::Atom(a) => sub_atom(a, subst),
        Operand::Array(v) => sub_var(v, subst),
    });
}

/// Whether `s` (nested bodies included) uses a key of `subst`.
fn mentions(s: &Stmt, subst: &HashMap<Var, Atom>) -> bool {
    let mut found = false;
    for_each_use_in(std::slice::from_ref(s), &mut |v| found |= subst.contains_key(&v));
    found
}

pub fn substitute_expr(e: &mut Expr, subst: &HashMap<Var, Atom>) {
    substitute_operands(e, subst);
    for b in e.bodies_mut() {
        substitute(b, subst);
    }
}

/// True when evaluating `e` can never raise a run-time error, whatever the
/// values of its operands (see Note [What may move] in `rules.rs`). Nested
/// bodies are not inspected: statements with bodies are never total here.
pub fn is_total(e: &Expr, int_operand: impl Fn(Atom) -> bool) -> bool {
    match e {
        Expr::Atom(_) | Expr::Unary(..) | Expr::Convert(..) | Expr::Select(..) | Expr::Shape { .. } => true,
        Expr::Binary(op, a, b) => !int_operand(*a) || int_binary_total(*op, *b),
        _ => false,
    }
}

/// Whether an integer `a op b` can never fail, whatever `a`: division and
/// remainder fail on a zero `b`, powers on a negative one, so these are total
/// only with a constant `b` that rules that out.
pub fn int_binary_total(op: BinOp, b: Atom) -> bool {
    match op {
        BinOp::Div | BinOp::Rem => matches!(b, Atom::Const(Const::I64(d)) if d != 0),
        BinOp::Pow => matches!(b, Atom::Const(Const::I64(e)) if e >= 0),
        _ => true,
    }
}

/// For each variable bound by a `map` statement of `body`, that statement's index.
pub fn map_producers(body: &Body) -> HashMap<Var, usize> {
    body.stmts
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s.expr, Expr::Map { .. }))
        .flat_map(|(i, s)| s.binds.iter().map(move |b| (*b, i)))
        .collect()
}
