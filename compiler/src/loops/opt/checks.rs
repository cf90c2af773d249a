//! Check elimination by range analysis: a bounds or size check whose
//! condition follows from what is known where it stands disappears, and so
//! does a comparison, `min` or `max` whose outcome it decides.
//!
//! Input: a [`Func`]. Output: the same function without the checks
//! ([`is_check`]: `if ok {} else { fail … }`) that [`Facts::prove`] shows
//! cannot fail. What is known at a point: the ranges of the enclosing loops,
//! the conditions of the enclosing branches, the checks passed earlier in
//! the block (and in enclosing blocks), array dimensions being `>= 0`, and
//! the definitions of `min`/`max`. See Note [Range analysis] in `affine.rs`.
//!
//! A check that is not proved stays exactly as it is, so every failure
//! keeps its code, message, span and place.

use super::affine::{Affine, Defs, Facts};
use super::simplify::Counts;
use crate::hash::HashMap;
use crate::ir::{BinOp, Const, UnOp};
use crate::loops::{for_each_inst, Func, Inst, LVar, MTy, Operand, Rhs};

pub fn run(f: &mut Func) {
    let mut w = Walker::new(f);
    let mut body = std::mem::take(&mut f.body);
    w.block(&mut body);
    f.body = body;
}

/// Is `i` a check: `if ok {} else { fail … }`?
pub fn is_check(i: &Inst) -> Option<Operand> {
    match i {
        Inst::If { cond, then, els } if then.is_empty() && matches!(els.as_slice(), [Inst::Fail { .. }]) => Some(*cond),
        _ => None,
    }
}

/// The range analysis' view of a function: affine definitions, the
/// conditions boolean variables stand for, and the facts at the current point.
pub struct Walker {
    pub defs: Defs,
    conds: HashMap<LVar, Rhs>,
    pub facts: Facts,
    /// `v = select c a b` (integers, assigned once): `v` is `a` where `c` is
    /// known to hold, `b` where it is known not to.
    selects: HashMap<LVar, (Operand, Operand, Operand)>,
    /// Integer variables assigned once: the only ones a fact may mention,
    /// since a fact about a variable must hold wherever it is read.
    stable: Vec<bool>,
}

impl Walker {
    pub fn new(f: &Func) -> Walker {
        let counts = Counts::of(f);
        let mut conds = HashMap::default();
        let mut selects = HashMap::default();
        let mut facts = Facts::default();
        let defs = Defs::of(f);
        let stable: Vec<bool> =
            (0..f.vars.len()).map(|v| f.vars[v].1 == MTy::I64 && counts.single(LVar(v as u32))).collect();
        let stable_affine = |o: Operand| defs.affine(o).filter(|a| a.terms.iter().all(|(v, _)| stable[v.0 as usize]));
        // Array dimensions lie in 0..=MAX_ELEMENTS (no array is larger).
        for &d in &f.dims {
            facts.push(Affine::var(d));
            facts.push(
                Affine::constant(slope_runtime::native::MAX_ELEMENTS as i64)
                    .add_scaled(&Affine::var(d), -1)
                    .expect("small"),
            );
        }
        for_each_inst(&f.body, &mut |i| {
            let Inst::Let(v, rhs) = i else { return };
            if !counts.single(*v) {
                return;
            }
            match (f.ty(*v), rhs) {
                (MTy::Bool, _) => {
                    conds.insert(*v, rhs.clone());
                }
                (MTy::I64, Rhs::Select(c, a, b)) => {
                    selects.insert(*v, (*c, *a, *b));
                }
                (MTy::I64, Rhs::Binary(op @ (BinOp::Min | BinOp::Max), a, b)) => {
                    let v = Affine::var(*v);
                    for o in [a, b] {
                        if let Some(o) = stable_affine(*o) {
                            if *op == BinOp::Min {
                                facts.le(&v, &o);
                            } else {
                                facts.le(&o, &v);
                            }
                        }
                    }
                }
                _ => {}
            }
        });
        Walker { defs, conds, selects, facts, stable }
    }

    /// `o` as an affine expression of stable variables (a `select` whose
    /// condition the facts decide is its chosen operand).
    pub fn affine(&self, o: Operand) -> Option<Affine> {
        self.affine_depth(o, 4)
    }

    fn affine_depth(&self, o: Operand, depth: u32) -> Option<Affine> {
        let mut a = self.defs.affine(o)?;
        if depth > 0 {
            for (v, k) in a.terms.clone() {
                let Some(&(c, x, y)) = self.selects.get(&v) else { continue };
                let chosen = if self.proves(c) {
                    x
                } else if self.refutes(c) {
                    y
                } else {
                    continue;
                };
                let e = self.affine_depth(chosen, depth - 1)?;
                a = a.add_scaled(&Affine::var(v), k.checked_neg()?)?.add_scaled(&e, k)?;
            }
        }
        a.terms.iter().all(|(v, _)| self.stable[v.0 as usize]).then_some(a)
    }

    /// Whether `cond` is false wherever the current facts hold.
    fn refutes(&self, cond: Operand) -> bool {
        match cond {
            Operand::Const(Const::Bool(b)) => !b,
            Operand::Var(c) => match self.conds.get(&c) {
                Some(Rhs::Binary(op, a, b)) if op.is_comparison() => {
                    self.proves_rhs(&Rhs::Binary(negate(*op), *a, *b), 4)
                }
                _ => false,
            },
            Operand::Const(_) => false,
        }
    }

    /// Records what `cond` being `holds` says about integers.
    pub fn assume(&mut self, cond: Operand, holds: bool) {
        self.assume_depth(cond, holds, 8);
    }

    fn assume_depth(&mut self, cond: Operand, holds: bool, depth: u32) {
        let Operand::Var(c) = cond else { return };
        let Some(rhs) = self.conds.get(&c).cloned() else { return };
        if depth == 0 {
            return;
        }
        match (rhs, holds) {
            (Rhs::InRange { index, bound }, true) => {
                if let (Some(i), Some(n)) = (self.affine(index), self.affine(bound)) {
                    self.facts.le(&Affine::constant(0), &i);
                    self.facts.lt(&i, &n);
                }
            }
            (Rhs::Binary(BinOp::And, a, b), true) | (Rhs::Binary(BinOp::Or, a, b), false) => {
                self.assume_depth(a, holds, depth - 1);
                self.assume_depth(b, holds, depth - 1);
            }
            (Rhs::Unary(UnOp::Not, a), _) => self.assume_depth(a, !holds, depth - 1),
            (Rhs::Use(a), _) => self.assume_depth(a, holds, depth - 1),
            (Rhs::Binary(op, a, b), _) if op.is_comparison() => {
                let (Some(a), Some(b)) = (self.affine(a), self.affine(b)) else { return };
                let op = if holds { op } else { negate(op) };
                match op {
                    BinOp::Lt => self.facts.lt(&a, &b),
                    BinOp::Le => self.facts.le(&a, &b),
                    BinOp::Gt => self.facts.lt(&b, &a),
                    BinOp::Ge => self.facts.le(&b, &a),
                    BinOp::Eq => {
                        self.facts.le(&a, &b);
                        self.facts.le(&b, &a);
                    }
                    // Next to a bound known already, a difference is a strict
                    // inequality: `j != 0` with `j >= 0` is `j >= 1` (the
                    // `else` of a loop's first-iteration test).
                    BinOp::Ne => {
                        let (Some(ab), Some(ba)) = (a.sub(&b), b.sub(&a)) else { return };
                        if self.facts.prove(&ab) {
                            self.facts.lt(&b, &a);
                        } else if self.facts.prove(&ba) {
                            self.facts.lt(&a, &b);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// Whether `cond` is true wherever the current facts hold.
    pub fn proves(&self, cond: Operand) -> bool {
        self.proves_depth(cond, 8)
    }

    fn proves_depth(&self, cond: Operand, depth: u32) -> bool {
        let c = match cond {
            Operand::Const(Const::Bool(b)) => return b,
            Operand::Var(c) => c,
            Operand::Const(_) => return false,
        };
        let Some(rhs) = self.conds.get(&c) else { return false };
        if depth == 0 {
            return false;
        }
        self.proves_rhs(rhs, depth)
    }

    /// The value of a boolean right-hand side or of a `min`/`max`, when the
    /// facts decide it.
    pub fn decide(&self, rhs: &Rhs) -> Option<Operand> {
        match rhs {
            Rhs::Binary(op @ (BinOp::Min | BinOp::Max), a, b) => {
                let (x, y) = (self.affine(*a)?, self.affine(*b)?);
                let a_le_b = self.facts.prove(&y.sub(&x)?);
                let b_le_a = !a_le_b && self.facts.prove(&x.sub(&y)?);
                match (op, a_le_b, b_le_a) {
                    (BinOp::Min, true, _) | (BinOp::Max, _, true) => Some(*a),
                    (BinOp::Min, _, true) | (BinOp::Max, true, _) => Some(*b),
                    _ => None,
                }
            }
            Rhs::Binary(op, a, b) if op.is_comparison() => {
                if self.proves_rhs(rhs, 8) {
                    Some(Operand::Const(Const::Bool(true)))
                } else if self.proves_rhs(&Rhs::Binary(negate(*op), *a, *b), 8) {
                    Some(Operand::Const(Const::Bool(false)))
                } else {
                    None
                }
            }
            Rhs::InRange { .. } => self.proves_rhs(rhs, 8).then_some(Operand::Const(Const::Bool(true))),
            _ => None,
        }
    }

    fn proves_rhs(&self, rhs: &Rhs, depth: u32) -> bool {
        match rhs {
            Rhs::InRange { index, bound } => match (self.affine(*index), self.affine(*bound)) {
                (Some(i), Some(n)) => self.facts.in_range(&i, &Affine::constant(0), &n),
                _ => false,
            },
            Rhs::Binary(BinOp::And, a, b) => self.proves_depth(*a, depth - 1) && self.proves_depth(*b, depth - 1),
            Rhs::Binary(BinOp::Or, a, b) => self.proves_depth(*a, depth - 1) || self.proves_depth(*b, depth - 1),
            Rhs::Use(a) => self.proves_depth(*a, depth - 1),
            Rhs::Binary(op, a, b) if op.is_comparison() => {
                let (Some(a), Some(b)) = (self.affine(*a), self.affine(*b)) else { return false };
                let (Some(ab), Some(ba)) = (a.sub(&b), b.sub(&a)) else { return false };
                let strict = |d: &Affine| d.plus(-1).is_some_and(|d| self.facts.prove(&d));
                match op {
                    BinOp::Lt => strict(&ba),
                    BinOp::Le => self.facts.prove(&ba),
                    BinOp::Gt => strict(&ab),
                    BinOp::Ge => self.facts.prove(&ab),
                    BinOp::Eq => self.facts.prove(&ab) && self.facts.prove(&ba),
                    _ => false,
                }
            }
            _ => false,
        }
    }

    /// Enters a loop body: `start <= index < bound`.
    pub fn enter_for(&mut self, index: LVar, start: Operand, bound: Operand) {
        let j = Affine::var(index);
        if let Some(s) = self.affine(start) {
            self.facts.le(&s, &j);
        }
        if let Some(n) = self.affine(bound) {
            self.facts.lt(&j, &n);
        }
    }

    fn block(&mut self, insts: &mut Vec<Inst>) {
        let mark = self.facts.len();
        let mut out = Vec::with_capacity(insts.len());
        for mut i in std::mem::take(insts) {
            if let Some(cond) = is_check(&i) {
                if self.proves(cond) {
                    continue;
                }
                self.assume(cond, true);
                out.push(i);
                continue;
            }
            match &mut i {
                Inst::Let(_, rhs) => {
                    if let Some(o) = self.decide(rhs) {
                        *rhs = Rhs::Use(o);
                    }
                }
                Inst::For { index, start, bound, body, .. } => {
                    let m = self.facts.len();
                    self.enter_for(*index, *start, *bound);
                    self.block(body);
                    self.facts.truncate(m);
                }
                Inst::If { cond, then, els } => {
                    let m = self.facts.len();
                    self.assume(*cond, true);
                    self.block(then);
                    self.facts.truncate(m);
                    self.assume(*cond, false);
                    self.block(els);
                    self.facts.truncate(m);
                }
                Inst::While { cond, body, .. } => {
                    let m = self.facts.len();
                    self.block(cond);
                    self.facts.truncate(m);
                    self.block(body);
                    self.facts.truncate(m);
                }
                _ => {}
            }
            out.push(i);
        }
        self.facts.truncate(mark);
        *insts = out;
    }
}

/// The comparison that holds when `op` does not.
fn negate(op: BinOp) -> BinOp {
    match op {
        BinOp::Lt => BinOp::Ge,
        BinOp::Le => BinOp::Gt,
        BinOp::Gt => BinOp::Le,
        BinOp::Ge => BinOp::Lt,
        BinOp::Eq => BinOp::Ne,
        BinOp::Ne => BinOp::Eq,
        op => op,
    }
}
