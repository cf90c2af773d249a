//! Ownership of buffers: when lowered code may write an array's buffer in
//! place instead of copying it first.
//!
//! Input: what lowering (`lower.rs`) knows of an array value at the point
//! it writes one — the value's [`Own`], the loop depth, whether the
//! array-IR variable holding it is read afterwards, whether another value
//! being carried or merged holds the same buffer. Output: the rules
//! lowering combines at each kind of write (an update, `scatter` or `hist`;
//! a `map` result written over an input; loop state at entry and at the
//! end of an iteration; the result of an `if`): whether a value's buffer
//! may be written at a loop depth ([`Own::writable_at`], with lowering's
//! count of later uses), which loop parameters are carried in place
//! ([`carried_in_place`]), which buffers several carried or merged values
//! share ([`shared_buffers`]), and, from those, whether loop state must be
//! copied at the loop's entry or an iteration's end ([`copy_carried`]).
//! Lowering copies when the answer is no.
//!
//! Invariant (what makes in-place writes sound): a buffer written in place
//! is reached by no variable read afterwards, and was made fresh at the
//! loop depth of the write — allocated there by this call, or, for loop
//! state carried in place, taken over or copied at the loop's entry — so
//! no other iteration of an enclosing loop reads it (Note [Ownership and
//! in-place updates]).
//!
//! The rules are decided here and the state they need travels with
//! lowering's values: which buffers are fresh depends on how lowering
//! represents each expression (a row of a matrix is a view, a `map`'s result
//! a new buffer), so lowering is the one place that sets it (Note [Why
//! ownership is decided while lowering]).

use crate::hash::HashSet;
use crate::ir::{self, alias, Body, Expr, IrType, Var};
use crate::loops::LVar;

// Note [Ownership and in-place updates]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// `UpdateAt` consumes its array (Note [Consumed arrays] in ir/mod.rs): the AD
// pass guarantees the *variable* is dead afterwards, not that no other
// variable shares its buffer. Lowering tracks, per array value, whether its
// buffer is owned (`Own::Fresh`): allocated in this call and reachable
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

// Note [Why ownership is decided while lowering]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Memory planning of loops (`buffers.rs`, `pack.rs`) runs on the loop IR,
// after lowering; the in-place rules do not, for two reasons (issue #12).
// - On the loop IR the question is not answerable cheaply. "No variable read
//   later reaches this buffer" needs, at each write, which pointer
//   variables may hold the buffer *then*; the loop IR reassigns pointer
//   variables (loop state, a branch's result, a lazily allocated result)
//   and `opt/alias.rs` answers flow-insensitively, one target for every
//   buffer an allocation in a loop makes — so an accumulator and its
//   previous iteration's buffer are one target, and it could not show
//   that updating loop state in place is safe.
// - Before lowering, on the array IR, values are immutable and uses are
//   counted, which is what the rules need; but a decision recorded per
//   statement there would be shared by every place a statement list is
//   lowered (Note [Shared statement lists] in ir/shared.rs),
//   each with different later uses, and freshness would have to repeat
//   lowering's choice of representation for every expression.
// Lowering walks the statements in order with the remaining uses counted
// and knows each value's representation, so it asks the rules here at
// every write, and the `lowered` stage prints the outcome: a copy is an
// `alloc` named `copy` followed by a `Copy`.

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

/// The buffers (by the variable that points to them) that more than one of
/// `ptrs` holds, which no loop parameter may then update in place: updating
/// one would change the other.
pub fn shared_buffers(ptrs: impl IntoIterator<Item = Option<LVar>>) -> HashSet<Option<LVar>> {
    let mut seen = HashSet::default();
    let mut shared = HashSet::default();
    for p in ptrs {
        if !seen.insert(p) {
            shared.insert(p);
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
