//! The ownership plan (`compiler/src/ownership/`, `emit --stage
//! ownership`): which writes of arrays go in place and which copy first
//! (Note [Ownership and in-place updates], Note [Maps in place]), and that
//! its verifier rejects a plan that misses a write or decides for a
//! statement that writes nothing. That the plan never changes a value is
//! every test program's check on three engines (`programs.rs`); that
//! lowering obeys it, `compare_stages.py … lowered`.

use slope::api::Program;
use slope::ownership::{self, Decision};
use slope::segments;

fn compile(src: &str) -> Program {
    slope_tests::compile_source("ownership.slope", src)
}

fn snapshot(name: &str, value: String) {
    slope_tests::snapshot!(format!("ownership__{name}"), value);
}

/// The `-- ` comment lines of one entry's plan, variable numbers dropped
/// (`writes m_12 in place` → `writes m in place`; a map's result is `m`).
fn decisions(p: &Program, entry: &str) -> Vec<String> {
    let unnumbered = |l: String| -> String {
        l.split(' ')
            .map(|w| match w.rsplit_once('_') {
                Some((name, n)) if n.trim_end_matches(',').chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => {
                    format!("{name}{}", if n.ends_with(',') { "," } else { "" })
                }
                _ => w.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    slope_tests::stage_comments(p, "ownership", entry).into_iter().map(unnumbered).collect()
}

const WRITES: &str = "\
entry dead [n] (xs: [n]f64) : [n]f64 =
  let a = map (\\x -> x + 1.0) xs in
  a with [0] = 0.0
entry live [n] (xs: [n]f64) : ([n]f64, [n]f64) =
  let a = map (\\x -> x + 1.0) xs in
  (a, a with [0] = 0.0)
entry parameter [n] (xs: [n]f64) : [n]f64 = xs with [0] = 0.0
entry outside [n] (xs: [n]f64) : [n][n]f64 =
  let a = map (\\x -> x + 1.0) xs in
  map (\\x -> a with [0] = x) xs
entry over [n] (xs: [n]f64) : [n]f64 =
  let a = map (\\x -> x + 1.0) xs in
  let b = opaque a in
  map (\\x -> x * x) b
entry squares (n: i64) : []i64 = loop acc = replicate n 0 for i < n do acc with [i] = i * i
entry twice (n: i64) : ([]i64, []i64) =
  let z = replicate n 0 in
  loop (g, h) = (z, z) for i < n do (g with [i] = i, h with [i] = 2 * i)
";

#[test]
fn the_ownership_plan_prints() {
    let p = compile(WRITES);
    let text = p.emit("ownership", None).unwrap();
    snapshot("writes", format!("{WRITES}\n---\n{text}"));
}

/// A fresh array nothing reads afterwards is updated in place; one the
/// caller still gets is copied first.
#[test]
fn an_update_goes_in_place_only_when_nothing_reads_the_array_afterwards() {
    let p = compile(WRITES);
    assert_eq!(decisions(&p, "dead"), ["new buffers", "writes m in place"]);
    assert_eq!(decisions(&p, "live"), ["new buffers", "copies upd, then writes the copy"]);
}

/// A parameter's buffer is the caller's; an array made outside a loop is
/// read again by the loop's next iteration.
#[test]
fn parameters_and_arrays_from_outside_a_loop_are_copied() {
    let p = compile(WRITES);
    assert_eq!(decisions(&p, "parameter"), ["copies xs, then writes the copy"]);
    assert_eq!(decisions(&p, "outside"), ["new buffers", "new buffers", "copies m, then writes the copy"]);
}

/// Note [Maps in place]: a map writes its vector result over a dead, owned
/// vector input of the same element type.
#[test]
fn a_map_writes_over_an_input_nothing_reads_afterwards() {
    let p = compile(WRITES);
    let got = decisions(&p, "over");
    assert!(got.iter().any(|d| d.starts_with("writes result 0 over")), "{got:?}");
}

/// Loop state updated in place is carried owned: taken over at entry when
/// it may be, copied when two parameters start from one buffer.
#[test]
fn loop_state_is_taken_over_unless_two_parameters_share_it() {
    let p = compile(WRITES);
    assert_eq!(decisions(&p, "squares"), ["carries in place acc", "writes acc in place"]);
    let twice = decisions(&p, "twice");
    assert!(twice.iter().any(|d| d == "carries in place g (copied at entry), h (copied at entry)"), "{twice:?}");
}

/// The verifier: every write needs a decision of its kind, and nothing else
/// may have one.
#[test]
fn the_verifier_rejects_a_missing_or_a_stray_decision() {
    let p = compile(WRITES);
    let planned = ownership::plan(&segments::decide(&p.ir));
    assert_eq!(ownership::verify(&planned), Ok(()));

    let mut missing = planned.clone();
    let k = missing.segments.ir.funcs.iter().position(|f| f.name == "dead").expect("an entry");
    let update =
        *missing.plans[k].iter().find(|(_, d)| matches!(d, Decision::Write { .. })).expect("the update's decision").0;
    missing.plans[k].remove(&update);
    let err = ownership::verify(&missing).expect_err("a missing decision");
    assert!(err.contains("without an ownership decision"), "{err}");

    let mut wrong = planned.clone();
    wrong.plans[k].insert(update, Decision::Map { into: vec![None] });
    let err = ownership::verify(&wrong).expect_err("a decision of another kind");
    assert!(err.contains("a map decision for a write"), "{err}");

    let mut stray = planned;
    let f = &stray.segments.ir.funcs[k];
    let first = ownership::Visit { stmt: segments::StmtId::of(&f.body.stmts[0]), nth: 0 };
    assert!(!stray.plans[k].contains_key(&first), "the first statement (a shape) writes nothing");
    stray.plans[k].insert(first, Decision::Write { in_place: true });
    let err = ownership::verify(&stray).expect_err("a stray decision");
    assert!(err.contains("writes no buffer"), "{err}");
}
