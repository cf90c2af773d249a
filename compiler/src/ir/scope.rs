//! Scoping in the IR: free variables, and copies of bodies under fresh names
//! (SSA: a copy may sit next to the original). Every pass that copies or
//! moves code asks here — AD (recomputed scopes), the optimiser (fission,
//! hoisting), gradcheck.
//!
//! Input: bodies and lambdas, and for renaming the program's [`VarTable`]
//! (fresh variables) and a substitution. Output: the free variables in order
//! of first use; a renamed copy whose every bound variable is fresh and
//! whose uses go through the substitution. Invariant: a copy never consumes
//! an array bound outside it (Note [Renaming consumed arrays]). Whether two
//! statements are the same up to the names they bind (alpha-equivalence: the
//! optimiser's `hoist_common` asks). Also the
//! small questions about code several passes ask: is this atom a given
//! constant, is this operator `+`, which statement binds this variable; and
//! the walks over every use and every statement of a body.

use super::{Atom, BinOp, Body, Const, Expr, IrType, Lambda, LoopForm, Operand, Stmt, Var, VarTable};
use crate::hash::{HashMap, HashSet};

/// The statements of `stmts` (one body's top level) by each variable they
/// bind, with its position among the statement's results: where a pass
/// looks up what made a value (SSA: one statement per variable).
pub fn definitions(stmts: &[Stmt]) -> HashMap<Var, (&Stmt, usize)> {
    stmts.iter().flat_map(|s| s.binds.iter().enumerate().map(move |(k, &v)| (v, (s, k)))).collect()
}

/// Whether `a` is the number `v` (of any number type).
pub fn is_const(a: Atom, v: f64) -> bool {
    matches!(a, Atom::Const(c) if c.as_f64() == v && !matches!(c, Const::Bool(_)))
}

/// Whether values of type `t` are floats (scalars or arrays).
pub fn is_float(t: IrType) -> bool {
    t.elem.is_float()
}

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
pub fn for_each_use_in(stmts: &[Stmt], f: &mut dyn FnMut(Var)) {
    for s in stmts {
        s.expr.for_each_operand(|a| {
            if let Atom::Var(v) = a {
                f(v);
            }
        });
        s.expr.for_each_body(&mut |b| for_each_use(b, f));
    }
}

/// Calls `f` on every read of a variable in `body`, nested bodies included:
/// every use but the operand of `shape` (a size never changes, so asking
/// for one reads no element and keeps no buffer alive).
pub fn for_each_read(body: &Body, f: &mut dyn FnMut(Var)) {
    for s in &body.stmts {
        for_each_direct_read(&s.expr, f);
        s.expr.for_each_body(&mut |b| for_each_read(b, f));
    }
    for a in &body.result {
        if let Atom::Var(v) = a {
            f(*v);
        }
    }
}

/// Calls `f` on every read of a variable by `expr` itself, not by its
/// nested bodies: as [`for_each_read`], `shape`'s operand is no read.
pub fn for_each_direct_read(expr: &Expr, f: &mut dyn FnMut(Var)) {
    if !matches!(expr, Expr::Shape { .. }) {
        expr.for_each_operand(|a| {
            if let Atom::Var(v) = a {
                f(v);
            }
        });
    }
}

/// Calls `f` on every statement of `body` and of its nested bodies (pre-order).
pub fn for_each_stmt(body: &Body, f: &mut dyn FnMut(&Stmt)) {
    for s in &body.stmts {
        f(s);
        s.expr.for_each_body(&mut |b| for_each_stmt(b, f));
    }
}

/// How many statements `body` has, nested ones included: a measure of the
/// work a pass does on it (what `threads::map_largest_first` sorts by).
pub fn size(body: &Body) -> usize {
    let mut n = 0;
    for_each_stmt(body, &mut |_| n += 1);
    n
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
    let w = vars.fresh_like(v);
    r.subst.insert(v, Atom::Var(w));
    r.locals.insert(v);
    w
}

/// A copy of `body` with every variable it binds renamed to a fresh one and
/// every use rewritten through `subst` (which it extends).
pub fn rename_body(vars: &mut VarTable, body: &Body, subst: &mut HashMap<Var, Atom>) -> Body {
    let mut r = Renaming { subst, locals: HashSet::default() };
    rename_body_in(vars, body, &mut r)
}

pub fn rename_lambda(vars: &mut VarTable, lam: &Lambda, subst: &mut HashMap<Var, Atom>) -> Lambda {
    let mut r = Renaming { subst, locals: HashSet::default() };
    rename_lambda_in(vars, lam, &mut r)
}

fn rename_body_in(vars: &mut VarTable, body: &Body, r: &mut Renaming) -> Body {
    let mut stmts = Vec::with_capacity(body.stmts.len());
    for s in &body.stmts {
        let mut copy = Stmt { binds: Vec::new(), expr: rename_expr(vars, &s.expr, r), span: s.span };
        // An update of an array bound outside the copied code must not consume
        // it: the original code (or a later read) still uses that variable.
        if super::alias::consumed(&s.expr).is_some_and(|a| !r.locals.contains(&a)) {
            stmts.extend(super::alias::update_through_alias(vars, &mut copy));
        }
        copy.binds = s.binds.iter().map(|b| fresh_like(vars, *b, r)).collect();
        stmts.push(copy);
    }
    Body { stmts: stmts.into(), result: body.result.iter().map(|a| sub_atom(*a, r.subst)).collect() }
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

// ---- Renumbering ----

/// Adds `by` to the number of every variable numbered `from` or above in
/// `body`, binders and uses alike. Statement lists that mention none are
/// left alone, so lists shared with other bodies are not copied (Note
/// [Shared statement lists]). The optimiser works on a program's functions
/// in parallel, each numbering its new variables from the same point, and
/// renumbers them apart afterwards (Note [Functions optimised in parallel]).
pub fn renumber_from(body: &mut Body, from: u32, by: u32) {
    let shift = |v: &mut Var| {
        if v.0 >= from {
            v.0 += by;
        }
    };
    let hits: Vec<usize> = (0..body.stmts.len()).filter(|&i| mentions_from(&body.stmts[i], from)).collect();
    if !hits.is_empty() {
        let stmts = &mut *body.stmts;
        for i in hits {
            let s = &mut stmts[i];
            s.binds.iter_mut().for_each(shift);
            s.expr.map_operands(|o| match o {
                Operand::Atom(Atom::Var(v)) | Operand::Array(v) => shift(v),
                Operand::Atom(Atom::Const(_)) => {}
            });
            s.expr.for_each_binder_mut(shift);
            for b in s.expr.bodies_mut() {
                renumber_from(b, from, by);
            }
        }
    }
    for a in &mut body.result {
        if let Atom::Var(v) = a {
            shift(v);
        }
    }
}

/// Whether `s` binds or uses a variable numbered `from` or above (nested
/// bodies and their results included).
fn mentions_from(s: &Stmt, from: u32) -> bool {
    let high = |v: &Var| v.0 >= from;
    let mut found = s.binds.iter().any(high);
    s.expr.for_each_operand(|a| found |= a.var().is_some_and(|v| high(&v)));
    s.expr.for_each_binder(|v| found |= high(&v));
    s.expr.for_each_body(&mut |b| {
        found = found
            || b.result.iter().any(|a| a.var().is_some_and(|v| high(&v)))
            || b.stmts.iter().any(|t| mentions_from(t, from));
    });
    found
}

// ---- Equality up to renaming ----

/// Whether statement `b` is statement `a` with the variables `b` binds (its
/// own, and those of its nested bodies) named differently: alpha-equivalence.
/// `renaming` maps variables bound in `b`'s code to their counterparts in
/// `a`'s; a variable it does not map must be the same in both (a variable
/// bound before either statement). On success it maps every variable `b`
/// binds as well, so a caller comparing statement lists goes on with it; on
/// failure it may hold a few pairs of the failed comparison. Constants are
/// compared bit for bit (`0.0` is not `-0.0`), binders must have equal
/// types, and with `spans` every statement, nested ones included, must have
/// the same span (a failure reports it).
pub fn same_up_to_renaming(vars: &VarTable, a: &Stmt, b: &Stmt, renaming: &mut HashMap<Var, Var>, spans: bool) -> bool {
    (!spans || a.span == b.span)
        && same_expr(vars, &a.expr, &b.expr, renaming, spans)
        && pair_binders(vars, &a.binds, &b.binds, renaming)
}

fn same_expr(vars: &VarTable, a: &Expr, b: &Expr, renaming: &mut HashMap<Var, Var>, spans: bool) -> bool {
    if std::mem::discriminant(a) != std::mem::discriminant(b) {
        return false;
    }
    let (mut binders_a, mut binders_b) = (Vec::new(), Vec::new());
    a.for_each_binder(|v| binders_a.push(v));
    b.for_each_binder(|v| binders_b.push(v));
    if !pair_binders(vars, &binders_a, &binders_b, renaming) {
        return false;
    }
    let (operands_a, operands_b) = (a.operands(), b.operands());
    if operands_a.len() != operands_b.len()
        || !operands_a.iter().zip(&operands_b).all(|(x, y)| same_atom(*x, *y, renaming))
    {
        return false;
    }
    // What is neither an operand, a binder nor a body (operators, types,
    // messages, dimensions): `b` renamed to `a`'s names must equal `a`.
    let mut renamed = b.clone_without_bodies();
    let name = |v: &mut Var| *v = renaming.get(v).copied().unwrap_or(*v);
    renamed.map_operands(|o| match o {
        Operand::Atom(Atom::Var(v)) | Operand::Array(v) => name(v),
        Operand::Atom(Atom::Const(_)) => {}
    });
    renamed.for_each_binder_mut(name);
    if a.clone_without_bodies() != renamed {
        return false;
    }
    let (bodies_a, bodies_b) = (a.bodies(), b.bodies());
    bodies_a.len() == bodies_b.len()
        && bodies_a.iter().zip(&bodies_b).all(|(x, y)| {
            x.stmts.len() == y.stmts.len()
                && x.stmts.iter().zip(y.stmts.iter()).all(|(s, t)| same_up_to_renaming(vars, s, t, renaming, spans))
                && x.result.len() == y.result.len()
                && x.result.iter().zip(&y.result).all(|(p, q)| same_atom(*p, *q, renaming))
        })
}

/// Records that `b`'s binders are `a`'s, when they have the same types.
fn pair_binders(vars: &VarTable, a: &[Var], b: &[Var], renaming: &mut HashMap<Var, Var>) -> bool {
    if a.len() != b.len() || a.iter().zip(b).any(|(x, y)| vars.ty(*x) != vars.ty(*y)) {
        return false;
    }
    renaming.extend(b.iter().copied().zip(a.iter().copied()));
    true
}

fn same_atom(a: Atom, b: Atom, renaming: &HashMap<Var, Var>) -> bool {
    match (a, b) {
        (Atom::Var(x), Atom::Var(y)) => renaming.get(&y).copied().unwrap_or(y) == x,
        (Atom::Const(Const::F64(x)), Atom::Const(Const::F64(y))) => x.to_bits() == y.to_bits(),
        (Atom::Const(Const::F32(x)), Atom::Const(Const::F32(y))) => x.to_bits() == y.to_bits(),
        (Atom::Const(Const::I64(x)), Atom::Const(Const::I64(y))) => x == y,
        (Atom::Const(Const::Bool(x)), Atom::Const(Const::Bool(y))) => x == y,
        _ => false,
    }
}

// ---- Free variables ----

/// Variables a body uses but does not bind (in order of first use).
pub fn free_vars(body: &Body) -> Vec<Var> {
    let mut free = Free::default();
    free.body(body);
    free.out
}

/// The variables an expression reads, its nested bodies included, minus
/// those bound inside it.
pub fn free_in_expr(e: &Expr) -> Vec<Var> {
    let mut free = Free::default();
    e.for_each_operand(|a| free.use_atom(a));
    free.nested(e);
    free.out
}

pub fn free_vars_lambda(lam: &Lambda) -> Vec<Var> {
    let mut free = Free::default();
    free.scope(&lam.params, |free| free.body(&lam.body));
    free.out
}

/// The walk behind [`free_vars`]: the variables in scope are one set, and
/// a nested scope removes what it bound when it ends (a log of insertions),
/// so no scope copies its parent's set.
#[derive(Default)]
struct Free {
    bound: HashSet<Var>,
    log: Vec<Var>,
    seen: HashSet<Var>,
    out: Vec<Var>,
}

impl Free {
    fn bind(&mut self, v: Var) {
        if self.bound.insert(v) {
            self.log.push(v);
        }
    }

    fn use_atom(&mut self, a: Atom) {
        if let Atom::Var(v) = a {
            if !self.bound.contains(&v) && self.seen.insert(v) {
                self.out.push(v);
            }
        }
    }

    /// Runs `f` in a nested scope that first binds `vars`.
    fn scope(&mut self, vars: &[Var], f: impl FnOnce(&mut Free)) {
        let mark = self.log.len();
        for v in vars {
            self.bind(*v);
        }
        f(self);
        for v in self.log.drain(mark..) {
            self.bound.remove(&v);
        }
    }

    fn body(&mut self, body: &Body) {
        for s in &body.stmts {
            s.expr.for_each_operand(|a| self.use_atom(a));
            self.nested(&s.expr);
            for b in &s.binds {
                self.bind(*b);
            }
        }
        for a in &body.result {
            self.use_atom(*a);
        }
    }

    fn nested(&mut self, e: &Expr) {
        for lam in e.lambdas() {
            self.scope(&lam.params, |free| free.body(&lam.body));
        }
        match e {
            Expr::If { then_body, else_body, .. } => {
                self.scope(&[], |free| free.body(then_body));
                self.scope(&[], |free| free.body(else_body));
            }
            Expr::Loop { params, form, body, .. } => self.scope(params, |free| match form {
                LoopForm::For { index, .. } => free.scope(&[*index], |free| free.body(body)),
                LoopForm::While { cond } => {
                    free.scope(&[], |free| free.body(cond));
                    free.scope(&[], |free| free.body(body));
                }
            }),
            _ => {}
        }
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
