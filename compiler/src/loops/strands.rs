//! The `strands` stage: `min` and `max` reductions run as four strands.
//!
//! Input: a loop [`Program`] after the loop optimiser and, on the multicore
//! back end, the `parallel` stage (entry functions and segment functions
//! alike). Output: the same program where every innermost loop that only
//! reduces with `min` or `max` (Note [Strands]) runs its range as four
//! contiguous strands advanced together in one loop, each with its own
//! accumulator, combined in order after it. `slope emit --stage strands`
//! prints the result.
//!
//! Invariants: the same values bit for bit, and the same failures (a loop
//! this stage rewrites cannot fail); the loop IR's (every load in bounds,
//! every variable assigned before it is read).

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
// thread, a sum over the same elements 1.05 ms; as strands, 1.47 ms.
//
// Four accumulators break the chain. Strand k reduces the k-th quarter of
// the range (the last strand also the remainder, in a loop of its own);
// one loop advances all four, so their operations overlap; afterwards
// `acc = max (max (max acc s1) s2) s3`. The first strand carries on from
// `acc`'s value before the loop; the others start from the neutral element
// (-inf for `max`, +inf for `min`, i64's extremes), which the combination
// ignores: `max a -inf` is `a`.
//
// The same bits: `max a b` keeps `a` unless `b` wins (is greater, or NaN
// where `a` is not), so a fold keeps the first NaN, else the first of the
// greatest elements — which matters for ties that differ in their bits,
// -0.0 and 0.0, or two NaN payloads. Contiguous strands combined in order
// keep that same element: the first strand's candidates all come before
// the second's. (Interleaved strands, vector lanes, would not; sums are not
// split at all, since reassociating them changes their bits.) This is the
// runtime's argument for combining chunks in order (Note [Deterministic
// chunks] in `slope_runtime::parallel`), one level down.
//
// Which loops: innermost loops whose body only computes values — loads,
// arithmetic and branches of those, at most `MAX_BODY` instructions; no
// store, no check that could fail, no allocation — whose every carried
// variable is a `min` or `max` reduction as the `parallel` stage recognises
// them (`parallel::reduction`), and none of whose other variables is read
// after the loop (each strand has its own copies). A body that could fail
// stays as it is: four strands would meet its failures out of index order.
//
// The loads stay in bounds: the loop's bounds are read once, before it
// (a body assigning its index or bounds is refused), and the trip count is
// `max (if lo < hi then hi - lo else 0) 0`, never negative even where
// `hi - lo` would wrap, so every strand's index lies in `lo..hi`, as the
// loop's own did.

/// The largest loop body (in instructions) written out five times: four
/// strands and the remainder's loop.
const MAX_BODY: usize = 24;

/// How many strands a loop runs.
const STRANDS: i64 = 4;

/// Runs every loop of `program` that Note [Strands] allows as strands.
pub fn run(program: &mut Program) {
    let segments = program.segments.iter_mut().map(|s| &mut s.func);
    for f in program.funcs.iter_mut().chain(segments) {
        let facts = Facts::of_func(f);
        let mut body = std::mem::take(&mut f.body);
        rewrite_block(f, &facts, &mut body);
        f.body = body;
    }
}

/// Rewrites the loops of `insts` (nested blocks first).
fn rewrite_block(f: &mut Func, facts: &Facts, insts: &mut Vec<Inst>) {
    let mut k = 0;
    while k < insts.len() {
        for block in insts[k].blocks_mut() {
            rewrite_block(f, facts, block);
        }
        match reductions(f, facts, &insts[k]) {
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
fn reductions(f: &Func, facts: &Facts, inst: &Inst) -> Option<Vec<Acc>> {
    let Inst::For { index, start, bound, body, lanes: 1, .. } = inst else { return None };
    if super::size(body) > MAX_BODY || !only_computes(body) {
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
        accs.push(Acc { var: acc, op: exact(op)?, neutral: neutral(op, elem) });
    }
    let read_after = |v: &LVar| facts.reads_outside(&inside, *v) > 0;
    if accs.is_empty() || assigned.iter().any(|v| read_after(v) && !carried.contains(v)) {
        return None;
    }
    accs.sort_unstable_by_key(|a| a.var);
    Some(accs)
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

/// The operator of a reduction whose result does not depend on how its
/// range is cut (Note [Strands]).
fn exact(op: ReduceOp) -> Option<BinOp> {
    match op {
        ReduceOp::Min => Some(BinOp::Min),
        ReduceOp::Max => Some(BinOp::Max),
        ReduceOp::Add | ReduceOp::Mul => None,
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
/// index lies in `lo..hi` and nothing overflows.
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
        main.extend(copy);
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
    out.push(Inst::Let(rest, binary(*bases.last().expect("strand 3's"), BinOp::Add, Operand::Var(quarter))));
    let mut remainder = body.clone();
    rename_block(&mut remainder, &strand_accs(STRANDS as usize - 1));
    out.push(Inst::For {
        index: *index,
        start: Operand::Var(rest),
        bound: Operand::Var(hi),
        body: remainder,
        lanes: 1,
        parallel: false,
    });
    for (k, acc) in accs.iter().enumerate() {
        for &s in &own[k] {
            out.push(Inst::Let(acc.var, binary(acc.var, acc.op, Operand::Var(s))));
        }
    }
    out
}
