//! Checkpointed reverse mode of loops (`--checkpoint`) computes the same
//! derivatives as the fully taped one, for trip counts around the segment
//! boundaries, in `for` and `while` loops, first and second order; and it
//! costs about one extra forward pass of recomputation, not more. An
//! explicit `checkpoint k (loop …)` keeps the tape to about n/k + k states
//! (tests/programs/ad/checkpoint_explicit.slope checks its values).

use slope::api::{Engine, Program};
use slope::diagnostic::RenderStyle;
use slope::driver::Options;
use slope_tests::{file_loader, json_close};

const SOURCE: &str = "\
entry f [n] (x: [n]f64) (s: i64) : [n]f64 =
  grad (\\v -> let y = loop y = v for i < s do map (\\a -> sin a * 1.1 + f64 i * 0.01) y in sum y) x
entry w (x: f64) : f64 = grad (\\a -> loop y = a while y < 100.0 do y * 1.5 + 0.1) x
entry second (x: f64) (s: i64) : f64 = grad (grad (\\a -> loop y = a for i < s do sin y + y * 0.5)) x
";

fn compile(checkpoint: bool) -> Program {
    let mut options = Options::default();
    options.ad.checkpoint = checkpoint;
    Program::compile_with("checkpoint.slope", SOURCE, &file_loader, &options)
        .unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Rich)))
}

#[test]
fn same_derivatives_with_and_without_checkpoints() {
    let (taped, checkpointed) = (compile(false), compile(true));
    let mut inputs = Vec::new();
    for s in [0, 1, 2, 3, 4, 5, 8, 9, 10, 16, 17, 50] {
        inputs.push(("f", serde_json::json!({"x": [0.1, -0.4, 0.3, 1.2], "s": s})));
        inputs.push(("second", serde_json::json!({"x": 0.7, "s": s})));
    }
    for x in [0.5, 1.0, 3.0, 99.0, 150.0] {
        inputs.push(("w", serde_json::json!({ "x": x })));
    }
    for (entry, input) in inputs {
        let a = taped.call_json(entry, &input).unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Rich)));
        let b = checkpointed.call_json(entry, &input).unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Rich)));
        if let Err(e) = json_close(&b, &a, 1e-12, entry) {
            panic!("{entry} {input}: {e}");
        }
    }
}

#[test]
fn checkpoints_cost_about_one_extra_forward_pass() {
    let (taped, checkpointed) = (compile(false), compile(true));
    let input = serde_json::json!({"x": vec![0.5; 100], "s": 400});
    let t = taped.cost_json("f", &input).unwrap().scalar_ops as f64;
    let c = checkpointed.cost_json("f", &input).unwrap().scalar_ops as f64;
    assert!(c > t, "checkpointing recomputes: {c} vs {t}");
    assert!(c < 1.8 * t, "checkpointing costs more than an extra forward pass: {c} vs {t}");
}

/// A loop of 400 steps over 2000 floats: taped, 400 states (6.4 MB); in
/// segments of 20, 20 checkpoints and 20 states re-taped per segment.
const SEGMENTS: &str = "\
entry taped [n] (x: [n]f64) (steps: i64) : [n]f64 =
  grad (\\v -> sum (loop y = v for i < steps do map (\\a -> sin a * 0.9 + 0.1) y)) x
entry segmented [n] (x: [n]f64) (steps: i64) : [n]f64 =
  grad (\\v -> sum (checkpoint 20 (loop y = v for i < steps do map (\\a -> sin a * 0.9 + 0.1) y))) x
";

#[test]
fn explicit_segments_bound_the_tape() {
    let p = Program::compile_with("segments.slope", SEGMENTS, &file_loader, &Options::default())
        .unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Rich)));
    let input = serde_json::json!({"x": vec![0.5; 2000], "steps": 400});
    let code = &p.native().unwrap().code;
    let call = |entry| {
        p.call_json_on(Engine::Multicore, entry, &input).unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Rich)))
    };
    let a = call("taped");
    let taped = code.peak_bytes();
    let b = call("segmented");
    let segmented = code.peak_bytes();
    json_close(&b, &a, 1e-12, "segmented").unwrap();
    let state = 2000 * 8;
    assert!(taped >= 400 * state, "taped peak {taped}");
    assert!(segmented <= 60 * state, "segmented peak {segmented}, taped {taped}");
}
