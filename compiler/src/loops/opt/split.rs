//! Index-set splitting: a `for` loop whose body tests its index against a
//! loop-invariant value (`j == 0`, `c < r`, `(n - 1) - j == 0`) becomes up to
//! three consecutive loops over the index ranges where the test is constant,
//! each with the test replaced by that constant (`simplify` then removes the
//! branch). See Note [Index-set splitting].
//!
//! Input: a [`Func`]. Output: the same function; every loop still runs its
//! iterations in increasing index order, so loop-carried values and the
//! order of failures are unchanged. Code grows by at most [`BUDGET`]
//! instructions per function.

use super::affine::{Affine, Defs};
use super::simplify::Counts;
use crate::hash::{HashMap, HashSet};
use crate::ir::{BinOp, Const};
use crate::loops::{assigned_in, for_each_inst, fresh_copy, size, Func, Inst, LVar, MTy, Operand, Rhs};

/// Instructions splitting may add to one function.
const BUDGET: usize = 6000;
/// Loops with bodies larger than this are not split (the copies would cost
/// more compile time than the branch costs run time); only innermost loops
/// are, for the same reason (an outer loop's branch runs once per inner loop).
const MAX_BODY: usize = 200;
/// Rounds of splitting: each splits a loop on one test, with the analyses
/// recomputed in between (a piece may be split again on another test, an
/// outer loop once its inner loops are done).
const ROUNDS: u32 = 4;

pub fn run(f: &mut Func) {
    let mut budget = BUDGET;
    let mut fallbacks = HashSet::default();
    for _ in 0..ROUNDS {
        let mut s = Splitter { defs: Defs::of(f), counts: Counts::of(f), budget, changed: false, fallbacks };
        let mut body = std::mem::take(&mut f.body);
        s.block(f, &mut body);
        f.body = body;
        budget = s.budget;
        fallbacks = s.fallbacks;
        if !s.changed {
            break;
        }
    }
}

struct Splitter {
    defs: Defs,
    counts: Counts,
    budget: usize,
    changed: bool,
    /// The indices of loops kept as they were behind an overflow guard
    /// (Note [Splitting without overflow]): not split again.
    fallbacks: HashSet<LVar>,
}

/// Where the test is true, as a range of the index.
enum Truth {
    /// `[lo, hi)`; `None` ends are the loop's own start or bound.
    Inside { lo: Option<Affine>, hi: Option<Affine> },
    /// Everywhere but `[v, v + 1)`.
    Except(Affine),
}

impl Splitter {
    /// Splits the loops of `insts`, innermost first; a loop whose body
    /// changed in this round waits for the next. Returns whether anything changed.
    fn block(&mut self, f: &mut Func, insts: &mut Vec<Inst>) -> bool {
        rewrite_loops_innermost_first(f, insts, &mut |f, index, start, bound, body, lanes, out| {
            if self.fallbacks.contains(&index) {
                out.push(Inst::For { index, start, bound, body, lanes, parallel: false });
                return false;
            }
            self.split(f, index, start, bound, body, out)
        })
    }

    /// Emits the loop `for index in start..bound { body }` into `out`, split
    /// on the first index test in its body. Returns whether it split.
    fn split(
        &mut self,
        f: &mut Func,
        index: LVar,
        start: Operand,
        bound: Operand,
        body: Vec<Inst>,
        out: &mut Vec<Inst>,
    ) -> bool {
        let size = size(&body);
        let innermost = !body.iter().any(|i| i.blocks().next().is_some() && has_loop(i));
        let test = (innermost && size <= MAX_BODY && self.budget >= 2 * size)
            .then(|| self.find_test(f, index, &body))
            .flatten();
        let Some((cond, truth)) = test else {
            out.push(Inst::For { index, start, bound, body, lanes: 1, parallel: false });
            return false;
        };
        // The boundaries are computed with wrapping arithmetic: split only
        // when they cannot overflow (Note [Splitting without overflow]).
        let bounded: Vec<&Affine> = match &truth {
            Truth::Inside { lo, hi } => lo.iter().chain(hi.iter()).collect(),
            Truth::Except(v) => vec![v],
        };
        let Some(guarded) = overflow_guard(&bounded) else {
            out.push(Inst::For { index, start, bound, body, lanes: 1, parallel: false });
            return false;
        };
        let whole = out;
        let mut split_out = Vec::new();
        let out = &mut split_out;
        // The pieces: (start, bound, value of the test) in index order.
        let mut pieces: Vec<(Operand, Operand, bool)> = Vec::new();
        let min = |f: &mut Func, out: &mut Vec<Inst>, a: Operand, b: Operand| binary(f, out, BinOp::Min, a, b);
        let max = |f: &mut Func, out: &mut Vec<Inst>, a: Operand, b: Operand| binary(f, out, BinOp::Max, a, b);
        match truth {
            Truth::Inside { lo, hi } => {
                let lo = lo.map(|a| emit_affine(f, out, &a));
                let hi = hi.map(|a| emit_affine(f, out, &a));
                let (mid_start, mid_end);
                if let Some(lo) = lo {
                    if lo != start {
                        let end = min(f, out, lo, bound);
                        pieces.push((start, end, false));
                    }
                    mid_start = max(f, out, lo, start);
                } else {
                    mid_start = start;
                }
                if let Some(hi) = hi {
                    mid_end = min(f, out, hi, bound);
                    pieces.push((mid_start, mid_end, true));
                    let tail = max(f, out, hi, start);
                    pieces.push((tail, bound, false));
                } else {
                    pieces.push((mid_start, bound, true));
                }
            }
            Truth::Except(v) => {
                let lo = emit_affine(f, out, &v);
                let hi = emit_affine(f, out, &v.plus(1).expect("small"));
                let end = min(f, out, lo, bound);
                pieces.push((start, end, true));
                let (s2, e2) = (max(f, out, lo, start), min(f, out, hi, bound));
                pieces.push((s2, e2, false));
                let tail = max(f, out, hi, start);
                pieces.push((tail, bound, true));
            }
        }
        let copies = if guarded.is_empty() { pieces.len() - 1 } else { pieces.len() };
        if self.budget < size * copies {
            whole.push(Inst::For { index, start, bound, body, lanes: 1, parallel: false });
            return false;
        }
        self.budget -= size * copies;
        self.changed = true;
        let locals = body_locals(&self.counts, &body);
        for (s, e, value) in pieces {
            let (index, body) = copy_body(f, index, &body, &locals, cond, value);
            out.push(Inst::For { index, start: s, bound: e, body, lanes: 1, parallel: false });
        }
        if guarded.is_empty() {
            whole.append(out);
            return true;
        }
        // Every variable of the boundaries within ±GUARD: the split loops;
        // otherwise the loop as it was.
        let mut ok = Operand::Const(Const::Bool(true));
        for v in guarded {
            let shifted = binary(f, whole, BinOp::Add, Operand::Var(v), Operand::i64(GUARD));
            let inside = f.fresh("small", MTy::Bool);
            whole.push(Inst::Let(inside, Rhs::InRange { index: shifted, bound: Operand::i64(2 * GUARD) }));
            ok = if ok == Operand::Const(Const::Bool(true)) {
                inside.into()
            } else {
                let both = f.fresh("small", MTy::Bool);
                whole.push(Inst::Let(both, Rhs::Binary(BinOp::And, ok, inside.into())));
                both.into()
            };
        }
        self.fallbacks.insert(index);
        let original = Inst::For { index, start, bound, body, lanes: 1, parallel: false };
        whole.push(Inst::If { cond: ok, then: std::mem::take(out), els: vec![original] });
        true
    }

    /// The first variable assigned (once, at the top of `body`) a comparison
    /// of the index with a loop-invariant value, that the body branches or
    /// selects on; and where it is true.
    fn find_test(&self, f: &Func, index: LVar, body: &[Inst]) -> Option<(LVar, Truth)> {
        let assigned = assigned_in(body);
        let mut tested: HashSet<LVar> = HashSet::default();
        for_each_inst(body, &mut |i| match i {
            Inst::If { cond: Operand::Var(c), .. } | Inst::Let(_, Rhs::Select(Operand::Var(c), ..)) => {
                tested.insert(*c);
            }
            _ => {}
        });
        body.iter().find_map(|i| {
            let Inst::Let(c, Rhs::Binary(op, a, b)) = i else { return None };
            if !tested.contains(c) || !self.counts.single(*c) || !op.is_comparison() || f.operand_type(*a) != MTy::I64 {
                return None;
            }
            let d = self.defs.affine(*a)?.sub(&self.defs.affine(*b)?)?;
            let k = d.coeff(index);
            let invariant =
                d.terms.iter().all(|(v, _)| *v == index || (!assigned.contains(v) && self.counts.single(*v)));
            if !(k == 1 || k == -1) || !invariant {
                return None;
            }
            // d = k·j + r; the test is `d op 0`, i.e. `j op' v`.
            let r = d.add_scaled(&Affine::var(index), k.checked_neg()?)?;
            let (op, v) = if k == 1 { (*op, r.scale(-1)?) } else { (flip(*op), r) };
            let truth = match op {
                BinOp::Lt => Truth::Inside { lo: None, hi: Some(v) },
                BinOp::Le => Truth::Inside { lo: None, hi: Some(v.plus(1)?) },
                BinOp::Gt => Truth::Inside { lo: Some(v.plus(1)?), hi: None },
                BinOp::Ge => Truth::Inside { lo: Some(v), hi: None },
                BinOp::Eq => Truth::Inside { lo: Some(v.clone()), hi: Some(v.plus(1)?) },
                BinOp::Ne => Truth::Except(v),
                _ => return None,
            };
            Some((*c, truth))
        })
    }
}

/// How large (in absolute value) a variable of a split boundary may be.
const GUARD: i64 = 1 << 40;
/// How large a coefficient or constant of a split boundary may be.
const MAX_COEFF: i64 = 1 << 20;
const MAX_CONST: i64 = 1 << 40;
const MAX_TERMS: usize = 4;

/// The variables whose range a run-time guard must check so that the
/// boundaries `bounds` compute without overflow — none for constant
/// boundaries — or `None` when even small variables could overflow them.
fn overflow_guard(bounds: &[&Affine]) -> Option<Vec<LVar>> {
    let mut vars = Vec::new();
    for a in bounds {
        if a.terms.len() > MAX_TERMS || a.c.unsigned_abs() > MAX_CONST as u64 {
            return None;
        }
        for &(v, k) in &a.terms {
            if k.unsigned_abs() > MAX_COEFF as u64 {
                return None;
            }
            if !vars.contains(&v) {
                vars.push(v);
            }
        }
    }
    Some(vars)
}

/// The comparison with its operands swapped (`a < b` is `b > a`).
fn flip(op: BinOp) -> BinOp {
    match op {
        BinOp::Lt => BinOp::Gt,
        BinOp::Le => BinOp::Ge,
        BinOp::Gt => BinOp::Lt,
        BinOp::Ge => BinOp::Le,
        op => op,
    }
}

/// Whether `i` is or contains a loop.
fn has_loop(i: &Inst) -> bool {
    matches!(i, Inst::For { .. } | Inst::While { .. }) || i.blocks().any(|b| b.iter().any(has_loop))
}

fn binary(f: &mut Func, out: &mut Vec<Inst>, op: BinOp, a: Operand, b: Operand) -> Operand {
    let rhs = Rhs::Binary(op, a, b);
    if let Some(o) = rhs.fold() {
        return o;
    }
    if a == b {
        return a;
    }
    let v = f.fresh("t", MTy::I64);
    out.push(Inst::Let(v, rhs));
    v.into()
}

/// Emits the computation of an affine expression; returns its operand.
fn emit_affine(f: &mut Func, out: &mut Vec<Inst>, a: &Affine) -> Operand {
    let mut acc = Operand::i64(a.c);
    for &(v, k) in &a.terms {
        let term = binary(f, out, BinOp::Mul, Operand::Var(v), Operand::i64(k));
        acc = binary(f, out, BinOp::Add, acc, term);
    }
    acc
}

/// A `for` loop taken apart: index, start, bound, body, lanes.
pub(super) type LoopRewrite<'r> =
    dyn FnMut(&mut Func, LVar, Operand, Operand, Vec<Inst>, u32, &mut Vec<Inst>) -> bool + 'r;

/// Offers each `for` loop of `insts` to `rewrite`, innermost first, which
/// pushes the loop or its replacement to the output and says whether it
/// changed it. A loop whose body changed in this walk is kept as it is (the
/// next round sees it with its analyses recomputed). Returns whether anything
/// in `insts` changed. (The walk of `split` and `unroll`.)
pub(super) fn rewrite_loops_innermost_first(
    f: &mut Func,
    insts: &mut Vec<Inst>,
    rewrite: &mut LoopRewrite<'_>,
) -> bool {
    let mut out = Vec::with_capacity(insts.len());
    let mut changed = false;
    for mut i in std::mem::take(insts) {
        let mut inner = false;
        for b in i.blocks_mut() {
            inner |= rewrite_loops_innermost_first(f, b, rewrite);
        }
        changed |= inner;
        match i {
            Inst::For { index, start, bound, body, lanes, parallel } if !inner => {
                let first = out.len();
                changed |= rewrite(f, index, start, bound, body, lanes, &mut out);
                if parallel {
                    mark_parallel(&mut out[first..]);
                }
            }
            i => out.push(i),
        }
    }
    *insts = out;
    changed
}

/// Marks the loops of `insts` parallel, those in branches included: what a
/// rewrite made of a parallel loop — its pieces, or, unrolled, the loops of
/// its body, now the outermost level (Note [Outermost parallelism first]
/// in segments/decide.rs).
fn mark_parallel(insts: &mut [Inst]) {
    for i in insts {
        match i {
            Inst::For { parallel, .. } => *parallel = true,
            Inst::If { then, els, .. } => {
                mark_parallel(then);
                mark_parallel(els);
            }
            _ => {}
        }
    }
}

/// Variables assigned only in `body` and read only there (`counts` are the
/// whole function's): each copy of the body gets its own.
pub(super) fn body_locals(counts: &Counts, body: &[Inst]) -> HashSet<LVar> {
    let mut defs: HashMap<LVar, u32> = HashMap::default();
    let mut uses: HashMap<LVar, u32> = HashMap::default();
    for_each_inst(body, &mut |i| {
        i.for_each_def(|v| *defs.entry(v).or_insert(0) += 1);
        i.for_each_use(|v| {
            *uses.entry(v).or_insert(0) += 1;
        });
    });
    defs.into_iter()
        .filter(|(v, n)| *n == counts.defs(*v) && uses.get(v).copied().unwrap_or(0) == counts.uses(*v))
        .map(|(v, _)| v)
        .collect()
}

/// A copy of the loop body with a fresh index and fresh locals, and the test
/// `cond` assigned the constant `value`. Returns the new index and body.
fn copy_body(
    f: &mut Func,
    index: LVar,
    body: &[Inst],
    locals: &HashSet<LVar>,
    cond: LVar,
    value: bool,
) -> (LVar, Vec<Inst>) {
    let (mut body, rename) = fresh_copy(f, index, body, locals);
    let cond = rename.get(&cond).copied().unwrap_or(cond);
    for i in &mut body {
        if let Inst::Let(c, rhs) = i {
            if *c == cond {
                *rhs = Rhs::Use(Operand::Const(Const::Bool(value)));
            }
        }
    }
    (rename[&index], body)
}


// Note [Splitting without overflow]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The test `j op v` is derived from the program's comparison by affine
// algebra over the integers, but the boundaries of the pieces are computed at
// run time with wrapping `i64` arithmetic. A test `(n - 1) - j < t` with
// `t = n - i64::MIN` (which wraps) becomes `j > n - 1 - t`, and `- t`
// overflows: the pieces were wrong and a guarded read ran out of bounds
// (found by the fuzzer). So the boundaries are only computed where they
// cannot overflow: at most four terms with coefficients up to 2^20 and a
// constant up to 2^40, and every variable in them checked at run time to lie
// within ±2^40 (one comparison each, before the loop) — the split loops run
// then, and the loop as it was otherwise. Constant boundaries (`i == 0`) need
// no guard.

// Note [Index-set splitting]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~
// `tabulate n (\i -> if i == 0 then x[0] else x[i] * y[i - 1])` lowers to a
// loop that tests `i == 0` on every element, and whose else branch checks
// `i - 1` against the bounds of `y`. Splitting the index range where the test
// changes value gives
//
//     for i in 0..min(0, n)        { else branch }   -- empty, dropped
//     for i in max(0, 0)..min(1, n) { then branch }  -- the one peeled iteration
//     for i in max(1, 0)..n        { else branch }
//
// with no branch left, and with ranges from which the range analysis proves
// `0 <= i - 1 < n` (Note [Range analysis] in `affine.rs`). A test `j op v`
// (or `-j op v`, as in reversed loops) with `v` invariant is true on one
// index interval `[lo, hi)` — or, for `!=`, everywhere but one point — so
// three pieces always suffice: `[start, min(lo, bound))`, `[max(lo, start),
// min(hi, bound))`, `[max(hi, start), bound)`. When `lo > hi` or a piece falls
// outside `[start, bound)`, its range is empty (a `for` with `bound <= start`
// runs nothing), and the pieces still cover every index exactly once, in
// increasing order: loop-carried values flow from one piece into the next
// exactly as from one iteration into the next.
