//! The walk that makes the ownership plan (Note [Ownership before
//! lowering]).
//!
//! Input: a [`segments::Program`]. Output: its [`Program`], a
//! [`Decision`] per visit of every statement that writes a buffer.
//!
//! The walk goes through each function as lowering does — statements in
//! order, an `if`'s `then` before its `else`, a loop's condition before its
//! body, a lambda where its combinator is, a custom derivative's primal
//! (not its rules) — with each array variable's [`Own`] and the uses of
//! every variable that are still to come. `Val` and [`Planner::stmt`] are
//! the table of lowering's representations: which expressions make a new
//! buffer (fresh at the current loop depth), which an alias or a view of
//! their operand, and what a call, a branch or a loop gives back.

use super::{carried_in_place, copy_carried, shared_buffers, Decision, Own, Plan, Program, Visits};
use crate::ir::{self, Atom, Body, Expr, IrType, Lambda, LoopForm, Stmt, Var};
use crate::segments;

/// Decides, for every write of a buffer in `program`, whether it goes in
/// place (Note [Ownership and in-place updates]).
pub fn plan(program: &segments::Program) -> Program {
    let plans = program.ir.funcs.iter().map(|f| plan_func(&program.ir, f)).collect();
    Program { segments: program.clone(), plans }
}

fn plan_func(prog: &ir::Program, f: &ir::Func) -> Plan {
    let mut uses = vec![0u32; prog.vars.len()];
    ir::scope::for_each_read(&f.body, &mut |v| uses[v.0 as usize] += 1);
    let mut p = Planner {
        prog,
        env: vec![Val::Scalar; prog.vars.len()],
        uses,
        depth: 0,
        visits: Visits::default(),
        plan: Plan::default(),
    };
    for &x in &f.params {
        let v = p.param(x);
        p.bind(x, v);
    }
    p.body(&f.body);
    p.plan
}

/// What lowering makes of a value, as far as its buffer goes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Val {
    /// A scalar: no buffer.
    Scalar,
    /// `iota n`: no buffer until it is used as an array, and then a new one
    /// at every such use (fresh where it is used).
    Iota,
    /// An array with its buffer's ownership.
    Array(Own),
}

// Note [A custom derivative's arguments]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Lowering runs a custom derivative's primal inline, its parameters bound
// to the arguments' buffers. A parameter is then an alias of its argument,
// and takes the argument's ownership only as an alias does: when nothing
// reads the argument afterwards — nor another argument, which would be a
// second alias of the same buffer. Before this rule the parameter kept the
// argument's ownership outright, with two wrong answers on the native back
// ends (`tests/programs/ad/custom_derivative_rules.slope`): a primal that
// updated its parameter (`v with [0] = 100.0`) wrote into an array the
// caller still returned (`primal_updates_a_copy`), and a primal that
// returned its parameter left the result owned beside the argument, so an
// update of the argument changed the result (`result_aliases_an_argument`).
// The rules (`jvp`, `vjp`) are not run by lowering: what only they read is
// dead after the statement.

struct Planner<'p> {
    prog: &'p ir::Program,
    env: Vec<Val>,
    /// Uses of each variable still to come, as lowering counts them: a
    /// statement's own reads are passed when the statement is reached, those
    /// of its nested bodies as the walk goes through them.
    uses: Vec<u32>,
    /// Loop nesting: bodies of maps, reductions, scans, loops and hists.
    depth: u32,
    visits: Visits,
    plan: Plan,
}

impl Planner<'_> {
    // ---- environment ------------------------------------------------------

    fn ty(&self, v: Var) -> IrType {
        self.prog.vars.ty(v)
    }

    fn bind(&mut self, v: Var, val: Val) {
        self.env[v.0 as usize] = val;
    }

    fn atom(&self, a: Atom) -> Val {
        match a {
            Atom::Var(v) => self.env[v.0 as usize],
            Atom::Const(_) => Val::Scalar,
        }
    }

    /// A parameter of the function, or a result of a call: the caller's.
    fn param(&self, v: Var) -> Val {
        match self.ty(v).rank {
            0 => Val::Scalar,
            _ => Val::Array(Own::Shared),
        }
    }

    /// The ownership of `v`'s buffer when it is used as an array: an `iota`
    /// is made into a new one there.
    fn own_as_array(&self, v: Var) -> Own {
        match self.env[v.0 as usize] {
            Val::Array(o) => o,
            _ => Own::Fresh { depth: self.depth },
        }
    }

    fn demote(&mut self, v: Var) {
        if let Val::Array(o) = &mut self.env[v.0 as usize] {
            *o = Own::Shared;
        }
    }

    /// An alias or view of `v` owned as `own`: inherits the ownership when
    /// `v` has no other use, else neither keeps it.
    fn alias_of(&mut self, v: Var, own: Own) -> Own {
        if self.live_after(v) {
            self.demote(v);
            return Own::Shared;
        }
        own
    }

    fn live_after(&self, v: Var) -> bool {
        self.uses[v.0 as usize] > 0
    }

    fn fresh(&self) -> Val {
        Val::Array(Own::Fresh { depth: self.depth })
    }

    /// May the statement being planned write a buffer owned as `own`, held
    /// by `v`, in place?
    fn writable(&self, own: Own, v: Var) -> bool {
        own.writable_at(self.depth) && !self.live_after(v)
    }

    /// Adds (`sign` = 1) or removes (-1) the uses in `b` from those to come.
    fn adjust_uses(&mut self, b: &Body, sign: i32) {
        ir::scope::for_each_read(b, &mut |v: Var| {
            let u = &mut self.uses[v.0 as usize];
            *u = if sign > 0 { *u + 1 } else { u.saturating_sub(1) };
        });
    }

    // ---- bodies and statements ---------------------------------------------

    fn body(&mut self, b: &Body) -> Vec<Val> {
        for s in b.stmts.iter() {
            self.stmt(s);
        }
        for v in b.result.iter().filter_map(|a| a.var()) {
            self.uses[v.0 as usize] = self.uses[v.0 as usize].saturating_sub(1);
        }
        b.result.iter().map(|&a| self.atom(a)).collect()
    }

    /// Binds `lam`'s parameters to `args` and plans its body (inlined, at
    /// the current depth).
    fn inline(&mut self, lam: &Lambda, args: Vec<Val>) -> Vec<Val> {
        for (&p, a) in lam.params.iter().zip(args) {
            self.bind(p, a);
        }
        self.body(&lam.body)
    }

    fn bind_all(&mut self, binds: &[Var], vals: Vec<Val>) {
        for (&b, v) in binds.iter().zip(vals) {
            self.bind(b, v);
        }
    }

    /// Element `j` of an iterated array `v`: a scalar, or a row (a view).
    fn element(&self, v: Var) -> Val {
        match (self.env[v.0 as usize], self.ty(v).rank) {
            (Val::Iota, _) | (_, 1) => Val::Scalar,
            _ => Val::Array(Own::Shared),
        }
    }

    /// A value of loop state read back: its own variables, not owned
    /// (unless the loop makes it so).
    fn state(&self, v: Val) -> Val {
        match v {
            Val::Scalar => Val::Scalar,
            _ => Val::Array(Own::Shared),
        }
    }

    fn stmt(&mut self, s: &Stmt) {
        let visit = self.visits.next(s);
        let uses = &mut self.uses;
        ir::scope::for_each_direct_read(&s.expr, &mut |v| uses[v.0 as usize] = uses[v.0 as usize].saturating_sub(1));
        let decision = self.expr(&s.binds, &s.expr);
        if let Some(d) = decision {
            self.plan.insert(visit, d);
        }
    }

    /// Binds what `expr` makes to `binds`, and returns the decision for its
    /// writes, if it makes any.
    fn expr(&mut self, binds: &[Var], expr: &Expr) -> Option<Decision> {
        let one = |binds: &[Var]| binds.first().copied();
        match expr {
            Expr::Atom(a) | Expr::Opaque(a) => {
                let val = match (*a, self.atom(*a)) {
                    (Atom::Var(v), Val::Array(o)) => Val::Array(self.alias_of(v, o)),
                    (_, val) => val,
                };
                self.bind_all(binds, vec![val]);
            }
            Expr::Select(_, a, e) => {
                if self.atom(*a) != Val::Scalar || self.atom(*e) != Val::Scalar {
                    // Arrays: lowering chooses between them with a branch.
                    let t = Body { stmts: Vec::new().into(), result: vec![*a] };
                    let f = Body { stmts: Vec::new().into(), result: vec![*e] };
                    self.adjust_uses(&t, 1);
                    self.adjust_uses(&f, 1);
                    self.branches(binds, &t, &f);
                }
            }
            Expr::If { then_body, else_body, .. } => self.branches(binds, then_body, else_body),
            Expr::Index { array, indices } => {
                if indices.len() < self.ty(*array).rank as usize {
                    self.demote(*array);
                    self.bind_all(binds, vec![Val::Array(Own::Shared)]);
                }
            }
            Expr::Slice { array, .. } => {
                self.demote(*array);
                self.bind_all(binds, vec![Val::Array(Own::Shared)]);
            }
            Expr::Iota(_) => self.bind_all(binds, vec![Val::Iota]),
            Expr::Replicate { .. }
            | Expr::ArrayLit { .. }
            | Expr::Transpose(_)
            | Expr::Reverse(_)
            | Expr::Argsort { .. }
            | Expr::Concat(..) => self.bind_all(binds, vec![self.fresh()]),
            Expr::Flatten(a) | Expr::Unflatten { array: a, .. } => {
                let own = self.alias_of(*a, self.own_as_array(*a));
                self.bind_all(binds, vec![Val::Array(own)]);
            }
            Expr::UpdateAt { array, .. } => {
                let in_place = self.writable(self.own_as_array(*array), *array);
                self.bind_all(binds, vec![self.fresh()]);
                return Some(Decision::Write { in_place });
            }
            Expr::Scatter { dest, .. } => return Some(self.scatter(one(binds)?, *dest, None)),
            Expr::Hist { dest, lam, values, .. } => return Some(self.scatter(one(binds)?, *dest, Some((lam, *values)))),
            Expr::Map { lam, arrays, .. } => return Some(self.map(binds, lam, arrays)),
            Expr::Reduce { lam, neutral, arrays } => self.reduce_or_scan(binds, lam, neutral, arrays, false),
            Expr::Scan { lam, neutral, arrays } => self.reduce_or_scan(binds, lam, neutral, arrays, true),
            Expr::Loop { params, init, form, body } => return Some(self.lower_loop(binds, params, init, form, body)),
            Expr::Call { args, .. } => {
                // The arguments lose their ownership and the results have
                // none: a result may share an argument's buffer.
                for v in args.iter().filter_map(|a| a.var()) {
                    self.demote(v);
                }
                for &b in binds {
                    let v = self.param(b);
                    self.bind(b, v);
                }
            }
            Expr::Custom { primal, jvp, vjp, args, .. } => {
                // The rules were AD's: lowering never runs them, so what
                // they read is not read later.
                for rule in jvp.iter().chain(vjp) {
                    self.adjust_uses(&rule.body, -1);
                }
                // The primal's parameters are aliases of the arguments (Note
                // [A custom derivative's arguments]).
                let vals = args
                    .iter()
                    .map(|&a| match (a, self.atom(a)) {
                        (Atom::Var(x), Val::Array(o)) if args.iter().filter(|&&b| b == a).count() == 1 => {
                            Val::Array(self.alias_of(x, o))
                        }
                        (Atom::Var(x), Val::Array(_)) => {
                            self.demote(x);
                            Val::Array(Own::Shared)
                        }
                        (_, v) => v,
                    })
                    .collect();
                let out = self.inline(primal, vals);
                self.bind_all(binds, out);
            }
            Expr::Unary(..)
            | Expr::Binary(..)
            | Expr::Convert(..)
            | Expr::Shape { .. }
            | Expr::Check { .. }
            | Expr::Jvp { .. }
            | Expr::Vjp { .. } => {}
        }
        None
    }

    /// The branches of an `if` (or a `select` of arrays): a result is owned
    /// when it is owned, and dead after, in both.
    fn branches(&mut self, binds: &[Var], t: &Body, f: &Body) {
        // Uses in the other branch are not "after" this one.
        self.adjust_uses(f, -1);
        let tv = self.body(t);
        self.adjust_uses(f, 1);
        let fv = self.body(f);
        let owned = |p: &Self, v: Val, a: Atom| match (v, a) {
            (Val::Array(o), Atom::Var(x)) => p.writable(o, x),
            _ => false,
        };
        let vals: Vec<Val> = (0..binds.len())
            .map(|k| match (tv[k], fv[k]) {
                (Val::Scalar, _) => Val::Scalar,
                (Val::Iota, Val::Iota) => Val::Iota,
                (a, b) => {
                    let o = owned(self, a, t.result[k]) && owned(self, b, f.result[k]);
                    Val::Array(Own::fresh_if(o, self.depth))
                }
            })
            .collect();
        for x in t.result.iter().chain(&f.result).filter_map(|a| a.var()) {
            self.demote(x);
        }
        self.bind_all(binds, vals);
    }

    /// A `map`: which inputs its vector results are written over (Note [Maps
    /// in place]), the first owned, dead vector input of the result's element
    /// type not given to an earlier result.
    fn map(&mut self, binds: &[Var], lam: &Lambda, arrays: &[Var]) -> Decision {
        let mut taken = Vec::new();
        let into = binds
            .iter()
            .map(|&b| {
                let ty = self.ty(b);
                if ty.rank != 1 {
                    return None;
                }
                let i = (0..arrays.len()).find(|&i| {
                    let (x, xt) = (arrays[i], self.ty(arrays[i]));
                    matches!(self.env[x.0 as usize], Val::Array(o) if self.writable(o, x))
                        && xt.rank == 1
                        && xt.elem == ty.elem
                        && !taken.contains(&x)
                })?;
                taken.push(arrays[i]);
                Some(i)
            })
            .collect();
        let args = arrays.iter().map(|&a| self.element(a)).collect();
        self.depth += 1;
        self.inline(lam, args);
        self.depth -= 1;
        let fresh = self.fresh();
        self.bind_all(binds, vec![fresh; binds.len()]);
        Decision::Map { into }
    }

    fn reduce_or_scan(&mut self, binds: &[Var], lam: &Lambda, neutral: &[Atom], arrays: &[Var], scan: bool) {
        let accs: Vec<Val> = neutral.iter().map(|&a| self.state(self.atom(a))).collect();
        if accs.iter().any(|&v| v != Val::Scalar) {
            // Array accumulators may be views of the iterated rows.
            arrays.iter().for_each(|&a| self.demote(a));
        }
        let mut args = accs.clone();
        args.extend(arrays.iter().map(|&a| self.element(a)));
        self.depth += 1;
        self.inline(lam, args);
        self.depth -= 1;
        let out = match scan {
            true => vec![self.fresh(); binds.len()],
            false => accs,
        };
        self.bind_all(binds, out);
    }

    fn lower_loop(&mut self, binds: &[Var], params: &[Var], init: &[Atom], form: &LoopForm, body: &Body) -> Decision {
        // Parameters the body updates in place must hold an owned buffer.
        let carried: Vec<bool> = params.iter().map(|&p| carried_in_place(body, p, self.ty(p))).collect();
        let inits: Vec<Val> = init.iter().map(|&a| self.atom(a)).collect();
        // A buffer that two parameters start from (`(g, g)`) is not taken
        // over by either: updating one would change the other.
        let arrays = init.iter().zip(&inits).filter(|(_, v)| matches!(v, Val::Array(_))).map(|(a, _)| a.var());
        let shared = shared_buffers(arrays);
        let mut copy_init = Vec::new();
        for ((&a, &c), &v) in init.iter().zip(&carried).zip(&inits) {
            let copy = match v {
                Val::Array(o) => {
                    let writable = a.var().is_some_and(|x| self.writable(o, x));
                    copy_carried(c, writable, shared.contains(&a.var()))
                }
                _ => false,
            };
            copy_init.push(copy);
            if let Atom::Var(x) = a {
                self.demote(x);
            }
        }
        let states: Vec<Val> = inits.iter().map(|&v| self.state(v)).collect();
        let bind_params = |p: &mut Self| {
            for ((&x, &s), &c) in params.iter().zip(&states).zip(&carried) {
                let v = match s {
                    Val::Array(_) => Val::Array(Own::fresh_if(c, p.depth)),
                    s => s,
                };
                p.bind(x, v);
            }
        };
        self.depth += 1;
        match form {
            LoopForm::For { index, .. } => self.bind(*index, Val::Scalar),
            LoopForm::While { cond } => {
                bind_params(self);
                self.body(cond);
            }
        }
        bind_params(self);
        let results = self.body(body);
        self.depth -= 1;
        // As at entry: a buffer two parameters carry into the next iteration
        // is copied for each one updated in place. An `iota` is made into a
        // new buffer here, after the body, so it is not the body's to write.
        let arrays = body.result.iter().zip(&results).filter(|(_, v)| matches!(v, Val::Array(_)));
        let shared = shared_buffers(arrays.map(|(a, _)| a.var()));
        let copy_next = body
            .result
            .iter()
            .zip(&results)
            .zip(&carried)
            .map(|((a, &v), &c)| match v {
                Val::Scalar => false,
                Val::Iota => copy_carried(c, false, false),
                Val::Array(o) => copy_carried(c, o.writable_at(self.depth + 1), shared.contains(&a.var())),
            })
            .collect();
        let finals = states
            .iter()
            .zip(&carried)
            .map(|(&s, &c)| match s {
                Val::Array(_) => Val::Array(Own::fresh_if(c, self.depth)),
                s => s,
            })
            .collect();
        self.bind_all(binds, finals);
        Decision::Loop { carried, copy_init, copy_next }
    }

    /// `scatter`, or `hist` with its operator and values, into `dest`,
    /// bound to `b`.
    fn scatter(&mut self, b: Var, dest: Var, hist: Option<(&Lambda, Var)>) -> Decision {
        let in_place = self.writable(self.own_as_array(dest), dest);
        self.demote(dest);
        if let Some((lam, values)) = hist {
            let args = vec![self.element(dest), self.element(values)];
            self.depth += 1;
            self.inline(lam, args);
            self.depth -= 1;
        }
        self.bind(b, self.fresh());
        Decision::Write { in_place }
    }
}
