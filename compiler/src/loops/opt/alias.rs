//! Points-to: which buffers a pointer variable may address.
//!
//! Input: a [`Func`]. Output: [`PointsTo`], for each variable the targets it
//! may hold a pointer into: a buffer passed in (any parameter: callers may
//! pass the same buffer twice) or an `Alloc` instruction's buffer (named by
//! the variable the allocation binds). The analysis is flow-insensitive: a
//! variable assigned several times (loop state, a branch's result, a lazily
//! allocated `map` result) may hold the union of what it is assigned, so the
//! answer holds everywhere in the function, before and after any pass that
//! keeps the instructions' meaning. An allocation that runs many times (in a
//! loop) is one target for all its buffers.
//!
//! Invariant (what the passes rely on): when the target sets of two pointers
//! are disjoint, no element is addressed through both. [`fresh_at_end`]
//! adds what the flow-insensitive sets cannot say: right after a block, a
//! buffer it allocated and whose pointer it did not copy is reached by that
//! pointer alone (an earlier buffer of the same allocation, say the previous
//! iteration's loop state, is another buffer). A variable whose set
//! is empty was never seen to hold a pointer; [`PointsTo::may_alias`] treats
//! it as possibly aliasing anything.

use super::edges::Edges;
use crate::hash::HashSet;
use crate::loops::{for_each_inst, Func, Inst, LVar, MTy, Operand, Rhs};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// Memory passed in by the caller.
    Param,
    /// The buffers of the `Alloc` bound to this variable.
    Alloc(LVar),
    /// Anything: a word read from memory (the code never stores pointers,
    /// but nothing here relies on that).
    Unknown,
}

/// For each variable (by number), the targets it may point into, sorted;
/// empty: never seen to hold a pointer. (Sets are small: a pointer reaches
/// one or a few buffers.)
#[derive(Debug, Default)]
pub struct PointsTo {
    sets: Vec<Vec<Target>>,
}

impl PointsTo {
    pub fn of(f: &Func) -> PointsTo {
        let mut pt = PointsTo { sets: vec![Vec::new(); f.vars.len()] };
        // Seeds, and the edges `source → v` of every other definition.
        let mut seeds: Vec<(LVar, Target)> = Vec::new();
        let mut edges = Edges::new(f.vars.len());
        for &p in &f.params {
            if f.vars[p.0 as usize].1 == MTy::I64 {
                seeds.push((p, Target::Param));
            }
        }
        for_each_inst(&f.body, &mut |i| {
            let Inst::Let(v, rhs) = i else { return };
            match rhs {
                Rhs::Alloc { .. } => seeds.push((*v, Target::Alloc(*v))),
                Rhs::Load { elem: MTy::I64, .. } => seeds.push((*v, Target::Unknown)),
                Rhs::Offset { base, .. } => edges.extend_from(*base, *v),
                rhs => rhs.for_each_operand(|s| edges.extend_from(s, *v)),
            }
        });
        // Variables are assigned in several places, some after their uses
        // (loop state): propagate along the edges until nothing grows.
        let mut work: Vec<LVar> = Vec::new();
        for (v, t) in seeds {
            if pt.insert(v, &[t]) {
                work.push(v);
            }
        }
        let mut targets = Vec::new();
        while let Some(s) = work.pop() {
            targets.clone_from(&pt.sets[s.0 as usize]);
            for d in edges.from(s) {
                if pt.insert(d, &targets) {
                    work.push(d);
                }
            }
        }
        pt
    }

    /// Adds `targets` to `v`'s set; did it grow?
    fn insert(&mut self, v: LVar, targets: &[Target]) -> bool {
        let k = v.0 as usize;
        if k >= self.sets.len() {
            self.sets.resize(k + 1, Vec::new());
        }
        let set = &mut self.sets[k];
        let before = set.len();
        for &t in targets {
            if let Err(at) = set.binary_search(&t) {
                set.insert(at, t);
            }
        }
        set.len() != before
    }

    /// What `o` may point into, sorted (`None`: never seen to hold a pointer).
    pub fn targets(&self, o: Operand) -> Option<&[Target]> {
        o.var().and_then(|v| self.sets.get(v.0 as usize)).filter(|s| !s.is_empty()).map(Vec::as_slice)
    }

    /// May an element be addressed both through `a` and through `b`?
    pub fn may_alias(&self, a: Operand, b: Operand) -> bool {
        fn known(s: Option<&[Target]>) -> Option<&[Target]> {
            s.filter(|s| !s.contains(&Target::Unknown))
        }
        match (known(self.targets(a)), known(self.targets(b))) {
            (Some(x), Some(y)) => x.iter().any(|t| y.binary_search(t).is_ok()),
            _ => true,
        }
    }
}

/// The operands of `i` that are not the base of a load or store: what a
/// pointer among them may be copied to.
pub fn non_base_operands(i: &Inst) -> Vec<Operand> {
    match i {
        Inst::Let(_, Rhs::Load { index, .. }) => vec![*index],
        Inst::Store { index, value, .. } => vec![*index, *value],
        Inst::Let(_, rhs) if rhs.tested_for_null().is_some() => Vec::new(),
        i => i.operands(),
    }
}

/// Whether `v` holds a buffer allocated in `block` whose pointer nothing
/// after the allocation copies (it is only a base of loads and stores, or
/// tested for null): right after `block`, only `v` reaches that buffer —
/// even when an earlier buffer of the same allocation is reached by others
/// (the previous iteration's loop state, which [`PointsTo`] cannot tell
/// apart from it). Scans back from the end of `block` to the allocation.
pub fn fresh_at_end(block: &[Inst], v: LVar) -> bool {
    for i in block.iter().rev() {
        if let Inst::Let(w, rhs) = i {
            if *w == v {
                return matches!(rhs, Rhs::Alloc { .. });
            }
        }
        let var = Operand::Var(v);
        if non_base_operands(i).contains(&var) || i.defines(v) {
            return false;
        }
        let mut copied = false;
        for b in i.blocks() {
            for_each_inst(b, &mut |j| copied |= non_base_operands(j).contains(&var) || j.defines(v));
        }
        if copied {
            return false;
        }
    }
    false
}

/// Which pointers used in loop bodies that run right after `before` never
/// reach the same element: different targets, or one of them a buffer
/// [`fresh_at_end`] of `before` whose pointer the bodies (nested blocks
/// included) do not copy. The one question `fuse`, `simd` and `parallel` ask.
pub struct Apart<'a> {
    points_to: &'a PointsTo,
    before: &'a [Inst],
    copied: HashSet<LVar>,
}

impl<'a> Apart<'a> {
    pub fn new(points_to: &'a PointsTo, before: &'a [Inst], bodies: &[&[Inst]]) -> Apart<'a> {
        let mut copied = HashSet::default();
        for b in bodies {
            for_each_inst(b, &mut |i| copied.extend(non_base_operands(i).into_iter().filter_map(Operand::var)));
        }
        Apart { points_to, before, copied }
    }

    /// `v` alone reaches its buffer in the bodies.
    pub fn alone(&self, v: LVar) -> bool {
        !self.copied.contains(&v) && fresh_at_end(self.before, v)
    }

    /// Two different pointers that never reach the same element.
    pub fn apart(&self, p: Operand, q: Operand) -> bool {
        let alone = |o: Operand| o.var().is_some_and(|v| self.alone(v));
        !self.points_to.may_alias(p, q) || alone(p) || alone(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn func() -> Func {
        Func::empty("f")
    }

    fn alloc() -> Rhs {
        Rhs::Alloc { elem: MTy::F64, count: Operand::i64(4), site: 0, hoisted: false }
    }

    fn offset(base: LVar, k: i64) -> Rhs {
        Rhs::Offset { elem: MTy::F64, base: base.into(), index: Operand::i64(k) }
    }

    #[test]
    fn separate_allocations_and_parameters_do_not_alias() {
        let mut f = func();
        let (p, q) = (f.fresh("p", MTy::I64), f.fresh("q", MTy::I64));
        f.params = vec![p, q];
        let (a, b, row, state) =
            (f.fresh("a", MTy::I64), f.fresh("b", MTy::I64), f.fresh("row", MTy::I64), f.fresh("s", MTy::I64));
        let c = f.fresh("c", MTy::Bool);
        let word = f.fresh("w", MTy::I64);
        f.body = vec![
            Inst::Let(a, alloc()),
            Inst::Let(b, alloc()),
            Inst::Let(row, offset(a, 2)),
            Inst::Let(state, Rhs::Use(b.into())),
            Inst::Let(c, Rhs::Use(Operand::Const(crate::ir::Const::Bool(true)))),
            // A loop state first set to `b`, later to the parameter's rows.
            Inst::for_(
                f.fresh("i", MTy::I64),
                Operand::i64(3),
                vec![Inst::Let(state, Rhs::Select(c.into(), state.into(), row.into()))],
            ),
            Inst::Let(word, Rhs::Load { elem: MTy::I64, base: p.into(), index: Operand::i64(0) }),
        ];
        let pt = PointsTo::of(&f);
        let alias = |x: LVar, y: LVar| pt.may_alias(x.into(), y.into());
        // Callers may pass one buffer twice; the arena's are fresh.
        assert!(alias(p, q));
        assert!(!alias(p, a) && !alias(a, b) && !alias(q, b));
        // An offset reaches its base's buffer; a state reaches all it is assigned.
        assert!(alias(row, a) && !alias(row, b));
        assert!(alias(state, b) && alias(state, a) && !alias(state, p));
        // A word loaded from memory, or a variable never seen to hold a
        // pointer, may alias anything.
        assert!(alias(word, a) && alias(word, p));
        assert!(alias(c, a));
    }

    #[test]
    fn a_buffer_is_fresh_until_its_pointer_is_copied() {
        let (a, b, c, d, x) = (LVar(0), LVar(1), LVar(2), LVar(3), LVar(4));
        let store = |base: LVar| Inst::Store {
            elem: MTy::F64,
            base: base.into(),
            index: Operand::i64(0),
            value: Operand::Const(crate::ir::Const::F64(1.0)),
        };
        let block = vec![
            Inst::Let(a, alloc()),
            Inst::Let(b, alloc()),
            Inst::Let(d, alloc()),
            store(a),
            Inst::Let(x, Rhs::Load { elem: MTy::F64, base: a.into(), index: Operand::i64(0) }),
            // `b` is copied: `c` reaches its buffer too.
            Inst::Let(c, Rhs::Use(b.into())),
            // Stored to in a nested block: still fresh; copied there: not.
            Inst::If { cond: Operand::Const(crate::ir::Const::Bool(true)), then: vec![store(d)], els: Vec::new() },
            Inst::If {
                cond: Operand::Const(crate::ir::Const::Bool(true)),
                then: vec![Inst::Let(x, Rhs::Use(a.into()))],
                els: Vec::new(),
            },
        ];
        let fresh: Vec<LVar> = [a, b, c, d, x].into_iter().filter(|v| fresh_at_end(&block, *v)).collect();
        assert_eq!(fresh, vec![d]);
        // Reassigned: the variable may now hold another buffer.
        let block = vec![Inst::Let(a, alloc()), Inst::Let(a, Rhs::Use(b.into()))];
        assert!(!fresh_at_end(&block, a));
    }
}
