//! Forward mode: the tangent (dual-number) transformation of the IR.
//!
//! Input: an AD-free body whose variables are fresh (a renamed copy of a
//! `jvp` lambda) and tangents for some of its free variables and parameters.
//! Output: the same statements, with every float variable `x` that depends on
//! a seeded variable paired with a tangent `x_tan` computed next to it.
//! Combinators get dual lambdas (a `map` maps over the primal and tangent
//! arrays at once; a `reduce` reduces pairs, which is associative when the
//! operator is), loops carry tangents as extra loop variables.
//!
//! Tangents are `Option<Atom>`: `None` is a symbolic zero, so constants,
//! integers and inactive values cost nothing.

use super::build::{is_addition, is_float, Builder};
use super::rules;
use crate::diagnostic::{Code, Diagnostic};
use crate::hash::{HashMap, HashSet};
use crate::ir::{Atom, BinOp, Body, Expr, IrType, Lambda, LoopForm, Stmt, UnOp, Var};

pub struct Fwd<'b, 'v> {
    pub b: &'b mut Builder<'v>,
    pub tan: HashMap<Var, Atom>,
    /// Vector mode: every tangent carries this many directions in an extra
    /// last dimension (Note [Vector-mode forward AD]).
    pub batch: Option<Atom>,
    /// The variables that depend on the differentiated parameters (activity
    /// analysis): a captured one is E0124 at a custom rule. Filled only when
    /// the body has a custom call.
    pub active: HashSet<Var>,
    /// Every variable the differentiated body reads: a custom call's
    /// residuals get tangents only when something reads them. Filled only
    /// when the body has a custom call.
    pub read: HashSet<Var>,
}

type R<T> = Result<T, Diagnostic>;

impl<'b, 'v> Fwd<'b, 'v> {
    pub fn new(b: &'b mut Builder<'v>) -> Fwd<'b, 'v> {
        Fwd { b, tan: HashMap::default(), batch: None, active: HashSet::default(), read: HashSet::default() }
    }

    pub fn tan(&self, a: Atom) -> Option<Atom> {
        match a {
            Atom::Var(v) => self.tan.get(&v).copied(),
            Atom::Const(_) => None,
        }
    }

    fn tan_or_zero(&mut self, a: Atom) -> Atom {
        match self.tan(a) {
            Some(t) => t,
            None => self.zero_tan(a),
        }
    }

    /// A zero tangent for a value like `like`.
    pub fn zero_tan(&mut self, like: Atom) -> Atom {
        zero_tangent(self.b, self.batch, like)
    }

    /// The type of the tangent of a value of type `ty`.
    fn tan_ty(&self, ty: IrType) -> IrType {
        if self.batch.is_some() {
            ty.lift()
        } else {
            ty
        }
    }

    /// `f` on the tangents of scalars, direction by direction: in vector
    /// mode a `map` over the directions (the arrays of `tans` are rows of
    /// the batch), otherwise `f` itself. `ty` is the result's scalar type.
    fn lanewise(&mut self, tans: &[Atom], ty: IrType, f: impl FnOnce(&mut Builder, &[Atom]) -> Atom) -> Atom {
        let Some(n) = self.batch else { return f(self.b, tans) };
        let types: Vec<IrType> = tans.iter().map(|t| self.b.ty(*t).row()).collect();
        let lam = self.b.lambda(&types, "tan", |b, ps| {
            let xs: Vec<Atom> = ps.iter().map(|p| Atom::Var(*p)).collect();
            vec![f(b, &xs)]
        });
        let arrays = tans.iter().map(|t| t.var().expect("batched tangents are arrays")).collect();
        self.b.emit1(Expr::Map { width: n, lam, arrays }, ty.lift(), "tan")
    }

    fn set(&mut self, v: Var, t: Option<Atom>) {
        if let Some(t) = t {
            if is_float(self.b.vars.ty(v)) {
                self.tan.insert(v, t);
            }
        }
    }

    /// `Σ partial_i · tangent_i` (of type `ty`), skipping symbolic zeros.
    fn combine(&mut self, ty: IrType, terms: &[(Option<Atom>, Option<Atom>)]) -> Option<Atom> {
        let present: Vec<(Atom, Atom)> = terms.iter().filter_map(|(d, t)| Some(((*d)?, (*t)?))).collect();
        if present.is_empty() {
            return None;
        }
        let tans: Vec<Atom> = present.iter().map(|(_, t)| *t).collect();
        Some(self.lanewise(&tans, ty, |b, xs| {
            let mut acc: Option<Atom> = None;
            for ((d, _), x) in present.iter().zip(xs) {
                let term = b.mul(*d, *x);
                acc = Some(match acc {
                    None => term,
                    Some(a) => b.add(a, term),
                });
            }
            acc.expect("one term at least")
        }))
    }

    /// Emits a body's statements with their tangents; returns the results' tangents.
    pub fn body(&mut self, body: Body) -> R<Vec<Option<Atom>>> {
        for s in body.stmts {
            self.stmt(s)?;
        }
        Ok(body.result.iter().map(|a| self.tan(*a)).collect())
    }

    fn emit(&mut self, s: Stmt) {
        self.b.push(s);
    }

    fn stmt(&mut self, s: Stmt) -> R<()> {
        let span = s.span;
        self.b.span = span;
        let binds = s.binds.clone();
        let x = binds.first().map(|v| Atom::Var(*v));
        match s.expr {
            Expr::Opaque(a) => {
                self.emit(Stmt { binds, expr: Expr::Opaque(a), span });
                let t = self.tan(a);
                self.set(s.binds[0], t);
            }
            Expr::Atom(a) => {
                self.emit(Stmt { binds, expr: Expr::Atom(a), span });
                let t = self.tan(a);
                self.set(s.binds[0], t);
            }
            Expr::Unary(op, a) => {
                self.emit(Stmt { binds, expr: Expr::Unary(op, a), span });
                let Some(ta) = self.tan(a) else { return Ok(()) };
                let ty = self.b.vars.ty(s.binds[0]);
                let t = match op {
                    UnOp::Neg => Some(self.lanewise(&[ta], ty, |b, xs| b.neg(xs[0]))),
                    _ => {
                        let d = rules::unary_partial(self.b, op, a, x.expect("unary binds one"));
                        self.combine(ty, &[(d, Some(ta))])
                    }
                };
                self.set(s.binds[0], t);
            }
            Expr::Binary(op, a, c) => {
                self.emit(Stmt { binds, expr: Expr::Binary(op, a, c), span });
                let (ta, tc) = (self.tan(a), self.tan(c));
                if ta.is_none() && tc.is_none() {
                    return Ok(());
                }
                let ty = self.b.vars.ty(s.binds[0]);
                let t = match op {
                    BinOp::Add => match (ta, tc) {
                        (Some(p), Some(q)) => Some(self.lanewise(&[p, q], ty, |b, xs| b.add(xs[0], xs[1]))),
                        (p, q) => p.or(q),
                    },
                    BinOp::Sub => match (ta, tc) {
                        (Some(p), Some(q)) => Some(self.lanewise(&[p, q], ty, |b, xs| b.sub(xs[0], xs[1]))),
                        (Some(p), None) => Some(p),
                        (None, Some(q)) => Some(self.lanewise(&[q], ty, |b, xs| b.neg(xs[0]))),
                        (None, None) => None,
                    },
                    _ => {
                        let (da, dc) = rules::binary_partials(
                            self.b,
                            op,
                            a,
                            c,
                            x.expect("one bind"),
                            (ta.is_some(), tc.is_some()),
                        );
                        self.combine(ty, &[(da, ta), (dc, tc)])
                    }
                };
                self.set(s.binds[0], t);
            }
            Expr::Convert(to, a) => {
                self.emit(Stmt { binds, expr: Expr::Convert(to, a), span });
                if let (Some(ta), true) = (self.tan(a), to.is_float()) {
                    let ty = IrType::scalar(to);
                    let t = self.lanewise(&[ta], ty, |b, xs| b.emit1(Expr::Convert(to, xs[0]), ty, "tan"));
                    self.set(s.binds[0], Some(t));
                }
            }
            Expr::Select(c, a, d) => {
                self.emit(Stmt { binds, expr: Expr::Select(c, a, d), span });
                if self.tan(a).is_some() || self.tan(d).is_some() {
                    let (ta, td) = (self.tan_or_zero(a), self.tan_or_zero(d));
                    let ty = self.b.vars.ty(s.binds[0]);
                    let t = self.lanewise(&[ta, td], ty, |b, xs| b.select(c, xs[0], xs[1]));
                    self.set(s.binds[0], Some(t));
                }
            }
            Expr::Index { array, indices } => {
                let ta = self.tan(Atom::Var(array));
                self.emit(Stmt { binds, expr: Expr::Index { array, indices: indices.clone() }, span });
                if let Some(Atom::Var(tv)) = ta {
                    let ty = self.tan_ty(self.b.vars.ty(s.binds[0]));
                    let t = self.b.emit1(Expr::Index { array: tv, indices }, ty, "tan");
                    self.set(s.binds[0], Some(t));
                }
            }
            Expr::UpdateAt { array, indices, value, accumulate } => {
                let (ta, tv) = (self.tan(Atom::Var(array)), self.tan(value));
                let needs = ta.is_some() || tv.is_some();
                // The tangent array is built before the primal one consumes
                // `array`. The tangent update consumes a fresh copy of the
                // tangent: tangents are shared where primals are copies
                // (`let a' = a` gives `a'` the tangent of `a`), so the
                // tangent of a user's `a' with [i] = v` may still be read
                // elsewhere (Note [Consumed arrays]).
                let base = if needs {
                    Some(match ta {
                        Some(t) => {
                            let ty = self.b.ty(t);
                            self.b.emit1(Expr::Atom(t), ty, "tan")
                        }
                        None => self.zero_tan(Atom::Var(array)),
                    })
                } else {
                    None
                };
                self.emit(Stmt {
                    binds,
                    expr: Expr::UpdateAt { array, indices: indices.clone(), value, accumulate },
                    span,
                });
                if let Some(Atom::Var(base)) = base {
                    let t = match (tv, accumulate) {
                        (None, true) => Atom::Var(base),
                        _ => {
                            let tv = match tv {
                                Some(tv) if self.b.ty(tv) == self.tan_ty(self.b.ty(value)) => tv,
                                _ => self.zero_tan(value),
                            };
                            let ty = self.tan_ty(self.b.vars.ty(s.binds[0]));
                            self.b.emit1(Expr::UpdateAt { array: base, indices, value: tv, accumulate }, ty, "tan")
                        }
                    };
                    self.set(s.binds[0], Some(t));
                }
            }
            Expr::Slice { array, start, end } => {
                self.emit(Stmt { binds, expr: Expr::Slice { array, start, end }, span });
                if let Some(Atom::Var(ta)) = self.tan(Atom::Var(array)) {
                    let ty = self.tan_ty(self.b.vars.ty(s.binds[0]));
                    let t = self.b.emit1(Expr::Slice { array: ta, start, end }, ty, "tan");
                    self.set(s.binds[0], Some(t));
                }
            }
            Expr::Replicate { count, value } => {
                self.emit(Stmt { binds, expr: Expr::Replicate { count, value }, span });
                if let Some(tv) = self.tan(value) {
                    let ty = self.tan_ty(self.b.vars.ty(s.binds[0]));
                    let t = self.b.emit1(Expr::Replicate { count, value: tv }, ty, "tan");
                    self.set(s.binds[0], Some(t));
                }
            }
            Expr::ArrayLit { elem, elems } => {
                self.emit(Stmt { binds, expr: Expr::ArrayLit { elem, elems: elems.clone() }, span });
                if elems.iter().any(|e| self.tan(*e).is_some()) {
                    let tans: Vec<Atom> = elems.iter().map(|e| self.tan_or_zero(*e)).collect();
                    let elem = self.tan_ty(elem);
                    let t = self.b.emit1(Expr::ArrayLit { elem, elems: tans }, elem.lift(), "tan");
                    self.set(s.binds[0], Some(t));
                }
            }
            Expr::Transpose(a) | Expr::Reverse(a) | Expr::Flatten(a) => {
                let ta = self.tan(Atom::Var(a));
                let rebuild = |v: Var, e: &Expr| match e {
                    Expr::Transpose(_) => Expr::Transpose(v),
                    Expr::Reverse(_) => Expr::Reverse(v),
                    _ => Expr::Flatten(v),
                };
                let tangent_expr = ta.and_then(|t| t.var()).map(|tv| rebuild(tv, &s.expr));
                self.emit(Stmt { binds, expr: s.expr, span });
                if let Some(e) = tangent_expr {
                    let ty = self.tan_ty(self.b.vars.ty(s.binds[0]));
                    let t = self.b.emit1(e, ty, "tan");
                    self.set(s.binds[0], Some(t));
                }
            }
            Expr::Unflatten { array, rows, cols } => {
                self.emit(Stmt { binds, expr: Expr::Unflatten { array, rows, cols }, span });
                if let Some(Atom::Var(ta)) = self.tan(Atom::Var(array)) {
                    let ty = self.tan_ty(self.b.vars.ty(s.binds[0]));
                    let t = self.b.emit1(Expr::Unflatten { array: ta, rows, cols }, ty, "tan");
                    self.set(s.binds[0], Some(t));
                }
            }
            Expr::Concat(a, c) => {
                self.emit(Stmt { binds, expr: Expr::Concat(a, c), span });
                if self.tan(Atom::Var(a)).is_some() || self.tan(Atom::Var(c)).is_some() {
                    let (Atom::Var(ta), Atom::Var(tc)) =
                        (self.tan_or_zero(Atom::Var(a)), self.tan_or_zero(Atom::Var(c)))
                    else {
                        unreachable!("array tangents are variables")
                    };
                    let ty = self.tan_ty(self.b.vars.ty(s.binds[0]));
                    let t = self.b.emit1(Expr::Concat(ta, tc), ty, "tan");
                    self.set(s.binds[0], Some(t));
                }
            }
            Expr::Scatter { dest, indices, values } => {
                self.emit(Stmt { binds, expr: Expr::Scatter { dest, indices, values }, span });
                if self.tan(Atom::Var(dest)).is_some() || self.tan(Atom::Var(values)).is_some() {
                    let (Atom::Var(td), Atom::Var(tv)) =
                        (self.tan_or_zero(Atom::Var(dest)), self.tan_or_zero(Atom::Var(values)))
                    else {
                        unreachable!("array tangents are variables")
                    };
                    let ty = self.tan_ty(self.b.vars.ty(s.binds[0]));
                    let t = self.b.emit1(Expr::Scatter { dest: td, indices, values: tv }, ty, "tan");
                    self.set(s.binds[0], Some(t));
                }
            }
            Expr::Hist { dest, lam, neutral, indices, values } => {
                let active = self.tan(Atom::Var(dest)).is_some() || self.tan(Atom::Var(values)).is_some();
                if active && !is_addition(&lam) {
                    return Err(unsupported(
                        "forward mode through `reduce_by_index` with an operator other than `+`",
                        span,
                    ));
                }
                let lam_copy = active.then(|| match self.batch {
                    None => rename(self.b, &lam),
                    // Rows of directions, added elementwise.
                    Some(n) => {
                        let row = self.tan_ty(self.b.vars.ty(lam.params[0]));
                        self.b.lambda(&[row, row], "tan", |b, ps| {
                            let add = b.lambda(&[row.row(), row.row()], "x", |b, qs| {
                                vec![b.add(Atom::Var(qs[0]), Atom::Var(qs[1]))]
                            });
                            vec![b.emit1(Expr::Map { width: n, lam: add, arrays: ps.to_vec() }, row, "t")]
                        })
                    }
                });
                self.emit(Stmt { binds, expr: Expr::Hist { dest, lam, neutral, indices, values }, span });
                if let Some(lam2) = lam_copy {
                    let (Atom::Var(td), Atom::Var(tv)) =
                        (self.tan_or_zero(Atom::Var(dest)), self.tan_or_zero(Atom::Var(values)))
                    else {
                        unreachable!("array tangents are variables")
                    };
                    let ty = self.tan_ty(self.b.vars.ty(s.binds[0]));
                    let zero = self.zero_tan(Atom::Const(crate::ir::Const::of(ty.elem, 0.0)));
                    let t =
                        self.b.emit1(Expr::Hist { dest: td, lam: lam2, neutral: zero, indices, values: tv }, ty, "tan");
                    self.set(s.binds[0], Some(t));
                }
            }
            Expr::Map { width, lam, arrays } => self.map(binds, width, lam, arrays, span)?,
            Expr::Reduce { lam, neutral, arrays } => self.reduce(binds, lam, neutral, arrays, false, span)?,
            Expr::Scan { lam, neutral, arrays } => self.reduce(binds, lam, neutral, arrays, true, span)?,
            Expr::If { cond, then_body, else_body } => self.if_(binds, cond, then_body, else_body, span)?,
            Expr::Loop { params, init, form, body } => self.loop_(binds, params, init, form, body, span)?,
            e @ (Expr::Shape { .. } | Expr::Iota(_) | Expr::Argsort { .. } | Expr::Check { .. }) => {
                self.emit(Stmt { binds, expr: e, span })
            }
            Expr::Call { .. } => {
                return Err(Diagnostic::internal("ad", "a call of an entry reached forward mode (it is inlined first)", span));
            }
            custom @ Expr::Custom { .. } => {
                super::check_captures(self.b.vars, &custom, span, |v| self.active.contains(&v))?;
                let Expr::Custom { primal, jvp, vjp, args, residuals } = custom else { unreachable!() };
                let active = args.iter().any(|a| self.tan(*a).is_some());
                if active && jvp.is_none() {
                    return Err(Diagnostic::error(
                        Code::E0119,
                        "forward mode needs a `with jvp` rule, and this function has only a `with vjp` rule",
                        span,
                        "differentiated in forward mode here",
                    )
                    .with_note("jvp, jacfwd and hessian (forward over reverse) differentiate in forward mode")
                    .with_help("add a `with jvp` rule to the definition, or use vjp, grad or jacrev"));
                }
                let rule = jvp.as_ref().filter(|_| active).map(|l| rename(self.b, l));
                // The arguments' tangents, zeros for the inactive ones (only
                // built when some argument is active).
                let tans: Vec<Atom> =
                    if active { args.iter().map(|a| self.tan_or_zero(*a)).collect() } else { Vec::new() };
                // The residuals' tangents, when code reads them: a rule
                // inlined by an inner derivative (Note [Named residuals] in
                // elab/mod.rs). Forward mode through the primal gives them.
                let m = s.binds.len() - residuals;
                if active && s.binds[m..].iter().any(|v| self.read.contains(v)) {
                    let (_, all) = super::expand_jvp(self.b, &primal, &args, &tans, self.batch)?;
                    for (v, t) in s.binds[m..].iter().zip(&all[m..]) {
                        if !super::build::is_const(*t, 0.0) {
                            self.set(*v, Some(*t));
                        }
                    }
                }
                self.emit(Stmt { binds, expr: Expr::Custom { primal, jvp, vjp, args: args.clone(), residuals }, span });
                if let Some(rule) = rule {
                    // The user's rule gives the tangents directly, from the
                    // arguments, the results and the arguments' tangents.
                    let primals: Vec<Atom> =
                        args.iter().copied().chain(s.binds.iter().map(|v| Atom::Var(*v))).collect();
                    let results = match self.batch {
                        None => {
                            let rule_args: Vec<Atom> = primals.iter().chain(&tans).copied().collect();
                            self.b.inline(&rule, &rule_args).1
                        }
                        // Direction by direction: a map over the rows of the tangents.
                        Some(n) => {
                            if args.iter().any(|a| !self.b.ty(*a).is_scalar()) {
                                return Err(unsupported(
                                    "vector-mode forward AD through a custom rule with array arguments",
                                    span,
                                ));
                            }
                            let row_types: Vec<IrType> = tans.iter().map(|t| self.b.ty(*t).row()).collect();
                            let lam = self.b.lambda(&row_types, "tan", |b, ps| {
                                let rule_args: Vec<Atom> =
                                    primals.iter().copied().chain(ps.iter().map(|p| Atom::Var(*p))).collect();
                                b.inline(&rule, &rule_args).1
                            });
                            let types: Vec<IrType> = s.binds[..m].iter().map(|v| self.b.vars.ty(*v).lift()).collect();
                            let arrays = tans.iter().map(|t| t.var().expect("batched tangents are arrays")).collect();
                            let binds = self.b.emit(Expr::Map { width: n, lam, arrays }, &types, "tan");
                            binds.into_iter().map(Atom::Var).collect()
                        }
                    };
                    for (v, t) in s.binds[..m].iter().zip(results) {
                        self.set(*v, Some(t));
                    }
                }
            }
            Expr::Jvp { .. } | Expr::Vjp { .. } => {
                return Err(Diagnostic::internal("ad", "nested AD operator reached forward mode", span));
            }
        }
        Ok(())
    }

    fn map(
        &mut self,
        binds: Vec<Var>,
        width: Atom,
        lam: Lambda,
        arrays: Vec<Var>,
        span: crate::diagnostic::Span,
    ) -> R<()> {
        let array_tans: Vec<Option<Atom>> = arrays.iter().map(|a| self.tan(Atom::Var(*a))).collect();
        let mut params = lam.params.clone();
        let mut all_arrays = arrays.clone();
        for (k, t) in array_tans.iter().enumerate() {
            if let Some(Atom::Var(tv)) = t {
                let p = lam.params[k];
                let ty = self.tan_ty(self.b.vars.ty(p));
                let tp = self.b.fresh("tan", ty);
                self.tan.insert(p, Atom::Var(tp));
                params.push(tp);
                all_arrays.push(*tv);
            }
        }
        let body = lam.body;
        let mut body_results = body.result.clone();
        let (stmts, result_tans) = self.b_block(|f| f.body(body))?;
        let mut tan_binds = Vec::new();
        for (k, t) in result_tans.iter().enumerate() {
            if let Some(t) = t {
                body_results.push(*t);
                let ty = self.tan_ty(self.b.vars.ty(binds[k]));
                tan_binds.push((k, self.b.fresh("tan", ty)));
            }
        }
        let new_lam = Lambda { params, body: Body { stmts: stmts.into(), result: body_results } };
        let mut all_binds = binds.clone();
        all_binds.extend(tan_binds.iter().map(|(_, v)| *v));
        self.b.push(Stmt { binds: all_binds, expr: Expr::Map { width, lam: new_lam, arrays: all_arrays }, span });
        for (k, v) in tan_binds {
            self.tan.insert(binds[k], Atom::Var(v));
        }
        Ok(())
    }

    /// Runs `f` in a fresh block of the builder.
    fn b_block<T>(&mut self, f: impl FnOnce(&mut Self) -> R<T>) -> R<(Vec<Stmt>, T)> {
        self.b.blocks.push(Vec::new());
        let r = f(self);
        let stmts = self.b.blocks.pop().expect("pushed above");
        Ok((stmts, r?))
    }

    fn reduce(
        &mut self,
        binds: Vec<Var>,
        lam: Lambda,
        neutral: Vec<Atom>,
        arrays: Vec<Var>,
        is_scan: bool,
        span: crate::diagnostic::Span,
    ) -> R<()> {
        let k = arrays.len();
        let active =
            arrays.iter().any(|a| self.tan(Atom::Var(*a)).is_some()) || neutral.iter().any(|n| self.tan(*n).is_some());
        if !active {
            let expr =
                if is_scan { Expr::Scan { lam, neutral, arrays } } else { Expr::Reduce { lam, neutral, arrays } };
            self.b.push(Stmt { binds, expr, span });
            return Ok(());
        }
        // Dual operator on (values, tangents): parameters [acc, acc_tan, x, x_tan].
        let row_types: Vec<IrType> = lam.params[..k].iter().map(|p| self.b.vars.ty(*p)).collect();
        let tan_types: Vec<IrType> = row_types.iter().map(|t| self.tan_ty(*t)).collect();
        let acc_tans: Vec<Var> = tan_types.iter().map(|t| self.b.fresh("acc_tan", *t)).collect();
        let x_tans: Vec<Var> = tan_types.iter().map(|t| self.b.fresh("x_tan", *t)).collect();
        for i in 0..k {
            if is_float(row_types[i]) {
                self.tan.insert(lam.params[i], Atom::Var(acc_tans[i]));
                self.tan.insert(lam.params[k + i], Atom::Var(x_tans[i]));
            }
        }
        let acc_params = lam.params[..k].to_vec();
        let (stmts, tans) = self.b_block(|f| {
            let tans = f.body(lam.body.clone())?;
            Ok(tans
                .iter()
                .zip(&acc_params)
                .map(|(t, p)| t.unwrap_or_else(|| f.zero_tan(Atom::Var(*p))))
                .collect::<Vec<_>>())
        })?;
        let mut result = lam.body.result.clone();
        result.extend(tans);
        let mut params: Vec<Var> = lam.params[..k].to_vec();
        params.extend(&acc_tans);
        params.extend(&lam.params[k..]);
        params.extend(&x_tans);
        let new_lam = Lambda { params, body: Body { stmts: stmts.into(), result } };
        let mut new_neutral = neutral.clone();
        for n in &neutral {
            let z = self.tan_or_zero(*n);
            new_neutral.push(z);
        }
        let mut new_arrays = arrays.clone();
        for a in &arrays {
            let Atom::Var(t) = self.tan_or_zero(Atom::Var(*a)) else { unreachable!("array tangents are variables") };
            new_arrays.push(t);
        }
        let tan_binds: Vec<Var> = binds.iter().map(|b| self.b.fresh("tan", self.tan_ty(self.b.vars.ty(*b)))).collect();
        let mut all_binds = binds.clone();
        all_binds.extend(&tan_binds);
        let expr = if is_scan {
            Expr::Scan { lam: new_lam, neutral: new_neutral, arrays: new_arrays }
        } else {
            Expr::Reduce { lam: new_lam, neutral: new_neutral, arrays: new_arrays }
        };
        self.b.push(Stmt { binds: all_binds, expr, span });
        for (b, t) in binds.iter().zip(tan_binds) {
            self.set(*b, Some(Atom::Var(t)));
        }
        Ok(())
    }

    fn if_(
        &mut self,
        binds: Vec<Var>,
        cond: Atom,
        then_body: Body,
        else_body: Body,
        span: crate::diagnostic::Span,
    ) -> R<()> {
        let (then_stmts, then_tans) = self.b_block(|f| f.body(then_body.clone()))?;
        let (else_stmts, else_tans) = self.b_block(|f| f.body(else_body.clone()))?;
        let mut then_result = then_body.result.clone();
        let mut else_result = else_body.result.clone();
        let mut then_stmts = then_stmts;
        let mut else_stmts = else_stmts;
        let mut tan_binds = Vec::new();
        for k in 0..binds.len() {
            if then_tans[k].is_none() && else_tans[k].is_none() {
                continue;
            }
            let ty = self.tan_ty(self.b.vars.ty(binds[k]));
            let batch = self.batch;
            let t_then = match then_tans[k] {
                Some(t) => t,
                None => {
                    let (stmts, z) = self.b.block(|b| zero_tangent(b, batch, then_body.result[k]));
                    then_stmts.extend(stmts);
                    z
                }
            };
            let t_else = match else_tans[k] {
                Some(t) => t,
                None => {
                    let (stmts, z) = self.b.block(|b| zero_tangent(b, batch, else_body.result[k]));
                    else_stmts.extend(stmts);
                    z
                }
            };
            then_result.push(t_then);
            else_result.push(t_else);
            tan_binds.push((k, self.b.fresh("tan", ty)));
        }
        let mut all_binds = binds.clone();
        all_binds.extend(tan_binds.iter().map(|(_, v)| *v));
        self.b.push(Stmt {
            binds: all_binds,
            expr: Expr::If {
                cond,
                then_body: Body { stmts: then_stmts.into(), result: then_result },
                else_body: Body { stmts: else_stmts.into(), result: else_result },
            },
            span,
        });
        for (k, v) in tan_binds {
            self.tan.insert(binds[k], Atom::Var(v));
        }
        Ok(())
    }

    fn loop_(
        &mut self,
        binds: Vec<Var>,
        params: Vec<Var>,
        init: Vec<Atom>,
        form: LoopForm,
        body: Body,
        span: crate::diagnostic::Span,
    ) -> R<()> {
        // Every float loop variable carries a tangent (zero when its initial value has none):
        // whether the body makes it active is only known after the transformation.
        let dual: Vec<usize> = (0..params.len()).filter(|k| is_float(self.b.vars.ty(params[*k]))).collect();
        let any_seed = init.iter().any(|a| self.tan(*a).is_some()) || {
            let fv = super::build::free_vars(&body);
            fv.iter().any(|v| self.tan.contains_key(v))
        };
        if !any_seed {
            self.b.push(Stmt { binds, expr: Expr::Loop { params, init, form, body }, span });
            return Ok(());
        }
        let mut tan_params = Vec::new();
        let mut tan_init = Vec::new();
        for &k in &dual {
            let ty = self.tan_ty(self.b.vars.ty(params[k]));
            let tp = self.b.fresh("tan", ty);
            self.tan.insert(params[k], Atom::Var(tp));
            tan_params.push(tp);
            tan_init.push(self.tan_or_zero(init[k]));
        }
        let (mut stmts, tans) = self.b_block(|f| f.body(body.clone()))?;
        let mut result = body.result.clone();
        let batch = self.batch;
        for &k in &dual {
            let t = match tans[k] {
                Some(t) => t,
                None => {
                    let (zs, z) = self.b.block(|b| zero_tangent(b, batch, body.result[k]));
                    stmts.extend(zs);
                    z
                }
            };
            result.push(t);
        }
        let mut all_params = params.clone();
        all_params.extend(&tan_params);
        let mut all_init = init.clone();
        all_init.extend(tan_init);
        let tan_binds: Vec<Var> =
            dual.iter().map(|k| self.b.fresh("tan", self.tan_ty(self.b.vars.ty(binds[*k])))).collect();
        let mut all_binds = binds.clone();
        all_binds.extend(&tan_binds);
        self.b.push(Stmt {
            binds: all_binds,
            expr: Expr::Loop { params: all_params, init: all_init, form, body: Body { stmts: stmts.into(), result } },
            span,
        });
        for (k, t) in dual.iter().zip(tan_binds) {
            self.tan.insert(binds[*k], Atom::Var(t));
        }
        Ok(())
    }
}

/// A zero tangent for a value like `like`: zeros of its shape, and in vector
/// mode (`batch`) with a last dimension of that many directions.
pub fn zero_tangent(b: &mut Builder, batch: Option<Atom>, like: Atom) -> Atom {
    let Some(n) = batch else { return b.zeros_like(like) };
    let t = b.ty(like);
    let zero = Atom::Const(crate::ir::Const::of(t.elem, 0.0));
    let mut acc = b.emit1(Expr::Replicate { count: n, value: zero }, IrType { elem: t.elem, rank: 1 }, "zeros");
    for d in (0..t.rank).rev() {
        let m = b.shape(like, d);
        acc = b.emit1(Expr::Replicate { count: m, value: acc }, IrType { elem: t.elem, rank: t.rank - d + 1 }, "zeros");
    }
    acc
}

fn rename(b: &mut Builder, lam: &Lambda) -> Lambda {
    super::build::rename_lambda(b.vars, lam, &mut HashMap::default())
}

pub fn unsupported(what: &str, span: crate::diagnostic::Span) -> Diagnostic {
    Diagnostic::error(Code::E0121, format!("{what} is not supported"), span, "differentiated here")
        .with_help("rewrite this part with `map`, `reduce` or a loop, or apply `stop_gradient` to it")
}

// Note [Vector-mode forward AD]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// `jacfwd f x` with n input directions can run n `jvp`s (one direction each,
// the primal recomputed in each unless the optimiser hoists it) or one `jvp`
// that carries all n directions at once. In vector mode (`Fwd::batch`) the
// tangent of a value of shape S has shape S ++ [n]: the directions are the
// innermost dimension, so the tangent of a row is a row of the tangent, and
// every rule that only moves, indexes or combines rows (index, slice,
// replicate, transpose, concat, scatter, map, reduce, loops, branches) is the
// scalar rule with lifted types. Scalar arithmetic on tangents — `a·dx + b·dy`
// — becomes a `map` over the n directions of the tangent rows
// (`Fwd::lanewise`), with the partial derivatives computed once, outside it.
// Zero tangents are zeros with the extra dimension. The primal runs once;
// the tangent arithmetic is n times the scalar one, in loops over the
// directions that the loop optimiser can vectorise. A custom rule with scalar
// arguments runs direction by direction in a map; one with array arguments,
// written for a single direction, cannot be lifted, and elaboration then
// falls back to one `jvp` per direction (`elab::builtins::batchable`).
