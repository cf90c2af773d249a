//! Ownership: which writes of arrays go into the buffer they read, and
//! which copy it first — the memory plan of values, decided before
//! lowering.
//!
//! Input: the optimised array IR with its parallel level
//! ([`segments::Program`]). Output: a [`Program`]: the same, unchanged,
//! and a [`Decision`] for every statement that writes an array's buffer
//! (an update, `scatter` or `hist`; a `map` whose result may be written
//! over an input; a loop, whose state may be carried in place), per visit
//! of the statement ([`Visit`]). `slope emit --stage ownership` prints the
//! IR with each decision as a comment above its statement.
//!
//! What reads it: lowering (`loops/lower.rs`) obeys the decisions — it
//! writes in place where the plan says so and emits a copy (an `alloc`
//! named `copy` and a `Copy`) where it says to copy — and decides nothing
//! about ownership itself. Memory planning of buffers (`loops/buffers.rs`,
//! `loops/pack.rs`) runs on the loop IR after lowering: which buffers a
//! loop hoists, which it releases, which small ones share an allocation.
//!
//! Invariant (what makes in-place writes sound, Note [Ownership and
//! in-place updates]): a buffer written in place is reached by no variable
//! read afterwards, and was made fresh at the loop depth of the write —
//! allocated there, or, for loop state carried in place, taken over or
//! copied at the loop's entry — so no other iteration of an enclosing loop
//! reads it. [`verify`] checks that every write has a decision of its
//! kind, and nothing else has one.

mod plan;
mod verify;

pub use plan::plan;
pub use verify::verify;

use crate::hash::{HashMap, HashSet};
use crate::ir::{self, alias, Body, Expr, IrType, Stmt, Var};
use crate::segments::{self, StmtId};
use std::cell::RefCell;

// Note [Ownership and in-place updates]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// `UpdateAt` consumes its array (Note [Consumed arrays] in ir/mod.rs): the AD
// pass guarantees the *variable* is dead afterwards, not that no other
// variable shares its buffer. The plan tracks, per array variable, whether
// its buffer is owned (`Own::Fresh`): allocated in this call and reachable
// through no other live variable. Fresh buffers (map results, replicate,
// copies, an update's result) are owned; parameters and views are not. Making
// an alias or a view of an owned array takes the ownership away from the
// source (`demote`) unless the source has no other use, in which case the
// alias inherits it. An update of an owned array at the loop depth where it
// was defined writes in place; anything else copies first. A loop parameter
// that the body updates is made owned at entry (the initial value is taken
// over when it is owned and used nowhere else, else copied) and kept owned
// across iterations (a body result that is not owned is copied). So the
// adjoint accumulations of reverse mode run in place, at O(1) per update.

// Note [Maps in place]
// ~~~~~~~~~~~~~~~~~~~~
// A `map` reads element j of each input at the start of iteration j and
// stores element j of each result at its end, so a vector result may be
// written into the buffer of a vector input of the same element type when
// that input is owned (no other variable reaches its buffer), was made
// owned at this loop depth, and is dead after the map (not even read inside
// the lambda). This is what makes an accumulation `acc' = map2 (+) acc x`
// run in place: a loop parameter whose only use is as such an input is made
// owned (its initial value copied unless owned and dead, a body result that
// is not fresh copied, as for parameters updated in place), so a fused
// `sum` of vectors — the tangent of a sum in vector-mode `jacfwd` — adds into
// one buffer instead of allocating a vector per iteration.

// Note [Ownership before lowering]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The in-place rules are decided on the array IR, where values are
// immutable and their uses can be counted, not on the loop IR: there the
// question "does a variable read later reach this buffer?" needs, at each
// write, which pointer variables may hold the buffer *then*, and the loop
// IR reassigns pointer variables (loop state, a branch's result, a lazily
// allocated result) while `loops/opt/alias.rs` answers flow-insensitively —
// an accumulator and its previous iteration's buffer are one target, so it
// could not show that updating loop state in place is safe.
//
// Two things make the array IR answer it:
// - Which values are fresh buffers is a property of each expression's
//   representation in lowering (a `map`'s result is a new buffer, a row of a
//   matrix a view of it, `iota` a buffer made where it is used as an array),
//   so the plan's table of values ([`plan`]'s `Val` and `Planner::stmt`)
//   states lowering's representations; `compare_stages.py … lowered` shows
//   any difference as a changed copy.
// - A statement list may be shared by two places (Note [Shared statement
//   lists] in ir/shared.rs), where it has different later uses; so a
//   decision is per *visit* of a statement ([`Visit`]): the plan and
//   lowering walk each function in the same order, and the n-th time either
//   reaches a statement it is the same place.
// The walk counts the remaining uses of every variable as lowering emits
// code (`for_each_read` before, one less per read passed), and at each
// write asks the rules below.

/// The optimised array IR, its parallel level and its ownership plan.
#[derive(Clone, Debug)]
pub struct Program {
    pub segments: segments::Program,
    /// One plan per function of `segments.ir`, in order.
    pub plans: Vec<Plan>,
}

/// A function's decisions, by visit.
pub type Plan = HashMap<Visit, Decision>;

/// The `nth` time (from 0) a walk of a function in lowering's order reaches
/// the statement `stmt` (Note [Ownership before lowering]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Visit {
    pub stmt: StmtId,
    pub nth: u32,
}

/// Counts the visits of a walk of one function.
#[derive(Default)]
pub struct Visits(HashMap<StmtId, u32>);

impl Visits {
    /// This visit of `s`: the first, or one more than the last.
    pub fn next(&mut self, s: &Stmt) -> Visit {
        let stmt = StmtId::of(s);
        let count = self.0.entry(stmt).or_insert(0);
        *count += 1;
        Visit { stmt, nth: *count - 1 }
    }
}

/// What a statement that writes arrays does with their buffers.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// An update, `scatter` or `hist`: writes its destination's buffer in
    /// place, or a copy of it.
    Write { in_place: bool },
    /// A `map`: each result written into the buffer of the input at that
    /// position of `arrays` (Note [Maps in place]), or into a new buffer.
    Map { into: Vec<Option<usize>> },
    /// A loop, per parameter: whether the body writes it in place
    /// ([`carried_in_place`]); whether its initial value is copied at
    /// entry; whether the body's result is copied at the end of an
    /// iteration.
    Loop { carried: Vec<bool>, copy_init: Vec<bool>, copy_next: Vec<bool> },
}

/// The kinds of [`Decision`]: which one a statement needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecisionKind {
    Write,
    Map,
    Loop,
}

impl std::fmt::Display for DecisionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DecisionKind::Write => "write",
            DecisionKind::Map => "map",
            DecisionKind::Loop => "loop",
        })
    }
}

/// The kind of decision a statement computing `expr` needs: `None` for one
/// that writes no buffer.
pub fn needs_decision(expr: &Expr) -> Option<DecisionKind> {
    match expr {
        Expr::UpdateAt { .. } | Expr::Scatter { .. } | Expr::Hist { .. } => Some(DecisionKind::Write),
        Expr::Map { .. } => Some(DecisionKind::Map),
        Expr::Loop { .. } => Some(DecisionKind::Loop),
        _ => None,
    }
}

impl Decision {
    fn kind(&self) -> DecisionKind {
        match self {
            Decision::Write { .. } => DecisionKind::Write,
            Decision::Map { .. } => DecisionKind::Map,
            Decision::Loop { .. } => DecisionKind::Loop,
        }
    }
}

impl Program {
    /// Keeps the function named `name` alone (with its plan).
    pub fn retain_func(&mut self, name: &str) {
        let keep: Vec<bool> = self.segments.ir.funcs.iter().map(|f| f.name == name).collect();
        let mut k = keep.iter();
        self.plans.retain(|_| *k.next().expect("one plan per function"));
        self.segments.ir.funcs.retain(|f| f.name == name);
    }

    /// The IR, each decision a `--` comment line above its statement.
    pub fn print(&self) -> String {
        let p = &self.segments.ir;
        p.funcs
            .iter()
            .zip(&self.plans)
            .map(|(f, plan)| {
                // The printer visits statements in lowering's order, as the plan does.
                let visits = RefCell::new(Visits::default());
                ir::print::print_func_annotated(p, f, &|s: &Stmt| {
                    let visit = visits.borrow_mut().next(s);
                    plan.get(&visit).map(|d| describe(p, s, d))
                })
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `writes xs in place`, `copies p's initial value`, …
fn describe(p: &ir::Program, s: &Stmt, d: &Decision) -> String {
    let name = |v: Var| p.vars.display(v).to_string();
    match (d, &s.expr) {
        (Decision::Write { in_place }, Expr::UpdateAt { array: dest, .. })
        | (Decision::Write { in_place }, Expr::Scatter { dest, .. })
        | (Decision::Write { in_place }, Expr::Hist { dest, .. }) => match in_place {
            true => format!("writes {} in place", name(*dest)),
            false => format!("copies {}, then writes the copy", name(*dest)),
        },
        (Decision::Map { into }, Expr::Map { arrays, .. }) => {
            let over: Vec<String> = into
                .iter()
                .enumerate()
                .filter_map(|(k, i)| Some(format!("result {k} over {}", name(arrays[(*i)?]))))
                .collect();
            match over.is_empty() {
                true => "new buffers".to_string(),
                false => format!("writes {}", over.join(", ")),
            }
        }
        (Decision::Loop { carried, copy_init, copy_next }, Expr::Loop { params, .. }) => {
            let parts: Vec<String> = (0..params.len())
                .filter(|&k| carried[k])
                .map(|k| {
                    let copies = match (copy_init[k], copy_next[k]) {
                        (false, false) => "",
                        (true, false) => " (copied at entry)",
                        (false, true) => " (copied each iteration)",
                        (true, true) => " (copied at entry and each iteration)",
                    };
                    format!("{}{copies}", name(params[k]))
                })
                .collect();
            match parts.is_empty() {
                true => "no state written in place".to_string(),
                false => format!("carries in place {}", parts.join(", ")),
            }
        }
        (d, _) => format!("a {} decision on another statement", d.kind()),
    }
}

impl crate::driver::Verify for Program {
    fn verify(&self) -> Result<(), String> {
        crate::driver::Verify::verify(&self.segments)?;
        verify(self)
    }
}

// ---- the rules ------------------------------------------------------------------

/// Whose an array value's buffer is (Note [Ownership and in-place updates]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Own {
    /// Possibly reached through another variable, or not this call's to
    /// write: a parameter, a call's result, a view, a branch's result that
    /// was not owned in both branches.
    Shared,
    /// Allocated by this call at loop depth `depth`, and reached through no
    /// other live variable.
    Fresh { depth: u32 },
}

impl Own {
    /// `Fresh` at `depth` when `owned`, else `Shared`.
    pub fn fresh_if(owned: bool, depth: u32) -> Own {
        if owned {
            Own::Fresh { depth }
        } else {
            Own::Shared
        }
    }

    /// May code at loop depth `depth` write the buffer in place, given that
    /// nothing reads the value afterwards? Only a buffer made fresh at that
    /// depth: one made outside the loop is read again by the next iteration.
    pub fn writable_at(self, depth: u32) -> bool {
        self == Own::Fresh { depth }
    }
}

/// Must loop parameter `p` (of type `ty`) own its buffer, because the body
/// `b` writes it in place: it updates it or an alias of it
/// ([`alias::updates_in_place`]), or a `map` may write over it (Note [Maps
/// in place])?
pub fn carried_in_place(b: &Body, p: Var, ty: IrType) -> bool {
    alias::updates_in_place(b, p) || overwritten_by_map(b, p, ty)
}

/// Must a value of loop state be copied where it enters the loop, or the
/// next iteration? When the body writes the parameter in place (`carried`,
/// by [`carried_in_place`]) unless its buffer may be written there
/// (`writable`) and no other state value holds the same buffer (`shared`,
/// by [`shared_buffers`]).
pub fn copy_carried(carried: bool, writable: bool, shared: bool) -> bool {
    carried && !(writable && !shared)
}

/// The buffers (by the variable that holds them) that more than one of
/// `holders` holds, which no loop parameter may then update in place:
/// updating one would change the other.
pub fn shared_buffers<T: Eq + std::hash::Hash>(holders: impl IntoIterator<Item = T>) -> HashSet<T> {
    let mut seen = HashSet::default();
    let mut shared = HashSet::default();
    for p in holders {
        if seen.contains(&p) {
            shared.insert(p);
        } else {
            seen.insert(p);
        }
    }
    shared
}

/// Is `p` a vector whose only read in `b` is as an input of a `map` at
/// `b`'s own loop depth (in `b` or its branches), so that the map may write
/// its result into `p`'s buffer when `p` holds one it owns (Note [Maps in
/// place])?
fn overwritten_by_map(b: &Body, p: Var, ty: IrType) -> bool {
    fn input_here(b: &Body, p: Var) -> bool {
        b.stmts.iter().any(|s| match &s.expr {
            Expr::Map { arrays, .. } => arrays.contains(&p),
            Expr::If { then_body, else_body, .. } => input_here(then_body, p) || input_here(else_body, p),
            _ => false,
        })
    }
    let mut reads = 0;
    ir::scope::for_each_read(b, &mut |v| reads += u32::from(v == p));
    ty.rank == 1 && reads == 1 && input_here(b, p)
}
