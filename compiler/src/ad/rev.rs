//! Reverse mode's forward sweep and its rules for everything that is not a
//! scalar primitive: the forward sweep records what the backward sweep needs
//! (loop tapes, residuals of maps); the backward sweep of every scope is the
//! one walk over its unary form ([`super::unary::reverse`], Note [One
//! backward walk] there), which calls [`Rev::block`] for each statement that
//! is not a scalar primitive — a map, a reduction, a loop, an indexing — and
//! holds the adjoint table those rules read and add to. Each rule touches at
//! most the operands of one statement, so the gradient costs a constant
//! factor of the primal.
//!
//! Adjoints of arrays have two parts (see [`Adj`]): a dense part, which may be
//! shared with other adjoints, and an owned buffer that sparse contributions
//! (`a[i]`) update in place with `UpdateAt` — never a one-hot array. Nested
//! scopes (map bodies, branches, loop bodies, reduction operators) are
//! recomputed in the backward sweep and differentiated with a child sweep whose
//! contributions to free variables accumulate into loop state; sequential
//! loops store their state per iteration on a tape. See Note [Reverse mode of
//! loops] and Note [While loops].

use super::build::is_addition;
use super::build::{active_vars, free_vars, free_vars_lambda, is_float, rename_body, Builder};
use super::checkpoint;
use super::fwd::unsupported;
use super::unary;
use crate::diagnostic::Diagnostic;
use crate::hash::{HashMap, HashSet};
use crate::ir::{Atom, BinOp, Body, Expr, IrType, Lambda, LoopForm, Stmt, Var};
use crate::types::ScalarType;

type R<T> = Result<T, Diagnostic>;

/// The adjoint of one variable, as accumulated so far.
#[derive(Clone, Copy, Default, Debug)]
struct Adj {
    /// Sum of dense contributions (may be shared with other adjoints: never updated in place).
    dense: Option<Atom>,
    /// An owned array that sparse contributions update in place.
    buffer: Option<Atom>,
}

/// Where the backward sweep finds one piece of a loop's state.
#[derive(Clone, Copy, Debug)]
enum Slot {
    /// An array of its value at the start of every iteration.
    Taped(Var),
    /// The loop passes it through unchanged: its initial value, stored once
    /// (Note [What loop tapes hold]).
    Invariant(Atom),
}

/// The tape of a loop in the forward sweep: the loop state at the start of every iteration.
#[derive(Clone, Debug)]
struct Tape {
    tapes: Vec<Slot>,
    bound: Atom,
}

pub struct Rev<'b, 'v> {
    pub b: &'b mut Builder<'v>,
    active: HashSet<Var>,
    adj: HashMap<Var, Adj>,
    tapes: HashMap<Var, Tape>,
    /// Per active `map` of the forward sweep (keyed by its first result):
    /// the body statements whose values it also returned, and the arrays
    /// holding them. See Note [Residuals of map].
    residuals: HashMap<Var, Vec<(usize, Var)>>,
    /// Whether this sweep runs inside the reverse of an enclosing map,
    /// reduction or loop (a body recomputed per element or iteration), where
    /// what a map saves lives for one element; the saves of the top-level
    /// sweep (and of its branches) live for the whole call (Note [Saving
    /// inner loop nests] in ad/mod.rs).
    nested: bool,
}

impl<'b, 'v> Rev<'b, 'v> {
    pub fn new(b: &'b mut Builder<'v>, active: HashSet<Var>) -> Rev<'b, 'v> {
        Rev {
            b,
            active,
            adj: HashMap::default(),
            tapes: HashMap::default(),
            residuals: HashMap::default(),
            nested: false,
        }
    }

    /// The sweep of a body that the reverse of a map recomputes per element.
    fn nested(b: &'b mut Builder<'v>, active: HashSet<Var>) -> Rev<'b, 'v> {
        Rev { nested: true, ..Rev::new(b, active) }
    }

    /// The sweep of a scope inside this one: a body run per element or
    /// iteration (`per_element`: a map, a reduction, a loop), or a branch,
    /// which runs once and is nested when this sweep is.
    fn child<'c>(&'c mut self, active: HashSet<Var>, per_element: bool) -> Rev<'c, 'v> {
        Rev {
            b: &mut *self.b,
            active,
            adj: HashMap::default(),
            tapes: HashMap::default(),
            residuals: HashMap::default(),
            nested: self.nested || per_element,
        }
    }

    pub fn is_active(&self, a: Atom) -> bool {
        matches!(a, Atom::Var(v) if self.active.contains(&v))
    }

    /// `x_adj += c` (dense).
    pub fn contribute(&mut self, x: Atom, c: Atom) {
        let Atom::Var(v) = x else { return };
        if !self.active.contains(&v) {
            return;
        }
        let entry = self.adj.get(&v).copied().unwrap_or_default();
        let dense = match entry.dense {
            None => c,
            Some(d) => self.b.add_values(d, c),
        };
        self.adj.insert(v, Adj { dense: Some(dense), ..entry });
    }

    /// The buffer sparse contributions to `x_adj` go into: the one there is;
    /// else the dense sum so far, as a copy that in-place updates may take
    /// over (lowering copies only if the sum is read elsewhere too — Note
    /// [Ownership and in-place updates] in ownership/mod.rs); else zeros.
    fn buffer_of(&mut self, x: Var, entry: &mut Adj) -> Var {
        let buffer = match (entry.buffer, entry.dense) {
            (Some(buf), _) => buf,
            (None, Some(d)) if !self.b.ty(d).is_scalar() => {
                entry.dense = None;
                self.b.emit1(Expr::Atom(d), self.b.ty(d), "adj")
            }
            _ => self.b.zeros_like(Atom::Var(x)),
        };
        let Atom::Var(buf) = buffer else { unreachable!("buffers are arrays") };
        buf
    }

    /// `x_adj[indices] += value`, in place in the owned buffer.
    fn contribute_at(&mut self, x: Var, indices: Vec<Atom>, value: Atom) {
        if !self.active.contains(&x) {
            return;
        }
        let mut entry = self.adj.get(&x).copied().unwrap_or_default();
        let buf = self.buffer_of(x, &mut entry);
        let ty = self.b.vars.ty(x);
        let updated = self.b.emit1(Expr::UpdateAt { array: buf, indices, value, accumulate: true }, ty, "adj");
        self.adj.insert(x, Adj { buffer: Some(updated), ..entry });
    }

    /// `if cond then x_adj[index] += value`, in place in the owned buffer.
    fn contribute_at_if(&mut self, x: Var, cond: Atom, index: Atom, value: Atom) {
        if !self.active.contains(&x) {
            return;
        }
        let mut entry = self.adj.get(&x).copied().unwrap_or_default();
        let buf = self.buffer_of(x, &mut entry);
        let ty = self.b.vars.ty(x);
        let then_body = self.b.body(|b| {
            vec![b.emit1(Expr::UpdateAt { array: buf, indices: vec![index], value, accumulate: true }, ty, "adj")]
        });
        let else_body = Body { stmts: Vec::new().into(), result: vec![Atom::Var(buf)] };
        let updated = self.b.emit1(Expr::If { cond, then_body, else_body }, ty, "adj");
        self.adj.insert(x, Adj { buffer: Some(updated), ..entry });
    }

    /// Adds an owned array (a loop result) to the adjoint of `x`: it becomes the
    /// buffer when there is none, else a dense contribution.
    fn absorb(&mut self, x: Var, owned: Atom) {
        if !self.active.contains(&x) {
            return;
        }
        let ty = self.b.vars.ty(x);
        match self.adj.get(&x).copied() {
            Some(entry) if ty.is_scalar() || entry.buffer.is_some() => self.contribute(Atom::Var(x), owned),
            Some(entry) => {
                self.adj.insert(x, Adj { buffer: Some(owned), ..entry });
            }
            None if ty.is_scalar() => {
                self.adj.insert(x, Adj { dense: Some(owned), buffer: None });
            }
            None => {
                self.adj.insert(x, Adj { dense: None, buffer: Some(owned) });
            }
        }
    }

    /// Removes and returns the accumulated adjoint of `x` (`None`: zero).
    pub fn take(&mut self, x: Var) -> Option<Atom> {
        let entry = self.adj.remove(&x)?;
        match (entry.dense, entry.buffer) {
            (Some(d), Some(b)) => Some(self.b.add_values(b, d)),
            (d, b) => d.or(b),
        }
    }

    fn take_or_zero(&mut self, x: Var) -> Atom {
        match self.take(x) {
            Some(a) => a,
            None => self.b.zeros_like(Atom::Var(x)),
        }
    }

    // ---- Forward sweep ----

    /// Emits the statements, recording loop tapes for active loops.
    pub fn forward(&mut self, stmts: &[Stmt]) -> R<()> {
        for s in stmts {
            self.b.span = s.span;
            match &s.expr {
                Expr::Loop { params, init, form, body } if s.binds.iter().any(|v| self.active.contains(v)) => {
                    self.forward_loop(s, params, init, form, body)?;
                }
                Expr::Map { width, lam, arrays } if s.binds.iter().any(|v| self.active.contains(v)) => {
                    self.forward_map(s, *width, lam, arrays);
                }
                _ => {
                    let s = copy_on_write(self.b.vars, s);
                    self.b.push(s);
                }
            }
        }
        Ok(())
    }

    fn forward_loop(&mut self, s: &Stmt, params: &[Var], init: &[Atom], form: &LoopForm, body: &Body) -> R<()> {
        let (index, bound, taped_body, taped_params, taped_init) = match form {
            LoopForm::For { index, bound } => (*index, *bound, body.clone(), params.to_vec(), init.to_vec()),
            LoopForm::While { cond } => {
                // Run the loop once counting iterations; then re-run it as a taped for loop.
                let counted = self.b.counting_while(params, init, cond, body);
                let n = self.b.fresh("iterations", IrType::I64);
                let mut binds = s.binds.clone();
                binds.push(n);
                self.b.push(Stmt { binds, expr: counted, span: s.span });
                let mut subst = HashMap::default();
                let fresh_params: Vec<Var> = params
                    .iter()
                    .map(|q| {
                        let (name, ty) = (self.b.vars.base_name(*q).to_string(), self.b.vars.ty(*q));
                        let w = self.b.fresh(&name, ty);
                        subst.insert(*q, Atom::Var(w));
                        w
                    })
                    .collect();
                let renamed = rename_body(self.b.vars, body, &mut subst);
                let index = self.b.fresh("i", IrType::I64);
                (index, Atom::Var(n), renamed, fresh_params, init.to_vec())
            }
        };
        let is_while = matches!(form, LoopForm::While { .. });
        let zero = Atom::i64(0);
        let count = self.b.bin(BinOp::Max, bound, zero);
        // A loop over checkpointing segments tapes the state at the start of
        // each (`slope cost` reports them as such; ad/checkpoint.rs).
        let tape_name = if self.b.vars.base_name(index) == checkpoint::SEGMENT { "checkpoints" } else { "tape" };
        // State the body passes through unchanged is its initial value at
        // every iteration: no tape.
        let invariant: Vec<bool> =
            taped_params.iter().zip(&taped_body.result).map(|(p, r)| *r == Atom::Var(*p)).collect();
        let mut tape_params = Vec::new();
        let mut tape_init = Vec::new();
        let mut taped = Vec::new();
        for ((p, i), _) in taped_params.iter().zip(&taped_init).zip(&invariant).filter(|(_, inv)| !**inv) {
            let ty = self.b.vars.ty(*p);
            let t = self.b.emit1(Expr::Replicate { count, value: *i }, ty.lift(), tape_name);
            tape_init.push(t);
            tape_params.push(self.b.fresh("tape", ty.lift()));
            taped.push(*p);
        }
        let mut stmts = Vec::new();
        let position = Atom::Var(index);
        let mut next_tapes = Vec::new();
        for (tp, p) in tape_params.iter().zip(&taped) {
            let ty = self.b.vars.ty(*tp);
            let nt = self.b.fresh("tape", ty);
            // In range by construction: dropping it loses no failure.
            self.b.recomputed.insert(nt);
            stmts.push(Stmt {
                binds: vec![nt],
                expr: Expr::UpdateAt { array: *tp, indices: vec![position], value: Atom::Var(*p), accumulate: false },
                span: s.span,
            });
            next_tapes.push(Atom::Var(nt));
        }
        let tape_binds: Vec<Var> = tape_params.iter().map(|tp| self.b.fresh("tape", self.b.vars.ty(*tp))).collect();
        // A while loop's re-run only produces tapes (its results were computed
        // by the counting loop); a for loop's taped version replaces it.
        let init_of_state = taped_init.clone();
        let (loop_params, loop_init, loop_body, mut binds) = if is_while {
            let binds: Vec<Var> = taped_params.iter().map(|p| self.b.fresh("rerun", self.b.vars.ty(*p))).collect();
            (taped_params, taped_init, taped_body, binds)
        } else {
            (params.to_vec(), init.to_vec(), body.clone(), s.binds.clone())
        };
        stmts.extend(loop_body.stmts.iter().map(|s| copy_on_write(self.b.vars, s)));
        let mut all_params = loop_params;
        all_params.extend(&tape_params);
        let mut all_init = loop_init;
        all_init.extend(tape_init);
        let mut result = loop_body.result.clone();
        result.extend(next_tapes);
        binds.extend(&tape_binds);
        self.b.push(Stmt {
            binds,
            expr: Expr::Loop {
                params: all_params,
                init: all_init,
                form: LoopForm::For { index, bound: count },
                body: Body { stmts: stmts.into(), result },
            },
            span: s.span,
        });
        let mut binds = tape_binds.iter();
        let slots =
            invariant
                .iter()
                .zip(&init_of_state)
                .map(|(inv, i)| {
                    if *inv {
                        Slot::Invariant(*i)
                    } else {
                        Slot::Taped(*binds.next().expect("one tape per taped piece"))
                    }
                })
                .collect();
        self.tapes.insert(s.binds[0], Tape { tapes: slots, bound: count });
        Ok(())
    }

    /// An active `map` of the forward sweep that also returns, per element,
    /// the values of the scalar operations of its body the policy saves
    /// (`Builder::save`), for its reverse to read instead of recomputing. See
    /// Note [Residuals of map].
    fn forward_map(&mut self, s: &Stmt, width: Atom, lam: &Lambda, arrays: &[Var]) {
        let saved: Vec<(usize, Var)> = lam
            .body
            .stmts
            .iter()
            .enumerate()
            .filter_map(|(k, st)| match (&st.expr, st.binds.as_slice()) {
                (e, [v]) if self.b.save.saves(e, self.b.vars.ty(*v), lam, self.nested) => Some((k, *v)),
                _ => None,
            })
            .collect();
        if saved.is_empty() {
            let s = copy_on_write(self.b.vars, s);
            self.b.push(s);
            return;
        }
        let mut lam = lam.clone();
        let mut binds = s.binds.clone();
        let arrays_of_residuals: Vec<(usize, Var)> = saved
            .iter()
            .map(|&(k, v)| {
                // A value the map returns anyway is read from its own result.
                if let Some(j) = lam.body.result.iter().position(|a| *a == Atom::Var(v)) {
                    return (k, s.binds[j]);
                }
                lam.body.result.push(Atom::Var(v));
                let r = self.b.fresh("residual", self.b.vars.ty(v).lift());
                binds.push(r);
                (k, r)
            })
            .collect();
        let stmt = Stmt { binds, expr: Expr::Map { width, lam, arrays: arrays.to_vec() }, span: s.span };
        let stmt = copy_on_write(self.b.vars, &stmt);
        self.b.push(stmt);
        self.residuals.insert(s.binds[0], arrays_of_residuals);
    }

    // ---- Backward sweep ----

    /// The backward sweep of a scope whose results' cotangents are already
    /// in the adjoint table (a map body, a branch, a loop body): through the
    /// unary form, like the top level of a `vjp` (Note [One backward walk]).
    pub fn backward(&mut self, stmts: &[Stmt]) -> R<()> {
        let unf = unary::translate(&[], Body { stmts: stmts.to_vec().into(), result: Vec::new() });
        if cfg!(debug_assertions) {
            if let Err(e) = unary::verify(self.b.vars, &unf) {
                return Err(Diagnostic::internal("ad", format!("unary form: {e}"), self.b.span));
            }
        }
        unary::reverse(self, &unf, &[])
    }

    /// The IR-level reverse rule of a statement that is not a scalar
    /// primitive (a block of the unary form), given its results' cotangents.
    pub fn block(&mut self, s: &Stmt, zs: &[Option<Atom>]) -> R<()> {
        self.b.span = s.span;
        self.stmt(s, zs)
    }

    fn stmt(&mut self, s: &Stmt, zs: &[Option<Atom>]) -> R<()> {
        let span = s.span;
        let z = zs.first().copied().flatten();
        match &s.expr {
            Expr::Opaque(a) => {
                if let Some(z) = z {
                    self.contribute(*a, z);
                }
            }
            Expr::Atom(_) | Expr::Unary(..) | Expr::Binary(..) | Expr::Convert(..) | Expr::Select(..) => {
                return Err(Diagnostic::internal("ad", "a scalar primitive reached an IR-level reverse rule", span));
            }
            Expr::Index { array, indices } => {
                if let Some(z) = z {
                    self.contribute_at(*array, indices.clone(), z);
                }
            }
            Expr::UpdateAt { array, indices, value, accumulate } => {
                let Some(Atom::Var(zv)) = z else { return Ok(()) };
                if self.is_active(*value) {
                    let ty = self.b.ty(*value);
                    let part = self.b.emit1(Expr::Index { array: zv, indices: indices.clone() }, ty, "adj");
                    self.contribute(*value, part);
                }
                if self.is_active(Atom::Var(*array)) {
                    if *accumulate {
                        self.contribute(Atom::Var(*array), Atom::Var(zv));
                    } else {
                        // The overwritten element gets no cotangent: zero it,
                        // in place unless the cotangent is read elsewhere too
                        // (lowering copies then, as for `buffer_of`).
                        let copy = self.b.emit1(Expr::Atom(Atom::Var(zv)), self.b.vars.ty(zv), "adj");
                        let Atom::Var(cv) = copy else { unreachable!() };
                        let vty = self.b.ty(*value);
                        let zero = self.b.constant(vty, 0.0);
                        let zero = if vty.is_scalar() { zero } else { self.b.zeros_like(*value) };
                        let ty = self.b.vars.ty(*array);
                        let cleared = self.b.emit1(
                            Expr::UpdateAt { array: cv, indices: indices.clone(), value: zero, accumulate: false },
                            ty,
                            "adj",
                        );
                        self.contribute(Atom::Var(*array), cleared);
                    }
                }
            }
            Expr::Slice { array, start, end } => {
                let Some(z) = z else { return Ok(()) };
                let full = self.unslice(*array, *start, *end, z);
                self.contribute(Atom::Var(*array), full);
            }
            Expr::Replicate { value, .. } => {
                if let (Some(z), true) = (z, self.is_active(*value)) {
                    let s = self.b.sum_outer(z);
                    self.contribute(*value, s);
                }
            }
            Expr::ArrayLit { elem, elems } => {
                let Some(Atom::Var(zv)) = z else { return Ok(()) };
                for (k, e) in elems.iter().enumerate() {
                    if self.is_active(*e) {
                        let part =
                            self.b.emit1(Expr::Index { array: zv, indices: vec![Atom::i64(k as i64)] }, *elem, "adj");
                        self.contribute(*e, part);
                    }
                }
            }
            Expr::Transpose(a) | Expr::Reverse(a) | Expr::Flatten(a) => {
                let Some(Atom::Var(zv)) = z else { return Ok(()) };
                let ty = self.b.vars.ty(*a);
                let c = match &s.expr {
                    Expr::Transpose(_) => self.b.emit1(Expr::Transpose(zv), ty, "adj"),
                    Expr::Reverse(_) => self.b.emit1(Expr::Reverse(zv), ty, "adj"),
                    _ => {
                        let rows = self.b.shape(Atom::Var(*a), 0);
                        let cols = self.b.shape(Atom::Var(*a), 1);
                        self.b.emit1(Expr::Unflatten { array: zv, rows, cols }, ty, "adj")
                    }
                };
                self.contribute(Atom::Var(*a), c);
            }
            Expr::Unflatten { array, .. } => {
                let Some(Atom::Var(zv)) = z else { return Ok(()) };
                let ty = self.b.vars.ty(*array);
                let c = self.b.emit1(Expr::Flatten(zv), ty, "adj");
                self.contribute(Atom::Var(*array), c);
            }
            Expr::Concat(a, c) => {
                let Some(Atom::Var(zv)) = z else { return Ok(()) };
                let na = self.b.shape(Atom::Var(*a), 0);
                let nz = self.b.shape(Atom::Var(zv), 0);
                let ty = self.b.vars.ty(*a);
                if self.is_active(Atom::Var(*a)) {
                    let part = self.b.emit1(Expr::Slice { array: zv, start: Atom::i64(0), end: na }, ty, "adj");
                    self.contribute(Atom::Var(*a), part);
                }
                if self.is_active(Atom::Var(*c)) {
                    let part = self.b.emit1(Expr::Slice { array: zv, start: na, end: nz }, ty, "adj");
                    self.contribute(Atom::Var(*c), part);
                }
            }
            Expr::Scatter { dest, indices, values } => {
                let Some(Atom::Var(zv)) = z else { return Ok(()) };
                self.rev_scatter(*dest, *indices, *values, zv)?;
            }
            Expr::Hist { dest, lam, indices, values, .. } => {
                let Some(Atom::Var(zv)) = z else { return Ok(()) };
                if !is_addition(lam) {
                    return Err(unsupported(
                        "reverse mode through `reduce_by_index` with an operator other than `+`",
                        span,
                    ));
                }
                self.contribute(Atom::Var(*dest), Atom::Var(zv));
                if self.is_active(Atom::Var(*values)) {
                    let g = self.gather_in_range(zv, *indices);
                    self.contribute(Atom::Var(*values), g);
                }
            }
            Expr::Map { width, lam, arrays } => {
                self.rev_map(s, zs, *width, lam, arrays)?;
                // The forward copy binds the map's results and its residuals.
                // It is recomputed unless it saved an inner map: the reverse
                // reads those rows instead of re-running the map, so only
                // the forward copy fails where that map fails (Note [Saving
                // inner loop nests]).
                let residuals: Vec<Var> =
                    self.residuals.get(&s.binds[0]).into_iter().flatten().map(|(_, r)| *r).collect();
                if residuals.iter().all(|r| self.b.vars.ty(*r).rank == 1) {
                    self.b.recomputed.extend(s.binds.iter().copied().chain(residuals));
                }
            }
            Expr::Reduce { lam, neutral, arrays } => self.rev_reduce(zs, lam, neutral, arrays, false)?,
            Expr::Scan { lam, neutral, arrays } => self.rev_reduce(zs, lam, neutral, arrays, true)?,
            Expr::If { cond, then_body, else_body } => {
                if self.rev_if(zs, *cond, then_body, else_body)? {
                    self.b.recomputed.extend(s.binds.iter().copied());
                }
            }
            Expr::Loop { params, init, form, body } => self.rev_loop(s, zs, params, init, form, body)?,
            Expr::Shape { .. } | Expr::Iota(_) | Expr::Argsort { .. } | Expr::Check { .. } => {}
            Expr::Custom { primal, jvp, vjp, args, residuals } => {
                super::check_captures(self.b.vars, &s.expr, s.span, |v| self.active.contains(&v))?;
                self.rev_custom(s, zs, primal, [jvp.as_ref(), vjp.as_ref()], args, *residuals)?
            }
            Expr::Call { .. } => {
                return Err(Diagnostic::internal("ad", "a call of an entry reached reverse mode (it is inlined first)", span));
            }
            Expr::Jvp { .. } | Expr::Vjp { .. } => {
                return Err(Diagnostic::internal("ad", "nested AD operator reached reverse mode", span));
            }
        }
        Ok(())
    }

    /// A call with custom rules (Note [Custom derivatives]): the `vjp` rule
    /// applied to the results' cotangents, or else the transpose of the
    /// `jvp` rule (linear in the tangents, so reverse mode of `t ↦ jvp(args,
    /// t)` at any `t` gives the adjoints). Residuals with an adjoint — read
    /// by a rule an inner derivative inlined — pull it back through the
    /// primal.
    fn rev_custom(
        &mut self,
        s: &Stmt,
        zs: &[Option<Atom>],
        primal: &Lambda,
        [jvp, vjp]: [Option<&Lambda>; 2],
        args: &[Atom],
        residuals: usize,
    ) -> R<()> {
        let m = s.binds.len() - residuals;
        let cotangents: Vec<Atom> = zs[..m]
            .iter()
            .zip(&s.binds)
            .map(|(z, v)| match z {
                Some(z) => *z,
                None => self.b.zeros_like(Atom::Var(*v)),
            })
            .collect();
        let primals: Vec<Atom> = args.iter().copied().chain(s.binds.iter().map(|v| Atom::Var(*v))).collect();
        let adjoints = match (vjp, jvp) {
            (Some(vjp), _) => {
                let rule = super::build::rename_lambda(self.b.vars, vjp, &mut crate::hash::HashMap::default());
                let rule_args: Vec<Atom> = primals.iter().chain(&cotangents).copied().collect();
                self.b.inline(&rule, &rule_args).1
            }
            (None, Some(jvp)) => {
                // A lambda of the tangents only; the arguments, results and
                // residuals are bound to their values inside it.
                let n = primals.len();
                let mut stmts: Vec<Stmt> = jvp.params[..n]
                    .iter()
                    .zip(&primals)
                    .map(|(p, a)| Stmt { binds: vec![*p], expr: Expr::Atom(*a), span: s.span })
                    .collect();
                stmts.extend(jvp.body.stmts.iter().cloned());
                let tangent_lam = Lambda {
                    params: jvp.params[n..].to_vec(),
                    body: Body { stmts: stmts.into(), result: jvp.body.result.clone() },
                };
                let zero_tangents: Vec<Atom> = args.iter().map(|a| self.b.zeros_like(*a)).collect();
                super::expand_vjp(self.b, &tangent_lam, &zero_tangents, &cotangents)?.1
            }
            (None, None) => return Err(Diagnostic::internal("ad", "a custom call without a rule", s.span)),
        };
        for (a, adj) in args.iter().zip(adjoints) {
            if is_float(self.b.ty(*a)) {
                self.contribute(*a, adj);
            }
        }
        if zs[m..].iter().any(Option::is_some) {
            let seeds: Vec<Atom> = zs
                .iter()
                .zip(&s.binds)
                .enumerate()
                .map(|(i, (z, v))| match z {
                    Some(z) if i >= m => *z,
                    _ => self.b.zeros_like(Atom::Var(*v)),
                })
                .collect();
            let (_, through_primal) = super::expand_vjp(self.b, primal, args, &seeds)?;
            for (a, adj) in args.iter().zip(through_primal) {
                if is_float(self.b.ty(*a)) {
                    self.contribute(*a, adj);
                }
            }
        }
        Ok(())
    }

    /// Zeros shaped like `array` with `z` in rows `start..end`.
    fn unslice(&mut self, array: Var, start: Atom, end: Atom, z: Atom) -> Atom {
        let ty = self.b.vars.ty(array);
        let n = self.b.shape(Atom::Var(array), 0);
        let iota = self.b.iota(n);
        let Atom::Var(zv) = z else { unreachable!("array adjoints are variables") };
        let Atom::Var(av) = Atom::Var(array) else { unreachable!() };
        let lam = self.b.lambda(&[IrType::I64], "i", |b, ps| {
            let i = Atom::Var(ps[0]);
            let lo = b.bin(BinOp::Ge, i, start);
            let hi = b.bin(BinOp::Lt, i, end);
            let inside = b.bin(BinOp::And, lo, hi);
            let then_body = b.body(|b| {
                let k = b.sub(i, start);
                vec![b.emit1(Expr::Index { array: zv, indices: vec![k] }, ty.row(), "adj")]
            });
            let else_body = b.body(|b| {
                if ty.row().is_scalar() {
                    vec![b.constant(ty.row(), 0.0)]
                } else {
                    let row = b.emit1(Expr::Index { array: av, indices: vec![i] }, ty.row(), "row");
                    vec![b.zeros_like(row)]
                }
            });
            vec![b.emit1(Expr::If { cond: inside, then_body, else_body }, ty.row(), "adj")]
        });
        self.b.emit1(Expr::Map { width: n, lam, arrays: vec![iota] }, ty, "adj")
    }

    /// `map (\k -> if 0 <= is[k] < n then z[is[k]] else 0) (iota m)`.
    fn gather_in_range(&mut self, z: Var, indices: Var) -> Atom {
        let zty = self.b.vars.ty(z);
        let n = self.b.shape(Atom::Var(z), 0);
        let m = self.b.shape(Atom::Var(indices), 0);
        let lam = self.b.lambda(&[IrType::I64], "ix", |b, ps| {
            let i = Atom::Var(ps[0]);
            let lo = b.bin(BinOp::Ge, i, Atom::i64(0));
            let hi = b.bin(BinOp::Lt, i, n);
            let inside = b.bin(BinOp::And, lo, hi);
            let then_body = b.body(|b| vec![b.emit1(Expr::Index { array: z, indices: vec![i] }, zty.row(), "adj")]);
            let else_body = b.body(|b| {
                if zty.row().is_scalar() {
                    vec![b.constant(zty.row(), 0.0)]
                } else {
                    let row = b.emit1(Expr::Index { array: z, indices: vec![Atom::i64(0)] }, zty.row(), "row");
                    vec![b.zeros_like(row)]
                }
            });
            vec![b.emit1(Expr::If { cond: inside, then_body, else_body }, zty.row(), "adj")]
        });
        self.b.emit1(Expr::Map { width: m, lam, arrays: vec![indices] }, zty, "adj")
    }

    fn rev_scatter(&mut self, dest: Var, indices: Var, values: Var, z: Var) -> R<()> {
        let n = self.b.shape(Atom::Var(dest), 0);
        let m = self.b.shape(Atom::Var(indices), 0);
        let ity = IrType::array(ScalarType::I64, 1);
        if self.is_active(Atom::Var(values)) {
            // The last write to each position wins: find the winner of each position.
            let none = self.b.emit1(Expr::Replicate { count: n, value: Atom::i64(-1) }, ity, "winner");
            let ks = self.b.iota(m);
            let Atom::Var(nv) = none else { unreachable!() };
            let winner = self.b.emit(Expr::Scatter { dest: nv, indices, values: ks }, &[ity], "winner")[0];
            let vty = self.b.vars.ty(values);
            let lam = self.b.lambda(&[IrType::I64, IrType::I64], "k", |b, ps| {
                let (k, i) = (Atom::Var(ps[0]), Atom::Var(ps[1]));
                let lo = b.bin(BinOp::Ge, i, Atom::i64(0));
                let hi = b.bin(BinOp::Lt, i, n);
                let inside = b.bin(BinOp::And, lo, hi);
                let then_body = b.body(|b| {
                    let w = b.emit1(Expr::Index { array: winner, indices: vec![i] }, IrType::I64, "w");
                    let won = b.bin(BinOp::Eq, w, k);
                    let row = b.emit1(Expr::Index { array: z, indices: vec![i] }, vty.row(), "adj");
                    let zero = b.zeros_like(row);
                    vec![b.select(won, row, zero)]
                });
                let else_body = b.body(|b| {
                    if vty.row().is_scalar() {
                        vec![b.constant(vty.row(), 0.0)]
                    } else {
                        let row = b.emit1(Expr::Index { array: values, indices: vec![k] }, vty.row(), "row");
                        vec![b.zeros_like(row)]
                    }
                });
                vec![b.emit1(Expr::If { cond: inside, then_body, else_body }, vty.row(), "adj")]
            });
            let c = self.b.emit1(Expr::Map { width: m, lam, arrays: vec![ks, indices] }, vty, "adj");
            self.contribute(Atom::Var(values), c);
        }
        if self.is_active(Atom::Var(dest)) {
            let zeros = self.b.zeros_like(Atom::Var(values));
            let Atom::Var(zv) = zeros else { unreachable!() };
            let ty = self.b.vars.ty(dest);
            let cleared = self.b.emit1(Expr::Scatter { dest: z, indices, values: zv }, ty, "adj");
            self.contribute(Atom::Var(dest), cleared);
        }
        Ok(())
    }

    /// The active free variables of a scope, and loop state accumulating their adjoints.
    fn free_state(&mut self, free: Vec<Var>) -> Vec<(Var, Atom)> {
        let free: Vec<Var> = free.into_iter().filter(|v| self.active.contains(v)).collect();
        free.into_iter()
            .map(|v| {
                let init = self.take_or_zero(v);
                (v, init)
            })
            .collect()
    }

    /// Seeds a child sweep's adjoint table with loop-state accumulators of free variables.
    fn seed_child(child: &mut Rev, free: &[(Var, Var)]) {
        for (v, state) in free {
            let ty = child.b.vars.ty(*v);
            let entry = if ty.is_scalar() {
                Adj { dense: Some(Atom::Var(*state)), buffer: None }
            } else {
                Adj { dense: None, buffer: Some(Atom::Var(*state)) }
            };
            child.adj.insert(*v, entry);
        }
    }

    /// `buf[i] += row` (in place) when the row's adjoint is not zero.
    fn accumulate_row(&mut self, buf: Var, i: Atom, row: Option<Atom>) -> Atom {
        match row {
            Some(c) => {
                let ty = self.b.vars.ty(buf);
                self.b.emit1(Expr::UpdateAt { array: buf, indices: vec![i], value: c, accumulate: true }, ty, "adj")
            }
            None => Atom::Var(buf),
        }
    }

    /// The new loop state for free-variable accumulators: what the child
    /// accumulated, or the state unchanged.
    fn free_results(&mut self, free_state: &[(Var, Var)]) -> Vec<Atom> {
        free_state.iter().map(|(v, st)| self.take(*v).unwrap_or(Atom::Var(*st))).collect()
    }

    /// Stores loop results back as adjoints of free variables.
    fn store_free(&mut self, free: &[Var], results: &[Var]) {
        for (v, r) in free.iter().zip(results) {
            self.absorb(*v, Atom::Var(*r));
        }
    }

    /// A backward loop `for j < n` visiting `i = n - 1 - j`, with state `init`;
    /// `step` builds the body from (i, state params) and returns the new state.
    fn backward_loop(
        &mut self,
        n: Atom,
        init: Vec<Atom>,
        step: impl FnOnce(&mut Rev, Atom, &[Var]) -> R<Vec<Atom>>,
    ) -> R<Vec<Var>> {
        let types: Vec<IrType> = init.iter().map(|a| self.b.ty(*a)).collect();
        let params: Vec<Var> = types.iter().map(|t| self.b.fresh("adj", *t)).collect();
        let j = self.b.fresh("j", IrType::I64);
        self.b.blocks.push(Vec::new());
        let last = self.b.sub(n, Atom::i64(1));
        let i = self.b.sub(last, Atom::Var(j));
        let r = step(self, i, &params);
        let stmts = self.b.blocks.pop().expect("pushed above");
        let result = r?;
        let binds: Vec<Var> = types.iter().map(|t| self.b.fresh("adj", *t)).collect();
        let span = self.b.span;
        self.b.push(Stmt {
            binds: binds.clone(),
            expr: Expr::Loop {
                params,
                init,
                form: LoopForm::For { index: j, bound: n },
                body: Body { stmts: stmts.into(), result },
            },
            span,
        });
        Ok(binds)
    }

    fn rev_map(&mut self, s: &Stmt, zs: &[Option<Atom>], width: Atom, lam: &Lambda, arrays: &[Var]) -> R<()> {
        let free_active: Vec<Var> = free_vars_lambda(lam).into_iter().filter(|v| self.active.contains(v)).collect();
        if free_active.iter().all(|v| self.b.vars.ty(*v).is_scalar()) {
            return self.rev_map_parallel(s.binds[0], zs, width, lam, arrays, free_active);
        }
        self.rev_map_sequential(s, zs, width, lam, arrays)
    }

    /// The reverse of a `map` whose body reads no active free array: another
    /// `map` computing each element's adjoints (and each element's contribution
    /// to free scalars, summed afterwards). See Note [Reverse mode of map].
    fn rev_map_parallel(
        &mut self,
        map_result: Var,
        zs: &[Option<Atom>],
        width: Atom,
        lam: &Lambda,
        arrays: &[Var],
        free: Vec<Var>,
    ) -> R<()> {
        let active_arrays: Vec<usize> = (0..arrays.len()).filter(|k| self.active.contains(&arrays[*k])).collect();
        let present: Vec<(usize, Var)> =
            zs.iter().enumerate().filter_map(|(j, z)| z.and_then(|z| z.var()).map(|v| (j, v))).collect();
        let mut param_types: Vec<IrType> = arrays.iter().map(|a| self.b.vars.ty(*a).row()).collect();
        param_types.extend(present.iter().map(|(_, z)| self.b.vars.ty(*z).row()));
        let residuals = self.residuals.get(&map_result).cloned().unwrap_or_default();
        param_types.extend(residuals.iter().map(|(_, r)| self.b.vars.ty(*r).row()));
        let n_inputs = arrays.len() + present.len();
        let outer_active = self.active.clone();
        let mut result = Ok(());
        let lam2 = self.b.lambda(&param_types, "x", |b, ps| {
            let rows: Vec<Atom> = ps[..arrays.len()].iter().map(|v| Atom::Var(*v)).collect();
            let (params, body) = b.prepare(lam, &rows);
            let mut seeds: Vec<Var> = active_arrays.iter().map(|k| params[*k]).collect();
            seeds.extend(&free);
            let mut active = active_vars(b.vars, &body, &seeds);
            active.extend(free.iter().copied().filter(|v| outer_active.contains(v)));
            let mut child = Rev::nested(b, active);
            let residual_rows: Vec<Var> = ps[n_inputs..].to_vec();
            let r = (|| -> R<Vec<Atom>> {
                child.forward(&with_residuals(&body.stmts, &residuals, |slot| {
                    Expr::Atom(Atom::Var(residual_rows[slot]))
                }))?;
                for (slot, (j, _)) in present.iter().enumerate() {
                    child.contribute(body.result[*j], Atom::Var(ps[arrays.len() + slot]));
                }
                child.backward(&body.stmts)?;
                let mut out = Vec::new();
                for &k in &active_arrays {
                    out.push(child.take_or_zero(params[k]));
                }
                for f in &free {
                    out.push(match child.take(*f) {
                        Some(a) => a,
                        None => child.b.constant(child.b.vars.ty(*f), 0.0),
                    });
                }
                Ok(out)
            })();
            match r {
                Ok(out) => out,
                Err(e) => {
                    result = Err(e);
                    Vec::new()
                }
            }
        });
        result?;
        let mut inputs = arrays.to_vec();
        inputs.extend(present.iter().map(|(_, z)| *z));
        inputs.extend(residuals.iter().map(|(_, r)| *r));
        let types: Vec<IrType> = lam2.body.result.iter().map(|a| self.b.ty(*a).lift()).collect();
        let binds = self.b.emit(Expr::Map { width, lam: lam2, arrays: inputs }, &types, "adj");
        for (slot, &k) in active_arrays.iter().enumerate() {
            self.contribute(Atom::Var(arrays[k]), Atom::Var(binds[slot]));
        }
        for (slot, f) in free.iter().enumerate() {
            let per_element = Atom::Var(binds[active_arrays.len() + slot]);
            let total = self.b.sum_outer(per_element);
            self.contribute(Atom::Var(*f), total);
        }
        Ok(())
    }

    fn rev_map_sequential(
        &mut self,
        s: &Stmt,
        zs: &[Option<Atom>],
        width: Atom,
        lam: &Lambda,
        arrays: &[Var],
    ) -> R<()> {
        let active_arrays: Vec<usize> = (0..arrays.len()).filter(|k| self.active.contains(&arrays[*k])).collect();
        let free = self.free_state(free_vars_lambda(lam));
        let mut init: Vec<Atom> = Vec::new();
        for &k in &active_arrays {
            init.push(self.take_or_zero(arrays[k]));
        }
        init.extend(free.iter().map(|(_, a)| *a));
        let free_vars: Vec<Var> = free.iter().map(|(v, _)| *v).collect();
        let outer_active = self.active.clone();
        let residuals = self.residuals.get(&s.binds[0]).cloned().unwrap_or_default();
        let results = self.backward_loop(width, init, |rev, i, state| {
            let rows: Vec<Atom> = arrays
                .iter()
                .map(|a| {
                    let ty = rev.b.vars.ty(*a).row();
                    rev.b.emit1(Expr::Index { array: *a, indices: vec![i] }, ty, "row")
                })
                .collect();
            let zrows: Vec<Option<Atom>> = zs
                .iter()
                .map(|z| {
                    z.map(|z| {
                        let ty = rev.b.ty(z).row();
                        let Atom::Var(zv) = z else { unreachable!() };
                        rev.b.emit1(Expr::Index { array: zv, indices: vec![i] }, ty, "adj")
                    })
                })
                .collect();
            let (params, body) = rev.b.prepare(lam, &rows);
            let mut seeds: Vec<Var> = active_arrays.iter().map(|k| params[*k]).collect();
            seeds.extend(&free_vars);
            let mut active = active_vars(rev.b.vars, &body, &seeds);
            active.extend(free_vars.iter().copied().filter(|v| outer_active.contains(v)));
            let n_arrays = active_arrays.len();
            let free_state: Vec<(Var, Var)> =
                free_vars.iter().copied().zip(state[n_arrays..].iter().copied()).collect();
            let mut child = rev.child(active, true);
            Rev::seed_child(&mut child, &free_state);
            child.forward(&with_residuals(&body.stmts, &residuals, |slot| Expr::Index {
                array: residuals[slot].1,
                indices: vec![i],
            }))?;
            for (r, z) in body.result.iter().zip(&zrows) {
                if let Some(z) = z {
                    child.contribute(*r, *z);
                }
            }
            child.backward(&body.stmts)?;
            let mut out = Vec::new();
            for (slot, &k) in active_arrays.iter().enumerate() {
                let row = child.take(params[k]);
                out.push(child.accumulate_row(state[slot], i, row));
            }
            out.extend(child.free_results(&free_state));
            Ok(out)
        })?;
        for (slot, &k) in active_arrays.iter().enumerate() {
            self.absorb(arrays[k], Atom::Var(results[slot]));
        }
        self.store_free(&free_vars, &results[active_arrays.len()..]);
        Ok(())
    }

    fn rev_reduce(
        &mut self,
        zs: &[Option<Atom>],
        lam: &Lambda,
        neutral: &[Atom],
        arrays: &[Var],
        is_scan: bool,
    ) -> R<()> {
        let k = arrays.len();
        // Sum: the adjoint of every element is the adjoint of the result.
        if !is_scan && k == 1 && is_addition(lam) {
            let z = zs[0].expect("some adjoint is present");
            if self.is_active(Atom::Var(arrays[0])) {
                let n = self.b.shape(Atom::Var(arrays[0]), 0);
                let ty = self.b.vars.ty(arrays[0]);
                let rep = self.b.emit1(Expr::Replicate { count: n, value: z }, ty, "adj");
                self.contribute(Atom::Var(arrays[0]), rep);
            }
            self.contribute(neutral[0], z);
            return Ok(());
        }
        if !is_scan && k == 1 {
            if let Some((op, acc_first)) = min_or_max(lam) {
                self.rev_extremum(zs[0].expect("some adjoint is present"), op, acc_first, neutral[0], arrays[0]);
                return Ok(());
            }
        }
        // General operator: a sequential reversal of the left fold, with the
        // accumulator before each step taken from an inclusive scan.
        let row_types: Vec<IrType> = arrays.iter().map(|a| self.b.vars.ty(*a).row()).collect();
        let prefix: Vec<Var> = {
            let lam2 = super::build::rename_lambda(self.b.vars, lam, &mut HashMap::default());
            let types: Vec<IrType> = row_types.iter().map(|t| t.lift()).collect();
            self.b.emit(Expr::Scan { lam: lam2, neutral: neutral.to_vec(), arrays: arrays.to_vec() }, &types, "prefix")
        };
        let n = self.b.shape(Atom::Var(arrays[0]), 0);
        let active_arrays: Vec<usize> = (0..k).filter(|j| self.active.contains(&arrays[*j])).collect();
        let free = self.free_state(free_vars_lambda(lam));
        let free_vars: Vec<Var> = free.iter().map(|(v, _)| *v).collect();
        let mut init = Vec::new();
        for (j, t) in row_types.iter().enumerate() {
            init.push(match (is_scan, zs[j]) {
                (false, Some(z)) => z,
                _ => {
                    if t.is_scalar() {
                        self.b.constant(*t, 0.0)
                    } else {
                        self.b.zeros_like(neutral[j])
                    }
                }
            });
        }
        for &j in &active_arrays {
            init.push(self.take_or_zero(arrays[j]));
        }
        init.extend(free.iter().map(|(_, a)| *a));
        let outer_active = self.active.clone();
        let results = self.backward_loop(n, init, |rev, i, state| {
            // The cotangent of this step's output.
            let mut acc_adj: Vec<Atom> = state[..k].iter().map(|v| Atom::Var(*v)).collect();
            if is_scan {
                for (j, z) in zs.iter().enumerate() {
                    if let Some(Atom::Var(zv)) = z {
                        let zi = rev.b.emit1(Expr::Index { array: *zv, indices: vec![i] }, row_types[j], "adj");
                        acc_adj[j] = rev.b.add_values(acc_adj[j], zi);
                    }
                }
            }
            let first = rev.b.bin(BinOp::Eq, i, Atom::i64(0));
            let then_body = Body { stmts: Vec::new().into(), result: neutral.to_vec() };
            let else_body = rev.b.body(|b| {
                let prev = b.sub(i, Atom::i64(1));
                prefix
                    .iter()
                    .zip(&row_types)
                    .map(|(p, t)| b.emit1(Expr::Index { array: *p, indices: vec![prev] }, *t, "acc"))
                    .collect()
            });
            let before: Vec<Atom> = rev
                .b
                .emit(Expr::If { cond: first, then_body, else_body }, &row_types, "acc")
                .into_iter()
                .map(Atom::Var)
                .collect();
            let xs: Vec<Atom> = arrays
                .iter()
                .zip(&row_types)
                .map(|(a, t)| rev.b.emit1(Expr::Index { array: *a, indices: vec![i] }, *t, "x"))
                .collect();
            let mut args = before.clone();
            args.extend(&xs);
            let (params, body) = rev.b.prepare(lam, &args);
            let mut seeds: Vec<Var> = params.iter().copied().filter(|p| is_float(rev.b.vars.ty(*p))).collect();
            seeds.extend(&free_vars);
            let mut active = active_vars(rev.b.vars, &body, &seeds);
            active.extend(free_vars.iter().copied().filter(|v| outer_active.contains(v)));
            let n_arrays = active_arrays.len();
            let free_state: Vec<(Var, Var)> =
                free_vars.iter().copied().zip(state[k + n_arrays..].iter().copied()).collect();
            let mut child = rev.child(active, true);
            Rev::seed_child(&mut child, &free_state);
            child.forward(&body.stmts)?;
            for (r, z) in body.result.iter().zip(&acc_adj) {
                child.contribute(*r, *z);
            }
            child.backward(&body.stmts)?;
            let mut out = Vec::new();
            for j in 0..k {
                out.push(match child.take(params[j]) {
                    Some(a) => a,
                    None => {
                        if row_types[j].is_scalar() {
                            child.b.constant(row_types[j], 0.0)
                        } else {
                            child.b.zeros_like(before[j])
                        }
                    }
                });
            }
            for (slot, &j) in active_arrays.iter().enumerate() {
                let row = child.take(params[k + j]);
                out.push(child.accumulate_row(state[k + slot], i, row));
            }
            out.extend(child.free_results(&free_state));
            Ok(out)
        })?;
        for j in 0..k {
            self.contribute(neutral[j], Atom::Var(results[j]));
        }
        for (slot, &j) in active_arrays.iter().enumerate() {
            self.absorb(arrays[j], Atom::Var(results[k + slot]));
        }
        self.store_free(&free_vars, &results[k + active_arrays.len()..]);
        Ok(())
    }

    /// The reverse of `reduce max` / `reduce min` (`op`): the whole adjoint
    /// goes to the one element the general rule would route it to — the
    /// last `i` where the element wins against the fold of those before it
    /// (`!(acc >= x)` for `max acc x`, the tie convention of `max`), found by
    /// one forward loop; the neutral element gets it when no element wins.
    /// See Note [Reverse of an extremum].
    fn rev_extremum(&mut self, z: Atom, op: BinOp, acc_first: bool, neutral: Atom, xs: Var) {
        let elem = self.b.vars.ty(xs).row();
        let n = self.b.shape(Atom::Var(xs), 0);
        let acc = self.b.fresh("acc", elem);
        let win = self.b.fresh("win", IrType::I64);
        let i = self.b.fresh("i", IrType::I64);
        let cmp = if op == BinOp::Max { BinOp::Ge } else { BinOp::Le };
        let body = self.b.body(|b| {
            let x = b.emit1(Expr::Index { array: xs, indices: vec![Atom::Var(i)] }, elem, "x");
            let (first, second) = if acc_first { (Atom::Var(acc), x) } else { (x, Atom::Var(acc)) };
            let first_wins = b.bin(cmp, first, second);
            let next = b.bin(op, first, second);
            let winner = if acc_first {
                b.select(first_wins, Atom::Var(win), Atom::Var(i))
            } else {
                b.select(first_wins, Atom::Var(i), Atom::Var(win))
            };
            vec![next, winner]
        });
        let span = self.b.span;
        let binds = vec![self.b.fresh("acc", elem), self.b.fresh("win", IrType::I64)];
        self.b.push(Stmt {
            binds: binds.clone(),
            expr: Expr::Loop {
                params: vec![acc, win],
                init: vec![neutral, Atom::i64(-1)],
                form: LoopForm::For { index: i, bound: n },
                body,
            },
            span,
        });
        let found = self.b.bin(BinOp::Ge, Atom::Var(binds[1]), Atom::i64(0));
        self.contribute_at_if(xs, found, Atom::Var(binds[1]), z);
        if self.is_active(neutral) {
            let zero = self.b.zeros_like(z);
            let to_neutral = self.b.select(found, zero, z);
            self.contribute(neutral, to_neutral);
        }
    }

    /// The reverse of an `if`: both branches recomputed and differentiated
    /// under the same condition. `false` when nothing active flows through it
    /// (then nothing is emitted).
    fn rev_if(&mut self, zs: &[Option<Atom>], cond: Atom, then_body: &Body, else_body: &Body) -> R<bool> {
        let mut free: Vec<Var> = free_vars(then_body);
        for v in free_vars(else_body) {
            if !free.contains(&v) {
                free.push(v);
            }
        }
        free.retain(|v| self.active.contains(v) && is_float(self.b.vars.ty(*v)));
        if free.is_empty() {
            return Ok(false);
        }
        // Array adjoints are threaded through the branches (so sparse updates stay
        // in place); scalar contributions come out as values.
        let incoming: Vec<Option<Atom>> = free
            .iter()
            .map(|v| if self.b.vars.ty(*v).is_scalar() { None } else { Some(self.take_or_zero(*v)) })
            .collect();
        let outer_active = self.active.clone();
        let branch = |rev: &mut Rev, body: &Body| -> R<Body> {
            rev.b.blocks.push(Vec::new());
            let renamed = rename_body(rev.b.vars, body, &mut HashMap::default());
            let mut active = active_vars(rev.b.vars, &renamed, &free);
            active.extend(free.iter().copied().filter(|v| outer_active.contains(v)));
            let mut child = rev.child(active, false);
            for (v, inc) in free.iter().zip(&incoming) {
                if let Some(buf) = inc {
                    child.adj.insert(*v, Adj { dense: None, buffer: Some(*buf) });
                }
            }
            let r = (|| {
                child.forward(&renamed.stmts)?;
                for (r, z) in renamed.result.iter().zip(zs) {
                    if let Some(z) = z {
                        child.contribute(*r, *z);
                    }
                }
                child.backward(&renamed.stmts)?;
                Ok(free
                    .iter()
                    .zip(&incoming)
                    .map(|(v, inc)| match inc {
                        Some(buf) => child.take(*v).unwrap_or(*buf),
                        None => child.take_or_zero(*v),
                    })
                    .collect::<Vec<Atom>>())
            })();
            let r: Result<Vec<Atom>, Diagnostic> = r;
            let stmts = rev.b.blocks.pop().expect("pushed above");
            Ok(Body { stmts: stmts.into(), result: r? })
        };
        let then_adj = branch(self, then_body)?;
        let else_adj = branch(self, else_body)?;
        let types: Vec<IrType> = free.iter().map(|v| self.b.vars.ty(*v)).collect();
        let binds = self.b.emit(Expr::If { cond, then_body: then_adj, else_body: else_adj }, &types, "adj");
        for ((v, b), inc) in free.iter().zip(binds).zip(&incoming) {
            if inc.is_some() {
                self.absorb(*v, Atom::Var(b));
            } else {
                self.contribute(Atom::Var(*v), Atom::Var(b));
            }
        }
        Ok(true)
    }

    /// Iteration `i` of a loop's backward sweep: restore the state from slot
    /// `i` of `tapes`, recompute the body, and run its backward sweep with the
    /// state adjoints in `state`.
    fn backward_step(&mut self, step: &LoopStep, tapes: &[Slot], i: Atom, state: &[Var]) -> R<Vec<Atom>> {
        let restored: Vec<Atom> = tapes
            .iter()
            .zip(step.params)
            .map(|(t, p)| match t {
                Slot::Taped(t) => {
                    let ty = self.b.vars.ty(*p);
                    self.b.emit1(Expr::Index { array: *t, indices: vec![i] }, ty, "state")
                }
                Slot::Invariant(a) => *a,
            })
            .collect();
        let mut lam_params = step.params.to_vec();
        let mut args = restored;
        if let Some(ix) = step.index {
            lam_params.push(ix);
            args.push(i);
        }
        let lam = Lambda { params: lam_params, body: step.body.clone() };
        let (copies, renamed) = self.b.prepare(&lam, &args);
        // The reads of the tapes and the recomputed body repeat what the
        // forward sweep did with the same values (Note [What loop tapes
        // hold]). An invariant piece is the loop's own initial value: not a
        // repeat, so not marked.
        let reads = tapes.iter().zip(&args).filter(|(t, _)| matches!(t, Slot::Taped(_)));
        let reads: Vec<Var> = reads.filter_map(|(_, a)| a.var()).collect();
        self.b.recomputed.extend(reads);
        self.b.recomputed.extend(renamed.stmts.iter().flat_map(|s| s.binds.iter().copied()));
        let dual = step.dual;
        let mut seeds: Vec<Var> = dual.iter().map(|k| copies[*k]).collect();
        seeds.extend(step.free_vars);
        let mut active = active_vars(self.b.vars, &renamed, &seeds);
        active.extend(step.free_vars.iter().copied().filter(|v| step.outer_active.contains(v)));
        active.extend(dual.iter().map(|k| copies[*k]));
        let free_state: Vec<(Var, Var)> =
            step.free_vars.iter().copied().zip(state[dual.len()..].iter().copied()).collect();
        let mut child = self.child(active, true);
        Rev::seed_child(&mut child, &free_state);
        child.forward(&renamed.stmts)?;
        for (slot, &k) in dual.iter().enumerate() {
            child.contribute(renamed.result[k], Atom::Var(state[slot]));
        }
        child.backward(&renamed.stmts)?;
        let mut out = Vec::new();
        for &k in dual {
            out.push(child.take_or_zero(copies[k]));
        }
        out.extend(child.free_results(&free_state));
        Ok(out)
    }

    fn rev_loop(
        &mut self,
        s: &Stmt,
        zs: &[Option<Atom>],
        params: &[Var],
        init: &[Atom],
        form: &LoopForm,
        body: &Body,
    ) -> R<()> {
        let Some(tape) = self.tapes.get(&s.binds[0]).cloned() else {
            return Err(Diagnostic::internal("ad", "a loop without a tape in the backward sweep", s.span));
        };
        let index = match form {
            LoopForm::For { index, .. } => Some(*index),
            LoopForm::While { .. } => None,
        };
        // Only active state has adjoints: an inactive part of the state (one
        // that depends on nothing differentiated) is recomputed from the tapes
        // for the values the body needs, but has no backward sweep of its own
        // (Note [What loop tapes hold]).
        let dual: Vec<usize> = (0..params.len())
            .filter(|k| is_float(self.b.vars.ty(params[*k])) && self.active.contains(&params[*k]))
            .collect();
        let mut body_free = free_vars(body);
        body_free.retain(|v| !params.contains(v) && Some(*v) != index);
        let free = self.free_state(body_free);
        let free_vars: Vec<Var> = free.iter().map(|(v, _)| *v).collect();
        let mut state_init = Vec::new();
        for &k in &dual {
            state_init.push(match zs[k] {
                Some(z) => z,
                None => self.b.zeros_like(Atom::Var(s.binds[k])),
            });
        }
        state_init.extend(free.iter().map(|(_, a)| *a));
        let outer_active = self.active.clone();
        let step = LoopStep { params, index, body, dual: &dual, free_vars: &free_vars, outer_active: &outer_active };
        let results = self
            .backward_loop(tape.bound, state_init, |rev, i, state| rev.backward_step(&step, &tape.tapes, i, state))?;
        for (slot, &k) in dual.iter().enumerate() {
            self.contribute(init[k], Atom::Var(results[slot]));
        }
        self.store_free(&free_vars, &results[dual.len()..]);
        Ok(())
    }
}

/// `\acc x -> max acc x` (or `min`, either operand order): the operation,
/// and whether the accumulator is its first operand.
fn min_or_max(lam: &Lambda) -> Option<(BinOp, bool)> {
    let ([acc, x], [s], [r]) = (&lam.params[..], &lam.body.stmts[..], &lam.body.result[..]) else { return None };
    let Expr::Binary(op @ (BinOp::Max | BinOp::Min), a, b) = s.expr else { return None };
    if *r != Atom::Var(s.binds[0]) {
        return None;
    }
    match (a, b) {
        (Atom::Var(p), Atom::Var(q)) if p == *acc && q == *x => Some((op, true)),
        (Atom::Var(p), Atom::Var(q)) if p == *x && q == *acc => Some((op, false)),
        _ => None,
    }
}

/// `stmts` (a renamed copy of a map body) with the statements the forward
/// sweep saved replaced by reads of the saved values (`read(slot)`), for the
/// reverse's forward pass; its backward pass still sees the original
/// statements, so derivative rules are unchanged.
fn with_residuals(stmts: &[Stmt], residuals: &[(usize, Var)], read: impl Fn(usize) -> Expr) -> Vec<Stmt> {
    let mut out = stmts.to_vec();
    for (slot, &(k, _)) in residuals.iter().enumerate() {
        out[k].expr = read(slot);
    }
    out
}

/// What every backward iteration of one loop shares.
struct LoopStep<'a> {
    params: &'a [Var],
    index: Option<Var>,
    body: &'a Body,
    dual: &'a [usize],
    free_vars: &'a [Var],
    outer_active: &'a HashSet<Var>,
}

/// The statement with every `UpdateAt` in it (also in nested bodies) made
/// non-consuming (an update of a fresh copy of the variable). The forward
/// sweep must not destroy values the backward sweep reads or recomputes from:
/// see Note [Consumption in the forward sweep].
fn copy_on_write(vars: &mut crate::ir::VarTable, s: &Stmt) -> Stmt {
    let mut s = s.clone();
    cow_expr(vars, &mut s.expr, s.span);
    s
}

fn cow_body(vars: &mut crate::ir::VarTable, body: &mut Body) {
    let mut out = Vec::with_capacity(body.stmts.len());
    for mut s in std::mem::take(&mut body.stmts) {
        out.extend(crate::ir::alias::update_through_alias(vars, &mut s));
        cow_expr(vars, &mut s.expr, s.span);
        out.push(s);
    }
    body.stmts = out.into();
}

fn cow_expr(vars: &mut crate::ir::VarTable, e: &mut Expr, _span: crate::diagnostic::Span) {
    match e {
        Expr::Map { lam, .. } | Expr::Reduce { lam, .. } | Expr::Scan { lam, .. } | Expr::Hist { lam, .. } => {
            cow_body(vars, &mut lam.body)
        }
        Expr::If { then_body, else_body, .. } => {
            cow_body(vars, then_body);
            cow_body(vars, else_body);
        }
        Expr::Loop { form, body, .. } => {
            if let LoopForm::While { cond } = form {
                cow_body(vars, cond);
            }
            cow_body(vars, body);
        }
        Expr::Custom { primal, .. } => cow_body(vars, &mut primal.body),
        _ => {}
    }
}

// Note [Reverse mode of loops]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The forward sweep rewrites an active `for` loop so that iteration i first
// writes the loop state into tape arrays (`UpdateAt`, in place). The backward
// sweep is a loop over i = n-1 … 0 that restores the state from the tapes,
// recomputes the body, and runs the body's backward sweep with the adjoints
// of the loop state as loop variables; contributions to free variables are
// further loop variables. Memory is O(iterations × state), as in Futhark;
// free variables (like a data array the body reads) are not taped.
//
// Note [What loop tapes hold]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The forward sweep tapes the loop state; what survives is what the
// backward sweep reads. Three things make the difference:
// - Only active state has adjoints (`rev_loop`'s `dual`): a piece of state
//   that depends on nothing differentiated — a data array a simulation
//   advances next to the differentiated state — gets no adjoint and no
//   backward sweep of its own; its values are restored from its tape only
//   where the body's derivative reads them.
// - The backward sweep's restored state and recomputed body repeat what the
//   forward sweep computed from the same values, so they are marked as
//   recomputed (`ir::Program::recomputed`): dead-code elimination drops the
//   ones the derivative does not read without leaving guards (their checks
//   passed in the forward sweep). A tape then has no reader, and the
//   optimiser removes it from the forward loop with the updates that fill it
//   (Note [Dead loop state] in opt/rules.rs); the tape updates are marked
//   too, their index being in range by construction.
// - State the body passes through unchanged (`result[k]` is parameter k)
//   has one value, its initial one: no tape; the backward sweep reads the
//   initial value (`Slot::Invariant`). A data array a loop reads but does not
//   change is stored once, not once per iteration.
// Measured on `loop (s, d) = (a, d0) for i < 1000 do (sin s * 0.9 + d[i % n]
// * 0.001, map (+1) d)` differentiated with respect to `a`, n = 10⁵: 796 MB
// peak before (a tape of d, and d's adjoint), 15 MB after, as the primal
// (tests/tests/tapes.rs). When the derivative does read such state (`sin s *
// d[i % n]`), its tape stays: recomputing it instead from a checkpoint is
// what `--checkpoint` does for the whole state.
//
// Note [Consumption in the forward sweep]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Primal code differentiated a second time (reverse over reverse) contains the
// in-place `UpdateAt`s of the first derivative. The backward sweep reads primal
// values and recomputes scopes from them, so the forward sweep must not consume
// anything a later statement reads: an update nested in a body the backward
// sweep recomputes writes to `copy = a` (copy_on_write), an alias. Lowering
// copies an alias only when the original is still read after the update
// (Note [Ownership and in-place updates] in ownership/mod.rs), and the
// interpreter drops a loop's array parameters after their last use in the
// body (`dead_params` in ir/interp.rs), so an update stays in place when
// nothing else reads the old array — the first derivative's adjoint
// accumulations and tape writes, in the second derivative's forward sweep.
// The reverse of an overwriting update (`a with [i] = v`, the tape writes of
// the first derivative among them) zeroes element i of the cotangent through
// such an alias too, not a copy: reverse over reverse through a loop of n
// indexings is O(n) (tests/tests/cost.rs, tests/tests/native.rs). What is
// still O(n) per iteration is taping array state a loop updates one element
// at a time — the user's `y with [i] = …` in a `for` loop (docs/language.md).
//
// Note [Reverse of an extremum]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The general reverse of `reduce op ne xs` walks the fold backwards, reading
// the accumulator before each step from an inclusive scan: a pass to build
// the scan, an array of n, and a backward pass. For `max` (and `min`) every
// step passes the whole adjoint on to exactly one of its operands — the
// accumulator when `acc >= x` (the tie convention of `max`, ad/rules.rs),
// else the element — so the adjoint ends at one element: walking back from
// the end, the first `i` where the element won. That is the *last* `i` where
// `!(acc_i >= x_i)`, with `acc_i` the fold of the elements before `i`: one
// forward loop finds it, with no array and no second pass, and gives the
// same adjoint bit for bit (NaNs and ties included, since it evaluates the
// same comparisons). When no element wins (all equal to the neutral element,
// or no elements), the neutral element gets it, as in the general rule.

// Note [Recomputed statements]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The reverse of a `map` (and of an `if` with active free variables)
// recomputes its body in the backward sweep, element by element, under the
// same condition. So every failure of the forward-sweep copy (an index out
// of bounds in the body, a size mismatch) happens again in the reverse, which
// always runs after it in the same scope. When the forward copy's results
// are not needed — a gradient does not need the primal value — dead-code
// elimination may drop it without leaving guards (Note [Guards] in
// `opt/guards.rs`): the program still fails where it failed, one statement
// later. The AD records such statements in `ir::Program::recomputed`;
// renaming a body (`Builder::prepare`) carries the marks to the copies, and
// an optimiser rule that rebuilds a statement under new names simply loses
// the mark (its guards then stand for it).

// Note [Residuals of map]
// ~~~~~~~~~~~~~~~~~~~~~~~~
// The reverse of a `map` recomputes the body per element (Note [Reverse mode
// of map]). Recomputing additions is cheaper than storing them, but `exp`,
// `tanh`, `lgamma` … are host calls: the forward sweep's copy of an active map
// also returns their values (one extra array per such statement of the body's
// top level), and the reverse reads them back where it would recompute. Only
// the reverse's forward pass reads them; its backward pass applies the
// derivative rules to the original statements (whose results, the saved
// values, it reads like any primal value). A map inside a loop body is
// rewritten the same way when the backward sweep re-runs that body.
//
// Which statements are saved is a policy (`ad::Save`, `--save`), by
// operation class: nothing, host calls (the default), also the slow
// instructions (sqrt, division, `**`), or everything. Measured with `slope
// --save P bench FILE --input IN --entry E --derivative D --runs 5` at
// GradBench's largest default workloads (inputs from
// `scripts/gradbench_inputs.py generate`), two interleaved rounds, derivative
// ms: lse (n = 1.28e6) 17–21 nothing, 10 host-calls, 10–11 slow-ops, 10–12
// everything (with twice the peak memory, 20 MB for 10); lstm (l = 6, c =
// 8192) 349–375, 269–301, 199–304, 326–371; ode no difference (its maps
// call no host function); gmm (64_100_1000) 845–1463 for every policy, the
// machine's noise. So host calls are saved by default: recomputing them
// doubles lse's gradient, and saving more buys no clear time for memory.
// Arrays of inner loop nests are saved by another rule (Note [Saving inner
// loop nests] in ad/mod.rs).
//
// Note [Reverse mode of map]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~
// When a map body reads no active free array, the adjoints of its elements are
// independent: the reverse is another map, over the inputs and the result
// adjoints, that recomputes the body and runs its backward sweep (one joint VJP
// of the body, not one per input, which avoids Huot & Shaikhha's 3^p factor).
// Contributions to free scalars are per-element results, summed afterwards.
// When the body indexes an active free array, the contributions are sparse
// updates of that array's adjoint: then the reverse is a sequential loop whose
// state holds the adjoint buffer, updated in place (Futhark's accumulators).
//
// Note [Custom derivatives]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~
// `def f (x: f64) : f64 = … with jvp x x_tan = …` gives f's tangent map. Forward
// mode inlines it. Reverse mode needs the transpose of that map; since the rule
// is linear in the tangents, reverse mode applied to `t ↦ rule(x, t)` computes
// exactly that transpose (its value at t = 0 is irrelevant). So one rule serves
// both modes, as JAX's custom_jvp does; a rule that is not linear in its
// tangents would give wrong reverse-mode results, so elaboration rejects the
// ones whose non-linearity it can see (Note [Linear rules] in linearity.rs).
// A `with vjp x y y_bar = …` rule gives reverse mode the cotangent map
// directly (as JAX's custom_vjp): reverse mode inlines it at the call with the
// arguments, the results — the primal's own values, computed once — and the
// results' cotangents, and then never transposes the jvp rule, which may then
// be non-linear in the way an iterative tangent solve is. Forward mode has no
// use for a vjp rule: a function with only one is an error there (E0119),
// not a transposition of the vjp rule, which would need it linear in its
// cotangent. Both rules' lambdas take the results after the arguments, so a
// rule reads the primal result (`with jvp x t y`) instead of recomputing it.
//
// Note [While loops]
// ~~~~~~~~~~~~~~~~~~
// A `while` loop has no bound to size its tape. The forward sweep runs it
// once while counting iterations, then re-runs the body as a taped `for` loop
// of that many iterations (the body is pure, so the states are the same).
// This needs no annotation from the user, at the price of running the primal
// loop twice.
