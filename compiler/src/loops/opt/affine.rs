//! Affine integer expressions over loop-IR variables, and a small prover of
//! linear inequalities between them: the range analysis the loop passes
//! share (`split` reads index comparisons, `checks` proves indices in range).
//!
//! An [`Affine`] is `c + Σ kᵢ·vᵢ` over `i64` variables. [`Defs`] expands a
//! variable assigned once by an affine right-hand side (`a + b`, `a - b`,
//! `k * a`, a copy) into its definition, so `j - 1` and `(n - 1) - j` are seen
//! through. [`Facts`] is a stack of inequalities `e >= 0` known at a point
//! (loop ranges, branch conditions, passed checks, `min`/`max` definitions,
//! array dimensions); [`Facts::prove`] searches for a combination of them
//! that shows a goal. See Note [Range analysis].
//!
//! Integer arithmetic in the loop IR wraps; the analysis reasons about
//! mathematical integers. That is sound for the values it reasons about —
//! indices and sizes, which lie far inside ±2^62 (arrays hold at most 2^40
//! elements) — and it never proves anything about a product of two
//! variables, where wrapping could bite.

use super::simplify::Counts;
use crate::hash::HashMap;
use crate::ir::{BinOp, Const};
use crate::loops::{for_each_inst, Func, Inst, LVar, MTy, Operand, Rhs};

/// `c + Σ k·v`, terms sorted by variable with non-zero coefficients.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Affine {
    pub terms: Vec<(LVar, i64)>,
    pub c: i64,
}

impl Affine {
    pub fn constant(c: i64) -> Affine {
        Affine { terms: Vec::new(), c }
    }

    pub fn var(v: LVar) -> Affine {
        Affine { terms: vec![(v, 1)], c: 0 }
    }

    pub fn is_const(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn coeff(&self, v: LVar) -> i64 {
        self.terms.iter().find(|(w, _)| *w == v).map_or(0, |(_, k)| *k)
    }

    /// `self + k·other`, or `None` when a coefficient or the constant leaves
    /// the range where run-time arithmetic cannot wrap (Note [Affine without
    /// wrapping]).
    pub fn add_scaled(&self, other: &Affine, k: i64) -> Option<Affine> {
        let mut terms: Vec<(LVar, i64)> = self.terms.clone();
        for &(v, m) in &other.terms {
            let km = m.checked_mul(k)?;
            match terms.iter_mut().find(|(w, _)| *w == v) {
                Some(t) => t.1 = t.1.checked_add(km)?,
                None => terms.push((v, km)),
            }
        }
        terms.retain(|(_, k)| *k != 0);
        terms.sort_by_key(|(v, _)| *v);
        let c = self.c.checked_add(other.c.checked_mul(k)?)?;
        let small =
            c.unsigned_abs() <= MAX_CONST as u64 && terms.iter().all(|(_, k)| k.unsigned_abs() <= MAX_COEFF as u64);
        small.then_some(Affine { terms, c })
    }

    pub fn add(&self, other: &Affine) -> Option<Affine> {
        self.add_scaled(other, 1)
    }

    pub fn sub(&self, other: &Affine) -> Option<Affine> {
        self.add_scaled(other, -1)
    }

    pub fn plus(&self, c: i64) -> Option<Affine> {
        Some(Affine { terms: self.terms.clone(), c: self.c.checked_add(c)? })
    }

    pub fn scale(&self, k: i64) -> Option<Affine> {
        Affine::constant(0).add_scaled(self, k)
    }
}

/// The largest coefficient and constant an affine expression may have
/// (Note [Affine without wrapping]).
pub const MAX_COEFF: i64 = 1 << 20;
pub const MAX_CONST: i64 = 1 << 40;

// Note [Affine without wrapping]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Integer arithmetic in the loop IR wraps; affine algebra is over the
// integers. They agree only while no intermediate value wraps. Array
// dimensions lie in 0..=2^40 and loop indices between their bounds, so an
// expression with coefficients up to 2^20 and a constant up to 2^40 over them
// stays far from 2^63. Larger coefficients or constants (`9223372036854775807
// * n`, `m - i64::MIN`, which wrap for ordinary sizes) make the expression
// not affine at all, so nothing is proved from it: the fuzzer found a
// negative `iota` size "proved" non-negative that way, reported as a size
// mismatch by native code and as a negative size by the interpreter.
// (A variable that is neither a dimension nor a loop index — an `i64`
// parameter — is not bounded by this; facts about it come only from checks
// and branches the program itself makes.)

/// The affine definitions of the variables assigned once.
pub struct Defs {
    defs: HashMap<LVar, Affine>,
}

/// How many definitions deep an expansion goes.
const EXPAND: usize = 16;

impl Defs {
    pub fn of(f: &Func) -> Defs {
        let counts = Counts::of(f);
        let mut defs = HashMap::default();
        for_each_inst(&f.body, &mut |i| {
            if let Inst::Let(v, rhs) = i {
                if counts.single(*v) && f.ty(*v) == MTy::I64 {
                    if let Some(a) = rhs_affine(rhs, &|w| counts.single(w)) {
                        defs.insert(*v, a);
                    }
                }
            }
        });
        Defs { defs }
    }

    /// `o` as an affine expression, definitions expanded.
    pub fn affine(&self, o: Operand) -> Option<Affine> {
        let mut a = match o {
            Operand::Const(Const::I64(c)) if c.unsigned_abs() <= MAX_CONST as u64 => Affine::constant(c),
            Operand::Var(v) => Affine::var(v),
            Operand::Const(_) => return None,
        };
        for _ in 0..EXPAND {
            let Some(&(v, k)) = a.terms.iter().find(|(v, _)| self.defs.contains_key(v)) else { break };
            let def = &self.defs[&v];
            a = a.add_scaled(&Affine::var(v), k.checked_neg()?)?.add_scaled(def, k)?;
        }
        Some(a)
    }
}

/// The right-hand side as an affine expression of its operands (one level),
/// when its operands name one value each (`stable`).
fn rhs_affine(rhs: &Rhs, stable: &dyn Fn(LVar) -> bool) -> Option<Affine> {
    let op = |o: &Operand| match o {
        Operand::Const(Const::I64(c)) if c.unsigned_abs() <= MAX_CONST as u64 => Some(Affine::constant(*c)),
        Operand::Var(v) if stable(*v) => Some(Affine::var(*v)),
        _ => None,
    };
    match rhs {
        Rhs::Use(a) => op(a),
        Rhs::Binary(BinOp::Add, a, b) => op(a)?.add(&op(b)?),
        Rhs::Binary(BinOp::Sub, a, b) => op(a)?.sub(&op(b)?),
        Rhs::Binary(BinOp::Mul, a, Operand::Const(Const::I64(k)))
        | Rhs::Binary(BinOp::Mul, Operand::Const(Const::I64(k)), a) => op(a)?.scale(*k),
        Rhs::Unary(crate::ir::UnOp::Neg, a) => op(a)?.scale(-1),
        _ => None,
    }
}

/// Inequalities `e >= 0` known at the current point of a walk: a stack the
/// walker pushes to when it enters a loop or a branch or passes a check,
/// and truncates when it leaves the block.
#[derive(Default)]
pub struct Facts {
    facts: Vec<Affine>,
    /// For each variable, the positions in `facts` of the facts that
    /// mention it, in increasing order: a proof step looks only at those
    /// (a function's walk holds hundreds of facts — every array dimension
    /// is one — and scanning them all at every step was a twentieth of ht's
    /// compile).
    with_var: HashMap<LVar, Vec<u32>>,
}

/// How many facts one proof may combine.
const DEPTH: usize = 5;

impl Facts {
    pub fn len(&self) -> usize {
        self.facts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }

    pub fn truncate(&mut self, n: usize) {
        for f in self.facts.drain(n.min(self.facts.len())..) {
            for (v, _) in &f.terms {
                let at = self.with_var.get_mut(v).expect("indexed when pushed");
                // Positions were pushed in increasing order: the dropped ones are last.
                while at.last().is_some_and(|&k| k as usize >= n) {
                    at.pop();
                }
            }
        }
    }

    /// The facts that mention `v`, in the order they were recorded.
    fn mentioning(&self, v: LVar) -> impl Iterator<Item = &Affine> {
        self.with_var.get(&v).into_iter().flatten().map(|&k| &self.facts[k as usize])
    }

    /// Records `e >= 0`.
    pub fn push(&mut self, e: Affine) {
        let Some(&(first, _)) = e.terms.first() else { return };
        if self.mentioning(first).any(|f| *f == e) {
            return;
        }
        let k = self.facts.len() as u32;
        for (v, _) in &e.terms {
            self.with_var.entry(*v).or_default().push(k);
        }
        self.facts.push(e);
    }

    /// Records `a <= b`.
    pub fn le(&mut self, a: &Affine, b: &Affine) {
        if let Some(d) = b.sub(a) {
            self.push(d);
        }
    }

    /// Records `a < b`.
    pub fn lt(&mut self, a: &Affine, b: &Affine) {
        if let Some(d) = b.sub(a).and_then(|d| d.plus(-1)) {
            self.push(d);
        }
    }

    /// Whether `e >= 0` follows from the facts: `e` minus a non-negative
    /// multiple of a fact that shares a variable with it must follow in
    /// turn (a depth-bounded search; see Note [Range analysis]).
    pub fn prove(&self, e: &Affine) -> bool {
        self.search(e, DEPTH)
    }

    fn search(&self, e: &Affine, depth: usize) -> bool {
        if e.is_const() {
            return e.c >= 0;
        }
        if depth == 0 {
            return false;
        }
        // Eliminate the latest variable of e (terms are sorted, and later
        // variables are defined later: a loop index before its bound):
        // e = k·f + rest with f >= 0 and k > 0, so rest >= 0 suffices.
        let &(v, ke) = e.terms.last().expect("not constant");
        self.mentioning(v).any(|f| {
            let kf = f.coeff(v);
            if kf == 0 || (ke > 0) != (kf > 0) {
                return false;
            }
            // -(ke / kf) when kf divides ke; none when that overflows (i64::MIN / -1).
            let scale =
                (ke.checked_rem(kf) == Some(0)).then(|| ke.checked_div(kf).and_then(i64::checked_neg)).flatten();
            scale.and_then(|k| e.add_scaled(f, k)).is_some_and(|rest| self.search(&rest, depth - 1))
        })
    }

    /// Whether `lo <= e < hi` follows.
    pub fn in_range(&self, e: &Affine, lo: &Affine, hi: &Affine) -> bool {
        let (Some(a), Some(b)) = (e.sub(lo), hi.sub(e).and_then(|d| d.plus(-1))) else { return false };
        self.prove(&a) && self.prove(&b)
    }
}

// Note [Range analysis]
// ~~~~~~~~~~~~~~~~~~~~~
// Lowering leaves a check before every load whose index it could not prove
// in range from the facts it tracks (loop indices below their bound, sizes
// checked equal). What it cannot see is arithmetic: `x[j - 1]` in a loop that
// starts at 1 after index-set splitting, `x[(n - 1) - j]` in a reversed
// loop, `x[0]` in a branch taken only when the loop runs. The range analysis
// sees through it with affine expressions: every integer variable assigned
// once by `+`, `-`, a constant multiple or a copy is replaced by its
// definition, and a goal `e >= 0` is proved by subtracting facts `f >= 0`
// (scaled to cancel a term) until a non-negative constant remains:
//
//     goal  n - 1 - (j - 1) >= 0      (the upper bound of `x[j - 1]`)
//     fact  n - 1 - j       >= 0      (j < n, the loop's bound)
//     rest  1               >= 0      ✓
//
// Facts come from loop ranges (`start <= j < bound`), branch conditions
// (`a < b`, `a == b`, `i in 0..n`, `&&` of those) in the branch they guard,
// checks already passed (in the rest of their block), definitions by `min`
// and `max` (`min a b <= a`), and array dimensions (`>= 0`). The search is
// depth-bounded and greedy, so it can miss proofs; it never proves a false
// goal, because each step only uses facts that hold at the point of the goal.
