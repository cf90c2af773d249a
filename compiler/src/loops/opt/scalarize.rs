//! Scalar replacement of small buffers: a buffer of a few elements that is
//! only ever loaded and stored at constant indices becomes one variable per
//! element (Note [Small buffers as variables]).
//!
//! Input and output: a verified [`Func`]. A buffer qualifies when its
//! allocation has a constant count of at most [`MAX_ELEMENTS`], its variable
//! is assigned once, and every other read of that variable is the base of a
//! load or store at a constant index in range, of the allocation's element
//! type, or its null test. The allocation becomes assignments of zero to the
//! element variables (arena memory has no defined contents, so zero is as
//! good as any), a store an assignment, a load a copy, and the null test
//! `true`: the memory is never allocated, so it cannot run out.

use super::simplify::Counts;
use crate::hash::HashMap;
use crate::ir::Const;
use crate::loops::{for_each_inst, Func, Inst, LVar, MTy, Operand, Rhs};

/// The largest buffer replaced by variables (a rotation's 3-vector, a
/// projection's 2-vector, a camera's 11 parameters are all below it).
pub const MAX_ELEMENTS: i64 = 16;

/*
Note [Small buffers as variables]
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
After unrolling, the small arrays of a map body — the 3-vectors of a
rotation, the 2-vector of a projection — are buffers read and written at
constant indices: `store f64 b[1] = t`, later `x = load f64 b[1]`. Each is an
allocation (hoisted out of the loop, with a null test at its place, Note
[Hoisted buffers] in buffers.rs), a memory write and a memory read per element,
where hand-written code keeps the values in registers. `ba`'s jacobian had
two dozen of them in its loop over observations.

A buffer only reached through constant indices is a fixed set of mutable
cells, and so is a set of variables: a variable of the loop IR can be
assigned any number of times, in loops and branches, and a read sees the last
assignment in execution order, exactly as a load sees the last store. So the
rewrite is exact when nothing else can see the memory: the buffer's pointer
is never copied, stored, returned, kept by a release, offset or passed to a
copy — its variable appears only as the base of loads and stores at constant
indices (and in its own null test). Code generation then keeps the elements
in registers (Cranelift's SSA construction turns the assignments into values),
and a buffer that was written but never read leaves only dead assignments,
which `simplify` removes (Note [Dead loop variables]).

An `if` whose result is a small array leaves a pointer variable chosen in
the branches: `r = b1` at the end of one, `r = b2` at the end of the other,
and loads through `r` after. Such a group shares one set of variables when
each buffer is used only in the block that ends by assigning it to `r`, that
block does not read `r` before the assignment, and the buffer is allocated in
that block or hoisted out of the loops around it: then a buffer is written
only when `r` is about to name it, so no read through `r` can see a write
meant for another member. Copies between such buffers become assignments, a copy from other memory
into one becomes loads, and a loop that fills one with a constant becomes one
assignment per element. A buffer copied out into other memory stays in
memory: written out as one store per element instead, ht's objective ran 50%
slower (0.141 → 0.209 ms at hand1), most likely because the copy moves 16
bytes at a time and the vector loads that later read the destination cannot
be forwarded from two 8-byte stores.

The element variables start at zero where the buffer was allocated, so every
variable is assigned before it is read even where the program reads an
element it never wrote (which the lowering does not produce; arena memory
would hold an arbitrary value there). A hoisted buffer's variables start at
zero again where it came from, at its null test inside the loop: that place
dominates every use, so each iteration defines the variables before reading
them. Without it, an element assigned in one branch and read after the
merge would be, to Cranelift's SSA construction, a value that may come round
the loop's back edge: a block parameter of the loop header per element, live
through the whole loop.
*/

pub fn run(f: &mut Func) {
    let groups = candidates(f);
    if groups.is_empty() {
        return;
    }
    // One set of variables per group, named after its first member.
    let mut by_group: HashMap<LVar, Vec<LVar>> = HashMap::default();
    let mut members: Vec<(LVar, LVar)> = groups.iter().map(|(m, g)| (*m, g.root)).collect();
    members.sort();
    let mut elements: HashMap<LVar, (MTy, Vec<LVar>)> = HashMap::default();
    for (member, root) in members {
        let Shape { elem, count } = groups[&member].shape;
        let vars = by_group
            .entry(root)
            .or_insert_with(|| {
                let name = f.vars[root.0 as usize].0.clone();
                (0..count).map(|k| f.fresh(&format!("{name}_{k}"), elem)).collect()
            })
            .clone();
        elements.insert(member, (elem, vars));
    }
    rewrite(&mut f.body, &elements);
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Shape {
    elem: MTy,
    count: i64,
}

/// A buffer variable that qualifies: its shape and the first buffer of its
/// group (Note [Small buffers as variables]).
struct Member {
    shape: Shape,
    root: LVar,
}

/// The buffers (and the pointer variables choosing among them) that qualify.
fn candidates(f: &Func) -> HashMap<LVar, Member> {
    let counts = Counts::of(f);
    let mut shapes: HashMap<LVar, Shape> = HashMap::default();
    for_each_inst(&f.body, &mut |i| {
        if let Inst::Let(b, Rhs::Alloc { elem, count: Operand::Const(Const::I64(n)), .. }) = i {
            if (0..=MAX_ELEMENTS).contains(n) && counts.single(*b) {
                shapes.insert(*b, Shape { elem: *elem, count: *n });
            }
        }
    });
    // Pointer variables assigned only buffers of one shape: `r = b1` in one
    // block, `r = b2` in another.
    let mut sources: HashMap<LVar, Vec<LVar>> = HashMap::default();
    let mut other_defs: Vec<LVar> = Vec::new();
    for_each_inst(&f.body, &mut |i| match i {
        Inst::Let(r, Rhs::Use(Operand::Var(b))) if shapes.contains_key(b) && !shapes.contains_key(r) => {
            sources.entry(*r).or_default().push(*b)
        }
        _ => i.for_each_def(|v| other_defs.push(v)),
    });
    for v in other_defs {
        sources.remove(&v);
    }
    sources.retain(|r, bs| {
        let shape = shapes[&bs[0]];
        let mut unique = bs.clone();
        unique.sort();
        unique.dedup();
        unique.len() == bs.len() && bs.iter().all(|b| shapes[b] == shape) && !f.params.contains(r)
    });
    // A buffer named by two pointer variables would join their groups.
    let mut named: HashMap<LVar, usize> = HashMap::default();
    for b in sources.values().flatten() {
        *named.entry(*b).or_insert(0) += 1;
    }
    sources.retain(|_, bs| bs.iter().all(|b| named[b] == 1));
    for (b, n) in named {
        if n > 1 {
            shapes.remove(&b);
        }
    }
    for (r, bs) in &sources {
        shapes.insert(*r, shapes[&bs[0]]);
    }
    // Take out what escapes, until nothing more does.
    loop {
        let escaped = escaping(f, &shapes, &sources);
        if escaped.is_empty() {
            break;
        }
        for v in escaped {
            shapes.remove(&v);
            if let Some(bs) = sources.remove(&v) {
                for b in bs {
                    shapes.remove(&b);
                }
            }
        }
        sources.retain(|r, bs| {
            let all = bs.iter().all(|b| shapes.contains_key(b));
            if !all {
                shapes.remove(r);
                for b in bs.iter() {
                    shapes.remove(b);
                }
            }
            all
        });
    }
    // Groups: a pointer variable and the buffers it is assigned.
    let mut root: HashMap<LVar, LVar> = shapes.keys().map(|v| (*v, *v)).collect();
    for bs in sources.values() {
        let first = *bs.iter().min().unwrap();
        for b in bs {
            root.insert(*b, first);
        }
    }
    for (r, bs) in &sources {
        root.insert(*r, *bs.iter().min().unwrap());
    }
    shapes.into_iter().map(|(v, shape)| (v, Member { shape, root: root[&v] })).collect()
}

/// The candidates (`shapes`) that something reads other than as the base of
/// a load or store at a constant index in range, a null test, a copy between
/// candidates of constant length, or a pointer variable's assignment that
/// keeps the buffers of its group apart (Note [Small buffers as variables]).
fn escaping(f: &Func, shapes: &HashMap<LVar, Shape>, sources: &HashMap<LVar, Vec<LVar>>) -> Vec<LVar> {
    let mut escaped: Vec<LVar> = f.results.iter().filter_map(|o| o.var()).filter(|v| shapes.contains_key(v)).collect();
    let in_range = |b: &LVar, elem: MTy, index: &Operand, len: i64| match (shapes.get(b), index) {
        (Some(s), Operand::Const(Const::I64(k))) => {
            s.elem == elem && *k >= 0 && len >= 0 && k.checked_add(len).is_some_and(|end| end <= s.count)
        }
        _ => false,
    };
    // The stores of fill loops are accesses at the loop's constant indices.
    let mut fills: Vec<(LVar, LVar)> = Vec::new();
    for_each_inst(&f.body, &mut |i| {
        if let Some((b, j, elem, start, end, _)) = fill(i) {
            let fits =
                end.checked_sub(start).is_some_and(|len| in_range(&b, elem, &Operand::Const(Const::I64(start)), len));
            if fits || !shapes.contains_key(&b) {
                fills.push((b, j));
            }
        }
    });
    for_each_inst(&f.body, &mut |i| {
        let rest: Vec<Operand> = match i {
            Inst::Store { base: Operand::Var(b), index: Operand::Var(j), value, .. } if fills.contains(&(*b, *j)) => {
                vec![*value]
            }
            Inst::Let(_, Rhs::Load { elem, base: Operand::Var(b), index }) if shapes.contains_key(b) => {
                if !in_range(b, *elem, index, 1) {
                    escaped.push(*b);
                }
                vec![*index]
            }
            Inst::Store { elem, base: Operand::Var(b), index, value } if shapes.contains_key(b) => {
                if !in_range(b, *elem, index, 1) {
                    escaped.push(*b);
                }
                vec![*index, *value]
            }
            // A copy with a candidate on either side: assignments, or loads
            // or stores at constant indices for the other side.
            Inst::Copy { elem, dst, src, count: Operand::Const(Const::I64(n)) }
                if [dst, src].iter().any(|o| o.var().is_some_and(|v| shapes.contains_key(&v))) =>
            {
                let zero = Operand::Const(Const::I64(0));
                let mut rest = Vec::new();
                let candidate = |o: &Operand| o.var().filter(|v| shapes.contains_key(v));
                for side in [dst, src] {
                    match candidate(side) {
                        Some(v) if in_range(&v, *elem, &zero, *n) => {}
                        Some(v) => escaped.push(v),
                        None => rest.push(*side),
                    }
                }
                // A buffer copied out to other memory stays a buffer (Note
                // [Small buffers as variables]).
                if candidate(dst).is_none() {
                    escaped.extend(candidate(src));
                }
                rest
            }
            Inst::Let(_, rhs) if rhs.tested_for_null().is_some() => Vec::new(),
            Inst::Let(r, Rhs::Use(Operand::Var(_))) if sources.contains_key(r) => Vec::new(),
            _ => i.operands(),
        };
        escaped.extend(rest.iter().filter_map(|o| o.var()).filter(|v| shapes.contains_key(v)));
    });
    for (r, bs) in sources {
        if bs.iter().any(|b| !kept_apart(&f.body, *r, *b)) {
            escaped.push(*r);
        }
    }
    escaped
}

/// Whether `r = b` sits in a block that holds every use of `b` and reads `r`
/// nowhere before that assignment: then `b` is written only where `r` is
/// about to name it, and one set of variables can stand for both. The
/// allocation of `b` (which sets the variables to zero) must be in that
/// block too, or hoisted out of the loops around it (then it runs before `r`
/// is first assigned there).
fn kept_apart(body: &[Inst], r: LVar, b: LVar) -> bool {
    let allocation = |insts: &[Inst], hoisted_only: bool| {
        let mut found = false;
        for_each_inst(insts, &mut |i| {
            if let Inst::Let(v, Rhs::Alloc { hoisted, .. }) = i {
                found |= *v == b && (*hoisted || !hoisted_only);
            }
        });
        found
    };
    // The block holding `r = b`, and where in it that is.
    fn block_of(insts: &[Inst], r: LVar, b: LVar) -> Option<(&[Inst], usize)> {
        let copy = |i: &Inst| matches!(i, Inst::Let(v, Rhs::Use(Operand::Var(w))) if *v == r && *w == b);
        match insts.iter().position(copy) {
            Some(at) => Some((insts, at)),
            None => insts.iter().flat_map(|i| i.blocks()).find_map(|block| block_of(block, r, b)),
        }
    }
    let Some((block, at)) = block_of(body, r, b) else { return false };
    uses(block, b) == uses(body, b)
        && uses(&block[..at], r) == 0
        && (allocation(block, false) || allocation(body, true))
}

/// A loop that only stores one loop-invariant value into a buffer, element
/// by element over constant bounds (`replicate 11 0.0`): buffer, index,
/// element type, bounds and value.
fn fill(i: &Inst) -> Option<(LVar, LVar, MTy, i64, i64, Operand)> {
    match i {
        Inst::For {
            index,
            start: Operand::Const(Const::I64(start)),
            bound: Operand::Const(Const::I64(end)),
            body,
            ..
        } if start <= end => match body.as_slice() {
            [Inst::Store { elem, base: Operand::Var(b), index: Operand::Var(j), value }]
                if j == index && value.var() != Some(*j) && value.var() != Some(*b) =>
            {
                Some((*b, *j, *elem, *start, *end, *value))
            }
            _ => None,
        },
        _ => None,
    }
}

/// How often `v` is read in `insts`, nested blocks included.
fn uses(insts: &[Inst], v: LVar) -> usize {
    let mut n = 0;
    for_each_inst(insts, &mut |i| i.for_each_use(|w| n += usize::from(w == v)));
    n
}

fn zero(ty: MTy) -> Operand {
    Operand::Const(match ty {
        MTy::F64 => Const::F64(0.0),
        MTy::F32 => Const::F32(0.0),
        MTy::I64 => Const::I64(0),
        MTy::Bool => Const::Bool(false),
    })
}

fn rewrite(insts: &mut Vec<Inst>, elements: &HashMap<LVar, (MTy, Vec<LVar>)>) {
    let vars_of = |b: &Operand| b.var().and_then(|b| elements.get(&b)).map(|(_, vars)| vars);
    let element = |b: &Operand, index: &Operand| match (vars_of(b), index) {
        (Some(vars), Operand::Const(Const::I64(k))) => Some(vars[*k as usize]),
        _ => None,
    };
    let mut out = Vec::with_capacity(insts.len());
    for mut i in std::mem::take(insts) {
        for block in i.blocks_mut() {
            rewrite(block, elements);
        }
        match &i {
            Inst::Let(b, Rhs::Alloc { .. }) if elements.contains_key(b) => {
                let (ty, vars) = &elements[b];
                out.extend(vars.iter().map(|v| Inst::Let(*v, Rhs::Use(zero(*ty)))));
            }
            // The place a hoisted buffer came from: the variables start there
            // again (Note [Small buffers as variables]).
            Inst::Let(t, rhs) if rhs.tested_for_null().is_some_and(|b| elements.contains_key(&b)) => {
                let (ty, vars) = &elements[&rhs.tested_for_null().unwrap()];
                out.extend(vars.iter().map(|v| Inst::Let(*v, Rhs::Use(zero(*ty)))));
                out.push(Inst::Let(*t, Rhs::Use(Operand::Const(Const::Bool(true)))));
            }
            // A pointer variable naming a buffer of its group: the same variables.
            Inst::Let(r, Rhs::Use(b)) if elements.contains_key(r) && vars_of(b).is_some() => {}
            Inst::Let(x, Rhs::Load { base, index, .. }) if element(base, index).is_some() => {
                out.push(Inst::Let(*x, Rhs::Use(Operand::Var(element(base, index).unwrap()))));
            }
            Inst::Store { base, index, value, .. } if element(base, index).is_some() => {
                out.push(Inst::Let(element(base, index).unwrap(), Rhs::Use(*value)));
            }
            Inst::Copy { elem, dst, src, count: Operand::Const(Const::I64(n)) }
                if vars_of(dst).is_some() || vars_of(src).is_some() =>
            {
                let at = |k: usize| Operand::Const(Const::I64(k as i64));
                for k in 0..*n as usize {
                    match (vars_of(dst), vars_of(src)) {
                        (Some(d), Some(s)) if d != s => out.push(Inst::Let(d[k], Rhs::Use(Operand::Var(s[k])))),
                        (Some(_), Some(_)) => {}
                        (Some(d), None) => {
                            out.push(Inst::Let(d[k], Rhs::Load { elem: *elem, base: *src, index: at(k) }))
                        }
                        (None, Some(s)) => {
                            out.push(Inst::Store { elem: *elem, base: *dst, index: at(k), value: Operand::Var(s[k]) })
                        }
                        (None, None) => unreachable!("one side is a candidate"),
                    }
                }
            }
            _ => match fill(&i) {
                Some((b, _, _, start, end, value)) if elements.contains_key(&b) => {
                    let vars = &elements[&b].1;
                    out.extend((start..end).map(|k| Inst::Let(vars[k as usize], Rhs::Use(value))));
                }
                _ => out.push(i),
            },
        }
    }
    *insts = out;
}
