//! No input makes the compiler panic: every test program and example,
//! truncated at many points and with tokens shuffled, must either compile or
//! produce diagnostics. (Each call runs the whole pipeline: parse, check,
//! elaborate, differentiate, optimise — and, for a variant that compiles,
//! lowering and native code generation, which must not fail either.)

use slope::api::Program;
use slope::driver::no_files;
use slope_tests::{workspace_dir, Rng};
use std::path::PathBuf;

fn sources() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut dirs =
        vec![workspace_dir().join("tests/programs"), workspace_dir().join("examples"), workspace_dir().join("stdlib")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().and_then(|e| e.to_str()) == Some("slope") {
                out.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    assert!(out.len() >= 10, "expected the test programs and examples");
    out
}

fn compile_must_not_panic(name: &str, text: &str) {
    let result = std::panic::catch_unwind(|| {
        // Imports resolve to the stdlib only: a broken program must still not panic.
        match Program::compile(name, text, &no_files) {
            Ok(p) => {
                if let Err(f) = p.native() {
                    panic!("native code generation failed: {}", f.render(slope::diagnostic::RenderStyle::Short));
                }
            }
            Err(f) => assert!(!f.diagnostics.is_empty(), "a failure without diagnostics"),
        }
    });
    if result.is_err() {
        panic!("the front end panicked on a variant of {name}:\n{text}");
    }
}

#[test]
fn truncated_programs_give_diagnostics() {
    for (path, text) in sources() {
        let name = path.display().to_string();
        let boundaries: Vec<usize> = (0..=text.len()).filter(|i| text.is_char_boundary(*i)).collect();
        let step = (boundaries.len() / 40).max(1);
        for &cut in boundaries.iter().step_by(step) {
            compile_must_not_panic(&name, &text[..cut]);
        }
    }
}

#[test]
fn shuffled_programs_give_diagnostics() {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    for (path, text) in sources() {
        let name = path.display().to_string();
        let tokens: Vec<&str> = text.split_whitespace().collect();
        if tokens.len() < 2 {
            continue;
        }
        for _ in 0..20 {
            let mut t = tokens.clone();
            // Swap a few random token pairs, drop one, duplicate one.
            for _ in 0..3 {
                let (a, b) = (rng.next() as usize % t.len(), rng.next() as usize % t.len());
                t.swap(a, b);
            }
            let drop = rng.next() as usize % t.len();
            t.remove(drop);
            let dup = rng.next() as usize % t.len();
            t.insert(dup, t[dup]);
            compile_must_not_panic(&name, &t.join("\n"));
        }
    }
}

/// A program nested `depth` levels deep: a sum of `depth + 1` terms written
/// out, or `depth` negations `-(-(…x))`.
fn nested(depth: usize, negations: bool) -> String {
    let body = if negations {
        format!("{}x{}", "-(".repeat(depth), ")".repeat(depth))
    } else {
        let mut s = String::from("x");
        for _ in 0..depth {
            s.push_str(" + x");
        }
        s
    };
    format!("entry main (x: f64) : f64 = {body}\n")
}

#[test]
fn deeply_nested_programs_compile_and_run() {
    // Each step of the pipeline recurses on the nesting; the compiler runs
    // on a stack that holds these.
    for negations in [false, true] {
        let text = nested(20_001, negations);
        let program = Program::compile("deep.slope", &text, &no_files).expect("a deep program compiles");
        let result = program.call_json("main", &serde_json::json!(0.5)).expect("and runs");
        let expected = if negations { -0.5 } else { 0.5 * 20_002.0 };
        assert_eq!(result, serde_json::json!(expected), "negations: {negations}");
    }
    // Brackets alone leave no trace in the syntax tree: the parser's own
    // stack takes any number.
    let text = format!("entry main (x: f64) : f64 = {}x{}\n", "(".repeat(300_000), ")".repeat(300_000));
    let program = Program::compile("brackets.slope", &text, &no_files).expect("brackets compile");
    assert_eq!(program.call_json("main", &serde_json::json!(0.5)).unwrap(), serde_json::json!(0.5));
}

#[test]
fn programs_nested_beyond_the_limit_get_e0009() {
    for negations in [false, true] {
        let text = nested(slope::driver::MAX_NESTING + 10, negations);
        let failure = Program::compile("too_deep.slope", &text, &no_files).err().expect("rejected");
        assert_eq!(failure.codes(), vec![slope::diagnostic::Code::E0009], "negations: {negations}");
    }
}

/// Programs on which a step of the compiler was once quadratic or worse
/// (nested tuples took minutes to type-check at depth 1,000; a parameter of
/// 2,000 dimensions took seconds to compile; messages quoted whole types).
/// Here they must compile — a regression shows as a test that never ends —
/// and messages stay short.
#[test]
fn programs_once_quadratic_to_compile() {
    let mut tuple = String::from("x");
    for _ in 0..1_500 {
        tuple = format!("(x, {tuple})");
    }
    let text = format!("entry main (x: f64) : f64 = let t = {tuple} in t.0 + x\n");
    let program = Program::compile("tuples.slope", &text, &no_files).expect("nested tuples compile");
    assert_eq!(program.call_json("main", &serde_json::json!(1.5)).unwrap(), serde_json::json!(3.0));

    let text = format!("entry main (x: {}f64) : f64 = 1.0\n", "[1]".repeat(2_000));
    let program = Program::compile("dims.slope", &text, &no_files).expect("a deep array type compiles");
    program.native().expect("and compiles to native code");

    // A type error at the bottom of 4,000 nested lambdas: the message names
    // the type in at most a few hundred characters.
    let text = format!("def f : f64 = ({} true + 1.0)\n", "\\(x: f64) -> ".repeat(4_000));
    let failure = Program::compile("lambdas.slope", &text, &no_files).err().expect("a type error");
    let message = failure.render(slope::diagnostic::RenderStyle::Short);
    assert!(message.len() < 2_000, "a {}-byte message", message.len());

    // A chain of 300 `else if`s (the optimiser once copied every nested
    // branch at every level: cubic): it compiles and picks the right branch.
    let chain: String = (0..300).map(|i| format!("if x < {i}.5 then {i}.0 else ")).collect();
    let text = format!("entry main (x: f64) : f64 = {chain} -1.0\n");
    let program = Program::compile("chain.slope", &text, &no_files).expect("an else-if chain compiles");
    assert_eq!(program.call_json("main", &serde_json::json!(41.7)).unwrap(), serde_json::json!(42.0));
    assert_eq!(program.call_json("main", &serde_json::json!(1e9)).unwrap(), serde_json::json!(-1.0));

    let name = "a".repeat(1 << 20);
    let text = format!("entry main (x: f64) : f64 = let {name} = x in {name} + 1.0\n");
    let program = Program::compile("ident.slope", &text, &no_files).expect("a long name compiles");
    assert_eq!(program.call_json("main", &serde_json::json!(1.0)).unwrap(), serde_json::json!(2.0));
}

#[test]
fn an_extra_argument_to_a_jacobian_is_e0103() {
    for call in ["jacfwd (\\x -> x) v v", "jacrev (\\x -> x) v v", "hessian (\\x -> sum x) v v"] {
        let text = format!("entry f (v: [3]f64) : [3][3]f64 = {call}\n");
        let failure = Program::compile("jac.slope", &text, &no_files).err().expect("rejected");
        assert_eq!(failure.codes(), vec![slope::diagnostic::Code::E0103], "{call}");
    }
}
