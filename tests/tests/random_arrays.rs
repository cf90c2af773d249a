//! Random array programs, run on native code and on the interpreter: the two
//! engines must agree on every value and every error (code, span, message).
//!
//! `random_programs.rs` checks derivatives on fixed shapes; this generator
//! aims at the back end instead: views and copies (slices, reverse, concat,
//! transpose of an unflatten), scans, loops whose state is an array, scatter
//! and histograms, maps with no iterations, out-of-range slices and indices,
//! mismatched sizes, negative sizes, tests of the index against invariant
//! values (index-set splitting), reads one ahead or behind and reversed
//! indices (range analysis), reductions feeding maps (loop fusion), loop
//! parameters that share a buffer (in-place ownership), sorting
//! (`sort`, `argsort` gathers, `top_k`, `rank`) — and the
//! gradients of such programs, whose adjoints are accumulated in place.
//! Inputs include empty arrays.

use slope::api::{Engine, Program};
use slope::diagnostic::RenderStyle;
use slope::driver::no_files;
use slope::gradcheck::Rng;

/// Runs `entry` on both engines, which must agree (same value, or the same
/// error); whether it failed. `what` names the case in a panic.
fn engines_agree_on(program: &Program, entry: &str, input: &serde_json::Value, what: &str) -> bool {
    let native = program.call_json_on(Engine::Multicore, entry, input);
    let reference = program.call_json_on(Engine::Interp, entry, input);
    slope::testfile::engines_agree(&native, &reference)
        .unwrap_or_else(|e| panic!("entry {entry}, input {input}: {e}\n{what}"));
    reference.is_err()
}

struct Gen {
    rng: Rng,
}

impl Gen {
    fn pick(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n as u64) as usize
    }

    /// A scalar expression over the variables in `vars`.
    fn scalar(&mut self, vars: &[&str], depth: usize) -> String {
        let v = vars[self.pick(vars.len())];
        if depth == 0 {
            return match self.pick(3) {
                0 => format!("{}.{}", self.pick(3), self.pick(10)),
                _ => v.to_string(),
            };
        }
        let (a, b) = (self.scalar(vars, depth - 1), self.scalar(vars, depth - 1));
        match self.pick(6) {
            0 => format!("({a} + {b})"),
            1 => format!("({a} * {b})"),
            2 => format!("({a} - {b})"),
            3 => format!("(sin {a})"),
            4 => format!("(if {a} < {b} then {a} else {b} * 0.5)"),
            _ => format!("(max {a} {b})"),
        }
    }

    /// A `[]f64` expression over the arrays `base` (e.g. `xs`, `ys`).
    fn array(&mut self, base: &[&str], depth: usize) -> String {
        if depth == 0 {
            return base[self.pick(base.len())].to_string();
        }
        let a = self.array(base, depth - 1);
        match self.pick(20) {
            0 => format!("map (\\x -> {}) ({a})", self.scalar(&["x"], 2)),
            1 => {
                // Same length by construction, or not: both engines must agree either way.
                let b = if self.pick(2) == 0 { format!("reverse ({a})") } else { self.array(base, depth - 1) };
                format!("map2 (\\p q -> {}) ({a}) ({b})", self.scalar(&["p", "q"], 2))
            }
            2 => format!("reverse ({a})"),
            3 => format!("concat ({a}) ({})", self.array(base, depth - 1)),
            4 => format!("({a})[{}:{}]", self.pick(3), self.pick(5)),
            5 => format!("scan (+) 0.0 ({a})"),
            6 => format!("tabulate (n + length ({a})) (\\i -> {})", self.scalar(&["(f64 i)"], 1)),
            7 => format!(
                "(loop acc = ({a}) for i < {} do map (\\x -> x * 0.5 + {}) (reverse acc))",
                self.pick(4),
                self.scalar(&["(f64 i)"], 1)
            ),
            8 => format!("flatten (transpose (unflatten 2 (length ({a}) / 2) ({a})))"),
            9 => format!(
                "scatter ({a}) (map (\\x -> i64 (x * 3.0)) ({})) ({})",
                self.array(base, 0),
                self.array(base, 0)
            ),
            10 => format!(
                "reduce_by_index ({a}) (+) 0.0 (map (\\x -> i64 (x * 2.0) - 1) ({})) ({})",
                self.array(base, 0),
                self.array(base, 0)
            ),
            11 => format!("(if n > 1 then {a} else {})", self.array(base, depth - 1)),
            // A test of the index against a loop-invariant value (split by
            // the loop optimiser), with a read one behind.
            13 => {
                let cmp = ["==", "<", "<=", ">", "!="][self.pick(5)];
                let c = ["0", "1", "n", "(length xs - 1)"][self.pick(4)];
                format!("(let a = {a} in tabulate (length a) (\\i -> if i {cmp} {c} then a[i] * 2.0 else a[i - 1] + {}))", self.scalar(&["(f64 i)"], 1))
            }
            // Reads one ahead and one behind (checks the range analysis must keep or prove).
            14 => format!("(let a = {a} in tabulate (length a - {}) (\\i -> a[i + 1] - a[i]))", self.pick(2)),
            // A reversed index.
            15 => format!("(let a = {a} in tabulate (length a) (\\j -> let i = length a - 1 - j in if i == 0 then 0.5 else a[i - 1]))"),
            // Reductions into a scalar, then used element-wise.
            16 => format!("(let a = {a} in let m = maximum a in let s = sum (map (\\v -> v - m) a) in map (\\v -> v * s - m) a)"),
            // Sorting (the runtime's sort on native code, the same on the
            // interpreter; its derivative a gather through the permutation).
            17 => ["sort", "sort_desc"][self.pick(2)].to_string() + &format!(" ({a})"),
            18 => match self.pick(3) {
                0 => format!("(let a = {a} in map (\\i -> a[i] * 2.0) (argsort (map (\\x -> x * x) a)))"),
                1 => format!("(let (t, _) = top_k (length ({a}) / 2) ({a}) in t)"),
                _ => format!("(let a = {a} in map2 (\\x r -> x * f64 r) a (rank a))"),
            },
            // Two loop parameters starting from one array, or carrying one
            // array into the next iteration: the one a map updates in place
            // must not change the other.
            19 => {
                let bound = ["n", "(n + 1)", "2"][self.pick(3)];
                let s = self.scalar(&["(f64 i)"], 1);
                if self.pick(2) == 0 {
                    format!(
                        "(let a = {a} in let (r, p) = loop (r, p) = (a, a) for i < {bound} do \
                         let q = map (\\x -> x * 0.5 + {s}) p in let r2 = map2 (\\u v -> u - v) r q in \
                         (r2, map2 (\\u v -> u + v) r2 p) in map2 (\\u v -> u - 2.0 * v) r p)"
                    )
                } else {
                    format!(
                        "(let a = {a} in let (r, p, t) = loop (r, p, t) = (a, map (\\x -> x * 3.0) a, 0.0) for i < {bound} do \
                         let r2 = map (\\x -> x * 0.5 + {s}) r in (r2, r2, t + sum p) in map2 (\\u v -> u - t * v) r p)"
                    )
                }
            }
            _ => format!("map (\\row -> sum row) (tabulate n (\\i -> map (\\x -> x + f64 i) ({a})))"),
        }
    }

    fn program(&mut self) -> String {
        let depth = 2 + self.pick(3);
        let a = self.array(&["xs", "ys"], depth);
        let b = self.array(&["v", "ys"], 2);
        let k = self.pick(3);
        format!(
            "entry f (xs: []f64) (ys: []f64) (n: i64) : []f64 = {a}\n\
             entry s (xs: []f64) (ys: []f64) (n: i64) : f64 = let r = {a} in sum r + r[{k}]\n\
             entry c (xs: []f64) (ys: []f64) (n: i64) : f64 = let r = f xs ys n in sum r + r[{k}]\n\
             entry g (xs: []f64) (ys: []f64) (n: i64) : []f64 = grad (\\v -> let r = {b} in sum (map (\\x -> x * x) r)) xs\n"
        )
    }
}

#[test]
fn native_code_and_the_interpreter_agree_on_random_array_programs() {
    let mut g = Gen { rng: Rng::new(20261129) };
    let (mut programs, mut calls, mut errors) = (0, 0, 0);
    for p in 0..400 {
        let src = g.program();
        let Ok(program) = Program::compile(&format!("arrays{p}.slope"), &src, &no_files) else {
            continue;
        };
        programs += 1;
        for input in [
            serde_json::json!({"xs": [0.5, -1.25, 2.0, 0.75], "ys": [1.5, 0.25, -0.5, 3.0], "n": 3}),
            serde_json::json!({"xs": [0.3, 0.6, 0.9], "ys": [2.0, 1.0], "n": 0}),
            serde_json::json!({"xs": [], "ys": [], "n": 2}),
            serde_json::json!({"xs": [1.0], "ys": [0.5, 0.5, 0.5, 0.5, 0.5, 0.5], "n": -1}),
        ] {
            for entry in ["f", "s", "g", "c"] {
                calls += 1;
                errors += usize::from(engines_agree_on(&program, entry, &input, &format!("program {p}\n{src}")));
            }
            // `c` is `s` through a call of the entry `f` (Note [Entries called
            // by entries]): the same value, or a failure with the same code
            // (at `f`'s statement rather than `s`'s).
            let (called, inlined) = (program.call_json("c", &input), program.call_json("s", &input));
            match (&called, &inlined) {
                (Ok(a), Ok(b)) => slope_tests::json_close(a, b, 1e-12, "c")
                    .unwrap_or_else(|e| panic!("program {p}, input {input}: c vs s: {e}\n{src}")),
                (Err(a), Err(b)) => assert_eq!(a.codes(), b.codes(), "program {p}, input {input}\n{src}"),
                _ => panic!("program {p}, input {input}: c and s disagree: {called:?} vs {inlined:?}\n{src}"),
            }
        }
        if let Err(f) = program.native() {
            panic!("program {p}: {}\n{src}", f.render(RenderStyle::Short));
        }
    }
    eprintln!("{programs} programs, {calls} calls, {errors} errors");
    // The generator must exercise both outcomes: values and run-time errors.
    assert!(programs >= 300, "only {programs} of 400 random programs compiled");
    assert!(errors * 10 >= calls && errors * 10 <= calls * 9, "{errors} errors in {calls} calls");
}

/// Arrays the optimiser can see through — `iota`, `replicate`, maps and
/// tabulates of them, fused chains — indexed in and out of range, measured
/// with `length`, built with negative sizes, or left unused: the optimiser
/// removes and fuses such arrays, and must leave behind every failure they
/// had (Note [Guards] in `opt/guards.rs`).
struct Eliminated {
    rng: Rng,
}

impl Eliminated {
    fn pick(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n as u64) as usize
    }

    fn size(&mut self) -> String {
        ["n", "k", "(n - k)", "3", "0", "(length xs)", "(n + 1)"][self.pick(7)].to_string()
    }

    fn index(&mut self, array: &str) -> String {
        ["0", "2", "5", "(n - 1)", "k", "(-1)", &format!("(length ({array}) - 1)"), &format!("(length ({array}))")]
            [self.pick(8)]
        .to_string()
    }

    /// A `[]f64` expression.
    fn array(&mut self, depth: usize) -> String {
        let leaf = depth == 0;
        match if leaf { self.pick(4) } else { self.pick(11) } {
            0 => format!("replicate {} 1.5", self.size()),
            1 => format!("map f64 (iota {})", self.size()),
            2 => "xs".to_string(),
            3 => format!("tabulate {} (\\i -> f64 i * 0.5)", self.size()),
            4 => format!("map (\\x -> x * 2.0 + 1.0) ({})", self.array(depth - 1)),
            5 => format!("map2 (\\a b -> a - b) ({}) ({})", self.array(depth - 1), self.array(depth - 1)),
            6 => format!("map2 (\\a b -> a * b) (replicate {} 2.0) ({})", self.size(), self.array(depth - 1)),
            7 => {
                let a = self.array(depth - 1);
                format!("map (\\i -> ({a})[i] + 1.0) (iota {})", self.size())
            }
            8 => format!("reverse ({})", self.array(depth - 1)),
            9 => format!("scan (+) 0.0 ({})", self.array(depth - 1)),
            _ => {
                let a = self.array(depth - 1);
                format!("({a})[{}:{}]", self.pick(2), self.index(&a))
            }
        }
    }

    /// An `f64` result that uses (or deliberately does not use) an array.
    fn result(&mut self, depth: usize) -> String {
        let a = self.array(depth);
        match self.pick(7) {
            0 => format!("({a})[{}]", self.index(&a)),
            1 => format!("f64 (length ({a}))"),
            2 => format!("sum ({a})"),
            3 => format!("let unused = {a} in 1.0"),
            4 => format!("(iota {})[{}] |> f64", self.size(), self.index("xs")),
            5 => format!("let r = {a} in r[{}] + f64 (length r)", self.index("xs")),
            _ => format!("reduce (+) 0.0 (map (\\x -> x * x) ({a}))"),
        }
    }
}

#[test]
fn the_optimiser_keeps_every_failure_of_the_arrays_it_removes() {
    let mut g = Eliminated { rng: Rng::new(20261130) };
    let (mut programs, mut calls, mut errors) = (0, 0, 0);
    for p in 0..300 {
        let depth = 1 + g.pick(3);
        let body = g.result(depth);
        let src = format!("entry f (n: i64) (k: i64) (xs: []f64) : f64 = {body}\n");
        let Ok(program) = Program::compile(&format!("eliminated{p}.slope"), &src, &no_files) else {
            continue;
        };
        programs += 1;
        let unoptimised = program.without_optimiser();
        for (n, k, xs) in [(3, 2, vec![0.5, 1.5, 2.5]), (0, 5, vec![]), (-2, -1, vec![1.0]), (7, 2, vec![1.0, 2.0])] {
            let input = serde_json::json!({"n": n, "k": k, "xs": xs});
            let optimised = program.call_json_on(Engine::Interp, "f", &input);
            let reference = unoptimised.call_json_on(Engine::Interp, "f", &input);
            // Same outcome: the same value, or the same failure — code,
            // message and span, as the user reads it — compared as two
            // engines are ("jit" the optimised program, "interpreter" the
            // unoptimised one).
            slope::testfile::engines_agree(&optimised, &reference)
                .unwrap_or_else(|e| panic!("program {p}, input {input}: optimised vs unoptimised: {e}\n{src}"));
            // And native code agrees with the interpreter on the optimised program.
            let native = program.call_json_on(Engine::Multicore, "f", &input);
            slope::testfile::engines_agree(&native, &optimised)
                .unwrap_or_else(|e| panic!("program {p}, input {input}: {e}\n{src}"));
            calls += 1;
            errors += usize::from(reference.is_err());
        }
    }
    eprintln!("{programs} programs, {calls} calls, {errors} errors");
    assert!(programs >= 250, "only {programs} of 300 random programs compiled");
    assert!(errors * 10 >= calls && errors * 10 <= calls * 9, "{errors} errors in {calls} calls");
}

/// Small arrays in the rows of a map — 3-vectors built by `map`, literals,
/// `replicate`, `concat`, chosen by an `if`, read at constant indices, at a
/// variable one, or copied into the result — and their gradients: after
/// unrolling, the loop optimiser keeps such buffers in variables where every
/// access is at a constant index (Note [Small buffers as variables] in
/// `loops/opt/scalarize.rs`), and must keep them in memory otherwise.
struct Small {
    rng: Rng,
}

impl Small {
    fn pick(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n as u64) as usize
    }

    /// A `[3]f64` expression over the row `x` (a `[3]f64`) and the scalar `s`.
    fn vec3(&mut self, depth: usize) -> String {
        let leaf = depth == 0;
        match if leaf { self.pick(3) } else { self.pick(9) } {
            0 => "x".to_string(),
            1 => "[s, 1.0, s * s]".to_string(),
            2 => "replicate 3 s".to_string(),
            3 => format!("map (\\v -> v * 2.0 - s) ({})", self.vec3(depth - 1)),
            4 => format!("map2 (\\a b -> a * b + 0.5) ({}) ({})", self.vec3(depth - 1), self.vec3(depth - 1)),
            5 => format!("(if s > 0.25 then {} else {})", self.vec3(depth - 1), self.vec3(depth - 1)),
            6 => format!("(let w = {} in [w[2], w[0], w[1]])", self.vec3(depth - 1)),
            7 => format!("(concat ({})[0:1] ({})[1:3])", self.vec3(depth - 1), self.vec3(depth - 1)),
            _ => format!("(loop w = {} for i < 2 do map (\\v -> v * 0.5 + f64 i) w)", self.vec3(depth - 1)),
        }
    }

    /// A scalar read from a 3-vector.
    fn read(&mut self, depth: usize) -> String {
        let w = self.vec3(depth);
        match self.pick(4) {
            0 => format!("(let w = {w} in w[0] * w[1] - w[2])"),
            1 => format!("(let w = {w} in w[k])"),
            2 => format!("sum ({w})"),
            _ => format!("(let w = {w} in w[2] + s)"),
        }
    }
}

#[test]
fn small_arrays_in_rows_agree_on_both_engines() {
    let mut g = Small { rng: Rng::new(20261201) };
    let (mut programs, mut calls, mut errors) = (0, 0, 0);
    for p in 0..200 {
        let depth = 1 + g.pick(3);
        let (r, w) = (g.read(depth), g.vec3(depth));
        let src = format!(
            "def row (x: [3]f64) (k: i64) : f64 = let s = x[0] - x[1] in {r}\n\
             def vec (x: [3]f64) : [3]f64 = let s = x[2] in {w}\n\
             entry f [n] (xs: [n][3]f64) (k: i64) : [n]f64 = map (\\x -> row x k) xs\n\
             entry v [n] (xs: [n][3]f64) (k: i64) : [n][3]f64 = map vec xs\n\
             entry g [n] (xs: [n][3]f64) (k: i64) : [n][3]f64 = grad (\\ys -> sum (map (\\x -> row x k) ys)) xs\n"
        );
        let Ok(program) = Program::compile(&format!("small{p}.slope"), &src, &no_files) else {
            continue;
        };
        programs += 1;
        for (xs, k) in [
            (serde_json::json!([[0.5, -1.25, 2.0], [1.0, 0.25, -0.5], [0.0, 0.0, 3.0]]), 1),
            (serde_json::json!([[2.0, 1.0, 0.5]]), 2),
            (serde_json::json!([[0.3, 0.6, 0.9], [-0.3, 0.6, 0.1]]), 3),
            (serde_json::json!([]), 0),
        ] {
            let input = serde_json::json!({"xs": xs, "k": k});
            for entry in ["f", "v", "g"] {
                calls += 1;
                errors += usize::from(engines_agree_on(&program, entry, &input, &format!("program {p}\n{src}")));
            }
        }
    }
    eprintln!("{programs} programs, {calls} calls, {errors} errors");
    assert!(programs >= 180, "only {programs} of 200 random programs compiled");
    assert!(errors > 0 && errors * 4 < calls, "{errors} errors in {calls} calls");
}
