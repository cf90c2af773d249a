//! Tests of the optimiser: every rule preserves meaning on programs where it
//! fires (random inputs through the interpreter, before and after), the
//! combinators behave as in ELEVATE, fuel exhaustion is reported, and the
//! schedule language parses and prints back.

use super::strategy::{self, apply, Cx, Outcome, Stop};
use super::{optimise, schedule, OptError, DEFAULT_SCHEDULE};
use crate::api::Program;
use crate::driver::no_files;
use crate::ir::interp::{self, Val};
use crate::ir::{self, verify};
use slope_runtime::{Array, ArrayData};
use std::rc::Rc;

/// The AD output (`--stage ad`) of a source program.
fn ad_ir(src: &str) -> ir::Program {
    let p = Program::compile("t.slope", src, &no_files).unwrap_or_else(|f| panic!("{f:?}\n{src}"));
    p.differentiated
}

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Random arguments for `func`: every array of rank r has the shape
/// `dims[..r]` (so size checks between parameters pass); floats in (0.1, 2.1),
/// integers in 0..4 (valid indices when every dimension is at least 4).
fn random_args(p: &ir::Program, func: &str, rng: &mut Rng) -> Vec<Val> {
    let f = p.func(func).expect("function exists");
    let dims = [4 + (rng.next() % 3) as usize, 4 + (rng.next() % 2) as usize, 4];
    f.params
        .iter()
        .map(|v| {
            let t = p.vars.ty(*v);
            let len: usize = dims[..t.rank as usize].iter().product();
            let mut float = || 0.1 + 2.0 * rng.unit();
            if t.rank == 0 {
                return match t.elem {
                    crate::types::ScalarType::F64 => Val::F64(float()),
                    crate::types::ScalarType::I64 => Val::I64((rng.next() % 4) as i64),
                    crate::types::ScalarType::Bool => Val::Bool(rng.next().is_multiple_of(2)),
                    crate::types::ScalarType::F32 => Val::F32(float() as f32),
                };
            }
            let data = match t.elem {
                crate::types::ScalarType::F64 => ArrayData::F64((0..len).map(|_| 0.1 + 2.0 * rng.unit()).collect()),
                crate::types::ScalarType::I64 => ArrayData::I64((0..len).map(|_| (rng.next() % 4) as i64).collect()),
                crate::types::ScalarType::Bool => {
                    ArrayData::Bool((0..len).map(|_| rng.next().is_multiple_of(2)).collect())
                }
                crate::types::ScalarType::F32 => ArrayData::F32((0..len).map(|_| rng.unit() as f32).collect()),
            };
            Val::Arr(Rc::new(Array { shape: dims[..t.rank as usize].to_vec(), data }))
        })
        .collect()
}

/// Runs `schedule` on the AD output of `src`; asserts it changed `entry`, that
/// the result verifies, and that on 20 random inputs the entry computes the
/// same values before and after, or fails with the same code (Note [What
/// may move] in `rules.rs`).
fn check_preserves(src: &str, entry: &str, schedule: &str) -> ir::Program {
    check_after(src, entry, "id", schedule)
}

/// Like [`check_preserves`], on the AD output first rewritten by `prep`.
fn check_after(src: &str, entry: &str, prep: &str, schedule: &str) -> ir::Program {
    let before = optimise(&ad_ir(src), prep).unwrap_or_else(|e| panic!("{prep}: {e}"));
    let after = optimise(&before, schedule).unwrap_or_else(|e| panic!("{schedule}: {e}"));
    assert_ne!(before.func(entry).unwrap().body, after.func(entry).unwrap().body, "`{schedule}` did not fire");
    if let Err(errs) = verify::verify_program(&after) {
        panic!("{schedule}: {errs:?}\n{}", ir::print::print_program(&after));
    }
    let mut rng = Rng(0x9E3779B97F4A7C15);
    for _ in 0..20 {
        let args = random_args(&before, entry, &mut rng);
        let opts = interp::Options::default();
        let got = interp::run(&after, entry, args.clone(), &opts);
        match interp::run(&before, entry, args, &opts) {
            Ok((want, _)) => {
                let (got, _) = got.unwrap_or_else(|e| panic!("{schedule}: the optimised program fails: {}", e.message));
                assert_eq!(want, got, "{schedule} changed the result\n{}", ir::print::print_program(&after));
            }
            Err(e) => match got {
                Ok(_) => panic!("{schedule}: the program failed ({}) but the optimised one succeeds", e.message),
                // The same failure: code, message and span (Note [Guards] in guards.rs).
                Err(g) => assert_eq!(
                    (e.code, &e.message, e.span),
                    (g.code, &g.message, g.span),
                    "{schedule}: {} became {}",
                    e.message,
                    g.message
                ),
            },
        }
    }
    after
}

/// Checks one rule: `topDown(rule)` (a single application) preserves meaning.
fn check_rule(src: &str, entry: &str, rule: &str) {
    check_preserves(src, entry, &format!("topDown({rule})"));
    check_preserves(src, entry, &format!("normalize({rule})"));
}

const DOT_GRAD: &str = "entry g [n] (x: [n]f64) (y: [n]f64) : [n]f64 = grad (\\a -> sum (map2 (*) a y)) x";

#[test]
fn copy_prop_preserves_meaning() {
    check_rule(DOT_GRAD, "g", "copy_prop");
}

#[test]
fn dce_preserves_meaning() {
    check_rule(DOT_GRAD, "g", "dce");
}

#[test]
fn dce_drops_unused_map_results() {
    let src = "entry f [n] (x: [n]f64) : [n]f64 = let (a, b) = unzip (map (\\v -> (v * 2.0, sin v)) x) in a";
    check_rule(src, "f", "dce");
}

#[test]
fn cse_preserves_meaning() {
    check_rule(DOT_GRAD, "g", "cse");
    check_rule("entry f (x: f64) (y: f64) : f64 = sin (x * y) + sin (y * x)", "f", "cse");
}

#[test]
fn fold_preserves_meaning() {
    check_rule("entry f (x: f64) : f64 = x * (2.0 + 3.0) + f64 (3 / 2) + exp 0.5", "f", "fold");
}

#[test]
fn ring_preserves_meaning() {
    check_rule("entry f (x: f64) (k: i64) : f64 = (x * 1.0 + 0.0) / 1.0 - 0.0 + f64 (k * 0 + 1 * k)", "f", "ring");
}

#[test]
fn float_zero_fires_on_finite_values() {
    check_rule("entry f (x: f64) : f64 = x * 0.0 + 2.0", "f", "float_zero");
}

#[test]
fn simplify_if_preserves_meaning() {
    check_rule(
        "entry f (x: f64) (y: f64) : f64 = (if true then x else y) + (if x > y then y else y)",
        "f",
        "simplify_if",
    );
}

#[test]
fn index_pull_preserves_meaning() {
    let src =
        "entry f [n] (x: [n]f64) (i: i64) : f64 = let r = replicate n (x[0]) in let k = iota n in r[i] + f64 (k[i])";
    check_rule(src, "f", "index_pull");
}

#[test]
fn shape_pull_preserves_meaning() {
    check_rule(DOT_GRAD, "g", "shape_pull");
}

#[test]
fn map_replicate_arg_preserves_meaning() {
    check_rule(DOT_GRAD, "g", "map_replicate_arg");
}

#[test]
fn map_identity_preserves_meaning() {
    let src =
        "entry f [n] (x: [n]f64) (y: [n]f64) (s: f64) : ([n]f64, [n]f64) = (map2 (\\a b -> b) x y, map (\\a -> s) x)";
    check_rule(src, "f", "map_identity");
}

#[test]
fn fuse_map_map_preserves_meaning() {
    let src = "entry f [n] (x: [n]f64) (y: [n]f64) : [n]f64 = map2 (\\a b -> a * b) (map (\\v -> sin v + 1.0) x) y";
    // The inner map's result is also read by a size check's `shape`: pull that first.
    let prep = "normalize(shape_pull <+ dce)";
    check_after(src, "f", prep, "topDown(fuse_map_map)");
    check_after(src, "f", prep, "normalize(fuse_map_map)");
}

const JACFWD_DOT: &str = "entry j [n] (x: [n]f64) (y: [n]f64) : [n]f64 = jacfwd (\\a -> sum (map2 (*) a y)) x";

/// The Jacobian of the dot product one direction at a time written by hand,
/// with a one-hot array of the user's: IEEE arithmetic, not seeds (Note
/// [One-hot seeds] in onehot.rs), so the collapse must not fire.
const JACFWD_DOT_BY_HAND: &str = "entry j [n] (x: [n]f64) (y: [n]f64) : [n]f64 = \
    map (\\q -> jvp (\\a -> sum (map2 (*) a y)) x (tabulate n (\\i -> if i == q then 1.0 else 0.0))) (iota n)";

/// The steps of the one-hot collapse, each on the IR the previous ones leave.
const ONEHOT_PREP: &str = "normalize(copy_prop <+ dce <+ fold <+ ring <+ simplify_if <+ index_pull <+ shape_pull <+ map_replicate_arg <+ map_identity) ; try(cse) ; normalize(copy_prop <+ dce <+ shape_pull <+ fuse_map_map)";

#[test]
fn reduce_fission_preserves_meaning() {
    check_after(JACFWD_DOT, "j", ONEHOT_PREP, "topDown(reduce_fission)");
    check_after(JACFWD_DOT, "j", ONEHOT_PREP, "normalize(reduce_fission)");
}

#[test]
fn select_float_preserves_meaning() {
    check_after(JACFWD_DOT, "j", ONEHOT_PREP, "topDown(select_float)");
}

#[test]
fn onehot_sum_preserves_meaning() {
    let prep = format!("{ONEHOT_PREP} ; normalize(reduce_fission <+ if_to_select <+ select_float <+ dce <+ copy_prop)");
    check_after(JACFWD_DOT, "j", &prep, "topDown(onehot_sum)");
    check_after(JACFWD_DOT, "j", &prep, "normalize(onehot_sum)");
}

#[test]
fn a_users_one_hot_array_is_not_a_seed() {
    let prep = format!("{ONEHOT_PREP} ; normalize(reduce_fission <+ if_to_select <+ dce <+ copy_prop)");
    let before = optimise(&ad_ir(JACFWD_DOT_BY_HAND), &prep).unwrap();
    for rule in ["select_float", "onehot_sum"] {
        let after = optimise(&before, &format!("normalize({rule})")).unwrap();
        assert_eq!(before.func("j").unwrap().body, after.func("j").unwrap().body, "{rule} fired");
    }
    // The same Jacobian through `jacfwd` is seeded, and collapses.
    let seeded = optimise(&ad_ir(JACFWD_DOT), &prep).unwrap();
    let after = optimise(&seeded, "normalize(select_float)").unwrap();
    assert_ne!(seeded.func("j").unwrap().body, after.func("j").unwrap().body, "select_float did not fire");
}

#[test]
fn iota_bounds_preserves_meaning() {
    let prep = format!(
        "{ONEHOT_PREP} ; normalize(reduce_fission <+ if_to_select <+ select_float <+ dce <+ copy_prop <+ onehot_sum)"
    );
    check_after(JACFWD_DOT, "j", &prep, "topDown(iota_bounds)");
}

#[test]
fn hoist_guarded_preserves_meaning() {
    // The per-direction map of jacfwd recomputes `y[0]` (which could fail) for every direction.
    let src = "entry j [n] (x: [n]f64) (y: [n]f64) : [n][n]f64 = jacfwd (\\a -> map (\\v -> v * y[0] + sin y[1]) a) x";
    check_rule(src, "j", "hoist_guarded");
    // An empty map must still give an empty result (the guard's other branch).
    check_rule("entry f [n] (x: [n]f64) (y: [3]f64) : [n]f64 = map (\\v -> v * exp y[2]) x", "f", "hoist_guarded");
}

/// A map of a constant positive width runs: what does not depend on the
/// element leaves it with no `if width > 0` around the map, so the map's
/// row shape stays a constant for lowering (ht's `tabulate 3` per vertex).
#[test]
fn hoist_guarded_needs_no_guard_for_a_constant_width() {
    let src = "entry f [n] (y: [n]f64) : [3]f64 = tabulate 3 (\\i -> f64 i * exp y[2])";
    let after = check_after(src, "f", "normalize(copy_prop <+ dce <+ fold <+ shape_pull)", "normalize(hoist_guarded)");
    let text = ir::print::print_program(&after);
    assert!(!text.contains(" if ") && !text.contains("nonempty"), "{text}");
    let map_at = text.find("= map 3").unwrap_or_else(|| panic!("{text}"));
    assert!(text.find("exp").is_some_and(|e| e < map_at), "`exp y[2]` left the map:\n{text}");
}

#[test]
fn fuse_map_reduce_preserves_meaning() {
    let src = "entry f [n] (x: [n]f64) (y: [n]f64) : (f64, f64) =\n\
               let (s, p) = reduce (\\(a, b) (c, d) -> (a + c, b * d)) (0.0, 1.0) (map2 (\\u v -> (u * v, sin u)) x y) in (s, p)";
    check_rule(src, "f", "fuse_map_reduce");
    check_rule("entry g [n] (x: [n]f64) : f64 = sum (map (\\v -> v * v) x)", "g", "fuse_map_reduce");
}

/// Two reduces of one map's results (a dual `sum`'s primal and tangent
/// halves, as `reduce_fission` leaves them) become one loop, and a
/// statement between them that uses neither result may stay between.
#[test]
fn fuse_map_reduce_takes_every_reduce_of_one_map() {
    let src = "entry f [n] (x: [n]f64) (y: [n]f64) : (f64, f64, f64) =\n\
               let m = map2 (\\u v -> u * v) x y in let s = sum m in let k = sin y[0] in \
               let p = reduce (\\a b -> a * b) 1.0 m in (s, k, p)";
    let after = check_after(src, "f", "normalize(copy_prop <+ dce)", "normalize(fuse_map_reduce)");
    let text = ir::print::print_program(&after);
    assert!(!text.contains("= reduce") && !text.contains("= map"), "{text}");
    // A third use of the map's result (not a reduce) keeps the map.
    let src = "entry g [n] (x: [n]f64) : (f64, f64, [n]f64) = let m = map (\\u -> u * u) x in (sum m, product m, m)";
    let before = optimise(&ad_ir(src), "normalize(copy_prop <+ dce)").unwrap();
    assert!(optimise(&before, "topDown(fuse_map_reduce)").is_err(), "fused a map that is also returned");
}

/// `hoist_guarded` wraps a map in `if width > 0`; `sink_reduce` moves the sum
/// of its rows (a vector fold) into both branches, `reduce_empty` makes the
/// empty branch's sum its neutral element, and the map and its sum then
/// fuse. A sum of scalars is left where it is (Note [Sinking reduces]).
#[test]
fn sink_reduce_and_reduce_empty_preserve_meaning() {
    let src = "entry f [n][m] (xs: [n][m]f64) (y: [3]f64) : [m]f64 = \
               let rows = map (\\r -> let s = exp y[2] in map (\\v -> v * s) r) xs in \
               reduce (\\a b -> map2 (+) a b) (replicate m 0.0) rows";
    let prep = "normalize(copy_prop <+ dce <+ shape_pull) ; normalize(hoist_guarded)";
    let sunk = check_after(src, "f", prep, "normalize(sink_reduce)");
    let prep = format!("{prep} ; normalize(sink_reduce)");
    check_after(src, "f", &prep, "normalize(reduce_empty)");
    let fused = optimise(&sunk, "normalize(reduce_empty <+ fuse_map_reduce <+ copy_prop <+ dce)").unwrap();
    let text = ir::print::print_program(&fused);
    assert!(!text.contains("= reduce"), "{text}");
    let scalar = "entry g [n] (x: [n]f64) (y: [3]f64) : f64 = sum (map (\\v -> v * exp y[2]) x)";
    let before =
        optimise(&ad_ir(scalar), "normalize(copy_prop <+ dce <+ shape_pull) ; normalize(hoist_guarded)").unwrap();
    assert!(optimise(&before, "topDown(sink_reduce)").is_err(), "sank a scalar sum");
}

#[test]
fn loop_fission_preserves_meaning() {
    let src = "entry f (x: f64) (y: f64) (n: i64) : (f64, f64) =\n\
               loop (a, b) = (x, y) for i < n do (sin a + f64 i, b * 0.5 + x)";
    check_rule(src, "f", "loop_fission");
}

#[test]
fn if_to_select_preserves_meaning() {
    check_rule(
        "entry f (x: f64) (y: f64) : f64 = x * (if y > 0.0 then 1.0 else 0.0) + (if x < y then x else y)",
        "f",
        "if_to_select",
    );
}

#[test]
fn map_index_slice_preserves_meaning() {
    let src = "entry f [n] (x: [n]f64) (y: [n]f64) : [n]f64 = map (\\i -> y[i]) (iota n)";
    // The map's width must first be recognised as the iota's length.
    check_after(src, "f", "normalize(shape_pull <+ copy_prop <+ dce)", "topDown(map_index_slice)");
}

#[test]
fn map_index_slice_keeps_a_gather_that_may_index_past_the_end() {
    // `n` may exceed the length of `y`: the map fails at `y[i]` with "index
    // m out of bounds", which a slice would report as "slice 0:n" at the map.
    let src = "entry f [m] (y: [m]f64) (n: i64) : []f64 = map (\\i -> y[i]) (iota n)";
    let before = optimise(&ad_ir(src), "normalize(shape_pull <+ copy_prop <+ dce)").unwrap();
    let after = optimise(&before, "normalize(map_index_slice)").unwrap();
    assert_eq!(before.func("f").unwrap().body, after.func("f").unwrap().body, "map_index_slice fired");
}

#[test]
fn slice_full_preserves_meaning() {
    check_rule("entry f [n] (x: [n]f64) (y: [n]f64) : [n]f64 = map2 (+) x[0:n] y", "f", "slice_full");
}

#[test]
fn licm_preserves_meaning() {
    let src = "entry f [n] (x: [n]f64) (s: f64) (k: i64) : [n]f64 = map (\\a -> a * (s * 2.0) + f64 (k + 1)) x";
    check_rule(src, "f", "licm");
    let looped = "entry f (s: f64) (k: i64) : f64 = loop acc = 0.0 for i < k do acc + s * 3.0";
    check_rule(looped, "f", "licm");
}

/// An integer division, remainder or power by a constant that rules out
/// failure (a non-zero divisor, a non-negative exponent) cannot fail, so
/// `licm` moves it out of a map with no `if width > 0` around the map (which
/// kept the map from fusing into its sum: a row offset `r * (r - 1) / 2`
/// cost an array per row). By a variable it may fail, and stays.
#[test]
fn licm_moves_integer_division_by_a_constant() {
    let src = "entry f [n] (x: [n]f64) (k: i64) : [n]f64 = map (\\a -> a * f64 (k * (k - 1) / 2 + k % 3 + k ** 2)) x";
    let after = check_after(src, "f", "normalize(copy_prop <+ dce)", "normalize(licm)");
    let text = ir::print::print_program(&after);
    let map_at = text.find("= map").unwrap_or_else(|| panic!("{text}"));
    for op in [" / 2", " % 3", " ** 2"] {
        assert!(text.find(op).is_some_and(|at| at < map_at), "`{op}` left in the map:\n{text}");
    }
    let src = "entry g [n] (x: [n]f64) (k: i64) (m: i64) : [n]f64 = map (\\a -> a * f64 (k / m + k % m + k ** m)) x";
    let before = optimise(&ad_ir(src), "normalize(copy_prop <+ dce)").unwrap();
    assert!(optimise(&before, "topDown(licm)").is_err(), "moved a division by a variable out of a map");
}

/// Both branches begin by posing `x` (the same statements, inlined twice):
/// an index that may fail is among them, with one span in both branches.
const POSED_TWICE: &str = "def pose [n] (x: [n]f64) (i: i64) : f64 = x[i + 2] * 2.0 + sin x[i]\n\
    entry f [n] (x: [n]f64) (i: i64) (b: bool) : f64 = if b then pose x i + 1.0 else pose x i * 3.0";

#[test]
fn hoist_common_preserves_meaning() {
    check_rule(POSED_TWICE, "f", "hoist_common");
    // Forward mode in both branches, as in GradBench's `ht`: each branch
    // begins with the primal and its tangents, seeded with the spans of
    // different `jacfwd`s.
    let jacobians = "def pose [n] (x: [n]f64) : [n]f64 = map (\\v -> sin v * v) x\n\
        entry j [n] (x: [n]f64) (y: [n]f64) (b: bool) : [n][n]f64 =\n\
        if b then jacfwd (\\a -> map2 (*) (pose a) y) x else jacfwd (\\a -> map2 (+) (pose a) y) x";
    let prep = "normalize(copy_prop <+ dce <+ fold <+ ring <+ simplify_if <+ shape_pull) ; try(cse)";
    check_after(jacobians, "j", prep, "normalize(hoist_common)");
}

/// The statements before the `if` and its branches, in `f` after `schedule`.
fn split_at_if(src: &str, schedule: &str) -> (Vec<ir::Stmt>, ir::Body, ir::Body) {
    let p = optimise(&ad_ir(src), schedule).unwrap();
    let body = &p.func("f").unwrap().body;
    let at = body.stmts.iter().position(|s| matches!(s.expr, ir::Expr::If { .. })).expect("an if");
    let ir::Expr::If { then_body, else_body, .. } = &body.stmts[at].expr else { unreachable!() };
    (body.stmts[..at].to_vec(), then_body.clone(), else_body.clone())
}

#[test]
fn hoist_common_moves_the_whole_common_prefix_and_renames_the_else_branch() {
    let (before, then_body, else_body) = split_at_if(POSED_TWICE, "normalize(hoist_common)");
    // Both reads of `x`, `sin` and the sum move; each branch keeps its last step.
    assert!(before.iter().filter(|s| matches!(s.expr, ir::Expr::Index { .. })).count() == 2);
    assert_eq!((then_body.stmts.len(), else_body.stmts.len()), (1, 1));
    let ir::Expr::Binary(_, ir::Atom::Var(read), _) = else_body.stmts[0].expr else { panic!("x * 3.0") };
    assert_eq!(Some(read), before.last().map(|s| s.binds[0]), "the else branch reads the hoisted sum");
}

#[test]
fn hoist_common_keeps_a_failure_with_its_own_span_in_its_branch() {
    // `x[i]` may fail, and each branch's names its own source: it stays put,
    // so an out-of-range `i` is reported where the branch taken reads it.
    // `sin y` cannot fail: it moves although its spans differ too.
    let src = "entry f [n] (x: [n]f64) (i: i64) (y: f64) (b: bool) : f64 =\n\
        if b then sin y + x[i] else sin y * x[i]";
    let (before, then_body, else_body) = split_at_if(src, "normalize(hoist_common)");
    assert!(matches!(before.last().map(|s| &s.expr), Some(ir::Expr::Unary(ir::UnOp::Sin, _))));
    for branch in [&then_body, &else_body] {
        assert!(matches!(branch.stmts[0].expr, ir::Expr::Index { .. }), "the index stays in its branch");
    }
    assert_ne!(then_body.stmts[0].span, else_body.stmts[0].span);
}

#[test]
fn hoist_common_does_not_count_on_a_size_check_after_the_if() {
    // `y[j]` cannot fail once `dot` has checked n == m, but that check runs
    // after the `if`: with n > m the branch taken fails first, and its own
    // line must be named, whatever the engine.
    let src = "def dot [n] (x: [n]f64) (y: [n]f64) : f64 = sum (map2 (*) x y)\n\
        entry f [n] (x: [n]f64) (y: []f64) (b: bool) : f64 =\n\
        let r = if b\n\
        then sum (map (\\j -> y[j]) (iota n))\n\
        else 2.0 * sum (map (\\j -> y[j]) (iota n))\n\
        in r + dot x y";
    let p = Program::compile("t.slope", src, &no_files).unwrap();
    for engine in [crate::api::Engine::Interp, crate::api::Engine::Sequential] {
        for (b, line) in [(true, 4), (false, 5)] {
            let input = serde_json::json!({ "x": [1.0, 2.0, 3.0, 4.0, 5.0], "y": [1.0, 2.0, 3.0], "b": b });
            let err = p.call_json_on(engine, "f", &input).unwrap_err();
            let text = err.render(crate::diagnostic::RenderStyle::Short);
            assert!(text.starts_with(&format!("t.slope:{line}:")) && text.contains("E0201"), "{engine:?}, b = {b}: {text}");
        }
    }
}

/// The whole default schedule on every example of the suite's AD programs.
#[test]
fn default_schedule_preserves_meaning() {
    check_preserves(DOT_GRAD, "g", DEFAULT_SCHEDULE);
    let src = "entry f [n] (x: [n]f64) : [n]f64 = grad (\\v -> sum (map (\\a -> sin a * a) v) * 2.0) x";
    check_preserves(src, "f", DEFAULT_SCHEDULE);
}

// ---- combinators ----

fn with_cx<T>(src: &str, f: impl FnOnce(&mut Cx, &ir::Body) -> T) -> T {
    let mut p = ad_ir(src);
    let body = p.funcs[0].body.clone();
    let mut cx = Cx::new(&mut p.vars, 1_000_000);
    cx.enter_function(&body);
    f(&mut cx, &body)
}

fn strat(text: &str) -> strategy::Strategy {
    schedule::parse(text).unwrap().strategy
}

#[test]
fn id_and_fail() {
    with_cx(DOT_GRAD, |cx, b| {
        assert!(matches!(apply(cx, &strat("id"), b), Ok(Outcome::Same)));
        assert_eq!(apply(cx, &strat("fail"), b).err(), Some(Stop::Failed("fail".into())));
        assert!(matches!(apply(cx, &strat("fail <+ id"), b), Ok(Outcome::Same)));
        assert!(matches!(apply(cx, &strat("try(fail)"), b), Ok(Outcome::Same)));
        assert!(matches!(apply(cx, &strat("dce <+ fail"), b), Ok(Outcome::New(_))));
    });
}

/// `s1 ; s2` fails when `s2` fails, and the use counts are those of the
/// original term again (the rollback is accounted).
#[test]
fn seq_rolls_back() {
    with_cx(DOT_GRAD, |cx, b| {
        let vars: Vec<ir::Var> = (0..cx.vars.len() as u32).map(ir::Var).collect();
        let before: Vec<u32> = vars.iter().map(|v| cx.uses(*v)).collect();
        assert_eq!(apply(cx, &strat("copy_prop ; fail"), b).err(), Some(Stop::Failed("fail".into())));
        let after: Vec<u32> = vars.iter().map(|v| cx.uses(*v)).collect();
        assert_eq!(before, after);
        assert!(matches!(apply(cx, &strat("copy_prop ; dce"), b), Ok(Outcome::New(_))));
    });
}

#[test]
fn traversals_report_which_strategy_failed() {
    with_cx(DOT_GRAD, |cx, b| {
        // No map consumes another map's result here.
        assert_eq!(
            apply(cx, &strat("topDown(fuse_map_map)"), b).err(),
            Some(Stop::Failed("topDown(fuse_map_map)".into()))
        );
        // `one` and `all` act on the children (the lambda bodies), not the top body.
        assert!(apply(cx, &strat("one(copy_prop)"), b).is_ok(), "a lambda body has parameter copies");
        assert_eq!(apply(cx, &strat("all(copy_prop)"), b).err(), Some(Stop::Failed("all(copy_prop)".into())));
        assert!(matches!(apply(cx, &strat("some(copy_prop)"), b), Ok(Outcome::New(_))));
        assert!(matches!(apply(cx, &strat("bottomUp(copy_prop)"), b), Ok(Outcome::New(_))));
        assert!(matches!(apply(cx, &strat("allTopDown(try(copy_prop))"), b), Ok(Outcome::New(_))));
        assert!(matches!(apply(cx, &strat("allBottomUp(try(dce))"), b), Ok(Outcome::New(_))));
        assert!(matches!(apply(cx, &strat("repeat(fail)"), b), Ok(Outcome::Same)));
    });
}

/// `topDown` rewrites the first match only; `normalize` reaches the fixpoint.
#[test]
fn top_down_once_normalize_to_fixpoint() {
    let p = ad_ir(DOT_GRAD);
    let once = optimise(&p, "topDown(copy_prop)").unwrap();
    let fix = optimise(&p, "normalize(copy_prop)").unwrap();
    assert!(optimise(&fix, "topDown(copy_prop)").is_err(), "nothing left to propagate");
    assert!(optimise(&once, "topDown(copy_prop)").is_ok(), "the lambda's copies are left after one step");
}

#[test]
fn running_out_of_fuel_is_reported() {
    let p = ad_ir(DOT_GRAD);
    match optimise(&p, "fuel 3: normalize(copy_prop <+ dce <+ shape_pull)") {
        Err(OptError::Stopped { func, stop: Stop::OutOfFuel(_) }) => assert_eq!(func, "g"),
        other => panic!("expected out of fuel, got {:?}", other.map(|_| ())),
    }
    let e = optimise(&p, "fuel 3: repeat(try(dce))").err().map(|e| e.to_string());
    assert!(e.is_none_or(|m| m.contains("fuel")));
}

// ---- the schedule language ----

#[test]
fn schedule_parses_and_prints_back() {
    let s = schedule::parse("fuel 1_000: normalize(copy_prop <+ dce) ; try(cse) <+ id").unwrap();
    assert_eq!(s.fuel, Some(1000));
    // `;` binds tighter than `<+`.
    assert_eq!(s.strategy.to_string(), "((normalize((copy_prop <+ dce)) ; try(cse)) <+ id)");
    let again = schedule::parse(&s.strategy.to_string()).unwrap();
    assert_eq!(again.strategy.to_string(), s.strategy.to_string());
    assert!(schedule::parse(DEFAULT_SCHEDULE).is_ok());
}

#[test]
fn schedule_errors_say_where() {
    let e = schedule::parse("normalize(dce <+ nonsense)").unwrap_err();
    assert!(e.message.contains("unknown rule or combinator `nonsense`"), "{e}");
    assert_eq!(e.offset, 17);
    assert_eq!(schedule::parse("topDown dce").unwrap_err().message, "expected `(` after `topDown`");
    assert_eq!(schedule::parse("dce ;").unwrap_err().message, "expected a strategy, found the end");
    assert_eq!(schedule::parse("(dce").unwrap_err().message, "expected `)`");
    assert_eq!(schedule::parse("dce dce").unwrap_err().message, "expected `;`, `<+` or the end");
    assert_eq!(schedule::parse("fuel x: dce").unwrap_err().message, "expected a number after `fuel`");
    assert!(schedule::parse("dce % id").unwrap_err().message.contains("unexpected character"));
}

#[test]
fn permutation_store_preserves_meaning() {
    // The reverse of sort's gather: an accumulation through argsort's permutation,
    // read forwards and (here) backwards by the reversed loop of reverse mode.
    let src =
        "entry g [n] (x: [n]f64) : [n]f64 = grad (\\v -> sum (map2 (\\a i -> a * a * f64 i) (sort v) (iota n))) x";
    let prep = DEFAULT_SCHEDULE.replace(" <+ permutation_store", "");
    let after = check_after(src, "g", &prep, "topDown(permutation_store)");
    let text = ir::print::print_program(&after);
    assert!(text.contains("] = ") && !text.contains("] += "), "the accumulation became a store:\n{text}");
}

#[test]
fn permutation_store_needs_a_permutation() {
    // The same gather through indices that may repeat: the accumulation stays.
    let src = "entry g [n][m] (x: [n]f64) (is: [m]i64) : [n]f64 = grad (\\v -> sum (map (\\i -> v[i] * v[i]) is)) x";
    let after = optimise(&ad_ir(src), DEFAULT_SCHEDULE).unwrap();
    let text = ir::print::print_program(&after);
    assert!(text.contains("] += "), "an accumulation through arbitrary indices must stay one:\n{text}");
}

/// `p` printed with every numbered name renumbered in order of appearance:
/// two runs that differ only in the fresh names their rules drew print the same.
fn printed_up_to_names(p: &ir::Program) -> String {
    let text = ir::print::print_program(p);
    let mut names: std::collections::HashMap<String, usize> = Default::default();
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String, names: &mut std::collections::HashMap<String, usize>| {
        let numbered =
            word.rsplit_once('_').is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if numbered {
            let k = names.len();
            out.push_str(&format!("v{}", *names.entry(word.clone()).or_insert(k)));
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out, &mut names);
            out.push(c);
        }
    }
    flush(&mut word, &mut out, &mut names);
    out
}

#[test]
fn skipping_clean_bodies_reaches_the_same_normal_form() {
    // Note [Clean bodies]: the examples whose optimisation takes several
    // rounds, each optimised with and without skipping.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/");
    let sched = schedule::parse(DEFAULT_SCHEDULE).unwrap();
    let names = [
        "implicit_ridge.slope",
        "bilevel_ridge.slope",
        "implicit_fixed_point.slope",
        "gradbench/particle.slope",
        "gradbench/saddle.slope",
        "gradbench/ht.slope",
    ];
    for name in names {
        let path = format!("{root}{name}");
        let src = std::fs::read_to_string(&path).unwrap();
        let ad = Program::compile(&path, &src, &crate::driver::file_loader).unwrap().differentiated;
        let run = |sweep_all: bool| {
            let mut p = ad.clone();
            let flags = strategy::Flags { sweep_all, ..Default::default() };
            strategy::run_program(&mut p, &sched.strategy, super::DEFAULT_FUEL, flags).unwrap();
            verify::verify_program(&p).unwrap();
            printed_up_to_names(&p)
        };
        assert_eq!(run(false), run(true), "{name}");
    }
}

#[test]
fn functions_optimised_in_parallel_are_numbered_as_one_after_the_other() {
    // Note [Functions optimised in parallel]: the whole program at once
    // against each function on its own, in program order, each starting
    // from the table the one before it left. Same bodies and same table,
    // variable numbers included.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/");
    let sched = schedule::parse(DEFAULT_SCHEDULE).unwrap();
    for name in ["implicit_ridge.slope", "gradbench/saddle.slope", "gradbench/ht.slope"] {
        let path = format!("{root}{name}");
        let src = std::fs::read_to_string(&path).unwrap();
        let ad = Program::compile(&path, &src, &crate::driver::file_loader).unwrap().differentiated;
        assert!(ad.funcs.len() >= 2, "{name}: a program of several functions");
        let mut together = ad.clone();
        strategy::run_program(&mut together, &sched.strategy, super::DEFAULT_FUEL, Default::default()).unwrap();
        let mut vars = ad.vars.clone();
        let mut funcs = Vec::new();
        for f in &ad.funcs {
            let mut one = crate::ir::Program { funcs: vec![f.clone()], vars, recomputed: ad.recomputed.clone() };
            strategy::run_program(&mut one, &sched.strategy, super::DEFAULT_FUEL, Default::default()).unwrap();
            funcs.extend(one.funcs);
            vars = one.vars;
        }
        assert!(vars.len() > ad.vars.len(), "{name}: the optimiser made new variables");
        assert!(together.vars == vars, "{name}: the variable tables differ");
        assert!(together.funcs == funcs, "{name}: the functions differ");
    }
}
