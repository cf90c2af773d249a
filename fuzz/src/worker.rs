//! The worker: `slope-fuzz worker`, the child process that runs cases.
//!
//! Input: a target, a seed, the first case index and the path of the case
//! file. Output: one line per event on stdout, for the supervisor:
//!
//! ```text
//! start I                      case I is written to the case file and starts
//! step reference|native|other  where an `engines` case is
//! done I ok A C F              passed: accepted (0/1), calls, failed calls
//! done I slow                  the reference engine took too long; the worker exits
//! done I finding {json}        {"kind", "message", "record"}
//! recycle                      the worker has grown too large and exits
//! ```
//!
//! Invariants: the case file holds the running case (and, for `engines`, the
//! call under way) before anything of it runs, so a case that aborts the
//! process or never ends is still on disk; cases run on one thread with the
//! compiler's big stack, while the main thread watches the clock (Note [Slow
//! is not a hang]).

use crate::case::{self, Record, Target};
use crate::corpus::{workspace_root, Corpus};
use crate::panics;
use crate::targets::{Executor, Observer, Outcome, Step};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A worker larger than this (resident) exits and is restarted: compiled
/// programs' code is not all given back.
const MAX_RESIDENT_BYTES: u64 = 3 << 30;

pub struct Options {
    pub target: Target,
    pub seed: u64,
    pub first: u64,
    pub case_file: PathBuf,
    /// The budget of the reference engine per case (Note [Slow is not a hang]).
    pub slow: Duration,
}

/// Time spent in the reference engine by the running case.
#[derive(Default)]
struct Watch {
    since: Option<Instant>,
    spent: Duration,
}

impl Watch {
    fn start(&mut self) {
        self.since.get_or_insert_with(Instant::now);
    }
    fn stop(&mut self) {
        if let Some(since) = self.since.take() {
            self.spent += since.elapsed();
        }
    }
    fn over(&self, budget: Duration) -> bool {
        self.since.is_some_and(|since| self.spent + since.elapsed() > budget)
    }
}

/// Runs cases `first, first + 1, …` until killed (or too large).
pub fn run(options: Options) -> Result<(), String> {
    panics::install_quiet_hook();
    let corpus = Arc::new(Corpus::load(&workspace_root())?);
    let watch = Arc::new(Mutex::new(Watch::default()));
    let (cases, outcomes) = spawn_executor(corpus.clone(), options.target, watch.clone(), options.case_file.clone());
    for index in options.first.. {
        let case = case::generate(&corpus, options.target, options.seed, index);
        let record = Record { target: options.target, seed: options.seed, index, case, call: None };
        write_record(&options.case_file, &record)?;
        *watch.lock().expect("the watch") = Watch::default();
        say(&format!("start {index}"));
        cases.send(record).map_err(|_| "the case thread stopped")?;
        let outcome = loop {
            match outcomes.recv_timeout(Duration::from_millis(50)) {
                Ok(outcome) => break outcome,
                Err(mpsc::RecvTimeoutError::Timeout) if watch.lock().expect("the watch").over(options.slow) => {
                    say(&format!("done {index} slow"));
                    std::process::exit(0);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err("the case thread stopped".into()),
            }
        };
        report(index, outcome, &options.case_file)?;
        if resident_bytes() > MAX_RESIDENT_BYTES {
            say("recycle");
            return Ok(());
        }
    }
    Ok(())
}

/// The thread that runs cases: records in, outcomes out.
fn spawn_executor(
    corpus: Arc<Corpus>,
    target: Target,
    watch: Arc<Mutex<Watch>>,
    case_file: PathBuf,
) -> (mpsc::Sender<Record>, mpsc::Receiver<Outcome>) {
    let (case_tx, case_rx) = mpsc::channel::<Record>();
    let (outcome_tx, outcome_rx) = mpsc::channel();
    let run = move || {
        let mut executor = Executor::new(corpus);
        for record in case_rx {
            let case = record.case.clone();
            let mut observer = CaseObserver { record, watch: watch.clone(), case_file: case_file.clone() };
            let outcome = executor.run(target, &case, &mut observer);
            if outcome_tx.send(outcome).is_err() {
                break;
            }
        }
    };
    std::thread::Builder::new()
        .name("slope-fuzz-cases".into())
        .stack_size(slope::driver::STACK_BYTES)
        .spawn(run)
        .expect("a thread for the cases");
    (case_tx, outcome_rx)
}

fn report(index: u64, outcome: Outcome, case_file: &Path) -> Result<(), String> {
    match outcome {
        Outcome::Pass(s) => {
            say(&format!("done {index} ok {} {} {}", u8::from(s.accepted), s.calls, s.failed_calls));
        }
        Outcome::Finding(finding) => {
            // The file has the call under way, which the finding is about.
            let record = read_record(case_file)?;
            let line = serde_json::json!({
                "kind": finding.kind.name(),
                "message": finding.message,
                "record": record.to_json(),
            });
            say(&format!("done {index} finding {line}"));
        }
    }
    Ok(())
}

/// Saves each `engines` call before it runs, and times the reference engine.
struct CaseObserver {
    record: Record,
    watch: Arc<Mutex<Watch>>,
    case_file: PathBuf,
}

impl Observer for CaseObserver {
    fn step(&mut self, step: Step<'_>) {
        let mut watch = self.watch.lock().expect("the watch");
        watch.stop();
        match step {
            Step::Call { entry, input } => {
                self.record.call = Some((entry.to_string(), input.clone()));
                // A case file that cannot be written shows as a worker error at the next case.
                let _ = write_record(&self.case_file, &self.record);
            }
            Step::Reference => {
                watch.start();
                say("step reference");
            }
            Step::Native { reference_out_of_memory } => {
                if reference_out_of_memory {
                    watch.start();
                }
                say("step native");
            }
            Step::Other => say("step other"),
        }
    }
}

/// Writes the record whole or not at all (the process may die at any time).
pub fn write_record(path: &Path, record: &Record) -> Result<(), String> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, record.to_json().to_string())
        .and_then(|_| std::fs::rename(&partial, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

pub fn read_record(path: &Path) -> Result<Record, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let json = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Record::from_json(&json)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // The supervisor gone means the worker is about to be killed anyway.
    let _ = writeln!(out, "{line}").and_then(|_| out.flush());
}

/// This process's resident memory (Linux; 0 elsewhere).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|pages| pages.parse::<u64>().ok()).unwrap_or(0) * 4096
}

// Note [Slow is not a hang]
// ~~~~~~~~~~~~~~~~~~~~~~~~~
// A small program can ask for unbounded work: a mutation turns `for i < 3`
// into `for i < 9223372036854775807`, or an argument makes a loop run 2^62
// times. That is the program's meaning, not a defect, and the reference
// interpreter is what defines the meaning. So while an `engines` case runs
// the interpreter (or the JIT after the interpreter ran out of memory, Note
// [Sizes the system decides] in `targets/engines.rs`), the main thread
// measures it: past the budget (1 s by default, for all the case's calls)
// the case is reported `slow` and the worker exits — the case thread cannot
// be stopped any other way — to be restarted at the next case. Everything
// else (compiling, code generation, a JIT call the interpreter answered
// quickly) has no such excuse: past the supervisor's hang limit (20 s) it
// is a hang.
