//! The `strands` stage (`compiler/src/loops/strands.rs`, Note [Strands]):
//! which loops it rewrites, which it leaves alone, and that a rewritten
//! `min` or `max` keeps the element a fold from the left keeps — checked
//! on random arrays full of ties (-0.0 and 0.0) and NaNs of both signs,
//! against a fold written here and on every engine; that integer sums keep
//! their bits; that float sums as strands (`reassociate`, Note [Sums as
//! strands]) stay close to the fold and the same for every thread count;
//! and that a loop whose checks fail reports the first failure in index
//! order (Note [Strands that fail]).

use slope::api::{Engine, Program};
use slope::diagnostic::RenderStyle;
use slope::loops::{for_each_inst, Inst};
use slope_tests::Rng;

fn compile(src: &str) -> Program {
    slope_tests::compile_source("strands.slope", src)
}

/// `src` compiled with float sums and products reassociated.
fn reassociated(src: &str) -> Program {
    let options = slope::driver::Options { reassociate: true, ..Default::default() };
    Program::compile_with("strands.slope", src, &slope_tests::file_loader, &options)
        .unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Rich)))
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

/// How many loops the stage added: a loop it rewrites becomes two (the
/// strands' and the remainder's), three when its body checks (and the loop
/// again, in order, for a failure).
fn rewritten(src: &str) -> usize {
    added(&compile(src))
}

fn added(p: &Program) -> usize {
    loops_after(p, "strands") - loops_after(p, "parallel")
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
    // Float sums and products, unless reassociating is allowed: it changes
    // their bits.
    assert_eq!(rewritten("entry m [n] (xs: [n]f64) : f64 = sum xs"), 0);
    assert_eq!(rewritten("entry m [n] (xs: [n]f64) : f64 = product xs"), 0);
    // A maximum and a sum in one loop: the sum keeps the loop as it is.
    assert_eq!(rewritten("entry m [n] (xs: [n]f64) : (f64, f64) = (reduce max (-inf) xs, sum xs)"), 0);
    // A check inside a branch: the rest of the body does not depend on it
    // alone.
    assert_eq!(
        rewritten(
            "entry m [n][k] (xs: [n]f64) (is: [k]i64) : f64 =
               reduce max (-inf) (map (\\i -> if i > 0 then xs[i] else 0.0) is)"
        ),
        0
    );
    // A map: nothing carried.
    assert_eq!(rewritten("entry m [n] (xs: [n]f64) : [n]f64 = map (\\x -> x * 2.0) xs"), 0);
}

#[test]
fn sums_run_as_strands_when_reassociating_is_allowed() {
    let added_by = |src: &str| added(&reassociated(src));
    assert_eq!(added_by("entry m [n] (xs: [n]f64) : f64 = sum xs"), 1);
    assert_eq!(added_by("entry m [n] (xs: [n]f32) : f32 = product xs"), 1);
    assert_eq!(added_by("entry m [n] (xs: [n]f64) : (f64, f64) = (reduce max (-inf) xs, sum xs)"), 1);
    assert_eq!(
        added_by("entry m [r][c] (xs: [r][c]f64) (v: [c]f64) : [r]f64 = map (\\row -> sum (map2 (*) row v)) xs"),
        1
    );
    // Integer sums keep their bits in any order: strands either way.
    assert_eq!(rewritten("entry m [n] (xs: [n]i64) : i64 = reduce (+) 0 xs"), 1);
    assert_eq!(rewritten("entry m [n] (xs: [n]i64) : i64 = reduce (*) 1 xs"), 1);
}

/// Integer sums and products wrap: as strands, the same bits as a fold, on
/// every engine.
#[test]
fn integer_strands_keep_their_bits() {
    let p =
        compile("entry m [n] (xs: [n]i64) : (i64, i64) = (reduce (+) 0 xs, reduce (*) 1 (map (\\x -> 2 * x + 1) xs))");
    let mut rng = Rng(0x5eed_1234_abcd_0002);
    for _ in 0..100 {
        let n = (rng.next() % 40) as usize;
        let xs: Vec<i64> = (0..n).map(|_| rng.next() as i64).collect();
        let sum = xs.iter().fold(0i64, |a, &b| a.wrapping_add(b));
        let product = xs.iter().fold(1i64, |a, &b| a.wrapping_mul(b.wrapping_mul(2).wrapping_add(1)));
        let input = serde_json::json!({ "xs": xs });
        let got = slope::testfile::every_engine(&p, "m", &input).unwrap_or_else(|e| panic!("{xs:?}: {e}")).unwrap();
        assert_eq!(got, serde_json::json!([sum, product]), "{xs:?}");
    }
}

/// Float sums as strands: within rounding of the fold, and the same bits on
/// 1, 2, 3 and 8 threads.
#[test]
fn reassociated_sums_are_close_to_the_fold_and_the_same_on_every_thread_count() {
    let p = reassociated(
        "entry m [r][c] (xs: [r][c]f64) (v: [c]f64) : ([r]f64, f64) = (map (\\row -> sum (map2 (*) row v)) xs, sum v)",
    );
    let mut rng = Rng(0x5eed_1234_abcd_0003);
    for _ in 0..40 {
        let (r, c) = (1 + (rng.next() % 9) as usize, (rng.next() % 37) as usize);
        let mut uniform = || (rng.next() % 2001) as f64 / 1000.0 - 1.0;
        let xs: Vec<Vec<f64>> = (0..r).map(|_| (0..c).map(|_| uniform()).collect()).collect();
        let v: Vec<f64> = (0..c).map(|_| uniform()).collect();
        let input = serde_json::json!({ "xs": xs, "v": v });
        let folded: Vec<f64> = xs.iter().map(|row| row.iter().zip(&v).fold(0.0, |a, (x, y)| a + x * y)).collect();
        let want = serde_json::json!([folded, v.iter().fold(0.0, |a, x| a + x)]);
        let mut first = None;
        for threads in [1, 2, 3, 8] {
            p.set_threads(threads).unwrap();
            let got = p.call_json_on(Engine::Multicore, "m", &input).unwrap();
            slope::testfile::json_close(&got, &want, 1e-13, "result").unwrap();
            assert_eq!(first.get_or_insert_with(|| got.clone()), &got, "{threads} threads");
        }
        let sequential = p.call_json_on(Engine::Sequential, "m", &input).unwrap();
        slope::testfile::json_close(&sequential, &want, 1e-13, "result").unwrap();
    }
}

/// A gather's index checked in every strand: out-of-range indices placed at
/// random, several of them, so that a later strand meets its bad index
/// first; every engine reports the first in index order, as the
/// interpreter does, for a maximum and (reassociated) a sum.
#[test]
fn a_gather_out_of_range_fails_first_in_index_order() {
    let max = "entry m [n][k] (xs: [n]f64) (is: [k]i64) : f64 = reduce max (-inf) (map (\\i -> xs[i]) is)";
    let sum = "entry m [n][k] (xs: [n]f64) (is: [k]i64) : f64 = sum (map (\\i -> xs[i] * 2.0) is)";
    for p in [compile(max), reassociated(sum)] {
        assert_eq!(added(&p), 2, "the strands, the remainder and the loop again");
        let mut rng = Rng(0x5eed_1234_abcd_0004);
        let mut failures = 0;
        for _ in 0..200 {
            let k = (rng.next() % 30) as usize;
            let is: Vec<i64> = (0..k)
                .map(|_| match rng.next() % 10 {
                    0 => 3 + (rng.next() % 5) as i64,
                    1 => -1 - (rng.next() % 5) as i64,
                    _ => (rng.next() % 3) as i64,
                })
                .collect();
            let input = serde_json::json!({"xs": [1.0, 2.0, 3.0], "is": is});
            let reference = p.call_json_on(Engine::Interp, "m", &input);
            failures += usize::from(reference.is_err());
            for engine in [Engine::Sequential, Engine::Multicore] {
                let native = p.call_json_on(engine, "m", &input);
                slope::testfile::engines_agree(&native, &reference).unwrap_or_else(|e| panic!("{is:?}: {e}"));
            }
        }
        assert!(failures > 50, "only {failures} inputs failed");
    }
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

/// What it makes of a sum that checks its gather: each strand's body after
/// its check runs when the check passes, a failure sets `failed`, and a set
/// `failed` runs the loop again in order.
#[test]
fn a_checked_sum_as_strands() {
    let p = reassociated("entry m [n][k] (xs: [n]f64) (is: [k]i64) : f64 = sum (map (\\i -> xs[i]) is)");
    let shown = p.emit("strands", Some("m")).unwrap();
    slope_tests::snapshot!("strands__a_checked_sum", shown);
}
