//! `slope gradbench`: speaks the GradBench tool protocol on stdin/stdout.
//!
//! Input: one JSON message per line on stdin; output: one JSON response per
//! message on stdout, flushed at once (the eval waits for it). Logs go to
//! stderr only, since stdout belongs to the protocol. Modules are read from
//! `<dir>/<module>.slope`, imports relative to that file. Exits 0 at end of
//! input; blank lines are skipped without a response.

use slope::gradbench::Adapter;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

pub fn run(dir: &Path) -> ExitCode {
    let dir: PathBuf = dir.to_path_buf();
    let load_module = move |module: &str| {
        let path = dir.join(format!("{module}.slope"));
        std::fs::read_to_string(&path)
            .map(|text| (path.display().to_string(), text))
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let mut adapter = Adapter::new(Box::new(load_module), Box::new(super::file_loader));
    let origin = Instant::now();
    let mut clock = || origin.elapsed().as_nanos() as u64;
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("slope gradbench: cannot read stdin: {e}");
                return ExitCode::from(1);
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let response = adapter.handle(&line, &mut clock);
        for message in adapter.take_log() {
            eprintln!("slope gradbench: {message}");
        }
        // A closed stdout means the eval has gone: nothing left to answer.
        if writeln!(stdout, "{response}").and_then(|_| stdout.flush()).is_err() {
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}
