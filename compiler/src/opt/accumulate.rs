//! Rows added into loop state in place (Note [Accumulated rows]).
//!
//! Input: a body and the run's [`Cx`]. Output: the body with each qualifying
//! `map` inside a loop — one whose every result is a piece of the loop's
//! matrix state plus a contribution, row by row — replaced by a loop over
//! the rows that adds each row's contribution in place, or `None` when there
//! is none.
//!
//! Invariant: every element is the same sum of the same two operands, in the
//! same order, so the values are the same bits, and the shapes are the same
//! (a state without rows: Note [Rows of an empty state]); the map's checks
//! (its width and the lengths of its arrays, the inner maps' lengths) stay,
//! as guards where the rewrite removes the array they tested.

use super::guards;
use super::rules::each_stmt;
use super::strategy::Cx;
use super::walk;
use crate::hash::HashMap;
use crate::ir::{Atom, BinOp, Body, CheckKind, Expr, IrType, Lambda, LoopForm, Stmt, Var};
use std::collections::BTreeMap;

/*
Note [Accumulated rows]
~~~~~~~~~~~~~~~~~~~~~~~
Reverse mode through a loop whose body maps over a free matrix accumulates
that matrix's adjoint across iterations. When the map runs over the matrix's
rows — `map (\c -> distance p c) centroids` in k-means — the adjoint of each
iteration is a whole matrix, and the optimiser fuses the accumulation into

    loop (acc) = (zeros) for j < n do
      …
      let acc' = map (\a c g -> map (\e x -> e + h x g) a c) acc centroids cot
      in acc'

Lowered, that allocates a fresh matrix per iteration and copies every row of
it (a map writes in place only over a vector: Note [Maps in place] in
ownership/mod.rs), and the parallel level cannot treat the loop as a
histogram, because nothing in it adds into `acc`. Indexing instead —
`tabulate k (\i -> distance p centroids[i])` — gives the same sums as updates
`acc with [i] += row`, which lowering runs in place and the parallel level
splits into chunks with their own accumulators (Role::Hist). So this rule
rewrites the first form into the second:

    let acc' = loop (c) = (acc) for i < k do
      let x = centroids[i]; let g = cot[i]
      let r = map (\x -> h x g) x
      in c with [i] += r

Each element gets `e + h`, its old value first, as before: the same bits.
It applies when every result of the map is such a sum, at least one of them
over a matrix (a vector `e + h` is already written in place), each result is
the loop's next value of the state it adds to, and that state is read
nowhere after the map. Shapes stay too: Note [Rows of an empty state]. The map's own checks (its width, its
arrays' lengths) become guards before the loop; an inner map that loses its
row of the state keeps a check that the row's length is its width.
*/

/// One result of the map: `state`, the map's array at position `array`, plus
/// a contribution — added in the lambda body (a vector's element) or by an
/// inner map over the row (a matrix).
struct Sum {
    array: usize,
    state: Var,
    /// A matrix: the statement index of the inner map in the lambda body, and
    /// the position of the row among its arrays.
    inner: Option<(usize, usize)>,
}

/// Rewrites the qualifying maps of the loops of one body, each loop under
/// the condition that keeps the shapes (Note [Rows of an empty state]).
pub fn accumulate_rows(cx: &mut Cx, body: &Body) -> Option<Body> {
    each_stmt(cx, body, |cx, s| {
        let Expr::Loop { params, init, form, body: lb } = &s.expr else { return None };
        let (rows, empty, matrices) = rewrite_loop_body(cx, params, lb)?;
        let binds: Vec<Var> = s.binds.iter().map(|b| cx.vars.fresh_like(*b)).collect();
        let with_body = |binds: Vec<Var>, body: Body| Stmt {
            binds,
            expr: Expr::Loop { params: params.clone(), init: init.clone(), form: form.clone(), body },
            span: s.span,
        };
        let inits: Vec<Atom> = matrices.iter().map(|&j| init[j]).collect();
        Some(versioned(cx, s, with_body(binds, rows), with_body(s.binds.clone(), empty), &inits))
    })
}

/// For the first qualifying map of the loop body `lb`: the body with the
/// map as row updates; the body for an empty state, with the map as its
/// checks and the empty arrays it makes then (Note [Rows of an empty state]);
/// and the positions of the loop's matrix states that the map adds to.
fn rewrite_loop_body(cx: &mut Cx, params: &[Var], lb: &Body) -> Option<(Body, Body, Vec<usize>)> {
    for (t, s) in lb.stmts.iter().enumerate() {
        let Expr::Map { width, lam, arrays } = &s.expr else { continue };
        let Some(sums) = sums(cx, params, lb, t, lam, arrays) else { continue };
        let around = |cx: &mut Cx, middle: Vec<Stmt>| {
            let mut stmts: Vec<Stmt> = lb.stmts[..t].to_vec();
            stmts.extend(guards::materialise(cx, guards::map_conds(cx, *width, arrays), s.span));
            stmts.extend(middle);
            stmts.extend(lb.stmts[t + 1..].iter().cloned());
            Body { stmts: stmts.into(), result: lb.result.clone() }
        };
        let updates = rows_loop(cx, s, *width, lam, arrays, &sums);
        let rows = around(cx, vec![updates]);
        let nothing: Vec<Stmt> = s.binds.iter().flat_map(|b| empty_array(cx, *b, s.span)).collect();
        let empty = around(cx, nothing);
        let matrices = sums
            .iter()
            .filter(|sum| sum.inner.is_some())
            .filter_map(|sum| params.iter().position(|p| *p == sum.state))
            .collect();
        return Some((rows, empty, matrices));
    }
    None
}

/// Binds `b` to what a `map` of width 0 makes: an array of `b`'s rank whose
/// every dimension is 0.
fn empty_array(cx: &mut Cx, b: Var, span: crate::diagnostic::Span) -> Vec<Stmt> {
    let ty = cx.vars.ty(b);
    let mut value = Atom::Const(crate::ir::Const::of(ty.elem, 0.0));
    let mut out = Vec::new();
    for rank in 1..=ty.rank {
        let v = if rank == ty.rank { b } else { cx.vars.fresh("empty", IrType { elem: ty.elem, rank }) };
        out.push(Stmt { binds: vec![v], expr: Expr::Replicate { count: Atom::i64(0), value }, span });
        value = Atom::Var(v);
    }
    out
}

/*
Note [Rows of an empty state]
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
A `map` of width 0 whose elements are arrays makes an array with inner
dimensions 0, since no row was computed (docs/language.md): over a matrix
state of 0 rows and d > 0 columns it gives [0][0], where the loop of row
updates leaves the state as it is, [0][d]. A program can see the difference
(`length (transpose acc)`, or a later map over its columns that checks a
size). The state's row count never changes — the map's width is the
state's length, checked, and its result has that many rows — so the two
agree on every iteration exactly when the initial state has a row, or has
no columns. The rewritten loop runs under that condition: `if rows > 0 ||
columns == 0 then <row updates> else <the empty arrays>` — one test per
loop, not per iteration. Otherwise every iteration's map has width 0 (its
width is the state's length, and the state never gets a row), so the other
branch keeps the map's checks and binds what such a map makes, arrays whose
every dimension is 0; with no map left, the rule does not apply there again.
*/

/// `if <every matrix state at entry has a row or no columns> then rewritten
/// else empty` (Note [Rows of an empty state]), binding what `original`
/// binds (as `empty` does; `rewritten` binds fresh variables).
fn versioned(cx: &mut Cx, original: &Stmt, rewritten: Stmt, empty: Stmt, inits: &[Atom]) -> Vec<Stmt> {
    let span = original.span;
    let mut out = Vec::new();
    let mut let_ = |cx: &mut Cx, name: &str, ty: IrType, expr: Expr| {
        let v = cx.vars.fresh(name, ty);
        out.push(Stmt { binds: vec![v], expr, span });
        Atom::Var(v)
    };
    let mut cond = Atom::Const(crate::ir::Const::Bool(true));
    for &a in inits {
        let Atom::Var(v) = a else { continue };
        let rows = let_(cx, "rows", IrType::I64, Expr::Shape { array: v, dim: 0 });
        let cols = let_(cx, "cols", IrType::I64, Expr::Shape { array: v, dim: 1 });
        let some = let_(cx, "some", IrType::BOOL, Expr::Binary(BinOp::Gt, rows, Atom::i64(0)));
        let none = let_(cx, "none", IrType::BOOL, Expr::Binary(BinOp::Eq, cols, Atom::i64(0)));
        let ok = let_(cx, "ok", IrType::BOOL, Expr::Binary(BinOp::Or, some, none));
        cond = match cond {
            Atom::Const(_) => ok,
            c => let_(cx, "ok", IrType::BOOL, Expr::Binary(BinOp::And, c, ok)),
        };
    }
    let then_body = Body { result: rewritten.binds.iter().map(|b| Atom::Var(*b)).collect(), stmts: vec![rewritten].into() };
    let empty_body = Body { result: empty.binds.iter().map(|b| Atom::Var(*b)).collect(), stmts: vec![empty].into() };
    // The loop's binders are the `if`'s now, and the branches share the rest
    // of the loop body: this branch binds copies.
    let else_body = crate::ir::scope::rename_body(cx.vars, &empty_body, &mut HashMap::default());
    out.push(Stmt { binds: original.binds.clone(), expr: Expr::If { cond, then_body, else_body }, span });
    out
}

/// How many times `v` is used in `stmts` (nested bodies included) and `result`.
fn uses_in(stmts: &[Stmt], result: &[Atom], v: Var) -> usize {
    let mut n = result.iter().filter(|a| **a == Atom::Var(v)).count();
    walk::for_each_use_in(stmts, &mut |u| n += usize::from(u == v));
    n
}

/// Each result of the map at statement `t` of the loop body `lb` as a [`Sum`],
/// when all of them are and one is over a matrix (Note [Accumulated rows]).
fn sums(cx: &Cx, params: &[Var], lb: &Body, t: usize, lam: &Lambda, arrays: &[Var]) -> Option<Vec<Sum>> {
    let s = &lb.stmts[t];
    let later = &lb.stmts[t + 1..];
    let mut out = Vec::new();
    for (k, &b) in s.binds.iter().enumerate() {
        // The result is the loop's next value of one piece of state, and
        // used nowhere else.
        let j = lb.result.iter().position(|a| *a == Atom::Var(b))?;
        let state = params[j];
        if cx.uses(b) != 1 || arrays.iter().filter(|a| **a == state).count() != 1 {
            return None;
        }
        // The state is read nowhere after the map (its old value is gone).
        if uses_in(later, &lb.result, state) != 0 {
            return None;
        }
        let array = arrays.iter().position(|a| *a == state)?;
        let row = lam.params[array];
        let result = lam.body.result.get(k)?.var()?;
        let inner = match cx.vars.ty(state).rank {
            1 => {
                added_to(&lam.body.stmts, &lam.body.result, row, result)?;
                None
            }
            2 => Some(row_added_to(cx, &lam.body, row, result)?),
            _ => return None,
        };
        out.push(Sum { array, state, inner });
    }
    // An inner map keeps an array to iterate over.
    let mut rows: HashMap<usize, usize> = HashMap::default();
    out.iter().filter_map(|s| s.inner).for_each(|(m, _)| *rows.entry(m).or_default() += 1);
    let emptied = rows.iter().any(|(&m, &n)| matches!(&lam.body.stmts[m].expr, Expr::Map { arrays, .. } if arrays.len() <= n));
    (out.iter().any(|s| s.inner.is_some()) && !emptied).then_some(out)
}

/// The statement index of `result = e + h` in `stmts`, when `e` is used only
/// there and `result` only in `outs`, once.
fn added_to(stmts: &[Stmt], outs: &[Atom], e: Var, result: Var) -> Option<usize> {
    let i = stmts.iter().position(|s| s.binds == [result])?;
    let Expr::Binary(BinOp::Add, Atom::Var(x), _) = stmts[i].expr else { return None };
    (x == e && uses_in(stmts, outs, e) == 1 && uses_in(stmts, outs, result) == 1).then_some(i)
}

/// For a row `row` of the state: the inner map of `body` (its statement
/// index) that adds to `row` elementwise and gives `result`, and `row`'s
/// position among its arrays. `row` may otherwise only be measured
/// (`shape row 0`).
fn row_added_to(cx: &Cx, body: &Body, row: Var, result: Var) -> Option<(usize, usize)> {
    let m = body.stmts.iter().position(|s| s.binds.contains(&result))?;
    let Expr::Map { lam, arrays, .. } = &body.stmts[m].expr else { return None };
    let q = arrays.iter().position(|a| *a == row)?;
    let k = body.stmts[m].binds.iter().position(|b| *b == result)?;
    let measured = body.stmts.iter().filter(|s| matches!(s.expr, Expr::Shape { array, dim: 0 } if array == row)).count();
    let elem = lam.body.result.get(k)?.var()?;
    added_to(&lam.body.stmts, &lam.body.result, lam.params[q], elem)?;
    let once = arrays.iter().filter(|a| **a == row).count() == 1;
    let used = uses_in(&body.stmts, &body.result, row) == measured + 1 && uses_in(&body.stmts, &body.result, result) == 1;
    (once && used && cx.vars.ty(row).rank == 1).then_some((m, q))
}

/// The loop over the rows that replaces the map statement `s` (Note
/// [Accumulated rows]).
fn rows_loop(cx: &mut Cx, s: &Stmt, width: Atom, lam: &Lambda, arrays: &[Var], sums: &[Sum]) -> Stmt {
    let span = s.span;
    let i = cx.vars.fresh("i", IrType::I64);
    let carried: Vec<Var> = sums.iter().map(|sum| cx.vars.fresh_like(sum.state)).collect();
    let mut stmts = Vec::new();
    // The other arrays' elements at `i`; the map's guards, before the loop,
    // proved their lengths are the width.
    for (p, (&param, &a)) in lam.params.iter().zip(arrays).enumerate() {
        if sums.iter().all(|sum| sum.array != p) {
            stmts.push(Stmt { binds: vec![param], expr: Expr::Index { array: a, indices: vec![Atom::Var(i)] }, span });
        }
    }
    // The lambda body, each sum giving its contribution alone.
    let mut body: Vec<Stmt> = lam.body.stmts.to_vec();
    // The rows each inner map loses (by statement, in order), with the state
    // each belongs to.
    let mut inner_rows: BTreeMap<usize, Vec<(usize, Var)>> = BTreeMap::new();
    for (sum, &c) in sums.iter().zip(&carried) {
        let row = lam.params[sum.array];
        match sum.inner {
            None => drop_addend(&mut body, row),
            Some((m, q)) => inner_rows.entry(m).or_default().push((q, c)),
        }
        for st in body.iter_mut() {
            if matches!(st.expr, Expr::Shape { array, dim: 0 } if array == row) {
                st.expr = Expr::Shape { array: c, dim: 1 };
            }
        }
    }
    // Last statement first, so that the checks inserted before one leave the
    // indices of the others as they were.
    for (&m, rows) in inner_rows.iter().rev() {
        let Expr::Map { width: w, lam: inner, arrays: inner_arrays } = &body[m].expr else { continue };
        let (w, mut inner, mut inner_arrays) = (*w, inner.clone(), inner_arrays.clone());
        let span = body[m].span;
        // The inner map's own checks, in its order: the width, then lengths.
        let mut checks = guards::materialise(cx, guards::map_conds(cx, w, &[]), span);
        let mut gone: Vec<usize> = rows.iter().map(|(q, _)| *q).collect();
        gone.sort_unstable();
        for &q in gone.iter().rev() {
            let e = inner.params.remove(q);
            inner_arrays.remove(q);
            drop_addend(&mut inner.body.stmts[..], e);
        }
        // The row's length was the inner map's width: a check stays.
        for &(_, c) in rows {
            let n = cx.vars.fresh("n", IrType::I64);
            checks.push(Stmt { binds: vec![n], expr: Expr::Shape { array: c, dim: 1 }, span });
            checks.push(Stmt {
                binds: vec![],
                expr: Expr::Check { kind: CheckKind::Iterated { what: "map".into() }, args: vec![w, Atom::Var(n)] },
                span,
            });
        }
        body[m].expr = Expr::Map { width: w, lam: inner, arrays: inner_arrays };
        body.splice(m..m, checks);
    }
    stmts.extend(body);
    // Each row's contribution added in place.
    let mut next = Vec::new();
    for ((sum, &c), r) in sums.iter().zip(&carried).zip(&lam.body.result) {
        let c2 = cx.vars.fresh_like(sum.state);
        stmts.push(Stmt {
            binds: vec![c2],
            expr: Expr::UpdateAt { array: c, indices: vec![Atom::Var(i)], value: *r, accumulate: true },
            span,
        });
        next.push(Atom::Var(c2));
    }
    Stmt {
        binds: s.binds.clone(),
        expr: Expr::Loop {
            params: carried,
            init: sums.iter().map(|sum| Atom::Var(sum.state)).collect(),
            form: LoopForm::For { index: i, bound: width },
            body: Body { stmts: stmts.into(), result: next },
        },
        span,
    }
}

/// Turns the statement `t = e + h` of `stmts` into `t = h`.
fn drop_addend(stmts: &mut [Stmt], e: Var) {
    for st in stmts.iter_mut() {
        if let Expr::Binary(BinOp::Add, Atom::Var(x), h) = st.expr {
            if x == e {
                st.expr = Expr::Atom(h);
            }
        }
    }
}
