//! The compiler's own diagnostic type.
//!
//! Every error the compiler reports — lexing, parsing, typing, elaboration, run
//! time — is a [`Diagnostic`]: a stable code (`E0001`…), a lower-case message,
//! one primary label with a span, optional secondary labels, notes and a help
//! line. Rendering with `codespan-reporting` happens only at the edge
//! ([`render`]), so the library stays free of I/O. Codes are documented in
//! `docs/errors.md`; the test suite triggers each of them.

use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term;

pub use slope_runtime::code::Code;
pub use slope_runtime::span::{FileId, Span};

#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: Code,
    pub message: String,
    pub primary: Label,
    pub secondary: Vec<Label>,
    pub notes: Vec<String>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: Code, message: impl Into<String>, span: Span, label: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            primary: Label { span, message: label.into() },
            secondary: Vec::new(),
            notes: Vec::new(),
            help: None,
        }
    }
    pub fn with_secondary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.secondary.push(Label { span, message: message.into() });
        self
    }
    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }
    /// An internal compiler error: a bug in Slope, never the user's fault.
    pub fn internal(pass: &str, message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic::error(
            Code::E0900,
            format!("internal compiler error in {pass}: {}", message.into()),
            span,
            "while compiling this",
        )
        .with_note("this is a bug in slope; please report it with the program that triggers it")
    }
}

impl From<slope_runtime::failure::RuntimeError> for Diagnostic {
    /// A run-time error as a diagnostic: its code and message, labelled
    /// "failed here" at the failing statement.
    fn from(e: slope_runtime::failure::RuntimeError) -> Diagnostic {
        Diagnostic::error(e.code, e.message, e.span, "failed here")
    }
}

/// The sources a diagnostic can point into: user files, stdlib modules, REPL lines.
#[derive(Default, Clone)]
pub struct SourceMap {
    files: Vec<(String, String)>,
}

impl SourceMap {
    pub fn new() -> SourceMap {
        SourceMap::default()
    }
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        self.files.push((name.into(), text.into()));
        FileId(self.files.len() as u32 - 1)
    }
    pub fn name(&self, id: FileId) -> &str {
        &self.files[id.0 as usize].0
    }
    pub fn text(&self, id: FileId) -> &str {
        &self.files[id.0 as usize].1
    }
    pub fn len(&self) -> usize {
        self.files.len()
    }
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
    /// The text a span covers (empty when the span is out of range).
    pub fn snippet(&self, span: Span) -> &str {
        self.files
            .get(span.file.0 as usize)
            .and_then(|(_, text)| text.get(span.start as usize..span.end as usize))
            .unwrap_or("")
    }
    /// `file:line:column` of a span's start, for run-time messages.
    pub fn location(&self, span: Span) -> String {
        let Some((name, text)) = self.files.get(span.file.0 as usize) else {
            return "<unknown>".into();
        };
        let start = (span.start as usize).min(text.len());
        let line = text[..start].matches('\n').count() + 1;
        let column = start - text[..start].rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("{name}:{line}:{column}")
    }
}

/// Renders diagnostics as plain text (for snapshots) or with colour (for terminals).
pub fn render(sources: &SourceMap, diagnostics: &[Diagnostic], style: RenderStyle) -> String {
    let mut files = SimpleFiles::new();
    for (name, text) in &sources.files {
        files.add(name.clone(), text.clone());
    }
    let mut config = term::Config::default();
    if style == RenderStyle::Short {
        config.display_style = term::DisplayStyle::Short;
    }
    let mut out = String::new();
    for d in diagnostics {
        let cd = to_codespan(sources, d);
        match term::emit_into_string(&config, &files, &cd) {
            Ok(text) => out.push_str(&text),
            Err(_) => out.push_str(&format!("error[{}]: {}\n", d.code, d.message)),
        }
    }
    out
}

/// Writes diagnostics to stderr with colour when it is a terminal.
pub fn emit_to_stderr(sources: &SourceMap, diagnostics: &[Diagnostic]) {
    use codespan_reporting::term::termcolor::{ColorChoice, StandardStream};
    use std::io::Write as _;
    let mut files = SimpleFiles::new();
    for (name, text) in &sources.files {
        files.add(name.clone(), text.clone());
    }
    let choice =
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) { ColorChoice::Auto } else { ColorChoice::Never };
    let stream = StandardStream::stderr(choice);
    let config = term::Config::default();
    for d in diagnostics {
        let cd = to_codespan(sources, d);
        if term::emit_to_write_style(&mut stream.lock(), &config, &files, &cd).is_err() {
            // Nowhere to write (stderr closed or full): drop it, the exit status still tells.
            let _ = writeln!(std::io::stderr(), "error[{}]: {}", d.code, d.message);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenderStyle {
    Rich,
    Short,
}

/// The codespan form of `d`. A label in an empty source (an error about a
/// command-line value or a file as a whole, which has no text to point into)
/// is left out, so the message stands alone instead of above an empty frame.
fn to_codespan(sources: &SourceMap, d: &Diagnostic) -> cs::Diagnostic<usize> {
    let base = match d.severity {
        Severity::Error => cs::Diagnostic::error(),
        Severity::Warning => cs::Diagnostic::warning(),
    };
    let label = |l: &Label, primary: bool| {
        let range = l.span.start as usize..l.span.end as usize;
        let file = l.span.file.0 as usize;
        let lab = if primary { cs::Label::primary(file, range) } else { cs::Label::secondary(file, range) };
        lab.with_message(l.message.clone())
    };
    let points_somewhere =
        |l: &&Label| (l.span.file.0 as usize) >= sources.len() || !sources.text(l.span.file).is_empty();
    let mut labels: Vec<_> = std::iter::once(&d.primary).filter(points_somewhere).map(|l| label(l, true)).collect();
    labels.extend(d.secondary.iter().filter(points_somewhere).map(|l| label(l, false)));
    let mut notes = d.notes.clone();
    if let Some(help) = &d.help {
        notes.push(format!("help: {help}"));
    }
    base.with_code(d.code.as_str()).with_message(d.message.clone()).with_labels(labels).with_notes(notes)
}
