//! Mutators: seed in, something slightly (or very) wrong out.
//!
//! `tokens` splits program text into spans worth editing; `program` mutates
//! programs (wild for the front end, gentle for the back end); `json` and
//! `npy` make entry inputs. Every mutator is a function of its inputs and the
//! case's [`crate::rng::Rng`], so a case can always be generated again.

pub mod json;
pub mod npy;
pub mod program;
pub mod tokens;
