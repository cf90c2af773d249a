//! The cheap-gradient principle, measured: over families of programs of
//! growing size, the interpreter's operation count of a gradient stays within
//! a fixed constant of the primal's, at every size. Value tests cannot catch an
//! O(n²) adjoint (a one-hot array per indexing, a dense context per
//! statement); these do. Costs are operation counts, not times, so the tests
//! are deterministic.

use slope::api::Program;
use slope::diagnostic::RenderStyle;

/// The largest gradient/primal cost ratio we accept, at any size.
const MAX_RATIO: f64 = 12.0;

fn compile(src: &str) -> Program {
    slope_tests::compile_source("cost.slope", src)
}

fn cost(p: &Program, entry: &str, input: &serde_json::Value) -> u64 {
    p.cost_json(entry, input).unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Rich))).total()
}

/// Checks the ratio at each size and that it does not grow with the size.
fn check_family(name: &str, ratios: &[(usize, f64)]) {
    for (n, r) in ratios {
        assert!(*r <= MAX_RATIO, "{name}: gradient costs {r:.1}x the primal at size {n}: {ratios:?}");
    }
    let first = ratios.first().unwrap().1;
    let last = ratios.last().unwrap().1;
    assert!(last <= first * 1.5 + 0.5, "{name}: the ratio grows with the size: {ratios:?}");
}

fn vector(n: usize) -> serde_json::Value {
    serde_json::Value::from((0..n).map(|i| 0.5 + (i % 7) as f64 * 0.1).collect::<Vec<f64>>())
}

/// Same program, inputs of growing size.
fn family_over_sizes(name: &str, src: &str, sizes: &[usize], input: impl Fn(usize) -> serde_json::Value) {
    let p = compile(src);
    let ratios: Vec<(usize, f64)> = sizes
        .iter()
        .map(|&n| {
            let x = input(n);
            (n, cost(&p, "gradient", &x) as f64 / cost(&p, "primal", &x) as f64)
        })
        .collect();
    check_family(name, &ratios);
}

/// Generated programs of growing size, fixed input.
fn family_over_programs(name: &str, sizes: &[usize], program: impl Fn(usize) -> String, input: serde_json::Value) {
    let ratios: Vec<(usize, f64)> = sizes
        .iter()
        .map(|&n| {
            let p = compile(&program(n));
            (n, cost(&p, "gradient", &input) as f64 / cost(&p, "primal", &input) as f64)
        })
        .collect();
    check_family(name, &ratios);
}

#[test]
fn long_let_chains() {
    family_over_programs(
        "let chain",
        &[10, 100, 1000],
        |n| {
            let mut body = String::new();
            for i in 1..=n {
                body.push_str(&format!("let x{i} = sin x{} * 1.01 + x{} in\n", i - 1, i - 1));
            }
            format!("entry primal (x: f64) : f64 =\nlet x0 = x in\n{body}x{n}\nentry gradient (x: f64) : f64 = grad primal x\n")
        },
        serde_json::json!({"x": 0.3}),
    );
}

#[test]
fn one_variable_used_many_times() {
    family_over_programs(
        "fan-out",
        &[10, 100, 1000],
        |k| {
            let terms: Vec<String> = (0..k).map(|i| format!("x * {}.0", i + 1)).collect();
            format!(
                "entry primal (x: f64) : f64 = {}\nentry gradient (x: f64) : f64 = grad primal x\n",
                terms.join(" + ")
            )
        },
        serde_json::json!({"x": 0.7}),
    );
}

#[test]
fn loop_of_indexings() {
    family_over_sizes(
        "loop of n indexings",
        "entry primal [n] (a: [n]f64) : f64 = loop acc = 0.0 for i < n do acc + a[i] * a[i]\n\
         entry gradient [n] (a: [n]f64) : [n]f64 = grad primal a\n",
        &[10, 100, 1000, 10000],
        |n| serde_json::json!({ "a": vector(n) }),
    );
}

#[test]
fn map_indexing_a_free_array() {
    family_over_sizes(
        "map indexing a free array",
        "entry primal [n] (a: [n]f64) : f64 = sum (map (\\i -> a[i] * a[(i + 1) % n]) (iota n))\n\
         entry gradient [n] (a: [n]f64) : [n]f64 = grad primal a\n",
        &[10, 100, 1000, 10000],
        |n| serde_json::json!({ "a": vector(n) }),
    );
}

#[test]
fn nested_maps() {
    family_over_sizes(
        "matrix-vector product",
        "import \"linalg\"\n\
         entry primal [n] (m: [n][n]f64) (x: [n]f64) : f64 = sum (matvec m x)\n\
         entry gradient [n] (m: [n][n]f64) (x: [n]f64) : ([n][n]f64, [n]f64) = grad (\\(a, b) -> primal a b) (m, x)\n",
        &[4, 16, 64],
        |n| serde_json::json!({ "m": (0..n).map(|_| vector(n)).collect::<Vec<_>>(), "x": vector(n) }),
    );
}

#[test]
fn general_reduction_and_scan() {
    family_over_sizes(
        "reduce with a general operator",
        "entry primal [n] (a: [n]f64) : f64 =\n\
           let (s, _) = reduce (\\(x1, y1) (x2, y2) -> (x1 * y2 + x2, y1 * y2)) (0.0, 1.0) (zip a (map (\\v -> 0.5 + v) a)) in\n\
           s + sum (scan (*) 1.0 a)\n\
         entry gradient [n] (a: [n]f64) : [n]f64 = grad primal a\n",
        &[10, 100, 1000, 10000],
        |n| serde_json::json!({ "a": vector(n) }),
    );
}

#[test]
fn loop_with_array_state() {
    family_over_sizes(
        "loop with array state",
        "entry primal [n] (a: [n]f64) : f64 =\n\
           let b = loop b = a for i < 10 do map (\\v -> sin v + 0.5 * v) b in sum b\n\
         entry gradient [n] (a: [n]f64) : [n]f64 = grad primal a\n",
        &[10, 100, 1000, 10000],
        |n| serde_json::json!({ "a": vector(n) }),
    );
}

/// Reverse over reverse: the first gradient's backward sweep accumulates
/// into its adjoint array in place, one element per iteration, and its own
/// forward sweep writes a tape in place; differentiating that code again
/// must keep both O(1) per iteration (the reverse of an overwriting update
/// zeroes one element of the cotangent, in place when nothing else reads it).
#[test]
fn reverse_over_reverse_through_in_place_updates() {
    family_over_sizes(
        "reverse over reverse",
        "def f [n] (x: [n]f64) : f64 = loop acc = 0.0 for i < n do acc + sin x[i] * x[(i + 1) % n]\n\
         entry primal [n] (x: [n]f64) : f64 = let d = grad f x in sum (map2 (*) d d)\n\
         entry gradient [n] (x: [n]f64) : [n]f64 = grad primal x\n",
        &[100, 400, 1600],
        |n| serde_json::json!({ "x": vector(n) }),
    );
}
