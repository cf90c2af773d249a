//! Accumulation through a permutation is a store (Note [Accumulating through
//! a permutation]).
//!
//! Input: a body and the run's [`Cx`], which knows the `argsort` results.
//! Output: the body with each qualifying loop's `acc with [p[t]] += v`
//! replaced by `acc with [p[t]] = c + v`, or `None` when there is none.
//! Invariant: the rewritten loop computes the same values bit for bit, and
//! fails exactly when the original does (the index and its check are
//! unchanged).

use super::rules::{each_stmt, with_expr};
use super::strategy::{Cx, Fact};
use crate::ir::{Atom, BinOp, Body, Expr, LoopForm, Stmt, Var};

/*
Note [Accumulating through a permutation]
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
Reverse mode turns a gather `map (\i -> xs[i]) p` — what `sort` and `top_k`
are — into a loop that accumulates the cotangent into the adjoint of `xs`:

    loop (acc) = (replicate n c) for j < m do
      let t = k - j            (or t = j)
      let row = p[t]
      … acc with [row] += v

Accumulating is a read-modify-write at a random address, and when `p` comes
from `argsort` (every index exactly once) it is the slow part of a sort's
gradient: 10⁶ elements took 172 ms through `reduce_by_index` and 58 ms
through `scatter` (docs/performance.md, tenth session). When `p` is a
permutation and `t` takes a different value in every iteration (`j` or a
loop-invariant minus `j`), no row is updated twice, so each update reads
the initial value `c`: the update is the store of `c + v` — the same number
the accumulation computes, so the rewrite is exact. The index, and the
check that it is in range, are untouched, so failures do not change either.
*/

/// `t` takes a different value in each iteration of a loop over `j`: it is
/// `j`, or bound in `stmts` to `k - j` with `k` not bound there.
fn injective_in(stmts: &[Stmt], t: Atom, j: Var) -> bool {
    let Atom::Var(t) = t else { return false };
    if t == j {
        return true;
    }
    let local = |a: Atom| matches!(a, Atom::Var(v) if stmts.iter().any(|s| s.binds.contains(&v)));
    stmts
        .iter()
        .any(|s| s.binds == [t] && matches!(s.expr, Expr::Binary(BinOp::Sub, k, Atom::Var(x)) if x == j && !local(k)))
}

/// Rewrites the qualifying loops of one body (see the module header).
pub fn permutation_store(cx: &mut Cx, body: &Body) -> Option<Body> {
    each_stmt(cx, body, |cx, s| {
        let Expr::Loop { params, init, form: LoopForm::For { index, .. }, body: lb } = &s.expr else { return None };
        let ([acc], [Atom::Var(start)]) = (params.as_slice(), init.as_slice()) else { return None };
        let Some(Fact::Replicate { value: c @ Atom::Const(_), .. }) = cx.fact(*start) else { return None };
        // The body's one use of `acc` is the update whose result it returns.
        let [Atom::Var(out)] = lb.result.as_slice() else { return None };
        let k = lb.stmts.iter().position(|t| t.binds == [*out])?;
        let Expr::UpdateAt { array, indices, value, accumulate: true } = &lb.stmts[k].expr else { return None };
        let ([Atom::Var(row)], true) = (indices.as_slice(), array == acc) else { return None };
        // One use of `acc`, and an update of one element, not of a row.
        if cx.uses(*acc) != 1 || !cx.vars.atom_type(*value).is_scalar() {
            return None;
        }
        let gathered = lb.stmts.iter().any(|t| {
            t.binds == [*row]
                && matches!(&t.expr, Expr::Index { array: p, indices } if cx.is_permutation(*p)
                    && matches!(indices.as_slice(), [i] if injective_in(&lb.stmts, *i, *index)))
        });
        if !gathered {
            return None;
        }
        let ty = cx.vars.atom_type(*value);
        let sum = cx.vars.fresh("upd", ty);
        let mut stmts = lb.stmts.clone();
        let span = stmts[k].span;
        stmts[k].expr =
            Expr::UpdateAt { array: *array, indices: indices.clone(), value: Atom::Var(sum), accumulate: false };
        stmts.insert(k, Stmt { binds: vec![sum], expr: Expr::Binary(BinOp::Add, c, *value), span });
        let mut e = s.expr.clone_without_bodies();
        if let Some(b) = e.bodies_mut().into_iter().next() {
            *b = Body { stmts, result: lb.result.clone() };
        }
        Some(vec![with_expr(s, e)])
    })
}
