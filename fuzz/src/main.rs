//! The `slope-fuzz` command: fuzz for as long as asked, replay a finding, or
//! (internally) be a worker. See `docs/fuzzing.md`.
//!
//! Exit status: 0 when nothing was found, 1 when something was, 2 when the
//! fuzzer itself could not run.

use clap::{Parser, Subcommand};
use slope_fuzz::case::Target;
use slope_fuzz::corpus::{workspace_root, Corpus};
use slope_fuzz::targets::Outcome;
use slope_fuzz::{local, report, supervisor, worker};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "slope-fuzz", about = "Slope's own fuzzer: mutated programs and inputs against the compiler")]
#[command(args_conflicts_with_subcommands = true)]
struct Args {
    /// `check`, `native`, `engines`, `decode` or `all` (each gets an equal share of the time).
    #[arg(long, default_value = "all")]
    target: String,
    /// How long to run, in all (default 60 unless --cases is given).
    #[arg(long)]
    seconds: Option<u64>,
    /// Run this many cases per target instead of a time.
    #[arg(long, conflicts_with = "seconds")]
    cases: Option<u64>,
    /// The run's seed (default: from the clock; printed). Case i of a seed is always the same case.
    #[arg(long)]
    seed: Option<u64>,
    /// The first case index.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Where findings are saved (default: fuzz/findings in the workspace).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A case with no result after this many seconds is a hang.
    #[arg(long, default_value_t = 20)]
    hang_seconds: u64,
    /// The reference engine's budget per `engines` case; past it the case is slow, not a hang.
    #[arg(long, default_value_t = 1.0)]
    slow_seconds: f64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a saved case again, in this process: `replay fuzz/findings/<finding>/case.json`.
    Replay { case: PathBuf },
    /// Run cases for a supervisor (internal).
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        target: String,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        first: u64,
        #[arg(long)]
        case_file: PathBuf,
        #[arg(long)]
        slow_seconds: f64,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Some(Command::Replay { ref case }) => replay(case),
        Some(Command::Worker { ref target, seed, first, ref case_file, slow_seconds }) => {
            work(target, seed, first, case_file, slow_seconds)
        }
        None => fuzz(&args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("slope-fuzz: {e}");
        ExitCode::from(2)
    })
}

fn parse_target(name: &str) -> Result<Vec<Target>, String> {
    match name {
        "all" => Ok(Target::ALL.to_vec()),
        _ => Target::from_name(name)
            .map(|t| vec![t])
            .ok_or(format!("unknown target `{name}` (check, native, engines, decode or all)")),
    }
}

fn work(
    target: &str,
    seed: u64,
    first: u64,
    case_file: &std::path::Path,
    slow_seconds: f64,
) -> Result<ExitCode, String> {
    let target = Target::from_name(target).ok_or(format!("unknown target `{target}`"))?;
    let slow = Duration::from_secs_f64(slow_seconds);
    worker::run(worker::Options { target, seed, first, case_file: case_file.to_path_buf(), slow })?;
    Ok(ExitCode::SUCCESS)
}

fn fuzz(args: &Args) -> Result<ExitCode, String> {
    let seed = args.seed.unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        now.as_secs() ^ now.subsec_nanos() as u64
    });
    let time = match (args.seconds, args.cases) {
        (_, Some(_)) => None,
        (seconds, None) => Some(Duration::from_secs(seconds.unwrap_or(60))),
    };
    let options = supervisor::Options {
        targets: parse_target(&args.target)?,
        time,
        cases: args.cases,
        seed,
        first: args.first,
        out: args.out.clone().unwrap_or_else(|| workspace_root().join("fuzz/findings")),
        hang: Duration::from_secs(args.hang_seconds),
        slow: Duration::from_secs_f64(args.slow_seconds),
        program: std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?,
    };
    let (tallies, store) = supervisor::run(&options)?;
    println!("seed {seed}\n{}", report::table(&tallies));
    let summary = store.summary();
    if summary.is_empty() {
        println!("no findings");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\nfindings (saved under {}):\n{summary}", options.out.display());
        Ok(ExitCode::from(1))
    }
}

fn replay(path: &std::path::Path) -> Result<ExitCode, String> {
    let path = if path.is_dir() { path.join("case.json") } else { path.to_path_buf() };
    let record = worker::read_record(&path)?;
    let corpus = Arc::new(Corpus::load(&workspace_root())?);
    match local::replay(corpus, &record) {
        Outcome::Pass(stats) => {
            println!("{} case {}: passes ({stats:?})", record.target.name(), record.index);
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Finding(finding) => {
            println!("{} case {}: {}\n{}", record.target.name(), record.index, finding.kind.name(), finding.message);
            Ok(ExitCode::from(1))
        }
    }
}
