//! The partial derivatives of scalar operations, shared by forward and
//! reverse mode (Futhark keeps its equivalent in `AD/Derivatives.hs`): the
//! operators' rules are here, the math primitives' are their rows in
//! `crate::prims`, which [`unary_partial`] and [`binary_partials`] consult.
//!
//! Each rule emits the partial derivatives of an operation at a point, as
//! atoms; `None` means "identically zero". Forward mode multiplies them by
//! tangents, reverse mode by the cotangent.
//!
//! Conventions at non-differentiable points (all in docs/ad.md):
//! `abs'(0) = 0`; `min`/`max` send the whole derivative to the first argument
//! on ties; `floor`, `ceil`, comparisons and integer operations have zero
//! derivative; `sqrt'(0) = +inf` (the limit); `x ** y` has no derivative with
//! respect to a constant exponent, so `x ** 2.0` is fine at `x <= 0`;
//! `lgamma` is differentiable twice (`digamma`, `trigamma`): a third derivative
//! is NaN rather than a wrong number.

use super::build::{is_const, Builder};
use crate::ir::{Atom, BinOp, Const, Expr, UnOp};

/// d op(x) / dx, given the operand `x` and the result `y` (the primitive's
/// row in `prims` holds it).
pub fn unary_partial(b: &mut Builder, op: UnOp, x: Atom, y: Atom) -> Option<Atom> {
    op.prim().partial.map(|d| d(b, x, y))
}

/// (d op / da, d op / db) at `a op b = y`; `want` says which are needed.
pub fn binary_partials(
    b: &mut Builder,
    op: BinOp,
    x: Atom,
    z: Atom,
    y: Atom,
    want: (bool, bool),
) -> (Option<Atom>, Option<Atom>) {
    let t = b.ty(x);
    if !t.elem.is_float() {
        return (None, None);
    }
    if let Some(row) = crate::prims::binary(op) {
        let (da, db) = (row.partials)(b, x, z, y);
        return (da.filter(|_| want.0), db.filter(|_| want.1));
    }
    let one = b.constant(t, 1.0);
    let zero = b.constant(t, 0.0);
    match op {
        BinOp::Add => (Some(one), Some(one)),
        BinOp::Sub => (Some(one), Some(b.constant(t, -1.0))),
        BinOp::Mul => (Some(z), Some(x)),
        BinOp::Div => {
            let da = if want.0 { Some(b.div(one, z)) } else { None };
            let db = if want.1 {
                let q = b.div(y, z);
                Some(b.neg(q))
            } else {
                None
            };
            (da, db)
        }
        BinOp::Pow => {
            let da = if want.0 {
                // b * a ** (b - 1), written as a power so that a = 0 stays finite.
                let e = b.sub(z, one);
                let p = if is_const(e, 0.0) { one } else { b.bin(BinOp::Pow, x, e) };
                Some(b.mul(z, p))
            } else {
                None
            };
            let db = if want.1 && !matches!(z, Atom::Const(_)) {
                let l = b.unary(UnOp::Log, x);
                Some(b.mul(l, y))
            } else {
                None
            };
            (da, db)
        }
        BinOp::Rem => {
            let q = b.div(x, z);
            let tq = b.emit1(Expr::Convert(crate::types::ScalarType::I64, q), crate::ir::IrType::I64, "t");
            let tf = b.emit1(Expr::Convert(t.elem, tq), t, "t");
            (Some(one), Some(b.neg(tf)))
        }
        BinOp::Min | BinOp::Max => {
            let cmp = if op == BinOp::Min { BinOp::Le } else { BinOp::Ge };
            let first = b.bin(cmp, x, z);
            (Some(b.select(first, one, zero)), Some(b.select(first, zero, one)))
        }
        BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::And | BinOp::Or => (None, None),
        // Integers only: never differentiated.
        BinOp::BitAnd | BinOp::BitOr | BinOp::BitXor | BinOp::Shl | BinOp::Shr => (None, None),
        BinOp::Atan2 | BinOp::Hypot | BinOp::Copysign => unreachable!("a row of prims::BINARY"),
    }
}

/// `Some(1)` as a constant of the type of `like`.
pub fn one_like(b: &Builder, like: Atom) -> Atom {
    Atom::Const(Const::of(b.ty(like).elem, 1.0))
}
