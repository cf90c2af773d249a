//! Ahead-of-time libraries (`slope build`): examples/c/aot.c built against
//! a shared and a static library and run; every GradBench fixture called
//! through an ahead-of-time library and compared bit for bit with the JIT
//! on one and three threads; run-time failures and bad arguments reading
//! exactly as they read from `libslope_c`; and the errors of `slope build`.
//!
//! The libraries are loaded into this process with `dlopen` and called
//! through their exported C functions, as a C program would.

use slope::api::Program;
use slope::build::{build, Request};
use slope::diagnostic::RenderStyle;
use slope_c::*;
use slope_runtime::{ArrayData, Scalar, Value};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

/// `libslope_capi.a` of this build: beside the executables after `cargo
/// build`; under `cargo test` only in `deps/`, with a hash in its name (the
/// newest, if several builds left one).
fn runtime() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary");
    let deps = exe.parent().expect("target/PROFILE/deps");
    let beside = deps.parent().expect("target/PROFILE").join("libslope_capi.a");
    let hashed = std::fs::read_dir(deps)
        .expect("target/PROFILE/deps")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("libslope_capi-") && name.ends_with(".a")
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    let newest = [Some(beside), hashed]
        .into_iter()
        .flatten()
        .filter(|p| p.exists())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    newest.unwrap_or_else(|| panic!("no libslope_capi.a near {} (run `cargo test --workspace`)", deps.display()))
}

/// A fresh directory for one test's libraries.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("slope-aot-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

fn compile_file(path: &Path) -> Program {
    let text = std::fs::read_to_string(path).expect("the program exists");
    Program::compile(&path.display().to_string(), &text, &slope::driver::file_loader)
        .unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Short)))
}

fn compile_source(name: &str, text: &str) -> Program {
    Program::compile(name, text, &slope::driver::file_loader)
        .unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Short)))
}

fn request(output: PathBuf) -> Request {
    Request { output, name: None, entries: Vec::new(), header: None, runtime: Some(runtime()) }
}

/// Compiles the C program `source` with `-Wall -Werror` against the header
/// and libraries in `dir` (`libs`: the `-l` flags), runs it, requires success
/// and returns its standard output; `what` names the program in a failure.
fn build_and_run_c(source: &Path, dir: &Path, libs: &[&str], what: &str) -> String {
    let exe = dir.join(source.file_stem().expect("a C file name"));
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .arg(source)
        .arg("-I")
        .arg(dir)
        .arg("-L")
        .arg(dir)
        .args(libs)
        .arg(format!("-Wl,-rpath,{}", dir.display()))
        .args(["-Wall", "-Werror", "-o"])
        .arg(&exe)
        .status()
        .expect("a C compiler (cc) runs");
    assert!(status.success(), "{what} does not build");
    let run = Command::new(&exe).output().expect("runs");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    stdout
}

#[test]
fn the_c_example_runs_on_a_shared_and_a_static_library() {
    let root = root();
    let program = compile_file(&root.join("examples/c/rosenbrock.slope"));
    for (kind, libs) in
        [("so", vec!["-lrosenbrock"]), ("a", vec!["-lrosenbrock", "-lslope_capi", "-lpthread", "-ldl", "-lm"])]
    {
        let dir = scratch(&format!("example-{kind}"));
        let built = build(&program, &request(dir.join(format!("librosenbrock.{kind}"))))
            .unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Short)));
        assert_eq!(built.header, dir.join("rosenbrock.h"));
        let what = format!("the C example against lib{kind}");
        let stdout = build_and_run_c(&root.join("examples/c/aot.c"), &dir, &libs, &what);
        // The same output as the JIT-backed example (c_api.rs checks its
        // gradient by hand): the values are the same functions' values.
        let want = "value 355.69999999999999\n\
                    gradient -215.59999999999997 112.00000000000001 -451 350\n";
        assert!(stdout.starts_with(want), "{stdout}");
        let after: f64 =
            stdout.lines().nth(2).and_then(|l| l.strip_prefix("after 1000 steps ")).unwrap().parse().unwrap();
        assert!(after < 355.7 / 10.0, "{stdout}");
        assert!(stdout.contains("error E0302: `x` must be []f64, but the leaf's dtype is SLOPE_I64 (2)"), "{stdout}");
        assert!(stdout.contains("error E0301: no entry point named `hessian`"), "{stdout}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

// ---------------------------------------------------------------------------
// Loading a library into this process.

const RTLD_NOW: c_int = 2;

unsafe extern "C" {
    fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlerror() -> *const c_char;
}

type ContextNew = unsafe extern "C" fn(c_int, *mut *mut SlopeError) -> *mut c_void;
type ContextFree = unsafe extern "C" fn(*mut c_void);
type SetThreads = unsafe extern "C" fn(*mut c_void, c_int, *mut *mut SlopeError) -> c_int;
type CallNamed = unsafe extern "C" fn(
    *mut c_void,
    *const c_char,
    *const SlopeArg,
    usize,
    *mut *mut SlopeValue,
    *mut *mut SlopeError,
) -> c_int;

/// The value and error accessors of one copy of the runtime: the library's
/// own for what the library returns, this process's for the JIT's.
struct Access {
    rank: unsafe extern "C" fn(*const SlopeValue) -> i64,
    dtype: unsafe extern "C" fn(*const SlopeValue) -> i32,
    shape: unsafe extern "C" fn(*const SlopeValue) -> *const i64,
    data: unsafe extern "C" fn(*const SlopeValue) -> *const c_void,
    count: unsafe extern "C" fn(*const SlopeValue) -> usize,
    item: unsafe extern "C" fn(*const SlopeValue, usize) -> *const SlopeValue,
    field: unsafe extern "C" fn(*const SlopeValue, usize) -> *const c_char,
    value_free: unsafe extern "C" fn(*mut SlopeValue),
    code: unsafe extern "C" fn(*const SlopeError) -> *const c_char,
    message: unsafe extern "C" fn(*const SlopeError) -> *const c_char,
    diagnostic: unsafe extern "C" fn(*const SlopeError) -> *const c_char,
    error_free: unsafe extern "C" fn(*mut SlopeError),
}

const LOCAL: Access = Access {
    rank: slope_value_rank,
    dtype: slope_value_dtype,
    shape: slope_value_shape,
    data: slope_value_data,
    count: slope_value_count,
    item: slope_value_item,
    field: slope_value_field,
    value_free: slope_value_free,
    code: slope_error_code,
    message: slope_error_message,
    diagnostic: slope_error_diagnostic,
    error_free: slope_error_free,
};

/// A loaded library and one context of it.
struct Library {
    access: Access,
    context: *mut c_void,
    context_free: ContextFree,
    set_threads: SetThreads,
    call: CallNamed,
}

impl Drop for Library {
    fn drop(&mut self) {
        // SAFETY: made by the library's context_new; no call is running.
        unsafe { (self.context_free)(self.context) }
    }
}

/// Loads `path` (built with C prefix `name`) and makes a context.
fn load(path: &Path, name: &str) -> Library {
    let path_c = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid path; the library's initialisers are Rust's.
    let handle = unsafe { dlopen(path_c.as_ptr(), RTLD_NOW) };
    assert!(!handle.is_null(), "dlopen {}: {}", path.display(), unsafe { CStr::from_ptr(dlerror()) }.to_string_lossy());
    let sym = |s: &str| {
        let c = CString::new(s).unwrap();
        // SAFETY: a live handle and a valid name.
        let p = unsafe { dlsym(handle, c.as_ptr()) };
        assert!(!p.is_null(), "{} does not export {s}", path.display());
        p
    };
    // SAFETY: each symbol has the C signature the header declares.
    unsafe {
        let access = Access {
            rank: std::mem::transmute::<*mut c_void, _>(sym("slope_value_rank")),
            dtype: std::mem::transmute::<*mut c_void, _>(sym("slope_value_dtype")),
            shape: std::mem::transmute::<*mut c_void, _>(sym("slope_value_shape")),
            data: std::mem::transmute::<*mut c_void, _>(sym("slope_value_data")),
            count: std::mem::transmute::<*mut c_void, _>(sym("slope_value_count")),
            item: std::mem::transmute::<*mut c_void, _>(sym("slope_value_item")),
            field: std::mem::transmute::<*mut c_void, _>(sym("slope_value_field")),
            value_free: std::mem::transmute::<*mut c_void, _>(sym("slope_value_free")),
            code: std::mem::transmute::<*mut c_void, _>(sym("slope_error_code")),
            message: std::mem::transmute::<*mut c_void, _>(sym("slope_error_message")),
            diagnostic: std::mem::transmute::<*mut c_void, _>(sym("slope_error_diagnostic")),
            error_free: std::mem::transmute::<*mut c_void, _>(sym("slope_error_free")),
        };
        let context_new: ContextNew = std::mem::transmute(sym(&format!("{name}_context_new")));
        let mut err = std::ptr::null_mut();
        let context = context_new(1, &mut err);
        assert!(!context.is_null(), "context_new failed");
        Library {
            access,
            context,
            context_free: std::mem::transmute::<*mut c_void, ContextFree>(sym(&format!("{name}_context_free"))),
            set_threads: std::mem::transmute::<*mut c_void, SetThreads>(sym(&format!("{name}_context_set_threads"))),
            call: std::mem::transmute::<*mut c_void, CallNamed>(sym(&format!("{name}_call"))),
        }
    }
}

/// A value as plain data, to compare across copies of the runtime.
#[derive(Debug, PartialEq)]
enum Tree {
    /// dtype, shape, the elements' bytes (bit for bit).
    Leaf(i32, Vec<i64>, Vec<u8>),
    Node(Vec<(Option<String>, Tree)>),
}

/// Reads `v` with `a`'s accessors.
///
/// # Safety
/// `v` is a live value of the runtime `a` belongs to.
unsafe fn tree(a: &Access, v: *const SlopeValue) -> Tree {
    unsafe {
        let rank = (a.rank)(v);
        if rank < 0 {
            let items = (0..(a.count)(v))
                .map(|i| {
                    let f = (a.field)(v, i);
                    let name = (!f.is_null()).then(|| CStr::from_ptr(f).to_string_lossy().into_owned());
                    (name, tree(a, (a.item)(v, i)))
                })
                .collect();
            return Tree::Node(items);
        }
        let dtype = (a.dtype)(v);
        let shape =
            if rank == 0 { Vec::new() } else { std::slice::from_raw_parts((a.shape)(v), rank as usize).to_vec() };
        let size = match dtype {
            0 | 2 => 8,
            1 => 4,
            _ => 1,
        };
        let bytes = (a.count)(v) * size;
        let data =
            if bytes == 0 { Vec::new() } else { std::slice::from_raw_parts((a.data)(v) as *const u8, bytes).to_vec() };
        Tree::Leaf(dtype, shape, data)
    }
}

/// The outcome of a call as comparable data: the result, or the error's
/// code, message and diagnostic.
///
/// # Safety
/// `status`, `result` and `error` come from one call of `a`'s runtime.
unsafe fn outcome(a: &Access, status: c_int, result: *mut SlopeValue, error: *mut SlopeError) -> Result<Tree, String> {
    unsafe {
        if status == 0 {
            let t = tree(a, result);
            (a.value_free)(result);
            Ok(t)
        } else {
            assert!(result.is_null(), "a failed call leaves no result");
            let s = |p: *const c_char| CStr::from_ptr(p).to_string_lossy().into_owned();
            let text = format!("{}|{}|{}", s((a.code)(error)), s((a.message)(error)), s((a.diagnostic)(error)));
            (a.error_free)(error);
            Err(text)
        }
    }
}

/// Argument leaves pointing into `values` (kept alive by the caller).
struct Leaves {
    shapes: Vec<Vec<i64>>,
    scalars: Vec<u64>,
    args: Vec<SlopeArg>,
}

fn leaves(values: &[Value]) -> Leaves {
    fn walk(v: &Value, out: &mut Vec<(i32, Vec<i64>, Option<*const c_void>, u64)>) {
        match v {
            Value::Tuple(items) => items.iter().for_each(|v| walk(v, out)),
            Value::Record(fields) => fields.iter().for_each(|(_, v)| walk(v, out)),
            Value::Scalar(s) => {
                let (dtype, bits) = match *s {
                    Scalar::F64(x) => (0, x.to_bits()),
                    Scalar::F32(x) => (1, u64::from(x.to_bits())),
                    Scalar::I64(x) => (2, x as u64),
                    Scalar::Bool(x) => (3, u64::from(x)),
                };
                out.push((dtype, Vec::new(), None, bits));
            }
            Value::Array(a) => {
                let (dtype, data) = match &a.data {
                    ArrayData::F64(d) => (0, d.as_ptr() as *const c_void),
                    ArrayData::F32(d) => (1, d.as_ptr() as *const c_void),
                    ArrayData::I64(d) => (2, d.as_ptr() as *const c_void),
                    ArrayData::Bool(d) => (3, d.as_ptr() as *const c_void),
                };
                out.push((dtype, a.shape.iter().map(|&n| n as i64).collect(), Some(data), 0));
            }
        }
    }
    let mut flat = Vec::new();
    values.iter().for_each(|v| walk(v, &mut flat));
    let mut l = Leaves { shapes: Vec::new(), scalars: flat.iter().map(|f| f.3).collect(), args: Vec::new() };
    l.shapes = flat.iter().map(|f| f.1.clone()).collect();
    for (k, (dtype, shape, data, _)) in flat.iter().enumerate() {
        // Scalars are stored in the low bytes of their word (little-endian).
        let data = data.unwrap_or(&l.scalars[k] as *const u64 as *const c_void);
        l.args.push(SlopeArg { dtype: *dtype, rank: shape.len() as i64, shape: l.shapes[k].as_ptr(), data });
    }
    l
}

impl Library {
    fn call(&self, entry: &str, args: &[SlopeArg]) -> Result<Tree, String> {
        let entry = CString::new(entry).unwrap();
        let (mut result, mut error) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: a live context; valid leaves and slots.
        unsafe {
            let status = (self.call)(self.context, entry.as_ptr(), args.as_ptr(), args.len(), &mut result, &mut error);
            outcome(&self.access, status, result, error)
        }
    }

    fn threads(&self, n: c_int) {
        // SAFETY: a live context.
        assert_eq!(unsafe { (self.set_threads)(self.context, n, std::ptr::null_mut()) }, 0);
    }
}

/// What the JIT-backed C API (`libslope_c`) gives for the same call.
fn jit(program: &Program, entry: &str, values: &[Value]) -> Result<Tree, String> {
    match program.call_values(entry, values) {
        // SAFETY: a value made here, read with this process's accessors.
        Ok(v) => unsafe { Ok(tree(&LOCAL, &to_c(v))) },
        Err(f) => {
            let d = &f.diagnostics[0];
            Err(format!("{}|{}|{}", d.code.as_str(), d.message, f.render(RenderStyle::Short)))
        }
    }
}

#[test]
fn every_gradbench_fixture_agrees_with_the_jit_bit_for_bit() {
    let dir = scratch("gradbench");
    for eval in ["hello", "lse", "ode", "gmm", "lstm", "ba", "ht", "llsq", "det", "kmeans", "particle", "saddle"] {
        let path = root().join(format!("examples/gradbench/{eval}.slope"));
        let program = compile_file(&path);
        let lib = dir.join(format!("lib{eval}.so"));
        build(&program, &request(lib.clone())).unwrap_or_else(|f| panic!("{eval}: {}", f.render(RenderStyle::Short)));
        let library = load(&lib, eval);
        let fixtures_dir = root().join("tests/fixtures").join(if eval == "ht" { "ht" } else { eval });
        let mut files: Vec<PathBuf> = std::fs::read_dir(&fixtures_dir).unwrap().flatten().map(|e| e.path()).collect();
        files.sort();
        assert!(!files.is_empty(), "no fixtures for {eval}");
        program.set_threads(1).unwrap();
        for file in files {
            let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            let entry = fixture["function"].as_str().expect("a fixture names its function");
            let values = program.decode_json_args(entry, &fixture["input"]).expect("fixture inputs decode");
            let want = jit(&program, entry, &values);
            let l = leaves(&values);
            for threads in [1, 3] {
                library.threads(threads);
                let got = library.call(entry, &l.args);
                assert!(got == want, "{}: {threads} threads: the library and the JIT differ", file.display());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn failures_and_bad_arguments_read_as_from_libslope_c() {
    let text = "entry at [n] (xs: [n]f64) (k: i64) : f64 = xs[k]\n\
                entry dot [n] (a: [n]f64) (b: [n]f64) : f64 = sum (map2 (*) a b)\n\
                entry quot (a: i64) (b: i64) : i64 = a / b\n\
                entry spin (x: f64) : f64 = loop y = x while y > 0.0 do y + 1.0\n\
                entry pair (r: {x: f64, k: i64}) (t: (f32, bool)) : (f64, {k: i64, t: bool}) = (r.x, {k = r.k, t = t.1})\n\
                entry rows [n] (xs: [n]f64) : [n]{a: f64, b: i64} = map (\\x -> {a = x, b = 1}) xs";
    let mut program = compile_source("failures.slope", text);
    program.options.while_limit = 1000;
    let dir = scratch("failures");
    let lib = dir.join("libfailures.so");
    build(&program, &request(lib.clone())).unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Short)));
    let library = load(&lib, "failures");
    let xs = Value::array(vec![3], ArrayData::F64(vec![1.0, 2.0, 3.0]));
    let ys = Value::array(vec![2], ArrayData::F64(vec![1.0, 2.0]));
    let i = |k: i64| Value::Scalar(Scalar::I64(k));
    let record = Value::Record(vec![("k".into(), i(4)), ("x".into(), Value::Scalar(Scalar::F64(0.5)))]);
    let tuple = Value::Tuple(vec![Value::Scalar(Scalar::F32(1.5)), Value::Scalar(Scalar::Bool(true))]);
    let cases: Vec<(&str, Vec<Value>)> = vec![
        ("at", vec![xs.clone(), i(1)]),
        ("at", vec![xs.clone(), i(7)]),
        ("at", vec![xs.clone(), i(-1)]),
        ("dot", vec![xs.clone(), ys.clone()]),
        ("quot", vec![i(7), i(0)]),
        ("quot", vec![i(i64::MIN), i(-1)]),
        ("spin", vec![Value::Scalar(Scalar::F64(1.0))]),
        ("pair", vec![record, tuple]),
        ("rows", vec![xs.clone()]),
    ];
    let mut failures = 0;
    for (entry, values) in &cases {
        let want = jit(&program, entry, values);
        failures += usize::from(want.is_err());
        let got = library.call(entry, &leaves(values).args);
        assert_eq!(got, want, "{entry} {values:?}");
    }
    assert_eq!(failures, 5, "the cases cover five run-time failures");
    // Bad arguments: what libslope_c says for the same leaves.
    let c_program = {
        let (name, src) = (CString::new("failures.slope").unwrap(), CString::new(text).unwrap());
        let mut err = std::ptr::null_mut();
        // SAFETY: valid strings.
        let p = unsafe { slope_compile_source(name.as_ptr(), src.as_ptr(), 1, &mut err) };
        assert!(!p.is_null());
        p
    };
    let c_call = |entry: &str, args: &[SlopeArg]| {
        let e = CString::new(entry).unwrap();
        let (mut result, mut error) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: a live program; the leaves are valid or rejected before reading.
        unsafe {
            let status = slope_call(c_program, e.as_ptr(), args.as_ptr(), args.len(), &mut result, &mut error);
            outcome(&LOCAL, status, result, error)
        }
    };
    let good = leaves(&[xs.clone(), i(1)]);
    let wrong_dtype = SlopeArg { dtype: 2, ..good.args[0] };
    let negative = [-3i64];
    let negative_size = SlopeArg { shape: negative.as_ptr(), ..good.args[0] };
    let null_data = SlopeArg { data: std::ptr::null(), ..good.args[0] };
    let bad: Vec<(&str, Vec<SlopeArg>)> = vec![
        ("at", vec![good.args[0]]),
        ("at", vec![wrong_dtype, good.args[1]]),
        ("at", vec![negative_size, good.args[1]]),
        ("at", vec![null_data, good.args[1]]),
        ("at", vec![good.args[1], good.args[0]]),
    ];
    for (entry, args) in &bad {
        let want = c_call(entry, args);
        assert!(want.as_ref().is_err_and(|e| e.starts_with("E0302|")), "{want:?}");
        assert_eq!(library.call(entry, args), want);
    }
    let unknown = library.call("nothing", &good.args).unwrap_err();
    assert!(unknown.starts_with("E0301|no entry point named `nothing`"), "{unknown}");
    // SAFETY: made above, freed once.
    unsafe { slope_program_free(c_program) };
    let _ = std::fs::remove_dir_all(&dir);
}

/// A library asked for one entry that calls others (Note [Entries called
/// by entries] in the compiler's ir/calls.rs) carries the callees too, and
/// a failure inside a callee reads as the JIT words it: the callee's site.
#[test]
fn an_exported_entry_that_calls_entries_fails_at_the_callees_site() {
    let text = "entry at [n] (xs: [n]f64) (k: i64) : f64 = xs[k]\n\
                entry twice [n] (xs: [n]f64) (k: i64) : f64 = 2.0 * at xs k\n\
                entry outer [n] (xs: [n]f64) (k: i64) : f64 = let t = twice xs k in t + at xs 0";
    let program = compile_source("calls.slope", text);
    let dir = scratch("calls");
    let lib = dir.join("libcalls.so");
    let only_outer = Request { entries: vec!["outer".into()], ..request(lib.clone()) };
    build(&program, &only_outer).unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Short)));
    let library = load(&lib, "calls");
    let xs = Value::array(vec![3], ArrayData::F64(vec![1.0, 2.0, 3.0]));
    let i = |k: i64| Value::Scalar(Scalar::I64(k));
    for k in [1, 3, -2] {
        let values = vec![xs.clone(), i(k)];
        let want = jit(&program, "outer", &values);
        assert_eq!(library.call("outer", &leaves(&values).args), want, "outer {k}");
        if k != 1 {
            let error = want.expect_err("out of bounds");
            assert!(error.starts_with("E0201|index"), "{error}");
            assert!(error.contains("calls.slope:1:"), "the callee's span: {error}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn slope_build_reports_what_it_cannot_do() {
    let program = compile_source("two.slope", "entry f' (x: f64) : f64 = x\nentry f_ (x: f64) : f64 = x");
    let dir = scratch("errors");
    let code =
        |r: &Request| build(&program, r).err().map(|f| (f.diagnostics[0].code.as_str(), f.render(RenderStyle::Short)));
    // Two entries spelled alike in C.
    let (c, text) = code(&request(dir.join("libtwo.so"))).unwrap();
    assert_eq!(c, "E0309", "{text}");
    assert!(text.contains("entry `f'` and entry `f_` would both be the C function `two_f_`"), "{text}");
    // One of them alone builds.
    let one = Request { entries: vec!["f_".into()], ..request(dir.join("libtwo.so")) };
    assert!(code(&one).is_none());
    // An output that is no library.
    let (c, text) = code(&request(dir.join("two.dylib"))).unwrap();
    assert_eq!(c, "E0305", "{text}");
    // A name that is no C identifier.
    let (c, text) = code(&request(dir.join("lib2x.so"))).unwrap();
    assert_eq!(c, "E0305", "{text}");
    // No runtime library where it was asked for.
    let missing = Request { runtime: Some(dir.join("nowhere.a")), ..request(dir.join("libtwo.so")) };
    let (c, text) = code(&missing).unwrap();
    assert_eq!(c, "E0309", "{text}");
    assert!(text.contains("cannot find the runtime library"), "{text}");
    // An unknown entry.
    let unknown = Request { entries: vec!["g".into()], ..request(dir.join("libtwo.so")) };
    assert_eq!(code(&unknown).unwrap().0, "E0301");
    // The runtime's prefix as a library name.
    assert_eq!(code(&request(dir.join("libslope.so"))).unwrap().0, "E0305");
    // An entry whose C name is the context type, and one taking an array of records.
    let program = compile_source(
        "names.slope",
        "entry context (x: f64) : f64 = x\n\
         entry rows [n] (ps: [n]{a: f64, b: i64}) : f64 = sum (map (\\p -> p.a) ps)\n\
         entry fine (x: f64) : f64 = x",
    );
    let code =
        |r: &Request| build(&program, r).err().map(|f| (f.diagnostics[0].code.as_str(), f.render(RenderStyle::Short)));
    let only = |e: &str| Request { entries: vec![e.into()], ..request(dir.join("libnames.so")) };
    let (c, text) = code(&only("context")).unwrap();
    assert_eq!(c, "E0309", "{text}");
    assert!(text.contains("would both be the C function `names_context`"), "{text}");
    let (c, text) = code(&only("rows")).unwrap();
    assert_eq!(c, "E0309", "{text}");
    assert!(text.contains("an array of tuples or records"), "{text}");
    assert!(code(&only("fine")).is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The header's per-entry functions take one leaf per argument, in order:
/// records by field name, tuples by position; a C keyword as a parameter
/// name is renamed in the header. A C program calls them through the header.
#[test]
fn per_entry_functions_take_every_leaf_in_order() {
    let program = compile_source(
        "rec.slope",
        "entry pair (r: {x: f64, k: i64}) (t: (f32, bool)) : (f64, {k: i64, t: bool}) = (r.x + 1.0, {k = r.k * 2, t = t.1})\n\
         entry scale [n] (double: f64) (xs: [n]f64) : [n]f64 = map (\\x -> double * x) xs",
    );
    let dir = scratch("leaves");
    build(&program, &request(dir.join("librec.so"))).unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Short)));
    let header = std::fs::read_to_string(dir.join("rec.h")).unwrap();
    assert!(header.contains("int rec_pair(rec_context *context, const slope_arg *r_k, const slope_arg *r_x, const slope_arg *t_0, const slope_arg *t_1, slope_value **result, slope_error **error);"), "{header}");
    assert!(header.contains("const slope_arg *double_, const slope_arg *xs"), "{header}");
    let source = r#"
#include <stdio.h>
#include "rec.h"
int main(void) {
    slope_error *e = NULL;
    rec_context *c = rec_context_new(1, &e);
    if (!c) return 1;
    double x = 0.5, two = 2.0, xs[3] = {1, 2, 3};
    int64_t k = 4, n = 3;
    float f = 1.5f;
    uint8_t b = 1;
    slope_arg rk = {SLOPE_I64, 0, NULL, &k}, rx = {SLOPE_F64, 0, NULL, &x};
    slope_arg t0 = {SLOPE_F32, 0, NULL, &f}, t1 = {SLOPE_BOOL, 0, NULL, &b};
    slope_value *v = NULL;
    if (rec_pair(c, &rk, &rx, &t0, &t1, &v, &e)) { printf("%s\n", slope_error_diagnostic(e)); return 1; }
    const slope_value *rec = slope_value_item(v, 1);
    printf("pair %g %s=%lld %s=%d\n", *(const double *)slope_value_data(slope_value_item(v, 0)),
           slope_value_field(rec, 0), (long long)*(const int64_t *)slope_value_data(slope_value_item(rec, 0)),
           slope_value_field(rec, 1), *(const uint8_t *)slope_value_data(slope_value_item(rec, 1)));
    slope_value_free(v);
    slope_arg d = {SLOPE_F64, 0, NULL, &two}, a = {SLOPE_F64, 1, &n, xs};
    if (rec_scale(c, &d, &a, &v, &e)) { printf("%s\n", slope_error_diagnostic(e)); return 1; }
    const double *y = slope_value_data(v);
    printf("scale %g %g %g\n", y[0], y[1], y[2]);
    slope_value_free(v);
    rec_context_free(c);
    return 0;
}
"#;
    std::fs::write(dir.join("main.c"), source).unwrap();
    let stdout = build_and_run_c(&dir.join("main.c"), &dir, &["-lrec"], "the C program against rec.h");
    assert_eq!(stdout, "pair 1.5 k=8 t=1\nscale 2 4 6\n");
    let _ = std::fs::remove_dir_all(&dir);
}
