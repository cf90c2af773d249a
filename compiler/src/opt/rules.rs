//! The rule library: rewrites of one body, each checking its side conditions.
//!
//! Input: a body and the run's [`Cx`] (use counts, value facts, consumed
//! arrays, fresh variables). Output: the rewritten body, or `None` when the
//! rule finds nothing to do (it then fails, in strategy terms).
//!
//! Invariants every rule keeps:
//! - the result verifies (SSA, scoping, types) when the input does;
//! - meaning is preserved, failures included: a program that fails still
//!   fails, with the same code (Note [What may move]); no rule introduces a
//!   failure, duplicates work, or moves a use of a consumed array.
//!
//! [`RULES`] lists them by name for the schedule language.

use super::guards;
use super::strategy::{Cx, Fact, Rule};
use super::walk;
use crate::hash::{HashMap, HashSet};
use crate::ir::interp::{self, Val};
use crate::ir::scope::is_const;
use crate::ir::{Atom, BinOp, Body, CheckKind, Const, Expr, Lambda, LoopForm, Stmt, Var};
use crate::types::ScalarType;

pub static RULES: &[Rule] = &[
    Rule { name: "copy_prop", description: "inline `let x = y` and `let x = constant`", apply: copy_prop },
    Rule {
        name: "dce",
        description: "remove unused statements (or leave their guards), unused map results and checks proved to hold",
        apply: dce,
    },
    Rule {
        name: "dead_loop_state",
        description: "remove loop state whose final value nothing reads and which only feeds itself",
        apply: dead_loop_state,
    },
    Rule { name: "cse", description: "reuse an earlier identical pure statement (this body and below)", apply: cse },
    Rule { name: "fold", description: "evaluate scalar operations on constants", apply: fold },
    Rule { name: "ring", description: "x*1, 1*x, x+0, 0+x, x-0, x/1, x**1, and integer x*0", apply: ring },
    Rule {
        name: "float_zero",
        description: "x*0.0 → 0.0 on floats (unsound for inf and NaN: not in the default schedule)",
        apply: float_zero,
    },
    Rule {
        name: "simplify_if",
        description: "select c a a → a; `if` on a constant or with equal trivial branches",
        apply: simplify_if,
    },
    Rule {
        name: "hoist_common",
        description: "the statements both branches of an `if` begin with (up to renaming) → before the `if`",
        apply: super::branches::hoist_common,
    },
    Rule {
        name: "index_pull",
        description: "(replicate n v)[i] → v, (iota n)[i] → i (guarded by 0 <= i < n)",
        apply: index_pull,
    },
    Rule {
        name: "shape_pull",
        description: "shape of replicate, iota and map results from their operands",
        apply: shape_pull,
    },
    Rule {
        name: "map_replicate_arg",
        description: "a map argument `replicate n v` becomes the free value v",
        apply: map_replicate_arg,
    },
    Rule {
        name: "map_identity",
        description: "a map result that is a parameter is the array; a free or constant one a replicate",
        apply: map_identity,
    },
    Rule {
        name: "fuse_map_map",
        description: "map f (map g xs) → map (f ∘ g) xs when the inner result is used only there",
        apply: fuse_map_map,
    },
    Rule {
        name: "fuse_map_reduce",
        description: "reduce op ne (map f xs), or several reduces of one map → one loop folding f's results in as they are computed",
        apply: super::onehot::fuse_map_reduce,
    },
    Rule {
        name: "sink_reduce",
        description: "reduces of an `if`'s results, one branch building them with a map, one of them folding arrays → the reduces in both branches",
        apply: super::onehot::sink_reduce,
    },
    Rule {
        name: "reduce_empty",
        description: "a reduce over arrays that are all `replicate 0 v` → its neutral element",
        apply: super::onehot::reduce_empty,
    },
    Rule {
        name: "loop_fission",
        description: "split a for loop whose state groups never read each other into one loop per group",
        apply: super::onehot::loop_fission,
    },
    Rule {
        name: "reduce_fission",
        description: "split a reduce whose accumulators do not interact into one reduce each",
        apply: super::onehot::reduce_fission,
    },
    Rule {
        name: "if_to_select",
        description: "an `if` whose branches are plain scalar values → select (which can float)",
        apply: super::onehot::if_to_select,
    },
    Rule { name: "select_float", description: "a * hot c → select c a 0 for a Jacobian's one-hot seed", apply: super::onehot::select_float },
    Rule {
        name: "accumulate_rows",
        description: "a map adding into a loop's matrix state row by row → a loop of in-place row updates",
        apply: super::accumulate::accumulate_rows,
    },
    Rule {
        name: "permutation_store",
        description: "a loop accumulating into a replicate through an argsort permutation stores instead",
        apply: super::permutation::permutation_store,
    },
    Rule {
        name: "onehot_sum",
        description: "sum of a map that is zero except at one index (a one-hot seed) → the body at that index",
        apply: super::onehot::onehot_sum,
    },
    Rule {
        name: "map_index_slice",
        description: "map (\\i -> a[i]) (iota n) → a[0:n]",
        apply: super::onehot::map_index_slice,
    },
    Rule {
        name: "slice_full",
        description: "a[0:n] → a when n is the length of a (directly or by an earlier size check)",
        apply: super::onehot::slice_full,
    },
    Rule {
        name: "iota_bounds",
        description: "inside a map over iota n, the index is known to lie in 0..n",
        apply: super::onehot::iota_bounds,
    },
    Rule {
        name: "hoist_guarded",
        description: "hoist element-independent work (even if it may fail) out of a map, under `width > 0`",
        apply: super::onehot::hoist_guarded,
    },
    Rule {
        name: "hoist_costly",
        description: "a host call (exp, log, …) on elements of an array defined outside a map or loop → computed once for the whole array",
        apply: super::hoist::hoist_costly,
    },
    Rule {
        name: "licm",
        description: "hoist statements that cannot fail and use no bound variable out of lambdas and loops",
        apply: licm,
    },
];

pub fn lookup(name: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.name == name)
}

// ---- helpers ----

/// Rewrites statements of `body` one at a time: `f` returns the replacement
/// statements of one statement, or `None` to keep it. `None` overall when
/// nothing changed.
pub(super) fn each_stmt(
    cx: &mut Cx,
    body: &Body,
    mut f: impl FnMut(&mut Cx, &Stmt) -> Option<Vec<Stmt>>,
) -> Option<Body> {
    let mut out: Option<Vec<Stmt>> = None;
    for (i, s) in body.stmts.iter().enumerate() {
        match f(cx, s) {
            Some(new) => {
                let stmts = out.get_or_insert_with(|| prefix(&body.stmts, i));
                stmts.extend(new);
            }
            None => {
                if let Some(stmts) = &mut out {
                    stmts.push(s.clone());
                }
            }
        }
    }
    out.map(|stmts| Body { stmts: stmts.into(), result: body.result.clone() })
}

/// A copy of the first `i` statements, with room for the rest: a rewrite
/// that copies a body from its first change on appends about as many
/// statements again, and growing a vector of statements one reallocation
/// at a time copied them over and over (a fifth of the optimiser's
/// instructions on implicit_ridge, with the same growth in `dce`).
fn prefix(stmts: &[Stmt], i: usize) -> Vec<Stmt> {
    let mut out = Vec::with_capacity(stmts.len());
    out.extend_from_slice(&stmts[..i]);
    out
}

/// `s` with its expression replaced (same binders and span).
pub(super) fn with_expr(s: &Stmt, expr: Expr) -> Stmt {
    Stmt { binds: s.binds.clone(), expr, span: s.span }
}

fn let_atom(s: &Stmt, bind: Var, a: Atom) -> Stmt {
    Stmt { binds: vec![bind], expr: Expr::Atom(a), span: s.span }
}

fn to_const(v: Val) -> Option<Const> {
    Some(match v {
        Val::F64(x) => Const::F64(x),
        Val::F32(x) => Const::F32(x),
        Val::I64(x) => Const::I64(x),
        Val::Bool(x) => Const::Bool(x),
        Val::Arr(_) => return None,
    })
}

fn to_val(c: Const) -> Val {
    match c {
        Const::F64(x) => Val::F64(x),
        Const::F32(x) => Val::F32(x),
        Const::I64(x) => Val::I64(x),
        Const::Bool(x) => Val::Bool(x),
    }
}

fn same_atom(a: Atom, b: Atom) -> bool {
    match (a, b) {
        (Atom::Var(x), Atom::Var(y)) => x == y,
        // Bitwise, so that 0.0 and -0.0 stay apart (and NaN equals itself).
        (Atom::Const(x), Atom::Const(y)) => format!("{x:?}") == format!("{y:?}"),
        _ => false,
    }
}

// ---- copy propagation ----

/// `let x = a` where `a` is a variable or a constant: uses of `x` become `a`.
/// Scope: `a` is in scope wherever `x` is. Consumed arrays: see [`Cx::may_alias`];
/// statements are visited last to first so that an alias chain ending in a
/// consumed use marks every link consumed (only the last link may then go).
fn copy_prop(cx: &mut Cx, body: &Body) -> Option<Body> {
    let mut subst: HashMap<Var, Atom> = HashMap::default();
    let mut consumed_here: HashSet<Var> = HashSet::default();
    for s in body.stmts.iter().rev() {
        let (Expr::Atom(a), [x]) = (&s.expr, s.binds.as_slice()) else { continue };
        let x_consumed = cx.is_consumed(*x) || consumed_here.contains(x);
        let ok = match a {
            Atom::Const(_) => true,
            Atom::Var(y) => !(x_consumed || cx.is_consumed(*y)) || cx.uses(*y) == 1,
        };
        if ok {
            if let (true, Atom::Var(y)) = (x_consumed, a) {
                consumed_here.insert(*y);
            }
            subst.insert(*x, *a);
        }
    }
    if subst.is_empty() {
        return None;
    }
    // Resolve chains (`let x = y; let z = x`) so one substitution suffices.
    let keys: Vec<Var> = subst.keys().copied().collect();
    for k in keys {
        let mut a = subst[&k];
        while let Atom::Var(v) = a {
            match subst.get(&v) {
                Some(next) if v != k => a = *next,
                _ => break,
            }
        }
        subst.insert(k, a);
    }
    let mut out = Body {
        stmts: body
            .stmts
            .iter()
            .filter(|s| !(s.binds.len() == 1 && subst.contains_key(&s.binds[0]) && matches!(s.expr, Expr::Atom(_))))
            .cloned()
            .collect(),
        result: body.result.clone(),
    };
    walk::substitute(&mut out, &subst);
    Some(out)
}

// ---- dead code ----

/// A check that cannot fail: its condition is proved by the facts.
fn check_holds(cx: &Cx, e: &Expr) -> bool {
    matches!(e, Expr::Check { kind, args } if guards::check_holds(cx, kind, args))
}

/// Removes, last to first, statements none of whose results is used, checks
/// that cannot fail, and unused results of multi-result maps. A dead
/// statement that may fail is replaced by its guards, or kept when no check
/// expresses its failure (Note [What may move]).
fn dce(cx: &mut Cx, body: &Body) -> Option<Body> {
    let mut removed: HashMap<Var, i64> = HashMap::default();
    let live = |cx: &Cx, removed: &HashMap<Var, i64>, v: Var| cx.uses(v) as i64 > removed.get(&v).copied().unwrap_or(0);
    let count = |removed: &mut HashMap<Var, i64>, stmts: &[Stmt], delta: i64| {
        walk::for_each_use_in(stmts, &mut |v| *removed.entry(v).or_insert(0) += delta);
    };
    // Statements kept unchanged are borrowed: a body with nothing dead is
    // not copied (its nested bodies may be large).
    let mut kept: Vec<std::borrow::Cow<Stmt>> = Vec::with_capacity(body.stmts.len());
    let mut changed = false;
    for s in body.stmts.iter().rev() {
        let dead = match &s.expr {
            Expr::Check { .. } => check_holds(cx, &s.expr),
            _ => !s.binds.iter().any(|b| live(cx, &removed, *b)),
        };
        let recomputed = !s.binds.is_empty() && s.binds.iter().all(|b| cx.is_recomputed(*b));
        let replacement = if dead && !recomputed && !matches!(s.expr, Expr::Check { .. }) {
            guards::guards(cx, s)
        } else {
            Some(vec![])
        };
        if let (true, Some(guards)) = (dead, replacement) {
            changed = true;
            count(&mut removed, std::slice::from_ref(s), 1);
            count(&mut removed, &guards, -1);
            kept.extend(guards.into_iter().rev().map(std::borrow::Cow::Owned));
            continue;
        }
        if let Expr::Map { width, lam, arrays } = &s.expr {
            let keep: Vec<bool> = s.binds.iter().map(|b| live(cx, &removed, *b)).collect();
            if keep.iter().any(|k| !k) {
                changed = true;
                for (i, k) in keep.iter().enumerate() {
                    if let (false, Atom::Var(v)) = (k, lam.body.result[i]) {
                        *removed.entry(v).or_insert(0) += 1;
                    }
                }
                let pick = |xs: &[Atom]| xs.iter().zip(&keep).filter(|(_, k)| **k).map(|(x, _)| *x).collect();
                let lam = Lambda {
                    params: lam.params.clone(),
                    body: Body { stmts: lam.body.stmts.clone(), result: pick(&lam.body.result) },
                };
                let binds = s.binds.iter().zip(&keep).filter(|(_, k)| **k).map(|(b, _)| *b).collect();
                let map = Stmt { binds, expr: Expr::Map { width: *width, lam, arrays: arrays.clone() }, span: s.span };
                kept.push(std::borrow::Cow::Owned(map));
                continue;
            }
        }
        kept.push(std::borrow::Cow::Borrowed(s));
    }
    if !changed {
        return None;
    }
    let stmts = kept.into_iter().rev().map(std::borrow::Cow::into_owned).collect();
    Some(Body { stmts, result: body.result.clone() })
}

/// Removes loop state that nothing reads (Note [Dead loop state]) from the
/// loops of `body`. A rule of its own, after `dce` in the schedules: finding
/// what depends on a piece of state walks the loop body, which is worth
/// doing once the cheaper rules are done with the body, not at every `dce`.
fn dead_loop_state(cx: &mut Cx, body: &Body) -> Option<Body> {
    let mut out: Option<Vec<Stmt>> = None;
    for (i, s) in body.stmts.iter().enumerate() {
        if let Some(smaller) = drop_dead_loop_state(cx, s) {
            out.get_or_insert_with(|| prefix(&body.stmts, i)).push(smaller);
        } else if let Some(out) = &mut out {
            out.push(s.clone());
        }
    }
    Some(Body { stmts: out?.into(), result: body.result.clone() })
}

/// The loop `s` without one piece of state that nothing reads, or `None`
/// when every piece is read or cannot go.
fn drop_dead_loop_state(cx: &mut Cx, s: &Stmt) -> Option<Stmt> {
    let Expr::Loop { params, init, form, body } = &s.expr else { return None };
    // Up to 64 dead pieces at a time, each a bit: one walk of the body finds
    // what depends on each of them (in statement order).
    let dead: Vec<usize> = (0..params.len()).filter(|&k| cx.uses(s.binds[k]) == 0).take(64).collect();
    if dead.is_empty() {
        return None;
    }
    let mut depends: HashMap<Var, u64> = dead.iter().enumerate().map(|(bit, &k)| (params[k], 1 << bit)).collect();
    let reads = |depends: &HashMap<Var, u64>, stmts: &[Stmt]| {
        let mut mask = 0;
        walk::for_each_use_in(stmts, &mut |v| mask |= depends.get(&v).copied().unwrap_or(0));
        mask
    };
    let mut stmt_masks = Vec::with_capacity(body.stmts.len());
    for st in &body.stmts {
        let mask = reads(&depends, std::slice::from_ref(st));
        if mask != 0 {
            depends.extend(st.binds.iter().map(|b| (*b, mask)));
        }
        stmt_masks.push(mask);
    }
    let mask_of = |a: &Atom| match a {
        Atom::Var(v) => depends.get(v).copied().unwrap_or(0),
        Atom::Const(_) => 0,
    };
    let condition = match form {
        LoopForm::While { cond } => cond.result.iter().fold(reads(&depends, &cond.stmts), |m, a| m | mask_of(a)),
        LoopForm::For { .. } => 0,
    };
    for (bit, &k) in dead.iter().enumerate() {
        let bit = 1u64 << bit;
        let other_results = body.result.iter().enumerate().any(|(j, a)| j != k && mask_of(a) & bit != 0);
        let going = |ix: usize| stmt_masks[ix] & bit != 0;
        // Removing a statement must not remove a failure.
        let harmless = body.stmts.iter().enumerate().filter(|(ix, _)| going(*ix)).all(|(_, st)| {
            !st.binds.is_empty()
                && (st.binds.iter().all(|b| cx.is_recomputed(*b))
                    || guards::guards(cx, st).is_some_and(|g| g.is_empty()))
        });
        if other_results || condition & bit != 0 || !harmless {
            continue;
        }
        let keep = |j: usize| j != k;
        let pick = |xs: &[Atom]| xs.iter().enumerate().filter(|(j, _)| keep(*j)).map(|(_, a)| *a).collect::<Vec<_>>();
        let stmts = body.stmts.iter().enumerate().filter(|(ix, _)| !going(*ix)).map(|(_, st)| st.clone()).collect();
        let expr = Expr::Loop {
            params: params.iter().enumerate().filter(|(j, _)| keep(*j)).map(|(_, p)| *p).collect(),
            init: pick(init),
            form: form.clone(),
            body: Body { stmts, result: pick(&body.result) },
        };
        let binds = s.binds.iter().enumerate().filter(|(j, _)| keep(*j)).map(|(_, b)| *b).collect();
        return Some(Stmt { binds, expr, span: s.span });
    }
    None
}

// Note [Dead loop state]
// ~~~~~~~~~~~~~~~~~~~~~~
// A piece of loop state whose final value nothing reads, and which inside
// the loop only feeds its own next value, is work for nothing: reverse mode
// leaves such pieces behind when the backward sweep turns out not to read a
// tape (Note [What loop tapes hold] in ad/rev.rs) — a tape of an array is
// steps × n elements. `dead_loop_state` removes the parameter, its initial
// value, its result and the statements that depend on it, provided removing
// them removes no failure: each either cannot fail or is marked as repeated
// elsewhere (`ir::Program::recomputed`; the tape updates are marked, as
// their index is in range by construction). The initial value then usually
// dies too. It is a rule of its own rather than part of `dce` because it
// walks the loop body: the schedules run it after the cheaper rules.

// ---- common subexpressions ----

/// The key two statements share when they compute the same value. The
/// common expressions are keyed by their structure (an atom by its bits, so
/// `0.0` and `-0.0` differ); the rest by their text. Operands of commutative
/// operators, and of equality checks, are sorted.
#[derive(Clone, PartialEq, Eq, Hash)]
enum CseKey {
    Unary(crate::ir::UnOp, AtomKey),
    Binary(BinOp, AtomKey, AtomKey),
    Convert(ScalarType, AtomKey),
    Select(AtomKey, AtomKey, AtomKey),
    Index(Var, Vec<AtomKey>),
    Shape(Var, u32),
    /// Equality checks are symmetric, and once one passed, another of the
    /// same two values (whatever its message) cannot fail.
    SizeEq(AtomKey, AtomKey),
    Text(String),
}

/// An atom, compared and hashed bit for bit.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum AtomKey {
    Var(u32),
    F64(u64),
    F32(u32),
    I64(i64),
    Bool(bool),
}

impl From<Atom> for AtomKey {
    fn from(a: Atom) -> AtomKey {
        match a {
            Atom::Var(v) => AtomKey::Var(v.0),
            Atom::Const(Const::F64(x)) => AtomKey::F64(x.to_bits()),
            Atom::Const(Const::F32(x)) => AtomKey::F32(x.to_bits()),
            Atom::Const(Const::I64(x)) => AtomKey::I64(x),
            Atom::Const(Const::Bool(x)) => AtomKey::Bool(x),
        }
    }
}

/// The keys of two operands whose order does not matter, smaller first.
fn sorted_keys(a: Atom, b: Atom) -> (AtomKey, AtomKey) {
    let (a, b) = (AtomKey::from(a), AtomKey::from(b));
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

fn cse_key(e: &Expr) -> Option<CseKey> {
    Some(match e {
        Expr::Binary(
            op @ (BinOp::Add
            | BinOp::Mul
            | BinOp::Min
            | BinOp::Max
            | BinOp::Eq
            | BinOp::Ne
            | BinOp::And
            | BinOp::Or
            | BinOp::BitAnd
            | BinOp::BitOr
            | BinOp::BitXor),
            a,
            b,
        ) => {
            let (x, y) = sorted_keys(*a, *b);
            CseKey::Binary(*op, x, y)
        }
        Expr::Binary(op, a, b) => CseKey::Binary(*op, (*a).into(), (*b).into()),
        Expr::Unary(op, a) => CseKey::Unary(*op, (*a).into()),
        Expr::Convert(t, a) => CseKey::Convert(*t, (*a).into()),
        Expr::Select(c, a, b) => CseKey::Select((*c).into(), (*a).into(), (*b).into()),
        Expr::Index { array, indices } => CseKey::Index(*array, indices.iter().map(|a| (*a).into()).collect()),
        Expr::Shape { array, dim } => CseKey::Shape(*array, *dim),
        Expr::Check { kind: CheckKind::SizeEq { .. } | CheckKind::Iterated { .. }, args } => {
            let (x, y) = sorted_keys(args[0], args[1]);
            CseKey::SizeEq(x, y)
        }
        Expr::UpdateAt { .. } => return None,
        e if e.bodies().is_empty() => CseKey::Text(format!("{e:?}")),
        _ => return None,
    })
}

/// Replaces a pure statement by the results of an identical earlier one that
/// dominates it (in this body or an enclosing one; this rule walks the whole
/// subtree with scoped tables). A second identical size check is dropped.
/// Array-valued statements are only merged in functions without `UpdateAt`,
/// since merging two arrays makes them aliases (Note [Consumed arrays]).
fn cse(cx: &mut Cx, body: &Body) -> Option<Body> {
    // Most bodies have nothing to merge: find out without copying the subtree.
    if !has_repeat(cx, body, &mut HashSet::default()) {
        return None;
    }
    let mut out = body.clone();
    cse_body(cx, &mut out, &mut HashMap::default(), &mut HashMap::default());
    Some(out)
}

/// The key under which `s` may be merged with an identical earlier statement.
fn merge_key(cx: &Cx, s: &crate::ir::Stmt) -> Option<CseKey> {
    let arrays = s.binds.iter().any(|b| !cx.vars.ty(*b).is_scalar());
    cse_key(&s.expr).filter(|_| !(arrays && cx.any_consumed()))
}

/// Whether a pure statement of `body` repeats one that dominates it: the
/// first merge [`cse_body`] would make (before any merge, no substitution
/// is needed to see it). Read-only.
fn has_repeat(cx: &Cx, body: &Body, table: &mut HashSet<CseKey>) -> bool {
    let mut added = Vec::new();
    let mut found = false;
    for s in &body.stmts {
        if s.expr.bodies().into_iter().any(|b| has_repeat(cx, b, table)) {
            found = true;
            break;
        }
        if let Some(key) = merge_key(cx, s) {
            if table.contains(&key) {
                found = true;
                break;
            }
            table.insert(key.clone());
            added.push(key);
        }
    }
    for key in added {
        table.remove(&key);
    }
    found
}

/// Merges the statements of `body` that repeat one dominating them; true
/// when it merged some. `table` holds the keys of the statements of this
/// body and its enclosing ones; a body's keys are removed when it is done, so
/// nested bodies share one table instead of each copying it (a chain of `n`
/// nested `if`s copied it `n` times, cubic in all). `subst` maps merged
/// variables to the ones they repeat.
fn cse_body(cx: &Cx, body: &mut Body, table: &mut HashMap<CseKey, Vec<Var>>, subst: &mut HashMap<Var, Atom>) -> bool {
    let mut changed = false;
    let mut added = Vec::new();
    let stmts = std::mem::take(&mut body.stmts);
    body.stmts.reserve(stmts.len());
    for mut s in stmts {
        // The nested bodies' operands are substituted by the calls below.
        walk::substitute_operands(&mut s.expr, subst);
        for b in s.expr.bodies_mut() {
            changed |= cse_body(cx, b, table, subst);
        }
        if let Some(key) = merge_key(cx, &s) {
            if let Some(prev) = table.get(&key) {
                for (b, p) in s.binds.iter().zip(prev) {
                    subst.insert(*b, Atom::Var(*p));
                }
                changed = true;
                continue;
            }
            table.insert(key.clone(), s.binds.clone());
            added.push(key);
        }
        body.stmts.push(s);
    }
    for a in &mut body.result {
        if let Atom::Var(v) = a {
            if let Some(r) = subst.get(v) {
                *a = *r;
            }
        }
    }
    for key in added {
        table.remove(&key);
    }
    changed
}

// ---- scalar arithmetic ----

fn fold(cx: &mut Cx, body: &Body) -> Option<Body> {
    each_stmt(cx, body, |_, s| {
        let span = s.span;
        let v = match &s.expr {
            Expr::Unary(op, Atom::Const(c)) => interp::unary(*op, to_val(*c), span).ok()?,
            Expr::Binary(op, Atom::Const(a), Atom::Const(b)) => {
                interp::binary(*op, to_val(*a), to_val(*b), span).ok()?
            }
            Expr::Convert(t, Atom::Const(c)) => interp::convert(*t, to_val(*c), span).ok()?,
            Expr::Select(Atom::Const(Const::Bool(c)), a, b) => {
                return Some(vec![with_expr(s, Expr::Atom(if *c { *a } else { *b }))]);
            }
            _ => return None,
        };
        Some(vec![with_expr(s, Expr::Atom(Atom::Const(to_const(v)?)))])
    })
}

/// Ring identities that hold for every IEEE value except the sign of a zero
/// result (`-0.0 + 0.0` is `+0.0`); see Note [Ring identities].
fn ring(cx: &mut Cx, body: &Body) -> Option<Body> {
    each_stmt(cx, body, |cx, s| {
        let Expr::Binary(op, a, b) = &s.expr else { return None };
        let (a, b) = (*a, *b);
        let int = cx.vars.atom_type(a).elem == ScalarType::I64;
        let r = match op {
            BinOp::Mul if is_const(b, 1.0) => a,
            BinOp::Mul if is_const(a, 1.0) => b,
            BinOp::Mul if int && (is_const(a, 0.0) || is_const(b, 0.0)) => Atom::i64(0),
            BinOp::Add if is_const(b, 0.0) => a,
            BinOp::Add if is_const(a, 0.0) => b,
            BinOp::Sub if is_const(b, 0.0) => a,
            BinOp::Div if is_const(b, 1.0) => a,
            BinOp::Pow if is_const(b, 1.0) && !int => a,
            _ => return None,
        };
        Some(vec![with_expr(s, Expr::Atom(r))])
    })
}

/// `x * 0.0 → 0.0` for floats: wrong when `x` is infinite or NaN. Opt-in only.
fn float_zero(cx: &mut Cx, body: &Body) -> Option<Body> {
    each_stmt(cx, body, |cx, s| {
        let Expr::Binary(BinOp::Mul, a, b) = &s.expr else { return None };
        let t = cx.vars.atom_type(*a);
        if !t.elem.is_float() || !(is_const(*a, 0.0) || is_const(*b, 0.0)) {
            return None;
        }
        Some(vec![with_expr(s, Expr::Atom(Atom::Const(Const::of(t.elem, 0.0))))])
    })
}

fn simplify_if(cx: &mut Cx, body: &Body) -> Option<Body> {
    each_stmt(cx, body, |_, s| match &s.expr {
        Expr::Select(_, a, b) if same_atom(*a, *b) => Some(vec![with_expr(s, Expr::Atom(*a))]),
        Expr::If { cond: Atom::Const(Const::Bool(c)), then_body, else_body } => {
            let branch = if *c { then_body } else { else_body };
            let mut out = (*branch.stmts).clone();
            out.extend(s.binds.iter().zip(&branch.result).map(|(b, a)| let_atom(s, *b, *a)));
            Some(out)
        }
        Expr::If { then_body, else_body, .. }
            if then_body.stmts.is_empty()
                && else_body.stmts.is_empty()
                && then_body.result.iter().zip(&else_body.result).all(|(a, b)| same_atom(*a, *b)) =>
        {
            Some(s.binds.iter().zip(&then_body.result).map(|(b, a)| let_atom(s, *b, *a)).collect())
        }
        _ => None,
    })
}

// ---- pull arrays ----

/// `(replicate n v)[i, …] → v[…]` and `(iota n)[i] → i`, guarded by
/// `0 <= i < n` unless the facts prove it (Note [Guards]).
fn index_pull(cx: &mut Cx, body: &Body) -> Option<Body> {
    each_stmt(cx, body, |cx, s| {
        let Expr::Index { array, indices } = &s.expr else { return None };
        let (n, e) = match cx.fact(*array)? {
            Fact::Replicate { count, value } if indices.len() == 1 => (count, Expr::Atom(value)),
            Fact::Replicate { count, value: Atom::Var(v) } => {
                (count, Expr::Index { array: v, indices: indices[1..].to_vec() })
            }
            Fact::Iota(n) => (n, Expr::Atom(indices[0])),
            _ => return None,
        };
        let check = Expr::Check { kind: CheckKind::InBounds { dim: 0 }, args: vec![indices[0], n] };
        let check = Stmt { binds: Vec::new(), expr: check, span: s.span };
        let mut out: Vec<Stmt> = Vec::new();
        if !check_holds(cx, &check.expr) {
            out.push(check);
        }
        out.push(with_expr(s, e));
        Some(out)
    })
}

fn shape_pull(cx: &mut Cx, body: &Body) -> Option<Body> {
    each_stmt(cx, body, |cx, s| {
        let Expr::Shape { array, dim } = &s.expr else { return None };
        let e = match (cx.fact(*array)?, dim) {
            (Fact::Replicate { count, .. }, 0) | (Fact::Iota(count), 0) | (Fact::Mapped { width: count }, 0) => {
                Expr::Atom(count)
            }
            (Fact::Replicate { value: Atom::Var(v), .. }, d) => Expr::Shape { array: v, dim: d - 1 },
            (Fact::Atom(Atom::Var(v)), d) => Expr::Shape { array: v, dim: *d },
            _ => return None,
        };
        Some(vec![with_expr(s, e)])
    })
}

// ---- maps ----

/// `map (\x y -> …) xs (replicate n v)`: `y` is `v` in every iteration.
/// The map no longer iterates the replicate, so the check that its length is
/// the map's width stays behind as a guard.
fn map_replicate_arg(cx: &mut Cx, body: &Body) -> Option<Body> {
    each_stmt(cx, body, |cx, s| {
        let Expr::Map { width, lam, arrays } = &s.expr else { return None };
        let reps: Vec<Option<Atom>> = arrays
            .iter()
            .map(|a| match cx.fact(*a) {
                Some(Fact::Replicate { value, .. }) => Some(value),
                _ => None,
            })
            .collect();
        if reps.iter().all(Option::is_none) {
            return None;
        }
        let mut out = guards::materialise(cx, guards::map_conds(cx, *width, arrays), s.span);
        let mut params = Vec::new();
        let mut kept = Vec::new();
        let mut prelude = Vec::new();
        for ((p, a), r) in lam.params.iter().zip(arrays).zip(&reps) {
            match r {
                Some(v) => prelude.push(let_atom(s, *p, *v)),
                None => {
                    params.push(*p);
                    kept.push(*a);
                }
            }
        }
        prelude.extend(lam.body.stmts.iter().cloned());
        let lam = Lambda { params, body: Body { stmts: prelude.into(), result: lam.body.result.clone() } };
        out.push(with_expr(s, Expr::Map { width: *width, lam, arrays: kept }));
        Some(out)
    })
}

/// A map result that is one of the lambda's parameters is that array; one
/// that is a constant or a variable bound outside the lambda is a replicate.
fn map_identity(cx: &mut Cx, body: &Body) -> Option<Body> {
    each_stmt(cx, body, |cx, s| {
        let Expr::Map { width, lam, arrays } = &s.expr else { return None };
        // A result the lambda computes is bound at the top level of its body
        // (nothing bound deeper is in scope there), so that is all to look at.
        let inner = |v: &Var| lam.body.stmts.iter().any(|st| st.binds.contains(v));
        let mut after = Vec::new();
        let mut keep = Vec::new();
        for (b, r) in s.binds.iter().zip(&lam.body.result) {
            let param = match r {
                Atom::Var(v) => lam.params.iter().position(|p| p == v),
                _ => None,
            };
            match (param, r) {
                (Some(i), _) if cx.may_alias(*b, Atom::Var(arrays[i])) => {
                    after.push(let_atom(s, *b, Atom::Var(arrays[i])));
                    keep.push(false);
                }
                (None, Atom::Const(_)) => {
                    after.push(with_expr(&let_atom(s, *b, *r), Expr::Replicate { count: *width, value: *r }));
                    keep.push(false);
                }
                (None, Atom::Var(v)) if !inner(v) && !lam.params.contains(v) => {
                    after.push(with_expr(&let_atom(s, *b, *r), Expr::Replicate { count: *width, value: *r }));
                    keep.push(false);
                }
                _ => keep.push(true),
            }
        }
        if after.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        if !keep.iter().any(|k| *k) {
            // The map goes: what it could have failed on stays as guards, or
            // (when no check says it) the map stays for its first result.
            match guards::guards(cx, s) {
                Some(g) => out.extend(g),
                None => {
                    keep[0] = true;
                    after.remove(0);
                    if after.is_empty() {
                        return None;
                    }
                }
            }
        }
        if keep.iter().any(|k| *k) {
            let pick = |xs: &[Atom]| xs.iter().zip(&keep).filter(|(_, k)| **k).map(|(x, _)| *x).collect();
            let binds = s.binds.iter().zip(&keep).filter(|(_, k)| **k).map(|(b, _)| *b).collect();
            let lam = Lambda {
                params: lam.params.clone(),
                body: Body { stmts: lam.body.stmts.clone(), result: pick(&lam.body.result) },
            };
            out.push(Stmt { binds, expr: Expr::Map { width: *width, lam, arrays: arrays.clone() }, span: s.span });
        }
        out.extend(after);
        Some(out)
    })
}

/// `ys = map g xs; zs = map f … ys …` → one map, when every used result of
/// the producer is used only as an array of the consumer (so no work is
/// duplicated) and the producer reads no consumed array (so it can move).
fn fuse_map_map(cx: &mut Cx, body: &Body) -> Option<Body> {
    let producer_of = walk::map_producers(body);
    for (k, s) in body.stmts.iter().enumerate() {
        let Expr::Map { width, lam, arrays } = &s.expr else { continue };
        for a in arrays {
            let Some(&j) = producer_of.get(a) else { continue };
            let p = &body.stmts[j];
            let Expr::Map { width: pwidth, lam: plam, arrays: parrays } = &p.expr else { continue };
            let only_here = p.binds.iter().all(|b| cx.uses(*b) as usize == arrays.iter().filter(|x| *x == b).count());
            let movable = walk::free_in_expr(&p.expr).iter().all(|v| !cx.is_consumed(*v));
            if !only_here || !movable {
                continue;
            }
            let mut params = Vec::new();
            let mut new_arrays = Vec::new();
            let mut stmts = plam.body.stmts.clone();
            for (q, x) in lam.params.iter().zip(arrays) {
                match p.binds.iter().position(|b| b == x) {
                    Some(r) => stmts.push(let_atom(s, *q, plam.body.result[r])),
                    None => {
                        params.push(*q);
                        new_arrays.push(*x);
                    }
                }
            }
            params.extend(plam.params.iter().copied());
            new_arrays.extend(parrays.iter().copied());
            stmts.extend(lam.body.stmts.iter().cloned());
            let fused = Lambda { params, body: Body { stmts, result: lam.body.result.clone() } };
            // The producer's own checks (its width and arrays) stay where it was.
            let own = guards::materialise(cx, guards::map_conds(cx, *pwidth, parrays), p.span);
            let mut out = Vec::with_capacity(body.stmts.len() - 1);
            for (i, t) in body.stmts.iter().enumerate() {
                if i == j {
                    out.extend(own.iter().cloned());
                    continue;
                }
                if i == k {
                    out.push(with_expr(s, Expr::Map { width: *width, lam: fused.clone(), arrays: new_arrays.clone() }));
                } else {
                    out.push(t.clone());
                }
            }
            return Some(Body { stmts: out.into(), result: body.result.clone() });
        }
    }
    None
}

// ---- loop-invariant code motion ----

/// Hoists, out of the bodies of `map`/`reduce`/`scan` lambdas and `for`/`while`
/// loops, every statement that cannot fail and reads no variable bound by the
/// lambda or loop (directly or through an earlier non-hoisted statement). The
/// hoisted statements go just before the statement that owned them. A
/// statement binding an array that an update consumes stays: hoisted, it
/// would be one array consumed by every iteration (the copy `let a' = a`
/// that a functional update `a with [i] = v` consumes, Note [Consumed arrays]).
fn licm(cx: &mut Cx, body: &Body) -> Option<Body> {
    each_stmt(cx, body, |cx, s| {
        let (bound, inner): (Vec<Var>, &Body) = match &s.expr {
            Expr::Map { lam, .. } | Expr::Reduce { lam, .. } | Expr::Scan { lam, .. } => {
                (lam.params.clone(), &lam.body)
            }
            Expr::Loop { params, form, body, .. } => {
                let mut bound = params.clone();
                if let LoopForm::For { index, .. } = form {
                    bound.push(*index);
                }
                (bound, body)
            }
            _ => return None,
        };
        // Decide on the statements in place: most bodies have nothing to
        // hoist, and the expression is only copied when one does.
        let mut variant: HashSet<Var> = bound.into_iter().collect();
        let int = |a: Atom| cx.vars.atom_type(a).elem == ScalarType::I64;
        let hoist: Vec<bool> = inner
            .stmts
            .iter()
            .map(|t| {
                let mut reads_variant = false;
                t.expr.for_each_operand(|a| reads_variant |= matches!(a, Atom::Var(v) if variant.contains(&v)));
                let consumed = t.binds.iter().any(|b| cx.is_consumed(*b));
                let moves = walk::is_total(&t.expr, int) && !reads_variant && !consumed;
                if !moves {
                    variant.extend(t.binds.iter().copied());
                }
                moves
            })
            .collect();
        if !hoist.contains(&true) {
            return None;
        }
        let mut e = s.expr.clone_without_bodies();
        let mut hoisted = Vec::new();
        for (new, old) in e.bodies_mut().into_iter().zip(s.expr.bodies()) {
            if std::ptr::eq(old, inner) {
                let (up, kept): (Vec<_>, Vec<_>) = inner.stmts.iter().zip(&hoist).partition(|(_, h)| **h);
                hoisted = up.into_iter().map(|(t, _)| t.clone()).collect();
                *new = Body { stmts: kept.into_iter().map(|(t, _)| t.clone()).collect(), result: old.result.clone() };
            } else {
                *new = old.clone();
            }
        }
        hoisted.push(with_expr(s, e));
        Some(hoisted)
    })
}

// Note [What may move]
// ~~~~~~~~~~~~~~~~~~~~
// Every IR expression except `Check` computes a value or fails, and a failure
// is part of the meaning: a program that fails must still fail after
// optimisation, with the same code, and one that succeeds must compute the
// same values. So:
// - *Removing* a statement that might fail (dead-code elimination, `(iota
//   n)[i] → i`, a map that becomes an identity, a fused producer) needs a
//   proof that it cannot fail, or leaves behind guards — checks that fail
//   when it would have (Note [Guards] in `guards.rs`); a statement whose
//   failure no check expresses stays.
// - *Adding* a failure is never allowed. So statements only move out of a
//   body that may run zero times (a map lambda, a loop body) when they
//   cannot fail at all (`walk::is_total`: scalar arithmetic except integer
//   division, remainder and power, conversions, selects, shapes), or under a
//   guard that the body runs (`hoist_guarded`). Hoisting out of `if`
//   branches is not done: it would add work to the other branch.
// When several checks of a program fail, a rewritten program may report
// another of them first (Note [Guards]).
//
// Note [Ring identities]
// ~~~~~~~~~~~~~~~~~~~~~~
// `x*1`, `x/1`, `x**1`, `x-0` are exact for every IEEE value. `x+0` and `0+x`
// are exact except that `-0.0 + 0.0` is `+0.0`: we accept losing the sign of
// a zero (as C compilers do under -fno-signed-zeros), because AD output is
// full of `acc + 0.0` and zeros compare equal. `x*0 → 0` is exact for
// integers only: for floats it is wrong when `x` is infinite or NaN (`inf*0`
// is NaN), and the primal values AD multiplies by a zero tangent can be
// infinite. So it is a separate rule, `float_zero`, that the default schedule
// does not use; constant operands are handled by `fold`, and symbolic zeros
// never reach the IR because the AD pass drops zero tangents and adjoints
// before emitting code.
