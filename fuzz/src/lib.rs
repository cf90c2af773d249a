//! `slope-fuzz`: the project's own fuzzer (issue 18; `docs/fuzzing.md`).
//!
//! A seeded mutation fuzzer — coverage-guided fuzzers (cargo-fuzz, afl.rs)
//! need a nightly toolchain or their own compiler wrappers, and this
//! workspace builds on stable Rust. It mutates the test programs, examples,
//! stdlib and fixture inputs of the repository and runs them against four
//! targets (`targets/`): the front end (`check`), the whole pipeline to
//! native code (`native`), the JIT against the interpreter on random
//! arguments (`engines`), and entry-input decoding, JSON and `.npy`
//! (`decode`).
//!
//! The pieces, in the order a case meets them: [`corpus`] (seeds read from
//! the workspace), [`rng`] and [`mutate`] (case `i` of a run is a function
//! of the seed and `i`), [`case`] (cases and their files), [`inputs`]
//! (arguments from an entry's signature), [`targets`] (running a case; what
//! a finding is), [`panics`] (panics caught quietly). Then how cases are
//! run: by the [`supervisor`] driving [`worker`] processes, which survives
//! aborts and stack overflows and detects hangs (for `slope-fuzz` and the
//! bounded test in `tests/bounded.rs`), or [`local`]ly, one saved case in
//! this process (`slope-fuzz replay`); [`report`] counts and saves.

pub mod case;
pub mod corpus;
pub mod inputs;
pub mod local;
pub mod mutate;
pub mod panics;
pub mod report;
pub mod rng;
pub mod supervisor;
pub mod targets;
pub mod worker;
