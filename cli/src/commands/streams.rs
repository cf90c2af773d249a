//! The process's standard streams, as every command uses them.
//!
//! - [`Lines`]: a reader split at `\n` into byte lines. A line that is not
//!   UTF-8, or longer than the limit, is its own item and reading goes on: one
//!   bad line must not end a REPL session or a GradBench run.
//! - [`write_stdout`]: a reply or result, flushed at once; a failure (a full
//!   disk) is E0307, so no command reports success for output that was lost.
//!   A reader that closed the pipe (`slope … | head`) ends the process
//!   quietly with status 141, as SIGPIPE ends other Unix tools: the reader
//!   asked for no more, and there is no one left to tell.
//! - [`write_stderr`]: never panics (`eprintln!` does when stderr is closed):
//!   a diagnostic with nowhere to go is dropped, and the exit status still
//!   says what happened.

use std::io::{BufRead, Read, Write};

/// One line of input, without its `\n` (or `\r\n`).
pub enum Line {
    Text(String),
    /// The raw bytes of a line that is not UTF-8.
    NotUtf8(Vec<u8>),
    /// A line longer than the limit: its bytes were read and dropped.
    TooLong {
        bytes: u64,
    },
}

/// The lines of a reader, each at most `limit` bytes.
pub struct Lines<R> {
    reader: R,
    limit: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    pub fn new(reader: R, limit: u64) -> Lines<R> {
        Lines { reader, limit, buf: Vec::new() }
    }

    /// Reads and drops the rest of an over-long line; returns how many bytes went.
    fn skip_line(&mut self) -> std::io::Result<u64> {
        let mut skipped = 0u64;
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                return Ok(skipped);
            }
            let (used, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            self.reader.consume(used);
            skipped += used as u64;
            if done {
                return Ok(skipped);
            }
        }
    }
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = std::io::Result<Line>;

    fn next(&mut self) -> Option<Self::Item> {
        self.buf.clear();
        // One byte past the limit tells a line of exactly `limit` bytes from a longer one.
        let read = (&mut self.reader).take(self.limit.saturating_add(1)).read_until(b'\n', &mut self.buf);
        match read {
            Err(e) => Some(Err(e)),
            Ok(0) => None,
            Ok(n) if n as u64 > self.limit && self.buf.last() != Some(&b'\n') => {
                Some(self.skip_line().map(|rest| Line::TooLong { bytes: n as u64 + rest }))
            }
            Ok(_) => {
                if self.buf.last() == Some(&b'\n') {
                    self.buf.pop();
                    if self.buf.last() == Some(&b'\r') {
                        self.buf.pop();
                    }
                }
                let bytes = std::mem::take(&mut self.buf);
                Some(Ok(match String::from_utf8(bytes) {
                    Ok(text) => Line::Text(text),
                    Err(e) => Line::NotUtf8(e.into_bytes()),
                }))
            }
        }
    }
}

/// The exit status when stdout's reader has gone: 128 + SIGPIPE, what a
/// shell reports for a tool that SIGPIPE stopped.
pub const BROKEN_PIPE_STATUS: i32 = 141;

/// Writes `text` and a newline to stdout and flushes. When the reader has
/// closed the pipe, the process ends here, quietly (see the module header).
pub fn write_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let written = writeln!(out, "{text}").and_then(|()| out.flush());
    if written.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) {
        std::process::exit(BROKEN_PIPE_STATUS);
    }
    written
}

/// Writes `text` and a newline to stderr, dropping it if stderr is gone.
pub fn write_stderr(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Reports that stdout could not be written (E0307) for a command that
/// streams its output line by line; its exit status.
pub fn output_lost(e: std::io::Error) -> std::process::ExitCode {
    write_stderr(&format!("error[E0307]: cannot write the output: {e}"));
    std::process::ExitCode::from(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], limit: u64) -> Vec<String> {
        Lines::new(input, limit)
            .map(|l| match l.unwrap() {
                Line::Text(t) => format!("text {t}"),
                Line::NotUtf8(b) => format!("bytes {b:?}"),
                Line::TooLong { bytes } => format!("too long {bytes}"),
            })
            .collect()
    }

    #[test]
    fn a_bad_line_is_one_item_and_reading_goes_on() {
        assert_eq!(lines(b"a\r\n1 + \xff\nb", 100), ["text a", "bytes [49, 32, 43, 32, 255]", "text b"]);
    }

    #[test]
    fn a_line_over_the_limit_is_dropped_whole() {
        assert_eq!(lines(b"abcd\nabcdef\nab\n", 4), ["text abcd", "too long 7", "text ab"]);
        assert_eq!(lines(b"abcdefgh", 4), ["too long 8"]);
    }
}
