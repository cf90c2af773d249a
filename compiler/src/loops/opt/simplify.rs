//! Local clean-ups of the loop IR, to a fixpoint: copy propagation, constant
//! folding (with the interpreter's semantics), branches on constants, dead
//! assignments (by liveness, so loop variables that only feed themselves go
//! too), stores overwritten before anything reads them, empty loops and
//! releases of loops that no longer allocate.
//!
//! Input and output: a verified [`Func`]. Nothing here moves an instruction
//! across another, so the order of failures is untouched; removed
//! instructions are pure (an unused allocation is an array never built).

use super::edges::Edges;
use crate::hash::HashMap;
use crate::ir::Const;
use crate::loops::{for_each_inst, Func, Inst, LVar, Operand, Rhs};

/// Rounds at most (each round is linear in the function's size).
const ROUNDS: usize = 10;

pub fn run(f: &mut Func) {
    for _ in 0..ROUNDS {
        // One count serves both: the copies `propagate` removes are of
        // variables no longer read, and it changes no other assignment
        // count, which is all `fold_block` asks about.
        let counts = Counts::of(f);
        let mut changed = propagate(f, &counts);
        changed |= fold_block(&mut f.body, &counts, &mut HashMap::default());
        changed |= dead(f);
        changed |= overwritten_stores(&mut f.body);
        if !changed {
            break;
        }
    }
}

/// How often each variable is assigned (parameters once) and read.
pub struct Counts {
    pub defs: Vec<u32>,
    pub uses: Vec<u32>,
}

impl Counts {
    pub fn of(f: &Func) -> Counts {
        let mut c = Counts { defs: vec![0; f.vars.len()], uses: vec![0; f.vars.len()] };
        for p in &f.params {
            c.defs[p.0 as usize] += 1;
        }
        for_each_inst(&f.body, &mut |i| {
            i.for_each_def(|v| c.defs[v.0 as usize] += 1);
            i.for_each_use(|v| {
                c.uses[v.0 as usize] += 1;
            });
        });
        for v in f.results.iter().filter_map(|o| o.var()) {
            c.uses[v.0 as usize] += 1;
        }
        c
    }

    /// Assigned exactly once: its one definition dominates every read (the
    /// lowering assigns every variable before reading it), so it names one
    /// value wherever it is read. (A variable made after counting: never.)
    pub fn single(&self, v: LVar) -> bool {
        self.defs(v) == 1
    }

    pub fn defs(&self, v: LVar) -> u32 {
        self.defs.get(v.0 as usize).copied().unwrap_or(0)
    }

    pub fn uses(&self, v: LVar) -> u32 {
        self.uses.get(v.0 as usize).copied().unwrap_or(0)
    }
}

/// What [`propagate`] knows of the assignments to a variable.
#[derive(Clone)]
enum Sources {
    Unassigned,
    /// Something other than a copy (or a parameter).
    Other,
    /// Only copies, of these operands.
    Copies(Vec<Operand>),
}

/// Replaces a variable whose every assignment copies the same operand — a
/// constant, or a variable assigned once — by that operand; and the members
/// of a group of variables assigned only copies of each other and of one
/// such operand (a loop-carried dimension that never changes: `d = n`
/// before the loop, `d2 = d` and `d = d2` in it) by that operand.
fn propagate(f: &mut Func, counts: &Counts) -> bool {
    // The operands each variable is assigned, indexed by variable.
    let mut sources: Vec<Sources> = vec![Sources::Unassigned; f.vars.len()];
    for_each_inst(&f.body, &mut |i| match i {
        Inst::Let(v, Rhs::Use(o)) => {
            let s = &mut sources[v.0 as usize];
            if let Sources::Unassigned = s {
                *s = Sources::Copies(Vec::new());
            }
            if let Sources::Copies(list) = s {
                if *o != Operand::Var(*v) && !list.contains(o) {
                    list.push(*o);
                }
            }
        }
        i => i.for_each_def(|v| sources[v.0 as usize] = Sources::Other),
    });
    for p in &f.params {
        sources[p.0 as usize] = Sources::Other;
    }
    let copies = |w: LVar| match &sources[w.0 as usize] {
        Sources::Copies(list) => Some(list),
        _ => None,
    };
    let fixed = |o: &Operand| match o {
        Operand::Const(_) => true,
        Operand::Var(w) => counts.single(*w) && copies(*w).is_none(),
    };
    // Groups of copy-only variables, closed under copying: every member's
    // sources are members or one common fixed operand.
    let mut subst: HashMap<LVar, Operand> = HashMap::default();
    let vars = (0..sources.len() as u32).map(LVar).filter(|&v| copies(v).is_some());
    for v in vars {
        if subst.contains_key(&v) {
            continue;
        }
        let mut group = vec![v];
        let mut outside: Vec<Operand> = Vec::new();
        let mut ok = true;
        let mut k = 0;
        while k < group.len() && ok && group.len() <= 64 {
            let Some(list) = copies(group[k]) else {
                ok = false;
                break;
            };
            for o in list {
                match o {
                    Operand::Var(w) if copies(*w).is_some() => {
                        if !group.contains(w) {
                            group.push(*w);
                        }
                    }
                    o if fixed(o) => {
                        if !outside.contains(o) {
                            outside.push(*o);
                        }
                    }
                    _ => ok = false,
                }
            }
            k += 1;
        }
        if ok && k == group.len() && outside.len() == 1 {
            for g in group {
                subst.insert(g, outside[0]);
            }
        }
    }
    if subst.is_empty() {
        return false;
    }
    // Resolve chains; a cycle (v = w, w = v) cannot arise from assignments
    // that each copy a variable assigned once, but stop anyway.
    let keys: Vec<LVar> = subst.keys().copied().collect();
    for k in keys {
        let mut o = subst[&k];
        for _ in 0..64 {
            match o {
                Operand::Var(w) if w != k && subst.contains_key(&w) => o = subst[&w],
                _ => break,
            }
        }
        subst.insert(k, o);
    }
    remove_copies(&mut f.body, &subst);
    substitute(&mut f.body, &subst);
    for r in &mut f.results {
        sub(r, &subst);
    }
    true
}

fn remove_copies(insts: &mut Vec<Inst>, subst: &HashMap<LVar, Operand>) {
    insts.retain(|i| !matches!(i, Inst::Let(v, Rhs::Use(_)) if subst.contains_key(v)));
    for i in insts.iter_mut() {
        for b in i.blocks_mut() {
            remove_copies(b, subst);
        }
    }
}

fn sub(o: &mut Operand, subst: &HashMap<LVar, Operand>) {
    if let Operand::Var(v) = o {
        if let Some(r) = subst.get(v) {
            *o = *r;
        }
    }
}

/// Replaces every read of a key of `subst` in `insts` (nested blocks too).
pub fn substitute(insts: &mut [Inst], subst: &HashMap<LVar, Operand>) {
    for i in insts {
        for o in i.operands_mut() {
            sub(o, subst);
        }
        for b in i.blocks_mut() {
            substitute(b, subst);
        }
    }
}

/// Folds right-hand sides, inlines branches on constants and drops loops
/// that run no iteration. A variable assigned once that folds to a constant
/// is replaced by it in what follows (`constants`), so a chain of foldings
/// takes one walk instead of one round of `run` per link (its definition
/// dominates every read: [`Counts::single`]).
fn fold_block(insts: &mut Vec<Inst>, counts: &Counts, constants: &mut HashMap<LVar, Operand>) -> bool {
    let mut changed = false;
    let mut goes = false;
    for i in insts.iter_mut() {
        if !constants.is_empty() {
            for o in i.operands_mut() {
                if let Some(c) = o.var().and_then(|v| constants.get(&v)) {
                    *o = *c;
                    changed = true;
                }
            }
        }
        for b in i.blocks_mut() {
            changed |= fold_block(b, counts, constants);
        }
        if let Inst::Let(v, rhs) = i {
            if let Some(o) = rhs.fold() {
                if *rhs != Rhs::Use(o) {
                    *rhs = Rhs::Use(o);
                    changed = true;
                }
                if matches!(o, Operand::Const(_)) && counts.single(*v) {
                    constants.insert(*v, o);
                }
            }
        }
        goes |= goes_away(i);
    }
    // Most blocks keep every instruction: rebuild only those that lose one.
    if goes {
        for i in std::mem::take(insts) {
            match i {
                Inst::If { cond: Operand::Const(Const::Bool(c)), mut then, mut els } => {
                    insts.append(if c { &mut then } else { &mut els });
                }
                i if goes_away(&i) => {}
                i => insts.push(i),
            }
        }
        changed = true;
    }
    changed
}

/// A branch on a constant (replaced by the branch taken) or a loop that runs
/// no iteration (`for i in n..n`, or constant bounds with nothing between).
fn goes_away(i: &Inst) -> bool {
    match i {
        Inst::If { cond: Operand::Const(Const::Bool(_)), .. } => true,
        Inst::For { start: Operand::Const(Const::I64(s)), bound: Operand::Const(Const::I64(n)), .. } => n <= s,
        Inst::For { start, bound, .. } => start == bound,
        _ => false,
    }
}

/// Removes assignments to variables that nothing live reads (Note [Dead
/// loop variables]), branches and loops with nothing left in them, and the
/// releases of loop bodies that no longer allocate.
fn dead(f: &mut Func) -> bool {
    let live = live_vars(f);
    dead_block(&mut f.body, &live)
}

/*
Note [Dead loop variables]
~~~~~~~~~~~~~~~~~~~~~~~~~~
Counting reads is not enough to find dead code in loops: a loop-carried
variable that only feeds its own next value,

    adj = 0.0
    for j < m { t = a * adj; u = t + b; adj = u }

is read (by `t`) on every iteration, yet nothing after the loop, no store,
no test and no bound depends on it. Reverse mode leaves such chains whenever
it accumulates the adjoint of a value whose own inputs are inactive (the
powers of a constant in `llsq`'s gradient): the chain costs a multiply and an
add of latency per iteration, and it was a third of that gradient's time.

So `dead` marks instead of counting. The roots are what has an effect: the
function's results, every operand of a store, copy, failure and release, and
the conditions and bounds of branches and loops. A variable read by a live
assignment is live, for every assignment to it (liveness is per variable, not
per program point: a variable assigned in several places is live in all of
them, which is safe). Assignments to variables that are not live go. Every
right-hand side is pure (checks are separate instructions), so removing one
changes no result and no failure.
*/

/// The variables some effect depends on (Note [Dead loop variables]).
fn live_vars(f: &Func) -> Vec<bool> {
    let mut live = vec![false; f.vars.len()];
    let mut reads = Edges::new(f.vars.len());
    let mut work: Vec<LVar> = f.results.iter().filter_map(|o| o.var()).collect();
    for_each_inst(&f.body, &mut |i| match i {
        Inst::Let(v, _) => i.for_each_use(|w| reads.add(*v, w)),
        _ => i.for_each_use(|w| work.push(w)),
    });
    while let Some(v) = work.pop() {
        let Some(slot) = live.get_mut(v.0 as usize) else { continue };
        if !*slot {
            *slot = true;
            work.extend(reads.from(v));
        }
    }
    live
}

fn dead_block(insts: &mut Vec<Inst>, live: &[bool]) -> bool {
    let before = insts.len();
    let mut changed = false;
    for i in insts.iter_mut() {
        for b in i.blocks_mut() {
            changed |= dead_block(b, live);
        }
        if let Inst::For { body, .. } | Inst::While { body, .. } = i {
            if matches!(body.last(), Some(Inst::Release { .. })) && !allocates(body) {
                body.pop();
                changed = true;
            }
        }
    }
    insts.retain(|i| match i {
        Inst::Let(v, _) => live.get(v.0 as usize).copied().unwrap_or(true),
        Inst::For { body, .. } => !body.is_empty(),
        Inst::If { then, els, .. } => !(then.is_empty() && els.is_empty()),
        _ => true,
    });
    changed || insts.len() != before
}

/// Does any instruction of `insts` (nested blocks included) allocate?
pub fn allocates(insts: &[Inst]) -> bool {
    let mut found = false;
    for_each_inst(insts, &mut |i| found |= matches!(i, Inst::Let(_, Rhs::Alloc { .. })));
    found
}

/// Removes a store that a later store to the same element overwrites before
/// anything could read it: only assignments other than loads lie between
/// them, and none reassigns the base or the index. (Buffers may alias through
/// offsets, so any load in between keeps the first store.) Reverse mode's
/// tapes are filled this way when a `replicate` fuses with the loop that
/// then writes every element.
fn overwritten_stores(insts: &mut Vec<Inst>) -> bool {
    let mut changed = false;
    for i in insts.iter_mut() {
        for b in i.blocks_mut() {
            changed |= overwritten_stores(b);
        }
    }
    let mut dead = vec![false; insts.len()];
    for (k, first) in insts.iter().enumerate() {
        let Inst::Store { elem, base, index, .. } = first else { continue };
        let reassigns = |v: &LVar| base.var() == Some(*v) || index.var() == Some(*v);
        for later in &insts[k + 1..] {
            match later {
                Inst::Store { elem: e, base: b, index: ix, .. } if e == elem && b == base && ix == index => {
                    dead[k] = true;
                    break;
                }
                Inst::Let(v, rhs) if !matches!(rhs, Rhs::Load { .. }) && !reassigns(v) => {}
                _ => break,
            }
        }
    }
    if dead.iter().any(|d| *d) {
        let mut k = 0;
        insts.retain(|_| {
            k += 1;
            !dead[k - 1]
        });
        changed = true;
    }
    changed
}
