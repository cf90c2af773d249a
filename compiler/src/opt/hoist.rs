//! Hoisting with expansion: a costly scalar operation applied, inside a map
//! or loop, to elements of an array defined outside it is computed once for
//! the whole array before the map or loop, and read back by index.
//!
//! `map (\x -> … exp q[c][r] …) xs` (gmm: `exp` of the precision parameters,
//! once per point) becomes `let e = map (map exp) q in map (\x -> … e[c][r] …) xs`.
//! See Note [Hoisting with expansion].
//!
//! Input: a body; output: the body with such statements rewritten (the rule
//! fails when there are none). Meaning is preserved: `e[c][r]` fails exactly
//! when `q[c][r]` did (same shape, same indices), and computing `op` on every
//! element of `q` cannot fail (a costly operation on floats is total).

use super::rules::with_expr;
use super::strategy::Cx;
use super::walk;
use crate::hash::{HashMap, HashSet};
use crate::ir::{Atom, Body, Expr, IrType, Lambda, Stmt, UnOp, Var};

/// Nesting depth (maps and loops, counting the outermost) a statement must
/// sit at for its array to be expanded: at depth 1 the statement may run no
/// more often than the array has elements.
const MIN_DEPTH: u32 = 2;

pub fn hoist_costly(cx: &mut Cx, body: &Body) -> Option<Body> {
    for (k, s) in body.stmts.iter().enumerate() {
        if !matches!(s.expr, Expr::Map { .. } | Expr::Loop { .. }) {
            continue;
        }
        let mut bound: HashSet<Var> = HashSet::default();
        walk::bound_in(&Body { stmts: vec![s.clone()].into(), result: Vec::new() }, &mut bound);
        let mut found: Vec<(UnOp, Var)> = Vec::new();
        let mut index_defs: HashMap<Var, (Var, Vec<Atom>)> = HashMap::default();
        for b in s.expr.bodies() {
            find(cx, b, 1, &bound, &mut index_defs, &mut found);
        }
        found.retain(|(_, q)| !cx.is_consumed(*q));
        found.dedup();
        let Some(&(op, q)) = found.first() else { continue };
        // One expansion per (operation, array) pair, this one first.
        let (expansion, e) = expand(cx, op, q, s.span);
        let mut new = s.clone();
        rewrite_expr(cx, &mut new.expr, op, q, e, &index_defs);
        let mut out: Vec<Stmt> = body.stmts[..k].to_vec();
        out.extend(expansion);
        out.push(new);
        out.extend(body.stmts[k + 1..].iter().cloned());
        return Some(Body { stmts: out.into(), result: body.result.clone() });
    }
    None
}

/// The element of a free array that `x` is, as `(array, indices)`: `x` is
/// bound by a chain of indexings of an array bound outside (`q[c]`, then
/// `[r]`) that reaches a scalar.
fn element_of(
    cx: &Cx,
    x: Var,
    bound: &HashSet<Var>,
    index_defs: &HashMap<Var, (Var, Vec<Atom>)>,
) -> Option<(Var, Vec<Atom>)> {
    let (mut array, mut indices) = index_defs.get(&x)?.clone();
    for _ in 0..8 {
        if !bound.contains(&array) {
            let rank = cx.vars.ty(array).rank as usize;
            return (rank == indices.len()).then_some((array, indices));
        }
        let (a, outer) = index_defs.get(&array)?;
        let mut all = outer.clone();
        all.extend(indices);
        (array, indices) = (*a, all);
    }
    None
}

/// Collects the costly operations on elements of free arrays in `body`
/// (nested bodies included), at depth `depth` below the hoisting point.
fn find(
    cx: &Cx,
    body: &Body,
    depth: u32,
    bound: &HashSet<Var>,
    index_defs: &mut HashMap<Var, (Var, Vec<Atom>)>,
    found: &mut Vec<(UnOp, Var)>,
) {
    for t in &body.stmts {
        match (&t.expr, t.binds.as_slice()) {
            (Expr::Index { array, indices }, [x]) => {
                index_defs.insert(*x, (*array, indices.clone()));
            }
            (Expr::Unary(op, Atom::Var(x)), [v]) if op.is_costly() && depth >= MIN_DEPTH => {
                if cx.vars.ty(*v).elem.is_float() {
                    if let Some((q, _)) = element_of(cx, *x, bound, index_defs) {
                        if !found.contains(&(*op, q)) {
                            found.push((*op, q));
                        }
                    }
                }
            }
            _ => {}
        }
        let deeper = u32::from(matches!(t.expr, Expr::Map { .. } | Expr::Loop { .. }));
        for b in t.expr.bodies() {
            find(cx, b, depth + deeper, bound, index_defs, found);
        }
    }
}

/// `e = map (… map op …) q`: `op` on every element of `q`. Returns the
/// statements and `e`.
fn expand(cx: &mut Cx, op: UnOp, q: Var, span: crate::diagnostic::Span) -> (Vec<Stmt>, Var) {
    let ty = cx.vars.ty(q);
    let mut stmts = Vec::new();
    let e = elementwise(cx, op, q, ty, span, &mut stmts);
    (stmts, e)
}

fn elementwise(cx: &mut Cx, op: UnOp, a: Var, ty: IrType, span: crate::diagnostic::Span, out: &mut Vec<Stmt>) -> Var {
    let width = cx.vars.fresh("n", IrType::I64);
    out.push(Stmt { binds: vec![width], expr: Expr::Shape { array: a, dim: 0 }, span });
    let row_ty = ty.row();
    let p = cx.vars.fresh("x", row_ty);
    let mut inner = Vec::new();
    let r = if row_ty.is_scalar() {
        let r = cx.vars.fresh("t", row_ty);
        inner.push(Stmt { binds: vec![r], expr: Expr::Unary(op, Atom::Var(p)), span });
        r
    } else {
        elementwise(cx, op, p, row_ty, span, &mut inner)
    };
    let e = cx.vars.fresh(op.name(), ty);
    let lam = Lambda { params: vec![p], body: Body { stmts: inner.into(), result: vec![Atom::Var(r)] } };
    out.push(Stmt { binds: vec![e], expr: Expr::Map { width: Atom::Var(width), lam, arrays: vec![a] }, span });
    e
}

/// Replaces, in `expr`'s nested bodies, `op x` where `x` is an element of
/// `q` by the same element of `e`.
fn rewrite_expr(cx: &Cx, expr: &mut Expr, op: UnOp, q: Var, e: Var, index_defs: &HashMap<Var, (Var, Vec<Atom>)>) {
    let mut bound: HashSet<Var> = HashSet::default();
    walk::bound_in(
        &Body {
            stmts: vec![Stmt { binds: Vec::new(), expr: expr.clone(), span: Default::default() }].into(),
            result: Vec::new(),
        },
        &mut bound,
    );
    for b in expr.bodies_mut() {
        rewrite_body(cx, b, op, q, e, &bound, index_defs);
    }
}

fn rewrite_body(
    cx: &Cx,
    body: &mut Body,
    op: UnOp,
    q: Var,
    e: Var,
    bound: &HashSet<Var>,
    index_defs: &HashMap<Var, (Var, Vec<Atom>)>,
) {
    for t in &mut body.stmts {
        if let Expr::Unary(o, Atom::Var(x)) = &t.expr {
            if *o == op {
                if let Some((array, indices)) = element_of(cx, *x, bound, index_defs) {
                    if array == q {
                        *t = with_expr(t, Expr::Index { array: e, indices });
                        continue;
                    }
                }
            }
        }
        for b in t.expr.bodies_mut() {
            rewrite_body(cx, b, op, q, e, bound, index_defs);
        }
    }
}

// Note [Hoisting with expansion]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Loop-invariant code motion moves a statement out of a map when it does not
// depend on the element. `exp q[c][r]` inside `map (\x -> … tabulate k (\c ->
// … tabulate d (\r -> …))) xs` depends on `c` and `r` but not on `x`: it is
// the same n times over. Moving it out needs an array to hold its values for
// every `(c, r)` — an expansion. Which array, and how large? Here the answer
// is the array it reads: `exp` is applied to elements of `q`, which is live
// already, so `e = map (map exp) q` has exactly `q`'s shape and size. The
// memory added is bounded by the data the program already holds (one array
// of the size of `q` per hoisted operation), and every read `e[c][r]` has the
// indices and bounds checks `q[c][r]` had. Only host calls (`UnOp::is_costly`)
// are worth it — a load against a call — and only two iterating levels deep
// or more, where the statement runs more often than `q` has elements (gmm:
// n·k·d times against k·d elements).
