//! The example programs in `examples/` that carry a test header (the format
//! of `tests/programs`, `slope::testfile`) pass it: their cases on both
//! engines and their gradient checks, as `slope test examples/FILE` runs them.

use slope::api::Program;
use slope_tests::{file_loader, parse_header, workspace_dir};

#[test]
fn examples_with_a_header_pass_it() {
    let dir = workspace_dir().join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("examples/").flatten().map(|e| e.path()).collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "slope"));
    files.sort();
    let mut checked = 0;
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let header = parse_header(&text).unwrap_or_else(|e| panic!("{}: bad header: {e}", path.display()));
        if header.cases.is_empty() && header.gradchecks.is_empty() {
            continue;
        }
        let name = path.display().to_string();
        let compiled = Program::compile(&name, &text, &file_loader);
        let failures = slope::testfile::check_program(&name, &header, compiled.as_ref());
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        checked += 1;
    }
    // mlp_adam.slope at least: trains a record-held model with Adam.
    assert!(checked >= 1, "no example has a test header");
}
