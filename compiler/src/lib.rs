//! The Slope compiler as a library: no I/O, never exits the process.
//!
//! See `ARCHITECTURE.md` for the pipeline.
//!
//! **The public surface** is what a program embedding Slope needs:
//! - [`api`]: compile a program ([`api::Program::compile`]), call its
//!   entries (JSON or runtime [`values`]), print a stage (`emit`);
//! - [`backend`]: the three back ends and the [`backend::Engine`] that names
//!   them;
//! - [`driver`]: compiler options and source loaders;
//! - [`diagnostic`]: errors with stable codes and spans, rendered;
//! - [`values`]: between runtime values and the language's types;
//! - [`build`]: ahead-of-time C libraries (`slope build`);
//! - [`gradcheck`] and [`testfile`]: checking derivatives and running test
//!   programs (`slope gradcheck`, `slope test`).
//!
//! The passes and their IRs (`syntax`, `types`, `elab`, `ir`, `ad`, `opt`,
//! `loops`, `jit`, …) are public only so that the workspace's own tests,
//! fuzzer, REPL and tools can reach them; they are hidden from the
//! documentation and are not an interface: they change with the compiler.

// Errors are `Diagnostic`s (a few hundred bytes): they are returned on the
// cold path only, so boxing them would buy nothing but noise.
#![allow(clippy::result_large_err)]

#[doc(hidden)]
pub mod ad;
pub mod api;
pub mod backend;
pub mod build;
pub mod diagnostic;
pub mod driver;
#[doc(hidden)]
pub mod elab;
pub mod gradcheck;
mod hash;
#[doc(hidden)]
pub mod ir;
#[doc(hidden)]
pub mod jit;
#[doc(hidden)]
pub mod loops;
#[doc(hidden)]
pub mod opt;
#[doc(hidden)]
pub mod prims;
#[doc(hidden)]
pub mod stdlib;
#[doc(hidden)]
pub mod syntax;
#[doc(hidden)]
pub mod tapes;
pub mod testfile;
mod threads;
#[doc(hidden)]
pub mod types;
pub mod values;
