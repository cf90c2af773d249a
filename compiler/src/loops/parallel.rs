//! The `parallel` stage: outlines loops whose iterations are independent
//! into segments that the runtime runs in chunks on a thread pool.
//!
//! Input: an optimised loop [`Program`] (after `loops::opt`). Output: the
//! same program where some `For` loops are replaced by `Inst::Parallel`,
//! each naming a [`Segment`]: a function running the loop over a sub-range
//! `lo..hi`, and the plan the runtime follows (`slope_runtime::parallel`).
//! `slope emit --stage parallel` prints both.
//!
//! Which loops (Note [Parallel segments]): those the parallel level marked
//! (`For::parallel`: the outermost iteration spaces, Note [Outermost
//! parallelism first] in segments/decide.rs) whose iterations touch
//! disjoint memory except through reductions the runtime knows how to
//! combine. Loops directly inside a sequential loop at the outermost level
//! that pass the same analysis become segments called `inline`: one direct
//! call over the whole range, for the register allocator's sake (Note
//! [Loops called inline]). A marked loop that fails the analysis stays in
//! place, unmarked: the stage's output marks nothing.
//!
//! Invariants: a program computes the same values and fails with the same
//! error (code, span, message; the first in index order) as before the
//! stage, for every number of threads, bit for bit across thread counts
//! (Note [Deterministic chunks] in the runtime). Segment functions use the
//! parent's failure sites (same indices). The loop IR verifier
//! (`verify::verify_program`) checks every `Parallel` against its segment.

use super::opt::alias::{Apart, PointsTo, Target};
use super::{for_each_inst, Func, Inst, LVar, Leaf, MTy, Operand, Program, Rhs, Segment};
use crate::hash::{HashMap, HashSet};
use crate::ir::BinOp;
use crate::prims;
use slope_runtime::parallel::{self as rt, Elem, ReduceOp};
use std::collections::BTreeSet;

// Note [Parallel segments]
// ~~~~~~~~~~~~~~~~~~~~~~~~
// Lowering turns a `map` into a loop that stores row j of a fresh buffer in
// iteration j, a `reduce` into a loop carrying an accumulator, and reverse
// mode's adjoint of a `map` into a loop adding into adjoint buffers; it
// marks the loops of the statements the parallel level made parallel (the
// outermost ones). After the loop optimiser has fused and split them, this
// stage looks at each marked loop and outlines it when every iteration is
// independent of the others up to three things the runtime can combine:
//
// - **Variables.** Every variable the body assigns is assigned before it is
//   read in the same iteration and read nowhere after the loop — except
//   reductions: `t = acc op x; acc = t` (or `acc = acc op x`) at the body's
//   top level, `acc` read nowhere else in the body, `op` one of `+ * min
//   max` on f64, f32 or i64. Their totals come back as the `Parallel`'s
//   results. A reduction may also store its running value at the loop
//   index of a buffer: a scan (Note [Scans]).
// - **Memory, by points-to (`opt/alias.rs`).** A buffer the body allocates
//   is private to the iteration. A buffer lowering hoisted out of the loop
//   (`Alloc { hoisted: true }`, Note [Hoisted buffers] in buffers.rs) is
//   scratch that each iteration writes before reading it: each chunk
//   allocates its own. A buffer the body only reads is shared. A buffer
//   written through one pointer `b` either (slots) only at `b[i]`, or by
//   copying `c` elements to `&b[i * c]`, for the loop index `i` — each
//   iteration its own slot — or (accumulators, a histogram) only by
//   `b[k] = b[k] op x` for any `k`, one `op` of `+ * min max` for the
//   buffer, when `b` is the allocation itself and its size is known: later
//   chunks combine into private buffers that start at `op`'s neutral element
//   and are combined in afterwards, in chunk order (`reduce_by_index` with
//   `max` as well as reverse mode's `+=`). Anything else — a parameter's
//   memory written, a pointer read from memory next to a written buffer, a
//   write at another index — keeps the loop sequential.
// - **Operand order.** The runtime keeps the earlier operand of a `min` or
//   `max` tie (`-0.0` and `0.0`), as generated code keeps its first: so a
//   `min` or `max` reduction, scan or accumulation combines in parallel
//   only with the running value as its first operand (`in_order`).
// - **The arena.** A `Mark` taken before the loop for a `Release` inside it
//   is taken again in the segment, in the arena of the thread that runs it.
//
// Loops inside another loop do not go to the pool — the parallel level
// does not mark them — but for a loop over a few iterations with a wider
// level inside (Note [Outermost parallelism first]): that would pay a plan
// per outer iteration, and the outer loop, when it is parallel, already
// occupies the threads. (An outer `while` or time-step loop around
// parallel maps is the case this leaves on one core; such loops, one level
// down, are called inline instead: Note [Loops called inline].) Measured
// on 2026-12-03: outlining the loops one level inside a sequential loop
// (ode's RK4 steps, lstm's time steps) gave ode no speed-up on two threads —
// its maps of 50–70 µs at GradBench's largest size are below what the pool
// costs on this machine (Note [Pool or inline] in the runtime) — and made
// lstm about 9% slower on two threads, its inner maps going to the pool
// and losing; accumulators in such loops (ode's reverse sweep, `b[i-1] +=
// …` into 100,000-element adjoints) made it 8× slower, each chunk adding a
// private copy of the whole buffer per outer iteration.
//
// Note [Scans]
// ~~~~~~~~~~~~
// Lowering writes `scan op ne xs` as a reduction that stores its running
// value: `t = acc op x; out[j] = t; acc = t`. Such a loop runs in parallel
// in two passes over chunks cut by size, as reductions are (Note
// [Deterministic chunks] in the runtime): every chunk runs the loop as it
// is — the first from `acc`'s value before the loop, the others from `op`'s
// neutral element — so each chunk leaves the scan of its own elements in
// its part of `out`, and its total; then, in chunk order, the runtime
// combines the totals into each chunk's offset (the totals of the chunks
// before it) and combines that offset into every element of the chunk's
// part of `out` (`Scan` in runtime/src/parallel.rs), chunks in parallel.
// Only a store of `t` itself, at the loop index, at the top level of the
// body (so every iteration stores) qualifies: `out[j] = g t`, or a store
// only some iterations make, cannot be corrected by combining an offset in.
// And `out` must be a buffer from before the loop that nothing else in the
// body reads or writes, through any pointer (`Memory::accesses`): a read in
// the same iteration would see the value before the correction.
// As for sums, a float `+` or `*` scan over several chunks is associated
// differently from the sequential loop (the same for every thread count);
// `min`, `max` and integer scans are exact.
//
// Note [Earlier buffers of an allocation]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Points-to names a buffer by its allocation, so the buffers one `Alloc` in
// a loop gives in successive iterations are one target. A time step that
// reads the state `y` and writes the next one into `out = alloc n`, then
// sets `y = out`, has `y` and `out` both pointing to that target: the map
// computing `out` would read and write "one buffer" through two pointers.
// But right after `out = alloc n`, if nothing has copied `out` since and
// the loop does not copy it, only `out` reaches the new buffer
// (`alias::fresh_at_end`): `y` reaches an earlier one. The analysis keeps
// accesses through other pointers apart as a target of their own, which
// the loop may read but not write.
//
// The chunk size is `CHUNK_WORK / cost` iterations, `cost` the body's
// estimated cost (`cost`): the runtime runs a range of one chunk inline, so
// a short or cheap loop pays only an indirect call.

/// Estimated work units one chunk should hold (a unit is about one scalar
/// instruction; a task on the pool costs a few thousand).
const CHUNK_WORK: i64 = 50_000;

/// Picoseconds a unit of estimated work takes (a first guess for the
/// runtime's choice of pool or inline, Note [Pool or inline]).
const PS_PER_UNIT: i64 = 300;

/// Iterations an inner loop of unknown trip count is assumed to run.
const INNER_TRIPS: i64 = 16;

/// Outlines the parallel loops of every function of `program`, one
/// function after the other (Note [Outlining one function at a time]).
pub fn run(program: &mut Program) {
    for k in 0..program.funcs.len() {
        let mut f = std::mem::replace(&mut program.funcs[k], Func::empty(""));
        let pt = PointsTo::of(&f);
        let info = Facts::of_func(&f);
        let mut body = std::mem::take(&mut f.body);
        outline_block(&mut body, &mut f, &pt, &info, Level::Outer, &mut program.segments);
        f.body = body;
        program.funcs[k] = f;
    }
    // The marks have served: a loop left marked (inside a `while`, or in a
    // loop now a segment's) runs where it is.
    let bodies = program.funcs.iter_mut().map(|f| &mut f.body);
    for body in bodies.chain(program.segments.iter_mut().map(|s| &mut s.func.body)) {
        unmark(body);
    }
}

/// Clears the `parallel` mark of every loop of `insts`.
fn unmark(insts: &mut [Inst]) {
    for i in insts {
        if let Inst::For { parallel, .. } = i {
            *parallel = false;
        }
        for b in i.blocks_mut() {
            unmark(b);
        }
    }
}

// Note [Outlining one function at a time]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Unlike the loop optimiser, outlining runs the functions one after the
// other, into one list of segments. Outlining each function on a thread of
// its own, then numbering the segments program-wide, was tried on
// 2026-12-03 and gave the same segments but no gain: ht's stage went from
// 12 to 11 ms, and implicit_ridge's from 18 to 20–21 ms (two equal
// functions of ~6000 statements, still slower on two cores than one after
// the other, not investigated further).

/// What the analysis asks of a block of instructions — a whole function,
/// or a loop's body — counted in one walk: how often each variable is read
/// and assigned, the right-hand side of each `Let`, the buffers allocated,
/// and how many null tests test each pointer. A loop's variable is read
/// after it when the function's count exceeds the body's.
#[derive(Default)]
pub(super) struct Facts {
    pub(super) uses: HashMap<LVar, usize>,
    defs: HashMap<LVar, usize>,
    lets: HashMap<LVar, Rhs>,
    /// Variables some `Let` of the block assigns an `Alloc`.
    allocated: HashSet<LVar>,
    /// How many `Rhs::null_test`s test each pointer.
    null_tests: HashMap<LVar, usize>,
}

impl Facts {
    pub(super) fn of_block(insts: &[Inst]) -> Facts {
        let mut facts = Facts::default();
        for_each_inst(insts, &mut |i| {
            i.for_each_use(|v| {
                *facts.uses.entry(v).or_default() += 1;
            });
            for v in i.defs() {
                *facts.defs.entry(v).or_default() += 1;
            }
            if let Inst::Let(v, rhs) = i {
                facts.lets.insert(*v, rhs.clone());
                if matches!(rhs, Rhs::Alloc { .. }) {
                    facts.allocated.insert(*v);
                }
                if let Some(p) = rhs.tested_for_null() {
                    *facts.null_tests.entry(p).or_default() += 1;
                }
            }
        });
        facts
    }

    /// The facts of `f`'s body, its results read and its parameters assigned.
    pub(super) fn of_func(f: &Func) -> Facts {
        let mut facts = Facts::of_block(&f.body);
        for v in f.results.iter().filter_map(|o| o.var()) {
            *facts.uses.entry(v).or_default() += 1;
        }
        for &p in &f.params {
            *facts.defs.entry(p).or_default() += 1;
        }
        facts
    }

    /// How often `v` is read.
    fn reads(&self, v: LVar) -> usize {
        self.uses.get(&v).copied().unwrap_or(0)
    }

    /// How often `v` is read outside `inside`, a block of these instructions.
    pub(super) fn reads_outside(&self, inside: &Facts, v: LVar) -> usize {
        self.reads(v) - inside.reads(v)
    }

    /// How many null tests test `v`.
    fn tests(&self, v: LVar) -> usize {
        self.null_tests.get(&v).copied().unwrap_or(0)
    }

    /// `o` holds one value for the whole call: a constant, or a variable
    /// assigned once (a parameter, a dimension, a size computed once).
    fn stable(&self, o: Operand) -> bool {
        o.var().is_none_or(|v| self.defs.get(&v).copied().unwrap_or(0) <= 1)
    }
}

/// Where a block is, for `outline_block`.
#[derive(Clone, Copy, PartialEq)]
enum Level {
    /// Not inside a loop.
    Outer,
    /// Directly inside a sequential loop at the outer level: independent
    /// loops become segments called inline (Note [Loops called inline]);
    /// marked ones go to the pool.
    InSequential,
    /// Deeper inside sequential loops: marked loops go to the pool.
    Deeper,
}

/// Replaces the loops of `block` the parallel level marked (`For::parallel`)
/// by segments on the pool, when their iterations are independent; and the
/// independent loops directly inside a sequential loop at the outer level
/// by inline calls.
fn outline_block(
    block: &mut [Inst],
    f: &mut Func,
    pt: &PointsTo,
    info: &Facts,
    level: Level,
    segments: &mut Vec<crate::loops::Segment>,
) {
    // Every loop of the block is analysed before any is outlined: what the
    // instructions before a loop do to a pointer (Note [Earlier buffers of
    // an allocation]) is plainer in loops than in segment calls.
    let plans: Vec<Option<Result<Plan, String>>> = (0..block.len())
        .map(|k| {
            let candidate = match block[k] {
                Inst::For { parallel, .. } => parallel || level == Level::InSequential,
                _ => false,
            };
            candidate.then(|| analyse(f, pt, info, &block[..k], &block[k]))
        })
        .collect();
    let inner = if level == Level::Outer { Level::InSequential } else { Level::Deeper };
    for (inst, plan) in block.iter_mut().zip(plans) {
        match (inst, plan) {
            (inst @ Inst::For { parallel: true, .. }, Some(Ok(plan))) => *inst = outline(f, inst, plan, false, segments),
            (inst @ Inst::For { .. }, Some(Ok(plan)))
                if level == Level::InSequential && plan.private.is_empty() && !short(inst, info) =>
            {
                *inst = outline(f, inst, plan, true, segments)
            }
            (Inst::For { index, body, .. }, plan) => {
                if level == Level::Outer && std::env::var_os("SLOPE_EXPLAIN_PARALLEL").is_some() {
                    let why = match plan {
                        Some(Err(why)) => why,
                        _ => "the parallel level made it sequential (`emit --stage segments`)".into(),
                    };
                    eprintln!("{}: loop `{}` stays sequential: {why}", f.name, f.var_name(*index));
                }
                outline_block(body, f, pt, info, inner, segments);
            }
            (Inst::If { then, els, .. }, _) => {
                outline_block(then, f, pt, info, level, segments);
                outline_block(els, f, pt, info, level, segments);
            }
            _ => {}
        }
    }
}

// Note [Loops called inline]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Cranelift allocates registers for a whole function at once. In a
// sequential loop whose body calls the runtime (an allocation per time
// step, a release, host math), every value live across the loop lives in
// one of the five callee-saved registers or on the stack, and the
// allocator does not always split those ranges around an inner loop: ode's
// RK4 step kept reloading pointers and a splatted `h` from the stack in
// every iteration of its inner maps, and stored them back. The same loops
// compiled as functions of their own get every register: ode's largest
// primal (GradBench, n = 100,000) took 28–32 ms against 38–43 ms, one
// thread, alternating runs (2026-12-03).
//
// So a loop directly inside a sequential loop whose iterations the analysis
// finds independent becomes a segment too, marked `inline`: the generated
// code calls the segment's function once over the whole range, on the
// calling thread, in its arena — no pool, no chunks, no private buffers, the
// same loop the function had, in the same order. (On the pool these loops
// lost: Note [Parallel segments].) Not when the segment would re-allocate
// scratch the loop shares (`Plan::private`: once per call instead of once
// per function), nor when the trip count is at most a small constant (a
// peeled first iteration), where the call would cost as much as the loop.
//
// A loop of a few iterations whose count is known only at run time is
// called too: lstm's maps over a hidden state of 7 cost a call each, and
// GradBench's lstm replayed alike (`scripts/message_scaling.py`, 5 rounds,
// one thread: 480 against 484 ms). Choosing at run time — the call when
// the loop is long, the loop in place otherwise — made lstm ~20% slower
// although no call ran — presumably because the call sites, cold or not,
// still clobber the caller-saved registers for the allocator, which then
// spilled more in the loops that stayed (not checked in the machine code).

/// A loop whose constant bounds allow fewer iterations stays in place.
const INLINE_MIN_TRIPS: i64 = 64;

/// Whether the loop `inst` runs fewer than [`INLINE_MIN_TRIPS`] iterations
/// whatever the sizes: its bound is at most a constant (itself, or a
/// `min` with one, as a peeled first iteration's) that is close to a
/// constant start.
fn short(inst: &Inst, info: &Facts) -> bool {
    let Inst::For { start, bound, .. } = inst else { return false };
    let most = match *bound {
        Operand::Const(_) => bound.as_i64(),
        Operand::Var(v) if info.defs.get(&v) == Some(&1) => match info.lets.get(&v) {
            Some(Rhs::Binary(BinOp::Min, a, b)) => a.as_i64().or(b.as_i64()),
            _ => None,
        },
        Operand::Var(_) => None,
    };
    matches!((start.as_i64(), most), (Some(a), Some(b)) if b.saturating_sub(a) < INLINE_MIN_TRIPS)
}

/// What the analysis found a loop needs to run in parallel.
struct Plan {
    /// Variables the body reads but does not assign: the segment's arguments.
    captures: Vec<LVar>,
    /// `(acc, op, elem)`, in variable order.
    reductions: Vec<Reduction>,
    /// `(acc, buffer)`: reductions whose running value every iteration
    /// stores at its index of the buffer (Note [Scans]).
    scans: Vec<(LVar, LVar)>,
    /// Variables only the first iteration assigns (Note [The first iteration]).
    firsts: Vec<LVar>,
    /// `(buffer variable, its element count, how it is combined into)`.
    accumulators: Vec<(LVar, Operand, Combined)>,
    /// Variables defined before the loop that the segment defines again:
    /// scratch buffers (`Alloc`) and arena marks.
    private: Vec<(LVar, Rhs)>,
    cost: i64,
}

/// Decides whether the loop `inst`, which follows `before` in its block,
/// can run in parallel (Note [Parallel segments]).
fn analyse(f: &Func, pt: &PointsTo, info: &Facts, before: &[Inst], inst: &Inst) -> Result<Plan, String> {
    let Inst::For { index, start, body, .. } = inst else { return Err("not a loop".into()) };
    if count_where(body, &|i| matches!(i, Inst::Parallel { .. })) > 0 {
        return Err("it contains a parallel loop".into());
    }
    let inside = Facts::of_block(body);
    let mut assigned: HashSet<LVar> = inside.defs.keys().copied().collect();
    assigned.insert(*index);
    // Variables: read before assigned (carried) must be reductions; the
    // others must not be read after the loop.
    let mut carried = HashSet::default();
    read_before_assigned(body, &assigned, &mut HashSet::from_iter([*index]), &mut carried);
    let firsts = first_iteration_vars(body, *index, *start);
    // In variable order, not the set's: the plan's reductions and the
    // reason a loop stays sequential are the same on every run.
    let mut carried: Vec<LVar> = carried.into_iter().collect();
    carried.sort_unstable();
    let found: Vec<(Reduction, Option<LVar>)> = carried
        .iter()
        .filter(|v| !firsts.contains(v))
        .map(|&acc| {
            reduction(f, body, &inside.uses, acc, *index)
                .ok_or_else(|| format!("`{}` is carried from one iteration to the next", f.var_name(acc)))
        })
        .collect::<Result<_, _>>()?;
    let scans: Vec<(LVar, LVar)> = found.iter().filter_map(|(r, b)| b.map(|b| (r.0, b))).collect();
    let reductions: Vec<Reduction> = found.into_iter().map(|(r, _)| r).collect();
    let accs: HashSet<LVar> = reductions.iter().map(|r| r.0).collect();
    let mut assigned_in_order: Vec<LVar> = assigned.iter().copied().collect();
    assigned_in_order.sort_unstable();
    for v in assigned_in_order {
        let outside = info.reads_outside(&inside, v);
        if outside > 0 && !accs.contains(&v) && !firsts.contains(&v) {
            return Err(format!("`{}` is assigned in the loop and read after it", f.var_name(v)));
        }
    }
    // After the first iteration, its variables are invariant.
    let varying: HashSet<LVar> = assigned.difference(&firsts).copied().collect();
    let escaping: HashSet<Target> =
        firsts.iter().flat_map(|&v| pt.targets(Operand::Var(v)).into_iter().flatten().copied()).collect();
    let memory = memory(f, pt, info, &inside, before, body, *index, &varying, &escaping)?;
    let mut used = BTreeSet::new();
    super::for_each_use(body, &mut |v| {
        used.insert(v);
    });
    let private_vars: HashSet<LVar> = memory.private.iter().map(|p| p.0).collect();
    let mut captures: BTreeSet<LVar> =
        used.iter().copied().filter(|v| !assigned.contains(v) && !private_vars.contains(v)).collect();
    captures.extend(accs.iter().copied());
    captures.extend(firsts.iter().copied());
    for (_, rhs) in &memory.private {
        captures.extend(rhs.operands().into_iter().filter_map(Operand::var));
    }
    for &(_, b) in &scans {
        if !captures.contains(&b) || private_vars.contains(&b) {
            return Err(format!("scan buffer `{}` is not one from before the loop", f.var_name(b)));
        }
        // A read would see a chunk's value before the earlier chunks' total
        // is combined in; a second write would be corrected as if it were
        // the scan's (Note [Scans]).
        let alone = match pt.targets(Operand::Var(b)) {
            Some(&[t]) => memory.accesses.get(&t) == Some(&1),
            _ => false,
        };
        if !alone {
            return Err(format!("scan buffer `{}` is accessed besides the scan's store", f.var_name(b)));
        }
    }
    let mut reductions = reductions;
    reductions.sort_by_key(|r| r.0);
    let mut firsts: Vec<LVar> = firsts.into_iter().collect();
    firsts.sort();
    Ok(Plan {
        captures: captures.into_iter().collect(),
        reductions,
        scans,
        firsts,
        accumulators: memory.accumulators,
        private: memory.private,
        cost: cost(body).max(1),
    })
}

// Note [The first iteration]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A `map` whose result rows have a shape known only inside the loop
// allocates its result in the first iteration: `if j == 0 { d = …; out =
// alloc … } else { check d }`, so `out` and `d` are carried from the first
// iteration to all others and read after the loop. Such variables — assigned
// only in the `then` block of a top-level `if index == start` — do not stop
// a loop from running in parallel: the runtime runs the first iteration
// alone, inline, then gives its values of them to every later chunk (which
// only read them) and back to the caller. Buffers they point to outlive the
// first iteration, so they are not iteration-private memory: they are
// checked like buffers from before the loop.

/// The variables of Note [The first iteration].
fn first_iteration_vars(body: &[Inst], index: LVar, start: Operand) -> HashSet<LVar> {
    let mut tests = HashSet::default();
    for i in body {
        if let Inst::Let(c, Rhs::Binary(BinOp::Eq, a, b)) = i {
            if (*a == Operand::Var(index) && *b == start) || (*b == Operand::Var(index) && *a == start) {
                tests.insert(*c);
            }
        }
    }
    let mut defs_in_first: HashMap<LVar, usize> = HashMap::default();
    for i in body {
        if let Inst::If { cond: Operand::Var(c), then, .. } = i {
            if tests.contains(c) {
                for_each_inst(then, &mut |j| {
                    for v in j.defs() {
                        *defs_in_first.entry(v).or_default() += 1;
                    }
                });
            }
        }
    }
    let mut defs: HashMap<LVar, usize> = HashMap::default();
    for_each_inst(body, &mut |i| {
        for v in i.defs() {
            *defs.entry(v).or_default() += 1;
        }
    });
    // A test assigned more than once is no test of the first iteration.
    if tests.iter().any(|c| defs.get(c) != Some(&1)) {
        return HashSet::default();
    }
    defs_in_first.into_iter().filter(|(v, n)| defs.get(v) == Some(n)).map(|(v, _)| v).collect()
}

/// How many instructions of `insts` (nested blocks included) satisfy `p`.
fn count_where(insts: &[Inst], p: &dyn Fn(&Inst) -> bool) -> usize {
    let mut n = 0;
    for_each_inst(insts, &mut |i| n += usize::from(p(i)));
    n
}

/// Adds to `out` the variables of `assigned` that `insts` may read before
/// this iteration assigned them (values carried from an earlier iteration).
/// `defined`: assigned on every path so far. Returns whether the block
/// always fails (its end is unreachable).
pub(super) fn read_before_assigned(
    insts: &[Inst],
    assigned: &HashSet<LVar>,
    defined: &mut HashSet<LVar>,
    out: &mut HashSet<LVar>,
) -> bool {
    let read = |ops: Vec<Operand>, defined: &HashSet<LVar>, out: &mut HashSet<LVar>| {
        for v in ops.into_iter().filter_map(Operand::var) {
            if assigned.contains(&v) && !defined.contains(&v) {
                out.insert(v);
            }
        }
    };
    for i in insts {
        read(i.operands(), defined, out);
        match i {
            Inst::For { index, body, .. } => {
                let mut inner = defined.clone();
                inner.insert(*index);
                read_before_assigned(body, assigned, &mut inner, out);
            }
            Inst::While { cond, body, .. } => {
                let mut inner = defined.clone();
                read_before_assigned(cond, assigned, &mut inner, out);
                read_before_assigned(body, assigned, &mut inner, out);
            }
            Inst::If { then, els, .. } => {
                let mut a = defined.clone();
                let mut b = defined.clone();
                let a_fails = read_before_assigned(then, assigned, &mut a, out);
                let b_fails = read_before_assigned(els, assigned, &mut b, out);
                match (a_fails, b_fails) {
                    (true, true) => return true,
                    (true, false) => *defined = b,
                    (false, true) => *defined = a,
                    (false, false) => *defined = a.intersection(&b).copied().collect(),
                }
            }
            Inst::Fail { .. } => return true,
            i => defined.extend(i.defs()),
        }
    }
    false
}

/// A scalar reduction: `(acc, op, elem)`.
pub(super) type Reduction = (LVar, ReduceOp, Elem);

/// Whether `acc op x` (`acc_first`) or `x op acc` combines as the runtime
/// does: it keeps the earlier operand of a `min` or `max` tie (`-0.0` and
/// `0.0`, NaN payloads), as generated code keeps its first operand — so
/// there `acc` must come first; `+` and `*` are the same either way round.
fn in_order(op: ReduceOp, acc_first: bool) -> bool {
    acc_first || matches!(op, ReduceOp::Add | ReduceOp::Mul)
}

/// The runtime's operator for `op`, when it can combine partial results.
fn combining(op: BinOp) -> Option<ReduceOp> {
    match op {
        BinOp::Add => Some(ReduceOp::Add),
        BinOp::Mul => Some(ReduceOp::Mul),
        BinOp::Min => Some(ReduceOp::Min),
        BinOp::Max => Some(ReduceOp::Max),
        _ => None,
    }
}

/// `acc` as a reduction of the loop `body`: `t = acc op x; acc = t` or
/// `acc = acc op x` at the top level, `acc` read nowhere else in the body —
/// or a scan: `t = acc op x; b[index] = t; acc = t`, the store at the top
/// level too (every iteration makes it), `t` read nowhere else; then also
/// the buffer `b` (Note [Scans]).
pub(super) fn reduction(
    f: &Func,
    body: &[Inst],
    inside: &HashMap<LVar, usize>,
    acc: LVar,
    index: LVar,
) -> Option<(Reduction, Option<LVar>)> {
    let elem = match f.ty(acc) {
        MTy::F64 => Elem::F64,
        MTy::F32 => Elem::F32,
        MTy::I64 => Elem::I64,
        MTy::Bool => return None,
    };
    let op_of = |rhs: &Rhs| match rhs {
        Rhs::Binary(op, a, b) if (*a == Operand::Var(acc)) != (*b == Operand::Var(acc)) => {
            combining(*op).filter(|&op| in_order(op, *a == Operand::Var(acc)))
        }
        _ => None,
    };
    let count = |v: LVar| inside.get(&v).copied().unwrap_or(0);
    let defs_in = |v: LVar| {
        let mut n = 0;
        for_each_inst(body, &mut |i| n += i.defs().iter().filter(|&&d| d == v).count());
        n
    };
    if count(acc) != 1 || defs_in(acc) != 1 {
        return None;
    }
    for (k, i) in body.iter().enumerate() {
        let Inst::Let(t, rhs) = i else { continue };
        let Some(op) = op_of(rhs) else { continue };
        if *t == acc {
            return Some(((acc, op, elem), None));
        }
        let later = &body[k + 1..];
        let assigns_t = later.iter().any(|j| matches!(j, Inst::Let(a, Rhs::Use(Operand::Var(u))) if *a == acc && u == t));
        if !assigns_t || defs_in(*t) != 1 {
            continue;
        }
        if count(*t) == 1 {
            return Some(((acc, op, elem), None));
        }
        let stored = later.iter().find_map(|j| match j {
            Inst::Store { base: Operand::Var(b), index: Operand::Var(i), value: Operand::Var(v), elem: e }
                if *i == index && v == t && *e == f.ty(acc) =>
            {
                Some(*b)
            }
            _ => None,
        });
        if let (2, Some(b)) = (count(*t), stored) {
            return Some(((acc, op, elem), Some(b)));
        }
    }
    None
}

/// How an accumulator's elements are combined: `b[k] = b[k] op x` on `elem`.
type Combined = (Elem, ReduceOp);

/// What the memory analysis found.
struct Memory {
    accumulators: Vec<(LVar, Operand, Combined)>,
    private: Vec<(LVar, Rhs)>,
    /// How many accesses (loads, stores, copies' and sorts' ends) the body
    /// makes to each buffer from outside it, through any pointer.
    accesses: HashMap<Target, usize>,
}

/// How a loop body touches one buffer defined outside it.
struct Touches {
    /// Base variables of every access.
    bases: BTreeSet<LVar>,
    /// How many accesses.
    count: usize,
    written: bool,
    /// Every access is at the loop index (or a copy into its slot).
    slot: bool,
    /// Every access is part of `b[k] = b[k] op x`, all of one element type
    /// and one `op`: `combined`.
    accumulate: bool,
    combined: Option<Combined>,
}

/// The memory side of Note [Parallel segments]; `None` when a buffer
/// outside the loop might be touched by two iterations.
#[allow(clippy::too_many_arguments)]
fn memory(
    f: &Func,
    pt: &PointsTo,
    info: &Facts,
    inside: &Facts,
    before: &[Inst],
    body: &[Inst],
    index: LVar,
    assigned: &HashSet<LVar>,
    escaping: &HashSet<Target>,
) -> Result<Memory, String> {
    let local = &inside.allocated;
    let lets_in = &inside.lets;
    let uses = &inside.uses;
    // Scratch of this loop's iterations, not of an enclosing loop's that
    // this loop is one part of (or that several loops inside it share):
    // only null tests read it elsewhere. Otherwise it is a buffer like any.
    let is_scratch = |v: LVar| {
        let hoisted = !local.contains(&v) && matches!(info.lets.get(&v), Some(Rhs::Alloc { hoisted: true, .. }));
        hoisted && info.reads(v) - inside.reads(v) == info.tests(v) - inside.tests(v)
    };
    // A buffer allocated in this block before the loop, its pointer copied
    // neither since nor in the loop, is reached by that pointer alone; other
    // pointers with its target reach earlier buffers of the allocation (Note
    // [Earlier buffers of an allocation]).
    let apart = Apart::new(pt, before, &[body]);
    let mut alone_memo: HashMap<LVar, bool> = HashMap::default();
    let mut alone = |v: LVar| *alone_memo.entry(v).or_insert_with(|| apart.alone(v));
    let accumulations = accumulations(body, uses, info);
    // By target and whether the access reaches an earlier buffer of it.
    let mut touched: HashMap<(Target, bool), Touches> = HashMap::default();
    let mut unknown_base = false;
    let mut scratch = BTreeSet::new();
    let mut bad: Option<String> = None;
    let mut access = |base: Operand, write: bool, slot: bool, acc: Option<Combined>| {
        let Some(b) = base.var() else {
            bad = Some("it addresses a constant".into());
            return;
        };
        let Some(targets) = pt.targets(base).filter(|t| !t.is_empty() && !t.contains(&Target::Unknown)) else {
            unknown_base = true;
            if write {
                bad = Some(format!("it writes through `{}`, which may point anywhere", f.var_name(b)));
            }
            return;
        };
        for &t in targets {
            match t {
                Target::Alloc(v) if local.contains(&v) && !escaping.contains(&t) => {}
                Target::Alloc(v) if is_scratch(v) => {
                    // Reached only through the allocation's own variable, or
                    // through pointers the iteration derives from it.
                    if !assigned.contains(&b) && (b != v || targets.len() != 1) {
                        bad =
                            Some(format!("scratch buffer `{}` is reached through `{}`", f.var_name(v), f.var_name(b)));
                    }
                    scratch.insert(v);
                }
                t => {
                    let earlier = matches!(t, Target::Alloc(v) if v != b && alone(v));
                    let e = touched.entry((t, earlier)).or_insert(Touches {
                        bases: BTreeSet::new(),
                        count: 0,
                        written: false,
                        slot: true,
                        accumulate: true,
                        combined: None,
                    });
                    e.bases.insert(b);
                    e.count += 1;
                    e.written |= write;
                    e.slot &= slot;
                    match acc {
                        Some(a) if e.combined.is_none_or(|x| x == a) => e.combined = Some(a),
                        _ => e.accumulate = false,
                    }
                }
            }
        }
    };
    let at_index = |o: Operand| o == Operand::Var(index);
    // The slot of a copy: `dst = &b[m]`, `m = index * count`, all defined in the body.
    let copy_slot = |dst: Operand, count: Operand| -> Option<Operand> {
        let Some(Rhs::Offset { base, index: m, .. }) = dst.var().and_then(|d| lets_in.get(&d)) else { return None };
        let Some(Rhs::Binary(BinOp::Mul, x, y)) = m.var().and_then(|m| lets_in.get(&m)) else { return None };
        let invariant = count.var().is_none_or(|c| !assigned.contains(&c));
        let scaled = (at_index(*x) && *y == count) || (at_index(*y) && *x == count);
        (invariant && scaled).then_some(*base)
    };
    for_each_inst(body, &mut |i| match i {
        Inst::Let(v, Rhs::Load { base, index: ix, .. }) => {
            let acc = accumulations.get(v).copied();
            access(*base, false, at_index(*ix), acc);
        }
        Inst::Store { base, index: ix, value, .. } => {
            let acc = value.var().and_then(|n| accumulations.get(&n)).copied();
            access(*base, true, at_index(*ix), acc);
        }
        Inst::Copy { dst, src, count, .. } => {
            match copy_slot(*dst, *count) {
                Some(b) => access(b, true, true, None),
                None => access(*dst, true, false, None),
            }
            access(*src, false, false, None);
        }
        Inst::Argsort { keys, perm, .. } => {
            access(*perm, true, false, None);
            access(*keys, false, false, None);
        }
        _ => {}
    });
    if let Some(why) = bad {
        return Err(why);
    }
    let mut accumulators = Vec::new();
    let any_written = touched.values().any(|t| t.written);
    for (t, e) in &touched {
        if !e.written {
            continue;
        }
        let (Target::Alloc(v), false) = *t else {
            return Err("it writes memory passed in, read from memory, or an earlier buffer of an allocation".into());
        };
        let base = *e.bases.first().expect("an access has a base");
        if e.bases.len() != 1 {
            return Err(format!("buffer `{}` is written through several pointers", f.var_name(v)));
        }
        if assigned.contains(&base) {
            let (b, v) = (f.var_name(base), f.var_name(v));
            return Err(format!("buffer `{v}` is written through `{b}`, which the loop assigns"));
        }
        if e.slot {
            continue;
        }
        let why = || format!("buffer `{}` is written at indices other iterations may touch", f.var_name(v));
        let combined = e.combined.filter(|_| e.accumulate).ok_or_else(why)?;
        let count = match info.lets.get(&v) {
            Some(Rhs::Alloc { count, .. }) if info.stable(Operand::Var(v)) && info.stable(*count) => *count,
            _ => return Err(format!("accumulated buffer `{}` has no size known before the loop", f.var_name(v))),
        };
        if base != v {
            return Err(format!("accumulated buffer `{}` is reached through `{}`", f.var_name(v), f.var_name(base)));
        }
        accumulators.push((v, count, combined));
    }
    if any_written && unknown_base {
        return Err("it reads through a pointer that may point into a buffer it writes".into());
    }
    // A read-only buffer may not be one the loop writes through another name:
    // points-to keeps their targets apart, checked above per target.
    let mut private: Vec<(LVar, Rhs)> = Vec::new();
    for v in scratch {
        let rhs = info.lets[&v].clone();
        // Each chunk allocates its own copy with the size the loop starts
        // with, which is the size the iterations index it by: it need not be
        // assigned once in the whole function, only not in the loop.
        let known_at_entry = |o: Operand| info.stable(o) || o.var().is_some_and(|c| !inside.defs.contains_key(&c));
        if !info.stable(Operand::Var(v)) || !rhs.operands().into_iter().all(known_at_entry) {
            return Err(format!("scratch buffer `{}` has no size known before the loop", f.var_name(v)));
        }
        private.push((v, rhs));
    }
    // Marks taken before the loop for releases inside it.
    let mut marks = BTreeSet::new();
    for_each_inst(body, &mut |i| {
        if let Inst::Release { mark: Operand::Var(m), .. } = i {
            if !assigned.contains(m) {
                marks.insert(*m);
            }
        }
    });
    for m in marks {
        if !matches!(info.lets.get(&m), Some(Rhs::Mark))
            || (uses.get(&m).copied().unwrap_or(0)
                != count_where(body, &|i| matches!(i, Inst::Release { mark: Operand::Var(x), .. } if *x == m)))
        {
            return Err("it releases memory it did not allocate".into());
        }
        private.push((m, Rhs::Mark));
    }
    accumulators.sort_by_key(|a| a.0);
    let mut accesses: HashMap<Target, usize> = HashMap::default();
    for ((t, _), e) in &touched {
        *accesses.entry(*t).or_default() += e.count;
    }
    Ok(Memory { accumulators, private, accesses })
}

/// The accumulations `old = load b[k]; new = old op x; store b[k] = new` in
/// `body`, `op` one the runtime combines, by both `old` and `new` (each read
/// exactly once, where shown).
fn accumulations(body: &[Inst], uses: &HashMap<LVar, usize>, info: &Facts) -> HashMap<LVar, Combined> {
    let mut loads: HashMap<LVar, (Operand, Operand, MTy)> = HashMap::default();
    // `new ↦ (op, [old])`: both operands of `new = a op b` may be loads.
    let mut combines: HashMap<LVar, (ReduceOp, Vec<LVar>)> = HashMap::default();
    let mut out = HashMap::default();
    let once = |v: LVar| uses.get(&v) == Some(&1) && info.uses.get(&v) == Some(&1);
    for_each_inst(body, &mut |i| match i {
        Inst::Let(old, Rhs::Load { base, index, elem }) if once(*old) => {
            loads.insert(*old, (*base, *index, *elem));
        }
        Inst::Let(new, Rhs::Binary(op, a, b)) if once(*new) => {
            let Some(op) = combining(*op) else { return };
            for (o, x, old_first) in [(a, b, true), (b, a, false)] {
                if !in_order(op, old_first) {
                    continue;
                }
                if let Some(old) = o.var().filter(|o| loads.contains_key(o)) {
                    if *x != Operand::Var(old) {
                        combines.entry(*new).or_insert((op, Vec::new())).1.push(old);
                    }
                }
            }
        }
        Inst::Store { base, index, value: Operand::Var(new), elem } => {
            let Some((op, olds)) = combines.get(new) else { return };
            let el = match elem {
                MTy::F64 => Elem::F64,
                MTy::F32 => Elem::F32,
                MTy::I64 => Elem::I64,
                MTy::Bool => return,
            };
            if let Some(&old) = olds.iter().find(|o| loads[o] == (*base, *index, *elem)) {
                out.insert(old, (el, *op));
                out.insert(*new, (el, *op));
            }
        }
        _ => {}
    });
    out
}

/// The estimated work of one iteration of `insts` (Note [Parallel segments]).
fn cost(insts: &[Inst]) -> i64 {
    insts
        .iter()
        .map(|i| match i {
            Inst::Let(_, Rhs::Unary(op, _)) => op.prim().cost.max(1) as i64,
            Inst::Let(_, Rhs::Binary(op, ..)) => prims::binary_cost(*op) as i64,
            Inst::Let(_, Rhs::Alloc { .. } | Rhs::Mark) | Inst::Release { .. } | Inst::Copy { .. } => 30,
            Inst::For { body, .. } => 2 + INNER_TRIPS.saturating_mul(cost(body)),
            // A sort of an inner vector: a loop of about log₂(trips) comparisons.
            Inst::Argsort { .. } => 30 + INNER_TRIPS.saturating_mul(10),
            Inst::While { cond, body, .. } => INNER_TRIPS.saturating_mul(cost(cond).saturating_add(cost(body))),
            Inst::If { then, els, .. } => 1 + cost(then).max(cost(els)),
            _ => 1,
        })
        .fold(0i64, |a, b| a.saturating_add(b))
}

/// Replaces the loop `inst` by a `Parallel` running a new segment (called
/// `inline` or not).
fn outline(f: &mut Func, inst: &mut Inst, plan: Plan, inline: bool, segments: &mut Vec<Segment>) -> Inst {
    let Inst::For { index, start, bound, body, lanes, .. } = std::mem::replace(inst, Inst::Fail { site: 0, args: vec![] })
    else {
        unreachable!("outline is called on loops")
    };
    let mut seg = Func::empty(&format!("{}.segment{}", f.name, segments.len()));
    seg.sites = f.sites.clone();
    let mut map: HashMap<LVar, LVar> = HashMap::default();
    let mut rename = |v: LVar, seg: &mut Func| -> LVar {
        *map.entry(v).or_insert_with(|| {
            let (name, ty) = f.vars[v.0 as usize].clone();
            seg.fresh(&name, ty)
        })
    };
    let lo = seg.fresh("lo", MTy::I64);
    let hi = seg.fresh("hi", MTy::I64);
    seg.params = vec![lo, hi];
    let mut args = Vec::new();
    for &c in &plan.captures {
        let p = rename(c, &mut seg);
        seg.params.push(p);
        args.push(Operand::Var(c));
    }
    let mut accumulators = Vec::new();
    for &(v, count, (elem, op)) in &plan.accumulators {
        let word = 2 + plan.captures.iter().position(|&c| c == v).expect("an accumulator's buffer is an argument");
        let n = seg.fresh("count", MTy::I64);
        seg.params.push(n);
        args.push(count);
        accumulators.push(rt::Accumulator { word, count_word: seg.params.len() - 1, elem, op });
    }
    seg.param_leaves = seg.params.iter().map(|&p| Leaf { elem: seg.ty(p), rank: 0 }).collect();
    let mut reductions = Vec::new();
    for &(acc, op, elem) in &plan.reductions {
        let word = 2 + plan.captures.iter().position(|&c| c == acc).expect("an accumulator is an argument");
        reductions.push(rt::Reduction { word, op, elem });
    }
    let scans = (plan.scans.iter())
        .map(|&(acc, b)| rt::Scan {
            reduction: plan.reductions.iter().position(|r| r.0 == acc).expect("a scan's reduction"),
            word: 2 + plan.captures.iter().position(|&c| c == b).expect("a scanned buffer is an argument"),
        })
        .collect();
    // The body, renamed into the segment's variables.
    let mut all = BTreeSet::new();
    for_each_inst(&body, &mut |i| {
        i.for_each_use(|v| {
            all.insert(v);
        });
        all.extend(i.defs());
    });
    all.insert(index);
    for &(v, ref rhs) in &plan.private {
        all.insert(v);
        all.extend(rhs.operands().into_iter().filter_map(Operand::var));
    }
    for v in all {
        rename(v, &mut seg);
    }
    let sub = |o: Operand| match o {
        Operand::Var(v) => Operand::Var(map[&v]),
        c => c,
    };
    for (v, rhs) in &plan.private {
        let mut rhs = rhs.clone();
        for o in rhs.operands_mut() {
            *o = sub(*o);
        }
        seg.body.push(Inst::Let(map[v], rhs));
    }
    let mut body = body;
    // `all` holds every variable of the body: the renaming is complete.
    super::rename_block(&mut body, &map);
    let index = map[&index];
    seg.body.push(Inst::For { index, start: Operand::Var(lo), bound: Operand::Var(hi), body, lanes, parallel: false });
    seg.results =
        plan.reductions.iter().map(|r| r.0).chain(plan.firsts.iter().copied()).map(|v| Operand::Var(map[&v])).collect();
    seg.result_leaves = seg.results.iter().map(|&o| Leaf { elem: seg.operand_type(o), rank: 0 }).collect();
    let dims: HashSet<LVar> = f.dims.iter().copied().collect();
    seg.dims = map.iter().filter(|(v, _)| dims.contains(v)).map(|(_, &s)| s).collect();
    seg.dims.sort();
    let chunk = (CHUNK_WORK / plan.cost).max(1);
    let observed = rt::Observed::new(plan.cost.saturating_mul(PS_PER_UNIT) as u64);
    let words = seg.params.len();
    let firsts = plan.firsts.iter().map(|v| 2 + plan.captures.iter().position(|c| c == v).expect("captured")).collect();
    let new =
        Segment { func: seg, plan: rt::Segment { code: 0, words, chunk, reductions, scans, accumulators, firsts, observed } };
    // A loop outlined before with the same code is that segment again (Note
    // [One site per error] in lower.rs): compiled once, called from both.
    let segment = match segments.iter().position(|old| old.plan == new.plan && same_code(&old.func, &new.func)) {
        Some(k) => k,
        None => {
            segments.push(new);
            segments.len() - 1
        }
    };
    Inst::Parallel {
        segment: segment as u32,
        inline,
        start,
        bound,
        args,
        results: plan.reductions.iter().map(|r| r.0).chain(plan.firsts.iter().copied()).collect(),
    }
}

/// Whether two functions are the same but for their names.
fn same_code(a: &Func, b: &Func) -> bool {
    let Func { name: _, vars, params, param_leaves, body, results, result_leaves, sites, dims, loop_facts } = a;
    (vars, params, param_leaves, results, result_leaves, dims, loop_facts)
        == (&b.vars, &b.params, &b.param_leaves, &b.results, &b.result_leaves, &b.dims, &b.loop_facts)
        && *sites == b.sites
        && *body == b.body
}


#[cfg(test)]
mod tests {
    use super::*;

    /// `acc = 0.0; out = alloc f64 n; for j < n { x = xs[j]; t = acc + x;
    /// out[j] = t; …more…; acc = t }`, `more` written by `more(f, out, j, t)`.
    fn scan(more: impl FnOnce(&mut Func, LVar, LVar, LVar) -> Vec<Inst>) -> Program {
        let mut f = Func::empty("f");
        f.sites.push(crate::loops::Site {
            code: crate::diagnostic::Code::E0207,
            span: crate::diagnostic::Span::new(crate::diagnostic::FileId(0), 0, 3),
            message: crate::loops::Message::OutOfMemory,
        });
        let [xs, n, acc, out, j, x, t] = ["xs", "n", "acc", "out", "j", "x", "t"].map(|name| {
            let ty = if matches!(name, "acc" | "x" | "t") { MTy::F64 } else { MTy::I64 };
            f.fresh(name, ty)
        });
        f.params = vec![xs, n];
        f.param_leaves = vec![Leaf { elem: MTy::F64, rank: 1 }];
        f.dims = vec![n];
        let (var, f64) = (Operand::Var, MTy::F64);
        let mut body = vec![
            Inst::Let(x, Rhs::Load { elem: f64, base: var(xs), index: var(j) }),
            Inst::Let(t, Rhs::Binary(BinOp::Add, var(acc), var(x))),
            Inst::Store { elem: f64, base: var(out), index: var(j), value: var(t) },
        ];
        body.extend(more(&mut f, out, j, t));
        body.push(Inst::Let(acc, Rhs::Use(var(t))));
        f.body = vec![
            Inst::Let(acc, Rhs::Use(Operand::Const(crate::loops::Const::F64(0.0)))),
            Inst::Let(out, Rhs::Alloc { elem: f64, count: var(n), site: 0, hoisted: false }),
            // Marked, as lowering marks a parallel statement's loop.
            Inst::For { index: j, start: Operand::i64(0), bound: var(n), body, lanes: 1, parallel: true },
        ];
        f.results = vec![var(out), var(n)];
        f.result_leaves = vec![Leaf { elem: MTy::F64, rank: 1 }];
        let mut program = Program { funcs: vec![f], segments: Vec::new() };
        run(&mut program);
        program
    }

    #[test]
    fn a_scan_is_a_segment_with_its_buffer() {
        let program = scan(|_, _, _, _| Vec::new());
        let [segment] = &program.segments[..] else { panic!("one segment: {:?}", program.segments) };
        assert_eq!(segment.plan.scans.len(), 1);
        let scan = segment.plan.scans[0];
        assert_eq!(segment.plan.reductions[scan.reduction].op, ReduceOp::Add);
    }

    #[test]
    fn a_scan_whose_buffer_is_read_again_stays_sequential() {
        // `y = out[j]` would read the chunk's own scan, before the earlier
        // chunks' total is combined in.
        let program = scan(|f, out, j, _| {
            let y = f.fresh("y", MTy::F64);
            vec![Inst::Let(y, Rhs::Load { elem: MTy::F64, base: Operand::Var(out), index: Operand::Var(j) })]
        });
        assert!(program.segments.is_empty(), "{:?}", program.segments);
    }

    #[test]
    fn a_scan_whose_buffer_is_written_again_stays_sequential() {
        let program = scan(|_, out, j, _| {
            let one = Operand::Const(crate::loops::Const::F64(1.0));
            vec![Inst::Store { elem: MTy::F64, base: Operand::Var(out), index: Operand::Var(j), value: one }]
        });
        assert!(program.segments.is_empty(), "{:?}", program.segments);
    }
}
