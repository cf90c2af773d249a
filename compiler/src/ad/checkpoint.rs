//! Checkpointing as a rewrite of loops, before reverse mode sees them.
//!
//! Input: a `loop` statement and a segment length k. Output: statements that
//! compute the same results with a loop over segments whose body is a loop
//! of at most k iterations of the original body (strip-mining). Reverse mode
//! needs nothing more (Note [Checkpointing by strip-mining]).
//!
//! Two users:
//! - elaboration, for `checkpoint k (loop …)` in the source: [`segment`],
//!   with a run-time check that k ≥ 1 (E0204);
//! - the AD pass, for `--checkpoint`: [`every_loop`] rewrites every loop of
//!   a function about to be reverse-differentiated, nested ones included,
//!   with k = ⌈√n⌉ for a loop of n iterations. A `while` loop is first run
//!   once to count its iterations (its inputs behind `stop_gradient`, so the
//!   count costs no tape) and then becomes a `for` loop of that many.
//!
//! Invariants: the rewritten statements bind the original statement's
//! variables and no variable twice; the original body is used once, so its
//! variables keep their names (a `while` loop's condition and `every_loop`'s
//! counting run are renamed copies); state the body passes through unchanged
//! stays outside the inner loop, so reverse mode still finds it invariant
//! (Note [What loop tapes hold] in rev.rs).

use super::build::{rename_body, Builder};
use crate::hash::HashMap;
use crate::ir::{Atom, BinOp, Body, CheckKind, Const, Expr, IrType, Lambda, LoopForm, Stmt, UnOp, Var};
use crate::types::ScalarType;

/// The name of the index of a loop over segments: reverse mode calls that
/// loop's tapes `checkpoints`.
pub const SEGMENT: &str = "segment";

/// Emits `s` (a `loop` statement) cut into segments of `k` iterations, after
/// a check that `k ≥ 1` (at the builder's span): the rewrite of
/// `checkpoint k (loop …)`.
pub fn segment(b: &mut Builder, s: Stmt, k: Atom) {
    b.push(Stmt {
        binds: Vec::new(),
        expr: Expr::Check { kind: CheckKind::Positive { what: "a checkpoint segment length".into() }, args: vec![k] },
        span: b.span,
    });
    b.span = s.span;
    let Expr::Loop { params, init, form, body } = s.expr else {
        panic!("internal compiler error: `checkpoint` of a statement that is not a loop")
    };
    let lp = Loop { binds: s.binds, params, init, body };
    if lp.all_pass_through() {
        return lp.push_unchanged(b, form);
    }
    match form {
        LoopForm::For { index, bound } => {
            let count = b.bin(BinOp::Max, bound, Atom::i64(0));
            // k ≤ max(count, 1) keeps count + k - 1 from overflowing.
            let most = b.bin(BinOp::Max, count, Atom::i64(1));
            let k = b.bin(BinOp::Min, k, most);
            strip_mine(b, lp, index, count, k);
        }
        LoopForm::While { cond } => strip_mine_while(b, lp, cond, k),
    }
}

/// `lam` with every loop in its body (nested ones included) cut into
/// segments of ⌈√n⌉ iterations: the rewrite of `--checkpoint`.
pub fn every_loop(b: &mut Builder, lam: Lambda) -> Lambda {
    let span = b.span;
    let body = every_loop_in(b, lam.body);
    b.span = span;
    Lambda { params: lam.params, body }
}

fn every_loop_in(b: &mut Builder, body: Body) -> Body {
    let (stmts, ()) = b.block(|b| {
        for mut s in body.stmts {
            // A custom rule's code is not reverse-differentiated as written.
            if !matches!(s.expr, Expr::Custom { .. }) {
                for nested in s.expr.bodies_mut() {
                    *nested = every_loop_in(b, std::mem::take(nested));
                }
            }
            if !matches!(s.expr, Expr::Loop { .. }) {
                b.push(s);
                continue;
            }
            b.span = s.span;
            let Expr::Loop { params, init, form, body } = s.expr else { unreachable!() };
            let lp = Loop { binds: s.binds, params, init, body };
            if lp.all_pass_through() {
                lp.push_unchanged(b, form);
                continue;
            }
            let (index, count) = match form {
                LoopForm::For { index, bound } => {
                    let count = b.bin(BinOp::Max, bound, Atom::i64(0));
                    (index, count)
                }
                LoopForm::While { cond } => {
                    let count = count_iterations(b, &lp.params, &lp.init, &cond, &lp.body);
                    (b.fresh("i", IrType::I64), count)
                }
            };
            let k = sqrt_segment(b, count);
            strip_mine(b, lp, index, count, k);
        }
    });
    Body { stmts: stmts.into(), result: body.result }
}

/// A loop statement taken apart (its form aside).
struct Loop {
    binds: Vec<Var>,
    params: Vec<Var>,
    init: Vec<Atom>,
    body: Body,
}

impl Loop {
    /// Whether the loop changes no state: there is nothing to checkpoint.
    fn all_pass_through(&self) -> bool {
        (0..self.params.len()).all(|k| self.passes_through(k))
    }

    fn push_unchanged(self, b: &mut Builder, form: LoopForm) {
        let expr = Expr::Loop { params: self.params, init: self.init, form, body: self.body };
        b.push(Stmt { binds: self.binds, expr, span: b.span });
    }

    /// Whether the body passes state `k` through unchanged.
    fn passes_through(&self, k: usize) -> bool {
        self.body.result[k] == Atom::Var(self.params[k])
    }

    /// The outer loop's parameters: the original variable for state passed
    /// through (the body reads it as a free variable of the inner loop), a
    /// fresh one for the rest (the inner loop's initial values); and the
    /// positions of the rest, which the inner loop carries.
    fn outer_params(&self, b: &mut Builder) -> (Vec<Var>, Vec<usize>) {
        let mut outer = Vec::new();
        let mut moving = Vec::new();
        for (k, p) in self.params.iter().enumerate() {
            if self.passes_through(k) {
                outer.push(*p);
            } else {
                outer.push(b.vars.fresh_like(*p));
                moving.push(k);
            }
        }
        (outer, moving)
    }

    /// The outer loop's result, after the inner loop bound `inner` (one
    /// variable per moving piece of state).
    fn outer_result(&self, outer: &[Var], moving: &[usize], inner: &[Var]) -> Vec<Atom> {
        let mut result: Vec<Atom> = outer.iter().map(|v| Atom::Var(*v)).collect();
        for (k, v) in moving.iter().zip(inner) {
            result[*k] = Atom::Var(*v);
        }
        result
    }

    fn inner_binds(&self, b: &mut Builder, moving: &[usize]) -> Vec<Var> {
        moving.iter().map(|k| b.fresh("segment", b.vars.ty(self.params[*k]))).collect()
    }
}

/// `loop P = init for i < count do body`, count ≥ 0, 1 ≤ k ≤ max(count, 1), as
/// `loop P = init for s < ⌈count / k⌉ do (loop P = P for j < min(k, count - s·k) do body[i := s·k + j])`.
fn strip_mine(b: &mut Builder, lp: Loop, index: Var, count: Atom, k: Atom) {
    let span = b.span;
    let up = b.bin(BinOp::Sub, k, Atom::i64(1));
    let t = b.bin(BinOp::Add, count, up);
    let segments = b.bin(BinOp::Div, t, k);
    let (outer, moving) = lp.outer_params(b);
    let s = b.fresh(SEGMENT, IrType::I64);
    let inner = lp.inner_binds(b, &moving);
    let result = lp.outer_result(&outer, &moving, &inner);
    let outer_body = b.body(|b| {
        let start = b.bin(BinOp::Mul, Atom::Var(s), k);
        let rest = b.bin(BinOp::Sub, count, start);
        let len = b.bin(BinOp::Min, k, rest);
        let j = b.fresh("j", IrType::I64);
        let mut stmts = vec![Stmt { binds: vec![index], expr: Expr::Binary(BinOp::Add, start, Atom::Var(j)), span }];
        stmts.extend(lp.body.stmts);
        b.push(Stmt {
            binds: inner.clone(),
            expr: Expr::Loop {
                params: moving.iter().map(|k| lp.params[*k]).collect(),
                init: moving.iter().map(|k| Atom::Var(outer[*k])).collect(),
                form: LoopForm::For { index: j, bound: len },
                body: Body { stmts: stmts.into(), result: moving.iter().map(|k| lp.body.result[*k]).collect() },
            },
            span,
        });
        result
    });
    b.push(Stmt {
        binds: lp.binds,
        expr: Expr::Loop {
            params: outer,
            init: lp.init,
            form: LoopForm::For { index: s, bound: segments },
            body: outer_body,
        },
        span,
    });
}

/// `loop P = init while c do body` as
/// `loop P = init while c do (loop (P, j) = (P, 0) while j < k && c do (body, j + 1))`:
/// each outer iteration runs up to k iterations; the outer condition is
/// evaluated once more per segment.
fn strip_mine_while(b: &mut Builder, lp: Loop, cond: Body, k: Atom) {
    let span = b.span;
    let (outer, moving) = lp.outer_params(b);
    let mut subst: HashMap<Var, Atom> = moving.iter().map(|k| (lp.params[*k], Atom::Var(outer[*k]))).collect();
    let outer_cond = rename_body(b.vars, &cond, &mut subst);
    let inner = lp.inner_binds(b, &moving);
    let result = lp.outer_result(&outer, &moving, &inner);
    let j = b.fresh("j", IrType::I64);
    let j_done = b.fresh("j", IrType::I64);
    let outer_body = b.body(|b| {
        let inner_cond = b.body(|b| {
            let more = b.bin(BinOp::Lt, Atom::Var(j), k);
            let go = b.fresh("go", IrType::BOOL);
            let false_body = Body { stmts: Vec::new().into(), result: vec![Atom::Const(Const::Bool(false))] };
            b.push(Stmt {
                binds: vec![go],
                expr: Expr::If { cond: more, then_body: cond, else_body: false_body },
                span,
            });
            vec![Atom::Var(go)]
        });
        let mut body = lp.body;
        let j_next = b.fresh("j", IrType::I64);
        body.stmts.push(Stmt { binds: vec![j_next], expr: Expr::Binary(BinOp::Add, Atom::Var(j), Atom::i64(1)), span });
        let mut params: Vec<Var> = moving.iter().map(|k| lp.params[*k]).collect();
        let mut init: Vec<Atom> = moving.iter().map(|k| Atom::Var(outer[*k])).collect();
        let mut inner_result: Vec<Atom> = moving.iter().map(|k| body.result[*k]).collect();
        params.push(j);
        init.push(Atom::i64(0));
        inner_result.push(Atom::Var(j_next));
        let mut binds = inner.clone();
        binds.push(j_done);
        b.push(Stmt {
            binds,
            expr: Expr::Loop {
                params,
                init,
                form: LoopForm::While { cond: inner_cond },
                body: Body { stmts: body.stmts, result: inner_result },
            },
            span,
        });
        result
    });
    b.push(Stmt {
        binds: lp.binds,
        expr: Expr::Loop { params: outer, init: lp.init, form: LoopForm::While { cond: outer_cond }, body: outer_body },
        span,
    });
}

/// How many iterations `loop params = init while cond do body` runs: a
/// renamed copy of the loop with a counter, started from the initial values
/// behind `stop_gradient` so that reverse mode leaves it alone.
fn count_iterations(b: &mut Builder, params: &[Var], init: &[Atom], cond: &Body, body: &Body) -> Atom {
    let span = b.span;
    let init: Vec<Atom> = init
        .iter()
        .map(|a| {
            if super::build::is_float(b.ty(*a)) {
                b.map_values(*a, &|b, x| b.unary(UnOp::StopGradient, x))
            } else {
                *a
            }
        })
        .collect();
    let counted = b.counting_while(params, &init, cond, body);
    let mut binds: Vec<Var> = params.iter().map(|p| b.fresh("uncounted", b.vars.ty(*p))).collect();
    let count = b.fresh("iterations", IrType::I64);
    binds.push(count);
    let stmt = Stmt { binds, expr: counted, span };
    // Renamed as a whole, so that the copy binds its own parameters (and its
    // updates of them stay in place).
    let copy = rename_body(
        b.vars,
        &Body { stmts: vec![stmt].into(), result: vec![Atom::Var(count)] },
        &mut HashMap::default(),
    );
    let result = copy.result[0];
    for s in copy.stmts {
        b.push(s);
    }
    result
}

/// ⌈√n⌉, at least 1: the segment length that balances the states kept per
/// segment against the states taped while re-running one.
fn sqrt_segment(b: &mut Builder, n: Atom) -> Atom {
    let f = b.emit1(Expr::Convert(ScalarType::F64, n), IrType::F64, "t");
    let r = b.unary(UnOp::Sqrt, f);
    let c = b.unary(UnOp::Ceil, r);
    let k = b.emit1(Expr::Convert(ScalarType::I64, c), IrType::I64, "segment_length");
    b.bin(BinOp::Max, k, Atom::i64(1))
}

// Note [Checkpointing by strip-mining]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Reverse mode through a loop tapes the loop state once per iteration and,
// in the backward sweep, recomputes each iteration's body from its taped
// state before running the body's backward sweep (Note [Reverse mode of
// loops] in rev.rs). Cut a loop of n iterations into n/k segments of k,
// a loop over segments whose body is a loop over one segment, and that rule
// alone gives checkpointing: the forward sweep tapes the state at the start
// of each segment (the outer loop's state, n/k values) and runs the inner
// loops as plain code; the backward sweep, for each segment from the last,
// recomputes the segment's body — which is the inner loop, so reverse mode
// runs it forward once more, taping its k states — and then walks those k
// iterations backwards. Memory for the loop state: n/k + k states instead
// of n (2√n at k = ⌈√n⌉), for one extra forward pass. Nested loops are cut
// each in their own right, so each level keeps its own √ of its trip count.
//
// The outer loop's state passed through unchanged stays outside the inner
// loop (a free variable of its body), so that the outer loop still sees it
// passed through and tapes it not at all.
//
// A `while` loop with an explicit k becomes a `while` over segments whose
// inner `while` also stops after k iterations; with `--checkpoint` its trip
// count n is needed for ⌈√n⌉, so a first run counts the iterations — the
// run reverse mode makes of every `while` loop anyway (rev.rs's
// `forward_loop`) — and the loop becomes a `for` loop of n iterations, cut
// as above. The counting run starts from its inputs behind `stop_gradient`:
// it is not differentiated, so it is not taped.
