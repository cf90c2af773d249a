//! Is a custom derivative rule linear in its tangents? (Note [Linear rules])
//!
//! Input: the `jvp` lambda of an [`Expr::Custom`] (its first `n` parameters
//! the primal arguments and results, the rest the arguments' tangents), as
//! elaboration builds it.
//! Output: the first operation, in program order, that is not linear in the
//! tangents in a way this analysis can see — with a phrase saying what it
//! is and the span of the source it came from — or `None`.
//!
//! The analysis follows which values depend on a tangent (through nested
//! lambdas, branches and loops, whose parameters depend on a tangent when
//! their initial or fed-back values do) and rejects: a non-linear function
//! of such a value (`exp t`, `t * t`, `x / t`, `t ** 2.0`, `max t 0.0`), a
//! comparison of one (so a branch or a `while` condition on a tangent), a
//! `select` on one, and its conversion to an integer. Sums, differences,
//! negation, products and quotients by values that do not depend on a
//! tangent, and all data movement (indexing, maps, reductions with `+`,
//! updates) are linear. Calls of functions with custom rules are looked
//! into through their primal body. `jvp`/`vjp` inside a rule are taken as
//! linear (they are, in their tangent arguments).

use crate::diagnostic::Span;
use crate::hash::HashSet;
use crate::ir::{Atom, BinOp, Body, Expr, Lambda, LoopForm, Stmt, UnOp, Var};

/// A non-linear use of a tangent: what it is, and where.
#[derive(Clone, Debug, PartialEq)]
pub struct NonLinear {
    pub what: String,
    pub span: Span,
}

/// The first operation of `jvp` (parameters: `primals` primal arguments and
/// results, then the tangents) that is not linear in the tangents.
pub fn first_nonlinear(jvp: &Lambda, primals: usize) -> Option<NonLinear> {
    let mut a = Analysis { tangent: jvp.params[primals..].iter().copied().collect() };
    a.body(&jvp.body).err()
}

struct Analysis {
    /// Variables whose value depends on a tangent.
    tangent: HashSet<Var>,
}

type R<T> = Result<T, NonLinear>;

impl Analysis {
    fn dep(&self, a: Atom) -> bool {
        matches!(a, Atom::Var(v) if self.tangent.contains(&v))
    }

    fn any(&self, atoms: &[Atom]) -> bool {
        atoms.iter().any(|a| self.dep(*a))
    }

    /// Analyses a body; which of its results depend on a tangent.
    fn body(&mut self, b: &Body) -> R<Vec<bool>> {
        for s in &b.stmts {
            let deps = self.stmt(s)?;
            for (v, d) in s.binds.iter().zip(deps) {
                if d {
                    self.tangent.insert(*v);
                }
            }
        }
        Ok(b.result.iter().map(|a| self.dep(*a)).collect())
    }

    /// A lambda whose parameters depend on a tangent as `params` says.
    fn lambda(&mut self, lam: &Lambda, params: &[bool]) -> R<Vec<bool>> {
        for (p, d) in lam.params.iter().zip(params) {
            if *d {
                self.tangent.insert(*p);
            }
        }
        self.body(&lam.body)
    }

    /// A fold's operator (`reduce`, `scan`, `reduce_by_index`): accumulators
    /// then elements; an accumulator depends on a tangent when its initial
    /// value, its element or the operator's result for it does.
    fn fold(&mut self, lam: &Lambda, neutral: &[Atom], elems: &[bool]) -> R<Vec<bool>> {
        let k = neutral.len();
        let mut acc: Vec<bool> =
            (0..k).map(|i| self.dep(neutral[i]) || elems.get(i).copied().unwrap_or(false)).collect();
        loop {
            let params: Vec<bool> = acc.iter().chain(elems).copied().collect();
            let out = self.lambda(lam, &params)?;
            let next: Vec<bool> = acc.iter().zip(&out).map(|(a, o)| *a || *o).collect();
            if next == acc {
                return Ok(out.iter().zip(&acc).map(|(o, a)| *o || *a).collect());
            }
            acc = next;
        }
    }

    fn stmt(&mut self, s: &Stmt) -> R<Vec<bool>> {
        let n = s.binds.len().max(1);
        let fail = |what: String| Err(NonLinear { what, span: s.span });
        let same = |d: bool| Ok(vec![d; n]);
        match &s.expr {
            Expr::Unary(op, a) if self.dep(*a) => match op {
                UnOp::Neg | UnOp::StopGradient => same(true),
                op => fail(format!("`{}` of a tangent", op.name())),
            },
            Expr::Binary(op, a, b) => {
                let (da, db) = (self.dep(*a), self.dep(*b));
                match op {
                    BinOp::Add | BinOp::Sub => same(da || db),
                    BinOp::Mul if da && db => fail("a product of two tangents".into()),
                    BinOp::Mul => same(da || db),
                    BinOp::Div if db => fail("a division by a tangent".into()),
                    BinOp::Div => same(da),
                    BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge if da || db => {
                        fail("a comparison of a tangent (a branch on a tangent)".into())
                    }
                    op if da || db => fail(format!("`{}` of a tangent", op.symbol())),
                    _ => same(false),
                }
            }
            Expr::Convert(to, a) if self.dep(*a) && !to.is_float() => {
                fail("a conversion of a tangent to an integer".into())
            }
            Expr::Select(c, x, y) => {
                if self.dep(*c) {
                    return fail("a choice on a tangent".into());
                }
                same(self.dep(*x) || self.dep(*y))
            }
            Expr::If { cond, then_body, else_body } => {
                if self.dep(*cond) {
                    return fail("a branch on a tangent".into());
                }
                let t = self.body(then_body)?;
                let e = self.body(else_body)?;
                Ok(t.iter().zip(&e).map(|(a, b)| *a || *b).collect())
            }
            Expr::Loop { params, init, form, body } => self.loop_(params, init, form, body, s.span),
            Expr::Map { lam, arrays, .. } => {
                let params: Vec<bool> = arrays.iter().map(|v| self.tangent.contains(v)).collect();
                self.lambda(lam, &params)
            }
            Expr::Reduce { lam, neutral, arrays } | Expr::Scan { lam, neutral, arrays } => {
                let elems: Vec<bool> = arrays.iter().map(|v| self.tangent.contains(v)).collect();
                self.fold(lam, neutral, &elems)
            }
            Expr::Hist { dest, lam, neutral, values, .. } => {
                let d = self.tangent.contains(dest) || self.tangent.contains(values);
                let out = self.fold(lam, std::slice::from_ref(neutral), &[self.tangent.contains(values)])?;
                same(d || out.iter().any(|o| *o))
            }
            Expr::Custom { primal, args, .. } => {
                let params: Vec<bool> = args.iter().map(|a| self.dep(*a)).collect();
                self.lambda(primal, &params)
            }
            other => same(self.any(&other.operands())),
        }
    }

    /// A loop: its parameters depend on a tangent when their initial values
    /// or the body's results for them do (to a fixpoint); its bound or
    /// condition must not.
    fn loop_(&mut self, params: &[Var], init: &[Atom], form: &LoopForm, body: &Body, span: Span) -> R<Vec<bool>> {
        if let LoopForm::For { bound, .. } = form {
            if self.dep(*bound) {
                return Err(NonLinear { what: "a loop bound from a tangent".into(), span });
            }
        }
        let mut state: Vec<bool> = init.iter().map(|a| self.dep(*a)).collect();
        loop {
            for (p, d) in params.iter().zip(&state) {
                if *d {
                    self.tangent.insert(*p);
                }
            }
            if let LoopForm::While { cond } = form {
                if self.body(cond)?.iter().any(|d| *d) {
                    return Err(NonLinear { what: "a loop condition on a tangent".into(), span });
                }
            }
            let out = self.body(body)?;
            let next: Vec<bool> = state.iter().zip(&out).map(|(a, b)| *a || *b).collect();
            if next == state {
                return Ok(state);
            }
            state = next;
        }
    }
}

/*
Note [Linear rules]
~~~~~~~~~~~~~~~~~~~
A `with jvp` rule gives the tangent map of a function, which is linear in the
tangents by definition; reverse mode relies on that, computing the rule's
transpose by running reverse mode through it at any tangent (Note [Custom
derivatives] in rev.rs). A rule that is not linear — `x_tan * x_tan`, or an
iterative solve of the tangent system that stops when a residual of the
tangent is small — would still run in forward mode, and in reverse mode give
a silently wrong derivative (through a branch on the tangent, even 0). So
elaboration checks every rule (`first_nonlinear`) and rejects one with an
operation this analysis sees to be non-linear (E0119, pointing at the
operation). It sees through everything the IR has but cannot prove
linearity of arbitrary code: a rule adding a constant (`t + 1.0`, affine) or
one that is linear only by cancellation is accepted, and `slope gradcheck`
is the check for those.
*/

#[cfg(test)]
mod tests {
    use crate::api::Program;
    use crate::diagnostic::Code;

    fn compile(src: &str) -> Result<Program, Vec<Code>> {
        Program::compile("t.slope", src, &crate::driver::no_files).map_err(|f| f.codes())
    }

    #[test]
    fn linear_rules_pass_and_nonlinear_ones_are_e0119() {
        let ok = [
            "def f (x: f64) : f64 = x * x\nwith jvp x t = 2.0 * x * t - (t / x) * 0.0\nentry e (x: f64) : f64 = grad f x",
            "def f [n] (x: [n]f64) : f64 = sum x\nwith jvp x t = reduce (+) 0.0 (map (\\v -> 2.0 * v) t)\nentry e [n] (x: [n]f64) : [n]f64 = grad f x",
            "def f (x: f64) : f64 = x\nwith jvp x t = if x > 0.0 then t else -t\nentry e (x: f64) : f64 = grad f x",
            "def f (x: f64) : f64 = x\nwith jvp x t = loop s = t for i < 3 do s * 0.5\nentry e (x: f64) : f64 = grad f x",
        ];
        for src in ok {
            assert!(compile(src).is_ok(), "{src}");
        }
        let bad = [
            "def f (x: f64) : f64 = x\nwith jvp x t = t * t\nentry e (x: f64) : f64 = grad f x",
            "def f (x: f64) : f64 = x\nwith jvp x t = exp t\nentry e (x: f64) : f64 = grad f x",
            "def f (x: f64) : f64 = x\nwith jvp x t = x / t\nentry e (x: f64) : f64 = grad f x",
            "def f (x: f64) : f64 = x\nwith jvp x t = if t > 0.0 then t else 0.0\nentry e (x: f64) : f64 = grad f x",
            "def f (x: f64) : f64 = x\nwith jvp x t = loop s = t while s > 1.0e-3 do s * 0.5\nentry e (x: f64) : f64 = grad f x",
            "def f (x: f64) : f64 = x\nwith jvp x t = loop s = 0.0 for i < 3 do s + t * s\nentry e (x: f64) : f64 = grad f x",
            "def f [n] (x: [n]f64) : f64 = sum x\nwith jvp x t = reduce (*) 1.0 t\nentry e [n] (x: [n]f64) : [n]f64 = grad f x",
        ];
        for src in bad {
            assert_eq!(compile(src).err(), Some(vec![Code::E0119]), "{src}");
        }
    }
}
