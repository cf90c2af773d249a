//! Random programs, differentiated: forward mode, reverse mode and finite
//! differences must agree (the pairwise-agreement test of the RAD compiler and
//! CHAD, here through `slope::gradcheck`). Programs are generated from a fixed
//! seed over smooth primitives (no kinks, so finite differences are
//! meaningful), with sharing (`let`), arrays (`map`, `reduce`, indexing) and
//! loops, so every part of both AD modes is exercised on shapes nobody wrote
//! by hand. Each program is also run before and after the optimiser: the
//! values must agree.

use slope::api::{Engine, Program};
use slope::diagnostic::RenderStyle;
use slope::driver::no_files;
use slope::gradcheck::{gradcheck, Rng};

struct Gen {
    rng: Rng,
    lets: usize,
}

impl Gen {
    fn pick(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n as u64) as usize
    }

    /// A smooth scalar expression over the variables in `vars`.
    fn expr(&mut self, vars: &[String], depth: usize) -> String {
        if depth == 0 || self.pick(4) == 0 {
            return match self.pick(5) {
                0 => ["0.5", "1.5", "(-0.75)", "2.0"][self.pick(4)].to_string(),
                _ => vars[self.pick(vars.len())].clone(),
            };
        }
        let a = self.expr(vars, depth - 1);
        match self.pick(15) {
            0 => format!("({a} + {})", self.expr(vars, depth - 1)),
            1 => format!("({a} - {})", self.expr(vars, depth - 1)),
            2 => format!("({a} * {})", self.expr(vars, depth - 1)),
            3 => format!("({a} / (1.5 + {b} * {b}))", b = self.expr(vars, depth - 1)),
            4 => format!("(sin {a})"),
            5 => format!("(tanh {a})"),
            6 => format!("(exp (tanh {a}))"),
            7 => format!("(log (1.0 + {a} * {a}))"),
            8 => format!("(sqrt (1.0 + {a} * {a}))"),
            9 => format!("(sigmoid {a})"),
            10 => format!("(softplus {a})"),
            11 => format!("(asinh (cosh (tanh {a})))"),
            12 => format!("(atan2 {a} (1.5 + {b} * {b}))", b = self.expr(vars, depth - 1)),
            13 => format!("(hypot {a} 0.5 * atan {a})"),
            _ => {
                // Sharing: the bound value is used twice.
                self.lets += 1;
                let v = format!("t{}", self.lets);
                let mut inner = vars.to_vec();
                inner.push(v.clone());
                let body = self.expr(&inner, depth - 1);
                format!("(let {v} = {a} in {body} * {v})")
            }
        }
    }

    /// A program with an entry `f (x: f64) (y: f64) (v: [4]f64) : f64` mixing
    /// scalars, a map with a free variable, indexing, a reduction and a loop.
    fn program(&mut self) -> String {
        let scalars: Vec<String> = ["x", "y"].iter().map(|s| s.to_string()).collect();
        let e1 = self.expr(&scalars, 3);
        let mapped = self.expr(&["e".to_string(), "x".to_string()], 2);
        let looped = self.expr(&["acc".to_string(), "y".to_string()], 2);
        let idx = self.pick(4);
        match self.pick(6) {
            3 => format!(
                "entry f (x: f64) (y: f64) (v: [4]f64) : f64 =\n  let (acc, _) = loop (acc, k) = ({e1}, 0) while k < 3 do ({looped} * 0.5 + v[k], k + 1) in acc\n"
            ),
            4 => format!(
                "entry f (x: f64) (y: f64) (v: [4]f64) : f64 =\n  let w = scan (+) 0.0 (map (\\e -> {mapped}) v) in\n  sum (map2 (\\a b -> a * b) w (reverse v)) + {e1}\n"
            ),
            5 => format!(
                "entry f (x: f64) (y: f64) (v: [4]f64) : f64 =\n  let m = tabulate 2 (\\i -> tabulate 2 (\\j -> v[2 * i + j] * x)) in\n  let t = transpose m in\n  t[0, 1] * {e1} + sum (flatten m) + (let (p, dp) = jvp2 (\\q -> q * {mapped_x}) y 1.0 in p + dp)\n",
                mapped_x = self.expr(&["q".to_string(), "x".to_string()], 2)
            ),
            0 => format!("entry f (x: f64) (y: f64) (v: [4]f64) : f64 =\n  {e1} + sum (map (\\e -> {mapped}) v) * v[{idx}]\n"),
            1 => format!(
                "entry f (x: f64) (y: f64) (v: [4]f64) : f64 =\n  let s = loop acc = {e1} for i < 3 do 0.5 * {looped} + v[i] in s * s\n"
            ),
            _ => format!(
                "entry f (x: f64) (y: f64) (v: [4]f64) : f64 =\n  reduce (\\a b -> a * b) 1.0 (map (\\e -> 1.0 + 0.1 * {mapped}) v) + {e1}\n"
            ),
        }
    }
}

#[test]
fn forward_reverse_and_finite_differences_agree_on_random_programs() {
    let mut g = Gen { rng: Rng::new(20261129), lets: 0 };
    let mut checked = 0;
    for n in 0..200 {
        let mut src = g.program();
        // Every third program is also checked to second order: the derivative
        // of its gradient (forward over reverse and reverse over reverse),
        // taken by `vjp2` in every other one of those, with its value.
        let entry = if n % 3 == 0 {
            src.push_str(if n % 2 == 0 {
                "entry g (x: f64) (y: f64) (v: [4]f64) : (f64, f64) = grad (\\(a, b) -> f a b v) (x, y)\n"
            } else {
                "entry g (x: f64) (y: f64) (v: [4]f64) : (f64, (f64, f64)) = vjp2 (\\(a, b) -> f a b v) (x, y) 1.0\n"
            });
            "g"
        } else {
            "f"
        };
        let program = Program::compile(&format!("random{n}.slope"), &src, &no_files)
            .unwrap_or_else(|f| panic!("random program {n} does not compile:\n{src}\n{}", f.render(RenderStyle::Rich)));
        let x = 0.3 + 0.1 * (n % 7) as f64;
        let input = serde_json::json!({"x": x, "y": -0.4 + 0.05 * (n % 5) as f64, "v": [0.2, -0.5, 0.7, 0.1]});
        let report = gradcheck(&program, entry, &input, 2, n as u64 + 1)
            .unwrap_or_else(|f| panic!("random program {n}:\n{src}\n{}", f.render(RenderStyle::Rich)));
        assert!(report.ok, "random program {n}:\n{src}\n{report}");
        // The optimiser preserves meaning: the optimised program (what runs)
        // and the raw AD output compute the same values.
        let raw = program.without_optimiser().call_json_on(Engine::Interp, entry, &input).expect("raw AD output runs");
        let optimised = program.call_json_on(Engine::Interp, entry, &input).expect("optimised program runs");
        slope_tests::json_close(&optimised, &raw, 1e-12, entry)
            .unwrap_or_else(|e| panic!("random program {n}: optimised vs raw: {e}\n{src}"));
        // Native code, on one thread and on the pool, computes what the interpreter computes.
        slope::testfile::every_engine(&program, entry, &input)
            .unwrap_or_else(|e| panic!("random program {n}: {e}\n{src}"))
            .unwrap_or_else(|f| panic!("random program {n}: {}\n{src}", f.render(RenderStyle::Short)));
        // Checkpointed reverse mode gives the same derivatives.
        let mut options = slope::driver::Options::default();
        options.ad.checkpoint = true;
        let checkpointed = Program::compile_with(&format!("random{n}.slope"), &src, &no_files, &options).unwrap();
        let (a, b) = (program.call_json(entry, &input).unwrap(), checkpointed.call_json(entry, &input).unwrap());
        slope_tests::json_close(&b, &a, 1e-12, entry)
            .unwrap_or_else(|e| panic!("random program {n}, checkpointed: {e}\n{src}"));
        checked += 1;
    }
    assert_eq!(checked, 200);
}
