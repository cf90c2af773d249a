//! The loop optimiser: passes over the loop IR, between lowering and code
//! generation.
//!
//! Input: a [`Func`] as lowering leaves it — one loop per combinator, a
//! bounds check before every load whose index lowering could not prove, a
//! branch per element where the program tests its index. Output: the same
//! function, computing the same values and failing with the same errors at
//! the same points, with less work per element.
//!
//! The passes ([`PASSES`]; `slope emit --stage loops` prints the result,
//! `--stage lowered` the input), in the order `simplify`, `unroll`,
//! `ranges`, `fuse`, `split`, `simplify`, `ranges`, `fuse`, `simplify`,
//! `scalarize`, `simplify`, `simd` (`fuse` runs before `split` too: a loop
//! that tests its index, such as an RK4 right-hand side, fuses with the map
//! after it while both still run over the same range, and the fused loop is
//! then split as one):
//! - `simplify` ([`simplify`]): copy propagation, constant folding, constant
//!   branches, dead code and empty loops;
//! - `unroll` ([`unroll`]): loops of at most four iterations with constant
//!   bounds are written out once per iteration (Note [Unrolling short loops]);
//! - `ranges` ([`checks`]): range analysis over affine index expressions;
//!   a bounds or size check it proves disappears, and so does a comparison,
//!   `min` or `max` it decides (Note [Range analysis]);
//! - `split` ([`split`]): index-set splitting — a loop whose body branches on
//!   a comparison of its index with a loop-invariant value becomes
//!   consecutive loops over the index ranges where the comparison is
//!   constant (Note [Index-set splitting]);
//! - `scalarize` ([`scalarize`]): a buffer of a few elements only ever
//!   accessed at constant indices becomes one variable per element (Note
//!   [Small buffers as variables]);
//! - `fuse` ([`fuse`]): consecutive loops over the same range become one,
//!   a load of the element just stored is the stored value, and a buffer
//!   nothing reads is not written (Note [Loop fusion]);
//! - `simd` ([`simd`]): innermost loops whose iterations are independent
//!   and lane-wise run two at a time in vector registers (Note [Vector loops]).
//!
//! Invariants every pass keeps (the verifier runs after each in debug
//! builds): the lowering's (every load and store in bounds, proved or
//! checked first; divisors checked before dividing; every variable assigned
//! before it is read); the order of the observable events of a call —
//! failures and the values of results — is unchanged.

pub mod affine;
pub mod alias;
pub mod checks;
pub mod edges;
pub mod fuse;
pub mod scalarize;
pub mod simd;
pub mod simplify;
pub mod split;
pub mod unroll;

use super::Func;

/// A pass over one function of the loop IR.
pub struct Pass {
    pub name: &'static str,
    pub description: &'static str,
    pub run: fn(&mut Func),
}

/// The loop optimiser's pipeline, in order.
pub static PASSES: &[Pass] = &[
    Pass {
        name: "simplify",
        description: "copy propagation, constant folding, constant branches, dead code, empty loops",
        run: simplify::run,
    },
    Pass {
        name: "unroll",
        description: "write loops of at most four iterations with constant bounds out, once per iteration",
        run: unroll::run,
    },
    Pass {
        name: "ranges",
        description: "remove the checks range analysis proves; fold the comparisons, min and max it decides",
        run: checks::run,
    },
    Pass {
        name: "fuse",
        description: "fuse consecutive loops over the same range; forward stores to loads; drop unread buffers",
        run: fuse::run,
    },
    Pass {
        name: "split",
        description: "split loops whose body branches on the index into loops without the branch",
        run: split::run,
    },
    Pass {
        name: "simplify",
        description: "copy propagation, constant folding, constant branches, dead code, empty loops",
        run: simplify::run,
    },
    Pass {
        name: "ranges",
        description: "remove the checks range analysis proves; fold the comparisons, min and max it decides",
        run: checks::run,
    },
    Pass {
        name: "fuse",
        description: "fuse consecutive loops over the same range; forward stores to loads; drop unread buffers",
        run: fuse::run,
    },
    Pass {
        name: "simplify",
        description: "copy propagation, constant folding, constant branches, dead code, empty loops",
        run: simplify::run,
    },
    Pass {
        name: "scalarize",
        description: "replace small buffers accessed only at constant indices by one variable per element",
        run: scalarize::run,
    },
    Pass {
        name: "simplify",
        description: "copy propagation, constant folding, constant branches, dead code, empty loops",
        run: simplify::run,
    },
    Pass {
        name: "simd",
        description: "run innermost loops of independent f64 iterations two at a time (f64x2)",
        run: simd::run,
    },
];

/// Runs the pipeline on `f`, verifying after every pass in debug builds;
/// adds the time of each pass to `timings` (by pass name).
/// Adds `took` to the time of `pass` in `timings` (a pass run on several
/// functions is listed once, with their sum).
pub fn add_time(timings: &mut Vec<(&'static str, std::time::Duration)>, pass: &'static str, took: std::time::Duration) {
    match timings.iter_mut().find(|(n, _)| *n == pass) {
        Some((_, t)) => *t += took,
        None => timings.push((pass, took)),
    }
}

pub fn optimise(f: &mut Func, timings: &mut Vec<(&'static str, std::time::Duration)>) -> Result<(), String> {
    for pass in PASSES {
        let start = std::time::Instant::now();
        (pass.run)(f);
        add_time(timings, pass.name, start.elapsed());
        if cfg!(debug_assertions) {
            super::verify::verify_func(f).map_err(|e| format!("after loop pass `{}`: {e}", pass.name))?;
        }
    }
    Ok(())
}
