//! The optimiser: rewrite strategies over the IR (ELEVATE-style), run after AD.
//!
//! Input: an AD-free, verified [`ir::Program`] and a schedule in the strategy
//! language (`schedule.rs`). Output: an equivalent program (Note [What may
//! move] in `rules.rs`) that verifies, or a message saying which strategy
//! failed or ran out of fuel.
//!
//! - `strategy.rs`: the combinators and the engine (terms are bodies);
//! - `rules.rs`: the rule library, each rule with its side conditions;
//! - `accumulate.rs`: rows added into loop state in place (Note [Accumulated
//!   rows]);
//! - `hoist.rs`: hoisting with expansion (Note [Hoisting with expansion]);
//! - `branches.rs`: what both branches of an `if` begin with runs before it
//!   (Note [Common code of two branches]);
//! - `guards.rs`: what a statement may fail on, and the checks a rule leaves
//!   behind when it removes one (Note [Guards]);
//! - `schedule.rs`: the textual strategy language;
//! - `walk.rs`: traversal, use counting and substitution helpers.

pub mod accumulate;
pub mod branches;
pub mod guards;
pub mod hoist;
pub mod onehot;
pub mod permutation;
pub mod rules;
pub mod schedule;
pub mod strategy;
pub mod walk;

#[cfg(test)]
mod tests;

use crate::ir;

/// The default clean-up after AD. See Note [The default schedule].
pub const DEFAULT_SCHEDULE: &str = "\
normalize(copy_prop <+ dce <+ fold <+ ring <+ simplify_if <+ hoist_common <+ index_pull <+ shape_pull <+ map_replicate_arg <+ map_identity <+ dead_loop_state) ; \
try(cse) ; \
normalize(copy_prop <+ dce <+ fold <+ ring <+ simplify_if <+ hoist_common <+ index_pull <+ shape_pull <+ map_replicate_arg <+ map_identity <+ fuse_map_map <+ loop_fission <+ reduce_fission <+ if_to_select <+ select_float <+ onehot_sum <+ iota_bounds <+ map_index_slice <+ slice_full <+ licm <+ dead_loop_state <+ permutation_store) ; \
try(cse) ; \
normalize(hoist_guarded) ; \
try(cse) ; \
normalize(hoist_costly) ; \
normalize(copy_prop <+ dce <+ ring <+ map_identity <+ licm <+ sink_reduce <+ reduce_empty <+ fuse_map_reduce <+ fuse_map_map <+ dead_loop_state <+ accumulate_rows) ; \
try(cse) ; \
normalize(copy_prop <+ dce <+ dead_loop_state)";

/// Fuel when the schedule names none: rule applications plus repeat rounds.
pub const DEFAULT_FUEL: u64 = 10_000_000;

/// What went wrong running a schedule.
#[derive(Clone, Debug, PartialEq)]
pub enum OptError {
    Parse(schedule::ScheduleError),
    /// The strategy failed (or ran out of fuel) on the named function.
    Stopped {
        func: String,
        stop: strategy::Stop,
    },
}

impl std::fmt::Display for OptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptError::Parse(e) => write!(f, "invalid schedule: {e}"),
            OptError::Stopped { func, stop: strategy::Stop::Failed(s) } => {
                write!(f, "the schedule failed on `{func}`: `{s}` did not apply")
            }
            OptError::Stopped { func, stop: strategy::Stop::OutOfFuel(s) } => {
                write!(f, "the optimiser ran out of fuel on `{func}` in `{s}`")
            }
        }
    }
}

/// Runs the schedule `text` on a copy of `program`.
pub fn optimise(program: &ir::Program, text: &str) -> Result<ir::Program, OptError> {
    let sched = schedule::parse(text).map_err(OptError::Parse)?;
    let mut out = program.clone();
    strategy::run_program(&mut out, &sched.strategy, sched.fuel.unwrap_or(DEFAULT_FUEL), Default::default())
        .map_err(|(func, stop)| OptError::Stopped { func, stop })?;
    Ok(out)
}

// Note [The default schedule]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Order matters, which is why this is a schedule and not one big normalize:
// 1. Simplify first (copy propagation, dead code, folding, ring identities,
//    pull-array rules): the AD output is full of parameter copies, `* 1.0`,
//    replicated seeds and shapes of intermediate arrays, and removing them
//    exposes identity maps and kills the primal work the derivative does not
//    need.
// 2. CSE once the copies are gone (it compares operands textually), so that
//    the sizes AD re-reads (`shape x 0` again and again) and repeated checks
//    collapse.
// 3. Fuse maps and hoist invariants only on the simplified program: fusion
//    requires single use, which dead-code elimination establishes, and LICM
//    should not hoist statements that simplification would delete.
// 4. A final CSE and clean-up for what fusion and hoisting exposed; the
//    fusions leave the fused producer's size checks behind as guards
//    (Note [Guards]), and CSE merges those with the checks already there.
// Every phase is a normalize or a try, so the schedule never fails.
