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
//! `loops`, `jit`, …) are not an interface: they change with the compiler.
//! They are public only with the `internals` feature, which the workspace's
//! own CLI (the REPL, `emit`), tests and fuzzer turn on; without it (the
//! Python module, the C API, any embedding crate) they are private, and the
//! surface above is all there is.

// Errors are `Diagnostic`s (a few hundred bytes): they are returned on the
// cold path only, so boxing them would buy nothing but noise.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod backend;
pub mod build;
pub mod diagnostic;
pub mod driver;
pub mod gradcheck;
mod hash;
pub mod testfile;
mod threads;
pub mod values;

/// The passes and IRs: public with the `internals` feature (the workspace's
/// CLI, tests and fuzzer), private to the crate otherwise — so a crate that
/// embeds Slope (the Python module, the C API) can only use the public
/// surface above (this module's header).
macro_rules! internal_modules {
    ($($name:ident),* $(,)?) => {$(
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        pub mod $name;
        #[cfg(not(feature = "internals"))]
        #[allow(dead_code, unused_imports)]
        mod $name;
    )*};
}

internal_modules!(ad, elab, ir, jit, loops, opt, ownership, prims, segments, stdlib, syntax, tapes, types);
