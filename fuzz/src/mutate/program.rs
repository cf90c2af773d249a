//! Mutations of program text.
//!
//! Input: a seed program, the corpus (for splicing and vocabulary) and the
//! case's [`Rng`]. Output: a mutated program. Two styles: [`Style::Wild`]
//! (the front end's diet: truncation, junk bytes, spliced fragments, swapped
//! tokens — mostly programs that must be *rejected* cleanly) and
//! [`Style::Gentle`] (edits that often keep a program well typed: edge-value
//! numbers, a word or operator swapped for another, nesting, a duplicated
//! line — programs that compile and then run).
//! Invariants: the output is valid UTF-8 (the compiler takes `&str`; bytes
//! that are not UTF-8 are the CLI's concern) and a mutation never grows a
//! program past [`MAX_PROGRAM_BYTES`] (or the seed's size, if larger), so a
//! hang is a hang on a small input.

use super::tokens::{self, Kind, Token};
use crate::corpus::Corpus;
use crate::rng::Rng;

/// The size below which a slow case counts as a hang (the issue's 10 kB).
pub const MAX_PROGRAM_BYTES: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Wild,
    Gentle,
}

/// The mutations, in the order of the weight tables below.
#[derive(Clone, Copy, Debug)]
enum Mutation {
    Truncate,
    DeleteSpan,
    DuplicateSpan,
    SwapTokens,
    Splice,
    EdgeNumber,
    Nest,
    InsertJunk,
    ReplaceWord,
    ReplaceOperator,
    LineEdit,
}

const MUTATIONS: [Mutation; 11] = [
    Mutation::Truncate,
    Mutation::DeleteSpan,
    Mutation::DuplicateSpan,
    Mutation::SwapTokens,
    Mutation::Splice,
    Mutation::EdgeNumber,
    Mutation::Nest,
    Mutation::InsertJunk,
    Mutation::ReplaceWord,
    Mutation::ReplaceOperator,
    Mutation::LineEdit,
];
const WILD_WEIGHTS: [u32; 11] = [2, 3, 3, 3, 3, 3, 2, 3, 3, 3, 2];
const GENTLE_WEIGHTS: [u32; 11] = [0, 1, 0, 1, 0, 6, 2, 0, 4, 4, 1];

/// Integer literals at the edges: zero, signs, the runtime's allocation
/// limit (2^40 elements) and just past it, the ends of `i64` and just past them.
const EDGE_INTEGERS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "-1",
    "(-1)",
    "1099511627776",
    "1099511627777",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "(-9223372036854775807 - 1)",
    "18446744073709551616",
    "2i64",
    "0i64",
];

/// Float literals and constants at the edges of `f64`.
const EDGE_FLOATS: &[&str] = &[
    "0.0",
    "-0.0",
    "(-0.0)",
    "1.0",
    "0.5",
    "1e308",
    "1.7976931348623157e308",
    "1e309",
    "5e-324",
    "1e-400",
    "nan",
    "inf",
    "(-inf)",
    "(0.0 / 0.0)",
    "1.5f32",
    "3.4028235e38f32",
    "1e39f32",
];

/// Wrappers for [`Mutation::Nest`]: `{}` is the wrapped token.
const NESTINGS: &[(&str, &str)] = &[
    ("(", ")"),
    ("-(", ")"),
    ("(if true then ", " else 0)"),
    ("(let q = ", " in q)"),
    ("((\\z -> z) ", ")"),
    ("(stop_gradient ", ")"),
    ("(opaque ", ")"),
];

/// Characters that are not in the language, or are easy to get wrong.
const JUNK: &[&str] = &[
    "\0", "\u{7f}", "\t", "\r", "\r\n", "é", "𝑥", "\u{feff}", "\u{202e}", "\u{301}", "\\", "`", "#", "$", "'", "\"",
    "{", "}", "[", "]", "(", ")", "--", "{-", "::", ",", ";", "..", "λ", "∀",
];

/// Mutates `text` `1 + k` times (fewer for [`Style::Gentle`]).
pub fn mutate(text: &str, corpus: &Corpus, rng: &mut Rng, style: Style) -> String {
    let limit = MAX_PROGRAM_BYTES.max(text.len());
    let rounds = match style {
        Style::Wild => 1 + rng.below(6),
        Style::Gentle => 1 + rng.below(2),
    };
    let weights = if style == Style::Wild { &WILD_WEIGHTS } else { &GENTLE_WEIGHTS };
    let mut current = text.to_string();
    for _ in 0..rounds {
        let mutation = MUTATIONS[rng.weighted(weights)];
        let next = apply(mutation, &current, corpus, rng);
        if next.len() <= limit {
            current = next;
        }
    }
    current
}

fn apply(mutation: Mutation, text: &str, corpus: &Corpus, rng: &mut Rng) -> String {
    let tokens = tokens::tokenize(text);
    let significant = tokens::significant(&tokens);
    if significant.is_empty() {
        return insert_junk(text, rng);
    }
    match mutation {
        Mutation::Truncate => truncate(text, rng),
        Mutation::DeleteSpan => {
            let (start, end) = span(&significant, tokens.len(), rng);
            join(&tokens[..start], &[], &tokens[end..])
        }
        Mutation::DuplicateSpan => {
            let (start, end) = span(&significant, tokens.len(), rng);
            let at = rng.below(tokens.len() + 1);
            let copy: Vec<Token> = tokens[start..end].to_vec();
            join(&tokens[..at], &copy, &tokens[at..])
        }
        Mutation::SwapTokens => {
            let (a, b) = (*rng.pick(&significant), *rng.pick(&significant));
            let mut swapped = tokens.clone();
            swapped.swap(a, b);
            concat(&swapped)
        }
        Mutation::Splice => splice(&tokens, corpus, rng),
        Mutation::EdgeNumber => replace_where(&tokens, rng, |t| t.kind == Kind::Number, edge_number),
        Mutation::Nest => nest(&tokens, &significant, rng),
        Mutation::InsertJunk => insert_junk(text, rng),
        Mutation::ReplaceWord => replace_word(&tokens, corpus, rng),
        Mutation::ReplaceOperator => {
            replace_where(&tokens, rng, |t| t.kind == Kind::Operator, |_, rng| rng.pick(&corpus.operators).clone())
        }
        Mutation::LineEdit => line_edit(text, rng),
    }
}

/// A random run of 1–4 significant tokens, as a half-open range of token indices.
fn span(significant: &[usize], len: usize, rng: &mut Rng) -> (usize, usize) {
    let first = rng.below(significant.len());
    let last = (first + rng.below(4)).min(significant.len() - 1);
    (significant[first], (significant[last] + 1).min(len))
}

fn concat(tokens: &[Token<'_>]) -> String {
    tokens.iter().map(|t| t.text).collect()
}

fn join(a: &[Token<'_>], b: &[Token<'_>], c: &[Token<'_>]) -> String {
    let mut out = concat(a);
    out.push_str(&concat(b));
    out.push_str(&concat(c));
    out
}

fn truncate(text: &str, rng: &mut Rng) -> String {
    let mut cut = rng.below(text.len() + 1);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].to_string()
}

/// Replaces one token that satisfies `wanted` (if any) by `replacement(token)`.
fn replace_where(
    tokens: &[Token<'_>],
    rng: &mut Rng,
    wanted: impl Fn(&Token<'_>) -> bool,
    replacement: impl Fn(&str, &mut Rng) -> String,
) -> String {
    let candidates: Vec<usize> = (0..tokens.len()).filter(|&i| wanted(&tokens[i])).collect();
    let Some(&at) = (!candidates.is_empty()).then(|| rng.pick(&candidates)) else { return concat(tokens) };
    let new = replacement(tokens[at].text, rng);
    let mut out = concat(&tokens[..at]);
    out.push_str(&new);
    out.push_str(&concat(&tokens[at + 1..]));
    out
}

/// An edge value of the literal's own kind, now and then of the other kind.
fn edge_number(literal: &str, rng: &mut Rng) -> String {
    let float = literal.contains('.') || literal.contains('e');
    let table = if float != rng.one_in(6) { EDGE_FLOATS } else { EDGE_INTEGERS };
    rng.pick(table).to_string()
}

/// A word from the same program (in scope, so often still well typed) or,
/// now and then, any word of the corpus.
fn replace_word(tokens: &[Token<'_>], corpus: &Corpus, rng: &mut Rng) -> String {
    let own: Vec<String> = tokens.iter().filter(|t| t.kind == Kind::Word).map(|t| t.text.to_string()).collect();
    let pool = if own.is_empty() || rng.one_in(3) { &corpus.words } else { &own };
    let word = rng.pick(pool).clone();
    replace_where(tokens, rng, |t| t.kind == Kind::Word, move |_, _| word.clone())
}

/// Wraps a word or number (or any significant token) in a nesting wrapper, repeated.
fn nest(tokens: &[Token<'_>], significant: &[usize], rng: &mut Rng) -> String {
    let atoms: Vec<usize> =
        significant.iter().copied().filter(|&i| matches!(tokens[i].kind, Kind::Word | Kind::Number)).collect();
    let at = if atoms.is_empty() || rng.one_in(4) { *rng.pick(significant) } else { *rng.pick(&atoms) };
    let (open, close) = *rng.pick(NESTINGS);
    let depth = *rng.pick(&[1usize, 2, 8, 50, 400]);
    let mut out = concat(&tokens[..at]);
    out.push_str(&open.repeat(depth));
    out.push_str(tokens[at].text);
    out.push_str(&close.repeat(depth));
    out.push_str(&concat(&tokens[at + 1..]));
    out
}

fn insert_junk(text: &str, rng: &mut Rng) -> String {
    let mut at = rng.below(text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let junk = if rng.one_in(4) {
        // A random code point (surrogates excluded by `from_u32`).
        let c = char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{fffd}');
        c.to_string()
    } else {
        rng.pick(JUNK).to_string()
    };
    format!("{}{}{}", &text[..at], junk.repeat(1 + rng.below(3)), &text[at..])
}

/// Splices 1–12 tokens (or a whole line) of another seed program in, at a
/// random place, replacing 0–2 tokens there.
fn splice(tokens: &[Token<'_>], corpus: &Corpus, rng: &mut Rng) -> String {
    let donor = &rng.pick(&corpus.programs).text;
    let fragment = if rng.one_in(3) {
        let lines: Vec<&str> = donor.lines().collect();
        if lines.is_empty() {
            String::new()
        } else {
            format!("{}\n", rng.pick(&lines))
        }
    } else {
        let donor_tokens = tokens::tokenize(donor);
        if donor_tokens.is_empty() {
            String::new()
        } else {
            let start = rng.below(donor_tokens.len());
            let end = (start + 1 + rng.below(12)).min(donor_tokens.len());
            concat(&donor_tokens[start..end])
        }
    };
    let at = rng.below(tokens.len() + 1);
    let replaced = (at + rng.below(3)).min(tokens.len());
    let mut out = concat(&tokens[..at]);
    out.push_str(&fragment);
    out.push_str(&concat(&tokens[replaced..]));
    out
}

/// Duplicates, deletes or swaps whole lines (definitions stay whole more often).
fn line_edit(text: &str, rng: &mut Rng) -> String {
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    if lines.is_empty() {
        return text.to_string();
    }
    let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
    match rng.below(3) {
        0 => lines.insert(b, lines[a]),
        1 => {
            lines.remove(a);
        }
        _ => lines.swap(a, b),
    }
    let mut out: String = lines.concat();
    if !out.ends_with('\n') && !out.is_empty() {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Corpus {
        let programs = vec![crate::corpus::ProgramSeed {
            path: "a.slope".into(),
            text: "entry f (x: f64) : f64 = x * 2.0 + 1.0\n".into(),
        }];
        Corpus {
            programs,
            words: vec!["x".into(), "map".into()],
            operators: vec!["+".into(), "*".into()],
            ..Default::default()
        }
    }

    #[test]
    fn mutations_are_deterministic_and_bounded() {
        let corpus = corpus();
        let seed = &corpus.programs[0].text;
        for style in [Style::Wild, Style::Gentle] {
            for i in 0..500 {
                let a = mutate(seed, &corpus, &mut Rng::for_case(3, "t", i), style);
                let b = mutate(seed, &corpus, &mut Rng::for_case(3, "t", i), style);
                assert_eq!(a, b);
                assert!(a.len() <= MAX_PROGRAM_BYTES);
            }
        }
    }

    #[test]
    fn gentle_mutations_mostly_keep_the_program_compiling() {
        let corpus = corpus();
        let seed = &corpus.programs[0].text;
        let compiled = (0..100)
            .filter(|&i| {
                let text = mutate(seed, &corpus, &mut Rng::for_case(5, "t", i), Style::Gentle);
                slope::api::Program::compile("m.slope", &text, &slope::driver::no_files).is_ok()
            })
            .count();
        assert!(compiled >= 30, "only {compiled} of 100 gentle mutants compiled");
    }
}
