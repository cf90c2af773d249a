//! REPL transcript tests: each `repl/NAME.in` is fed line by line to a
//! [`Session`] (joined into inputs as `slope repl` joins them), and the
//! transcript — every input line echoed after `> ` (continuation lines after
//! `.. `), then the reply — is snapshot-tested as `snapshots/repl__NAME.snap`.
//! `:load` reads files relative to `tests/`, like the harness's own loader.
//! Elapsed times vary, so `time: … ms` lines are filtered.

use slope_cli::session::{LineBuffer, Session};
use slope_tests::workspace_dir;

/// The transcript of one input file.
fn transcript(text: &str) -> String {
    let tests_dir = workspace_dir().join("tests");
    // As the CLI's REPL reads (`cli/src/commands/repl.rs`), relative to `tests/`.
    let mut session =
        Session::new(move |path| std::fs::read_to_string(tests_dir.join(path)).map_err(|e| e.to_string()));
    let mut lines = LineBuffer::default();
    let mut out = String::new();
    let mut reply_to = |input: String, out: &mut String| {
        let reply = session.eval(&input);
        if !reply.output.is_empty() {
            out.push_str(&reply.output);
            out.push('\n');
        }
        reply.quit
    };
    for line in text.lines() {
        if line.trim().is_empty() && lines.is_empty() {
            out.push('\n');
            continue;
        }
        out.push_str(if lines.is_empty() { "> " } else { ".. " });
        out.push_str(line);
        out.push('\n');
        if let Some(input) = lines.push(line) {
            if reply_to(input, &mut out) {
                out.push_str("[quit]\n");
                return out;
            }
        }
    }
    if let Some(input) = lines.finish() {
        reply_to(input, &mut out);
    }
    out
}

fn check(name: &str) {
    let path = workspace_dir().join(format!("tests/repl/{name}.in"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../snapshots");
    settings.set_omit_expression(true);
    settings.add_filter(r"time: [0-9.]+ ms", "time: [elapsed] ms");
    settings.bind(|| insta::assert_snapshot!(name, transcript(&text)));
}

macro_rules! transcripts {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { check(stringify!($name)); })*
        const NAMES: &[&str] = &[$(stringify!($name)),*];
    };
}

transcripts!(basics, commands, errors, load, multiline, redefine);

#[test]
fn every_transcript_is_listed() {
    let mut found: Vec<String> = std::fs::read_dir(workspace_dir().join("tests/repl"))
        .expect("tests/repl exists")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".in").map(str::to_string))
        .collect();
    found.sort();
    assert_eq!(found, NAMES, "list every tests/repl/*.in in the transcripts! macro");
}

#[test]
fn completion_offers_names_in_scope() {
    let mut session = Session::new(|_| Err("no files".into()));
    session.eval("def square (x: f64) : f64 = x * x");
    assert_eq!(session.complete("1 + squ", 7), (4, vec!["square".to_string()]));
    assert!(session.complete("ma", 2).1.contains(&"map".to_string()));
    assert_eq!(session.complete(":gr", 3), (0, vec![":grad".to_string()]));
    assert_eq!(session.complete(":emit ty", 8), (6, vec!["typed".to_string()]));
}

#[test]
fn completeness_of_partial_inputs() {
    for partial in
        ["def f (x: f64) : f64 =", "let a = 1 in", "(1,", "if true then 1", "1 +", "def f (x: f64) : f64 = let y = x"]
    {
        assert!(!Session::is_complete(partial), "{partial:?} should need more lines");
    }
    for complete in ["1 + 2", "def f (x: f64) : f64 = x", ":help", "1 +* 2", ":type 1", "-- a comment", ""] {
        assert!(Session::is_complete(complete), "{complete:?} should be complete");
    }
}

#[test]
fn line_helpers_accept_any_prefix() {
    let session = Session::new(|_| Err("no files".into()));
    for name in NAMES {
        let text = std::fs::read_to_string(workspace_dir().join(format!("tests/repl/{name}.in"))).unwrap();
        for line in text.lines().chain(["π → ∂ [1, (2", ":emit ir \u{e9}"]) {
            for pos in 0..=line.len() {
                let _ = session.complete(line, pos);
                if line.is_char_boundary(pos) {
                    let _ = Session::is_complete(&line[..pos]);
                }
            }
        }
    }
}
