//! Loop fusion: two `for` loops over the same range, one after the other,
//! become one loop whose body runs the first body and then the second, when
//! that computes the same values (Note [Loop fusion]). Inside a fused body a
//! load of the element just stored is the stored value; a buffer that is
//! then only written is not needed at all.
//!
//! Input and output: a verified [`Func`]. Instructions between the two
//! loops that do not depend on the first (a fresh buffer, an accumulator's
//! initial value, a check) move above it.

use super::alias::{Apart, PointsTo};
use super::simplify::Counts;
use crate::hash::{HashMap, HashSet};
use crate::loops::{assigned_in, for_each_inst, Func, Inst, LVar, Operand, Rhs};

pub fn run(f: &mut Func) {
    let fresh = private_buffers(f);
    let points_to = PointsTo::of(f);
    let mut body = std::mem::take(&mut f.body);
    fuse_block(f, &mut body, &fresh, &points_to);
    forward_stores(&mut body, &fresh);
    let mut renamed = Vec::new();
    reuse_block(&mut body, &fresh, &mut renamed);
    f.body = body;
    // A buffer that became another may be a result.
    for (from, to) in renamed {
        for r in &mut f.results {
            if *r == Operand::Var(from) {
                *r = Operand::Var(to);
            }
        }
    }
    drop_unread_buffers(f, &fresh);
}

/// In each block: a loop that reads a private buffer `a` only at its index,
/// writes a private buffer `b` of the same size and type only at its index,
/// and is the last to touch `a` — writes into `a` instead, when every read of
/// `a` in its body comes before every write of `b`. `b` is then not needed
/// (Note [Buffers reused in place]).
fn reuse_block(insts: &mut Vec<Inst>, fresh: &HashSet<LVar>, renamed: &mut Vec<(LVar, LVar)>) {
    for i in insts.iter_mut() {
        for b in i.blocks_mut() {
            reuse_block(b, fresh, renamed);
        }
    }
    // (A reuse renames buffers of this block only: nested blocks' own
    // candidates stay as they were.)
    while let Some((k, a, b)) = reuse_candidate(insts, fresh) {
        rename_buffer(&mut insts[k..], b, a);
        insts.retain(|i| !matches!(i, Inst::Let(v, Rhs::Alloc { .. }) if *v == b));
        renamed.push((b, a));
    }
}

/// The first loop of `insts` (at `k`) that may write into a buffer `a` it
/// reads instead of a buffer `b` it writes: `(k, a, b)`.
fn reuse_candidate(insts: &[Inst], fresh: &HashSet<LVar>) -> Option<(usize, LVar, LVar)> {
    let allocs: HashMap<LVar, (crate::loops::MTy, Operand)> = insts
        .iter()
        .filter_map(|i| match i {
            Inst::Let(v, Rhs::Alloc { elem, count, .. }) if fresh.contains(v) => Some((*v, (*elem, *count))),
            _ => None,
        })
        .collect();
    // Most blocks (loop bodies whose buffers were hoisted) allocate nothing.
    if allocs.is_empty() {
        return None;
    }
    // The last position of `insts` that reads each variable (nested reads
    // count at the position of the instruction that holds them); computed
    // when a loop first has a pair of buffers to consider.
    let mut last_read: Option<HashMap<LVar, usize>> = None;
    let last_reads = |insts: &[Inst]| {
        let mut last: HashMap<LVar, usize> = HashMap::default();
        for (k, i) in insts.iter().enumerate() {
            for_each_inst(std::slice::from_ref(i), &mut |j| {
                j.for_each_use(|v| {
                    last.insert(v, k);
                })
            });
        }
        last
    };
    let sorted = |set: &HashSet<LVar>| {
        let mut v: Vec<LVar> = set.iter().copied().collect();
        v.sort();
        v
    };
    for (k, i) in insts.iter().enumerate() {
        let Inst::For { index, body, .. } = i else { continue };
        let e = effects(*index, body);
        let (loads, stores) = (sorted(&e.loads), sorted(&e.stores));
        let pair = loads.iter().copied().filter(|a| !e.stores.contains(a)).find_map(|a| {
            let (elem, count) = allocs.get(&a)?;
            let b = stores.iter().copied().find(|b| {
                *b != a && allocs.get(b) == Some(&(*elem, *count)) && e.at_index_only.get(b) == Some(&true)
            })?;
            let ok = e.at_index_only.get(&a) == Some(&true)
                && last_read.get_or_insert_with(|| last_reads(insts)).get(&a).is_none_or(|&last| last <= k)
                && reads_before_writes(body, a, b)
                && allocated_before(insts, k, b);
            ok.then_some((a, b))
        });
        if let Some((a, b)) = pair {
            return Some((k, a, b));
        }
    }
    None
}

/// In `body` (its top level; nothing nested may touch them), every load of
/// `a` comes before the first store to `b`.
fn reads_before_writes(body: &[Inst], a: LVar, b: LVar) -> bool {
    let mut stored = false;
    for i in body {
        let touches = |v: LVar| {
            let mut hit = false;
            for blk in i.blocks() {
                for_each_inst(blk, &mut |j| j.for_each_use(|w| hit |= w == v));
            }
            hit
        };
        if touches(a) || touches(b) {
            return false;
        }
        match i {
            Inst::Let(_, Rhs::Load { base: Operand::Var(x), .. }) if *x == a && stored => return false,
            Inst::Store { base: Operand::Var(x), .. } if *x == b => stored = true,
            _ => {}
        }
    }
    true
}

/// `b`'s allocation stands in `insts` before position `k`, and nothing else
/// before `k` touches `b`.
fn allocated_before(insts: &[Inst], k: usize, b: LVar) -> bool {
    let mut touched = false;
    for_each_inst(&insts[..k], &mut |i| i.for_each_use(|v| touched |= v == b));
    !touched && insts[..k].iter().any(|i| matches!(i, Inst::Let(v, Rhs::Alloc { .. }) if *v == b))
}

fn rename_buffer(insts: &mut [Inst], from: LVar, to: LVar) {
    for i in insts {
        for o in i.operands_mut() {
            if *o == Operand::Var(from) {
                *o = Operand::Var(to);
            }
        }
        for b in i.blocks_mut() {
            rename_buffer(b, from, to);
        }
    }
}

/// The type of an operand of `f`, for `Rhs::is_arithmetic`.
fn types(f: &Func) -> impl Fn(Operand) -> crate::loops::MTy + '_ {
    move |o| f.operand_type(o)
}

/// Buffers that only their own variable reaches: a fresh allocation whose
/// pointer is never copied, offset or stored, only loaded from, stored to
/// (as a base), released or returned. Accesses through any other pointer
/// cannot touch them.
pub fn private_buffers(f: &Func) -> HashSet<LVar> {
    let counts = Counts::of(f);
    let mut fresh: HashSet<LVar> = HashSet::default();
    for_each_inst(&f.body, &mut |i| {
        if let Inst::Let(v, Rhs::Alloc { .. }) = i {
            if counts.single(*v) {
                fresh.insert(*v);
            }
        }
    });
    // A pointer escapes when it is used other than as the base of a load or
    // store, as a kept pointer of a release, or in the null test of a
    // hoisted allocation (Note [Hoisted buffers] in `buffers.rs`).
    let mut escapes: HashSet<LVar> = HashSet::default();
    for_each_inst(&f.body, &mut |i| {
        let others: Vec<Operand> = match i {
            Inst::Let(_, Rhs::Load { index, .. }) => vec![*index],
            Inst::Store { index, value, .. } => vec![*index, *value],
            Inst::Release { mark, .. } => vec![*mark],
            Inst::Let(_, rhs) if rhs.tested_for_null().is_some() => Vec::new(),
            i => i.operands(),
        };
        escapes.extend(others.into_iter().filter_map(Operand::var));
    });
    fresh.retain(|v| !escapes.contains(v));
    fresh
}

/// How a loop body touches memory and variables.
struct Effects {
    assigned: HashSet<LVar>,
    reads: HashSet<LVar>,
    /// Buffers stored to, each with whether every store and load of it in
    /// the body is at exactly the loop index.
    stores: HashSet<LVar>,
    loads: HashSet<LVar>,
    at_index_only: HashMap<LVar, bool>,
    /// Can the body fail (a check, an allocation, a `while` limit)?
    fails: bool,
    allocates: bool,
}

fn effects(index: LVar, body: &[Inst]) -> Effects {
    let mut e = Effects {
        assigned: assigned_in(body),
        reads: HashSet::default(),
        stores: HashSet::default(),
        loads: HashSet::default(),
        at_index_only: HashMap::default(),
        fails: false,
        allocates: false,
    };
    let note = |e: &mut Effects, base: Operand, idx: Operand| {
        if let Operand::Var(b) = base {
            let ok = idx == Operand::Var(index);
            let entry = e.at_index_only.entry(b).or_insert(true);
            *entry &= ok;
        }
    };
    for_each_inst(body, &mut |i| {
        i.for_each_use(|v| {
            e.reads.insert(v);
        });
        match i {
            Inst::Let(_, Rhs::Load { base, index: idx, .. }) => {
                e.loads.extend(base.var());
                note(&mut e, *base, *idx);
            }
            Inst::Store { base, index: idx, .. } => {
                e.stores.extend(base.var());
                note(&mut e, *base, *idx);
            }
            // Whole-buffer reads and writes.
            Inst::Copy { dst, src, .. } | Inst::Argsort { perm: dst, keys: src, .. } => {
                e.stores.extend(dst.var());
                e.loads.extend(src.var());
                note(&mut e, *dst, Operand::i64(-1));
                note(&mut e, *src, Operand::i64(-1));
            }
            Inst::Fail { .. } | Inst::While { .. } => e.fails = true,
            Inst::Let(_, Rhs::Alloc { .. } | Rhs::Mark) | Inst::Release { .. } => e.allocates = true,
            _ => {}
        }
    });
    e
}

/// Whether `for i { a }; for i { b }` may become `for i { a; b }`; `apart`
/// tells two different pointers that never reach the same element.
fn fusible(a: &Effects, b: &Effects, apart: &dyn Fn(LVar, LVar) -> bool) -> bool {
    if a.allocates || b.allocates || (a.fails && b.fails) {
        return false;
    }
    // No value flows between the bodies through a variable.
    if a.assigned.iter().any(|v| b.reads.contains(v) || b.assigned.contains(v))
        || b.assigned.iter().any(|v| a.reads.contains(v))
    {
        return false;
    }
    // Memory one body writes and the other touches: through the same
    // pointer, only ever at the loop index in both; through another, never
    // the same element.
    let shared = |w: &Effects, o: &Effects| {
        w.stores.iter().all(|p| {
            o.loads.iter().chain(&o.stores).all(|q| {
                if q == p {
                    w.at_index_only.get(p).copied().unwrap_or(true) && o.at_index_only.get(p).copied().unwrap_or(true)
                } else {
                    apart(*p, *q)
                }
            })
        })
    };
    shared(a, b) && shared(b, a)
}

fn fuse_block(f: &Func, insts: &mut Vec<Inst>, fresh: &HashSet<LVar>, points_to: &PointsTo) {
    for i in insts.iter_mut() {
        for b in i.blocks_mut() {
            fuse_block(f, b, fresh, points_to);
        }
    }
    let mut k = 0;
    while k < insts.len() {
        if let Some(next) = fuse_at(f, insts, k, fresh, points_to) {
            k = next;
        } else {
            k += 1;
        }
    }
}

/// Tries to fuse the loop at `k` with the next loop (moving what stands
/// between them above the first). Returns where to continue on success.
fn fuse_at(f: &Func, insts: &mut Vec<Inst>, k: usize, fresh: &HashSet<LVar>, points_to: &PointsTo) -> Option<usize> {
    let Inst::For { index: i1, start: s1, bound: n1, body: b1, .. } = &insts[k] else { return None };
    let first = effects(*i1, b1);
    // Instructions that may move above the first loop, then the second loop.
    let mut m = k + 1;
    let mut moves_failure = false;
    let independent = |o: &Operand| o.var().is_none_or(|x| !first.assigned.contains(&x));
    while m < insts.len() {
        match &insts[m] {
            Inst::Let(v, rhs)
                if !first.reads.contains(v)
                    && !first.assigned.contains(v)
                    && rhs.operands().iter().all(independent)
                    && (matches!(rhs, Rhs::Alloc { .. }) || rhs.is_arithmetic(types(f))) =>
            {
                moves_failure |= matches!(rhs, Rhs::Alloc { hoisted: false, .. });
                m += 1;
            }
            // A check (the null test of a hoisted buffer, a size check).
            Inst::If { cond, then, els }
                if then.is_empty()
                    && independent(cond)
                    && matches!(els.as_slice(), [Inst::Fail { args, .. }] if args.iter().all(independent)) =>
            {
                moves_failure = true;
                m += 1;
            }
            _ => break,
        }
    }
    // An allocation or a check that moves above a loop that can fail would
    // report its failure before the loop's own error.
    if moves_failure && first.fails {
        return None;
    }
    let Some(Inst::For { index: i2, start: s2, bound: n2, body: b2, .. }) = insts.get(m) else { return None };
    if s1 != s2 || n1 != n2 {
        return None;
    }
    let second = effects(*i2, b2);
    // Private buffers reach their memory alone; so does a buffer allocated
    // before the second loop (moved above the first) whose pointer neither
    // body copies (`alias.rs`).
    let by_alias = Apart::new(points_to, &insts[..m], &[b1, b2]);
    let apart = |p: LVar, q: LVar| fresh.contains(&p) || fresh.contains(&q) || by_alias.apart(p.into(), q.into());
    if !fusible(&first, &second, &apart) {
        return None;
    }
    let (i1, i2) = (*i1, *i2);
    // The fused loop is parallel when both were (a loop that carries a
    // value, or a scatter, makes the other's iterations wait too).
    let both_parallel = matches!((&insts[k], &insts[m]), (Inst::For { parallel: true, .. }, Inst::For { parallel: true, .. }));
    let mut second_body = b2.clone();
    rename(&mut second_body, i2, i1);
    let moved: Vec<Inst> = insts.drain(k + 1..m).collect();
    let Inst::For { body, parallel, .. } = &mut insts[k] else { unreachable!() };
    body.extend(second_body);
    *parallel = both_parallel;
    let n_moved = moved.len();
    insts.remove(k + 1);
    for (j, inst) in moved.into_iter().enumerate() {
        insts.insert(k + j, inst);
    }
    // The fused loop now sits at k + n_moved; try to fuse it again.
    Some(k + n_moved)
}

fn rename(insts: &mut [Inst], from: LVar, to: LVar) {
    for i in insts {
        for o in i.operands_mut() {
            if *o == Operand::Var(from) {
                *o = Operand::Var(to);
            }
        }
        for b in i.blocks_mut() {
            rename(b, from, to);
        }
    }
}

/// In each block, a load of a private buffer at the operand a store wrote
/// (with no store to that buffer in between that may be the same element)
/// is the stored value. The branches of an `if` start from what was stored
/// before it; a loop body starts from nothing (it runs many times).
fn forward_stores(insts: &mut [Inst], fresh: &HashSet<LVar>) {
    forward_stores_from(insts, fresh, HashMap::default());
}

/// buffer ↦ (index, value) of the stores that may still be read back.
type Stored = HashMap<LVar, Vec<(Operand, Operand)>>;

fn forward_stores_from(insts: &mut [Inst], fresh: &HashSet<LVar>, mut last: Stored) {
    for i in insts.iter_mut() {
        match i {
            Inst::Store { base: Operand::Var(b), index, value, .. } if fresh.contains(b) => {
                let stores = last.entry(*b).or_default();
                // Another constant index is another element; anything else may alias.
                let distinct = |at: &Operand| matches!((at, &*index), (Operand::Const(x), Operand::Const(y)) if x != y);
                stores.retain(|(at, _)| distinct(at));
                stores.push((*index, *value));
            }
            Inst::Let(v, rhs) => {
                if let Rhs::Load { base: Operand::Var(b), index, .. } = rhs {
                    if let Some(&(_, value)) = last.get(b).and_then(|s| s.iter().find(|(at, _)| at == index)) {
                        *rhs = Rhs::Use(value);
                    }
                }
                // A reassigned index or value no longer names what was stored.
                let v = Operand::Var(*v);
                for stores in last.values_mut() {
                    stores.retain(|(at, value)| *at != v && *value != v);
                }
            }
            // A check writes nothing.
            i if super::checks::is_check(i).is_some() => {}
            Inst::If { then, els, .. } => {
                forward_stores_from(then, fresh, last.clone());
                forward_stores_from(els, fresh, last.clone());
                last.clear();
            }
            Inst::For { .. } | Inst::While { .. } | Inst::Copy { .. } | Inst::Argsort { .. } | Inst::Release { .. } => {
                for b in i.blocks_mut() {
                    forward_stores_from(b, fresh, HashMap::default());
                }
                last.clear();
            }
            _ => {}
        }
    }
}

/// Removes the stores to, and the allocation of, private buffers nothing reads.
fn drop_unread_buffers(f: &mut Func, fresh: &HashSet<LVar>) {
    let mut read: HashSet<LVar> = HashSet::default();
    for_each_inst(&f.body, &mut |i| match i {
        Inst::Let(_, Rhs::Load { base, .. }) => read.extend(base.var()),
        Inst::Copy { src, .. } | Inst::Argsort { keys: src, .. } => read.extend(src.var()),
        Inst::Store { .. } | Inst::Release { .. } => {}
        Inst::Let(_, rhs) if rhs.tested_for_null().is_some() => {}
        i => read.extend(i.operands().into_iter().filter_map(Operand::var).filter(|v| fresh.contains(v))),
    });
    read.extend(f.results.iter().filter_map(|o| o.var()));
    let dead: HashSet<LVar> = fresh.iter().copied().filter(|v| !read.contains(v)).collect();
    if !dead.is_empty() {
        drop_stores(&mut f.body, &dead);
    }
}

fn drop_stores(insts: &mut Vec<Inst>, dead: &HashSet<LVar>) {
    // The null tests of dead buffers, and the checks on them, go too.
    let mut tests: HashSet<LVar> = HashSet::default();
    insts.retain(|i| match i {
        Inst::Store { base: Operand::Var(b), .. } => !dead.contains(b),
        Inst::Let(v, Rhs::Alloc { .. }) => !dead.contains(v),
        Inst::Let(v, rhs) if rhs.tested_for_null().is_some_and(|p| dead.contains(&p)) => {
            tests.insert(*v);
            false
        }
        Inst::If { cond: Operand::Var(c), then, .. } if then.is_empty() && tests.contains(c) => false,
        _ => true,
    });
    for i in insts.iter_mut() {
        if let Inst::Release { keep, .. } = i {
            keep.retain(|k| k.var().is_none_or(|v| !dead.contains(&v)));
        }
        for b in i.blocks_mut() {
            drop_stores(b, dead);
        }
    }
}

// Note [Loop fusion]
// ~~~~~~~~~~~~~~~~~~
// `for i < n { A }; for i < n { B }` computes the same as `for i < n { A; B }`
// when nothing B reads at iteration i is written by A at a later iteration,
// and nothing A reads is written by B: no variable assigned in one body is
// read or assigned in the other (so an accumulator of A, whose final value B
// would need, prevents fusion), and a buffer one body writes and the other
// touches is private (no other pointer reaches it) and touched only at the
// loop index in both. Errors keep their order when at most one of the two
// bodies can fail: if A fails at iteration k, the unfused program never ran
// B, and the fused one ran B's first k iterations, whose effects are buffers
// no one sees after a failure; if B fails at iteration k, both ran A's first
// k + 1 iterations before failing the same way. After fusion, lse's
// gradient computes each exponential, stores it and adds it to the sum in
// one pass, and a buffer that was only ever read back at the index just
// written (the negated softmax summed for the adjoint of the maximum) is no
// longer stored at all.

// Note [Buffers reused in place]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// `p = map (\v -> v / s) e` with `e` dead afterwards lowers to a loop that
// reads `e[j]` and writes a fresh `p[j]`: two buffers where one would do.
// When the loop reads `e` only at its index, writes `p` only at its index,
// reads `e[j]` before writing `p[j]` in each iteration, and nothing after the
// loop reads `e`, writing `p`'s elements into `e` computes the same values:
// element j of `e` is overwritten after its last read. Both buffers must be
// private (no other pointer reaches them) and of the same size and type, and
// `p` must be allocated in the same block before the loop (so every use of
// `p` is renamed). The memory footprint of a chain of maps then stays that of
// one array, and the pages of a second large buffer are never touched.
