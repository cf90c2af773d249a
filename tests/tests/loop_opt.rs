//! The loop optimiser (`compiler/src/loops/opt/`): each pass on a small
//! program, before (`--stage lowered`) and after (`--stage loops`), with the
//! property it promises checked on the loop IR — a branch or check it removes
//! is really gone — and the negative case: an index that may be out of range
//! keeps its check and fails with the interpreter's code, span and message.
//! Values are checked against the interpreter bit for bit
//! (`slope::testfile::engines_agree`).

use slope::api::{Engine, Program};
use slope::diagnostic::RenderStyle;
use slope::loops::{for_each_inst, Inst, Operand, Rhs};
use slope_tests::{file_loader, workspace_dir};

fn compile(src: &str) -> Program {
    slope_tests::compile_source("loop_opt.slope", src)
}

fn snapshot(name: &str, p: &Program, src: &str, entry: &str) {
    let before = p.emit("lowered", Some(entry)).unwrap();
    let after = p.emit("loops", Some(entry)).unwrap();
    let shown = format!("{src}\n--- lowered\n{before}\n--- loops\n{after}");
    slope_tests::snapshot!(format!("loop_opt__{name}"), shown);
}

/// Both engines on `input`: the same value or the same error.
fn agree(p: &Program, entry: &str, input: serde_json::Value) -> Result<serde_json::Value, String> {
    let native = p.call_json_on(Engine::Multicore, entry, &input);
    let reference = p.call_json_on(Engine::Interp, entry, &input);
    slope::testfile::engines_agree(&native, &reference).unwrap_or_else(|e| panic!("{entry} {input}: {e}"));
    native.map_err(|f| f.render(RenderStyle::Short))
}

/// The optimised loop IR of `entry`.
fn loops(p: &Program, entry: &str) -> Vec<Inst> {
    p.loop_program("loops").unwrap().func(entry).unwrap().body.clone()
}

fn count(insts: &[Inst], pred: impl Fn(&Inst) -> bool) -> usize {
    let mut n = 0;
    for_each_inst(insts, &mut |i| n += usize::from(pred(i)));
    n
}

/// Instructions satisfying `pred` inside loops (a check of the entry's
/// arguments, before any loop, does not count).
fn in_loops(insts: &[Inst], pred: impl Fn(&Inst) -> bool + Copy) -> usize {
    insts
        .iter()
        .map(|i| match i {
            Inst::For { body, .. } | Inst::While { body, .. } => count(body, pred),
            Inst::If { then, els, .. } => in_loops(then, pred) + in_loops(els, pred),
            _ => 0,
        })
        .sum()
}

fn is_check(i: &Inst) -> bool {
    matches!(i, Inst::If { then, els, .. } if then.is_empty() && matches!(els.as_slice(), [Inst::Fail { .. }]))
}

fn is_branch(i: &Inst) -> bool {
    matches!(i, Inst::If { .. }) && !is_check(i)
}

fn loops_count(insts: &[Inst]) -> usize {
    count(insts, |i| matches!(i, Inst::For { .. }))
}

const RHS: &str = "entry rhs [n] (x: [n]f64) (y: [n]f64) : [n]f64 = \
                   tabulate n (\\i -> if i == 0 then x[0] else x[i] * y[i - 1])";

#[test]
fn split_peels_the_first_iteration_and_ranges_drop_its_checks() {
    let p = compile(RHS);
    snapshot("split_rhs", &p, RHS, "rhs");
    let body = loops(&p, "rhs");
    // No branch on the index is left, and no check in the loops: `i - 1` is
    // in range for i in 1..n, `0` is in range in the peeled iteration.
    assert_eq!(count(&body, is_branch), 0, "{body:?}");
    assert_eq!(in_loops(&body, is_check), 0, "{body:?}");
    assert_eq!(
        agree(&p, "rhs", serde_json::json!({"x": [1.0, 2.0, 3.0], "y": [4.0, 5.0, 6.0]})),
        Ok(serde_json::json!([1.0, 8.0, 15.0]))
    );
    assert_eq!(agree(&p, "rhs", serde_json::json!({"x": [], "y": []})), Ok(serde_json::json!([])));
    assert_eq!(agree(&p, "rhs", serde_json::json!({"x": [2.5], "y": [1.0]})), Ok(serde_json::json!([2.5])));
}

#[test]
fn a_reversed_index_test_splits_too() {
    let src = "entry rev [n] (x: [n]f64) : [n]f64 = \
               tabulate n (\\j -> let i = n - 1 - j in if i == 0 then 0.0 else x[i - 1])";
    let p = compile(src);
    snapshot("split_reversed", &p, src, "rev");
    let body = loops(&p, "rev");
    // The boundary `n - 1` is computed at run time: the split loops run
    // behind a guard that `n` is small enough for it not to overflow (Note
    // [Splitting without overflow]), the loop as it was otherwise.
    let guards: Vec<&Inst> = body.iter().filter(|i| is_branch(i)).collect();
    assert_eq!(guards.len(), 1, "{body:?}");
    let Inst::If { then: split, .. } = guards[0] else { unreachable!() };
    assert_eq!(count(split, is_branch), 0, "{split:?}");
    assert_eq!(in_loops(split, is_check), 0, "{split:?}");
    assert_eq!(agree(&p, "rev", serde_json::json!({"x": [1.0, 2.0, 3.0]})), Ok(serde_json::json!([2.0, 1.0, 0.0])));
}

#[test]
fn an_index_that_may_be_out_of_range_keeps_its_check() {
    // `x[i + 1]` overruns at the last element: the check stays, and native
    // code fails exactly as the interpreter does (code, span, message).
    let src = "entry next [n] (x: [n]f64) : [n]f64 = tabulate n (\\i -> x[i + 1] - x[i])";
    let p = compile(src);
    snapshot("keeps_check", &p, src, "next");
    assert_eq!(in_loops(&loops(&p, "next"), is_check), 1);
    let e = agree(&p, "next", serde_json::json!({"x": [1.0, 2.0, 4.0]})).unwrap_err();
    assert!(e.contains("E0201") && e.contains("index 3 out of bounds for dimension 0 of size 3"), "{e}");
    // An index the program computes from data: checked, and the check fails
    // with the offending value.
    let src = "entry at [n] (x: [n]f64) (k: i64) : f64 = sum (tabulate n (\\i -> x[(i + k) % n]))";
    let p = compile(src);
    assert!(in_loops(&loops(&p, "at"), is_check) >= 1);
    let e = agree(&p, "at", serde_json::json!({"x": [1.0, 2.0], "k": -5})).unwrap_err();
    assert!(e.contains("E0201") && e.contains("index -1 out of bounds"), "{e}");
}

#[test]
fn ranges_fold_comparisons_min_and_max() {
    // In a loop over i < n, `i < n` is true and `min i n` is i.
    let src = "entry f [n] (x: [n]f64) : [n]f64 = tabulate n (\\i -> if i < n then x[min i n] else 0.0)";
    let p = compile(src);
    let body = loops(&p, "f");
    assert_eq!(count(&body, is_branch), 0, "{body:?}");
    assert_eq!(count(&body, |i| matches!(i, Inst::Let(_, Rhs::Binary(slope::ir::BinOp::Min, ..)))), 0, "{body:?}");
    assert_eq!(agree(&p, "f", serde_json::json!({"x": [3.0, 4.0]})), Ok(serde_json::json!([3.0, 4.0])));
}

#[test]
fn fusion_computes_a_sum_with_its_map_and_drops_what_nothing_reads() {
    // The softmax's exponentials are stored and summed in one pass; the
    // negated softmax, only summed, is never stored; and the softmax itself
    // is written over the exponentials, dead after it (one buffer in all).
    let src = "entry g [n] (x: [n]f64) : ([n]f64, f64) = \
               let e = map (\\v -> exp v) x in let s = sum e in \
               let p = map (\\v -> v / s) e in let q = map (\\v -> 0.0 - v) p in (p, sum q)";
    let p = compile(src);
    snapshot("fuse", &p, src, "g");
    let body = loops(&p, "g");
    let lowered = slope::loops::lower::lower_program(&slope::ownership::plan(&slope::segments::decide(&p.ir))).unwrap();
    let before = &lowered.func("g").unwrap().body;
    assert!(
        loops_count(&body) < loops_count(before),
        "{} loops before, {} after",
        loops_count(before),
        loops_count(&body)
    );
    assert_eq!(count(&body, |i| matches!(i, Inst::Let(_, Rhs::Alloc { .. }))), 1, "{body:?}");
    let out = agree(&p, "g", serde_json::json!({"x": [0.0, 1.0, 2.0]})).unwrap();
    assert!(out[0].is_array(), "{out}");
}

#[test]
fn loops_whose_bodies_can_both_fail_are_not_fused() {
    // Fusing would report the second loop's error first.
    let src = "entry f [n] (x: [n]f64) (k: i64) (m: i64) : ([n]f64, [n]f64) = \
               (tabulate n (\\i -> x[(i + k) % n]), tabulate n (\\i -> x[(i * m) % n]))";
    let p = compile(src);
    let e = agree(&p, "f", serde_json::json!({"x": [1.0, 2.0, 3.0], "k": -7, "m": -1})).unwrap_err();
    assert!(e.contains("index -1 out of bounds"), "the first tabulate fails first: {e}");
}

#[test]
fn independent_f64_iterations_run_two_at_a_time() {
    let src = "entry axpy [n] (a: f64) (x: [n]f64) (y: [n]f64) : [n]f64 = map2 (\\u v -> a * u + max v 0.0) x y";
    let p = compile(src);
    snapshot("simd", &p, src, "axpy");
    let body = loops(&p, "axpy");
    assert_eq!(count(&body, |i| matches!(i, Inst::For { lanes: 2, .. })), 1, "{body:?}");
    // Odd lengths run the remainder one by one; -0.0 and the NaN rules of
    // max are the scalar loop's, lane by lane.
    for n in [0usize, 1, 2, 5, 8] {
        let x: Vec<f64> = (0..n).map(|i| i as f64 - 1.5).collect();
        let y: Vec<f64> = (0..n).map(|i| if i % 2 == 0 { -0.0 } else { 2.0 - i as f64 }).collect();
        agree(&p, "axpy", serde_json::json!({"a": 0.5, "x": x, "y": y})).unwrap();
    }
}

#[test]
fn buffers_hoisted_out_of_a_loop_keep_its_inner_loops_vectorised() {
    // Each step's intermediate array is allocated once before the loop; its
    // null test in the body must not make it look shared (ode's RK4 steps
    // ran at half speed when it did).
    let src = std::fs::read_to_string(workspace_dir().join("examples/gradbench/ode.slope")).unwrap();
    let p = compile(&src);
    let body = loops(&p, "primal");
    let hoisted = count(&body, |i| matches!(i, Inst::Let(_, Rhs::Alloc { hoisted: true, .. })));
    assert!(hoisted >= 4, "{body:?}");
    // The four k = rhs(..) loops (after splitting off i == 0), the three
    // y + h·k loops and the final combination.
    assert!(count(&body, |i| matches!(i, Inst::For { lanes: 2, .. })) >= 8, "{body:?}");
    let x: Vec<f64> = (0..7).map(|i| i as f64 * 0.25 - 0.5).collect();
    agree(&p, "primal", serde_json::json!({"x": x, "s": 3})).unwrap();
}

#[test]
fn short_loops_unroll_and_their_small_buffers_go() {
    // Per row, a 3-vector `y` and a sum over it: lowered, a buffer and three
    // loops of three iterations; optimised, straight-line code on scalars.
    let src = "entry f [n] (xs: [n][3]f64) : [n]f64 = \
               map (\\x -> let y = map (\\v -> v * 2.0 + 1.0) x in y[0] * y[2] - sum y) xs";
    let p = compile(src);
    let body = loops(&p, "f");
    let Some(Inst::For { body: row, .. }) = body.iter().rev().find(|i| matches!(i, Inst::For { .. })) else {
        panic!("a loop over the rows: {body:?}")
    };
    assert_eq!(loops_count(row), 0, "the short loops are unrolled: {row:?}");
    assert_eq!(count(&body, |i| matches!(i, Inst::Let(_, Rhs::Alloc { .. }))), 1, "only the result: {body:?}");
    assert_eq!(count(row, |i| matches!(i, Inst::Let(_, Rhs::Load { .. }))), 3, "{row:?}");
    let xs = serde_json::json!([[1.0, -2.0, 0.5], [0.0, -0.0, 3.25], [1e10, 2.0, -1e10]]);
    agree(&p, "f", serde_json::json!({ "xs": xs })).unwrap();
}

#[test]
fn unrolled_iterations_fail_in_order() {
    // The second of three iterations fails first, as in the loop.
    let src = "entry g (x: [3]f64) (k: i64) (m: i64) : f64 = \
               sum (tabulate 3 (\\i -> x[i * k] + x[(2 - i) * m]))";
    let p = compile(src);
    assert_eq!(loops_count(&loops(&p, "g")), 0);
    let e = agree(&p, "g", serde_json::json!({"x": [1.0, 2.0, 3.0], "k": 5, "m": -1})).unwrap_err();
    assert!(e.contains("index -2 out of bounds"), "iteration 0 reads x[0] and x[-2]: {e}");
    let e = agree(&p, "g", serde_json::json!({"x": [1.0, 2.0, 3.0], "k": 3, "m": 1})).unwrap_err();
    assert!(e.contains("index 3 out of bounds"), "iteration 1 reads x[3]: {e}");
    assert_eq!(agree(&p, "g", serde_json::json!({"x": [1.0, 2.0, 3.0], "k": 1, "m": 1})).unwrap(), 12.0);
}

#[test]
fn a_loop_carrying_a_sum_is_not_vectorised() {
    // A sum is a left fold: adding in two lanes would change its rounding.
    let p = compile("entry s [n] (x: [n]f64) : f64 = sum (map (\\v -> v * v) x)");
    assert_eq!(count(&loops(&p, "s"), |i| matches!(i, Inst::For { lanes: 2, .. })), 0);
}

/// The GradBench examples with sizes that disagree still fail with a
/// diagnostic on both engines (no out-of-bounds access in optimised code).
#[test]
fn examples_with_wrong_sizes_fail_with_their_diagnostics() {
    let cases = [
        // The packed lower triangles are too short for d = 2: an index out of bounds.
        ("gmm", "objective", "gmm/objective-2_3_50.json", "l", serde_json::json!([[], [], []]), "E0201"),
        ("gmm", "jacobian", "gmm/jacobian-2_3_50.json", "l", serde_json::json!([[], [], []]), "E0201"),
        // Means of another dimension than the points: a size mismatch.
        ("gmm", "jacobian", "gmm/jacobian-2_3_50.json", "mu", serde_json::json!([[0.0], [0.0], [0.0]]), "E0202"),
        // A correspondence naming a vertex that does not exist.
        (
            "ht",
            "jacobian",
            "ht/jacobian-hand1_t26_c100.json",
            "data.correspondences.0",
            serde_json::json!(1000000),
            "E0201",
        ),
    ];
    for (eval, entry, fixture, field, bad, code) in cases {
        let path = workspace_dir().join(format!("examples/gradbench/{eval}.slope"));
        let text = std::fs::read_to_string(&path).unwrap();
        let p = Program::compile(&path.display().to_string(), &text, &file_loader).unwrap();
        let fixture: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(workspace_dir().join("tests/fixtures").join(fixture)).unwrap(),
        )
        .unwrap();
        let mut input = fixture["input"].clone();
        // `a.b.0` names a field of a field, then an element.
        let mut slot = &mut input;
        for key in field.split('.') {
            slot = match key.parse::<usize>() {
                Ok(k) => &mut slot[k],
                Err(_) => &mut slot[key],
            };
        }
        *slot = bad;
        let native = p.call_json_on(Engine::Multicore, entry, &input);
        let reference = p.call_json_on(Engine::Interp, entry, &input);
        slope::testfile::engines_agree(&native, &reference).unwrap_or_else(|e| panic!("{eval} {field}: {e}"));
        let e = native.expect_err("a wrong size fails").render(RenderStyle::Short);
        assert!(e.contains(code), "{eval} {field}: {e}");
    }
}

#[test]
fn loop_variables_that_only_feed_themselves_go() {
    // The gradient of a residual whose powers of t are inactive: reverse mode
    // accumulates the adjoint of `power` in the backward loop, and nothing
    // reads it (Note [Dead loop variables] in opt/simplify.rs). The backward
    // loop keeps one multiply-add per coefficient, no loop-carried float.
    let src = "def r [m] (x: [m]f64) (t: f64) : f64 = \
               let (s, _) = loop (s, p) = (1.0, 1.0) for j < m do (s - x[j] * p, p * t) in s * s\n\
               entry g [m] (x: [m]f64) (t: f64) : [m]f64 = grad (\\y -> r y t) x";
    let p = compile(src);
    let body = loops(&p, "g");
    let mut carried = 0;
    for_each_inst(&body, &mut |i| {
        if let Inst::For { body, .. } = i {
            // A variable copied into at the end of an iteration and read
            // before that copy: carried into the next iteration.
            for inst in body {
                if let Inst::Let(v, Rhs::Use(_)) = inst {
                    if body
                        .iter()
                        .take_while(|j| !j.defines(*v))
                        .any(|j| j.operands().iter().any(|o| o.var() == Some(*v)))
                    {
                        carried += 1;
                    }
                }
            }
        }
    });
    // The forward loop carries the residual and the power; the backward loop nothing.
    assert_eq!(carried, 2, "{body:?}");
    // The tape of powers is written once per element, not first zeroed.
    let stores = count(&body, |i| matches!(i, Inst::Store { .. }));
    assert_eq!(stores, 3, "the zeroed gradient, the tape, the gradient update: {body:?}");
    let x = serde_json::json!([0.5, -1.0, 2.0, 0.25]);
    for t in [0.0, 0.5, -1.5] {
        agree(&p, "g", serde_json::json!({ "x": x, "t": t })).unwrap();
    }
}

#[test]
fn small_buffers_become_variables_even_through_branches() {
    // Per row, one of two 3-vectors chosen by a branch, then read at constant
    // indices: no buffer is left but the result (Note [Small buffers as
    // variables] in opt/scalarize.rs), and the values are the interpreter's.
    let src = "entry f [n] (xs: [n][3]f64) : [n]f64 = \
               map (\\x -> let y = if x[0] > 0.0 then map (\\v -> v * 2.0) x else map (\\v -> v + 1.0) x in \
                           y[0] * y[1] - y[2]) xs";
    let p = compile(src);
    let body = loops(&p, "f");
    assert_eq!(count(&body, |i| matches!(i, Inst::Let(_, Rhs::Alloc { .. }))), 1, "only the result: {body:?}");
    let xs = serde_json::json!([[1.0, -2.0, 0.5], [-1.0, -0.0, 3.25], [0.0, 2.0, -1e10]]);
    agree(&p, "f", serde_json::json!({ "xs": xs })).unwrap();
}

#[test]
fn a_small_buffer_read_at_a_variable_index_stays_in_memory() {
    // `y[k]` may be any element (or out of range): the buffer must stay.
    let src = "entry g [n] (xs: [n][3]f64) (k: i64) : [n]f64 = \
               map (\\x -> let y = map (\\v -> v * 2.0) x in y[0] + y[k]) xs";
    let p = compile(src);
    let body = loops(&p, "g");
    assert!(count(&body, |i| matches!(i, Inst::Let(_, Rhs::Alloc { .. }))) >= 2, "{body:?}");
    let xs = serde_json::json!([[1.0, -2.0, 0.5], [-1.0, 4.0, 3.25]]);
    for k in 0..3 {
        let got = agree(&p, "g", serde_json::json!({ "xs": xs, "k": k })).unwrap();
        let want: Vec<f64> = [[1.0, -2.0, 0.5], [-1.0, 4.0, 3.25]].iter().map(|x| 2.0 * x[0] + 2.0 * x[k]).collect();
        assert_eq!(got, serde_json::json!(want));
    }
    let e = agree(&p, "g", serde_json::json!({ "xs": xs, "k": 3 })).unwrap_err();
    assert!(e.contains("E0201"), "{e}");
}

#[test]
fn a_small_buffer_read_at_an_extreme_constant_index_fails_at_run_time() {
    // Found by slope-fuzz (seed 1205, native case 18405): the index range test
    // of `scalarize` computed `index + 1` and wrapped at i64::MAX, so the load
    // counted as in range and the pass panicked. The read stays a checked
    // load and fails as in the interpreter.
    let src = "entry h (v: [2]f64) : [2][2]f64 = \
               hessian (\\(x: [2]f64) -> x[0] * x[0] + x[9223372036854775807] * x[1]) v\n\
               entry r (v: [2]f64) : f64 = let w = map (\\x -> x * 2.0) v in w[0] + w[9223372036854775807]";
    let p = compile(src);
    p.native().unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Short)));
    for entry in ["h", "r"] {
        let e = agree(&p, entry, serde_json::json!({"v": [1.0, 2.0]})).unwrap_err();
        assert!(e.contains("E0201"), "{entry}: {e}");
    }
}

fn vector_loops(insts: &[Inst]) -> usize {
    count(insts, |i| matches!(i, Inst::For { lanes, .. } if *lanes > 1))
}

#[test]
fn a_vector_sum_accumulates_in_place_in_vector_registers() {
    // `acc` is the map's only use of the state: the map writes into it
    // (Note [Maps in place]), so no iteration allocates, and the store and
    // the load of `acc` at the same index let the loop run two lanes wide.
    let src = "entry f [n][m] (xs: [n][m]f64) (w: [n]f64) : [m]f64 = \
               loop acc = replicate m 0.0 for i < n do map2 (\\a x -> a + w[i] * x) acc xs[i]";
    let p = compile(src);
    let body = loops(&p, "f");
    // (The branch for m = 0 builds an empty array: zero bytes.)
    let sized_alloc = |i: &Inst| matches!(i, Inst::Let(_, Rhs::Alloc { count, .. }) if *count != Operand::i64(0));
    assert_eq!(in_loops(&body, sized_alloc), 0, "{body:?}");
    // The zero fill and the accumulation.
    assert_eq!(vector_loops(&body), 2, "{body:?}");
    let mut in_place = false;
    for_each_inst(&body, &mut |i| {
        if let Inst::For { lanes: 2, body, .. } = i {
            let stored: Vec<Operand> = body
                .iter()
                .filter_map(|i| match i {
                    Inst::Store { base, .. } => Some(*base),
                    _ => None,
                })
                .collect();
            in_place |= body.iter().any(|i| matches!(i, Inst::Let(_, Rhs::Load { base, .. }) if stored.contains(base)));
        }
    });
    assert!(in_place, "the vector loop stores where it loads: {body:?}");
    let out = agree(&p, "f", serde_json::json!({"xs": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "w": [0.5, -2.0]})).unwrap();
    assert_eq!(out, serde_json::json!([-7.5, -9.0, -10.5]));
}

#[test]
fn a_map_never_overwrites_an_input_still_read() {
    // `a` is read inside the second map's lambda (at 0) and returned: writing
    // `b` over it would change both `b` (from the second element on) and `a`.
    let src = "entry f [n] (x: [n]f64) : ([n]f64, [n]f64) = \
               let a = map (\\v -> v + 1.0) x in let b = map (\\v -> v * a[0]) a in (a, b)";
    let p = compile(src);
    let out = agree(&p, "f", serde_json::json!({"x": [1.0, 2.0, 3.0]})).unwrap();
    assert_eq!(out, serde_json::json!([[2.0, 3.0, 4.0], [4.0, 6.0, 8.0]]));
    // Dead after the map, read only as its element: overwritten.
    let src = "entry g [n] (x: [n]f64) : [n]f64 = let a = map (\\v -> v + 1.0) x in map (\\v -> v * 2.0) a";
    let p = compile(src);
    let lowered = slope::loops::lower::lower_program(&slope::ownership::plan(&slope::segments::decide(&p.ir))).unwrap();
    let allocs = count(&lowered.func("g").unwrap().body, |i| matches!(i, Inst::Let(_, Rhs::Alloc { .. })));
    assert_eq!(allocs, 1, "{:?}", lowered.func("g").unwrap().body);
    assert_eq!(agree(&p, "g", serde_json::json!({"x": [1.0, 2.0]})).unwrap(), serde_json::json!([4.0, 6.0]));
}

#[test]
fn jacfwd_of_sums_folds_every_direction_into_one_vector_in_place() {
    // The shape of ht's skinning: per point, a sum over a few parameters, all
    // of them tangent directions. The primal and tangent sums of each point
    // are one loop (no `reduce` left), whose vector accumulator is updated in
    // place, two lanes at a time; the Jacobian equals reverse mode's.
    let src = "def f [n][k] (t: [k]f64) (ps: [n]f64) : [n]f64 = map (\\p -> sum (map (\\c -> sin (c * p) * p) t)) ps\n\
               entry jf [n][k] (t: [k]f64) (ps: [n]f64) : [n][k]f64 = jacfwd (\\u -> f u ps) t\n\
               entry jr [n][k] (t: [k]f64) (ps: [n]f64) : [n][k]f64 = jacrev (\\u -> f u ps) t";
    let p = compile(src);
    let opt = p.emit("opt", Some("jf")).unwrap();
    assert!(!opt.contains("reduce"), "{opt}");
    let body = loops(&p, "jf");
    assert!(vector_loops(&body) >= 1, "{body:?}");
    let input = serde_json::json!({"t": [0.1, -0.7, 1.3, 2.0, 0.4], "ps": [0.5, -1.5, 2.5]});
    let fwd = agree(&p, "jf", input.clone()).unwrap();
    let rev = agree(&p, "jr", input).unwrap();
    let (fwd, rev) = (fwd.as_array().unwrap(), rev.as_array().unwrap());
    for (a, b) in fwd.iter().flat_map(|r| r.as_array().unwrap()).zip(rev.iter().flat_map(|r| r.as_array().unwrap())) {
        let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
        assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "jacfwd {a} against jacrev {b}");
    }
}

#[test]
fn an_rk_stage_is_one_pass_and_a_new_state_runs_two_lanes_wide() {
    // k = rhs y, then y + h k: with `j != 0` read as `j >= 1` in the `else`
    // of the first-iteration test, range analysis proves the rhs's reads
    // before splitting, so the two loops fuse (then split into the peeled
    // first element and the rest): 2 loops, not 3, and no check in them.
    let src = "entry stage [n] (x: [n]f64) (y: [n]f64) : [n]f64 = \
               let k = tabulate n (\\i -> if i == 0 then x[0] else x[i] * y[i - 1]) in \
               map2 (\\a b -> a + 0.5 * b) y k";
    let p = compile(src);
    let body = loops(&p, "stage");
    assert_eq!(loops_count(&body), 2, "{body:?}");
    assert_eq!(in_loops(&body, is_check), 0, "{body:?}");
    let out = agree(&p, "stage", serde_json::json!({"x": [1.0, 2.0, 3.0], "y": [4.0, 5.0, 6.0]})).unwrap();
    assert_eq!(out, serde_json::json!([4.5, 9.0, 13.5]));
    assert_eq!(agree(&p, "stage", serde_json::json!({"x": [], "y": []})), Ok(serde_json::json!([])));
    // A state rebuilt each iteration from itself (`y` is read inside the
    // lambda, so not overwritten in place): the new buffer, allocated just
    // before the loop that fills it, is reached by no other pointer, though
    // the analysis of allocation sites cannot tell it from last iteration's
    // (the state) — the loop runs two lanes wide.
    let src = "entry steps [n] (y0: [n]f64) (z: [n]f64) (k: i64) : [n]f64 = \
               loop y = y0 for s < k do tabulate n (\\j -> y[j] * 0.5 + z[j])";
    let p = compile(src);
    let body = loops(&p, "steps");
    assert!(vector_loops(&body) >= 1, "{body:?}");
    let out = agree(&p, "steps", serde_json::json!({"y0": [8.0, 4.0, 2.0], "z": [1.0, 0.0, -1.0], "k": 2})).unwrap();
    assert_eq!(out, serde_json::json!([3.5, 1.0, -1.0]));
    // A whole Euler step: the right-hand side fuses with the new state's
    // loop (which writes a fresh buffer, not a private one: it becomes the
    // state), so the right-hand side is never stored — the one allocation
    // in the step loop is the new state.
    let src = "entry euler [n] (x: [n]f64) (y0: [n]f64) (k: i64) : [n]f64 = \
               loop y = y0 for s < k do \
               let d = tabulate n (\\j -> if j == 0 then x[0] else x[j] * y[j - 1]) in \
               tabulate n (\\j -> y[j] + 0.5 * d[j])";
    let p = compile(src);
    let body = loops(&p, "euler");
    let allocs = in_loops(&body, |i| matches!(i, Inst::Let(_, Rhs::Alloc { .. })));
    assert_eq!(allocs, 1, "{body:?}");
    let out = agree(&p, "euler", serde_json::json!({"x": [1.0, 2.0, 3.0], "y0": [0.0, 0.0, 0.0], "k": 2})).unwrap();
    assert_eq!(out, serde_json::json!([1.0, 0.5, 0.0]));
}

/// A functional update of a loop's array state happens in place: no copy of
/// the array and no allocation per iteration (the state is owned and dead
/// after the update, Note [Consumed arrays]); an update of an array still
/// used afterwards works on a copy, leaving the original as it was.
#[test]
fn functional_updates_of_loop_state_happen_in_place() {
    let p = compile(
        "entry run [n] (a: f64) (xs: [n]f64) : [n]f64 =\n\
           loop y = replicate n 0.0 for i < n do\n\
             y with [i] = (if i == 0 then 0.0 else a * y[i - 1]) + xs[i]\n\
         entry keep [n] (xs: [n]f64) : ([n]f64, [n]f64) = (xs with [0] = 9.0, xs)",
    );
    let run = loops(&p, "run");
    let is_copy_or_alloc = |i: &Inst| matches!(i, Inst::Copy { .. } | Inst::Let(_, slope::loops::Rhs::Alloc { .. }));
    assert_eq!(in_loops(&run, is_copy_or_alloc), 0, "{}", p.emit("loops", Some("run")).unwrap());
    assert_eq!(
        agree(&p, "run", serde_json::json!({"a": 0.5, "xs": [1.0, 2.0, 3.0]})).unwrap(),
        serde_json::json!([1.0, 2.5, 4.25])
    );
    assert_eq!(
        agree(&p, "keep", serde_json::json!({"xs": [1.0, 2.0]})).unwrap(),
        serde_json::json!([[9.0, 2.0], [1.0, 2.0]])
    );
}
