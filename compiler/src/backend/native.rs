//! The native back ends: the loop IR compiled by Cranelift.
//!
//! Input: an optimised program. Output: native code in memory, run on the
//! calling thread ([`Sequential`]) or with its parallel loops on the
//! runtime's thread pool ([`Multicore`]). Both run the same passes —
//! the parallel level (`driver::SEGMENTS`), the ownership plan
//! (`driver::OWNERSHIP`), lowering to loops (`driver::LOWER`), then the loop passes ([`LOOP_PASSES`]: the loops'
//! buffers, the loop optimiser, `min`/`max` strands, memory planning), then
//! Cranelift (`driver::CLIF`) — and the multicore back end outlines parallel
//! loops after the loop optimiser (`driver::PARALLEL`, the one loop pass the
//! sequential back end skips). Every pass is guarded: a panic is E0900
//! naming it, at the context's span.

use super::{Backend, Executable, Outcome};
use crate::diagnostic::{Diagnostic, SourceMap, Span};
use crate::driver::{self, Context};
use crate::{ir, jit, loops};
use slope_runtime::failure::RuntimeError;
use slope_runtime::Value;

/// Native code, every loop on the calling thread.
pub struct Sequential;

/// Native code with loops of independent iterations on the thread pool.
pub struct Multicore;

/// A program compiled by one of the native back ends: the code, and no loop
/// program — `emit` and `slope build` compute the one they show or compile
/// afresh ([`loop_stage`]), so a compiled program does not keep three
/// copies of its loops for a printout nobody may ask for.
pub struct NativeCode {
    pub code: jit::Native,
    /// Time of each back-end pass (the loop optimiser's by its sub-passes).
    pub timings: Vec<(&'static str, std::time::Duration)>,
}

impl Backend for Sequential {
    type Executable = NativeCode;
    const NAME: &'static str = "sequential";

    fn compile(program: &ir::Program, cx: &mut Context<'_>) -> Result<NativeCode, Vec<Diagnostic>> {
        let mut loops = lowered(program, cx)?;
        for pass in loop_passes(false) {
            cx.rewrite_guarded(pass, &mut loops)?;
        }
        let code = cx.run_guarded(&driver::CLIF, &loops)?;
        Ok(NativeCode { code, timings: std::mem::take(&mut cx.timings) })
    }
}

impl Backend for Multicore {
    type Executable = NativeCode;
    const NAME: &'static str = "multicore";

    fn compile(program: &ir::Program, cx: &mut Context<'_>) -> Result<NativeCode, Vec<Diagnostic>> {
        let planned = loop_stage(program, driver::MEMORY.name, cx)?;
        let code = cx.run_guarded(&driver::CLIF, &planned)?;
        let timings = std::mem::take(&mut cx.timings);
        Ok(NativeCode { code, timings })
    }
}

/// The multicore back end's passes from one loop program to the next, in
/// order; the sequential back end runs them all but `parallel`.
pub const LOOP_PASSES: [&driver::Rewrite<loops::Program>; 5] =
    [&driver::BUFFERS, &driver::LOOPS, &driver::PARALLEL, &driver::STRANDS, &driver::MEMORY];

/// The loop passes of the multicore back end, or of the sequential one.
fn loop_passes(multicore: bool) -> impl Iterator<Item = &'static driver::Rewrite<loops::Program>> {
    LOOP_PASSES.into_iter().filter(move |p| multicore || p.name != driver::PARALLEL.name)
}

/// The optimised program as the parallel level decides it and lowering
/// writes it: the first loop program.
fn lowered(program: &ir::Program, cx: &mut Context<'_>) -> Result<loops::Program, Vec<Diagnostic>> {
    let segments = cx.run_guarded(&driver::SEGMENTS, program)?;
    let owned = cx.run_guarded(&driver::OWNERSHIP, &segments)?;
    cx.run_guarded(&driver::LOWER, &owned)
}

/// Whether `stage` names a loop program or the CLIF made from one (what
/// [`loop_stage`] and `emit` show).
pub fn is_loop_stage(stage: &str) -> bool {
    [driver::LOWER.name, driver::CLIF.name].contains(&stage) || LOOP_PASSES.iter().any(|p| p.name == stage)
}

/// The multicore back end's loop program after the pass named `stage`
/// (`lowered` or one of [`LOOP_PASSES`], as `emit --stage` names them):
/// after `memory`, what the multicore JIT compiles and what `slope build`
/// compiles ahead of time.
pub fn loop_stage(program: &ir::Program, stage: &str, cx: &mut Context<'_>) -> Result<loops::Program, Vec<Diagnostic>> {
    let mut loops = lowered(program, cx)?;
    if stage == driver::LOWER.name {
        return Ok(loops);
    }
    for pass in loop_passes(true) {
        cx.rewrite_guarded(pass, &mut loops)?;
        if stage == pass.name {
            break;
        }
    }
    Ok(loops)
}

impl NativeCode {
    /// Compiles an optimised program on the multicore back end, failures
    /// pointing at `span` (the REPL builds its expressions through this,
    /// with `poll_interrupt` so that Ctrl-C stops a long loop).
    pub fn build(ir: &ir::Program, span: Span, options: driver::Options) -> Result<NativeCode, Diagnostic> {
        let mut cx = context(span, options);
        Multicore::compile(ir, &mut cx).map_err(|mut ds| ds.remove(0))
    }
}

/// The driver context a back end runs in when no files are involved:
/// failures point at `span`; the back-end passes read `options`.
pub fn context(span: Span, options: driver::Options) -> Context<'static> {
    let mut cx = Context::new(SourceMap::new(), &driver::no_files, options);
    cx.span = span;
    cx
}

impl Executable for NativeCode {
    fn call(
        &self,
        entry: &str,
        args: &[Value],
        while_limit: u64,
        clock: &mut dyn FnMut() -> u64,
    ) -> Result<Outcome, RuntimeError> {
        let (results, nanoseconds) = self.code.call_timed(entry, args, while_limit, clock)?;
        Ok(Outcome { results, cost: None, nanoseconds })
    }
}
