//! Vector loops: an innermost `for` loop over `f64` elements whose
//! iterations do not depend on each other runs [`LANES`] iterations at a
//! time in vector registers (`lanes` on the loop; `jit` generates the
//! vector body and a scalar loop for the remaining iterations).
//!
//! Input: a [`Func`] after the other loop passes. Output: the same function
//! with `lanes = LANES` on the loops [`classify`] accepts. Which loops: see
//! Note [Vector loops]; the classification is also what code generation
//! uses to decide, per variable, between a vector and a scalar register.

use super::alias::{Apart, PointsTo};
use super::simplify::Counts;
use crate::hash::HashMap;
use crate::ir::{BinOp, UnOp};
use crate::loops::{for_each_inst, Func, Inst, LVar, MTy, Operand, Rhs};

/// Lanes of a vector loop: two `f64` in a 128-bit register.
pub const LANES: u32 = 2;

/// How a variable of a vector loop's body varies across the lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// The same value in every lane: a scalar register.
    Uniform,
    /// An integer that is `k` larger in each next lane; lane 0's value in a
    /// scalar register (an index: contiguous when `k` is 1).
    Stride(i64),
    /// One value per lane: a vector register (`f64`, or a comparison mask).
    Varying,
}

pub fn run(f: &mut Func) {
    let points_to = PointsTo::of(f);
    let counts = Counts::of(f);
    let mut body = std::mem::take(&mut f.body);
    mark(f, &mut body, &points_to, &counts);
    f.body = body;
}

fn mark(f: &Func, insts: &mut [Inst], points_to: &PointsTo, counts: &Counts) {
    for k in 0..insts.len() {
        for b in insts[k].blocks_mut() {
            mark(f, b, points_to, counts);
        }
        let (before, rest) = insts.split_at_mut(k);
        if let Inst::For { index, body, lanes, .. } = &mut rest[0] {
            if *lanes == 1 && worth_it(body) && local_to(body, counts) {
                if let Some(classes) = classify(f, *index, body) {
                    if memory_independent(body, &classes, points_to, before) {
                        *lanes = LANES;
                    }
                }
            }
        }
    }
}

/// Something is computed on `f64` values (a load, a store of one).
fn worth_it(body: &[Inst]) -> bool {
    body.iter().any(|i| matches!(i, Inst::Store { elem: MTy::F64, .. }))
}

/// Every variable the body assigns is assigned once there and read only
/// there (no value carried from one iteration to the next or out of the loop).
fn local_to(body: &[Inst], counts: &Counts) -> bool {
    let mut defs: HashMap<LVar, u32> = HashMap::default();
    let mut uses: HashMap<LVar, u32> = HashMap::default();
    for_each_inst(body, &mut |i| {
        i.for_each_def(|v| *defs.entry(v).or_insert(0) += 1);
        i.for_each_use(|v| {
            *uses.entry(v).or_insert(0) += 1;
        });
    });
    defs.iter().all(|(v, n)| *n == 1 && counts.defs(*v) == 1 && uses.get(v).copied().unwrap_or(0) == counts.uses(*v))
}

/// The class of every variable the body assigns, or `None` when the body
/// does something that has no lane-wise form. Variables assigned outside
/// are uniform; the loop index has stride 1.
pub fn classify(f: &Func, index: LVar, body: &[Inst]) -> Option<HashMap<LVar, Lane>> {
    let mut classes: HashMap<LVar, Lane> = HashMap::default();
    classes.insert(index, Lane::Stride(1));
    for i in body {
        match i {
            Inst::Let(v, rhs) => {
                let c = class_of(f, &classes, f.ty(*v), rhs)?;
                if c == Lane::Varying && !matches!(f.ty(*v), MTy::F64 | MTy::Bool) {
                    return None;
                }
                classes.insert(*v, c);
            }
            Inst::Store { elem: MTy::F64, base, index, value } => {
                let class = |o: Operand| lane(&classes, o);
                if class(*base) != Lane::Uniform || class(*index) != Lane::Stride(1) {
                    return None;
                }
                if matches!(class(*value), Lane::Stride(_)) {
                    return None;
                }
            }
            _ => return None,
        }
    }
    Some(classes)
}

/// The class of an operand (constants and outer variables are uniform).
pub fn lane(classes: &HashMap<LVar, Lane>, o: Operand) -> Lane {
    match o {
        Operand::Var(v) => classes.get(&v).copied().unwrap_or(Lane::Uniform),
        Operand::Const(_) => Lane::Uniform,
    }
}

fn class_of(f: &Func, classes: &HashMap<LVar, Lane>, ty: MTy, rhs: &Rhs) -> Option<Lane> {
    let class = |o: Operand| lane(classes, o);
    let all_uniform = rhs.operands().iter().all(|o| class(*o) == Lane::Uniform);
    let stride = |o: Operand| match class(o) {
        Lane::Uniform => Some(0),
        Lane::Stride(k) => Some(k),
        Lane::Varying => None,
    };
    let float = |o: Operand| matches!(f.operand_type(o), MTy::F64);
    Some(match rhs {
        Rhs::Use(o) => class(*o),
        // Integers: strides add, and scale by constants.
        Rhs::Binary(op @ (BinOp::Add | BinOp::Sub), a, b) if ty == MTy::I64 => {
            let (x, y) = (stride(*a)?, stride(*b)?);
            stride_or_uniform(if *op == BinOp::Add { x.checked_add(y)? } else { x.checked_sub(y)? })
        }
        Rhs::Binary(BinOp::Mul, a, Operand::Const(crate::ir::Const::I64(c)))
        | Rhs::Binary(BinOp::Mul, Operand::Const(crate::ir::Const::I64(c)), a)
            if ty == MTy::I64 =>
        {
            stride_or_uniform(stride(*a)?.checked_mul(*c)?)
        }
        Rhs::Unary(UnOp::Neg, a) if ty == MTy::I64 => stride_or_uniform(stride(*a)?.checked_neg()?),
        Rhs::Load { elem: MTy::F64, base, index } if class(*base) == Lane::Uniform => match class(*index) {
            Lane::Uniform => Lane::Uniform,
            Lane::Stride(1) => Lane::Varying,
            _ => return None,
        },
        _ if all_uniform => Lane::Uniform,
        // Floats and their comparisons, lane by lane.
        Rhs::Binary(op, a, b)
            if float(*a)
                && matches!(op, BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Min | BinOp::Max)
                || float(*a) && op.is_comparison() =>
        {
            if matches!(class(*a), Lane::Stride(_)) || matches!(class(*b), Lane::Stride(_)) {
                return None;
            }
            Lane::Varying
        }
        Rhs::Unary(UnOp::Neg | UnOp::Abs | UnOp::Sqrt, a) if float(*a) => Lane::Varying,
        Rhs::Select(c, a, b) if ty == MTy::F64 && !matches!(class(*c), Lane::Stride(_)) => {
            if matches!(class(*a), Lane::Stride(_)) || matches!(class(*b), Lane::Stride(_)) {
                return None;
            }
            Lane::Varying
        }
        // `f64 i` of an index: lane l holds `f64 (i0 + k·l)`.
        Rhs::Convert(MTy::F64, a) if f.operand_type(*a) == MTy::I64 && stride(*a).is_some() => Lane::Varying,
        _ => return None,
    })
}

fn stride_or_uniform(k: i64) -> Lane {
    if k == 0 {
        Lane::Uniform
    } else {
        Lane::Stride(k)
    }
}

/// The lanes of one vector iteration touch disjoint elements: a buffer
/// stored to is reached through no other pointer of the body, and accessed
/// only at the index its stores use (so no lane reads what another writes).
/// `before`: the instructions of the loop's block before it.
fn memory_independent(body: &[Inst], classes: &HashMap<LVar, Lane>, points_to: &PointsTo, before: &[Inst]) -> bool {
    let mut stores = Vec::new();
    let mut loads = Vec::new();
    for i in body {
        match i {
            Inst::Store { base, index, .. } => stores.push((*base, *index)),
            Inst::Let(_, Rhs::Load { base, index, .. }) => loads.push((*base, *index)),
            _ => {}
        }
    }
    // A fresh buffer's pointer is the only way to it, unless the body copies it.
    let apart = Apart::new(points_to, before, &[body]);
    let may_alias = |a: Operand, b: Operand| a == b || !apart.apart(a, b);
    // Through a pointer that may reach a stored buffer, only the stored
    // element itself is accessed (loaded contiguously, like the store).
    stores.iter().all(|&(b, i)| {
        let apart_or_same = |&(c, k): &(Operand, Operand)| !may_alias(b, c) || (c == b && k == i);
        stores.iter().all(apart_or_same)
            && loads.iter().all(|l| apart_or_same(l) && (!may_alias(b, l.0) || lane(classes, l.1) == Lane::Stride(1)))
    })
}

// Note [Vector loops]
// ~~~~~~~~~~~~~~~~~~~
// A loop runs two iterations at once (`f64x2`) when every iteration is
// independent of the others and lane-wise: its body is straight-line (no
// branch, check or call that would have to happen per lane), every variable
// it assigns lives only within one iteration, every `f64` it loads is at
// `i + c` (contiguous: one vector load) or at an index that is the same for
// every iteration, every `f64` it stores is at `i + c`, and a buffer it
// stores to it reaches through no other pointer and loads only at the index
// it stores to (`alias.rs` tells which pointers may reach the same buffer).
// Integer arithmetic on the index stays scalar (lane 0's value; lane 1's is
// one stride further). Each lane then computes
// exactly what its iteration computed — the same operations on the same
// values in the same order — so the results are bit for bit the scalar
// loop's (`min`/`max` use the scalar NaN rules lane by lane). Reductions
// (an accumulator carried from one iteration to the next) are not
// vectorised: a sum is a left fold, and adding in two lanes would change its
// rounding. Host calls (`exp`, …) are not either: there is no vector form.
