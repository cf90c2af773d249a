//! Calls of entry points by entry points (`Expr::Call`), and their inlining
//! where a pass must see through them.
//!
//! Input: a [`Program`] whose function bodies may hold `Call` statements
//! (only at their top level: Note [Entries called by entries]). Output:
//! bodies with those calls replaced by renamed copies of the callees'
//! bodies — under AD operators ([`inline_under_ad`]), or everywhere in one
//! body ([`inline_all`]: gradcheck and the `unary` printout, which
//! differentiate a function's whole body). Invariant relied on: a call
//! names a function earlier in the program (the verifier checks it), so
//! inlining terminates.

use super::scope::rename_body;
use super::{Atom, Body, Expr, Func, Program, Stmt, Var, VarTable};
use crate::hash::HashMap;

// Note [Entries called by entries]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Elaboration inlines every call of a `def`: the optimiser then fuses and
// specialises across the call, which is where most of the generated code's
// speed comes from. An *entry* point is different: it is compiled anyway, as
// a function of its own, so inlining it where another entry calls it
// compiles its body twice — and a test entry calling an entry that calls two
// others (`agree` → `compare` → two gradients in implicit_ridge.slope)
// compiles the same code three times over. So a call of an entry, written
// at the top level of another entry's body, becomes `Expr::Call`: the callee
// runs as it is compiled, once.
//
// Only at the top level (not in a branch, a loop or a lambda) — a call in a
// `map` body would run the whole callee per element, allocating its results
// each time, with none of the fusion inlining gives; there the call is
// inlined as before. This also keeps every later stage simple: a call is a
// statement of a function's own body, so it is never inside a loop (no
// per-iteration memory, never in a parallel segment) and never inside a
// lambda an AD operator differentiates. A function whose *whole* body is
// differentiated (gradcheck, `emit --stage unary`) inlines its calls first
// (`inline_all`); an AD operator's lambda cannot hold a call (it is nested),
// but `inline_under_ad` inlines any that a transformation put there, so AD
// never meets one.
//
// The optimiser treats a call as an opaque statement that may fail
// (`guards::conditions` has no check for the callee's failures): never
// removed, moved or duplicated. Its results may share buffers with its
// arguments (an entry may return a parameter or a view of one), so lowering
// treats them as borrowed, like parameters (Note [Ownership and in-place
// updates] in loops/lower.rs). A failure inside the callee reports the
// callee's statement, as an inlined copy would.

/// Whether `body` (nested bodies included) holds a call.
pub fn contains_call(body: &Body) -> bool {
    body.stmts.iter().any(|s| {
        matches!(s.expr, Expr::Call { .. }) || {
            let mut found = false;
            s.expr.for_each_body(&mut |b| found |= contains_call(b));
            found
        }
    })
}

/// Inlines every call inside the lambdas of AD operators and custom
/// derivative nodes of `program`, so that AD never meets one.
pub fn inline_under_ad(program: &mut Program) {
    if !program.funcs.iter().any(|f| contains_call(&f.body)) {
        return;
    }
    let funcs = program.funcs.clone();
    for f in &mut program.funcs {
        f.body = inline_in(&funcs, &mut program.vars, &f.body, false);
    }
}

/// `body` with every call in it inlined, recursively (`funcs` are the
/// program's functions, `vars` its variable table).
pub fn inline_all(funcs: &[Func], vars: &mut VarTable, body: &Body) -> Body {
    inline_in(funcs, vars, body, true)
}

/// `body` with its calls inlined: all of them when `everywhere`, else only
/// those under an AD operator or a custom derivative node.
fn inline_in(funcs: &[Func], vars: &mut VarTable, body: &Body, everywhere: bool) -> Body {
    if !contains_call(body) {
        return body.clone();
    }
    let mut stmts = Vec::with_capacity(body.stmts.len());
    for s in body.stmts.iter() {
        match &s.expr {
            Expr::Call { func, args } if everywhere => {
                let callee = funcs.iter().find(|f| &f.name == func).expect("a verified call names a function");
                stmts.extend(inlined(funcs, vars, callee, args, &s.binds, s));
            }
            e => {
                let under_ad = matches!(e, Expr::Jvp { .. } | Expr::Vjp { .. } | Expr::Custom { .. });
                let mut copy = s.clone();
                for b in copy.expr.bodies_mut() {
                    *b = inline_in(funcs, vars, b, everywhere || under_ad);
                }
                stmts.push(copy);
            }
        }
    }
    Body { stmts: stmts.into(), result: body.result.clone() }
}

/// The statements of a call of `callee` on `args` binding `binds`: the
/// callee's body renamed (its own calls inlined too), then the binds as
/// copies of its results.
fn inlined(funcs: &[Func], vars: &mut VarTable, callee: &Func, args: &[Atom], binds: &[Var], call: &Stmt) -> Vec<Stmt> {
    let mut subst: HashMap<Var, Atom> = callee.params.iter().copied().zip(args.iter().copied()).collect();
    let copy = rename_body(vars, &callee.body, &mut subst);
    let copy = inline_in(funcs, vars, &copy, true);
    let mut out: Vec<Stmt> = copy.stmts.iter().cloned().collect();
    for (b, r) in binds.iter().zip(&copy.result) {
        out.push(Stmt { binds: vec![*b], expr: Expr::Atom(*r), span: call.span });
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::api::Program;
    use crate::driver::no_files;
    use crate::hash::HashMap;
    use crate::ir::interp::{self, Val};
    use crate::ir::scope::rename_lambda;
    use crate::ir::{Atom, Body, Expr, Func, IrType, Lambda, Stmt};

    const SOURCE: &str = "entry square (x: f64) : f64 = x * x\n\
                          entry twice (x: f64) : f64 = let y = square x in y + y\n";

    /// `d x w` = the vjp of `twice`'s body (which calls `square`) at `x`.
    fn with_vjp_of_twice() -> crate::ir::Program {
        let compiled = Program::compile("t.slope", SOURCE, &no_files).unwrap_or_else(|f| panic!("{f:?}"));
        let mut ir = compiled.elaborated.clone();
        let twice = ir.func("twice").expect("elaborated").clone();
        assert!(super::contains_call(&twice.body), "`twice` calls `square`");
        let lam = Lambda { params: twice.params.clone(), body: twice.body.clone() };
        let lam = rename_lambda(&mut ir.vars, &lam, &mut HashMap::default());
        let (x, w, d) = (ir.vars.fresh("x", IrType::F64), ir.vars.fresh("w", IrType::F64), ir.vars.fresh("d", IrType::F64));
        let vjp = Expr::Vjp { lam, primals: vec![Atom::Var(x)], cotangents: vec![Atom::Var(w)], values: false };
        let stmt = Stmt { binds: vec![d], expr: vjp, span: twice.span };
        ir.funcs.push(Func {
            name: "d".into(),
            params: vec![x, w],
            body: Body { stmts: vec![stmt].into(), result: vec![Atom::Var(d)] },
            signature: twice.signature.clone(),
            span: twice.span,
        });
        ir
    }

    #[test]
    fn a_call_under_an_ad_operator_is_inlined_before_differentiating() {
        let ir = with_vjp_of_twice();
        let differentiated = crate::driver::run_ad(&ir).unwrap_or_else(|d| panic!("{d:?}"));
        crate::ir::verify::verify_program(&differentiated).unwrap_or_else(|e| panic!("{e:?}"));
        // d/dx (x² + x²) = 4x.
        let (out, _) = interp::run(&differentiated, "d", vec![Val::F64(3.0), Val::F64(1.0)], &Default::default())
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(out, vec![Val::F64(12.0)]);
        // The entry that calls keeps its call; only the differentiated copy is inlined.
        assert!(super::contains_call(&differentiated.func("twice").expect("kept").body));
        assert!(!super::contains_call(&differentiated.func("d").expect("kept").body));
    }

    #[test]
    fn the_verifier_rejects_a_call_that_is_nested_or_of_a_later_function() {
        let mut ir = with_vjp_of_twice();
        // The vjp's lambda holds a call: fine for AD (it inlines it), not for the verifier.
        let errors = crate::ir::verify::verify_program(&ir).expect_err("a nested call");
        assert!(errors.iter().any(|e| e.message.contains("inside a nested body")), "{errors:?}");
        // `twice` moved before `square` calls a function defined later.
        ir.funcs.pop();
        ir.funcs.swap(0, 1);
        let errors = crate::ir::verify::verify_program(&ir).expect_err("a later callee");
        assert!(errors.iter().any(|e| e.message.contains("not a function defined earlier")), "{errors:?}");
    }
}
