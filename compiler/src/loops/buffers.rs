//! Memory planning of loops, the `buffers` stage: which allocations of a
//! loop body move before the loop, and which loops free each iteration's
//! temporaries (Note [Hoisted buffers], Note [Releasing loop iterations]).
//!
//! Input: a lowered [`Func`], whose `loop_facts` say, for each loop lowering
//! emitted, what survives an iteration (the loop state's pointers, a lazily
//! allocated result) and which allocation sizes are known non-negative
//! where the loop starts — what the array IR told lowering (Note [What
//! lowering tells memory planning]). Output: the same function with those
//! allocations hoisted (`Alloc { hoisted: true }`, a null test left in
//! their place) and a `Mark` before, a `Release` at the end of the body of
//! each loop that still allocates; `loop_facts` consumed.
//!
//! Runs right after lowering, on both native back ends, so that the loop
//! optimiser and the parallel analysis see hoisted scratch buffers (the
//! parallel stage gives each chunk its own). Invariants: values and errors
//! are unchanged — a hoisted allocation that cannot be had fails, through
//! its null test, where and when the original would have; a release never
//! frees a block that a kept pointer reaches.

use super::{allocates, assigned_in, Func, Inst, LVar, LoopFacts, MTy, Operand, Rhs};
use crate::hash::{HashMap, HashSet};
use crate::ir::Const;

// Note [What lowering tells memory planning]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Two facts about a loop are plain on the array IR and hard to recover from
// buffers: which pointers carry the loop's state from one iteration to the
// next (a loop's parameters, a map's result allocated in its first
// iteration), and which sizes are non-negative where the loop starts (a
// dimension, or a size a check before the loop proved). Lowering records
// both for every loop it emits through `emit_loop` or as a `while`
// (`LoopFacts`, in the order it emits the loops: inner loops before the
// loop around them, siblings in program order — the post-order this pass
// walks), and this pass decides with them. A `for` loop's facts name its
// index, so a loop lowering built without facts (a copy, a transpose) is
// recognised and left alone; facts left over, or missing for a `while`,
// are an internal error.

// Note [Releasing loop iterations]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Buffers come from the call's arena and are all freed when the call returns.
// A loop whose body allocates would otherwise hold every iteration's
// temporaries until then. Such a loop takes a `Mark` before its first
// iteration and ends every iteration with a `Release` that frees what the
// iteration allocated, keeping the blocks that hold the loop state (or a
// `map`'s lazily allocated result). Loops whose bodies allocate nothing —
// the innermost loops of the benchmarks — pay nothing.

// Note [Hoisted buffers]
// ~~~~~~~~~~~~~~~~~~~~~~
// A loop body that builds small arrays (a row of differences, the adjoint of
// a row) would allocate them in every iteration. When the size of such a
// buffer does not change from one iteration to the next and nothing that
// survives the iteration can point into it, one buffer allocated before the
// loop serves every iteration: each iteration writes it fully before reading
// it (lowering never reads a buffer it has not written), so no value leaks
// from one iteration to the next. "Survives" is decided conservatively from
// the pointer assignments in the body: a buffer escapes when a kept pointer
// (loop state, a result allocated on the first iteration) may be computed
// from it. Hoisting applies from the innermost loop outwards, so a buffer can
// leave several loops. Only sizes known to be non-negative are hoisted.
//
// A hoisted allocation runs where the original might not have: before a loop
// that runs zero times, before a branch not taken, before a check that fails
// first. So it may not fail there: it is marked `hoisted` and gives a null
// buffer when the memory cannot be had, and in its original place a null
// test fails with the original site (E0207). Out-of-memory is then reported
// exactly when and where the unhoisted program would report it, and a
// zero-trip loop over a huge per-iteration buffer is no error at all. When
// an outer loop moves the allocation again, the check stays where it was.

/// Plans the loops of `f` (see the module header).
pub fn run(f: &mut Func) -> Result<(), String> {
    let mut facts = std::mem::take(&mut f.loop_facts).into_iter().peekable();
    let mut body = std::mem::take(&mut f.body);
    let planned = plan_block(f, &mut body, &mut facts);
    f.body = body;
    planned?;
    match facts.next() {
        None => Ok(()),
        Some(_) => Err(format!("{}: lowering recorded facts for a loop the function does not have", f.name)),
    }
}

type Facts = std::iter::Peekable<std::vec::IntoIter<LoopFacts>>;

/// Plans the loops of `block` and of the blocks nested in it, inner ones first.
fn plan_block(f: &mut Func, block: &mut Vec<Inst>, facts: &mut Facts) -> Result<(), String> {
    let mut out = Vec::with_capacity(block.len());
    for mut inst in std::mem::take(block) {
        for b in inst.blocks_mut() {
            plan_block(f, b, facts)?;
        }
        let own = match &inst {
            Inst::For { index, .. } => facts.next_if(|fs| fs.index == Some(*index)),
            Inst::While { .. } => Some(facts.next().filter(|fs| fs.index.is_none()).ok_or_else(|| {
                format!("{}: lowering recorded no facts for a while loop", f.name)
            })?),
            _ => None,
        };
        if let Some(own) = own {
            plan_loop(f, &mut inst, own, &mut out);
        }
        out.push(inst);
    }
    *block = out;
    Ok(())
}

/// Hoists the loop's scratch allocations into `out`, before it, and makes
/// it release each iteration's temporaries when its body still allocates.
fn plan_loop(f: &mut Func, inst: &mut Inst, facts: LoopFacts, out: &mut Vec<Inst>) {
    let (body, index) = match inst {
        Inst::For { body, index, .. } => (body, Some(*index)),
        Inst::While { body, .. } => (body, None),
        _ => unreachable!("plan_loop is called on loops"),
    };
    out.extend(hoist_temporaries(f, body, &facts, index));
    if facts.allocates && allocates(body) {
        let mark = f.fresh("mark", MTy::I64);
        out.push(Inst::Let(mark, Rhs::Mark));
        body.push(Inst::Release { mark: mark.into(), keep: facts.keep });
    }
}

/// Takes out of a loop `body` the allocations whose size is the same in
/// every iteration and whose buffer does not outlive the iteration (no
/// kept pointer — the loop state, a lazily allocated result — can point
/// into it): one buffer, allocated before the loop, serves every
/// iteration. Returns the hoisted instructions. See Note [Hoisted buffers].
fn hoist_temporaries(f: &mut Func, body: &mut Vec<Inst>, facts: &LoopFacts, index: Option<LVar>) -> Vec<Inst> {
    let mut assigned = assigned_in(body);
    assigned.extend(index);
    // `dst ↦ sources`: the buffers a pointer variable may point into.
    let mut sources: HashMap<LVar, Vec<LVar>> = HashMap::default();
    collect_sources(body, &mut sources);
    let mut escaping = HashSet::default();
    let mut work: Vec<LVar> = facts.keep.iter().filter_map(|k| k.var()).collect();
    while let Some(v) = work.pop() {
        if escaping.insert(v) {
            work.extend(sources.get(&v).into_iter().flatten().copied());
        }
    }
    let invariant = |count: &Operand| match count {
        Operand::Const(Const::I64(n)) => *n >= 0,
        Operand::Var(v) => !assigned.contains(v) && facts.nonneg.contains(v),
        Operand::Const(_) => false,
    };
    let mut hoisted = Vec::new();
    take_allocs(
        body,
        &mut |i| matches!(i, Inst::Let(p, Rhs::Alloc { count, .. }) if invariant(count) && !escaping.contains(p)),
        &mut |alloc| hoisted_alloc_check(f, alloc),
        &mut hoisted,
    );
    for i in &mut hoisted {
        if let Inst::Let(_, Rhs::Alloc { hoisted, .. }) = i {
            *hoisted = true;
        }
    }
    hoisted
}

/// What stays in place of an allocation moved out of a loop: a check
/// that it succeeded, failing as the allocation would have failed here
/// (none when an inner loop already moved it and left its check).
fn hoisted_alloc_check(f: &mut Func, alloc: &Inst) -> Vec<Inst> {
    let Inst::Let(ptr, Rhs::Alloc { count, site, hoisted: false, .. }) = alloc else { return Vec::new() };
    let ok = f.fresh("allocated", MTy::Bool);
    vec![
        Inst::Let(ok, Rhs::null_test(*ptr)),
        Inst::If { cond: ok.into(), then: Vec::new(), els: vec![Inst::Fail { site: *site, args: vec![*count] }] },
    ]
}

/// Records, for each variable assigned a pointer expression in `insts`, the
/// variables it is computed from (`Use`, `Offset`, `Select`).
fn collect_sources(insts: &[Inst], out: &mut HashMap<LVar, Vec<LVar>>) {
    for i in insts {
        match i {
            Inst::Let(dst, rhs) => {
                let from: Vec<LVar> = match rhs {
                    Rhs::Use(o) | Rhs::Offset { base: o, .. } => o.var().into_iter().collect(),
                    Rhs::Select(_, a, b) => a.var().into_iter().chain(b.var()).collect(),
                    _ => Vec::new(),
                };
                out.entry(*dst).or_default().extend(from);
            }
            i => i.blocks().for_each(|b| collect_sources(b, out)),
        }
    }
}

/// Removes from `insts` (and the branches of its `if`s, not nested loops) the
/// instructions `pick` selects, appending them to `out` in order and leaving
/// `leave` of each in its place.
fn take_allocs(
    insts: &mut Vec<Inst>,
    pick: &mut dyn FnMut(&Inst) -> bool,
    leave: &mut dyn FnMut(&Inst) -> Vec<Inst>,
    out: &mut Vec<Inst>,
) {
    let mut kept = Vec::with_capacity(insts.len());
    for mut i in insts.drain(..) {
        if pick(&i) {
            kept.extend(leave(&i));
            out.push(i);
            continue;
        }
        if let Inst::If { then, els, .. } = &mut i {
            take_allocs(then, pick, leave, out);
            take_allocs(els, pick, leave, out);
        }
        kept.push(i);
    }
    *insts = kept;
}

/// The variable sizes of the allocations in `insts`, nested blocks
/// included: those lowering says are non-negative where a loop starts
/// (`LoopFacts::nonneg`).
pub fn alloc_counts(insts: &[Inst], out: &mut Vec<LVar>) {
    for i in insts {
        if let Inst::Let(_, Rhs::Alloc { count: Operand::Var(v), .. }) = i {
            out.push(*v);
        }
        i.blocks().for_each(|b| alloc_counts(b, out));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Facts that name no loop of the function, and a `while` without
    /// facts, are internal errors, not silently unplanned loops.
    #[test]
    fn facts_must_match_the_loops() {
        let mut f = Func::empty("f");
        let i = f.fresh("i", MTy::I64);
        f.loop_facts.push(LoopFacts { index: Some(i), keep: vec![], nonneg: HashSet::default(), allocates: false });
        assert!(run(&mut f).unwrap_err().contains("does not have"));
        let mut f = Func::empty("g");
        f.body.push(Inst::While { cond: vec![], test: Operand::Const(Const::Bool(false)), body: vec![] });
        assert!(run(&mut f).unwrap_err().contains("no facts for a while loop"));
    }
}
