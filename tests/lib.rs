//! The language test suite's harness.
//!
//! A test program carries its expectations in a comment header:
//!
//! ```text
//! -- entry: dot
//! -- input: {"x": [1, 2], "y": [3, 4]}
//! -- output: 11.0
//! -- input: {"x": [1], "y": [3, 4]}
//! -- error: E0202
//! ```
//!
//! `entry:` selects the entry for the cases after it; each `input:` starts a
//! case, closed by `output:` (a JSON value, floats compared with a relative
//! tolerance of 1e-9) or `error:` (a run-time error code). An `error:` line
//! before any input means the program must fail to compile with that code.
//! `gradcheck: JSON` checks the current entry's derivatives at that point (and
//! two random points near it): forward mode against reverse mode with the
//! dot-product test, and both against central finite differences.
//! Every program also gets `insta` snapshots of its AST, typed AST and IR (or
//! of its diagnostics), and its printed AST must re-parse to the same text.
//! Programs that differentiate also get the unary form of their reverse-mode
//! bodies and the derivative program (the `ad` stage).

use slope::api::Program;
use slope::diagnostic::RenderStyle;
use std::path::{Path, PathBuf};

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

/// The directory of the workspace (for stdlib and examples).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

/// Reads imports relative to the importing file (as the CLI does).
pub fn file_loader(importer: &str, path: &str) -> Result<(String, String), String> {
    let base = Path::new(importer).parent().unwrap_or(Path::new("."));
    let mut candidate = base.join(path);
    if candidate.extension().is_none() {
        candidate.set_extension("slope");
    }
    std::fs::read_to_string(&candidate).map(|t| (candidate.display().to_string(), t)).map_err(|e| e.to_string())
}

fn snapshot(name: &str, value: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_snapshot!(name, value));
}

/// Runs one test program (path relative to `tests/`).
pub fn run_program(relative: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = dir.join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {relative}: {e}"));
    let header = parse_header(&text).unwrap_or_else(|e| panic!("{relative}: bad header: {e}"));
    let stem = relative.trim_start_matches("programs/").trim_end_matches(".slope").replace('/', "__");
    let compiled =
        Program::compile(relative, &text, &|importer, p| file_loader(&dir.join(importer).display().to_string(), p));
    match (&header.compile_error, compiled) {
        (Some(code), Err(failure)) => {
            let rendered = failure.render(RenderStyle::Rich);
            assert!(
                failure.codes().iter().any(|c| c.as_str() == code),
                "{relative}: expected {code}, got:\n{rendered}"
            );
            snapshot(&format!("{stem}__diagnostic"), &format!("{}\n{}", text, rendered));
        }
        (Some(code), Ok(_)) => panic!("{relative}: expected compile error {code}, but it compiled"),
        (None, Err(failure)) => panic!("{relative}: failed to compile:\n{}", failure.render(RenderStyle::Rich)),
        (None, Ok(program)) => {
            let ast = program.emit("ast", None).expect("ast prints");
            check_round_trip(relative, &ast);
            snapshot(&format!("{stem}__ast"), &ast);
            snapshot(&format!("{stem}__typed"), &program.emit("typed", None).expect("typed prints"));
            let ir = program.emit("ir", None).expect("ir prints");
            snapshot(&format!("{stem}__ir"), &ir);
            // Programs that differentiate: the unary form of their reverse-mode
            // bodies and the derivative program itself.
            if ir.contains(" vjp ") || ir.contains(" jvp ") || ir.contains("= custom") {
                if ir.contains(" vjp ") {
                    snapshot(&format!("{stem}__unary"), &program.emit("unary", None).expect("unary prints"));
                }
                snapshot(&format!("{stem}__ad"), &program.emit("ad", None).expect("ad prints"));
            }
            for case in &header.cases {
                run_case(relative, &program, case);
            }
            for (entry, point) in &header.gradchecks {
                let entry = program.entry_name(entry.as_deref()).unwrap_or_else(|f| panic!("{relative}: {f:?}"));
                let report = slope::gradcheck::gradcheck(&program, &entry, point, 2, 7).unwrap_or_else(|f| {
                    panic!("{relative}: gradcheck of {entry} failed to run:\n{}", f.render(RenderStyle::Rich))
                });
                assert!(report.ok, "{relative}: {report}");
            }
        }
    }
}

fn check_round_trip(relative: &str, printed: &str) {
    let mut sources = slope::diagnostic::SourceMap::new();
    let file = sources.add("printed", printed);
    let reparsed = slope::syntax::parser::parse_module(printed, file)
        .unwrap_or_else(|d| panic!("{relative}: the printed AST does not parse: {}\n{printed}", d.message));
    let again = slope::syntax::print::print_module(&reparsed, false);
    assert_eq!(again.trim(), printed.trim(), "{relative}: printing is not stable under re-parsing");
}

fn run_case(relative: &str, program: &Program, case: &Case) {
    let entry = program.entry_name(case.entry.as_deref()).unwrap_or_else(|f| panic!("{relative}: {f:?}"));
    let result = program.call_json(&entry, &case.input);
    match (&case.expect, result) {
        (Expect::Output(expected), Ok(actual)) => {
            if let Err(e) = json_close(&actual, expected, 1e-9, "result") {
                panic!("{relative}: {entry} {}: {e}\n  got {actual}", case.input);
            }
        }
        (Expect::Output(_), Err(f)) => {
            panic!("{relative}: {entry} {} failed:\n{}", case.input, f.render(RenderStyle::Rich))
        }
        (Expect::Error(code), Ok(actual)) => {
            panic!("{relative}: {entry} {}: expected {code}, got {actual}", case.input)
        }
        (Expect::Error(code), Err(f)) => {
            assert!(
                f.codes().iter().any(|c| c.as_str() == code),
                "{relative}: expected {code}, got:\n{}",
                f.render(RenderStyle::Rich)
            );
        }
    }
}
