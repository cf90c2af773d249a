//! `slope test PATH…`: runs test programs — every `.slope` file given or found
//! under a given directory — against the expectations in their comment
//! headers (`slope::testfile`), and prints one line per program and a summary.
//! Exit status 1 when any program fails.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn run(paths: &[PathBuf]) -> ExitCode {
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files);
    }
    files.sort();
    if files.is_empty() {
        super::streams::write_stderr(&format!(
            "error[E0303]: no .slope files under {}",
            paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ));
        return ExitCode::from(1);
    }
    let (mut passed, mut failed) = (0, 0);
    let mut written = Ok(());
    for file in &files {
        let name = file.display().to_string();
        let failures = match std::fs::read_to_string(file) {
            Err(e) => vec![format!("{name}: cannot read: {e}")],
            Ok(text) => match slope::testfile::parse_header(&text) {
                Err(e) => vec![format!("{name}: bad header: {e}")],
                Ok(header) => {
                    let compiled = super::compile_text(&name, &text);
                    slope::testfile::check_program(&name, &header, compiled.as_ref())
                }
            },
        };
        let mut report = String::new();
        if failures.is_empty() {
            passed += 1;
            report.push_str(&format!("ok   {name}"));
        } else {
            failed += 1;
            report.push_str(&format!("FAIL {name}"));
            for line in failures.iter().flat_map(|f| f.lines()) {
                report.push_str(&format!("\n     {line}"));
            }
        }
        written = written.and(super::streams::write_stdout(&report));
    }
    written = written.and(super::streams::write_stdout(&format!("{passed} passed, {failed} failed")));
    if let Err(e) = written {
        return super::streams::output_lost(e);
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// A file named on the command line is tested whatever its name; under a
/// directory, only `.slope` files are (a folder of examples also holds data,
/// C and Python files).
fn collect(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        walk(path, out);
    } else {
        out.push(path.to_path_buf());
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().and_then(|e| e.to_str()) == Some("slope") {
            out.push(path);
        }
    }
}
