//! The IR printer: renders a [`Program`] (or one function, or one body) as
//! deterministic, readable text close to Slope's surface syntax.
//!
//! Input: a program and the part of it to print. Output: a `String`; nothing
//! is written anywhere. The text is for humans, snapshot tests and debugging
//! dumps (`--dump-ir`); it is not parsed back, so it favours readability over
//! a strict grammar.
//!
//! Layout (every choice is made so that two structurally equal programs print
//! identically, and a diff between two dumps shows the changed statements):
//! - one statement per line: `let x_1: f64 = expr`, `let (a_1: f64, b_2: []f64) = expr`,
//!   `check_size a_1 == b_2 "what"`; a body ends with `in x` or `in (a, b)`;
//! - variables print as [`VarTable::display`] (`x_3`), which is unique in a program;
//! - a lambda whose body has no statements prints inline (`(\(x_1: f64) -> x_1)`);
//!   otherwise its body goes on the following lines, indented four columns past
//!   the statement, the closing `)` ends its `in` line, and the remaining
//!   operands go on a continuation line indented two columns;
//! - constants always show their type: `f64` values carry a decimal point or an
//!   exponent (`1.0`, `1e-300`), `f32` values an `f32` suffix, negative values
//!   are parenthesised (`(-1.0)`) so that `f (-1.0)` never reads as a subtraction.
//!
//! Invariant: the printer never panics on a well-indexed program, even one the
//! verifier rejects (it is used to show broken programs in verifier failures);
//! it only reads `VarTable` entries of the variables it meets.

use super::{Atom, Body, CheckKind, Const, Expr, Func, Lambda, LoopForm, Program, Stmt, UnOp, Var};

/// A comment a later level attaches to a statement (the parallel level's
/// segments): printed as a `-- …` line above it.
type Ann<'a> = Option<&'a dyn Fn(&Stmt) -> Option<String>>;

/// The whole program: every function, separated by a blank line.
pub fn print_program(p: &Program) -> String {
    p.funcs.iter().map(|f| print_func(p, f)).collect::<Vec<_>>().join("\n")
}

/// [`print_program`], with `note`'s comment for a statement on the line
/// above it, at its indentation.
pub fn print_program_annotated(p: &Program, note: &dyn Fn(&Stmt) -> Option<String>) -> String {
    p.funcs.iter().map(|f| func_text(Some(note), p, f)).collect::<Vec<_>>().join("\n")
}

/// One entry point: `entry NAME (x_0: []f64) … =` followed by its body, indented
/// two columns. Ends with a newline.
pub fn print_func(p: &Program, f: &Func) -> String {
    func_text(None, p, f)
}

/// [`print_func`] with the notes of [`print_program_annotated`].
pub fn print_func_annotated(p: &Program, f: &Func, note: &dyn Fn(&Stmt) -> Option<String>) -> String {
    func_text(Some(note), p, f)
}

fn func_text(ann: Ann, p: &Program, f: &Func) -> String {
    let mut out = format!("entry {}", f.name);
    for &param in &f.params {
        out.push(' ');
        out.push_str(&typed_var(p, param));
    }
    out.push_str(" =\n");
    out.push_str(&body_text(ann, p, &f.body, 2));
    out.push('\n');
    out
}

/// A body: its statements, one per line, then `in RESULT`, every line indented by
/// `indent` spaces. No trailing newline, so callers can append a closing `)`.
pub fn print_body(p: &Program, b: &Body, indent: usize) -> String {
    body_text(None, p, b, indent)
}

fn body_text(ann: Ann, p: &Program, b: &Body, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut lines = Vec::with_capacity(b.stmts.len() + 1);
    for s in b.stmts.iter() {
        if let Some(note) = ann.and_then(|note| note(s)) {
            lines.push(format!("{pad}-- {note}"));
        }
        lines.push(format!("{pad}{}", stmt_text(ann, p, s, indent)));
    }
    lines.push(format!("{pad}in {}", print_results(p, &b.result)));
    lines.join("\n")
}

/// One statement, without leading indentation; `indent` is the column the
/// statement starts at (nested bodies are indented relative to it). Multi-line
/// when the expression contains nested bodies with statements.
pub fn print_stmt(p: &Program, s: &Stmt, indent: usize) -> String {
    stmt_text(None, p, s, indent)
}

fn stmt_text(ann: Ann, p: &Program, s: &Stmt, indent: usize) -> String {
    let rhs = expr_text(ann, p, &s.expr, indent);
    if matches!(s.expr, Expr::Check { .. }) && s.binds.is_empty() {
        // A check binds nothing; `let () =` would only be noise.
        return rhs;
    }
    let lhs = match s.binds.as_slice() {
        [v] => typed_var_bare(p, *v),
        vs => format!("({})", vs.iter().map(|v| typed_var_bare(p, *v)).collect::<Vec<_>>().join(", ")),
    };
    format!("let {lhs} = {rhs}")
}

/// An expression; `indent` as in [`print_stmt`].
pub fn print_expr(p: &Program, e: &Expr, indent: usize) -> String {
    expr_text(None, p, e, indent)
}

fn expr_text(ann: Ann, p: &Program, e: &Expr, indent: usize) -> String {
    let a = |x: &Atom| print_atom(p, *x);
    let v = |x: &Var| p.vars.display(*x);
    let vars = |xs: &[Var]| xs.iter().map(|x| p.vars.display(*x)).collect::<Vec<_>>().join(" ");
    let tuple = |xs: &[Atom]| format!("({})", xs.iter().map(|x| print_atom(p, *x)).collect::<Vec<_>>().join(", "));
    match e {
        Expr::Atom(x) => a(x),
        Expr::Unary(UnOp::Neg, x) => format!("-{}", a(x)),
        Expr::Unary(UnOp::Not, x) => format!("!{}", a(x)),
        Expr::Unary(op, x) => format!("{} {}", op.name(), a(x)),
        Expr::Binary(op, x, y) if op.is_prefix() => format!("{} {} {}", op.symbol(), a(x), a(y)),
        Expr::Binary(op, x, y) => format!("{} {} {}", a(x), op.symbol(), a(y)),
        Expr::Convert(t, x) => format!("{} {}", t.name(), a(x)),
        Expr::Select(c, x, y) => format!("select {} {} {}", a(c), a(x), a(y)),
        Expr::If { cond, then_body, else_body } => {
            if then_body.stmts.is_empty() && else_body.stmts.is_empty() {
                format!(
                    "if {} then {} else {}",
                    a(cond),
                    print_results(p, &then_body.result),
                    print_results(p, &else_body.result)
                )
            } else {
                format!(
                    "if {} then\n{}\n{}else\n{}",
                    a(cond),
                    body_text(ann, p, then_body, indent + 4),
                    " ".repeat(indent + 2),
                    body_text(ann, p, else_body, indent + 4)
                )
            }
        }
        Expr::Index { array, indices } => {
            format!("{}[{}]", v(array), indices.iter().map(a).collect::<Vec<_>>().join(", "))
        }
        Expr::Slice { array, start, end } => format!("{}[{}:{}]", v(array), a(start), a(end)),
        Expr::Shape { array, dim } => format!("shape {} {dim}", v(array)),
        Expr::Iota(n) => format!("iota {}", a(n)),
        Expr::Replicate { count, value } => format!("replicate {} {}", a(count), a(value)),
        Expr::ArrayLit { elems, .. } => format!("[{}]", elems.iter().map(a).collect::<Vec<_>>().join(", ")),
        Expr::Map { width, lam, arrays } => with_lambda(ann, p, &format!("map {}", a(width)), lam, &vars(arrays), indent),
        Expr::Reduce { lam, neutral, arrays } => {
            with_lambda(ann, p, "reduce", lam, &format!("{} {}", tuple(neutral), vars(arrays)), indent)
        }
        Expr::Scan { lam, neutral, arrays } => {
            with_lambda(ann, p, "scan", lam, &format!("{} {}", tuple(neutral), vars(arrays)), indent)
        }
        Expr::Loop { params, init, form, body } => {
            let params_text = params.iter().map(|x| typed_var_bare(p, *x)).collect::<Vec<_>>().join(", ");
            let head = format!("loop ({params_text}) = {}", tuple(init));
            let form_text = match form {
                LoopForm::For { index, bound } => format!("for {} < {}", v(index), a(bound)),
                LoopForm::While { cond } if cond.stmts.is_empty() => {
                    format!("while {}", print_results(p, &cond.result))
                }
                // The condition's statements go on their own lines, like a lambda body.
                LoopForm::While { cond } => format!("while (\n{})", body_text(ann, p, cond, indent + 4)),
            };
            format!("{head} {form_text} do\n{}", body_text(ann, p, body, indent + 4))
        }
        Expr::Scatter { dest, indices, values } => format!("scatter {} {} {}", v(dest), v(indices), v(values)),
        Expr::Opaque(x) => format!("opaque {}", print_atom(p, *x)),
        Expr::UpdateAt { array, indices, value, accumulate } => {
            let ix: Vec<String> = indices.iter().map(|a| print_atom(p, *a)).collect();
            let op = if *accumulate { "+=" } else { "=" };
            format!("{} with [{}] {op} {}", v(array), ix.join(", "), print_atom(p, *value))
        }
        Expr::Hist { dest, lam, neutral, indices, values } => with_lambda(
            ann,
            p,
            &format!("reduce_by_index {}", v(dest)),
            lam,
            &format!("{} {} {}", a(neutral), v(indices), v(values)),
            indent,
        ),
        Expr::Transpose(x) => format!("transpose {}", v(x)),
        Expr::Reverse(x) => format!("reverse {}", v(x)),
        Expr::Argsort { array, descending } => {
            format!("{} {}", if *descending { "argsort_desc" } else { "argsort" }, v(array))
        }
        Expr::Concat(x, y) => format!("concat {} {}", v(x), v(y)),
        Expr::Call { func, args } => format!("call {func} {}", tuple(args)),
        Expr::Flatten(x) => format!("flatten {}", v(x)),
        Expr::Unflatten { array, rows, cols } => format!("unflatten {} {} {}", v(array), a(rows), a(cols)),
        // `{:?}` escapes quotes and newlines, keeping a check on one line.
        Expr::Check { kind, args } => match (kind, args.as_slice()) {
            (CheckKind::SizeEq { what }, [x, y]) => format!("check_size {} == {} {:?}", a(x), a(y), what),
            (CheckKind::Iterated { what }, [x, y]) => format!("check_iterated {} == {} {:?}", a(x), a(y), what),
            (CheckKind::InBounds { dim }, [i, n]) => format!("check_index {} < {} (dim {dim})", a(i), a(n)),
            (CheckKind::Size, [n]) => format!("check_size {} >= 0", a(n)),
            (CheckKind::Positive { what }, [n]) => format!("check_positive {} {:?}", a(n), what),
            (kind, args) => format!("check {kind:?} {}", args.iter().map(a).collect::<Vec<_>>().join(" ")),
        },
        Expr::Jvp { lam, primals, tangents, batch, values } => {
            let jvp = if *values { "jvp2" } else { "jvp" };
            let name = match batch {
                Some(b) => format!("{jvp}_batch {}", a(b)),
                None => jvp.to_string(),
            };
            with_lambda(ann, p, &name, lam, &format!("{} {}", tuple(primals), tuple(tangents)), indent)
        }
        Expr::Vjp { lam, primals, cotangents, values } => {
            let vjp = if *values { "vjp2" } else { "vjp" };
            with_lambda(ann, p, vjp, lam, &format!("{} {}", tuple(primals), tuple(cotangents)), indent)
        }
        Expr::Custom { primal, jvp, vjp, args, residuals } => {
            let mut rule = tuple(args);
            if *residuals > 0 {
                // The last `residuals` results of the primal are not results
                // of the call but values its rules read.
                rule = format!("{rule} residuals {residuals}");
            }
            if let Some(l) = vjp {
                rule = with_lambda(ann, p, "with_vjp", l, &rule, indent);
            }
            if let Some(l) = jvp {
                rule = with_lambda(ann, p, "with_jvp", l, &rule, indent);
            }
            with_lambda(ann, p, "custom", primal, &rule, indent)
        }
    }
}

/// `head (\params -> body) tail`: inline when the lambda body has no statements,
/// otherwise the body on its own lines and `tail` on a continuation line.
fn with_lambda(ann: Ann, p: &Program, head: &str, lam: &Lambda, tail: &str, indent: usize) -> String {
    let lam_text = lambda_text(ann, p, lam, indent);
    let sep = if lam_text.contains('\n') { format!("\n{}", " ".repeat(indent + 2)) } else { " ".to_string() };
    if tail.is_empty() {
        format!("{head} {lam_text}")
    } else {
        format!("{head} {lam_text}{sep}{tail}")
    }
}

/// A lambda in parentheses: `(\(x_1: f64) (y_2: f64) -> …)`; `indent` is the
/// column of the statement that contains it.
pub fn print_lambda(p: &Program, lam: &Lambda, indent: usize) -> String {
    lambda_text(None, p, lam, indent)
}

fn lambda_text(ann: Ann, p: &Program, lam: &Lambda, indent: usize) -> String {
    let params = if lam.params.is_empty() {
        "()".to_string()
    } else {
        lam.params.iter().map(|x| typed_var(p, *x)).collect::<Vec<_>>().join(" ")
    };
    if lam.body.stmts.is_empty() {
        format!("(\\{params} -> {})", print_results(p, &lam.body.result))
    } else {
        format!("(\\{params} ->\n{})", body_text(ann, p, &lam.body, indent + 4))
    }
}

/// The results of a body: `x`, or `(a, b)` when there are zero or several.
pub fn print_results(p: &Program, result: &[Atom]) -> String {
    match result {
        [x] => print_atom(p, *x),
        xs => format!("({})", xs.iter().map(|x| print_atom(p, *x)).collect::<Vec<_>>().join(", ")),
    }
}

/// A variable (`x_3`) or a constant.
pub fn print_atom(p: &Program, a: Atom) -> String {
    match a {
        Atom::Var(v) => p.vars.display(v),
        Atom::Const(c) => print_const(c),
    }
}

/// A constant whose type is visible from its text (see the module comment).
pub fn print_const(c: Const) -> String {
    match c {
        Const::F64(x) => float_text(x, x.is_sign_negative(), "", || format!("{x:?}")),
        Const::F32(x) => float_text(x as f64, x.is_sign_negative(), "f32", || format!("{x:?}")),
        Const::I64(x) if x < 0 => format!("({x})"),
        Const::I64(x) => x.to_string(),
        Const::Bool(b) => b.to_string(),
    }
}

/// `debug` is Rust's shortest round-trip form, which always has a `.` or an
/// exponent for finite values (`1.0`, `1e-300`), so f64 reads as a float.
fn float_text(x: f64, negative: bool, suffix: &str, debug: impl Fn() -> String) -> String {
    if x.is_nan() {
        return if suffix.is_empty() { "nan".to_string() } else { format!("({suffix} nan)") };
    }
    if x.is_infinite() {
        let inf = if negative { "-inf" } else { "inf" };
        return match (suffix.is_empty(), negative) {
            (true, false) => inf.to_string(),
            (true, true) => format!("({inf})"),
            // `inff32` would be unreadable: show the conversion instead.
            (false, _) => format!("({suffix} {inf})"),
        };
    }
    let text = format!("{}{suffix}", debug());
    // `-0.0` counts as negative too: it prints with a sign.
    if negative {
        format!("({text})")
    } else {
        text
    }
}

/// `(x_1: f64)`: a parameter.
fn typed_var(p: &Program, v: Var) -> String {
    format!("({})", typed_var_bare(p, v))
}

/// `x_1: f64`.
fn typed_var_bare(p: &Program, v: Var) -> String {
    format!("{}: {}", p.vars.display(v), p.vars.ty(v))
}

/// Hand-built example programs, shared with the verifier's tests.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::diagnostic::Span;
    use crate::ir::{BinOp, IrType, Signature, VarTable};
    use crate::types::{ScalarType, Type};

    pub(crate) const F64: IrType = IrType::F64;
    pub(crate) const I64: IrType = IrType::I64;
    pub(crate) const BOOL: IrType = IrType::BOOL;
    pub(crate) fn arr(rank: u32) -> IrType {
        IrType::array(ScalarType::F64, rank)
    }

    pub(crate) fn a(v: Var) -> Atom {
        Atom::Var(v)
    }
    pub(crate) fn st(binds: &[Var], expr: Expr) -> Stmt {
        Stmt { binds: binds.to_vec(), expr, span: Span::default() }
    }
    pub(crate) fn body(stmts: Vec<Stmt>, result: &[Atom]) -> Body {
        Body { stmts: stmts.into(), result: result.to_vec() }
    }
    pub(crate) fn lam(params: &[Var], body: Body) -> Lambda {
        Lambda { params: params.to_vec(), body }
    }

    /// A one-function program named `name`: its parameters are created first (so
    /// they get the lowest numbers), then `make` creates the rest with
    /// `VarTable::fresh` and returns the body. The signature is irrelevant to the
    /// IR passes and left trivial.
    pub(crate) fn build(
        name: &str,
        params: &[(&str, IrType)],
        make: impl FnOnce(&mut VarTable, &[Var]) -> Body,
    ) -> Program {
        let mut vars = VarTable::default();
        let ps: Vec<Var> = params.iter().map(|(n, t)| vars.fresh(n, *t)).collect();
        let b = make(&mut vars, &ps);
        let func = Func {
            name: name.to_string(),
            params: ps,
            body: b,
            signature: Signature { params: vec![], ret: Type::F64 },
            span: Span::default(),
        };
        Program { funcs: vec![func], vars, recomputed: Default::default() }
    }

    /// `entry dot x y = reduce (+) 0.0 (map2 (*) x y)`.
    pub(crate) fn dot() -> Program {
        build("dot", &[("x", arr(1)), ("y", arr(1))], |vt, ps| {
            let (x, y) = (ps[0], ps[1]);
            let n = vt.fresh("n", I64);
            let t = vt.fresh("t", arr(1));
            let (ea, eb, prod) = (vt.fresh("a", F64), vt.fresh("b", F64), vt.fresh("t", F64));
            let s = vt.fresh("s", F64);
            let (acc, el, sum) = (vt.fresh("acc", F64), vt.fresh("x", F64), vt.fresh("t", F64));
            let mul = lam(&[ea, eb], body(vec![st(&[prod], Expr::Binary(BinOp::Mul, a(ea), a(eb)))], &[a(prod)]));
            let add = lam(&[acc, el], body(vec![st(&[sum], Expr::Binary(BinOp::Add, a(acc), a(el)))], &[a(sum)]));
            body(
                vec![
                    st(&[n], Expr::Shape { array: x, dim: 0 }),
                    st(&[t], Expr::Map { width: a(n), lam: mul, arrays: vec![x, y] }),
                    st(&[s], Expr::Reduce { lam: add, neutral: vec![Atom::f64(0.0)], arrays: vec![t] }),
                ],
                &[a(s)],
            )
        })
    }

    /// A `for` loop with two accumulators: the sum of `x` and a counter.
    pub(crate) fn for_loop() -> Program {
        build("loop_sum", &[("x", arr(1))], |vt, ps| {
            let x = ps[0];
            let n = vt.fresh("n", I64);
            let (acc, k, i) = (vt.fresh("acc", F64), vt.fresh("k", I64), vt.fresh("i", I64));
            let (s, c) = (vt.fresh("s", F64), vt.fresh("c", I64));
            let (e, acc2, k2) = (vt.fresh("e", F64), vt.fresh("a", F64), vt.fresh("k", I64));
            let loop_body = body(
                vec![
                    st(&[e], Expr::Index { array: x, indices: vec![a(i)] }),
                    st(&[acc2], Expr::Binary(BinOp::Add, a(acc), a(e))),
                    st(&[k2], Expr::Binary(BinOp::Add, a(k), Atom::i64(1))),
                ],
                &[a(acc2), a(k2)],
            );
            body(
                vec![
                    st(&[n], Expr::Shape { array: x, dim: 0 }),
                    st(
                        &[s, c],
                        Expr::Loop {
                            params: vec![acc, k],
                            init: vec![Atom::f64(0.0), Atom::i64(0)],
                            form: LoopForm::For { index: i, bound: a(n) },
                            body: loop_body,
                        },
                    ),
                ],
                &[a(s), a(c)],
            )
        })
    }

    /// `loop v = x while v > 1.0 do v / 2.0`.
    pub(crate) fn while_loop() -> Program {
        build("halve", &[("x", F64)], |vt, ps| {
            let x = ps[0];
            let (v, c, h, y) = (vt.fresh("v", F64), vt.fresh("c", BOOL), vt.fresh("h", F64), vt.fresh("y", F64));
            let cond = body(vec![st(&[c], Expr::Binary(BinOp::Gt, a(v), Atom::f64(1.0)))], &[a(c)]);
            let loop_body = body(vec![st(&[h], Expr::Binary(BinOp::Div, a(v), Atom::f64(2.0)))], &[a(h)]);
            body(
                vec![st(
                    &[y],
                    Expr::Loop { params: vec![v], init: vec![a(x)], form: LoopForm::While { cond }, body: loop_body },
                )],
                &[a(y)],
            )
        })
    }

    /// Two `if`s: one with trivial branches (printed inline), one with a statement.
    pub(crate) fn branches() -> Program {
        build("branches", &[("x", F64)], |vt, ps| {
            let x = ps[0];
            let (c, r1, r2, y) = (vt.fresh("c", BOOL), vt.fresh("r", F64), vt.fresh("r", F64), vt.fresh("y", F64));
            body(
                vec![
                    st(&[c], Expr::Binary(BinOp::Gt, a(x), Atom::f64(0.0))),
                    st(
                        &[r1],
                        Expr::If {
                            cond: a(c),
                            then_body: body(vec![], &[a(x)]),
                            else_body: body(vec![], &[Atom::f64(0.0)]),
                        },
                    ),
                    st(
                        &[r2],
                        Expr::If {
                            cond: a(c),
                            then_body: body(vec![st(&[y], Expr::Binary(BinOp::Mul, a(r1), Atom::f64(2.0)))], &[a(y)]),
                            else_body: body(vec![], &[Atom::f64(-1.0)]),
                        },
                    ),
                ],
                &[a(r2)],
            )
        })
    }

    /// Matrix-vector product: a map whose lambda contains a map and a reduce
    /// (the inner map reads `c` and `v` from the enclosing scope).
    pub(crate) fn matvec() -> Program {
        build("matvec", &[("m", arr(2)), ("v", arr(1))], |vt, ps| {
            let (m, v) = (ps[0], ps[1]);
            let (r, c, out, row) =
                (vt.fresh("r", I64), vt.fresh("c", I64), vt.fresh("out", arr(1)), vt.fresh("row", arr(1)));
            let (p, ea, eb, t) = (vt.fresh("p", arr(1)), vt.fresh("a", F64), vt.fresh("b", F64), vt.fresh("t", F64));
            let (s, x, y, z) = (vt.fresh("s", F64), vt.fresh("x", F64), vt.fresh("y", F64), vt.fresh("z", F64));
            let mul = lam(&[ea, eb], body(vec![st(&[t], Expr::Binary(BinOp::Mul, a(ea), a(eb)))], &[a(t)]));
            let add = lam(&[x, y], body(vec![st(&[z], Expr::Binary(BinOp::Add, a(x), a(y)))], &[a(z)]));
            let per_row = lam(
                &[row],
                body(
                    vec![
                        st(&[p], Expr::Map { width: a(c), lam: mul, arrays: vec![row, v] }),
                        st(&[s], Expr::Reduce { lam: add, neutral: vec![Atom::f64(0.0)], arrays: vec![p] }),
                    ],
                    &[a(s)],
                ),
            );
            body(
                vec![
                    st(&[r], Expr::Shape { array: m, dim: 0 }),
                    st(&[c], Expr::Shape { array: m, dim: 1 }),
                    st(&[out], Expr::Map { width: a(r), lam: per_row, arrays: vec![m] }),
                ],
                &[a(out)],
            )
        })
    }

    /// One statement of most other kinds, all well typed.
    pub(crate) fn assorted() -> Program {
        build("assorted", &[("m", arr(2)), ("x", arr(1)), ("i", I64), ("f", F64)], |vt, ps| {
            let (m, x, i, f) = (ps[0], ps[1], ps[2], ps[3]);
            let mut stmts = Vec::new();
            let mut fresh = |name: &str, ty: IrType, e: Expr, vt: &mut VarTable| {
                let v = vt.fresh(name, ty);
                stmts.push(st(&[v], e));
                v
            };
            let n = fresh("n", I64, Expr::Shape { array: x, dim: 0 }, vt);
            let e = fresh("e", F64, Expr::Index { array: m, indices: vec![a(i), Atom::i64(0)] }, vt);
            let rw = fresh("row", arr(1), Expr::Index { array: m, indices: vec![a(i)] }, vt);
            let sl = fresh("sl", arr(1), Expr::Slice { array: x, start: Atom::i64(1), end: a(n) }, vt);
            let ex = fresh("ex", F64, Expr::Unary(UnOp::Exp, a(e)), vt);
            let ng = fresh("ng", F64, Expr::Unary(UnOp::Neg, a(ex)), vt);
            let mn = fresh("mn", F64, Expr::Binary(BinOp::Min, a(ng), Atom::f64(1e-300)), vt);
            let cmp = fresh("cmp", BOOL, Expr::Binary(BinOp::Le, a(mn), a(f)), vt);
            let nt = fresh("nt", BOOL, Expr::Unary(UnOp::Not, a(cmp)), vt);
            let sel = fresh("sel", F64, Expr::Select(a(nt), a(mn), Atom::f64(f64::NEG_INFINITY)), vt);
            let cv = fresh("cv", IrType::scalar(ScalarType::F32), Expr::Convert(ScalarType::F32, a(sel)), vt);
            let io = fresh("io", IrType::array(ScalarType::I64, 1), Expr::Iota(a(n)), vt);
            let rp = fresh("rp", arr(2), Expr::Replicate { count: Atom::i64(3), value: a(x) }, vt);
            let lit = fresh("lit", arr(1), Expr::ArrayLit { elem: F64, elems: vec![a(e), Atom::f64(0.5)] }, vt);
            let sc = fresh("sc", arr(1), Expr::Scatter { dest: x, indices: io, values: sl }, vt);
            let (h1, h2) = (vt.fresh("u", F64), vt.fresh("w", F64));
            let hist_op = lam(&[h1, h2], body(vec![], &[a(h1)]));
            let hi = fresh(
                "hi",
                arr(1),
                Expr::Hist { dest: sc, lam: hist_op, neutral: Atom::f64(0.0), indices: io, values: x },
                vt,
            );
            let tr = fresh("tr", arr(2), Expr::Transpose(rp), vt);
            let rv = fresh("rv", arr(1), Expr::Reverse(hi), vt);
            let cc = fresh("cc", arr(1), Expr::Concat(rv, lit), vt);
            let fl = fresh("fl", arr(1), Expr::Flatten(tr), vt);
            let uf = fresh("uf", arr(2), Expr::Unflatten { array: fl, rows: a(n), cols: Atom::i64(3) }, vt);
            stmts.push(st(
                &[],
                Expr::Check {
                    kind: CheckKind::SizeEq { what: "rows of \"m\"".into() },
                    args: vec![a(n), Atom::i64(-2)],
                },
            ));
            let q = vt.fresh("q", F64);
            let sq = vt.fresh("sq", F64);
            let square = lam(&[q], body(vec![st(&[sq], Expr::Binary(BinOp::Mul, a(q), a(q)))], &[a(sq)]));
            let jv = vt.fresh("jv", F64);
            stmts.push(st(
                &[jv],
                Expr::Jvp { lam: square, primals: vec![a(f)], tangents: vec![Atom::f64(1.0)], batch: None, values: false },
            ));
            // A fresh copy of the lambda: SSA forbids binding `q` and `sq` twice.
            let (q2, sq2) = (vt.fresh("q", F64), vt.fresh("sq", F64));
            let square2 = lam(&[q2], body(vec![st(&[sq2], Expr::Binary(BinOp::Mul, a(q2), a(q2)))], &[a(sq2)]));
            let vj = vt.fresh("vj", F64);
            stmts.push(st(&[vj], Expr::Vjp { lam: square2, primals: vec![a(f)], cotangents: vec![a(jv)], values: false }));
            let (g1, g2, g3) = (vt.fresh("g", F64), vt.fresh("g", F64), vt.fresh("g", arr(1)));
            let pass = lam(&[g1, g2], body(vec![], &[a(g2)]));
            stmts.push(st(&[g3], Expr::Scan { lam: pass, neutral: vec![Atom::f64(0.0)], arrays: vec![cc] }));
            let _ = (cv, rw);
            body(stmts, &[a(cc), a(uf), a(vj)])
        })
    }

    #[test]
    fn prints_dot() {
        let p = dot();
        assert_eq!(
            print_program(&p),
            "entry dot (x_0: []f64) (y_1: []f64) =
  let n_2: i64 = shape x_0 0
  let t_3: []f64 = map n_2 (\\(a_4: f64) (b_5: f64) ->
      let t_6: f64 = a_4 * b_5
      in t_6)
    x_0 y_1
  let s_7: f64 = reduce (\\(acc_8: f64) (x_9: f64) ->
      let t_10: f64 = acc_8 + x_9
      in t_10)
    (0.0) t_3
  in s_7
"
        );
    }

    #[test]
    fn prints_for_loop_with_several_binds() {
        assert_eq!(
            print_program(&for_loop()),
            "entry loop_sum (x_0: []f64) =
  let n_1: i64 = shape x_0 0
  let (s_5: f64, c_6: i64) = loop (acc_2: f64, k_3: i64) = (0.0, 0) for i_4 < n_1 do
      let e_7: f64 = x_0[i_4]
      let a_8: f64 = acc_2 + e_7
      let k_9: i64 = k_3 + 1
      in (a_8, k_9)
  in (s_5, c_6)
"
        );
    }

    #[test]
    fn prints_while_loop() {
        assert_eq!(
            print_program(&while_loop()),
            "entry halve (x_0: f64) =
  let y_4: f64 = loop (v_1: f64) = (x_0) while (
      let c_2: bool = v_1 > 1.0
      in c_2) do
      let h_3: f64 = v_1 / 2.0
      in h_3
  in y_4
"
        );
    }

    #[test]
    fn prints_if_inline_and_block() {
        assert_eq!(
            print_program(&branches()),
            "entry branches (x_0: f64) =
  let c_1: bool = x_0 > 0.0
  let r_2: f64 = if c_1 then x_0 else 0.0
  let r_3: f64 = if c_1 then
      let y_4: f64 = r_2 * 2.0
      in y_4
    else
      in (-1.0)
  in r_3
"
        );
    }

    #[test]
    fn prints_nested_map_with_deeper_indentation() {
        assert_eq!(
            print_program(&matvec()),
            "entry matvec (m_0: [][]f64) (v_1: []f64) =
  let r_2: i64 = shape m_0 0
  let c_3: i64 = shape m_0 1
  let out_4: []f64 = map r_2 (\\(row_5: []f64) ->
      let p_6: []f64 = map c_3 (\\(a_7: f64) (b_8: f64) ->
          let t_9: f64 = a_7 * b_8
          in t_9)
        row_5 v_1
      let s_10: f64 = reduce (\\(x_11: f64) (y_12: f64) ->
          let z_13: f64 = x_11 + y_12
          in z_13)
        (0.0) p_6
      in s_10)
    m_0
  in out_4
"
        );
    }

    #[test]
    fn prints_every_other_expression_kind() {
        assert_eq!(
            print_program(&assorted()),
            r#"entry assorted (m_0: [][]f64) (x_1: []f64) (i_2: i64) (f_3: f64) =
  let n_4: i64 = shape x_1 0
  let e_5: f64 = m_0[i_2, 0]
  let row_6: []f64 = m_0[i_2]
  let sl_7: []f64 = x_1[1:n_4]
  let ex_8: f64 = exp e_5
  let ng_9: f64 = -ex_8
  let mn_10: f64 = min ng_9 1e-300
  let cmp_11: bool = mn_10 <= f_3
  let nt_12: bool = !cmp_11
  let sel_13: f64 = select nt_12 mn_10 (-inf)
  let cv_14: f32 = f32 sel_13
  let io_15: []i64 = iota n_4
  let rp_16: [][]f64 = replicate 3 x_1
  let lit_17: []f64 = [e_5, 0.5]
  let sc_18: []f64 = scatter x_1 io_15 sl_7
  let hi_21: []f64 = reduce_by_index sc_18 (\(u_19: f64) (w_20: f64) -> u_19) 0.0 io_15 x_1
  let tr_22: [][]f64 = transpose rp_16
  let rv_23: []f64 = reverse hi_21
  let cc_24: []f64 = concat rv_23 lit_17
  let fl_25: []f64 = flatten tr_22
  let uf_26: [][]f64 = unflatten fl_25 n_4 3
  check_size n_4 == (-2) "rows of \"m\""
  let jv_29: f64 = jvp (\(q_27: f64) ->
      let sq_28: f64 = q_27 * q_27
      in sq_28)
    (f_3) (1.0)
  let vj_32: f64 = vjp (\(q_30: f64) ->
      let sq_31: f64 = q_30 * q_30
      in sq_31)
    (f_3) (jv_29)
  let g_35: []f64 = scan (\(g_33: f64) (g_34: f64) -> g_34) (0.0) cc_24
  in (cc_24, uf_26, vj_32)
"#
        );
    }

    #[test]
    fn prints_constants_with_their_type() {
        let cases = [
            (Const::F64(1.0), "1.0"),
            (Const::F64(0.001), "0.001"),
            (Const::F64(1e-300), "1e-300"),
            (Const::F64(1e300), "1e300"),
            (Const::F64(-1.0), "(-1.0)"),
            (Const::F64(-0.0), "(-0.0)"),
            (Const::F64(f64::INFINITY), "inf"),
            (Const::F64(f64::NEG_INFINITY), "(-inf)"),
            (Const::F64(f64::NAN), "nan"),
            (Const::F32(2.5), "2.5f32"),
            (Const::F32(-3.0), "(-3.0f32)"),
            (Const::F32(f32::INFINITY), "(f32 inf)"),
            (Const::I64(42), "42"),
            (Const::I64(-7), "(-7)"),
            (Const::Bool(true), "true"),
            (Const::Bool(false), "false"),
        ];
        for (c, text) in cases {
            assert_eq!(print_const(c), text, "{c:?}");
        }
    }

    #[test]
    fn prints_fragments_and_empty_binds() {
        let p = dot();
        let Expr::Map { lam, .. } = &p.funcs[0].body.stmts[1].expr else { panic!() };
        assert_eq!(print_body(&p, &lam.body, 1), " let t_6: f64 = a_4 * b_5\n in t_6");
        // A (malformed) statement with no binds that is not a check still shows `let ()`.
        let s = st(&[], Expr::Atom(Atom::f64(1.0)));
        assert_eq!(print_stmt(&p, &s, 0), "let () = 1.0");
        assert_eq!(print_results(&p, &[]), "()");
    }
}
