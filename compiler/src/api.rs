//! The library API: compile a source, look up an entry point, call it on
//! values. The CLI, the REPL, the test suite and benchmarks all go through it.
//!
//! No I/O happens here: imports other than the stdlib come through the
//! caller's [`Loader`], and values arrive as JSON or as arrays the caller
//! has read (e.g. from `.npy` files). Calls run as native code unless
//! [`Program::engine`] says otherwise.
//!
//! ```
//! use slope::api::{Arg, Program};
//! use slope_runtime::{Array, ArrayData};
//!
//! let src = "entry norm2 [n] (xs: [n]f64) : f64 = sum (map (\\x -> x * x) xs)\n\
//!            entry slope [n] (xs: [n]f64) : [n]f64 = grad norm2 xs";
//! let program = Program::compile("example.slope", src, &slope::driver::no_files).unwrap();
//! let xs = Array::new(vec![3], ArrayData::F64(vec![1.0, 2.0, 3.0]));
//! let g = program.call("slope", vec![Arg::Array(xs)]).unwrap();
//! assert_eq!(program.encode_result("slope", &g).unwrap(), serde_json::json!([2.0, 4.0, 6.0]));
//! ```

use crate::diagnostic::{render, Code, Diagnostic, RenderStyle, SourceMap, Span};
use crate::driver::{self, Loader};
use crate::ir::{self, interp};
use crate::types::{CheckedProgram, Type};
use crate::values;
use serde_json::value::RawValue;
use slope_runtime::{json, Array, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::backend::{native, Backend, Executable, Interpreted, Interpreter, Multicore, Sequential};
pub use crate::backend::{Engine, NativeCode};

/// Diagnostics together with the sources they point into.
#[derive(Clone)]
pub struct Failure {
    pub sources: SourceMap,
    pub diagnostics: Vec<Diagnostic>,
}

impl Failure {
    pub fn render(&self, style: RenderStyle) -> String {
        render(&self.sources, &self.diagnostics, style)
    }
    pub fn codes(&self) -> Vec<Code> {
        self.diagnostics.iter().map(|d| d.code).collect()
    }
}

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render(RenderStyle::Short))
    }
}

/// One argument of an entry point, as the caller has it.
pub enum Arg {
    Json(serde_json::Value),
    /// JSON text, decoded without building a `serde_json::Value`.
    JsonText(String),
    Array(Array),
}

/// The top level of an entry's input: the whole of it, and its fields when
/// it is an object.
struct TopLevel<'a, A> {
    whole: A,
    fields: Option<Vec<(&'a str, A)>>,
}

/// A compiled program.
pub struct Program {
    pub sources: SourceMap,
    /// The main file as parsed (for `emit --stage ast`).
    pub main: crate::syntax::ast::Module,
    pub checked: CheckedProgram,
    /// The IR out of elaboration (`emit --stage ir`).
    pub elaborated: ir::Program,
    /// The IR after the AD pass, before optimisation (`emit --stage ad`).
    pub differentiated: ir::Program,
    /// The IR that runs: after the AD pass and the optimiser (`emit --stage opt`).
    pub ir: ir::Program,
    /// Interpreter settings (the `while` iteration limit; the JIT obeys it too).
    pub options: interp::Options,
    /// The options it was compiled with; its back ends compile with them too
    /// (`reassociate`).
    pub compiled_with: driver::Options,
    /// Which back end runs calls ([`Engine::Multicore`] unless the caller chooses).
    pub engine: Engine,
    /// How long each pass took to compile this program.
    pub timings: Vec<(&'static str, std::time::Duration)>,
    /// Each back end's executable, built on its first call.
    executables: Executables,
}

/// The executables of a program, one per back end, each built on first use.
#[derive(Default)]
struct Executables {
    interpreted: OnceLock<Interpreted>,
    sequential: OnceLock<Result<NativeCode, Diagnostic>>,
    multicore: OnceLock<Result<NativeCode, Diagnostic>>,
}

// A compiled program may be shared between threads and called from several
// at once (Note [Calls from several threads] in `jit`); this fails to compile
// if a field stops being thread-safe.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Program>();
};

impl Program {
    pub fn compile(name: &str, text: &str, loader: &Loader<'_>) -> Result<Program, Failure> {
        Program::compile_with(name, text, loader, &driver::Options::default())
    }

    pub fn compile_with(
        name: &str,
        text: &str,
        loader: &Loader<'_>,
        options: &driver::Options,
    ) -> Result<Program, Failure> {
        let mut sources = SourceMap::new();
        // On a big stack: a deeply nested program must not overflow the caller's.
        let stages = driver::with_stack(|| driver::compile_with(&mut sources, name, text, loader, options));
        match stages {
            Ok(st) => Ok(Program {
                sources,
                main: st.main,
                checked: st.checked,
                elaborated: st.elaborated,
                differentiated: st.differentiated,
                ir: st.optimised,
                options: interp::Options::default(),
                compiled_with: options.clone(),
                engine: Engine::Multicore,
                timings: st.timings,
                executables: Executables::default(),
            }),
            Err(diagnostics) => Err(Failure { sources, diagnostics }),
        }
    }

    /// The same program with the optimiser left out: what runs is the AD
    /// pass's output. The reference for testing the optimiser, which must
    /// keep every value and every failure (Note \[Guards\] in `opt/guards.rs`)
    /// but one: a Jacobian entry next to a non-finite partial, which the raw
    /// output makes NaN and the optimiser does not (Note \[One-hot seeds\] in
    /// `opt/onehot.rs`).
    pub fn without_optimiser(&self) -> Program {
        Program {
            sources: self.sources.clone(),
            main: self.main.clone(),
            checked: self.checked.clone(),
            elaborated: self.elaborated.clone(),
            differentiated: self.differentiated.clone(),
            ir: self.differentiated.clone(),
            options: self.options.clone(),
            compiled_with: self.compiled_with.clone(),
            engine: self.engine,
            timings: Vec::new(),
            executables: Executables::default(),
        }
    }

    /// A program with no definitions (the REPL's starting point).
    pub fn empty(sources: SourceMap) -> Program {
        Program {
            sources,
            main: crate::syntax::ast::Module { items: Vec::new() },
            checked: Default::default(),
            elaborated: Default::default(),
            differentiated: Default::default(),
            ir: Default::default(),
            options: Default::default(),
            compiled_with: Default::default(),
            engine: Engine::Multicore,
            timings: Vec::new(),
            executables: Executables::default(),
        }
    }

    /// The native code of this program (the multicore back end's), lowered
    /// and compiled on first use.
    pub fn native(&self) -> Result<&NativeCode, Failure> {
        self.native_on(Engine::Multicore)
    }

    /// The native code a native engine runs, compiled on first use. The
    /// interpreter compiles none: asking it for native code is E0305.
    pub fn native_on(&self, engine: Engine) -> Result<&NativeCode, Failure> {
        let (cell, compile): (_, fn(&ir::Program, &mut driver::Context<'_>) -> _) = match engine {
            Engine::Sequential => (&self.executables.sequential, Sequential::compile),
            Engine::Multicore => (&self.executables.multicore, Multicore::compile),
            Engine::Interp => {
                let message = "the interpreter compiles no native code: ask the sequential or multicore engine";
                return Err(self.fail(Diagnostic::error(Code::E0305, message, self.main_span(), "for this program")));
            }
        };
        let built = cell.get_or_init(|| {
            let mut cx = native::context(self.first_span(), self.back_end_options(false));
            compile(&self.ir, &mut cx).map_err(|mut ds| ds.remove(0))
        });
        built.as_ref().map_err(|d| self.fail(d.clone()))
    }

    /// What runs calls on `engine`, built on first use.
    pub fn executable(&self, engine: Engine) -> Result<&dyn Executable, Failure> {
        Ok(match engine {
            Engine::Interp => self.executables.interpreted.get_or_init(|| {
                let mut cx = native::context(self.first_span(), self.back_end_options(self.options.poll_interrupt));
                Interpreter::compile(&self.ir, &mut cx)
                    .unwrap_or_else(|_| unreachable!("interpreting compiles nothing"))
            }),
            native => self.native_on(native)?,
        })
    }

    /// The options a back end compiles with: the program's, native code
    /// polling the interrupt flag or not.
    fn back_end_options(&self, poll_interrupt: bool) -> driver::Options {
        driver::Options { poll_interrupt, ..self.compiled_with.clone() }
    }

    /// Where a failure to compile the back end points: the first function.
    fn first_span(&self) -> Span {
        self.ir.funcs.first().map(|f| f.span).unwrap_or_default()
    }

    /// The loop program the multicore back end compiles (`emit --stage
    /// memory`), without compiling it: what `slope build` compiles ahead of
    /// time.
    pub fn native_loops(&self) -> Result<crate::loops::Program, Failure> {
        self.loop_program(driver::MEMORY.name)
    }

    /// The multicore back end's loop program after the pass `stage`
    /// (`lowered`, `loops`, `parallel`, `strands`, `memory`), computed afresh.
    pub fn loop_program(&self, stage: &str) -> Result<crate::loops::Program, Failure> {
        self.loop_program_of(&self.ir, stage)
    }

    fn loop_program_of(&self, ir: &ir::Program, stage: &str) -> Result<crate::loops::Program, Failure> {
        let mut cx = native::context(self.first_span(), self.back_end_options(false));
        native::loop_stage(ir, stage, &mut cx).map_err(|mut ds| self.fail(ds.remove(0)))
    }

    fn fail(&self, d: Diagnostic) -> Failure {
        Failure { sources: self.sources.clone(), diagnostics: vec![d] }
    }

    fn main_span(&self) -> Span {
        Span { file: crate::diagnostic::FileId(0), start: 0, end: 0 }
    }

    /// The entry points, in definition order.
    pub fn entries(&self) -> Vec<&str> {
        self.checked.entries().map(|d| d.name.text.as_str()).collect()
    }

    /// Resolves the entry to run: the named one, else the only one, else `main`.
    pub fn entry_name(&self, name: Option<&str>) -> Result<String, Failure> {
        let entries = self.entries();
        let list = || {
            if entries.is_empty() {
                "the program has no `entry` definitions".to_string()
            } else {
                format!(
                    "the entry points are {}",
                    entries.iter().map(|e| format!("`{e}`")).collect::<Vec<_>>().join(", ")
                )
            }
        };
        match name {
            Some(n) if entries.contains(&n) => Ok(n.to_string()),
            Some(n) => Err(self.fail(
                Diagnostic::error(
                    Code::E0301,
                    format!("no entry point named `{n}`"),
                    self.main_span(),
                    "in this program",
                )
                .with_note(list()),
            )),
            None if entries.len() == 1 => Ok(entries[0].to_string()),
            None if entries.contains(&"main") => Ok("main".into()),
            None => Err(self.fail(
                Diagnostic::error(Code::E0301, "which entry point should run?", self.main_span(), "in this program")
                    .with_note(list())
                    .with_help("name one with `--entry NAME`"),
            )),
        }
    }

    /// The declared parameters (names and surface types, in order) and the
    /// result type of `entry`; E0301 when there is no such entry point.
    pub fn entry_signature(&self, entry: &str) -> Result<&ir::Signature, Failure> {
        self.entry_name(Some(entry))?;
        Ok(self.signature(entry))
    }

    /// An invalid-input failure (E0302) for a call of `entry`, listing its
    /// parameters — what a caller that decodes its own values (the Python
    /// package) reports for a value of the wrong type or shape.
    pub fn invalid_input(&self, entry: &str, message: String) -> Failure {
        self.input_error(message, self.signature(entry))
    }

    fn signature(&self, entry: &str) -> &ir::Signature {
        &self.ir.func(entry).expect("entries are elaborated").signature
    }

    /// Calls an entry with a JSON input: an object mapping parameter names to
    /// values, or a bare value for an entry with one parameter.
    /// Runs native code's parallel loops on `threads` threads (at least 1)
    /// from now on; by default `--threads`, `SLOPE_THREADS` or every core.
    /// Results are the same for every count (docs/native.md, "All the cores").
    pub fn set_threads(&self, threads: usize) -> Result<(), Failure> {
        self.native()?.code.set_threads(threads);
        Ok(())
    }

    /// Cuts native code's parallel loops into chunks of at most `k`
    /// iterations (0: the compiler's sizes) — for tests, which then see
    /// several chunks on small inputs.
    pub fn set_chunk_limit(&self, k: i64) -> Result<(), Failure> {
        self.native()?.code.set_chunk_limit(k);
        Ok(())
    }

    pub fn call_json(&self, entry: &str, input: &serde_json::Value) -> Result<serde_json::Value, Failure> {
        self.call_json_on(self.engine, entry, input)
    }

    /// [`Self::call_json`] on a given engine (differential tests run both).
    pub fn call_json_on(
        &self,
        engine: Engine,
        entry: &str,
        input: &serde_json::Value,
    ) -> Result<serde_json::Value, Failure> {
        let args = self.json_args(entry, input)?;
        let call_sig = self.call_signature(entry, args.len())?;
        let values = self.decode_args(args, call_sig)?;
        let (value, _, _) = self.run_values(entry, call_sig, &values, engine, &mut || 0)?;
        self.encode_result(entry, &value)
    }

    /// The interpreter's operation counts for one call (the cost model of the
    /// cheap-gradient tests and of `slope cost`).
    pub fn cost_json(&self, entry: &str, input: &serde_json::Value) -> Result<interp::Cost, Failure> {
        let args = self.json_args(entry, input)?;
        self.call_with_cost(entry, args).map(|(_, c)| c)
    }

    /// Decodes a JSON input (as [`Self::call_json`] takes it) into argument values.
    pub fn decode_json_args(&self, entry: &str, input: &serde_json::Value) -> Result<Vec<Value>, Failure> {
        let sig = self.signature(entry).clone();
        let args = self.json_args(entry, input)?;
        args.into_iter().zip(&sig.params).map(|(a, (name, ty))| self.decode_arg(a, name, ty, &sig)).collect()
    }

    fn json_args(&self, entry: &str, input: &serde_json::Value) -> Result<Vec<Arg>, Failure> {
        let fields = input.as_object().map(|map| map.iter().map(|(k, v)| (k.as_str(), v)).collect());
        let parts = self.split_input(entry, TopLevel { whole: input, fields })?;
        Ok(parts.into_iter().map(|v| Arg::Json(v.clone())).collect())
    }

    /// Decodes a JSON text input (as [`Self::call_json`] takes it) into
    /// argument values, straight from the text: no `serde_json::Value` tree
    /// is built, so the memory needed is the text and the decoded arrays.
    pub fn decode_json_text_args(&self, entry: &str, text: &str) -> Result<Vec<Value>, Failure> {
        let sig = self.signature(entry);
        let invalid = |e: serde_json::Error| self.input_error(format!("the input is not valid JSON: {e}"), sig);
        let whole: &RawValue = serde_json::from_str(text).map_err(invalid)?;
        let map: Option<BTreeMap<String, &RawValue>> =
            if whole.get().starts_with('{') { Some(serde_json::from_str(whole.get()).map_err(invalid)?) } else { None };
        let fields = map.as_ref().map(|m| m.iter().map(|(k, v)| (k.as_str(), *v)).collect());
        let parts = self.split_input(entry, TopLevel { whole, fields })?;
        parts
            .into_iter()
            .zip(&sig.params)
            .map(|(raw, (name, ty))| {
                json::decode_str(raw.get(), &values::value_type(ty), name)
                    .map_err(|e| self.input_error(e.to_string(), sig))
            })
            .collect()
    }

    // Note [Fields no one reads]
    // ~~~~~~~~~~~~~~~~~~~~~~~~~~
    // An input object may carry fields the entry does not declare, at the top
    // level as inside records: they are ignored, one rule at every level.
    // That is how inputs arrive in practice — GradBench's `ht` records carry
    // bone names no program reads, its messages carry `min_runs` next to the
    // arguments, and a data file is often shared by several entries. A
    // misspelt parameter is still caught: the parameter it should have named
    // is then missing (E0302 "the input lacks `x`"), or, for an entry with
    // one parameter, the whole object is taken as its argument and does not
    // have its type (E0302 too).

    /// [`Self::call_json`] on JSON text, decoded as [`Self::decode_json_text_args`] does.
    pub fn call_json_text(&self, entry: &str, text: &str) -> Result<serde_json::Value, Failure> {
        let values = self.decode_json_text_args(entry, text)?;
        let call_sig = self.call_signature(entry, values.len())?;
        let (value, _, _) = self.run_values(entry, call_sig, &values, self.engine, &mut || 0)?;
        self.encode_result(entry, &value)
    }

    /// The arguments of `entry` in an input: the object's fields named after
    /// the parameters, or the whole input for an entry with one parameter.
    /// Other fields are ignored, as inside records (Note [Fields no one reads]).
    fn split_input<A: Copy>(&self, entry: &str, input: TopLevel<'_, A>) -> Result<Vec<A>, Failure> {
        let sig = self.signature(entry);
        let field = |fields: &[(&str, A)], name: &str| fields.iter().rev().find(|(k, _)| *k == name).map(|(_, v)| *v);
        match &input.fields {
            Some(fields) if sig.params.iter().all(|(n, _)| field(fields, n).is_some()) => {
                Ok(sig.params.iter().map(|(n, _)| field(fields, n).expect("every parameter is present")).collect())
            }
            _ if sig.params.len() == 1 => Ok(vec![input.whole]),
            Some(fields) => {
                let missing: Vec<String> = sig
                    .params
                    .iter()
                    .filter(|(n, _)| field(fields, n).is_none())
                    .map(|(n, _)| format!("`{n}`"))
                    .collect();
                Err(self.input_error(format!("the input lacks {}", missing.join(", ")), sig))
            }
            None => Err(self.input_error(
                format!("`{entry}` takes {} parameters: the input must be a JSON object", sig.params.len()),
                sig,
            )),
        }
    }

    fn func_span(&self, entry: &str) -> Span {
        self.ir.func(entry).map(|f| f.span).unwrap_or_else(|| self.main_span())
    }

    fn input_error(&self, message: String, sig: &ir::Signature) -> Failure {
        let params: Vec<String> = sig.params.iter().map(|(n, t)| format!("{n}: {t}")).collect();
        self.fail(
            Diagnostic::error(Code::E0302, message, self.main_span(), "for this program")
                .with_note(format!("parameters: {}", params.join(", "))),
        )
    }

    /// Calls an entry on arguments in parameter order and returns its result.
    pub fn call(&self, entry: &str, args: Vec<Arg>) -> Result<Value, Failure> {
        let sig = self.call_signature(entry, args.len())?;
        let values = self.decode_args(args, sig)?;
        self.run_values(entry, sig, &values, self.engine, &mut || 0).map(|(v, _, _)| v)
    }

    /// Like [`Self::call`] on the interpreter, also returning its operation counts.
    pub fn call_with_cost(&self, entry: &str, args: Vec<Arg>) -> Result<(Value, interp::Cost), Failure> {
        let sig = self.call_signature(entry, args.len())?;
        let values = self.decode_args(args, sig)?;
        self.run_values(entry, sig, &values, Engine::Interp, &mut || 0).map(|(v, c, _)| (v, c.unwrap_or_default()))
    }

    fn decode_args(&self, args: Vec<Arg>, sig: &ir::Signature) -> Result<Vec<Value>, Failure> {
        args.into_iter().zip(&sig.params).map(|(arg, (name, ty))| self.decode_arg(arg, name, ty, sig)).collect()
    }

    /// Calls an entry on argument values already decoded (by
    /// [`Self::decode_json_args`]), so that a caller timing repeated calls
    /// times the call alone. Values are shared, not copied: an entry never
    /// mutates its inputs, so the same arguments can be passed again.
    pub fn call_values(&self, entry: &str, args: &[Value]) -> Result<Value, Failure> {
        let sig = self.call_signature(entry, args.len())?;
        self.run_values(entry, sig, args, self.engine, &mut || 0).map(|(v, _, _)| v)
    }

    /// [`Self::call_values`], also returning how long the computation alone
    /// took as `clock` (nanoseconds) measures it: on native code, the call
    /// of the compiled function, without handing the arguments over or
    /// copying the results out (as GradBench's tools time `evaluate`).
    pub fn call_values_timed(
        &self,
        entry: &str,
        args: &[Value],
        clock: &mut dyn FnMut() -> u64,
    ) -> Result<(Value, u64), Failure> {
        let sig = self.call_signature(entry, args.len())?;
        self.run_values(entry, sig, args, self.engine, clock).map(|(v, _, ns)| (v, ns))
    }

    /// The signature of `entry`, once `given` arguments are known to match it.
    fn call_signature(&self, entry: &str, given: usize) -> Result<&ir::Signature, Failure> {
        let sig = &self.ir.func(entry).expect("entries are elaborated").signature;
        if given != sig.params.len() {
            return Err(self.input_error(format!("`{entry}` takes {} arguments, {given} given", sig.params.len()), sig));
        }
        Ok(sig)
    }

    /// Runs `entry` on decoded arguments of the right number and types; the
    /// interpreter also reports its operation counts. The nanoseconds are
    /// `clock`'s measure of the run alone.
    fn run_values(
        &self,
        entry: &str,
        sig: &ir::Signature,
        args: &[Value],
        engine: Engine,
        clock: &mut dyn FnMut() -> u64,
    ) -> Result<(Value, Option<interp::Cost>, u64), Failure> {
        let mut leaves = Vec::new();
        for value in args {
            values::flatten(value, &mut leaves);
        }
        let outcome = self
            .executable(engine)?
            .call(entry, &leaves, self.options.while_limit, clock)
            .map_err(|e| self.fail(e.into()))?;
        let result = values::unflatten(&sig.ret, &mut outcome.results.into_iter());
        Ok((result, outcome.cost, outcome.nanoseconds))
    }

    /// Writes an entry's result as JSON (as [`Self::call_json`] does).
    pub fn encode_result(&self, entry: &str, value: &Value) -> Result<serde_json::Value, Failure> {
        let sig = self.signature(entry);
        json::encode_typed(value, &values::value_type(&sig.ret)).map_err(|e| {
            self.fail(Diagnostic::error(
                Code::E0304,
                format!("the result cannot be written as JSON {e}"),
                self.func_span(entry),
                "returned by this entry point",
            ))
        })
    }

    fn decode_arg(&self, arg: Arg, name: &str, ty: &Type, sig: &ir::Signature) -> Result<Value, Failure> {
        let vt = values::value_type(ty);
        match arg {
            Arg::Json(j) => json::decode(&j, &vt, name).map_err(|e| self.input_error(e.to_string(), sig)),
            Arg::JsonText(text) => json::decode_str(&text, &vt, name).map_err(|e| self.input_error(e.to_string(), sig)),
            Arg::Array(a) => {
                let (elem, rank) = ty.strip_arrays();
                let ok = match elem {
                    Type::Scalar(s) => values::elem_type(*s) == a.elem_type() && rank == a.rank(),
                    _ => false,
                };
                if !ok {
                    return Err(self.input_error(
                        format!("`{name}` has type {ty}, but the array is {}-dimensional {}", a.rank(), a.elem_type()),
                        sig,
                    ));
                }
                Ok(Value::Array(std::rc::Rc::new(a)))
            }
        }
    }

    /// The machine code the JIT generates for every function (or for the
    /// entry `entry` and the segments it calls), as Cranelift's
    /// disassembler lists it: what `slope emit --stage clif --disassemble`
    /// prints.
    pub fn disassemble(&self, entry: Option<&str>) -> Result<String, Failure> {
        let program = self.loop_program_of(&self.ir, driver::MEMORY.name)?;
        let only = entry.map(|e| self.entry_name(Some(e))).transpose()?;
        let span = self.main_span();
        crate::jit::machine_code_text(&program, only.as_deref())
            .map_err(|e| self.fail(Diagnostic::internal("jit", e, span)))
    }

    /// Prints a stage of the pipeline (`ast`, `typed`, `ir`, `ad`, `opt`), optionally for one entry.
    pub fn emit(&self, stage: &str, entry: Option<&str>) -> Result<String, Failure> {
        self.emit_with_schedule(stage, entry, None)
    }

    /// Like [`Self::emit`]; `schedule` (strategy-language text) replaces the
    /// default optimiser schedule for the `opt` stage.
    pub fn emit_with_schedule(
        &self,
        stage: &str,
        entry: Option<&str>,
        schedule: Option<&str>,
    ) -> Result<String, Failure> {
        let rescheduled;
        let optimised = match schedule {
            Some(text) => {
                rescheduled = driver::run_opt(&self.differentiated, Some(text))
                    .map_err(|diagnostics| Failure { sources: self.sources.clone(), diagnostics })?;
                &rescheduled
            }
            None => &self.ir,
        };
        match stage {
            "ast" if entry.is_none() => Ok(crate::syntax::print::print_module(&self.main, false)),
            "ast" | "typed" => {
                let typed = stage == "typed";
                let defs: Vec<&crate::syntax::ast::Def> = self
                    .checked
                    .defs
                    .iter()
                    .filter(|d| d.span.file == crate::diagnostic::FileId(0))
                    .filter(|d| entry.is_none_or(|e| d.name.text == e))
                    .collect();
                Ok(defs.iter().map(|d| crate::syntax::print::print_def(d, typed)).collect::<Vec<_>>().join("\n"))
            }
            "unary" => {
                let program = match entry {
                    Some(e) => {
                        let name = self.entry_name(Some(e))?;
                        let mut one = self.elaborated.clone();
                        one.funcs.retain(|f| f.name == name);
                        one
                    }
                    None => self.elaborated.clone(),
                };
                Ok(crate::ad::unary::print_program(&program))
            }
            loops if crate::backend::native::is_loop_stage(loops) => {
                // The CLIF is built from the last loop program.
                let last = if stage == "clif" { driver::MEMORY.name } else { stage };
                let mut program = self.loop_program_of(optimised, last)?;
                let only = entry.map(|e| self.entry_name(Some(e))).transpose()?;
                if stage != "clif" {
                    if let Some(name) = &only {
                        program.funcs.retain(|f| &f.name == name);
                    }
                    Ok(crate::loops::print_program(&program, entry.is_some()))
                } else {
                    // Every function is declared: the one shown may call others.
                    let span = self.main_span();
                    crate::jit::clif_text(&program, only.as_deref())
                        .map_err(|e| self.fail(Diagnostic::internal("jit", e, span)))
                }
            }
            "segments" => {
                let mut segments = crate::segments::decide(optimised);
                if let Some(e) = entry {
                    let name = self.entry_name(Some(e))?;
                    segments.ir.funcs.retain(|f| f.name == name);
                }
                Ok(segments.print())
            }
            "ownership" => {
                let mut owned = crate::ownership::plan(&crate::segments::decide(optimised));
                if let Some(e) = entry {
                    owned.retain_func(&self.entry_name(Some(e))?);
                }
                Ok(owned.print())
            }
            "ir" | "ad" | "opt" => {
                let program = match stage {
                    "ir" => &self.elaborated,
                    "ad" => &self.differentiated,
                    _ => optimised,
                };
                match entry {
                    Some(e) => {
                        let name = self.entry_name(Some(e))?;
                        Ok(ir::print::print_func(program, program.func(&name).expect("entry")))
                    }
                    None => Ok(ir::print::print_program(program)),
                }
            }
            other => {
                let stages = driver::stage_names();
                Err(self.fail(
                    Diagnostic::error(
                        Code::E0305,
                        format!("unknown stage `{other}`"),
                        self.main_span(),
                        "for this program",
                    )
                    .with_note(format!("the stages are {}", stages.join(", "))),
                ))
            }
        }
    }
}
