//! Elaboration of the built-in functions: combinators become IR nodes with
//! lambdas specialised on the spot, AD operators become `jvp`/`vjp` nodes
//! (Jacobians and Hessians as maps of those), math becomes scalar operations.

use super::{collect_leaves, leaf, Callee, Closure, Elaborator, SVal, R};
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::ir::{Atom, BinOp, Const, Expr as IrExpr, IrType, UnOp, Var};
use crate::prims;
use crate::types::{builtins, ScalarType, Type};
use std::rc::Rc;

/// The number type of a `tree_…` builtin's result (`F` or `[]F`).
fn number_type(result: &Type) -> ScalarType {
    match result.strip_arrays().0 {
        Type::Scalar(s) => *s,
        _ => ScalarType::F64,
    }
}

/// The canonical name and the number of arguments of a builtin.
pub(super) fn arity(name: &str) -> Option<(&'static str, usize)> {
    let (bname, scheme, _) = builtins::all().iter().find(|(n, _, _)| *n == name)?;
    // Count top-level arrows of the scheme.
    let mut depth = 0i32;
    let mut arrows = 0;
    let bytes = scheme.as_bytes();
    for (i, c) in bytes.iter().enumerate() {
        match c {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth -= 1,
            b'-' if depth == 0 && bytes.get(i + 1) == Some(&b'>') => arrows += 1,
            _ => {}
        }
    }
    Some((bname, arrows))
}

/// The body of [`Elaborator::over_indices`]: leaves for one index of the space.
type IndexBody<'f, 'a> = dyn FnMut(&mut Elaborator<'a>, &[Atom]) -> R<Vec<Atom>> + 'f;

impl<'a> Elaborator<'a> {
    pub(super) fn builtin(&mut self, name: &str, args: Vec<SVal<'a>>, app_ty: &Type, span: Span) -> R<SVal<'a>> {
        let mut args = args.into_iter();
        let mut next = || args.next().expect("builtins are applied to all their arguments");
        Ok(match name {
            "map" | "map2" | "map3" => {
                let f = next();
                let arrays: Vec<SVal<'a>> = std::iter::from_fn(|| args.next()).collect();
                self.map_n(f, arrays, span)?
            }
            "tree_map" | "tree_map2" | "tree_map3" => {
                let f = next();
                let trees: Vec<SVal<'a>> = std::iter::from_fn(|| args.next()).collect();
                self.tree_map(f, trees, span)?
            }
            "tree_sum" => SVal::Leaf(self.tree_sum(&next(), number_type(app_ty), span)?),
            "tree_size" => SVal::Leaf(self.tree_size(&next(), span)?),
            "tree_flatten" => SVal::Leaf(self.tree_flatten(&next(), number_type(app_ty), span)?),
            "tree_unflatten" => {
                let (like, v) = (next(), leaf(&next()));
                self.tree_unflatten(&like, v, span)?
            }
            "tabulate" => {
                let n = leaf(&next());
                let f = next();
                let iota = self.emit1(IrExpr::Iota(n), IrType::array(ScalarType::I64, 1), "iota", span);
                self.map_n(f, vec![SVal::Leaf(iota)], span)?
            }
            "reduce" | "scan" => {
                let (op, ne, xs) = (next(), next(), next());
                self.reduce_like(name == "scan", op, ne, xs, span)?
            }
            "sum" | "product" | "maximum" | "minimum" => {
                let xs = leaf(&next());
                let t = self.ty(xs).row();
                let (op, ne) = match name {
                    "sum" => (BinOp::Add, Const::of(t.elem, 0.0)),
                    "product" => (BinOp::Mul, Const::of(t.elem, 1.0)),
                    "maximum" => (BinOp::Max, lowest(t.elem)),
                    _ => (BinOp::Min, highest(t.elem)),
                };
                SVal::Leaf(self.reduce_scalar(op, ne, xs, span)?)
            }
            "argmax" | "argmin" => {
                let xs = leaf(&next());
                SVal::Leaf(self.arg_extremum(name == "argmax", xs, span)?)
            }
            "argsort" | "argsort_desc" => SVal::Leaf(self.argsort(leaf(&next()), name == "argsort_desc", span)),
            "sort" | "sort_desc" => {
                let xs = leaf(&next());
                let p = self.argsort(xs, name == "sort_desc", span);
                SVal::Leaf(self.gather(xs, p, span)?)
            }
            "rank" => {
                let xs = leaf(&next());
                let p = self.argsort(xs, false, span);
                let n = self.shape(xs, 0, span);
                let i64s = IrType::array(ScalarType::I64, 1);
                let zeros = self.emit1(IrExpr::Replicate { count: n, value: Atom::i64(0) }, i64s, "zeros", span);
                let positions = self.emit1(IrExpr::Iota(n), i64s, "iota", span);
                let (Atom::Var(dest), Atom::Var(indices), Atom::Var(values)) = (zeros, p, positions) else {
                    unreachable!()
                };
                SVal::Leaf(self.emit1(IrExpr::Scatter { dest, indices, values }, i64s, "rank", span))
            }
            "top_k" => {
                let (k, xs) = (leaf(&next()), leaf(&next()));
                let p = self.argsort(xs, true, span);
                let Atom::Var(pv) = p else { unreachable!() };
                let slice = IrExpr::Slice { array: pv, start: Atom::i64(0), end: k };
                let first = self.emit1(slice, IrType::array(ScalarType::I64, 1), "top", span);
                SVal::Tuple(vec![SVal::Leaf(self.gather(xs, first, span)?), SVal::Leaf(first)])
            }
            "iota" => {
                let n = leaf(&next());
                SVal::Leaf(self.emit1(IrExpr::Iota(n), IrType::array(ScalarType::I64, 1), "iota", span))
            }
            "replicate" => {
                let n = leaf(&next());
                let v = next();
                self.per_leaf(&v, span, |el, l| {
                    let t = el.ty(l).lift();
                    Ok(el.emit1(IrExpr::Replicate { count: n, value: l }, t, "rep", span))
                })?
            }
            "zip" | "zip3" => {
                let arrays: Vec<SVal<'a>> = std::iter::from_fn(|| args.next()).collect();
                self.check_same_outer(&arrays, "arguments of zip", span)?;
                SVal::Tuple(arrays)
            }
            "unzip" | "unzip3" => next(),
            "transpose" | "reverse" | "flatten" => {
                let v = next();
                self.per_leaf(&v, span, |el, l| {
                    let Atom::Var(a) = l else { unreachable!() };
                    let t = el.ty(l);
                    Ok(match name {
                        "transpose" => el.emit1(IrExpr::Transpose(a), t, "tr", span),
                        "reverse" => el.emit1(IrExpr::Reverse(a), t, "rev", span),
                        _ => el.emit1(IrExpr::Flatten(a), IrType { elem: t.elem, rank: t.rank - 1 }, "flat", span),
                    })
                })?
            }
            "unflatten" => {
                let (rows, cols, v) = (leaf(&next()), leaf(&next()), next());
                self.per_leaf(&v, span, |el, l| {
                    let Atom::Var(a) = l else { unreachable!() };
                    let t = el.ty(l).lift();
                    Ok(el.emit1(IrExpr::Unflatten { array: a, rows, cols }, t, "unflat", span))
                })?
            }
            "concat" => {
                let (a, b) = (next(), next());
                let bl = self.first_order_leaves(&b, span, "an argument of concat")?;
                let mut bl = bl.into_iter();
                self.per_leaf(&a, span, |el, l| {
                    let (Atom::Var(x), Some(Atom::Var(y))) = (l, bl.next()) else { unreachable!() };
                    let t = el.ty(l);
                    Ok(el.emit1(IrExpr::Concat(x, y), t, "cat", span))
                })?
            }
            "scatter" => {
                let (dest, is, vs) = (next(), leaf(&next()), next());
                let Atom::Var(indices) = is else { unreachable!() };
                let vl = self.first_order_leaves(&vs, span, "the values of scatter")?;
                let mut vl = vl.into_iter();
                self.per_leaf(&dest, span, |el, l| {
                    let (Atom::Var(d), Some(Atom::Var(v))) = (l, vl.next()) else { unreachable!() };
                    let t = el.ty(l);
                    Ok(el.emit1(IrExpr::Scatter { dest: d, indices, values: v }, t, "scat", span))
                })?
            }
            "reduce_by_index" => {
                let (dest, op, ne, is, vs) = (next(), next(), next(), leaf(&next()), next());
                let (SVal::Leaf(Atom::Var(d)), SVal::Leaf(Atom::Var(v)), SVal::Leaf(ne), Atom::Var(indices)) =
                    (&dest, &vs, &ne, is)
                else {
                    return Err(Diagnostic::error(
                        Code::E0121,
                        "reduce_by_index over tuples or records is not supported",
                        span,
                        "used here",
                    )
                    .with_help("call reduce_by_index once per component"));
                };
                let t = self.vars.ty(*d);
                let row = t.row();
                let lam = self.lambda(&[row, row], &["acc", "x"], |el, ps| {
                    let r = el.apply(op, vec![SVal::Leaf(Atom::Var(ps[0])), SVal::Leaf(Atom::Var(ps[1]))], span)?;
                    Ok(vec![leaf(&r)])
                })?;
                SVal::Leaf(self.emit1(
                    IrExpr::Hist { dest: *d, lam, neutral: *ne, indices, values: *v },
                    t,
                    "hist",
                    span,
                ))
            }
            "length" => {
                let v = next();
                let mut leaves = Vec::new();
                let _ = collect_leaves(&v, &mut leaves);
                match leaves.first() {
                    Some(l) => SVal::Leaf(self.shape(*l, 0, span)),
                    None => SVal::Leaf(Atom::i64(0)),
                }
            }
            // The math primitives (`crate::prims`).
            _ if prims::unary_named(name).is_some() => {
                let x = leaf(&next());
                let row = prims::unary_named(name).expect("a primitive");
                let t = row.result_type(self.ty(x));
                SVal::Leaf(self.emit1(IrExpr::Unary(row.op, x), t, "t", span))
            }
            _ if prims::binary_named(name).is_some() => {
                let (a, b) = (leaf(&next()), leaf(&next()));
                let op = prims::binary_named(name).expect("a primitive").op;
                let t = self.ty(a);
                SVal::Leaf(self.binop(op, a, b, t, span))
            }
            _ if BinOp::bitwise_named(name).is_some() => {
                let (a, b) = (leaf(&next()), leaf(&next()));
                let op = BinOp::bitwise_named(name).expect("a bitwise operation");
                SVal::Leaf(self.binop(op, a, b, IrType::I64, span))
            }
            "min" | "max" => {
                let (a, b) = (leaf(&next()), leaf(&next()));
                let op = if name == "min" { BinOp::Min } else { BinOp::Max };
                let t = self.ty(a);
                SVal::Leaf(self.binop(op, a, b, t, span))
            }
            "f64" | "f32" | "i64" => {
                let x = leaf(&next());
                let to = ScalarType::from_name(name).expect("conversion name");
                if self.ty(x).elem == to {
                    SVal::Leaf(x)
                } else if let Atom::Const(c) = x {
                    SVal::Leaf(Atom::Const(convert_const(c, to)))
                } else {
                    SVal::Leaf(self.emit1(IrExpr::Convert(to, x), IrType::scalar(to), "t", span))
                }
            }
            "inf" => SVal::Leaf(Atom::f64(f64::INFINITY)),
            "nan" => SVal::Leaf(Atom::f64(f64::NAN)),
            "pi" => SVal::Leaf(Atom::f64(std::f64::consts::PI)),
            "opaque" => {
                let v = next();
                self.per_leaf(&v, span, |el, l| {
                    let t = el.ty(l);
                    Ok(el.emit1(IrExpr::Opaque(l), t, "opaque", span))
                })?
            }
            "stop_gradient" => {
                let v = next();
                self.per_leaf(&v, span, |el, l| {
                    el.elementwise(l, span, &|el, x| {
                        let t = el.ty(x);
                        Ok(el.emit1(IrExpr::Unary(UnOp::StopGradient, x), t, "sg", span))
                    })
                })?
            }
            "jvp" => {
                let (f, x, dx) = (next(), next(), next());
                let tangents = self.first_order_leaves(&dx, span, "a tangent")?;
                let (binds, out) = self.jvp(&f, &x, tangents, false, span)?;
                Elaborator::same_shape(&out, &mut binds.into_iter())
            }
            "jvp2" => {
                let (f, x, dx) = (next(), next(), next());
                let tangents = self.first_order_leaves(&dx, span, "a tangent")?;
                let (binds, out) = self.jvp(&f, &x, tangents, true, span)?;
                let mut binds = binds.into_iter();
                let value = Elaborator::same_shape(&out, &mut binds);
                let tangent = Elaborator::same_shape(&out, &mut binds);
                SVal::Tuple(vec![value, tangent])
            }
            "vjp" => {
                let (f, x, dy) = (next(), next(), next());
                let cotangents = self.first_order_leaves(&dy, span, "a cotangent")?;
                let (binds, _) = self.vjp(&f, &x, |_| Ok(cotangents), false, span)?;
                Elaborator::same_shape(&x, &mut binds.into_iter())
            }
            "vjp2" => {
                let (f, x, dy) = (next(), next(), next());
                let cotangents = self.first_order_leaves(&dy, span, "a cotangent")?;
                let (binds, out) = self.vjp(&f, &x, |_| Ok(cotangents), true, span)?;
                let mut binds = binds.into_iter();
                let value = Elaborator::same_shape(&out, &mut binds);
                let cotangent = Elaborator::same_shape(&x, &mut binds);
                SVal::Tuple(vec![value, cotangent])
            }
            "grad" => {
                let (f, x) = (next(), next());
                let (binds, _) = self.vjp(
                    &f,
                    &x,
                    |results| Ok(results.iter().map(|(_, t)| Atom::Const(Const::of(t.elem, 1.0))).collect()),
                    false,
                    span,
                )?;
                Elaborator::same_shape(&x, &mut binds.into_iter())
            }
            "jacfwd" => {
                let (f, x) = (next(), next());
                self.jacfwd(&f, &x, span)?
            }
            "jacrev" => {
                let (f, x) = (next(), next());
                self.jacrev(&f, &x, span)?
            }
            "hessian" => {
                let (f, x) = (next(), next());
                let (gname, garity) = arity("grad").expect("grad is a builtin");
                let grad_f = SVal::Closure(Rc::new(Closure {
                    callee: Callee::Builtin { name: gname, arity: garity, app_ty: Type::Unknown },
                    args: vec![f],
                }));
                self.jacfwd(&grad_f, &x, span)?
            }
            other => {
                return Err(Diagnostic::internal("elaboration", format!("builtin `{other}` has no elaboration"), span))
            }
        })
    }

    /// Applies `f` to each leaf (scalar or array) of a value, keeping its structure.
    fn per_leaf(&mut self, v: &SVal<'a>, span: Span, mut f: impl FnMut(&mut Self, Atom) -> R<Atom>) -> R<SVal<'a>> {
        let leaves = self.first_order_leaves(v, span, "this value")?;
        let mut out = Vec::new();
        for l in leaves {
            out.push(f(self, l)?);
        }
        Ok(Elaborator::same_shape(v, &mut out.into_iter()))
    }

    /// Applies a scalar function to every element of a leaf of any rank (nested maps).
    pub(super) fn elementwise(&mut self, x: Atom, span: Span, f: &dyn Fn(&mut Self, Atom) -> R<Atom>) -> R<Atom> {
        let t = self.ty(x);
        if t.is_scalar() {
            return f(self, x);
        }
        let Atom::Var(xv) = x else { unreachable!() };
        let width = self.shape(x, 0, span);
        let mut rt = t.row();
        let lam = self.lambda(&[t.row()], &["x"], |el, ps| {
            let r = el.elementwise(Atom::Var(ps[0]), span, f)?;
            rt = el.ty(r);
            Ok(vec![r])
        })?;
        Ok(self.emit1(IrExpr::Map { width, lam, arrays: vec![xv] }, rt.lift(), "m", span))
    }

    pub(super) fn check_same_outer(&mut self, arrays: &[SVal<'a>], what: &str, span: Span) -> R<Option<Atom>> {
        let mut first: Option<Atom> = None;
        for a in arrays {
            let leaves = self.first_order_leaves(a, span, what)?;
            let Some(l) = leaves.first() else { continue };
            let n = self.shape(*l, 0, span);
            match first {
                None => first = Some(n),
                Some(m) => self.check_eq(m, n, format!("{what} have different lengths"), span),
            }
        }
        Ok(first)
    }

    /// `map f a1 … ak`: one IR map over all leaves of all arrays.
    pub(super) fn map_n(&mut self, f: SVal<'a>, arrays: Vec<SVal<'a>>, span: Span) -> R<SVal<'a>> {
        let width = self.check_same_outer(&arrays, "arrays passed to map", span)?.unwrap_or(Atom::i64(0));
        let mut leaves = Vec::new();
        for a in &arrays {
            leaves.extend(self.first_order_leaves(a, span, "an array passed to map")?);
        }
        let row_types: Vec<IrType> = leaves.iter().map(|l| self.ty(*l).row()).collect();
        let mut shape: Option<SVal<'a>> = None;
        let lam = self.lambda(&row_types, &["x"], |el, ps| {
            let mut params = ps.iter().map(|v| Atom::Var(*v));
            let rows: Vec<SVal<'a>> = arrays.iter().map(|a| Elaborator::same_shape(a, &mut params)).collect();
            let r = el.apply(f, rows, span)?;
            let out = el.first_order_leaves(&r, span, "the result of a map")?;
            shape = Some(r);
            Ok(out)
        })?;
        let result_types: Vec<IrType> = lam.body.result.iter().map(|a| self.ty(*a).lift()).collect();
        let arrays: Vec<Var> = leaves.iter().filter_map(|l| l.var()).collect();
        let binds = self.emit(IrExpr::Map { width, lam, arrays }, &result_types, &["m"], span);
        Ok(Elaborator::same_shape(&shape.expect("lambda built"), &mut binds.into_iter().map(Atom::Var)))
    }

    fn reduce_like(&mut self, is_scan: bool, op: SVal<'a>, ne: SVal<'a>, xs: SVal<'a>, span: Span) -> R<SVal<'a>> {
        let neutral = self.first_order_leaves(&ne, span, "the neutral element")?;
        let arrays = self.first_order_leaves(&xs, span, "the reduced array")?;
        let row_types: Vec<IrType> = arrays.iter().map(|l| self.ty(*l).row()).collect();
        let mut param_types = row_types.clone();
        param_types.extend(row_types.iter().copied());
        let k = arrays.len();
        let lam = self.lambda(&param_types, &["acc", "x"], |el, ps| {
            let acc = Elaborator::same_shape(&ne, &mut ps[..k].iter().map(|v| Atom::Var(*v)));
            let x = Elaborator::same_shape(&ne, &mut ps[k..].iter().map(|v| Atom::Var(*v)));
            let r = el.apply(op, vec![acc, x], span)?;
            el.first_order_leaves(&r, span, "the result of the operator")
        })?;
        let arrays: Vec<Var> = arrays.iter().filter_map(|l| l.var()).collect();
        let binds = if is_scan {
            let types: Vec<IrType> = row_types.iter().map(|t| t.lift()).collect();
            self.emit(IrExpr::Scan { lam, neutral, arrays }, &types, &["scan"], span)
        } else {
            self.emit(IrExpr::Reduce { lam, neutral, arrays }, &row_types, &["red"], span)
        };
        Ok(Elaborator::same_shape(&ne, &mut binds.into_iter().map(Atom::Var)))
    }

    pub(super) fn reduce_scalar(&mut self, op: BinOp, ne: Const, xs: Atom, span: Span) -> R<Atom> {
        let t = self.ty(xs).row();
        let lam = self.lambda(&[t, t], &["acc", "x"], |el, ps| {
            Ok(vec![el.binop(op, Atom::Var(ps[0]), Atom::Var(ps[1]), t, span)])
        })?;
        let Atom::Var(xv) = xs else { unreachable!() };
        let name = match op {
            BinOp::Add => "sum",
            BinOp::Mul => "prod",
            BinOp::Max => "max",
            _ => "min",
        };
        Ok(self.emit1(IrExpr::Reduce { lam, neutral: vec![Atom::Const(ne)], arrays: vec![xv] }, t, name, span))
    }

    /// The stable sorting permutation of a vector (Note [Sorting] in
    /// `slope_runtime::sort`).
    fn argsort(&mut self, xs: Atom, descending: bool, span: Span) -> Atom {
        let Atom::Var(array) = xs else { unreachable!("arrays are variables") };
        self.emit1(IrExpr::Argsort { array, descending }, IrType::array(ScalarType::I64, 1), "perm", span)
    }

    /// `map (\i -> xs[i]) is`: how `sort` and `top_k` are differentiated —
    /// a gather's derivative routes each tangent or cotangent through the
    /// permutation, which is the piecewise-linear derivative of sorting
    /// (docs/ad.md, "Sorting").
    fn gather(&mut self, xs: Atom, is: Atom, span: Span) -> R<Atom> {
        let (Atom::Var(xv), Atom::Var(iv)) = (xs, is) else { unreachable!("arrays are variables") };
        let row = self.ty(xs).row();
        let width = self.shape(is, 0, span);
        let lam = self.lambda(&[IrType::I64], &["i"], |el, ps| {
            Ok(vec![el.emit1(IrExpr::Index { array: xv, indices: vec![Atom::Var(ps[0])] }, row, "x", span)])
        })?;
        Ok(self.emit1(IrExpr::Map { width, lam, arrays: vec![iv] }, row.lift(), "sorted", span))
    }

    /// Index of the first largest (smallest) element, as an associative reduction over (value, index).
    fn arg_extremum(&mut self, is_max: bool, xs: Atom, span: Span) -> R<Atom> {
        let t = self.ty(xs).row();
        let n = self.shape(xs, 0, span);
        let iota = self.emit1(IrExpr::Iota(n), IrType::array(ScalarType::I64, 1), "iota", span);
        let lam = self.lambda(&[t, IrType::I64, t, IrType::I64], &["v1", "i1", "v2", "i2"], |el, ps| {
            let [v1, i1, v2, i2] = [ps[0], ps[1], ps[2], ps[3]].map(Atom::Var);
            let better = el.binop(if is_max { BinOp::Gt } else { BinOp::Lt }, v2, v1, t, span);
            let equal = el.binop(BinOp::Eq, v2, v1, t, span);
            let earlier = el.binop(BinOp::Lt, i2, i1, IrType::I64, span);
            let tie = el.binop(BinOp::And, equal, earlier, IrType::BOOL, span);
            let take = el.binop(BinOp::Or, better, tie, IrType::BOOL, span);
            // The neutral element (index i64::MAX) always loses, so an array of
            // NaNs (where every comparison is false) still yields index 0.
            let neutral = el.binop(BinOp::Eq, i1, Atom::i64(i64::MAX), IrType::I64, span);
            let take = el.binop(BinOp::Or, take, neutral, IrType::BOOL, span);
            let v = el.emit1(IrExpr::Select(take, v2, v1), t, "v", span);
            let i = el.emit1(IrExpr::Select(take, i2, i1), IrType::I64, "i", span);
            Ok(vec![v, i])
        })?;
        let (Atom::Var(xv), Atom::Var(iv)) = (xs, iota) else { unreachable!() };
        let ne = if is_max { lowest(t.elem) } else { highest(t.elem) };
        let binds = self.emit(
            IrExpr::Reduce { lam, neutral: vec![Atom::Const(ne), Atom::i64(i64::MAX)], arrays: vec![xv, iv] },
            &[t, IrType::I64],
            &["best", "arg"],
            span,
        );
        Ok(Atom::Var(binds[1]))
    }

    // ---- Differentiation ----

    /// Builds the lambda `\leaves(x) -> leaves(f x)`; returns it with the result value's shape.
    fn diff_lambda(&mut self, f: &SVal<'a>, x: &SVal<'a>, span: Span) -> R<(crate::ir::Lambda, SVal<'a>)> {
        let primals = self.first_order_leaves(x, span, "the point of differentiation")?;
        let types: Vec<IrType> = primals.iter().map(|a| self.ty(*a)).collect();
        let mut shape = None;
        // The parameter keeps the lambda's name for it when it is one leaf
        // (`grad (\t -> …)`), so diagnostics about it can say `t`.
        let name = match (f, x) {
            (SVal::Closure(c), SVal::Leaf(_)) => match &c.callee {
                Callee::Lambda { pats: [p], .. } if c.args.is_empty() => p.var_name().unwrap_or("x"),
                _ => "x",
            },
            _ => "x",
        };
        let lam = self.lambda(&types, &[name], |el, ps| {
            let arg = Elaborator::same_shape(x, &mut ps.iter().map(|v| Atom::Var(*v)));
            let r = el.apply(f.clone(), vec![arg], span)?;
            let out = el.first_order_leaves(&r, span, "the result of a differentiated function")?;
            shape = Some(r);
            Ok(out)
        })?;
        Ok((lam, shape.expect("lambda built")))
    }

    /// `jvp` (or, with `values`, `jvp2`): the binds are the tangents of
    /// `f`'s result leaves (after the leaves themselves, with `values`), and
    /// the value is the shape of `f`'s result.
    fn jvp(
        &mut self,
        f: &SVal<'a>,
        x: &SVal<'a>,
        tangents: Vec<Atom>,
        values: bool,
        span: Span,
    ) -> R<(Vec<Atom>, SVal<'a>)> {
        let primals = self.first_order_leaves(x, span, "the point of differentiation")?;
        let (lam, out) = self.diff_lambda(f, x, span)?;
        let results: Vec<IrType> = lam.body.result.iter().map(|a| self.ty(*a)).collect();
        let outs = results.iter().filter(|_| values).map(|t| (*t, "value"));
        let tans = results.iter().map(|t| (*t, "tan"));
        let (types, names): (Vec<IrType>, Vec<&str>) = outs.chain(tans).unzip();
        let binds = self.emit(IrExpr::Jvp { lam, primals, tangents, batch: None, values }, &types, &names, span);
        Ok((binds.into_iter().map(Atom::Var).collect(), out))
    }

    /// `vjp` (or, with `values`, `vjp2`): the cotangents are computed from
    /// the result leaves and their types. The binds are the cotangents of
    /// `x`'s leaves (after `f`'s result leaves, with `values`), and the value
    /// is the shape of `f`'s result.
    fn vjp(
        &mut self,
        f: &SVal<'a>,
        x: &SVal<'a>,
        cotangents: impl FnOnce(&[(Atom, IrType)]) -> R<Vec<Atom>>,
        values: bool,
        span: Span,
    ) -> R<(Vec<Atom>, SVal<'a>)> {
        let primals = self.first_order_leaves(x, span, "the point of differentiation")?;
        let (lam, out) = self.diff_lambda(f, x, span)?;
        let results: Vec<(Atom, IrType)> = lam.body.result.iter().map(|a| (*a, self.ty(*a))).collect();
        let cotangents = cotangents(&results)?;
        let outs = results.iter().filter(|_| values).map(|(_, t)| (*t, "value"));
        let adjoints = primals.iter().map(|a| (self.ty(*a), "adj"));
        let (types, names): (Vec<IrType>, Vec<&str>) = outs.chain(adjoints).unzip();
        let binds = self.emit(IrExpr::Vjp { lam, primals, cotangents, values }, &types, &names, span);
        Ok((binds.into_iter().map(Atom::Var).collect(), out))
    }

    /// Zeros with the shape of a leaf.
    fn zeros_like(&mut self, x: Atom, span: Span) -> Atom {
        let t = self.ty(x);
        let mut acc = Atom::Const(Const::of(t.elem, 0.0));
        for d in (0..t.rank).rev() {
            let n = self.shape(x, d, span);
            let ty = IrType { elem: t.elem, rank: t.rank - d };
            acc = self.emit1(IrExpr::Replicate { count: n, value: acc }, ty, "zeros", span);
        }
        acc
    }

    /// A one-hot array of the shape `sizes` with a one at `position`.
    fn one_hot(&mut self, elem: ScalarType, sizes: &[Atom], position: &[Atom], span: Span) -> R<Atom> {
        self.one_hot_from(elem, sizes, position, &[], span)
    }

    fn one_hot_from(
        &mut self,
        elem: ScalarType,
        sizes: &[Atom],
        position: &[Atom],
        seen: &[Atom],
        span: Span,
    ) -> R<Atom> {
        let k = seen.len();
        if k == sizes.len() {
            let mut cond = Atom::Const(Const::Bool(true));
            for (q, p) in seen.iter().zip(position) {
                let eq = self.binop(BinOp::Eq, *q, *p, IrType::I64, span);
                cond = if cond == Atom::Const(Const::Bool(true)) {
                    eq
                } else {
                    self.binop(BinOp::And, cond, eq, IrType::BOOL, span)
                };
            }
            // The seed is the condition converted to a float, a form source
            // code cannot write (Note [One-hot seeds] in opt/onehot.rs).
            if let Atom::Const(Const::Bool(b)) = cond {
                return Ok(Atom::Const(Const::of(elem, f64::from(u8::from(b)))));
            }
            return Ok(self.emit1(IrExpr::Convert(elem, cond), IrType::scalar(elem), "hot", span));
        }
        let iota = self.emit1(IrExpr::Iota(sizes[k]), IrType::array(ScalarType::I64, 1), "iota", span);
        let rank = (sizes.len() - k) as u32;
        let lam = self.lambda(&[IrType::I64], &["q"], |el, ps| {
            let mut seen = seen.to_vec();
            seen.push(Atom::Var(ps[0]));
            Ok(vec![el.one_hot_from(elem, sizes, position, &seen, span)?])
        })?;
        let Atom::Var(iv) = iota else { unreachable!() };
        Ok(self.emit1(
            IrExpr::Map { width: sizes[k], lam, arrays: vec![iv] },
            IrType::array(elem, rank),
            "onehot",
            span,
        ))
    }

    /// Nested maps over the index space `sizes`; `body` gets the index and returns leaves.
    fn over_indices(
        &mut self,
        sizes: &[Atom],
        index: &mut Vec<Atom>,
        span: Span,
        body: &mut IndexBody<'_, 'a>,
    ) -> R<Vec<Atom>> {
        if index.len() == sizes.len() {
            return body(self, index);
        }
        let k = index.len();
        let iota = self.emit1(IrExpr::Iota(sizes[k]), IrType::array(ScalarType::I64, 1), "iota", span);
        let lam = self.lambda(&[IrType::I64], &["i"], |el, ps| {
            index.push(Atom::Var(ps[0]));
            let r = el.over_indices(sizes, index, span, body);
            index.pop();
            r
        })?;
        let types: Vec<IrType> = lam.body.result.iter().map(|a| self.ty(*a).lift()).collect();
        let Atom::Var(iv) = iota else { unreachable!() };
        let binds = self.emit(IrExpr::Map { width: sizes[k], lam, arrays: vec![iv] }, &types, &["jac"], span);
        Ok(binds.into_iter().map(Atom::Var).collect())
    }

    fn shapes(&mut self, x: Atom, span: Span) -> Vec<Atom> {
        (0..self.ty(x).rank).map(|d| self.shape(x, d, span)).collect()
    }

    /// Moves the outer dimension of an array to position `to`.
    fn move_outer_dim(&mut self, x: Atom, to: u32, span: Span) -> R<Atom> {
        if to == 0 {
            return Ok(x);
        }
        let Atom::Var(xv) = x else { unreachable!() };
        let t = self.ty(x);
        let tr = self.emit1(IrExpr::Transpose(xv), t, "tr", span);
        if to == 1 {
            return Ok(tr);
        }
        let width = self.shape(tr, 0, span);
        let lam =
            self.lambda(&[t.row()], &["row"], |el, ps| Ok(vec![el.move_outer_dim(Atom::Var(ps[0]), to - 1, span)?]))?;
        let Atom::Var(trv) = tr else { unreachable!() };
        Ok(self.emit1(IrExpr::Map { width, lam, arrays: vec![trv] }, t, "moved", span))
    }

    /// Rebuilds the Jacobian value: the output's structure with, at each output
    /// leaf `i`, the input's structure holding the blocks `blocks[i][j]`.
    fn assemble_jacobian(&self, out: &SVal<'a>, x: &SVal<'a>, blocks: Vec<Vec<Atom>>) -> SVal<'a> {
        let mut rows = blocks.into_iter();
        fn go<'a>(v: &SVal<'a>, x: &SVal<'a>, rows: &mut impl Iterator<Item = Vec<Atom>>) -> SVal<'a> {
            match v {
                SVal::Leaf(_) => {
                    Elaborator::same_shape(x, &mut rows.next().expect("a block row per output leaf").into_iter())
                }
                SVal::Tuple(vs) => SVal::Tuple(vs.iter().map(|v| go(v, x, rows)).collect()),
                SVal::Record(fs) => SVal::Record(fs.iter().map(|(n, v)| (n.clone(), go(v, x, rows))).collect()),
                SVal::Closure(c) => SVal::Closure(c.clone()),
            }
        }
        go(out, x, &mut rows)
    }

    /// Zeros of the shape of `x` with a last dimension of `n` directions.
    fn zeros_batched(&mut self, x: Atom, n: Atom, span: Span) -> Atom {
        let t = self.ty(x);
        let zero = Atom::Const(Const::of(t.elem, 0.0));
        let mut acc =
            self.emit1(IrExpr::Replicate { count: n, value: zero }, IrType { elem: t.elem, rank: 1 }, "zeros", span);
        for d in (0..t.rank).rev() {
            let m = self.shape(x, d, span);
            let ty = IrType { elem: t.elem, rank: t.rank - d + 1 };
            acc = self.emit1(IrExpr::Replicate { count: m, value: acc }, ty, "zeros", span);
        }
        acc
    }

    /// The Jacobian blocks along a one-dimensional input leaf `j` by one
    /// vector-mode `jvp` whose `n` directions are the unit vectors of leaf
    /// `j`: the result tangents `T_i ++ [n]` are the blocks themselves. `None`
    /// (one `jvp` per direction instead) when every output is a scalar —
    /// then the one-hot collapse makes the directions cost O(1) each — or
    /// when `f` contains what vector mode cannot carry (a custom rule with
    /// array arguments, a `reduce_by_index` with another operator than `+`).
    /// See Note [Jacobians].
    fn jacfwd_vector(
        &mut self,
        f: &SVal<'a>,
        x: &SVal<'a>,
        inputs: &[Atom],
        j: usize,
        span: Span,
    ) -> R<Option<(Vec<Atom>, SVal<'a>)>> {
        let (lam, out) = self.diff_lambda(f, x, span)?;
        let scalar_outputs = lam.body.result.iter().all(|a| self.ty(*a).is_scalar());
        if scalar_outputs || !batchable(&lam.body, &|a| self.ty(a)) {
            return Ok(None);
        }
        let n = self.shape(inputs[j], 0, span);
        let elem = self.ty(inputs[j]).elem;
        let sizes = [n];
        let mut unit =
            |el: &mut Self, index: &[Atom]| -> R<Vec<Atom>> { Ok(vec![el.one_hot(elem, &sizes, index, span)?]) };
        let identity = self.over_indices(&sizes, &mut Vec::new(), span, &mut unit)?[0];
        let tangents: Vec<Atom> =
            (0..inputs.len()).map(|k| if k == j { identity } else { self.zeros_batched(inputs[k], n, span) }).collect();
        let types: Vec<IrType> = lam.body.result.iter().map(|a| self.ty(*a).lift()).collect();
        let expr = IrExpr::Jvp { lam, primals: inputs.to_vec(), tangents, batch: Some(n), values: false };
        let binds = self.emit(expr, &types, &["jac"], span);
        Ok(Some((binds.into_iter().map(Atom::Var).collect(), out)))
    }

    fn jacfwd(&mut self, f: &SVal<'a>, x: &SVal<'a>, span: Span) -> R<SVal<'a>> {
        let inputs = self.first_order_leaves(x, span, "the point of differentiation")?;
        let mut out_shape = None;
        // blocks[j][i]: derivative of output leaf i along input leaf j, shape S_j ++ T_i.
        let mut by_input = Vec::new();
        for (j, &xj) in inputs.iter().enumerate() {
            let sizes = self.shapes(xj, span);
            let elem = self.ty(xj).elem;
            if sizes.len() == 1 {
                if let Some((blocks, shape)) = self.jacfwd_vector(f, x, &inputs, j, span)? {
                    out_shape = Some(shape);
                    by_input.push(blocks);
                    continue;
                }
            }
            let inputs_c = inputs.clone();
            let mut body = |el: &mut Self, index: &[Atom]| -> R<Vec<Atom>> {
                let mut tangents = Vec::new();
                for (k, &xk) in inputs_c.iter().enumerate() {
                    tangents.push(if k == j {
                        if sizes.is_empty() {
                            Atom::Const(Const::of(elem, 1.0))
                        } else {
                            el.one_hot(elem, &sizes, index, span)?
                        }
                    } else {
                        el.zeros_like(xk, span)
                    });
                }
                let (r, shape) = el.jvp(f, x, tangents, false, span)?;
                out_shape = Some(shape);
                Ok(r)
            };
            let results = self.over_indices(&sizes, &mut Vec::new(), span, &mut body)?;
            // Move the input dimensions behind the output dimensions.
            let mut moved = Vec::new();
            for r in results {
                let total = self.ty(r).rank;
                let mut a = r;
                for _ in 0..sizes.len() {
                    a = self.move_outer_dim(a, total - 1, span)?;
                }
                moved.push(a);
            }
            by_input.push(moved);
        }
        let Some(out) = out_shape else {
            return Ok(x.clone());
        };
        let n_out = by_input.first().map_or(0, Vec::len);
        let blocks: Vec<Vec<Atom>> = (0..n_out).map(|i| by_input.iter().map(|row| row[i]).collect()).collect();
        Ok(self.assemble_jacobian(&out, x, blocks))
    }

    fn jacrev(&mut self, f: &SVal<'a>, x: &SVal<'a>, span: Span) -> R<SVal<'a>> {
        // Evaluate f once for the shapes of its result.
        let y = self.apply(f.clone(), vec![x.clone()], span)?;
        let outputs = self.first_order_leaves(&y, span, "the result of a differentiated function")?;
        let mut blocks = Vec::new();
        for (i, &yi) in outputs.iter().enumerate() {
            let sizes = self.shapes(yi, span);
            let elem = self.ty(yi).elem;
            let outputs_c = outputs.clone();
            let mut body = |el: &mut Self, index: &[Atom]| -> R<Vec<Atom>> {
                let mut cots = Vec::new();
                for (k, &yk) in outputs_c.iter().enumerate() {
                    cots.push(if k == i {
                        if sizes.is_empty() {
                            Atom::Const(Const::of(elem, 1.0))
                        } else {
                            el.one_hot(elem, &sizes, index, span)?
                        }
                    } else {
                        el.zeros_like(yk, span)
                    });
                }
                Ok(el.vjp(f, x, |_| Ok(cots), false, span)?.0)
            };
            blocks.push(self.over_indices(&sizes, &mut Vec::new(), span, &mut body)?);
        }
        Ok(self.assemble_jacobian(&y, x, blocks))
    }
}

fn lowest(t: ScalarType) -> Const {
    match t {
        ScalarType::I64 => Const::I64(i64::MIN),
        ScalarType::F32 => Const::F32(f32::NEG_INFINITY),
        ScalarType::Bool => Const::Bool(false),
        ScalarType::F64 => Const::F64(f64::NEG_INFINITY),
    }
}

fn highest(t: ScalarType) -> Const {
    match t {
        ScalarType::I64 => Const::I64(i64::MAX),
        ScalarType::F32 => Const::F32(f32::INFINITY),
        ScalarType::Bool => Const::Bool(true),
        ScalarType::F64 => Const::F64(f64::INFINITY),
    }
}

fn convert_const(c: Const, to: ScalarType) -> Const {
    match (c, to) {
        (Const::I64(v), ScalarType::F64) => Const::F64(v as f64),
        (Const::I64(v), ScalarType::F32) => Const::F32(v as f32),
        (Const::F64(v), ScalarType::I64) => Const::I64(v as i64),
        (Const::F32(v), ScalarType::I64) => Const::I64(v as i64),
        (Const::F64(v), ScalarType::F32) => Const::F32(v as f32),
        (Const::F32(v), ScalarType::F64) => Const::F64(v as f64),
        (Const::Bool(b), t) => Const::of(t, b as i64 as f64),
        (c, ScalarType::Bool) => Const::Bool(c.as_f64() != 0.0),
        (c, _) => c,
    }
}

/// Whether forward mode can carry all directions of a `jvp` of `body` at
/// once: it cannot through a custom rule with array arguments (the rule is
/// written for one direction) or a `reduce_by_index` with an operator other
/// than `+` (which forward mode rejects anyway).
fn batchable(body: &crate::ir::Body, ty: &dyn Fn(Atom) -> IrType) -> bool {
    body.stmts.iter().all(|s| {
        let ok = match &s.expr {
            IrExpr::Custom { args, .. } => args.iter().all(|a| ty(*a).is_scalar()),
            IrExpr::Hist { lam, .. } => crate::ir::scope::is_addition(lam),
            _ => true,
        };
        ok && s.expr.bodies().into_iter().all(|b| batchable(b, ty))
    })
}
