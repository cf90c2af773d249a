//! End-to-end tests of the `slope` command line: exit codes (0 success, 1 an
//! error in the program or its inputs, 2 command-line misuse), diagnostics on
//! stderr, JSON results on stdout, and no panics anywhere.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh directory under the system temp dir, removed when the value drops.
fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("slope-cli-{tag}-")).tempdir().expect("create temp dir")
}

/// A file in a directory of its own; both are removed when the value drops.
struct TempFile {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TempFile {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

/// Writes `text` to `name` inside a fresh temp directory.
fn write_temp(tag: &str, name: &str, text: &str) -> TempFile {
    let dir = temp_dir(tag);
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write temp file");
    TempFile { path, _dir: dir }
}

fn slope(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_slope")).args(args).output().expect("run slope");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "slope {args:?} panicked:\n{stderr}");
    out
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Asserts success and returns stdout parsed as JSON.
fn json_ok(out: &Output) -> serde_json::Value {
    assert_eq!(out.status.code(), Some(0), "expected success, stderr:\n{}", stderr(out));
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(out)))
}

/// Asserts exit status 1 with `error[CODE]` on stderr.
fn fails_with(out: &Output, code: &str) {
    assert_eq!(out.status.code(), Some(1), "expected exit 1, stdout: {} stderr:\n{}", stdout(out), stderr(out));
    assert!(stderr(out).contains(&format!("error[{code}]")), "expected {code}, stderr:\n{}", stderr(out));
}

const GOOD: &str = "\
def sq (x: f64) : f64 = x * x

entry scale [n] (xs: [n]f64) (k: f64) : [n]f64 = map (\\x -> k * x) xs

entry square (x: f64) : f64 = sq x
";

const ONE_ENTRY: &str = "entry total [n] (xs: [n]f64) : f64 = sum xs\n";

#[test]
fn check_good_file() {
    let file = write_temp("check", "good.slope", GOOD);
    let out = slope(&["check", p(&file)]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert_eq!(stdout(&out), "");
}

#[test]
fn check_bad_file() {
    let file = write_temp("check", "bad_types.slope", "entry f (n: i64) (x: f64) : f64 = x + n\n");
    let out = slope(&["check", p(&file)]);
    fails_with(&out, "E0102");
    assert!(stderr(&out).contains("bad_types.slope"), "the diagnostic names the file:\n{}", stderr(&out));
    assert_eq!(stdout(&out), "");
}

#[test]
fn run_positional_json_args() {
    let file = write_temp("run", "prog.slope", GOOD);
    let out = slope(&["run", p(&file), "--entry", "scale", "[1.0, -2.0, 3.5]", "2"]);
    assert_eq!(json_ok(&out), serde_json::json!([2.0, -4.0, 7.0]));
}

#[test]
fn run_positional_json_file_arg() {
    let file = write_temp("run", "prog.slope", ONE_ENTRY);
    let arg = write_temp("run", "xs.json", "[1.5, 2.5]");
    let out = slope(&["run", p(&file), p(&arg)]);
    assert_eq!(json_ok(&out), serde_json::json!(4.0));
}

#[test]
fn run_with_input_object() {
    let file = write_temp("run", "prog.slope", GOOD);
    let input = write_temp("run", "input.json", r#"{"xs": [1.0, 2.0], "k": -1.0}"#);
    let out = slope(&["run", p(&file), "--entry", "scale", "--input", p(&input)]);
    assert_eq!(json_ok(&out), serde_json::json!([-1.0, -2.0]));
}

#[test]
fn run_with_bare_input_for_one_parameter() {
    let file = write_temp("run", "prog.slope", ONE_ENTRY);
    let input = write_temp("run", "input.json", "[1.0, 2.0, 3.0]");
    let out = slope(&["run", p(&file), "--input", p(&input)]);
    assert_eq!(json_ok(&out), serde_json::json!(6.0));
}

#[test]
fn run_with_npy_argument() {
    use slope_runtime::{Array, ArrayData};
    let file = write_temp("npy", "prog.slope", "entry rowsums [n][m] (a: [n][m]f64) : [n]f64 = map (\\r -> sum r) a\n");
    let array = Array::new(vec![2, 3], ArrayData::F64(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    let scratch = temp_dir("npy");
    let npy = scratch.path().join("a.npy");
    std::fs::write(&npy, slope_runtime::npy::write_npy(&array)).expect("write npy");
    let out = slope(&["run", p(&file), p(&npy)]);
    assert_eq!(json_ok(&out), serde_json::json!([6.0, 15.0]));
}

#[test]
fn run_npy_of_wrong_type_is_invalid_input() {
    use slope_runtime::{Array, ArrayData};
    let file = write_temp("npy", "prog.slope", ONE_ENTRY);
    let array = Array::new(vec![2], ArrayData::Bool(vec![true, false]));
    let scratch = temp_dir("npy");
    let npy = scratch.path().join("b.npy");
    std::fs::write(&npy, slope_runtime::npy::write_npy(&array)).expect("write npy");
    fails_with(&slope(&["run", p(&file), p(&npy)]), "E0302");
}

#[test]
fn run_selects_entry() {
    let file = write_temp("entry", "prog.slope", GOOD);
    assert_eq!(json_ok(&slope(&["run", p(&file), "--entry", "square", "3"])), serde_json::json!(9.0));
    assert_eq!(json_ok(&slope(&["run", p(&file), "--entry", "scale", "[1.0]", "3"])), serde_json::json!([3.0]));
}

#[test]
fn run_unknown_entry() {
    let file = write_temp("entry", "prog.slope", GOOD);
    let out = slope(&["run", p(&file), "--entry", "nope", "3"]);
    fails_with(&out, "E0301");
}

#[test]
fn run_several_entries_without_entry_flag() {
    let file = write_temp("entry", "prog.slope", GOOD);
    fails_with(&slope(&["run", p(&file), "3"]), "E0301");
}

#[test]
fn run_invalid_json_argument() {
    let file = write_temp("input", "prog.slope", ONE_ENTRY);
    fails_with(&slope(&["run", p(&file), "[1.0, "]), "E0302");
}

#[test]
fn run_invalid_json_input_file() {
    let file = write_temp("input", "prog.slope", ONE_ENTRY);
    let input = write_temp("input", "input.json", "{\"xs\": [1.0,");
    fails_with(&slope(&["run", p(&file), "--input", p(&input)]), "E0302");
}

#[test]
fn run_argument_of_wrong_type() {
    let file = write_temp("input", "prog.slope", ONE_ENTRY);
    fails_with(&slope(&["run", p(&file), "\"not numbers\""]), "E0302");
    fails_with(&slope(&["run", p(&file), "[[1.0], [2.0, 3.0]]"]), "E0302");
}

/// Fields an entry does not declare are ignored at the top level as inside
/// records (Note [Fields no one reads] in api.rs); a misspelt parameter is
/// still an error, as missing.
#[test]
fn input_fields_no_one_reads_are_ignored_at_every_level() {
    let file = write_temp("fields", "prog.slope", "entry f (p: {w: f64, b: f64}) (x: f64) : f64 = p.w * x + p.b\n");
    let run = |text: &str| {
        let input = write_temp("fields", "input.json", text);
        slope(&["run", p(&file), "--input", p(&input)])
    };
    let out = run("{\"p\": {\"w\": 2.0, \"b\": 1.0, \"name\": \"unused\"}, \"x\": 3.0, \"min_runs\": 5}");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7.0");
    let out = run("{\"p\": {\"w\": 2.0, \"b\": 1.0}, \"xx\": 3.0}");
    fails_with(&out, "E0302");
    assert!(String::from_utf8_lossy(&out.stderr).contains("lacks `x`"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn run_wrong_number_of_arguments() {
    let file = write_temp("input", "prog.slope", GOOD);
    fails_with(&slope(&["run", p(&file), "--entry", "scale", "[1.0]"]), "E0302");
}

#[test]
fn missing_source_file() {
    let scratch = temp_dir("missing");
    let missing = scratch.path().join("does_not_exist.slope");
    fails_with(&slope(&["check", p(&missing)]), "E0303");
    fails_with(&slope(&["run", p(&missing)]), "E0303");
    fails_with(&slope(&["emit", p(&missing)]), "E0303");
}

#[test]
fn missing_input_files() {
    let file = write_temp("missing", "prog.slope", ONE_ENTRY);
    let dir = temp_dir("missing");
    fails_with(&slope(&["run", p(&file), "--input", p(&dir.path().join("nope.json"))]), "E0303");
    fails_with(&slope(&["run", p(&file), p(&dir.path().join("nope.npy"))]), "E0303");
    fails_with(&slope(&["run", p(&file), p(&dir.path().join("nope.json"))]), "E0303");
}

#[test]
fn emit_unknown_stage() {
    let file = write_temp("emit", "prog.slope", GOOD);
    fails_with(&slope(&["emit", "--stage", "nonsense", p(&file)]), "E0305");
}

#[test]
fn input_and_positional_args_together() {
    let file = write_temp("emit", "prog.slope", ONE_ENTRY);
    let input = write_temp("emit", "input.json", "[1.0]");
    fails_with(&slope(&["run", p(&file), "--input", p(&input), "[2.0]"]), "E0305");
}

#[test]
fn emit_stages_print_the_entry() {
    let file = write_temp("emit", "prog.slope", GOOD);
    for stage in ["ast", "typed", "ir", "loops", "clif"] {
        let out = slope(&["emit", "--stage", stage, p(&file)]);
        assert_eq!(out.status.code(), Some(0), "stage {stage}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains("scale") && text.contains("square"), "stage {stage} output:\n{text}");
    }
    // The default stage is ir.
    let out = slope(&["emit", p(&file)]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("entry square"), "{}", stdout(&out));
}

#[test]
fn emit_clif_disassembled_lists_machine_code_per_function() {
    let file = write_temp("emit", "prog.slope", GOOD);
    let out = slope(&["emit", "--stage", "clif", "--disassemble", "--entry", "square", p(&file)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("; square: ") && text.contains(" bytes\n"), "{text}");
    assert!(text.contains("ret"), "machine code ends in a return: {text}");
    assert!(!text.contains("; scale: "), "only the entry asked for: {text}");
    // Only the CLIF stage has machine code.
    fails_with(&slope(&["emit", "--stage", "loops", "--disassemble", p(&file)]), "E0305");
}

#[test]
fn reassociate_runs_sums_as_strands_and_is_refused_by_the_repl() {
    let file = write_temp(
        "reassociate",
        "sum.slope",
        "-- entry: f\n-- input: {\"xs\": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]}\n-- output: 45.0\n\
         entry f [n] (xs: [n]f64) : f64 = sum (map (\\x -> x * 1.0) xs)\n",
    );
    let strands = |flags: &[&str]| {
        let mut args = flags.to_vec();
        args.extend(["emit", "--stage", "strands", p(&file)]);
        let out = slope(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stdout(&out).contains("quarter_")
    };
    assert!(!strands(&[]), "a float sum keeps its order by default");
    assert!(strands(&["--reassociate"]), "and runs as strands with --reassociate");
    let out = slope(&["--reassociate", "test", p(&file)]);
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr:\n{}", stdout(&out), stderr(&out));
    let out = Command::new(env!("CARGO_BIN_EXE_slope"))
        .args(["--reassociate", "repl"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run slope");
    fails_with(&out, "E0305");
    assert!(stderr(&out).contains("--reassociate"), "{}", stderr(&out));
}

#[test]
fn emit_ir_of_one_entry() {
    let file = write_temp("emit", "prog.slope", GOOD);
    let out = slope(&["emit", "--stage", "ir", "--entry", "square", p(&file)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("square"));
    assert!(!stdout(&out).contains("entry scale"), "{}", stdout(&out));
}

#[test]
fn import_relative_file() {
    let dir = temp_dir("import");
    std::fs::write(dir.path().join("helpers.slope"), "def twice (x: f64) : f64 = 2.0 * x\n").unwrap();
    std::fs::write(dir.path().join("main.slope"), "import \"helpers\"\n\nentry f (x: f64) : f64 = twice x + 1.0\n")
        .unwrap();
    let main = dir.path().join("main.slope");
    assert_eq!(slope(&["check", p(&main)]).status.code(), Some(0));
    assert_eq!(json_ok(&slope(&["run", p(&main), "4"])), serde_json::json!(9.0));
}

#[test]
fn import_cycle() {
    let dir = temp_dir("cycle");
    std::fs::write(
        dir.path().join("a.slope"),
        "import \"b\"\n\ndef fa (x: f64) : f64 = x\n\nentry f (x: f64) : f64 = fa x\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("b.slope"), "import \"a\"\n\ndef fb (x: f64) : f64 = x\n").unwrap();
    let out = slope(&["check", p(&dir.path().join("a.slope"))]);
    fails_with(&out, "E0008");
}

#[test]
fn import_self() {
    let file = write_temp("cycle", "selfish.slope", "import \"selfish\"\n\nentry f (x: f64) : f64 = x\n");
    fails_with(&slope(&["check", p(&file)]), "E0008");
}

#[test]
fn run_time_error_exit_code() {
    let file = write_temp("runtime", "prog.slope", "entry at [n] (xs: [n]f64) (i: i64) : f64 = xs[i]\n");
    let out = slope(&["run", p(&file), "[1.0, 2.0]", "5"]);
    fails_with(&out, "E0201");
    assert!(stderr(&out).contains("prog.slope"), "{}", stderr(&out));
}

#[test]
fn nan_result_is_not_json() {
    let file = write_temp("runtime", "prog.slope", "entry f (x: f64) : f64 = log x\n");
    fails_with(&slope(&["run", p(&file), "--", "-1.0"]), "E0304");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(slope(&[]).status.code(), Some(2));
    assert_eq!(slope(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(slope(&["run"]).status.code(), Some(2));
    assert_eq!(slope(&["check", "a.slope", "--no-such-flag"]).status.code(), Some(2));
}

#[test]
fn gradcheck_passes_on_a_smooth_function() {
    let file = write_temp("gradcheck", "prog.slope", "entry f (x: [3]f64) : f64 = sum (map (\\v -> sin v * v) x)\n");
    let input = write_temp("gradcheck", "input.json", "{\"x\": [0.5, 1.0, 2.0]}");
    let out = slope(&["gradcheck", p(&file), "--input", p(&input)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("gradcheck f: ok"));
}

/// A jump at the point: forward and reverse agree (derivative 1 on either side)
/// but finite differences see the jump, so the check must fail with E0206.
#[test]
fn gradcheck_fails_at_a_discontinuity() {
    let file = write_temp("gradcheck", "jump.slope", "entry f (x: f64) : f64 = if x > 0.0 then x + 1.0 else x\n");
    let input = write_temp("gradcheck", "input.json", "{\"x\": 0.0}");
    let out = slope(&["gradcheck", p(&file), "--input", p(&input)]);
    fails_with(&out, "E0206");
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED"));
}

/// Single precision: an f32 entry checks out (finite differences with an f32
/// step), and a wrong custom rule still fails (the f32 tolerance is not
/// loose enough to let a derivative off by half pass).
#[test]
fn gradcheck_on_f32_entries() {
    let good = write_temp("gradcheck32", "good.slope", "entry f (x: [3]f32) : f32 = sum (map (\\v -> sin v * v) x)\n");
    let input = write_temp("gradcheck32", "input.json", "{\"x\": [0.5, 1.0, 2.0]}");
    let out = slope(&["gradcheck", p(&good), "--input", p(&input)]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let bad = write_temp(
        "gradcheck32",
        "bad.slope",
        "def sq (x: f32) : f32 = x * x\nwith jvp x x_tan = 3.0 * x * x_tan\nentry f (x: [3]f32) : f32 = sum (map sq x)\n",
    );
    let out = slope(&["gradcheck", p(&bad), "--input", p(&input)]);
    fails_with(&out, "E0206");
}

/// An entry's own `with jvp` rule is what gradcheck checks: a wrong one
/// fails (it used to check the body the rule replaces, and pass), with the
/// entry in the frame and custom rules named in the help.
#[test]
fn gradcheck_checks_an_entrys_own_rule() {
    let input = write_temp("ownrule", "input.json", "{\"x\": 1.5}");
    let good = write_temp("ownrule", "good.slope", "entry g (x: f64) : f64 = x * x\nwith jvp x t = 2.0 * x * t\n");
    let out = slope(&["gradcheck", p(&good), "--input", p(&input)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bad = write_temp("ownrule", "bad.slope", "entry g (x: f64) : f64 = x * x\nwith jvp x t = 3.0 * x * t\n");
    let out = slope(&["gradcheck", p(&bad), "--input", p(&input)]);
    fails_with(&out, "E0206");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.slope:1:1") && err.contains("with jvp"), "{err}");
}

/// `slope bench` with a name it does not know, or away from the examples,
/// is an error with a code and a non-zero exit, not an empty table.
#[test]
fn bench_rejects_unknown_evals_and_missing_examples() {
    let out = slope(&["bench", "no-such-eval"]);
    fails_with(&out, "E0305");
    assert!(String::from_utf8_lossy(&out.stderr).contains("gmm"), "{}", String::from_utf8_lossy(&out.stderr));
    let empty = write_temp("bench", "README", "");
    let dir = empty.parent().expect("a directory");
    let out = slope(&["bench", "--dir", p(dir), "hello"]);
    fails_with(&out, "E0303");
}

#[test]
fn while_loop_limit() {
    let file = write_temp("while", "spin.slope", "entry f (x: f64) : f64 = loop y = x while y > 0.0 do y + 1.0\n");
    for engine in ENGINES {
        let run = |x: &str| slope(&[&["run", "--while-limit", "1000"][..], engine, &[p(&file), x]].concat());
        let out = run("1.0");
        fails_with(&out, "E0205");
        assert!(stderr(&out).contains("while loop exceeded 1000 iterations"), "{}", stderr(&out));
        let out = run("-1.0");
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "-1.0");
    }
}

/// The ways of choosing a back end: the default (multicore), each `--engine`, `--interp`.
const ENGINES: [&[&str]; 5] =
    [&[], &["--engine", "multicore"], &["--engine", "sequential"], &["--engine", "interp"], &["--interp"]];

/// `run` on every back end: same output, same errors.
#[test]
fn run_on_every_engine() {
    let file = write_temp("engines", "prog.slope", "entry f [n] (xs: [n]f64) (i: i64) : f64 = xs[i] * 2.0\n");
    for engine in ENGINES {
        let out = slope(&[&["run"][..], engine, &[p(&file), "[1.5, 2.5]", "1"]].concat());
        assert_eq!(json_ok(&out), serde_json::json!(5.0));
        let out = slope(&[&["run"][..], engine, &[p(&file), "[1.5, 2.5]", "2"]].concat());
        fails_with(&out, "E0201");
        assert!(stderr(&out).contains("index 2 out of bounds for dimension 0 of size 2"), "{}", stderr(&out));
    }
    // An unknown back end, or two choices at once, is a usage error.
    for bad in [&["--engine", "gpu"][..], &["--engine", "sequential", "--interp"][..]] {
        let out = slope(&[&["run"][..], bad, &[p(&file), "[1.5]", "0"]].concat());
        assert!(!out.status.success() && out.stdout.is_empty(), "{bad:?} ran");
        assert!(stderr(&out).contains("--engine"), "{bad:?}: {}", stderr(&out));
    }
}

/// `--timings` names the passes of the back end that runs: the multicore
/// one outlines parallel loops, the sequential one does not, the interpreter
/// compiles nothing after the array optimiser. (The times themselves are
/// printed, never asserted.)
#[test]
fn timings_name_the_passes_of_the_chosen_back_end() {
    let file = write_temp(
        "timings",
        "prog.slope",
        "entry f [n] (xs: [n]f64) : f64 = reduce (+) 0.0 (map (\\x -> x * x) xs)\n",
    );
    let passes = |engine: &str| {
        let out = slope(&["--timings", "run", "--engine", engine, p(&file), "[1.0, 2.0]"]);
        assert_eq!(json_ok(&out), serde_json::json!(5.0));
        let err = stderr(&out);
        let names: Vec<String> = err.lines().filter_map(|l| l.split_whitespace().next().map(String::from)).collect();
        assert_eq!(names.first().map(String::as_str), Some("ast"), "{err}");
        assert_eq!(names.last().map(String::as_str), Some("total"), "{err}");
        assert!(names.iter().any(|n| n == "opt"), "{err}");
        names
    };
    let has = |names: &[String], pass: &str| names.iter().any(|n| n == pass);
    let multicore = passes("multicore");
    assert!(has(&multicore, "parallel") && has(&multicore, "clif"), "{multicore:?}");
    let sequential = passes("sequential");
    assert!(!has(&sequential, "parallel") && has(&sequential, "clif"), "{sequential:?}");
    let interp = passes("interp");
    assert!(!has(&interp, "lowered") && !has(&interp, "clif"), "{interp:?}");
    // `bench` prints them per eval, headed by the eval and the back end.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_slope"))
        .current_dir(root)
        .args(["--timings", "bench", "--runs", "1", "--engine", "sequential", "hello"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hello (sequential):") && err.contains("clif") && err.contains("total"), "{err}");
}

/// `slope bench` prints its table (timings are printed, never asserted).
#[test]
fn bench_prints_a_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_slope"))
        .current_dir(root)
        .args(["bench", "--runs", "1", "hello"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("| eval | workload | compile (ms)"), "{table}");
    assert_eq!(table.matches("| hello |").count(), 4, "one row per hello fixture:\n{table}");
}

/// The interpreter's peak memory is the heap growth during one call of the
/// derivative (counted only then: Note [Counting only while watched]): at
/// least the 200,000-element array the program concatenates.
#[test]
fn bench_reports_the_interpreters_peak_memory() {
    let file = write_temp(
        "bench-peak",
        "big.slope",
        "entry big [n] (x: [n]f64) : f64 = sum (map (\\v -> v * 2.0) (concat x x))\n",
    );
    let xs = vec![1.0; 100_000];
    let input = write_temp("bench-peak", "in.json", &serde_json::json!({ "x": xs }).to_string());
    let out = slope(&[
        "bench",
        "--runs",
        "1",
        "--interp",
        p(&file),
        "--input",
        p(&input),
        "--entry",
        "big",
        "--derivative",
        "grad",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let row = table.lines().find(|l| l.contains("| big |")).unwrap_or_else(|| panic!("{table}"));
    let peak: f64 =
        row.trim_end_matches('|').rsplit('|').next().unwrap().trim().parse().unwrap_or_else(|_| panic!("{row}"));
    assert!((1.6..100.0).contains(&peak), "peak {peak} MB: {row}");
}

/// `slope bench FILE --entry E --input IN` times any program, with a
/// derivative that is another entry or an operator applied to the entry; a
/// derivative it cannot build is an error with a code.
#[test]
fn bench_times_any_program_and_its_derivatives() {
    let file = write_temp(
        "bench-file",
        "model.slope",
        "entry loss [n] (w: [n]f64) (k: i64) : f64 = f64 k * reduce (+) 0.0 (map (\\v -> v * v) w)\n\
         entry halves [n] (w: [n]f64) (k: i64) : [n]f64 = map (\\v -> v / f64 k) w\n\
         entry other [n] (w: [n]f64) (k: i64) : f64 = f64 k * 2.0\n",
    );
    let input = write_temp("bench-file", "in.json", r#"{"w": [1.0, 2.0, 3.0], "k": 2}"#);
    let bench =
        |extra: &[&str]| slope(&[&["bench", "--runs", "1", p(&file), "--input", p(&input)][..], extra].concat());
    for (entry, derivative) in [
        ("loss", "grad"),
        ("loss", "vjp"),
        ("loss", "jvp"),
        ("halves", "jacfwd"),
        ("halves", "jacrev"),
        ("loss", "hessian"),
        ("loss", "other"),
    ] {
        let out = bench(&["--entry", entry, "--derivative", derivative]);
        assert!(out.status.success(), "{entry} {derivative}: {}", stderr(&out));
        let table = stdout(&out);
        assert!(table.contains(&format!("| {entry} |")) && table.contains(&format!("| {derivative} |")), "{table}");
    }
    let out = bench(&["--entry", "loss"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fails_with(&bench(&["--entry", "loss", "--derivative", "nope"]), "E0305");
    fails_with(&bench(&["--entry", "nope"]), "E0301");
    // grad of a function whose result is not a scalar: the type error of the wrapper.
    fails_with(&bench(&["--entry", "halves", "--derivative", "grad"]), "E0102");
    fails_with(&slope(&["bench", p(&file)]), "E0305");
    fails_with(&slope(&["bench", "--entry", "loss", "hello"]), "E0305");
}

#[test]
fn test_command_checks_headers() {
    let good = write_temp(
        "test-cmd",
        "good.slope",
        "-- input: {\"x\": 3.0}\n-- output: 9.0\n-- gradcheck: {\"x\": 3.0}\nentry sq (x: f64) : f64 = x * x\n",
    );
    let out = slope(&["test", p(&good)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed, 0 failed"));
    let bad = write_temp(
        "test-cmd",
        "bad.slope",
        "-- input: {\"x\": 3.0}\n-- output: 10.0\nentry sq (x: f64) : f64 = x * x\n",
    );
    let out = slope(&["test", p(&bad)]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAIL") && stdout.contains("0 passed, 1 failed"), "{stdout}");
}

/// Output that cannot be written is a failure (E0307), not a success nobody saw.
#[test]
fn a_result_written_to_a_full_disk_fails_with_e0307() {
    let full = Path::new("/dev/full");
    if !full.exists() {
        return; // Only Linux has a device that is always full.
    }
    let file = write_temp("full", "f.slope", "entry f (x: f64) : f64 = x * 2.0\n");
    let sink = std::fs::OpenOptions::new().write(true).open(full).expect("/dev/full opens");
    let out = Command::new(env!("CARGO_BIN_EXE_slope"))
        .args(["run", p(&file), "1.5"])
        .stdout(sink)
        .output()
        .expect("run slope");
    fails_with(&out, "E0307");
}

/// A reader that leaves early (`slope … | head -1`) ends the command
/// quietly: no message, status 141 (128 + SIGPIPE), for every command that
/// writes to stdout.
#[test]
fn a_closed_stdout_pipe_ends_the_command_quietly() {
    let file = write_temp("epipe", "f.slope", "entry f (x: [3]f64) : f64 = sum (map (\\v -> sin v * v) x)\n");
    let input = write_temp("epipe", "input.json", "{\"x\": [0.5, 1.0, 2.0]}");
    let commands: [&[&str]; 3] = [
        &["gradcheck", p(&file), "--input", p(&input)],
        &["emit", "--stage", "loops", p(&file)],
        &["run", p(&file), "[0.5, 1.0, 2.0]"],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_slope")).args(args).stdout(writer).output().expect("run slope");
        assert_eq!(out.status.code(), Some(141), "{args:?}");
        assert!(out.stderr.is_empty(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Diagnostics written to a pipe nobody reads, or to a full disk, must not
/// panic: the exit status still says the program was rejected.
#[test]
fn diagnostics_to_a_closed_or_full_stderr_do_not_panic() {
    let file = write_temp("closed", "bad.slope", "entry f (x: f64) : f64 = x + $\n");
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let status =
        Command::new(env!("CARGO_BIN_EXE_slope")).args(["check", p(&file)]).stderr(writer).status().expect("run slope");
    assert_eq!(status.code(), Some(1), "a closed stderr: exit 1, not a panic (101)");
    let full = Path::new("/dev/full");
    if full.exists() {
        let sink = std::fs::OpenOptions::new().write(true).open(full).expect("/dev/full opens");
        let status = Command::new(env!("CARGO_BIN_EXE_slope")).args(["check", p(&file)]).stderr(sink).status();
        assert_eq!(status.expect("run slope").code(), Some(1), "a full stderr: exit 1, not a panic (101)");
    }
}

/// An input file over `--max-input-bytes` is E0308, read no further than the
/// limit (`/dev/zero` as input is a diagnostic, not an out-of-memory kill).
#[test]
fn an_input_over_the_limit_is_e0308() {
    let file = write_temp("limit", "f.slope", "entry total (xs: []f64) : f64 = reduce (+) 0.0 xs\n");
    let input = write_temp("limit", "xs.json", "{\"xs\": [1.0, 2.0, 3.0, 4.0]}");
    assert_eq!(json_ok(&slope(&["run", p(&file), "--input", p(&input)])), serde_json::json!(10.0));
    fails_with(&slope(&["--max-input-bytes", "16", "run", p(&file), "--input", p(&input)]), "E0308");
    let zero = Path::new("/dev/zero");
    if zero.exists() {
        fails_with(&slope(&["--max-input-bytes", "1000000", "run", p(&file), "--input", p(zero)]), "E0308");
    }
}

/// A JSON input file is decoded from its text (no JSON tree): its errors
/// name the parameter and the path inside it, like any other input.
#[test]
fn json_files_decode_with_paths() {
    let file = write_temp("stream", "f.slope", "entry total [n] (xs: [n][2]f64) (k: i64) : f64 = xs[0][1]\n");
    let good = write_temp("stream", "good.json", "  {\"k\": 1, \"xs\": [[1.0, 2.5], [3.0, 4.0]]}\n");
    assert_eq!(json_ok(&slope(&["run", p(&file), "--input", p(&good)])), serde_json::json!(2.5));
    let bad = write_temp("stream", "bad.json", "{\"k\": 1, \"xs\": [[1.0, 2.5], [3.0, \"x\"]]}");
    let out = slope(&["run", p(&file), "--input", p(&bad)]);
    fails_with(&out, "E0302");
    assert!(stderr(&out).contains("at xs[1][1]: expected a number, found a string"), "{}", stderr(&out));
    let truncated = write_temp("stream", "truncated.json", "{\"k\": 1, \"xs\": [[1.0, 2.5]");
    fails_with(&slope(&["run", p(&file), "--input", p(&truncated)]), "E0302");
}

/// `--threads N` and `SLOPE_THREADS` choose the thread count and never the
/// result; a `SLOPE_THREADS` that is no thread count is E0305.
#[test]
fn thread_counts_give_the_same_result_and_bad_ones_are_errors() {
    let file = write_temp("threads", "prog.slope", ONE_ENTRY);
    let xs: Vec<f64> = (0..200_000).map(|i| ((i * 37) % 101) as f64 / 7.0).collect();
    let input = write_temp("threads", "input.json", &serde_json::json!({ "xs": xs }).to_string());
    let run = |threads: &str| json_ok(&slope(&["--threads", threads, "run", p(&file), "--input", p(&input)]));
    let one = run("1");
    assert_eq!(one.to_string(), run("2").to_string());
    assert_eq!(one.to_string(), run("5").to_string());
    for bad in ["0", "many", "-3"] {
        let out = Command::new(env!("CARGO_BIN_EXE_slope"))
            .env("SLOPE_THREADS", bad)
            .args(["run", p(&file), "--input", p(&input)])
            .output()
            .expect("run slope");
        fails_with(&out, "E0305");
        assert!(stderr(&out).contains("SLOPE_THREADS"), "{}", stderr(&out));
    }
    let out = slope(&["--threads", "0", "run", p(&file), "--input", p(&input)]);
    assert_ne!(out.status.code(), Some(0), "--threads 0 is refused");
}

#[test]
fn checkpoint_and_save_are_honoured_by_test_and_bench_and_refused_by_repl_and_gradbench() {
    let file = write_temp(
        "checkpoint",
        "loop.slope",
        "-- entry: g\n-- input: {\"x\": 0.5}\n-- output: 0.8775825618903728\n\
         entry g (x: f64) : f64 = grad (\\a -> loop y = a for i < 1 do sin y) x\n",
    );
    let out = slope(&["test", "--checkpoint", p(&file)]);
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr:\n{}", stdout(&out), stderr(&out));
    let input = write_temp("checkpoint", "in.json", "{\"x\": 0.5}");
    let out = slope(&["bench", "--checkpoint", p(&file), "--input", p(&input), "--runs", "1"]);
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr:\n{}", stdout(&out), stderr(&out));
    let out = slope(&["--save", "everything", "test", p(&file)]);
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr:\n{}", stdout(&out), stderr(&out));
    let out = slope(&["--save", "sometimes", "test", p(&file)]);
    assert_eq!(out.status.code(), Some(2), "clap refuses an unknown policy: {}", stderr(&out));
    for (flag, command) in [("--checkpoint", "repl"), ("--checkpoint", "gradbench"), ("--save=nothing", "repl")] {
        let out = Command::new(env!("CARGO_BIN_EXE_slope"))
            .args([flag, command])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run slope");
        fails_with(&out, "E0305");
        assert!(stderr(&out).contains(flag.trim_end_matches("=nothing")), "{}", stderr(&out));
    }
}

#[test]
fn cost_prints_operations_tapes_and_peak_memory() {
    let file = write_temp(
        "cost",
        "loop.slope",
        "entry g (x: f64) (steps: i64) : f64 = grad (\\a -> loop s = a for i < steps do sin s * 0.9) x\n\
         entry f (x: f64) (steps: i64) : f64 = loop s = x for i < steps do sin s * 0.9\n",
    );
    let input = write_temp("cost", "in.json", "{\"x\": 0.5, \"steps\": 100}");
    let out = slope(&["cost", p(&file), "--entry", "g", "--input", p(&input)]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("g: ") && text.contains(" operations ("), "{text}");
    assert!(text.contains("loop tape      8 · max(steps, 0), per call  ("), "{text}");
    assert!(text.contains("loop.slope:1:"), "the tape's loop is located: {text}");
    assert!(text.contains("peak memory of native code at this input: "), "{text}");
    let out = slope(&["cost", p(&file), "--entry", "f", "--input", p(&input)]);
    assert!(stdout(&out).contains("tapes: none"), "{}", stdout(&out));
}

/// `libslope_capi.a` of this build. `cargo test --workspace` leaves it in
/// `target/PROFILE/deps/` with a hash in its name (the newest, if several);
/// `cargo build` beside the executable, where `slope build` looks by default.
fn capi_runtime() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_slope")).parent().expect("target/PROFILE").to_path_buf();
    let in_deps = std::fs::read_dir(dir.join("deps")).expect("target/PROFILE/deps").flatten().map(|e| e.path());
    let candidates = in_deps.chain([dir.join("libslope_capi.a")]).filter(|p| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        (name == "libslope_capi.a" || name.starts_with("libslope_capi-") && name.ends_with(".a")) && p.exists()
    });
    let newest = candidates.max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    newest.unwrap_or_else(|| panic!("no libslope_capi.a under {} (run `cargo test --workspace`)", dir.display()))
}

/// `slope build` writes a library and its header and prints them with the
/// exported functions.
#[test]
fn build_writes_a_library_and_its_header() {
    let file = write_temp("build", "twice.slope", "entry twice [n] (xs: [n]f64) : [n]f64 = map (\\x -> 2.0 * x) xs\n");
    let dir = file.parent().unwrap().to_path_buf();
    let lib = dir.join("libtwice.so");
    let runtime = capi_runtime();
    let out = slope(&["build", p(&file), "-o", p(&lib), "--runtime", p(&runtime)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(printed.contains("twice_context_new") && printed.contains("twice_twice"), "{printed}");
    assert!(lib.is_file());
    let header = std::fs::read_to_string(dir.join("twice.h")).unwrap();
    assert!(
        header.contains("int twice_twice(twice_context *context, const slope_arg *xs, slope_value **result"),
        "{header}"
    );
    // Misuse: not a library name, an unknown entry, no runtime where named.
    fails_with(&slope(&["build", p(&file), "-o", p(&dir.join("twice.dll")), "--runtime", p(&runtime)]), "E0305");
    fails_with(&slope(&["build", p(&file), "-o", p(&lib), "--entry", "thrice", "--runtime", p(&runtime)]), "E0301");
    fails_with(&slope(&["build", p(&file), "-o", p(&lib), "--runtime", p(&dir.join("none.a"))]), "E0309");
}

/// `slope test DIR` tests the `.slope` files under DIR (nested folders too)
/// and skips the data, C and Python files next to them; a file named on the
/// command line is tested whatever its name.
#[test]
fn test_walks_slope_files_only() {
    let prog = write_temp(
        "testdir",
        "ok.slope",
        "-- entry: f\n-- input: {\"x\": 2.0}\n-- output: 4.0\nentry f (x: f64) : f64 = x * x\n",
    );
    let dir = prog.parent().expect("a directory").to_path_buf();
    std::fs::write(dir.join("data.json"), "{\"x\": 1.0}").expect("write");
    std::fs::create_dir_all(dir.join("nested")).expect("nested dir");
    std::fs::write(
        dir.join("nested").join("also.slope"),
        "-- entry: g\n-- input: {\"x\": 3.0}\n-- output: 3.0\nentry g (x: f64) : f64 = x\n",
    )
    .expect("write");
    std::fs::write(dir.join("nested").join("main.c"), "int main(void) { return 0; }\n").expect("write");
    let out = slope(&["test", p(&dir)]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("2 passed, 0 failed"), "{}", stdout(&out));
    let out = slope(&["test", p(&dir.join("data.json"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(format!("{}{}", stdout(&out), stderr(&out)).contains("E0001"), "{}", stdout(&out));
}

/// `slope emit --help` names every stage of the pipeline (the list in the
/// help is written by hand; `driver::stage_names` is the pipeline's).
#[test]
fn emit_help_names_every_stage() {
    let help = stdout(&slope(&["emit", "--help"]));
    let about = help.lines().next().unwrap_or_default();
    let words: Vec<&str> = about.split(|c: char| !c.is_alphanumeric()).collect();
    for stage in slope::driver::stage_names() {
        assert!(words.contains(&stage), "`{stage}` is missing from: {about}");
    }
}
