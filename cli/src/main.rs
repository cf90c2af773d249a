//! The `slope` command-line compiler: a thin shell over the library.
//!
//! Every failure is a diagnostic on stderr and a non-zero exit status (1 for
//! errors in the program or its inputs, 2 for command-line misuse); results go
//! to stdout as JSON.

use clap::builder::TypedValueParser as _;
use clap::{Parser, Subcommand};
mod commands;
use slope::api::Engine;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `--engine NAME`: the back ends by the names `Engine::name` gives them.
fn engine_parser() -> impl clap::builder::TypedValueParser<Value = Engine> {
    let names = Engine::ALL.map(Engine::name);
    clap::builder::PossibleValuesParser::new(names).map(|name: String| Engine::parse(&name).expect("a possible value"))
}

#[derive(Parser)]
#[command(name = "slope", version, about = "Slope: an array language with compile-time automatic differentiation")]
struct Args {
    /// Reverse mode through loops keeps √n checkpoints instead of taping every iteration.
    #[arg(long, global = true)]
    checkpoint: bool,
    /// What reverse mode saves from a `map` body for the backward sweep
    /// instead of recomputing it: nothing, host-calls (the default: exp,
    /// log, tanh, …), slow-ops (also sqrt, division, **) or everything.
    #[arg(long, global = true, value_name = "POLICY",
          value_parser = clap::builder::PossibleValuesParser::new(["nothing", "host-calls", "slow-ops", "everything"]))]
    save: Option<String>,
    /// Native code may reassociate floating-point sums and products in
    /// loops (four strands): faster, the same for every thread count, but
    /// their last bits may differ from `--interp` — more where a sum cancels.
    #[arg(long, global = true)]
    reassociate: bool,
    /// Print how long each compiler pass takes (stderr).
    #[arg(long, global = true)]
    timings: bool,
    /// The largest input (JSON or .npy file, standard input, a REPL line, a
    /// GradBench message) accepted, in bytes; larger is E0308.
    #[arg(long, global = true, default_value_t = 1 << 30)]
    max_input_bytes: u64,
    /// Threads native code runs parallel loops on (default: `SLOPE_THREADS`,
    /// else every core). Results are the same for every count.
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and type-check a program; print diagnostics only.
    Check { file: PathBuf },
    /// Run an entry point and print its result as JSON.
    Run {
        file: PathBuf,
        /// The entry point to run (default: the only entry, or `main`).
        #[arg(long)]
        entry: Option<String>,
        /// A JSON file mapping parameter names to values (a bare value for a one-parameter entry).
        #[arg(long)]
        input: Option<PathBuf>,
        /// The back end that runs the call: multicore (native code, the default),
        /// sequential (native code on one thread) or interp (the reference interpreter).
        #[arg(long, value_parser = engine_parser(), default_value = "multicore")]
        engine: Engine,
        /// Shorthand for `--engine interp`.
        #[arg(long, conflicts_with = "engine")]
        interp: bool,
        /// Fail (E0205) when a `while` loop runs more iterations than this.
        #[arg(long, default_value_t = 1_000_000_000)]
        while_limit: u64,
        /// Arguments in parameter order: JSON literals, or paths to .json / .npy files.
        #[arg(allow_negative_numbers = true)]
        args: Vec<String>,
    },
    /// Check an entry's derivatives: forward vs reverse (dot-product test) and both vs finite differences.
    Gradcheck {
        file: PathBuf,
        #[arg(long)]
        entry: Option<String>,
        /// The point: a JSON file as for `run --input`.
        #[arg(long)]
        input: PathBuf,
        /// How many random points near the input to check besides it.
        #[arg(long, default_value_t = 3)]
        points: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Compile a program ahead of time into a C library (libNAME.so or
    /// libNAME.a) and its header NAME.h: one C function per entry.
    Build {
        file: PathBuf,
        /// The library: libNAME.so (shared) or libNAME.a (static).
        #[arg(short, long)]
        output: PathBuf,
        /// Export only this entry (repeatable; default: every entry).
        #[arg(long)]
        entry: Vec<String>,
        /// The C prefix of the functions (default: NAME of the output).
        #[arg(long)]
        name: Option<String>,
        /// Where to write the header (default: NAME.h beside the library).
        #[arg(long)]
        header: Option<PathBuf>,
        /// The runtime library libslope_capi.a (default: SLOPE_CAPI_LIB, else beside this executable).
        #[arg(long)]
        runtime: Option<PathBuf>,
        /// Fail (E0205) when a `while` loop runs more iterations than this.
        #[arg(long, default_value_t = 1_000_000_000)]
        while_limit: u64,
    },
    /// Run an entry in the interpreter and print its operation counts (the cost model).
    Cost {
        file: PathBuf,
        #[arg(long)]
        entry: Option<String>,
        #[arg(long)]
        input: PathBuf,
    },
    /// Benchmark the GradBench examples: compile time, primal and derivative time, ratio, peak memory.
    Bench {
        /// Where the example modules are.
        #[arg(long, default_value = "examples/gradbench")]
        dir: PathBuf,
        /// GradBench fixtures (their inputs are workloads).
        #[arg(long, default_value = "tests/fixtures")]
        fixtures: PathBuf,
        /// Message files from `scripts/gradbench_inputs.py generate` (GradBench's default sizes).
        #[arg(long)]
        inputs: Option<PathBuf>,
        /// Measured runs per function (the median is reported), after one warm-up.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// The back end to time: multicore (the default), sequential or interp.
        #[arg(long, value_parser = engine_parser(), default_value = "multicore")]
        engine: Engine,
        /// Shorthand for `--engine interp`.
        #[arg(long, conflicts_with = "engine")]
        interp: bool,
        /// With a program FILE: the entry to time (default: the only entry, or `main`).
        #[arg(long)]
        entry: Option<String>,
        /// With a program FILE: its input, a JSON file as for `run --input`.
        #[arg(long)]
        input: Option<PathBuf>,
        /// With a program FILE: a derivative to time too — another entry taking the same
        /// input, or grad, jvp, vjp, jacfwd, jacrev, hessian of the entry.
        #[arg(long)]
        derivative: Option<String>,
        /// GradBench evals to time (e.g. `gmm lstm`), or one program FILE (with --input).
        evals: Vec<String>,
    },
    /// Run test programs (files or directories of .slope files): the cases, errors and gradchecks of their headers.
    Test {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print a compiler stage: ast, typed, ir, unary, ad, opt, segments, ownership, lowered, buffers, loops, parallel, strands, memory or clif (an unknown name lists the stages of the pipeline).
    Emit {
        #[arg(long, default_value = "ir")]
        stage: String,
        file: PathBuf,
        /// Print only this entry point (IR stages).
        #[arg(long)]
        entry: Option<String>,
        /// Optimise with this schedule (strategy language) instead of the default, for `--stage opt`.
        #[arg(long)]
        schedule: Option<String>,
        /// With `--stage clif`: print the machine code Cranelift makes of each function (after its optimiser and register allocator) instead of the CLIF as built.
        #[arg(long)]
        disassemble: bool,
    },
    /// Start an interactive session (reads plain lines when stdin is not a terminal).
    Repl,
    /// Act as a GradBench tool: protocol messages on stdin, responses on stdout.
    Gradbench {
        /// Where `<module>.slope` files are read from.
        #[arg(long, default_value = "examples/gradbench")]
        dir: PathBuf,
        /// The back end that runs evaluations: multicore (the default), sequential or interp.
        #[arg(long, value_parser = engine_parser(), default_value = "multicore")]
        engine: Engine,
        /// Shorthand for `--engine interp`.
        #[arg(long, conflicts_with = "engine")]
        interp: bool,
    },
}

/// mimalloc (Cargo.toml says why), counting heap bytes while `slope bench`
/// measures the interpreter's peak memory.
#[global_allocator]
static ALLOCATOR: commands::bench::memory::Counting = commands::bench::memory::Counting;

fn main() -> ExitCode {
    // Every command runs on a big stack: deeply nested programs (a sum of
    // 100,000 terms is an expression 100,000 levels deep) recurse deeply in
    // the compiler's passes, also in the REPL and the GradBench adapter.
    slope::driver::with_stack(command)
}

fn command() -> ExitCode {
    let args = Args::parse();
    commands::CHECKPOINT.store(args.checkpoint, std::sync::atomic::Ordering::Relaxed);
    commands::REASSOCIATE.store(args.reassociate, std::sync::atomic::Ordering::Relaxed);
    if let Some(name) = &args.save {
        let _ = commands::SAVE.set(slope::ad::Save::from_name(name).expect("clap checked the name"));
    }
    commands::TIMINGS.store(args.timings, std::sync::atomic::Ordering::Relaxed);
    commands::MAX_INPUT_BYTES.store(args.max_input_bytes, std::sync::atomic::Ordering::Relaxed);
    let threads = match args.threads {
        Some(n) => Ok(usize::from(n)),
        None => slope_runtime::parallel::threads_from_env(),
    };
    match threads {
        Ok(n) => slope_runtime::parallel::set_default_threads(n),
        Err(message) => {
            commands::usage_error(&message).report();
            return ExitCode::from(1);
        }
    }
    let ad_flag = if args.checkpoint { Some("--checkpoint") } else { args.save.as_ref().map(|_| "--save") };
    if let (true, Command::Repl) = (args.reassociate, &args.command) {
        commands::usage_error("--reassociate is not supported by `slope repl`, which compiles as it goes").report();
        return ExitCode::from(1);
    }
    if let (Some(flag), Command::Repl | Command::Gradbench { .. }) = (ad_flag, &args.command) {
        // Both compile as they go, with the library's defaults: say so
        // rather than ignore the flag.
        commands::usage_error(&format!(
            "{flag} is not supported by `slope repl` and `slope gradbench` \
             (it applies to run, emit, bench, test, cost, gradcheck and check)"
        ))
        .report();
        return ExitCode::from(1);
    }
    let result = match args.command {
        Command::Check { file } => commands::check(&file),
        Command::Run { file, entry, input, engine, interp, while_limit, args } => {
            let engine = if interp { Engine::Interp } else { engine };
            commands::run(&file, entry.as_deref(), input.as_deref(), &args, while_limit, engine)
        }
        Command::Emit { stage, file, entry, schedule, disassemble } => {
            commands::emit(&file, &stage, entry.as_deref(), schedule.as_deref(), disassemble)
        }
        Command::Build { file, output, entry, name, header, runtime, while_limit } => {
            let request = slope::build::Request { output, name, entries: entry, header, runtime };
            commands::build(&file, &request, while_limit)
        }
        Command::Cost { file, entry, input } => commands::cost(&file, entry.as_deref(), &input),
        Command::Gradcheck { file, entry, input, points, seed } => {
            commands::gradcheck(&file, entry.as_deref(), &input, points, seed)
        }
        Command::Bench { dir, fixtures, inputs, runs, engine, interp, entry, input, derivative, evals } => {
            let engine = if interp { Engine::Interp } else { engine };
            let program = evals.first().filter(|e| e.ends_with(".slope") || Path::new(e).is_file());
            match (program, input) {
                (Some(file), Some(input)) if evals.len() == 1 => commands::bench::run_program(
                    Path::new(file),
                    entry.as_deref(),
                    &input,
                    derivative.as_deref(),
                    runs,
                    engine,
                ),
                (Some(_), _) | (None, Some(_)) => Err(commands::usage_error(
                    "a program is benchmarked as `slope bench FILE --input IN.json [--entry E] [--derivative D]`",
                )),
                (None, None) if entry.is_some() || derivative.is_some() => {
                    Err(commands::usage_error("--entry and --derivative go with a program FILE and --input"))
                }
                (None, None) => commands::bench::run(&dir, &fixtures, inputs.as_deref(), runs, &evals, engine),
            }
        }
        Command::Test { paths } => return commands::test::run(&paths),
        Command::Repl => return commands::repl::run(),
        Command::Gradbench { dir, engine, interp } => {
            let engine = if interp { Engine::Interp } else { engine };
            return commands::gradbench::run(&dir, engine);
        }
    };
    match result {
        Ok(out) => {
            // Output that could not be written (`>/dev/full`, a closed pipe)
            // is a failure of the command, not a success nobody saw.
            match commands::write_result(&out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(failure) => {
                    failure.report();
                    ExitCode::from(1)
                }
            }
        }
        Err(failure) => {
            failure.report();
            ExitCode::from(1)
        }
    }
}
