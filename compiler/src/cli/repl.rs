//! `slope repl`: the terminal around [`slope::session::Session`].
//!
//! Input: lines from a terminal (line editing, history in `$HOME/.slope_history`,
//! tab completion) or, when stdin is not a terminal, plain lines with no
//! prompts, so the REPL can be scripted. Output: each reply on stdout, or on
//! stderr for diagnostics. All the language work happens in the session; this
//! file only reads lines, joins continuation lines and prints.

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Context, Editor, Helper};
use slope::session::{LineBuffer, Reply, Session};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

const PROMPT: &str = "> ";
const CONTINUE: &str = ".. ";

/// Runs the REPL until `:quit` or end of input. Scripted runs (stdin not a
/// terminal) exit with status 1 when any input failed.
pub fn run() -> ExitCode {
    let session = Session::new(|path| std::fs::read_to_string(path).map_err(|e| e.to_string()));
    if std::io::stdin().is_terminal() {
        interactive(session)
    } else {
        scripted(session)
    }
}

fn print(reply: &Reply) {
    if reply.output.is_empty() {
        return;
    }
    if reply.is_error {
        eprintln!("{}", reply.output);
    } else {
        println!("{}", reply.output);
    }
}

/// Reads stdin line by line; a blank line or end of input ends an incomplete input.
fn scripted(mut session: Session) -> ExitCode {
    let mut failed = false;
    let mut lines = LineBuffer::default();
    let mut eval = |input: String| {
        let reply = session.eval(&input);
        print(&reply);
        let _ = std::io::stdout().flush();
        failed |= reply.is_error;
        reply.quit
    };
    let mut quit = false;
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if let Some(input) = lines.push(&line) {
            quit = eval(input);
            if quit {
                break;
            }
        }
    }
    if let Some(input) = lines.finish().filter(|_| !quit) {
        eval(input);
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
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
            eprintln!("error: cannot start line editing: {e}");
            return scripted(session);
        }
    };
    editor.set_helper(Some(ReplHelper { session, files: FilenameCompleter::new() }));
    let history = history_path();
    if let Some(path) = &history {
        // A missing or unreadable history only means starting afresh.
        let _ = editor.load_history(path);
    }
    println!("slope {} — :help lists the commands, :quit leaves", env!("CARGO_PKG_VERSION"));
    let mut lines = LineBuffer::default();
    loop {
        let prompt = if lines.is_empty() { PROMPT } else { CONTINUE };
        match editor.readline(prompt) {
            Ok(line) => {
                let Some(input) = lines.push(&line) else { continue };
                let _ = editor.add_history_entry(input.trim_end());
                let Some(helper) = editor.helper_mut() else { break };
                let reply = helper.session.eval(&input);
                print(&reply);
                if reply.quit {
                    break;
                }
            }
            // Ctrl-C abandons the current input, Ctrl-D leaves.
            Err(ReadlineError::Interrupted) => lines.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("error: cannot read input: {e}");
                break;
            }
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    ExitCode::SUCCESS
}
