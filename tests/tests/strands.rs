//! The `strands` stage (`compiler/src/loops/strands.rs`, Note [Strands]):
//! which loops it rewrites, which it leaves alone, and that a rewritten
//! `min` or `max` keeps the element a fold from the left keeps — checked
//! on random arrays full of ties (-0.0 and 0.0) and NaNs of both signs,
//! against a fold written here and on every engine.

use slope::api::{Engine, Program};
use slope::diagnostic::RenderStyle;
use slope::loops::{for_each_inst, Inst};
use slope_tests::Rng;

fn compile(src: &str) -> Program {
    slope_tests::compile_source("strands.slope", src)
}

/// Loops in every function and segment of the loop program after `stage`.
fn loops_after(p: &Program, stage: &str) -> usize {
    let program = p.loop_program(stage).unwrap();
    let mut n = 0;
    for f in program.funcs.iter().chain(program.segments.iter().map(|s| &s.func)) {
        for_each_inst(&f.body, &mut |i| n += usize::from(matches!(i, Inst::For { .. })));
    }
    n
}

/// How many loops the stage rewrote: each becomes two (the strands' and
/// the remainder's).
fn rewritten(src: &str) -> usize {
    let p = compile(src);
    loops_after(&p, "strands") - loops_after(&p, "parallel")
}

#[test]
fn min_and_max_reductions_run_as_strands() {
    assert_eq!(rewritten("entry m [n] (xs: [n]f64) : f64 = reduce max (-inf) xs"), 1);
    assert_eq!(rewritten("entry m [n] (xs: [n]f32) : f32 = reduce min (f32 inf) xs"), 1);
    assert_eq!(rewritten("entry m [n] (xs: [n]i64) : i64 = reduce max 0 xs"), 1);
    // Two reductions of one loop: one loop, two accumulators per strand.
    assert_eq!(rewritten("entry m [n] (xs: [n]f64) : (f64, f64) = (reduce max (-inf) xs, reduce min inf xs)"), 1);
    // A maximum of computed elements: the body is straight-line arithmetic.
    assert_eq!(rewritten("entry m [n] (xs: [n]f64) : f64 = reduce max (-inf) (map (\\x -> exp x * 2.0) xs)"), 1);
    // Inside a map: the inner loop of each row.
    assert_eq!(rewritten("entry m [r][c] (xs: [r][c]f64) : [r]f64 = map (\\row -> reduce max (-inf) row) xs"), 1);
}

#[test]
fn other_loops_are_left_alone() {
    // Sums and products: reassociating them changes their bits.
    assert_eq!(rewritten("entry m [n] (xs: [n]f64) : f64 = sum xs"), 0);
    assert_eq!(rewritten("entry m [n] (xs: [n]f64) : f64 = product xs"), 0);
    // A maximum and a sum in one loop: the sum keeps the loop as it is.
    assert_eq!(rewritten("entry m [n] (xs: [n]f64) : (f64, f64) = (reduce max (-inf) xs, sum xs)"), 0);
    // A gather whose index may be out of range: the check could fail, and
    // strands would meet failures out of index order.
    assert_eq!(
        rewritten("entry m [n][k] (xs: [n]f64) (is: [k]i64) : f64 = reduce max (-inf) (map (\\i -> xs[i]) is)"),
        0
    );
    // A map: nothing carried.
    assert_eq!(rewritten("entry m [n] (xs: [n]f64) : [n]f64 = map (\\x -> x * 2.0) xs"), 0);
}

#[test]
fn a_gather_out_of_range_fails_as_the_interpreter_does() {
    let p = compile("entry m [n][k] (xs: [n]f64) (is: [k]i64) : f64 = reduce max (-inf) (map (\\i -> xs[i]) is)");
    let input = serde_json::json!({"xs": [1.0, 2.0, 3.0], "is": [0, 1, 2, 0, 1, 7, 2, 9, 0, 1]});
    let native = p.call_json_on(Engine::Multicore, "m", &input);
    let reference = p.call_json_on(Engine::Interp, "m", &input);
    slope::testfile::engines_agree(&native, &reference).unwrap();
    assert!(native.is_err());
}

/// `max a b` and `min a b` as Slope defines them on floats: `a` unless `b`
/// wins (is greater, resp. less, or NaN where `a` is not).
fn fold(xs: &[f64], max: bool) -> f64 {
    xs.iter().fold(if max { f64::NEG_INFINITY } else { f64::INFINITY }, |a, &b| {
        let wins = if max { b > a } else { b < a };
        if a.is_nan() || !(wins || b.is_nan()) {
            a
        } else {
            b
        }
    })
}

#[test]
fn ties_and_nans_keep_the_first_on_every_engine() {
    // `codes` picks each element: 0 and 1 are 0.0 and -0.0, 2 and 3 NaN and
    // -NaN (made in the program: JSON has none), the others small numbers.
    let src = "
entry m [n] (codes: [n]i64) : ([4]f64, [4]f64) =
  let xs = map (\\c -> if c == 0 then 0.0 else if c == 1 then -0.0 else if c == 2 then nan
                       else if c == 3 then copysign nan (-1.0) else f64 (c - 6)) codes in
  let a = reduce max (-inf) xs in
  let b = reduce min inf xs in
  let sign = \\(x: f64) -> copysign 1.0 x in
  ([sign a, sign b, if isnan a then 1.0 else 0.0, if isnan b then 1.0 else 0.0],
   [if a - a == 0.0 then a else 0.0, if b - b == 0.0 then b else 0.0, 0.0, 0.0])";
    let p = compile(src);
    assert_eq!(loops_after(&p, "strands") - loops_after(&p, "parallel"), 1, "the reductions run as strands");
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for case in 0..300 {
        let n = (rng.next() % 41) as usize;
        // Ties at the maximum (0.0 and -0.0 among negatives), ties at the
        // minimum (among positives), NaNs among ties, anything.
        let kinds: [&[i64]; 4] = [&[0, 1, 4, 5], &[0, 1, 7, 8], &[0, 1, 2, 3], &[0, 1, 2, 3, 4, 5, 6, 7, 8]];
        let kind = kinds[case % 4];
        let codes: Vec<i64> = (0..n).map(|_| kind[(rng.next() % kind.len() as u64) as usize]).collect();
        let xs: Vec<f64> = codes
            .iter()
            .map(|&c| match c {
                0 => 0.0,
                1 => -0.0,
                2 => f64::NAN,
                3 => -f64::NAN,
                c => (c - 6) as f64,
            })
            .collect();
        let input = serde_json::json!({ "codes": codes });
        let (a, b) = (fold(&xs, true), fold(&xs, false));
        let sign = |x: f64| 1.0f64.copysign(x);
        let nan = |x: f64| if x.is_nan() { 1.0 } else { 0.0 };
        let value = |x: f64| if x.is_finite() { x } else { 0.0 };
        let want = serde_json::json!([[sign(a), sign(b), nan(a), nan(b)], [value(a), value(b), 0.0, 0.0]]);
        p.set_threads(1).unwrap();
        p.set_chunk_limit(0).unwrap();
        let got = slope::testfile::every_engine(&p, "m", &input).unwrap_or_else(|e| panic!("{codes:?}: {e}")).unwrap();
        assert_eq!(got, want, "codes {codes:?}");
        // Chunks of 9 iterations on several threads: strands of 2 that
        // start inside the range, the remainder of 1.
        for threads in [2, 3] {
            p.set_threads(threads).unwrap();
            p.set_chunk_limit(9).unwrap();
            let got = p
                .call_json_on(Engine::Multicore, "m", &input)
                .unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Short)));
            assert_eq!(got, want, "codes {codes:?}, {threads} threads, chunks of 9");
        }
    }
}

/// What the stage makes of a maximum: strands from bases computed before
/// the loop, the remainder in the last strand, the combination in order.
#[test]
fn a_maximum_as_strands() {
    let p = compile("entry m [n] (xs: [n]f64) : f64 = reduce max (-inf) xs");
    let shown = p.emit("strands", Some("m")).unwrap();
    slope_tests::snapshot!("strands__a_maximum", shown);
}
