//! Tokens of the surface language (`logos`) and the adapter that feeds them to
//! the `lalrpop` parser as `(start, token, end)` triples.
//!
//! One lexical subtlety is resolved here rather than in the grammar: `a[i]`
//! (indexing) and `f [1, 2]` (applying `f` to an array literal) differ only in
//! whitespace. A `[` that directly follows an identifier, `)` or `]` with no
//! space in between becomes [`Token::IndexOpen`]; any other `[` is
//! [`Token::LBracket`]. This is Futhark's rule.
//!
//! The same way, `with` has two meanings told apart by the token after it: a
//! `with` followed by `[` or `.` is a functional update (`xs with [i] = v`,
//! [`Token::WithUpdate`]); any other `with` starts a derivative rule (`with
//! jvp …`). The grammar could not tell them apart with one token of
//! lookahead: both may follow a definition's body.

use logos::Logos;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Default)]
pub enum LexErrorKind {
    #[default]
    InvalidCharacter,
    BadNumber,
    UnterminatedString,
    /// Not a lexical error: a parameter without a type (reported through the same channel).
    UntypedParam,
}

#[derive(Logos, Clone, Debug, PartialEq)]
#[logos(skip r"[ \t\r\n\f]+")]
#[logos(skip(r"--[^\n]*", allow_greedy = true))]
#[logos(error = LexErrorKind)]
pub enum Token {
    #[token("def")]
    Def,
    #[token("entry")]
    Entry,
    #[token("import")]
    Import,
    #[token("let")]
    Let,
    #[token("in")]
    In,
    #[token("if")]
    If,
    #[token("then")]
    Then,
    #[token("else")]
    Else,
    #[token("loop")]
    Loop,
    #[token("for")]
    For,
    #[token("while")]
    While,
    #[token("do")]
    Do,
    #[token("with")]
    With,
    /// A `with` directly before `[` or `.`: a functional update.
    WithUpdate,
    #[token("type")]
    Type,
    #[token("true")]
    True,
    #[token("false")]
    False,

    #[regex(r"[A-Za-z_][A-Za-z0-9_']*", |lex| lex.slice().to_owned())]
    Ident(String),
    /// A type parameter of a definition, `'t`: the name without the quote.
    #[regex(r"'[A-Za-z_][A-Za-z0-9_]*", |lex| lex.slice()[1..].to_owned())]
    TypeParam(String),
    /// Integer literal with an optional type suffix (`3`, `3i64`, `3f64`).
    #[regex(r"[0-9][0-9_]*(i64|f64|f32)?", |lex| lex.slice().to_owned())]
    Int(String),
    /// Float literal (`1.5`, `1e-3`, `2.5e3f32`).
    #[regex(r"[0-9][0-9_]*\.[0-9][0-9_]*([eE][+-]?[0-9]+)?(f64|f32)?", |lex| lex.slice().to_owned())]
    #[regex(r"[0-9][0-9_]*[eE][+-]?[0-9]+(f64|f32)?", |lex| lex.slice().to_owned())]
    Float(String),
    #[regex(r#""([^"\\\n]|\\.)*""#, |lex| { let s = lex.slice(); s[1..s.len()-1].to_owned() })]
    #[regex(r#""([^"\\\n]|\\.)*"#, |_| Err(LexErrorKind::UnterminatedString))]
    Str(String),

    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("[")]
    LBracket,
    /// A `[` glued to the preceding expression: indexing or slicing.
    IndexOpen,
    #[token("]")]
    RBracket,
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token(",")]
    Comma,
    #[token(":")]
    Colon,
    #[token(":>")]
    Coerce,
    #[token(".")]
    Dot,
    #[token("=")]
    Eq,
    #[token("->")]
    Arrow,
    #[token("\\")]
    Backslash,
    #[token("+")]
    Plus,
    #[token("-")]
    Minus,
    #[token("*")]
    Star,
    #[token("/")]
    Slash,
    #[token("%")]
    Percent,
    #[token("**")]
    StarStar,
    #[token("==")]
    EqEq,
    #[token("!=")]
    NotEq,
    #[token("<")]
    Lt,
    #[token("<=")]
    Le,
    #[token(">")]
    Gt,
    #[token(">=")]
    Ge,
    #[token("&&")]
    AndAnd,
    #[token("||")]
    OrOr,
    #[token("!")]
    Bang,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Token::Def => "def",
            Token::Entry => "entry",
            Token::Import => "import",
            Token::Let => "let",
            Token::In => "in",
            Token::If => "if",
            Token::Then => "then",
            Token::Else => "else",
            Token::Loop => "loop",
            Token::For => "for",
            Token::While => "while",
            Token::Do => "do",
            Token::With | Token::WithUpdate => "with",
            Token::Type => "type",
            Token::True => "true",
            Token::False => "false",
            Token::Ident(s) | Token::Int(s) | Token::Float(s) => return f.write_str(s),
            Token::TypeParam(s) => return write!(f, "'{s}"),
            Token::Str(s) => return write!(f, "\"{s}\""),
            Token::LParen => "(",
            Token::RParen => ")",
            Token::LBracket | Token::IndexOpen => "[",
            Token::RBracket => "]",
            Token::LBrace => "{",
            Token::RBrace => "}",
            Token::Comma => ",",
            Token::Colon => ":",
            Token::Coerce => ":>",
            Token::Dot => ".",
            Token::Eq => "=",
            Token::Arrow => "->",
            Token::Backslash => "\\",
            Token::Plus => "+",
            Token::Minus => "-",
            Token::Star => "*",
            Token::Slash => "/",
            Token::Percent => "%",
            Token::StarStar => "**",
            Token::EqEq => "==",
            Token::NotEq => "!=",
            Token::Lt => "<",
            Token::Le => "<=",
            Token::Gt => ">",
            Token::Ge => ">=",
            Token::AndAnd => "&&",
            Token::OrOr => "||",
            Token::Bang => "!",
        };
        f.write_str(s)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LexError {
    pub kind: LexErrorKind,
    pub start: usize,
    pub end: usize,
}

/// Adapter from logos' spanned iterator to lalrpop's triples.
pub struct Lexer<'src> {
    inner: std::iter::Peekable<logos::SpannedIter<'src, Token>>,
    /// End offset of the previous token, if it can be followed by an index.
    prev_indexable_end: Option<usize>,
}

impl<'src> Lexer<'src> {
    pub fn new(source: &'src str) -> Lexer<'src> {
        Lexer { inner: Token::lexer(source).spanned().peekable(), prev_indexable_end: None }
    }
}

impl Iterator for Lexer<'_> {
    type Item = Result<(usize, Token, usize), LexError>;
    fn next(&mut self) -> Option<Self::Item> {
        let (token, span) = self.inner.next()?;
        Some(match token {
            Ok(mut token) => {
                if token == Token::LBracket && self.prev_indexable_end == Some(span.start) {
                    token = Token::IndexOpen;
                }
                if token == Token::With && matches!(self.inner.peek(), Some((Ok(Token::LBracket | Token::Dot), _))) {
                    token = Token::WithUpdate;
                }
                let indexable = matches!(token, Token::Ident(_) | Token::RParen | Token::RBracket);
                self.prev_indexable_end = indexable.then_some(span.end);
                Ok((span.start, token, span.end))
            }
            Err(kind) => Err(LexError { kind, start: span.start, end: span.end }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<String> {
        Lexer::new(src)
            .map(|t| match t {
                Ok((_, Token::IndexOpen, _)) => "idx[".to_string(),
                Ok((_, t, _)) => t.to_string(),
                Err(e) => format!("{:?}", e.kind),
            })
            .collect()
    }

    #[test]
    fn index_bracket_is_glued() {
        assert_eq!(kinds("a[i] f [1]"), ["a", "idx[", "i", "]", "f", "[", "1", "]"]);
        assert_eq!(kinds("[n][m]f64"), ["[", "n", "]", "idx[", "m", "]", "f64"]);
    }

    #[test]
    fn with_before_bracket_or_dot_is_an_update() {
        let with =
            |src: &str| Lexer::new(src).filter_map(Result::ok).map(|(_, t, _)| t).find(|t| t.to_string() == "with");
        assert_eq!(with("xs with [i] = v"), Some(Token::WithUpdate));
        assert_eq!(with("r with .a = v"), Some(Token::WithUpdate));
        assert_eq!(with("x with jvp x t = t"), Some(Token::With));
        assert_eq!(with("x with -- c\n [0] = 1"), Some(Token::WithUpdate));
    }

    #[test]
    fn numbers_and_comments() {
        assert_eq!(kinds("1 2.5 1e-3 3f32 -- comment\nx"), ["1", "2.5", "1e-3", "3f32", "x"]);
        assert_eq!(kinds("t.0"), ["t", ".", "0"]);
    }

    #[test]
    fn errors_keep_spans() {
        let toks: Vec<_> = Lexer::new("a $ b").collect();
        assert_eq!(toks[1], Err(LexError { kind: LexErrorKind::InvalidCharacter, start: 2, end: 3 }));
        assert!(matches!(
            Lexer::new("\"abc").next(),
            Some(Err(LexError { kind: LexErrorKind::UnterminatedString, .. }))
        ));
    }
}
