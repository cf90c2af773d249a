//! The abstract syntax tree, as the parser builds it and the type checker
//! annotates it.
//!
//! Every node carries a byte [`Span`]. Expressions also carry a `ty` slot that
//! is [`Type::Unknown`] after parsing and holds the node's fully resolved type
//! after type checking (the checker fills it in place), so the elaborator can
//! be type-directed without a side table.

use crate::diagnostic::Span;
use crate::types::Type;

#[derive(Clone, Debug, PartialEq)]
pub struct Name {
    pub text: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Module {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Import {
        path: String,
        span: Span,
    },
    Def(Def),
    /// `type name = T`: a name for a type, usable after its definition; with
    /// parameters, `type params [d] 't = {w: [d]t, b: t}`, used as `params [3] f64`.
    TypeAlias {
        name: Name,
        params: Vec<AliasParam>,
        ty: TypeExpr,
        span: Span,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Def {
    pub name: Name,
    pub is_entry: bool,
    pub size_params: Vec<Name>,
    /// Type parameters `'t` (the names without the quote): the definition is
    /// checked once generically and instantiated per use (Note [Type
    /// parameters] in types/check.rs).
    pub type_params: Vec<Name>,
    pub params: Vec<Param>,
    pub ret: Option<TypeExpr>,
    pub body: Expr,
    /// Custom derivative rules, `with jvp …` and/or `with vjp …` (at most
    /// one of each; the checker rejects more): see [`Def::rule`].
    pub rules: Vec<Rule>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub pat: Pat,
    pub ty: TypeExpr,
    pub span: Span,
}

/// Which derivative a custom rule gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    /// `with jvp x1 … xk t1 … tk [y] = e`: the tangent of the result, given
    /// the parameters, their tangents and (optionally) the primal result.
    Jvp,
    /// `with vjp x1 … xk y y_bar = e`: the cotangents of the parameters (a
    /// tuple when k > 1), given the parameters, the primal result and its
    /// cotangent.
    Vjp,
}

impl RuleKind {
    pub fn keyword(self) -> &'static str {
        match self {
            RuleKind::Jvp => "jvp",
            RuleKind::Vjp => "vjp",
        }
    }
}

impl Def {
    /// The definition's rule of this kind, if it has one.
    pub fn rule(&self, kind: RuleKind) -> Option<&Rule> {
        self.rules.iter().find(|r| r.kind == kind)
    }
    pub fn has_rule(&self) -> bool {
        !self.rules.is_empty()
    }

    /// The `let`s at the top of the body, outermost first, and the body's
    /// final expression: the values a custom rule may name (Note [Named
    /// residuals] in elab/mod.rs).
    pub fn residuals(&self) -> (Vec<(&Pat, &Expr)>, &Expr) {
        let mut lets = Vec::new();
        let mut e = &self.body;
        while let ExprKind::Let(pat, value, rest) = &e.kind {
            lets.push((pat, &**value));
            e = rest;
        }
        (lets, e)
    }
}

impl Expr {
    /// Whether the variable `name` occurs anywhere in the expression (bound
    /// there or not: an over-approximation of its free occurrence).
    pub fn mentions(&self, name: &str) -> bool {
        let mut work = vec![self];
        while let Some(e) = work.pop() {
            if matches!(&e.kind, ExprKind::Var(n) if n == name) {
                return true;
            }
            work.extend(e.children());
        }
        false
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub kind: RuleKind,
    /// The rule's patterns in order (see [`RuleKind`]); the checker splits them.
    pub pats: Vec<Pat>,
    pub body: Expr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Pat {
    Var(Name),
    Wildcard(Span),
    Tuple(Vec<Pat>, Span),
    Typed(Box<Pat>, TypeExpr, Span),
}

impl Pat {
    /// Every name the pattern binds.
    pub fn names(&self) -> Vec<&str> {
        match self {
            Pat::Var(n) => vec![&n.text],
            Pat::Wildcard(_) => Vec::new(),
            Pat::Typed(p, _, _) => p.names(),
            Pat::Tuple(ps, _) => ps.iter().flat_map(|p| p.names()).collect(),
        }
    }

    /// The name a pattern binds when it is a variable (perhaps typed).
    pub fn var_name(&self) -> Option<&str> {
        match self {
            Pat::Var(n) => Some(&n.text),
            Pat::Typed(p, _, _) => p.var_name(),
            _ => None,
        }
    }

    pub fn span(&self) -> Span {
        match self {
            Pat::Var(n) => n.span,
            Pat::Wildcard(s) | Pat::Tuple(_, s) | Pat::Typed(_, _, s) => *s,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum TypeExpr {
    Named(Name),
    Array {
        dim: DimExpr,
        elem: Box<TypeExpr>,
        span: Span,
    },
    Tuple(Vec<TypeExpr>, Span),
    Record(Vec<(Name, TypeExpr)>, Span),
    Func(Box<TypeExpr>, Box<TypeExpr>, Span),
    /// A type alias applied to arguments: `params [3] f64`.
    App(Name, Vec<TypeArg>, Span),
}

/// A parameter of a type alias: a size `[d]` or a type `'t`.
#[derive(Clone, Debug, PartialEq)]
pub enum AliasParam {
    Size(Name),
    Type(Name),
}

/// An argument of a type alias: a size `[3]`, `[n]`, `[]`, or a type (an
/// array type in parentheses, `([3]f64)`, so that `[3]` alone is a size).
#[derive(Clone, Debug, PartialEq)]
pub enum TypeArg {
    Size(DimExpr),
    Type(TypeExpr),
}

impl TypeExpr {
    pub fn span(&self) -> Span {
        match self {
            TypeExpr::Named(n) => n.span,
            TypeExpr::Array { span, .. }
            | TypeExpr::Tuple(_, span)
            | TypeExpr::Record(_, span)
            | TypeExpr::Func(_, _, span)
            | TypeExpr::App(_, _, span) => *span,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum DimExpr {
    Name(Name),
    Const(u64, Span),
    Any(Span),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Pow,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Pow => "**",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "&&",
            BinOp::Or => "||",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    Neg,
    Not,
}

/// Literal type suffix: `3f32`, `2i64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suffix {
    None,
    I64,
    F32,
    F64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
    /// Filled in by the type checker.
    pub ty: Type,
}

impl Expr {
    pub fn new(kind: ExprKind, span: Span) -> Expr {
        Expr { kind, span, ty: Type::Unknown }
    }

    /// The sub-expressions, in source order.
    pub fn children(&self) -> Vec<&Expr> {
        match &self.kind {
            ExprKind::Var(_) | ExprKind::Int(..) | ExprKind::Float(..) | ExprKind::Bool(_) => Vec::new(),
            ExprKind::Section(_, l, r) => l.iter().chain(r.iter()).map(|e| &**e).collect(),
            ExprKind::Tuple(es) | ExprKind::ArrayLit(es) => es.iter().collect(),
            ExprKind::Record(fs) => fs.iter().map(|(_, e)| e).collect(),
            ExprKind::Lambda(_, _, e)
            | ExprKind::Unary(_, e)
            | ExprKind::Field(e, _)
            | ExprKind::TupleIndex(e, ..)
            | ExprKind::Ascribe(e, _)
            | ExprKind::Coerce(e, _) => vec![e],
            ExprKind::App(f, args) => std::iter::once(&**f).chain(args).collect(),
            ExprKind::Binary(_, a, b) | ExprKind::Let(_, a, b) => vec![a, b],
            ExprKind::Update(base, path, value) => std::iter::once(&**base)
                .chain(path.iter().flat_map(|s| match s {
                    UpdateStep::Index(ix, _) => ix.iter().collect(),
                    UpdateStep::Field(_) => Vec::new(),
                }))
                .chain(std::iter::once(&**value))
                .collect(),
            ExprKind::If(c, t, e) => vec![c, t, e],
            ExprKind::Loop { init, form, body, .. } => {
                let bound = match form {
                    LoopForm::For(_, e) | LoopForm::While(e) => e,
                };
                vec![init, bound, body]
            }
            ExprKind::Index(e, args) => std::iter::once(&**e)
                .chain(args.iter().flat_map(|a| match a {
                    IndexArg::Index(i) => vec![i],
                    IndexArg::Slice(a, b, _) => a.iter().chain(b.iter()).collect(),
                }))
                .collect(),
        }
    }

    /// How deeply expressions nest in `self` (1 for a leaf), computed without
    /// recursion, so that a program too deep for the compiler's stack is
    /// measured before anything recurses over it.
    pub fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut work = vec![(self, 1usize)];
        while let Some((e, d)) = work.pop() {
            deepest = deepest.max(d);
            work.extend(e.children().into_iter().map(|c| (c, d + 1)));
        }
        deepest
    }
}

impl TypeExpr {
    /// How deeply types nest in `self` (an array of 5000 dimensions is 5000 deep).
    pub fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut work = vec![(self, 1usize)];
        while let Some((t, d)) = work.pop() {
            deepest = deepest.max(d);
            match t {
                TypeExpr::Named(_) => {}
                TypeExpr::Array { elem, .. } => work.push((elem, d + 1)),
                TypeExpr::Tuple(ts, _) => work.extend(ts.iter().map(|t| (t, d + 1))),
                TypeExpr::Record(fs, _) => work.extend(fs.iter().map(|(_, t)| (t, d + 1))),
                TypeExpr::Func(a, b, _) => work.extend([(&**a, d + 1), (&**b, d + 1)]),
                TypeExpr::App(_, args, _) => work.extend(args.iter().filter_map(|a| match a {
                    TypeArg::Type(t) => Some((t, d + 1)),
                    TypeArg::Size(_) => None,
                })),
            }
        }
        deepest
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum IndexArg {
    Index(Expr),
    Slice(Option<Expr>, Option<Expr>, Span),
}

#[derive(Clone, Debug, PartialEq)]
pub enum LoopForm {
    For(Name, Box<Expr>),
    While(Box<Expr>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Var(String),
    Int(i64, Suffix),
    Float(f64, Suffix),
    Bool(bool),
    Tuple(Vec<Expr>),
    Record(Vec<(Name, Expr)>),
    ArrayLit(Vec<Expr>),
    /// An operator used as a function: `(+)`, or with one operand given:
    /// `(e op)` (left) is `\y -> e op y`, `(op e)` (right) is `\x -> x op e`.
    /// At most one operand is present.
    Section(BinOp, Option<Box<Expr>>, Option<Box<Expr>>),
    Lambda(Vec<Pat>, Option<TypeExpr>, Box<Expr>),
    App(Box<Expr>, Vec<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Unary(UnOp, Box<Expr>),
    Let(Pat, Box<Expr>, Box<Expr>),
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    Loop {
        pat: Pat,
        init: Box<Expr>,
        form: LoopForm,
        body: Box<Expr>,
    },
    Index(Box<Expr>, Vec<IndexArg>),
    Field(Box<Expr>, Name),
    TupleIndex(Box<Expr>, usize, Span),
    Ascribe(Box<Expr>, TypeExpr),
    Coerce(Box<Expr>, TypeExpr),
    /// `base with path = value`: `base` with the part `path` selects replaced
    /// by `value` (a new value; the base is unchanged). Never empty.
    Update(Box<Expr>, Vec<UpdateStep>, Box<Expr>),
}

/// One step of a functional update's path.
#[derive(Clone, Debug, PartialEq)]
pub enum UpdateStep {
    /// `[i, j]`: an element (or row) of an array; the span covers the brackets.
    Index(Vec<Expr>, Span),
    /// `.name`: a field of a record.
    Field(Name),
}
