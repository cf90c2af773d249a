//! Full unrolling of short loops: a `for` loop with constant bounds and at
//! most [`MAX_TRIP`] iterations becomes its body once per iteration, the
//! index a constant in each copy (Note [Unrolling short loops]).
//!
//! Input: a [`Func`]. Output: the same function; the copies run in index
//! order, so loop-carried values and the order of failures are unchanged.
//! Each copy gets fresh locals (as `split`'s copies do), so a variable the
//! loop body assigned once is still assigned once, for copy propagation and
//! the range analysis. Code grows by at most [`BUDGET`] instructions per
//! function.

use super::simplify::Counts;
use super::split::{body_locals, rewrite_loops_innermost_first};
use crate::ir::Const;
use crate::loops::{for_each_inst, fresh_copy, Func, Inst, Operand, Rhs};

/// The most iterations a loop may have to be unrolled.
const MAX_TRIP: i64 = 4;
/// The most instructions an unrolled loop may become.
const MAX_UNROLLED: usize = 256;
/// Instructions unrolling may add to one function.
const BUDGET: usize = 20_000;
/// Rounds: each unrolls the loops whose bodies did not change in it, so a
/// nest of short loops unrolls from the inside out.
const ROUNDS: u32 = 3;

pub fn run(f: &mut Func) {
    let mut budget = BUDGET;
    for _ in 0..ROUNDS {
        let mut u = Unroller { counts: Counts::of(f), budget, changed: false };
        let mut body = std::mem::take(&mut f.body);
        u.block(f, &mut body);
        f.body = body;
        budget = u.budget;
        if !u.changed {
            break;
        }
    }
}

struct Unroller {
    counts: Counts,
    budget: usize,
    changed: bool,
}

impl Unroller {
    /// Unrolls the short loops of `insts` whose bodies did not change in
    /// this round. Returns whether anything in `insts` changed.
    fn block(&mut self, f: &mut Func, insts: &mut Vec<Inst>) -> bool {
        rewrite_loops_innermost_first(f, insts, &mut |f, index, start, bound, body, lanes, out| {
            let Some((first, end)) = self.trips(start, bound, lanes, &body) else {
                out.push(Inst::For { index, start, bound, body, lanes, parallel: false });
                return false;
            };
            let locals = body_locals(&self.counts, &body);
            for k in first..end {
                let (copy, rename) = fresh_copy(f, index, &body, &locals);
                out.push(Inst::Let(rename[&index], Rhs::Use(Operand::i64(k))));
                out.extend(copy);
            }
            self.changed = true;
            true
        })
    }

    /// The constant index range of a loop to unroll, charging the budget.
    fn trips(&mut self, start: Operand, bound: Operand, lanes: u32, body: &[Inst]) -> Option<(i64, i64)> {
        let (Operand::Const(Const::I64(first)), Operand::Const(Const::I64(end))) = (start, bound) else {
            return None;
        };
        let trips = end.saturating_sub(first);
        if lanes != 1 || !(1..=MAX_TRIP).contains(&trips) {
            return None;
        }
        let mut size = 1;
        for_each_inst(body, &mut |_| size += 1);
        let unrolled = size * trips as usize;
        if unrolled > MAX_UNROLLED || unrolled > self.budget {
            return None;
        }
        self.budget -= unrolled;
        Some((first, end))
    }
}

// Note [Unrolling short loops]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Programs build many small fixed-size arrays — a 3-vector of a camera
// rotation in ba, a row of a 4×4 transform in ht — and lowering gives each a
// buffer and a loop of two to four iterations over it. The loop costs a
// compare and a branch per element and keeps the elements in memory. Written
// out once per iteration with the index a constant, the copies expose what
// the other passes need: constant indices (the range analysis drops their
// checks), a store followed by a load of the same element in one block
// (fusion forwards the value), and then a buffer nothing reads (its stores
// and allocation go). The copies run in index order, exactly as the loop
// did, so no value or failure changes. A loop is unrolled when it has at
// most four iterations and its copies at most 256 instructions, inner loops
// first (a 4×4 matrix product unrolls completely); a function grows by at
// most 20,000 instructions.
