//! Traversal helpers the optimiser's engine and rules share (the nested
//! bodies of a statement are `Expr::bodies`): use counts, substitution of variables, the variables a body
//! binds, and whether an expression can fail.
//!
//! Everything here works on one body and everything nested in it; nothing
//! reads or changes enclosing bodies. Substitution never renames binders, so
//! it keeps SSA as long as the substituted atoms are in scope at every use
//! (the callers' side condition).

use crate::ir::{Atom, BinOp, Body, Expr, LoopForm, Var};
use std::collections::{HashMap, HashSet};

/// Calls `f` on every variable use in `body`, nested bodies included.
pub fn for_each_use(body: &Body, f: &mut dyn FnMut(Var)) {
    for_each_use_in(&body.stmts, f);
    for a in &body.result {
        if let Atom::Var(v) = a {
            f(*v);
        }
    }
}

/// Calls `f` on every variable use in `stmts`, nested bodies included.
pub fn for_each_use_in(stmts: &[crate::ir::Stmt], f: &mut dyn FnMut(Var)) {
    for s in stmts {
        for a in s.expr.operands() {
            if let Atom::Var(v) = a {
                f(v);
            }
        }
        for b in s.expr.bodies() {
            for_each_use(b, f);
        }
    }
}

/// Calls `f` on every statement of `body` and of its nested bodies (pre-order).
pub fn for_each_stmt(body: &Body, f: &mut dyn FnMut(&crate::ir::Stmt)) {
    for s in &body.stmts {
        f(s);
        for b in s.expr.bodies() {
            for_each_stmt(b, f);
        }
    }
}

/// Every variable bound in `body` or below: statement binders, lambda and
/// loop parameters, loop indices.
pub fn bound_in(body: &Body, out: &mut HashSet<Var>) {
    for s in &body.stmts {
        out.extend(s.binds.iter().copied());
        for lam in s.expr.lambdas() {
            out.extend(lam.params.iter().copied());
        }
        if let Expr::Loop { params, form, .. } = &s.expr {
            out.extend(params.iter().copied());
            if let LoopForm::For { index, .. } = form {
                out.insert(*index);
            }
        }
        for b in s.expr.bodies() {
            bound_in(b, out);
        }
    }
}

/// The variables an expression reads, its nested bodies included, minus those
/// bound inside it.
pub fn free_in_expr(e: &Expr) -> Vec<Var> {
    let stmt = crate::ir::Stmt { binds: Vec::new(), expr: e.clone(), span: Default::default() };
    crate::ad::build::free_vars(&Body { stmts: vec![stmt], result: Vec::new() })
}

/// Replaces every use of a key of `subst` in `body` (nested bodies included).
/// An array position (`Var` operand) can only be replaced by a variable;
/// callers never map an array to a constant.
pub fn substitute(body: &mut Body, subst: &HashMap<Var, Atom>) {
    if subst.is_empty() {
        return;
    }
    for s in &mut body.stmts {
        substitute_expr(&mut s.expr, subst);
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

pub fn substitute_expr(e: &mut Expr, subst: &HashMap<Var, Atom>) {
    let atoms = |xs: &mut Vec<Atom>| xs.iter_mut().for_each(|a| sub_atom(a, subst));
    let vars = |xs: &mut Vec<Var>| xs.iter_mut().for_each(|v| sub_var(v, subst));
    match e {
        Expr::Atom(a) | Expr::Opaque(a) | Expr::Unary(_, a) | Expr::Convert(_, a) | Expr::Iota(a) => sub_atom(a, subst),
        Expr::Binary(_, a, b) => {
            sub_atom(a, subst);
            sub_atom(b, subst);
        }
        Expr::Select(c, a, b) => {
            sub_atom(c, subst);
            sub_atom(a, subst);
            sub_atom(b, subst);
        }
        Expr::If { cond, .. } => sub_atom(cond, subst),
        Expr::Index { array, indices } => {
            sub_var(array, subst);
            atoms(indices);
        }
        Expr::Slice { array, start, end } => {
            sub_var(array, subst);
            sub_atom(start, subst);
            sub_atom(end, subst);
        }
        Expr::Shape { array, .. } | Expr::Transpose(array) | Expr::Reverse(array) | Expr::Flatten(array) => {
            sub_var(array, subst)
        }
        Expr::Replicate { count, value } => {
            sub_atom(count, subst);
            sub_atom(value, subst);
        }
        Expr::ArrayLit { elems, .. } => atoms(elems),
        Expr::Map { width, arrays, .. } => {
            sub_atom(width, subst);
            vars(arrays);
        }
        Expr::Reduce { neutral, arrays, .. } | Expr::Scan { neutral, arrays, .. } => {
            atoms(neutral);
            vars(arrays);
        }
        Expr::Loop { init, form, .. } => {
            atoms(init);
            if let LoopForm::For { bound, .. } = form {
                sub_atom(bound, subst);
            }
        }
        Expr::Scatter { dest, indices, values } => {
            sub_var(dest, subst);
            sub_var(indices, subst);
            sub_var(values, subst);
        }
        Expr::Hist { dest, neutral, indices, values, .. } => {
            sub_var(dest, subst);
            sub_atom(neutral, subst);
            sub_var(indices, subst);
            sub_var(values, subst);
        }
        Expr::Concat(a, b) => {
            sub_var(a, subst);
            sub_var(b, subst);
        }
        Expr::Unflatten { array, rows, cols } => {
            sub_var(array, subst);
            sub_atom(rows, subst);
            sub_atom(cols, subst);
        }
        Expr::UpdateAt { array, indices, value, .. } => {
            sub_var(array, subst);
            atoms(indices);
            sub_atom(value, subst);
        }
        Expr::Check { args, .. } => atoms(args),
        Expr::Jvp { primals, tangents, batch, .. } => {
            atoms(primals);
            atoms(tangents);
            if let Some(b) = batch {
                sub_atom(b, subst);
            }
        }
        Expr::Vjp { primals, cotangents, .. } => {
            atoms(primals);
            atoms(cotangents);
        }
        Expr::Custom { args, .. } => atoms(args),
    }
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
        // Integer division and remainder fail on zero, integer powers on negative exponents.
        Expr::Binary(BinOp::Div | BinOp::Rem | BinOp::Pow, a, _) => !int_operand(*a),
        Expr::Binary(..) => true,
        _ => false,
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
