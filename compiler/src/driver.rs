//! The driver: loads a program and its imports, and runs the pipeline.
//!
//! Input: source text and a [`Loader`] for its imports. Output: the IR of
//! every stage up to the optimised IR ([`Stages`]; the back ends in
//! `backend/` take it from there), or
//! diagnostics. The library does no I/O of its own: files other than the
//! stdlib come through the caller's loader ([`file_loader`] reads the file
//! system, for callers that want it). Every pass is a value in
//! [`PIPELINE`], run by [`Context::run`], which times it and verifies its
//! output in debug builds and tests (Note [One pipeline]).

/// Reverse mode's options: what a `map` body saves for the backward sweep.
pub use crate::ad::{Options as AdOptions, Save};
use crate::diagnostic::{Code, Diagnostic, FileId, SourceMap};
use crate::hash::HashMap;
use crate::ir;
use crate::syntax::ast::{Item, Module};
use crate::syntax::parser;
use crate::types::{self, CheckedProgram};

/// Reads an imported file: `(importing file name, import path)` → `(file name, text)`.
pub type Loader<'l> = dyn Fn(&str, &str) -> Result<(String, String), String> + Sync + 'l;

/// A loader that refuses every non-stdlib import (for sources without a file system).
pub fn no_files(_: &str, path: &str) -> Result<(String, String), String> {
    Err(format!("no file system access to load `{path}`"))
}

/// A loader that reads imports from the file system, relative to the
/// importing file's directory, adding `.slope` when the path has no
/// extension. The library never calls it on its own: a caller that wants
/// file imports (the CLI, the tests, the Python package) passes it.
pub fn file_loader(importer: &str, path: &str) -> Result<(String, String), String> {
    let base = std::path::Path::new(importer).parent().unwrap_or(std::path::Path::new("."));
    let mut candidate = base.join(path);
    if candidate.extension().is_none() {
        candidate.set_extension("slope");
    }
    std::fs::read_to_string(&candidate)
        .map(|text| (candidate.display().to_string(), text))
        .map_err(|e| format!("cannot read {}: {e}", candidate.display()))
}

// Note [One pipeline]
// ~~~~~~~~~~~~~~~~~~~
// Every pass is a value: a name, a one-line description and a typed
// function from one IR to the next ([`Pass`]), or a change of a program in
// place ([`Rewrite`]). [`PIPELINE`] lists them in order, and everything that
// names passes reads it: `slope emit --stage` and the REPL's `:emit` (the
// stages and their help), `--timings` (a pass's time is recorded under its
// name by [`Context::run`] or [`Context::rewrite`]), and the verifier,
// which both run on every pass's output in debug builds (the
// [`Verify`] of the output's type). The driver chains the passes with the
// types checked by the compiler: the front end in [`compile_with`] (source
// to optimised IR, run when a program is compiled) and each back end in its
// `Backend::compile` (`backend/`: optimised IR to native code, run on first
// use). Adding a pass: a `Pass` value, its place in `PIPELINE`, one line in
// the chain, and how its output prints in `api::Program::emit`. A pass that
// turns an IR into the same IR (the loop passes) is a [`Rewrite`]: it
// changes the program in place, so no pass copies a program only to drop
// the original.

/// A pass: its name (`slope emit --stage NAME` prints its output, and
/// `--timings` reports it), what it does, and its function from one IR to
/// the next.
pub struct Pass<I: ?Sized, O> {
    pub name: &'static str,
    pub description: &'static str,
    pub run: fn(&I, &mut Context<'_>) -> Result<O, Vec<Diagnostic>>,
}

/// A pass seen without its types: what listings of the pipeline need.
pub trait Stage: Sync {
    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;
}

impl<I: ?Sized, O> Stage for Pass<I, O> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn description(&self) -> &'static str {
        self.description
    }
}

/// A pass from an IR to the same IR, changing the program in place: its
/// name, what it does, and its function.
pub struct Rewrite<I> {
    pub name: &'static str,
    pub description: &'static str,
    pub run: fn(&mut I, &mut Context<'_>) -> Result<(), Vec<Diagnostic>>,
}

impl<I> Stage for Rewrite<I> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn description(&self) -> &'static str {
        self.description
    }
}

/// The pipeline, in order (Note [One pipeline]).
pub static PIPELINE: &[&dyn Stage] = &[
    &PARSE, &CHECK, &ELABORATE, &UNARY, &AD, &OPT, &SEGMENTS, &OWNERSHIP, &LOWER, &BUFFERS, &LOOPS, &PARALLEL,
    &STRANDS, &MEMORY, &CLIF,
];

/// The names of the pipeline's passes, in order.
pub fn stage_names() -> Vec<&'static str> {
    PIPELINE.iter().map(|p| p.name()).collect()
}

/// A program's source text.
pub struct Source {
    pub name: String,
    pub text: String,
}

/// The main file and its imports, parsed; dependencies first, the main file last.
pub struct Parsed {
    pub modules: Vec<Module>,
    pub main: FileId,
}

pub static PARSE: Pass<Source, Parsed> = Pass {
    name: "ast",
    description: "parse the program and its imports",
    run: |src, cx| {
        let (modules, main) = parse_program(&mut cx.sources, &src.name, &src.text, cx.loader)?;
        Ok(Parsed { modules, main })
    },
};

pub static CHECK: Pass<Parsed, CheckedProgram> = Pass {
    name: "typed",
    description: "infer and check types and sizes",
    run: |parsed, _| types::check_program(parsed.modules.clone()),
};

pub static ELABORATE: Pass<CheckedProgram, ir::Program> = Pass {
    name: "ir",
    description: "inline and specialise into the flat, first-order array IR",
    run: |checked, _| crate::elab::elaborate(checked).map_err(|d| vec![d]),
};

/// A view, not a step: `emit --stage unary` prints each reverse-mode body
/// and the scopes nested in it in unary form (the AD pass reverses every
/// scope through it); the chain skips it.
pub static UNARY: Pass<ir::Program, String> = Pass {
    name: "unary",
    description: "translate each reverse-mode (vjp) body and its nested scopes into unary form (printed, verified)",
    run: |program, _| Ok(crate::ad::unary::print_program(program)),
};

pub static AD: Pass<ir::Program, ir::Program> = Pass {
    name: "ad",
    description: "apply all AD operators, leaving AD-free IR (forward and reverse mode)",
    run: |program, cx| {
        let mut out = program.clone();
        crate::ad::differentiate_with(&mut out, cx.options.ad).map_err(|d| vec![d])?;
        if let Some(f) = out.funcs.iter().find(|f| crate::ad::contains_ad(&f.body)) {
            return Err(vec![Diagnostic::internal("ad", "an AD operator survived the AD pass", f.span)]);
        }
        Ok(out)
    },
};

pub static OPT: Pass<ir::Program, ir::Program> = Pass {
    name: "opt",
    description: "simplify, fuse and hoist with the default rewrite schedule (opt::DEFAULT_SCHEDULE)",
    run: |program, cx| optimise(program, cx.options.schedule.as_deref()),
};

pub static SEGMENTS: Pass<ir::Program, crate::segments::Program> = Pass {
    name: "segments",
    description: "decide which iteration spaces run as parallel segments: the outermost (segments::decide)",
    run: |program, _| Ok(crate::segments::decide(program)),
};

pub static OWNERSHIP: Pass<crate::segments::Program, crate::ownership::Program> = Pass {
    name: "ownership",
    description: "decide which writes of arrays go in place and which copy first (ownership::plan)",
    run: |program, _| Ok(crate::ownership::plan(program)),
};

pub static LOWER: Pass<crate::ownership::Program, crate::loops::Program> = Pass {
    name: "lowered",
    description: "lower to loops over explicit buffers (allocation, views, bounds checks), parallel loops marked",
    run: |program, cx| crate::loops::lower::lower_program(program).map_err(|e| vec![cx.internal("loops", e)]),
};

pub static BUFFERS: Rewrite<crate::loops::Program> = Rewrite {
    name: "buffers",
    description: "plan the loops' buffers: scratch of a size fixed for the loop allocated once before it, each iteration's temporaries released (loops::buffers)",
    run: |program, cx| {
        for f in &mut program.funcs {
            crate::loops::buffers::run(f).map_err(|e| vec![cx.internal("buffers", e)])?;
        }
        Ok(())
    },
};

pub static LOOPS: Rewrite<crate::loops::Program> = Rewrite {
    name: "loops",
    description: "optimise the loops: split on index tests, prove checks away, clean up (loops::opt::PASSES)",
    run: |program, cx| {
        // The functions are optimised on their own, several at a time (Note
        // [Functions compiled in parallel] in jit/mod.rs); each loop pass is
        // timed on its own, summed over the functions.
        let optimised = crate::threads::map_largest_first(
            &mut program.funcs,
            |f| crate::loops::size(&f.body),
            |f| {
                let mut timings = Vec::new();
                crate::loops::opt::optimise(f, &mut timings).map(|()| timings)
            },
        );
        for result in optimised {
            let timings = result.map_err(|e| vec![cx.internal("loopopt", e)])?;
            for (pass, took) in timings {
                crate::loops::opt::add_time(&mut cx.timings, pass, took);
            }
        }
        Ok(())
    },
};

pub static PARALLEL: Rewrite<crate::loops::Program> = Rewrite {
    name: "parallel",
    description: "outline loops of independent iterations into segments run on the thread pool (loops::parallel)",
    run: |program, _| {
        crate::loops::parallel::run(program);
        Ok(())
    },
};

pub static STRANDS: Rewrite<crate::loops::Program> = Rewrite {
    name: "strands",
    description:
        "run reductions (min, max, sums, products) as four strands, for instruction-level parallelism (loops::strands)",
    run: |program, cx| {
        crate::loops::strands::run(program, cx.options.reassociate);
        Ok(())
    },
};

pub static MEMORY: Rewrite<crate::loops::Program> = Rewrite {
    name: "memory",
    description: "plan memory: drop unused scratch buffers, pack small ones into one allocation (loops::pack)",
    run: |program, _| {
        crate::loops::pack::run(program);
        Ok(())
    },
};

pub static CLIF: Pass<crate::loops::Program, crate::jit::Native> = Pass {
    name: "clif",
    description: "generate Cranelift IR from the loops, then native code (the JIT)",
    run: |program, cx| crate::jit::compile(program, cx.options.poll_interrupt).map_err(|e| vec![cx.internal("jit", e)]),
};

/// What every pass may read and write besides its input: the sources
/// (diagnostics point into them; the parser adds imports), the loader, the
/// options, where a back-end failure points, and the time each pass took.
pub struct Context<'c> {
    pub sources: SourceMap,
    pub loader: &'c Loader<'c>,
    pub options: Options,
    pub span: crate::diagnostic::Span,
    pub timings: Vec<(&'static str, std::time::Duration)>,
}

impl<'c> Context<'c> {
    pub fn new(sources: SourceMap, loader: &'c Loader<'c>, options: Options) -> Context<'c> {
        Context { sources, loader, options, span: Default::default(), timings: Vec::new() }
    }

    /// Runs `pass` on `input`, records its time under its name and, in debug
    /// builds (and so in tests), verifies its output. A pass that records
    /// the times of its own sub-passes (the loop optimiser's) is reported by
    /// those instead.
    pub fn run<I: ?Sized, O: Verify>(&mut self, pass: &Pass<I, O>, input: &I) -> Result<O, Vec<Diagnostic>> {
        let out = self.timed(pass.name, |cx| (pass.run)(input, cx))?;
        self.verified(pass.name, &out)?;
        Ok(out)
    }

    /// [`Self::run`] for a [`Rewrite`]: rewrites `program` in place.
    pub fn rewrite<I: Verify>(&mut self, pass: &Rewrite<I>, program: &mut I) -> Result<(), Vec<Diagnostic>> {
        self.timed(pass.name, |cx| (pass.run)(program, cx))?;
        self.verified(pass.name, program)
    }

    /// `work`, its time recorded under `name` unless it recorded the times
    /// of its own sub-passes.
    fn timed<T>(&mut self, name: &'static str, work: impl FnOnce(&mut Self) -> T) -> T {
        let start = std::time::Instant::now();
        let recorded = self.timings.len();
        let out = work(self);
        if self.timings.len() == recorded {
            self.timings.push((name, start.elapsed()));
        }
        out
    }

    /// In debug builds, the verifier's verdict on the output of pass `name`.
    fn verified(&self, name: &str, out: &impl Verify) -> Result<(), Vec<Diagnostic>> {
        if cfg!(debug_assertions) {
            out.verify().map_err(|e| vec![self.internal(name, format!("after `{name}`: {e}"))])?;
        }
        Ok(())
    }

    /// [`Self::run`] for a back-end pass: a panic — a bug — becomes an
    /// internal-error diagnostic (E0900) naming the pass, never a crash of
    /// the caller.
    pub fn run_guarded<I: ?Sized, O: Verify>(&mut self, pass: &Pass<I, O>, input: &I) -> Result<O, Vec<Diagnostic>> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run(pass, input)))
            .unwrap_or_else(|_| Err(vec![self.internal(pass.name, "the pass panicked")]))
    }

    /// [`Self::rewrite`] guarded as [`Self::run_guarded`] is. After an error
    /// the program may be half rewritten: the caller drops it.
    pub fn rewrite_guarded<I: Verify>(&mut self, pass: &Rewrite<I>, program: &mut I) -> Result<(), Vec<Diagnostic>> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.rewrite(pass, program)))
            .unwrap_or_else(|_| Err(vec![self.internal(pass.name, "the pass panicked")]))
    }

    /// An internal error of `pass` at the context's span.
    pub fn internal(&self, pass: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::internal(pass, message, self.span)
    }
}

/// The invariant check of an IR, run after every pass that produces it
/// (Note [One pipeline]); IRs without a verifier pass trivially.
pub trait Verify {
    fn verify(&self) -> Result<(), String> {
        Ok(())
    }
}

impl Verify for ir::Program {
    fn verify(&self) -> Result<(), String> {
        ir::verify::verify_program(self)
            .map_err(|errors| errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))
    }
}

impl Verify for crate::loops::Program {
    fn verify(&self) -> Result<(), String> {
        crate::loops::verify::verify_program(self)
    }
}

impl Verify for Parsed {}
impl Verify for CheckedProgram {}
impl Verify for String {}
impl Verify for crate::jit::Native {}

/// Everything the compiler knows about a program after the front end.
pub struct Frontend {
    pub sources: SourceMap,
    /// Parsed modules, dependencies first; the main file is last.
    pub modules: Vec<Module>,
    pub main_file: FileId,
}

/// Parses `text` (named `name`) and, recursively, its imports.
pub fn parse_program(
    sources: &mut SourceMap,
    name: &str,
    text: &str,
    loader: &Loader<'_>,
) -> Result<(Vec<Module>, FileId), Vec<Diagnostic>> {
    let mut state = ImportState { modules: Vec::new(), loaded: HashMap::default(), in_progress: Vec::new() };
    let main = sources.add(name, text);
    state.load(sources, main, loader)?;
    Ok((state.modules, main))
}

struct ImportState {
    modules: Vec<Module>,
    /// Import key → file already loaded.
    loaded: HashMap<String, FileId>,
    in_progress: Vec<String>,
}

/// The deepest nesting of expressions (or of types) the compiler accepts:
/// far beyond any written program (a sum of 100,000 terms is 100,000
/// deep), and within what the compiler's recursive passes do on the stack
/// the CLI and [`with_stack`] give them.
pub const MAX_NESTING: usize = 250_000;

/// The stack the compiler runs on (virtual memory: pages are touched only as
/// deep programs need them).
pub const STACK_BYTES: usize = 2 << 30;

/// Runs `f` on a thread with a stack of [`STACK_BYTES`], so that deeply
/// nested programs (up to [`MAX_NESTING`]) never overflow the caller's
/// smaller one. A panic in `f` is resumed in the caller.
pub fn with_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let job = std::sync::Mutex::new(Some(f));
    let run = || job.lock().ok().and_then(|mut j| j.take()).map(|f| f());
    let ran = std::thread::scope(|scope| {
        match std::thread::Builder::new().stack_size(STACK_BYTES).spawn_scoped(scope, run) {
            Ok(handle) => handle.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            // No thread to be had (no address space for the stack): run here,
            // on the caller's stack, which suffices for all but extreme nesting.
            Err(_) => run(),
        }
    });
    ran.expect("the job runs exactly once")
}

/// Rejects a module whose expressions or types nest deeper than [`MAX_NESTING`] (E0009).
fn check_nesting(module: &Module) -> Result<(), Diagnostic> {
    for item in &module.items {
        let Item::Def(def) = item else { continue };
        let mut exprs: Vec<&crate::syntax::ast::Expr> = vec![&def.body];
        exprs.extend(def.rules.iter().map(|r| &r.body));
        let mut types: Vec<&crate::syntax::ast::TypeExpr> = def.params.iter().map(|p| &p.ty).collect();
        types.extend(def.ret.iter());
        let deepest = exprs.iter().map(|e| e.depth()).chain(types.iter().map(|t| t.depth())).max();
        if let Some(depth) = deepest.filter(|d| *d > MAX_NESTING) {
            return Err(Diagnostic::error(
                Code::E0009,
                format!("`{}` is nested {depth} levels deep", def.name.text),
                def.name.span,
                "nested too deeply",
            )
            .with_note(format!("the compiler accepts up to {MAX_NESTING} levels of nested expressions or types"))
            .with_help("split the expression with `let` bindings or helper definitions"));
        }
    }
    Ok(())
}

impl ImportState {
    fn load(&mut self, sources: &mut SourceMap, file: FileId, loader: &Loader<'_>) -> Result<(), Vec<Diagnostic>> {
        let module = parser::parse_module(sources.text(file), file).map_err(|d| vec![d])?;
        check_nesting(&module).map_err(|d| vec![d])?;
        let key = sources.name(file).to_string();
        self.in_progress.push(key.clone());
        for item in &module.items {
            let Item::Import { path, span } = item else { continue };
            let (import_key, name, text) = match crate::stdlib::lookup(path) {
                Some(text) => (format!("stdlib/{path}.slope"), format!("stdlib/{path}.slope"), text.to_string()),
                None => match loader(&key, path) {
                    Ok((name, text)) => (name.clone(), name, text),
                    Err(reason) => {
                        let available: Vec<&str> = crate::stdlib::MODULES.iter().map(|(n, _)| *n).collect();
                        return Err(vec![Diagnostic::error(
                            Code::E0007,
                            format!("cannot import `{path}`"),
                            *span,
                            reason,
                        )
                        .with_note(format!("the standard library modules are {}", available.join(", ")))]);
                    }
                },
            };
            if self.in_progress.contains(&import_key) {
                return Err(vec![Diagnostic::error(
                    Code::E0008,
                    format!("import cycle: `{path}` imports itself through `{key}`"),
                    *span,
                    "this import closes the cycle",
                )]);
            }
            if self.loaded.contains_key(&import_key) {
                continue;
            }
            let id = sources.add(name, text);
            self.loaded.insert(import_key, id);
            self.load(sources, id, loader)?;
        }
        self.in_progress.pop();
        self.modules.push(module);
        Ok(())
    }
}

/// The result of compiling a program as far as the IR.
pub struct Compiled {
    pub sources: SourceMap,
    pub checked: CheckedProgram,
    pub program: ir::Program,
}

/// What [`compile`] produces: every stage a user can print.
pub struct Stages {
    /// The main file as parsed.
    pub main: Module,
    pub checked: CheckedProgram,
    /// The IR straight out of elaboration (may contain AD operators).
    pub elaborated: ir::Program,
    /// The IR after the AD pass.
    pub differentiated: ir::Program,
    /// The IR after the optimiser: what runs.
    pub optimised: ir::Program,
    /// Wall-clock time of each pass, in pipeline order (`slope --timings`).
    pub timings: Vec<(&'static str, std::time::Duration)>,
}

/// Parses, checks, elaborates and differentiates a program. Diagnostics point into `sources`.
pub fn compile(
    sources: &mut SourceMap,
    name: &str,
    text: &str,
    loader: &Loader<'_>,
) -> Result<Stages, Vec<Diagnostic>> {
    compile_with(sources, name, text, loader, &Options::default())
}

/// Options of the whole pipeline.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub ad: crate::ad::Options,
    /// The optimiser's schedule (strategy-language text) instead of the default.
    pub schedule: Option<String>,
    /// Native code polls the interrupt flag in every loop (the REPL's Ctrl-C).
    pub poll_interrupt: bool,
    /// Native code may reassociate floating-point sums and products in
    /// loops, running them as four strands (Note [Sums as strands] in
    /// loops/strands.rs): faster, and the same for every number of threads,
    /// but their last bits may differ from the interpreter's — more where a
    /// sum cancels. Off by default.
    pub reassociate: bool,
}

/// The front end of the pipeline: source → optimised IR (Note [One pipeline]).
pub fn compile_with(
    sources: &mut SourceMap,
    name: &str,
    text: &str,
    loader: &Loader<'_>,
    options: &Options,
) -> Result<Stages, Vec<Diagnostic>> {
    let mut cx = Context::new(std::mem::take(sources), loader, options.clone());
    let result = front_end(&Source { name: name.into(), text: text.into() }, &mut cx);
    *sources = cx.sources;
    let (main, checked, elaborated, differentiated, optimised) = result?;
    Ok(Stages { main, checked, elaborated, differentiated, optimised, timings: cx.timings })
}

type FrontEnd = (Module, CheckedProgram, ir::Program, ir::Program, ir::Program);

fn front_end(source: &Source, cx: &mut Context<'_>) -> Result<FrontEnd, Vec<Diagnostic>> {
    let parsed = cx.run(&PARSE, source)?;
    let main = parsed.modules.last().cloned().unwrap_or(Module { items: Vec::new() });
    let checked = cx.run(&CHECK, &parsed)?;
    let elaborated = cx.run(&ELABORATE, &checked)?;
    let differentiated = cx.run(&AD, &elaborated)?;
    let optimised = cx.run(&OPT, &differentiated)?;
    Ok((main, checked, elaborated, differentiated, optimised))
}

/// The AD pass alone (with its checks), for callers that elaborate their own
/// IR (the REPL's expressions, gradcheck).
pub fn run_ad(program: &ir::Program) -> Result<ir::Program, Vec<Diagnostic>> {
    Context::new(SourceMap::new(), &no_files, Options::default()).run(&AD, program)
}

/// The optimiser with the default schedule, or `schedule` (text in the
/// strategy language, e.g. from `slope emit --schedule`), then the verifier.
/// A bad or failing user schedule is an E0305 error; the default schedule
/// failing is an internal error.
pub fn run_opt(program: &ir::Program, schedule: Option<&str>) -> Result<ir::Program, Vec<Diagnostic>> {
    let options = Options { schedule: schedule.map(str::to_string), ..Options::default() };
    Context::new(SourceMap::new(), &no_files, options).run(&OPT, program)
}

fn optimise(program: &ir::Program, schedule: Option<&str>) -> Result<ir::Program, Vec<Diagnostic>> {
    let span = program.funcs.first().map(|f| f.span).unwrap_or_default();
    crate::opt::optimise(program, schedule.unwrap_or(crate::opt::DEFAULT_SCHEDULE)).map_err(|e| {
        vec![match schedule {
            Some(text) => Diagnostic::error(Code::E0305, e.to_string(), span, "while optimising this program")
                .with_note(format!("the schedule: {text}")),
            None => Diagnostic::internal("opt", e.to_string(), span),
        }]
    })
}

/// Runs the verifier after a pass in debug builds (and so in tests).
pub fn verify(program: &ir::Program, pass: &str) -> Result<(), Vec<Diagnostic>> {
    if cfg!(debug_assertions) {
        if let Err(e) = program.verify() {
            let span = program.funcs.first().map(|f| f.span).unwrap_or_default();
            return Err(vec![Diagnostic::internal(pass, e, span)]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loops::{self, Operand};

    static ADDS: Rewrite<loops::Program> = Rewrite {
        name: "adds",
        description: "adds an empty function",
        run: |program, _| {
            program.funcs.push(loops::Func::empty("f"));
            Ok(())
        },
    };

    static BREAKS: Rewrite<loops::Program> = Rewrite {
        name: "breaks",
        description: "returns a variable its function does not have",
        run: |program, _| {
            program.funcs[0].results.push(Operand::Var(loops::LVar(7)));
            Ok(())
        },
    };

    static PANICS: Rewrite<loops::Program> =
        Rewrite { name: "panics", description: "a pass with a bug", run: |_, _| panic!("a bug") };

    /// A rewrite changes the program it is given, is timed under its name,
    /// is verified after (in debug builds, as tests are), and when guarded
    /// turns a panic into E0900 naming it.
    #[test]
    fn rewrites_are_timed_verified_and_guarded() {
        let mut cx = Context::new(SourceMap::new(), &no_files, Options::default());
        let mut program = loops::Program::default();
        cx.rewrite(&ADDS, &mut program).expect("a valid rewrite");
        assert_eq!(program.funcs.len(), 1);
        assert!(cx.timings.iter().any(|(name, _)| *name == "adds"), "{:?}", cx.timings);

        // The verifier runs in debug builds only (`cargo test`'s profile).
        if cfg!(debug_assertions) {
            let broken = cx.rewrite(&BREAKS, &mut program).expect_err("the verifier rejects the result");
            assert_eq!(broken[0].code, Code::E0900);
            assert!(broken[0].message.contains("after `breaks`"), "{}", broken[0].message);
        }

        let panicked = cx.rewrite_guarded(&PANICS, &mut program).expect_err("a panic is an error");
        assert_eq!(panicked[0].code, Code::E0900);
        assert!(panicked[0].message.contains("panics"), "{}", panicked[0].message);
    }
}
