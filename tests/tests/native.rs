//! Native code: what lowering and the JIT promise beyond computing the
//! interpreter's values (which every test program checks, see
//! `slope::testfile::engines_agree`).
//!
//! - Memory: nothing outlives a call; a loop that builds a new array per
//!   iteration holds a bounded number of them, not one per iteration.
//! - In place: reverse mode's adjoint updates in a loop write into one buffer
//!   (no copy inside the loop), and buffers of loop-invariant size leave the
//!   loop (no allocation inside gmm's or lstm's innermost loops).
//! - The printed stages: `loops`, `parallel`, `memory` and `clif` snapshots
//!   of small programs.

use slope::api::{Engine, Program};
use slope::diagnostic::RenderStyle;
use slope::loops::{Inst, Rhs};
use slope_tests::{file_loader, workspace_dir};

fn compile(src: &str) -> Program {
    slope_tests::compile_source("native.slope", src)
}

fn call(p: &Program, entry: &str, input: serde_json::Value) -> serde_json::Value {
    p.call_json_on(Engine::Multicore, entry, &input).unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Rich)))
}

fn snapshot(name: &str, value: String) {
    slope_tests::snapshot!(format!("native__{name}"), value);
}

/// Instructions of `insts` that satisfy `pred` and sit inside at least one loop.
fn inside_loops(insts: &[Inst], depth: usize, pred: &dyn Fn(&Inst) -> bool, out: &mut Vec<String>) {
    for i in insts {
        if depth > 0 && pred(i) {
            out.push(format!("{i:?}"));
        }
        match i {
            Inst::For { body, .. } => inside_loops(body, depth + 1, pred, out),
            Inst::While { cond, body, .. } => {
                inside_loops(cond, depth + 1, pred, out);
                inside_loops(body, depth + 1, pred, out);
            }
            Inst::If { then, els, .. } => {
                inside_loops(then, depth, pred, out);
                inside_loops(els, depth, pred, out);
            }
            _ => {}
        }
    }
}

/// Instructions of the innermost loops (loops with no loop inside) of `insts`.
fn innermost(insts: &[Inst], out: &mut Vec<Inst>) {
    for i in insts {
        match i {
            Inst::For { body, .. } | Inst::While { body, .. } => {
                let mut nested = Vec::new();
                innermost(body, &mut nested);
                if nested.is_empty() && !has_loop(body) {
                    out.extend(flatten(body));
                } else {
                    out.extend(nested);
                }
            }
            Inst::If { then, els, .. } => {
                innermost(then, out);
                innermost(els, out);
            }
            _ => {}
        }
    }
}

fn has_loop(insts: &[Inst]) -> bool {
    insts.iter().any(|i| match i {
        Inst::For { .. } | Inst::While { .. } => true,
        Inst::If { then, els, .. } => has_loop(then) || has_loop(els),
        _ => false,
    })
}

fn flatten(insts: &[Inst]) -> Vec<Inst> {
    let mut out = Vec::new();
    for i in insts {
        if let Inst::If { then, els, .. } = i {
            out.extend(flatten(then));
            out.extend(flatten(els));
        } else {
            out.push(i.clone());
        }
    }
    out
}

fn is_alloc(i: &Inst) -> bool {
    matches!(i, Inst::Let(_, Rhs::Alloc { .. }))
}

#[test]
fn nothing_outlives_a_call() {
    let p = compile("entry f [n] (xs: [n]f64) : [n]f64 = map (\\x -> x * 2.0) (reverse xs)");
    let input = serde_json::json!({"xs": (0..1000).map(f64::from).collect::<Vec<_>>()});
    for _ in 0..50 {
        call(&p, "f", input.clone());
    }
    let native = p.native().unwrap();
    assert_eq!(native.code.held_bytes(), 0, "arena memory survived the call");
    // The last call held the reversed copy, which the result overwrites
    // (Note [Maps in place]): about 8 kB.
    let peak = native.code.peak_bytes();
    assert!((8_000..16_000).contains(&peak), "peak {peak} bytes");
}

#[test]
fn a_loop_building_arrays_holds_a_bounded_number_of_them() {
    // 2000 iterations, each building a new 1000-element state: without the
    // per-iteration release it would hold 16 MB at the end.
    let p = compile(
        "entry f [n] (xs: [n]f64) (k: i64) : f64 = \
         sum (loop acc = xs for i < k do map (\\x -> x * 0.5 + 1.0) (reverse acc))",
    );
    let input = serde_json::json!({"xs": (0..1000).map(f64::from).collect::<Vec<_>>(), "k": 2000});
    let jit = call(&p, "f", input.clone());
    let reference = p.call_json_on(Engine::Interp, "f", &input).unwrap();
    assert_eq!(jit, reference);
    let peak = p.native().unwrap().code.peak_bytes();
    assert!(peak < 200_000, "peak {peak} bytes for a state of 8 kB");
}

#[test]
fn adjoint_updates_in_a_loop_are_in_place() {
    // Reverse mode through a loop of n indexings accumulates into x's adjoint
    // one element at a time: no copy of the adjoint may sit inside a loop.
    let p = compile(
        "entry g [n] (xs: [n]f64) : [n]f64 = \
         grad (\\v -> loop s = 0.0 for i < n do s + v[i] * v[i]) xs",
    );
    let loops = p.loop_program("loops").unwrap();
    let f = loops.func("g").unwrap();
    let mut copies = Vec::new();
    inside_loops(&f.body, 0, &|i| matches!(i, Inst::Copy { .. }), &mut copies);
    assert!(copies.is_empty(), "copies inside loops:\n{}", copies.join("\n"));
    let out = call(&p, "g", serde_json::json!({"xs": [1.0, 2.0, 3.0]}));
    assert_eq!(out, serde_json::json!([2.0, 4.0, 6.0]));
}

#[test]
fn reverse_over_reverse_updates_in_a_loop_are_in_place() {
    // The second reverse runs the first one's in-place updates (its tape
    // writes and adjoint accumulations) and reverses them: neither may copy
    // an array per iteration, nor allocate one (the identity-map copy that
    // the reverse of an overwriting update made).
    let p = compile(
        "def f [n] (x: [n]f64) : f64 = loop acc = 0.0 for i < n do acc + sin x[i] * x[(i + 1) % n]\n\
         entry h [n] (x: [n]f64) : [n]f64 = grad (\\y -> let d = grad f y in sum (map2 (*) d d)) x",
    );
    let loops = p.loop_program("loops").unwrap();
    let f = loops.func("h").unwrap();
    let mut copies = Vec::new();
    inside_loops(&f.body, 0, &|i| matches!(i, Inst::Copy { .. }) || is_alloc(i), &mut copies);
    assert!(copies.is_empty(), "copies or allocations inside loops:\n{}", copies.join("\n"));
    let x = serde_json::json!({"x": [0.1, 0.5, -0.3, 0.8]});
    assert_eq!(call(&p, "h", x.clone()), p.call_json_on(Engine::Interp, "h", &x).unwrap());
}

#[test]
fn no_allocation_in_the_innermost_loops_of_gmm_and_lstm() {
    for (eval, entry) in [("gmm", "jacobian"), ("gmm", "objective"), ("lstm", "jacobian"), ("lstm", "objective")] {
        let path = workspace_dir().join(format!("examples/gradbench/{eval}.slope"));
        let text = std::fs::read_to_string(&path).unwrap();
        let p = Program::compile(&path.display().to_string(), &text, &file_loader).unwrap();
        let loops = p.loop_program("loops").unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Rich)));
        let f = loops.func(entry).unwrap();
        let mut inner = Vec::new();
        innermost(&f.body, &mut inner);
        assert!(!inner.is_empty(), "{eval} {entry} has loops");
        let allocs: Vec<String> = inner.iter().filter(|i| is_alloc(i)).map(|i| format!("{i:?}")).collect();
        assert!(allocs.is_empty(), "{eval} {entry}: allocations in innermost loops:\n{}", allocs.join("\n"));
    }
}

#[test]
fn loop_invariant_temporaries_leave_the_loop() {
    // Each row's difference vector has the same size in every iteration and
    // is dead at its end: one buffer serves all iterations.
    let p = compile(
        "entry f [n][d] (xs: [n][d]f64) (mu: [d]f64) : f64 = \
         sum (map (\\x -> let diff = map2 (-) x mu in sum (map (\\v -> v * v) diff) + diff[0]) xs)",
    );
    let loops = p.loop_program("loops").unwrap();
    let f = loops.func("f").unwrap();
    let mut allocs = Vec::new();
    inside_loops(&f.body, 0, &is_alloc, &mut allocs);
    assert!(allocs.is_empty(), "allocations inside loops:\n{}", allocs.join("\n"));
    // Rows minus mu: [0, 1] and [2, 4]; squared sums 1 and 20, plus 0 and 2.
    let out = call(&p, "f", serde_json::json!({"xs": [[1.0, 2.0], [3.0, 5.0]], "mu": [1.0, 1.0]}));
    assert_eq!(out, serde_json::json!(23.0));
}

#[test]
fn printed_stages() {
    let src = "entry dot [n] (x: [n]f64) (y: [n]f64) : f64 = sum (map2 (*) x y)\n\
               entry scale [n] (x: [n]f64) (i: i64) : f64 = x[i] * 2.0";
    let p = compile(src);
    let loops = p.emit("loops", None).unwrap();
    snapshot("loops", format!("{src}\n---\n{loops}"));
    // The dot product is one loop with a scalar accumulator, no allocation;
    // the indexing is checked.
    let dot = p.emit("loops", Some("dot")).unwrap();
    assert!(!dot.contains("alloc"), "{dot}");
    assert_eq!(dot.matches("for ").count(), 1, "{dot}");
    assert!(loops.contains("fail site"), "{loops}");
    let clif = p.emit("clif", Some("scale")).unwrap();
    snapshot("clif", format!("{src}\n---\n{clif}"));
    assert!(clif.contains("function %scale"), "{clif}");
    // The dot product's loop is a reduction, outlined into a segment.
    let parallel = p.emit("parallel", Some("dot")).unwrap();
    snapshot("parallel", format!("{src}\n---\n{parallel}"));
    assert!(parallel.contains("(acc_5) = parallel segment0"), "{parallel}");
    assert!(parallel.contains("reductions [Add F64"), "{parallel}");
}

/// A map inside a time-step loop is a segment called inline (Note [Loops
/// called inline] in loops/parallel.rs): the CLIF calls the segment's
/// function directly, not through the runtime's `slope_parallel_for`.
#[test]
fn printed_inline_segment() {
    let src = "entry decay [n] (y0: [n]f64) (s: i64) : [n]f64 =\n\
               \x20 loop y = y0 for _t < s do map (\\a -> 0.5 * a + 1.0) y";
    let p = compile(src);
    let parallel = p.emit("parallel", Some("decay")).unwrap();
    snapshot("parallel_inline", format!("{src}\n---\n{parallel}"));
    assert!(parallel.contains("inline segment0"), "{parallel}");
    let clif = p.emit("clif", Some("decay")).unwrap();
    assert!(!clif.contains("slope_parallel_for"), "{clif}");
    let y0: Vec<f64> = (0..1000).map(|i| i as f64).collect();
    let input = serde_json::json!({ "y0": y0, "s": 3 });
    let got = p.call_json_on(Engine::Multicore, "decay", &input).unwrap();
    let want: Vec<f64> = y0.iter().map(|&a| ((0.5 * a + 1.0) * 0.5 + 1.0) * 0.5 + 1.0).collect();
    assert_eq!(got, serde_json::json!(want));
}

/// Memory planning (`loops/pack.rs`): the scratch buffers outlining left in
/// the entry (the segment allocates its own) are gone, and the segment's
/// three small buffers are one allocation, each at an offset into it; the
/// values are the interpreter's on both native back ends.
#[test]
fn printed_memory_plan() {
    let src = "entry f [n] (xs: [n]f64) (k: i64) : [n]f64 =\n\
               \x20 map (\\x -> let a = tabulate 3 (\\i -> x * f64 i) in\n\
               \x20            let b = tabulate 4 (\\i -> x + f64 i) in\n\
               \x20            a[k % 3] * b[k % 4] + sum (reverse a)) xs";
    let p = compile(src);
    let parallel = p.emit("parallel", None).unwrap();
    let memory = p.emit("memory", None).unwrap();
    snapshot("memory", format!("{src}\n---\n{memory}"));
    let (entry, segment) = memory.split_once("-- segment0").expect("one segment");
    // Before planning, the entry and the segment each allocate the three
    // buffers; after it, the entry allocates none and the segment one pack.
    assert_eq!(parallel.matches("alloc_or_null").count(), 6, "{parallel}");
    assert!(!entry.contains("alloc_or_null"), "{entry}");
    assert_eq!(segment.matches("alloc_or_null f64 12").count(), 1, "{segment}");
    assert_eq!(segment.matches("alloc_or_null").count(), 1, "{segment}");
    let xs: Vec<f64> = (0..3000).map(|i| i as f64 / 7.0).collect();
    let input = serde_json::json!({ "xs": xs, "k": 5 });
    let numbers = |v: serde_json::Value| -> Vec<f64> {
        v.as_array().expect("an array").iter().map(|x| x.as_f64().expect("a number")).collect()
    };
    let want = numbers(p.call_json_on(Engine::Interp, "f", &input).unwrap());
    assert_eq!(want.len(), 3000);
    for engine in [Engine::Sequential, Engine::Multicore] {
        let got = numbers(p.call_json_on(engine, "f", &input).unwrap());
        // Summation order may differ in the last bits (docs/native.md).
        let close = got.iter().zip(&want).all(|(g, w)| (g - w).abs() <= 1e-12 * w.abs().max(1.0));
        assert!(got.len() == want.len() && close, "{engine:?}");
    }
}

#[test]
fn bad_arguments_at_the_call_boundary_are_diagnostics() {
    let p = compile("entry f [n] (xs: [n]f64) (k: i64) : f64 = xs[k]");
    for (input, needle) in [
        (serde_json::json!({"xs": [[1.0]], "k": 0}), "expected a number"),
        (serde_json::json!({"xs": [1.0], "k": 0.5}), "k"),
        (serde_json::json!({"xs": [1.0]}), "lacks `k`"),
        (serde_json::json!([1.0, 2.0]), "JSON object"),
    ] {
        let f = p.call_json_on(Engine::Multicore, "f", &input).expect_err("bad input");
        let text = f.render(RenderStyle::Short);
        assert!(f.codes().iter().any(|c| c.as_str() == "E0302"), "{input}: {text}");
        assert!(text.contains(needle), "{input}: {text}");
    }
    // Every back end checks leaf types itself too: a caller bypassing the
    // API's decoding gets E0302, not undefined behaviour — a scalar where an
    // array goes, or a tuple where the leaves go.
    use slope_runtime::{Scalar, Value};
    let i64 = |x| Value::Scalar(Scalar::I64(x));
    for engine in Engine::ALL {
        let executable = p.executable(engine).unwrap();
        for args in [vec![i64(1), i64(0)], vec![Value::Tuple(vec![i64(1)]), i64(0)]] {
            let e = executable.call("f", &args, 10, &mut || 0).unwrap_err();
            assert_eq!(e.code.as_str(), "E0302", "{}: {}", engine.name(), e.message);
        }
    }
}

#[test]
fn a_result_too_large_to_allocate_is_e0207_not_an_overflow() {
    // 2^40 rows of 2^24 elements: each size is allowed, their product wraps
    // around to 0 in 64 bits. Native code checks the product before
    // allocating. (The interpreter would try to reserve the rows and abort:
    // it is not asked here.)
    let p = compile("entry t (n: i64) (m: i64) : [][]i64 = tabulate n (\\i -> iota m)");
    let input = serde_json::json!({"n": 1u64 << 40, "m": 1u64 << 24});
    let f = p.call_json_on(Engine::Multicore, "t", &input).unwrap_err();
    let text = f.render(RenderStyle::Short);
    assert!(f.codes().iter().any(|c| c.as_str() == "E0207"), "{text}");
    assert!(text.contains("cannot allocate an array of 1099511627776 rows of 16777216 elements"), "{text}");
    assert_eq!(call(&p, "t", serde_json::json!({"n": 2, "m": 3})), serde_json::json!([[0, 1, 2], [0, 1, 2]]));
}

/// An entry called at the top level of another entry (Note [Entries called
/// by entries] in ir/calls.rs) is compiled once: the caller's loop IR and
/// CLIF call it rather than repeating its loops, and `emit --stage clif
/// --entry` shows the caller alone; the values are the interpreter's.
#[test]
fn printed_call_of_an_entry() {
    let src = "entry norm2 [n] (xs: [n]f64) : f64 = sum (map (\\x -> x * x) xs)\n\
               entry report [n] (xs: [n]f64) : (f64, f64) = let a = norm2 xs in (a, a + norm2 (map (\\x -> 2.0 * x) xs))";
    let p = compile(src);
    let loops = p.emit("loops", Some("report")).unwrap();
    snapshot("call", format!("{src}\n---\n{loops}"));
    assert_eq!(loops.matches("= call norm2(").count(), 2, "{loops}");
    // `report`'s own loop is the doubling map; the sums are `norm2`'s.
    assert_eq!(loops.matches("for ").count(), 1, "{loops}");
    let clif = p.emit("clif", Some("report")).unwrap();
    assert!(clif.starts_with("function %report("), "{clif}");
    assert!(!clif.contains("function %norm2"), "only the caller is shown: {clif}");
    assert!(clif.contains("slope_failed_in"), "a failing callee is recorded: {clif}");
    let input = serde_json::json!({ "xs": [1.0, 2.0, 3.0] });
    let want = p.call_json_on(Engine::Interp, "report", &input).unwrap();
    assert_eq!(want, serde_json::json!([14.0, 70.0]));
    for engine in [Engine::Sequential, Engine::Multicore] {
        assert_eq!(p.call_json_on(engine, "report", &input).unwrap(), want, "{engine:?}");
    }
}

/// The interpreter compiles no native code: the library says so (E0305)
/// rather than panicking.
#[test]
fn the_interpreter_has_no_native_code() {
    let p = compile("entry f (x: f64) : f64 = x + 1.0");
    let failure = p.native_on(Engine::Interp).err().expect("no native code");
    assert_eq!(failure.codes().iter().map(|c| c.as_str()).collect::<Vec<_>>(), ["E0305"]);
    assert!(p.native_on(Engine::Sequential).is_ok() && p.native_on(Engine::Multicore).is_ok());
}

/// Memory planning of loops (`loops/buffers.rs`, the `buffers` stage):
/// lowering leaves every allocation where the program makes it; the stage
/// moves a scratch buffer of a fixed size before its loop, leaving a null
/// test in its place, and makes a loop whose body still allocates release
/// each iteration's temporaries. Both native back ends give the
/// interpreter's values.
#[test]
fn buffers_are_planned_after_lowering() {
    let src = "entry scratch [n] (xs: [n]f64) (k: i64) : [n]f64 =\n\
               \x20 map (\\x -> let a = tabulate 3 (\\i -> x * f64 i) in a[k % 3]) xs\n\
               entry growing (n: i64) : f64 =\n\
               \x20 loop acc = 0.0 for i < n do\n\
               \x20   let a = opaque (tabulate (i + 1) (\\j -> f64 j)) in acc + a[i / 2] + sum a";
    let p = compile(src);
    let lowered = p.emit("lowered", Some("scratch")).unwrap();
    let planned = p.emit("buffers", Some("scratch")).unwrap();
    let (before_loop, in_loop) = planned.split_once("for ").expect("a loop");
    assert!(!lowered.contains("alloc_or_null"), "{lowered}");
    assert!(before_loop.contains("alloc_or_null f64 3"), "{planned}");
    assert!(in_loop.contains("allocated_") && !in_loop.contains("alloc f64 3"), "{planned}");
    let lowered = p.emit("lowered", Some("growing")).unwrap();
    let planned = p.emit("buffers", Some("growing")).unwrap();
    assert!(!lowered.contains("release"), "{lowered}");
    assert!(planned.contains("= mark") && planned.contains("release mark_"), "{planned}");
    let xs: Vec<f64> = (0..100).map(|i| i as f64 / 3.0).collect();
    for (entry, input) in
        [("scratch", serde_json::json!({ "xs": xs, "k": 4 })), ("growing", serde_json::json!({ "n": 300 }))]
    {
        let want = p.call_json_on(Engine::Interp, entry, &input).unwrap();
        for engine in [Engine::Sequential, Engine::Multicore] {
            assert_eq!(p.call_json_on(engine, entry, &input).unwrap(), want, "{entry}");
        }
    }
}
