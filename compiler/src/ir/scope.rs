//! Scoping in the IR: free variables, and copies of bodies under fresh names
//! (SSA: a copy may sit next to the original). Every pass that copies or
//! moves code asks here — AD (recomputed scopes), the optimiser (fission,
//! hoisting), gradcheck.
//!
//! Input: bodies and lambdas, and for renaming the program's [`VarTable`]
//! (fresh variables) and a substitution. Output: the free variables in order
//! of first use; a renamed copy whose every bound variable is fresh and
//! whose uses go through the substitution. Invariant: a copy never consumes
//! an array bound outside it (Note [Renaming consumed arrays]). Also the
//! small questions about code several passes ask: is this atom a given
//! constant, is this operator `+`.

use super::{Atom, BinOp, Body, Const, Expr, IrType, Lambda, LoopForm, Operand, Stmt, Var, VarTable};
use std::collections::{HashMap, HashSet};

/// Whether `a` is the number `v` (of any number type).
pub fn is_const(a: Atom, v: f64) -> bool {
    matches!(a, Atom::Const(c) if c.as_f64() == v && !matches!(c, Const::Bool(_)))
}

/// Whether values of type `t` are floats (scalars or arrays).
pub fn is_float(t: IrType) -> bool {
    t.elem.is_float()
}

// ---- Renaming ----

fn sub_atom(a: Atom, subst: &HashMap<Var, Atom>) -> Atom {
    match a {
        Atom::Var(v) => subst.get(&v).copied().unwrap_or(a),
        c => c,
    }
}

fn sub_var(v: Var, subst: &HashMap<Var, Atom>) -> Var {
    match subst.get(&v) {
        Some(Atom::Var(w)) => *w,
        Some(Atom::Const(_)) => panic!("internal compiler error: an array variable replaced by a constant"),
        None => v,
    }
}

/// Renaming state: the substitution, and the variables bound inside the code
/// being copied (see Note [Renaming consumed arrays]).
struct Renaming<'s> {
    subst: &'s mut HashMap<Var, Atom>,
    locals: HashSet<Var>,
}

fn fresh_like(vars: &mut VarTable, v: Var, r: &mut Renaming) -> Var {
    let ty = vars.ty(v);
    let name = vars.base_name(v).to_string();
    let w = vars.fresh(&name, ty);
    r.subst.insert(v, Atom::Var(w));
    r.locals.insert(v);
    w
}

/// A copy of `body` with every variable it binds renamed to a fresh one and
/// every use rewritten through `subst` (which it extends).
pub fn rename_body(vars: &mut VarTable, body: &Body, subst: &mut HashMap<Var, Atom>) -> Body {
    let mut r = Renaming { subst, locals: HashSet::new() };
    rename_body_in(vars, body, &mut r)
}

pub fn rename_lambda(vars: &mut VarTable, lam: &Lambda, subst: &mut HashMap<Var, Atom>) -> Lambda {
    let mut r = Renaming { subst, locals: HashSet::new() };
    rename_lambda_in(vars, lam, &mut r)
}

fn rename_body_in(vars: &mut VarTable, body: &Body, r: &mut Renaming) -> Body {
    let mut stmts = Vec::with_capacity(body.stmts.len());
    for s in &body.stmts {
        let mut expr = rename_expr(vars, &s.expr, r);
        // An update of an array bound outside the copied code must not consume
        // it: the original code (or a later read) still uses that variable.
        if let (Expr::UpdateAt { array, .. }, Expr::UpdateAt { array: renamed, .. }) = (&s.expr, &mut expr) {
            if !r.locals.contains(array) {
                let ty = vars.ty(*renamed);
                let copy = vars.fresh("copy", ty);
                stmts.push(Stmt { binds: vec![copy], expr: Expr::Atom(Atom::Var(*renamed)), span: s.span });
                *renamed = copy;
            }
        }
        let binds = s.binds.iter().map(|b| fresh_like(vars, *b, r)).collect();
        stmts.push(Stmt { binds, expr, span: s.span });
    }
    Body { stmts, result: body.result.iter().map(|a| sub_atom(*a, r.subst)).collect() }
}

fn rename_lambda_in(vars: &mut VarTable, lam: &Lambda, r: &mut Renaming) -> Lambda {
    let params = lam.params.iter().map(|p| fresh_like(vars, *p, r)).collect();
    Lambda { params, body: rename_body_in(vars, &lam.body, r) }
}

/// `e` with its operands renamed and every binder inside it fresh: loop
/// index and parameters, lambda parameters, nested statements (in this
/// order, which decides the fresh names).
fn rename_expr(vars: &mut VarTable, e: &Expr, r: &mut Renaming) -> Expr {
    let mut out = e.clone_without_bodies();
    out.map_operands(|o| match o {
        Operand::Atom(a) => *a = sub_atom(*a, r.subst),
        Operand::Array(v) => *v = sub_var(*v, r.subst),
    });
    match (&mut out, e) {
        (Expr::If { then_body, else_body, .. }, Expr::If { then_body: then_old, else_body: else_old, .. }) => {
            *then_body = rename_body_in(vars, then_old, r);
            *else_body = rename_body_in(vars, else_old, r);
        }
        (Expr::Loop { params, form, body, .. }, Expr::Loop { form: form_old, body: body_old, .. }) => {
            if let LoopForm::For { index, .. } = form {
                *index = fresh_like(vars, *index, r);
            }
            *params = params.iter().map(|p| fresh_like(vars, *p, r)).collect();
            if let (LoopForm::While { cond }, LoopForm::While { cond: cond_old }) = (form, form_old) {
                *cond = rename_body_in(vars, cond_old, r);
            }
            *body = rename_body_in(vars, body_old, r);
        }
        (out, e) => {
            for (new, old) in out.lambdas_mut().into_iter().zip(e.lambdas()) {
                *new = rename_lambda_in(vars, old, r);
            }
        }
    }
    out
}

// ---- Free variables ----

/// Variables a body uses but does not bind (in order of first use).
pub fn free_vars(body: &Body) -> Vec<Var> {
    let mut bound = HashSet::new();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    free_in_body(body, &mut bound, &mut seen, &mut out);
    out
}

pub fn free_vars_lambda(lam: &Lambda) -> Vec<Var> {
    let mut bound: HashSet<Var> = lam.params.iter().copied().collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    free_in_body(&lam.body, &mut bound, &mut seen, &mut out);
    out
}

fn use_atom(a: Atom, bound: &HashSet<Var>, seen: &mut HashSet<Var>, out: &mut Vec<Var>) {
    if let Atom::Var(v) = a {
        if !bound.contains(&v) && seen.insert(v) {
            out.push(v);
        }
    }
}

fn free_in_body(body: &Body, bound: &mut HashSet<Var>, seen: &mut HashSet<Var>, out: &mut Vec<Var>) {
    for s in &body.stmts {
        for a in s.expr.operands() {
            use_atom(a, bound, seen, out);
        }
        free_in_nested(&s.expr, bound, seen, out);
        bound.extend(s.binds.iter().copied());
    }
    for a in &body.result {
        use_atom(*a, bound, seen, out);
    }
}

fn free_in_nested(e: &Expr, bound: &mut HashSet<Var>, seen: &mut HashSet<Var>, out: &mut Vec<Var>) {
    for lam in e.lambdas() {
        let mut inner = bound.clone();
        inner.extend(lam.params.iter().copied());
        free_in_body(&lam.body, &mut inner, seen, out);
    }
    match e {
        Expr::If { then_body, else_body, .. } => {
            free_in_body(then_body, &mut bound.clone(), seen, out);
            free_in_body(else_body, &mut bound.clone(), seen, out);
        }
        Expr::Loop { params, form, body, .. } => {
            let mut inner = bound.clone();
            inner.extend(params.iter().copied());
            match form {
                LoopForm::For { index, .. } => {
                    inner.insert(*index);
                }
                LoopForm::While { cond } => free_in_body(cond, &mut inner.clone(), seen, out),
            }
            free_in_body(body, &mut inner, seen, out);
        }
        _ => {}
    }
}

/// Whether a two-parameter operator is `+` (either argument order).
pub fn is_addition(lam: &Lambda) -> bool {
    if lam.params.len() != 2 || lam.body.stmts.len() != 1 || lam.body.result.len() != 1 {
        return false;
    }
    let s = &lam.body.stmts[0];
    let (p, q) = (Atom::Var(lam.params[0]), Atom::Var(lam.params[1]));
    matches!(s.expr, Expr::Binary(BinOp::Add, a, b) if (a == p && b == q) || (a == q && b == p))
        && lam.body.result[0] == Atom::Var(s.binds[0])
}

// Note [Renaming consumed arrays]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// `UpdateAt` consumes its array (Note [Consumed arrays] in ir/mod.rs). Reverse
// mode recomputes code (map bodies, branches, loop bodies) by emitting renamed
// copies next to the original; a copy that updated an array bound *outside*
// the copied code would consume a variable the original, or a later statement,
// still reads. So renaming routes such an update through a fresh copy of the
// variable: the interpreter then sees a shared buffer and copies on write.
// Updates of arrays bound inside the copy stay in place.
//
