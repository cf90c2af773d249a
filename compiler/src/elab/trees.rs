//! Elaboration of the `tree_…` builtins (Note [Trees] in types/check.rs).
//!
//! Input: trees as static values — records and tuples are already trees of
//! leaves here, each leaf a scalar atom or an array variable. Output: IR
//! that works on every number of every leaf: a function mapped over a leaf
//! array becomes one `map` per dimension; sums, sizes and flattening go leaf
//! by leaf in field order (records' fields sorted by name), row-major.
//!
//! Invariant: trees combined by `tree_map2`/`tree_map3` have one type, so
//! their leaves correspond one to one; sizes are checked at run time
//! (`E0202`) where the types do not prove them.

use super::{leaf, Elaborator, SVal, R};
use crate::diagnostic::Span;
use crate::ir::{Atom, BinOp, Const, Expr as IrExpr, IrType};
use crate::types::ScalarType;

impl<'a> Elaborator<'a> {
    /// `tree_map f t`, `tree_map2 f a b`, `tree_map3 f a b c`.
    pub(super) fn tree_map(&mut self, f: SVal<'a>, trees: Vec<SVal<'a>>, span: Span) -> R<SVal<'a>> {
        let mut leaves = Vec::new();
        for t in &trees {
            leaves.push(self.first_order_leaves(t, span, "a tree")?);
        }
        let mut out = Vec::new();
        for k in 0..leaves[0].len() {
            let group: Vec<Atom> = leaves.iter().map(|l| l[k]).collect();
            out.push(self.map_numbers(&f, &group, span)?);
        }
        Ok(Self::same_shape(&trees[0], &mut out.into_iter()))
    }

    /// `f` applied to the corresponding numbers of equally shaped leaves.
    fn map_numbers(&mut self, f: &SVal<'a>, leaves: &[Atom], span: Span) -> R<Atom> {
        if self.ty(leaves[0]).rank == 0 {
            let r = self.apply(f.clone(), leaves.iter().map(|l| SVal::Leaf(*l)).collect(), span)?;
            return Ok(leaf(&r));
        }
        let arrays: Vec<SVal<'a>> = leaves.iter().map(|l| SVal::Leaf(*l)).collect();
        let width = self.check_same_outer(&arrays, "trees passed to tree_map", span)?.unwrap_or(Atom::i64(0));
        let row_types: Vec<IrType> = leaves.iter().map(|l| self.ty(*l).row()).collect();
        let lam = self.lambda(&row_types, &["x"], |el, ps| {
            let rows: Vec<Atom> = ps.iter().map(|v| Atom::Var(*v)).collect();
            Ok(vec![el.map_numbers(f, &rows, span)?])
        })?;
        let ty = self.ty(lam.body.result[0]).lift();
        let arrays = leaves.iter().filter_map(|l| l.var()).collect();
        Ok(Atom::Var(self.emit(IrExpr::Map { width, lam, arrays }, &[ty], &["tm"], span)[0]))
    }

    /// `tree_sum t`: the sum of every number, leaf by leaf (`number` is
    /// the tree's number type, for the sum of a tree with no leaves).
    pub(super) fn tree_sum(&mut self, t: &SVal<'a>, number: ScalarType, span: Span) -> R<Atom> {
        let mut total = Atom::Const(Const::of(number, 0.0));
        for (k, l) in self.first_order_leaves(t, span, "a tree")?.into_iter().enumerate() {
            let flat = self.flat(l, span);
            let s = if self.ty(flat).rank == 0 {
                flat
            } else {
                let zero = Const::of(number, 0.0);
                self.reduce_scalar(BinOp::Add, zero, flat, span)?
            };
            total = if k == 0 { s } else { self.binop(BinOp::Add, total, s, IrType::scalar(number), span) };
        }
        Ok(total)
    }

    /// `tree_size t`: how many numbers the tree holds.
    pub(super) fn tree_size(&mut self, t: &SVal<'a>, span: Span) -> R<Atom> {
        let mut total = Atom::i64(0);
        for l in self.first_order_leaves(t, span, "a tree")? {
            let n = self.numbers_in(l, span);
            total = self.binop(BinOp::Add, total, n, IrType::I64, span);
        }
        Ok(total)
    }

    /// `tree_flatten t`: every number in one vector.
    pub(super) fn tree_flatten(&mut self, t: &SVal<'a>, number: ScalarType, span: Span) -> R<Atom> {
        let vector = IrType::array(number, 1);
        let mut out: Option<Atom> = None;
        for l in self.first_order_leaves(t, span, "a tree")? {
            let mut flat = self.flat(l, span);
            if self.ty(flat).rank == 0 {
                let elems = vec![flat];
                flat = self.emit1(IrExpr::ArrayLit { elem: IrType::scalar(number), elems }, vector, "flat", span);
            }
            out = Some(match out {
                None => flat,
                Some(Atom::Var(acc)) => {
                    let Atom::Var(x) = flat else { unreachable!("vectors are variables") };
                    self.emit1(IrExpr::Concat(acc, x), vector, "flat", span)
                }
                Some(Atom::Const(_)) => unreachable!("vectors are variables"),
            });
        }
        Ok(match out {
            Some(v) => v,
            None => {
                let zero = Atom::Const(Const::of(number, 0.0));
                self.emit1(IrExpr::Replicate { count: Atom::i64(0), value: zero }, vector, "flat", span)
            }
        })
    }

    /// `tree_unflatten like v`: `like`'s shape, filled from `v` in order;
    /// `v` must hold exactly as many numbers (E0202).
    pub(super) fn tree_unflatten(&mut self, like: &SVal<'a>, v: Atom, span: Span) -> R<SVal<'a>> {
        let Atom::Var(vector) = v else { unreachable!("vectors are variables") };
        let size = self.tree_size(like, span)?;
        let length = self.shape(v, 0, span);
        self.check_eq(length, size, "the length of tree_unflatten's vector and the tree's size".into(), span);
        let leaves = self.first_order_leaves(like, span, "a tree")?;
        let mut offset = Atom::i64(0);
        let mut out = Vec::new();
        for l in leaves {
            let t = self.ty(l);
            let n = self.numbers_in(l, span);
            let end = self.binop(BinOp::Add, offset, n, IrType::I64, span);
            let part = if t.rank == 0 {
                self.emit1(IrExpr::Index { array: vector, indices: vec![offset] }, t, "leaf", span)
            } else {
                let slice = IrExpr::Slice { array: vector, start: offset, end };
                let flat = self.emit1(slice, IrType::array(t.elem, 1), "leaf", span);
                let dims: Vec<Atom> = (0..t.rank).map(|d| self.shape(l, d, span)).collect();
                self.reshape(flat, &dims, span)?
            };
            out.push(part);
            offset = end;
        }
        Ok(Self::same_shape(like, &mut out.into_iter()))
    }

    /// The leaf as a vector (rank ≥ 1), or itself (a scalar).
    fn flat(&mut self, l: Atom, span: Span) -> Atom {
        let mut flat = l;
        while self.ty(flat).rank > 1 {
            let Atom::Var(a) = flat else { unreachable!("arrays are variables") };
            let t = self.ty(flat);
            flat = self.emit1(IrExpr::Flatten(a), IrType { elem: t.elem, rank: t.rank - 1 }, "flat", span);
        }
        flat
    }

    /// How many numbers a leaf holds: 1, or the product of its dimensions.
    fn numbers_in(&mut self, l: Atom, span: Span) -> Atom {
        let rank = self.ty(l).rank;
        let mut n = Atom::i64(1);
        for d in 0..rank {
            let s = self.shape(l, d, span);
            n = self.binop(BinOp::Mul, n, s, IrType::I64, span);
        }
        n
    }

    /// A vector of `dims`' product numbers as an array of shape `dims`.
    fn reshape(&mut self, flat: Atom, dims: &[Atom], span: Span) -> R<Atom> {
        if dims.len() == 1 {
            return Ok(flat);
        }
        let Atom::Var(array) = flat else { unreachable!("vectors are variables") };
        let elem = self.ty(flat).elem;
        let mut cols = Atom::i64(1);
        for d in &dims[1..] {
            cols = self.binop(BinOp::Mul, cols, *d, IrType::I64, span);
        }
        let rows = IrExpr::Unflatten { array, rows: dims[0], cols };
        let rows = self.emit1(rows, IrType::array(elem, 2), "rows", span);
        if dims.len() == 2 {
            return Ok(rows);
        }
        let Atom::Var(rows_var) = rows else { unreachable!("arrays are variables") };
        let inner = dims[1..].to_vec();
        let lam = self.lambda(&[IrType::array(elem, 1)], &["row"], |el, ps| {
            Ok(vec![el.reshape(Atom::Var(ps[0]), &inner, span)?])
        })?;
        let ty = IrType::array(elem, dims.len() as u32);
        Ok(Atom::Var(
            self.emit(IrExpr::Map { width: dims[0], lam, arrays: vec![rows_var] }, &[ty], &["shaped"], span)[0],
        ))
    }
}
