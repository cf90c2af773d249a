//! The `strands` stage: reductions run as four strands.
//!
//! Input: a loop [`Program`] after the loop optimiser and, on the multicore
//! back end, the `parallel` stage (entry functions and segment functions
//! alike). Output: the same program where every innermost loop that only
//! reduces — with `min`, `max`, `+` or `*` (Note [Strands]) — runs its
//! range as four contiguous strands advanced together in one loop, each
//! with its own accumulator, combined in order after it. `slope emit
//! --stage strands` prints the result.
//!
//! Invariants: the same values bit for bit for `min`, `max` and integer
//! reductions, and float sums and products associated as Note [Sums as
//! strands] says; the same failures, first in index order (Note [Strands
//! that fail]); the loop IR's (every load in bounds, every variable
//! assigned before it is read).

use super::opt::checks::is_check;
use super::parallel::{read_before_assigned, reduction, Facts};
use super::{fresh_copy, rename_block, Func, Inst, LVar, MTy, Operand, Program, Rhs};
use crate::hash::{HashMap, HashSet};
use crate::ir::{BinOp, Const};
use slope_runtime::parallel::{Elem, ReduceOp};

// Note [Strands]
// ~~~~~~~~~~~~~~
// A `max` reduction, `for j in lo..hi { x = a[j]; acc = max acc x }`, is
// one chain of dependent operations: each `max` (three comparisons and
// three selects, for the NaN rules) waits for the one before, where the
// load does not. lse's maximum over 1.28M elements took 1.73 ms on one
// thread, a sum over the same elements 1.05 ms; as strands, 1.47 ms. A sum
// is such a chain too: each floating-point addition waits 3 to 4 cycles for
// the one before.
//
// Four accumulators break the chain. Strand k reduces the k-th quarter of
// the range (the last strand also the remainder, in a loop of its own);
// one loop advances all four, so their operations overlap; afterwards
// `acc = max (max (max acc s1) s2) s3`. The first strand carries on from
// `acc`'s value before the loop; the others start from the runtime's
// neutral element (-inf for `max`, +inf for `min`, i64's extremes, -0.0
// for a float sum, 1 for a product), which the combination ignores:
// `max a -inf` is `a`, `a + -0.0` is `a`.
//
// The same bits for `min` and `max`: `max a b` keeps `a` unless `b` wins
// (is greater, or NaN where `a` is not), so a fold keeps the first NaN,
// else the first of the greatest elements — which matters for ties that
// differ in their bits, -0.0 and 0.0, or two NaN payloads. Contiguous
// strands combined in order keep that same element: the first strand's
// candidates all come before the second's. (Interleaved strands, vector
// lanes, would not.) This is the runtime's argument for combining chunks in
// order (Note [Deterministic chunks] in `slope_runtime::parallel`), one
// level down. Integer sums and products wrap, and are exact in any order.
//
// Which loops: innermost loops whose body only computes values — loads,
// arithmetic and branches of those, at most `MAX_BODY` instructions; no
// store, no allocation — and checks them (Note [Strands that fail]), whose
// every carried variable is a reduction as the `parallel` stage recognises
// them (`parallel::reduction`), and none of whose other variables is read
// after the loop (each strand has its own copies).
//
// The loads stay in bounds: the loop's bounds are read once, before it
// (a body assigning its index or bounds is refused), and the trip count is
// `max (if lo < hi then hi - lo else 0) 0`, never negative even where
// `hi - lo` would wrap, so every strand's index lies in `lo..hi`, as the
// loop's own did.

// Note [Sums as strands]
// ~~~~~~~~~~~~~~~~~~~~~~
// A floating-point sum or product as strands is associated as
// `((acc ⊕ s1) ⊕ s2) ⊕ s3`, each strand a fold from the left over its
// quarter of the range — as a parallel loop's chunks are (docs/native.md,
// "All the cores"), at a finer grain. Its bits do not depend on the number
// of threads, since the strands of a loop are cut by its trip count alone,
// but they may differ from the interpreter's single fold: in the last
// places for a well-conditioned sum, by much more where the sum cancels
// (1e308 beside small numbers; the fuzzer's `engines` target finds such
// inputs within seconds). So it is an option, `Options::reassociate`
// (`--reassociate`), off by default, as `-ffast-math` is for a C compiler;
// the GradBench tool runs without it. What it buys is the latency chain:
// gmm's objective, whose inner loop is the dot product of a row of the
// packed triangle with a vector, went from 179–199 to 133–137 ms at d = 64,
// k = 100, n = 1000 on one thread (docs/performance.md, thirty-third
// session).

// Note [Strands that fail]
// ~~~~~~~~~~~~~~~~~~~~~~~~
// A body may check what it loads (`if ok {} else { fail … }`: an index
// from a table, such as gmm's packed triangle). Four strands would meet
// their failures out of index order — strand 1's first bad index before a
// bad one later in strand 0 — where the error must be the first in index
// order. So in a strand a failing check sets a flag instead and skips the
// rest of that strand's body for that index (nothing after a check runs
// unless it passed: the loads stay in bounds). After the strands' loop, a
// set flag runs the original loop again from the accumulators' values
// before it: the body only computes, so running it again changes nothing
// but the accumulators, and it fails at the first bad index, as the loop
// would have. The remainder's loop runs only when no strand failed, after
// every index before it passed its checks: its first failure is the
// loop's. Only checks in the body itself qualify; a check inside a branch
// keeps the loop as it is.

/// The largest loop body (in instructions) written out five times: four
/// strands and the remainder's loop (six with checks: the loop again).
const MAX_BODY: usize = 24;

/// How many strands a loop runs.
const STRANDS: i64 = 4;

/// Runs every loop of `program` that Note [Strands] allows as strands;
/// float sums and products only when `reassociate` (Note [Sums as
/// strands]).
pub fn run(program: &mut Program, reassociate: bool) {
    let segments = program.segments.iter_mut().map(|s| &mut s.func);
    for f in program.funcs.iter_mut().chain(segments) {
        let facts = Facts::of_func(f);
        let mut body = std::mem::take(&mut f.body);
        rewrite_block(f, &facts, reassociate, &mut body);
        f.body = body;
    }
}

/// Rewrites the loops of `insts` (nested blocks first).
fn rewrite_block(f: &mut Func, facts: &Facts, reassociate: bool, insts: &mut Vec<Inst>) {
    let mut k = 0;
    while k < insts.len() {
        for block in insts[k].blocks_mut() {
            rewrite_block(f, facts, reassociate, block);
        }
        match reductions(f, facts, reassociate, &insts[k]) {
            Some(accs) => {
                let strands = strands(f, &insts[k], &accs);
                let n = strands.len();
                insts.splice(k..k + 1, strands);
                k += n;
            }
            None => k += 1,
        }
    }
}

/// The accumulators of `inst` and their operators, when it is a loop Note
/// [Strands] allows.
fn reductions(f: &Func, facts: &Facts, reassociate: bool, inst: &Inst) -> Option<Vec<Acc>> {
    let Inst::For { index, start, bound, body, lanes: 1, .. } = inst else { return None };
    if super::size(body) > MAX_BODY || !computes_and_checks(body) {
        return None;
    }
    let inside = Facts::of_block(body);
    let mut assigned: HashSet<LVar> = super::assigned_in(body);
    // The body's own index and bounds stay put (strands compute their
    // indices from them).
    let moves = |o: &Operand| o.var().is_some_and(|v| assigned.contains(&v));
    if assigned.contains(index) || moves(start) || moves(bound) {
        return None;
    }
    assigned.insert(*index);
    let mut carried = HashSet::default();
    read_before_assigned(body, &assigned, &mut HashSet::from_iter([*index]), &mut carried);
    let mut accs = Vec::new();
    for &acc in &carried {
        let ((_, op, elem), None) = reduction(f, body, &inside.uses, acc, *index)? else { return None };
        let float = matches!(elem, Elem::F64 | Elem::F32);
        if float && matches!(op, ReduceOp::Add | ReduceOp::Mul) && !reassociate {
            return None;
        }
        accs.push(Acc { var: acc, op: strand_op(op), neutral: neutral(op, elem) });
    }
    let read_after = |v: &LVar| facts.reads_outside(&inside, *v) > 0;
    if accs.is_empty() || assigned.iter().any(|v| read_after(v) && !carried.contains(v)) {
        return None;
    }
    accs.sort_unstable_by_key(|a| a.var);
    Some(accs)
}

/// Whether `insts` only compute values — assignments of loads and
/// arithmetic, and branches of those — and check them: a check, `if ok {}
/// else { fail … }`, may stand in the loop body itself, not in a branch
/// (Note [Strands that fail]).
fn computes_and_checks(insts: &[Inst]) -> bool {
    insts.iter().all(|i| is_check(i).is_some() || only_computes(std::slice::from_ref(i)))
}

/// Whether `insts` only compute values: assignments of loads and
/// arithmetic, and branches of those.
fn only_computes(insts: &[Inst]) -> bool {
    insts.iter().all(|i| match i {
        Inst::Let(_, rhs) => !matches!(rhs, Rhs::Alloc { .. } | Rhs::Mark | Rhs::WhileLimit),
        Inst::If { then, els, .. } => only_computes(then) && only_computes(els),
        _ => false,
    })
}

/// The binary operator that combines two strands of a reduction with `op`
/// (exactly, but for float sums and products: Note [Sums as strands]).
fn strand_op(op: ReduceOp) -> BinOp {
    match op {
        ReduceOp::Add => BinOp::Add,
        ReduceOp::Mul => BinOp::Mul,
        ReduceOp::Min => BinOp::Min,
        ReduceOp::Max => BinOp::Max,
    }
}

/// What a strand starts from: the runtime's neutral element of `op`, the
/// one its chunks start from too.
fn neutral(op: ReduceOp, elem: Elem) -> Const {
    let bits = op.neutral(elem);
    match elem {
        Elem::F64 => Const::F64(f64::from_bits(bits)),
        Elem::F32 => Const::F32(f32::from_bits(bits as u32)),
        Elem::I64 => Const::I64(bits as i64),
    }
}

/// A reduction a loop carries: its variable, its operator, and what a
/// strand starts from.
struct Acc {
    var: LVar,
    op: BinOp,
    neutral: Const,
}

/// The loop `inst` as strands: what replaces it in its block.
///
/// ```text
/// lo = start; hi = bound                      (read once, as the loop reads them)
/// trips = max (if lo < hi then hi - lo else 0) 0; quarter = trips / 4
/// acc_s = neutral; base_s = base_(s-1) + quarter   (s = 1, 2, 3; base_0 = lo)
/// for i in 0..quarter { j_0 = base_0 + i; body_0; …; j_3 = base_3 + i; body_3 }
/// for j in base_3 + quarter..hi { body with acc_3 }
/// acc = acc op acc_1; acc = acc op acc_2; acc = acc op acc_3
/// ```
///
/// `trips` is never negative, even where `hi - lo` wraps, so every strand
/// index lies in `lo..hi` and nothing overflows. A body with checks runs as
/// Note [Strands that fail] says.
fn strands(f: &mut Func, inst: &Inst, accs: &[Acc]) -> Vec<Inst> {
    let Inst::For { index, start, bound, body, .. } = inst else { unreachable!("a loop") };
    let binary = |a: LVar, op: BinOp, b: Operand| Rhs::Binary(op, Operand::Var(a), b);
    let [lo, hi, difference, counted, trips, quarter] =
        ["lo", "hi", "difference", "counted", "trips", "quarter"].map(|name| f.fresh(name, MTy::I64));
    let nonempty = f.fresh("nonempty", MTy::Bool);
    let mut out = vec![
        Inst::Let(lo, Rhs::Use(*start)),
        Inst::Let(hi, Rhs::Use(*bound)),
        Inst::Let(nonempty, binary(lo, BinOp::Lt, Operand::Var(hi))),
        Inst::Let(difference, binary(hi, BinOp::Sub, Operand::Var(lo))),
        Inst::Let(counted, Rhs::Select(Operand::Var(nonempty), Operand::Var(difference), Operand::i64(0))),
        Inst::Let(trips, binary(counted, BinOp::Max, Operand::i64(0))),
        Inst::Let(quarter, binary(trips, BinOp::Div, Operand::i64(STRANDS))),
    ];
    // A body that checks: whether a strand failed, and the accumulators'
    // values before the loop, for running it again in order.
    let checks = body.iter().any(|i| is_check(i).is_some());
    let failed = checks.then(|| f.fresh("failed", MTy::Bool));
    let mut saved = Vec::new();
    if let Some(failed) = failed {
        out.push(Inst::Let(failed, Rhs::Use(Operand::Const(Const::Bool(false)))));
        for acc in accs {
            let (name, ty) = f.vars[acc.var.0 as usize].clone();
            let v = f.fresh(&name, ty);
            out.push(Inst::Let(v, Rhs::Use(Operand::Var(acc.var))));
            saved.push(v);
        }
    }
    // Per reduction, the accumulators of strands 1, 2 and 3 (strand 0 has
    // the loop's own).
    let mut own: Vec<Vec<LVar>> = Vec::new();
    for acc in accs {
        let (name, ty) = f.vars[acc.var.0 as usize].clone();
        let vars: Vec<LVar> = (1..STRANDS).map(|_| f.fresh(&name, ty)).collect();
        for &v in &vars {
            out.push(Inst::Let(v, Rhs::Use(Operand::Const(acc.neutral))));
        }
        own.push(vars);
    }
    // Where each strand starts.
    let mut bases = vec![lo];
    for _ in 1..STRANDS {
        let base = f.fresh("base", MTy::I64);
        out.push(Inst::Let(base, binary(*bases.last().expect("strand 0's"), BinOp::Add, Operand::Var(quarter))));
        bases.push(base);
    }
    // Strand `s`'s accumulators in place of the loop's.
    let strand_accs = |s: usize| -> HashMap<LVar, LVar> {
        if s == 0 {
            return HashMap::default();
        }
        accs.iter().enumerate().map(|(k, acc)| (acc.var, own[k][s - 1])).collect()
    };
    let temps: HashSet<LVar> = super::assigned_in(body).into_iter().filter(|v| !accs.iter().any(|a| a.var == *v)).collect();
    let i = f.fresh("i", MTy::I64);
    let mut main = Vec::new();
    for (s, &base) in bases.iter().enumerate() {
        let (mut copy, renamed) = fresh_copy(f, *index, body, &temps);
        rename_block(&mut copy, &strand_accs(s));
        main.push(Inst::Let(renamed[index], binary(base, BinOp::Add, Operand::Var(i))));
        match failed {
            Some(failed) => main.extend(failing_into(copy, failed)),
            None => main.extend(copy),
        }
    }
    out.push(Inst::For {
        index: i,
        start: Operand::i64(0),
        bound: Operand::Var(quarter),
        body: main,
        lanes: 1,
        parallel: false,
    });
    let rest = f.fresh("rest", MTy::I64);
    let mut finish = vec![Inst::Let(rest, binary(*bases.last().expect("strand 3's"), BinOp::Add, Operand::Var(quarter)))];
    let mut remainder = body.clone();
    rename_block(&mut remainder, &strand_accs(STRANDS as usize - 1));
    finish.push(Inst::For {
        index: *index,
        start: Operand::Var(rest),
        bound: Operand::Var(hi),
        body: remainder,
        lanes: 1,
        parallel: false,
    });
    for (k, acc) in accs.iter().enumerate() {
        for &s in &own[k] {
            finish.push(Inst::Let(acc.var, binary(acc.var, acc.op, Operand::Var(s))));
        }
    }
    let Some(failed) = failed else {
        out.extend(finish);
        return out;
    };
    // A strand failed: the loop again, in order, from the accumulators'
    // values before it; it fails where the loop would have.
    let mut again: Vec<Inst> =
        accs.iter().zip(&saved).map(|(acc, &v)| Inst::Let(acc.var, Rhs::Use(Operand::Var(v)))).collect();
    again.push(Inst::For {
        index: *index,
        start: Operand::Var(lo),
        bound: Operand::Var(hi),
        body: body.clone(),
        lanes: 1,
        parallel: false,
    });
    out.push(Inst::If { cond: Operand::Var(failed), then: again, els: finish });
    out
}

/// A strand's copy of a body with checks: the rest of the body after each
/// check runs only when it passes; a failing check sets `failed` instead
/// of failing (Note [Strands that fail]).
fn failing_into(insts: Vec<Inst>, failed: LVar) -> Vec<Inst> {
    let mut out = Vec::new();
    let mut rest = insts.into_iter();
    while let Some(inst) = rest.next() {
        if let Some(ok) = is_check(&inst) {
            let set = Inst::Let(failed, Rhs::Use(Operand::Const(Const::Bool(true))));
            out.push(Inst::If { cond: ok, then: failing_into(rest.collect(), failed), els: vec![set] });
            return out;
        }
        out.push(inst);
    }
    out
}
