//! The type checker: Hindley–Milner-style unification over [`Type`], with
//! size variables for array dimensions.
//!
//! Input: the parsed modules of a program, in dependency order. Output: the
//! same definitions with every expression's `ty` filled in, plus a table of
//! definitions ([`DefInfo`]). Definitions are checked in order and may only use
//! earlier ones, so recursion is impossible by construction (it is reported as
//! `E0113`). Numeric literals have kinded type variables that default to `i64`
//! and `f64`. Lambda arguments are checked after the other arguments of a
//! call, so that `map (\p -> p.x) ps` knows the type of `p`.
//!
//! Sizes: a definition's size parameters are rigid ([`Dim::Named`]) in its
//! body and instantiated with fresh [`Dim::Var`]s at each use. Two different
//! known sizes are a static error (`E0109`); sizes unknown statically
//! ([`Dim::Any`]) are checked at run time by the elaborated code.

use super::builtins;
use super::{Dim, ScalarType, Type, VarKind};
use crate::diagnostic::{Code, Diagnostic, FileId, Span};
use crate::hash::HashMap;
use crate::syntax::ast::*;
use std::ops::Deref;
use std::rc::Rc;

/// What the rest of the compiler needs to know about a checked definition.
#[derive(Clone, Debug)]
pub struct DefInfo {
    /// Curried type with the size parameters as [`Dim::Named`].
    pub ty: Type,
    pub size_params: Vec<String>,
    pub param_types: Vec<Type>,
    pub ret: Type,
    pub is_entry: bool,
    pub span: Span,
    /// Index into [`CheckedProgram::defs`].
    pub index: usize,
    /// The definitions its body sees: those with an index below this (its
    /// own index; for an instance, the definitions before its generic
    /// definition, Note [Type parameters]).
    pub scope: usize,
}

#[derive(Clone, Debug, Default)]
pub struct CheckedProgram {
    /// Every definition that code can call, instances of generic ones
    /// included (named `first<f64>`); generic definitions are not here.
    pub defs: Vec<Def>,
    pub infos: HashMap<String, DefInfo>,
    /// Definitions with type parameters, by name (Note [Type parameters]).
    pub generics: HashMap<String, Generic>,
    /// Type aliases, already expanded (they may only use earlier aliases).
    pub aliases: HashMap<String, Alias>,
}

/// A type alias: its parameters and its body, aliases in it expanded.
#[derive(Clone, Debug)]
pub struct Alias {
    pub params: Vec<AliasParam>,
    pub ty: TypeExpr,
}

/// A definition with type parameters, checked generically: its type scheme
/// and the definition as written, which each instance checks again.
#[derive(Clone, Debug)]
pub struct Generic {
    /// As parsed: what [`check_program`] instantiates (each instance's check
    /// expands aliases itself).
    pub def: Def,
    /// The type scheme: [`Type::Param`] for each type parameter.
    pub info: DefInfo,
    /// What each type parameter may become (in `def.type_params` order):
    /// `Num` or `Float` when the body does arithmetic on it.
    pub kinds: Vec<VarKind>,
    /// How many definitions (of [`CheckedProgram::defs`]) and generic
    /// definitions came before it: what its instances' bodies may see.
    pub defs_before: usize,
    pub seq: usize,
}

impl Generic {
    /// Each type parameter's name and what it may become.
    pub fn params(&self) -> impl Iterator<Item = (&str, VarKind)> + '_ {
        self.def.type_params.iter().map(|t| t.text.as_str()).zip(self.kinds.iter().copied())
    }
}

/// An instance of a generic definition that checked code uses.
struct Request {
    generic: String,
    args: Vec<Type>,
    name: String,
    /// The use that asked for it.
    span: Span,
}

/*
Note [Type parameters]
~~~~~~~~~~~~~~~~~~~~~~
`def first [n] 't (xs: [n]t) : t = xs[0]` is checked twice over:

- Once generically, when it is defined: each type parameter is a fresh type
  variable, and the body must leave it a variable — a body that needs `t` to
  be `f64` is E0123 — and must not make two parameters one. What the body
  does to it is its *kind*: arithmetic makes it numeric, a float literal a
  float, so `def sq 'a (x: a) : a = x * x` accepts `f32`, `f64` and `i64`,
  and `sq true` is a type error at the call. The definition's type scheme has
  `Type::Param` where the parameters are.
- Once per instance: a use instantiates the scheme with fresh variables (as
  for size parameters); when the using definition's types are final, each
  use becomes a reference to the instance (`first<f64>`), which is the
  definition checked again with `t = f64` like any other. Elaboration,
  which inlines every call and takes scalar types from the checked
  expressions, only ever sees instances, so nothing after the checker knows
  about polymorphism. Sizes inside a type argument are erased (`[]f64`): the
  instance is checked with the caller's size names out of scope, and
  elaboration checks sizes at run time where types no longer prove them.

An error that only an instance reveals (rare: the generic check has seen the
whole body) is reported with the instantiation. Instances are added before
the definition that uses them, and an instance's body sees only the
definitions its generic definition saw (`DefInfo::scope`, `Generic::seq`):
a program's `def sqrt` after `import "linalg"` must not change the `sqrt` in
`norm`'s body. For the same reason a type parameter used as a conversion
(`t n`) becomes `%f64`, the builtin itself, a name no definition can take.
*/

impl CheckedProgram {
    pub fn def(&self, name: &str) -> Option<(&Def, &DefInfo)> {
        let info = self.infos.get(name)?;
        Some((&self.defs[info.index], info))
    }
    pub fn entries(&self) -> impl Iterator<Item = &Def> {
        self.defs.iter().filter(|d| d.is_entry)
    }
}

/// Checks definitions in order. Returns every definition's first error.
pub fn check_program(modules: Vec<Module>) -> Result<CheckedProgram, Vec<Diagnostic>> {
    let mut program = CheckedProgram::default();
    let mut diags = Vec::new();
    // Definitions that failed to check: later uses are not reported again.
    let mut failed: Vec<String> = Vec::new();
    for module in modules {
        for item in module.items {
            let def = match item {
                Item::Def(def) => def,
                Item::TypeAlias { name, params, ty, span } => {
                    if program.aliases.contains_key(&name.text) || ScalarType::from_name(&name.text).is_some() {
                        diags.push(Diagnostic::error(
                            Code::E0006,
                            format!("type `{}` is defined twice", name.text),
                            name.span,
                            "second definition",
                        ));
                        continue;
                    }
                    let mut seen: HashMap<&str, Span> = HashMap::default();
                    let duplicate = params.iter().find_map(|p| {
                        let (AliasParam::Size(n) | AliasParam::Type(n)) = p;
                        seen.insert(&n.text, n.span).map(|prev| dup_error(&n.text, n.span, prev))
                    });
                    if let Some(d) = duplicate {
                        diags.push(d);
                        continue;
                    }
                    let is_param =
                        |name: &str| params.iter().any(|p| matches!(p, AliasParam::Type(n) if n.text == name));
                    match expand_aliases(&ty, &program.aliases, &is_param) {
                        Ok(expanded) => {
                            program.aliases.insert(name.text.clone(), Alias { params, ty: expanded });
                        }
                        Err(d) => diags.push(d.with_secondary(span, "in this type definition")),
                    }
                    continue;
                }
                Item::Import { .. } => continue,
            };
            let generic_info = program.generics.get(&def.name.text).map(|g| &g.info);
            if let Some(prev) = program.infos.get(&def.name.text).or(generic_info) {
                // Entries and definitions share one namespace (an entry is
                // also a function other code may call); callers such as
                // GradBench fix entry names, so the definition is the one to rename.
                let help = if prev.is_entry != def.is_entry {
                    format!(
                        "entries and definitions share one namespace; keep the entry's name (callers use it) \
                         and rename the definition, e.g. `def {0}_of …`, calling it from `entry {0}`",
                        def.name.text
                    )
                } else {
                    "rename one of them".to_string()
                };
                diags.push(
                    Diagnostic::error(
                        Code::E0006,
                        format!("`{}` is defined twice", def.name.text),
                        def.name.span,
                        "second definition",
                    )
                    .with_secondary(prev.span, "first defined here")
                    .with_help(help),
                );
                continue;
            }
            let name = def.name.text.clone();
            let mut checker = Checker::new(&program);
            checker.failed = &failed;
            if !def.type_params.is_empty() {
                match checker.check_generic(def) {
                    Ok(generic) => {
                        program.generics.insert(name, generic);
                    }
                    Err(d) => {
                        diags.push(d);
                        failed.push(name);
                    }
                }
                continue;
            }
            let checked = checker.check_def(def).map(|(def, info)| (def, info, std::mem::take(&mut checker.requests)));
            let checked = checked.and_then(|(def, info, requests)| {
                requests.into_iter().try_for_each(|r| instantiate(&mut program, r, &failed))?;
                Ok((def, info))
            });
            match checked {
                Ok((def, info)) => add_def(&mut program, def, info),
                Err(d) => {
                    if !d.message.ends_with(CASCADE) {
                        diags.push(d);
                    }
                    failed.push(name);
                }
            }
        }
    }
    if diags.is_empty() {
        Ok(program)
    } else {
        Err(diags)
    }
}

/// Adds a checked definition to the program.
/// E0125: `checkpoint` must be applied to a segment length and a `loop`
/// written in place (elaboration rewrites that loop, ad/checkpoint.rs).
fn not_a_checkpointed_loop(span: Span, label: &str) -> Diagnostic {
    Diagnostic::error(Code::E0125, "`checkpoint` applies to a loop written in place", span, label)
        .with_help("write `checkpoint k (loop x = init for i < n do …)` (or a `while` loop)")
}

fn add_def(program: &mut CheckedProgram, def: Def, mut info: DefInfo) {
    info.index = program.defs.len();
    info.scope = info.index;
    program.infos.insert(def.name.text.clone(), info);
    program.defs.push(def);
}

/// Adds the instance `request` asks for, and first the instances it needs
/// itself (Note [Type parameters]); nothing when it exists already.
fn instantiate(program: &mut CheckedProgram, request: Request, failed: &[String]) -> R<()> {
    if program.infos.contains_key(&request.name) {
        return Ok(());
    }
    let generic = &program.generics[&request.generic];
    let mut def = generic.def.clone();
    let bindings: Vec<String> =
        def.type_params.iter().zip(&request.args).map(|(t, a)| format!("'{} = {a}", t.text)).collect();
    let context = |d: Diagnostic| {
        d.with_secondary(request.span, "instantiated here").with_note(format!(
            "in `{}` with {}",
            request.generic,
            bindings.join(", ")
        ))
    };
    let scope = (generic.defs_before, generic.seq);
    let mut checker = Checker::new(program);
    checker.failed = failed;
    checker.scope = Some(scope);
    checker.type_params = def.type_params.iter().map(|t| t.text.clone()).zip(request.args.iter().cloned()).collect();
    def.name.text = request.name.clone();
    def.type_params.clear();
    let (def, info) = checker.check_def(def).map_err(context)?;
    let needed = std::mem::take(&mut checker.requests);
    for r in needed {
        instantiate(program, r, failed)?;
    }
    add_def(program, def, info);
    program.infos.get_mut(&request.name).expect("just added").scope = scope.0;
    Ok(())
}

/// Checks one expression against the definitions of a program (REPL,
/// tests). The program comes back with the instances of generic
/// definitions the expression uses added, when it uses any.
pub fn check_expr<'p>(
    program: &'p CheckedProgram,
    expr: &mut Expr,
) -> Result<std::borrow::Cow<'p, CheckedProgram>, Diagnostic> {
    let mut checker = Checker::new(program);
    checker.infer(expr)?;
    checker.settle_deferred()?;
    checker.finish(expr)?;
    let requests = std::mem::take(&mut checker.requests);
    if requests.is_empty() {
        return Ok(std::borrow::Cow::Borrowed(program));
    }
    let mut extended = program.clone();
    for r in requests {
        instantiate(&mut extended, r, &[])?;
    }
    Ok(std::borrow::Cow::Owned(extended))
}

/// Marks an error caused by an earlier, already reported one.
const CASCADE: &str = "(reported above)";

struct Checker<'p> {
    program: &'p CheckedProgram,
    failed: &'p [String],
    /// Type variables: the solution (shared, so resolving a variable costs
    /// no copy of a large type) and the kind.
    vars: Vec<(Option<Rc<Type>>, VarKind)>,
    dims: Vec<Option<Dim>>,
    locals: Scope,
    size_params: Vec<String>,
    current: Option<String>,
    /// Each use of `jacfwd`, `jacrev` or `hessian` in the code being checked:
    /// its instantiated type and span (Note [Jacobians as values]).
    jacobians: Vec<(&'static str, Type, Span)>,
    /// The span of the callee of the `checkpoint k (loop …)` being checked:
    /// `checkpoint` anywhere else is E0125.
    checkpoint_callee: Option<Span>,
    /// Each AD operator applied in the code being checked: its name, the
    /// differentiated function's type and span, checked again once literals
    /// have their final types (Note [Differentiated types after defaults]).
    differentiated: Vec<(String, Type, Span)>,
    /// What each type parameter of the definition being checked stands for:
    /// a type variable (generic check) or a type (an instance).
    type_params: HashMap<String, Type>,
    /// Uses of generic definitions, by the span of the name: the generic and
    /// the variables its type parameters were instantiated with.
    generic_uses: HashMap<Span, (String, Vec<Type>)>,
    /// The instances the checked code needs (filled by `finish`).
    requests: Vec<Request>,
    /// When checking an instance: the number of definitions and of generic
    /// definitions before its generic one, the only ones its body may name
    /// (a later `def sqrt` must not capture the `sqrt` of a stdlib body).
    scope: Option<(usize, usize)>,
    /// Uses of a type parameter as a conversion (`a n`), by span: `finish`
    /// names the builtin conversion to the parameter's type (`%f64 n`, a
    /// name no definition can shadow).
    conversions: Vec<Span>,
    /// Each use of a `tree_…` builtin: its tree type `A`, number type `F`
    /// (none for `tree_size`, which takes numbers of any types) and span
    /// (Note [Trees]).
    trees: Vec<(Type, Option<Type>, Span)>,
}

type R<T> = Result<T, Diagnostic>;

// Note [Differentiated types after defaults]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// An AD operator needs a function whose input and output are made of floats
// (E0116). Where the operator is applied, an integer literal in the
// function's output may still have an open type — `3` in
// `jvp (\y -> (y * y, 3)) x 1.0` is "some number" until the context decides
// — so the check there passes. If nothing makes the literal a float, it
// becomes `i64`, exactly like `3i64`, which the check rejects. So every
// applied operator is checked again after the definition's types are final:
// an untyped literal is judged by the type it ends up with, the same
// everywhere (a result annotated `(f64, f64)` makes the `3` a float, and the
// program is accepted).

// Note [Jacobians as values]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~
// The type of a Jacobian depends on the function's input and output types
// (`jacobian_type`), which a type scheme cannot say: the builtins' schemes
// leave the result open (`(A -> B) -> A -> R`). When `jacfwd f x` is applied
// directly, `builtin_result` fixes `R` at once. But the operator can also be
// passed around as a value or partially applied (`(\j -> j) jacfwd f x`,
// `let d = jacrev f in d x`), and then `R` would be whatever the context
// wants — a function, say, which elaboration cannot build. So every use is
// recorded, and before the definition's types are final `settle_jacobians`
// unifies each `R` with the Jacobian of its `A` and `B`: a context that wants
// something else gets a type mismatch (E0102) at the operator.

impl<'p> Checker<'p> {
    fn new(program: &'p CheckedProgram) -> Checker<'p> {
        Checker {
            program,
            failed: &[],
            vars: Vec::new(),
            dims: Vec::new(),
            locals: Scope::default(),
            size_params: Vec::new(),
            current: None,
            jacobians: Vec::new(),
            checkpoint_callee: None,
            differentiated: Vec::new(),
            type_params: HashMap::default(),
            generic_uses: HashMap::default(),
            requests: Vec::new(),
            conversions: Vec::new(),
            trees: Vec::new(),
            scope: None,
        }
    }

    /// The checks that wait for a definition's types: the `tree_…`
    /// builtins' number types (Note [Trees]) and the Jacobians' result types.
    fn settle_deferred(&mut self) -> R<()> {
        self.settle_trees()?;
        self.settle_jacobians()
    }

    /// Unifies the result type of each recorded use of a Jacobian operator
    /// with the Jacobian of its function's types (Note [Jacobians as values]).
    fn settle_jacobians(&mut self) -> R<()> {
        for (name, ty, span) in std::mem::take(&mut self.jacobians) {
            let Type::Func(f, rest) = ty else { continue };
            let (Type::Func(input, output), Type::Func(_, result)) = (*f, *rest) else { continue };
            let (input, output) = (self.show(&input), self.show(&output));
            let jac = if name == "hessian" { jacobian_type(&input, &input) } else { jacobian_type(&output, &input) };
            self.unify(&result, &jac).map_err(|err| self.mismatch(err, &jac, &result, span, "the jacobian"))?;
        }
        Ok(())
    }

    /// Every number of each tree a `tree_…` builtin was used on must have the
    /// builtin's number type (Note [Trees]); a tree whose type is still a
    /// variable (a generic definition's parameter) is checked per instance.
    fn settle_trees(&mut self) -> R<()> {
        for (tree, number, span) in std::mem::take(&mut self.trees) {
            let tree = self.show(&tree);
            let mut scalars = Vec::new();
            let mut function = false;
            walk_leaf_types(&tree, &mut |t| match t {
                Type::Scalar(s) => scalars.push(*s),
                Type::Func(..) => function = true,
                _ => {}
            });
            if function {
                return Err(Diagnostic::error(
                    Code::E0112,
                    format!("a tree holds numbers, not functions: this one has type {tree}"),
                    span,
                    "used on this tree",
                ));
            }
            let Some(number) = number else { continue };
            for s in scalars {
                self.unify(&Type::Scalar(s), &number).map_err(|_| {
                    Diagnostic::error(
                        Code::E0102,
                        format!(
                            "type mismatch: the numbers of this tree must all be one float type, found `{}`",
                            s.name()
                        ),
                        span,
                        format!("used on a tree of type {tree}"),
                    )
                    .with_help(
                        "keep integer data out of the tree (pass it separately), and use one precision throughout",
                    )
                })?;
            }
        }
        Ok(())
    }

    fn fresh(&mut self, kind: VarKind) -> Type {
        self.vars.push((None, kind));
        Type::Var(self.vars.len() as u32 - 1)
    }

    fn fresh_dim(&mut self) -> Dim {
        self.dims.push(None);
        Dim::Var(self.dims.len() as u32 - 1)
    }

    // ---- Definitions ----

    fn check_def(&mut self, mut def: Def) -> R<(Def, DefInfo)> {
        let (param_types, body_ty) = self.check_body(&mut def)?;
        let ret = self.zonk(&body_ty, def.body.span)?;
        self.finish(&mut def.body)?;
        self.check_differentiated_again()?;
        let param_types: Vec<Type> = param_types.iter().map(|t| self.zonk(t, def.name.span)).collect::<R<_>>()?;
        // The body's top-level `let`s of first-order values, which the rules
        // may name (Note [Named residuals] in elab/mod.rs).
        let residuals: Vec<(Pat, Type)> = def
            .residuals()
            .0
            .into_iter()
            .filter(|(_, value)| value.ty.is_first_order())
            .map(|(pat, value)| (pat.clone(), value.ty.clone()))
            .collect();
        for k in 0..def.rules.len() {
            if let Some(first) = def.rules[..k].iter().find(|r| r.kind == def.rules[k].kind) {
                let rule = &def.rules[k];
                return Err(Diagnostic::error(
                    Code::E0119,
                    format!("`{}` has two {} rules", def.name.text, rule.kind.keyword()),
                    rule.span,
                    "the second",
                )
                .with_secondary(first.span, "the first"));
            }
            self.check_rule(&mut def.rules[k], &param_types, &ret, &residuals)?;
        }
        if def.is_entry {
            for (p, t) in def.params.iter().zip(&param_types) {
                if !t.is_first_order() {
                    return Err(Diagnostic::error(
                        Code::E0114,
                        "an entry point cannot take a function",
                        p.span,
                        format!("this parameter has type {t}"),
                    )
                    .with_help("entry points are called with data; make this a `def` and call it from an entry"));
                }
            }
            if !ret.is_first_order() {
                return Err(Diagnostic::error(
                    Code::E0114,
                    "an entry point cannot return a function",
                    def.name.span,
                    format!("returns {ret}"),
                ));
            }
        }
        let ty = Type::func(param_types.clone(), ret.clone());
        let info = DefInfo {
            ty,
            size_params: self.size_params.clone(),
            param_types,
            ret,
            is_entry: def.is_entry,
            span: def.name.span,
            index: 0,
            scope: 0,
        };
        Ok((def, info))
    }

    /// Checks a definition with type parameters generically (Note [Type
    /// parameters]): its scheme, and the kind of each parameter.
    fn check_generic(&mut self, def: Def) -> R<Generic> {
        let written = def.clone();
        let mut def = def;
        if def.is_entry {
            return Err(Diagnostic::error(
                Code::E0123,
                "an entry point cannot have type parameters",
                def.type_params[0].span,
                "type parameter",
            )
            .with_help("callers pass data of one type: make this a `def` and call it from an entry for each type"));
        }
        let mut seen: HashMap<&str, Span> = HashMap::default();
        let mut vars = Vec::new();
        for t in &def.type_params {
            if let Some(prev) = seen.insert(&t.text, t.span) {
                return Err(dup_error(&t.text, t.span, prev));
            }
            if ScalarType::from_name(&t.text).is_some() || self.program.aliases.contains_key(&t.text) {
                return Err(Diagnostic::error(
                    Code::E0123,
                    format!("type parameter `'{}` is named like the type `{}`", t.text, t.text),
                    t.span,
                    "shadows a type",
                )
                .with_help("choose another name, e.g. `'t` or `'a`"));
            }
            let v = self.fresh(VarKind::Any);
            self.type_params.insert(t.text.clone(), v.clone());
            vars.push(v);
        }
        let (param_types, body_ty) = self.check_body(&mut def)?;
        // Each parameter must still be a variable of its own.
        let mut finals: Vec<(u32, String)> = Vec::new();
        let mut kinds = Vec::new();
        for (t, v) in def.type_params.iter().zip(&vars) {
            match self.shallow(v) {
                Type::Var(x) => {
                    if let Some((_, other)) = finals.iter().find(|(y, _)| *y == x) {
                        return Err(Diagnostic::error(
                            Code::E0123,
                            format!("the body makes type parameters `'{other}` and `'{}` the same type", t.text),
                            def.name.span,
                            "in this definition",
                        )
                        .with_help(format!(
                            "use one parameter for both, or keep values of `{other}` and `{}` apart",
                            t.text
                        )));
                    }
                    finals.push((x, t.text.clone()));
                    kinds.push(self.vars[x as usize].1);
                }
                other => {
                    return Err(Diagnostic::error(
                        Code::E0123,
                        format!("the body of `{}` needs `'{}` to be `{}`", def.name.text, t.text, self.show(&other)),
                        t.span,
                        "not general",
                    )
                    .with_help(format!(
                        "write `{}` instead of `{}`, or remove the parameter",
                        self.show(&other),
                        t.text
                    )))
                }
            }
        }
        let general = |c: &Self, t: &Type| -> R<Type> { c.generalise(t, &finals, def.name.span) };
        let param_types: Vec<Type> = param_types.iter().map(|t| general(self, t)).collect::<R<_>>()?;
        let ret = general(self, &body_ty)?;
        let info = DefInfo {
            ty: Type::func(param_types.clone(), ret.clone()),
            size_params: self.size_params.clone(),
            param_types,
            ret,
            is_entry: false,
            span: def.name.span,
            index: 0,
            scope: 0,
        };
        let (defs_before, seq) = (self.program.defs.len(), self.program.generics.len());
        Ok(Generic { def: written, info, kinds, defs_before, seq })
    }

    /// A type of a generic definition's signature as a scheme: its
    /// parameters' variables become [`Type::Param`]; other open literals
    /// take their defaults.
    fn generalise(&self, t: &Type, params: &[(u32, String)], span: Span) -> R<Type> {
        let t = self.show(t);
        let mut out = Ok(());
        let scheme = map_type(&t, &mut |t| match t {
            Type::Var(v) => Some(match params.iter().find(|(x, _)| *x == self.shallow_var(*v)) {
                Some((_, name)) => Type::Param(name.clone()),
                None => match self.vars[*v as usize].1 {
                    VarKind::Num => Type::I64,
                    VarKind::Float => Type::F64,
                    VarKind::Any => {
                        out = Err(Diagnostic::error(
                            Code::E0111,
                            "cannot infer a type in this definition's signature",
                            span,
                            "type unknown",
                        )
                        .with_help("annotate the result type"));
                        Type::Unknown
                    }
                },
            }),
            _ => None,
        });
        out.map(|()| scheme)
    }

    /// The variable a variable is solved to, following variable-to-variable solutions.
    fn shallow_var(&self, v: u32) -> u32 {
        match self.shallow(&Type::Var(v)) {
            Type::Var(w) => w,
            _ => v,
        }
    }

    /// The part of checking a definition that generic and ordinary ones
    /// share: the signature, the body, and the body's type against the
    /// declared result. Returns the parameter types and the body's type.
    fn check_body(&mut self, def: &mut Def) -> R<(Vec<Type>, Type)> {
        // Type parameters stay names (resolved through `type_params`).
        let keep = |name: &str| self.type_params.contains_key(name);
        let aliases = &self.program.aliases;
        for p in &mut def.params {
            p.ty = expand_aliases(&p.ty, aliases, &keep)?;
        }
        if let Some(ret) = &def.ret {
            def.ret = Some(expand_aliases(ret, aliases, &keep)?);
        }
        self.current = Some(def.name.text.clone());
        self.size_params = def.size_params.iter().map(|n| n.text.clone()).collect();
        let mut seen: HashMap<&str, Span> = HashMap::default();
        for n in &def.size_params {
            if let Some(prev) = seen.insert(&n.text, n.span) {
                return Err(dup_error(&n.text, n.span, prev));
            }
        }
        // Size names used in parameter types are bound implicitly.
        for p in &def.params {
            collect_dim_names(&p.ty, &mut self.size_params);
        }
        let mut param_types = Vec::new();
        for p in &def.params {
            let ty = self.resolve_type_expr(&p.ty, false)?;
            param_types.push(ty);
        }
        self.check_sizes_determined(&def, &param_types)?;
        let mut bound: HashMap<String, Span> = HashMap::default();
        for (p, ty) in def.params.iter().zip(&param_types) {
            self.bind_pat(&p.pat, ty.clone(), &mut bound)?;
        }
        let declared_ret = match &def.ret {
            Some(t) => Some(self.resolve_type_expr(t, false)?),
            None => None,
        };
        let body_ty = self.infer(&mut def.body)?;
        if let Some(ret) = &declared_ret {
            self.unify(&body_ty, ret).map_err(|e| self.mismatch(e, ret, &body_ty, def.body.span, "the body"))?;
        }
        self.settle_deferred()?;
        Ok((param_types, body_ty))
    }

    /// Checks a custom derivative rule against the definition's parameter
    /// and result types: a jvp rule binds the parameters, their tangents and
    /// optionally the result, and gives the result's tangent; a vjp rule
    /// binds the parameters, the result and its cotangent, and gives the
    /// parameters' cotangents (a tuple when there are several). A parameter
    /// of function type is static (Note [Static parameters of rules] in
    /// elab/mod.rs): the rule binds it, but it has no tangent or cotangent.
    fn check_rule(&mut self, rule: &mut Rule, params: &[Type], ret: &Type, residuals: &[(Pat, Type)]) -> R<()> {
        let dynamic: Vec<Type> = params.iter().filter(|t| !t.is_static_in_rules()).cloned().collect();
        let (k, d, n) = (params.len(), dynamic.len(), rule.pats.len());
        // The types the patterns bind, and the type the body gives.
        let (bound, out) = match rule.kind {
            RuleKind::Jvp if n == k + d || n == k + d + 1 => {
                let mut bound: Vec<Type> = params.iter().chain(&dynamic).cloned().collect();
                bound.extend(std::iter::repeat_n(ret.clone(), n - k - d));
                (bound, ret.clone())
            }
            RuleKind::Vjp if n == k + 2 => {
                let bound = params.iter().chain([ret, ret]).cloned().collect();
                (bound, if d == 1 { dynamic[0].clone() } else { Type::Tuple(dynamic) })
            }
            RuleKind::Jvp => return Err(rule_shape_error(
                rule,
                "a jvp rule binds each parameter, then the tangent of each parameter that is not a function, then (optionally) the result",
                format!("{} or {}", k + d, k + d + 1),
                "write `with jvp x y x_tan y_tan = …` for a function of x and y, or `with jvp x y x_tan y_tan r = …` to use its result r",
            )),
            RuleKind::Vjp => return Err(rule_shape_error(
                rule,
                "a vjp rule binds each parameter, then the result, then the result's cotangent",
                format!("{}", k + 2),
                "write `with vjp x y r r_bar = (x_bar, y_bar)` for a function of x and y with result r",
            )),
        };
        self.locals.clear();
        // Residuals first, so that the rule's own patterns shadow them.
        for (pat, ty) in residuals {
            self.bind_pat(pat, ty.clone(), &mut HashMap::default())?;
        }
        let mut names = HashMap::default();
        for (pat, ty) in rule.pats.iter().zip(bound) {
            self.bind_pat(pat, ty, &mut names)?;
        }
        let ty = self.infer(&mut rule.body)?;
        let what = match rule.kind {
            RuleKind::Jvp => "the tangent of the result",
            RuleKind::Vjp => "the cotangents of the parameters",
        };
        self.unify(&ty, &out).map_err(|e| self.mismatch(e, &out, &ty, rule.body.span, what))?;
        self.settle_deferred()?;
        self.finish(&mut rule.body)
    }

    /// Resolves all type variables of an expression tree, applying defaults.
    fn finish(&mut self, expr: &mut Expr) -> R<()> {
        // Children first, so that an unknown type is reported at the innermost
        // expression that has it (`[]` rather than the `length` applied to it).
        let mut result = Ok(());
        for_each_child(expr, &mut |child| {
            if result.is_ok() {
                result = self.finish(child);
            }
        });
        result?;
        let ty = std::mem::replace(&mut expr.ty, Type::Unknown);
        expr.ty = self.zonk(&ty, expr.span)?;
        if matches!(expr.kind, ExprKind::Var(_)) && self.conversions.contains(&expr.span) {
            if let Type::Func(_, to) = &expr.ty {
                if let Type::Scalar(s) = **to {
                    // `%f64`: the builtin, even where a definition is named `f64`.
                    expr.kind = ExprKind::Var(format!("%{}", s.name()));
                }
            }
        }
        if matches!(expr.kind, ExprKind::Var(_)) {
            if let Some((generic, vars)) = self.generic_uses.remove(&expr.span) {
                let args: Vec<Type> =
                    vars.iter().map(|v| self.zonk(v, expr.span).map(|t| erase_sizes(&t))).collect::<R<_>>()?;
                let name = instance_name(&generic, &args);
                self.requests.push(Request { generic, args, name: name.clone(), span: expr.span });
                expr.kind = ExprKind::Var(name);
            }
        }
        Ok(())
    }

    // ---- Types from annotations ----

    fn resolve_type_expr(&mut self, t: &TypeExpr, allow_new_sizes: bool) -> R<Type> {
        Ok(match t {
            TypeExpr::Named(n) if self.type_params.contains_key(&n.text) => self.type_params[&n.text].clone(),
            TypeExpr::App(..) => {
                let keep = |name: &str| self.type_params.contains_key(name);
                let expanded = expand_aliases(t, &self.program.aliases, &keep)?;
                return self.resolve_type_expr(&expanded, allow_new_sizes);
            }
            TypeExpr::Named(n) => match ScalarType::from_name(&n.text) {
                Some(s) => Type::Scalar(s),
                None if self.program.aliases.contains_key(&n.text) => {
                    let keep = |name: &str| self.type_params.contains_key(name);
                    let alias = expand_aliases(t, &self.program.aliases, &keep)?;
                    return self.resolve_type_expr(&alias, allow_new_sizes);
                }
                None => {
                    return Err(Diagnostic::error(
                        Code::E0120,
                        format!("unknown type `{}`", n.text),
                        n.span,
                        "not a type",
                    )
                    .with_help("the scalar types are f64, f32, i64 and bool"))
                }
            },
            TypeExpr::Array { dim, elem, .. } => {
                let d = match dim {
                    DimExpr::Const(k, _) => Dim::Const(*k),
                    DimExpr::Any(_) => Dim::Any,
                    DimExpr::Name(n) => {
                        if self.size_params.contains(&n.text) || allow_new_sizes {
                            Dim::Named(n.text.clone())
                        } else {
                            return Err(Diagnostic::error(
                                Code::E0115,
                                format!("unknown size `{}`", n.text),
                                n.span,
                                "not a size in scope",
                            )
                            .with_help("sizes are bound by `[n]` after the function name or by the parameter types"));
                        }
                    }
                };
                Type::array(self.resolve_type_expr(elem, allow_new_sizes)?, d)
            }
            TypeExpr::Tuple(ts, _) => {
                Type::Tuple(ts.iter().map(|t| self.resolve_type_expr(t, allow_new_sizes)).collect::<R<_>>()?)
            }
            TypeExpr::Record(fs, span) => {
                let mut fields = Vec::new();
                for (n, t) in fs {
                    if fields.iter().any(|(m, _): &(String, Type)| *m == n.text) {
                        return Err(dup_error(&n.text, n.span, *span));
                    }
                    fields.push((n.text.clone(), self.resolve_type_expr(t, allow_new_sizes)?));
                }
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                Type::Record(fields)
            }
            TypeExpr::Func(a, b, _) => Type::Func(
                Box::new(self.resolve_type_expr(a, allow_new_sizes)?),
                Box::new(self.resolve_type_expr(b, allow_new_sizes)?),
            ),
        })
    }

    fn scheme_type(
        &mut self,
        t: &TypeExpr,
        tvars: &mut HashMap<String, Type>,
        dvars: &mut HashMap<String, Dim>,
    ) -> Type {
        match t {
            TypeExpr::Named(n) => {
                if let Some(s) = ScalarType::from_name(&n.text) {
                    return Type::Scalar(s);
                }
                if let Some(t) = tvars.get(&n.text) {
                    return t.clone();
                }
                let kind = match n.text.as_str() {
                    "T" => VarKind::Num,
                    "F" => VarKind::Float,
                    _ => VarKind::Any,
                };
                let v = self.fresh(kind);
                tvars.insert(n.text.clone(), v.clone());
                v
            }
            TypeExpr::Array { dim, elem, .. } => {
                let d = match dim {
                    DimExpr::Name(n) => match dvars.get(&n.text) {
                        Some(d) => d.clone(),
                        None => {
                            let d = self.fresh_dim();
                            dvars.insert(n.text.clone(), d.clone());
                            d
                        }
                    },
                    DimExpr::Const(k, _) => Dim::Const(*k),
                    DimExpr::Any(_) => Dim::Any,
                };
                Type::array(self.scheme_type(elem, tvars, dvars), d)
            }
            TypeExpr::Tuple(ts, _) => Type::Tuple(ts.iter().map(|t| self.scheme_type(t, tvars, dvars)).collect()),
            TypeExpr::Record(..) | TypeExpr::App(..) => unreachable!("builtin schemes have no records or aliases"),
            TypeExpr::Func(a, b, _) => {
                Type::Func(Box::new(self.scheme_type(a, tvars, dvars)), Box::new(self.scheme_type(b, tvars, dvars)))
            }
        }
    }

    /// Every size parameter, declared or implicit, must be the size of an
    /// array in some parameter's data, so that each call determines it
    /// (elaboration binds sizes from the arguments' shapes, never from the
    /// expected result): `def g [n] (x: f64) : [n]f64` and a size that only a
    /// function-typed parameter mentions are errors here, not in elaboration.
    fn check_sizes_determined(&self, def: &Def, param_types: &[Type]) -> R<()> {
        let mut determined = Vec::new();
        param_types.iter().for_each(|t| data_dim_names(t, &mut determined));
        let Some(name) = self.size_params.iter().find(|n| !determined.contains(n)) else { return Ok(()) };
        let declared = def.size_params.iter().find(|n| &n.text == name).map(|n| n.span);
        let mentioning = def.params.iter().find(|p| {
            let mut names = Vec::new();
            collect_dim_names(&p.ty, &mut names);
            names.contains(name)
        });
        let span = declared.or(mentioning.map(|p| p.span)).unwrap_or(def.name.span);
        Err(Diagnostic::error(
            Code::E0115,
            format!("size `{name}` is not determined by the parameters of `{}`", def.name.text),
            span,
            "no array in the parameters' data has this size",
        )
        .with_help(
            "a size parameter must be the length of an array parameter (a size inside a function type does not count); \
             to choose a size at the call, take an `i64` and build the array with `replicate` or `tabulate`",
        ))
    }

    /// A definition's type with its size parameters replaced by fresh size variables.
    fn instantiate_def(&mut self, info: &DefInfo) -> Type {
        let map: HashMap<String, Dim> = info.size_params.iter().map(|p| (p.clone(), self.fresh_dim())).collect();
        subst_named(&info.ty, &map)
    }

    // ---- Unification ----

    /// The type with solved variables at its root followed; a copy.
    fn shallow(&self, t: &Type) -> Type {
        self.resolve(t).clone()
    }

    /// The type with solved variables at its root followed, without copying
    /// it: the given type, or the shared solution of a variable.
    fn resolve<'t>(&self, t: &'t Type) -> Resolved<'t> {
        let mut r = Resolved::Given(t);
        while let Type::Var(v) = &*r {
            match &self.vars[*v as usize].0 {
                Some(b) => r = Resolved::Solved(b.clone()),
                None => break,
            }
        }
        r
    }

    fn shallow_dim(&self, d: &Dim) -> Dim {
        let mut d = d.clone();
        while let Dim::Var(v) = d {
            match &self.dims[v as usize] {
                Some(b) => d = b.clone(),
                None => break,
            }
        }
        d
    }

    fn unify(&mut self, a: &Type, b: &Type) -> Result<(), UnifyError> {
        let a = self.resolve(a);
        let b = self.resolve(b);
        match (&*a, &*b) {
            (Type::Var(x), Type::Var(y)) if x == y => Ok(()),
            (Type::Var(x), b) => self.bind_var(*x, b),
            (a, Type::Var(y)) => self.bind_var(*y, a),
            (Type::Scalar(x), Type::Scalar(y)) if x == y => Ok(()),
            (Type::Array(ea, da), Type::Array(eb, db)) => {
                self.unify_dim(da, db)?;
                self.unify(ea, eb)
            }
            (Type::Tuple(xs), Type::Tuple(ys)) if xs.len() == ys.len() => {
                for (x, y) in xs.iter().zip(ys) {
                    self.unify(x, y)?;
                }
                Ok(())
            }
            (Type::Record(xs), Type::Record(ys))
                if xs.len() == ys.len() && xs.iter().zip(ys).all(|((n, _), (m, _))| n == m) =>
            {
                for ((_, x), (_, y)) in xs.iter().zip(ys) {
                    self.unify(x, y)?;
                }
                Ok(())
            }
            (Type::Func(pa, ra), Type::Func(pb, rb)) => {
                self.unify(pa, pb)?;
                self.unify(ra, rb)
            }
            _ => Err(UnifyError::Types),
        }
    }

    fn bind_var(&mut self, v: u32, t: &Type) -> Result<(), UnifyError> {
        if self.occurs(v, t) {
            return Err(UnifyError::Types);
        }
        let kind = self.vars[v as usize].1;
        if kind != VarKind::Any {
            match t {
                Type::Var(w) => {
                    let wk = &mut self.vars[*w as usize].1;
                    *wk = match (*wk, kind) {
                        (VarKind::Float, _) | (_, VarKind::Float) => VarKind::Float,
                        _ => VarKind::Num,
                    };
                }
                Type::Scalar(s) if kind == VarKind::Num && s.is_numeric() => {}
                Type::Scalar(s) if kind == VarKind::Float && s.is_float() => {}
                _ => return Err(UnifyError::Kind(kind)),
            }
        }
        self.vars[v as usize].0 = Some(Rc::new(t.clone()));
        Ok(())
    }

    fn occurs(&self, v: u32, t: &Type) -> bool {
        match &*self.resolve(t) {
            Type::Var(w) => *w == v,
            Type::Array(e, _) => self.occurs(v, e),
            Type::Tuple(ts) => ts.iter().any(|t| self.occurs(v, t)),
            Type::Record(fs) => fs.iter().any(|(_, t)| self.occurs(v, t)),
            Type::Func(a, b) => self.occurs(v, a) || self.occurs(v, b),
            _ => false,
        }
    }

    fn unify_dim(&mut self, a: &Dim, b: &Dim) -> Result<(), UnifyError> {
        let a = self.shallow_dim(a);
        let b = self.shallow_dim(b);
        match (&a, &b) {
            (Dim::Var(x), Dim::Var(y)) if x == y => Ok(()),
            (Dim::Var(x), _) => {
                self.dims[*x as usize] = Some(b.clone());
                Ok(())
            }
            (_, Dim::Var(y)) => {
                self.dims[*y as usize] = Some(a.clone());
                Ok(())
            }
            (Dim::Any, _) | (_, Dim::Any) => Ok(()),
            (Dim::Const(x), Dim::Const(y)) if x == y => Ok(()),
            (Dim::Named(x), Dim::Named(y)) if x == y => Ok(()),
            _ => Err(UnifyError::Dims(a.clone(), b.clone())),
        }
    }

    /// Requires a type to be numeric (or float), refining a type variable's kind.
    fn require_kind(&mut self, t: &Type, kind: VarKind) -> bool {
        match self.shallow(t) {
            Type::Var(v) => {
                let k = &mut self.vars[v as usize].1;
                *k = match (*k, kind) {
                    (VarKind::Float, _) | (_, VarKind::Float) => VarKind::Float,
                    _ => VarKind::Num,
                };
                true
            }
            Type::Scalar(s) => match kind {
                VarKind::Num => s.is_numeric(),
                VarKind::Float => s.is_float(),
                VarKind::Any => true,
            },
            _ => false,
        }
    }

    /// Substitutes all solved variables; applies literal defaults; fails on unsolved type variables.
    fn zonk(&mut self, t: &Type, span: Span) -> R<Type> {
        let mut unsolved = Vec::new();
        self.unsolved(t, &mut unsolved);
        for v in unsolved {
            let default = match self.vars[v as usize].1 {
                VarKind::Num => Type::I64,
                VarKind::Float => Type::F64,
                VarKind::Any => {
                    return Err(Diagnostic::error(
                        Code::E0111,
                        "cannot infer the type of this expression",
                        span,
                        "type unknown",
                    )
                    .with_help("add a type annotation, e.g. `(e : [3]f64)` or `\\(x: f64) -> …`"))
                }
            };
            self.vars[v as usize].0 = Some(Rc::new(default));
        }
        Ok(self.substitute(t, true))
    }

    /// The unsolved type variables of a type, in order of appearance.
    fn unsolved(&self, t: &Type, out: &mut Vec<u32>) {
        match &*self.resolve(t) {
            Type::Var(v) if !out.contains(v) => out.push(*v),
            Type::Array(e, _) => self.unsolved(e, out),
            Type::Tuple(ts) => ts.iter().for_each(|t| self.unsolved(t, out)),
            Type::Record(fs) => fs.iter().for_each(|(_, t)| self.unsolved(t, out)),
            Type::Func(a, b) => {
                self.unsolved(a, out);
                self.unsolved(b, out)
            }
            _ => {}
        }
    }

    /// The type with every solved variable substituted; unsolved size
    /// variables become `Dim::Any` if `erase_dims`.
    fn substitute(&self, t: &Type, erase_dims: bool) -> Type {
        match &*self.resolve(t) {
            Type::Array(e, d) => {
                let d = match self.shallow_dim(d) {
                    Dim::Var(_) if erase_dims => Dim::Any,
                    d => d,
                };
                Type::array(self.substitute(e, erase_dims), d)
            }
            Type::Tuple(ts) => Type::Tuple(ts.iter().map(|t| self.substitute(t, erase_dims)).collect()),
            Type::Record(fs) => {
                Type::Record(fs.iter().map(|(n, t)| (n.clone(), self.substitute(t, erase_dims))).collect())
            }
            Type::Func(a, b) => {
                Type::Func(Box::new(self.substitute(a, erase_dims)), Box::new(self.substitute(b, erase_dims)))
            }
            t => t.clone(),
        }
    }

    /// A type for messages: solved variables substituted, nothing defaulted.
    fn show(&self, t: &Type) -> Type {
        self.substitute(t, false)
    }

    fn describe(&self, t: &Type) -> String {
        match self.shallow(t) {
            Type::Var(v) => match self.vars[v as usize].1 {
                VarKind::Num => "a number".into(),
                VarKind::Float => "a float".into(),
                VarKind::Any => "an unknown type".into(),
            },
            _ => format!("`{}`", self.show(t)),
        }
    }

    fn mismatch(&self, e: UnifyError, expected: &Type, found: &Type, span: Span, what: &str) -> Diagnostic {
        match e {
            UnifyError::Dims(a, b) => Diagnostic::error(
                Code::E0109,
                format!(
                    "size mismatch: {what} has type {}, expected {}",
                    self.describe(found),
                    self.describe(expected)
                ),
                span,
                format!("sizes `{}` and `{}` differ", show_dim(&a), show_dim(&b)),
            )
            .with_help("if the sizes are equal at run time, coerce with `(e :> [n]f64)`"),
            UnifyError::Kind(k) => Diagnostic::error(
                Code::E0102,
                format!(
                    "type mismatch: {what} has type {}, expected {}",
                    self.describe(found),
                    self.describe(expected)
                ),
                span,
                match k {
                    VarKind::Float => "a float is needed here".to_string(),
                    _ => "a number is needed here".to_string(),
                },
            ),
            UnifyError::Types => Diagnostic::error(
                Code::E0102,
                format!("type mismatch: expected {}, found {}", self.describe(expected), self.describe(found)),
                span,
                format!("{what} has type {}", self.describe(found)),
            ),
        }
    }

    // ---- Patterns ----

    fn bind_pat(&mut self, pat: &Pat, ty: Type, bound: &mut HashMap<String, Span>) -> R<()> {
        match pat {
            Pat::Var(n) => {
                if let Some(prev) = bound.insert(n.text.clone(), n.span) {
                    return Err(dup_error(&n.text, n.span, prev));
                }
                self.locals.push(n.text.clone(), ty);
                Ok(())
            }
            Pat::Wildcard(_) => Ok(()),
            Pat::Typed(p, t, span) => {
                let ann = self.resolve_type_expr(t, false)?;
                self.unify(&ty, &ann).map_err(|e| self.mismatch(e, &ann, &ty, *span, "the value"))?;
                self.bind_pat(p, ann, bound)
            }
            Pat::Tuple(ps, span) => {
                let elems = match self.shallow(&ty) {
                    Type::Tuple(ts) if ts.len() == ps.len() => ts,
                    Type::Var(_) => {
                        let ts: Vec<Type> = ps.iter().map(|_| self.fresh(VarKind::Any)).collect();
                        let tuple = Type::Tuple(ts.clone());
                        self.unify(&ty, &tuple).map_err(|e| self.mismatch(e, &tuple, &ty, *span, "the value"))?;
                        ts
                    }
                    _ => {
                        return Err(Diagnostic::error(
                            Code::E0118,
                            format!(
                                "a pattern of {} elements cannot match a value of type {}",
                                ps.len(),
                                self.describe(&ty)
                            ),
                            *span,
                            "this pattern",
                        ))
                    }
                };
                for (p, t) in ps.iter().zip(elems) {
                    self.bind_pat(p, t, bound)?;
                }
                Ok(())
            }
        }
    }

    // ---- Expressions ----

    fn infer(&mut self, e: &mut Expr) -> R<Type> {
        let ty = self.infer_kind(e)?;
        e.ty = ty.clone();
        Ok(ty)
    }

    fn infer_kind(&mut self, e: &mut Expr) -> R<Type> {
        let span = e.span;
        match &mut e.kind {
            ExprKind::Var(name) => self.lookup(name, span),
            ExprKind::Int(_, s) => Ok(match s {
                Suffix::None => self.fresh(VarKind::Num),
                Suffix::I64 => Type::I64,
                Suffix::F32 => Type::Scalar(ScalarType::F32),
                Suffix::F64 => Type::F64,
            }),
            ExprKind::Float(_, s) => Ok(match s {
                Suffix::F32 => Type::Scalar(ScalarType::F32),
                Suffix::F64 => Type::F64,
                _ => self.fresh(VarKind::Float),
            }),
            ExprKind::Bool(_) => Ok(Type::BOOL),
            ExprKind::Tuple(es) => Ok(Type::Tuple(es.iter_mut().map(|e| self.infer(e)).collect::<R<_>>()?)),
            ExprKind::Record(fs) => {
                let mut fields: Vec<(String, Type)> = Vec::new();
                let mut spans: HashMap<String, Span> = HashMap::default();
                for (n, e) in fs.iter_mut() {
                    if let Some(prev) = spans.insert(n.text.clone(), n.span) {
                        return Err(dup_error(&n.text, n.span, prev));
                    }
                    fields.push((n.text.clone(), self.infer(e)?));
                }
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(Type::Record(fields))
            }
            ExprKind::ArrayLit(es) => {
                let elem = self.fresh(VarKind::Any);
                for x in es.iter_mut() {
                    let t = self.infer(x)?;
                    self.unify(&t, &elem).map_err(|err| self.mismatch(err, &elem, &t, x.span, "this element"))?;
                    if !self.show(&t).is_first_order() {
                        return Err(first_order_error(x.span, "an array element"));
                    }
                }
                Ok(Type::array(elem, Dim::Const(es.len() as u64)))
            }
            ExprKind::Section(op, left, right) => {
                let op = *op;
                let Type::Func(x, rest) = self.op_type(op) else { unreachable!("operators are binary") };
                let Type::Func(y, result) = *rest else { unreachable!("operators are binary") };
                let (given, param, missing) = match (left, right) {
                    (Some(l), None) => (l, x, y),
                    (None, Some(r)) => (r, y, x),
                    _ => return Ok(Type::Func(x, Box::new(Type::Func(y, result)))),
                };
                let t = self.infer(given)?;
                let span = given.span;
                self.unify(&t, &param).map_err(|err| self.operand_error(err, op, &t, span))?;
                Ok(Type::Func(missing, result))
            }
            ExprKind::Lambda(..) => self.infer_lambda(e, None),
            ExprKind::App(..) => self.infer_app(e),
            ExprKind::Binary(op, a, b) => {
                let op = *op;
                let ta = self.infer(a)?;
                let tb = self.infer(b)?;
                let (a_span, b_span) = (a.span, b.span);
                let (param, ret) = match self.op_type(op) {
                    Type::Func(p, r) => match *r {
                        Type::Func(_, r) => (*p, *r),
                        _ => unreachable!(),
                    },
                    _ => unreachable!(),
                };
                self.unify(&ta, &param).map_err(|err| self.operand_error(err, op, &ta, a_span))?;
                self.unify(&tb, &param).map_err(|err| {
                    self.operand_error(err, op, &tb, b_span)
                        .with_secondary(a_span, format!("left operand has type {}", self.describe(&ta)))
                })?;
                Ok(ret)
            }
            ExprKind::Unary(op, a) => {
                let op = *op;
                let t = self.infer(a)?;
                match op {
                    UnOp::Neg => {
                        if !self.require_kind(&t, VarKind::Num) {
                            return Err(Diagnostic::error(
                                Code::E0102,
                                format!("cannot negate a value of type {}", self.describe(&t)),
                                a.span,
                                "not a number",
                            ));
                        }
                    }
                    UnOp::Not => {
                        self.unify(&t, &Type::BOOL)
                            .map_err(|err| self.mismatch(err, &Type::BOOL, &t, a.span, "the operand of `!`"))?;
                    }
                }
                Ok(t)
            }
            ExprKind::Let(pat, value, body) => {
                let t = self.infer(value)?;
                let mark = self.locals.len();
                self.bind_pat(pat, t, &mut HashMap::default())?;
                let r = self.infer(body);
                self.locals.truncate(mark);
                r
            }
            ExprKind::If(c, t, f) => {
                let tc = self.infer(c)?;
                if self.unify(&tc, &Type::BOOL).is_err() {
                    return Err(Diagnostic::error(
                        Code::E0110,
                        "the condition of `if` must be a bool",
                        c.span,
                        format!("this has type {}", self.describe(&tc)),
                    )
                    .with_help("compare explicitly, e.g. `x != 0`"));
                }
                let tt = self.infer(t)?;
                let tf = self.infer(f)?;
                self.unify(&tf, &tt).map_err(|err| {
                    self.mismatch(err, &tt, &tf, f.span, "the else branch")
                        .with_secondary(t.span, format!("the then branch has type {}", self.describe(&tt)))
                })?;
                Ok(tt)
            }
            ExprKind::Loop { pat, init, form, body } => {
                let ti = self.infer(init)?;
                if !self.show(&ti).is_first_order() {
                    return Err(first_order_error(init.span, "a loop variable"));
                }
                let mark = self.locals.len();
                match form {
                    LoopForm::For(i, bound) => {
                        let tb = self.infer(bound)?;
                        self.unify(&tb, &Type::I64)
                            .map_err(|err| self.mismatch(err, &Type::I64, &tb, bound.span, "the loop bound"))?;
                        self.bind_pat(pat, ti.clone(), &mut HashMap::default())?;
                        self.locals.push(i.text.clone(), Type::I64);
                    }
                    LoopForm::While(cond) => {
                        self.bind_pat(pat, ti.clone(), &mut HashMap::default())?;
                        let tc = self.infer(cond)?;
                        if self.unify(&tc, &Type::BOOL).is_err() {
                            self.locals.truncate(mark);
                            return Err(Diagnostic::error(
                                Code::E0110,
                                "the condition of `while` must be a bool",
                                cond.span,
                                format!("this has type {}", self.describe(&tc)),
                            ));
                        }
                    }
                }
                let tb = self.infer(body);
                self.locals.truncate(mark);
                let tb = tb?;
                self.unify(&tb, &ti).map_err(|err| {
                    self.mismatch(err, &ti, &tb, body.span, "the loop body")
                        .with_note("the body must return a value of the loop variable's type")
                })?;
                Ok(ti)
            }
            ExprKind::Index(a, args) => {
                let ta = self.infer(a)?;
                let mut t = self.show(&ta);
                let mut result_dims = Vec::new();
                for arg in args.iter_mut() {
                    let (elem, dim) = match self.shallow(&t) {
                        Type::Array(e, d) => (*e, d),
                        Type::Var(_) => {
                            return Err(Diagnostic::error(
                                Code::E0111,
                                "cannot infer the type of the indexed value",
                                a.span,
                                "type unknown here",
                            )
                            .with_help("add a type annotation to the value being indexed"))
                        }
                        other => {
                            let code = if result_dims.is_empty() && !matches!(ta, Type::Array(..)) {
                                Code::E0107
                            } else {
                                Code::E0108
                            };
                            let msg = if code == Code::E0107 {
                                format!("cannot index a value of type {}", self.describe(&other))
                            } else {
                                format!("too many indices for a value of type {}", self.describe(&ta))
                            };
                            return Err(Diagnostic::error(code, msg, span, "indexed here"));
                        }
                    };
                    match arg {
                        IndexArg::Index(ix) => {
                            let ti = self.infer(ix)?;
                            self.unify(&ti, &Type::I64)
                                .map_err(|err| self.mismatch(err, &Type::I64, &ti, ix.span, "an index"))?;
                        }
                        IndexArg::Slice(lo, hi, _) => {
                            let full = lo.is_none() && hi.is_none();
                            for bound in [lo, hi].into_iter().flatten() {
                                let tb = self.infer(bound)?;
                                self.unify(&tb, &Type::I64)
                                    .map_err(|err| self.mismatch(err, &Type::I64, &tb, bound.span, "a slice bound"))?;
                            }
                            let d = if full { dim } else { Dim::Any };
                            result_dims.push(Some(d));
                            t = elem;
                            continue;
                        }
                    }
                    result_dims.push(None);
                    t = elem;
                }
                // Re-wrap sliced dimensions, innermost last.
                for d in result_dims.into_iter().rev().flatten() {
                    t = Type::array(t, d);
                }
                Ok(t)
            }
            ExprKind::Field(r, name) => {
                let tr = self.infer(r)?;
                self.field_type(&tr, name, r.span)
            }
            ExprKind::Update(..) => self.infer_update(e),
            ExprKind::TupleIndex(t, i, ispan) => {
                let tt = self.infer(t)?;
                match self.shallow(&tt) {
                    Type::Tuple(ts) => ts.get(*i).cloned().ok_or_else(|| {
                        Diagnostic::error(
                            Code::E0106,
                            format!("tuple index {i} out of range for {}", self.describe(&tt)),
                            *ispan,
                            format!("the tuple has {} elements", ts.len()),
                        )
                    }),
                    Type::Var(_) => Err(Diagnostic::error(
                        Code::E0111,
                        "cannot infer the tuple type for this projection",
                        t.span,
                        "type unknown here",
                    )
                    .with_help("annotate the value with its tuple type")),
                    _ => Err(Diagnostic::error(
                        Code::E0106,
                        format!("cannot take element {i} of {}", self.describe(&tt)),
                        *ispan,
                        "not a tuple",
                    )),
                }
            }
            ExprKind::Ascribe(x, t) => {
                let tx = self.infer(x)?;
                let ann = self.resolve_type_expr(t, false)?;
                self.unify(&tx, &ann).map_err(|err| self.mismatch(err, &ann, &tx, x.span, "the expression"))?;
                Ok(ann)
            }
            ExprKind::Coerce(x, t) => {
                let tx = self.infer(x)?;
                let ann = self.resolve_type_expr(t, false)?;
                let erased = self.erase_dims(&ann);
                self.unify(&tx, &erased)
                    .map_err(|err| self.mismatch(err, &ann, &tx, x.span, "the coerced expression"))?;
                Ok(ann)
            }
        }
    }

    /// The same type with every size replaced by a fresh size variable.
    fn erase_dims(&mut self, t: &Type) -> Type {
        match t {
            Type::Array(e, _) => {
                let d = self.fresh_dim();
                Type::array(self.erase_dims(e), d)
            }
            Type::Tuple(ts) => Type::Tuple(ts.iter().map(|t| self.erase_dims(t)).collect()),
            Type::Record(fs) => Type::Record(fs.iter().map(|(n, t)| (n.clone(), self.erase_dims(t))).collect()),
            Type::Func(a, b) => Type::Func(Box::new(self.erase_dims(a)), Box::new(self.erase_dims(b))),
            t => t.clone(),
        }
    }

    fn operand_error(&self, err: UnifyError, op: BinOp, found: &Type, span: Span) -> Diagnostic {
        let needs = match op {
            BinOp::And | BinOp::Or => "bool operands",
            BinOp::Eq | BinOp::Ne => "two operands of the same scalar type",
            _ => "numeric operands of the same type",
        };
        let d = Diagnostic::error(
            Code::E0102,
            format!("operator `{}` needs {needs}", op.symbol()),
            span,
            format!("this has type {}", self.describe(found)),
        );
        match err {
            UnifyError::Dims(..) | UnifyError::Types | UnifyError::Kind(_) => d.with_help(
                "convert explicitly with `f64 x` or `i64 x`; operators work on scalars (use `map2` for arrays)",
            ),
        }
    }

    fn op_type(&mut self, op: BinOp) -> Type {
        match op {
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem | BinOp::Pow => {
                let t = self.fresh(VarKind::Num);
                Type::func(vec![t.clone(), t.clone()], t)
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let t = self.fresh(VarKind::Num);
                Type::func(vec![t.clone(), t], Type::BOOL)
            }
            BinOp::Eq | BinOp::Ne => {
                let t = self.fresh(VarKind::Any);
                // Restrict to scalars by unifying later uses; a tuple compare fails at unification with the scalar check below.
                Type::func(vec![t.clone(), t], Type::BOOL)
            }
            BinOp::And | BinOp::Or => Type::func(vec![Type::BOOL, Type::BOOL], Type::BOOL),
        }
    }

    fn lookup(&mut self, name: &str, span: Span) -> R<Type> {
        if let Some(t) = self.locals.lookup(name) {
            return Ok(t.clone());
        }
        if self.size_params.iter().any(|p| p == name) {
            return Ok(Type::I64);
        }
        if let Some(t) = self.type_params.get(name).cloned() {
            // `a n`: like `f64 n`, a conversion to the parameter's type.
            if !self.require_kind(&t, VarKind::Num) {
                return Err(Diagnostic::error(
                    Code::E0123,
                    format!("`{name}` is `{}` here, which is not a number to convert to", self.show(&t)),
                    span,
                    "used as a conversion",
                ));
            }
            self.conversions.push(span);
            return Ok(Type::Func(Box::new(self.fresh(VarKind::Num)), Box::new(t)));
        }
        if self.current.as_deref() == Some(name) {
            return Err(Diagnostic::error(Code::E0113, format!("`{name}` refers to itself"), span, "recursive use")
                .with_help("Slope has no recursion: write the repetition as a `loop`"));
        }
        if let Some(info) = self.visible_info(name) {
            let info = info.clone();
            return Ok(self.instantiate_def(&info));
        }
        if let Some(generic) = self.visible_generic(name) {
            let (info, kinds) = (generic.info.clone(), generic.kinds.clone());
            let names = generic.def.type_params.iter().map(|t| t.text.clone());
            let vars: Vec<Type> = kinds.iter().map(|k| self.fresh(*k)).collect();
            let by_name: HashMap<String, Type> = names.zip(vars.iter().cloned()).collect();
            let t = self.instantiate_def(&info);
            self.generic_uses.insert(span, (name.to_string(), vars));
            return Ok(map_type(&t, &mut |t| match t {
                Type::Param(p) => by_name.get(p).cloned(),
                _ => None,
            }));
        }
        if let Some((scheme, _)) = builtins::lookup(name) {
            if name == "checkpoint" && self.checkpoint_callee != Some(span) {
                return Err(not_a_checkpointed_loop(span, "used here"));
            }
            let parsed = crate::syntax::parser::parse_type(scheme, FileId(0)).expect("builtin schemes parse");
            let (mut tvars, mut dvars) = (HashMap::default(), HashMap::default());
            let t = self.scheme_type(&parsed, &mut tvars, &mut dvars);
            if name.starts_with("tree_") {
                self.trees.push((tvars["A"].clone(), tvars.get("F").cloned(), span));
            }
            if let Some(op) = ["jacfwd", "jacrev", "hessian"].into_iter().find(|op| *op == name) {
                self.jacobians.push((op, t.clone(), span));
            }
            return Ok(t);
        }
        if self.failed.iter().any(|f| f == name) {
            return Err(Diagnostic::error(Code::E0101, format!("`{name}` has errors {CASCADE}"), span, "used here"));
        }
        let mut d = Diagnostic::error(Code::E0101, format!("unknown name `{name}`"), span, "not defined");
        let candidates = self
            .locals
            .names()
            .chain(self.program.infos.keys().map(String::as_str).filter(|n| !is_instance_name(n)))
            .chain(self.program.generics.keys().map(String::as_str))
            .chain(builtins::all().iter().map(|(n, _, _)| *n));
        if let Some(best) = closest(name, candidates) {
            d = d.with_help(format!("did you mean `{best}`?"));
        } else {
            d = d.with_help(
                "definitions must come before their use; stdlib modules are brought in with `import \"name\"`",
            );
        }
        Err(d)
    }

    /// The definition `name` names here, if any (an instance's body sees only
    /// what its generic definition saw).
    fn visible_info(&self, name: &str) -> Option<&'p DefInfo> {
        let info = self.program.infos.get(name)?;
        self.scope.is_none_or(|(defs, _)| info.index < defs).then_some(info)
    }

    /// The generic definition `name` names here, if any.
    fn visible_generic(&self, name: &str) -> Option<&'p Generic> {
        let generic = self.program.generics.get(name)?;
        self.scope.is_none_or(|(_, seq)| generic.seq < seq).then_some(generic)
    }

    /// The type of field `name` of a value of type `tr` (at `value_span`).
    fn field_type(&self, tr: &Type, name: &Name, value_span: Span) -> R<Type> {
        match self.shallow(tr) {
            Type::Record(fs) => match fs.iter().find(|(n, _)| *n == name.text) {
                Some((_, t)) => Ok(t.clone()),
                None => Err(Diagnostic::error(
                    Code::E0105,
                    format!("no field `{}` in {}", name.text, self.describe(tr)),
                    name.span,
                    "unknown field",
                )
                .with_note(format!(
                    "the fields are {}",
                    fs.iter().map(|(n, _)| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                ))),
            },
            Type::Var(_) => Err(Diagnostic::error(
                Code::E0111,
                format!("cannot infer the record type for field `{}`", name.text),
                value_span,
                "type unknown here",
            )
            .with_help("annotate the value, e.g. `\\(p: {x: f64, y: f64}) -> p.x`")),
            _ => Err(Diagnostic::error(
                Code::E0105,
                format!("no field `{}`: the value has type {}", name.text, self.describe(tr)),
                name.span,
                "not a record",
            )),
        }
    }

    /// `base with path = value`: the path walks into the base's type (array
    /// elements take `i64` indices, one per dimension; fields must exist), the
    /// value must have the type it reaches, and the result has the base's type.
    fn infer_update(&mut self, e: &mut Expr) -> R<Type> {
        let ExprKind::Update(base, path, value) = &mut e.kind else { unreachable!("infer_update on an update") };
        let tb = self.infer(base)?;
        let mut t = tb.clone();
        let mut at = base.span;
        for step in path.iter_mut() {
            match step {
                UpdateStep::Index(ixs, span) => {
                    for ix in ixs.iter_mut() {
                        t = match self.shallow(&t) {
                            Type::Array(elem, _) => *elem,
                            Type::Var(_) => {
                                return Err(Diagnostic::error(
                                    Code::E0111,
                                    "cannot infer the type of the updated value",
                                    at,
                                    "type unknown here",
                                )
                                .with_help("add a type annotation to the value being updated"))
                            }
                            other => {
                                return Err(Diagnostic::error(
                                    Code::E0108,
                                    format!("too many indices: the updated part has type {}", self.describe(&other)),
                                    ix.span,
                                    "one index too many",
                                ))
                            }
                        };
                        let ti = self.infer(ix)?;
                        self.unify(&ti, &Type::I64)
                            .map_err(|err| self.mismatch(err, &Type::I64, &ti, ix.span, "an index"))?;
                    }
                    at = *span;
                }
                UpdateStep::Field(name) => {
                    t = self.field_type(&t, name, at)?;
                    at = name.span;
                }
            }
        }
        let tv = self.infer(value)?;
        let span = value.span;
        self.unify(&tv, &t).map_err(|err| self.mismatch(err, &t, &tv, span, "the new value"))?;
        Ok(tb)
    }

    fn infer_lambda(&mut self, e: &mut Expr, expected: Option<&Type>) -> R<Type> {
        let ExprKind::Lambda(pats, ret, body) = &mut e.kind else { unreachable!() };
        let mut expected_params = Vec::new();
        let mut expected_ret = None;
        if let Some(exp) = expected {
            let mut t = self.show(exp);
            for _ in 0..pats.len() {
                match self.shallow(&t) {
                    Type::Func(p, r) => {
                        expected_params.push(Some(*p));
                        t = *r;
                    }
                    _ => {
                        expected_params.push(None);
                        t = self.fresh(VarKind::Any);
                    }
                }
            }
            expected_ret = Some(t);
        }
        let mark = self.locals.len();
        let mut param_types = Vec::new();
        let mut bound = HashMap::default();
        let result = (|| {
            for (i, p) in pats.iter().enumerate() {
                let t = match expected_params.get(i).cloned().flatten() {
                    Some(t) => t,
                    None => self.fresh(VarKind::Any),
                };
                self.bind_pat(p, t.clone(), &mut bound)?;
                param_types.push(t);
            }
            let tb = self.infer(body)?;
            if let Some(r) = ret {
                let ann = self.resolve_type_expr(r, false)?;
                self.unify(&tb, &ann).map_err(|err| self.mismatch(err, &ann, &tb, body.span, "the lambda body"))?;
            }
            if let Some(r) = &expected_ret {
                if let Err(err) = self.unify(&tb, r) {
                    return Err(self.mismatch(err, r, &tb, body.span, "the lambda body"));
                }
            }
            Ok(Type::func(param_types.clone(), tb))
        })();
        self.locals.truncate(mark);
        let t = result?;
        e.ty = t.clone();
        Ok(t)
    }

    fn infer_app(&mut self, e: &mut Expr) -> R<Type> {
        let span = e.span;
        let ExprKind::App(f, args) = &mut e.kind else { unreachable!() };
        if matches!(&f.kind, ExprKind::Var(n) if n == "checkpoint" && self.is_builtin_ref(n)) {
            match &args[..] {
                [_, body] if matches!(body.kind, ExprKind::Loop { .. }) => self.checkpoint_callee = Some(f.span),
                [_, body] => return Err(not_a_checkpointed_loop(body.span, "not a `loop` expression")),
                _ => return Err(not_a_checkpointed_loop(span, "not applied to a segment length and a loop")),
            }
        }
        let tf = self.infer(f)?;
        let builtin = match &f.kind {
            ExprKind::Var(n) if self.is_builtin_ref(n) => Some(n.clone()),
            _ => None,
        };
        // Peel one parameter per argument.
        let mut params = Vec::new();
        let mut t = tf.clone();
        for (i, arg) in args.iter().enumerate() {
            match self.shallow(&t) {
                Type::Func(p, r) => {
                    params.push(*p);
                    t = *r;
                }
                Type::Var(_) => {
                    let p = self.fresh(VarKind::Any);
                    let r = self.fresh(VarKind::Any);
                    let ft = Type::Func(Box::new(p.clone()), Box::new(r.clone()));
                    self.unify(&t, &ft).map_err(|err| self.mismatch(err, &ft, &t, f.span, "the function"))?;
                    params.push(p);
                    t = r;
                }
                other => {
                    let d = if i == 0 {
                        Diagnostic::error(
                            Code::E0104,
                            format!("this is not a function: it has type {}", self.describe(&other)),
                            f.span,
                            "applied to arguments here",
                        )
                        .with_secondary(arg.span, "argument")
                        .with_help("to index an array write `a[i]` with no space before `[`")
                    } else {
                        Diagnostic::error(
                            Code::E0103,
                            format!("too many arguments: the function takes {i}"),
                            arg.span,
                            "extra argument",
                        )
                        .with_secondary(f.span, format!("this has type {}", self.describe(&tf)))
                    };
                    return Err(d);
                }
            }
        }
        // Non-lambda arguments first, then lambdas with their expected types known.
        for (arg, p) in args.iter_mut().zip(&params) {
            if matches!(arg.kind, ExprKind::Lambda(..)) {
                continue;
            }
            let ta = self.infer(arg)?;
            self.unify(&ta, p).map_err(|err| {
                let d = self.mismatch(err, p, &ta, arg.span, "this argument");
                let d = match &f.kind {
                    ExprKind::Var(name) if !self.locals.contains(name) => match self.program.generics.get(name) {
                        Some(g) => d.with_note(generic_note(name, g)),
                        None => d,
                    },
                    _ => d,
                };
                let negation = matches!(arg.kind, ExprKind::Unary(UnOp::Neg, _));
                if negation && matches!(self.shallow(p), Type::Func(..)) {
                    d.with_help("`(- x)` is the negation of `x`, not a section; to subtract x write `\\v -> v - x` or `(+ (-x))`")
                } else {
                    d
                }
            })?;
        }
        for (arg, p) in args.iter_mut().zip(&params) {
            if !matches!(arg.kind, ExprKind::Lambda(..)) {
                continue;
            }
            let ta = self.infer_lambda(arg, Some(p))?;
            self.unify(&ta, p).map_err(|err| self.mismatch(err, p, &ta, arg.span, "this function argument"))?;
        }
        let mut result = t;
        if let Some(name) = builtin {
            result = self.builtin_result(&name, args, &params, result, span)?;
        }
        Ok(result)
    }

    fn is_builtin_ref(&self, name: &str) -> bool {
        !self.locals.contains(name)
            && !self.size_params.iter().any(|p| p == name)
            && self.visible_info(name).is_none()
            && self.visible_generic(name).is_none()
            && builtins::lookup(name).is_some()
    }

    /// Result types that depend on argument values or on the function's type.
    fn builtin_result(&mut self, name: &str, args: &[Expr], params: &[Type], result: Type, span: Span) -> R<Type> {
        match name {
            "iota" | "replicate" | "tabulate" => {
                let dim = self.static_size(&args[0]);
                Ok(match self.shallow(&result) {
                    Type::Array(e, _) => Type::array(*e, dim),
                    other => other,
                })
            }
            "jvp" | "jvp2" | "vjp" | "vjp2" | "grad" | "jacfwd" | "jacrev" | "hessian" => {
                let Some(fty) = params.first() else {
                    return Ok(result);
                };
                let fty = self.show(fty);
                let (input, output) = match &fty {
                    Type::Func(a, b) => ((**a).clone(), (**b).clone()),
                    _ => return Ok(result),
                };
                self.check_differentiable(name, &input, &output, args[0].span)?;
                self.differentiated.push((name.to_string(), fty.clone(), args[0].span));
                match name {
                    "jacfwd" | "jacrev" | "hessian" => {
                        if args.len() < 2 {
                            return Ok(result);
                        }
                        // The builtin's type leaves the result open (`R`), so
                        // an extra argument would make the Jacobian a function.
                        if let Some(extra) = args.get(2) {
                            return Err(Diagnostic::error(
                                Code::E0103,
                                format!("too many arguments: `{name}` takes 2 (a function and a point)"),
                                extra.span,
                                "extra argument",
                            )
                            .with_help("the Jacobian is an array (or a structure of arrays), not a function"));
                        }
                        let input = self.zonk(&input, span)?;
                        let output = self.zonk(&output, span)?;
                        let jac = if name == "hessian" {
                            jacobian_type(&input, &input)
                        } else {
                            jacobian_type(&output, &input)
                        };
                        self.unify(&result, &jac)
                            .map_err(|err| self.mismatch(err, &jac, &result, span, "the jacobian"))?;
                        Ok(jac)
                    }
                    _ => Ok(result),
                }
            }
            _ => Ok(result),
        }
    }

    /// Describes the first non-float leaf of a type, if any (type variables count as floats).
    /// E0116 unless `input` and `output` are made of floats (so far).
    fn check_differentiable(&self, name: &str, input: &Type, output: &Type, span: Span) -> R<()> {
        for (t, what) in [(input, "input"), (output, "output")] {
            if let Some(bad) = self.non_differentiable(t) {
                return Err(Diagnostic::error(
                    Code::E0116,
                    format!("`{name}` needs a function whose {what} is made of floats, but it has type {}", self.describe(t)),
                    span,
                    format!("contains {bad}"),
                )
                .with_help(
                    "pass integer or boolean data as free variables of the function (a lambda that captures them), not as its argument",
                ));
            }
        }
        Ok(())
    }

    /// Note [Differentiated types after defaults].
    fn check_differentiated_again(&mut self) -> R<()> {
        for (name, fty, span) in std::mem::take(&mut self.differentiated) {
            if let Type::Func(input, output) = self.zonk(&fty, span)? {
                self.check_differentiable(&name, &input, &output, span)?;
            }
        }
        Ok(())
    }

    fn non_differentiable(&self, t: &Type) -> Option<String> {
        match self.shallow(t) {
            Type::Scalar(s) if s.is_float() => None,
            Type::Scalar(s) => Some(format!("`{}`", s.name())),
            Type::Var(_) | Type::Param(_) => None,
            Type::Array(e, _) => self.non_differentiable(&e),
            Type::Tuple(ts) => ts.iter().find_map(|t| self.non_differentiable(t)),
            Type::Record(fs) => fs.iter().find_map(|(_, t)| self.non_differentiable(t)),
            Type::Func(..) => Some("a function".into()),
            Type::Unknown => None,
        }
    }

    fn static_size(&self, e: &Expr) -> Dim {
        match &e.kind {
            ExprKind::Int(v, _) if *v >= 0 => Dim::Const(*v as u64),
            ExprKind::Var(n) if self.size_params.contains(n) && !self.locals.contains(n) => Dim::Named(n.clone()),
            _ => Dim::Any,
        }
    }
}

/// The type of a Jacobian: for each float leaf of `output` (with array shape
/// `S`), the structure of `input` with each float leaf's shape prefixed by `S`
/// (JAX's convention: output dimensions first).
pub fn jacobian_type(output: &Type, input: &Type) -> Type {
    fn prefix(dims: &[Dim], t: &Type) -> Type {
        dims.iter().rev().fold(t.clone(), |acc, d| Type::array(acc, d.clone()))
    }
    fn per_input(out_dims: &[Dim], input: &Type) -> Type {
        match input {
            Type::Tuple(ts) => Type::Tuple(ts.iter().map(|t| per_input(out_dims, t)).collect()),
            Type::Record(fs) => Type::Record(fs.iter().map(|(n, t)| (n.clone(), per_input(out_dims, t))).collect()),
            t => prefix(out_dims, t),
        }
    }
    fn walk(output: &Type, dims: &mut Vec<Dim>, input: &Type) -> Type {
        match output {
            Type::Array(e, d) => {
                dims.push(d.clone());
                let r = walk(e, dims, input);
                dims.pop();
                // An array of tuples: distribute happens via the element.
                r
            }
            Type::Tuple(ts) => Type::Tuple(ts.iter().map(|t| walk(t, &mut dims.clone(), input)).collect()),
            Type::Record(fs) => {
                Type::Record(fs.iter().map(|(n, t)| (n.clone(), walk(t, &mut dims.clone(), input))).collect())
            }
            _ => per_input(dims, input),
        }
    }
    walk(output, &mut Vec::new(), input)
}

#[derive(Debug)]
enum UnifyError {
    Types,
    Kind(VarKind),
    Dims(Dim, Dim),
}

fn show_dim(d: &Dim) -> String {
    match d {
        Dim::Const(k) => k.to_string(),
        Dim::Named(n) => n.clone(),
        _ => "?".into(),
    }
}

fn dup_error(name: &str, span: Span, prev: Span) -> Diagnostic {
    Diagnostic::error(Code::E0117, format!("`{name}` is bound twice"), span, "second binding")
        .with_secondary(prev, "first bound here")
}

fn first_order_error(span: Span, what: &str) -> Diagnostic {
    Diagnostic::error(Code::E0112, format!("{what} cannot be a function"), span, "this is a function")
        .with_help("functions can be passed to functions and combinators, but not stored in arrays, loops or branches")
}

fn subst_named(t: &Type, map: &HashMap<String, Dim>) -> Type {
    match t {
        Type::Array(e, Dim::Named(n)) if map.contains_key(n) => Type::array(subst_named(e, map), map[n].clone()),
        Type::Array(e, d) => Type::array(subst_named(e, map), d.clone()),
        Type::Tuple(ts) => Type::Tuple(ts.iter().map(|t| subst_named(t, map)).collect()),
        Type::Record(fs) => Type::Record(fs.iter().map(|(n, t)| (n.clone(), subst_named(t, map))).collect()),
        Type::Func(a, b) => Type::Func(Box::new(subst_named(a, map)), Box::new(subst_named(b, map))),
        t => t.clone(),
    }
}

/// Calls `f` on each leaf type of a tree type: scalars, functions and variables.
fn walk_leaf_types(t: &Type, f: &mut dyn FnMut(&Type)) {
    match t {
        Type::Array(e, _) => walk_leaf_types(e, f),
        Type::Tuple(ts) => ts.iter().for_each(|t| walk_leaf_types(t, f)),
        Type::Record(fs) => fs.iter().for_each(|(_, t)| walk_leaf_types(t, f)),
        t => f(t),
    }
}

/*
Note [Trees]
~~~~~~~~~~~~
A model's parameters are a record of arrays (`{w1: [h][d]f64, b1: [h]f64,
…}`), and an optimiser does the same arithmetic on every number of it. The
`tree_…` builtins see any value made of tuples, records and arrays as a tree
whose leaves are numbers: `tree_map2 (\p g -> p - lr * g) params grads` is
one step of gradient descent whatever the record's fields. Their schemes say
`A` for the tree and `F` for its number type; the checker cannot say "every
number of `A` is `F`" with unification alone, so each use is recorded and
checked when the definition's types are known (`settle_trees`), like the
Jacobian operators' result types (Note [Jacobians as values]). In a generic
definition (`def sgd_step 'p 'a (lr: a) (w: p) (g: p) : p`) the tree is a
type variable and the check waits for each instance. Elaboration walks the
static tree (records and tuples are trees of leaves there already) and maps
the function over each leaf array, one IR `map` per dimension.
*/

/// `t` with every node for which `f` gives a replacement replaced (bottom-up
/// is not needed: a replaced node is not visited further).
fn map_type(t: &Type, f: &mut dyn FnMut(&Type) -> Option<Type>) -> Type {
    if let Some(r) = f(t) {
        return r;
    }
    match t {
        Type::Array(e, d) => Type::array(map_type(e, f), d.clone()),
        Type::Tuple(ts) => Type::Tuple(ts.iter().map(|t| map_type(t, f)).collect()),
        Type::Record(fs) => Type::Record(fs.iter().map(|(n, t)| (n.clone(), map_type(t, f))).collect()),
        Type::Func(a, b) => Type::Func(Box::new(map_type(a, f)), Box::new(map_type(b, f))),
        t => t.clone(),
    }
}

/// A type argument of an instance: sizes other than constants become
/// unknown (the caller's size names mean nothing in the instance).
fn erase_sizes(t: &Type) -> Type {
    match t {
        Type::Array(e, d) => {
            let d = if matches!(d, Dim::Const(_)) { d.clone() } else { Dim::Any };
            Type::array(erase_sizes(e), d)
        }
        Type::Tuple(ts) => Type::Tuple(ts.iter().map(erase_sizes).collect()),
        Type::Record(fs) => Type::Record(fs.iter().map(|(n, t)| (n.clone(), erase_sizes(t))).collect()),
        Type::Func(a, b) => Type::Func(Box::new(erase_sizes(a)), Box::new(erase_sizes(b))),
        t => t.clone(),
    }
}

/// What a generic definition's type parameters may be, for messages about a use.
fn generic_note(name: &str, g: &Generic) -> String {
    let params: Vec<String> = g
        .params()
        .map(|(t, k)| {
            let why = match k {
                VarKind::Any => "",
                VarKind::Num => ": its body does arithmetic on it",
                VarKind::Float => ": its body uses float literals or functions with it",
            };
            format!("`'{t}` ({}{why})", k.phrase())
        })
        .collect();
    format!("`{name}` : {} is generic in {}", g.info.ty, params.join(", "))
}

/// Whether `name` names an instance of a generic definition (made by
/// [`instance_name`]; no program can write one).
pub fn is_instance_name(name: &str) -> bool {
    name.contains('<')
}

/// The name of the instance of `generic` at `args`: `first<f64>`, which no
/// program can write, so it never clashes with a definition.
fn instance_name(generic: &str, args: &[Type]) -> String {
    let args: Vec<String> = args.iter().map(Type::full_text).collect();
    format!("{generic}<{}>", args.join(", "))
}

/// Replaces alias names by their definitions (aliases are stored expanded),
/// and applications of parameterised aliases by their instances. Names in
/// `keep` says (the type parameters in scope) stay as they are.
fn expand_aliases(
    t: &TypeExpr,
    aliases: &HashMap<String, Alias>,
    keep: &dyn Fn(&str) -> bool,
) -> Result<TypeExpr, Diagnostic> {
    let expand = |t: &TypeExpr| expand_aliases(t, aliases, keep);
    Ok(match t {
        TypeExpr::Named(n) if keep(&n.text) => t.clone(),
        TypeExpr::Named(n) => match aliases.get(&n.text) {
            Some(a) if !a.params.is_empty() => {
                return Err(Diagnostic::error(
                    Code::E0120,
                    format!("type `{}` takes {} argument(s)", n.text, a.params.len()),
                    n.span,
                    "needs arguments",
                )
                .with_help(format!("write `{} {}`", n.text, alias_signature(&a.params))))
            }
            Some(a) => a.ty.clone(),
            None if ScalarType::from_name(&n.text).is_some() => t.clone(),
            None => return Err(Diagnostic::error(
                Code::E0120,
                format!("unknown type `{}`", n.text),
                n.span,
                "not a type",
            )
            .with_help(
                "the scalar types are f64, f32, i64 and bool; `type name = …` defines a name for a type before its use",
            )),
        },
        TypeExpr::App(n, args, span) => {
            let Some(alias) = aliases.get(&n.text).filter(|a| !a.params.is_empty()) else {
                let what = if aliases.contains_key(&n.text) || ScalarType::from_name(&n.text).is_some() {
                    format!("type `{}` takes no arguments", n.text)
                } else {
                    format!("unknown type `{}`", n.text)
                };
                return Err(Diagnostic::error(Code::E0120, what, *span, "applied to arguments here")
                    .with_help("only a `type` with parameters (`type pair 't = (t, t)`) takes arguments"));
            };
            let mut sizes = HashMap::default();
            let mut types = HashMap::default();
            let kinds_agree = alias.params.len() == args.len()
                && alias.params.iter().zip(args).all(|(p, a)| match (p, a) {
                    (AliasParam::Size(p), TypeArg::Size(d)) => sizes.insert(p.text.clone(), d.clone()).is_none(),
                    (AliasParam::Type(p), TypeArg::Type(t)) => match expand(t) {
                        Ok(t) => types.insert(p.text.clone(), t).is_none(),
                        Err(_) => false,
                    },
                    _ => false,
                });
            if !kinds_agree {
                // An argument that does not expand reports its own error.
                for a in args {
                    if let TypeArg::Type(t) = a {
                        expand(t)?;
                    }
                }
                return Err(Diagnostic::error(
                    Code::E0120,
                    format!("type `{}` is `{} {}`", n.text, n.text, alias_signature(&alias.params)),
                    *span,
                    "arguments do not match",
                )
                .with_help("sizes are written `[3]`, types as names or in parentheses: `pair ([3]f64)`"));
            }
            substitute_alias(&alias.ty, &sizes, &types)
        }
        TypeExpr::Array { dim, elem, span } => {
            TypeExpr::Array { dim: dim.clone(), elem: Box::new(expand(elem)?), span: *span }
        }
        TypeExpr::Tuple(ts, span) => TypeExpr::Tuple(ts.iter().map(expand).collect::<Result<_, _>>()?, *span),
        TypeExpr::Record(fs, span) => TypeExpr::Record(
            fs.iter().map(|(n, t)| Ok((n.clone(), expand(t)?))).collect::<Result<_, Diagnostic>>()?,
            *span,
        ),
        TypeExpr::Func(a, b, span) => TypeExpr::Func(Box::new(expand(a)?), Box::new(expand(b)?), *span),
    })
}

/// How a parameterised alias is applied, for messages: `[d] t`.
fn alias_signature(params: &[AliasParam]) -> String {
    let args: Vec<String> = params
        .iter()
        .map(|p| match p {
            AliasParam::Size(n) => format!("[{}]", n.text),
            AliasParam::Type(n) => n.text.clone(),
        })
        .collect();
    args.join(" ")
}

/// An alias's (expanded) body with its parameters replaced by arguments.
fn substitute_alias(t: &TypeExpr, sizes: &HashMap<String, DimExpr>, types: &HashMap<String, TypeExpr>) -> TypeExpr {
    let go = |t: &TypeExpr| substitute_alias(t, sizes, types);
    match t {
        TypeExpr::Named(n) => types.get(&n.text).cloned().unwrap_or_else(|| t.clone()),
        TypeExpr::Array { dim, elem, span } => {
            let dim = match dim {
                DimExpr::Name(n) => sizes.get(&n.text).cloned().unwrap_or_else(|| dim.clone()),
                d => d.clone(),
            };
            TypeExpr::Array { dim, elem: Box::new(go(elem)), span: *span }
        }
        TypeExpr::Tuple(ts, span) => TypeExpr::Tuple(ts.iter().map(go).collect(), *span),
        TypeExpr::Record(fs, span) => TypeExpr::Record(fs.iter().map(|(n, t)| (n.clone(), go(t))).collect(), *span),
        TypeExpr::Func(a, b, span) => TypeExpr::Func(Box::new(go(a)), Box::new(go(b)), *span),
        TypeExpr::App(..) => unreachable!("alias bodies are stored expanded"),
    }
}

/// The size names of the array dimensions in a parameter's data: through
/// arrays, tuples and records, but not inside function types. These are the
/// sizes a call determines from its arguments' shapes (elaboration's
/// `bind_sizes` walks the same positions).
fn data_dim_names(t: &Type, out: &mut Vec<String>) {
    match t {
        Type::Array(elem, d) => {
            if let Dim::Named(n) = d {
                out.push(n.clone());
            }
            data_dim_names(elem, out);
        }
        Type::Tuple(ts) => ts.iter().for_each(|t| data_dim_names(t, out)),
        Type::Record(fs) => fs.iter().for_each(|(_, t)| data_dim_names(t, out)),
        Type::Unknown | Type::Scalar(_) | Type::Func(..) | Type::Var(_) | Type::Param(_) => {}
    }
}

fn collect_dim_names(t: &TypeExpr, out: &mut Vec<String>) {
    match t {
        TypeExpr::Named(_) => {}
        TypeExpr::Array { dim, elem, .. } => {
            if let DimExpr::Name(n) = dim {
                if !out.contains(&n.text) {
                    out.push(n.text.clone());
                }
            }
            collect_dim_names(elem, out);
        }
        TypeExpr::Tuple(ts, _) => ts.iter().for_each(|t| collect_dim_names(t, out)),
        TypeExpr::Record(fs, _) => fs.iter().for_each(|(_, t)| collect_dim_names(t, out)),
        TypeExpr::Func(a, b, _) => {
            collect_dim_names(a, out);
            collect_dim_names(b, out);
        }
        TypeExpr::App(_, args, _) => {
            for a in args {
                match a {
                    TypeArg::Size(DimExpr::Name(n)) if !out.contains(&n.text) => out.push(n.text.clone()),
                    TypeArg::Size(_) => {}
                    TypeArg::Type(t) => collect_dim_names(t, out),
                }
            }
        }
    }
}

/// Calls `f` on each direct sub-expression.
pub fn for_each_child(e: &mut Expr, f: &mut dyn FnMut(&mut Expr)) {
    match &mut e.kind {
        ExprKind::Var(_) | ExprKind::Int(..) | ExprKind::Float(..) | ExprKind::Bool(_) => {}
        ExprKind::Section(_, l, r) => l.iter_mut().chain(r.iter_mut()).for_each(|e| f(e)),
        ExprKind::Tuple(es) | ExprKind::ArrayLit(es) => es.iter_mut().for_each(f),
        ExprKind::Record(fs) => fs.iter_mut().for_each(|(_, e)| f(e)),
        ExprKind::Lambda(_, _, b) => f(b),
        ExprKind::App(g, args) => {
            f(g);
            args.iter_mut().for_each(f);
        }
        ExprKind::Binary(_, a, b) => {
            f(a);
            f(b);
        }
        ExprKind::Update(base, path, value) => {
            f(base);
            for step in path {
                if let UpdateStep::Index(ix, _) = step {
                    ix.iter_mut().for_each(&mut *f);
                }
            }
            f(value);
        }
        ExprKind::Unary(_, a)
        | ExprKind::Field(a, _)
        | ExprKind::TupleIndex(a, _, _)
        | ExprKind::Ascribe(a, _)
        | ExprKind::Coerce(a, _) => f(a),
        ExprKind::Let(_, v, b) => {
            f(v);
            f(b);
        }
        ExprKind::If(c, t, e) => {
            f(c);
            f(t);
            f(e);
        }
        ExprKind::Loop { init, form, body, .. } => {
            f(init);
            match form {
                LoopForm::For(_, n) => f(n),
                LoopForm::While(c) => f(c),
            }
            f(body);
        }
        ExprKind::Index(a, args) => {
            f(a);
            for arg in args {
                match arg {
                    IndexArg::Index(e) => f(e),
                    IndexArg::Slice(lo, hi, _) => {
                        if let Some(lo) = lo {
                            f(lo);
                        }
                        if let Some(hi) = hi {
                            f(hi);
                        }
                    }
                }
            }
        }
    }
}

/// The candidate closest to `name` by edit distance, if any is close.
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.len() / 3).max(1);
    candidates
        .filter(|c| *c != name)
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + (ca != *cb) as usize).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The local variables in scope, innermost binding first: one stack of
/// types per name (so a lookup is one hash, however many bindings are in
/// scope) and the order of bindings, to leave scopes with `truncate`.
#[derive(Default)]
struct Scope {
    by_name: HashMap<String, Vec<Type>>,
    order: Vec<String>,
}

impl Scope {
    fn push(&mut self, name: String, ty: Type) {
        self.by_name.entry(name.clone()).or_default().push(ty);
        self.order.push(name);
    }

    fn lookup(&self, name: &str) -> Option<&Type> {
        self.by_name.get(name).and_then(|ts| ts.last())
    }

    fn contains(&self, name: &str) -> bool {
        self.lookup(name).is_some()
    }

    fn len(&self) -> usize {
        self.order.len()
    }

    /// Leaves the scopes entered since `len` was `mark`.
    fn truncate(&mut self, mark: usize) {
        while self.order.len() > mark {
            let name = self.order.pop().expect("longer than mark");
            if let Some(ts) = self.by_name.get_mut(&name) {
                ts.pop();
                if ts.is_empty() {
                    self.by_name.remove(&name);
                }
            }
        }
    }

    fn clear(&mut self) {
        self.truncate(0);
    }

    /// The names in scope, in binding order (for suggestions).
    fn names(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }
}

/// A type with solved variables at its root followed (`Checker::resolve`).
enum Resolved<'t> {
    Given(&'t Type),
    Solved(Rc<Type>),
}

impl Deref for Resolved<'_> {
    type Target = Type;

    fn deref(&self) -> &Type {
        match self {
            Resolved::Given(t) => t,
            Resolved::Solved(t) => t,
        }
    }
}

/// E0119 for a rule with the wrong number of patterns.
fn rule_shape_error(rule: &Rule, message: &str, want: String, help: &str) -> Diagnostic {
    Diagnostic::error(Code::E0119, message, rule.span, format!("expected {want} patterns, found {}", rule.pats.len()))
        .with_help(help)
}
