//! `slope gradbench`: speaks the GradBench tool protocol on stdin/stdout.
//!
//! Input: one JSON message per line on stdin; output: one JSON response per
//! message on stdout, flushed at once (the eval waits for it). Logs go to
//! stderr only, since stdout belongs to the protocol. Modules are read from
//! `<dir>/<module>.slope`, imports relative to that file. Exits 0 at end of
//! input; blank lines are skipped without a response; a line that is not
//! UTF-8 or is over `--max-input-bytes` gets an `"id":null` failure and the
//! session goes on.

use super::streams::{write_stderr, write_stdout, Line, Lines};
use slope::api::Engine;
use slope_cli::gradbench::Adapter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

pub fn run(dir: &Path, engine: Engine) -> ExitCode {
    let dir: PathBuf = dir.to_path_buf();
    let load_module = move |module: &str| {
        let path = dir.join(format!("{module}.slope"));
        std::fs::read_to_string(&path)
            .map(|text| (path.display().to_string(), text))
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let mut adapter = Adapter::new(Box::new(load_module), Box::new(super::file_loader))
        .with_engine(engine)
        .with_options(super::options());
    let origin = Instant::now();
    let mut clock = || origin.elapsed().as_nanos() as u64;
    let limit = super::max_input_bytes();
    for line in Lines::new(std::io::stdin().lock(), limit) {
        let response = match line {
            Err(e) => {
                write_stderr(&format!("slope gradbench: cannot read stdin: {e}"));
                return ExitCode::from(1);
            }
            Ok(Line::Text(line)) if line.trim().is_empty() => continue,
            Ok(Line::Text(line)) => adapter.handle(&line, &mut clock),
            Ok(Line::NotUtf8(bytes)) => adapter.reject_non_utf8(&bytes),
            Ok(Line::TooLong { bytes }) => adapter.reject_too_long(bytes, limit),
        };
        for message in adapter.take_log() {
            write_stderr(&format!("slope gradbench: {message}"));
        }
        // A closed stdout means the eval has gone: nothing left to answer.
        if write_stdout(&response).is_err() {
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}
