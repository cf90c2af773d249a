//! Text form of the loop IR (`slope emit --stage loops`).
//!
//! ```text
//! func sum(xs_0: i64, xs_1: i64) -> (acc_3) {
//!   acc_3 = 0.0
//!   for i_2 < xs_1 {
//!     x_4 = load f64 xs_0[i_2]
//!     acc_3 = acc_3 + x_4
//!   }
//! }
//! ```

use super::{Func, Inst, LVar, Operand, Rhs};
use crate::ir::Const;
use std::fmt::Write;

/// Every function of `p`, then the segments they call (only those of the
/// functions kept, when `only_called`).
pub fn print_program(p: &super::Program, only_called: bool) -> String {
    let mut called = std::collections::BTreeSet::new();
    for f in &p.funcs {
        super::for_each_inst(&f.body, &mut |i| {
            if let Inst::Parallel { segment, .. } = i {
                called.insert(*segment as usize);
            }
        });
    }
    let mut parts: Vec<String> = p.funcs.iter().map(print_func).collect();
    for (k, s) in p.segments.iter().enumerate() {
        if only_called && !called.contains(&k) {
            continue;
        }
        let show = |words: &[usize]| words.iter().map(|w| format!("w{w}")).collect::<Vec<_>>().join(", ");
        let reductions: Vec<String> =
            s.plan.reductions.iter().map(|r| format!("{:?} {:?} w{}", r.op, r.elem, r.word)).collect();
        let accumulators: Vec<String> = s
            .plan
            .accumulators
            .iter()
            .map(|a| format!("{:?} {:?} w{} ({} elements)", a.op, a.elem, a.word, show(&[a.count_word])))
            .collect();
        let scans: Vec<String> =
            s.plan.scans.iter().map(|c| format!("w{} into w{}", s.plan.reductions[c.reduction].word, c.word)).collect();
        let mut text = format!(
            "-- segment{k}: chunks of {} iterations; reductions [{}]; scans [{}]; accumulators [{}]\n",
            s.plan.chunk,
            reductions.join(", "),
            scans.join(", "),
            accumulators.join(", ")
        );
        text.push_str(&print_func(&s.func));
        parts.push(text);
    }
    parts.join("\n")
}

pub fn print_func(f: &Func) -> String {
    let mut p = Printer { f, out: String::new() };
    let params: Vec<String> = f.params.iter().map(|&v| format!("{}: {}", p.var(v), f.ty(v).name())).collect();
    let results: Vec<String> = f.results.iter().map(|&o| p.operand(o)).collect();
    let _ = writeln!(p.out, "func {}({}) -> ({}) {{", f.name, params.join(", "), results.join(", "));
    p.block(&f.body, 1);
    p.out.push_str("}\n");
    if !f.sites.is_empty() {
        p.out.push_str("-- failure sites:\n");
        for (k, s) in f.sites.iter().enumerate() {
            let _ = writeln!(p.out, "--   site{k}: {} {:?}", s.code.as_str(), s.message);
        }
    }
    p.out
}

struct Printer<'f> {
    f: &'f Func,
    out: String,
}

impl Printer<'_> {
    fn var(&self, v: LVar) -> String {
        self.f.var_name(v)
    }

    fn operand(&self, o: Operand) -> String {
        match o {
            Operand::Var(v) => self.var(v),
            Operand::Const(Const::F64(x)) => format!("{x:?}"),
            Operand::Const(Const::F32(x)) => format!("{x:?}f32"),
            Operand::Const(Const::I64(x)) => x.to_string(),
            Operand::Const(Const::Bool(b)) => b.to_string(),
        }
    }

    fn ops(&self, os: &[Operand]) -> String {
        os.iter().map(|&o| self.operand(o)).collect::<Vec<_>>().join(", ")
    }

    fn rhs(&self, r: &Rhs) -> String {
        let o = |x: &Operand| self.operand(*x);
        match r {
            Rhs::Use(a) => o(a),
            Rhs::Unary(op, a) => format!("{} {}", op.name(), o(a)),
            Rhs::Binary(op, a, b) if op.is_prefix() => format!("{} {} {}", op.symbol(), o(a), o(b)),
            Rhs::Binary(op, a, b) => format!("{} {} {}", o(a), op.symbol(), o(b)),
            Rhs::Convert(t, a) => format!("{} {}", t.name(), o(a)),
            Rhs::Select(c, a, b) => format!("select {} {} {}", o(c), o(a), o(b)),
            Rhs::Load { elem, base, index } => format!("load {} {}[{}]", elem.name(), o(base), o(index)),
            Rhs::Offset { elem, base, index } => format!("&{} {}[{}]", elem.name(), o(base), o(index)),
            Rhs::Alloc { elem, count, hoisted: false, .. } => format!("alloc {} {}", elem.name(), o(count)),
            // Null when the memory cannot be had: checked where it came from.
            Rhs::Alloc { elem, count, hoisted: true, .. } => format!("alloc_or_null {} {}", elem.name(), o(count)),
            Rhs::InRange { index, bound } => format!("{} in 0..{}", o(index), o(bound)),
            Rhs::Mark => "mark".into(),
            Rhs::WhileLimit => "while_limit".into(),
        }
    }

    fn block(&mut self, insts: &[Inst], depth: usize) {
        for inst in insts {
            let pad = "  ".repeat(depth);
            match inst {
                Inst::Let(v, r) => {
                    let line = format!("{pad}{} = {}", self.var(*v), self.rhs(r));
                    let _ = writeln!(self.out, "{line}");
                }
                Inst::Store { elem, base, index, value } => {
                    let line = format!(
                        "{pad}store {} {}[{}] = {}",
                        elem.name(),
                        self.operand(*base),
                        self.operand(*index),
                        self.operand(*value)
                    );
                    let _ = writeln!(self.out, "{line}");
                }
                Inst::Copy { elem, dst, src, count } => {
                    let line = format!(
                        "{pad}copy {} {} <- {} ({})",
                        elem.name(),
                        self.operand(*dst),
                        self.operand(*src),
                        self.operand(*count)
                    );
                    let _ = writeln!(self.out, "{line}");
                }
                Inst::Argsort { elem, keys, count, perm, descending } => {
                    let line = format!(
                        "{pad}{} {} {} <- {} ({})",
                        if *descending { "argsort_desc" } else { "argsort" },
                        elem.name(),
                        self.operand(*perm),
                        self.operand(*keys),
                        self.operand(*count)
                    );
                    let _ = writeln!(self.out, "{line}");
                }
                Inst::For { index, start, bound, body, lanes, parallel } => {
                    let range = match start {
                        Operand::Const(Const::I64(0)) => format!("{} < {}", self.var(*index), self.operand(*bound)),
                        _ => format!("{} in {}..{}", self.var(*index), self.operand(*start), self.operand(*bound)),
                    };
                    let vector = if *lanes > 1 { format!(" (x{lanes})") } else { String::new() };
                    let par = if *parallel { "parallel " } else { "" };
                    let line = format!("{pad}{par}for {range}{vector} {{");
                    let _ = writeln!(self.out, "{line}");
                    self.block(body, depth + 1);
                    let _ = writeln!(self.out, "{pad}}}");
                }
                Inst::While { cond, test, body } => {
                    let _ = writeln!(self.out, "{pad}while {{");
                    self.block(cond, depth + 1);
                    let line = format!("{pad}}} {} {{", self.operand(*test));
                    let _ = writeln!(self.out, "{line}");
                    self.block(body, depth + 1);
                    let _ = writeln!(self.out, "{pad}}}");
                }
                Inst::If { cond, then, els } => {
                    let line = format!("{pad}if {} {{", self.operand(*cond));
                    let _ = writeln!(self.out, "{line}");
                    self.block(then, depth + 1);
                    if !els.is_empty() {
                        let _ = writeln!(self.out, "{pad}}} else {{");
                        self.block(els, depth + 1);
                    }
                    let _ = writeln!(self.out, "{pad}}}");
                }
                Inst::Fail { site, args } => {
                    let line = format!("{pad}fail site{site}({})", self.ops(args));
                    let _ = writeln!(self.out, "{line}");
                }
                Inst::Release { mark, keep } => {
                    let line = format!("{pad}release {} keep [{}]", self.operand(*mark), self.ops(keep));
                    let _ = writeln!(self.out, "{line}");
                }
                Inst::Call { func, args, results } => {
                    let results: Vec<String> = results.iter().map(|&v| self.var(v)).collect();
                    let line = format!("{pad}({}) = call {func}({})", results.join(", "), self.ops(args));
                    let _ = writeln!(self.out, "{line}");
                }
                Inst::Parallel { segment, inline, start, bound, args, results } => {
                    let results: Vec<String> = results.iter().map(|&v| self.var(v)).collect();
                    let results =
                        if results.is_empty() { String::new() } else { format!("({}) = ", results.join(", ")) };
                    let line = format!(
                        "{pad}{results}{} segment{segment} {}..{} ({})",
                        if *inline { "inline" } else { "parallel" },
                        self.operand(*start),
                        self.operand(*bound),
                        self.ops(args)
                    );
                    let _ = writeln!(self.out, "{line}");
                }
            }
        }
    }
}
