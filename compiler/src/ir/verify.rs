//! The IR verifier: checks the invariants every pass relies on, so a pass
//! that breaks them fails right after it runs rather than somewhere
//! downstream with a confusing symptom.
//!
//! Input: a [`Program`] (or one [`Func`] of it). Output: `Ok(())`, or every
//! violation found as a [`VerifyError`] (all of them, not just the first, so a
//! broken pass can be diagnosed from one run). Messages name the offending
//! variables with [`VarTable::display`](super::VarTable::display), as the
//! printer does, so they can be matched against an IR dump.
//!
//! Checks:
//! - **Indexing**: every variable is in the program's `VarTable` (otherwise the
//!   other checks could not look up types, and the function is not checked further).
//! - **SSA**: every variable is bound exactly once in a function — function
//!   parameters, statement binds, lambda parameters, loop parameters and loop
//!   indices all count.
//! - **Scoping**: every use (operands, results, nested bodies) refers to a
//!   variable bound earlier in the same body or in an enclosing one. Nested
//!   bodies (lambdas, branches, loop bodies and conditions) may read outer
//!   variables; what they bind is not visible after them.
//! - **Typing**: every expression gets operands of the types it expects and binds
//!   variables of the types it produces (the rules are listed on `Checker::expr_types`).
//!
//! - **Calls**: an `Expr::Call` names a function defined *earlier* in the
//!   program (so calls never recurse), passes arguments of its parameters'
//!   types, binds its results' types, and stands in the function's top-level
//!   body, never in a nested one (Note [Entries called by entries] in `calls.rs`).
//!
//! Function results are only checked to be defined: their types are described by
//! the surface-level `Signature`, which has no IR counterpart to compare with.

use super::print::print_atom;
use super::{Atom, Body, Expr, Func, IrType, Lambda, LoopForm, Program, Stmt, Var};
use crate::hash::HashSet;
use crate::types::ScalarType;
use std::fmt;

/// One violated invariant, in function `func`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyError {
    pub func: String,
    pub message: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "in {}: {}", self.func, self.message)
    }
}

/// Verifies every function, and that function names are unique.
pub fn verify_program(p: &Program) -> Result<(), Vec<VerifyError>> {
    let mut errors = Vec::new();
    let mut names = HashSet::default();
    for f in &p.funcs {
        if !names.insert(f.name.as_str()) {
            errors
                .push(VerifyError { func: f.name.clone(), message: "a function of this name is defined twice".into() });
        }
        if let Err(mut es) = verify_func(p, f) {
            errors.append(&mut es);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Verifies one function of `p` (SSA, scoping and typing; see the module comment).
pub fn verify_func(p: &Program, f: &Func) -> Result<(), Vec<VerifyError>> {
    let mut c = Checker {
        p,
        func: &f.name,
        errors: Vec::new(),
        bound: HashSet::default(),
        scope: Vec::new(),
        visible: HashSet::default(),
        depth: 0,
        earlier: p.funcs.iter().take_while(|g| g.name != f.name).map(|g| g.name.as_str()).collect(),
    };
    // Out-of-table variables would make every type lookup panic: report them and stop.
    let mut out_of_range = Vec::new();
    for &v in &f.params {
        c.note_out_of_range(v, &mut out_of_range);
    }
    c.scan_body(&f.body, &mut out_of_range);
    if !out_of_range.is_empty() {
        for v in out_of_range {
            c.error(format!("variable #{} is not in the variable table ({} entries)", v.0, p.vars.len()));
        }
        return Err(c.errors);
    }

    for &v in &f.params {
        c.bind(v);
    }
    c.body(&f.body);
    if c.errors.is_empty() {
        Ok(())
    } else {
        Err(c.errors)
    }
}

struct Checker<'a> {
    p: &'a Program,
    func: &'a str,
    errors: Vec<VerifyError>,
    /// Every variable bound so far anywhere in the function (for double bindings,
    /// and to tell a scope leak from a use before definition).
    bound: HashSet<Var>,
    /// Variables visible at this point, innermost last; nested bodies pop back to
    /// their mark on exit. Only variables newly made visible are pushed, so
    /// popping a (reported) second binding in a nested body cannot hide the first.
    scope: Vec<Var>,
    /// The contents of `scope`, for constant-time lookups.
    visible: HashSet<Var>,
    /// How many bodies the current statement is nested in (0: the function's own).
    depth: usize,
    /// The functions defined before this one: those it may call.
    earlier: HashSet<&'a str>,
}

impl Checker<'_> {
    fn error(&mut self, message: String) {
        self.errors.push(VerifyError { func: self.func.to_string(), message });
    }

    fn name(&self, v: Var) -> String {
        self.p.vars.display(v)
    }

    fn ty(&self, v: Var) -> IrType {
        self.p.vars.ty(v)
    }

    fn aty(&self, a: Atom) -> IrType {
        self.p.vars.atom_type(a)
    }

    fn atom(&self, a: Atom) -> String {
        print_atom(self.p, a)
    }

    // ---- pre-pass: table indices -------------------------------------------------

    fn note_out_of_range(&self, v: Var, out: &mut Vec<Var>) {
        if v.0 as usize >= self.p.vars.len() && !out.contains(&v) {
            out.push(v);
        }
    }

    fn scan_body(&self, b: &Body, out: &mut Vec<Var>) {
        for s in &b.stmts {
            for &v in &s.binds {
                self.note_out_of_range(v, out);
            }
            for a in s.expr.operands() {
                if let Some(v) = a.var() {
                    self.note_out_of_range(v, out);
                }
            }
            s.expr.for_each_binder(|v| self.note_out_of_range(v, out));
            s.expr.for_each_body(&mut |nested| self.scan_body(nested, out));
        }
        for a in &b.result {
            if let Some(v) = a.var() {
                self.note_out_of_range(v, out);
            }
        }
    }

    // ---- SSA and scoping ---------------------------------------------------------

    /// Binds `v` in the current scope; reports a second binding.
    fn bind(&mut self, v: Var) {
        if !self.bound.insert(v) {
            self.error(format!("{} is bound more than once", self.name(v)));
        }
        if self.visible.insert(v) {
            self.scope.push(v);
        }
    }

    /// Leaves a nested scope opened when `scope` had length `mark`.
    fn leave(&mut self, mark: usize) {
        for v in self.scope.drain(mark..) {
            self.visible.remove(&v);
        }
    }

    fn use_atom(&mut self, a: Atom) {
        if let Atom::Var(v) = a {
            self.use_var(v);
        }
    }

    fn use_var(&mut self, v: Var) {
        if self.visible.contains(&v) {
            return;
        }
        if self.bound.contains(&v) {
            self.error(format!("{} is used outside the body that binds it", self.name(v)));
        } else {
            self.error(format!("{} is used before it is bound", self.name(v)));
        }
    }

    /// Checks a nested body whose own parameters are `params`; nothing bound in
    /// it stays visible afterwards.
    fn nested(&mut self, params: &[Var], b: &Body) {
        let mark = self.scope.len();
        for &v in params {
            self.bind(v);
        }
        self.depth += 1;
        self.body(b);
        self.depth -= 1;
        self.leave(mark);
    }

    fn body(&mut self, b: &Body) {
        for s in &b.stmts {
            self.stmt(s);
        }
        for &a in &b.result {
            self.use_atom(a);
        }
    }

    fn stmt(&mut self, s: &Stmt) {
        if let Expr::Call { func, .. } = &s.expr {
            if self.depth > 0 {
                self.error(format!("a call of `{func}` inside a nested body"));
            }
            if !self.earlier.contains(func.as_str()) {
                self.error(format!("a call of `{func}`, which is not a function defined earlier"));
            }
        }
        // Operands are read before the statement's own binds exist.
        for a in s.expr.operands() {
            self.use_atom(a);
        }
        // Nested bodies see the enclosing scope plus their own parameters.
        match &s.expr {
            Expr::If { then_body, else_body, .. } => {
                self.nested(&[], then_body);
                self.nested(&[], else_body);
            }
            Expr::Map { lam, .. }
            | Expr::Reduce { lam, .. }
            | Expr::Scan { lam, .. }
            | Expr::Hist { lam, .. }
            | Expr::Jvp { lam, .. }
            | Expr::Vjp { lam, .. } => self.nested(&lam.params, &lam.body),
            Expr::Custom { primal, jvp, vjp, .. } => {
                self.nested(&primal.params, &primal.body);
                for l in jvp.iter().chain(vjp) {
                    self.nested(&l.params, &l.body);
                }
            }
            Expr::Loop { params, form, body, .. } => {
                // Loop parameters are visible in both the condition and the body
                // but are bound once: bind them in a scope around both.
                let mark = self.scope.len();
                for &v in params {
                    self.bind(v);
                }
                match form {
                    LoopForm::For { index, .. } => self.bind(*index),
                    LoopForm::While { cond } => self.nested(&[], cond),
                }
                self.nested(&[], body);
                self.leave(mark);
            }
            _ => {}
        }
        self.stmt_types(s);
        for &v in &s.binds {
            self.bind(v);
        }
    }

    // ---- typing ------------------------------------------------------------------

    /// A short description of the statement for messages: `t_3 = map`.
    fn what(&self, s: &Stmt) -> String {
        let kind = expr_kind(&s.expr);
        if s.binds.is_empty() {
            kind.to_string()
        } else {
            let names: Vec<String> = s.binds.iter().map(|v| self.name(*v)).collect();
            format!("{} = {kind}", names.join(", "))
        }
    }

    fn stmt_types(&mut self, s: &Stmt) {
        let what = self.what(s);
        let mut errs = Vec::new();
        if let Some(expected) = self.expr_types(s, &mut errs) {
            self.check_binds(&s.binds, &expected, &mut errs);
        }
        for e in errs {
            self.error(format!("{what}: {e}"));
        }
    }

    /// The bound variables must have exactly the `expected` types.
    fn check_binds(&self, binds: &[Var], expected: &[IrType], errs: &mut Vec<String>) {
        if binds.len() != expected.len() {
            errs.push(format!("binds {} variable(s) but the expression produces {}", binds.len(), expected.len()));
            return;
        }
        for (&v, &t) in binds.iter().zip(expected) {
            if self.ty(v) != t {
                errs.push(format!("{} has type {} but the expression produces {t}", self.name(v), self.ty(v)));
            }
        }
    }

    /// `a` must have type `t`; `role` says which operand it is.
    fn expect(&self, a: Atom, t: IrType, role: &str, errs: &mut Vec<String>) -> bool {
        let at = self.aty(a);
        if at != t {
            errs.push(format!("{role} {} has type {at}, expected {t}", self.atom(a)));
            return false;
        }
        true
    }

    fn expect_rank_at_least(&self, v: Var, rank: u32, role: &str, errs: &mut Vec<String>) -> bool {
        let t = self.ty(v);
        if t.rank < rank {
            errs.push(format!("{role} {} has type {t}, expected an array of rank at least {rank}", self.name(v)));
            return false;
        }
        true
    }

    fn result_types(&self, b: &Body) -> Vec<IrType> {
        b.result.iter().map(|a| self.aty(*a)).collect()
    }

    /// A body (branch, loop body, lambda) must return values of types `expected`.
    fn check_returns(&self, b: &Body, expected: &[IrType], role: &str, errs: &mut Vec<String>) {
        if b.result.len() != expected.len() {
            errs.push(format!("{role} returns {} value(s), expected {}", b.result.len(), expected.len()));
            return;
        }
        for (i, (&a, &t)) in b.result.iter().zip(expected).enumerate() {
            let at = self.aty(a);
            if at != t {
                errs.push(format!("{role} result {i} ({}) has type {at}, expected {t}", self.atom(a)));
            }
        }
    }

    /// Lambda parameters must have types `expected`.
    fn check_params(&self, lam: &Lambda, expected: &[IrType], role: &str, errs: &mut Vec<String>) {
        if lam.params.len() != expected.len() {
            errs.push(format!("{role} takes {} parameter(s), expected {}", lam.params.len(), expected.len()));
            return;
        }
        for (&v, &t) in lam.params.iter().zip(expected) {
            if self.ty(v) != t {
                errs.push(format!("{role} parameter {} has type {}, expected {t}", self.name(v), self.ty(v)));
            }
        }
    }

    /// Checks the operands of `s` and returns the types it binds, or `None` when
    /// the binds were checked here (`If`, `Loop`) or cannot be predicted because
    /// an operand is already wrong (one error is enough).
    ///
    /// Rules (all scalar operations take rank-0 operands):
    /// - `Neg`/`Abs` numeric, `Not` bool, math functions float, `StopGradient`
    ///   any: result of the operand's type. Binary: equal scalar types;
    ///   arithmetic and `min`/`max` numeric → same; `==`/`!=` any → bool;
    ///   orderings numeric → bool; `&&`/`||` bool → bool.
    /// - `Convert` scalar → scalar of the target; `Select` bool, `t`, `t` → `t`.
    /// - `Index`: ≥ 1 i64 index, at most the rank; `Slice`: i64 bounds, rank ≥ 1;
    ///   `Shape`: dim < rank → i64. `Iota` i64 → []i64; `Replicate` lifts;
    ///   `ArrayLit` elements of type `elem` → lifted.
    /// - `Map`: one parameter per array, of its row type; binds the lifted results.
    /// - `Reduce`/`Scan`: `k` neutral elements, `k` arrays, `2k` parameters,
    ///   `k` results, all of the neutral elements' types (lifted for `Scan`).
    /// - `Loop`: init, parameters, binds and body results agree; `for` index and
    ///   bound i64; `while` condition returns one bool.
    /// - `Scatter`/`Hist`: indices []i64, values of the destination's type;
    ///   `Hist`'s operator works on rows.
    /// - Array reshaping: ranks as documented on each variant.
    /// - `Argsort`: a vector of f64, f32 or i64; binds a vector of i64.
    /// - `Check`: `kind.arity()` i64 scalars, binds nothing.
    /// - `Jvp`: parameters, primals and tangents agree; binds the lambda's result
    ///   types. `Vjp`: parameters and primals agree, cotangents match the results,
    ///   binds the parameter types.
    fn expr_types(&self, s: &Stmt, errs: &mut Vec<String>) -> Option<Vec<IrType>> {
        use ScalarType as S;
        let i64_ = IrType::I64;
        let one = |t: IrType| Some(vec![t]);
        match &s.expr {
            Expr::Atom(a) | Expr::Opaque(a) => one(self.aty(*a)),
            Expr::Unary(op, a) => {
                let t = self.aty(*a);
                match op.prim().result(t.elem) {
                    Some(r) if t.is_scalar() => one(IrType::scalar(r)),
                    _ => {
                        errs.push(format!("operand {} of {} has type {t}", self.atom(*a), op.name()));
                        None
                    }
                }
            }
            Expr::Binary(op, a, b) => {
                use super::BinOp as B;
                let (ta, tb) = (self.aty(*a), self.aty(*b));
                let sym = op.symbol();
                if ta != tb || !ta.is_scalar() {
                    errs.push(format!(
                        "operands of {sym} must be scalars of one type, found {} : {ta} and {} : {tb}",
                        self.atom(*a),
                        self.atom(*b)
                    ));
                    return None;
                }
                let (ok, result) = match op {
                    B::Eq | B::Ne => (true, IrType::BOOL),
                    B::Lt | B::Le | B::Gt | B::Ge => (ta.elem.is_numeric(), IrType::BOOL),
                    B::And | B::Or => (ta.elem == S::Bool, IrType::BOOL),
                    _ if op.is_bitwise() => (ta.elem == S::I64, ta),
                    _ => (ta.elem.is_numeric(), ta),
                };
                if !ok {
                    errs.push(format!("{sym} does not apply to {} and {} of type {ta}", self.atom(*a), self.atom(*b)));
                    return None;
                }
                one(result)
            }
            Expr::Convert(t, a) => {
                if !self.aty(*a).is_scalar() {
                    errs.push(format!("converted operand {} is not a scalar", self.atom(*a)));
                    return None;
                }
                one(IrType::scalar(*t))
            }
            Expr::Select(c, a, b) => {
                let ok = self.expect(*c, IrType::BOOL, "condition", errs);
                let (ta, tb) = (self.aty(*a), self.aty(*b));
                if ta != tb {
                    errs.push(format!("branches {} : {ta} and {} : {tb} differ in type", self.atom(*a), self.atom(*b)));
                    return None;
                }
                if ok {
                    one(ta)
                } else {
                    None
                }
            }
            Expr::If { cond, then_body, else_body } => {
                self.expect(*cond, IrType::BOOL, "condition", errs);
                let binds: Vec<IrType> = s.binds.iter().map(|v| self.ty(*v)).collect();
                self.check_returns(then_body, &binds, "then branch", errs);
                self.check_returns(else_body, &binds, "else branch", errs);
                None
            }
            Expr::Index { array, indices } => {
                let t = self.ty(*array);
                let mut ok = true;
                if indices.is_empty() || indices.len() > t.rank as usize {
                    errs.push(format!("{} of type {t} indexed with {} index(es)", self.name(*array), indices.len()));
                    ok = false;
                }
                for &i in indices {
                    ok &= self.expect(i, i64_, "index", errs);
                }
                if !ok {
                    return None;
                }
                one(IrType::array(t.elem, t.rank - indices.len() as u32))
            }
            Expr::Slice { array, start, end } => {
                let mut ok = self.expect_rank_at_least(*array, 1, "sliced array", errs);
                ok &= self.expect(*start, i64_, "slice start", errs);
                ok &= self.expect(*end, i64_, "slice end", errs);
                if ok {
                    one(self.ty(*array))
                } else {
                    None
                }
            }
            Expr::Shape { array, dim } => {
                let t = self.ty(*array);
                if *dim >= t.rank {
                    errs.push(format!("dimension {dim} of {} which has type {t}", self.name(*array)));
                    return None;
                }
                one(i64_)
            }
            Expr::Iota(n) => {
                if !self.expect(*n, i64_, "length", errs) {
                    return None;
                }
                one(IrType::array(S::I64, 1))
            }
            Expr::Replicate { count, value } => {
                if !self.expect(*count, i64_, "count", errs) {
                    return None;
                }
                one(self.aty(*value).lift())
            }
            Expr::ArrayLit { elem, elems } => {
                let mut ok = true;
                for &e in elems {
                    ok &= self.expect(e, *elem, "element", errs);
                }
                if ok {
                    one(elem.lift())
                } else {
                    None
                }
            }
            Expr::Map { width, lam, arrays } => {
                let mut ok = self.expect(*width, i64_, "width", errs);
                let mut rows = Vec::new();
                for &a in arrays {
                    if self.expect_rank_at_least(a, 1, "mapped array", errs) {
                        rows.push(self.ty(a).row());
                    } else {
                        ok = false;
                    }
                }
                if !ok {
                    return None;
                }
                if lam.params.len() != arrays.len() {
                    errs.push(format!(
                        "lambda takes {} parameter(s) but {} array(s) are mapped",
                        lam.params.len(),
                        arrays.len()
                    ));
                } else {
                    self.check_params(lam, &rows, "lambda", errs);
                }
                Some(self.result_types(&lam.body).into_iter().map(IrType::lift).collect())
            }
            Expr::Reduce { lam, neutral, arrays } | Expr::Scan { lam, neutral, arrays } => {
                let scan = matches!(s.expr, Expr::Scan { .. });
                let k = neutral.len();
                let ts: Vec<IrType> = neutral.iter().map(|a| self.aty(*a)).collect();
                let mut ok = true;
                if arrays.len() != k {
                    errs.push(format!("{k} neutral element(s) but {} array(s)", arrays.len()));
                    ok = false;
                } else {
                    for (&a, &t) in arrays.iter().zip(&ts) {
                        if self.ty(a) != t.lift() {
                            errs.push(format!("array {} has type {}, expected {}", self.name(a), self.ty(a), t.lift()));
                            ok = false;
                        }
                    }
                }
                let doubled: Vec<IrType> = ts.iter().chain(&ts).copied().collect();
                self.check_params(lam, &doubled, "operator", errs);
                self.check_returns(&lam.body, &ts, "operator", errs);
                if !ok {
                    return None;
                }
                Some(if scan { ts.into_iter().map(IrType::lift).collect() } else { ts })
            }
            Expr::Loop { params, init, form, body } => {
                let n = params.len();
                if init.len() != n || s.binds.len() != n {
                    errs.push(format!(
                        "{n} loop parameter(s), {} initial value(s) and {} bound variable(s)",
                        init.len(),
                        s.binds.len()
                    ));
                } else {
                    for ((&p, &i), &b) in params.iter().zip(init).zip(&s.binds) {
                        let (tp, ti, tb) = (self.ty(p), self.aty(i), self.ty(b));
                        if tp != ti || tp != tb {
                            errs.push(format!(
                                "loop parameter {} : {tp}, initial value {} : {ti} and result {} : {tb} differ in type",
                                self.name(p),
                                self.atom(i),
                                self.name(b)
                            ));
                        }
                    }
                }
                match form {
                    LoopForm::For { index, bound } => {
                        if self.ty(*index) != i64_ {
                            errs.push(format!(
                                "loop index {} has type {}, expected i64",
                                self.name(*index),
                                self.ty(*index)
                            ));
                        }
                        self.expect(*bound, i64_, "loop bound", errs);
                    }
                    LoopForm::While { cond } => self.check_returns(cond, &[IrType::BOOL], "loop condition", errs),
                }
                let pts: Vec<IrType> = params.iter().map(|v| self.ty(*v)).collect();
                self.check_returns(body, &pts, "loop body", errs);
                None
            }
            Expr::UpdateAt { array, indices, value, accumulate } => {
                let t = self.ty(*array);
                if indices.is_empty() || indices.len() as u32 > t.rank {
                    errs.push(format!("{} indices into a rank-{} array", indices.len(), t.rank));
                    return None;
                }
                let mut ok = true;
                for ix in indices {
                    ok &= self.expect(*ix, IrType::I64, "an index", errs);
                }
                let block = IrType { elem: t.elem, rank: t.rank - indices.len() as u32 };
                ok &= self.expect(*value, block, "the updated value", errs);
                if *accumulate && t.elem == S::Bool {
                    errs.push("cannot accumulate into a bool array".to_string());
                    ok = false;
                }
                if ok {
                    one(t)
                } else {
                    None
                }
            }
            Expr::Scatter { dest, indices, values } => {
                let mut ok = self.expect_rank_at_least(*dest, 1, "scatter destination", errs);
                ok &= self.expect(Atom::Var(*indices), IrType::array(S::I64, 1), "indices", errs);
                ok &= self.expect(Atom::Var(*values), self.ty(*dest), "values", errs);
                if ok {
                    one(self.ty(*dest))
                } else {
                    None
                }
            }
            Expr::Hist { dest, lam, neutral, indices, values } => {
                if !self.expect_rank_at_least(*dest, 1, "histogram destination", errs) {
                    return None;
                }
                let t = self.ty(*dest);
                let mut ok = self.expect(*neutral, t.row(), "neutral element", errs);
                ok &= self.expect(Atom::Var(*indices), IrType::array(S::I64, 1), "indices", errs);
                ok &= self.expect(Atom::Var(*values), t, "values", errs);
                self.check_params(lam, &[t.row(), t.row()], "operator", errs);
                self.check_returns(&lam.body, &[t.row()], "operator", errs);
                if ok {
                    one(t)
                } else {
                    None
                }
            }
            Expr::Transpose(a) => self.expect_rank_at_least(*a, 2, "transposed array", errs).then(|| vec![self.ty(*a)]),
            Expr::Reverse(a) => self.expect_rank_at_least(*a, 1, "reversed array", errs).then(|| vec![self.ty(*a)]),
            Expr::Argsort { array, .. } => {
                let t = self.ty(*array);
                if t.rank != 1 || t.elem == S::Bool {
                    errs.push(format!("sorted array {} has type {t}, expected a vector of numbers", self.name(*array)));
                    return None;
                }
                one(IrType::array(S::I64, 1))
            }
            Expr::Concat(a, b) => {
                if !self.expect_rank_at_least(*a, 1, "concatenated array", errs) {
                    return None;
                }
                if !self.expect(Atom::Var(*b), self.ty(*a), "concatenated array", errs) {
                    return None;
                }
                one(self.ty(*a))
            }
            Expr::Flatten(a) => {
                let t = self.ty(*a);
                self.expect_rank_at_least(*a, 2, "flattened array", errs).then(|| vec![t.row()])
            }
            Expr::Unflatten { array, rows, cols } => {
                let mut ok = self.expect_rank_at_least(*array, 1, "unflattened array", errs);
                ok &= self.expect(*rows, i64_, "row count", errs);
                ok &= self.expect(*cols, i64_, "column count", errs);
                ok.then(|| vec![self.ty(*array).lift()])
            }
            Expr::Check { kind, args } => {
                if args.len() != kind.arity() {
                    errs.push(format!("a {kind:?} check takes {} operands, not {}", kind.arity(), args.len()));
                }
                for a in args {
                    self.expect(*a, i64_, "checked size", errs);
                }
                Some(vec![])
            }
            Expr::Jvp { lam, primals, tangents, batch, values } => {
                let pts: Vec<IrType> = lam.params.iter().map(|v| self.ty(*v)).collect();
                self.check_atoms(primals, &pts, "primal", errs);
                let lifted =
                    |ts: Vec<IrType>| if batch.is_some() { ts.into_iter().map(IrType::lift).collect() } else { ts };
                self.check_atoms(tangents, &lifted(pts), "tangent", errs);
                if let Some(b) = batch {
                    self.expect(*b, i64_, "batch size", errs);
                }
                let results = self.result_types(&lam.body);
                let outs = if *values { results.clone() } else { Vec::new() };
                Some(outs.into_iter().chain(lifted(results)).collect())
            }
            Expr::Vjp { lam, primals, cotangents, values } => {
                let pts: Vec<IrType> = lam.params.iter().map(|v| self.ty(*v)).collect();
                self.check_atoms(primals, &pts, "primal", errs);
                let results = self.result_types(&lam.body);
                self.check_atoms(cotangents, &results, "cotangent", errs);
                let outs = if *values { results } else { Vec::new() };
                Some(outs.into_iter().chain(pts).collect())
            }
            Expr::Call { func, args } => {
                let callee = self.p.func(func)?;
                let pts: Vec<IrType> = callee.params.iter().map(|v| self.ty(*v)).collect();
                self.check_atoms(args, &pts, "argument", errs);
                Some(self.result_types(&callee.body))
            }
            Expr::Custom { primal, jvp, vjp, args, residuals } => {
                let pts: Vec<IrType> = primal.params.iter().map(|v| self.ty(*v)).collect();
                self.check_atoms(args, &pts, "argument", errs);
                let all = self.result_types(&primal.body);
                if *residuals > all.len() {
                    errs.push("a custom call with more residuals than primal results".to_string());
                    return Some(all);
                }
                let results = all[..all.len() - residuals].to_vec();
                let types = |l: &Lambda| l.params.iter().map(|v| self.ty(*v)).collect::<Vec<IrType>>();
                if jvp.is_none() && vjp.is_none() {
                    errs.push("a custom call without a rule".to_string());
                }
                if let Some(jvp) = jvp {
                    if types(jvp) != [&pts[..], &all, &pts].concat() {
                        errs.push(
                            "a jvp rule takes the arguments, the results, the residuals, then the tangents".to_string(),
                        );
                    }
                    if self.result_types(&jvp.body) != results {
                        errs.push("a jvp rule returns one tangent per result".to_string());
                    }
                }
                if let Some(vjp) = vjp {
                    if types(vjp) != [&pts[..], &all, &results].concat() {
                        errs.push(
                            "a vjp rule takes the arguments, the results, the residuals, then the results' cotangents"
                                .to_string(),
                        );
                    }
                    if self.result_types(&vjp.body) != pts {
                        errs.push("a vjp rule returns one cotangent per argument".to_string());
                    }
                }
                Some(all)
            }
        }
    }

    /// The atoms must match `expected` (the lambda's parameter or result types)
    /// in count and type.
    fn check_atoms(&self, atoms: &[Atom], expected: &[IrType], role: &str, errs: &mut Vec<String>) {
        if atoms.len() != expected.len() {
            errs.push(format!("{} {role}(s) for a lambda that expects {}", atoms.len(), expected.len()));
            return;
        }
        for (&a, &t) in atoms.iter().zip(expected) {
            self.expect(a, t, role, errs);
        }
    }
}

/// The keyword of an expression, for messages.
fn expr_kind(e: &Expr) -> &'static str {
    match e {
        Expr::Atom(_) => "atom",
        Expr::Unary(op, _) => op.name(),
        Expr::Binary(op, _, _) => op.symbol(),
        Expr::Convert(..) => "conversion",
        Expr::Select(..) => "select",
        Expr::If { .. } => "if",
        Expr::Index { .. } => "index",
        Expr::Slice { .. } => "slice",
        Expr::Shape { .. } => "shape",
        Expr::Iota(_) => "iota",
        Expr::Replicate { .. } => "replicate",
        Expr::ArrayLit { .. } => "array literal",
        Expr::Map { .. } => "map",
        Expr::Reduce { .. } => "reduce",
        Expr::Scan { .. } => "scan",
        Expr::Loop { .. } => "loop",
        Expr::Scatter { .. } => "scatter",
        Expr::Hist { .. } => "reduce_by_index",
        Expr::Transpose(_) => "transpose",
        Expr::Reverse(_) => "reverse",
        Expr::Argsort { .. } => "argsort",
        Expr::Call { .. } => "call",
        Expr::Concat(..) => "concat",
        Expr::Flatten(_) => "flatten",
        Expr::Unflatten { .. } => "unflatten",
        Expr::Check { .. } => "check_size",
        Expr::Opaque(_) => "opaque",
        Expr::UpdateAt { .. } => "update",
        Expr::Jvp { .. } => "jvp",
        Expr::Vjp { .. } => "vjp",
        Expr::Custom { .. } => "custom",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::print::tests::{
        a, arr, assorted, body, branches, build, dot, for_loop, lam, matvec, st, while_loop, F64, I64,
    };
    use crate::ir::{BinOp, CheckKind, Const};

    /// The messages of every error, failing if the program verifies.
    fn errors(p: &Program) -> Vec<String> {
        match verify_program(p) {
            Ok(()) => panic!("expected verification errors in\n{}", crate::ir::print::print_program(p)),
            Err(es) => es.iter().map(|e| e.to_string()).collect(),
        }
    }

    /// Exactly one error, containing every fragment.
    fn assert_one_error(p: &Program, fragments: &[&str]) {
        let es = errors(p);
        assert_eq!(es.len(), 1, "{es:#?}");
        for f in fragments {
            assert!(es[0].contains(f), "{:?} does not mention {f:?}", es[0]);
        }
    }

    fn stmts(p: &mut Program) -> &mut Vec<Stmt> {
        &mut p.funcs[0].body.stmts
    }

    /// The lambda of the `i`-th top-level statement.
    fn lambda(p: &mut Program, i: usize) -> &mut Lambda {
        match &mut stmts(p)[i].expr {
            Expr::Map { lam, .. } | Expr::Reduce { lam, .. } | Expr::Scan { lam, .. } => lam,
            e => panic!("no lambda in {e:?}"),
        }
    }

    #[test]
    fn well_formed_programs_verify() {
        for p in [dot(), for_loop(), while_loop(), branches(), matvec(), assorted()] {
            assert_eq!(verify_program(&p), Ok(()), "\n{}", crate::ir::print::print_program(&p));
        }
    }

    #[test]
    fn error_display_names_the_function() {
        let e = VerifyError { func: "dot".into(), message: "x_1 is bound more than once".into() };
        assert_eq!(e.to_string(), "in dot: x_1 is bound more than once");
    }

    #[test]
    fn use_before_definition() {
        let mut p = dot();
        stmts(&mut p).swap(0, 1); // the map now reads n_2 before `shape` binds it
        assert_one_error(&p, &["in dot: ", "n_2 is used before it is bound"]);
    }

    #[test]
    fn undefined_result() {
        let mut p = dot();
        p.funcs[0].body.result = vec![a(Var(99))];
        let es = errors(&p);
        assert_eq!(es, vec!["in dot: variable #99 is not in the variable table (11 entries)"]);
    }

    #[test]
    fn double_binding() {
        // The reduce's lambda reuses the map's parameter a_4.
        let mut p = dot();
        lambda(&mut p, 2).params[0] = Var(4);
        let es = errors(&p);
        assert!(es.iter().any(|e| e == "in dot: a_4 is bound more than once"), "{es:#?}");
        // The lambda's body still reads acc_8, which is now never bound.
        assert!(es.iter().any(|e| e.contains("acc_8 is used before it is bound")), "{es:#?}");
    }

    #[test]
    fn rebinding_a_function_parameter() {
        let mut p = dot();
        stmts(&mut p)[0].binds = vec![Var(0)];
        let es = errors(&p);
        assert!(es.iter().any(|e| e == "in dot: x_0 is bound more than once"), "{es:#?}");
    }

    #[test]
    fn scope_leak_out_of_a_lambda() {
        // t_6 is bound inside the map's lambda: not visible after the map.
        let mut p = dot();
        p.funcs[0].body.result = vec![a(Var(6))];
        assert_one_error(&p, &["t_6 is used outside the body that binds it"]);
    }

    #[test]
    fn scope_leak_out_of_a_loop() {
        // The loop index i_4 is visible in the body only.
        let mut p = for_loop();
        p.funcs[0].body.result = vec![a(Var(5)), a(Var(4))];
        assert_one_error(&p, &["i_4 is used outside the body that binds it"]);
    }

    #[test]
    fn inner_lambda_reads_outer_variables() {
        // matvec's inner map reads c_3 and v_1 from enclosing scopes (verified
        // above); binding c_3 after the outer map breaks it.
        let mut p = matvec();
        stmts(&mut p).swap(1, 2);
        assert_one_error(&p, &["c_3 is used before it is bound"]);
    }

    #[test]
    fn wrong_operand_type() {
        // acc_8 + x_9 with x_9 replaced by an i64 constant.
        let mut p = dot();
        lambda(&mut p, 2).body.stmts[0].expr = Expr::Binary(BinOp::Add, a(Var(8)), Atom::i64(1));
        assert_one_error(&p, &["t_10 = +", "acc_8 : f64 and 1 : i64"]);
    }

    #[test]
    fn wrong_bind_type() {
        let mut p = dot();
        lambda(&mut p, 1).body.stmts[0].expr = Expr::Binary(BinOp::Lt, a(Var(4)), a(Var(5)));
        let es = errors(&p);
        // The comparison binds a bool into t_6: f64, and the map's lambda then
        // returns nothing wrong by itself, so only that bind is reported.
        assert_eq!(es, vec!["in dot: t_6 = <: t_6 has type f64 but the expression produces bool"]);
    }

    #[test]
    fn math_on_integers_and_not_on_floats() {
        let p = build("f", &[("i", I64), ("x", F64)], |vt, ps| {
            let (e, n) = (vt.fresh("e", I64), vt.fresh("n", F64));
            body(
                vec![
                    st(&[e], Expr::Unary(crate::ir::UnOp::Exp, a(ps[0]))),
                    st(&[n], Expr::Unary(crate::ir::UnOp::Not, a(ps[1]))),
                ],
                &[a(e), a(n)],
            )
        });
        let es = errors(&p);
        assert_eq!(es.len(), 2, "{es:#?}");
        assert!(es[0].contains("operand i_0 of exp has type i64"), "{es:#?}");
        assert!(es[1].contains("operand x_1 of not has type f64"), "{es:#?}");
    }

    #[test]
    fn map_parameter_mismatch() {
        let mut p = dot();
        lambda(&mut p, 1).params.pop();
        let es = errors(&p);
        // Both the arity and the now-unbound parameter are reported.
        assert_eq!(
            es,
            vec![
                "in dot: b_5 is used before it is bound",
                "in dot: t_3 = map: lambda takes 1 parameter(s) but 2 array(s) are mapped",
            ]
        );
        // Same count, wrong type: b_5 is f64 but maps over rows of the [][]f64 m_0.
        let mut p = matvec();
        let Expr::Map { lam, .. } = &mut stmts(&mut p)[2].expr else { panic!() };
        lam.params = vec![Var(7)];
        let es = errors(&p);
        assert!(es.iter().any(|e| e.contains("lambda parameter a_7 has type f64, expected []f64")), "{es:#?}");
    }

    #[test]
    fn map_over_a_scalar() {
        let mut p = dot();
        let Expr::Map { arrays, .. } = &mut stmts(&mut p)[1].expr else { panic!() };
        arrays[1] = Var(2);
        assert_one_error(&p, &["mapped array n_2 has type i64"]);
    }

    #[test]
    fn reduce_arity() {
        let mut p = dot();
        let Expr::Reduce { neutral, .. } = &mut stmts(&mut p)[2].expr else { panic!() };
        neutral.push(Atom::f64(1.0));
        let es = errors(&p);
        assert!(es.iter().any(|e| e.contains("s_7 = reduce: 2 neutral element(s) but 1 array(s)")), "{es:#?}");
        assert!(es.iter().any(|e| e.contains("operator takes 2 parameter(s), expected 4")), "{es:#?}");
        assert!(es.iter().any(|e| e.contains("operator returns 1 value(s), expected 2")), "{es:#?}");
    }

    #[test]
    fn reduce_neutral_type() {
        let mut p = dot();
        let Expr::Reduce { neutral, .. } = &mut stmts(&mut p)[2].expr else { panic!() };
        neutral[0] = Atom::i64(0);
        let es = errors(&p);
        assert!(es.iter().any(|e| e.contains("array t_3 has type []f64, expected []i64")), "{es:#?}");
        assert!(es.iter().any(|e| e.contains("operator parameter acc_8 has type f64, expected i64")), "{es:#?}");
    }

    #[test]
    fn if_result_count() {
        let mut p = branches();
        let Expr::If { then_body, .. } = &mut stmts(&mut p)[1].expr else { panic!() };
        then_body.result.push(a(Var(0)));
        assert_one_error(&p, &["r_2 = if", "then branch returns 2 value(s), expected 1"]);
    }

    #[test]
    fn if_condition_and_branch_types() {
        let mut p = branches();
        let Expr::If { cond, else_body, .. } = &mut stmts(&mut p)[1].expr else { panic!() };
        *cond = a(Var(0));
        else_body.result = vec![Atom::Const(Const::Bool(false))];
        let es = errors(&p);
        assert_eq!(es.len(), 2, "{es:#?}");
        assert!(es[0].contains("condition x_0 has type f64, expected bool"), "{es:#?}");
        assert!(es[1].contains("else branch result 0 (false) has type bool, expected f64"), "{es:#?}");
    }

    #[test]
    fn loop_type_mismatch() {
        let mut p = for_loop();
        let Expr::Loop { init, .. } = &mut stmts(&mut p)[1].expr else { panic!() };
        init[0] = Atom::i64(0);
        assert_one_error(&p, &["loop parameter acc_2 : f64, initial value 0 : i64 and result s_5 : f64"]);
    }

    #[test]
    fn loop_body_and_condition_types() {
        let mut p = for_loop();
        let Expr::Loop { body, .. } = &mut stmts(&mut p)[1].expr else { panic!() };
        body.result.swap(0, 1);
        let es = errors(&p);
        assert!(es.iter().any(|e| e.contains("loop body result 0 (k_9) has type i64, expected f64")), "{es:#?}");

        let mut p = while_loop();
        let Expr::Loop { form: LoopForm::While { cond }, .. } = &mut stmts(&mut p)[0].expr else { panic!() };
        cond.result = vec![a(Var(1))];
        assert_one_error(&p, &["loop condition result 0 (v_1) has type f64, expected bool"]);
    }

    #[test]
    fn check_binds_nothing_and_compares_sizes() {
        let p = build("f", &[("x", arr(1))], |vt, ps| {
            let n = vt.fresh("n", I64);
            let check = |b: Atom| Expr::Check { kind: CheckKind::SizeEq { what: "x".into() }, args: vec![a(n), b] };
            body(
                vec![
                    st(&[n], Expr::Shape { array: ps[0], dim: 0 }),
                    st(&[], check(Atom::i64(3))),
                    st(&[], check(Atom::f64(3.0))),
                ],
                &[a(n)],
            )
        });
        assert_one_error(&p, &["check_size: checked size 3.0 has type f64, expected i64"]);
    }

    #[test]
    fn index_shape_and_reshape_ranks() {
        let p = build("f", &[("x", arr(1)), ("i", I64)], |vt, ps| {
            let (x, i) = (ps[0], ps[1]);
            let (e, d, t, fl) = (vt.fresh("e", F64), vt.fresh("d", I64), vt.fresh("t", arr(1)), vt.fresh("fl", F64));
            body(
                vec![
                    st(&[e], Expr::Index { array: x, indices: vec![a(i), a(i)] }),
                    st(&[d], Expr::Shape { array: x, dim: 1 }),
                    st(&[t], Expr::Transpose(x)),
                    st(&[fl], Expr::Flatten(x)),
                ],
                &[a(e)],
            )
        });
        let es = errors(&p);
        assert_eq!(es.len(), 4, "{es:#?}");
        assert!(es[0].contains("x_0 of type []f64 indexed with 2 index(es)"), "{es:#?}");
        assert!(es[1].contains("dimension 1 of x_0"), "{es:#?}");
        assert!(es[2].contains("transposed array x_0 has type []f64, expected an array of rank at least 2"));
        assert!(es[3].contains("flattened array x_0"), "{es:#?}");
    }

    #[test]
    fn jvp_and_vjp_arity() {
        let p = build("f", &[("x", F64)], |vt, ps| {
            let (q, j) = (vt.fresh("q", F64), vt.fresh("j", F64));
            let (r, v) = (vt.fresh("r", F64), vt.fresh("v", F64));
            body(
                vec![
                    st(
                        &[j],
                        Expr::Jvp {
                            lam: lam(&[q], body(vec![], &[a(q)])),
                            primals: vec![a(ps[0])],
                            tangents: vec![],
                            batch: None,
                            values: false,
                        },
                    ),
                    st(
                        &[v],
                        Expr::Vjp {
                            lam: lam(&[r], body(vec![], &[a(r)])),
                            primals: vec![a(ps[0])],
                            cotangents: vec![Atom::i64(1)],
                            values: false,
                        },
                    ),
                ],
                &[a(j), a(v)],
            )
        });
        let es = errors(&p);
        assert_eq!(es.len(), 2, "{es:#?}");
        assert!(es[0].contains("j_2 = jvp: 0 tangent(s) for a lambda that expects 1"), "{es:#?}");
        assert!(es[1].contains("v_4 = vjp: cotangent 1 has type i64, expected f64"), "{es:#?}");
    }

    #[test]
    fn collects_errors_from_every_function() {
        // Functions of one program share its VarTable; cloning a function keeps
        // each copy's variables bound once within that copy, which is all SSA asks.
        let mut p = branches();
        let mut second = p.funcs[0].clone();
        second.name = "second".into();
        second.body.result = vec![a(Var(4))]; // y_4 is bound inside a branch
        p.funcs.push(second);
        let mut dup = p.funcs[0].clone();
        dup.body.stmts.clear(); // r_3 is now unbound
        p.funcs.push(dup);
        assert_eq!(
            errors(&p),
            vec![
                "in second: y_4 is used outside the body that binds it",
                "in branches: a function of this name is defined twice",
                "in branches: r_3 is used before it is bound",
            ]
        );
    }
}
