//! The CLI commands: read files, call the library API, format the result.

pub mod bench;
pub mod gradbench;
pub mod repl;
pub mod streams;
pub mod test;

use slope::api::{Arg, Engine, Failure, Program};
use slope::diagnostic::{emit_to_stderr, Code, Diagnostic, SourceMap, Span};
use std::path::Path;

pub(crate) use slope::driver::file_loader;

pub struct CliFailure(Failure);

impl CliFailure {
    pub fn report(&self) {
        emit_to_stderr(&self.0.sources, &self.0.diagnostics);
    }
}

impl From<Failure> for CliFailure {
    fn from(f: Failure) -> CliFailure {
        CliFailure(f)
    }
}

/// A command line the command cannot run (E0305).
pub fn usage_error(message: &str) -> CliFailure {
    plain_error(Code::E0305, message.to_string(), None)
}

fn plain_error(code: Code, message: String, help: Option<String>) -> CliFailure {
    let mut sources = SourceMap::new();
    let file = sources.add("<command line>", "");
    let mut d = Diagnostic::error(code, message, Span::new(file, 0, 0), "");
    if let Some(h) = help {
        d = d.with_help(h);
    }
    CliFailure(Failure { sources, diagnostics: vec![d] })
}

/// The bytes of a file, at most `--max-input-bytes` of them (E0308 beyond:
/// `/dev/zero` as an input is a diagnostic, not an out-of-memory kill).
fn read_bytes(path: &Path) -> Result<Vec<u8>, CliFailure> {
    use std::io::Read;
    let cannot = |e: std::io::Error| plain_error(Code::E0303, format!("cannot read {}: {e}", path.display()), None);
    let limit = max_input_bytes();
    let mut bytes = Vec::new();
    std::fs::File::open(path).and_then(|f| f.take(limit.saturating_add(1)).read_to_end(&mut bytes)).map_err(cannot)?;
    if bytes.len() as u64 > limit {
        return Err(plain_error(
            Code::E0308,
            format!("{} is larger than the input limit of {limit} bytes", path.display()),
            Some("raise the limit with --max-input-bytes".into()),
        ));
    }
    Ok(bytes)
}

pub(crate) fn read(path: &Path) -> Result<String, CliFailure> {
    String::from_utf8(read_bytes(path)?).map_err(|e| {
        plain_error(Code::E0303, format!("cannot read {}: it is not UTF-8 text ({e})", path.display()), None)
    })
}

/// Set from `--checkpoint` before compiling (one command per process).
pub static CHECKPOINT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Set from `--reassociate`: native code may reassociate float sums.
pub static REASSOCIATE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Set from `--save`: reverse mode's rematerialisation policy.
pub static SAVE: std::sync::OnceLock<slope::ad::Save> = std::sync::OnceLock::new();
/// Set from `--timings`: print each pass's compile time to stderr.
pub static TIMINGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Set from `--max-input-bytes`: the largest input file, stdin or line read.
pub static MAX_INPUT_BYTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1 << 30);

pub fn max_input_bytes() -> u64 {
    MAX_INPUT_BYTES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Writes a command's result to stdout (nothing for an empty result); E0307
/// when it cannot be written.
pub fn write_result(out: &str) -> Result<(), CliFailure> {
    if out.is_empty() {
        return Ok(());
    }
    streams::write_stdout(out).map_err(|e| plain_error(Code::E0307, format!("cannot write the output: {e}"), None))
}

/// The compiler options the command line chose (`--checkpoint`, `--save`,
/// `--reassociate`), for every command that compiles a program.
pub(crate) fn options() -> slope::driver::Options {
    let mut options = slope::driver::Options::default();
    options.ad.checkpoint = CHECKPOINT.load(std::sync::atomic::Ordering::Relaxed);
    options.ad.save = SAVE.get().copied().unwrap_or_default();
    options.reassociate = REASSOCIATE.load(std::sync::atomic::Ordering::Relaxed);
    options
}

/// Compiles a program text as the command line asked.
pub(crate) fn compile_text(name: &str, text: &str) -> Result<Program, slope::api::Failure> {
    Program::compile_with(name, text, &file_loader, &options())
}

fn compile(file: &Path) -> Result<Program, CliFailure> {
    compile_on(file, Engine::Multicore)
}

/// Compiles a program for `engine` (with `--timings`, builds that back end
/// now to time it).
fn compile_on(file: &Path, engine: Engine) -> Result<Program, CliFailure> {
    let text = read(file)?;
    let options = options();
    let start = std::time::Instant::now();
    let program = Program::compile_with(&file.display().to_string(), &text, &file_loader, &options)?;
    print_timings(None, &program, engine, start)?;
    Ok(program)
}

/// With `--timings`: prints to stderr how long each pass took to compile
/// `program` — the front end's, then those of the back end `engine` builds
/// (built here if it was not yet; the interpreter's has none) — and the
/// wall-clock total since `start`, headed by `label` when given.
pub(crate) fn print_timings(
    label: Option<&str>,
    program: &Program,
    engine: Engine,
    start: std::time::Instant,
) -> Result<(), CliFailure> {
    if !TIMINGS.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    let mut timings = program.timings.clone();
    if let native @ (Engine::Multicore | Engine::Sequential) = engine {
        timings.extend(program.native_on(native)?.timings.iter().copied());
    }
    // Wall-clock, so that the total also counts what no pass times. The
    // loop passes run a program's functions on several threads, so their
    // times (summed over the functions) may add up to more than it.
    let total = start.elapsed();
    if let Some(label) = label {
        streams::write_stderr(&format!("{label} ({}):", engine.name()));
    }
    for (pass, d) in &timings {
        streams::write_stderr(&format!("{pass:>8} {:9.3} ms", d.as_secs_f64() * 1e3));
    }
    streams::write_stderr(&format!("{:>8} {:9.3} ms", "total", total.as_secs_f64() * 1e3));
    Ok(())
}

pub fn check(file: &Path) -> Result<String, CliFailure> {
    compile(file)?;
    Ok(String::new())
}

pub(crate) fn parse_json(text: &str, what: &str) -> Result<serde_json::Value, CliFailure> {
    serde_json::from_str(text).map_err(|e| plain_error(Code::E0302, format!("{what} is not valid JSON: {e}"), None))
}

fn read_arg(arg: &str) -> Result<Arg, CliFailure> {
    if arg.ends_with(".npy") {
        let bytes = read_bytes(Path::new(arg))?;
        let array =
            slope_runtime::npy::read_npy(&bytes).map_err(|e| plain_error(Code::E0302, format!("{arg}: {e}"), None))?;
        return Ok(Arg::Array(array));
    }
    if arg.ends_with(".json") {
        return Ok(Arg::JsonText(read(Path::new(arg))?));
    }
    Ok(Arg::Json(parse_json(arg, &format!("the argument `{arg}`"))?))
}

pub fn run(
    file: &Path,
    entry: Option<&str>,
    input: Option<&Path>,
    args: &[String],
    while_limit: u64,
    engine: Engine,
) -> Result<String, CliFailure> {
    let mut program = compile_on(file, engine)?;
    program.options.while_limit = while_limit;
    program.engine = engine;
    let entry = program.entry_name(entry)?;
    let result = match input {
        Some(path) => {
            if !args.is_empty() {
                return Err(plain_error(Code::E0305, "give either --input or arguments, not both".into(), None));
            }
            program.call_json_text(&entry, &read(path)?)?
        }
        None => {
            let args: Vec<Arg> = args.iter().map(|a| read_arg(a)).collect::<Result<_, _>>()?;
            let value = program.call(&entry, args)?;
            let sig = &program.ir.func(&entry).expect("entry").signature;
            slope_runtime::json::encode_typed(&value, &slope::values::value_type(&sig.ret))
                .map_err(|e| plain_error(Code::E0304, format!("the result cannot be written as JSON {e}"), None))?
        }
    };
    Ok(result.to_string())
}

pub fn emit(
    file: &Path,
    stage: &str,
    entry: Option<&str>,
    schedule: Option<&str>,
    disassemble: bool,
) -> Result<String, CliFailure> {
    if disassemble && (stage != slope::driver::CLIF.name || schedule.is_some()) {
        return Err(usage_error("--disassemble goes with `--stage clif` (and the default schedule)"));
    }
    let program = compile(file)?;
    if disassemble {
        return Ok(program.disassemble(entry)?);
    }
    Ok(program.emit_with_schedule(stage, entry, schedule)?)
}

pub fn gradcheck(
    file: &Path,
    entry: Option<&str>,
    input: &Path,
    points: usize,
    seed: u64,
) -> Result<String, CliFailure> {
    let program = compile(file)?;
    let entry = program.entry_name(entry)?;
    let json = parse_json(&read(input)?, &input.display().to_string())?;
    let report = slope::gradcheck::gradcheck(&program, &entry, &json, points, seed)?;
    if report.ok {
        Ok(report.to_string().trim_end().to_string())
    } else {
        write_result(report.to_string().trim_end())?;
        let span = program.elaborated.func(&entry).expect("the entry exists").span;
        let d = Diagnostic::error(
            Code::E0206,
            format!("the derivatives of `{entry}` do not agree"),
            span,
            "checked at the input's point and near it",
        )
        .with_help(
            "forward and reverse mode must agree to rounding, and both with finite differences; a disagreement with \
             finite differences alone usually means a kink or jump near the point, or a custom `with jvp` rule \
             that is wrong",
        );
        Err(CliFailure(Failure { sources: program.sources.clone(), diagnostics: vec![d] }))
    }
}

/// `slope build`: writes the library and its header; prints their paths.
pub fn build(file: &Path, request: &slope::build::Request, while_limit: u64) -> Result<String, CliFailure> {
    let mut program = compile(file)?;
    program.options.while_limit = while_limit;
    let built = slope::build::build(&program, request)?;
    Ok(format!("{}\n{}\n{}", built.library.display(), built.header.display(), built.functions.join(" ")))
}

pub fn cost(file: &Path, entry: Option<&str>, input: &Path) -> Result<String, CliFailure> {
    let program = compile(file)?;
    let entry = program.entry_name(entry)?;
    let json = parse_json(&read(input)?, &input.display().to_string())?;
    let c = program.cost_json(&entry, &json)?;
    let mut out = format!(
        "{entry}: {} operations ({} scalar operations, {} array elements written, {} indexings)",
        c.total(),
        c.scalar_ops,
        c.elements_written,
        c.indexings
    );
    // What reverse mode stores, as formulas (static), and the peak (measured).
    let func = program.ir.func(&entry).expect("the entry exists");
    let tapes = slope::tapes::tapes(&program.ir.vars, func);
    if tapes.is_empty() {
        out.push_str("\ntapes: none (no reverse mode, or nothing it stores survives the optimiser)");
    } else {
        out.push_str("\ntapes (bytes):");
        for t in &tapes {
            let at = program.sources.location(t.span);
            out.push_str(&format!("\n  {:<14} {}, {}  ({at})", t.what, t.bytes, t.allocated));
        }
    }
    program.call_json(&entry, &json)?;
    let peak = program.native()?.code.peak_bytes();
    out.push_str(&format!("\npeak memory of native code at this input: {peak} bytes"));
    Ok(out)
}
