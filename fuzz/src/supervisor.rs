//! The supervisor: runs the targets in worker processes for as long as asked.
//!
//! Input: [`Options`] (targets, time or case budget, seed, output folder,
//! hang and slow limits). Output: a [`Tally`] per target and the [`Store`] of
//! findings saved under the output folder.
//!
//! Each target gets an equal share of the time, one after another. Its cases
//! run in a worker (`slope-fuzz worker`, `worker.rs`) whose stdout the
//! supervisor reads line by line. A worker that dies in a case (an abort, a
//! stack overflow, a signal) is a `crash` finding; a case with no result
//! after the hang limit is a `hang` finding, and its worker is killed. Either
//! way the case is read back from the case file the worker wrote before
//! running it, and a new worker continues at the next case.
//! Invariant: the cases run are exactly `first, first + 1, …` (none skipped,
//! none repeated), so a run's findings are reproducible from its seed.

use crate::case::{Record, Target};
use crate::report::{Store, Tally};
use crate::targets::{Finding, Kind, Stats};
use crate::worker;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Options {
    pub targets: Vec<Target>,
    /// The whole run's time (shared equally by the targets) …
    pub time: Option<Duration>,
    /// … or the number of cases per target.
    pub cases: Option<u64>,
    pub seed: u64,
    pub first: u64,
    pub out: PathBuf,
    pub hang: Duration,
    pub slow: Duration,
    /// The `slope-fuzz` binary, run as `slope-fuzz worker` (this process's
    /// own executable, except in the bounded test).
    pub program: PathBuf,
}

/// How many slow cases a target keeps in `.work/`.
const MAX_SLOW_CASES_KEPT: u64 = 20;

/// A worker that dies this many times in a row before starting a case is broken.
const MAX_FAILED_STARTS: u32 = 3;

pub fn run(options: &Options) -> Result<(Vec<Tally>, Store), String> {
    let work = options.out.join(".work");
    std::fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let mut store = Store::new(&options.out);
    let share = options.time.map(|t| t / options.targets.len().max(1) as u32);
    let mut tallies = Vec::new();
    for &target in &options.targets {
        eprintln!(
            "slope-fuzz: {} for {}, seed {}, from case {}",
            target.name(),
            share.map_or_else(|| format!("{} cases", options.cases.unwrap_or(0)), |s| format!("{} s", s.as_secs())),
            options.seed,
            options.first
        );
        let mut run = TargetRun::new(options, target, share, &work);
        run.run(&mut store)?;
        tallies.push(run.tally);
    }
    Ok((tallies, store))
}

/// The case a worker is running.
struct Current {
    index: u64,
    started: Instant,
    step: String,
}

struct TargetRun<'o> {
    options: &'o Options,
    target: Target,
    deadline: Option<Instant>,
    end: Option<u64>,
    next: u64,
    case_file: PathBuf,
    stderr_file: PathBuf,
    tally: Tally,
    last_progress: Instant,
}

impl<'o> TargetRun<'o> {
    fn new(options: &'o Options, target: Target, share: Option<Duration>, work: &Path) -> TargetRun<'o> {
        TargetRun {
            options,
            target,
            deadline: share.map(|s| Instant::now() + s),
            end: options.cases.map(|n| options.first + n),
            next: options.first,
            case_file: work.join(format!("{}.case.json", target.name())),
            stderr_file: work.join(format!("{}.stderr", target.name())),
            tally: Tally::new(target),
            last_progress: Instant::now(),
        }
    }

    fn finished(&self) -> bool {
        self.end.is_some_and(|end| self.next >= end) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Workers, one after another, until the budget is spent.
    fn run(&mut self, store: &mut Store) -> Result<(), String> {
        let mut failed_starts = 0;
        while !self.finished() {
            let mut worker = Worker::spawn(self.options, self.target, self.next, &self.case_file, &self.stderr_file)?;
            match self.watch(&mut worker, store)? {
                Ended::Stopped => {
                    worker.kill();
                    return Ok(());
                }
                Ended::Restart { started_a_case } => {
                    let status = worker.wait();
                    failed_starts = if started_a_case || status.success() { 0 } else { failed_starts + 1 };
                    if failed_starts >= MAX_FAILED_STARTS {
                        return Err(format!("the worker fails to start ({status}):\n{}", self.stderr_tail()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Follows one worker until it ends, dies or hangs, or the budget is spent.
    fn watch(&mut self, worker: &mut Worker, store: &mut Store) -> Result<Ended, String> {
        let mut current: Option<Current> = None;
        let mut started_a_case = false;
        loop {
            if current.is_none() && self.finished() {
                return Ok(Ended::Stopped);
            }
            self.progress();
            let wait = match &current {
                Some(c) => (c.started + self.options.hang).saturating_duration_since(Instant::now()),
                None => Duration::from_millis(200),
            };
            match worker.lines.recv_timeout(wait.max(Duration::from_millis(10))) {
                Ok(line) => {
                    started_a_case |= line.starts_with("start ");
                    self.line(&line, &mut current, store)?;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let Some(c) = current.as_ref().filter(|c| c.started.elapsed() >= self.options.hang) else {
                        continue;
                    };
                    worker.kill();
                    let message = format!("no result after {} s, in step `{}`", self.options.hang.as_secs(), c.step);
                    self.found(c.index, Finding::new(Kind::Hang, message), store)?;
                    return Ok(Ended::Restart { started_a_case: true });
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if let Some(c) = current {
                        let status = worker.wait();
                        let message = crash_message(&status, &c.step, &self.stderr_tail());
                        self.found(c.index, Finding::new(Kind::Crash, message), store)?;
                    }
                    return Ok(Ended::Restart { started_a_case });
                }
            }
        }
    }

    /// Handles one line of the worker's protocol (see `worker.rs`).
    fn line(&mut self, line: &str, current: &mut Option<Current>, store: &mut Store) -> Result<(), String> {
        let mut words = line.splitn(4, ' ');
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("start"), Some(i), _, _) => {
                let index = i.parse().map_err(|_| format!("bad worker line `{line}`"))?;
                *current = Some(Current { index, started: Instant::now(), step: "compile".into() });
            }
            (Some("step"), Some(step), _, _) => {
                if let Some(c) = current {
                    c.step = step.to_string();
                }
            }
            (Some("done"), Some(_), Some("ok"), Some(counts)) => {
                let n: Vec<u32> = counts.split(' ').filter_map(|n| n.parse().ok()).collect();
                let stats = Stats {
                    accepted: n.first() == Some(&1),
                    calls: n.get(1).copied().unwrap_or(0),
                    failed_calls: n.get(2).copied().unwrap_or(0),
                };
                self.tally.pass(stats);
                self.done(current);
            }
            (Some("done"), Some(_), Some("slow"), _) => {
                self.tally.cases += 1;
                self.tally.slow += 1;
                self.keep_slow_case();
                self.done(current);
            }
            (Some("done"), Some(_), Some("finding"), Some(json)) => {
                let json: serde_json::Value =
                    serde_json::from_str(json).map_err(|e| format!("bad finding line: {e}"))?;
                let kind = json["kind"].as_str().and_then(Kind::from_name).ok_or("a finding of no known kind")?;
                let record = Record::from_json(&json["record"])?;
                let finding = Finding::new(kind, json["message"].as_str().unwrap_or_default());
                self.tally.finding(kind);
                self.save(&record, &finding, store)?;
                self.done(current);
            }
            (Some("recycle"), ..) => {}
            _ => return Err(format!("bad worker line `{line}`")),
        }
        Ok(())
    }

    /// Keeps the first few slow cases in `.work/` (not findings, but worth a look
    /// when there are many: they cost the run time).
    fn keep_slow_case(&self) {
        if self.tally.slow <= MAX_SLOW_CASES_KEPT {
            let name = format!("{}.slow-{}.json", self.target.name(), self.tally.slow);
            let _ = std::fs::copy(&self.case_file, self.case_file.with_file_name(name));
        }
    }

    fn done(&mut self, current: &mut Option<Current>) {
        if let Some(c) = current.take() {
            self.next = c.index + 1;
        }
    }

    /// A crash or a hang: the case comes from the case file.
    fn found(&mut self, index: u64, finding: Finding, store: &mut Store) -> Result<(), String> {
        self.tally.finding(finding.kind);
        self.next = index + 1;
        let record = worker::read_record(&self.case_file)?;
        if record.index != index {
            return Err(format!("the case file holds case {}, not {index}", record.index));
        }
        self.save(&record, &finding, store)
    }

    /// Saves a finding, and says so unless its group already has enough.
    fn save(&self, record: &Record, finding: &Finding, store: &mut Store) -> Result<(), String> {
        let first_line = finding.message.lines().next().unwrap_or_default();
        let saved = store.record(record, finding).map_err(|e| format!("cannot save a finding: {e}"))?;
        if let Some(dir) = saved {
            let (target, kind) = (record.target.name(), finding.kind.name());
            eprintln!("  {target} {kind} case {}: {first_line}\n    {}", record.index, dir.display());
        }
        Ok(())
    }

    fn progress(&mut self) {
        if self.last_progress.elapsed() >= Duration::from_secs(30) {
            self.last_progress = Instant::now();
            let t = &self.tally;
            eprintln!(
                "  {}: {} cases, {} accepted, {} calls, {} slow, {} findings",
                t.target.name(),
                t.cases,
                t.accepted,
                t.calls,
                t.slow,
                t.total_findings()
            );
        }
    }

    /// The end of the worker's stderr (what an abort printed).
    fn stderr_tail(&self) -> String {
        let Ok(mut file) = std::fs::File::open(&self.stderr_file) else { return String::new() };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(std::io::SeekFrom::Start(len.saturating_sub(3000)));
        let mut tail = Vec::new();
        let _ = file.read_to_end(&mut tail);
        String::from_utf8_lossy(&tail).into_owned()
    }
}

enum Ended {
    /// The budget is spent.
    Stopped,
    /// The worker exited or was killed; start another.
    Restart { started_a_case: bool },
}

/// A worker process and its stdout, line by line.
struct Worker {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Worker {
    fn spawn(options: &Options, target: Target, first: u64, case_file: &Path, stderr: &Path) -> Result<Worker, String> {
        let stderr = std::fs::File::create(stderr).map_err(|e| format!("cannot create {}: {e}", stderr.display()))?;
        let mut child = Command::new(&options.program)
            .args(["worker", "--target", target.name()])
            .args(["--seed", &options.seed.to_string(), "--first", &first.to_string()])
            .args(["--slow-seconds", &options.slow.as_secs_f64().to_string()])
            .arg("--case-file")
            .arg(case_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start a worker: {e}"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Worker { child, lines })
    }

    fn kill(&mut self) {
        // Kills this worker, the one process this supervisor started.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait(&mut self) -> ExitStatus {
        self.child.wait().unwrap_or_else(|_| std::process::ExitStatus::default())
    }
}

/// What a crash looks like: the most telling line of stderr first.
fn crash_message(status: &ExitStatus, step: &str, stderr: &str) -> String {
    let telling = ["overflowed its stack", "memory allocation", "fatal runtime error", "panicked", "error"];
    let line = telling.iter().find_map(|t| stderr.lines().find(|l| l.contains(t)));
    let first = match line {
        Some(l) => l.trim().to_string(),
        None => format!("the worker died: {}", describe(status)),
    };
    format!("{first}\n(in step `{step}`; the worker {})\n{stderr}", describe(status))
}

fn describe(status: &ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = match signal {
                4 => " (SIGILL)",
                6 => " (SIGABRT)",
                7 => " (SIGBUS)",
                8 => " (SIGFPE)",
                9 => " (SIGKILL: out of memory?)",
                11 => " (SIGSEGV)",
                _ => "",
            };
            return format!("was killed by signal {signal}{name}");
        }
    }
    format!("exited with {status}")
}
