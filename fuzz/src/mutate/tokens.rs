//! A forgiving tokenizer for mutating programs.
//!
//! Input: any text. Output: tokens that concatenate back to exactly that
//! text. This is not the compiler's lexer: it never fails, and it only needs
//! to find spans worth swapping — words, numbers, operator runs, brackets,
//! strings, comments and whitespace.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Space,
    Word,
    Number,
    Operator,
    Bracket,
    Str,
    Comment,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token<'t> {
    pub kind: Kind,
    pub text: &'t str,
}

const OPERATOR_CHARS: &str = "+-*/%<>=!&|^~:.@$?";
const BRACKET_CHARS: &str = "()[]{},;\\";

/// Splits `text` into tokens; their texts concatenate to `text`.
pub fn tokenize(text: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut rest = text;
    while let Some(first) = rest.chars().next() {
        let (kind, len) = token_at(rest, first);
        tokens.push(Token { kind, text: &rest[..len] });
        rest = &rest[len..];
    }
    tokens
}

/// The kind and byte length of the token at the start of `rest`.
fn token_at(rest: &str, first: char) -> (Kind, usize) {
    let run = |pred: &dyn Fn(char) -> bool| rest.char_indices().find(|&(_, c)| !pred(c)).map_or(rest.len(), |(i, _)| i);
    if first.is_whitespace() {
        (Kind::Space, run(&|c| c.is_whitespace()))
    } else if rest.starts_with("--") {
        (Kind::Comment, rest.find('\n').unwrap_or(rest.len()))
    } else if first == '"' {
        let end = rest[1..].find('"').map_or(rest.len(), |i| i + 2);
        (Kind::Str, end)
    } else if first.is_ascii_digit() {
        (Kind::Number, number_len(rest))
    } else if first.is_alphabetic() || first == '_' {
        (Kind::Word, run(&|c| c.is_alphanumeric() || c == '_' || c == '\''))
    } else if OPERATOR_CHARS.contains(first) {
        (Kind::Operator, run(&|c| OPERATOR_CHARS.contains(c)))
    } else if BRACKET_CHARS.contains(first) {
        (Kind::Bracket, 1)
    } else {
        (Kind::Other, first.len_utf8())
    }
}

/// The length of a numeric literal: digits, `.`, exponents with a sign, suffixes.
fn number_len(rest: &str) -> usize {
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let exponent_sign = (c == b'+' || c == b'-') && i > 0 && matches!(bytes[i - 1], b'e' | b'E');
        let decimal_point = c == b'.' && bytes.get(i + 1).is_some_and(|d| d.is_ascii_digit());
        if !(c.is_ascii_alphanumeric() || c == b'_' || exponent_sign || decimal_point) {
            break;
        }
        i += 1;
    }
    i
}

/// The tokens that are not whitespace or comments (the ones worth mutating).
pub fn significant(tokens: &[Token<'_>]) -> Vec<usize> {
    tokens.iter().enumerate().filter(|(_, t)| !matches!(t.kind, Kind::Space | Kind::Comment)).map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_concatenate_back_to_the_text() {
        let text =
            "-- entry: f\nentry f (x: f64) : f64 = let y = 1.5e-3 * x in (\\a -> a ** 2.0) y -- c\n\"linalg\" €\u{0}";
        let tokens = tokenize(text);
        assert_eq!(tokens.iter().map(|t| t.text).collect::<String>(), text);
        let kinds: Vec<(Kind, &str)> =
            tokens.iter().filter(|t| t.kind != Kind::Space).map(|t| (t.kind, t.text)).collect();
        assert!(kinds.contains(&(Kind::Number, "1.5e-3")));
        assert!(kinds.contains(&(Kind::Operator, "**")));
        assert!(kinds.contains(&(Kind::Comment, "-- entry: f")));
        assert!(kinds.contains(&(Kind::Str, "\"linalg\"")));
        assert!(kinds.contains(&(Kind::Other, "€")));
    }

    #[test]
    fn a_tuple_projection_is_not_a_float() {
        let tokens = tokenize("t.0 + 2.5");
        let texts: Vec<&str> = tokens.iter().map(|t| t.text).collect();
        assert_eq!(texts, ["t", ".", "0", " ", "+", " ", "2.5"]);
    }
}
