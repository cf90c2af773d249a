//! `slope repl`: the terminal around [`slope_cli::session::Session`].
//!
//! Input: lines from a terminal (line editing, history in `$HOME/.slope_history`,
//! tab completion) or, when stdin is not a terminal, plain lines with no
//! prompts, so the REPL can be scripted. Output: each reply on stdout, or on
//! stderr for diagnostics. All the language work happens in the session; this
//! file only reads lines, joins continuation lines and prints.

use super::streams::{self, Line};
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Context, Editor, Helper};
use slope_cli::session::{LineBuffer, Reply, Session};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

const PROMPT: &str = "> ";
const CONTINUE: &str = ".. ";

/// Runs the REPL until `:quit` or end of input. Scripted runs (stdin not a
/// terminal) exit with status 1 when any input failed.
pub fn run() -> ExitCode {
    let session = Session::new(|path| std::fs::read_to_string(path).map_err(|e| e.to_string()));
    catch_ctrl_c();
    if std::io::stdin().is_terminal() {
        interactive(session)
    } else {
        scripted(session)
    }
}

/// Whether an input is being evaluated (rather than read).
static EVALUATING: AtomicBool = AtomicBool::new(false);

/// Ctrl-C while an input is evaluated stops the evaluation (E0208: loops poll
/// the runtime's interrupt flag) and the session goes on; Ctrl-C while
/// waiting for piped input ends the process as usual (status 130). At an
/// interactive prompt the line editor reads Ctrl-C as a key, not a signal.
fn catch_ctrl_c() {
    let handler = || {
        if EVALUATING.load(Ordering::SeqCst) {
            slope_runtime::native::request_interrupt();
        } else {
            std::process::exit(130);
        }
    };
    if let Err(e) = ctrlc::set_handler(handler) {
        streams::write_stderr(&format!("warning: Ctrl-C will end the session, not the evaluation: {e}"));
    }
}

/// Evaluates one input with Ctrl-C armed to interrupt it.
fn evaluate(session: &mut Session, input: &str) -> Reply {
    slope_runtime::native::clear_interrupt();
    EVALUATING.store(true, Ordering::SeqCst);
    let reply = session.eval(input);
    EVALUATING.store(false, Ordering::SeqCst);
    slope_runtime::native::clear_interrupt();
    reply
}

/// Prints a reply: diagnostics on stderr, everything else on stdout. An error
/// when stdout cannot be written (E0307): the session has lost its reader.
fn print(reply: &Reply) -> std::io::Result<()> {
    if reply.output.is_empty() {
        return Ok(());
    }
    if reply.is_error {
        streams::write_stderr(&reply.output);
        Ok(())
    } else {
        streams::write_stdout(&reply.output)
    }
}

/// Reads stdin line by line; a blank line or end of input ends an incomplete
/// input. A line that is not UTF-8 or is over `--max-input-bytes` gets a
/// diagnostic and drops the incomplete input it belonged to; the session goes on.
fn scripted(mut session: Session) -> ExitCode {
    let mut failed = false;
    let mut lines = LineBuffer::default();
    let mut quit = false;
    for line in streams::Lines::new(std::io::stdin().lock(), super::max_input_bytes()) {
        let reply = match line {
            Err(e) => {
                streams::write_stderr(&format!("error: cannot read input: {e}"));
                failed = true;
                break;
            }
            Ok(Line::Text(line)) => match lines.push(&line) {
                Some(input) => eval_reply(&mut failed, evaluate(&mut session, &input)),
                None => Ok(false),
            },
            Ok(Line::NotUtf8(bytes)) => {
                lines.clear();
                eval_reply(&mut failed, session.reject_non_utf8(&bytes))
            }
            Ok(Line::TooLong { bytes }) => {
                lines.clear();
                eval_reply(&mut failed, Reply::too_long(bytes, super::max_input_bytes()))
            }
        };
        match reply {
            Ok(true) => {
                quit = true;
                break;
            }
            Ok(false) => {}
            Err(e) => return streams::output_lost(e),
        }
    }
    if let Some(input) = lines.finish().filter(|_| !quit) {
        if let Err(e) = eval_reply(&mut failed, evaluate(&mut session, &input)) {
            return streams::output_lost(e);
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints a reply and records whether it was a failure; true when it asks to quit.
fn eval_reply(failed: &mut bool, reply: Reply) -> std::io::Result<bool> {
    *failed |= reply.is_error;
    print(&reply).map(|()| reply.quit)
}

/// The editor's helper owns the session, so completion sees its definitions.
struct ReplHelper {
    session: Session,
    files: FilenameCompleter,
}

impl Completer for ReplHelper {
    type Candidate = Pair;
    fn complete(&self, line: &str, pos: usize, ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        if line.trim_start().starts_with(":l") && line[..pos].contains(char::is_whitespace) {
            return self.files.complete(line, pos, ctx);
        }
        let (start, names) = self.session.complete(line, pos);
        Ok((start, names.into_iter().map(|n| Pair { display: n.clone(), replacement: n }).collect()))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}
impl Highlighter for ReplHelper {}
impl Validator for ReplHelper {}
impl Helper for ReplHelper {}

fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".slope_history"))
}

fn interactive(session: Session) -> ExitCode {
    // Tab lists the candidates and completes their common prefix, as shells do.
    let config = Config::builder().completion_type(CompletionType::List).auto_add_history(false).build();
    let mut editor: Editor<ReplHelper, _> = match Editor::with_config(config) {
        Ok(e) => e,
        Err(e) => {
            streams::write_stderr(&format!("error: cannot start line editing: {e}"));
            return scripted(session);
        }
    };
    editor.set_helper(Some(ReplHelper { session, files: FilenameCompleter::new() }));
    let history = history_path();
    if let Some(path) = &history {
        // A missing or unreadable history only means starting afresh.
        let _ = editor.load_history(path);
    }
    if let Err(e) =
        streams::write_stdout(&format!("slope {} — :help lists the commands, :quit leaves", env!("CARGO_PKG_VERSION")))
    {
        return streams::output_lost(e);
    }
    let mut lines = LineBuffer::default();
    loop {
        let prompt = if lines.is_empty() { PROMPT } else { CONTINUE };
        match editor.readline(prompt) {
            Ok(line) => {
                let Some(input) = lines.push(&line) else { continue };
                let _ = editor.add_history_entry(input.trim_end());
                let Some(helper) = editor.helper_mut() else { break };
                let reply = evaluate(&mut helper.session, &input);
                if let Err(e) = print(&reply) {
                    return streams::output_lost(e);
                }
                if reply.quit {
                    break;
                }
            }
            // Ctrl-C abandons the current input, Ctrl-D leaves.
            Err(ReadlineError::Interrupted) => lines.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                streams::write_stderr(&format!("error: cannot read input: {e}"));
                break;
            }
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    ExitCode::SUCCESS
}
