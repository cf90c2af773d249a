//! The hash maps and sets of the compiler's passes.
//!
//! Their keys are small integers (variables, statement indices, block
//! numbers) or short tuples of them, hashed millions of times per compile:
//! FxHash (the `rustc-hash` crate, the hasher of `rustc` itself) hashes one
//! in a few instructions, where `std`'s SipHash was a tenth of ht's compile
//! time. No pass may depend on iteration order (none did under SipHash's
//! per-process random order either); Fx's order is at least the same from
//! run to run.

pub use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
