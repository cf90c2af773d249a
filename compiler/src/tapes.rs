//! What reverse mode stores: the tapes of an entry's derivative, with their
//! sizes as formulas in the entry's parameters (`slope cost` prints them).
//!
//! Input: an optimised IR function. Output: one [`Tape`] per array the
//! forward sweeps fill for their backward sweeps — loop tapes and
//! checkpoints (`replicate count state`, `ad/rev.rs`'s `forward_loop`) and the
//! residuals a `map` saves per element (Note [Residuals of map]) — with its
//! size in bytes as a formula over the entry's parameters and array sizes,
//! and how often it is allocated (once per call at the top level; once per
//! element or iteration inside a map or a loop).
//!
//! The formula is read off the IR: an `i64` operand is rendered by following
//! its definition (arithmetic, `max`/`min`, the size of a dimension — named
//! as the entry's signature names it, `n` for a parameter `[n]f64`, or
//! `len(x, d)`) up to a small depth, and named by its variable otherwise. What survives the
//! optimiser is what is reported, so a tape the backward sweep does not read
//! (Note [What loop tapes hold]) is not.

use crate::diagnostic::Span;
use crate::hash::HashMap;
use crate::ir::{Atom, BinOp, Body, Const, Expr, Func, IrType, LoopForm, VarTable};
use crate::types::{Dim, Type};

/// One array reverse mode stores.
#[derive(Clone, Debug, PartialEq)]
pub struct Tape {
    /// What it is: `loop tape`, `checkpoints` or `map residuals`.
    pub what: &'static str,
    /// Its size in bytes, as a formula.
    pub bytes: String,
    /// Where it is allocated: `per call`, or per element or iteration of the
    /// enclosing combinators, innermost first.
    pub allocated: String,
    /// The statement that allocates it (the differentiated loop or map).
    pub span: Span,
}

/// The tapes of `func`, in program order.
pub fn tapes(vars: &VarTable, func: &Func) -> Vec<Tape> {
    let mut defs = HashMap::default();
    collect_defs(&func.body, &mut defs);
    // The source's names of the parameters' dimensions (`n` for `[n]f64`).
    let mut leaves = Vec::new();
    for (name, ty) in &func.signature.params {
        leaf_dims(name, ty, &mut Vec::new(), &mut leaves);
    }
    let params = if leaves.len() == func.params.len() {
        func.params.iter().copied().zip(leaves).collect()
    } else {
        HashMap::default()
    };
    let mut out = Vec::new();
    let cx = Cx { vars, defs, params };
    cx.body(&func.body, &mut Vec::new(), &mut out);
    out
}

/// The leaves of a parameter of type `ty` (the flattened IR parameters, in
/// order), each with its dimensions' names: the size parameter, the literal
/// size, or `len(p, d)`.
fn leaf_dims(name: &str, ty: &Type, dims: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match ty {
        Type::Array(elem, dim) => {
            dims.push(match dim {
                Dim::Named(n) => n.clone(),
                Dim::Const(c) => c.to_string(),
                _ => format!("len({name}, {})", dims.len()),
            });
            leaf_dims(name, elem, dims, out);
            dims.pop();
        }
        Type::Tuple(ts) => {
            for (k, t) in ts.iter().enumerate() {
                leaf_dims(&format!("{name}.{k}"), t, dims, out);
            }
        }
        Type::Record(fields) => {
            for (f, t) in fields {
                leaf_dims(&format!("{name}.{f}"), t, dims, out);
            }
        }
        _ => out.push(dims.clone()),
    }
}

struct Cx<'a> {
    vars: &'a VarTable,
    /// Every variable's defining expression (SSA: one per variable).
    defs: HashMap<crate::ir::Var, &'a Expr>,
    /// The function's parameters with their dimensions' names.
    params: HashMap<crate::ir::Var, Vec<String>>,
}

fn collect_defs<'a>(body: &'a Body, defs: &mut HashMap<crate::ir::Var, &'a Expr>) {
    for s in &body.stmts {
        if let [v] = s.binds[..] {
            defs.insert(v, &s.expr);
        }
        for b in s.expr.bodies() {
            collect_defs(b, defs);
        }
    }
}

/// How deep a formula follows definitions before naming a variable.
const DEPTH: usize = 16;

impl Cx<'_> {
    fn body(&self, body: &Body, enclosing: &mut Vec<String>, out: &mut Vec<Tape>) {
        for s in &body.stmts {
            let allocated =
                if enclosing.is_empty() { "per call".to_string() } else { format!("per {}", enclosing.join(" per ")) };
            match (&s.expr, s.binds.as_slice()) {
                (Expr::Replicate { count, value }, [v]) => {
                    let what = match self.vars.base_name(*v) {
                        "tape" => "loop tape",
                        "checkpoint" | "checkpoints" => "checkpoints",
                        _ => continue,
                    };
                    let row = self.bytes_of(*value);
                    let bytes = product(&row, &self.int(*count, DEPTH));
                    out.push(Tape { what, bytes, allocated, span: s.span });
                }
                (Expr::Map { width, lam, .. }, binds) => {
                    for (j, v) in binds.iter().enumerate().filter(|(_, v)| self.vars.base_name(**v) == "residual") {
                        // A saved array's row is the lambda's result (Note
                        // [Saving inner loop nests] in ad/mod.rs): its size as that has it.
                        let row = self.elem_bytes(self.vars.ty(*v).row(), lam.body.result.get(j).copied());
                        let bytes = product(&row, &self.int(*width, DEPTH));
                        out.push(Tape { what: "map residuals", bytes, allocated: allocated.clone(), span: s.span });
                    }
                }
                _ => {}
            }
            let scope = match &s.expr {
                Expr::Map { width, .. } => Some(format!("element of a map over {}", self.int(*width, DEPTH))),
                Expr::Loop { form: LoopForm::For { bound, .. }, .. } => {
                    Some(format!("iteration of a loop of {}", self.int(*bound, DEPTH)))
                }
                Expr::Loop { .. } => Some("iteration of a while loop".to_string()),
                Expr::Reduce { .. } | Expr::Scan { .. } | Expr::Hist { .. } => Some("step of a reduction".to_string()),
                _ => None,
            };
            for b in s.expr.bodies() {
                match &scope {
                    Some(sc) => {
                        enclosing.insert(0, sc.clone());
                        self.body(b, enclosing, out);
                        enclosing.remove(0);
                    }
                    None => self.body(b, enclosing, out),
                }
            }
        }
    }

    /// Bytes of a value: its element size times its dimensions.
    fn bytes_of(&self, a: Atom) -> String {
        match a {
            Atom::Const(c) => elem_size(IrType::scalar(c.ty())).to_string(),
            Atom::Var(v) => self.elem_bytes(self.vars.ty(v), Some(a)),
        }
    }

    /// Bytes of a value of type `t` (`array`, when known, names its dimensions).
    fn elem_bytes(&self, t: IrType, array: Option<Atom>) -> String {
        let mut f = elem_size(t).to_string();
        for d in 0..t.rank {
            let dim = match array {
                Some(Atom::Var(v)) => self.dim(v, d),
                _ => format!("d{d}"),
            };
            f = product(&f, &dim);
        }
        f
    }

    /// The size of dimension `d` of `v`, as the source names it when `v` is
    /// (a copy of) a parameter or an array whose size a formula gives.
    fn dim(&self, v: crate::ir::Var, d: u32) -> String {
        self.dim_at(v, d, DEPTH)
    }

    fn dim_at(&self, v: crate::ir::Var, d: u32, depth: usize) -> String {
        if let Some(dims) = self.params.get(&v) {
            if let Some(name) = dims.get(d as usize) {
                return name.clone();
            }
        }
        let fallback = || format!("len({}, {d})", self.vars.base_name(v));
        if depth == 0 {
            return fallback();
        }
        match (self.defs.get(&v), d) {
            (Some(Expr::Atom(Atom::Var(w))), _) => self.dim_at(*w, d, depth - 1),
            (Some(Expr::Replicate { count, .. }), 0) => self.int(*count, depth - 1),
            (Some(Expr::Replicate { value: Atom::Var(w), .. }), _) => self.dim_at(*w, d - 1, depth - 1),
            (Some(Expr::Iota(n)), 0) => self.int(*n, depth - 1),
            (Some(Expr::Index { array, indices }), _) => self.dim_at(*array, d + indices.len() as u32, depth - 1),
            (Some(Expr::Map { width, .. }), 0) => self.int(*width, depth - 1),
            _ => fallback(),
        }
    }

    /// An `i64` operand as a formula.
    fn int(&self, a: Atom, depth: usize) -> String {
        let v = match a {
            Atom::Const(Const::I64(n)) => return n.to_string(),
            Atom::Const(c) => return format!("{}", c.as_f64()),
            Atom::Var(v) => v,
        };
        let name = self.vars.base_name(v).to_string();
        let (Some(e), true) = (self.defs.get(&v), depth > 0) else { return name };
        match e {
            Expr::Atom(x) => self.int(*x, depth - 1),
            Expr::Shape { array, dim } => self.dim_at(*array, *dim, depth - 1),
            // ⌈√n⌉, the segment length of checkpointing, is converted from a float.
            Expr::Convert(crate::types::ScalarType::I64, x) => self.float(*x, depth - 1).unwrap_or(name),
            // The count of checkpointing segments, (n + (k - 1)) / k.
            _ if self.ceil_div(v).is_some() => {
                let (n, k) = self.ceil_div(v).expect("just matched");
                format!("⌈{} / {}⌉", self.int(n, depth - 1), self.int(k, depth - 1))
            }
            // max(x, 0) of a count that cannot be negative is the count.
            Expr::Binary(BinOp::Max, Atom::Var(x), Atom::Const(Const::I64(0)))
                if self.ceil_div(*x).is_some() || self.nonneg_max(*x) =>
            {
                self.int(Atom::Var(*x), depth - 1)
            }
            Expr::Binary(op @ (BinOp::Max | BinOp::Min), x, y) => {
                format!("{}({}, {})", op.symbol(), self.int(*x, depth - 1), self.int(*y, depth - 1))
            }
            Expr::Binary(op @ (BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div), x, y) => {
                format!("({} {} {})", self.int(*x, depth - 1), op.symbol(), self.int(*y, depth - 1))
            }
            _ => name,
        }
    }
}

impl Cx<'_> {
    /// `(n, k)` when `v` is `(n + (k - 1)) / k`, ⌈n / k⌉ for n ≥ 0 and k > 0
    /// (as ad/checkpoint.rs counts segments).
    fn ceil_div(&self, v: crate::ir::Var) -> Option<(Atom, Atom)> {
        let def = |a: Atom| a.var().and_then(|w| self.defs.get(&w).copied());
        let Expr::Binary(BinOp::Div, t, k) = self.defs.get(&v)? else { return None };
        let Expr::Binary(BinOp::Add, n, up) = def(*t)? else { return None };
        match def(*up)? {
            Expr::Binary(BinOp::Sub, k2, Atom::Const(Const::I64(1))) if k2 == k => Some((*n, *k)),
            _ => None,
        }
    }

    /// Whether `v` is `max(_, 0)` already.
    fn nonneg_max(&self, v: crate::ir::Var) -> bool {
        matches!(self.defs.get(&v), Some(Expr::Binary(BinOp::Max, _, Atom::Const(Const::I64(0)))))
    }

    /// A float operand built from integers by `sqrt`, `ceil` and `floor`.
    fn float(&self, a: Atom, depth: usize) -> Option<String> {
        let Atom::Var(v) = a else { return None };
        match (self.defs.get(&v)?, depth > 0) {
            (Expr::Convert(_, x), true) => Some(self.int(*x, depth - 1)),
            (Expr::Unary(crate::ir::UnOp::Sqrt, x), true) => Some(format!("√{}", self.float(*x, depth - 1)?)),
            (Expr::Unary(crate::ir::UnOp::Ceil, x), true) => Some(format!("⌈{}⌉", self.float(*x, depth - 1)?)),
            (Expr::Unary(crate::ir::UnOp::Floor, x), true) => Some(format!("⌊{}⌋", self.float(*x, depth - 1)?)),
            _ => None,
        }
    }
}

fn elem_size(t: IrType) -> i64 {
    crate::loops::MTy::of(t.elem).size()
}

/// `a · b`, leaving out factors of 1.
fn product(a: &str, b: &str) -> String {
    match (a, b) {
        ("1", x) | (x, "1") => x.to_string(),
        _ => format!("{a} · {b}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Program;
    use crate::driver::no_files;

    fn report(src: &str, entry: &str) -> Vec<(String, String, String)> {
        let p = Program::compile("t.slope", src, &no_files).unwrap_or_else(|f| panic!("{:?}", f.diagnostics));
        let f = p.ir.func(entry).expect("entry");
        tapes(&p.ir.vars, f).into_iter().map(|t| (t.what.to_string(), t.bytes, t.allocated)).collect()
    }

    #[test]
    fn a_loop_tapes_its_active_state_per_iteration() {
        let src = "entry g (x: f64) (steps: i64) : f64 = grad (\\a -> loop s = a for i < steps do sin s * 0.9) x";
        assert_eq!(report(src, "g"), vec![("loop tape".into(), "8 · max(steps, 0)".into(), "per call".into())]);
    }

    #[test]
    fn an_array_state_tape_is_steps_times_the_array() {
        let src = "entry g [n] (x: [n]f64) (steps: i64) : [n]f64 = \
                   grad (\\v -> sum (loop y = v for i < steps do map (\\a -> sin a) y)) x";
        let r = report(src, "g");
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].0, "loop tape");
        assert_eq!(r[0].1, "8 · n · max(steps, 0)", "{r:?}");
    }

    #[test]
    fn checkpointing_stores_a_state_per_segment_of_sqrt_n() {
        let mut options = crate::driver::Options::default();
        options.ad.checkpoint = true;
        let src = "entry g (x: f64) (steps: i64) : f64 = grad (\\a -> loop s = a for i < steps do sin s * 0.9) x";
        let p = Program::compile_with("t.slope", src, &no_files, &options)
            .unwrap_or_else(|f| panic!("{:?}", f.diagnostics));
        let r = tapes(&p.ir.vars, p.ir.func("g").expect("entry"));
        assert_eq!(r[0].what, "checkpoints", "{r:?}");
        assert!(r[0].bytes.contains("/ max(⌈√max(steps, 0)⌉, 1)"), "{r:?}");
        assert!(r.iter().skip(1).all(|t| t.what == "loop tape" && t.allocated.starts_with("per iteration")), "{r:?}");
    }

    #[test]
    fn saved_rows_are_sized_by_their_map() {
        // Note [Saving inner loop nests]: per point, the rows of every component.
        let src = "entry g [n][k][d] (xs: [n][d]f64) (ls: [k][d][d]f64) : [k][d][d]f64 = \
                   grad (\\p -> sum (map (\\x -> log (sum (map (\\l -> exp (0.0 - sum (map (\\t -> t * t) \
                   (tabulate d (\\r -> exp l[r, r] * x[r] + sum (tabulate r (\\c -> l[r, c] * x[c]))))))) p))) xs)) ls";
        let r = report(src, "g");
        let rows: Vec<_> = r.iter().filter(|t| t.0 == "map residuals" && t.1.contains(" · k")).collect();
        assert_eq!(rows.len(), 1, "{r:?}");
        assert_eq!(rows[0].1, "8 · d · k", "{r:?}");
        assert!(rows[0].2.starts_with("per iteration of a loop of n"), "{r:?}");
    }

    #[test]
    fn no_derivative_no_tapes() {
        assert_eq!(report("entry f (x: f64) (steps: i64) : f64 = loop s = x for i < steps do sin s", "f"), vec![]);
    }
}
