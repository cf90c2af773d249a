//! A REPL session: the state behind `slope repl`, free of I/O.
//!
//! Input: one complete REPL input at a time (a definition, an expression or a
//! `:command`; [`Session::is_complete`] tells the line reader when to stop
//! asking for more lines). Output: a [`Reply`] whose text is exactly what the
//! REPL prints. Files for `:load` and imports come through the reader callback
//! given at construction; the session itself touches neither files nor the
//! terminal.
//!
//! Model: the session keeps its definitions as source *chunks*, one per item
//! (`def`, `entry`, `type`, `import`), each remembering where its text came
//! from (a REPL input named `<repl:N>` or a loaded file). The program is
//! re-compiled from the concatenated chunks whenever they change: simple, and
//! exactly the semantics of a file. Redefining a name replaces the chunk that
//! defined it, in place (so later definitions see the new one), or at the end
//! when the new body uses names defined after the old one. Diagnostics about
//! the concatenation are mapped back to the chunk's own source, so they point
//! into what the user typed. Invariants: `program` is always the compiled
//! form of `chunks`; a failed input leaves both unchanged.

use slope::api::{Failure, Program};
use slope::diagnostic::{render, Code, Diagnostic, FileId, Label, RenderStyle, SourceMap, Span};
use slope::driver;
use slope::ir::interp;
use slope::syntax::ast::Item;
use slope::syntax::lexer::{Lexer, Token};
use slope::syntax::parser;
use slope::types::{builtins, check::check_expr, Dim, Type};
use slope::values;
use std::path::Path;

/// Reads a file by path: the caller's window onto the file system.
pub type FileReader = dyn Fn(&str) -> Result<String, String> + Sync;

/// What the REPL prints for one input.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Reply {
    /// The text to print, without a trailing newline (empty: print nothing).
    pub output: String,
    /// The output is a diagnostic.
    pub is_error: bool,
    /// The user asked to leave (`:quit`).
    pub quit: bool,
}

impl Reply {
    fn ok(output: impl Into<String>) -> Reply {
        Reply { output: output.into(), is_error: false, quit: false }
    }
    /// The reply to an input line over the size limit (`--max-input-bytes`).
    pub fn too_long(bytes: u64, limit: u64) -> Reply {
        Reply::error(format!(
            "error[E0308]: input too large: a line of {bytes} bytes, more than the limit of {limit} \
             (--max-input-bytes)"
        ))
    }

    fn error(output: impl Into<String>) -> Reply {
        Reply { output: output.into().trim_end().to_string(), is_error: true, quit: false }
    }
}

/// The REPL commands: `(name, arguments, description)`, as `:help` lists them.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    (":type", "EXPR", "show the type of an expression without evaluating it"),
    (":load", "FILE", "load a file's definitions (they replace session definitions of the same names)"),
    (":reload", "", "load the last loaded file again"),
    (":emit", "STAGE [NAME]", "print a compiler stage of the program, or of one definition"),
    (":grad", "NAME", "print the gradient program of a function of one argument"),
    (":time", "EXPR", "evaluate an expression and show how long it ran"),
    (":help", "[NAME]", "list the commands, or describe a builtin or definition"),
    (":quit", "", "leave the REPL (end of input does too)"),
];

/// What a chunk defines; a new chunk with the same key replaces the old one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Def(String),
    Type(String),
    Import(String),
}

/// One item of the session's program and where its text came from.
#[derive(Clone, Debug)]
struct Chunk {
    key: Key,
    text: String,
    /// The source the text was cut from (in [`Session::inputs`]) and its offset there.
    origin: FileId,
    offset: usize,
    from_file: bool,
}

/// Where a chunk sits in the concatenated program text.
#[derive(Clone, Copy, Debug)]
struct Piece {
    start: usize,
    len: usize,
    origin: FileId,
    offset: usize,
}

/// A compiled candidate state: the program and how its main file maps to chunks.
struct Build {
    program: Result<Program, Failure>,
    layout: Vec<Piece>,
}

/// The state of one REPL session.
pub struct Session {
    reader: Box<FileReader>,
    /// Every source the user gave: `<repl:N>` inputs and loaded files. File 0 is
    /// an empty `<repl>` that diagnostics without a better place point into.
    inputs: SourceMap,
    chunks: Vec<Chunk>,
    program: Program,
    layout: Vec<Piece>,
    /// The file of the last successful `:load`, for `:reload` and relative imports.
    loaded: Option<String>,
    count: usize,
}

const EXPR_FUNC: &str = "repl";

impl Session {
    /// A session with no definitions; `reader` reads files for `:load` and imports.
    pub fn new(reader: impl Fn(&str) -> Result<String, String> + Sync + 'static) -> Session {
        let mut inputs = SourceMap::new();
        inputs.add("<repl>", "");
        let mut sources = SourceMap::new();
        sources.add("<repl>", "");
        let program = Program::empty(sources);
        Session {
            reader: Box::new(reader),
            inputs,
            chunks: Vec::new(),
            program,
            layout: Vec::new(),
            loaded: None,
            count: 0,
        }
    }

    /// The compiled program of the session's definitions.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Names of every definition in scope (including imported ones), sorted.
    pub fn names(&self) -> Vec<String> {
        // Instances of generic definitions (`sq<f64>`) are not names a user writes.
        let checked = &self.program.checked;
        let defs = checked.infos.keys().filter(|n| !slope::types::check::is_instance_name(n));
        let mut names: Vec<String> = defs.chain(checked.generics.keys()).cloned().collect();
        names.sort();
        names
    }

    /// Evaluates one complete input and says what to print. Never panics: a
    /// bug in the compiler becomes an internal-error reply and the session goes on.
    pub fn eval(&mut self, input: &str) -> Reply {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.eval_input(input))) {
            Ok(reply) => reply,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Reply::error(format!(
                    "error[E0900]: internal compiler error: {what}\n  = note: this is a bug in slope; please report \
                     it with the input that triggers it"
                ))
            }
        }
    }

    /// The reply to an input line that is not UTF-8 (a terminal in another
    /// encoding, a binary file piped in): E0003 at the first invalid byte of
    /// the line, shown with replacement characters. The session goes on.
    pub fn reject_non_utf8(&mut self, line: &[u8]) -> Reply {
        self.count += 1;
        let valid = std::str::from_utf8(line).err().map_or(line.len(), |e| e.valid_up_to());
        let bad = line.get(valid).copied().unwrap_or(0);
        let origin = self.inputs.add(format!("<repl:{}>", self.count), String::from_utf8_lossy(line).into_owned());
        // The valid prefix is unchanged by lossy decoding, so `valid` is also
        // the offset of the first replacement character.
        let span = Span::new(origin, valid, valid + char::REPLACEMENT_CHARACTER.len_utf8());
        let d = Diagnostic::error(Code::E0003, "this line is not valid UTF-8", span, format!("byte 0x{bad:02x}"))
            .with_help("Slope source is UTF-8 text");
        Reply::error(render(&self.inputs, &[d], RenderStyle::Rich))
    }

    fn eval_input(&mut self, input: &str) -> Reply {
        let Some(first) = first_token(input) else { return Reply::ok("") };
        self.count += 1;
        let origin = self.inputs.add(format!("<repl:{}>", self.count), input);
        match first {
            Some(Token::Def | Token::Entry | Token::Type | Token::Import) => self.define(origin),
            _ if input.trim_start().starts_with(':') => self.command(origin),
            _ => self.evaluate(origin, input.to_string(), Mode::Value),
        }
    }

    /// Whether `input` is a whole REPL input, or the reader should ask for
    /// another line: brackets are open, the last token cannot end anything
    /// (`=`, `in`, `then`, an operator, …), or the parser runs out of input.
    pub fn is_complete(input: &str) -> bool {
        let text = match input.trim_start().strip_prefix(':') {
            Some(_) => {
                let (word, end) = command_word(input);
                match resolve_command(&word) {
                    Ok(":type" | ":time") => blank_prefix(input, end),
                    _ => return true,
                }
            }
            None => input.to_string(),
        };
        let mut tokens = Vec::new();
        for t in Lexer::new(&text) {
            match t {
                Ok((_, tok, _)) => tokens.push(tok),
                Err(_) => return true,
            }
        }
        let Some(last) = tokens.last() else { return true };
        let mut depth = 0i64;
        for t in &tokens {
            match t {
                Token::LParen | Token::LBracket | Token::IndexOpen | Token::LBrace => depth += 1,
                Token::RParen | Token::RBracket | Token::RBrace => depth -= 1,
                _ => {}
            }
        }
        if depth > 0 {
            return false;
        }
        let dangling = matches!(
            last,
            Token::Eq
                | Token::In
                | Token::Then
                | Token::Else
                | Token::Arrow
                | Token::Do
                | Token::With
                | Token::Let
                | Token::If
                | Token::Loop
                | Token::For
                | Token::While
                | Token::Backslash
                | Token::Comma
                | Token::Colon
                | Token::Coerce
                | Token::Dot
                | Token::Plus
                | Token::Minus
                | Token::Star
                | Token::Slash
                | Token::Percent
                | Token::StarStar
                | Token::EqEq
                | Token::NotEq
                | Token::Lt
                | Token::Le
                | Token::Gt
                | Token::Ge
                | Token::AndAnd
                | Token::OrOr
                | Token::Bang
        );
        if dangling {
            return false;
        }
        let parsed = match tokens[0] {
            Token::Def | Token::Entry | Token::Type | Token::Import => parser::parse_module(&text, FileId(0)).err(),
            _ => parser::parse_expr(&text, FileId(0)).err(),
        };
        !matches!(parsed, Some(d) if d.code == Code::E0002)
    }

    /// Tab completion: the start of the word that ends at byte `pos` of `line`,
    /// and the candidates for it (commands, stages, definitions, builtins and
    /// keywords), sorted.
    pub fn complete(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let mut pos = pos.min(line.len());
        while !line.is_char_boundary(pos) {
            pos -= 1;
        }
        let before = &line[..pos];
        let start = before
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '\'' || *c == ':'))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let word = &before[start..];
        let mut candidates: Vec<String> = if word.starts_with(':') && before[..start].trim().is_empty() {
            COMMANDS.iter().map(|(c, _, _)| c.to_string()).collect()
        } else if before.trim_start().starts_with(":emit") && before[..start].split_whitespace().count() == 1 {
            driver::stage_names().into_iter().map(str::to_string).collect()
        } else {
            let mut names = self.names();
            names.extend(builtins::all().iter().map(|(n, _, _)| n.to_string()));
            names.extend(KEYWORDS.iter().map(|k| k.to_string()));
            names
        };
        candidates.retain(|c| c.starts_with(word));
        candidates.sort();
        candidates.dedup();
        (start, candidates)
    }

    // ---- Definitions ----

    fn define(&mut self, origin: FileId) -> Reply {
        let text = self.inputs.text(origin).to_string();
        let module = match parser::parse_module(&text, origin) {
            Ok(m) => m,
            Err(d) => return Reply::error(render(&self.inputs, &[d], RenderStyle::Rich)),
        };
        let new: Vec<Chunk> = module.items.iter().map(|item| chunk_of(item, &text, origin, false)).collect();
        let in_place = merge(&self.chunks, &new, true);
        let name = self.main_name();
        let mut build = self.build(&name, &in_place);
        let mut chunks = in_place;
        if build.program.is_err() {
            // The new body may use names defined after the old one: try it at the end.
            let at_end = merge(&self.chunks, &new, false);
            let retry = self.build(&name, &at_end);
            if retry.program.is_ok() {
                (build, chunks) = (retry, at_end);
            }
        }
        let program = match build.program {
            Ok(p) => p,
            Err(f) => return Reply::error(self.render_definition_errors(&f, &build.layout, origin)),
        };
        let lines: Vec<String> = new.iter().map(|c| describe(&program, &c.key)).collect();
        self.commit(chunks, program, build.layout);
        Reply::ok(lines.join("\n"))
    }

    fn commit(&mut self, chunks: Vec<Chunk>, program: Program, layout: Vec<Piece>) {
        self.chunks = chunks;
        self.program = program;
        self.layout = layout;
    }

    /// The name of the program's main file: imports are resolved relative to it.
    fn main_name(&self) -> String {
        self.loaded.clone().unwrap_or_else(|| "<repl>".into())
    }

    /// Compiles a list of chunks as one program.
    fn build(&self, name: &str, chunks: &[Chunk]) -> Build {
        let mut text = String::new();
        let mut layout = Vec::new();
        for c in chunks {
            layout.push(Piece { start: text.len(), len: c.text.len(), origin: c.origin, offset: c.offset });
            text.push_str(&c.text);
            text.push_str("\n\n");
        }
        let reader = &self.reader;
        let loader = |importer: &str, path: &str| {
            let mut candidate = Path::new(importer).parent().unwrap_or(Path::new("")).join(path);
            if candidate.extension().is_none() {
                candidate.set_extension("slope");
            }
            let file = candidate.display().to_string();
            reader(&file).map(|text| (file.clone(), text)).map_err(|e| format!("cannot read {file}: {e}"))
        };
        Build { program: Program::compile(name, &text, &loader), layout }
    }

    // ---- Expressions ----

    /// Checks, elaborates and runs the expression in `text` (the input of
    /// `origin`, with any command word blanked out so offsets agree).
    fn evaluate(&self, origin: FileId, text: String, mode: Mode) -> Reply {
        let program = &self.program;
        let fail = |d: Vec<Diagnostic>| Reply::error(self.render(&program.sources, &self.layout, Some(origin), &d));
        // The expression lives just past the program's own files.
        let file = FileId(program.sources.len() as u32);
        let mut expr = match parser::parse_expr(&text, file) {
            Ok(e) => e,
            Err(d) => return fail(vec![d]),
        };
        // A generic definition by itself: its scheme, not one instance of it.
        if let slope::syntax::ast::ExprKind::Var(name) = &expr.kind {
            if let Some(g) = program.checked.generics.get(name) {
                let kinds: Vec<String> = g.params().map(|(t, k)| format!("'{t} {}", k.phrase())).collect();
                let scheme = format!("{} (for {})", g.info.ty, kinds.join(", "));
                return Reply::ok(match mode {
                    Mode::Type => format!("{} : {scheme}", text.trim()),
                    _ => format!("<function> : {scheme}"),
                });
            }
        }
        let checked = match check_expr(&program.checked, &mut expr) {
            Ok(checked) => checked,
            Err(d) => return fail(vec![d]),
        };
        let ty = expr.ty.clone();
        if mode == Mode::Type {
            return Reply::ok(format!("{} : {ty}", text.trim()));
        }
        if !ty.is_first_order() {
            return Reply::ok(format!("<function> : {ty}"));
        }
        let ir = match slope::elab::elaborate_expr(&checked, &expr, EXPR_FUNC) {
            Ok(ir) => ir,
            Err(d) => return fail(vec![d]),
        };
        if let Err(ds) = driver::verify(&ir, "ir") {
            return fail(ds);
        }
        let ir = match driver::run_ad(&ir).and_then(|ir| driver::run_opt(&ir, None)) {
            Ok(ir) => ir,
            Err(ds) => return fail(ds),
        };
        // Native code, as `slope run` runs it, polling for Ctrl-C in loops.
        let native = match slope::api::NativeCode::build(
            &ir,
            expr.span,
            driver::Options { poll_interrupt: true, ..Default::default() },
        ) {
            Ok(n) => n,
            Err(d) => return fail(vec![d]),
        };
        let start = std::time::Instant::now();
        let results = match native.code.call(EXPR_FUNC, &[], interp::Options::default().while_limit) {
            Ok(results) => results,
            Err(e) if e.code == Code::E0208 => {
                let d = Diagnostic::error(Code::E0208, "interrupted", expr.span, "stopped while evaluating this")
                    .with_note("every definition of the session is kept");
                return fail(vec![d]);
            }
            Err(e) => return fail(vec![e.into()]),
        };
        let elapsed = start.elapsed();
        let value = values::unflatten(&ty, &mut results.into_iter());
        let json = match slope_runtime::json::encode_typed(&value, &values::value_type(&ty)) {
            Ok(j) => j,
            Err(e) => {
                return fail(vec![Diagnostic::error(
                    Code::E0304,
                    format!("the value cannot be written as JSON {e}"),
                    expr.span,
                    "this expression",
                )])
            }
        };
        let mut out = format!("{json} : {ty}");
        if mode == Mode::Timed {
            out.push_str(&format!("\ntime: {:.3} ms", elapsed.as_secs_f64() * 1e3));
        }
        Reply::ok(out)
    }

    // ---- Commands ----

    fn command(&mut self, origin: FileId) -> Reply {
        let input = self.inputs.text(origin).to_string();
        let (word, end) = command_word(&input);
        let word_span = Span::new(origin, end - word.len(), end);
        let args = words(&input, end);
        let command = match resolve_command(&word) {
            Ok(c) => c,
            Err(d) => return self.input_error(d(word_span)),
        };
        let usage = |what: &str| {
            let (_, params, _) = COMMANDS.iter().find(|(c, _, _)| *c == command).copied().unwrap_or_default();
            Diagnostic::error(Code::E0305, format!("`{command}` {what}"), word_span, "this command")
                .with_help(format!("usage: {command} {params}"))
        };
        match command {
            ":type" | ":time" if args.is_empty() => self.input_error(usage("needs an expression")),
            ":type" => self.evaluate(origin, blank_prefix(&input, end), Mode::Type),
            ":time" => self.evaluate(origin, blank_prefix(&input, end), Mode::Timed),
            ":load" => match args.as_slice() {
                [(start, path)] => self.load(path, Span::new(origin, *start, start + path.len())),
                _ => self.input_error(usage("takes one file name")),
            },
            ":reload" => match (&self.loaded, args.is_empty()) {
                (Some(path), true) => {
                    let path = path.clone();
                    self.load(&path, word_span)
                }
                (None, true) => self.input_error(
                    Diagnostic::error(Code::E0305, "no file has been loaded", word_span, "nothing to reload")
                        .with_help("load one with `:load FILE`"),
                ),
                (_, false) => self.input_error(usage("takes no arguments")),
            },
            ":emit" => match args.as_slice() {
                [stage] => self.emit(origin, *stage, None),
                [stage, name] => self.emit(origin, *stage, Some(*name)),
                _ => self.input_error(usage("takes a stage and at most one name")),
            },
            ":grad" => match args.as_slice() {
                [name] => self.grad(origin, *name),
                _ => self.input_error(usage("takes one name")),
            },
            ":help" => match args.as_slice() {
                [] => Reply::ok(help()),
                [(start, name)] => self.help_name(name, Span::new(origin, *start, start + name.len())),
                _ => self.input_error(usage("takes at most one name")),
            },
            ":quit" => Reply { quit: true, ..Reply::default() },
            _ => self.input_error(usage("is not implemented")),
        }
    }

    /// Loads (or reloads) a file: its definitions come first, then the
    /// session's own ones that it does not redefine.
    fn load(&mut self, path: &str, span: Span) -> Reply {
        let text = match (self.reader)(path) {
            Ok(t) => t,
            Err(reason) => {
                return self.input_error(Diagnostic::error(Code::E0303, format!("cannot read `{path}`"), span, reason))
            }
        };
        let file = self.inputs.add(path, text.clone());
        let module = match parser::parse_module(&text, file) {
            Ok(m) => m,
            Err(d) => return self.input_error(d),
        };
        let mut chunks: Vec<Chunk> = module.items.iter().map(|item| chunk_of(item, &text, file, true)).collect();
        let keys: Vec<Key> = chunks.iter().map(|c| c.key.clone()).collect();
        chunks.extend(self.chunks.iter().filter(|c| !c.from_file && !keys.contains(&c.key)).cloned());
        let build = self.build(path, &chunks);
        let program = match build.program {
            Ok(p) => p,
            Err(f) => return Reply::error(self.render(&f.sources, &build.layout, None, &f.diagnostics)),
        };
        let names: Vec<&str> = keys
            .iter()
            .filter_map(|k| match k {
                Key::Def(n) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        let out =
            format!("loaded {path}: {}", if names.is_empty() { "no definitions".into() } else { names.join(", ") });
        self.loaded = Some(path.to_string());
        self.commit(chunks, program, build.layout);
        Reply::ok(out)
    }

    fn emit(&mut self, origin: FileId, (stage_at, stage): (usize, &str), name: Option<(usize, &str)>) -> Reply {
        let stages = driver::stage_names();
        if !stages.contains(&stage) {
            return self.input_error(
                Diagnostic::error(
                    Code::E0305,
                    format!("unknown stage `{stage}`"),
                    Span::new(origin, stage_at, stage_at + stage.len()),
                    "not a stage",
                )
                .with_note(format!("the stages are {}", stages.join(", "))),
            );
        }
        let Some((at, name)) = name else {
            return self.emit_from(&self.program, &self.layout, stage, None);
        };
        let span = Span::new(origin, at, at + name.len());
        let Some(info) = self.program.checked.infos.get(name) else {
            return self.input_error(unknown_name(name, span));
        };
        if info.is_entry || matches!(stage, "ast" | "typed") {
            return self.emit_from(&self.program, &self.layout, stage, Some(name));
        }
        // Later stages exist only for entry points: compile a copy of the
        // program in which this `def` is an `entry`.
        if !info.param_types.iter().all(Type::is_first_order) || !info.ret.is_first_order() {
            return self.input_error(
                Diagnostic::error(
                    Code::E0114,
                    format!("`{name}` takes or returns a function, so it has no {stage} of its own"),
                    span,
                    format!("has type {}", info.ty),
                )
                .with_help("it is inlined into its callers: emit an entry point that calls it"),
            );
        }
        let key = Key::Def(name.to_string());
        let Some(i) = self.chunks.iter().position(|c| c.key == key) else {
            return self.input_error(Diagnostic::error(
                Code::E0305,
                format!("`{name}` is defined in an imported module"),
                span,
                format!("only the session's own definitions have a {stage} stage"),
            ));
        };
        let mut chunks = self.chunks.clone();
        if let Some(rest) = chunks[i].text.strip_prefix("def") {
            chunks[i].text = format!("entry{rest}");
        }
        let build = self.build(&self.main_name(), &chunks);
        match build.program {
            Ok(p) => self.emit_from(&p, &build.layout, stage, Some(name)),
            Err(f) => Reply::error(self.render(&f.sources, &build.layout, None, &f.diagnostics)),
        }
    }

    fn emit_from(&self, program: &Program, layout: &[Piece], stage: &str, name: Option<&str>) -> Reply {
        match program.emit(stage, name) {
            Ok(text) if text.trim().is_empty() => {
                Reply::ok("-- nothing to show (stages after `typed` hold entry points only; `:emit STAGE NAME` shows one definition)")
            },
            Ok(text) => Reply::ok(text.trim_end()),
            Err(f) => Reply::error(self.render(&f.sources, layout, None, &f.diagnostics)),
        }
    }

    /// Prints the gradient program of `name`: the IR (or, once the pipeline has
    /// it, the `ad` stage) of a synthetic entry `NAME' x = grad NAME x`.
    fn grad(&mut self, origin: FileId, (at, name): (usize, &str)) -> Reply {
        let span = Span::new(origin, at, at + name.len());
        let Some(info) = self.program.checked.infos.get(name) else {
            return self.input_error(unknown_name(name, span));
        };
        let float_result = matches!(info.ret, Type::Scalar(s) if s.is_float());
        if info.param_types.len() != 1 || !info.param_types[0].is_first_order() || !float_result {
            return self.input_error(
                Diagnostic::error(
                    Code::E0116,
                    "`:grad` needs a function of one argument with a floating-point result",
                    span,
                    format!("`{name}` has type {}", info.ty),
                )
                .with_help("for other functions, evaluate `grad`, `vjp` or `jacrev` applied to a lambda"),
            );
        }
        let param = &info.param_types[0];
        let mut sizes = Vec::new();
        named_dims(param, &mut sizes);
        let mut arg = "x".to_string();
        while sizes.contains(&arg) {
            arg.push('_');
        }
        let mut entry = format!("grad_{name}");
        while self.program.checked.infos.contains_key(&entry) {
            entry.push('_');
        }
        let size_params: String = sizes.iter().map(|s| format!(" [{s}]")).collect();
        let text = format!("entry {entry}{size_params} ({arg}: {param}) = grad {name} {arg}");
        let synthetic = self.inputs.add(format!("<grad {name}>"), text.clone());
        let mut chunks = self.chunks.clone();
        chunks.push(Chunk { key: Key::Def(entry.clone()), text, origin: synthetic, offset: 0, from_file: false });
        let build = self.build(&self.main_name(), &chunks);
        let stage = driver::AD.name;
        match build.program {
            Ok(p) => self.emit_from(&p, &build.layout, stage, Some(&entry)),
            Err(f) => Reply::error(self.render(&f.sources, &build.layout, None, &f.diagnostics)),
        }
    }

    fn help_name(&self, name: &str, span: Span) -> Reply {
        if let Some((_, scheme, description)) = builtins::all().iter().find(|(n, _, _)| *n == name) {
            return Reply::ok(format!("{name} : {scheme}\n  {description} (builtin)"));
        }
        if let Some(info) = self.program.checked.infos.get(name) {
            let kind = if info.is_entry { "entry point" } else { "definition" };
            let at = match info.span.file.0 {
                0 => self.inputs.location(remap_main(&self.layout, info.span)),
                _ => self.program.sources.location(info.span),
            };
            return Reply::ok(format!("{name} : {}\n  {kind} at {at}", info.ty));
        }
        if let Ok(command) = resolve_command(name) {
            if let Some((c, params, description)) = COMMANDS.iter().find(|(c, _, _)| *c == command) {
                return Reply::ok(format!("{c} {params}\n  {description}"));
            }
        }
        self.input_error(unknown_name(name, span))
    }

    // ---- Diagnostics ----

    /// Renders a diagnostic whose spans are in [`Session::inputs`].
    fn input_error(&self, d: Diagnostic) -> Reply {
        Reply::error(render(&self.inputs, &[d], RenderStyle::Rich))
    }

    /// Renders the errors of a program extended by the definitions of input
    /// `origin`. Errors in the input itself come alone (errors elsewhere are
    /// then their consequences); errors only elsewhere mean that the input
    /// would break earlier definitions, and say so.
    fn render_definition_errors(&self, failure: &Failure, layout: &[Piece], origin: FileId) -> String {
        let in_input = |d: &Diagnostic| {
            d.primary.span.file.0 == 0
                && layout.iter().rev().find(|p| p.start <= d.primary.span.start as usize).map(|p| p.origin)
                    == Some(origin)
        };
        let own: Vec<Diagnostic> = failure.diagnostics.iter().filter(|d| in_input(d)).cloned().collect();
        if !own.is_empty() {
            return self.render(&failure.sources, layout, None, &own);
        }
        let others: Vec<Diagnostic> = failure
            .diagnostics
            .iter()
            .map(|d| d.clone().with_note("the new definition was not applied: this earlier one would no longer check"))
            .collect();
        self.render(&failure.sources, layout, None, &others)
    }

    /// Renders diagnostics about a compiled program: spans in its main file go
    /// back to the chunk they came from, spans in imported files to a copy of
    /// that file, and spans in the file just past the program (a REPL
    /// expression) to `expr_origin`.
    fn render(
        &self,
        sources: &SourceMap,
        layout: &[Piece],
        expr_origin: Option<FileId>,
        diagnostics: &[Diagnostic],
    ) -> String {
        let mut map = self.inputs.clone();
        let base = map.len() as u32;
        for i in 1..sources.len() as u32 {
            map.add(sources.name(FileId(i)), sources.text(FileId(i)));
        }
        let remap = |s: Span| -> Span {
            let id = s.file.0;
            if id == 0 {
                return remap_main(layout, s);
            }
            match expr_origin {
                Some(o) if id == sources.len() as u32 => Span { file: o, ..s },
                _ if id < sources.len() as u32 => Span { file: FileId(base + id - 1), ..s },
                _ => Span::default(),
            }
        };
        let relabel = |l: &Label| Label { span: remap(l.span), message: l.message.clone() };
        let mapped: Vec<Diagnostic> = diagnostics
            .iter()
            .map(|d| Diagnostic {
                primary: relabel(&d.primary),
                secondary: d.secondary.iter().map(relabel).collect(),
                ..d.clone()
            })
            .collect();
        render(&map, &mapped, RenderStyle::Rich)
    }
}

/// Joins input lines into complete inputs, as the REPL reads them (the CLI,
/// scripted or interactive, and the transcript tests share it).
#[derive(Clone, Debug, Default)]
pub struct LineBuffer {
    text: String,
}

impl LineBuffer {
    /// Adds one line; returns the input once it is complete. Blank lines
    /// between inputs are ignored; a blank line inside an incomplete input
    /// submits it as it is, so one mistake cannot swallow the rest of a session.
    pub fn push(&mut self, line: &str) -> Option<String> {
        let blank = line.trim().is_empty();
        if blank && self.text.is_empty() {
            return None;
        }
        if !blank {
            if !self.text.is_empty() {
                self.text.push('\n');
            }
            self.text.push_str(line);
            if !Session::is_complete(&self.text) {
                return None;
            }
        }
        Some(std::mem::take(&mut self.text))
    }

    /// Whether an input is under way (the prompt shows `..`).
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The incomplete input left at the end, if any.
    pub fn finish(&mut self) -> Option<String> {
        (!self.text.is_empty()).then(|| std::mem::take(&mut self.text))
    }

    /// Abandons the current input.
    pub fn clear(&mut self) {
        self.text.clear();
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Value,
    Type,
    Timed,
}

const KEYWORDS: &[&str] =
    &["def", "entry", "import", "type", "let", "in", "if", "then", "else", "loop", "for", "while", "do", "with"];

/// The first token of an input: `None` when it is blank or only comments,
/// `Some(None)` when it does not lex.
fn first_token(input: &str) -> Option<Option<Token>> {
    Lexer::new(input).next().map(|t| t.ok().map(|(_, tok, _)| tok))
}

/// The command word of an input starting with `:` and the byte offset where it ends.
fn command_word(input: &str) -> (String, usize) {
    let start = input.len() - input.trim_start().len();
    let len = input[start..].find(char::is_whitespace).unwrap_or(input.len() - start);
    (input[start..start + len].to_string(), start + len)
}

/// A command from its name or an unambiguous prefix of it.
fn resolve_command(word: &str) -> Result<&'static str, Box<dyn Fn(Span) -> Diagnostic>> {
    if let Some((c, _, _)) = COMMANDS.iter().find(|(c, _, _)| *c == word) {
        return Ok(c);
    }
    let matches: Vec<&'static str> =
        COMMANDS.iter().map(|(c, _, _)| *c).filter(|c| word.len() > 1 && c.starts_with(word)).collect();
    match matches.as_slice() {
        [c] => Ok(c),
        [] => {
            let word = word.to_string();
            Err(Box::new(move |span| {
                Diagnostic::error(Code::E0305, format!("unknown command `{word}`"), span, "not a command")
                    .with_help("`:help` lists the commands")
            }))
        }
        several => {
            let (word, list) = (word.to_string(), several.join(", "));
            Err(Box::new(move |span| {
                Diagnostic::error(Code::E0305, format!("ambiguous command `{word}`"), span, "which command?")
                    .with_note(format!("it could be {list}"))
            }))
        }
    }
}

/// The input with its first `end` bytes (the command word) replaced by spaces,
/// so that offsets in what remains are offsets in the input.
fn blank_prefix(input: &str, end: usize) -> String {
    format!("{}{}", " ".repeat(end), &input[end..])
}

/// The whitespace-separated words of `input` from byte `from`, with their offsets.
fn words(input: &str, from: usize) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut rest = &input[from..];
    let mut at = from;
    while let Some(skip) = rest.find(|c: char| !c.is_whitespace()) {
        at += skip;
        rest = &rest[skip..];
        let len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        out.push((at, &rest[..len]));
        at += len;
        rest = &rest[len..];
    }
    out
}

fn chunk_of(item: &Item, text: &str, origin: FileId, from_file: bool) -> Chunk {
    let (key, span) = match item {
        Item::Def(d) => (Key::Def(d.name.text.clone()), d.span),
        Item::TypeAlias { name, span, .. } => (Key::Type(name.text.clone()), *span),
        Item::Import { path, span } => (Key::Import(path.clone()), *span),
    };
    let (start, end) = (span.start as usize, span.end as usize);
    Chunk { key, text: text.get(start..end).unwrap_or_default().to_string(), origin, offset: start, from_file }
}

/// The chunks after adding `new` to `old`: a chunk with the key of an old one
/// replaces it (in its place, or by moving to the end); an import already
/// present is kept once; two chunks of one input with the same key both stay,
/// so that the checker reports the duplicate.
fn merge(old: &[Chunk], new: &[Chunk], in_place: bool) -> Vec<Chunk> {
    let mut out = old.to_vec();
    let mut seen = Vec::new();
    for c in new {
        let existing = out.iter().position(|o| o.key == c.key);
        match existing {
            Some(_) if matches!(c.key, Key::Import(_)) => {}
            Some(i) if !seen.contains(&c.key) => {
                if in_place {
                    out[i] = c.clone();
                } else {
                    out.remove(i);
                    out.push(c.clone());
                }
            }
            _ => out.push(c.clone()),
        }
        seen.push(c.key.clone());
    }
    out
}

/// The line printed for a new definition.
fn describe(program: &Program, key: &Key) -> String {
    match key {
        Key::Def(name) => match program.checked.infos.get(name) {
            Some(info) => format!("defined {name} : {}", info.ty),
            None => format!("defined {name}"),
        },
        Key::Type(name) => format!("defined type {name}"),
        Key::Import(path) => format!("imported \"{path}\""),
    }
}

/// The size names (`[n]`) a type mentions, each once, in order.
fn named_dims(ty: &Type, out: &mut Vec<String>) {
    match ty {
        Type::Array(e, d) => {
            if let Dim::Named(n) = d {
                if !out.contains(n) {
                    out.push(n.clone());
                }
            }
            named_dims(e, out);
        }
        Type::Tuple(ts) => ts.iter().for_each(|t| named_dims(t, out)),
        Type::Record(fs) => fs.iter().for_each(|(_, t)| named_dims(t, out)),
        Type::Func(a, b) => {
            named_dims(a, out);
            named_dims(b, out);
        }
        Type::Scalar(_) | Type::Var(_) | Type::Param(_) | Type::Unknown => {}
    }
}

/// Maps a span in the concatenated main file back to the chunk's own source.
fn remap_main(layout: &[Piece], s: Span) -> Span {
    let (start, end) = (s.start as usize, s.end as usize);
    match layout.iter().rev().find(|p| p.start <= start && start <= p.start + p.len) {
        Some(p) => {
            Span::new(p.origin, p.offset + start - p.start, p.offset + end.clamp(start, p.start + p.len) - p.start)
        }
        None => Span::default(),
    }
}

fn unknown_name(name: &str, span: Span) -> Diagnostic {
    Diagnostic::error(Code::E0101, format!("unknown name `{name}`"), span, "not defined in this session")
}

fn help() -> String {
    let mut out = String::from(
        "Enter a definition (`def`, `entry`, `type`, `import`) to add it to the session, or an expression to \
         evaluate it.\nA definition of an existing name replaces it. Input continues on `..` lines until it is \
         complete.\n\nCommands (any unambiguous prefix works):\n",
    );
    let width = COMMANDS.iter().map(|(c, p, _)| c.len() + p.len() + 1).max().unwrap_or(0);
    for (c, p, d) in COMMANDS {
        let usage = if p.is_empty() { c.to_string() } else { format!("{c} {p}") };
        out.push_str(&format!("  {usage:width$}  {d}\n"));
    }
    let stages = driver::stage_names();
    out.push_str(&format!("\nStages for :emit: {}.", stages.join(", ")));
    out
}
