//! Prints the AST back as Slope source (`slope emit --stage ast`), optionally
//! with the checker's types on every binder (`--stage typed`).
//!
//! The output re-parses to the same tree (up to spans), which the front-end
//! tests check. Binary operators are fully parenthesised when nested, so the
//! printer needs no precedence table.

use super::ast::*;
use std::fmt::Write;

pub fn print_module(m: &Module, typed: bool) -> String {
    let mut p = Printer { out: String::new(), typed };
    for (i, item) in m.items.iter().enumerate() {
        if i > 0 {
            p.out.push('\n');
        }
        match item {
            Item::Import { path, .. } => {
                let _ = writeln!(p.out, "import \"{path}\"");
            }
            Item::Def(d) => p.def(d),
            Item::TypeAlias { name, params, ty, .. } => {
                let _ = write!(p.out, "type {}", name.text);
                for param in params {
                    let _ = match param {
                        AliasParam::Size(n) => write!(p.out, " [{}]", n.text),
                        AliasParam::Type(n) => write!(p.out, " '{}", n.text),
                    };
                }
                p.out.push_str(" = ");
                p.type_expr(ty);
                p.out.push('\n');
            }
        }
    }
    p.out
}

pub fn print_def(d: &Def, typed: bool) -> String {
    let mut p = Printer { out: String::new(), typed };
    p.def(d);
    p.out
}

pub fn print_expr(e: &Expr, typed: bool) -> String {
    let mut p = Printer { out: String::new(), typed };
    p.expr(e, 0);
    p.out
}

struct Printer {
    out: String,
    typed: bool,
}

impl Printer {
    fn def(&mut self, d: &Def) {
        self.out.push_str(if d.is_entry { "entry " } else { "def " });
        self.out.push_str(&d.name.text);
        for s in &d.size_params {
            let _ = write!(self.out, " [{}]", s.text);
        }
        for t in &d.type_params {
            let _ = write!(self.out, " '{}", t.text);
        }
        for p in &d.params {
            self.out.push_str(" (");
            self.pat(&p.pat);
            self.out.push_str(": ");
            self.type_expr(&p.ty);
            self.out.push(')');
        }
        if self.typed {
            let _ = write!(self.out, " : {}", d.body.ty);
        } else if let Some(t) = &d.ret {
            self.out.push_str(" : ");
            self.type_expr(t);
        }
        self.out.push_str(" =\n  ");
        self.expr(&d.body, 1);
        for rule in &d.rules {
            self.out.push_str("\nwith ");
            self.out.push_str(rule.kind.keyword());
            for p in &rule.pats {
                self.out.push(' ');
                self.pat_atom(p);
            }
            self.out.push_str(" =\n  ");
            self.expr(&rule.body, 1);
        }
        self.out.push('\n');
    }

    fn newline(&mut self, indent: usize) {
        self.out.push('\n');
        for _ in 0..indent {
            self.out.push_str("  ");
        }
    }

    fn pat(&mut self, p: &Pat) {
        match p {
            Pat::Var(n) => self.out.push_str(&n.text),
            Pat::Wildcard(_) => self.out.push('_'),
            Pat::Tuple(ps, _) => {
                self.out.push('(');
                for (i, p) in ps.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.pat(p);
                }
                self.out.push(')');
            }
            Pat::Typed(p, t, _) => {
                self.pat_atom(p);
                self.out.push_str(": ");
                self.type_expr(t);
            }
        }
    }

    fn pat_atom(&mut self, p: &Pat) {
        if matches!(p, Pat::Typed(..)) {
            self.out.push('(');
            self.pat(p);
            self.out.push(')');
        } else {
            self.pat(p);
        }
    }

    fn type_expr(&mut self, t: &TypeExpr) {
        match t {
            TypeExpr::Named(n) => self.out.push_str(&n.text),
            TypeExpr::Array { dim, elem, .. } => {
                match dim {
                    DimExpr::Name(n) => {
                        let _ = write!(self.out, "[{}]", n.text);
                    }
                    DimExpr::Const(k, _) => {
                        let _ = write!(self.out, "[{k}]");
                    }
                    DimExpr::Any(_) => self.out.push_str("[]"),
                }
                self.type_atom(elem);
            }
            TypeExpr::App(n, args, _) => {
                self.out.push_str(&n.text);
                for a in args {
                    match a {
                        TypeArg::Size(DimExpr::Name(n)) => {
                            let _ = write!(self.out, " [{}]", n.text);
                        }
                        TypeArg::Size(DimExpr::Const(k, _)) => {
                            let _ = write!(self.out, " [{k}]");
                        }
                        TypeArg::Size(DimExpr::Any(_)) => self.out.push_str(" []"),
                        TypeArg::Type(t @ TypeExpr::Named(_)) => {
                            self.out.push(' ');
                            self.type_expr(t);
                        }
                        TypeArg::Type(t) => {
                            self.out.push_str(" (");
                            self.type_expr(t);
                            self.out.push(')');
                        }
                    }
                }
            }
            TypeExpr::Tuple(ts, _) => {
                self.out.push('(');
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.type_expr(t);
                }
                self.out.push(')');
            }
            TypeExpr::Record(fs, _) => {
                self.out.push('{');
                for (i, (n, t)) in fs.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    let _ = write!(self.out, "{}: ", n.text);
                    self.type_expr(t);
                }
                self.out.push('}');
            }
            TypeExpr::Func(a, b, _) => {
                self.type_atom(a);
                self.out.push_str(" -> ");
                self.type_expr(b);
            }
        }
    }

    fn type_atom(&mut self, t: &TypeExpr) {
        if matches!(t, TypeExpr::Func(..) | TypeExpr::App(..)) {
            self.out.push('(');
            self.type_expr(t);
            self.out.push(')');
        } else {
            self.type_expr(t);
        }
    }

    /// A binder with its inferred type when printing the typed stage.
    fn binder(&mut self, p: &Pat, ty: &crate::types::Type) {
        if self.typed && !matches!(p, Pat::Typed(..)) && ty.is_first_order() {
            self.out.push('(');
            self.pat(p);
            let _ = write!(self.out, ": {ty})");
        } else {
            self.pat_atom(p);
        }
    }

    fn expr(&mut self, e: &Expr, indent: usize) {
        match &e.kind {
            ExprKind::Let(p, v, b) => {
                self.out.push_str("let ");
                if self.typed && !matches!(p, Pat::Typed(..)) && v.ty.is_first_order() {
                    self.pat(p);
                    let _ = write!(self.out, ": {}", v.ty);
                } else {
                    self.pat(p);
                }
                self.out.push_str(" = ");
                self.expr(v, indent + 1);
                self.out.push_str(" in");
                self.newline(indent);
                self.expr(b, indent);
            }
            ExprKind::If(c, t, f) => {
                self.out.push_str("if ");
                self.expr(c, indent + 1);
                self.newline(indent + 1);
                self.out.push_str("then ");
                self.expr(t, indent + 2);
                self.newline(indent + 1);
                self.out.push_str("else ");
                self.expr(f, indent + 2);
            }
            ExprKind::Lambda(ps, ret, body) => {
                self.out.push('\\');
                let param_types = e.ty.uncurry().0.into_iter().cloned().collect::<Vec<_>>();
                for (i, p) in ps.iter().enumerate() {
                    if i > 0 {
                        self.out.push(' ');
                    }
                    match param_types.get(i) {
                        Some(t) => self.binder(p, t),
                        None => self.pat_atom(p),
                    }
                }
                if let Some(r) = ret {
                    self.out.push_str(": ");
                    self.type_atom(r);
                }
                self.out.push_str(" -> ");
                self.expr(body, indent + 1);
            }
            ExprKind::Loop { pat, init, form, body } => {
                self.out.push_str("loop ");
                self.pat(pat);
                self.out.push_str(" = ");
                self.expr(init, indent + 1);
                match form {
                    LoopForm::For(i, n) => {
                        let _ = write!(self.out, " for {} < ", i.text);
                        self.operand(n, indent);
                    }
                    LoopForm::While(c) => {
                        self.out.push_str(" while ");
                        self.expr(c, indent + 1);
                    }
                }
                self.out.push_str(" do");
                self.newline(indent + 1);
                self.expr(body, indent + 1);
            }
            ExprKind::Update(base, path, value) => {
                match base.kind {
                    ExprKind::Update(..) => self.expr(base, indent),
                    _ => self.arg(base, indent),
                }
                self.out.push_str(" with ");
                for step in path {
                    match step {
                        UpdateStep::Index(ixs, _) => self.list("[", ixs, "]", indent),
                        UpdateStep::Field(name) => {
                            let _ = write!(self.out, ".{}", name.text);
                        }
                    }
                }
                self.out.push_str(" = ");
                self.operand(value, indent + 1);
            }
            _ => self.operand(e, indent),
        }
    }

    /// An expression in operand position: open forms are parenthesised.
    fn operand(&mut self, e: &Expr, indent: usize) {
        match &e.kind {
            ExprKind::Let(..)
            | ExprKind::If(..)
            | ExprKind::Lambda(..)
            | ExprKind::Loop { .. }
            | ExprKind::Update(..) => {
                self.out.push('(');
                self.expr(e, indent);
                self.out.push(')');
            }
            ExprKind::Binary(op, a, b) => {
                self.arg(a, indent);
                let _ = write!(self.out, " {} ", op.symbol());
                self.arg(b, indent);
            }
            ExprKind::Unary(op, a) => {
                self.out.push(if *op == UnOp::Neg { '-' } else { '!' });
                self.arg(a, indent);
            }
            ExprKind::App(f, args) => {
                self.arg(f, indent);
                for a in args {
                    self.out.push(' ');
                    self.arg(a, indent);
                }
            }
            _ => self.atom(e, indent),
        }
    }

    /// An application argument or binary operand: anything but an atom is parenthesised.
    fn arg(&mut self, e: &Expr, indent: usize) {
        match &e.kind {
            ExprKind::Binary(..)
            | ExprKind::Unary(..)
            | ExprKind::App(..)
            | ExprKind::Let(..)
            | ExprKind::If(..)
            | ExprKind::Lambda(..)
            | ExprKind::Loop { .. } => {
                self.out.push('(');
                self.expr(e, indent);
                self.out.push(')');
            }
            ExprKind::Int(v, _) if *v < 0 => {
                self.out.push('(');
                self.atom(e, indent);
                self.out.push(')');
            }
            ExprKind::Float(v, _) if *v < 0.0 => {
                self.out.push('(');
                self.atom(e, indent);
                self.out.push(')');
            }
            _ => self.atom(e, indent),
        }
    }

    fn atom(&mut self, e: &Expr, indent: usize) {
        match &e.kind {
            ExprKind::Var(n) => self.out.push_str(n),
            ExprKind::Int(v, s) => {
                let _ = write!(self.out, "{v}{}", suffix(*s));
            }
            ExprKind::Float(v, s) => {
                let text = format!("{v:?}");
                let _ = write!(self.out, "{text}{}", suffix(*s));
            }
            ExprKind::Bool(b) => {
                let _ = write!(self.out, "{b}");
            }
            ExprKind::Tuple(es) => self.list("(", es, ")", indent),
            ExprKind::ArrayLit(es) => self.list("[", es, "]", indent),
            ExprKind::Record(fs) => {
                self.out.push('{');
                for (i, (n, x)) in fs.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    let _ = write!(self.out, "{} = ", n.text);
                    self.expr(x, indent + 1);
                }
                self.out.push('}');
            }
            ExprKind::Section(op, left, right) => {
                self.out.push('(');
                if let Some(l) = left {
                    self.arg(l, indent);
                    self.out.push(' ');
                }
                self.out.push_str(op.symbol());
                if let Some(r) = right {
                    self.out.push(' ');
                    self.arg(r, indent);
                }
                self.out.push(')');
            }
            ExprKind::Index(a, args) => {
                self.arg(a, indent);
                self.out.push('[');
                for (i, arg) in args.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    match arg {
                        IndexArg::Index(x) => self.expr(x, indent + 1),
                        IndexArg::Slice(lo, hi, _) => {
                            if let Some(lo) = lo {
                                self.operand(lo, indent + 1);
                            }
                            self.out.push(':');
                            if let Some(hi) = hi {
                                self.operand(hi, indent + 1);
                            }
                        }
                    }
                }
                self.out.push(']');
            }
            ExprKind::Field(r, n) => {
                self.arg(r, indent);
                let _ = write!(self.out, ".{}", n.text);
            }
            ExprKind::TupleIndex(t, i, _) => {
                self.arg(t, indent);
                let _ = write!(self.out, ".{i}");
            }
            ExprKind::Ascribe(x, t) => {
                self.out.push('(');
                self.expr(x, indent + 1);
                self.out.push_str(" : ");
                self.type_expr(t);
                self.out.push(')');
            }
            ExprKind::Coerce(x, t) => {
                self.out.push('(');
                self.expr(x, indent + 1);
                self.out.push_str(" :> ");
                self.type_expr(t);
                self.out.push(')');
            }
            _ => {
                self.out.push('(');
                self.expr(e, indent);
                self.out.push(')');
            }
        }
    }

    fn list(&mut self, open: &str, es: &[Expr], close: &str, indent: usize) {
        self.out.push_str(open);
        for (i, x) in es.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            self.expr(x, indent + 1);
        }
        self.out.push_str(close);
    }
}

fn suffix(s: Suffix) -> &'static str {
    match s {
        Suffix::None => "",
        Suffix::I64 => "i64",
        Suffix::F32 => "f32",
        Suffix::F64 => "f64",
    }
}
