//! The parallel level (`compiler/src/segments/`, `emit --stage segments`):
//! what it decides for the shapes of parallelism a program has (Note
//! [Outermost parallelism first]), that the decision reaches the thread
//! pool and nothing else does, and that its verifier rejects a level that
//! breaks the rule. Values across thread counts are `threads.rs`'s; every
//! test program's parallel level is verified after the pass in debug
//! builds (`driver::Context::run`).

use slope::api::{Engine, Program};
use slope::diagnostic::RenderStyle;
use slope::segments::{self, Level, StmtId};
use slope_tests::file_loader;

fn compile(src: &str) -> Program {
    slope_tests::compile_source("segments.slope", src)
}

fn snapshot(name: &str, value: String) {
    slope_tests::snapshot!(format!("segments__{name}"), value);
}

/// The `-- ` comment lines of one entry's parallel level.
fn levels(p: &Program, entry: &str) -> Vec<String> {
    slope_tests::stage_comments(p, "segments", entry)
}

const SHAPES: &str = "\
entry rows [n][m] (xs: [n][m]f64) : [n]f64 = map (\\r -> sum (map (\\x -> x * x) r)) xs
entry steps [n] (y0: [n]f64) (s: i64) : [n]f64 =
  loop y = y0 for _t < s do map (\\a -> 0.5 * a + 1.0) y
entry few [n] (xs: [n]f64) : [5]f64 = tabulate 5 (\\k -> sum (map (\\x -> x * f64 k) xs))
entry few_and_small : [5]f64 = tabulate 5 (\\k -> sum (tabulate 9 (\\i -> f64 (i * k))))
entry squares (n: i64) : []i64 = loop acc = replicate n 0 for i < n do acc with [i] = i * i
entry histogram [n] (is: [n]i64) (vs: [n]f64) : []f64 = reduce_by_index (replicate 4 0.0) (+) 0.0 is vs
entry gradient [n] (w: [n]f64) (xs: [n]f64) : [n]f64 =
  grad (\\v -> sum (map2 (\\a b -> a * b) v xs) * sum v) w
";

#[test]
fn the_parallel_level_prints() {
    let p = compile(SHAPES);
    let text = p.emit("segments", None).unwrap();
    snapshot("shapes", format!("{SHAPES}\n---\n{text}"));
}

/// Outermost first: the rows of a matrix run in parallel, each row's sum
/// inside them sequentially.
#[test]
fn the_outermost_map_is_parallel_and_what_is_inside_it_is_not() {
    let p = compile(SHAPES);
    let got = levels(&p, "rows");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("parallel map over n_"), "{got:?}");
}

/// A time-step loop carries its state: sequential, and so is the map inside.
#[test]
fn a_loop_that_carries_a_value_is_sequential_with_everything_inside() {
    let p = compile(SHAPES);
    let got = levels(&p, "steps");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("sequential loop [carried] over s_"), "{got:?}");
    assert!(got[0].contains("(carries y_"), "{got:?}");
}

/// Five rows of a sum over `n`: the five are too few to share out, the
/// sums inside go to the pool — one segment inside a loop, on the pool,
/// not called inline — and the results are the interpreter's on every
/// thread count.
#[test]
fn a_space_too_small_gives_its_threads_to_the_level_inside() {
    let p = compile(SHAPES);
    let got = levels(&p, "few");
    assert!(got.iter().any(|l| l == "sequential map over 5 (fewer than 8 iterations, more inside)"), "{got:?}");
    assert!(got.iter().any(|l| l.starts_with("parallel loop [reduce (+)] over ")), "{got:?}");
    let parallel = p.emit("parallel", Some("few")).unwrap();
    let nested = parallel.lines().find(|l| l.contains("parallel segment")).expect("a segment");
    assert!(nested.starts_with("    "), "the segment should be inside the loop over 5:\n{parallel}");
    let xs: Vec<f64> = (0..50_000).map(|i| (i % 17) as f64 * 0.25).collect();
    let input = serde_json::json!({ "xs": xs });
    let want = p.call_json_on(Engine::Interp, "few", &input).unwrap();
    for threads in [1, 2, 3, 8] {
        p.set_threads(threads).expect("native code");
        let got = p.call_json_on(Engine::Multicore, "few", &input).unwrap();
        assert_eq!(got, want, "{threads} threads");
    }
    p.set_threads(1).expect("native code");
}

/// Without a wider level inside, a small space stays as it was.
#[test]
fn a_small_space_with_nothing_wider_inside_stays_parallel() {
    let p = compile(SHAPES);
    let got = levels(&p, "few_and_small");
    assert!(got.iter().all(|l| !l.starts_with("sequential")), "{got:?}");
}

/// A loop writing each element at its own index is a map of slots.
#[test]
fn a_loop_writing_at_its_own_index_is_parallel() {
    let p = compile(SHAPES);
    let got = levels(&p, "squares");
    assert!(got.iter().any(|l| l.starts_with("parallel loop [slots] over ")), "{got:?}");
}

/// Reverse mode's adjoint accumulations are histograms: the backward sweep
/// of a map is a parallel loop that adds into the adjoint arrays.
#[test]
fn histograms_and_reverse_sweeps_are_parallel() {
    let p = compile(SHAPES);
    let got = levels(&p, "histogram");
    assert!(got.iter().any(|l| l.starts_with("parallel histogram over len is_")), "{got:?}");
    let got = levels(&p, "gradient");
    assert!(got.iter().all(|l| !l.starts_with("sequential")), "{got:?}");
    assert!(got.iter().any(|l| l.starts_with("parallel ")), "{got:?}");
}

/// The loops lowering emits for a sequential statement are not marked, and
/// the `parallel` stage leaves them in place; a marked one it outlines.
#[test]
fn only_marked_loops_go_to_the_pool() {
    let p = compile(SHAPES);
    let lowered = p.emit("lowered", Some("steps")).unwrap();
    assert!(!lowered.contains("parallel for"), "{lowered}");
    let parallel = p.emit("parallel", Some("steps")).unwrap();
    assert!(!parallel.contains("parallel segment"), "{parallel}");
    let lowered = p.emit("lowered", Some("rows")).unwrap();
    assert_eq!(lowered.matches("parallel for").count(), 1, "{lowered}");
    let parallel = p.emit("parallel", Some("rows")).unwrap();
    assert_eq!(parallel.matches("parallel segment").count(), 1, "{parallel}");
}

/// The verifier rejects a parallel statement inside a parallel one, and a
/// level naming a statement the program does not have.
#[test]
fn the_verifier_rejects_parallelism_inside_parallelism() {
    let p = compile(SHAPES);
    let mut level = segments::decide(&p.ir);
    assert_eq!(segments::verify(&level), Ok(()));
    // The map's lambda: mark its first statement parallel too.
    let rows = level.ir.func("rows").expect("an entry");
    let map = rows.body.stmts.iter().find(|s| matches!(s.expr, slope::ir::Expr::Map { .. })).expect("the map");
    assert!(level.is_parallel(map));
    let inner = StmtId::of(map.expr.lambdas()[0].body.stmts.first().expect("a statement in the lambda"));
    level.segments.insert(inner, segments::Segment { level: Level::Parallel, space: None });
    let err = segments::verify(&level).expect_err("nested parallelism");
    assert!(err.contains("inside a level that took the threads"), "{err}");

    let mut level = segments::decide(&p.ir);
    let stray = slope::ir::Stmt {
        binds: vec![],
        expr: slope::ir::Expr::Atom(slope::ir::Atom::i64(0)),
        span: Default::default(),
    };
    level.segments.insert(StmtId::of(&stray), segments::Segment { level: Level::Parallel, space: None });
    let err = segments::verify(&level).expect_err("a stray statement");
    assert!(err.contains("does not have"), "{err}");
}

/// Two GradBench programs: lse whole, and gmm's decisions — its backward
/// sweep over the data points is one parallel loop adding into five
/// adjoint arrays.
#[test]
fn gradbench_programs() {
    let read = |name: &str| {
        let path = slope_tests::workspace_dir().join("examples/gradbench").join(name);
        let text = std::fs::read_to_string(&path).expect("the example");
        Program::compile(&path.display().to_string(), &text, &file_loader)
            .unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Rich)))
    };
    let lse = read("lse.slope");
    snapshot("lse", lse.emit("segments", None).unwrap());
    let gmm = read("gmm.slope");
    let decisions = levels(&gmm, "jacobian");
    snapshot("gmm_jacobian", decisions.join("\n"));
    let sweep = "parallel loop [histogram, histogram, histogram, histogram, histogram]";
    assert!(decisions.iter().any(|l| l.starts_with(sweep)), "{decisions:?}");
    assert!(decisions.iter().all(|l| l.starts_with("parallel")), "{decisions:?}");
}

/// A small space whose inner level cannot share its iterations (a loop that
/// carries a value) keeps the threads itself.
#[test]
fn a_small_space_over_a_carried_loop_stays_parallel() {
    let src = "entry f [n] (xs: [n]f64) : [5]f64 =\n\
               \x20 tabulate 5 (\\k -> loop acc = 0.0 for i < n do acc * 0.5 + xs[i] * f64 k)";
    let p = compile(src);
    let got = levels(&p, "f");
    assert!(got.iter().any(|l| l == "parallel map over 5"), "{got:?}");
    assert!(got.iter().all(|l| !l.starts_with("sequential")), "{got:?}");
}

/// A role holds only when nothing in the iteration reads what it made: a
/// running value read by another computation, or a slot read back, make
/// the loop carry it.
#[test]
fn a_value_read_again_in_its_iteration_is_carried() {
    let src = "entry running [n] (xs: [n]f64) : (f64, [n]f64) =\n\
               \x20 loop (acc, out) = (0.0, replicate n 0.0) for i < n do\n\
               \x20   let t = acc + xs[i] in (t, out with [i] = t * 2.0)\n\
               entry scan_like [n] (xs: [n]f64) : (f64, [n]f64) =\n\
               \x20 loop (acc, out) = (0.0, replicate n 0.0) for i < n do\n\
               \x20   let t = acc + xs[i] in (t, out with [i] = t)";
    let p = compile(src);
    let got = levels(&p, "running");
    assert!(got.iter().any(|l| l.starts_with("sequential loop [carried, slots]")), "{got:?}");
    let got = levels(&p, "scan_like");
    assert!(got.iter().any(|l| l.starts_with("parallel loop [reduce (+), slots]")), "{got:?}");
}
