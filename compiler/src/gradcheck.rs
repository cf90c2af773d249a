//! Derivative checking, built in (`slope gradcheck`, and the test header
//! directive `-- gradcheck:`).
//!
//! For an entry `f` and a point `x` (the float leaves of its arguments; the
//! other leaves are held constant) this compiles two new functions from the
//! entry's IR — `x, v ↦ J v` (a `jvp`) and `x, w ↦ Jᵀ w` (a `vjp`) — runs them
//! through the AD pass and the interpreter, and checks at `x` and at random
//! points near it:
//!
//! - the dot-product test `⟨J v, w⟩ = ⟨v, Jᵀ w⟩` for random `v`, `w`: reverse
//!   mode is the exact transpose of forward mode, to rounding;
//! - both against central finite differences `⟨(f(x + h v) − f(x − h v)) / 2h, w⟩`.
//!
//! An entry that itself computes a derivative (`grad`, `hessian`) is checked
//! the same way, which tests forward-over-reverse and reverse-over-reverse.

use crate::api::{Failure, Program};
use crate::diagnostic::{Code, Diagnostic};
use crate::hash::HashMap;
use crate::ir::interp::{self, Val};
use crate::ir::scope::rename_body;
use crate::ir::{self, Atom, Body, Expr, Func, IrType, Lambda, Stmt, Var};
use crate::values;
use slope_runtime::{Array, ArrayData};
use std::rc::Rc;

/// One checked point.
#[derive(Clone, Debug)]
pub struct PointReport {
    /// ⟨J v, w⟩ from forward mode.
    pub forward: f64,
    /// ⟨v, Jᵀ w⟩ from reverse mode.
    pub reverse: f64,
    /// The same by central differences.
    pub finite_difference: f64,
    /// |forward − reverse| / max(1, |forward| + |reverse|).
    pub transpose_error: f64,
    /// |forward − finite difference| / max(1, |forward| + |fd|).
    pub fd_error: f64,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub entry: String,
    pub points: Vec<PointReport>,
    pub ok: bool,
    /// What the points were checked against (by the entry's precision).
    pub tolerances: Tolerances,
}

/// The finite-difference step and the tolerances, by the precision the
/// entry computes in (Note [Steps and tolerances by precision]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerances {
    /// The central-difference step, relative to the point's scale.
    pub step: f64,
    /// Relative tolerance of the dot-product test (rounding only).
    pub transpose: f64,
    /// Relative tolerance of the finite-difference comparison.
    pub fd: f64,
}

/// For entries whose differentiated inputs and checked outputs are all `f64`.
pub const F64_TOLERANCES: Tolerances = Tolerances { step: 1e-6, transpose: 1e-9, fd: 1e-5 };
/// For entries with an `f32` input or output.
pub const F32_TOLERANCES: Tolerances = Tolerances { step: 5e-3, transpose: 1e-5, fd: 2e-3 };

// Note [Steps and tolerances by precision]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A central difference (f(x + hv) − f(x − hv)) / 2h has a truncation error
// of order h² and a rounding error of order ε·|f| / h (ε the unit roundoff of
// the type f computes in); the sum is smallest near h = ε^(1/3), where both
// are about ε^(2/3). For f64 (ε ≈ 1.1e-16) that is h ≈ 5e-6 and an error
// near 1e-11, so the step 1e-6 and the tolerance 1e-5 leave a wide margin
// for curvature. For f32 (ε ≈ 6e-8) the f64 step is below the resolution of
// x itself (x ± hv rounds back to x), so f32 uses h = 5e-3 (ε^(1/3) ≈ 4e-3)
// and accepts 2e-3 (ε^(2/3) ≈ 1.5e-5, times the curvature and the condition
// of the sum of outputs). The
// dot-product test compares two f32 computations of one number: rounding
// only, 1e-5 for f32 against 1e-9 for f64.

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "gradcheck {}: {}", self.entry, if self.ok { "ok" } else { "FAILED" })?;
        for (i, p) in self.points.iter().enumerate() {
            writeln!(
                f,
                "  point {i}: <Jv,w> = {:.12e} (forward), {:.12e} (reverse), {:.12e} (finite differences); transpose error {:.1e}, fd error {:.1e}",
                p.forward, p.reverse, p.finite_difference, p.transpose_error, p.fd_error
            )?;
        }
        Ok(())
    }
}

/// A small deterministic generator (xorshift64*), so checks reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [-1, 1).
    pub fn signed(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

/// Checks the derivatives of `entry` at `input` (JSON, as for `call_json`) and at
/// `extra_points` random perturbations of it.
pub fn gradcheck(
    program: &Program,
    entry: &str,
    input: &serde_json::Value,
    extra_points: usize,
    seed: u64,
) -> Result<Report, Failure> {
    let fail = |d: Diagnostic| Failure { sources: program.sources.clone(), diagnostics: vec![d] };
    let func = program.elaborated.func(entry).expect("entry exists").clone();
    let args = program.decode_json_args(entry, input)?;
    let mut flat = Vec::new();
    for a in &args {
        values::flatten(a, &mut flat);
    }
    let leaves: Vec<Val> = flat.iter().map(|v| Val::from_value(v).expect("leaves are scalars and arrays")).collect();
    let mut checker = Checker::build(program, &func).map_err(fail)?;
    let mut rng = Rng::new(seed);
    let mut points = Vec::new();
    for p in 0..=extra_points {
        let x: Vec<Val> = if p == 0 {
            leaves.clone()
        } else {
            leaves
                .iter()
                .enumerate()
                .map(|(k, v)| if checker.is_diff_param(k) { perturb(v, &mut rng) } else { v.clone() })
                .collect()
        };
        points.push(checker.check_point(&x, &mut rng).map_err(|e| fail(e.into()))?);
    }
    let tol = checker.tolerances;
    let ok = points.iter().all(|p| p.transpose_error <= tol.transpose && p.fd_error <= tol.fd);
    Ok(Report { entry: entry.to_string(), points, ok, tolerances: tol })
}

fn perturb(v: &Val, rng: &mut Rng) -> Val {
    let mut near = |x: f64| x * (1.0 + 0.05 * rng.signed()) + 0.01 * rng.signed();
    match v {
        Val::F64(x) => Val::F64(near(*x)),
        Val::F32(x) => Val::F32(near(f64::from(*x)) as f32),
        Val::Arr(a) => match &a.data {
            ArrayData::F64(d) => {
                let d2 = d.iter().map(|x| near(*x)).collect();
                Val::Arr(Rc::new(Array::new(a.shape.clone(), ArrayData::F64(d2))))
            }
            ArrayData::F32(d) => {
                let d2 = d.iter().map(|x| near(f64::from(*x)) as f32).collect();
                Val::Arr(Rc::new(Array::new(a.shape.clone(), ArrayData::F32(d2))))
            }
            _ => v.clone(),
        },
        v => v.clone(),
    }
}

/// A random value shaped like `v` (floats only).
fn random_like(v: &Val, rng: &mut Rng) -> Val {
    match v {
        Val::F64(_) => Val::F64(rng.signed()),
        Val::F32(_) => Val::F32(rng.signed() as f32),
        Val::Arr(a) => match &a.data {
            ArrayData::F64(d) => {
                Val::Arr(Rc::new(Array::new(a.shape.clone(), ArrayData::F64(d.iter().map(|_| rng.signed()).collect()))))
            }
            ArrayData::F32(d) => Val::Arr(Rc::new(Array::new(
                a.shape.clone(),
                ArrayData::F32(d.iter().map(|_| rng.signed() as f32).collect()),
            ))),
            _ => v.clone(),
        },
        v => v.clone(),
    }
}

fn dot(a: &[Val], b: &[Val]) -> f64 {
    a.iter().zip(b).map(|(x, y)| dot1(x, y)).sum()
}

fn dot1(a: &Val, b: &Val) -> f64 {
    match (a, b) {
        (Val::F64(x), Val::F64(y)) => x * y,
        (Val::F32(x), Val::F32(y)) => *x as f64 * *y as f64,
        (Val::Arr(x), Val::Arr(y)) => match (&x.data, &y.data) {
            (ArrayData::F64(p), ArrayData::F64(q)) => p.iter().zip(q).map(|(a, b)| a * b).sum(),
            (ArrayData::F32(p), ArrayData::F32(q)) => p.iter().zip(q).map(|(a, b)| *a as f64 * *b as f64).sum(),
            _ => 0.0,
        },
        _ => 0.0,
    }
}

fn axpy(x: &Val, h: f64, v: &Val) -> Val {
    match (x, v) {
        (Val::F64(a), Val::F64(b)) => Val::F64(a + h * b),
        // f32 moves by the step computed in f64, rounded once.
        (Val::F32(a), Val::F32(b)) => Val::F32((f64::from(*a) + h * f64::from(*b)) as f32),
        (Val::Arr(a), Val::Arr(b)) => match (&a.data, &b.data) {
            (ArrayData::F64(p), ArrayData::F64(q)) => Val::Arr(Rc::new(Array::new(
                a.shape.clone(),
                ArrayData::F64(p.iter().zip(q).map(|(s, t)| s + h * t).collect()),
            ))),
            (ArrayData::F32(p), ArrayData::F32(q)) => Val::Arr(Rc::new(Array::new(
                a.shape.clone(),
                ArrayData::F32(p.iter().zip(q).map(|(s, t)| (f64::from(*s) + h * f64::from(*t)) as f32).collect()),
            ))),
            _ => x.clone(),
        },
        _ => x.clone(),
    }
}

struct Checker {
    program: ir::Program,
    /// For each parameter leaf: is it differentiated (a float)?
    diff: Vec<bool>,
    /// For each result leaf: is it a float (part of the checked output)?
    out_float: Vec<bool>,
    entry: String,
    /// The AD-free program, to evaluate the entry for finite differences.
    original: ir::Program,
    tolerances: Tolerances,
}

const JVP: &str = "gradcheck$jvp";
const VJP: &str = "gradcheck$vjp";

impl Checker {
    fn is_diff_param(&self, k: usize) -> bool {
        self.diff[k]
    }

    /// Builds `x, v ↦ J v` and `x, w ↦ Jᵀ w` from the entry's IR and differentiates them.
    fn build(program: &Program, func: &Func) -> Result<Checker, Diagnostic> {
        let mut ir = program.elaborated.clone();
        let diff: Vec<bool> = func.params.iter().map(|p| ir.vars.ty(*p).elem.is_float()).collect();
        let out_float: Vec<bool> = func.body.result.iter().map(|a| ir.vars.atom_type(*a).elem.is_float()).collect();
        if !diff.iter().any(|d| *d) || !out_float.iter().any(|d| *d) {
            return Err(Diagnostic::error(
                Code::E0116,
                format!("`{}` has no float inputs or no float outputs to check", func.name),
                func.span,
                "this entry",
            ));
        }
        let jvp = Self::derivative_func(&mut ir, func, &diff, &out_float, true);
        let vjp = Self::derivative_func(&mut ir, func, &diff, &out_float, false);
        ir.funcs = vec![jvp, vjp];
        // Checked as it runs: differentiated, then optimised.
        let ir = crate::driver::run_ad(&ir)
            .and_then(|ir| crate::driver::run_opt(&ir, None))
            .map_err(|mut ds| ds.remove(0))?;
        let single = func
            .params
            .iter()
            .zip(&diff)
            .filter(|(_, d)| **d)
            .map(|(p, _)| program.elaborated.vars.ty(*p).elem)
            .chain(func.body.result.iter().map(|a| program.elaborated.vars.atom_type(*a).elem))
            .any(|t| t == crate::types::ScalarType::F32);
        let tolerances = if single { F32_TOLERANCES } else { F64_TOLERANCES };
        Ok(Checker { program: ir, diff, out_float, entry: func.name.clone(), original: program.ir.clone(), tolerances })
    }

    fn derivative_func(ir: &mut ir::Program, func: &Func, diff: &[bool], out_float: &[bool], forward: bool) -> Func {
        let (funcs, vars) = (&ir.funcs, &mut ir.vars);
        let mut params: Vec<Var> = Vec::new();
        let mut subst: HashMap<Var, Atom> = HashMap::default();
        let mut lam_params = Vec::new();
        let mut primals = Vec::new();
        for (p, d) in func.params.iter().zip(diff) {
            let ty = vars.ty(*p);
            let name = vars.base_name(*p).to_string();
            let outer = vars.fresh(&name, ty);
            params.push(outer);
            if *d {
                let inner = vars.fresh(&name, ty);
                subst.insert(*p, Atom::Var(inner));
                lam_params.push(inner);
                primals.push(Atom::Var(outer));
            } else {
                subst.insert(*p, Atom::Var(outer));
            }
        }
        // The whole body is differentiated: calls of other entries are inlined.
        let whole = crate::ir::calls::inline_all(funcs, vars, &func.body);
        let body = rename_body(vars, &whole, &mut subst);
        let result: Vec<Atom> = body.result.iter().zip(out_float).filter(|(_, f)| **f).map(|(a, _)| *a).collect();
        let result_types: Vec<IrType> = result.iter().map(|a| vars.atom_type(*a)).collect();
        let lam = Lambda { params: lam_params.clone(), body: Body { stmts: body.stmts, result } };
        let (seeds, expr, bind_types): (Vec<Var>, Expr, Vec<IrType>) = if forward {
            let tangents: Vec<Var> = lam_params.iter().map(|p| vars.fresh("v", vars.ty(*p))).collect();
            let types = result_types.clone();
            (
                tangents.clone(),
                Expr::Jvp {
                    lam,
                    primals,
                    tangents: tangents.iter().map(|v| Atom::Var(*v)).collect(),
                    batch: None,
                    values: false,
                },
                types,
            )
        } else {
            let cots: Vec<Var> = result_types.iter().map(|t| vars.fresh("w", *t)).collect();
            let types: Vec<IrType> = lam_params.iter().map(|p| vars.ty(*p)).collect();
            (
                cots.clone(),
                Expr::Vjp { lam, primals, cotangents: cots.iter().map(|v| Atom::Var(*v)).collect(), values: false },
                types,
            )
        };
        params.extend(&seeds);
        let binds: Vec<Var> = bind_types.iter().map(|t| vars.fresh("d", *t)).collect();
        let stmt = Stmt { binds: binds.clone(), expr, span: func.span };
        Func {
            name: if forward { JVP.to_string() } else { VJP.to_string() },
            params,
            body: Body { stmts: vec![stmt].into(), result: binds.iter().map(|v| Atom::Var(*v)).collect() },
            signature: func.signature.clone(),
            span: func.span,
        }
    }

    fn run(&self, func: &str, args: Vec<Val>) -> Result<Vec<Val>, interp::RuntimeError> {
        interp::run(&self.program, func, args, &interp::Options::default()).map(|(r, _)| r)
    }

    fn primal(&self, x: &[Val]) -> Result<Vec<Val>, interp::RuntimeError> {
        let out = interp::run(&self.original, &self.entry, x.to_vec(), &interp::Options::default())?.0;
        Ok(out.into_iter().zip(&self.out_float).filter(|(_, f)| **f).map(|(v, _)| v).collect())
    }

    fn check_point(&mut self, x: &[Val], rng: &mut Rng) -> Result<PointReport, interp::RuntimeError> {
        let diff_x: Vec<Val> = x.iter().zip(&self.diff).filter(|(_, d)| **d).map(|(v, _)| v.clone()).collect();
        let v: Vec<Val> = diff_x.iter().map(|a| random_like(a, rng)).collect();
        let mut jvp_args = x.to_vec();
        jvp_args.extend(v.iter().cloned());
        let jv = self.run(JVP, jvp_args)?;
        let w: Vec<Val> = jv.iter().map(|a| random_like(a, rng)).collect();
        let mut vjp_args = x.to_vec();
        vjp_args.extend(w.iter().cloned());
        let jtw = self.run(VJP, vjp_args)?;
        let forward = dot(&jv, &w);
        let reverse = dot(&v, &jtw);
        // Central differences along v, with a step relative to the point's scale.
        let scale = diff_x.iter().map(|a| dot1(a, a)).sum::<f64>().sqrt().max(1.0);
        let h = self.tolerances.step * scale;
        let shifted = |sign: f64| -> Vec<Val> {
            let mut k = 0;
            x.iter()
                .zip(&self.diff)
                .map(|(a, d)| {
                    if *d {
                        k += 1;
                        axpy(a, sign * h, &v[k - 1])
                    } else {
                        a.clone()
                    }
                })
                .collect()
        };
        let plus = self.primal(&shifted(1.0))?;
        let minus = self.primal(&shifted(-1.0))?;
        let fd_plus = dot(&plus, &w);
        let fd_minus = dot(&minus, &w);
        let finite_difference = (fd_plus - fd_minus) / (2.0 * h);
        let rel = |a: f64, b: f64| (a - b).abs() / (a.abs() + b.abs()).max(1.0);
        Ok(PointReport {
            forward,
            reverse,
            finite_difference,
            transpose_error: rel(forward, reverse),
            fd_error: rel(forward, finite_difference),
        })
    }
}
