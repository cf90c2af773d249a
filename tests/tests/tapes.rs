//! Loop tapes hold only what the backward sweep reads (issue #13, part 4):
//! state that depends on nothing differentiated gets no adjoint, and a tape
//! the backward sweep does not read is removed with the work that fills it
//! (Note [What loop tapes hold] in ad/rev.rs, Note [Dead loop state] in
//! opt/rules.rs). Memory is the arena's peak of native code.

use slope::api::{Engine, Program};
use slope::diagnostic::RenderStyle;
use slope::driver::Options;
use slope_tests::{file_loader, json_close};

/// `d` is inactive loop state (it does not depend on `a`): the derivative
/// with respect to `a` needs neither its adjoint nor its values in `f`; in
/// `r` the backward sweep reads `d[i % n]`, so its tape stays; in `v` the
/// loop passes `d` through unchanged, so it is stored once, not per iteration. `f_closed`
/// and `r_closed` compute the same values with `d` in closed form
/// (`d0[j] + i`), without array state.
const SOURCE: &str = "\
entry f [n] (a: f64) (d0: [n]f64) (steps: i64) : f64 =
  let (s, _) = loop (s, d) = (a, d0) for i < steps do (sin s * 0.9 + d[i % n] * 0.001, map (\\v -> v + 1.0) d) in s
entry g [n] (a: f64) (d0: [n]f64) (steps: i64) : f64 = grad (\\x -> f x d0 steps) a
entry g_closed [n] (a: f64) (d0: [n]f64) (steps: i64) : f64 =
  grad (\\x -> loop s = x for i < steps do sin s * 0.9 + (d0[i % n] + f64 i) * 0.001) a
entry r [n] (a: f64) (d0: [n]f64) (steps: i64) : f64 =
  grad (\\x -> let (s, _) = loop (s, d) = (x, d0) for i < steps do (sin s * (1.0 + d[i % n] * 0.001), map (\\v -> v + 1.0) d) in s) a
entry r_closed [n] (a: f64) (d0: [n]f64) (steps: i64) : f64 =
  grad (\\x -> loop s = x for i < steps do sin s * (1.0 + (d0[i % n] + f64 i) * 0.001)) a
entry v [n] (a: f64) (d0: [n]f64) (steps: i64) : f64 =
  grad (\\x -> let (s, _) = loop (s, d) = (x, d0) for i < steps do (sin s * (1.0 + d[i % n] * 0.001), d) in s) a
entry v_closed [n] (a: f64) (d0: [n]f64) (steps: i64) : f64 =
  grad (\\x -> loop s = x for i < steps do sin s * (1.0 + d0[i % n] * 0.001)) a
";

fn compile(checkpoint: bool) -> Program {
    let mut options = Options::default();
    options.ad.checkpoint = checkpoint;
    Program::compile_with("tapes.slope", SOURCE, &file_loader, &options)
        .unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Rich)))
}

fn input(n: usize, steps: i64) -> serde_json::Value {
    let d0: Vec<f64> = (0..n).map(|j| j as f64 * 0.001).collect();
    serde_json::json!({"a": 0.3, "d0": d0, "steps": steps})
}

fn call(p: &Program, engine: Engine, entry: &str, input: &serde_json::Value) -> serde_json::Value {
    p.call_json_on(engine, entry, input).unwrap_or_else(|f| panic!("{entry}: {}", f.render(RenderStyle::Rich)))
}

#[test]
fn gradients_with_inactive_state_match_the_closed_form_on_both_engines() {
    for checkpoint in [false, true] {
        let p = compile(checkpoint);
        for (n, steps) in [(5, 0), (5, 1), (5, 7), (30, 40)] {
            let x = input(n, steps);
            for (entry, closed) in [("g", "g_closed"), ("r", "r_closed"), ("v", "v_closed")] {
                let jit = call(&p, Engine::Multicore, entry, &x);
                assert_eq!(jit, call(&p, Engine::Interp, entry, &x), "{entry}: the engines disagree");
                let want = call(&p, Engine::Multicore, closed, &x);
                if let Err(e) = json_close(&jit, &want, 1e-12, entry) {
                    panic!("{entry} n={n} steps={steps} checkpoint={checkpoint}: {e}");
                }
            }
        }
    }
}

#[test]
fn an_unread_tape_of_inactive_state_costs_no_memory() {
    // 200 iterations over a state of 10⁴ floats: a tape of it would be 16 MB.
    let p = compile(false);
    let x = input(10_000, 200);
    let code = &p.native().unwrap().code;
    call(&p, Engine::Multicore, "f", &x);
    let primal = code.peak_bytes();
    call(&p, Engine::Multicore, "g", &x);
    let derivative = code.peak_bytes();
    assert!(primal > 0);
    assert!(derivative <= 2 * primal, "derivative peak {derivative} bytes, primal {primal}");
    // The backward sweep of `r` reads the state: its tape stays.
    call(&p, Engine::Multicore, "r", &x);
    assert!(code.peak_bytes() > 10_000 * 8 * 200, "r's tape: {} bytes", code.peak_bytes());
    // `v` reads a state the loop never changes: no tape of it.
    call(&p, Engine::Multicore, "v", &x);
    assert!(code.peak_bytes() <= 2 * primal, "v: peak {} bytes, primal {primal}", code.peak_bytes());
}

/// `source` compiled with the save policy `save`.
fn compile_saving(source: &str, save: slope::ad::Save) -> Program {
    let mut options = Options::default();
    options.ad.save = save;
    Program::compile_with("save.slope", source, &file_loader, &options)
        .unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Rich)))
}

/// Maps with host calls, slow operations and cheap ones, whose reverse reads
/// saved values or recomputes them depending on the policy.
const MAPS: &str = "\
entry m [n] (x: [n]f64) (w: f64) : [n]f64 =
  grad (\\v -> sum (map (\\a -> exp (a * w) / (1.0 + sqrt (a * a + w)) + tanh a ** 2.0) v)) x
";

#[test]
fn every_save_policy_gives_the_same_gradients() {
    let x: Vec<f64> = (0..50).map(|k| (k as f64 - 20.0) * 0.07).collect();
    let mut programs = vec![("m", MAPS.to_string(), serde_json::json!({"x": x, "w": 0.3}))];
    for (eval, file) in [("gmm", "jacobian-2_3_50.json"), ("lstm", "jacobian-l2_c16.json")] {
        let path = slope_tests::workspace_dir().join("tests/fixtures").join(eval).join(file);
        let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let source =
            std::fs::read_to_string(slope_tests::workspace_dir().join(format!("examples/gradbench/{eval}.slope")))
                .unwrap();
        programs.push(("jacobian", source, fixture["input"].clone()));
    }
    for (entry, source, input) in programs {
        let mut results = Vec::new();
        for (name, save) in slope::ad::Save::NAMES {
            let p = compile_saving(&source, *save);
            let (jit, interp) = (call(&p, Engine::Multicore, entry, &input), call(&p, Engine::Interp, entry, &input));
            // The engines agree as everywhere (testfile::engines_agree).
            if let Err(e) = json_close(&jit, &interp, 1e-12, entry) {
                panic!("{entry} with --save {name}: the engines disagree: {e}");
            }
            results.push((name, interp, jit));
        }
        // A saved value is the value recomputing gives: the interpreter's
        // results are identical. Native code agrees to the engines' 1e-12:
        // a policy changes which loops are fused, so which float reductions
        // the parallel stage cuts into chunks (Note [Deterministic chunks] in
        // the runtime) — gmm's jacobian with `--save nothing` differs from
        // the interpreter in the last bits.
        let (first, reference, native) = &results[0];
        for (name, interp, jit) in &results[1..] {
            assert_eq!(interp, reference, "{entry}: --save {name} and --save {first} differ");
            if let Err(e) = json_close(jit, native, 1e-12, entry) {
                panic!("{entry}: --save {name} and --save {first} differ in native code: {e}");
            }
        }
    }
}

/// How many residuals of type `[][]f64` (`residual_N: [][]f64`) `text` binds.
fn saved_arrays(text: &str) -> usize {
    text.split("residual_")
        .skip(1)
        .filter(|rest| rest.trim_start_matches(|c: char| c.is_ascii_digit()).starts_with(": [][]f64"))
        .count()
}

/// Note [Saving inner loop nests]: inside the reverse of the map over points,
/// the map over components returns its rows (a triangular product per
/// component) for its own reverse, under every policy but `nothing`; the
/// top-level forward sweep saves no array. `ragged_grad`'s components have
/// different numbers of rows, which no array can hold: it saves none. The
/// gradients are the same either way (the program's gradchecks compare them
/// with finite differences).
#[test]
fn rows_of_an_inner_loop_nest_are_saved_inside_a_reverse() {
    let path = slope_tests::workspace_dir().join("tests/programs/ad/saved_inner_loop_nests.slope");
    let source = std::fs::read_to_string(path).unwrap();
    let input = serde_json::json!({
        "xs": [[0.5, -1.0, 2.0], [1.5, 0.25, -0.5], [0.0, 2.0, 1.0]],
        "ls": [[[0.1, 0.0, 0.0], [0.3, -0.2, 0.0], [-0.4, 0.6, 0.05]], [[-0.3, 0.0, 0.0], [0.7, 0.2, 0.0], [0.2, -0.5, -0.1]]]
    });
    for (entry, saves_rows) in [("loss_grad", true), ("ragged_grad", false)] {
        let mut gradients = Vec::new();
        for (name, save) in slope::ad::Save::NAMES {
            let p = compile_saving(&source, *save);
            let text = p.emit("opt", Some(entry)).unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Rich)));
            let saved_arrays = saved_arrays(&text);
            let expected = usize::from(saves_rows && *save != slope::ad::Save::Nothing);
            assert_eq!(saved_arrays, expected, "{entry} with --save {name}:\n{text}");
            let (interp, jit) = (call(&p, Engine::Interp, entry, &input), call(&p, Engine::Multicore, entry, &input));
            if let Err(e) = json_close(&jit, &interp, 1e-12, entry) {
                panic!("{entry} with --save {name}: the engines disagree: {e}");
            }
            gradients.push((name, interp));
        }
        let (first, reference) = &gradients[0];
        for (name, g) in &gradients[1..] {
            assert_eq!(g, reference, "{entry}: --save {name} and --save {first} differ");
        }
    }
}
