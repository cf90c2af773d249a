//! The four targets: what running a case means, and what counts as a finding.
//!
//! Input: a [`Case`] and an [`Observer`] told where the case is (the worker
//! uses it to save the call under way and to time the reference engine).
//! Output: an [`Outcome`] — passed (with counts), or a [`Finding`].
//!
//! - `check`: `Program::compile` must succeed, or fail with diagnostics none
//!   of which is an internal compiler error (E0900).
//! - `native`: a program that compiles must also lower and compile to native
//!   code, and every stage must print (`emit`), without E0900.
//! - `engines`: every entry of a program that compiles, on random arguments
//!   (see `inputs.rs`), gives the same result or the same error on the JIT
//!   and on the interpreter (`slope::testfile::engines_agree`), and the JIT
//!   leaves its arguments as they were.
//! - `decode`: JSON text against a seed program's entry — decoded from the
//!   text (`decode_json_text_args`, as the CLI does) and from a parsed
//!   `serde_json::Value` (`decode_json_args`), which must agree, and whose
//!   values must read back from the JSON they are written as — or `.npy`
//!   bytes (`read_npy`): an error or a value, and a `.npy` file that reads
//!   writes back the same.
//!
//! In every target a panic is a finding; crashes and hangs are found by the
//! worker's parent (`supervisor.rs`), since they cannot be caught here.

mod decode;
mod engines;

pub use engines::WHILE_LIMIT;

use crate::case::{Case, Target};
use crate::corpus::Corpus;
use crate::panics;
use slope::api::{Failure, Program};
use slope::diagnostic::RenderStyle;
use slope::driver::no_files;
use std::collections::HashMap;
use std::sync::Arc;

/// The stages `native` prints (`slope emit --stage`).
const STAGES: &[&str] =
    &["ast", "typed", "ir", "unary", "ad", "opt", "segments", "lowered", "buffers", "loops", "clif"];

/// Long messages (whole programs in a diagnostic) are cut to this many bytes.
const MAX_MESSAGE_BYTES: usize = 4_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Panic,
    Crash,
    Hang,
    Ice,
    Disagreement,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Panic, Kind::Crash, Kind::Hang, Kind::Ice, Kind::Disagreement];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Panic => "panic",
            Kind::Crash => "crash",
            Kind::Hang => "hang",
            Kind::Ice => "ice",
            Kind::Disagreement => "disagreement",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    pub message: String,
}

impl Finding {
    pub fn new(kind: Kind, message: impl Into<String>) -> Finding {
        let mut message = message.into();
        if message.len() > MAX_MESSAGE_BYTES {
            let mut cut = MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" …");
        }
        Finding { kind, message }
    }
}

/// What a passing case did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// The program compiled (or the input decoded).
    pub accepted: bool,
    /// Calls made on both engines.
    pub calls: u32,
    /// Of those, calls that failed (the same way on both).
    pub failed_calls: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass(Stats),
    Finding(Finding),
}

/// Where a case is; see [`Observer`].
pub enum Step<'a> {
    /// An `engines` call is about to run.
    Call { entry: &'a str, input: &'a serde_json::Value },
    /// The interpreter runs the call: it may take long on an input that asks
    /// for much work, which is no defect.
    Reference,
    /// The JIT runs the call. After the interpreter ran out of memory the JIT
    /// may still compute, for long (Note [Sizes the system decides]).
    Native { reference_out_of_memory: bool },
    /// Anything else (compiling, comparing).
    Other,
}

pub trait Observer {
    fn step(&mut self, step: Step<'_>);
}

/// An observer that ignores everything (in-process runs).
pub struct Unobserved;

impl Observer for Unobserved {
    fn step(&mut self, _: Step<'_>) {}
}

/// Runs cases; keeps the seed programs `decode` compiles.
pub struct Executor {
    corpus: Arc<Corpus>,
    compiled: HashMap<String, Option<Program>>,
}

pub(crate) type Checked<T> = Result<T, Finding>;

impl Executor {
    pub fn new(corpus: Arc<Corpus>) -> Executor {
        Executor { corpus, compiled: HashMap::new() }
    }

    /// Runs `case` as `target` (`check` and `native` share a case type).
    pub fn run(&mut self, target: Target, case: &Case, observer: &mut dyn Observer) -> Outcome {
        panics::clear();
        let result = panics::catch(|| match case {
            Case::Program { text } if target == Target::Native => native_code(text),
            Case::Program { text } => compile(text).map(|p| Stats { accepted: p.is_some(), ..Stats::default() }),
            Case::Engines { text, input_seed } => engines::run(text, *input_seed, observer),
            Case::Json { program, entry, bytes } => self.decode_json(program, entry.as_deref(), bytes),
            Case::Npy { bytes } => decode::npy(bytes),
        });
        match result {
            Ok(Ok(stats)) => Outcome::Pass(stats),
            Ok(Err(finding)) => Outcome::Finding(finding),
            Err(panic) => Outcome::Finding(Finding::new(Kind::Panic, panic)),
        }
    }

    fn decode_json(&mut self, path: &str, entry: Option<&str>, bytes: &[u8]) -> Checked<Stats> {
        let program = match self.compiled.get(path) {
            Some(program) => program,
            None => {
                let text = self.corpus.programs.iter().find(|p| p.path == path).map(|p| p.text.clone());
                let program = text.and_then(|t| Program::compile(path, &t, &no_files).ok());
                self.compiled.entry(path.to_string()).or_insert(program)
            }
        };
        match program {
            Some(program) => decode::json(program, entry, bytes),
            None => Ok(Stats::default()),
        }
    }
}

/// Compiles; a program rejected with proper diagnostics is `None`.
pub(crate) fn compile(text: &str) -> Checked<Option<Program>> {
    match Program::compile("fuzz.slope", text, &no_files) {
        Ok(program) => Ok(Some(program)),
        Err(failure) => no_internal_error(&failure, "compiling").map(|_| None),
    }
}

/// A failure must say why (diagnostics), and not with an internal error.
pub(crate) fn no_internal_error(failure: &Failure, doing: &str) -> Checked<()> {
    if failure.diagnostics.is_empty() {
        return Err(Finding::new(Kind::Ice, format!("{doing} failed without a diagnostic")));
    }
    if failure.codes().iter().any(|c| c.as_str() == "E0900") {
        let panic = panics::last_panic().map(|p| format!("\n(the panic: {p})")).unwrap_or_default();
        return Err(Finding::new(Kind::Ice, format!("{doing}: {}{panic}", failure.render(RenderStyle::Short))));
    }
    Ok(())
}

fn native_code(text: &str) -> Checked<Stats> {
    let Some(program) = compile(text)? else { return Ok(Stats::default()) };
    generate_code(&program)?;
    for stage in STAGES {
        if let Err(failure) = program.emit(stage, None) {
            no_internal_error(&failure, &format!("emit --stage {stage}"))?;
        }
    }
    Ok(Stats { accepted: true, ..Stats::default() })
}

/// Native code for a program that compiled: any failure is a finding.
pub(crate) fn generate_code(program: &Program) -> Checked<()> {
    program.native().map(|_| ()).map_err(|failure| {
        let panic = panics::last_panic().map(|p| format!("\n(the panic: {p})")).unwrap_or_default();
        let message = failure.render(RenderStyle::Short);
        Finding::new(Kind::Ice, format!("native code generation failed: {message}{panic}"))
    })
}
