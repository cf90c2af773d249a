//! The driver: loads a program and its imports, and runs the pipeline as a
//! list of named passes.
//!
//! The library does no I/O: files other than the stdlib come through a
//! [`Loader`] that the caller (CLI, REPL, tests) provides. Each pass is a value
//! with a name and a one-line description ([`PASSES`]); the driver can stop
//! after any of them, and in debug builds and tests it runs the IR verifier
//! after every IR pass.

use crate::diagnostic::{Code, Diagnostic, FileId, SourceMap};
use crate::ir;
use crate::syntax::ast::{Item, Module};
use crate::syntax::parser;
use crate::types::{self, CheckedProgram};
use std::collections::HashMap;

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

/// A named stage of the pipeline.
pub struct Pass {
    pub name: &'static str,
    pub description: &'static str,
}

/// The pipeline, in order. `slope emit --stage NAME` stops after the pass of that name.
pub const PASSES: &[Pass] = &[
    Pass { name: "ast", description: "parse the program and its imports" },
    Pass { name: "typed", description: "infer and check types and sizes" },
    Pass { name: "ir", description: "inline and specialise into the flat, first-order array IR" },
    Pass { name: "unary", description: "translate each reverse-mode (vjp) body into unary form (printed, verified)" },
    Pass { name: "ad", description: "apply all AD operators, leaving AD-free IR (forward and reverse mode)" },
    Pass {
        name: "opt",
        description: "simplify, fuse and hoist with the default rewrite schedule (opt::DEFAULT_SCHEDULE)",
    },
    Pass { name: "lowered", description: "lower to loops over explicit buffers (allocation, views, bounds checks)" },
    Pass {
        name: "loops",
        description: "optimise the loops: split on index tests, prove checks away, clean up (loops::opt::PASSES)",
    },
    Pass {
        name: "parallel",
        description: "outline loops of independent iterations into segments run on the thread pool (loops::parallel)",
    },
    Pass { name: "clif", description: "generate Cranelift IR from the loops, then native code (the JIT)" },
];

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
    let mut state = ImportState { modules: Vec::new(), loaded: HashMap::new(), in_progress: Vec::new() };
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
        exprs.extend(def.jvp_rule.iter().map(|r| &r.body));
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
}

pub fn compile_with(
    sources: &mut SourceMap,
    name: &str,
    text: &str,
    loader: &Loader<'_>,
    options: &Options,
) -> Result<Stages, Vec<Diagnostic>> {
    let mut timings = Vec::new();
    let mut clock = std::time::Instant::now();
    let mut lap = |name: &'static str, timings: &mut Vec<(&'static str, std::time::Duration)>| {
        let now = std::time::Instant::now();
        timings.push((name, now - clock));
        clock = now;
    };
    let (modules, _) = parse_program(sources, name, text, loader)?;
    let main = modules.last().cloned().unwrap_or(Module { items: Vec::new() });
    lap("ast", &mut timings);
    let checked = types::check_program(modules)?;
    lap("typed", &mut timings);
    let elaborated = crate::elab::elaborate(&checked).map_err(|d| vec![d])?;
    verify(&elaborated, "ir")?;
    lap("ir", &mut timings);
    let differentiated = run_ad_with(&elaborated, options.ad)?;
    lap("ad", &mut timings);
    let optimised = run_opt(&differentiated, None)?;
    lap("opt", &mut timings);
    Ok(Stages { main, checked, elaborated, differentiated, optimised, timings })
}

/// The AD pass with its invariant checks: the verifier passes and no AD operator remains.
pub fn run_ad(program: &ir::Program) -> Result<ir::Program, Vec<Diagnostic>> {
    run_ad_with(program, crate::ad::Options::default())
}

pub fn run_ad_with(program: &ir::Program, options: crate::ad::Options) -> Result<ir::Program, Vec<Diagnostic>> {
    let mut out = program.clone();
    crate::ad::differentiate_with(&mut out, options).map_err(|d| vec![d])?;
    verify(&out, "ad")?;
    if let Some(f) = out.funcs.iter().find(|f| crate::ad::contains_ad(&f.body)) {
        return Err(vec![Diagnostic::internal("ad", "an AD operator survived the AD pass", f.span)]);
    }
    Ok(out)
}

/// The optimiser pass: the default schedule, or `schedule` (text in the
/// strategy language, e.g. from `slope emit --schedule`), then the verifier.
/// A bad or failing user schedule is an E0305 error; the default schedule
/// failing is an internal error.
pub fn run_opt(program: &ir::Program, schedule: Option<&str>) -> Result<ir::Program, Vec<Diagnostic>> {
    let span = program.funcs.first().map(|f| f.span).unwrap_or_default();
    let out = crate::opt::optimise(program, schedule.unwrap_or(crate::opt::DEFAULT_SCHEDULE)).map_err(|e| {
        vec![match schedule {
            Some(text) => Diagnostic::error(Code::E0305, e.to_string(), span, "while optimising this program")
                .with_note(format!("the schedule: {text}")),
            None => Diagnostic::internal("opt", e.to_string(), span),
        }]
    })?;
    verify(&out, "opt")?;
    Ok(out)
}

/// Runs the verifier after a pass in debug builds (and so in tests).
pub fn verify(program: &ir::Program, pass: &str) -> Result<(), Vec<Diagnostic>> {
    if cfg!(debug_assertions) {
        if let Err(errors) = ir::verify::verify_program(program) {
            let span = program.funcs.first().map(|f| f.span).unwrap_or_default();
            return Err(errors.iter().map(|e| Diagnostic::internal(pass, e.to_string(), span)).collect());
        }
    }
    Ok(())
}
