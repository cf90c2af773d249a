//! Differential tests of the multicore back end: every case of every test
//! program and every GradBench fixture runs on native code with 1, 2, 3 and
//! 8 threads, with the compiler's chunk sizes and with loops cut into chunks
//! of one and two iterations (so that small inputs run as many chunks, on
//! every thread). Results must be bit-identical across thread counts for a
//! given chunking, within 1e-12 of the sequential chunking (a float sum is
//! associated by chunks), and errors identical in code, span and message.

use slope::api::{Engine, Program};
use slope::diagnostic::RenderStyle;
use slope_tests::{file_loader, fixture_files, json_close, parse_header, workspace_dir};
use std::path::{Path, PathBuf};

/// `(threads, chunk limit)` runs compared against `(1, 0)`: the chunkings
/// 1 and 2 each on several thread counts, and the compiler's on 2 and 8.
const RUNS: &[(usize, i64)] = &[(2, 0), (8, 0), (1, 1), (2, 1), (3, 1), (8, 1), (1, 2), (3, 2)];

/// The outcome of one call, as text: the JSON result or the error.
fn outcome(program: &Program, entry: &str, input: &serde_json::Value) -> Result<serde_json::Value, String> {
    program.call_json_on(Engine::Multicore, entry, input).map_err(|f| f.render(RenderStyle::Short))
}

/// Runs `entry` on `input` under every configuration of [`RUNS`] and checks
/// the results agree as the module header says.
fn agree(program: &Program, what: &str, entry: &str, input: &serde_json::Value) {
    let set = |threads: usize, limit: i64| {
        program.set_threads(threads).expect("native code builds");
        program.set_chunk_limit(limit).expect("native code builds");
    };
    set(1, 0);
    let start = std::time::Instant::now();
    let reference = outcome(program, entry, input);
    // A call of seconds (billions of iterations) is checked at the
    // compiler's chunk sizes only, to keep the suite short.
    let slow = start.elapsed() > std::time::Duration::from_millis(300);
    let mut by_limit: Vec<(i64, Result<serde_json::Value, String>)> = Vec::new();
    for &(threads, limit) in RUNS.iter().filter(|&&(_, limit)| !slow || limit == 0) {
        set(threads, limit);
        let got = outcome(program, entry, input);
        match (&reference, &got) {
            (Ok(a), Ok(b)) => {
                if let Err(e) = json_close(b, a, 1e-12, entry) {
                    panic!("{what}: {threads} threads, chunks of {limit}: {e}");
                }
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "{what}: {threads} threads, chunks of {limit}: another error"),
            _ => panic!("{what}: {threads} threads, chunks of {limit}: {got:?} instead of {reference:?}"),
        }
        match by_limit.iter().find(|(l, _)| *l == limit) {
            Some((_, first)) => assert_eq!(
                first.as_ref().map(|v| v.to_string()),
                got.as_ref().map(|v| v.to_string()),
                "{what}: chunks of {limit}: {threads} threads differ in bits from another thread count"
            ),
            None => by_limit.push((limit, got)),
        }
    }
    set(1, 0);
}

fn programs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("tests/programs exists").flatten() {
        let path = entry.path();
        if path.is_dir() {
            programs(&path, out);
        } else if path.extension().is_some_and(|e| e == "slope") {
            out.push(path);
        }
    }
}

#[test]
fn every_test_program_agrees_on_every_thread_count() {
    let mut paths = Vec::new();
    programs(&workspace_dir().join("tests/programs"), &mut paths);
    paths.sort();
    let mut ran = 0;
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("program is readable");
        let Ok(header) = parse_header(&text) else { continue };
        if header.cases.is_empty() || header.compile_error.is_some() {
            continue;
        }
        let name = path.display().to_string();
        let Ok(program) = Program::compile(&name, &text, &file_loader) else { continue };
        if program.native().is_err() {
            continue;
        }
        for case in &header.cases {
            let entry = program.entry_name(case.entry.as_deref()).expect("the case names an entry");
            agree(&program, &name, &entry, &case.input);
            ran += 1;
        }
    }
    assert!(ran > 100, "only {ran} cases ran");
}

#[test]
fn every_gradbench_fixture_agrees_on_every_thread_count() {
    for (eval, module) in [
        ("hello", "hello"),
        ("lse", "lse"),
        ("ode", "ode"),
        ("gmm", "gmm"),
        ("lstm", "lstm"),
        ("ba", "ba"),
        ("ht", "ht"),
        ("llsq", "llsq"),
        ("det", "det"),
        ("kmeans", "kmeans"),
        ("particle", "particle"),
        ("saddle", "saddle"),
    ] {
        let path = workspace_dir().join(format!("examples/gradbench/{module}.slope"));
        let text = std::fs::read_to_string(&path).expect("example exists");
        let program = Program::compile(&path.display().to_string(), &text, &file_loader)
            .unwrap_or_else(|f| panic!("{module}: {}", f.render(RenderStyle::Short)));
        for file in fixture_files(eval) {
            let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            let function = fixture["function"].as_str().expect("a fixture names its function");
            agree(&program, &file.display().to_string(), function, &fixture["input"]);
        }
    }
}

/// A large input runs as many chunks of the compiler's size, on the pool.
#[test]
fn a_large_reduction_and_map_agree_on_every_thread_count() {
    let src = "import \"nn\"\n\
               entry lse [n] (x: [n]f64) : f64 = logsumexp x\n\
               entry softmax_grad [n] (x: [n]f64) : [n]f64 = grad logsumexp x\n\
               entry imax [n] (x: [n]i64) : i64 = maximum x\n\
               entry dots [n][m] (a: [n][m]f64) (v: [m]f64) : [n]f64 = map (\\r -> sum (map2 (*) r v)) a";
    let program = Program::compile("large.slope", src, &file_loader).expect("compiles");
    let n = 300_000;
    let x: Vec<f64> = (0..n).map(|i| ((i * 7919) % 1000) as f64 / 333.0 - 1.5).collect();
    let xi: Vec<i64> = (0..n).map(|i| (i * 7919) % 100_003).collect();
    let rows: Vec<Vec<f64>> =
        (0..2000).map(|r| (0..300).map(|c| ((r * 31 + c * 17) % 97) as f64 / 97.0).collect()).collect();
    let v: Vec<f64> = (0..300).map(|c| (c % 13) as f64 - 6.0).collect();
    agree(&program, "lse", "lse", &serde_json::json!({ "x": x }));
    agree(&program, "softmax_grad", "softmax_grad", &serde_json::json!({ "x": x }));
    agree(&program, "imax", "imax", &serde_json::json!({ "x": xi }));
    agree(&program, "dots", "dots", &serde_json::json!({ "a": rows, "v": v }));
    let native = program.emit("parallel", None).expect("prints");
    assert!(native.matches("parallel segment").count() >= 4, "{native}");
}

/// An index out of bounds inside a parallel loop: the first failing index
/// is reported, whatever the thread count and chunking.
#[test]
fn the_first_failure_in_index_order_is_reported() {
    let src = "entry f [n] (xs: [n]f64) (ks: [n]i64) : [n]f64 = map2 (\\x k -> x * xs[k]) xs ks";
    let program = Program::compile("fail.slope", src, &file_loader).expect("compiles");
    let n = 5000;
    let xs: Vec<f64> = (0..n).map(|i| i as f64).collect();
    // Indices 1000 and 3000 are out of bounds: 1000 comes first.
    let ks: Vec<i64> = (0..n)
        .map(|i| {
            if i == 1000 {
                n + 7
            } else if i == 3000 {
                -1
            } else {
                i
            }
        })
        .collect();
    let input = serde_json::json!({ "xs": xs, "ks": ks });
    agree(&program, "fail", "f", &input);
    let err = outcome(&program, "f", &input).unwrap_err();
    let interp = program.call_json_on(Engine::Interp, "f", &input).unwrap_err().render(RenderStyle::Short);
    assert_eq!(err, interp, "the interpreter reports the same first error");
    assert!(err.contains("E0201") && err.contains(&format!("index {} out of bounds", n + 7)), "{err}");
}

/// A `map` whose rows have a shape known only inside the loop allocates its
/// result in the first iteration (Note [The first iteration]): it still runs
/// in parallel, and a row of another shape is the first error in index order.
#[test]
fn a_result_allocated_in_the_first_iteration_runs_in_parallel() {
    let src = "entry rows [n] (xs: [n]i64) : [n][]f64 = map (\\x -> map f64 (iota (x % 3 + 2))) xs";
    let program = Program::compile("rows.slope", src, &file_loader).expect("compiles");
    let parallel = program.emit("parallel", None).expect("prints");
    assert!(parallel.contains("row_len"), "{parallel}");
    assert!(parallel.contains("parallel segment0"), "{parallel}");
    let n = 3000;
    let same: Vec<i64> = (0..n).map(|i| 3 * i).collect();
    agree(&program, "rows", "rows", &serde_json::json!({ "xs": same }));
    // Rows 700 and 2000 have other shapes: 700 is reported.
    let ragged: Vec<i64> = (0..n).map(|i| if i == 700 || i == 2000 { 3 * i + 1 } else { 3 * i }).collect();
    let input = serde_json::json!({ "xs": ragged });
    agree(&program, "ragged", "rows", &input);
    let err = outcome(&program, "rows", &input).unwrap_err();
    let interp = program.call_json_on(Engine::Interp, "rows", &input).unwrap_err().render(RenderStyle::Short);
    assert_eq!(err, interp, "the interpreter reports the same first error");
    assert!(err.contains("E0202"), "{err}");
}

/// A scratch buffer hoisted out of a map (`t`, one per iteration) whose size
/// is a dimension of a `loop`'s state — a variable the function assigns more
/// than once, but not inside the map — is allocated again per chunk with
/// the size the map starts with: the map runs in parallel (ht's skinning).
#[test]
fn a_scratch_buffer_sized_by_loop_state_runs_in_parallel() {
    let src = "def step (s: [][]f64) (i: i64) : [][]f64 =\n\
               \x20 if i == 1 then s else tabulate (length s) (\\j -> map (\\v -> v * 0.5 + f64 i) s[j])\n\
               entry f [n][m] (xs: [n]f64) (w: [m][m]f64) (k: i64) : [n]f64 =\n\
               \x20 let s = loop s = (w :> [][]f64) for i < k do step s i in\n\
               \x20 map (\\x -> let t = map (\\v -> v * x) s[0] in t[0] + sum t) xs";
    let program = Program::compile("scratch.slope", src, &file_loader).expect("compiles");
    let parallel = program.emit("parallel", None).expect("prints");
    assert!(parallel.contains("parallel segment0 0..xs_d0_1"), "{parallel}");
    let xs: Vec<f64> = (0..4000).map(|i| (i % 29) as f64 / 7.0).collect();
    let w: Vec<Vec<f64>> = (0..6).map(|r| (0..6).map(|c| (r * 6 + c) as f64 / 10.0).collect()).collect();
    for k in [0, 3] {
        let input = serde_json::json!({ "xs": xs, "w": w, "k": k });
        agree(&program, "scratch", "f", &input);
        let native = outcome(&program, "f", &input).expect("runs");
        let interp = program.call_json_on(Engine::Interp, "f", &input).expect("runs");
        json_close(&native, &interp, 1e-12, "f").unwrap_or_else(|e| panic!("k = {k}: {e}"));
    }
    // An empty `w`: `s[0]` fails in the first iteration, as in the interpreter.
    let input = serde_json::json!({ "xs": xs, "w": Vec::<Vec<f64>>::new(), "k": 2 });
    let err = outcome(&program, "f", &input).unwrap_err();
    let interp = program.call_json_on(Engine::Interp, "f", &input).unwrap_err().render(RenderStyle::Short);
    assert_eq!(err, interp);
    assert!(err.contains("E0201"), "{err}");
}

/// A time step that reads the state `v` and writes the next one into a
/// buffer of the same allocation (`out = alloc n; map …; v = out`, the
/// unrolled loop of the forward sweep) runs in parallel: `v` reaches an
/// earlier buffer of that allocation, not the one written (Note [Earlier
/// buffers of an allocation] in loops/parallel.rs).
#[test]
fn a_map_reading_an_earlier_buffer_of_its_allocation_runs_in_parallel() {
    let src = "entry f [n] (xs: [n]f64) (u: [n]f64) : [n]f64 =\n\
               \x20 grad (\\v0 -> sum (loop v = v0 for _i < 3 do map2 (\\a b -> a * b + cos a) v u)) xs";
    let program = Program::compile("steps.slope", src, &file_loader).expect("compiles");
    let parallel = program.emit("parallel", None).expect("prints");
    // The three steps of the forward sweep and the reverse sweep.
    assert_eq!(parallel.matches("parallel segment").count(), 4, "{parallel}");
    let xs: Vec<f64> = (0..5000).map(|i| (i % 23) as f64 / 11.0 - 1.0).collect();
    let u: Vec<f64> = (0..5000).map(|i| (i % 7) as f64 / 5.0).collect();
    let input = serde_json::json!({ "xs": xs, "u": u });
    agree(&program, "steps", "f", &input);
    let native = outcome(&program, "f", &input).expect("runs");
    let interp = program.call_json_on(Engine::Interp, "f", &input).expect("runs");
    json_close(&native, &interp, 1e-12, "f").unwrap();
}

/// A histogram with `max`, `min` or `*` runs in parallel like reverse
/// mode's `+=`: later chunks combine into private buffers that start at the
/// operator's neutral element (Note [Parallel segments]), and every thread
/// count gives the same bits.
#[test]
fn histograms_of_every_combining_operator_run_in_parallel() {
    // The values lie on the other side of the destination's from the
    // neutral element, so a private buffer started anywhere else would show.
    let src = "entry hmax [m] (is: [m]i64) (vs: [m]f64) : [64]f64 = reduce_by_index (replicate 64 (-5.0)) max (-1.0e300) is vs\n\
               entry hmin [m] (is: [m]i64) (ks: [m]i64) : [64]i64 = reduce_by_index (replicate 64 5000) min 1000000 is ks\n\
               entry hmul [m] (is: [m]i64) (vs: [m]f64) : [64]f64 = reduce_by_index (replicate 64 1.0) (*) 1.0 is vs";
    let program = Program::compile("hist.slope", src, &file_loader).expect("compiles");
    let parallel = program.emit("parallel", None).expect("prints");
    for op in ["Max F64", "Min I64", "Mul F64"] {
        assert!(parallel.contains(&format!("accumulators [{op} w")), "{op}:\n{parallel}");
    }
    let n = 30_000;
    let is: Vec<i64> = (0..n).map(|i| (i * 7919) % 70 - 3).collect();
    let vs: Vec<f64> = (0..n).map(|i| ((i * 37) % 101) as f64 / 100.0 - 2.0).collect();
    let ks: Vec<i64> = (0..n).map(|i| (i * 131) % 1000 + 1).collect();
    // Products of values near 1, so that they stay finite.
    let near_one: Vec<f64> = vs.iter().map(|v| 1.0 + v / 1000.0).collect();
    for (entry, input) in [
        ("hmax", serde_json::json!({ "is": is, "vs": vs })),
        ("hmin", serde_json::json!({ "is": is, "ks": ks })),
        ("hmul", serde_json::json!({ "is": is, "vs": near_one })),
    ] {
        agree(&program, "histogram", entry, &input);
        let native = outcome(&program, entry, &input).expect("runs");
        let interp = program.call_json_on(Engine::Interp, entry, &input).expect("runs");
        json_close(&native, &interp, 1e-12, entry).unwrap();
    }
}

/// A scan runs in parallel in two passes (Note [Scans] in loops/parallel.rs):
/// chunks scan their own elements, then each chunk's part of the result has
/// the totals of the chunks before it combined in. Every thread count gives
/// the same bits; min, max and integer scans are exactly the interpreter's.
#[test]
fn scans_run_in_parallel() {
    let src = "entry sum_scan [m] (vs: [m]f64) : [m]f64 = scan (+) 0.0 vs\n\
               entry max_scan [m] (vs: [m]f64) : [m]f64 = scan max (-1.0e300) (map (\\v -> v * 2.0) vs)\n\
               entry int_scan [m] (ks: [m]i64) : [m]i64 = scan (+) 0 ks\n\
               entry product_scan [m] (vs: [m]f64) : [m]f64 = scan (*) 1.0 (map (\\v -> 1.0 + v / 1000.0) vs)\n\
               -- The running value is not what the loop stores: stays sequential.\n\
               entry shifted [m] (vs: [m]f64) : [m]f64 = map (\\s -> s + 1.0) (scan (+) 0.0 vs)";
    let program = Program::compile("scan.slope", src, &file_loader).expect("compiles");
    let parallel = program.emit("parallel", None).expect("prints");
    assert_eq!(parallel.matches("; scans [w").count(), 4, "{parallel}");
    let n = 30_000;
    let vs: Vec<f64> = (0..n).map(|i| ((i * 37) % 101) as f64 / 50.0 - 1.0).collect();
    let ks: Vec<i64> = (0..n).map(|i| (i * 131) % 1000 - 500).collect();
    for (entry, input, exact) in [
        ("sum_scan", serde_json::json!({ "vs": vs }), false),
        ("max_scan", serde_json::json!({ "vs": vs }), true),
        ("int_scan", serde_json::json!({ "ks": ks }), true),
        ("product_scan", serde_json::json!({ "vs": vs }), false),
        ("shifted", serde_json::json!({ "vs": vs }), false),
    ] {
        agree(&program, "scan", entry, &input);
        let native = outcome(&program, entry, &input).expect("runs");
        let interp = program.call_json_on(Engine::Interp, entry, &input).expect("runs");
        if exact {
            assert_eq!(native, interp, "{entry}");
        } else {
            json_close(&native, &interp, 1e-12, entry).unwrap();
        }
    }
}

/// `min` and `max` keep their first operand on a tie (`-0.0` and `0.0`), and
/// the runtime combines chunks the same way: so only a loop that keeps its
/// running value first (`min acc x`) runs in parallel; with the operands the
/// other way round (`\a b -> min b a`) every engine and thread count must
/// still give the sequential loop's bits.
#[test]
fn min_and_max_with_the_running_value_second_give_the_sequential_bits() {
    let src = "entry hist [m] (is: [m]i64) (vs: [m]f64) : [2]f64 =\n\
               \x20 reduce_by_index (replicate 2 1.0e300) (\\a b -> min b a) 1.0e300 is vs\n\
               entry running [m] (vs: [m]f64) : [m]f64 = scan (\\a b -> max b a) (-1.0e300) vs\n\
               entry total [m] (vs: [m]f64) : f64 = reduce (\\a b -> min b a) 1.0e300 vs";
    let program = Program::compile("ties.slope", src, &file_loader).expect("compiles");
    let n = 20_000;
    let zeros: Vec<f64> = (0..n).map(|i| if i % 2 == 0 { -0.0 } else { 0.0 }).collect();
    let is = vec![0i64; n];
    for (entry, input) in [
        ("hist", serde_json::json!({ "is": is, "vs": zeros })),
        ("running", serde_json::json!({ "vs": zeros })),
        ("total", serde_json::json!({ "vs": zeros })),
    ] {
        let interp = program.call_json_on(Engine::Interp, entry, &input).expect("runs").to_string();
        for threads in [1, 2, 8] {
            for limit in [0, 1, 7] {
                program.set_threads(threads).expect("native code builds");
                program.set_chunk_limit(limit).expect("native code builds");
                let native = outcome(&program, entry, &input).expect("runs").to_string();
                assert_eq!(native, interp, "{entry}: {threads} threads, chunks of {limit}");
            }
        }
    }
    program.set_threads(1).expect("native code builds");
    program.set_chunk_limit(0).expect("native code builds");
}

/// The same loop lowered twice (a function called in both branches) is one
/// segment called from both places (Note [One site per error] in
/// loops/lower.rs): the errors are the interpreter's in either branch.
/// (`opaque k` makes the branches begin differently: were they to begin
/// alike, the optimiser would run the common code once, before the `if`.)
#[test]
fn the_same_loop_in_two_places_is_one_segment() {
    let src = "def g [n] (xs: [n]f64) (k: i64) : [n]f64 = map (\\x -> exp x + xs[k]) xs\n\
               entry f [n] (xs: [n]f64) (k: i64) (flip: bool) : [n]f64 =\n\
               \x20 if flip then reverse (g xs k) else g xs (opaque k)";
    let program = Program::compile("twice.slope", src, &file_loader).expect("compiles");
    let parallel = program.emit("parallel", None).expect("prints");
    assert_eq!(parallel.matches("parallel segment0 ").count(), 2, "{parallel}");
    assert!(!parallel.contains("segment1"), "one segment:\n{parallel}");
    let xs: Vec<f64> = (0..5000).map(|i| (i % 17) as f64 / 17.0).collect();
    for flip in [false, true] {
        agree(&program, "twice", "f", &serde_json::json!({ "xs": xs, "k": 3, "flip": flip }));
        let input = serde_json::json!({ "xs": xs, "k": 5000, "flip": flip });
        let err = outcome(&program, "f", &input).unwrap_err();
        let interp = program.call_json_on(Engine::Interp, "f", &input).unwrap_err().render(RenderStyle::Short);
        assert_eq!(err, interp, "flip = {flip}: the interpreter's error");
        assert!(err.contains("E0201") && err.contains("index 5000 out of bounds"), "{err}");
    }
}

/// One compiled program called from several threads at once (Note [Calls
/// from several threads] in `jit`): every call gets the result a lone call
/// gets, bit for bit, and a failing call reports its own error while others
/// succeed beside it — each call has its own arena and failure record.
#[test]
fn one_program_serves_calls_from_several_threads_at_once() {
    let src = "import \"nn\"\n\
               entry lse [n] (x: [n]f64) : f64 = logsumexp x\n\
               entry softmax_grad [n] (x: [n]f64) : [n]f64 = grad logsumexp x\n\
               entry pick [n] (xs: [n]f64) (k: i64) : f64 = xs[k] * 2.0";
    let program = Program::compile("shared.slope", src, &file_loader).expect("compiles");
    program.set_threads(2).expect("native code builds");
    let input = |seed: usize| {
        let x: Vec<f64> = (0..20_000).map(|i| ((i * 7919 + seed * 13) % 1000) as f64 / 250.0 - 2.0).collect();
        serde_json::json!({ "x": x })
    };
    let calls: Vec<(&str, serde_json::Value)> = (0..6)
        .flat_map(|seed| {
            [
                ("lse", input(seed)),
                ("softmax_grad", input(seed)),
                ("pick", serde_json::json!({ "xs": [1.0, 2.0, 3.0], "k": seed as i64 % 5 })),
            ]
        })
        .collect();
    let alone: Vec<String> = calls.iter().map(|(e, i)| format!("{:?}", outcome(&program, e, i))).collect();
    assert!(alone.iter().any(|o| o.contains("E0201")), "some `pick` calls fail: {alone:?}");
    assert!(alone.iter().any(|o| o.starts_with("Ok")), "{alone:?}");
    let program = &program;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|t| {
                let calls = &calls;
                let alone = &alone;
                scope.spawn(move || {
                    // Each thread walks the calls from another start, three times over.
                    for round in 0..3 * calls.len() {
                        let k = (round + t * 5) % calls.len();
                        let (entry, input) = &calls[k];
                        let got = format!("{:?}", outcome(program, entry, input));
                        assert_eq!(got, alone[k], "thread {t}: `{entry}` #{k} differs when called concurrently");
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("a calling thread panicked");
        }
    });
    let native = program.native().expect("built");
    assert_eq!(native.code.held_bytes(), 0, "no call leaves arena memory held");
}

/// Loops one level inside a sequential loop are called inline (Note [Loops
/// called inline] in loops/parallel.rs): maps, reductions and the reverse
/// sweep's accumulation inside time-step loops. Each runs as one call over
/// its whole range — no chunks — so the result is the sequential back end's
/// bit for bit, and an index out of bounds inside one is the interpreter's
/// error.
#[test]
fn loops_inside_a_time_step_loop_are_called_inline() {
    let src = "def step [n] (xs: [n]f64) (k: i64) (y: [n]f64) : [n]f64 =\n\
               \x20 let m = sum (tabulate n (\\i -> if i == n - 1 then y[i + k] else y[i])) / f64 n in\n\
               \x20 map2 (\\a b -> 0.5 * a + m * b) y xs\n\
               entry f [n] (xs: [n]f64) (s: i64) (k: i64) : f64 =\n\
               \x20 sum (loop y = xs for _t < s do step xs k y)\n\
               entry g [n] (xs: [n]f64) (s: i64) (k: i64) : [n]f64 =\n\
               \x20 grad (\\c -> f c s k) xs";
    let program = Program::compile("steps.slope", src, &file_loader).expect("compiles");
    let parallel = program.emit("parallel", None).expect("prints");
    let inline = parallel.lines().filter(|l| l.contains("inline segment")).collect::<Vec<_>>();
    assert!(inline.iter().any(|l| l.contains(") = inline segment")), "a reduction called inline:\n{parallel}");
    assert!(inline.len() >= 4, "the time loops' maps and sums, forward and reverse:\n{parallel}");
    let xs: Vec<f64> = (0..3000).map(|i| (i % 13) as f64 / 13.0 - 0.5).collect();
    // The bounds check of `y[i + k]` is inside the reductions called inline.
    assert!(parallel.contains("fail site"), "{parallel}");
    for (entry, k) in [("f", 0), ("g", -5), ("f", 2), ("g", 1), ("g", -3000)] {
        let input = serde_json::json!({ "xs": xs, "s": 7, "k": k });
        agree(&program, "steps", entry, &input);
        let native = outcome(&program, entry, &input);
        let sequential =
            program.call_json_on(Engine::Sequential, entry, &input).map_err(|f| f.render(RenderStyle::Short));
        assert_eq!(native, sequential, "{entry}, k = {k}: the sequential back end's bits and errors");
        let interp = program.call_json_on(Engine::Interp, entry, &input).map_err(|f| f.render(RenderStyle::Short));
        match (&native, &interp) {
            (Ok(a), Ok(b)) => json_close(a, b, 1e-12, entry).unwrap(),
            (Err(a), Err(b)) => {
                assert_eq!(a, b, "{entry}, k = {k}: the interpreter's error");
                assert!(a.contains("E0201"), "{a}");
            }
            _ => panic!("{entry}, k = {k}: {native:?} against the interpreter's {interp:?}"),
        }
        assert_eq!(native.is_err(), !(-2999..=0).contains(&k), "{entry}, k = {k}: {native:?}");
    }
}

/// A copy of more than 8 MiB (a `concat` of 1.1 million doubles) is cut
/// into pieces the pool copies (Note [Large copies] in the runtime): every
/// element lands where the sequential copy puts it, whatever the number of
/// threads — a weighted sum of all of them sees a piece out of place.
#[test]
fn a_large_copy_agrees_on_every_thread_count() {
    let src = "entry f (n: i64) (k: i64) : f64 =\n\
               \x20 let a = map (\\i -> f64 (i % 1000) * 0.5) (iota n) in\n\
               \x20 let c = concat a (map (\\i -> f64 i) (iota k)) in\n\
               \x20 sum (map2 (\\x i -> x * f64 (i % 7919)) c (iota (n + k)))";
    let program = Program::compile("cat.slope", src, &file_loader).expect("compiles");
    let parallel = program.emit("parallel", None).expect("prints");
    assert!(parallel.contains("copy f64 cat"), "{parallel}");
    let input = serde_json::json!({ "n": 1_100_000, "k": 3 });
    agree(&program, "cat", "f", &input);
    let interp = program.call_json_on(Engine::Interp, "f", &input).expect("runs");
    // Each thread count on a program of its own: a first call writes into
    // fresh memory, where a piece left uncopied cannot pass for the
    // previous call's result.
    let mut first = None;
    for threads in [1, 2, 3, 8] {
        let program = Program::compile("cat.slope", src, &file_loader).expect("compiles");
        program.set_threads(threads).expect("native code builds");
        let native = outcome(&program, "f", &input).expect("runs");
        json_close(&native, &interp, 1e-12, "f").unwrap();
        let first = first.get_or_insert_with(|| native.to_string());
        assert_eq!(*first, native.to_string(), "{threads} threads: the bits of one thread");
    }
}

/// A result of a few MiB written by a parallel loop leaves the arena in
/// pieces the pool copies, while its workers are awake from that loop
/// (Note [Where the data is] in the runtime): every element arrives where
/// it belongs, on every thread count, call after call.
#[test]
fn a_large_result_is_copied_out_whole_on_every_thread_count() {
    let src = "entry f [n] (x: [n]f64) (s: f64) : [n]f64 = map (\\v -> sin (v * s) + v) x";
    let program = Program::compile("result.slope", src, &file_loader).expect("compiles");
    let x: Vec<f64> = (0..300_000).map(|i| (i % 977) as f64 * 0.5).collect();
    let input = serde_json::json!({ "x": x, "s": 0.25 });
    let interp = program.call_json_on(Engine::Interp, "f", &input).expect("runs");
    for threads in [1, 2, 3, 8] {
        program.set_threads(threads).expect("native code builds");
        for _ in 0..3 {
            let native = outcome(&program, "f", &input).expect("runs");
            assert_eq!(native.to_string(), interp.to_string(), "{threads} threads");
        }
    }
}
