//! The interpreter as a back end.
//!
//! Input: an optimised program. Output: an [`Interpreted`] program that runs
//! calls with `ir::interp` on its own copy of the IR and reports their
//! operation counts (the cost model of `slope cost` and of the
//! cheap-gradient tests). Nothing is compiled: this is the reference the
//! native back ends are tested against.

use super::{Backend, Executable, Outcome};
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::driver::Context;
use crate::ir::{self, interp};
use slope_runtime::failure::RuntimeError;
use slope_runtime::Value;

/// The reference interpreter.
pub struct Interpreter;

/// A program the interpreter runs.
pub struct Interpreted {
    program: ir::Program,
    /// Whether calls stop at Ctrl-C (E0208), as native code compiled for the REPL does.
    poll_interrupt: bool,
}

impl Backend for Interpreter {
    type Executable = Interpreted;
    const NAME: &'static str = "interp";

    fn compile(program: &ir::Program, cx: &mut Context<'_>) -> Result<Interpreted, Vec<Diagnostic>> {
        Ok(Interpreted { program: program.clone(), poll_interrupt: cx.options.poll_interrupt })
    }
}

impl Executable for Interpreted {
    fn call(
        &self,
        entry: &str,
        args: &[Value],
        while_limit: u64,
        clock: &mut dyn FnMut() -> u64,
    ) -> Result<Outcome, RuntimeError> {
        let leaf = |v: &Value| {
            interp::Val::from_value(v).ok_or_else(|| RuntimeError {
                code: Code::E0302,
                message: format!("the arguments of `{entry}` are flattened: a tuple or record is not one"),
                span: Span::default(),
            })
        };
        let args = args.iter().map(leaf).collect::<Result<Vec<_>, _>>()?;
        let options = interp::Options { while_limit, poll_interrupt: self.poll_interrupt };
        let start = clock();
        let (results, cost) = interp::run(&self.program, entry, args, &options)?;
        let nanoseconds = clock().saturating_sub(start);
        Ok(Outcome { results: results.iter().map(interp::Val::to_value).collect(), cost: Some(cost), nanoseconds })
    }
}
