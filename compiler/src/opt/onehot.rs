//! The one-hot collapse: the rules that turn a forward-mode Jacobian of n
//! one-hot directions (O(n²)) back into O(n) work: forward mode seeds input
//! direction `e` with `hot (q == e)` (Note [One-hot seeds]), and a sum over
//! `q` of something that is zero except at `q = e` is that something at `e`
//! (the idea of dF~'s `foldConditional`, Shaikhha et al. 2019).
//!
//! - [`reduce_fission`]: a `reduce` of several accumulators whose components
//!   do not interact becomes one `reduce` per component (loop fission), so the
//!   unused primal half of a dual reduction dies.
//! - [`select_float`]: `a * hot c → select c a 0` (and `hot c * a`) for a
//!   seed, floating the condition out of the product.
//! - [`onehot_sum`]: `reduce (+) 0 (map (\… q … -> select (q == e) v 0) … (iota n) …)`
//!   with `e` not bound in the lambda is the body at `q = e`: the rows at `e`
//!   are indexed, the body is evaluated once, guarded by `0 <= e < n`.
//!
//! The file also holds the other loop-shaped rules: guarded hoisting out of
//! maps ([`hoist_guarded`]) and map–reduce fusion ([`fuse_map_reduce`]).
//!
//! Each rule checks its side conditions and fails (returns `None`) otherwise.

use super::guards;
use super::rules::{each_stmt, with_expr};
use super::strategy::{Cx, Fact};
use super::walk;
use crate::hash::{HashMap, HashSet};
use crate::ir::scope::rename_body;
use crate::ir::{alias, Atom, BinOp, Body, CheckKind, Const, Expr, IrType, Lambda, Stmt, Var};

/// Splits a multi-accumulator `reduce` into independent ones.
pub fn reduce_fission(cx: &mut Cx, body: &Body) -> Option<Body> {
    for (k, s) in body.stmts.iter().enumerate() {
        let Expr::Reduce { lam, neutral, arrays } = &s.expr else { continue };
        let n = neutral.len();
        if n < 2 {
            continue;
        }
        // Component j may only depend on accumulator j and element j.
        let mut slices = Vec::new();
        for j in 0..n {
            let allowed: HashSet<Var> = [lam.params[j], lam.params[n + j]].into_iter().collect();
            let others: HashSet<Var> = lam.params.iter().copied().filter(|p| !allowed.contains(p)).collect();
            let Some(slice) = slice_for(&lam.body, lam.body.result[j], &others) else { break };
            slices.push(slice);
        }
        if slices.len() != n || !leftovers_total(cx, &lam.body, &slices) {
            continue;
        }
        let mut out: Vec<Stmt> = body.stmts[..k].to_vec();
        for (j, stmts) in slices.into_iter().enumerate() {
            let mut subst = HashMap::default();
            let params: Vec<Var> = [lam.params[j], lam.params[n + j]]
                .iter()
                .map(|p| {
                    let q = cx.vars.fresh_like(*p);
                    subst.insert(*p, Atom::Var(q));
                    q
                })
                .collect();
            let part = Body { stmts: stmts.into(), result: vec![lam.body.result[j]] };
            let renamed = rename_body(cx.vars, &part, &mut subst);
            out.push(Stmt {
                binds: vec![s.binds[j]],
                expr: Expr::Reduce {
                    lam: Lambda { params, body: renamed },
                    neutral: vec![neutral[j]],
                    arrays: vec![arrays[j]],
                },
                span: s.span,
            });
        }
        out.extend(body.stmts[k + 1..].iter().cloned());
        return Some(Body { stmts: out.into(), result: body.result.clone() });
    }
    None
}

/// The statements of `body` that `target` depends on, in order; `None` if one
/// of them reads a variable of `forbidden`.
fn slice_for(body: &Body, target: Atom, forbidden: &HashSet<Var>) -> Option<Vec<Stmt>> {
    let free: Vec<Vec<Var>> = body.stmts.iter().map(|s| crate::ir::scope::free_in_expr(&s.expr)).collect();
    let keep = slice_indices(body, &free, target);
    let reads_forbidden = keep.iter().any(|i| free[*i].iter().any(|v| forbidden.contains(v)));
    let target_forbidden = target.var().is_some_and(|v| forbidden.contains(&v));
    (!reads_forbidden && !target_forbidden).then(|| keep.iter().map(|i| body.stmts[*i].clone()).collect())
}

/// The indices, in order, of the statements of `body` that `target` depends
/// on, given each statement's free variables (`free[i]`, computed once by a
/// caller that slices the same body for several targets).
fn slice_indices(body: &Body, free: &[Vec<Var>], target: Atom) -> Vec<usize> {
    let mut needed: HashSet<Var> = target.var().into_iter().collect();
    let mut keep = Vec::new();
    for (i, s) in body.stmts.iter().enumerate().rev() {
        if s.binds.iter().any(|b| needed.contains(b)) {
            keep.push(i);
            needed.extend(free[i].iter().copied());
        }
    }
    keep.reverse();
    keep
}

/// Fission keeps only the statements some part needs: the others (dead
/// code) may go only if they cannot fail.
fn leftovers_total(cx: &Cx, body: &Body, parts: &[Vec<Stmt>]) -> bool {
    let needed: HashSet<&[Var]> = parts.iter().flatten().map(|t| t.binds.as_slice()).collect();
    body.stmts.iter().all(|t| needed.contains(t.binds.as_slice()) && !t.binds.is_empty() || guards::total(cx, t))
}

// Note [One-hot seeds]
// ~~~~~~~~~~~~~~~~~~~~
// A Jacobian seeds direction `e` (of an input for `jacfwd`, of an output for
// `jacrev`) with a one-hot array whose element at `q` is `hot (q == e)`: the
// condition converted to a float (`Convert` of a `bool`), a form only
// elaboration's `one_hot` makes — source code cannot convert a `bool` to a
// number (E0102). A seed marks a *structural* zero: the product `a * hot c`
// is the partial `a` in direction `e` and nothing elsewhere, so
// `select_float` may drop the product's IEEE meaning at the zero (`inf * 0`
// is NaN; `select c inf 0` is 0) and `onehot_sum` may sum only the one
// nonzero row. That is what makes a forward-mode Jacobian of n directions
// O(n) instead of O(n²), and what a Jacobian means: an entry depends only on
// its own partial, never on a non-finite partial in another direction. The
// same product written by a user — `a * (if c then 1.0 else 0.0)`, or the
// `select c 1 0` that reverse mode's `min`/`max` partials are — is IEEE
// arithmetic and keeps its NaN: the rule matches seeds only, which the form
// carries through every renaming, inlining and nested AD pass.

/// `a * hot c` → `select c a 0` for a one-hot seed `hot c` (floats; either
/// operand order; Note [One-hot seeds]).
pub fn select_float(cx: &mut Cx, body: &Body) -> Option<Body> {
    let seeds: HashMap<Var, (Atom, Const)> =
        body.stmts.iter().filter_map(|s| Some((*s.binds.first()?, seed(cx, &s.expr)?))).collect();
    each_stmt(cx, body, |_, s| {
        let Expr::Binary(BinOp::Mul, x, y) = s.expr else { return None };
        [(x, y), (y, x)].into_iter().find_map(|(other, hot)| {
            let Atom::Var(h) = hot else { return None };
            let &(c, zero) = seeds.get(&h)?;
            Some(vec![with_expr(s, Expr::Select(c, other, Atom::Const(zero)))])
        })
    })
}

/// `Some((c, 0))` when `e` is a one-hot seed `hot c` of a float type whose
/// zero is `0` (Note [One-hot seeds]).
fn seed(cx: &Cx, e: &Expr) -> Option<(Atom, Const)> {
    let Expr::Convert(to, c) = *e else { return None };
    (to.is_float() && cx.vars.atom_type(c) == IrType::BOOL).then(|| (c, Const::of(to, 0.0)))
}

/// `r = reduce (+) 0 m` where `m = map (\ps -> … select (q == e) v 0) … idx …`
/// (or a seed `hot (q == e)`),
/// `idx` an `iota` of the map's width, `e` free in the lambda and `m` used only
/// here: `r` is the lambda body at the row `e`.
pub fn onehot_sum(cx: &mut Cx, body: &Body) -> Option<Body> {
    let defs: HashMap<Var, usize> =
        body.stmts.iter().enumerate().flat_map(|(i, s)| s.binds.iter().map(move |b| (*b, i))).collect();
    for (k, s) in body.stmts.iter().enumerate() {
        let Expr::Reduce { lam: op, neutral, arrays } = &s.expr else { continue };
        if arrays.len() != 1
            || !crate::ir::scope::is_addition(op)
            || !matches!(neutral[0], Atom::Const(c) if c.as_f64() == 0.0)
        {
            continue;
        }
        let m = arrays[0];
        let Some(&j) = defs.get(&m) else { continue };
        let producer = &body.stmts[j];
        let Expr::Map { width, lam, arrays: margs } = &producer.expr else { continue };
        // The body runs at one row instead of all: only sound when it cannot fail.
        if producer.binds.len() != 1 || cx.uses(m) != 1 || j > k || !guards::body_total(cx, &lam.body) {
            continue;
        }
        // The lambda's result: `select (q == e) v 0`, or a seed `hot (q == e)`
        // (Note [One-hot seeds]), which is `select (q == e) 1 0`.
        let Atom::Var(res) = lam.body.result[0] else { continue };
        let Some(sel) = lam.body.stmts.iter().find(|t| t.binds.contains(&res)) else { continue };
        let (cond, v) = match (&sel.expr, seed(cx, &sel.expr)) {
            (_, Some((Atom::Var(cond), zero))) => (cond, Atom::Const(Const::of(zero.ty(), 1.0))),
            (&Expr::Select(Atom::Var(cond), v, zero), _) if matches!(zero, Atom::Const(c) if c.as_f64() == 0.0) => {
                (cond, v)
            }
            _ => continue,
        };
        let Some(cmp) = lam.body.stmts.iter().find(|t| t.binds.contains(&cond)) else { continue };
        let Expr::Binary(BinOp::Eq, l, r) = cmp.expr else { continue };
        let bound: HashSet<Var> = {
            let mut b: HashSet<Var> = lam.params.iter().copied().collect();
            walk::bound_in(&lam.body, &mut b);
            b
        };
        let iota_param = |a: Atom| -> Option<usize> {
            let Atom::Var(p) = a else { return None };
            let pos = lam.params.iter().position(|x| *x == p)?;
            match cx.fact(margs[pos]) {
                Some(Fact::Iota(n)) if n == *width || matches!((n, *width), (Atom::Var(x), Atom::Var(y)) if x == y) => {
                    Some(pos)
                }
                _ => None,
            }
        };
        let free = |a: Atom| !matches!(a, Atom::Var(x) if bound.contains(&x));
        let (qpos, e) = match (iota_param(l), iota_param(r)) {
            (Some(p), _) if free(r) => (p, r),
            (_, Some(p)) if free(l) => (p, l),
            _ => continue,
        };
        // The body at row `e`, guarded by 0 <= e < width.
        let span = s.span;
        let ty = cx.vars.ty(s.binds[0]);
        let mut pre = Vec::new();
        let ge = cx.vars.fresh("in", IrType::BOOL);
        pre.push(Stmt { binds: vec![ge], expr: Expr::Binary(BinOp::Ge, e, Atom::i64(0)), span });
        let lt = cx.vars.fresh("in", IrType::BOOL);
        pre.push(Stmt { binds: vec![lt], expr: Expr::Binary(BinOp::Lt, e, *width), span });
        let inside = cx.vars.fresh("in", IrType::BOOL);
        pre.push(Stmt { binds: vec![inside], expr: Expr::Binary(BinOp::And, Atom::Var(ge), Atom::Var(lt)), span });
        let mut then_stmts = Vec::new();
        let mut subst = HashMap::default();
        for (pos, (p, a)) in lam.params.iter().zip(margs).enumerate() {
            if pos == qpos {
                subst.insert(*p, e);
                continue;
            }
            let row_ty = cx.vars.ty(*p);
            let row = cx.vars.fresh("row", row_ty);
            then_stmts.push(Stmt { binds: vec![row], expr: Expr::Index { array: *a, indices: vec![e] }, span });
            subst.insert(*p, Atom::Var(row));
        }
        let at_e = Body { stmts: lam.body.stmts.clone(), result: vec![v] };
        let renamed = rename_body(cx.vars, &at_e, &mut subst);
        then_stmts.extend(renamed.stmts);
        let then_body = Body { stmts: then_stmts.into(), result: renamed.result };
        let else_body = Body { stmts: Vec::new().into(), result: vec![Atom::Const(Const::of(ty.elem, 0.0))] };
        // The map's own checks (width, arrays) stay where it was.
        let own = guards::materialise(cx, guards::map_conds(cx, *width, margs), producer.span);
        let mut out: Vec<Stmt> = Vec::with_capacity(body.stmts.len() + 3);
        for (i, t) in body.stmts.iter().enumerate() {
            if i == j {
                out.extend(own.iter().cloned());
                continue;
            }
            if i == k {
                out.append(&mut pre);
                out.push(Stmt {
                    binds: s.binds.clone(),
                    expr: Expr::If {
                        cond: Atom::Var(inside),
                        then_body: then_body.clone(),
                        else_body: else_body.clone(),
                    },
                    span,
                });
            } else {
                out.push(t.clone());
            }
        }
        return Some(Body { stmts: out.into(), result: body.result.clone() });
    }
    None
}

/// Inside `map (\… q … -> …) … (iota n) …` of width `n`, `q >= 0` and `q < n`
/// are true: the one-hot collapse leaves such guards behind.
pub fn iota_bounds(cx: &mut Cx, body: &Body) -> Option<Body> {
    each_stmt(cx, body, |cx, s| {
        let Expr::Map { width, lam, arrays } = &s.expr else { return None };
        let ranged: Vec<Var> = lam
            .params
            .iter()
            .zip(arrays)
            .filter(|(_, a)| matches!(cx.fact(**a), Some(Fact::Iota(n)) if n == *width))
            .map(|(p, _)| *p)
            .collect();
        if ranged.is_empty() {
            return None;
        }
        let mut lam2 = lam.clone();
        let mut changed = false;
        for t in &mut lam2.body.stmts {
            let always = match t.expr {
                Expr::Binary(BinOp::Ge, Atom::Var(p), Atom::Const(c)) => ranged.contains(&p) && c.as_f64() <= 0.0,
                Expr::Binary(BinOp::Lt, Atom::Var(p), n) => ranged.contains(&p) && n == *width,
                _ => false,
            };
            if always {
                t.expr = Expr::Atom(Atom::Const(Const::Bool(true)));
                changed = true;
            }
        }
        changed.then(|| vec![with_expr(s, Expr::Map { width: *width, lam: lam2, arrays: arrays.clone() })])
    })
}

/// Hoists the statements of a `map` lambda that do not depend on the element
/// (nor on anything that does) out of the map, even when they might fail,
/// guarded by `width > 0`: a statement that fails would have failed in every
/// iteration, and with no iteration nothing runs. The guard's other branch
/// builds the empty results the map would have produced. This is what lifts
/// the primal computation out of the per-direction map of `jacfwd` (the
/// one-hot seeds vary, the primal does not). A constant positive width needs
/// no guard, and gets none: the map keeps a row shape lowering knows before
/// its loop. `licm` handles statements that cannot fail without a guard.
pub fn hoist_guarded(cx: &mut Cx, body: &Body) -> Option<Body> {
    for (k, s) in body.stmts.iter().enumerate() {
        let Expr::Map { width, lam, arrays } = &s.expr else { continue };
        let mut variant: HashSet<Var> = lam.params.iter().copied().collect();
        let mut hoisted = Vec::new();
        let mut kept = Vec::new();
        for t in &lam.body.stmts {
            let free = walk::free_in_expr(&t.expr);
            let movable = alias::consumed(&t.expr).is_none()
                && !matches!(t.expr, Expr::Check { .. })
                && !free.iter().any(|v| variant.contains(v) || cx.is_consumed(*v))
                && !t.binds.iter().any(|b| cx.is_consumed(*b))
                && !contains_update(&t.expr);
            if movable {
                hoisted.push(t.clone());
            } else {
                variant.extend(t.binds.iter().copied());
                kept.push(t.clone());
            }
        }
        // Worth it only when something that does work moves.
        if !hoisted.iter().any(|t| !matches!(t.expr, Expr::Atom(_) | Expr::Shape { .. })) {
            continue;
        }
        let span = s.span;
        let kept_map = |binds: Vec<Var>| Stmt {
            binds,
            expr: Expr::Map {
                width: *width,
                lam: Lambda {
                    params: lam.params.clone(),
                    body: Body { stmts: kept.clone().into(), result: lam.body.result.clone() },
                },
                arrays: arrays.clone(),
            },
            span,
        };
        // A width known to be positive needs no guard: the map runs.
        if matches!(width, Atom::Const(Const::I64(n)) if *n > 0) {
            let mut out: Vec<Stmt> = body.stmts[..k].to_vec();
            out.extend(hoisted);
            out.push(kept_map(s.binds.clone()));
            out.extend(body.stmts[k + 1..].iter().cloned());
            return Some(Body { stmts: out.into(), result: body.result.clone() });
        }
        let inner_binds: Vec<Var> =
            s.binds.iter().map(|b| cx.vars.fresh(&cx.vars.base_name(*b).to_string(), cx.vars.ty(*b))).collect();
        let mut then_stmts = hoisted;
        then_stmts.push(kept_map(inner_binds.clone()));
        let then_body = Body { stmts: then_stmts.into(), result: inner_binds.iter().map(|v| Atom::Var(*v)).collect() };
        // The empty results of a map that runs no iteration: shape [0, 0, …].
        let mut else_stmts = Vec::new();
        let mut empties = Vec::new();
        for b in &s.binds {
            let ty = cx.vars.ty(*b);
            let mut acc = Atom::Const(Const::of(ty.elem, 0.0));
            for r in 1..=ty.rank {
                let v = cx.vars.fresh("empty", IrType { elem: ty.elem, rank: r });
                else_stmts.push(Stmt {
                    binds: vec![v],
                    expr: Expr::Replicate { count: Atom::i64(0), value: acc },
                    span,
                });
                acc = Atom::Var(v);
            }
            empties.push(acc);
        }
        let else_body = Body { stmts: else_stmts.into(), result: empties };
        let guard = cx.vars.fresh("nonempty", IrType::BOOL);
        let mut out: Vec<Stmt> = body.stmts[..k].to_vec();
        out.push(Stmt { binds: vec![guard], expr: Expr::Binary(BinOp::Gt, *width, Atom::i64(0)), span });
        out.push(Stmt {
            binds: s.binds.clone(),
            expr: Expr::If { cond: Atom::Var(guard), then_body, else_body },
            span,
        });
        out.extend(body.stmts[k + 1..].iter().cloned());
        return Some(Body { stmts: out.into(), result: body.result.clone() });
    }
    None
}

fn contains_update(e: &Expr) -> bool {
    let mut found = false;
    e.for_each_body(&mut |b| {
        walk::for_each_stmt(b, &mut |t| found |= alias::consumed(&t.expr).is_some());
    });
    found
}

/// The `reduce` statements of `body` after statement `j` that read the
/// results `binds` of statement `j` — when those reduces are the only uses of
/// `binds`, read nothing else, and no statement between the first and the
/// last of them uses their results (so they can all move to the last one's
/// place). Indices in order; `None` when any condition fails.
fn reducing_consumers(cx: &Cx, body: &Body, j: usize, binds: &[Var]) -> Option<Vec<usize>> {
    let produced: HashSet<Var> = binds.iter().copied().collect();
    let mut group = Vec::new();
    let mut reads = 0usize;
    for (k, s) in body.stmts.iter().enumerate().skip(j + 1) {
        let Expr::Reduce { arrays, .. } = &s.expr else { continue };
        if !arrays.iter().any(|a| produced.contains(a)) {
            continue;
        }
        // The reduce moves down to the last of the group: it must not read an
        // array that an update in between may consume (Note [Consumed arrays]).
        let movable = walk::free_in_expr(&s.expr).iter().all(|v| !cx.is_consumed(*v));
        if !arrays.iter().all(|a| produced.contains(a)) || contains_update(&s.expr) || !movable {
            return None;
        }
        reads += arrays.len();
        group.push(k);
    }
    let total: usize = binds.iter().map(|b| cx.uses(*b) as usize).sum();
    if group.is_empty() || reads != total {
        return None;
    }
    let results: HashSet<Var> = group.iter().flat_map(|&k| body.stmts[k].binds.iter().copied()).collect();
    let (first, last) = (group[0], *group.last().expect("nonempty"));
    let mut crossing = false;
    for (k, s) in body.stmts.iter().enumerate().take(last).skip(first) {
        if !group.contains(&k) {
            walk::for_each_use_in(std::slice::from_ref(s), &mut |v| crossing |= results.contains(&v));
        }
    }
    (!crossing).then_some(group)
}

/// `body` with the statements at `group` (ascending) removed, `replacement`
/// in place of the last of them, and `own` in place of statement `j`.
fn regroup(body: &Body, j: usize, own: Vec<Stmt>, group: &[usize], replacement: Stmt) -> Body {
    let last = *group.last().expect("nonempty group");
    let mut out = Vec::with_capacity(body.stmts.len());
    let mut own = Some(own);
    let mut replacement = Some(replacement);
    for (i, t) in body.stmts.iter().enumerate() {
        if i == j {
            out.extend(own.take().expect("once"));
        } else if i == last {
            out.push(replacement.take().expect("once"));
        } else if !group.contains(&i) {
            out.push(t.clone());
        }
    }
    Body { stmts: out.into(), result: body.result.clone() }
}

/// `reduce op ne (map f xs)` (the map's results used only by reduces) → one
/// sequential loop that applies `f` to each row and folds it in at once: the
/// intermediate array is never built. Several reduces of one map's results
/// (a dual number's primal and tangent sums, which `reduce_fission` split)
/// become one loop with all their accumulators. A `reduce` is a left fold in
/// Slope's semantics, so the loop computes the same values in the same order.
pub fn fuse_map_reduce(cx: &mut Cx, body: &Body) -> Option<Body> {
    for (j, producer) in body.stmts.iter().enumerate() {
        let Expr::Map { width, lam: f, arrays: xs } = &producer.expr else { continue };
        let movable = walk::free_in_expr(&producer.expr).iter().all(|v| !cx.is_consumed(*v));
        if !movable || contains_update(&producer.expr) {
            continue;
        }
        let Some(group) = reducing_consumers(cx, body, j, &producer.binds) else { continue };
        let span = body.stmts[group[0]].span;
        let index = cx.vars.fresh("i", IrType::I64);
        let mut stmts = Vec::new();
        let mut subst = HashMap::default();
        for (p, a) in f.params.iter().zip(xs) {
            let row = cx.vars.fresh("row", cx.vars.ty(*p));
            stmts.push(Stmt {
                binds: vec![row],
                expr: Expr::Index { array: *a, indices: vec![Atom::Var(index)] },
                span,
            });
            subst.insert(*p, Atom::Var(row));
        }
        let mapped = rename_body(cx.vars, &f.body, &mut subst);
        stmts.extend(mapped.stmts);
        let (mut params, mut init, mut binds, mut result) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for &k in &group {
            let s = &body.stmts[k];
            let Expr::Reduce { lam: op, neutral, arrays } = &s.expr else { unreachable!("a reduce") };
            let n = neutral.len();
            let accs: Vec<Var> = s.binds.iter().map(|b| cx.vars.fresh("acc", cx.vars.ty(*b))).collect();
            // The operator: accumulators, then this row's mapped values in the reduce's order.
            let mut op_subst = HashMap::default();
            for (i, p) in op.params.iter().enumerate() {
                let value = if i < n {
                    Atom::Var(accs[i])
                } else {
                    let r = producer.binds.iter().position(|b| *b == arrays[i - n]).expect("a result of the producer");
                    mapped.result[r]
                };
                op_subst.insert(*p, value);
            }
            let folded = rename_body(cx.vars, &op.body, &mut op_subst);
            stmts.extend(folded.stmts);
            result.extend(folded.result);
            params.extend(accs);
            init.extend(neutral.iter().copied());
            binds.extend(s.binds.iter().copied());
        }
        let fused = Stmt {
            binds,
            expr: Expr::Loop {
                params,
                init,
                form: crate::ir::LoopForm::For { index, bound: *width },
                body: Body { stmts: stmts.into(), result },
            },
            span,
        };
        // The loop indexes the map's arrays below its width: the map's own
        // checks (width, arrays) stay where it was.
        let own = guards::materialise(cx, guards::map_conds(cx, *width, xs), producer.span);
        return Some(regroup(body, j, own, &group, fused));
    }
    None
}

/// Reduces of the results of an `if` one of whose branches builds them with
/// a `map` → the reduces in both branches (`hoist_guarded` wraps a map in
/// `if width > 0`, which would otherwise hide it from [`fuse_map_reduce`]).
/// The `if` moves down to the last reduce; nothing between uses its results.
/// Only when a reduce of the group folds arrays (Note [Sinking reduces]).
pub fn sink_reduce(cx: &mut Cx, body: &Body) -> Option<Body> {
    for (j, s) in body.stmts.iter().enumerate() {
        let Expr::If { cond, then_body, else_body } = &s.expr else { continue };
        let Some(group) = reducing_consumers(cx, body, j, &s.binds) else { continue };
        let folds_arrays = group.iter().flat_map(|&k| &body.stmts[k].binds).any(|b| !cx.vars.ty(*b).is_scalar());
        if !folds_arrays {
            continue;
        }
        let all_vars = |b: &Body| b.result.iter().all(|a| a.var().is_some());
        if !all_vars(then_body) || !all_vars(else_body) {
            continue;
        }
        let maps_in = |b: &Body| {
            let producers = walk::map_producers(b);
            b.result.iter().all(|a| a.var().is_some_and(|v| producers.contains_key(&v)))
        };
        if !(maps_in(then_body) || maps_in(else_body)) {
            continue;
        }
        // The `if` moves down too: the same condition as for the reduces.
        let movable = walk::free_in_expr(&s.expr).iter().all(|v| !cx.is_consumed(*v));
        if !movable || contains_update(&s.expr) {
            continue;
        }
        let binds: Vec<Var> = group.iter().flat_map(|&k| body.stmts[k].binds.iter().copied()).collect();
        let branch = |cx: &mut Cx, b: &Body| {
            let mut stmts = b.stmts.clone();
            let mut result = Vec::new();
            for &k in &group {
                let r = &body.stmts[k];
                let mut subst: HashMap<Var, Atom> = s.binds.iter().copied().zip(b.result.iter().copied()).collect();
                let renamed =
                    rename_body(cx.vars, &Body { stmts: vec![r.clone()].into(), result: Vec::new() }, &mut subst);
                result.extend(renamed.stmts[0].binds.iter().map(|v| Atom::Var(*v)));
                stmts.extend(renamed.stmts);
            }
            Body { stmts, result }
        };
        let then_body = branch(cx, then_body);
        let else_body = branch(cx, else_body);
        let sunk = Stmt { binds, expr: Expr::If { cond: *cond, then_body, else_body }, span: s.span };
        return Some(regroup(body, j, Vec::new(), &group, sunk));
    }
    None
}

// Note [Sinking reduces]
// ~~~~~~~~~~~~~~~~~~~~~~~
// Fusing a reduce with the map under `hoist_guarded`'s `if` pays off when the
// reduce folds arrays: unfused, the map builds one array per element (ht's
// tangent of the skinning sum: a 26-vector per bone, per vertex and
// coordinate) and the fold allocates another per step; fused, one vector is
// updated in place (Note [Maps in place] in ownership/mod.rs). For scalar
// accumulators the gain is one buffer of n scalars and one pass over it, and
// measured it was a loss: fusing gmm's sum over points into its point loop
// made the objective 13% slower at 64_100_1000 (min of 15 runs, 186 → 214 ms)
// with the same loop IR but for the accumulator — a code generation effect
// of the loop-carried value around the whole point body, not work. So
// `sink_reduce` leaves scalar-only groups alone.

/// A `reduce` over arrays that are all `replicate 0 v` is its neutral element.
pub fn reduce_empty(cx: &mut Cx, body: &Body) -> Option<Body> {
    let empty: HashSet<Var> = body
        .stmts
        .iter()
        .filter(|s| matches!(s.expr, Expr::Replicate { count: Atom::Const(Const::I64(0)), .. }))
        .flat_map(|s| s.binds.iter().copied())
        .collect();
    each_stmt(cx, body, |_, s| match &s.expr {
        Expr::Reduce { neutral, arrays, .. } if arrays.iter().all(|a| empty.contains(a)) => Some(
            s.binds
                .iter()
                .zip(neutral)
                .map(|(b, n)| Stmt { binds: vec![*b], expr: Expr::Atom(*n), span: s.span })
                .collect(),
        ),
        _ => None,
    })
}

/// Loop fission: a `for` loop whose state splits into groups that never read
/// each other becomes one loop per group (so a group that is not used dies,
/// and each loop is smaller). `while` loops are left alone (their condition
/// ties the state together).
pub fn loop_fission(cx: &mut Cx, body: &Body) -> Option<Body> {
    for (k, s) in body.stmts.iter().enumerate() {
        let Expr::Loop { params, init, form: crate::ir::LoopForm::For { index, bound }, body: lbody } = &s.expr else {
            continue;
        };
        let n = params.len();
        if n < 2 || contains_update(&s.expr) {
            continue;
        }
        // The statements each result needs, and the parameters it reads
        // through them.
        let free: Vec<Vec<Var>> = lbody.stmts.iter().map(|t| crate::ir::scope::free_in_expr(&t.expr)).collect();
        let slices: Vec<Vec<usize>> = lbody.result.iter().map(|r| slice_indices(lbody, &free, *r)).collect();
        let reads: Vec<HashSet<usize>> = (lbody.result.iter().zip(&slices))
            .map(|(r, slice)| {
                let read: HashSet<Var> = slice.iter().flat_map(|i| free[*i].iter().copied()).chain(r.var()).collect();
                (0..n).filter(|p| read.contains(&params[*p])).collect()
            })
            .collect();
        // Union the components: result j belongs with every parameter it reads.
        let mut group: Vec<usize> = (0..n).collect();
        fn find(g: &mut Vec<usize>, x: usize) -> usize {
            if g[x] != x {
                let r = find(g, g[x]);
                g[x] = r;
            }
            g[x]
        }
        for (j, rs) in reads.iter().enumerate() {
            for &p in rs {
                let (a, b) = (find(&mut group, j), find(&mut group, p));
                group[a] = b;
            }
        }
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut seen: HashMap<usize, usize> = HashMap::default();
        for j in 0..n {
            let root = find(&mut group, j);
            let g = *seen.entry(root).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(j);
        }
        if groups.len() < 2 {
            continue;
        }
        // No statement may be needed by two groups: that would duplicate work.
        let mut owner: HashMap<usize, usize> = HashMap::default();
        let mut shared = false;
        for (gi, g) in groups.iter().enumerate() {
            for j in g {
                for t in &slices[*j] {
                    shared |= *owner.entry(*t).or_insert(gi) != gi;
                }
            }
        }
        let parts: Vec<Vec<Stmt>> =
            slices.iter().map(|slice| slice.iter().map(|i| lbody.stmts[*i].clone()).collect()).collect();
        if shared || !leftovers_total(cx, lbody, &parts) {
            continue;
        }
        let mut out: Vec<Stmt> = body.stmts[..k].to_vec();
        for g in &groups {
            let results: Vec<Atom> = g.iter().map(|j| lbody.result[*j]).collect();
            // Keep body order.
            let keep: HashSet<usize> = g.iter().flat_map(|j| slices[*j].iter().copied()).collect();
            let stmts: Vec<Stmt> =
                (lbody.stmts.iter().enumerate()).filter(|(i, _)| keep.contains(i)).map(|(_, t)| t.clone()).collect();
            let mut subst = HashMap::default();
            let new_params: Vec<Var> = g
                .iter()
                .map(|j| {
                    let p = params[*j];
                    let q = cx.vars.fresh(&cx.vars.base_name(p).to_string(), cx.vars.ty(p));
                    subst.insert(p, Atom::Var(q));
                    q
                })
                .collect();
            let new_index = cx.vars.fresh(&cx.vars.base_name(*index).to_string(), IrType::I64);
            subst.insert(*index, Atom::Var(new_index));
            let renamed = rename_body(cx.vars, &Body { stmts: stmts.into(), result: results }, &mut subst);
            out.push(Stmt {
                binds: g.iter().map(|j| s.binds[*j]).collect(),
                expr: Expr::Loop {
                    params: new_params,
                    init: g.iter().map(|j| init[*j]).collect(),
                    form: crate::ir::LoopForm::For { index: new_index, bound: *bound },
                    body: renamed,
                },
                span: s.span,
            });
        }
        out.extend(body.stmts[k + 1..].iter().cloned());
        return Some(Body { stmts: out.into(), result: body.result.clone() });
    }
    None
}

/// `if c then a else b` whose branches compute nothing (atoms only, scalars)
/// → `select c a b`: both values are already there, and a select can float
/// (`select_float`) where a branch cannot.
pub fn if_to_select(cx: &mut Cx, body: &Body) -> Option<Body> {
    each_stmt(cx, body, |cx, s| {
        let Expr::If { cond, then_body, else_body } = &s.expr else { return None };
        let trivial = then_body.stmts.is_empty()
            && else_body.stmts.is_empty()
            && s.binds.iter().all(|b| cx.vars.ty(*b).is_scalar());
        trivial.then(|| {
            (s.binds.iter().enumerate())
                .map(|(k, b)| Stmt {
                    binds: vec![*b],
                    expr: Expr::Select(*cond, then_body.result[k], else_body.result[k]),
                    span: s.span,
                })
                .collect()
        })
    })
}

/// What the statements of a body seen so far say of array lengths: which
/// size variables are `shape a 0`, and which sizes its equality checks make
/// equal (past a check, the two sizes are equal). The two slice rules ask it.
#[derive(Default)]
struct Lengths {
    /// Size variable → the array whose length it is.
    length_of: HashMap<Var, Var>,
    equal: Vec<(Atom, Atom)>,
}

impl Lengths {
    fn see(&mut self, s: &Stmt) {
        match &s.expr {
            Expr::Shape { array, dim: 0 } => {
                self.length_of.insert(s.binds[0], *array);
            }
            Expr::Check { kind: CheckKind::SizeEq { .. } | CheckKind::Iterated { .. }, args } => {
                self.equal.push((args[0], args[1]))
            }
            _ => {}
        }
    }

    /// Whether `n` is the length of `array`: directly (`n = shape array 0`)
    /// or through an earlier size check `n == m` with `m = shape array 0`.
    fn is_length(&self, n: Atom, array: Var) -> bool {
        let direct = |e: Atom| matches!(e, Atom::Var(v) if self.length_of.get(&v) == Some(&array));
        direct(n) || self.equal.iter().any(|(x, y)| (*x == n && direct(*y)) || (*y == n && direct(*x)))
    }
}

/// `map (\i -> a[i]) (iota n)` → `a[0:n]` when `n` is the length of `a`
/// (by the facts, or an earlier size check in the same body: [`Lengths`]):
/// the same elements, and neither can fail. Where `n` may exceed the length
/// the map stays: it fails as an index `a[m]` at the index's span, the slice
/// as "slice 0:n" at the map's.
pub fn map_index_slice(cx: &mut Cx, body: &Body) -> Option<Body> {
    let mut lengths = Lengths::default();
    each_stmt(cx, body, |cx, s| {
        lengths.see(s);
        let Expr::Map { width, lam, arrays } = &s.expr else { return None };
        let ([p], [xs], [r], [t]) = (&lam.params[..], &arrays[..], &lam.body.result[..], &lam.body.stmts[..]) else {
            return None;
        };
        let over_iota = matches!(cx.fact(*xs), Some(Fact::Iota(n)) if n == *width);
        let Expr::Index { array, indices } = &t.expr else { return None };
        let indexes_by_param = indices.len() == 1 && indices[0] == Atom::Var(*p) && *r == Atom::Var(t.binds[0]);
        let free = *array != *p && cx.vars.ty(*array).rank == cx.vars.ty(s.binds[0]).rank;
        if !(over_iota && indexes_by_param && free) || cx.is_consumed(*array) {
            return None;
        }
        let slice = with_expr(s, Expr::Slice { array: *array, start: Atom::i64(0), end: *width });
        (guards::total(cx, &slice) || lengths.is_length(*width, *array)).then(|| vec![slice])
    })
}

/// `a[0:n]` → `a` when `n` is the length of `a` ([`Lengths`]).
pub fn slice_full(cx: &mut Cx, body: &Body) -> Option<Body> {
    let mut lengths = Lengths::default();
    each_stmt(cx, body, |_, s| {
        lengths.see(s);
        match &s.expr {
            Expr::Slice { array, start, end } if is_zero(*start) && lengths.is_length(*end, *array) => {
                Some(vec![with_expr(s, Expr::Atom(Atom::Var(*array)))])
            }
            _ => None,
        }
    })
}

fn is_zero(a: Atom) -> bool {
    matches!(a, Atom::Const(Const::I64(0)))
}
