//! The schedule language: strategies written as text, parsed by the compiler.
//!
//! Input: a string such as `fuel 100000: normalize(copy_prop <+ dce) ; try(cse)`.
//! Output: a [`Schedule`] (a [`Strategy`] and an optional fuel budget), or a
//! [`ScheduleError`] with the byte offset of the problem.
//!
//! Grammar (as in Stratego, `;` binds tighter than `<+`):
//! ```text
//! schedule := ("fuel" NUMBER ":")? choice
//! choice   := seq ("<+" seq)*
//! seq      := term (";" term)*
//! term     := "(" choice ")" | NAME | COMBINATOR "(" choice ")"
//! ```
//! `NAME` is `id`, `fail` or a rule of [`super::rules::RULES`]; `COMBINATOR`
//! is `try`, `repeat`, `one`, `all`, `some`, `topDown`, `bottomUp`,
//! `allTopDown`, `allBottomUp`, `normalize`. Printing a strategy
//! (`Display`) gives text that parses back to the same strategy.

use super::rules;
use super::strategy::Strategy;

#[derive(Clone, Debug)]
pub struct Schedule {
    pub strategy: Strategy,
    pub fuel: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleError {
    pub message: String,
    pub offset: usize,
}

impl std::fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.offset)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Name(String),
    Number(u64),
    LParen,
    RParen,
    Semi,
    Choice,
    Colon,
    End,
}

fn lex(text: &str) -> Result<Vec<(Tok, usize)>, ScheduleError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            b';' => Tok::Semi,
            b':' => Tok::Colon,
            b'<' if bytes.get(i + 1) == Some(&b'+') => {
                i += 1;
                Tok::Choice
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i + 1 < bytes.len() && (bytes[i + 1].is_ascii_alphanumeric() || bytes[i + 1] == b'_') {
                    i += 1;
                }
                Tok::Name(text[start..=i].to_string())
            }
            c if c.is_ascii_digit() => {
                while i + 1 < bytes.len() && (bytes[i + 1].is_ascii_digit() || bytes[i + 1] == b'_') {
                    i += 1;
                }
                let digits: String = text[start..=i].chars().filter(|c| *c != '_').collect();
                Tok::Number(
                    digits.parse().map_err(|_| ScheduleError { message: "number too large".into(), offset: start })?,
                )
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or('?');
                return Err(ScheduleError { message: format!("unexpected character `{ch}`"), offset: start });
            }
        };
        out.push((tok, start));
        i += 1;
    }
    out.push((Tok::End, text.len()));
    Ok(out)
}

const COMBINATORS: &[&str] =
    &["try", "repeat", "one", "all", "some", "topDown", "bottomUp", "allTopDown", "allBottomUp", "normalize"];

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }
    fn offset(&self) -> usize {
        self.toks[self.pos].1
    }
    fn next(&mut self) -> Tok {
        let t = self.toks[self.pos].0.clone();
        if t != Tok::End {
            self.pos += 1;
        }
        t
    }
    fn error<T>(&self, message: impl Into<String>) -> Result<T, ScheduleError> {
        Err(ScheduleError { message: message.into(), offset: self.offset() })
    }
    fn expect(&mut self, t: Tok, what: &str) -> Result<(), ScheduleError> {
        if *self.peek() == t {
            self.next();
            Ok(())
        } else {
            self.error(format!("expected {what}"))
        }
    }

    fn choice(&mut self) -> Result<Strategy, ScheduleError> {
        let mut s = self.seq()?;
        while *self.peek() == Tok::Choice {
            self.next();
            s = Strategy::Choice(Box::new(s), Box::new(self.seq()?));
        }
        Ok(s)
    }

    fn seq(&mut self) -> Result<Strategy, ScheduleError> {
        let mut s = self.term()?;
        while *self.peek() == Tok::Semi {
            self.next();
            s = Strategy::Seq(Box::new(s), Box::new(self.term()?));
        }
        Ok(s)
    }

    fn term(&mut self) -> Result<Strategy, ScheduleError> {
        let at = self.offset();
        match self.next() {
            Tok::LParen => {
                let s = self.choice()?;
                self.expect(Tok::RParen, "`)`")?;
                Ok(s)
            }
            Tok::Name(n) if COMBINATORS.contains(&n.as_str()) => {
                self.expect(Tok::LParen, &format!("`(` after `{n}`"))?;
                let s = Box::new(self.choice()?);
                self.expect(Tok::RParen, "`)`")?;
                Ok(match n.as_str() {
                    "try" => Strategy::Try(s),
                    "repeat" => Strategy::Repeat(s),
                    "one" => Strategy::One(s),
                    "all" => Strategy::All(s),
                    "some" => Strategy::Some(s),
                    "topDown" => Strategy::TopDown(s),
                    "bottomUp" => Strategy::BottomUp(s),
                    "allTopDown" => Strategy::AllTopDown(s),
                    "allBottomUp" => Strategy::AllBottomUp(s),
                    _ => Strategy::Normalize(s),
                })
            }
            Tok::Name(n) if n == "id" => Ok(Strategy::Id),
            Tok::Name(n) if n == "fail" => Ok(Strategy::Fail),
            Tok::Name(n) => match rules::lookup(&n) {
                Some(r) => Ok(Strategy::Rule(r)),
                None => {
                    let names: Vec<&str> = rules::RULES.iter().map(|r| r.name).collect();
                    Err(ScheduleError {
                        message: format!("unknown rule or combinator `{n}` (rules: {})", names.join(", ")),
                        offset: at,
                    })
                }
            },
            Tok::End => Err(ScheduleError { message: "expected a strategy, found the end".into(), offset: at }),
            _ => Err(ScheduleError { message: "expected a strategy".into(), offset: at }),
        }
    }
}

/// Parses a schedule.
pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
    let mut p = Parser { toks: lex(text)?, pos: 0 };
    let mut fuel = None;
    if *p.peek() == Tok::Name("fuel".into()) {
        p.next();
        match p.next() {
            Tok::Number(n) => fuel = Some(n),
            _ => {
                return Err(ScheduleError {
                    message: "expected a number after `fuel`".into(),
                    offset: p.toks[p.pos - 1].1,
                })
            }
        }
        p.expect(Tok::Colon, "`:` after the fuel")?;
    }
    let strategy = p.choice()?;
    if *p.peek() != Tok::End {
        return p.error("expected `;`, `<+` or the end");
    }
    Ok(Schedule { strategy, fuel })
}
