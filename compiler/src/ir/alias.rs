//! Consumption and aliasing of arrays: the one analysis that the optimiser,
//! AD, lowering and the interpreter ask (Note [Consumed arrays] in ir/mod.rs).
//!
//! Input: IR expressions and bodies. Output: answers to four questions.
//! - What does a statement consume ([`consumed`]): the array an `UpdateAt`
//!   may overwrite. The optimiser must not move a read of it past the update
//!   nor merge it with another variable (`opt::strategy::Cx::is_consumed`);
//!   the interpreter takes it out of its slot.
//! - What does a statement's result share a buffer with ([`aliased`]):
//!   `x2 = x`, `opaque x`, `flatten x`, `unflatten x …`.
//! - Does a body update a variable, or an alias of it, in place
//!   ([`updates_in_place`]): lowering's test for a loop parameter that
//!   must own its buffer.
//! - Which variables are read for the last time at each statement of a body
//!   ([`last_uses`]): the interpreter drops them there, so that an update of
//!   an alias finds its buffer unshared.
//!
//! And one rule for code that runs again — AD's recomputed scopes and
//! renamed copies: an update of an array the code must not consume goes
//! through a fresh alias ([`update_through_alias`]), which lowering copies
//! only when the original is still read afterwards (Note [Ownership and
//! in-place updates] in ownership/mod.rs).
//!
//! Invariant: these are the only places that list which expressions consume
//! or alias an array; a new expression that does either is added here.

use super::{Atom, Body, Expr, Stmt, Var, VarTable};
use crate::hash::{HashMap, HashSet};

/// The array `e` consumes: the one an `UpdateAt` overwrites.
pub fn consumed(e: &Expr) -> Option<Var> {
    match e {
        Expr::UpdateAt { array, .. } => Some(*array),
        _ => None,
    }
}

/// The array whose buffer the result of `e` shares (a copy of the variable,
/// `opaque`, or a reshape), if any.
pub fn aliased(e: &Expr) -> Option<Var> {
    match e {
        Expr::Atom(Atom::Var(x)) | Expr::Opaque(Atom::Var(x)) | Expr::Flatten(x) | Expr::Unflatten { array: x, .. } => {
            Some(*x)
        }
        _ => None,
    }
}

/// Whether `b` (at any depth) may write `p`'s buffer in place: an update of
/// `p` or of an alias of it, `p` as the destination of a `scatter` or
/// `hist` (which lowering may run in place), or `p` passed as the initial
/// state of a loop that does so to its parameter.
pub fn updates_in_place(b: &Body, p: Var) -> bool {
    fn go(b: &Body, names: &mut HashSet<Var>) -> bool {
        b.stmts.iter().any(|s| match &s.expr {
            e if aliased(e).is_some_and(|x| names.contains(&x)) => {
                names.extend(s.binds.iter().copied());
                false
            }
            e if consumed(e).is_some_and(|x| names.contains(&x)) => true,
            Expr::Loop { params, init, body, .. }
                if params
                    .iter()
                    .zip(init)
                    .any(|(&q, a)| a.var().is_some_and(|x| names.contains(&x)) && updates_in_place(body, q)) =>
            {
                true
            }
            Expr::Scatter { dest, .. } | Expr::Hist { dest, .. } if names.contains(dest) => true,
            e => e.bodies().iter().any(|b| go(b, names)),
        })
    }
    go(b, &mut HashSet::from_iter([p]))
}

/// For the variables among `candidates` that `body` reads but does not
/// return, the statement that reads each last (nested bodies count as
/// their statement), as (statement, variable) pairs in statement order.
pub fn last_uses(body: &Body, candidates: &[Var]) -> Vec<(usize, Var)> {
    if candidates.is_empty() {
        return Vec::new();
    }
    let mut last: HashMap<Var, usize> = HashMap::default();
    for (k, stmt) in body.stmts.iter().enumerate() {
        super::scope::for_each_use_in(std::slice::from_ref(stmt), &mut |v| {
            if candidates.contains(&v) {
                last.insert(v, k);
            }
        });
    }
    let mut out: Vec<(usize, Var)> =
        last.into_iter().filter(|(v, _)| !body.result.contains(&Atom::Var(*v))).map(|(v, k)| (k, v)).collect();
    out.sort();
    out
}

/// Points the update `s` consumes at a fresh alias of its array and returns
/// the statement binding the alias, to go before `s`; `None` when `s`
/// consumes nothing. For code that runs again and must leave the array as
/// it found it (Note [Renaming consumed arrays] in ir/scope.rs, Note
/// [Consumption in the forward sweep] in ad/rev.rs).
pub fn update_through_alias(vars: &mut VarTable, s: &mut Stmt) -> Option<Stmt> {
    let Expr::UpdateAt { array, .. } = &mut s.expr else { return None };
    let copy = vars.fresh("copy", vars.ty(*array));
    let alias = Stmt { binds: vec![copy], expr: Expr::Atom(Atom::Var(*array)), span: s.span };
    *array = copy;
    Some(alias)
}
