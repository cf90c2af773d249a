//! Elaboration: the type-checked AST becomes the flat, first-order IR.
//!
//! Input: a [`CheckedProgram`] (every expression has its resolved type).
//! Output: one [`ir::Func`] per entry point.
//!
//! Elaboration is a partial evaluator in the style of normalisation by
//! evaluation. An expression evaluates to a *static value* ([`SVal`]): a leaf
//! (an IR atom), a tuple or record of static values, or a closure. Closures
//! exist only at compile time: applying one elaborates its body on the spot,
//! so every user function is inlined, every higher-order argument is
//! specialised, and nothing higher-order reaches the IR (`E0112` reports a
//! function stored where data is needed). Tuples and records disappear the
//! same way: they are trees of leaves. Arrays of tuples are stored as tuples of
//! arrays (struct of arrays), so `zip`/`unzip` cost nothing.
//!
//! Sizes: a call binds each size parameter to the `shape` of the first
//! argument dimension that mentions it and checks the others at run time.
//! Combinators over several arrays check that their outer sizes agree unless
//! the types already prove it.
//!
//! See Note [Jacobians] at the end of the file for `jacfwd`/`jacrev`/`hessian`.

mod builtins;
mod trees;

use crate::diagnostic::{Code, Diagnostic, Span};
use crate::hash::HashMap;
use crate::ir::{self, Atom, Body, CheckKind, Const, Expr as IrExpr, IrType, Lambda, LoopForm, Stmt, Var};
use crate::syntax::ast::{
    self, BinOp as AstBinOp, DimExpr, Expr, ExprKind, IndexArg, Pat, RuleKind, TypeExpr, UnOp as AstUnOp,
};
use crate::types::{CheckedProgram, DefInfo, Dim, ScalarType, Type};
use std::rc::Rc;

type R<T> = Result<T, Diagnostic>;

/// A compile-time value.
#[derive(Clone, Debug)]
pub(crate) enum SVal<'a> {
    Leaf(Atom),
    Tuple(Vec<SVal<'a>>),
    /// Sorted by field name.
    Record(Vec<(String, SVal<'a>)>),
    Closure(Rc<Closure<'a>>),
}

/// A step of a functional update's path, its indices elaborated.
pub(crate) enum Step<'s> {
    Index(Vec<Atom>),
    Field(&'s str),
}

/// A function value with the arguments it has received so far.
#[derive(Debug)]
pub(crate) struct Closure<'a> {
    pub callee: Callee<'a>,
    pub args: Vec<SVal<'a>>,
}

#[derive(Debug)]
pub(crate) enum Callee<'a> {
    Lambda {
        pats: &'a [Pat],
        body: &'a Expr,
        env: Env<'a>,
    },
    Def {
        name: String,
    },
    Builtin {
        name: &'static str,
        arity: usize,
        app_ty: Type,
    },
    Op(AstBinOp),
    /// An operator whose first argument is its *right* operand: `(op e)`.
    RightOp(AstBinOp),
}

/// The values of the names in scope: persistent, so that a closure captures
/// it and a `let` extends it in O(log n), whatever the number of bindings.
#[derive(Clone, Debug)]
pub(crate) struct Env<'a> {
    vars: rpds::HashTrieMap<&'a str, SVal<'a>>,
    /// The definitions this code sees: those before the definition whose
    /// text it is. See Note [Definitions named like builtins].
    scope: usize,
}

// Note [Definitions named like builtins]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A program may define a name that is also a builtin (`def max …`, an
// entry called `f64`). Names resolve lexically, as the type checker checks
// them: a use before the definition means the builtin, a use after it the
// definition. The checker gets this for free (it sees only the definitions
// checked so far); elaboration sees the whole program, so every environment
// carries the index of the definition whose text it belongs to (`scope`),
// and a global name resolves to a definition only if that definition comes
// earlier. A closure's body keeps the scope of the text it was written in,
// wherever it is applied. A REPL expression sees every definition.

impl<'a> Env<'a> {
    /// The environment of the body of the definition at `index`.
    fn in_def(index: usize) -> Self {
        Env { vars: Default::default(), scope: index }
    }

    /// The environment of an expression that sees every definition (the REPL's).
    fn top_level() -> Self {
        Env { vars: Default::default(), scope: usize::MAX }
    }

    fn lookup(&self, name: &str) -> Option<&SVal<'a>> {
        self.vars.get(name)
    }

    /// Binds `name` (hiding an earlier binding of it).
    fn bind(&mut self, name: &'a str, value: SVal<'a>) {
        self.vars.insert_mut(name, value);
    }
}

/// Elaborates every entry point of a checked program.
pub fn elaborate(program: &CheckedProgram) -> R<ir::Program> {
    let mut el = Elaborator::new(program);
    el.call_entries = true;
    for def in program.entries() {
        let func = el.entry(def)?;
        el.funcs.push(func);
    }
    Ok(ir::Program { funcs: el.funcs, vars: el.vars, recomputed: Default::default() })
}

/// Elaborates a closed expression as a parameterless function named `name` (REPL, tests).
pub fn elaborate_expr(program: &CheckedProgram, expr: &Expr, name: &str) -> R<ir::Program> {
    let mut el = Elaborator::new(program);
    el.site = Some(expr.span);
    el.blocks.push(Vec::new());
    let value = el.expr(expr, &Env::top_level())?;
    let result = el.first_order_leaves(&value, expr.span, "the result")?;
    let stmts = el.blocks.pop().unwrap_or_default();
    let func = ir::Func {
        name: name.to_string(),
        params: Vec::new(),
        body: Body { stmts: stmts.into(), result },
        signature: ir::Signature { params: Vec::new(), ret: expr.ty.clone() },
        span: expr.span,
    };
    Ok(ir::Program { funcs: vec![func], vars: el.vars, recomputed: Default::default() })
}

pub(crate) struct Elaborator<'a> {
    pub program: &'a CheckedProgram,
    pub vars: ir::VarTable,
    pub funcs: Vec<ir::Func>,
    /// Statement blocks under construction; the last one is current.
    pub blocks: Vec<Vec<Stmt>>,
    /// Inlining depth, to report runaway expansion instead of overflowing the stack.
    depth: usize,
    /// Calls inlined so far (E0122 past [`MAX_INLINED_CALLS`]).
    calls: usize,
    /// The innermost call being inlined that is written in the entry
    /// point's file: where a diagnostic about code the user did not write
    /// (a stdlib definition's custom rules) points instead.
    site: Option<Span>,
    /// Whether a call of an entry elaborated before, at the top level of an
    /// entry's body, is an `Expr::Call` rather than inlined (Note [Entries
    /// called by entries] in ir/calls.rs). Not for a REPL expression: its
    /// program holds no other function.
    call_entries: bool,
}

const MAX_INLINE_DEPTH: usize = 200;

/// The most IR variables elaboration creates before giving up (E0122).
/// Every call is inlined, so a function calling the one below it twice
/// doubles the program per level; the largest GradBench program has a few
/// thousand variables, and later passes take seconds per million.
pub const MAX_INLINED_SIZE: usize = 1_000_000;

/// The most calls elaboration inlines before giving up (E0122): a call that
/// creates no variable (of an identity function, say) still costs time, so a
/// doubling chain of them is stopped here rather than by the size limit.
pub const MAX_INLINED_CALLS: usize = 1_000_000;

impl<'a> Elaborator<'a> {
    fn new(program: &'a CheckedProgram) -> Elaborator<'a> {
        Elaborator {
            program,
            vars: ir::VarTable::default(),
            funcs: Vec::new(),
            blocks: Vec::new(),
            depth: 0,
            calls: 0,
            site: None,
            call_entries: false,
        }
    }

    // ---- Emitting statements ----

    pub fn emit(&mut self, expr: IrExpr, types: &[IrType], names: &[&str], span: Span) -> Vec<Var> {
        let binds: Vec<Var> =
            types.iter().enumerate().map(|(i, t)| self.vars.fresh(names.get(i).copied().unwrap_or("t"), *t)).collect();
        self.blocks.last_mut().expect("a block is open").push(Stmt { binds: binds.clone(), expr, span });
        binds
    }

    pub fn emit1(&mut self, expr: IrExpr, ty: IrType, name: &str, span: Span) -> Atom {
        Atom::Var(self.emit(expr, &[ty], &[name], span)[0])
    }

    pub fn ty(&self, a: Atom) -> IrType {
        self.vars.atom_type(a)
    }

    /// Runs `f` in a fresh block and returns the block with `f`'s result.
    pub fn in_block<T>(&mut self, f: impl FnOnce(&mut Self) -> R<T>) -> R<(Vec<Stmt>, T)> {
        self.blocks.push(Vec::new());
        let r = f(self);
        let stmts = self.blocks.pop().expect("block pushed above");
        Ok((stmts, r?))
    }

    /// Builds a lambda with parameters of the given types.
    pub fn lambda(
        &mut self,
        param_types: &[IrType],
        names: &[&str],
        f: impl FnOnce(&mut Self, &[Var]) -> R<Vec<Atom>>,
    ) -> R<Lambda> {
        let params: Vec<Var> = param_types
            .iter()
            .enumerate()
            .map(|(i, t)| self.vars.fresh(names.get(i).copied().unwrap_or("p"), *t))
            .collect();
        let (stmts, result) = self.in_block(|el| f(el, &params))?;
        Ok(Lambda { params, body: Body { stmts: stmts.into(), result } })
    }

    pub fn shape(&mut self, array: Atom, dim: u32, span: Span) -> Atom {
        let Atom::Var(v) = array else { unreachable!("arrays are variables") };
        self.emit1(IrExpr::Shape { array: v, dim }, IrType::I64, "n", span)
    }

    pub fn check_eq(&mut self, a: Atom, b: Atom, what: String, span: Span) {
        if a == b {
            return;
        }
        self.blocks.last_mut().expect("a block is open").push(Stmt {
            binds: Vec::new(),
            expr: IrExpr::Check { kind: CheckKind::SizeEq { what }, args: vec![a, b] },
            span,
        });
    }

    // ---- Static values ----

    /// Builds a static value of type `ty` from leaves taken in order.
    pub fn from_leaves(ty: &Type, leaves: &mut impl Iterator<Item = Atom>) -> SVal<'a> {
        match ty {
            Type::Tuple(ts) => SVal::Tuple(ts.iter().map(|t| Self::from_leaves(t, leaves)).collect()),
            Type::Record(fs) => {
                SVal::Record(fs.iter().map(|(n, t)| (n.clone(), Self::from_leaves(t, leaves))).collect())
            }
            Type::Array(e, _) => {
                // An array of tuples is a tuple of arrays.
                match e.strip_arrays().0 {
                    Type::Tuple(_) | Type::Record(_) => Self::from_leaves(&distribute(ty), leaves),
                    _ => SVal::Leaf(leaves.next().expect("enough leaves for the type")),
                }
            }
            _ => SVal::Leaf(leaves.next().expect("enough leaves for the type")),
        }
    }

    /// The leaves of a first-order value; a closure is a user error here.
    pub fn first_order_leaves(&self, v: &SVal<'a>, span: Span, what: &str) -> R<Vec<Atom>> {
        let mut out = Vec::new();
        collect_leaves(v, &mut out).map_err(|_| {
            Diagnostic::error(Code::E0112, format!("{what} cannot contain a function"), span, "a function ends up here")
                .with_help("functions can be passed to functions and combinators, but not stored in arrays, loops, branches or results")
        })?;
        Ok(out)
    }

    /// Rebuilds a value with the same shape as `like`, from new leaves.
    pub fn same_shape(like: &SVal<'a>, leaves: &mut impl Iterator<Item = Atom>) -> SVal<'a> {
        match like {
            SVal::Leaf(_) => SVal::Leaf(leaves.next().expect("enough leaves")),
            SVal::Tuple(vs) => SVal::Tuple(vs.iter().map(|v| Self::same_shape(v, leaves)).collect()),
            SVal::Record(fs) => {
                SVal::Record(fs.iter().map(|(n, v)| (n.clone(), Self::same_shape(v, leaves))).collect())
            }
            SVal::Closure(c) => SVal::Closure(c.clone()),
        }
    }

    // ---- Entry points and calls ----

    fn entry(&mut self, def: &'a ast::Def) -> R<ir::Func> {
        let info = &self.program.infos[&def.name.text];
        self.site = Some(def.name.span);
        self.blocks.push(Vec::new());
        let mut env = Env::in_def(info.scope);
        let mut params = Vec::new();
        let mut args = Vec::new();
        let mut sig_params = Vec::new();
        for (p, ty) in def.params.iter().zip(&info.param_types) {
            let leaves: Vec<Atom> = leaf_types(ty)
                .into_iter()
                .map(|t| {
                    let v = self.vars.fresh(pat_name(&p.pat), t);
                    params.push(v);
                    Atom::Var(v)
                })
                .collect();
            args.push(Self::from_leaves(ty, &mut leaves.into_iter()));
            sig_params.push((pat_name(&p.pat).to_string(), ty.clone()));
        }
        // An entry with its own derivative rule is that rule's function: its
        // IR is the call, so that `gradcheck` (which differentiates the
        // entry's IR) checks the rule, not the body the rule replaces.
        let value = if def.has_rule() {
            self.call_custom(&def.name.text, args, def.span)?
        } else {
            self.bind_sizes(def, &info.param_types, &args, &mut env)?;
            for (p, arg) in def.params.iter().zip(args) {
                self.bind_pat(&p.pat, arg, &mut env);
            }
            self.expr(&def.body, &env)?
        };
        let result = self.first_order_leaves(&value, def.body.span, "the result of an entry point")?;
        let stmts = self.blocks.pop().expect("entry block");
        Ok(ir::Func {
            name: def.name.text.clone(),
            params,
            body: Body { stmts: stmts.into(), result },
            signature: ir::Signature { params: sig_params, ret: info.ret.clone() },
            span: def.span,
        })
    }

    /// Binds a definition's size parameters to the shapes of its arguments, checking repeats.
    fn bind_sizes(&mut self, def: &'a ast::Def, param_types: &[Type], args: &[SVal<'a>], env: &mut Env<'a>) -> R<()> {
        let program = self.program;
        let info = &program.infos[&def.name.text];
        let mut known: HashMap<String, Atom> = HashMap::default();
        let mut sized = Vec::new();
        for (ty, arg) in param_types.iter().zip(args) {
            sized_dims(ty, arg, &mut sized);
        }
        for (leaf, k, d) in sized {
            let actual = self.shape(leaf, k, def.span);
            match d {
                Dim::Named(name) => match known.get(&name) {
                    Some(prev) => {
                        let prev = *prev;
                        let what = format!("size `{name}` in the call of `{}`", def.name.text);
                        self.check_eq(prev, actual, what, def.span)
                    }
                    None => {
                        known.insert(name, actual);
                    }
                },
                Dim::Const(c) => {
                    let what = format!("an argument of `{}` with a dimension of fixed size", def.name.text);
                    self.check_eq(actual, Atom::i64(c as i64), what, def.span);
                }
                _ => {}
            }
        }
        for name in &info.size_params {
            if let Some(a) = known.get(name) {
                env.bind(name.as_str(), SVal::Leaf(*a));
            }
        }
        Ok(())
    }

    pub fn apply(&mut self, f: SVal<'a>, mut args: Vec<SVal<'a>>, span: Span) -> R<SVal<'a>> {
        let SVal::Closure(c) = f else {
            return Err(Diagnostic::internal("elaboration", "applying a non-function", span));
        };
        let arity = self.arity(&c.callee);
        let mut all: Vec<SVal<'a>> = c.args.clone();
        all.append(&mut args);
        if all.len() < arity {
            return Ok(SVal::Closure(Rc::new(Closure { callee: clone_callee(&c.callee), args: all })));
        }
        let rest = all.split_off(arity);
        let result = self.call(&c.callee, all, span)?;
        if rest.is_empty() {
            Ok(result)
        } else {
            self.apply(result, rest, span)
        }
    }

    fn arity(&self, callee: &Callee<'a>) -> usize {
        match callee {
            Callee::Lambda { pats, .. } => pats.len(),
            Callee::Def { name } => self.program.infos[name].param_types.len(),
            Callee::Builtin { arity, .. } => *arity,
            Callee::Op(_) | Callee::RightOp(_) => 2,
        }
    }

    fn call(&mut self, callee: &Callee<'a>, args: Vec<SVal<'a>>, span: Span) -> R<SVal<'a>> {
        self.calls += 1;
        if self.vars.len() > MAX_INLINED_SIZE || self.calls > MAX_INLINED_CALLS {
            return Err(Diagnostic::error(
                Code::E0122,
                "the program is too large after inlining",
                span,
                "this call was being inlined",
            )
            .with_note(format!(
                "the compiler inlines every call and stops at {MAX_INLINED_SIZE} IR variables or {MAX_INLINED_CALLS} inlined calls"
            ))
            .with_help("a function that calls the one below it several times doubles the program at each level; bind a repeated call's result with `let` or use a loop"));
        }
        self.depth += 1;
        if self.depth > MAX_INLINE_DEPTH {
            self.depth -= 1;
            return Err(Diagnostic::error(
                Code::E0113,
                "function calls nest too deeply to inline",
                span,
                "in this call",
            )
            .with_help("Slope inlines every call; a function that passes itself along cannot be expanded"));
        }
        let outer_site = self.site;
        if self.site.is_none_or(|s| s.file == span.file) {
            self.site = Some(span);
        }
        let r = match callee {
            Callee::Lambda { pats, body, env } => {
                let mut env = env.clone();
                for (p, a) in pats.iter().zip(args) {
                    self.bind_pat(p, a, &mut env);
                }
                self.expr(body, &env)
            }
            Callee::Def { name } if self.program.def(name).is_some_and(|(d, _)| d.has_rule()) => {
                self.call_custom(name, args, span)
            }
            Callee::Def { name } if self.call_entries && self.blocks.len() == 1 && self.elaborated(name) => {
                self.call_entry(name, args, span)
            }
            Callee::Def { name } => {
                let program = self.program;
                let (def, info) = program.def(name).expect("checked definition");
                let mut env = Env::in_def(info.scope);
                self.bind_sizes(def, &info.param_types, &args, &mut env)?;
                for (p, a) in def.params.iter().zip(args) {
                    self.bind_pat(&p.pat, a, &mut env);
                }
                self.expr(&def.body, &env)
            }
            Callee::Builtin { name, app_ty, .. } => {
                let app_ty = app_ty.clone();
                self.builtin(name, args, &app_ty, span)
            }
            Callee::Op(op) => {
                let (a, b) = (leaf(&args[0]), leaf(&args[1]));
                Ok(SVal::Leaf(self.binary(*op, a, b, span)))
            }
            Callee::RightOp(op) => {
                let (b, a) = (leaf(&args[0]), leaf(&args[1]));
                Ok(SVal::Leaf(self.binary(*op, a, b, span)))
            }
        };
        self.depth -= 1;
        self.site = outer_site;
        r
    }

    /// Whether `name` is an entry point elaborated already.
    fn elaborated(&self, name: &str) -> bool {
        self.funcs.iter().any(|f| f.name == name)
    }

    /// A call of the entry point `name`, compiled on its own: an
    /// `Expr::Call` on the arguments' leaves, binding the result's leaves.
    fn call_entry(&mut self, name: &str, args: Vec<SVal<'a>>, span: Span) -> R<SVal<'a>> {
        let ret = self.program.infos[name].ret.clone();
        let mut leaves = Vec::new();
        for a in &args {
            leaves.extend(self.first_order_leaves(a, span, "an argument of an entry point")?);
        }
        let types = leaf_types(&ret);
        let binds = self.emit(IrExpr::Call { func: name.to_string(), args: leaves }, &types, &["r"], span);
        Ok(Self::from_leaves(&ret, &mut binds.into_iter().map(Atom::Var)))
    }

    /// A call of a definition with custom derivative rules: a `Custom` node
    /// holding the body and the rules as lambdas over the arguments' leaves
    /// (and the results', and the tangents' or cotangents': Note [Custom
    /// derivatives] in ad/rev.rs).
    fn call_custom(&mut self, name: &str, args: Vec<SVal<'a>>, span: Span) -> R<SVal<'a>> {
        let program = self.program;
        let (def, info) = program.def(name).expect("checked definition");
        // Function arguments are static: bound as they are, with no leaves
        // (Note [Static parameters of rules]).
        let is_static: Vec<bool> = info.param_types.iter().map(Type::is_static_in_rules).collect();
        let mut leaves = Vec::new();
        for (a, _) in args.iter().zip(&is_static).filter(|(_, s)| !**s) {
            leaves.extend(self.first_order_leaves(a, span, "an argument of a function with a custom derivative")?);
        }
        let types: Vec<IrType> = leaves.iter().map(|a| self.ty(*a)).collect();
        let rebuild = |ps: &[Var]| -> Vec<SVal<'a>> {
            let mut it = ps.iter().map(|v| Atom::Var(*v));
            args.iter().map(|a| Elaborator::same_shape(a, &mut it)).collect()
        };
        // The body's top-level `let`s that a rule names are residuals: the
        // primal returns them after its result (Note [Named residuals]).
        let (lets, final_expr) = def.residuals();
        let named = |pat: &Pat| {
            let own = |r: &ast::Rule, x: &str| r.pats.iter().any(|p| p.names().contains(&x));
            pat.names().iter().any(|x| def.rules.iter().any(|r| !own(r, x) && r.body.mentions(x)))
        };
        let (mut shape, mut m) = (None, 0);
        let mut residual_shapes: Vec<(&'a Pat, SVal<'a>)> = Vec::new();
        let primal = self.lambda(&types, &["x"], |el, ps| {
            let vals = rebuild(ps);
            let mut env = Env::in_def(info.scope);
            el.bind_sizes(def, &info.param_types, &vals, &mut env)?;
            for (p, v) in def.params.iter().zip(vals) {
                el.bind_pat(&p.pat, v, &mut env);
            }
            for (pat, value) in &lets {
                let v = el.expr(value, &env)?;
                if named(pat) && value.ty.is_first_order() {
                    residual_shapes.push((pat, v.clone()));
                }
                el.bind_pat(pat, v, &mut env);
            }
            let r = el.expr(final_expr, &env)?;
            let mut out =
                el.first_order_leaves(&r, def.body.span, "the result of a function with a custom derivative")?;
            m = out.len();
            for (pat, v) in &residual_shapes {
                out.extend(el.first_order_leaves(v, pat.span(), "a residual of a custom derivative rule")?);
            }
            shape = Some(r);
            Ok(out)
        })?;
        let shape = shape.expect("primal built");
        let all_types: Vec<IrType> = primal.body.result.iter().map(|a| self.ty(*a)).collect();
        let (n, r) = (leaves.len(), all_types.len() - m);
        let result_types = &all_types[..m];
        // Each rule's lambda: the arguments, the results, the residuals,
        // then the tangents (jvp: one per argument) or the cotangents (vjp:
        // one per result).
        let rule_lambda = |el: &mut Self, kind: RuleKind| -> R<Option<crate::ir::Lambda>> {
            let Some(rule) = def.rule(kind) else { return Ok(None) };
            let last = if kind == RuleKind::Jvp { &types[..] } else { result_types };
            let params = [&types[..], &all_types, last].concat();
            let lam = el.lambda(&params, &["x"], |el, ps| {
                let primals = rebuild(&ps[..n]);
                let result = Elaborator::same_shape(&shape, &mut ps[n..n + m].iter().map(|v| Atom::Var(*v)));
                let mut env = Env::in_def(info.scope);
                el.bind_sizes(def, &info.param_types, &primals, &mut env)?;
                // Residuals first: the rule's own patterns shadow them.
                let mut residual_atoms = ps[n + m..n + m + r].iter().map(|v| Atom::Var(*v));
                for (pat, like) in &residual_shapes {
                    let v = Elaborator::same_shape(like, &mut residual_atoms);
                    el.bind_pat(pat, v, &mut env);
                }
                // The tangents (jvp) or the results' cotangents (vjp).
                let last = &ps[n + m + r..];
                let k = def.params.len();
                for (pat, v) in rule.pats[..k].iter().zip(primals) {
                    el.bind_pat(pat, v, &mut env);
                }
                let rest = &rule.pats[k..];
                let what = match kind {
                    RuleKind::Jvp => {
                        let tangents = rebuild(last).into_iter().zip(&is_static).filter(|(_, s)| !**s);
                        for (pat, (v, _)) in rest.iter().zip(tangents) {
                            el.bind_pat(pat, v, &mut env);
                        }
                        let d = is_static.iter().filter(|s| !**s).count();
                        if let Some(pat) = rest.get(d) {
                            el.bind_pat(pat, result, &mut env);
                        }
                        "the tangent of a custom derivative rule"
                    }
                    RuleKind::Vjp => {
                        let cotangent = Elaborator::same_shape(&shape, &mut last.iter().map(|v| Atom::Var(*v)));
                        el.bind_pat(&rest[0], result, &mut env);
                        el.bind_pat(&rest[1], cotangent, &mut env);
                        "the cotangents of a vjp rule"
                    }
                };
                let r = el.expr(&rule.body, &env)?;
                el.first_order_leaves(&r, rule.body.span, what)
            })?;
            Ok(Some(lam))
        };
        let jvp = rule_lambda(self, RuleKind::Jvp)?;
        let vjp = rule_lambda(self, RuleKind::Vjp)?;
        // Reverse mode transposes a jvp rule only when there is no vjp rule;
        // then the jvp rule must be linear in the tangents (Note [Linear
        // rules] in ad/linearity.rs). With a vjp rule, a jvp rule may branch
        // on a tangent (an iterative solve of the tangent system).
        if let (Some(jvp), Some(rule), None) = (&jvp, def.rule(RuleKind::Jvp), &vjp) {
            if let Some(bad) = crate::ad::linearity::first_nonlinear(jvp, n + m + r) {
                return Err(Diagnostic::error(
                    Code::E0119,
                    format!("the derivative rule of `{}` is not linear in its tangents", def.name.text),
                    bad.span,
                    bad.what,
                )
                .with_secondary(rule.span, "in this rule")
                .with_note("reverse mode transposes the rule, which is only right for a rule linear in the tangents")
                .with_help("a tangent may be added, negated, scaled and divided by values that are not tangents, and moved around in arrays; branch and loop on primal values only — or give reverse mode its own `with vjp` rule"));
            }
        }
        let site = self.site.unwrap_or(span);
        let binds =
            self.emit(IrExpr::Custom { primal, jvp, vjp, args: leaves, residuals: r }, &all_types, &["r"], site);
        Ok(Self::same_shape(&shape, &mut binds.into_iter().map(Atom::Var)))
    }

    fn bind_pat(&mut self, pat: &'a Pat, value: SVal<'a>, env: &mut Env<'a>) {
        match pat {
            Pat::Var(n) => env.bind(n.text.as_str(), value),
            Pat::Wildcard(_) => {}
            Pat::Typed(p, _, _) => self.bind_pat(p, value, env),
            Pat::Tuple(ps, _) => {
                if let SVal::Tuple(vs) = value {
                    for (p, v) in ps.iter().zip(vs) {
                        self.bind_pat(p, v, env);
                    }
                }
            }
        }
    }

    // ---- Expressions ----

    pub fn expr(&mut self, e: &'a Expr, env: &Env<'a>) -> R<SVal<'a>> {
        let span = e.span;
        match &e.kind {
            ExprKind::Var(name) => self.var(name, e, env),
            ExprKind::Int(v, _) => Ok(SVal::Leaf(Atom::Const(literal(&e.ty, *v as f64, Some(*v))))),
            ExprKind::Float(v, _) => Ok(SVal::Leaf(Atom::Const(literal(&e.ty, *v, None)))),
            ExprKind::Bool(b) => Ok(SVal::Leaf(Atom::Const(Const::Bool(*b)))),
            ExprKind::Tuple(es) => Ok(SVal::Tuple(es.iter().map(|x| self.expr(x, env)).collect::<R<_>>()?)),
            ExprKind::Record(fs) => {
                let mut fields: Vec<(String, SVal<'a>)> =
                    fs.iter().map(|(n, x)| Ok((n.text.clone(), self.expr(x, env)?))).collect::<R<_>>()?;
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(SVal::Record(fields))
            }
            ExprKind::ArrayLit(es) => {
                let values: Vec<SVal<'a>> = es.iter().map(|x| self.expr(x, env)).collect::<R<_>>()?;
                let Type::Array(elem_ty, _) = &e.ty else {
                    return Err(Diagnostic::internal("elaboration", "array literal type", span));
                };
                let elem_leaf_types = leaf_types(elem_ty);
                let mut columns: Vec<Vec<Atom>> = vec![Vec::new(); elem_leaf_types.len()];
                for (v, x) in values.iter().zip(es) {
                    let leaves = self.first_order_leaves(v, x.span, "an array element")?;
                    for (k, l) in leaves.into_iter().enumerate() {
                        columns[k].push(l);
                    }
                }
                let arrays: Vec<Atom> = columns
                    .into_iter()
                    .zip(&elem_leaf_types)
                    .map(|(elems, t)| self.emit1(IrExpr::ArrayLit { elem: *t, elems }, t.lift(), "arr", span))
                    .collect();
                Ok(Self::from_leaves(&e.ty, &mut arrays.into_iter()))
            }
            ExprKind::Section(op, None, None) => {
                Ok(SVal::Closure(Rc::new(Closure { callee: Callee::Op(*op), args: Vec::new() })))
            }
            ExprKind::Section(op, Some(left), _) => {
                let left = self.expr(left, env)?;
                Ok(SVal::Closure(Rc::new(Closure { callee: Callee::Op(*op), args: vec![left] })))
            }
            ExprKind::Section(op, None, Some(right)) => {
                let right = self.expr(right, env)?;
                Ok(SVal::Closure(Rc::new(Closure { callee: Callee::RightOp(*op), args: vec![right] })))
            }
            ExprKind::Lambda(pats, _, body) => Ok(SVal::Closure(Rc::new(Closure {
                callee: Callee::Lambda { pats, body, env: env.clone() },
                args: Vec::new(),
            }))),
            ExprKind::App(f, args) => {
                if let (ExprKind::Var(name), [k, lp]) = (&f.kind, &args[..]) {
                    if name == "checkpoint" && env.lookup(name).is_none() && self.visible_def(name, env).is_none() {
                        return self.checkpointed_loop(k, lp, env, span);
                    }
                }
                let fv = match &f.kind {
                    // Builtins need the type of the application (for sizes and result shapes).
                    ExprKind::Var(name) if env.lookup(name).is_none() && self.visible_def(name, env).is_none() => {
                        match builtins::arity(name) {
                            Some((bname, arity)) => SVal::Closure(Rc::new(Closure {
                                callee: Callee::Builtin { name: bname, arity, app_ty: e.ty.uncurry().1.clone() },
                                args: Vec::new(),
                            })),
                            None => self.expr(f, env)?,
                        }
                    }
                    _ => self.expr(f, env)?,
                };
                let argv: Vec<SVal<'a>> = args.iter().map(|a| self.expr(a, env)).collect::<R<_>>()?;
                self.apply(fv, argv, span)
            }
            ExprKind::Binary(AstBinOp::And, a, b) => self.short_circuit(a, b, true, env, span),
            ExprKind::Binary(AstBinOp::Or, a, b) => self.short_circuit(a, b, false, env, span),
            ExprKind::Binary(op, a, b) => {
                let av = self.expr(a, env)?;
                let bv = self.expr(b, env)?;
                Ok(SVal::Leaf(self.binary(*op, leaf(&av), leaf(&bv), span)))
            }
            ExprKind::Unary(op, a) => {
                let av = leaf(&self.expr(a, env)?);
                let t = self.ty(av);
                let op = match op {
                    AstUnOp::Neg => ir::UnOp::Neg,
                    AstUnOp::Not => ir::UnOp::Not,
                };
                if let Atom::Const(c) = av {
                    if let Some(folded) = fold_unary(op, c) {
                        return Ok(SVal::Leaf(Atom::Const(folded)));
                    }
                }
                Ok(SVal::Leaf(self.emit1(IrExpr::Unary(op, av), t, "t", span)))
            }
            ExprKind::Let(pat, value, body) => {
                let v = self.expr(value, env)?;
                let mut env = env.clone();
                self.bind_pat(pat, v, &mut env);
                self.expr(body, &env)
            }
            ExprKind::If(c, t, f) => {
                let cv = leaf(&self.expr(c, env)?);
                if let Atom::Const(Const::Bool(b)) = cv {
                    return self.expr(if b { t } else { f }, env);
                }
                let (then_stmts, tv) = self.in_block(|el| el.expr(t, env))?;
                let then_leaves = self.first_order_leaves(&tv, t.span, "a branch of `if`")?;
                let (else_stmts, fv) = self.in_block(|el| el.expr(f, env))?;
                let else_leaves = self.first_order_leaves(&fv, f.span, "a branch of `if`")?;
                let types: Vec<IrType> = then_leaves.iter().map(|a| self.ty(*a)).collect();
                let binds = self.emit(
                    IrExpr::If {
                        cond: cv,
                        then_body: Body { stmts: then_stmts.into(), result: then_leaves },
                        else_body: Body { stmts: else_stmts.into(), result: else_leaves },
                    },
                    &types,
                    &[],
                    span,
                );
                Ok(Self::same_shape(&tv, &mut binds.into_iter().map(Atom::Var)))
            }
            ExprKind::Loop { pat, init, form, body } => self.loop_expr(pat, init, form, body, env, span),
            ExprKind::Index(a, args) => {
                let av = self.expr(a, env)?;
                let mut out = Vec::new();
                let leaves = self.first_order_leaves(&av, a.span, "an indexed value")?;
                let mut index_atoms = Vec::new();
                for arg in args {
                    index_atoms.push(match arg {
                        IndexArg::Index(ix) => IndexAtom::Index(leaf(&self.expr(ix, env)?)),
                        IndexArg::Slice(lo, hi, _) => IndexAtom::Slice(
                            lo.as_ref().map(|x| self.expr(x, env).map(|v| leaf(&v))).transpose()?,
                            hi.as_ref().map(|x| self.expr(x, env).map(|v| leaf(&v))).transpose()?,
                        ),
                    });
                }
                for l in leaves {
                    out.push(self.index(l, &index_atoms, span)?);
                }
                Ok(Self::same_shape(&av, &mut out.into_iter()))
            }
            ExprKind::Field(r, name) => match self.expr(r, env)? {
                SVal::Record(fs) => fs
                    .into_iter()
                    .find(|(n, _)| *n == name.text)
                    .map(|(_, v)| v)
                    .ok_or_else(|| Diagnostic::internal("elaboration", "missing field", span)),
                _ => Err(Diagnostic::internal("elaboration", "field of a non-record", span)),
            },
            ExprKind::TupleIndex(t, i, _) => match self.expr(t, env)? {
                SVal::Tuple(mut vs) if *i < vs.len() => Ok(vs.swap_remove(*i)),
                _ => Err(Diagnostic::internal("elaboration", "projection of a non-tuple", span)),
            },
            ExprKind::Update(base, path, value) => {
                let base = self.expr(base, env)?;
                let mut steps = Vec::new();
                for step in path {
                    steps.push(match step {
                        ast::UpdateStep::Index(ixs, _) => {
                            let atoms = ixs.iter().map(|ix| self.expr(ix, env).map(|v| leaf(&v)));
                            Step::Index(atoms.collect::<R<_>>()?)
                        }
                        ast::UpdateStep::Field(name) => Step::Field(&name.text),
                    });
                }
                let value = self.expr(value, env)?;
                self.update(base, &steps, value, &mut Vec::new(), span)
            }
            ExprKind::Ascribe(x, _) => self.expr(x, env),
            ExprKind::Coerce(x, t) => {
                let v = self.expr(x, env)?;
                self.coerce(&v, t, env, span)?;
                Ok(v)
            }
        }
    }

    /// `base with path = value`. Field steps pick a field of the static
    /// record; index steps collect `indices`, which apply to every leaf
    /// array below them (an array of records is a record of arrays). Each
    /// updated leaf is first bound to a fresh name that only the `UpdateAt`
    /// reads: the update consumes that name (Note [Consumed arrays]), never
    /// the base, which the program may still use; the optimiser merges the
    /// two when the base is dead, and the update happens in place.
    fn update(
        &mut self,
        base: SVal<'a>,
        path: &[Step<'_>],
        value: SVal<'a>,
        indices: &mut Vec<Atom>,
        span: Span,
    ) -> R<SVal<'a>> {
        match path.split_first() {
            None if indices.is_empty() => Ok(value),
            None => {
                let arrays = self.first_order_leaves(&base, span, "an updated value")?;
                let values = self.first_order_leaves(&value, span, "the new value")?;
                let mut updated = Vec::new();
                for (array, value) in arrays.into_iter().zip(values) {
                    let ty = self.ty(array);
                    let Atom::Var(copy) = self.emit1(IrExpr::Atom(array), ty, "upd", span) else {
                        return Err(Diagnostic::internal("elaboration", "an updated array is a constant", span));
                    };
                    let update = IrExpr::UpdateAt { array: copy, indices: indices.clone(), value, accumulate: false };
                    updated.push(self.emit1(update, ty, "upd", span));
                }
                Ok(Self::same_shape(&base, &mut updated.into_iter()))
            }
            Some((Step::Index(ixs), rest)) => {
                indices.extend(ixs);
                self.update(base, rest, value, indices, span)
            }
            Some((Step::Field(name), rest)) => {
                let SVal::Record(mut fields) = base else {
                    return Err(Diagnostic::internal("elaboration", "field update of a non-record", span));
                };
                let Some(k) = fields.iter().position(|(n, _)| n == name) else {
                    return Err(Diagnostic::internal("elaboration", "update of a missing field", span));
                };
                let field = std::mem::replace(&mut fields[k].1, SVal::Tuple(Vec::new()));
                fields[k].1 = self.update(field, rest, value, indices, span)?;
                Ok(SVal::Record(fields))
            }
        }
    }

    /// The definition a global `name` refers to from code in `env`, if any
    /// (Note [Definitions named like builtins]).
    fn visible_def(&self, name: &str, env: &Env<'a>) -> Option<&'a DefInfo> {
        let program = self.program;
        // Instances (`dot<f64>`) are named by the checker alone and visible
        // everywhere; an instance's own body sees what its generic saw.
        program.infos.get(name).filter(|info| info.index < env.scope || crate::types::check::is_instance_name(name))
    }

    fn var(&mut self, name: &str, e: &'a Expr, env: &Env<'a>) -> R<SVal<'a>> {
        // `%f64`: the builtin conversion itself, which no definition named
        // `f64` can shadow (a type parameter used as a conversion, Note [Type
        // parameters] in types/check.rs).
        if let Some(builtin) = name.strip_prefix('%') {
            return self.var(builtin, e, &Env::in_def(0));
        }
        if let Some(v) = env.lookup(name) {
            return Ok(v.clone());
        }
        if let Some(info) = self.visible_def(name, env) {
            if info.param_types.is_empty() {
                // A constant definition: inline its body.
                let program = self.program;
                let (def, _) = program.def(name).expect("checked definition");
                return self.expr(&def.body, &Env::in_def(info.scope));
            }
            return Ok(SVal::Closure(Rc::new(Closure {
                callee: Callee::Def { name: name.to_string() },
                args: Vec::new(),
            })));
        }
        match builtins::arity(name) {
            Some((bname, 0)) => self.builtin(bname, Vec::new(), &e.ty, e.span),
            Some((bname, arity)) => Ok(SVal::Closure(Rc::new(Closure {
                callee: Callee::Builtin { name: bname, arity, app_ty: e.ty.uncurry().1.clone() },
                args: Vec::new(),
            }))),
            None => Err(Diagnostic::internal("elaboration", format!("unbound name `{name}`"), e.span)),
        }
    }

    fn short_circuit(&mut self, a: &'a Expr, b: &'a Expr, is_and: bool, env: &Env<'a>, span: Span) -> R<SVal<'a>> {
        let av = leaf(&self.expr(a, env)?);
        if let Atom::Const(Const::Bool(x)) = av {
            return if x == is_and { self.expr(b, env) } else { Ok(SVal::Leaf(av)) };
        }
        let (stmts, bv) = self.in_block(|el| el.expr(b, env))?;
        let bl = leaf(&bv);
        let short = Body { stmts: Vec::new().into(), result: vec![Atom::Const(Const::Bool(!is_and))] };
        let long = Body { stmts: stmts.into(), result: vec![bl] };
        let (then_body, else_body) = if is_and { (long, short) } else { (short, long) };
        Ok(SVal::Leaf(self.emit1(IrExpr::If { cond: av, then_body, else_body }, IrType::BOOL, "b", span)))
    }

    pub fn binary(&mut self, op: AstBinOp, a: Atom, b: Atom, span: Span) -> Atom {
        let t = self.ty(a);
        let irop = match op {
            AstBinOp::Add => ir::BinOp::Add,
            AstBinOp::Sub => ir::BinOp::Sub,
            AstBinOp::Mul => ir::BinOp::Mul,
            AstBinOp::Div => ir::BinOp::Div,
            AstBinOp::Rem => ir::BinOp::Rem,
            AstBinOp::Pow => ir::BinOp::Pow,
            AstBinOp::Eq => ir::BinOp::Eq,
            AstBinOp::Ne => ir::BinOp::Ne,
            AstBinOp::Lt => ir::BinOp::Lt,
            AstBinOp::Le => ir::BinOp::Le,
            AstBinOp::Gt => ir::BinOp::Gt,
            AstBinOp::Ge => ir::BinOp::Ge,
            AstBinOp::And => ir::BinOp::And,
            AstBinOp::Or => ir::BinOp::Or,
        };
        self.binop(irop, a, b, t, span)
    }

    pub fn binop(&mut self, op: ir::BinOp, a: Atom, b: Atom, t: IrType, span: Span) -> Atom {
        let rt = if op.is_comparison() { IrType::BOOL } else { t };
        self.emit1(IrExpr::Binary(op, a, b), rt, "t", span)
    }

    /// `checkpoint k (loop …)`: the loop, cut into segments of k iterations
    /// (ad/checkpoint.rs; the checker made sure it is a loop).
    fn checkpointed_loop(&mut self, k: &'a Expr, lp: &'a Expr, env: &Env<'a>, span: Span) -> R<SVal<'a>> {
        let ExprKind::Loop { pat, init, form, body } = &lp.kind else {
            return Err(Diagnostic::internal("elaboration", "`checkpoint` of something that is not a loop", span));
        };
        let k = leaf(&self.expr(k, env)?);
        let value = self.loop_expr(pat, init, form, body, env, lp.span)?;
        let block = self.blocks.last_mut().expect("a block is open");
        let stmt = block.pop().expect("the loop just emitted");
        let mut b = crate::ad::build::Builder::new(&mut self.vars, span);
        crate::ad::checkpoint::segment(&mut b, stmt, k);
        let stmts = b.blocks.pop().expect("the builder's block");
        self.blocks.last_mut().expect("a block is open").extend(stmts);
        Ok(value)
    }

    fn loop_expr(
        &mut self,
        pat: &'a Pat,
        init: &'a Expr,
        form: &'a ast::LoopForm,
        body: &'a Expr,
        env: &Env<'a>,
        span: Span,
    ) -> R<SVal<'a>> {
        let iv = self.expr(init, env)?;
        let init_leaves = self.first_order_leaves(&iv, init.span, "a loop variable")?;
        let names = pat_leaf_names(pat, init_leaves.len());
        let params: Vec<Var> =
            init_leaves.iter().zip(&names).map(|(a, n)| self.vars.fresh(n, self.vars.atom_type(*a))).collect();
        let param_val = Self::same_shape(&iv, &mut params.iter().map(|v| Atom::Var(*v)));
        let mut body_env = env.clone();
        self.bind_pat(pat, param_val, &mut body_env);
        let form = match form {
            ast::LoopForm::For(i, bound) => {
                let b = leaf(&self.expr(bound, env)?);
                let index = self.vars.fresh(&i.text, IrType::I64);
                body_env.bind(i.text.as_str(), SVal::Leaf(Atom::Var(index)));
                LoopForm::For { index, bound: b }
            }
            ast::LoopForm::While(cond) => {
                let (stmts, c) = self.in_block(|el| el.expr(cond, &body_env))?;
                LoopForm::While { cond: Body { stmts: stmts.into(), result: vec![leaf(&c)] } }
            }
        };
        let (stmts, bv) = self.in_block(|el| el.expr(body, &body_env))?;
        let result = self.first_order_leaves(&bv, body.span, "a loop body")?;
        let types: Vec<IrType> = params.iter().map(|v| self.vars.ty(*v)).collect();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let binds = self.emit(
            IrExpr::Loop { params, init: init_leaves, form, body: Body { stmts: stmts.into(), result } },
            &types,
            &name_refs,
            span,
        );
        Ok(Self::same_shape(&iv, &mut binds.into_iter().map(Atom::Var)))
    }

    /// Indexes or slices one array leaf, dimension by dimension.
    fn index(&mut self, array: Atom, args: &[IndexAtom], span: Span) -> R<Atom> {
        if args.is_empty() {
            return Ok(array);
        }
        let Atom::Var(arr) = array else {
            return Err(Diagnostic::internal("elaboration", "indexing a constant", span));
        };
        let t = self.ty(array);
        let run: Vec<Atom> = args
            .iter()
            .take_while(|a| matches!(a, IndexAtom::Index(_)))
            .map(|a| match a {
                IndexAtom::Index(i) => *i,
                IndexAtom::Slice(..) => unreachable!(),
            })
            .collect();
        if !run.is_empty() {
            let rt = IrType { elem: t.elem, rank: t.rank - run.len() as u32 };
            let n = run.len();
            let r = self.emit1(IrExpr::Index { array: arr, indices: run }, rt, "x", span);
            return self.index(r, &args[n..], span);
        }
        let IndexAtom::Slice(lo, hi) = &args[0] else { unreachable!() };
        let sliced = if lo.is_none() && hi.is_none() {
            array
        } else {
            let start = lo.unwrap_or(Atom::i64(0));
            let end = match hi {
                Some(h) => *h,
                None => self.shape(array, 0, span),
            };
            self.emit1(IrExpr::Slice { array: arr, start, end }, t, "s", span)
        };
        if args.len() == 1 {
            return Ok(sliced);
        }
        // Index the inner dimensions of every row.
        let rest = args[1..].to_vec();
        let width = self.shape(sliced, 0, span);
        let mut result_ty = t.row();
        let lam = self.lambda(&[t.row()], &["row"], |el, ps| {
            let r = el.index(Atom::Var(ps[0]), &rest, span)?;
            result_ty = el.ty(r);
            Ok(vec![r])
        })?;
        let Atom::Var(sv) = sliced else { unreachable!() };
        Ok(self.emit1(IrExpr::Map { width, lam, arrays: vec![sv] }, result_ty.lift(), "s", span))
    }

    /// Inserts run-time checks that a value has the sizes a coercion claims.
    fn coerce(&mut self, v: &SVal<'a>, t: &TypeExpr, env: &Env<'a>, span: Span) -> R<()> {
        match (v, t) {
            (SVal::Tuple(vs), TypeExpr::Tuple(ts, _)) => {
                for (v, t) in vs.iter().zip(ts) {
                    self.coerce(v, t, env, span)?;
                }
            }
            (SVal::Record(fs), TypeExpr::Record(ts, _)) => {
                for (n, t) in ts {
                    if let Some((_, v)) = fs.iter().find(|(m, _)| *m == n.text) {
                        self.coerce(v, t, env, span)?;
                    }
                }
            }
            _ => {
                let mut leaves = Vec::new();
                if collect_leaves(v, &mut leaves).is_err() {
                    return Ok(());
                }
                let mut dim = 0u32;
                let mut t = t;
                while let TypeExpr::Array { dim: d, elem, .. } = t {
                    let expected = match d {
                        DimExpr::Const(k, _) => Some(Atom::i64(*k as i64)),
                        DimExpr::Name(n) => env.lookup(&n.text).map(leaf),
                        DimExpr::Any(_) => None,
                    };
                    if let Some(expected) = expected {
                        for l in &leaves {
                            if self.ty(*l).rank > dim {
                                let actual = self.shape(*l, dim, span);
                                self.check_eq(actual, expected, format!("coercion of dimension {dim}"), span);
                            }
                        }
                    }
                    dim += 1;
                    t = elem;
                }
            }
        }
        Ok(())
    }
}

/// The statically named or constant dimensions of a value of type `ty`:
/// `(an array leaf, dimension index, size)`.
fn sized_dims(ty: &Type, v: &SVal<'_>, out: &mut Vec<(Atom, u32, Dim)>) {
    sized_dims_at(ty, v, 0, out)
}

/// `sized_dims` for a value whose `outer` leading dimensions are already
/// walked: an array of tuples is a tuple of arrays, so its components' own
/// dimensions come after the outer ones in every leaf.
fn sized_dims_at(ty: &Type, v: &SVal<'_>, outer: u32, out: &mut Vec<(Atom, u32, Dim)>) {
    match (ty, v) {
        (Type::Tuple(ts), SVal::Tuple(vs)) => ts.iter().zip(vs).for_each(|(t, v)| sized_dims_at(t, v, outer, out)),
        (Type::Record(ts), SVal::Record(vs)) => {
            ts.iter().zip(vs).for_each(|((_, t), (_, v))| sized_dims_at(t, v, outer, out))
        }
        (Type::Array(elem, d), _) => {
            if matches!(d, Dim::Named(_) | Dim::Const(_)) {
                let mut leaves = Vec::new();
                if collect_leaves(v, &mut leaves).is_err() || leaves.is_empty() {
                    return;
                }
                out.push((leaves[0], outer, d.clone()));
            }
            sized_dims_at(elem, v, outer + 1, out)
        }
        _ => {}
    }
}

#[derive(Clone, Copy, Debug)]
enum IndexAtom {
    Index(Atom),
    Slice(Option<Atom>, Option<Atom>),
}

fn clone_callee<'a>(c: &Callee<'a>) -> Callee<'a> {
    match c {
        Callee::Lambda { pats, body, env } => Callee::Lambda { pats, body, env: env.clone() },
        Callee::Def { name } => Callee::Def { name: name.clone() },
        Callee::Builtin { name, arity, app_ty } => Callee::Builtin { name, arity: *arity, app_ty: app_ty.clone() },
        Callee::Op(op) => Callee::Op(*op),
        Callee::RightOp(op) => Callee::RightOp(*op),
    }
}

/// The leaf of a value known to be a scalar or array.
pub(crate) fn leaf(v: &SVal<'_>) -> Atom {
    match v {
        SVal::Leaf(a) => *a,
        _ => panic!("internal compiler error: expected a leaf value, found {v:?}"),
    }
}

pub(crate) fn collect_leaves(v: &SVal<'_>, out: &mut Vec<Atom>) -> Result<(), ()> {
    match v {
        SVal::Leaf(a) => out.push(*a),
        SVal::Tuple(vs) => {
            for v in vs {
                collect_leaves(v, out)?;
            }
        }
        SVal::Record(fs) => {
            for (_, v) in fs {
                collect_leaves(v, out)?;
            }
        }
        SVal::Closure(_) => return Err(()),
    }
    Ok(())
}

/// The IR types of the leaves of a first-order type (arrays of tuples become tuples of arrays).
pub fn leaf_types(ty: &Type) -> Vec<IrType> {
    let mut out = Vec::new();
    fn go(t: &Type, rank: u32, out: &mut Vec<IrType>) {
        match t {
            Type::Scalar(s) => out.push(IrType { elem: *s, rank }),
            Type::Array(e, _) => go(e, rank + 1, out),
            Type::Tuple(ts) => ts.iter().for_each(|t| go(t, rank, out)),
            Type::Record(fs) => fs.iter().for_each(|(_, t)| go(t, rank, out)),
            Type::Func(..) | Type::Var(_) | Type::Param(_) | Type::Unknown => {}
        }
    }
    go(ty, 0, &mut out);
    out
}

/// Pushes array dimensions inside tuples and records: `[n](a, b)` → `([n]a, [n]b)`.
pub fn distribute(ty: &Type) -> Type {
    fn wrap(t: &Type, dims: &[Dim]) -> Type {
        match t {
            Type::Tuple(ts) => Type::Tuple(ts.iter().map(|t| wrap(t, dims)).collect()),
            Type::Record(fs) => Type::Record(fs.iter().map(|(n, t)| (n.clone(), wrap(t, dims))).collect()),
            Type::Array(e, d) => {
                let mut ds = dims.to_vec();
                ds.push(d.clone());
                wrap(e, &ds)
            }
            t => dims.iter().rev().fold(t.clone(), |acc, d| Type::array(acc, d.clone())),
        }
    }
    wrap(ty, &[])
}

fn literal(ty: &Type, v: f64, int: Option<i64>) -> Const {
    match ty {
        Type::Scalar(ScalarType::I64) => Const::I64(int.unwrap_or(v as i64)),
        Type::Scalar(ScalarType::F32) => Const::F32(v as f32),
        Type::Scalar(ScalarType::Bool) => Const::Bool(v != 0.0),
        _ => Const::F64(v),
    }
}

fn fold_unary(op: ir::UnOp, c: Const) -> Option<Const> {
    Some(match (op, c) {
        (ir::UnOp::Neg, Const::F64(v)) => Const::F64(-v),
        (ir::UnOp::Neg, Const::F32(v)) => Const::F32(-v),
        (ir::UnOp::Neg, Const::I64(v)) => Const::I64(v.wrapping_neg()),
        (ir::UnOp::Not, Const::Bool(b)) => Const::Bool(!b),
        _ => return None,
    })
}

fn pat_name(p: &Pat) -> &str {
    p.var_name().unwrap_or("arg")
}

fn pat_leaf_names(p: &Pat, n: usize) -> Vec<String> {
    let base = pat_name(p).to_string();
    let mut names = Vec::new();
    fn go(p: &Pat, out: &mut Vec<String>) {
        match p {
            Pat::Var(n) => out.push(n.text.clone()),
            Pat::Typed(p, _, _) => go(p, out),
            Pat::Tuple(ps, _) => ps.iter().for_each(|p| go(p, out)),
            Pat::Wildcard(_) => out.push("w".into()),
        }
    }
    go(p, &mut names);
    if names.len() != n {
        names = vec![base; n];
    }
    names
}

// Note [Jacobians]
// ~~~~~~~~~~~~~~~~
// `jacfwd f x` runs one `jvp` per basis direction of x and `jacrev f x` one
// `vjp` per basis direction of f's result; both are nested `map`s over the
// index space of the seeded leaf, so the IR stays first order and the
// optimiser can later collapse the one-hot seeds. The result shape follows
// JAX: for an output leaf of shape T and an input leaf of shape S the block
// has shape T ++ S. `jacrev` produces that order directly; `jacfwd` produces
// S ++ T and moves the S dimensions to the back with transposes under maps.
//
// When the input leaf is a vector and some output is an array, `jacfwd`
// instead runs one `jvp` in vector mode (`Expr::Jvp` with a batch): the
// tangent of the input leaf is the identity matrix, every tangent carries all
// n directions in its last dimension, and the result tangents, of shape
// T ++ [n], are the blocks. The primal runs once and the tangent arithmetic
// of all directions runs together (Note [Vector-mode forward AD] in
// ad/fwd.rs). Scalar outputs keep one `jvp` per direction: there the one-hot
// collapse of the optimiser makes each direction read one element, O(n) in
// all, where vector mode would add up an n × n identity.

// Note [Static parameters of rules]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A definition with custom rules may take functions: `root linsolve f solver
// θ` in stdlib `implicit` takes the optimality condition, the solver and the
// linear solver. Such a parameter is static. Its rules bind it like any
// parameter but give it no tangent (a jvp rule binds the tangents of the
// other parameters only) and return no cotangent for it (a vjp rule returns
// the other parameters' cotangents). Elaboration binds the function itself
// in the primal and in both rules — so a rule calls it, and takes `jvp`/`vjp`
// of it — and passes only the first-order arguments to the `Custom` node.
//
// A function can capture variables. Capturing data is fine (the training set
// a condition reads); capturing a value that is being differentiated is not,
// because the rules would drop its derivative. Activity analysis counts a
// `Custom` node's captured variables as its inputs, so the node is active
// when one of them is, and both modes then stop with E0124 at the call
// (`ad::check_captures`) instead of silently returning a derivative without
// that part. The error's span is the innermost call written in the entry's
// file (`Elaborator::site`), not a call inside the standard library.

// Note [Named residuals]
// ~~~~~~~~~~~~~~~~~~~~~~
// A rule may name the values the definition's body binds with its top-level
// `let`s — `def solve a b = let f = lu a in lu_solve f b with jvp a b da db x
// = lu_solve f (…)` — and reads the value the primal computed, as JAX's
// custom_vjp forward pass hands residuals to its backward pass. The rule's
// own patterns shadow them. Elaboration walks the body's `let` chain itself
// (`Def::residuals`), and the primal lambda returns, after the result's
// leaves, the leaves of each first-order `let` whose names a rule mentions;
// the `Custom` node counts them (`residuals`) and binds them after the
// results, and both rule lambdas take them after the results. Nothing is
// recomputed: the call runs the body once, and the rule reads its values.
//
// At first order nothing else reads a residual. A higher derivative does:
// `hessian` runs forward mode over code in which reverse mode inlined the
// vjp rule, and that code reads the residual. Then, and only then (`Fwd`
// knows what the differentiated body reads), its tangent is forward mode
// through the primal — the body is differentiated, not the rule — and in
// reverse over reverse its adjoint is pulled back through the primal the
// same way (`Rev::rev_custom`, when the residual has an adjoint). So a body
// that forward mode cannot differentiate still has a first-order jvp rule.
