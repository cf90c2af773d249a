//! The GradBench protocol adapter (`slope_cli::gradbench::Adapter`), driven with
//! recorded message sequences as an eval sends them: every fixture in
//! `tests/fixtures` goes through start → define → evaluate and its answer
//! is checked for id, shape, timings and value. A fake clock makes the timing
//! loop's `min_runs`/`min_seconds` behaviour exact.
//!
//! Each fixture runs once per engine here; `fixtures.rs` checks the same
//! values through `call_json_on`.

use serde_json::{json, Value as J};
use slope::api::Engine;
use slope_cli::gradbench::Adapter;
use slope_tests::{file_loader, fixture_files, json_close, workspace_dir};

/// An adapter reading modules from `examples/gradbench`, as `slope gradbench` does.
fn adapter() -> Adapter<'static> {
    adapter_on(Engine::Multicore)
}

fn adapter_on(engine: Engine) -> Adapter<'static> {
    let dir = workspace_dir().join("examples/gradbench");
    Adapter::new(
        Box::new(move |module: &str| {
            let path = dir.join(format!("{module}.slope"));
            std::fs::read_to_string(&path).map(|t| (path.display().to_string(), t)).map_err(|e| e.to_string())
        }),
        Box::new(file_loader),
    )
    .with_engine(engine)
}

/// An adapter over in-memory modules (for failures the examples cannot show).
fn adapter_with(modules: &'static [(&'static str, &'static str)]) -> Adapter<'static> {
    Adapter::new(
        Box::new(move |module: &str| {
            modules
                .iter()
                .find(|(m, _)| *m == module)
                .map(|(m, text)| (format!("{m}.slope"), text.to_string()))
                .ok_or(format!("no module {module}"))
        }),
        Box::new(|_: &str, p: &str| Err(format!("no import {p}"))),
    )
}

/// A clock advancing `step` nanoseconds at every reading.
fn fake_clock(step: u64) -> impl FnMut() -> u64 {
    let mut now = 0;
    move || {
        now += step;
        now
    }
}

/// Sends one message; the response must be a JSON object carrying the same id.
fn send(adapter: &mut Adapter, message: &J, clock: &mut dyn FnMut() -> u64) -> J {
    let line = adapter.handle(&message.to_string(), clock);
    assert!(!line.contains('\n'), "a response is one line: {line}");
    let response: J = serde_json::from_str(&line).unwrap_or_else(|e| panic!("response is not JSON ({e}): {line}"));
    assert_eq!(response["id"], message["id"], "the id is echoed: {line}");
    response
}

/// The timings array: `count` entries named `name`, integer nanoseconds.
fn timings(response: &J, name: &str) -> Vec<u64> {
    let list = response["timings"].as_array().unwrap_or_else(|| panic!("no timings in {response}"));
    list.iter()
        .map(|t| {
            assert_eq!(t.as_object().map(|o| o.len()), Some(2), "a timing has name and nanoseconds: {t}");
            assert_eq!(t["name"], name, "{t}");
            t["nanoseconds"].as_u64().unwrap_or_else(|| panic!("nanoseconds is not an integer: {t}"))
        })
        .collect()
}

fn assert_success(response: &J, keys: &[&str]) {
    assert_eq!(response["success"], true, "{response}");
    let mut got: Vec<&str> = response.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    got.sort();
    let mut want = keys.to_vec();
    want.sort();
    assert_eq!(got, want, "{response}");
}

fn assert_failure(response: &J) -> String {
    assert_eq!(response["success"], false, "{response}");
    let error = response["error"].as_str().unwrap_or_else(|| panic!("no error text: {response}"));
    assert!(!error.is_empty());
    error.to_string()
}

/// One eval session over every fixture file of `eval_dir`, as GradBench runs
/// it, on each engine.
fn session(eval_dir: &str, module: &str) {
    for engine in Engine::ALL {
        session_on(eval_dir, module, engine);
    }
}

fn session_on(eval_dir: &str, module: &str, engine: Engine) {
    let files = fixture_files(eval_dir);
    let mut adapter = adapter_on(engine);
    let mut clock = fake_clock(1_000);
    let start = json!({"id": 0, "kind": "start", "eval": module, "config": null});
    assert_eq!(adapter.handle(&start.to_string(), &mut clock), r#"{"id":0,"tool":"slope"}"#);
    let define = send(&mut adapter, &json!({"id": 1, "kind": "define", "module": module}), &mut clock);
    assert_success(&define, &["id", "success", "timings"]);
    assert_eq!(timings(&define, "compile"), vec![1_000]);
    for (n, file) in files.iter().enumerate() {
        let fixture: J = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        assert_eq!(fixture["eval"], module, "{}", file.display());
        let function = fixture["function"].as_str().unwrap();
        let mut input = fixture["input"].clone();
        // Real messages add the timing fields to every input but `hello`'s bare number.
        if let Some(fields) = input.as_object_mut() {
            fields.insert("min_runs".into(), json!(1));
            fields.insert("min_seconds".into(), json!(0));
        }
        let message = json!({"id": 2 + n, "kind": "evaluate", "module": module, "function": function,
                             "input": input, "description": fixture["workload"]});
        let response = send(&mut adapter, &message, &mut clock);
        if response["success"] != true {
            panic!("{} on {engine:?}: {}", file.display(), response["error"]);
        }
        assert_success(&response, &["id", "success", "output", "timings"]);
        assert_eq!(timings(&response, "evaluate"), vec![1_000], "{}", file.display());
        // fixtures.rs explains the ode gradient's looser bound.
        let tolerance = if module == "ode" && function == "gradient" { 1e-6 } else { 1e-8 };
        if let Err(e) = json_close(&response["output"], &fixture["output"], tolerance, function) {
            panic!("{} on {engine:?}: {e}", file.display());
        }
    }
    let analysis = json!({"id": 99, "kind": "analysis", "valid": true, "error": null});
    assert_eq!(adapter.handle(&analysis.to_string(), &mut clock), r#"{"id":99}"#);
    assert!(adapter.take_log().is_empty(), "no failures were logged");
}

#[test]
fn fixtures_hello() {
    session("hello", "hello");
}

#[test]
fn fixtures_lse() {
    session("lse", "lse");
}

#[test]
fn fixtures_ode() {
    session("ode", "ode");
}

#[test]
fn fixtures_gmm() {
    session("gmm", "gmm");
}

#[test]
fn fixtures_lstm() {
    session("lstm", "lstm");
}

#[test]
fn fixtures_ba() {
    session("ba", "ba");
}

#[test]
fn fixtures_ht_simple() {
    session("ht", "ht");
}

/// The complicated variant is the same module, `ht`, with other inputs.
#[test]
fn fixtures_ht_complicated() {
    session("ht-complicated", "ht");
}

#[test]
fn fixtures_llsq() {
    session("llsq", "llsq");
}

#[test]
fn fixtures_det() {
    session("det", "det");
}

#[test]
fn fixtures_kmeans() {
    session("kmeans", "kmeans");
}

#[test]
fn fixtures_particle() {
    session("particle", "particle");
}

#[test]
fn fixtures_saddle() {
    session("saddle", "saddle");
}

fn evaluate_lse(adapter: &mut Adapter, limits: J, clock: &mut dyn FnMut() -> u64) -> J {
    let mut input = json!({"x": [0.5, 1.5, 2.5]});
    for (k, v) in limits.as_object().unwrap() {
        input[k] = v.clone();
    }
    let message = json!({"id": 7, "kind": "evaluate", "module": "lse", "function": "primal", "input": input});
    send(adapter, &message, clock)
}

#[test]
fn min_runs_alone_gives_exactly_that_many_runs() {
    let mut adapter = adapter();
    let mut clock = fake_clock(250);
    let response = evaluate_lse(&mut adapter, json!({"min_runs": 3, "min_seconds": 0}), &mut clock);
    assert_success(&response, &["id", "success", "output", "timings"]);
    assert_eq!(timings(&response, "evaluate"), vec![250, 250, 250]);
    assert!((response["output"].as_f64().unwrap() - 2.9076059644443806).abs() < 1e-12, "{response}");
}

/// With 0.3 s per clock reading each run takes 0.3 s: 3 runs are 0.9 s < 1 s.
#[test]
fn min_seconds_keeps_running_until_the_time_has_passed() {
    let mut adapter = adapter();
    let mut clock = fake_clock(300_000_000);
    let response = evaluate_lse(&mut adapter, json!({"min_runs": 1, "min_seconds": 1}), &mut clock);
    let runs = timings(&response, "evaluate");
    assert_eq!(runs, vec![300_000_000; 4]);
    // Both minimums hold: more runs than time requires.
    let response = evaluate_lse(&mut adapter, json!({"min_runs": 6, "min_seconds": 0.5}), &mut clock);
    assert_eq!(timings(&response, "evaluate").len(), 6);
}

/// Without limits (or with `min_runs: 0`) the function still runs once: its
/// output is the answer.
#[test]
fn at_least_one_run() {
    let mut adapter = adapter();
    let mut clock = fake_clock(1);
    for limits in [json!({}), json!({"min_runs": 0, "min_seconds": 0})] {
        let response = evaluate_lse(&mut adapter, limits, &mut clock);
        assert_eq!(timings(&response, "evaluate").len(), 1, "{response}");
    }
}

#[test]
fn bad_limits_fail() {
    let mut adapter = adapter();
    let mut clock = fake_clock(1);
    for limits in [json!({"min_runs": -1}), json!({"min_runs": "3"}), json!({"min_seconds": -0.5})] {
        let error = assert_failure(&evaluate_lse(&mut adapter, limits.clone(), &mut clock));
        assert!(error.contains("min_"), "{limits}: {error}");
    }
}

#[test]
fn unknown_module_fails() {
    let mut adapter = adapter();
    let mut clock = fake_clock(1);
    let response = send(&mut adapter, &json!({"id": 1, "kind": "define", "module": "nosuch"}), &mut clock);
    assert_success_keys_of_failure(&response);
    assert!(assert_failure(&response).contains("nosuch"));
    let message = json!({"id": 2, "kind": "evaluate", "module": "nosuch", "function": "f", "input": 1.0});
    assert_failure(&send(&mut adapter, &message, &mut clock));
    // A module name is a file name in the directory, never a path.
    for module in ["../examples/gradbench/hello", "/etc/passwd", "", ".hidden"] {
        let response = send(&mut adapter, &json!({"id": 3, "kind": "define", "module": module}), &mut clock);
        assert!(assert_failure(&response).contains("not a module name"), "{response}");
    }
    assert!(!adapter.take_log().is_empty(), "failures are logged");
}

fn assert_success_keys_of_failure(response: &J) {
    let mut keys: Vec<&str> = response.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["error", "id", "success"], "{response}");
}

#[test]
fn compile_errors_fail_with_the_diagnostic() {
    static MODULES: &[(&str, &str)] = &[("broken", "entry f (x: f64) : f64 = x +\n")];
    let mut adapter = adapter_with(MODULES);
    let mut clock = fake_clock(1);
    let response = send(&mut adapter, &json!({"id": 1, "kind": "define", "module": "broken"}), &mut clock);
    assert_success_keys_of_failure(&response);
    let error = assert_failure(&response);
    assert!(error.contains("error[E0002]") && error.contains("broken.slope:1:"), "{error}");
}

#[test]
fn unknown_function_and_bad_input_fail() {
    let mut adapter = adapter();
    let mut clock = fake_clock(1);
    send(&mut adapter, &json!({"id": 1, "kind": "define", "module": "hello"}), &mut clock);
    let message = json!({"id": 2, "kind": "evaluate", "module": "hello", "function": "cube", "input": 2.0});
    let error = assert_failure(&send(&mut adapter, &message, &mut clock));
    assert!(error.contains("E0301") && error.contains("`square`"), "{error}");
    for input in [json!("two"), json!({"y": 2.0}), json!([1.0])] {
        let message = json!({"id": 3, "kind": "evaluate", "module": "hello", "function": "square", "input": input});
        let error = assert_failure(&send(&mut adapter, &message, &mut clock));
        assert!(error.contains("E0302"), "{error}");
    }
    // Fields no parameter names are ignored (Note [Fields no one reads]); a
    // misspelt parameter of a one-parameter entry makes the whole object
    // its argument, which has the wrong type.
    let message = json!({"id": 4, "kind": "evaluate", "module": "lse", "function": "primal",
                         "input": {"x": [1.0], "y": 2, "min_runs": 1}});
    assert_eq!(send(&mut adapter, &message, &mut clock)["success"], true);
    let message = json!({"id": 4, "kind": "evaluate", "module": "lse", "function": "primal",
                         "input": {"xs": [1.0], "min_runs": 1}});
    assert!(assert_failure(&send(&mut adapter, &message, &mut clock)).contains("E0302"));
    let message = json!({"id": 5, "kind": "evaluate", "module": "hello", "function": "square"});
    assert!(assert_failure(&send(&mut adapter, &message, &mut clock)).contains("input"));
}

/// Run-time errors and results that are not JSON (NaN) are failures.
#[test]
fn run_time_errors_and_nan_fail() {
    static MODULES: &[(&str, &str)] =
        &[("m", "entry ln (x: f64) : f64 = log x\nentry at (xs: []f64) (i: i64) : f64 = xs[i]\n")];
    let mut adapter = adapter_with(MODULES);
    let mut clock = fake_clock(1);
    let message = json!({"id": 1, "kind": "evaluate", "module": "m", "function": "ln", "input": -1.0});
    let line = adapter.handle(&message.to_string(), &mut clock);
    assert!(!line.contains("NaN") && !line.contains("inf"), "{line}");
    let error = assert_failure(&serde_json::from_str(&line).unwrap());
    assert!(error.contains("E0304"), "{error}");
    let message = json!({"id": 2, "kind": "evaluate", "module": "m", "function": "at",
                         "input": {"xs": [1.0], "i": 5, "min_runs": 2}});
    assert_failure(&send(&mut adapter, &message, &mut clock));
    let message = json!({"id": 3, "kind": "evaluate", "module": "m", "function": "ln", "input": 1.0});
    assert_eq!(send(&mut adapter, &message, &mut clock)["output"], json!(0.0));
}

#[test]
fn malformed_lines_get_an_error_answer() {
    let mut adapter = adapter();
    let mut clock = fake_clock(1);
    for line in ["", "not json", "{\"id\": 1", "[1, 2]", "17", "{\"kind\": \"start\"}", "\u{0}"] {
        let response = adapter.handle(line, &mut clock);
        let response: J = serde_json::from_str(&response).unwrap_or_else(|e| panic!("{line:?} → {response}: {e}"));
        assert_eq!(response["id"], J::Null, "{line:?}");
        assert_failure(&response);
    }
    assert_eq!(adapter.take_log().len(), 7);
    // An id but no kind, or a kind of the wrong type: the id is still echoed.
    for message in [json!({"id": 5}), json!({"id": 6, "kind": 3})] {
        assert_failure(&send(&mut adapter, &message, &mut clock));
    }
    // The session goes on.
    let response = adapter.handle(r#"{"id":8,"kind":"start","eval":"hello"}"#, &mut clock);
    assert_eq!(response, r#"{"id":8,"tool":"slope"}"#);
}

#[test]
fn other_kinds_get_the_bare_id() {
    let mut adapter = adapter();
    let mut clock = fake_clock(1);
    let analysis = r#"{"id":12,"kind":"analysis","of":11,"valid":false,"error":"mismatch"}"#;
    assert_eq!(adapter.handle(analysis, &mut clock), r#"{"id":12}"#);
    assert_eq!(adapter.handle(r#"{"id":13,"kind":"something-new"}"#, &mut clock), r#"{"id":13}"#);
}

#[test]
fn ids_are_echoed_exactly() {
    let mut adapter = adapter();
    let mut clock = fake_clock(1);
    for id in ["0", "18446744073709551615", "-3", "\"abc\"", "2.5", "null", "[1,\"x\"]"] {
        let line = format!(r#"{{"id":{id},"kind":"start","eval":"hello"}}"#);
        assert_eq!(adapter.handle(&line, &mut clock), format!(r#"{{"id":{id},"tool":"slope"}}"#));
        let line = format!(r#"{{"id":{id},"kind":"analysis"}}"#);
        assert_eq!(adapter.handle(&line, &mut clock), format!(r#"{{"id":{id}}}"#));
    }
    let line = r#"{"id":"e1","kind":"evaluate","module":"hello","function":"double","input":3.0}"#;
    let response = adapter.handle(line, &mut clock);
    assert!(response.starts_with(r#"{"id":"e1","success":true,"output":6.0,"timings":["#), "{response}");
}

/// GradBench always defines before evaluating; a hand-written message file
/// need not, and the module is then compiled on first use.
#[test]
fn evaluate_defines_the_module_when_needed() {
    let mut adapter = adapter();
    let mut clock = fake_clock(1);
    let message = json!({"id": 1, "kind": "evaluate", "module": "hello", "function": "square", "input": 4.0});
    let response = send(&mut adapter, &message, &mut clock);
    assert_success(&response, &["id", "success", "output", "timings"]);
    assert_eq!(response["output"], json!(16.0));
}

/// Repeated runs see the same inputs: nothing an entry does carries over.
#[test]
fn repeated_runs_agree() {
    let mut adapter = adapter();
    let mut clock = fake_clock(1);
    let once = evaluate_lse(&mut adapter, json!({"min_runs": 1}), &mut clock);
    let many = evaluate_lse(&mut adapter, json!({"min_runs": 5}), &mut clock);
    assert_eq!(once["output"], many["output"]);
}

/// The upstream tool directory (`gradbench/tool/`) lists exactly the evals
/// this repository implements and has fixtures for, and its Dockerfile ends
/// as GradBench requires and serves them with `slope gradbench`.
/// (`gradbench/tool/check.sh` checks it against a GradBench checkout.)
#[test]
fn tool_directory_lists_every_eval() {
    let tool = workspace_dir().join("gradbench/tool");
    let listed: Vec<String> =
        std::fs::read_to_string(tool.join("evals.txt")).unwrap().lines().map(str::to_string).collect();
    let mut sorted = listed.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(listed, sorted, "evals.txt is sorted and unique");
    let mut with_fixtures: Vec<String> = std::fs::read_dir(workspace_dir().join("tests/fixtures"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|name| name != "ht-complicated")
        .collect();
    with_fixtures.sort();
    assert_eq!(listed, with_fixtures, "evals.txt lists every eval with fixtures");
    assert_eq!(listed.len(), 12, "all twelve GradBench evals");
    for eval in &listed {
        assert!(workspace_dir().join(format!("examples/gradbench/{eval}.slope")).is_file(), "{eval}.slope exists");
    }
    let dockerfile = std::fs::read_to_string(tool.join("Dockerfile")).unwrap();
    assert_eq!(
        dockerfile.lines().last(),
        Some("LABEL org.opencontainers.image.source=https://github.com/gradbench/gradbench")
    );
    assert!(dockerfile.contains(r#"ENTRYPOINT ["slope", "gradbench", "--dir", "/slope/examples/gradbench"]"#));
    assert!(tool.join("README.md").is_file());
}
