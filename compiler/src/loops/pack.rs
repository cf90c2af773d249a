//! Memory planning: hoisted scratch allocations nothing uses are dropped,
//! and consecutive small ones become one (Note [Packed scratch buffers]).
//!
//! The `memory` pass (`driver::MEMORY`), the last before Cranelift. Input: a
//! loop program after the loop optimiser and the `strands` stage and, on the
//! multicore back end, after parallel loops are outlined (the outlining pass
//! recognises scratch buffers by their `Alloc`, so packing comes after it). Output: the same
//! program where, in every function and segment, first every hoisted
//! `v = alloc_or_null T n` that nothing reads is gone (Note [Unused scratch
//! buffers]), then every run of consecutive
//! `v = alloc_or_null T n` (hoisted, constant `n` of at most
//! [`MOST_ELEMENTS`]; other hoisted allocations may stand between them) with
//! two or more members of one element type is one allocation of their
//! total, each member a 16-byte-aligned offset into it — null when the
//! allocation is null, so each member's own null test still fails where and
//! as it did. Nothing else changes: the members are the same
//! variables, assigned at the same place, and no member is read before the
//! run ends (the run holds only allocations).

use super::{Func, Inst, LVar, MTy, Operand, Program, Rhs};
use crate::hash::HashSet;
use crate::ir::Const;

/// The largest member (elements): packing is for small scratch buffers.
pub const MOST_ELEMENTS: i64 = 4096;

/// Bytes each member's offset is a multiple of.
const ALIGN: i64 = 16;

/// Packs the scratch buffers of every function and segment of `program`,
/// after dropping those nothing uses.
pub fn run(program: &mut Program) {
    let segments = program.segments.iter_mut().map(|s| &mut s.func);
    for f in program.funcs.iter_mut().chain(segments) {
        drop_unused(f);
        pack(f);
    }
}

/// Removes every hoisted scratch allocation of `f` that nothing uses (Note
/// [Unused scratch buffers]).
fn drop_unused(f: &mut Func) {
    let mut used = HashSet::default();
    super::for_each_use(&f.body, &mut |v| {
        used.insert(v);
    });
    used.extend(f.results.iter().filter_map(|o| o.var()));
    fn drop_in(insts: &mut Vec<Inst>, used: &HashSet<LVar>) {
        insts.retain(|i| !matches!(i, Inst::Let(v, _) if hoisted(i) && !used.contains(v)));
        for i in insts.iter_mut() {
            for b in i.blocks_mut() {
                drop_in(b, used);
            }
        }
    }
    drop_in(&mut f.body, &used);
}

/// `f` with its scratch buffers packed, or `None` when no run has two
/// members of one element type.
#[cfg(test)]
fn packed(f: &Func) -> Option<Func> {
    has_run_anywhere(&f.body).then(|| {
        let mut out = f.clone();
        pack(&mut out);
        out
    })
}

/// Packs the scratch buffers of `f` (each block checks for a run itself).
fn pack(f: &mut Func) {
    let mut body = std::mem::take(&mut f.body);
    pack_block(f, &mut body);
    f.body = body;
}

/// A member of a run: `var = alloc_or_null elem count`, failing with `site`.
#[derive(Clone, Copy)]
struct Member {
    var: LVar,
    elem: MTy,
    count: i64,
    site: u32,
}

/// `inst` as a member of a run, if it is one.
fn member(inst: &Inst) -> Option<Member> {
    match inst {
        Inst::Let(v, Rhs::Alloc { elem, count: Operand::Const(Const::I64(n)), site, hoisted: true })
            if (0..=MOST_ELEMENTS).contains(n) =>
        {
            Some(Member { var: *v, elem: *elem, count: *n, site: *site })
        }
        _ => None,
    }
}

/// A hoisted allocation of `count` elements of `elem`, failing with `site`.
fn alloc(elem: MTy, count: i64, site: u32) -> Rhs {
    Rhs::Alloc { elem, count: Operand::i64(count), site, hoisted: true }
}

/// Whether `insts` (not nested) holds a run with two members of one type.
fn has_run(insts: &[Inst]) -> bool {
    let mut seen: Vec<MTy> = Vec::new();
    for inst in insts {
        if let Some(m) = member(inst) {
            if seen.contains(&m.elem) {
                return true;
            }
            seen.push(m.elem);
        } else if !hoisted(inst) {
            seen.clear();
        }
    }
    false
}

/// Whether some block of `insts`, nested or not, holds a run to pack.
#[cfg(test)]
fn has_run_anywhere(insts: &[Inst]) -> bool {
    has_run(insts) || insts.iter().any(|i| i.blocks().any(has_run_anywhere))
}

/// Whether `inst` is a hoisted allocation: a member, or one that may stand
/// between members (its size is not a small constant).
fn hoisted(inst: &Inst) -> bool {
    matches!(inst, Inst::Let(_, Rhs::Alloc { hoisted: true, .. }))
}

fn pack_block(f: &mut Func, insts: &mut Vec<Inst>) {
    for inst in insts.iter_mut() {
        for block in inst.blocks_mut() {
            pack_block(f, block);
        }
    }
    if !has_run(insts) {
        return;
    }
    // A run: consecutive hoisted allocations. Its members are packed; the
    // others follow the packs (allocations are independent of each other).
    let mut out = Vec::with_capacity(insts.len());
    let mut run: Vec<Member> = Vec::new();
    let mut others: Vec<Inst> = Vec::new();
    for inst in std::mem::take(insts) {
        if let Some(m) = member(&inst) {
            run.push(m);
        } else if hoisted(&inst) {
            others.push(inst);
        } else {
            pack_run(f, &std::mem::take(&mut run), &mut out);
            out.append(&mut others);
            out.push(inst);
        }
    }
    pack_run(f, &run, &mut out);
    out.append(&mut others);
    *insts = out;
}

/// The instructions of one run: per element type, one allocation when the
/// type has two members or more, else the member's own.
fn pack_run(f: &mut Func, run: &[Member], out: &mut Vec<Inst>) {
    let mut types: Vec<MTy> = Vec::new();
    for m in run {
        if !types.contains(&m.elem) {
            types.push(m.elem);
        }
    }
    for elem in types {
        let members: Vec<Member> = run.iter().filter(|m| m.elem == elem).copied().collect();
        if let [m] = members[..] {
            out.push(Inst::Let(m.var, alloc(elem, m.count, m.site)));
            continue;
        }
        let per_align = ALIGN / elem.size();
        let mut offsets = Vec::with_capacity(members.len());
        let mut total = 0;
        for m in &members {
            offsets.push(total);
            total += (m.count + per_align - 1) / per_align * per_align;
        }
        let base = f.fresh("pack", MTy::I64);
        out.push(Inst::Let(base, alloc(elem, total, members[0].site)));
        let got = f.fresh("packed", MTy::Bool);
        out.push(Inst::Let(got, Rhs::null_test(base)));
        for (m, offset) in members.iter().zip(offsets) {
            let v = m.var;
            if offset == 0 {
                out.push(Inst::Let(v, Rhs::Use(Operand::Var(base))));
                continue;
            }
            let at = f.fresh("at", MTy::I64);
            out.push(Inst::Let(at, Rhs::Offset { elem, base: Operand::Var(base), index: Operand::i64(offset) }));
            out.push(Inst::Let(v, Rhs::Select(Operand::Var(got), Operand::Var(at), Operand::i64(0))));
        }
    }
}

// Note [Packed scratch buffers]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Memory planning hoists the small buffers a loop body builds out of the
// loop (Note [Hoisted buffers] in buffers.rs), so a function derived by AD starts its
// loops with runs of dozens of `alloc_or_null f64 3`, `… 26`, `… 78`: ht's
// jacobian makes 405 allocation calls. Each is a call into the runtime, and
// each call is expensive twice: at run time (a search of the arena's block
// cache), and at compile time, where every call clobbers the caller-saved
// registers and the pointers it returns live across the calls after it — the
// register allocator's work grows with both. So a run of such allocations is
// one allocation of their sum, each member at an offset rounded up to 16
// bytes (the arena's alignment, which vector loads rely on).
//
// Why this is safe. The members are hoisted scratch buffers: nothing that
// survives the loop points into them (lower.rs decides that), so none is
// ever kept past a `Release` on its own — the only difference a shared block
// makes. A hoisted allocation may be null (the memory could not be had), and
// the place each buffer came from tests it for null and fails with its own
// site and size: a member is therefore `select(pack != 0, pack + offset, 0)`,
// null exactly when the pack is, and each test fails as before. Only small
// constant sizes are packed (MOST_ELEMENTS), so no member's own size limit
// (E0207) changes which allocation fails. Runs are consecutive allocations
// only, so nothing reads a member between its old place and its new one.

// Note [Unused scratch buffers]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The loop optimiser hoists a loop's constant-size scratch buffers to just
// before the loop. When `parallel` then outlines the loop into a segment,
// the segment allocates its own (each thread needs its own), and the
// hoisted allocations in the caller are read by nothing: the null tests
// that read them moved into the segment with the loop. gmm's entries had
// 16 such call sites, ht's 32. A hoisted allocation never fails where it
// is made (it is null when the memory could not be had, and the code that
// uses the buffer tests that), and the arena's marks and releases count
// blocks at run time, so removing one that nothing reads changes no value
// and no failure: only a runtime call (and the arena's peak) goes.

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc_of(elem: MTy, count: Operand) -> Rhs {
        Rhs::Alloc { elem, count, site: 0, hoisted: true }
    }

    fn run_of(f: &mut Func, sizes: &[(MTy, i64)]) -> (Vec<LVar>, Vec<Inst>) {
        let vars: Vec<LVar> = sizes.iter().map(|_| f.fresh("buf", MTy::I64)).collect();
        let insts = vars.iter().zip(sizes).map(|(&v, &(t, n))| Inst::Let(v, alloc(t, n, 0))).collect();
        (vars, insts)
    }

    /// The allocations of `insts` (not nested), as (element type, count).
    fn allocations(insts: &[Inst]) -> Vec<(MTy, i64)> {
        insts
            .iter()
            .filter_map(|i| match i {
                // A size that is a variable shows as -1.
                Inst::Let(_, Rhs::Alloc { elem, count, .. }) => Some((*elem, count.as_i64().unwrap_or(-1))),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_run_becomes_one_allocation_per_element_type_at_aligned_offsets() {
        let mut f = Func::empty("f");
        f.sites.push(crate::loops::Site {
            code: crate::diagnostic::Code::E0207,
            span: crate::diagnostic::Span::new(crate::diagnostic::FileId(0), 0, 3),
            message: crate::loops::Message::OutOfMemory,
        });
        let (vars, mut body) =
            run_of(&mut f, &[(MTy::F64, 3), (MTy::F64, 26), (MTy::Bool, 5), (MTy::F64, 0), (MTy::F64, 1)]);
        // A hoisted allocation of a variable size stays, after the packs,
        // and does not end the run.
        let n = f.fresh("n", MTy::I64);
        let dynamic = f.fresh("dynamic", MTy::I64);
        body.insert(2, Inst::Let(dynamic, alloc_of(MTy::F64, Operand::Var(n))));
        body.insert(0, Inst::Let(n, Rhs::Use(Operand::i64(9))));
        let i = f.fresh("i", MTy::I64);
        // A nested run is packed too; a lone allocation, or one that is
        // not hoisted, or too large, is left alone.
        let (_, inner) = run_of(&mut f, &[(MTy::F64, 2), (MTy::F64, 2)]);
        let lone = f.fresh("lone", MTy::I64);
        let eager = f.fresh("eager", MTy::I64);
        let big = f.fresh("big", MTy::I64);
        let mut loop_body = inner;
        loop_body
            .push(Inst::Let(eager, Rhs::Alloc { elem: MTy::F64, count: Operand::i64(4), site: 0, hoisted: false }));
        loop_body.push(Inst::Let(big, alloc(MTy::F64, MOST_ELEMENTS + 1, 0)));
        body.push(Inst::for_(i, Operand::i64(10), loop_body));
        body.push(Inst::Let(lone, alloc(MTy::F64, 7, 0)));
        f.body = body;

        let g = packed(&f).expect("two runs to pack");
        // f64: 3 → 4, 26, 0, 1 → 2 (16-byte steps); bool: alone.
        assert_eq!(
            allocations(&g.body),
            vec![(MTy::F64, 4 + 26 + 0 + 2), (MTy::Bool, 5), (MTy::F64, -1), (MTy::F64, 7)]
        );
        let Some(Inst::For { body: inner, .. }) = g.body.iter().find(|i| matches!(i, Inst::For { .. })) else {
            panic!("the loop is kept")
        };
        assert_eq!(allocations(inner), vec![(MTy::F64, 4), (MTy::F64, 4), (MTy::F64, MOST_ELEMENTS + 1)]);
        // Each member: the pack itself, or null when the pack is, else its offset.
        let rhs_of = |v: LVar| {
            g.body.iter().find_map(|i| match i {
                Inst::Let(w, rhs) if *w == v => Some(rhs.clone()),
                _ => None,
            })
        };
        let Some(Rhs::Use(Operand::Var(pack))) = rhs_of(vars[0]) else { panic!("the first member is the pack") };
        for (member, offset) in [(vars[1], 4), (vars[3], 30), (vars[4], 30)] {
            let Some(Rhs::Select(Operand::Var(got), Operand::Var(at), zero)) = rhs_of(member) else {
                panic!("a member is null when the pack is")
            };
            assert_eq!(rhs_of(got), Some(Rhs::null_test(pack)));
            assert_eq!(zero, Operand::i64(0));
            assert_eq!(
                rhs_of(at),
                Some(Rhs::Offset { elem: MTy::F64, base: Operand::Var(pack), index: Operand::i64(offset) })
            );
        }
        crate::loops::verify::verify_func(&g).expect("the packed function verifies");
    }

    #[test]
    fn a_function_without_runs_is_not_copied() {
        let mut f = Func::empty("f");
        let (_, mut body) = run_of(&mut f, &[(MTy::F64, 3), (MTy::I64, 3)]);
        let x = f.fresh("x", MTy::I64);
        body.insert(1, Inst::Let(x, Rhs::Use(Operand::i64(1))));
        f.body = body;
        assert!(packed(&f).is_none());
    }
}
