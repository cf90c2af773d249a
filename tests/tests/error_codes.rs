//! Every error code is documented in `docs/errors.md`, every documented code
//! exists, and every code is exercised by a test program (except the few that
//! only the CLI tests or nothing at all can trigger).

use slope::diagnostic::Code;
use slope_tests::workspace_dir;
use std::collections::BTreeSet;
use std::path::Path;

/// Codes not expected in a `-- error:` header: internal errors, the while
/// loop limit (too slow), import cycles (need several files), programs
/// nested too deeply (a 250,000-level program; `robustness.rs` tests it) and the
/// command-line and stream codes, which `cli/tests/cli.rs`, `repl_pipe.rs`
/// and `gradbench_pipe.rs` cover, interrupts (E0208, `interrupt.rs`) and
/// `slope build`'s E0309 (`cli/tests/cli.rs`, `c/tests/aot.rs`).
// E0206 (a failing gradcheck) is exercised by the CLI tests: a correct program cannot fail it.
const NOT_IN_PROGRAMS: &[&str] = &[
    "E0900", "E0205", "E0206", "E0208", "E0008", "E0009", "E0301", "E0303", "E0305", "E0306", "E0307", "E0308", "E0309",
];

fn documented_codes() -> BTreeSet<String> {
    let text = std::fs::read_to_string(workspace_dir().join("docs/errors.md")).expect("docs/errors.md exists");
    text.lines()
        .filter_map(|line| line.strip_prefix("### "))
        .filter_map(|rest| rest.split_once(':').map(|(code, _)| code.trim().to_string()))
        .collect()
}

fn collect_error_headers(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("readable directory").flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_error_headers(&path, out);
        } else if path.extension().and_then(|e| e.to_str()) == Some("slope") {
            let text = std::fs::read_to_string(&path).expect("readable program");
            for line in text.lines() {
                let Some(rest) = line.strip_prefix("--") else { break };
                if let Some(code) = rest.trim().strip_prefix("error:") {
                    out.insert(code.trim().to_string());
                }
            }
        }
    }
}

#[test]
fn every_code_is_documented() {
    let documented = documented_codes();
    assert!(documented.len() >= Code::ALL.len(), "too few `### CODE:` headings found: {documented:?}");
    let missing: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).filter(|c| !documented.contains(*c)).collect();
    assert!(missing.is_empty(), "codes without a `### CODE:` heading in docs/errors.md: {missing:?}");
}

#[test]
fn every_documented_code_exists() {
    let unknown: Vec<String> = documented_codes().into_iter().filter(|c| Code::parse(c).is_none()).collect();
    assert!(unknown.is_empty(), "headings in docs/errors.md that are not codes of the compiler: {unknown:?}");
}

#[test]
fn every_code_is_exercised_by_a_program() {
    let mut exercised = BTreeSet::new();
    collect_error_headers(&workspace_dir().join("tests/programs"), &mut exercised);
    let missing: Vec<&str> = Code::ALL
        .iter()
        .map(|c| c.as_str())
        .filter(|c| !NOT_IN_PROGRAMS.contains(c) && !exercised.contains(*c))
        .collect();
    assert!(missing.is_empty(), "codes no `-- error: CODE` header under tests/programs exercises: {missing:?}");
    let unknown: Vec<&String> = exercised.iter().filter(|c| Code::parse(c).is_none()).collect();
    assert!(unknown.is_empty(), "`-- error:` headers naming codes that do not exist: {unknown:?}");
}
