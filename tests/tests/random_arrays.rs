//! Random array programs, run on native code and on the interpreter: the two
//! engines must agree on every value and every error (code, span, message).
//!
//! `random_programs.rs` checks derivatives on fixed shapes; this generator
//! aims at the back end instead: views and copies (slices, reverse, concat,
//! transpose of an unflatten), scans, loops whose state is an array, scatter
//! and histograms, maps with no iterations, out-of-range slices and indices,
//! mismatched sizes, negative sizes — and the gradients of such programs,
//! whose adjoints are accumulated in place. Inputs include empty arrays.

use slope::api::{Engine, Program};
use slope::diagnostic::RenderStyle;
use slope::driver::no_files;
use slope::gradcheck::Rng;

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
        match self.pick(13) {
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
            for entry in ["f", "s", "g"] {
                let native = program.call_json_on(Engine::Jit, entry, &input);
                let reference = program.call_json_on(Engine::Interp, entry, &input);
                slope::testfile::engines_agree(&native, &reference)
                    .unwrap_or_else(|e| panic!("program {p}, entry {entry}, input {input}: {e}\n{src}"));
                calls += 1;
                errors += usize::from(reference.is_err());
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
