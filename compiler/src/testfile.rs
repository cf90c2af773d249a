//! Test programs: the comment-header format of `tests/programs` and of
//! `slope test`, and the checks it describes.
//!
//! A test program carries its expectations in a comment header:
//!
//! ```text
//! -- entry: dot
//! -- input: {"x": [1, 2], "y": [3, 4]}
//! -- output: 11.0
//! -- input: {"x": [1], "y": [3, 4]}
//! -- error: E0202
//! -- gradcheck: {"x": [1, 2], "y": [3, 4]}
//! ```
//!
//! `entry:` selects the entry for the cases after it; each `input:` starts a
//! case, closed by `output:` (a JSON value, floats compared with a relative
//! tolerance of 1e-9) or `error:` (a run-time error code). An `error:` line
//! before any input means the program must fail to compile with that code.
//! `gradcheck: JSON` checks the current entry's derivatives at that point.
//! This module is pure: callers read the files.

use crate::api::{Engine, Failure, Program};
use crate::diagnostic::RenderStyle;

#[derive(Debug, Default)]
pub struct Header {
    pub compile_error: Option<String>,
    pub cases: Vec<Case>,
    /// `(entry, point)` pairs from `-- gradcheck: JSON` lines.
    pub gradchecks: Vec<(Option<String>, serde_json::Value)>,
}

#[derive(Debug, Clone)]
pub struct Case {
    pub entry: Option<String>,
    pub input: serde_json::Value,
    pub expect: Expect,
}

#[derive(Debug, Clone)]
pub enum Expect {
    Output(serde_json::Value),
    Error(String),
}

/// Parses the comment header at the top of a test program.
pub fn parse_header(text: &str) -> Result<Header, String> {
    let mut header = Header::default();
    let mut entry = None;
    let mut input: Option<serde_json::Value> = None;
    for (n, line) in text.lines().enumerate() {
        let Some(rest) = line.strip_prefix("--") else { break };
        let rest = rest.trim();
        let Some((key, value)) = rest.split_once(':') else { continue };
        let value = value.trim();
        let json = |v: &str| serde_json::from_str::<serde_json::Value>(v).map_err(|e| format!("line {}: {e}", n + 1));
        match key.trim() {
            "entry" => entry = Some(value.to_string()),
            "input" => {
                if input.is_some() {
                    return Err(format!("line {}: an input without output or error", n + 1));
                }
                input = Some(json(value)?);
            }
            "output" => {
                let i = input.take().ok_or(format!("line {}: output without input", n + 1))?;
                header.cases.push(Case { entry: entry.clone(), input: i, expect: Expect::Output(json(value)?) });
            }
            "gradcheck" => header.gradchecks.push((entry.clone(), json(value)?)),
            "error" => match input.take() {
                Some(i) => {
                    header.cases.push(Case { entry: entry.clone(), input: i, expect: Expect::Error(value.into()) })
                }
                None => header.compile_error = Some(value.to_string()),
            },
            _ => {}
        }
    }
    if input.is_some() {
        return Err("the last input has no output or error".into());
    }
    Ok(header)
}

/// GradBench's comparison, tightened: |a - e| / max(1, |a| + |e|) <= tol, same structure.
pub fn json_close(
    actual: &serde_json::Value,
    expected: &serde_json::Value,
    tol: f64,
    path: &str,
) -> Result<(), String> {
    use serde_json::Value as J;
    match (actual, expected) {
        (J::Number(a), J::Number(e)) => {
            let (a, e) = (a.as_f64().unwrap(), e.as_f64().unwrap());
            let err = (a - e).abs() / (a.abs() + e.abs()).max(1.0);
            if err <= tol {
                Ok(())
            } else {
                Err(format!("at {path}: {a} differs from {e} (normalised error {err:e})"))
            }
        }
        (J::Array(a), J::Array(e)) => {
            if a.len() != e.len() {
                return Err(format!("at {path}: length {} instead of {}", a.len(), e.len()));
            }
            for (i, (x, y)) in a.iter().zip(e).enumerate() {
                json_close(x, y, tol, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (J::Object(a), J::Object(e)) => {
            let mut ka: Vec<&String> = a.keys().collect();
            let mut ke: Vec<&String> = e.keys().collect();
            ka.sort();
            ke.sort();
            if ka != ke {
                return Err(format!("at {path}: keys {ka:?} instead of {ke:?}"));
            }
            for k in ke {
                json_close(&a[k], &e[k], tol, &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        (a, e) if a == e => Ok(()),
        (a, e) => Err(format!("at {path}: {a} instead of {e}")),
    }
}

/// Checks a compiled (or failed) program against its header; returns one
/// line per failed expectation (empty when everything holds).
pub fn check_program(name: &str, header: &Header, compiled: Result<&Program, &Failure>) -> Vec<String> {
    let mut failures = Vec::new();
    match (&header.compile_error, compiled) {
        (Some(code), Err(f)) => {
            if !f.codes().iter().any(|c| c.as_str() == code) {
                failures.push(format!("{name}: expected {code}, got:\n{}", f.render(RenderStyle::Short)));
            }
        }
        (Some(code), Ok(_)) => failures.push(format!("{name}: expected compile error {code}, but it compiled")),
        (None, Err(f)) => failures.push(format!("{name}: failed to compile:\n{}", f.render(RenderStyle::Short))),
        (None, Ok(program)) => {
            for case in &header.cases {
                if let Err(e) = check_case(program, case) {
                    failures.push(format!("{name}: {e}"));
                }
            }
            for (entry, point) in &header.gradchecks {
                let entry = match program.entry_name(entry.as_deref()) {
                    Ok(e) => e,
                    Err(f) => {
                        failures.push(format!("{name}: {}", f.render(RenderStyle::Short)));
                        continue;
                    }
                };
                match crate::gradcheck::gradcheck(program, &entry, point, 2, 7) {
                    Ok(report) if report.ok => {}
                    Ok(report) => failures.push(format!("{name}: {report}")),
                    Err(f) => failures
                        .push(format!("{name}: gradcheck of {entry} failed to run: {}", f.render(RenderStyle::Short))),
                }
            }
        }
    }
    failures
}

/// Runs one case on native code: the output within 1e-9, or the expected
/// run-time error code. The interpreter runs it too, and the two engines must
/// agree (see [`engines_agree`]).
pub fn check_case(program: &Program, case: &Case) -> Result<(), String> {
    let entry = program.entry_name(case.entry.as_deref()).map_err(|f| f.render(RenderStyle::Short))?;
    let result = every_engine(program, &entry, &case.input).map_err(|e| format!("{entry} {}: {e}", case.input))?;
    match (&case.expect, result) {
        (Expect::Output(expected), Ok(actual)) => json_close(&actual, expected, 1e-9, "result")
            .map_err(|e| format!("{entry} {}: {e}\n  got {actual}", case.input)),
        (Expect::Output(_), Err(f)) => Err(format!("{entry} {} failed:\n{}", case.input, f.render(RenderStyle::Short))),
        (Expect::Error(code), Ok(actual)) => Err(format!("{entry} {}: expected {code}, got {actual}", case.input)),
        (Expect::Error(code), Err(f)) => {
            if f.codes().iter().any(|c| c.as_str() == code) {
                Ok(())
            } else {
                Err(format!("{entry} {}: expected {code}, got:\n{}", case.input, f.render(RenderStyle::Short)))
            }
        }
    }
}

/// Runs `entry` on every back end (Note [Three back ends] in `backend`)
/// and returns the default engine's outcome once the others agree with it:
/// each native engine against the interpreter, as [`engines_agree`] says.
pub fn every_engine(
    program: &Program,
    entry: &str,
    input: &serde_json::Value,
) -> Result<Result<serde_json::Value, Failure>, String> {
    let reference = program.call_json_on(Engine::Interp, entry, input);
    let agrees = |engine: Engine| {
        let outcome = program.call_json_on(engine, entry, input);
        engines_agree(&outcome, &reference)
            .map(|()| outcome)
            .map_err(|e| format!("the {} back end and the interpreter disagree: {e}", engine.name()))
    };
    // Only its agreement matters: the outcome returned is the default engine's.
    let _sequential = agrees(Engine::Sequential)?;
    agrees(Engine::Multicore)
}

/// Differential check of the JIT (`native`) against the interpreter
/// (`reference`): equal results up to 1e-12 (the engines evaluate the same
/// operations in the same order, so in practice they are bit-identical), or
/// the same error — code, span and message. The one exception is running out
/// of memory (E0207): which allocation fails first, and how large it is,
/// depends on each engine's memory plan (the JIT fuses an `iota` the
/// interpreter materialises), so there the code alone must agree.
pub fn engines_agree(
    native: &Result<serde_json::Value, Failure>,
    reference: &Result<serde_json::Value, Failure>,
) -> Result<(), String> {
    match (native, reference) {
        (Ok(a), Ok(b)) if a == b => Ok(()),
        (Ok(a), Ok(b)) => json_close(a, b, 1e-12, "result").map_err(|e| format!("{e}\n  jit {a}\n  interpreter {b}")),
        (Err(a), Err(b)) => {
            let out_of_memory = |f: &Failure| f.codes().iter().any(|c| c.as_str() == "E0207");
            let both_out_of_memory = out_of_memory(a) && out_of_memory(b);
            let (a, b) = (a.render(RenderStyle::Short), b.render(RenderStyle::Short));
            if a == b || both_out_of_memory {
                Ok(())
            } else {
                Err(format!("different errors:\n  jit: {a}\n  interpreter: {b}"))
            }
        }
        (Ok(a), Err(b)) => {
            Err(format!("the jit returned {a}, the interpreter failed: {}", b.render(RenderStyle::Short)))
        }
        (Err(a), Ok(b)) => {
            Err(format!("the interpreter returned {b}, the jit failed: {}", a.render(RenderStyle::Short)))
        }
    }
}
