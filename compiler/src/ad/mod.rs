//! Automatic differentiation as a source transformation: the pass that
//! removes every `jvp` and `vjp` node and leaves ordinary IR.
//!
//! Input: IR from elaboration (possibly with nested AD operators, also inside
//! combinator lambdas). Output: IR with no AD operator (the verifier checks
//! it). Operators are expanded innermost first, so a nested derivative is
//! ordinary code by the time the enclosing one transforms it — which is why
//! nesting works to any depth and perturbations cannot be confused (each level
//! has its own fresh variables, see Note [Copies of parameters] in build.rs).
//!
//! - `jvp` → [`fwd`]: the tangent transformation.
//! - `vjp` → [`rev`]: forward sweep + backward sweep with symbolic zeros.
//! - Both share one table of derivative rules, [`rules`].

pub mod build;
pub mod checkpoint;
pub mod fwd;
pub mod linearity;
pub mod rev;
pub mod rules;
pub mod unary;

use crate::diagnostic::Diagnostic;
use crate::hash::{HashMap, HashSet};
use crate::ir::{Atom, Body, Expr, IrType, Lambda, LoopForm, Program, Stmt, Var, VarTable};
use build::{active_vars, is_const, is_float, Builder};

type R<T> = Result<T, Diagnostic>;

/// Options of the AD pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Reverse mode through `for`/`while` loops stores a checkpoint every
    /// ⌈√n⌉ iterations and recomputes each segment, instead of taping every
    /// iteration: O(√n) memory for about one extra forward pass.
    pub checkpoint: bool,
    /// What the forward sweep of a `map` saves for its reverse instead of
    /// recomputing (Note [Residuals of map]).
    pub save: Save,
}

/// A rematerialisation policy: which statements of a `map` body the forward
/// sweep saves per element (one array each) for the reverse to read: scalar
/// operations by class (the cost weights of `crate::prims`), and, under
/// every policy but `Nothing`, in a body the reverse of an enclosing map or
/// loop recomputes, the arrays of inner maps over single loops (Note
/// [Saving inner loop nests]); the reverse recomputes the others. The
/// default was chosen by measurement (Note [Residuals of map]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Save {
    /// Recompute everything.
    Nothing,
    /// Save the results of host calls (`exp`, `log`, `tanh`, `lgamma`, …).
    #[default]
    HostCalls,
    /// Also the slow instructions: `sqrt`, division, `**`.
    SlowOps,
    /// Save every float operation's result.
    Everything,
}

impl Save {
    /// The policies by their command-line names.
    pub const NAMES: &'static [(&'static str, Save)] = &[
        ("nothing", Save::Nothing),
        ("host-calls", Save::HostCalls),
        ("slow-ops", Save::SlowOps),
        ("everything", Save::Everything),
    ];

    /// The policy of a name; the error names the policies (what the CLI's
    /// clap, the Python package and the C library report as E0305).
    pub fn from_name(name: &str) -> Result<Save, String> {
        Save::NAMES.iter().find(|(n, _)| *n == name).map(|(_, p)| *p).ok_or_else(|| {
            let names: Vec<&str> = Save::NAMES.iter().map(|(n, _)| *n).collect();
            format!("unknown save policy `{name}`: one of {}", names.join(", "))
        })
    }

    /// Whether the forward sweep saves the result (of type `ty`) of `e`, a
    /// statement of the body of the map `lam`; `nested` when the sweep
    /// recomputes that map per element or iteration of an enclosing
    /// reverse (Note [Saving inner loop nests]).
    pub fn saves(self, e: &Expr, ty: IrType, lam: &Lambda, nested: bool) -> bool {
        if !ty.elem.is_float() || self == Save::Nothing {
            return false;
        }
        if !ty.is_scalar() {
            return nested && is_saved_loop_nest(lam, e);
        }
        let weight = match e {
            Expr::Unary(crate::ir::UnOp::StopGradient, _) => return false,
            Expr::Unary(op, _) => op.prim().cost,
            Expr::Binary(op, ..) => crate::prims::binary_cost(*op),
            _ => return false,
        };
        match self {
            Save::Nothing => false,
            Save::HostCalls => weight >= crate::prims::HOST_CALL,
            Save::SlowOps => weight >= crate::prims::SLOW_INSTRUCTION,
            Save::Everything => true,
        }
    }
}

/// Whether `e`, a statement of `lam`'s body, is a loop nest the forward
/// sweep saves (Note [Saving inner loop nests]): a `map` whose body runs
/// loops with none inside them, of the same width for every element of
/// `lam`.
fn is_saved_loop_nest(lam: &Lambda, e: &Expr) -> bool {
    let Expr::Map { width, lam: inner, .. } = e else { return false };
    loop_depth(&inner.body) == 1 && rows_alike(lam, *width)
}

/// How deeply `body` nests the loops it runs (maps, reductions, scans,
/// histograms, `for` and `while`; a custom rule's primal, not its rules): 0
/// when it runs none of them.
fn loop_depth(body: &Body) -> u32 {
    let depth = |e: &Expr| {
        let inner = match e {
            Expr::Custom { primal, .. } => loop_depth(&primal.body),
            e => {
                let mut inner = 0;
                e.for_each_body(&mut |b| inner = inner.max(loop_depth(b)));
                inner
            }
        };
        let own = matches!(e, Expr::Map { .. } | Expr::Reduce { .. } | Expr::Scan { .. } | Expr::Hist { .. } | Expr::Loop { .. });
        inner + u32::from(own)
    };
    body.stmts.iter().map(|s| depth(&s.expr)).max().unwrap_or(0)
}

/// Whether `width`, the width of an inner map of `lam`'s body, is the same
/// for every element `lam` is applied to, so that the inner map's results,
/// one per element, form a regular array. Read off the body's definitions: a size is alike when it
/// is a constant, a variable `lam` does not bind, or the size of an array of
/// one shape; an array has one shape when `lam` does not bind it (a
/// parameter is a row of a regular array), or it is an element or row of
/// such an array, or an `iota` or `replicate` of a size alike. (`tabulate r
/// …` over an index `r` gives rows of different lengths, which no array can
/// hold.)
fn rows_alike(lam: &Lambda, width: Atom) -> bool {
    let defs = crate::ir::scope::definitions(&lam.body.stmts).into_iter().map(|(v, (s, _))| (v, &s.expr)).collect();
    Alike { lam, defs }.size(width)
}

/// The definitions [`rows_alike`] reads.
struct Alike<'a> {
    lam: &'a Lambda,
    defs: HashMap<Var, &'a Expr>,
}

impl Alike<'_> {
    fn size(&self, a: Atom) -> bool {
        let Atom::Var(v) = a else { return true };
        if self.lam.params.contains(&v) {
            return false;
        }
        match self.defs.get(&v) {
            None => true,
            Some(Expr::Atom(a)) => self.size(*a),
            Some(Expr::Shape { array, .. }) => self.one_shape(*array),
            Some(_) => false,
        }
    }

    fn one_shape(&self, v: Var) -> bool {
        match self.defs.get(&v) {
            None => true,
            Some(Expr::Atom(Atom::Var(w))) | Some(Expr::Index { array: w, .. }) => self.one_shape(*w),
            Some(Expr::Iota(n)) => self.size(*n),
            Some(Expr::Replicate { count, value }) => {
                self.size(*count) && value.var().is_none_or(|w| self.one_shape(w))
            }
            Some(_) => false,
        }
    }
}

// Note [Saving inner loop nests]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A statement of a map body that is itself a `map` over loops — gmm's
// `qtimesv`, a row per output element with a sum over the columns below it —
// costs a loop nest of depth two per element of the outer map to recompute
// and one array to store. Its reverse always recomputes it: the reverse of
// the outer map re-runs the body's forward sweep before the backward one
// (Note [Reverse mode of map]), and in gmm's jacobian the whole triangular
// product ran twice per point and component, once for the logsumexp and once
// more for the derivative. So every policy but `nothing` saves such arrays
// there: the forward sweep returns them per element, the reverse reads them.
//
// Only inside a reverse (`Rev::nested`): where the reverse of an enclosing
// map, reduction or loop recomputes a body per element, what the body's maps save
// lives for one element (gmm: k rows of d per point). The top-level forward
// sweep's saves live for the whole call and grow with the outer map: saving
// kmeans' distances to every centroid there (n·k values) made its one-thread
// session 19% slower (1334 → 1583 ms over GradBench's default workloads) by
// writing and reading them back through memory, where recomputing them reads
// the centroids from cache.
//
// Only when the inner map has one width for every element (`rows_alike`):
// the saved rows form one regular array (`tabulate r …` over an index `r`,
// gmm's sums below the diagonal, are loops inside the saved map, not its
// rows). And the forward copy that saved them is not marked recomputed (Note
// [Recomputed statements] in rev.rs): the reverse no longer re-runs the
// saved map, so the copy is where its failures happen, and the optimiser
// must keep them.
//
// Only nests of depth exactly two. A saved statement is read back instead of
// re-run, so the maps inside it never run their own forward sweep and
// cannot save for their own reverse; saving a deeper nest (gmm's map over
// the components, whose body holds `qtimesv`) would move the recomputation
// one level in, not remove it. Depth one (a `map` of arithmetic) costs as
// much to recompute as to store and read, and stays recomputed.
//
// Measured on gmm (GradBench's default workloads, a session replayed with
// `scripts/message_scaling.py`): 3005 → 2523 ms on one thread, 1580 → 1295
// ms on two; at d = 64, k = 25 the jacobian went from 215 to 171–176 ms. Of
// the other example and test programs, only the one written for this rule
// (tests/programs/ad/saved_inner_loop_nests.slope) changes.

/// The AD pass: every function of the program, in place.
pub fn differentiate(program: &mut Program) -> R<()> {
    differentiate_with(program, Options::default())
}

pub fn differentiate_with(program: &mut Program, options: Options) -> R<()> {
    // AD never meets a call of an entry (Note [Entries called by entries] in ir/calls.rs).
    crate::ir::calls::inline_under_ad(program);
    let mut funcs = std::mem::take(&mut program.funcs);
    let mut cx = Cx { vars: &mut program.vars, options, recomputed: std::mem::take(&mut program.recomputed) };
    for f in &mut funcs {
        let body = std::mem::take(&mut f.body);
        f.body = eliminate_body(&mut cx, body)?;
    }
    program.recomputed = cx.recomputed;
    program.funcs = funcs;
    Ok(())
}

/// What the expansion of every AD operator of a program shares.
struct Cx<'v> {
    vars: &'v mut VarTable,
    options: Options,
    /// See `ir::Program::recomputed`.
    recomputed: HashSet<Var>,
}

/// Whether a body still contains AD operators (for the driver's invariant check).
pub fn contains_ad(body: &Body) -> bool {
    body.stmts.iter().any(|s| {
        matches!(s.expr, Expr::Jvp { .. } | Expr::Vjp { .. }) || {
            let mut found = false;
            s.expr.for_each_body(&mut |b| found |= contains_ad(b));
            found
        }
    })
}

fn eliminate_body(cx: &mut Cx, body: Body) -> R<Body> {
    if !contains_ad(&body) {
        return Ok(body);
    }
    let mut stmts = Vec::with_capacity(body.stmts.len());
    for s in body.stmts {
        let span = s.span;
        let expr = eliminate_nested(cx, s.expr)?;
        let (lam, primals, seeds, batch, values, reverse) = match expr {
            Expr::Jvp { lam, primals, tangents, batch, values } => (lam, primals, tangents, batch, values, false),
            Expr::Vjp { lam, primals, cotangents, values } => (lam, primals, cotangents, None, values, true),
            expr => {
                stmts.push(Stmt { binds: s.binds, expr, span });
                continue;
            }
        };
        let mut b = Builder::new(cx.vars, span);
        b.save = cx.options.save;
        // Checkpointing is a rewrite of the loops reverse mode is about to
        // see (Note [Checkpointing by strip-mining] in checkpoint.rs).
        let lam = if reverse && cx.options.checkpoint { checkpoint::every_loop(&mut b, lam) } else { lam };
        b.recomputed = std::mem::take(&mut cx.recomputed);
        let results = if reverse {
            expand_vjp(&mut b, &lam, &primals, &seeds)
        } else {
            expand_jvp(&mut b, &lam, &primals, &seeds, batch)
        }
        .map(|(outs, derivatives)| {
            let outs = if values { outs } else { Vec::new() };
            outs.into_iter().chain(derivatives).collect()
        });
        cx.recomputed = std::mem::take(&mut b.recomputed);
        let results = results?;
        let mut new = b.blocks.pop().expect("builder block");
        bind_results(&mut new, &s.binds, results, span);
        stmts.extend(new);
    }
    Ok(Body { stmts: stmts.into(), result: body.result })
}

fn bind_results(stmts: &mut Vec<Stmt>, binds: &[crate::ir::Var], results: Vec<Atom>, span: crate::diagnostic::Span) {
    for (v, a) in binds.iter().zip(results) {
        stmts.push(Stmt { binds: vec![*v], expr: Expr::Atom(a), span });
    }
}

fn eliminate_lambda(cx: &mut Cx, lam: Lambda) -> R<Lambda> {
    Ok(Lambda { params: lam.params, body: eliminate_body(cx, lam.body)? })
}

/// Removes AD operators from the bodies nested in an expression.
fn eliminate_nested(cx: &mut Cx, e: Expr) -> R<Expr> {
    Ok(match e {
        Expr::Map { width, lam, arrays } => Expr::Map { width, lam: eliminate_lambda(cx, lam)?, arrays },
        Expr::Reduce { lam, neutral, arrays } => Expr::Reduce { lam: eliminate_lambda(cx, lam)?, neutral, arrays },
        Expr::Scan { lam, neutral, arrays } => Expr::Scan { lam: eliminate_lambda(cx, lam)?, neutral, arrays },
        Expr::Hist { dest, lam, neutral, indices, values } => {
            Expr::Hist { dest, lam: eliminate_lambda(cx, lam)?, neutral, indices, values }
        }
        Expr::If { cond, then_body, else_body } => {
            Expr::If { cond, then_body: eliminate_body(cx, then_body)?, else_body: eliminate_body(cx, else_body)? }
        }
        Expr::Loop { params, init, form, body } => {
            let form = match form {
                LoopForm::While { cond } => LoopForm::While { cond: eliminate_body(cx, cond)? },
                f => f,
            };
            Expr::Loop { params, init, form, body: eliminate_body(cx, body)? }
        }
        Expr::Jvp { lam, primals, tangents, batch, values } => {
            Expr::Jvp { lam: eliminate_lambda(cx, lam)?, primals, tangents, batch, values }
        }
        Expr::Vjp { lam, primals, cotangents, values } => {
            Expr::Vjp { lam: eliminate_lambda(cx, lam)?, primals, cotangents, values }
        }
        Expr::Custom { primal, jvp, vjp, args, residuals } => Expr::Custom {
            primal: eliminate_lambda(cx, primal)?,
            jvp: jvp.map(|l| eliminate_lambda(cx, l)).transpose()?,
            vjp: vjp.map(|l| eliminate_lambda(cx, l)).transpose()?,
            args,
            residuals,
        },
        e => e,
    })
}

/// Forward mode: the tangents of `lam`'s results at `primals` along
/// `tangents` — with `batch` directions in every tangent's last dimension
/// when it is `Some` (Note [Vector-mode forward AD] in fwd.rs).
pub fn expand_jvp(
    b: &mut Builder,
    lam: &Lambda,
    primals: &[Atom],
    tangents: &[Atom],
    batch: Option<Atom>,
) -> R<(Vec<Atom>, Vec<Atom>)> {
    let (params, body) = b.prepare(lam, primals);
    let mut fwd = fwd::Fwd::new(b);
    fwd.batch = batch;
    // What only calls with custom rules ask (`Fwd::active`, `Fwd::read`):
    // not computed for the bodies without one.
    let mut custom = false;
    crate::ir::scope::for_each_stmt(&body, &mut |s| custom |= matches!(s.expr, Expr::Custom { .. }));
    if custom {
        fwd.active = active_vars(fwd.b.vars, &body, &params);
        crate::ir::scope::for_each_use(&body, &mut |v| {
            fwd.read.insert(v);
        });
    }
    for (p, t) in params.iter().zip(tangents) {
        if is_float(fwd.b.vars.ty(*p)) && !is_const(*t, 0.0) {
            fwd.tan.insert(*p, *t);
        }
    }
    let results = body.result.clone();
    let tans = fwd.body(body)?;
    let tans = results
        .iter()
        .zip(tans)
        .map(|(r, t)| match t {
            Some(t) => t,
            None => fwd.zero_tan(*r),
        })
        .collect();
    Ok((results, tans))
}

/// Reverse mode: `lam`'s results at `primals`, and `cotangents` of them
/// pulled back to its parameters.
pub fn expand_vjp(
    b: &mut Builder,
    lam: &Lambda,
    primals: &[Atom],
    cotangents: &[Atom],
) -> R<(Vec<Atom>, Vec<Atom>)> {
    let (params, body) = b.prepare(lam, primals);
    let active = active_vars(b.vars, &body, &params);
    // Every scope goes through the unary form: this one here, nested ones
    // (map bodies, branches, loop bodies) in `Rev::backward`.
    let unf = unary::translate(&params, body.clone());
    if cfg!(debug_assertions) {
        if let Err(e) = unary::verify(b.vars, &unf) {
            return Err(Diagnostic::internal("ad", format!("unary form: {e}"), b.span));
        }
    }
    let mut rev = rev::Rev::new(b, active);
    rev.forward(&body.stmts)?;
    unary::reverse(&mut rev, &unf, cotangents)?;
    let adjoints = params
        .iter()
        .map(|p| match rev.take(*p) {
            Some(a) => a,
            None => rev.b.zeros_like(Atom::Var(*p)),
        })
        .collect();
    Ok((body.result.clone(), adjoints))
}

/// The error for a call with custom rules whose primal or rules read a
/// variable that is being differentiated from outside their arguments — a
/// value captured by a function argument (Note [Static parameters of rules]
/// in elab/mod.rs). The rules give no derivative with respect to it, so going
/// on would drop it.
pub(crate) fn check_captures(
    vars: &VarTable,
    custom: &Expr,
    span: crate::diagnostic::Span,
    is_active: impl Fn(Var) -> bool,
) -> R<()> {
    let Some(v) = custom.lambdas().into_iter().flat_map(build::free_vars_lambda).find(|v| is_active(*v)) else {
        return Ok(());
    };
    Err(Diagnostic::error(
        crate::diagnostic::Code::E0124,
        format!("a function passed to this call captures `{}`, which is being differentiated", vars.base_name(v)),
        span,
        "the custom derivative rules of the function called here give no derivative with respect to it",
    )
    .with_note("a function argument of a definition with `with jvp`/`with vjp` rules is static: the rules differentiate with respect to the other arguments only")
    .with_help("pass the value as (part of) an argument that is not a function, e.g. the parameters θ of `fixed_point` or `root`"))
}
