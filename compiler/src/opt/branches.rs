//! Code both branches of an `if` share: the statements both branches begin
//! with are run once, before the `if` (rule `hoist_common`).
//!
//! Input: a body and the run's [`Cx`]. Output: the body with each `if`
//! whose branches begin with the same statements (up to the names they
//! bind, `ir::scope::same_up_to_renaming`) preceded by the then-branch's
//! copy of them; the else branch reads the then-branch's names instead of
//! its own. Invariant: the program runs the same statements in the same
//! order on every path, so values and failures are unchanged, and so are
//! their reports but for the span of an out-of-memory error (Note [Common
//! code of two branches]).

use super::guards;
use super::rules::{each_stmt, with_expr};
use super::strategy::Cx;
use super::walk;
use crate::hash::HashMap;
use crate::ir::scope::same_up_to_renaming;
use crate::ir::{Atom, Body, Expr, Stmt, Var};

// Note [Common code of two branches]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A program that picks a variant with an `if` often computes the same thing
// first in both branches. GradBench's `ht` is the example: `jacobian` is
//
//     if length us == 0 then jacfwd (\th -> residuals_simple th data) theta
//     else … jacfwd (\th -> residuals_complicated th data us) theta …
//
// and both residual functions pose the hand first, so after forward mode
// each branch begins with the posed hand and its 26 tangent directions:
// about 865 statements of the optimised IR, the same in both branches but
// for the names they bind. Compiled as written, the native code holds the
// hand twice and the compiler lowers, optimises and compiles it twice.
//
// `hoist_common` moves the longest common prefix of the two branches before
// the `if`, keeping the then-branch's copy; the else branch's uses of its own
// copy's variables read the then-branch's instead. The `if` reads nothing but
// its condition, which is already computed, before it enters a branch, and
// either branch begins by running exactly these statements — so the program
// runs the same statements in the same order on every path. Nothing is
// computed that was not before, and nothing fails or loops that did not,
// even for statements that may fail or run for ever: no guard is needed
// (unlike moving code out of one branch, or out of a `map`).
//
// What must be the same for a failure to be reported the same: a statement
// that may fail is hoisted only when its span, and those of the statements
// nested in it, are the same in both branches — otherwise the then-branch's
// source would be named when the else branch failed. Statements that cannot
// fail may differ in span: forward mode gives its seeds the span of the
// `jacfwd`, which differs per branch. "Cannot fail" is `guards::total` from
// the facts alone, without the function's top-level size checks
// (`Cx::without_size_checks`): elsewhere the optimiser may count on a later
// check to fail instead, but here the statement would fail before that
// check, named at the wrong branch's source. One report can still change:
// running out of memory in an allocation that cannot otherwise fail is
// reported at the then-branch's copy of it (the same code and message, the
// other branch's line).
//
// Two more conditions keep the optimiser's bookkeeping true: a pair whose
// binders differ in being consumed by an `UpdateAt` (Note [Consumed arrays])
// or in being recomputed later (`ir::Program::recomputed`) ends the prefix.
//
// Only a prefix moves. A statement common to both branches but preceded by
// different ones would have to pass those (their failures come first), and
// statements after the common part are rarely the same in practice.

/// `if c then (s; t) else (s'; e)` with `s'` the same statements as `s` up to
/// renaming → `s; if c then t else e[s' := s]`. See Note [Common code of two
/// branches].
pub(super) fn hoist_common(cx: &mut Cx, body: &Body) -> Option<Body> {
    each_stmt(cx, body, |cx, s| {
        let Expr::If { cond, then_body, else_body } = &s.expr else { return None };
        let (n, renamed) = cx.without_size_checks(|cx| common_prefix(cx, then_body, else_body))?;
        let rest = |b: &Body| Body { stmts: b.stmts[n..].to_vec().into(), result: b.result.clone() };
        let mut else_rest = rest(else_body);
        walk::substitute(&mut else_rest, &renamed);
        let mut out: Vec<Stmt> = Vec::with_capacity(n + 1);
        out.extend_from_slice(&then_body.stmts[..n]);
        out.push(with_expr(s, Expr::If { cond: *cond, then_body: rest(then_body), else_body: else_rest }));
        Some(out)
    })
}

/// How many statements both branches begin with (at least one), and the
/// substitution from the else branch's variables bound by them to the
/// then-branch's.
fn common_prefix(cx: &Cx, then_body: &Body, else_body: &Body) -> Option<(usize, HashMap<Var, Atom>)> {
    let mut renaming = HashMap::default();
    let mut renamed = HashMap::default();
    let mut n = 0;
    for (a, b) in then_body.stmts.iter().zip(else_body.stmts.iter()) {
        let spans = !guards::total(cx, a);
        if !same_up_to_renaming(cx.vars, a, b, &mut renaming, spans) || !same_roles(cx, &a.binds, &b.binds) {
            break;
        }
        renamed.extend(b.binds.iter().zip(&a.binds).map(|(y, x)| (*y, Atom::Var(*x))));
        n += 1;
    }
    (n > 0).then_some((n, renamed))
}

/// Whether each pair of binders is consumed, and recomputed, alike.
fn same_roles(cx: &Cx, a: &[Var], b: &[Var]) -> bool {
    a.iter().zip(b).all(|(x, y)| cx.is_consumed(*x) == cx.is_consumed(*y) && cx.is_recomputed(*x) == cx.is_recomputed(*y))
}
