//! The Slope compiler as a library: no I/O, never exits the process.
//!
//! See `ARCHITECTURE.md` for the pipeline. Entry points: [`api`] (compile a
//! program, call its entries), [`driver`] (the passes), [`backend`] (the
//! interpreter and the native back ends).

// Errors are `Diagnostic`s (a few hundred bytes): they are returned on the
// cold path only, so boxing them would buy nothing but noise.
#![allow(clippy::result_large_err)]

pub mod ad;
pub mod api;
pub mod backend;
pub mod build;
pub mod diagnostic;
pub mod driver;
pub mod elab;
pub mod gradcheck;
pub mod hash;
pub mod ir;
pub mod jit;
pub mod loops;
pub mod opt;
pub mod prims;
pub mod stdlib;
pub mod syntax;
pub mod tapes;
pub mod testfile;
pub mod threads;
pub mod types;
pub mod values;
