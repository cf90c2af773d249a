//! Parser glue: runs the generated `lalrpop` parser over the logos tokens and
//! turns every kind of parse error into a [`Diagnostic`] with a span.

use super::ast::{BinOp, Expr, ExprKind, Module, Suffix};
use super::lexer::{LexError, LexErrorKind, Lexer, Token};
use crate::diagnostic::{Code, Diagnostic, FileId, Span};
use lalrpop_util::ParseError;

lalrpop_util::lalrpop_mod!(
    #[allow(clippy::all, unused_parens, dead_code)]
    grammar,
    "/slope.rs"
);

/// Parses a whole module (a file, a stdlib module or a REPL definition).
pub fn parse_module(source: &str, file: FileId) -> Result<Module, Diagnostic> {
    grammar::ModuleParser::new().parse(file, Lexer::new(source)).map_err(|e| convert_error(e, source, file))
}

/// Parses a single expression (REPL input, test inputs).
pub fn parse_expr(source: &str, file: FileId) -> Result<Expr, Diagnostic> {
    grammar::ExprParser::new().parse(file, Lexer::new(source)).map_err(|e| convert_error(e, source, file))
}

/// `(op e)`: the operator with its right operand given.
pub(crate) fn right_section(op: BinOp, e: Expr, span: Span) -> Expr {
    Expr::new(ExprKind::Section(op, None, Some(Box::new(e))), span)
}

/// `(e op)`: the operator with its left operand given.
pub(crate) fn left_section(op: BinOp, e: Expr, span: Span) -> Expr {
    Expr::new(ExprKind::Section(op, Some(Box::new(e)), None), span)
}

/// Splits an integer literal's suffix and checks its range.
pub(crate) fn int_literal(
    text: &str,
    file: FileId,
    l: usize,
    r: usize,
) -> Result<Expr, ParseError<usize, Token, LexError>> {
    let (digits, suffix) = split_suffix(text);
    let digits = digits.replace('_', "");
    let span = Span::new(file, l, r);
    if suffix == Suffix::F32 || suffix == Suffix::F64 {
        return match digits.parse::<f64>() {
            Ok(v) => Ok(Expr::new(ExprKind::Float(v, suffix), span)),
            Err(_) => Err(bad_number(l, r)),
        };
    }
    match digits.parse::<i64>() {
        Ok(v) => Ok(Expr::new(ExprKind::Int(v, suffix), span)),
        Err(_) => Err(bad_number(l, r)),
    }
}

pub(crate) fn float_literal(
    text: &str,
    file: FileId,
    l: usize,
    r: usize,
) -> Result<Expr, ParseError<usize, Token, LexError>> {
    let (digits, suffix) = split_suffix(text);
    match digits.replace('_', "").parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Expr::new(ExprKind::Float(v, suffix), Span::new(file, l, r))),
        _ => Err(bad_number(l, r)),
    }
}

fn split_suffix(text: &str) -> (&str, Suffix) {
    for (s, suffix) in [("i64", Suffix::I64), ("f64", Suffix::F64), ("f32", Suffix::F32)] {
        if let Some(d) = text.strip_suffix(s) {
            return (d, suffix);
        }
    }
    (text, Suffix::None)
}

fn bad_number(start: usize, end: usize) -> ParseError<usize, Token, LexError> {
    ParseError::User { error: LexError { kind: LexErrorKind::BadNumber, start, end } }
}

fn convert_error(err: ParseError<usize, Token, LexError>, source: &str, file: FileId) -> Diagnostic {
    match err {
        ParseError::InvalidToken { location } => Diagnostic::error(
            Code::E0003,
            "invalid character",
            Span::new(file, location, location + 1),
            "not part of the language",
        ),
        ParseError::UnrecognizedEof { location, expected } => {
            let at = location.min(source.len());
            Diagnostic::error(Code::E0002, "unexpected end of input", Span::new(file, at, at), "input ends here")
                .with_note(expected_note(&expected))
        }
        ParseError::UnrecognizedToken { token: (l, token, r), expected } => {
            let mut d = Diagnostic::error(
                Code::E0001,
                format!("unexpected token `{token}`"),
                Span::new(file, l, r),
                "not expected here",
            )
            .with_note(expected_note(&expected));
            if token == Token::IndexOpen {
                d = d.with_help("a `[` written directly after a name, `)` or `]` is indexing; put a space before it to pass an array literal as an argument");
            }
            d
        }
        ParseError::ExtraToken { token: (l, token, r) } => {
            Diagnostic::error(Code::E0001, format!("unexpected token `{token}`"), Span::new(file, l, r), "extra token")
        }
        ParseError::User { error } => lex_error(error, file),
    }
}

fn lex_error(error: LexError, file: FileId) -> Diagnostic {
    let span = Span::new(file, error.start, error.end);
    match error.kind {
        LexErrorKind::InvalidCharacter => {
            Diagnostic::error(Code::E0003, "invalid character", span, "not part of the language")
                .with_help("comments start with `--`; custom derivative rules are written `with jvp …`")
        }
        LexErrorKind::BadNumber => {
            Diagnostic::error(Code::E0004, "malformed number literal", span, "cannot be read as a number")
                .with_help("integer literals must fit in 64 bits; float literals must be finite")
        }
        LexErrorKind::UntypedParam => Diagnostic::error(Code::E0001, "a parameter needs a type", span, "no type given")
            .with_help("write parameters as `(x: f64)`; lambdas (`\\x -> …`) may leave types out"),
        LexErrorKind::UnterminatedString => {
            Diagnostic::error(Code::E0005, "unterminated string literal", span, "string starts here")
                .with_help("close it with `\"`")
        }
    }
}

/// Turns lalrpop's quoted terminal names into a readable list.
fn expected_note(expected: &[String]) -> String {
    let mut names: Vec<String> = expected
        .iter()
        .map(|e| match e.trim_matches('"') {
            "ident" => "a name".to_string(),
            "int" => "an integer".to_string(),
            "float" => "a float".to_string(),
            "string" => "a string".to_string(),
            "idx[" => "`[` (indexing)".to_string(),
            other => format!("`{}`", other.replace("\\\\", "\\").replace("\\\"", "\"")),
        })
        .collect();
    names.dedup();
    match names.len() {
        0 => "nothing more was expected".to_string(),
        1 => format!("expected {}", names[0]),
        _ if names.len() > 12 => format!("expected one of {}, …", names[..12].join(", ")),
        _ => format!("expected one of {}", names.join(", ")),
    }
}

/// Parses a type (builtin schemes, command-line type annotations).
pub fn parse_type(source: &str, file: FileId) -> Result<super::ast::TypeExpr, Diagnostic> {
    grammar::TypeParser::new().parse(file, Lexer::new(source)).map_err(|e| convert_error(e, source, file))
}
