//! Shared machinery of the AD transformations: a statement builder over a
//! program's [`VarTable`], activity analysis and zero values. Renaming and
//! free variables are the IR's (`crate::ir::scope`), re-exported here.

use crate::diagnostic::Span;
use crate::hash::{HashMap, HashSet};
use crate::ir::{Atom, BinOp, Body, Const, Expr, IrType, Lambda, LoopForm, Stmt, UnOp, Var, VarTable};
use crate::types::ScalarType;

pub use crate::ir::scope::{free_vars, free_vars_lambda, is_addition, is_const, is_float, rename_body, rename_lambda};

/// Emits statements into nested blocks; the last block is the current one.
pub struct Builder<'v> {
    pub vars: &'v mut VarTable,
    pub blocks: Vec<Vec<Stmt>>,
    pub span: Span,
    /// What the forward sweep of a map saves for its reverse.
    pub save: super::Save,
    /// The program's recomputed statements so far (see `ir::Program::recomputed`);
    /// renaming a body carries the marks over to the copies.
    pub recomputed: HashSet<Var>,
}

impl<'v> Builder<'v> {
    pub fn new(vars: &'v mut VarTable, span: Span) -> Builder<'v> {
        Builder { vars, blocks: vec![Vec::new()], span, save: super::Save::default(), recomputed: HashSet::default() }
    }

    pub fn ty(&self, a: Atom) -> IrType {
        self.vars.atom_type(a)
    }

    pub fn fresh(&mut self, name: &str, ty: IrType) -> Var {
        self.vars.fresh(name, ty)
    }

    pub fn push(&mut self, stmt: Stmt) {
        self.blocks.last_mut().expect("a block is open").push(stmt);
    }

    pub fn emit(&mut self, expr: Expr, types: &[IrType], name: &str) -> Vec<Var> {
        let binds: Vec<Var> = types.iter().map(|t| self.vars.fresh(name, *t)).collect();
        let span = self.span;
        self.push(Stmt { binds: binds.clone(), expr, span });
        binds
    }

    pub fn emit1(&mut self, expr: Expr, ty: IrType, name: &str) -> Atom {
        Atom::Var(self.emit(expr, &[ty], name)[0])
    }

    /// Runs `f` in a fresh block; returns the block's statements and `f`'s result.
    pub fn block<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> (Vec<Stmt>, T) {
        self.blocks.push(Vec::new());
        let r = f(self);
        (self.blocks.pop().expect("pushed above"), r)
    }

    pub fn body(&mut self, f: impl FnOnce(&mut Self) -> Vec<Atom>) -> Body {
        let (stmts, result) = self.block(f);
        Body { stmts: stmts.into(), result }
    }

    pub fn lambda(&mut self, types: &[IrType], name: &str, f: impl FnOnce(&mut Self, &[Var]) -> Vec<Atom>) -> Lambda {
        let params: Vec<Var> = types.iter().map(|t| self.vars.fresh(name, *t)).collect();
        let body = self.body(|b| f(b, &params));
        Lambda { params, body }
    }

    /// `loop (params, count) = (init, 0) while cond do (body, count + 1)`: the
    /// `while` loop, also counting its iterations (its last result). Reverse
    /// mode runs every `while` loop so before taping it as a `for` loop, and
    /// `--checkpoint` to know how long its segments are.
    pub fn counting_while(&mut self, params: &[Var], init: &[Atom], cond: &Body, body: &Body) -> Expr {
        let count = self.fresh("count", IrType::I64);
        let next = self.fresh("count", IrType::I64);
        let mut counted = body.clone();
        let step = Expr::Binary(BinOp::Add, Atom::Var(count), Atom::i64(1));
        counted.stmts.push(Stmt { binds: vec![next], expr: step, span: self.span });
        counted.result.push(Atom::Var(next));
        let mut params = params.to_vec();
        params.push(count);
        let mut init = init.to_vec();
        init.push(Atom::i64(0));
        Expr::Loop { params, init, form: LoopForm::While { cond: cond.clone() }, body: counted }
    }

    pub fn shape(&mut self, array: Atom, dim: u32) -> Atom {
        let Atom::Var(v) = array else { panic!("internal compiler error: shape of a constant") };
        self.emit1(Expr::Shape { array: v, dim }, IrType::I64, "n")
    }

    pub fn iota(&mut self, n: Atom) -> Var {
        self.emit(Expr::Iota(n), &[IrType::array(ScalarType::I64, 1)], "iota")[0]
    }

    // ---- Scalar arithmetic with constant folding of the trivial cases ----

    pub fn bin(&mut self, op: BinOp, a: Atom, b: Atom) -> Atom {
        let t = self.ty(a);
        let rt = if op.is_comparison() { IrType::BOOL } else { t };
        self.emit1(Expr::Binary(op, a, b), rt, "t")
    }

    pub fn add(&mut self, a: Atom, b: Atom) -> Atom {
        if is_const(a, 0.0) {
            return b;
        }
        if is_const(b, 0.0) {
            return a;
        }
        self.bin(BinOp::Add, a, b)
    }

    pub fn sub(&mut self, a: Atom, b: Atom) -> Atom {
        if is_const(b, 0.0) {
            return a;
        }
        self.bin(BinOp::Sub, a, b)
    }

    pub fn mul(&mut self, a: Atom, b: Atom) -> Atom {
        if is_const(a, 1.0) {
            return b;
        }
        if is_const(b, 1.0) {
            return a;
        }
        self.bin(BinOp::Mul, a, b)
    }

    pub fn div(&mut self, a: Atom, b: Atom) -> Atom {
        if is_const(b, 1.0) {
            return a;
        }
        self.bin(BinOp::Div, a, b)
    }

    pub fn neg(&mut self, a: Atom) -> Atom {
        let t = self.ty(a);
        self.emit1(Expr::Unary(UnOp::Neg, a), t, "t")
    }

    pub fn unary(&mut self, op: UnOp, a: Atom) -> Atom {
        let t = op.prim().result_type(self.ty(a));
        self.emit1(Expr::Unary(op, a), t, "t")
    }

    pub fn select(&mut self, c: Atom, a: Atom, b: Atom) -> Atom {
        let t = self.ty(a);
        self.emit1(Expr::Select(c, a, b), t, "t")
    }

    pub fn constant(&self, like: IrType, v: f64) -> Atom {
        Atom::Const(Const::of(like.elem, v))
    }

    /// Zeros with the type and shape of `x`.
    pub fn zeros_like(&mut self, x: Atom) -> Atom {
        let t = self.ty(x);
        let mut acc = self.constant(t, 0.0);
        for d in (0..t.rank).rev() {
            let n = self.shape(x, d);
            acc = self.emit1(
                Expr::Replicate { count: n, value: acc },
                IrType { elem: t.elem, rank: t.rank - d },
                "zeros",
            );
        }
        acc
    }

    /// Elementwise `a + b` for values of any rank.
    pub fn add_values(&mut self, a: Atom, b: Atom) -> Atom {
        let t = self.ty(a);
        if t.is_scalar() {
            return self.add(a, b);
        }
        self.zip_with(a, b, &|bl, x, y| bl.add(x, y))
    }

    /// Elementwise combination of two equally shaped arrays (nested maps).
    pub fn zip_with(&mut self, a: Atom, b: Atom, f: &dyn Fn(&mut Self, Atom, Atom) -> Atom) -> Atom {
        let t = self.ty(a);
        if t.is_scalar() {
            return f(self, a, b);
        }
        let (Atom::Var(av), Atom::Var(bv)) = (a, b) else { panic!("internal compiler error: arrays are variables") };
        let width = self.shape(a, 0);
        let mut rt = t.row();
        let lam = self.lambda(&[t.row(), t.row()], "x", |bl, ps| {
            let r = bl.zip_with(Atom::Var(ps[0]), Atom::Var(ps[1]), f);
            rt = bl.ty(r);
            vec![r]
        });
        self.emit1(Expr::Map { width, lam, arrays: vec![av, bv] }, rt.lift(), "m")
    }

    /// Elementwise map of one array of any rank.
    pub fn map_values(&mut self, a: Atom, f: &dyn Fn(&mut Self, Atom) -> Atom) -> Atom {
        let t = self.ty(a);
        if t.is_scalar() {
            return f(self, a);
        }
        let Atom::Var(av) = a else { panic!("internal compiler error: arrays are variables") };
        let width = self.shape(a, 0);
        let mut rt = t.row();
        let lam = self.lambda(&[t.row()], "x", |bl, ps| {
            let r = bl.map_values(Atom::Var(ps[0]), f);
            rt = bl.ty(r);
            vec![r]
        });
        self.emit1(Expr::Map { width, lam, arrays: vec![av] }, rt.lift(), "m")
    }

    /// Sum over the outer dimension of an array (any rank): the transpose of replicate.
    pub fn sum_outer(&mut self, a: Atom) -> Atom {
        let t = self.ty(a);
        let row = t.row();
        let Atom::Var(av) = a else { panic!("internal compiler error: arrays are variables") };
        let lam = self.lambda(&[row, row], "acc", |bl, ps| vec![bl.add_values(Atom::Var(ps[0]), Atom::Var(ps[1]))]);
        let neutral = if row.is_scalar() {
            self.constant(row, 0.0)
        } else {
            // The neutral element of a vector sum: zeros shaped like a row.
            let first = self.emit1(Expr::Index { array: av, indices: vec![Atom::i64(0)] }, row, "row");
            self.zeros_like(first)
        };
        self.emit1(Expr::Reduce { lam, neutral: vec![neutral], arrays: vec![av] }, row, "sum")
    }

    /// Inlines a lambda applied to `args`: each parameter becomes a fresh copy
    /// of its argument (never the argument itself: a free use of the same
    /// variable inside the body must stay distinct, see Note [Copies of
    /// parameters]); the body is renamed. Returns the renamed results.
    pub fn inline(&mut self, lam: &Lambda, args: &[Atom]) -> (Vec<Var>, Vec<Atom>) {
        let (params, body) = self.prepare(lam, args);
        for s in body.stmts {
            self.push(s);
        }
        (params, body.result)
    }

    /// Like [`Self::inline`] but returns the renamed body instead of emitting it
    /// (the parameter copies are emitted).
    pub fn prepare(&mut self, lam: &Lambda, args: &[Atom]) -> (Vec<Var>, Body) {
        let mut subst = HashMap::default();
        let mut params = Vec::new();
        for (&p, &a) in lam.params.iter().zip(args) {
            let ty = self.vars.ty(p);
            let name = self.vars.base_name(p).to_string();
            let copy = self.emit(Expr::Atom(a), &[ty], &name)[0];
            subst.insert(p, Atom::Var(copy));
            params.push(copy);
        }
        let body = rename_body(self.vars, &lam.body, &mut subst);
        self.carry_marks(&subst);
        (params, body)
    }

    /// Marks the copies of recomputed statements' variables as recomputed too.
    pub fn carry_marks(&mut self, subst: &HashMap<Var, Atom>) {
        for (old, new) in subst {
            if let (true, Atom::Var(new)) = (self.recomputed.contains(old), new) {
                self.recomputed.insert(*new);
            }
        }
    }
}

// ---- Activity analysis ----

/// The float variables that depend on `seeds`: only they get tangents or adjoints.
pub fn active_vars(vars: &VarTable, body: &Body, seeds: &[Var]) -> HashSet<Var> {
    let mut active: HashSet<Var> = seeds.iter().copied().filter(|v| is_float(vars.ty(*v))).collect();
    // Loops make this a fixpoint; two or three rounds are enough in practice.
    loop {
        let before = active.len();
        mark_body(vars, body, &mut active);
        if active.len() == before {
            return active;
        }
    }
}

fn depends(a: Atom, active: &HashSet<Var>) -> bool {
    matches!(a, Atom::Var(v) if active.contains(&v))
}

fn mark_body(vars: &VarTable, body: &Body, active: &mut HashSet<Var>) {
    for s in &body.stmts {
        let mut any = s.expr.operands().iter().any(|a| depends(*a, active));
        match &s.expr {
            Expr::Map { lam, arrays, .. } => {
                for (p, a) in lam.params.iter().zip(arrays) {
                    if active.contains(a) && is_float(vars.ty(*p)) {
                        active.insert(*p);
                    }
                }
                mark_body(vars, &lam.body, active);
                any |= lam.body.result.iter().any(|a| depends(*a, active));
            }
            Expr::Reduce { lam, neutral, arrays } | Expr::Scan { lam, neutral, arrays } => {
                let inputs_active =
                    neutral.iter().any(|a| depends(*a, active)) || arrays.iter().any(|a| active.contains(a));
                if inputs_active {
                    for p in &lam.params {
                        if is_float(vars.ty(*p)) {
                            active.insert(*p);
                        }
                    }
                }
                mark_body(vars, &lam.body, active);
                any |= inputs_active || lam.body.result.iter().any(|a| depends(*a, active));
            }
            Expr::Hist { lam, .. } => {
                if any {
                    for p in &lam.params {
                        active.insert(*p);
                    }
                }
                mark_body(vars, &lam.body, active);
            }
            Expr::If { then_body, else_body, .. } => {
                mark_body(vars, then_body, active);
                mark_body(vars, else_body, active);
                any |= then_body.result.iter().chain(&else_body.result).any(|a| depends(*a, active));
            }
            Expr::Loop { params, init, form, body } => {
                for (p, i) in params.iter().zip(init) {
                    if depends(*i, active) && is_float(vars.ty(*p)) {
                        active.insert(*p);
                    }
                }
                if let LoopForm::While { cond } = form {
                    mark_body(vars, cond, active);
                }
                mark_body(vars, body, active);
                for (p, r) in params.iter().zip(&body.result) {
                    if depends(*r, active) && is_float(vars.ty(*p)) {
                        active.insert(*p);
                    }
                }
                any |= params.iter().any(|p| active.contains(p));
            }
            // A value captured by a function argument makes the result
            // active, so that reverse mode reaches the call and reports it
            // (E0124, Note [Static parameters of rules] in elab/mod.rs).
            Expr::Custom { .. } => {
                any |= s.expr.lambdas().into_iter().flat_map(free_vars_lambda).any(|v| active.contains(&v))
            }
            Expr::Jvp { .. } | Expr::Vjp { .. } => {}
            Expr::Unary(UnOp::StopGradient, _) => any = false,
            _ => {}
        }
        if any {
            for b in &s.binds {
                if is_float(vars.ty(*b)) {
                    active.insert(*b);
                }
            }
        }
    }
}

// Note [Copies of parameters]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~
// `jvp (\y -> y * x) x dx` must give `x * dx`, not `2 * x * dx`: the lambda's
// parameter `y` and the captured `x` are different variables even though the
// caller passes `x` for `y`. Substituting the argument for the parameter would
// merge them and confuse the perturbations (Siskind & Pearlmutter). So a
// parameter is bound to a *copy* of its argument, and only the copy is seeded.
