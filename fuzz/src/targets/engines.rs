//! The `engines` target: the native back ends (multicore and sequential)
//! against the interpreter.
//!
//! Input: a program and the seed of its arguments. Output: the counts of a
//! passing case, or a [`Finding`]: for every entry (up to [`MAX_ENTRIES`])
//! on a tame and a wild set of arguments (`inputs.rs`), each native back
//! end and the interpreter must give the same result or the same error
//! (`slope::testfile::engines_agree`), neither may report E0900, and the JIT
//! must leave its arguments as they were. Calls within the 2^40-element
//! limit that the system refuses memory for are not compared (Note [Sizes
//! the system decides]).

use super::{compile, generate_code, no_internal_error, Checked, Finding, Kind, Observer, Stats, Step};
use crate::inputs::{self, Flavour};
use crate::rng::Rng;
use slope::api::{Engine, Failure, Program};
use slope::diagnostic::RenderStyle;

/// The `while` iteration limit of the `engines` target (both engines obey
/// it): a loop that never ends fails (E0205) within a second instead of 10^9
/// iterations later.
pub const WHILE_LIMIT: u64 = 100_000;

/// At most this many entries of a program are called (each on two arguments).
const MAX_ENTRIES: usize = 4;

pub fn run(text: &str, input_seed: u64, observer: &mut dyn Observer) -> Checked<Stats> {
    observer.step(Step::Other);
    let Some(mut program) = compile(text)? else { return Ok(Stats::default()) };
    program.options.while_limit = WHILE_LIMIT;
    generate_code(&program)?;
    let mut rng = Rng::new(input_seed);
    let mut entries: Vec<String> = program.entries().iter().map(|e| e.to_string()).collect();
    while entries.len() > MAX_ENTRIES {
        entries.remove(rng.below(entries.len()));
    }
    let mut stats = Stats { accepted: true, ..Stats::default() };
    for entry in &entries {
        let signature = program.ir.func(entry).expect("an entry").signature.clone();
        for flavour in [Flavour::Tame, Flavour::Wild] {
            let Some(args) = inputs::arguments(&signature, &mut rng, flavour) else { continue };
            let input = inputs::input_json(&signature, &args);
            observer.step(Step::Call { entry, input: &input });
            let failed = call_both(&mut program, entry, &args, &input, observer)?;
            stats.calls += 1;
            stats.failed_calls += u32::from(failed);
        }
    }
    Ok(stats)
}

/// One call on every back end; `Ok(true)` when they failed alike (or a
/// native one was refused memory).
fn call_both(
    program: &mut Program,
    entry: &str,
    args: &[slope_runtime::Value],
    input: &serde_json::Value,
    observer: &mut dyn Observer,
) -> Checked<bool> {
    let run = |program: &mut Program, engine: Engine| {
        program.engine = engine;
        program.call_values(entry, args).map(|v| inputs::value_json(&v))
    };
    observer.step(Step::Reference);
    let reference = run(program, Engine::Interp);
    let before: Vec<serde_json::Value> = args.iter().map(inputs::value_json).collect();
    let mut failed = reference.is_err();
    // Each native back end against the interpreter (Note [Three back ends] in `slope::backend`).
    for native_engine in [Engine::Multicore, Engine::Sequential] {
        observer.step(Step::Native { reference_out_of_memory: out_of_memory(&reference) });
        let native = run(program, native_engine);
        observer.step(Step::Other);
        let jit = format!("the {} back end", native_engine.name());
        for (result, engine) in [(&reference, "the interpreter"), (&native, jit.as_str())] {
            if let Err(failure) = result {
                no_internal_error(failure, &format!("calling `{entry}` in {engine}"))
                    .map_err(|f| Finding::new(f.kind, format!("{}\ninput: {input}", f.message)))?;
            }
        }
        let after: Vec<serde_json::Value> = args.iter().map(inputs::value_json).collect();
        if before != after {
            let message = format!("{jit} changed its arguments\nentry `{entry}`, input: {input}");
            return Err(Finding::new(Kind::Disagreement, message));
        }
        if system_refused(&reference) || system_refused(&native) {
            // See Note [Sizes the system decides].
            failed = true;
            continue;
        }
        slope::testfile::engines_agree(&native, &reference).map_err(|e| {
            let first = e.lines().next().unwrap_or_default();
            let message = format!("{jit} and the interpreter disagree: {first}\nentry `{entry}`, input: {input}\n{e}");
            Finding::new(Kind::Disagreement, message)
        })?;
    }
    Ok(failed)
}

fn out_of_memory(result: &Result<serde_json::Value, Failure>) -> bool {
    result.as_ref().is_err_and(|f| f.codes().iter().any(|c| c.as_str() == "E0207"))
}

/// An out-of-memory error for an array within the 2^40-element limit: the
/// system refused the memory (the message names no count beyond the limit).
fn system_refused(result: &Result<serde_json::Value, Failure>) -> bool {
    let Err(failure) = result else { return false };
    let message = failure.render(RenderStyle::Short);
    let beyond_limit = message.contains("2^40")
        || message.split(|c: char| !c.is_ascii_digit()).any(|digits| {
            digits.parse::<u64>().map_or(!digits.is_empty(), |n| n > slope_runtime::native::MAX_ELEMENTS)
        });
    out_of_memory(result) && !beyond_limit
}

// Note [Sizes the system decides]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// An array of more than 2^40 elements is E0207 on both engines, by rule. A
// smaller one that is still huge is E0207 only if the system refuses the
// memory — and the engines need different memory: the interpreter
// materialises `iota n` where the JIT fuses it into the loop that reads it.
// So the JIT may compute `sum (iota (2^40))` — for hours — where the
// interpreter failed at once, and `engines_agree` accepts different
// out-of-memory errors for the same reason. The fuzzer therefore
// (1) never draws integer arguments between 2^6 and 2^40 (`inputs.rs`);
// (2) compares no results when either engine was refused memory for an
//     array within the limit (its message names no count beyond 2^40): the
//     other engine may succeed, or fail later for another reason;
// (3) treats a JIT call that runs long after the interpreter ran out of
//     memory like a long interpreter call: the input asked for too much
//     work, the case is "slow", not a hang (the worker's watchdog in
//     `worker.rs`).
// Program literals can still be mid-sized (a mutation writes `4294967296`);
// rules (2) and (3) cover them.
