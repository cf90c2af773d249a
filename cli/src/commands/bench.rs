//! `slope bench`: the benchmark table of the GradBench examples.
//!
//! For each eval it compiles `examples/gradbench/<eval>.slope` (timing the
//! compile), then for each workload runs the primal and the derivative
//! function — one warm-up run, then `--runs` measured runs, reporting the
//! median (and the fastest run) — and their ratio, plus the peak memory of one
//! derivative call (native code: the arena's peak; the interpreter: heap
//! growth, from the binary's counting allocator). Timings are printed, never
//! asserted: they belong in benchmarks, not tests.
//!
//! Engine: native code (the JIT) unless `--interp`. Compile time is the
//! whole pipeline, lowering and code generation included.
//!
//! Workloads: every fixture in `--fixtures` (default `tests/fixtures`),
//! and, with `--inputs DIR`, the GradBench message files that
//! `scripts/gradbench_inputs.py generate` writes (GradBench's default sizes).
//!
//! Any program: `slope bench FILE --entry E --input IN.json [--derivative D]`
//! times one entry on one input the same way, and a derivative of it: another
//! entry of the program that takes the same input, or `grad`, `jvp`, `vjp`,
//! `jacfwd`, `jacrev` or `hessian` of the entry with respect to its float
//! parameters (a wrapper entry the command writes, [`derivative_wrapper`]).

use super::{plain_error, CliFailure};
use slope::api::{Engine, Program};
use slope::diagnostic::Code;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The heap growth of a stretch of code: the binary's allocator (main.rs)
/// counts bytes only while a [`memory::Watch`] is open.
pub mod memory {
    use mimalloc::MiMalloc;
    use std::alloc::{GlobalAlloc, Layout};
    use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

    /// The allocator underneath (Cargo.toml says why mimalloc).
    static ALLOC: MiMalloc = MiMalloc;

    pub struct Counting;

    // Note [Counting only while watched]
    // ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    // The counters are two words every thread would write on every
    // allocation and free. Counted always, the compiler's threads (which
    // allocate all the time) fought over their cache line: the optimiser
    // ran implicit_ridge's largest function in 28 ms beside another
    // function instead of 12 ms alone. So allocation reads a flag that
    // only `watch` and `Watch::peak` write, and counts only while it is
    // set. A free during the watch of a block allocated before it counts
    // too, so the count is signed: it is the growth since the watch began.
    static WATCHING: AtomicBool = AtomicBool::new(false);
    static CURRENT: AtomicIsize = AtomicIsize::new(0);
    static PEAK: AtomicIsize = AtomicIsize::new(0);

    fn add(bytes: usize) {
        if WATCHING.load(Ordering::Relaxed) {
            let now = CURRENT.fetch_add(bytes as isize, Ordering::Relaxed) + bytes as isize;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
    }

    fn sub(bytes: usize) {
        if WATCHING.load(Ordering::Relaxed) {
            CURRENT.fetch_sub(bytes as isize, Ordering::Relaxed);
        }
    }

    /// Counts `size` more bytes when the allocation at `p` succeeded.
    fn counted(p: *mut u8, size: usize) -> *mut u8 {
        if !p.is_null() {
            add(size);
        }
        p
    }

    // Every method forwards to mimalloc, none is left to the trait's
    // default: mimalloc's `alloc_zeroed` skips zeroing memory fresh from the
    // kernel (the default writes every byte), and `realloc` can grow a block
    // in place.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwards to mimalloc with the caller's layout.
            counted(unsafe { ALLOC.alloc(layout) }, layout.size())
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as `alloc`.
            counted(unsafe { ALLOC.alloc_zeroed(layout) }, layout.size())
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: the caller's promises for `ptr`, `layout` and `new_size`, forwarded.
            let p = unsafe { ALLOC.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                sub(layout.size());
            }
            counted(p, if p.is_null() { 0 } else { new_size })
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` was allocated by this allocator with this layout.
            unsafe { ALLOC.dealloc(ptr, layout) };
            sub(layout.size());
        }
    }

    /// An open measurement of heap growth (Note [Counting only while watched]).
    pub struct Watch(());

    /// Starts counting, from zero.
    pub fn watch() -> Watch {
        CURRENT.store(0, Ordering::Relaxed);
        PEAK.store(0, Ordering::Relaxed);
        WATCHING.store(true, Ordering::Relaxed);
        Watch(())
    }

    impl Watch {
        /// The most bytes held at once beyond what was held when the watch
        /// began; counting stops.
        pub fn peak(self) -> usize {
            WATCHING.store(false, Ordering::Relaxed);
            PEAK.load(Ordering::Relaxed).max(0) as usize
        }
    }

    impl Drop for Watch {
        /// A watch given up (the measured call failed) stops counting too.
        fn drop(&mut self) {
            WATCHING.store(false, Ordering::Relaxed);
        }
    }
}

/// The primal and derivative function of each eval, and the module it lives in.
/// (`particle` and `saddle` have no primal: their four functions are four
/// nestings of modes; GradBench's runner times them, see docs/performance.md.)
const EVALS: &[(&str, &str, &str, &str)] = &[
    ("hello", "hello", "square", "double"),
    ("lse", "lse", "primal", "gradient"),
    ("ode", "ode", "primal", "gradient"),
    ("gmm", "gmm", "objective", "jacobian"),
    ("lstm", "lstm", "objective", "jacobian"),
    ("ba", "ba", "objective", "jacobian"),
    ("ht", "ht", "objective", "jacobian"),
    ("ht-complicated", "ht", "objective", "jacobian"),
    ("llsq", "llsq", "primal", "gradient"),
    ("det", "det", "primal", "gradient"),
    ("kmeans", "kmeans", "cost", "dir"),
];

pub fn run(
    dir: &Path,
    fixtures: &Path,
    inputs: Option<&Path>,
    runs: usize,
    only: &[String],
    engine: Engine,
) -> Result<String, CliFailure> {
    let known: Vec<&str> = EVALS.iter().map(|e| e.0).collect();
    if let Some(unknown) = only.iter().find(|o| !known.contains(&o.as_str())) {
        return Err(plain_error(
            Code::E0305,
            format!("`slope bench` has no eval `{unknown}`"),
            Some(format!("the evals it knows: {}", known.join(", "))),
        ));
    }
    let workload_error = |message: String| plain_error(Code::E0303, message, None);
    let mut rows = Vec::new();
    for &(eval, module, primal, derivative) in EVALS {
        if !only.is_empty() && !only.iter().any(|o| o == eval) {
            continue;
        }
        let path = dir.join(format!("{module}.slope"));
        let text = std::fs::read_to_string(&path).map_err(|e| {
            plain_error(
                Code::E0303,
                format!("cannot read {}: {e}", path.display()),
                Some("`slope bench` runs the GradBench examples: start it in the repository, or pass --dir".into()),
            )
        })?;
        let start = Instant::now();
        let mut program = super::compile_text(&path.display().to_string(), &text)?;
        program.engine = engine;
        program.executable(engine)?;
        let compile = start.elapsed();
        super::print_timings(Some(eval), &program, engine, start)?;
        let mut workloads = fixture_workloads(&fixtures.join(eval), primal).map_err(workload_error)?;
        if let Some(inputs) = inputs {
            workloads.extend(message_workloads(&inputs.join(format!("{eval}.jsonl")), primal).map_err(workload_error)?);
        }
        for (name, input) in workloads {
            let p = measure(&program, primal, &input, runs)?;
            let d = measure(&program, derivative, &input, runs)?;
            rows.push(Row {
                eval,
                workload: name,
                compile,
                primal: p.median,
                derivative: d.median,
                best: (p.min, d.min),
                peak: d.peak,
            });
        }
    }
    Ok(table(&rows, engine))
}

/// The derivatives `--derivative` can build from the entry itself.
const OPERATORS: &[&str] = &["grad", "jvp", "vjp", "jacfwd", "jacrev", "hessian"];

/// `slope bench FILE --entry E --input IN [--derivative D]`.
pub fn run_program(
    file: &Path,
    entry: Option<&str>,
    input: &Path,
    derivative: Option<&str>,
    runs: usize,
    engine: Engine,
) -> Result<String, CliFailure> {
    let name = file.display().to_string();
    let text = super::read(file)?;
    let base = super::compile_text(&name, &text)?;
    let entry = base.entry_name(entry)?;
    // The derivative as the user named it (the wrapper entry's name is ours).
    let asked = derivative;
    let (source, derivative) = match derivative {
        None => (text, None),
        Some(d) if base.entries().contains(&d) => (text, Some(d.to_string())),
        Some(op) if OPERATORS.contains(&op) => {
            let (wrapper, wrapper_name) = derivative_wrapper(&base, &entry, op)?;
            (
                format!(
                    "{text}

{wrapper}
"
                ),
                Some(wrapper_name),
            )
        }
        Some(other) => {
            return Err(plain_error(
                Code::E0305,
                format!("`--derivative {other}` is neither an entry of {name} nor a derivative operator"),
                Some(format!(
                    "give another entry that takes the same input, or one of {}; the entries: {}",
                    OPERATORS.join(", "),
                    base.entries().join(", ")
                )),
            ))
        }
    };
    let start = Instant::now();
    let mut program = super::compile_text(&name, &source)?;
    program.engine = engine;
    program.executable(engine)?;
    let compile = start.elapsed();
    super::print_timings(Some(&name), &program, engine, start)?;
    let input = super::parse_json(&super::read(input)?, &input.display().to_string())?;
    let p = measure(&program, &entry, &input, runs)?;
    let mut out = String::from(
        "| program | entry | compile (ms) | entry (ms) | derivative | derivative (ms) | derivative / entry | peak memory, derivative (MB) |\n\
         |---|---|---:|---:|---|---:|---:|---:|\n",
    );
    let (label, dcol) = match &derivative {
        Some(d) => {
            let m = measure(&program, d, &input, runs)?;
            let ratio = m.median.as_secs_f64() / p.median.as_secs_f64().max(1e-9);
            (asked.unwrap_or(d.as_str()), format!("{} | {ratio:.2} | {:.2}", ms(m.median), m.peak as f64 / 1e6))
        }
        None => ("—", "— | — | —".to_string()),
    };
    out.push_str(&format!("| {name} | {entry} | {} | {} | {label} | {dcol} |\n", ms(compile), ms(p.median)));
    let engine = engine.description();
    out.push_str(&format!("\nmedian of {} runs after one warm-up; engine: {engine}\n", runs.max(1)));
    Ok(out)
}

/// An entry computing `op` of `entry` with respect to its float parameters
/// (the others are held constant), at the entry's own input: `jvp` takes the
/// point itself as the tangent and `vjp` the entry's result as the
/// cotangent, so the wrapper needs no input of its own. Returns the source
/// and the wrapper's name (`bench_grad`, made unique).
pub fn derivative_wrapper(program: &Program, entry: &str, op: &str) -> Result<(String, String), CliFailure> {
    let (def, info) = program.checked.def(entry).expect("an entry of the program");
    // The wrapper's parameters are the entry's, by name, so it takes the same input.
    let mut names = Vec::new();
    for p in &def.params {
        match &p.pat {
            slope::syntax::ast::Pat::Var(n) => names.push(n.text.clone()),
            _ => {
                return Err(plain_error(
                    Code::E0305,
                    format!("`--derivative` needs the parameters of `{entry}` to be plain names, not patterns"),
                    Some("name the parameter and take it apart with `let` in the body".into()),
                ))
            }
        }
    }
    let floats: Vec<bool> = info.param_types.iter().map(all_floats).collect();
    if !floats.contains(&true) {
        return Err(plain_error(
            Code::E0116,
            format!("`{entry}` has no parameter made of floats to differentiate with respect to"),
            Some("the derivative operators differentiate with respect to the float parameters".into()),
        ));
    }
    let mut name = format!("bench_{op}");
    while program.checked.infos.contains_key(&name) || program.checked.generics.contains_key(&name) {
        name.push('_');
    }
    let sizes: String = info.size_params.iter().map(|n| format!("[{n}]")).collect();
    let params: Vec<String> =
        info.param_types.iter().zip(&names).map(|(t, n)| format!("({n}: {})", t.full_text())).collect();
    let diff: Vec<usize> = (0..floats.len()).filter(|&k| floats[k]).collect();
    let tuple = |prefix: &str| {
        let items: Vec<String> = diff.iter().map(|&k| format!("{prefix}{}", names[k])).collect();
        if items.len() == 1 {
            items[0].clone()
        } else {
            format!("({})", items.join(", "))
        }
    };
    // `d_x` stands for the parameter `x` inside the differentiated function.
    let call_args: Vec<String> =
        (0..floats.len()).map(|k| if floats[k] { format!("d_{}", names[k]) } else { names[k].clone() }).collect();
    let function = format!("(\\{} -> {entry} {})", tuple("d_"), call_args.join(" "));
    let point = tuple("");
    let body = match op {
        "jvp" => format!("jvp {function} {point} {point}"),
        "vjp" => format!("vjp {function} {point} ({entry} {})", names.join(" ")),
        _ => format!("{op} {function} {point}"),
    };
    Ok((format!("entry {name} {sizes} {} =\n  {body}", params.join(" ")), name))
}

/// Whether a type is made of floats only (what the AD operators differentiate).
fn all_floats(t: &slope::types::Type) -> bool {
    use slope::types::Type;
    match t {
        Type::Scalar(s) => s.is_float(),
        Type::Array(e, _) => all_floats(e),
        Type::Tuple(ts) => ts.iter().all(all_floats),
        Type::Record(fs) => fs.iter().all(|(_, t)| all_floats(t)),
        _ => false,
    }
}

struct Row {
    eval: &'static str,
    workload: String,
    compile: Duration,
    primal: Duration,
    derivative: Duration,
    /// Fastest primal and derivative runs (robust to a noisy machine).
    best: (Duration, Duration),
    peak: usize,
}

struct Measured {
    median: Duration,
    min: Duration,
    peak: usize,
}

/// Median and minimum time of `runs` calls after one warm-up, and the peak memory of one call.
fn measure(program: &Program, entry: &str, input: &serde_json::Value, runs: usize) -> Result<Measured, CliFailure> {
    let args = program.decode_json_args(entry, input)?;
    let watch = memory::watch();
    program.call_values(entry, &args)?;
    let growth = watch.peak();
    // Native code: the most arena memory the call held (the arena reuses
    // freed blocks across calls, so heap growth would undercount it); the
    // interpreter: the heap growth during the call.
    let peak = match program.engine {
        native @ (Engine::Multicore | Engine::Sequential) => program.native_on(native)?.code.peak_bytes(),
        Engine::Interp => growth,
    };
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        program.call_values(entry, &args)?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(Measured { median: times[times.len() / 2], min: times[0], peak })
}

/// `(workload, input)` of every fixture of the primal function in `dir`.
fn fixture_workloads(dir: &Path, primal: &str) -> Result<Vec<(String, serde_json::Value)>, String> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(d) => d.flatten().map(|e| e.path()).collect(),
        Err(_) => return Ok(Vec::new()),
    };
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        let fixture: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", f.display()))?;
        if fixture["function"] != primal {
            continue;
        }
        let stem = f.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        let name = fixture["workload"].as_str().map(str::to_string).unwrap_or(stem);
        out.push((format!("{name} (fixture)"), fixture["input"].clone()));
    }
    Ok(out)
}

/// Workloads from a GradBench message file: the inputs of the primal's evaluate messages.
fn message_workloads(file: &Path, primal: &str) -> Result<Vec<(String, serde_json::Value)>, String> {
    let Ok(text) = std::fs::read_to_string(file) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let m: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("{}: {e}", file.display()))?;
        if m["kind"] != "evaluate" || m["function"] != primal {
            continue;
        }
        let mut input = m["input"].clone();
        if let Some(obj) = input.as_object_mut() {
            obj.remove("min_runs");
            obj.remove("min_seconds");
        }
        out.push((m["description"].as_str().unwrap_or("default").to_string(), input));
    }
    Ok(out)
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn table(rows: &[Row], engine: Engine) -> String {
    let mut out = String::from(
        "| eval | workload | compile (ms) | primal (ms) | derivative (ms) | derivative / primal | same, fastest runs | peak memory, derivative (MB) |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let ratio = r.derivative.as_secs_f64() / r.primal.as_secs_f64().max(1e-9);
        let best = r.best.1.as_secs_f64() / r.best.0.as_secs_f64().max(1e-9);
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} |\n",
            r.eval,
            r.workload,
            ms(r.compile),
            ms(r.primal),
            ms(r.derivative),
            ratio,
            best,
            r.peak as f64 / 1e6
        ));
    }
    let engine = engine.description();
    out.push_str(&format!("\nmedian of the measured runs after one warm-up; engine: {engine}\n"));
    out
}
