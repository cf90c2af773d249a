//! The scalar primitives: one row per math function of the language.
//!
//! Input: nothing (two constant tables). Output: for every scalar primitive
//! its source name, type scheme, one-line description, how the interpreter
//! evaluates it, how native code computes it, its cost weight and its
//! partial derivatives. Every pass that needs to know something about a
//! primitive asks here: the type checker, the REPL's `:help` and the
//! language docs (`types::builtins`), elaboration, the IR and loop-IR
//! verifiers, the interpreter, Cranelift code generation (`jit`), both AD
//! modes (`ad::rules`), the optimiser's hoisting and the parallel stage's
//! cost model.
//!
//! Adding a primitive is a variant of [`UnOp`] or [`BinOp`] (the IR's name
//! for it), a row here, and, when native code calls a host function, that
//! function in `slope_runtime::native`'s `host_math!` table; then a test
//! program (`tests/programs/ad/…`) checks both engines and both AD modes.
//! Note [Adding a primitive] says what the row's fields promise.
//!
//! What is not a row: the operators (`+ - * / % **`, comparisons, `&&`,
//! `||`) and `min`/`max`, which have integer and boolean forms and are typed
//! by the checker's operator rules; each engine has code for them and their
//! derivatives are in `ad::rules`.
//!
//! Invariants (tested below): [`UNARY`] lists every `UnOp` in declaration
//! order, so [`unary`] is an index; names are unique; a row's scheme agrees
//! with its evaluation (`T` exactly when it has an integer form, `-> bool`
//! exactly for tests).

use crate::ad::build::Builder;
use crate::ir::{Atom, BinOp, IrType, UnOp};
use crate::types::ScalarType;
use slope_runtime::native as host;

/// How the interpreter evaluates a unary primitive (and what it accepts).
#[derive(Clone, Copy)]
pub enum Kind {
    /// A float function, computed in the operand's own precision; `i64` is
    /// its integer form, if it has one. The result has the operand's type.
    Float { f64: fn(f64) -> f64, f32: fn(f32) -> f32, i64: Option<fn(i64) -> i64> },
    /// A test of a float (an `f32` is widened, which is exact): a `bool`.
    Test(fn(f64) -> bool),
    /// `!` on a `bool`.
    Not,
    /// The identity on any scalar (`stop_gradient`).
    Identity,
}

/// How native code computes a primitive on floats.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lowering {
    /// A call of the runtime's `slope_{name}_{f64|f32}` (which is also what
    /// the interpreter's `Kind::Float` functions call, so both engines agree
    /// bit for bit).
    Host(&'static str),
    /// A short instruction sequence written in `jit` (negation, `abs`,
    /// `sqrt`, `sign`, tests, …): it must compute what `Kind` computes.
    Inline,
}

/// `d op(x) / dx`, given the operand `x` and the result `y`, emitted into
/// the derivative program; `None` when the derivative is identically zero.
pub type Partial = Option<fn(&mut Builder, Atom, Atom) -> Atom>;

/// `(d op / da, d op / db)` at `a op b = y`, emitted into the derivative
/// program; `None` for an identically zero one.
pub type Partials = fn(&mut Builder, Atom, Atom, Atom) -> (Option<Atom>, Option<Atom>);

/// Cost weight of an instruction or two.
pub const CHEAP: u32 = 1;
/// Cost weight of an instruction with a long latency (square root; the
/// parallel stage gives divisions this weight too).
pub const SLOW_INSTRUCTION: u32 = 10;
/// Cost weight of a call of a host math function: worth saving (reverse
/// mode's residuals) or computing once for a whole array (the optimiser's
/// hoisting) rather than recomputing; the parallel stage weighs loop bodies
/// with it.
pub const HOST_CALL: u32 = 20;

/// One unary primitive.
pub struct Unary {
    pub op: UnOp,
    /// The source name (and the name the IR printers use).
    pub name: &'static str,
    /// The type scheme of the builtin function (`types::builtins`' syntax);
    /// `None` for what the source writes otherwise (`-x`, `!b`, and
    /// `stop_gradient`, which elaboration applies to whole values).
    pub scheme: Option<&'static str>,
    pub doc: &'static str,
    pub kind: Kind,
    pub lowering: Lowering,
    pub cost: u32,
    pub partial: Partial,
}

/// One binary float primitive written as a function (`atan2 y x`).
pub struct Binary {
    pub op: BinOp,
    pub name: &'static str,
    pub scheme: &'static str,
    pub doc: &'static str,
    pub f64: fn(f64, f64) -> f64,
    pub f32: fn(f32, f32) -> f32,
    pub lowering: Lowering,
    pub cost: u32,
    pub partials: Partials,
}

/// Other names of a primitive, accepted by the checker and elaboration.
pub const ALIASES: &[(&str, &str)] = &[("logistic", "sigmoid")];

/// A float function computed by the runtime's host function `slope_NAME_*`.
macro_rules! host {
    ($name:literal, $f64:path, $f32:path) => {
        (Kind::Float { f64: |x| $f64(x), f32: |x| $f32(x), i64: None }, Lowering::Host($name))
    };
}

/// A row of [`UNARY`].
macro_rules! unary {
    ($op:ident, $name:literal, $scheme:expr, $doc:literal, $eval:expr, $cost:expr, $partial:expr) => {{
        let (kind, lowering) = $eval;
        Unary { op: UnOp::$op, name: $name, scheme: $scheme, doc: $doc, kind, lowering, cost: $cost, partial: $partial }
    }};
}

const F_F: Option<&str> = Some("F -> F");

/// Every unary primitive, in `UnOp` order.
pub const UNARY: &[Unary] = &[
    unary!(
        Neg,
        "neg",
        None,
        "negation",
        (Kind::Float { f64: |x| -x, f32: |x| -x, i64: Some(i64::wrapping_neg) }, Lowering::Inline),
        CHEAP,
        Some(|b, x, _| b.constant(b.ty(x), -1.0))
    ),
    unary!(Not, "not", None, "boolean negation", (Kind::Not, Lowering::Inline), CHEAP, None),
    unary!(
        Exp,
        "exp",
        F_F,
        "e to the power x",
        host!("exp", host::slope_exp_f64, host::slope_exp_f32),
        HOST_CALL,
        Some(|_, _, y| y)
    ),
    unary!(
        Log,
        "log",
        F_F,
        "natural logarithm",
        host!("log", host::slope_log_f64, host::slope_log_f32),
        HOST_CALL,
        Some(reciprocal)
    ),
    unary!(
        Sin,
        "sin",
        F_F,
        "sine",
        host!("sin", host::slope_sin_f64, host::slope_sin_f32),
        HOST_CALL,
        Some(|b, x, _| b.unary(UnOp::Cos, x))
    ),
    unary!(
        Cos,
        "cos",
        F_F,
        "cosine",
        host!("cos", host::slope_cos_f64, host::slope_cos_f32),
        HOST_CALL,
        Some(|b, x, _| {
            let s = b.unary(UnOp::Sin, x);
            b.neg(s)
        })
    ),
    unary!(
        Tan,
        "tan",
        F_F,
        "tangent",
        host!("tan", host::slope_tan_f64, host::slope_tan_f32),
        HOST_CALL,
        Some(|b, _, y| {
            let yy = b.mul(y, y);
            let one = b.constant(b.ty(y), 1.0);
            b.add(one, yy)
        })
    ),
    unary!(
        Tanh,
        "tanh",
        F_F,
        "hyperbolic tangent",
        host!("tanh", host::slope_tanh_f64, host::slope_tanh_f32),
        HOST_CALL,
        Some(|b, _, y| {
            let yy = b.mul(y, y);
            let one = b.constant(b.ty(y), 1.0);
            b.sub(one, yy)
        })
    ),
    unary!(
        Sqrt,
        "sqrt",
        F_F,
        "square root",
        (Kind::Float { f64: f64::sqrt, f32: f32::sqrt, i64: None }, Lowering::Inline),
        SLOW_INSTRUCTION,
        // sqrt'(0) = +inf, the limit.
        Some(|b, _, y| {
            let half = b.constant(b.ty(y), 0.5);
            b.div(half, y)
        })
    ),
    unary!(
        Abs,
        "abs",
        Some("T -> T"),
        "absolute value",
        (Kind::Float { f64: f64::abs, f32: f32::abs, i64: Some(i64::wrapping_abs) }, Lowering::Inline),
        CHEAP,
        Some(sign_of)
    ),
    unary!(
        Log1p,
        "log1p",
        F_F,
        "log (1 + x), accurate near 0",
        host!("log1p", host::slope_log1p_f64, host::slope_log1p_f32),
        HOST_CALL,
        Some(|b, x, _| {
            let one = b.constant(b.ty(x), 1.0);
            let d = b.add(one, x);
            b.div(one, d)
        })
    ),
    unary!(
        Expm1,
        "expm1",
        F_F,
        "exp x - 1, accurate near 0",
        host!("expm1", host::slope_expm1_f64, host::slope_expm1_f32),
        HOST_CALL,
        Some(|b, _, y| {
            let one = b.constant(b.ty(y), 1.0);
            b.add(y, one)
        })
    ),
    unary!(
        Sigmoid,
        "sigmoid",
        F_F,
        "the logistic function 1 / (1 + exp (-x)) (also called `logistic`)",
        (
            Kind::Float {
                f64: |x| 1.0 / (1.0 + host::slope_exp_f64(-x)),
                f32: |x| 1.0 / (1.0 + host::slope_exp_f32(-x)),
                i64: None
            },
            Lowering::Inline
        ),
        HOST_CALL,
        Some(|b, _, y| {
            let one = b.constant(b.ty(y), 1.0);
            let c = b.sub(one, y);
            b.mul(y, c)
        })
    ),
    unary!(
        Floor,
        "floor",
        F_F,
        "largest integer not above x",
        host!("floor", host::slope_floor_f64, host::slope_floor_f32),
        HOST_CALL,
        None
    ),
    unary!(
        Ceil,
        "ceil",
        F_F,
        "smallest integer not below x",
        host!("ceil", host::slope_ceil_f64, host::slope_ceil_f32),
        HOST_CALL,
        None
    ),
    unary!(
        Lgamma,
        "lgamma",
        F_F,
        "log of the absolute value of the gamma function",
        host!("lgamma", host::slope_lgamma_f64, host::slope_lgamma_f32),
        HOST_CALL,
        Some(|b, x, _| b.unary(UnOp::Digamma, x))
    ),
    unary!(
        Digamma,
        "digamma",
        F_F,
        "the derivative of lgamma",
        host!("digamma", host::slope_digamma_f64, host::slope_digamma_f32),
        HOST_CALL,
        Some(|b, x, _| b.unary(UnOp::Trigamma, x))
    ),
    // ψ'' is not implemented: a NaN, not a silent zero, if it is ever used.
    unary!(
        Trigamma,
        "trigamma",
        F_F,
        "the derivative of digamma",
        host!("trigamma", host::slope_trigamma_f64, host::slope_trigamma_f32),
        HOST_CALL,
        Some(|b, x, _| b.constant(b.ty(x), f64::NAN))
    ),
    unary!(
        Erf,
        "erf",
        F_F,
        "the error function",
        host!("erf", host::slope_erf_f64, host::slope_erf_f32),
        HOST_CALL,
        Some(erf_partial)
    ),
    unary!(
        StopGradient,
        "stop_gradient",
        None,
        "the value, treated as a constant by differentiation",
        (Kind::Identity, Lowering::Inline),
        0,
        None
    ),
    unary!(
        Sinh,
        "sinh",
        F_F,
        "hyperbolic sine",
        host!("sinh", host::slope_sinh_f64, host::slope_sinh_f32),
        HOST_CALL,
        Some(|b, x, _| b.unary(UnOp::Cosh, x))
    ),
    unary!(
        Cosh,
        "cosh",
        F_F,
        "hyperbolic cosine",
        host!("cosh", host::slope_cosh_f64, host::slope_cosh_f32),
        HOST_CALL,
        Some(|b, x, _| b.unary(UnOp::Sinh, x))
    ),
    // 1 / sqrt (x² + 1)
    unary!(
        Asinh,
        "asinh",
        F_F,
        "inverse hyperbolic sine",
        host!("asinh", host::slope_asinh_f64, host::slope_asinh_f32),
        HOST_CALL,
        Some(|b, x, _| {
            let xx = b.mul(x, x);
            inverse_sqrt(b, xx, 1.0, 1.0)
        })
    ),
    // 1 / sqrt (x² - 1): +inf at 1, NaN below (outside the domain).
    unary!(
        Acosh,
        "acosh",
        F_F,
        "inverse hyperbolic cosine (x ≥ 1)",
        host!("acosh", host::slope_acosh_f64, host::slope_acosh_f32),
        HOST_CALL,
        Some(|b, x, _| {
            let xx = b.mul(x, x);
            inverse_sqrt(b, xx, 1.0, -1.0)
        })
    ),
    // 1 / (1 - x²)
    unary!(
        Atanh,
        "atanh",
        F_F,
        "inverse hyperbolic tangent (|x| < 1)",
        host!("atanh", host::slope_atanh_f64, host::slope_atanh_f32),
        HOST_CALL,
        Some(|b, x, _| {
            let xx = b.mul(x, x);
            let one = b.constant(b.ty(x), 1.0);
            let d = b.sub(one, xx);
            b.div(one, d)
        })
    ),
    // 1 / sqrt (1 - x²)
    unary!(
        Asin,
        "asin",
        F_F,
        "inverse sine (|x| ≤ 1)",
        host!("asin", host::slope_asin_f64, host::slope_asin_f32),
        HOST_CALL,
        Some(|b, x, _| {
            let xx = b.mul(x, x);
            inverse_sqrt(b, xx, -1.0, 1.0)
        })
    ),
    // -1 / sqrt (1 - x²)
    unary!(
        Acos,
        "acos",
        F_F,
        "inverse cosine (|x| ≤ 1)",
        host!("acos", host::slope_acos_f64, host::slope_acos_f32),
        HOST_CALL,
        Some(|b, x, _| {
            let xx = b.mul(x, x);
            let d = inverse_sqrt(b, xx, -1.0, 1.0);
            b.neg(d)
        })
    ),
    // 1 / (1 + x²)
    unary!(
        Atan,
        "atan",
        F_F,
        "inverse tangent",
        host!("atan", host::slope_atan_f64, host::slope_atan_f32),
        HOST_CALL,
        Some(|b, x, _| {
            let xx = b.mul(x, x);
            let one = b.constant(b.ty(x), 1.0);
            let d = b.add(one, xx);
            b.div(one, d)
        })
    ),
    // 1 / (3 y²): +inf at 0, the limit (as sqrt).
    unary!(
        Cbrt,
        "cbrt",
        F_F,
        "cube root (real, also of negative numbers)",
        host!("cbrt", host::slope_cbrt_f64, host::slope_cbrt_f32),
        HOST_CALL,
        Some(|b, _, y| {
            let yy = b.mul(y, y);
            let three = b.constant(b.ty(y), 3.0);
            let d = b.mul(three, yy);
            let one = b.constant(b.ty(y), 1.0);
            b.div(one, d)
        })
    ),
    unary!(
        Round,
        "round",
        F_F,
        "the nearest integer, halves to even (as NumPy's round)",
        host!("round", host::slope_round_f64, host::slope_round_f32),
        HOST_CALL,
        None
    ),
    unary!(
        Trunc,
        "trunc",
        F_F,
        "x rounded toward zero",
        host!("trunc", host::slope_trunc_f64, host::slope_trunc_f32),
        HOST_CALL,
        None
    ),
    unary!(
        Sign,
        "sign",
        Some("T -> T"),
        "-1, 0 or 1 by the sign of x (a float zero or NaN is returned as it is)",
        (Kind::Float { f64: sign_f64, f32: sign_f32, i64: Some(i64::signum) }, Lowering::Inline),
        CHEAP,
        None
    ),
    // softplus' = sigmoid.
    unary!(
        Softplus,
        "softplus",
        F_F,
        "log (1 + exp x), computed without overflow",
        host!("softplus", host::slope_softplus_f64, host::slope_softplus_f32),
        HOST_CALL,
        Some(|b, x, _| b.unary(UnOp::Sigmoid, x))
    ),
    unary!(
        IsNan,
        "isnan",
        Some("F -> bool"),
        "whether x is NaN",
        (Kind::Test(f64::is_nan), Lowering::Inline),
        CHEAP,
        None
    ),
    unary!(
        IsInf,
        "isinf",
        Some("F -> bool"),
        "whether x is +inf or -inf",
        (Kind::Test(f64::is_infinite), Lowering::Inline),
        CHEAP,
        None
    ),
];

/// Every binary primitive written as a function.
pub const BINARY: &[Binary] = &[
    Binary {
        op: BinOp::Atan2,
        name: "atan2",
        scheme: "F -> F -> F",
        doc: "the angle of the point (x, y), written atan2 y x (in [-π, π])",
        f64: |a, b| host::slope_atan2_f64(a, b),
        f32: |a, b| host::slope_atan2_f32(a, b),
        lowering: Lowering::Host("atan2"),
        cost: HOST_CALL,
        partials: atan2_partials,
    },
    Binary {
        op: BinOp::Hypot,
        name: "hypot",
        scheme: "F -> F -> F",
        doc: "sqrt (x² + y²) without overflow or underflow",
        f64: |a, b| host::slope_hypot_f64(a, b),
        f32: |a, b| host::slope_hypot_f32(a, b),
        lowering: Lowering::Host("hypot"),
        cost: HOST_CALL,
        partials: hypot_partials,
    },
    Binary {
        op: BinOp::Copysign,
        name: "copysign",
        scheme: "F -> F -> F",
        doc: "the magnitude of x with the sign of y, written copysign x y",
        f64: f64::copysign,
        f32: f32::copysign,
        lowering: Lowering::Inline,
        cost: CHEAP,
        partials: copysign_partials,
    },
];

/// The row of a unary primitive.
pub fn unary(op: UnOp) -> &'static Unary {
    &UNARY[op as usize]
}

/// The row of a binary operation, if it is a primitive function (not an operator).
pub fn binary(op: BinOp) -> Option<&'static Binary> {
    BINARY.iter().find(|r| r.op == op)
}

/// The cost weight of a binary operation: its row's, or for an operator
/// `SLOW_INSTRUCTION` (division, remainder, `**`) or `CHEAP`.
pub fn binary_cost(op: BinOp) -> u32 {
    match binary(op) {
        Some(row) => row.cost,
        None if matches!(op, BinOp::Div | BinOp::Rem | BinOp::Pow) => SLOW_INSTRUCTION,
        None => CHEAP,
    }
}

/// The builtin function of this source name (an alias's primitive too).
pub fn unary_named(name: &str) -> Option<&'static Unary> {
    let name = canonical(name);
    UNARY.iter().find(|r| r.name == name && r.scheme.is_some())
}

/// The binary builtin function of this source name.
pub fn binary_named(name: &str) -> Option<&'static Binary> {
    BINARY.iter().find(|r| r.name == name)
}

/// The primitive an alias names, or the name itself.
pub fn canonical(name: &str) -> &str {
    ALIASES.iter().find(|(a, _)| *a == name).map_or(name, |(_, p)| p)
}

impl Unary {
    /// The result's scalar type for an operand of type `x`, or `None` when
    /// the primitive does not apply to it (the verifiers' and the engines'
    /// one answer).
    pub fn result(&self, x: ScalarType) -> Option<ScalarType> {
        match (self.kind, x) {
            (Kind::Float { .. }, ScalarType::F64 | ScalarType::F32) => Some(x),
            (Kind::Float { i64: Some(_), .. }, ScalarType::I64) => Some(x),
            (Kind::Test(_), ScalarType::F64 | ScalarType::F32) => Some(ScalarType::Bool),
            (Kind::Not, ScalarType::Bool) | (Kind::Identity, _) => Some(x),
            _ => None,
        }
    }

    /// The IR type of the result for an operand of IR type `x` (the
    /// operand's type when the primitive does not apply; the verifier says so).
    pub fn result_type(&self, x: IrType) -> IrType {
        IrType { elem: self.result(x.elem).unwrap_or(x.elem), rank: x.rank }
    }
}

// Note [Adding a primitive]
// ~~~~~~~~~~~~~~~~~~~~~~~~~
// A row promises:
// - `kind` is the primitive's meaning. Native code must compute the same
//   bits: a `Lowering::Host` row's `Kind::Float` functions call the runtime
//   function native code calls (`host!`), and an `Inline` row's instruction
//   sequence in `jit` is checked against `kind` by the differential tests
//   (`jit`'s `unary_operations_match_the_interpreter` runs every row).
// - `partial` (`partials`) is the derivative both AD modes use: forward mode
//   multiplies it by the tangent, reverse mode by the cotangent. It is code
//   emitted into the derivative program, so it may use other primitives
//   (sinh's is cosh) and is itself differentiable — a Hessian differentiates
//   it again. At a point where the primitive is not differentiable the row
//   chooses a convention, and docs/ad.md lists it.
// - `cost` is HOST_CALL for anything that calls a host function; the
//   optimiser hoists such calls out of maps and reverse mode saves their
//   results instead of recomputing them.
// - `scheme` makes it a builtin: the checker instantiates it, the REPL's
//   `:help` prints it with `doc`, and `tests/programs/basics/math_functions`
//   and `ad/scalar_math_primitives` are where a new row gets its values and
//   derivatives checked on both engines (gradcheck: finite differences and
//   forward against reverse).

/// 1 / x (log's derivative).
fn reciprocal(b: &mut Builder, x: Atom, _: Atom) -> Atom {
    let one = b.constant(b.ty(x), 1.0);
    b.div(one, x)
}

/// 1 / sqrt (s·xx + c).
fn inverse_sqrt(b: &mut Builder, xx: Atom, s: f64, c: f64) -> Atom {
    let t = b.ty(xx);
    let sxx = if s == 1.0 { xx } else { b.neg(xx) };
    let cc = b.constant(t, c);
    let r = b.add(sxx, cc);
    let q = b.unary(UnOp::Sqrt, r);
    let one = b.constant(t, 1.0);
    b.div(one, q)
}

/// abs' = sign, with abs'(0) = 0.
fn sign_of(b: &mut Builder, x: Atom, _: Atom) -> Atom {
    let t = b.ty(x);
    let (zero, one, minus) = (b.constant(t, 0.0), b.constant(t, 1.0), b.constant(t, -1.0));
    let pos = b.bin(BinOp::Gt, x, zero);
    let neg = b.bin(BinOp::Lt, x, zero);
    let inner = b.select(neg, minus, zero);
    b.select(pos, one, inner)
}

/// erf' = 2/√π · exp (-x²).
fn erf_partial(b: &mut Builder, x: Atom, _: Atom) -> Atom {
    let xx = b.mul(x, x);
    let nxx = b.neg(xx);
    let e = b.unary(UnOp::Exp, nxx);
    let k = b.constant(b.ty(x), std::f64::consts::FRAC_2_SQRT_PI);
    b.mul(k, e)
}

fn sign_f64(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x
    }
}

fn sign_f32(x: f32) -> f32 {
    sign_f64(x as f64) as f32
}

/// atan2 y x: (x / (x² + y²), -y / (x² + y²)); NaN at the origin, where the
/// angle has no limit.
fn atan2_partials(b: &mut Builder, y: Atom, x: Atom, _: Atom) -> (Option<Atom>, Option<Atom>) {
    let yy = b.mul(y, y);
    let xx = b.mul(x, x);
    let r2 = b.add(xx, yy);
    let dy = b.div(x, r2);
    let q = b.div(y, r2);
    (Some(dy), Some(b.neg(q)))
}

/// hypot a c = y: (a / y, c / y), and (0, 0) at the origin (as abs'(0) = 0:
/// hypot a 0 = abs a).
fn hypot_partials(b: &mut Builder, a: Atom, c: Atom, y: Atom) -> (Option<Atom>, Option<Atom>) {
    let t = b.ty(y);
    let zero = b.constant(t, 0.0);
    let at_origin = b.bin(BinOp::Eq, y, zero);
    let one = b.constant(t, 1.0);
    let safe = b.select(at_origin, one, y);
    let da = b.div(a, safe);
    let dc = b.div(c, safe);
    (Some(b.select(at_origin, zero, da)), Some(b.select(at_origin, zero, dc)))
}

/// copysign a c: ±1 for a (1 when the signs agree, sign bits included), 0
/// for c (it only chooses a sign).
fn copysign_partials(b: &mut Builder, a: Atom, c: Atom, _: Atom) -> (Option<Atom>, Option<Atom>) {
    let one = b.constant(b.ty(a), 1.0);
    let sa = b.bin(BinOp::Copysign, one, a);
    let sc = b.bin(BinOp::Copysign, one, c);
    (Some(b.mul(sa, sc)), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_in_unop_order_and_cover_every_operation() {
        assert_eq!(UNARY.len(), UnOp::ALL.len());
        for (i, (row, op)) in UNARY.iter().zip(UnOp::ALL).enumerate() {
            assert_eq!(row.op, *op, "row {i}");
            assert_eq!(*op as usize, i);
        }
    }

    #[test]
    fn names_are_unique_and_aliases_name_primitives() {
        let mut names: Vec<&str> = UNARY.iter().map(|r| r.name).chain(BINARY.iter().map(|r| r.name)).collect();
        names.extend(ALIASES.iter().map(|(a, _)| *a));
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
        for (alias, p) in ALIASES {
            assert_eq!(unary_named(alias).map(|r| r.name), Some(*p));
        }
    }

    #[test]
    fn schemes_agree_with_evaluation() {
        for r in UNARY {
            let Some(scheme) = r.scheme else { continue };
            let want = match r.kind {
                Kind::Float { i64: Some(_), .. } => "T -> T",
                Kind::Float { i64: None, .. } => "F -> F",
                Kind::Test(_) => "F -> bool",
                Kind::Not | Kind::Identity => panic!("{} is not a function of the source", r.name),
            };
            assert_eq!(scheme, want, "{}", r.name);
        }
    }

    /// The f64 and f32 forms agree to f32 precision (NaN with NaN).
    fn close(name: &str, a: f64, b: f32) {
        let ok = (a.is_nan() && b.is_nan()) || (a - b as f64).abs() <= 1e-6 * a.abs().max(1.0);
        assert!(ok, "{name}: {a} vs {b}");
    }

    #[test]
    fn host_rows_evaluate_in_both_precisions() {
        for r in UNARY {
            if let Kind::Float { f64, f32, .. } = r.kind {
                for x in [0.5, 1.5] {
                    close(r.name, f64(x), f32(x as f32));
                }
            }
        }
        for r in BINARY {
            close(r.name, (r.f64)(0.5, -2.0), (r.f32)(0.5, -2.0));
        }
    }

    #[test]
    fn special_values() {
        let f = |op: UnOp| match unary(op).kind {
            Kind::Float { f64, .. } => f64,
            _ => unreachable!(),
        };
        assert_eq!(f(UnOp::Round)(2.5), 2.0);
        assert_eq!(f(UnOp::Round)(-3.5), -4.0);
        assert_eq!(f(UnOp::Trunc)(-2.7), -2.0);
        assert_eq!(f(UnOp::Cbrt)(-8.0), -2.0);
        assert_eq!(f(UnOp::Sign)(-0.0).to_bits(), (-0.0f64).to_bits());
        assert!(f(UnOp::Sign)(f64::NAN).is_nan());
        assert_eq!(f(UnOp::Softplus)(1000.0), 1000.0);
        assert_eq!(f(UnOp::Softplus)(-1000.0), 0.0);
        assert!((f(UnOp::Softplus)(0.0) - 2f64.ln()).abs() < 1e-16);
        assert!(f(UnOp::Softplus)(f64::NAN).is_nan());
    }
}
