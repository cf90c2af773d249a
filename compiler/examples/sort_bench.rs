//! Times Slope's `sort`, `argsort` and the gradient of a sort-based loss on
//! 10⁶ random `f64`s against Rust's `sort_unstable_by` on the same data, in
//! the same process, and prints a table (docs/performance.md, "Sorting").
//!
//! Run: `cargo run --release -p slope --example sort_bench [N] [RUNS]`.

use slope::api::Program;
use slope_runtime::{ArrayData, Value};
use std::time::Instant;

const SOURCE: &str = "
entry sorted [n] (xs: [n]f64) : [n]f64 = sort xs
entry permutation [n] (xs: [n]f64) : [n]i64 = argsort xs
entry gradient [n] (xs: [n]f64) : [n]f64 =
  grad (\\(v: [n]f64) -> sum (map2 (\\a i -> a * f64 i) (sort v) (iota n))) xs
";

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(1_000_000, |a| a.parse().expect("N: a number of elements"));
    let runs: usize = args.next().map_or(11, |a| a.parse().expect("RUNS: a number of runs"));
    // A 64-bit LCG: distinct values in [0, 1), the same on every machine.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<f64> = (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect();

    let program = Program::compile("sort_bench", SOURCE, &|_, p| Err(format!("no imports: {p}")))
        .unwrap_or_else(|f| panic!("{f:?}"));
    let args = [Value::array(vec![n], ArrayData::F64(data.clone()))];
    let epoch = Instant::now();
    let mut clock = || epoch.elapsed().as_nanos() as u64;
    let mut time_entry = |entry: &str| -> (f64, Value) {
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..runs {
            let (v, ns) = program.call_values_timed(entry, &args, &mut clock).expect("the entry runs");
            times.push(ns as f64 / 1e6);
            last = Some(v);
        }
        (median(times), last.unwrap())
    };
    let (sort_ms, sorted) = time_entry("sorted");
    let (argsort_ms, _) = time_entry("permutation");
    let (grad_ms, _) = time_entry("gradient");

    let mut times = Vec::new();
    let mut reference = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let mut v = data.clone();
        v.sort_unstable_by(|a, b| a.partial_cmp(b).expect("no NaNs"));
        times.push(start.elapsed().as_secs_f64() * 1e3);
        reference = v;
    }
    let rust_ms = median(times);
    match sorted {
        Value::Array(a) => assert!(matches!(&a.data, ArrayData::F64(v) if *v == reference), "sort differs from Rust's"),
        _ => panic!("sort returned a non-array"),
    }

    println!("n = {n}, median of {runs} runs (ms); reference: Rust `sort_unstable_by` on a copy, same run");
    println!("| computation | ms | / Rust sort_unstable_by |");
    println!("|---|---:|---:|");
    println!("| Rust `sort_unstable_by` (clone + sort) | {rust_ms:.2} | 1.00 |");
    for (what, ms) in [
        ("Slope `sort xs`", sort_ms),
        ("Slope `argsort xs`", argsort_ms),
        ("Slope gradient of `sum (sort xs * weights)`", grad_ms),
    ] {
        println!("| {what} | {ms:.2} | {:.2} |", ms / rust_ms);
    }
}
