//! Surface types and the type checker.
//!
//! [`Type`] is the type of a surface expression: scalars, tuples, records,
//! arrays with a size per dimension ([`Dim`]) and functions. The checker
//! ([`check`]) infers and checks the types of a whole program, writes the
//! resolved type of every expression into its `ty` slot, and reports every
//! problem as a [`Diagnostic`](crate::diagnostic::Diagnostic).
//!
//! Invariant after a successful check: no expression has type
//! [`Type::Unknown`] or contains a [`Type::Var`]; sizes may still be
//! [`Dim::Var`]/[`Dim::Any`] (unknown statically, checked at run time).

pub mod builtins;
pub mod check;

pub use check::{check_program, CheckedProgram, DefInfo};

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScalarType {
    F64,
    F32,
    I64,
    Bool,
}

impl ScalarType {
    pub fn name(self) -> &'static str {
        match self {
            ScalarType::F64 => "f64",
            ScalarType::F32 => "f32",
            ScalarType::I64 => "i64",
            ScalarType::Bool => "bool",
        }
    }
    pub fn from_name(name: &str) -> Option<ScalarType> {
        Some(match name {
            "f64" => ScalarType::F64,
            "f32" => ScalarType::F32,
            "i64" => ScalarType::I64,
            "bool" => ScalarType::Bool,
            _ => return None,
        })
    }
    pub fn is_float(self) -> bool {
        matches!(self, ScalarType::F64 | ScalarType::F32)
    }
    pub fn is_numeric(self) -> bool {
        !matches!(self, ScalarType::Bool)
    }
}

/// The size of one array dimension, as far as the checker knows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A literal size: `[3]f64`.
    Const(u64),
    /// A size parameter of the enclosing definition: `[n]f64` under `def f [n]`.
    Named(String),
    /// A size to be inferred (instantiated size parameter); resolved by unification.
    Var(u32),
    /// Not known statically (`[]f64`, slices, `concat`): checked at run time.
    Any,
}

/// Type variable kinds: what a still-unknown type may become.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarKind {
    /// Any type.
    Any,
    /// A numeric scalar (integer literals): defaults to `i64`.
    Num,
    /// A floating-point scalar (float literals): defaults to `f64`.
    Float,
}

impl VarKind {
    /// What a type of this kind may be, for messages: "a number".
    pub fn phrase(self) -> &'static str {
        match self {
            VarKind::Any => "any type",
            VarKind::Num => "a number",
            VarKind::Float => "a float",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Type {
    /// Not yet checked (fresh from the parser).
    Unknown,
    Scalar(ScalarType),
    Array(Box<Type>, Dim),
    Tuple(Vec<Type>),
    /// Fields sorted by name: records are structural.
    Record(Vec<(String, Type)>),
    Func(Box<Type>, Box<Type>),
    /// A unification variable (only during checking).
    Var(u32),
    /// A type parameter `'t` in the type scheme of a generic definition
    /// (`check::Generic`); never in the type of a checked expression.
    Param(String),
}

impl Type {
    pub const F64: Type = Type::Scalar(ScalarType::F64);
    pub const I64: Type = Type::Scalar(ScalarType::I64);
    pub const BOOL: Type = Type::Scalar(ScalarType::Bool);

    pub fn array(elem: Type, dim: Dim) -> Type {
        Type::Array(Box::new(elem), dim)
    }
    pub fn func(params: Vec<Type>, ret: Type) -> Type {
        params.into_iter().rev().fold(ret, |acc, p| Type::Func(Box::new(p), Box::new(acc)))
    }
    /// The element type after stripping every array dimension, and the rank.
    pub fn strip_arrays(&self) -> (&Type, usize) {
        let mut t = self;
        let mut rank = 0;
        while let Type::Array(e, _) = t {
            t = e;
            rank += 1;
        }
        (t, rank)
    }
    pub fn is_first_order(&self) -> bool {
        match self {
            Type::Func(..) => false,
            Type::Array(e, _) => e.is_first_order(),
            Type::Tuple(ts) => ts.iter().all(Type::is_first_order),
            Type::Record(fs) => fs.iter().all(|(_, t)| t.is_first_order()),
            _ => true,
        }
    }
    /// Whether a parameter of this type, of a definition with custom rules,
    /// is static: a function, which the rules bind but give no tangent or
    /// cotangent (Note [Static parameters of rules] in elab/mod.rs).
    pub fn is_static_in_rules(&self) -> bool {
        matches!(self, Type::Func(..))
    }
    /// Splits a curried function type into parameters and result.
    pub fn uncurry(&self) -> (Vec<&Type>, &Type) {
        let mut params = Vec::new();
        let mut t = self;
        while let Type::Func(p, r) = t {
            params.push(&**p);
            t = r;
        }
        (params, t)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Const(n) => write!(f, "{n}"),
            Dim::Named(n) => f.write_str(n),
            Dim::Var(_) | Dim::Any => Ok(()),
        }
    }
}

/// Type text longer than this is shortened in messages (a type of 5000
/// dimensions would otherwise make a diagnostic of 20 kB).
const MAX_TYPE_TEXT: usize = 300;

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::new();
        self.render(&mut text);
        if text.len() <= MAX_TYPE_TEXT {
            return f.write_str(&text);
        }
        let cut = |at: usize, forward: bool| {
            let mut at = at;
            while !text.is_char_boundary(at) {
                at = if forward { at + 1 } else { at - 1 };
            }
            at
        };
        let (head, tail) = (cut(MAX_TYPE_TEXT * 2 / 3, false), cut(text.len() - MAX_TYPE_TEXT / 4, true));
        write!(f, "{} … ({} characters) … {}", &text[..head], text.len() - head - (text.len() - tail), &text[tail..])
    }
}

impl Type {
    /// The full text of the type, however long (`Display` shortens long types).
    pub fn full_text(&self) -> String {
        let mut text = String::new();
        self.render(&mut text);
        text
    }

    /// The full text of the type.
    fn render(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            Type::Unknown => out.push('?'),
            Type::Scalar(s) => out.push_str(s.name()),
            Type::Array(e, d) => {
                let _ = write!(out, "[{d}]");
                e.render(out);
            }
            Type::Tuple(ts) => {
                out.push('(');
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    t.render(out);
                }
                out.push(')');
            }
            Type::Record(fs) => {
                out.push('{');
                for (i, (n, t)) in fs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    let _ = write!(out, "{n}: ");
                    t.render(out);
                }
                out.push('}');
            }
            Type::Func(a, b) => {
                let parens = matches!(**a, Type::Func(..));
                if parens {
                    out.push('(');
                }
                a.render(out);
                if parens {
                    out.push(')');
                }
                out.push_str(" -> ");
                b.render(out);
            }
            Type::Var(v) => {
                let _ = write!(out, "'t{v}");
            }
            Type::Param(name) => out.push_str(name),
        }
    }
}
