//! Back ends: what turns the optimised array IR into something that runs
//! calls of its entry points.
//!
//! Input: an optimised, verified `ir::Program` and the driver's
//! [`Context`] (options, where a failure points, pass timings). Output: an
//! [`Executable`], which runs an entry on its argument leaves and returns
//! the result leaves, or a [`RuntimeError`] with the code, message and
//! span every back end words alike.
//!
//! There are three, one [`Backend`] each:
//! - [`Interpreter`] (`interpreter.rs`): the reference interpreter
//!   (`ir::interp`), run on the IR itself. It also reports operation counts.
//! - [`Sequential`] (`native.rs`): lower to loops, optimise them, compile
//!   with Cranelift; every loop runs on the calling thread.
//! - [`Multicore`] (`native.rs`, the default): the same, with loops of
//!   independent iterations outlined into segments the runtime's thread
//!   pool runs (`loops::parallel`).
//!
//! Values cross the boundary as the runtime's [`Value`]s, one per parameter
//! leaf (tuples and records flattened, in order: `values::flatten`), and
//! run-time errors are the runtime's [`RuntimeError`]; so no back end
//! depends on another's types. The differential tests run every test
//! program and random program on all three (Note [Three back ends]).
//!
//! Adding a back end: a type implementing [`Backend`] with its
//! [`Executable`], an [`Engine`] naming it, and the line in
//! `api::Program::executable` that builds it on first use.

mod interpreter;
pub mod native;

pub use interpreter::{Interpreted, Interpreter};
pub use native::{Multicore, NativeCode, Sequential};

use crate::diagnostic::Diagnostic;
use crate::driver::Context;
use crate::ir;
use crate::ir::interp::Cost;
use slope_runtime::failure::RuntimeError;
use slope_runtime::Value;

// Note [Three back ends]
// ~~~~~~~~~~~~~~~~~~~~~~
// The interpreter is the ground truth; the sequential back end is native
// code without threads; the multicore back end is native code with the
// parallel loops outlined. The last two share lowering and the loop
// optimiser, and differ in one pass (`driver::PARALLEL`) and in the
// runtime's scheduling: a segment runs its chunks on the pool, or inline
// when it is small (docs/native.md, "All the cores"). Results are the same
// on all three — the chunking of reductions is fixed by size, never by the
// number of threads (Note [Deterministic chunks] in
// `slope_runtime::parallel`) — and so are failures: code, span and message
// (the first failure in index order). `testfile::check_case` and the random
// programs compare the three on every case; `tests/tests/threads.rs`
// compares thread counts.

/// A back end: compiles an optimised program into an executable.
pub trait Backend {
    /// What the back end compiles a program into.
    type Executable: Executable;
    /// Its name, as `--engine` spells it.
    const NAME: &'static str;
    /// Compiles `program`; a failure is a bug in Slope (E0900) at `cx.span`.
    fn compile(program: &ir::Program, cx: &mut Context<'_>) -> Result<Self::Executable, Vec<Diagnostic>>;
}

/// A compiled program: runs calls of its entry points, from any number of
/// threads at once.
pub trait Executable: Send + Sync {
    /// Runs `entry` on `args` (a scalar or an array per parameter leaf), and
    /// fails `while` loops after `while_limit` iterations (E0205). The
    /// outcome's `nanoseconds` are `clock`'s measure of the computation
    /// alone, without handing arguments in or results out.
    fn call(
        &self,
        entry: &str,
        args: &[Value],
        while_limit: u64,
        clock: &mut dyn FnMut() -> u64,
    ) -> Result<Outcome, RuntimeError>;
}

/// What a call returns.
#[derive(Debug)]
pub struct Outcome {
    /// A scalar or an array per result leaf.
    pub results: Vec<Value>,
    /// Operation counts, from back ends that count them (the interpreter).
    pub cost: Option<Cost>,
    /// How long the computation took, as the caller's clock measures it.
    pub nanoseconds: u64,
}

/// Which back end runs an entry point's calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Engine {
    /// The reference interpreter ([`Interpreter`]).
    Interp,
    /// Native code on the calling thread ([`Sequential`]).
    Sequential,
    /// Native code with parallel loops on the thread pool ([`Multicore`], the default).
    Multicore,
}

impl Engine {
    /// Every engine, in the order the differential tests run them.
    pub const ALL: [Engine; 3] = [Engine::Multicore, Engine::Sequential, Engine::Interp];

    /// The name `--engine` takes.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Interp => Interpreter::NAME,
            Engine::Sequential => Sequential::NAME,
            Engine::Multicore => Multicore::NAME,
        }
    }

    /// The engine `--engine NAME` names.
    pub fn parse(name: &str) -> Option<Engine> {
        Engine::ALL.into_iter().find(|e| e.name() == name)
    }

    /// What runs the calls, for reports (`slope bench`).
    pub fn description(self) -> &'static str {
        match self {
            Engine::Interp => "reference interpreter",
            Engine::Sequential => "native code on one thread (Cranelift JIT)",
            Engine::Multicore => "native code (Cranelift JIT)",
        }
    }
}
