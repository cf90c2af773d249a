//! The unary form (UNF) of Huot & Shaikhha, and reverse mode on it.
//!
//! In unary form a term has no variable names: it maps a typed stack (the
//! context Γ: the lambda's parameters and free variables) to a longer stack.
//! Every instruction takes the whole stack and extends or shrinks it:
//!
//! - `var i` pushes a copy of slot `i`; `const c` pushes a constant;
//! - `op p` pushes `p` applied to the top `arity(p)` slots, which it keeps;
//! - `proj k d` forgets `d` slots above the bottom `k` (scoping: it hides the
//!   operand copies and the `let`-bound intermediates);
//! - `block s` runs an IR statement that is not a scalar primitive (a map,
//!   a loop, an indexing…) reading slots, and pushes its results. As in the
//!   paper, the bodies of combinators stay in the source language (IR).
//!
//! Input: an AD-free IR body and its context. Output: a [`Unf`] term, which
//! prints (`slope emit --stage unary`) and verifies (stack typing).
//!
//! Reverse mode is a functor on this form: each instruction has a transposed
//! Jacobian that maps the cotangent of its output stack to that of its input
//! stack — `var` adds the copy's cotangent to the slot (the transpose of copy
//! is add), `op` adds `∂op · z` to its operands, `proj` inserts zeros (the
//! transpose of forget). [`reverse`] applies them in reverse order to a
//! *symbolic* cotangent stack whose entries are atoms or zero: that is the
//! partial evaluation of the continuation-passing reverse program (Huot &
//! Shaikhha: every continuation is applied to a statically known cotangent
//! stack, so beta reduction removes it), so no continuation is ever built and
//! the output is straight-line IR. Blocks are transposed by the IR-level rules of
//! [`super::rev`].
//!
//! This is the one backward walk of reverse mode: the top level of a `vjp`
//! and every nested scope the rules of `rev` differentiate (map bodies,
//! branches, loop bodies, operators of reductions) are translated to unary
//! form and reversed here, and the scalar reverse rules exist only here. See
//! Note [One backward walk].

use super::build::{free_vars, is_float};
use super::rev::Rev;
use super::rules;
use crate::diagnostic::Diagnostic;
use crate::ir::{self, Atom, BinOp, Body, Const, Expr, IrType, Stmt, UnOp, Var};
use std::fmt::Write;

/// A scalar primitive of the unary form.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Prim {
    Unary(UnOp),
    Binary(BinOp),
    Convert(crate::types::ScalarType),
    /// `select c a b` (arity 3).
    Select,
}

impl Prim {
    pub fn arity(self) -> usize {
        match self {
            Prim::Unary(_) | Prim::Convert(_) => 1,
            Prim::Binary(_) => 2,
            Prim::Select => 3,
        }
    }
    fn name(self) -> String {
        match self {
            Prim::Unary(op) => op.name().to_string(),
            Prim::Binary(op) => format!("({})", op.symbol()),
            Prim::Convert(t) => t.name().to_string(),
            Prim::Select => "select".to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Instr {
    Var(usize),
    Const(Const),
    Op(Prim),
    Proj {
        keep: usize,
        drop: usize,
    },
    /// Statement `index` of the body, reading the slots `reads`.
    Block {
        index: usize,
        reads: Vec<usize>,
    },
}

/// A unary-form term over the context `context` (slot types and, for
/// printing and reverse mode, the IR variable or value each slot holds).
#[derive(Clone, Debug)]
pub struct Unf {
    pub context: Vec<Var>,
    pub instrs: Vec<Instr>,
    /// The stack after each instruction, as IR atoms (the primal values).
    pub stacks: Vec<Vec<Atom>>,
    /// For each stack of `stacks`, which slots are temporary copies (operands
    /// and results being assembled) rather than the slot of a bound variable.
    pub temps: Vec<Vec<bool>>,
    /// The body translated (its statements are the blocks' targets).
    pub body: Body,
}

/// Translates a body into unary form. The context is `params` followed by
/// the body's other free variables.
pub fn translate(params: &[Var], body: Body) -> Unf {
    let mut context: Vec<Var> = params.to_vec();
    for v in free_vars(&body) {
        if !context.contains(&v) {
            context.push(v);
        }
    }
    let mut stack: Vec<Atom> = context.iter().map(|v| Atom::Var(*v)).collect();
    let mut temp: Vec<bool> = vec![false; context.len()];
    let mut instrs = Vec::new();
    let mut stacks = Vec::new();
    let mut temps = Vec::new();
    let mut push =
        |instrs: &mut Vec<Instr>, stacks: &mut Vec<Vec<Atom>>, stack: &Vec<Atom>, temp: &Vec<bool>, i: Instr| {
            instrs.push(i);
            stacks.push(stack.clone());
            temps.push(temp.clone());
        };
    let slot_of = |stack: &[Atom], a: Atom| -> Option<usize> { stack.iter().rposition(|s| *s == a) };
    // The instruction that pushes a copy of `a` (a slot of the stack, or a constant).
    let copy = |stack: &[Atom], a: Atom| match a {
        Atom::Var(_) => Instr::Var(slot_of(stack, a).expect("atoms are in scope")),
        Atom::Const(c) => Instr::Const(c),
    };
    for (index, s) in body.stmts.iter().enumerate() {
        let prim = match &s.expr {
            Expr::Unary(op, a) => Some((Prim::Unary(*op), vec![*a])),
            Expr::Binary(op, a, b) => Some((Prim::Binary(*op), vec![*a, *b])),
            Expr::Convert(t, a) => Some((Prim::Convert(*t), vec![*a])),
            Expr::Select(c, a, b) => Some((Prim::Select, vec![*c, *a, *b])),
            _ => None,
        };
        match (prim, &s.expr) {
            (Some((p, operands)), _) => {
                let base = stack.len();
                for a in &operands {
                    let i = copy(&stack, *a);
                    stack.push(*a);
                    temp.push(true);
                    push(&mut instrs, &mut stacks, &stack, &temp, i);
                }
                stack.push(Atom::Var(s.binds[0]));
                temp.push(false);
                push(&mut instrs, &mut stacks, &stack, &temp, Instr::Op(p));
                // Forget the operand copies, keep the result.
                stack.drain(base..base + operands.len());
                temp.drain(base..base + operands.len());
                push(&mut instrs, &mut stacks, &stack, &temp, Instr::Proj { keep: base, drop: operands.len() });
            }
            (None, Expr::Atom(a)) => {
                let i = copy(&stack, *a);
                stack.push(Atom::Var(s.binds[0]));
                temp.push(false);
                push(&mut instrs, &mut stacks, &stack, &temp, i);
            }
            (None, _) => {
                let single = Body { stmts: vec![s.clone()].into(), result: Vec::new() };
                let reads: Vec<usize> =
                    free_vars(&single).iter().filter_map(|v| slot_of(&stack, Atom::Var(*v))).collect();
                stack.extend(s.binds.iter().map(|v| Atom::Var(*v)));
                temp.extend(s.binds.iter().map(|_| false));
                push(&mut instrs, &mut stacks, &stack, &temp, Instr::Block { index, reads });
            }
        }
    }
    // Push the results and hide every intermediate: Γ ⇒ Γ, results.
    let base = context.len();
    let intermediates = stack.len() - base;
    for r in &body.result {
        let i = copy(&stack, *r);
        stack.push(*r);
        temp.push(true);
        push(&mut instrs, &mut stacks, &stack, &temp, i);
    }
    stack.drain(base..base + intermediates);
    temp.drain(base..base + intermediates);
    push(&mut instrs, &mut stacks, &stack, &temp, Instr::Proj { keep: base, drop: intermediates });
    Unf { context, instrs, stacks, temps, body }
}

/// Checks the stack discipline: every slot index is in range, every `op` has
/// its operands, and the term maps Γ to Γ followed by the results.
pub fn verify(vars: &ir::VarTable, unf: &Unf) -> Result<(), String> {
    let mut depth = unf.context.len();
    let mut types: Vec<IrType> = unf.context.iter().map(|v| vars.ty(*v)).collect();
    for (k, i) in unf.instrs.iter().enumerate() {
        let at = |msg: String| format!("instruction {k} ({}): {msg}", show_instr(i, &unf.body, vars));
        match i {
            Instr::Var(s) => {
                if *s >= depth {
                    return Err(at(format!("slot {s} of a stack of {depth}")));
                }
                types.push(types[*s]);
            }
            Instr::Const(c) => types.push(IrType::scalar(c.ty())),
            Instr::Op(p) => {
                let n = p.arity();
                if n > depth {
                    return Err(at(format!("needs {n} operands on a stack of {depth}")));
                }
                let operands = &types[depth - n..];
                let result = match p {
                    Prim::Binary(op) => {
                        if operands[0] != operands[1] {
                            return Err(at(format!("operands {} and {} differ", operands[0], operands[1])));
                        }
                        if op.is_comparison() || matches!(op, BinOp::And | BinOp::Or) && operands[0].elem.is_float() {
                            IrType::BOOL
                        } else {
                            operands[0]
                        }
                    }
                    Prim::Unary(op) => op.prim().result_type(operands[0]),
                    Prim::Convert(t) => IrType::scalar(*t),
                    Prim::Select => operands[1],
                };
                types.push(result);
            }
            Instr::Proj { keep, drop } => {
                if *keep + *drop > depth {
                    return Err(at(format!("forgets slots {keep}..{} of a stack of {depth}", keep + drop)));
                }
                types.drain(*keep..*keep + *drop);
            }
            Instr::Block { index, reads } => {
                if let Some(bad) = reads.iter().find(|r| **r >= depth) {
                    return Err(at(format!("reads slot {bad} of a stack of {depth}")));
                }
                let Some(stmt) = unf.body.stmts.get(*index) else {
                    return Err(at(format!("no statement {index}")));
                };
                types.extend(stmt.binds.iter().map(|v| vars.ty(*v)));
            }
        }
        depth = types.len();
        if unf.stacks[k].len() != depth {
            return Err(at(format!("recorded stack has {} slots, the typing {depth}", unf.stacks[k].len())));
        }
    }
    let expected = unf.context.len() + unf.body.result.len();
    if depth != expected {
        return Err(format!("the term leaves {depth} slots, not Γ and the {} results", unf.body.result.len()));
    }
    Ok(())
}

fn show_instr(i: &Instr, body: &Body, vars: &ir::VarTable) -> String {
    match i {
        Instr::Var(s) => format!("var {s}"),
        Instr::Const(c) => format!("const {}", crate::ir::print::print_const(*c)),
        Instr::Op(p) => format!("op {}", p.name()),
        Instr::Proj { keep, drop } => format!("proj {keep} {drop}"),
        Instr::Block { index, reads } => {
            let s = &body.stmts[*index];
            let what = match &s.expr {
                Expr::Map { .. } => "map",
                Expr::Reduce { .. } => "reduce",
                Expr::Scan { .. } => "scan",
                Expr::Loop { .. } => "loop",
                Expr::If { .. } => "if",
                Expr::Index { .. } => "index",
                Expr::UpdateAt { .. } => "update",
                Expr::Shape { .. } => "shape",
                _ => "block",
            };
            let names: Vec<String> = s.binds.iter().map(|v| vars.display(*v)).collect();
            format!("block {what} {reads:?} -> {}", names.join(", "))
        }
    }
}

/// Prints a term: one instruction per line, with the stack after it.
pub fn print(vars: &ir::VarTable, unf: &Unf) -> String {
    let name = |a: &Atom| match a {
        Atom::Var(v) => vars.display(*v),
        Atom::Const(c) => crate::ir::print::print_const(*c),
    };
    let ctx: Vec<String> = unf.context.iter().map(|v| format!("{}: {}", vars.display(*v), vars.ty(*v))).collect();
    let mut out = format!(
        "unary [{}] ⇒ [Γ, {}]\n",
        ctx.join(", "),
        unf.body.result.iter().map(name).collect::<Vec<_>>().join(", ")
    );
    let width = unf.instrs.iter().map(|i| show_instr(i, &unf.body, vars).chars().count()).max().unwrap_or(0);
    for (k, (i, stack)) in unf.instrs.iter().zip(&unf.stacks).enumerate() {
        let text = show_instr(i, &unf.body, vars);
        let pad = width - text.chars().count();
        let slots: Vec<String> = stack.iter().map(name).collect();
        let _ = writeln!(out, "  {k:>3}  {text}{}  [{}]", " ".repeat(pad), slots.join(", "));
    }
    out
}

/// Reverse mode on the unary form. `rev` has already emitted the forward
/// sweep of `unf.body` (with its loop tapes); `cotangents` are those of the
/// results. Walks the instructions backwards with a symbolic cotangent stack:
/// temporary slots (operand and result copies) keep their cotangent on the
/// stack, the slot of a bound variable keeps it in `rev`'s adjoint table (one
/// slot per variable, so the two views agree; and array adjoints stay buffers
/// that sparse updates can modify in place). The cotangents of the context end
/// up in `rev`'s table.
pub fn reverse(rev: &mut Rev, unf: &Unf, cotangents: &[Atom]) -> Result<(), Diagnostic> {
    // The stack after the last instruction: Γ, then the result copies.
    let mut cot: Vec<Option<Atom>> = vec![None; unf.context.len()];
    cot.extend(cotangents.iter().map(|c| Some(*c)));
    let context_stack: Vec<Atom> = unf.context.iter().map(|v| Atom::Var(*v)).collect();
    let context_temps = vec![false; unf.context.len()];
    for k in (0..unf.instrs.len()).rev() {
        let (before, before_temp): (&[Atom], &[bool]) =
            if k == 0 { (&context_stack, &context_temps) } else { (&unf.stacks[k - 1], &unf.temps[k - 1]) };
        let after = &unf.stacks[k];
        let after_temp = &unf.temps[k];
        // The cotangent of the top slot of the stack after instruction k.
        let pop = |rev: &mut Rev, cot: &mut Vec<Option<Atom>>| -> Option<Atom> {
            let at = cot.len() - 1;
            let c = cot.pop().flatten();
            if after_temp[at] {
                c
            } else {
                match after[at] {
                    Atom::Var(v) => rev.take(v),
                    Atom::Const(_) => None,
                }
            }
        };
        let add = |rev: &mut Rev, cot: &mut Vec<Option<Atom>>, slot: usize, c: Atom| {
            if before_temp[slot] {
                cot[slot] = Some(match cot[slot] {
                    None => c,
                    Some(old) => rev.b.add_values(old, c),
                });
            } else {
                rev.contribute(before[slot], c);
            }
        };
        match &unf.instrs[k] {
            Instr::Var(s) => {
                if let Some(z) = pop(rev, &mut cot) {
                    add(rev, &mut cot, *s, z);
                }
            }
            Instr::Const(_) => {
                pop(rev, &mut cot);
            }
            Instr::Op(p) => {
                let result = after[after.len() - 1];
                let Some(z) = pop(rev, &mut cot) else { continue };
                let n = p.arity();
                let top = before.len();
                let operand = |j: usize| before[top - n + j];
                // Only active operands get cotangents (the others would be
                // code for nothing).
                let active = |rev: &Rev, j: usize| rev.is_active(operand(j));
                match p {
                    Prim::Unary(_) if !active(rev, 0) => {}
                    Prim::Unary(UnOp::Neg) => {
                        let c = rev.b.neg(z);
                        add(rev, &mut cot, top - 1, c);
                    }
                    Prim::Unary(op) => {
                        if let Some(d) = rules::unary_partial(rev.b, *op, operand(0), result) {
                            let c = rev.b.mul(d, z);
                            add(rev, &mut cot, top - 1, c);
                        }
                    }
                    Prim::Binary(BinOp::Add) => {
                        add(rev, &mut cot, top - 2, z);
                        add(rev, &mut cot, top - 1, z);
                    }
                    Prim::Binary(BinOp::Sub) => {
                        add(rev, &mut cot, top - 2, z);
                        if active(rev, 1) {
                            let c = rev.b.neg(z);
                            add(rev, &mut cot, top - 1, c);
                        }
                    }
                    Prim::Binary(op) => {
                        let (a, b) = (operand(0), operand(1));
                        let want = (rev.is_active(a), rev.is_active(b));
                        let (da, db) = rules::binary_partials(rev.b, *op, a, b, result, want);
                        if let (Some(d), true) = (da, want.0) {
                            let c = rev.b.mul(d, z);
                            add(rev, &mut cot, top - 2, c);
                        }
                        if let (Some(d), true) = (db, want.1) {
                            let c = rev.b.mul(d, z);
                            add(rev, &mut cot, top - 1, c);
                        }
                    }
                    Prim::Convert(to) => {
                        let a = operand(0);
                        if to.is_float() && is_float(rev.b.ty(a)) && active(rev, 0) {
                            let from = rev.b.ty(a).elem;
                            let c = rev.b.emit1(Expr::Convert(from, z), IrType::scalar(from), "adj");
                            add(rev, &mut cot, top - 1, c);
                        }
                    }
                    Prim::Select => {
                        let c = operand(0);
                        let zero = rev.b.zeros_like(z);
                        if active(rev, 1) {
                            let t = rev.b.select(c, z, zero);
                            add(rev, &mut cot, top - 2, t);
                        }
                        if active(rev, 2) {
                            let f = rev.b.select(c, zero, z);
                            add(rev, &mut cot, top - 1, f);
                        }
                    }
                }
            }
            Instr::Proj { keep, drop } => {
                // The transpose of forgetting is inserting zeros.
                let tail = cot.split_off(*keep);
                cot.extend(std::iter::repeat_n(None, *drop));
                cot.extend(tail);
            }
            Instr::Block { index, .. } => {
                let stmt: &Stmt = &unf.body.stmts[*index];
                let mut zs = Vec::new();
                for _ in &stmt.binds {
                    zs.push(pop(rev, &mut cot));
                }
                zs.reverse();
                if zs.iter().any(Option::is_some) {
                    // The IR-level rule contributes to the variables the block
                    // reads, which are slots of bound variables: the adjoint table.
                    rev.block(stmt, &zs)?;
                }
            }
        }
    }
    Ok(())
}

// Note [One backward walk]
// ~~~~~~~~~~~~~~~~~~~~~~~~~
// Reverse mode used to exist twice: the top level of a `vjp` went through
// the unary form, nested scopes through a statement walk in rev.rs with its
// own copy of the scalar rules. Now `Rev::backward` translates a nested scope
// (its results' cotangents already in the adjoint table, so the term's own
// results get none) and calls `reverse`, so every scope takes this walk:
// scalar primitives by the `Op` rules here, from the partial derivatives of
// `ad::rules` and the primitive table, and every other statement by its
// `Rev::block` rule, which may recurse into a child sweep and so back here.
// The adjoint of a bound variable lives in `rev`'s table, a temporary
// copy's on the symbolic stack, so the walk and the block rules agree on
// where a cotangent is. Translation costs a copy of the stack per
// instruction (`Unf::stacks`, for printing and for the walk's operand
// lookup): quadratic in a scope's length. Measured (`slope check --timings`,
// median of 5, 2026-12-01): the AD pass on the GradBench examples took
// 0.9–3.8 ms with the statement walk for nested scopes and 1.1–3.3 ms with
// this one (ode 1.0 → 1.6 ms, ht 3.8 → 3.3 ms), out of 100–570 ms compiles.

/// Translations of every `vjp` lambda of a program, for `emit --stage unary`.
pub fn print_program(program: &ir::Program) -> String {
    let mut out = String::new();
    for f in &program.funcs {
        let mut found = Vec::new();
        collect_vjps(&f.body, &mut found);
        if found.is_empty() {
            continue;
        }
        let _ = writeln!(out, "-- entry {}", f.name);
        for lam in &found {
            let unf = translate(&lam.params, lam.body.clone());
            out.push_str(&print(&program.vars, &unf));
            // The nested scopes reverse mode reverses (those that are active)
            // take the same walk (Note [One backward walk]).
            let mut scopes = Vec::new();
            nested_scopes(&program.vars, &lam.body, &mut scopes);
            for (what, params, body) in scopes {
                let _ = writeln!(out, "-- {what}");
                out.push_str(&print(&program.vars, &translate(&params, body)));
            }
        }
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str("-- no vjp in this program: reverse mode is not used\n");
    }
    out
}

/// The scopes nested in `body` (outer ones first): what each is, its
/// parameters and its body.
fn nested_scopes(vars: &ir::VarTable, body: &Body, out: &mut Vec<(String, Vec<Var>, Body)>) {
    for s in &body.stmts {
        let names: Vec<String> = s.binds.iter().map(|v| vars.display(*v)).collect();
        let of = |what: &str| format!("{what} of {}", names.join(", "));
        let mut found: Vec<(String, Vec<Var>, &Body)> = Vec::new();
        match &s.expr {
            Expr::Map { lam, .. } => found.push((of("map body"), lam.params.clone(), &lam.body)),
            Expr::Reduce { lam, .. } | Expr::Scan { lam, .. } | Expr::Hist { lam, .. } => {
                found.push((of("operator"), lam.params.clone(), &lam.body))
            }
            Expr::Loop { params, form, body, .. } => {
                let mut ps = params.clone();
                if let ir::LoopForm::For { index, .. } = form {
                    ps.push(*index);
                }
                found.push((of("loop body"), ps, body));
            }
            Expr::If { then_body, else_body, .. } => {
                found.push((of("then branch"), Vec::new(), then_body));
                found.push((of("else branch"), Vec::new(), else_body));
            }
            _ => {}
        }
        for (what, params, b) in found {
            out.push((what, params, b.clone()));
            nested_scopes(vars, b, out);
        }
    }
}

fn collect_vjps(body: &Body, out: &mut Vec<ir::Lambda>) {
    for s in &body.stmts {
        if let Expr::Vjp { lam, .. } = &s.expr {
            out.push(lam.clone());
        }
        s.expr.for_each_body(&mut |b| collect_vjps(b, out));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Program;
    use crate::driver::no_files;

    /// The vjp lambda of an entry, and the program's variables.
    fn vjp_of(src: &str) -> (ir::VarTable, ir::Lambda) {
        let p = Program::compile("t.slope", src, &no_files).unwrap_or_else(|f| panic!("{f:?}"));
        let mut found = Vec::new();
        for f in &p.elaborated.funcs {
            collect_vjps(&f.body, &mut found);
        }
        (p.elaborated.vars.clone(), found.remove(0))
    }

    const WORKED: &str = "entry df (x: f64) (y: f64) : (f64, f64) = grad (\\(a, b) -> a * b + sin a) (x, y)";

    #[test]
    fn translates_the_worked_example() {
        // Huot & Shaikhha's example: 2 context slots, three primitives, each
        // with its operand copies pushed and then forgotten.
        let (vars, lam) = vjp_of(WORKED);
        let unf = translate(&lam.params, lam.body.clone());
        verify(&vars, &unf).unwrap();
        let shape: Vec<String> = unf
            .instrs
            .iter()
            .map(|i| match i {
                Instr::Var(s) => format!("var {s}"),
                Instr::Const(_) => "const".into(),
                Instr::Op(p) => format!("op {}", p.name()),
                Instr::Proj { keep, drop } => format!("proj {keep} {drop}"),
                Instr::Block { .. } => "block".into(),
            })
            .collect();
        assert_eq!(
            shape,
            [
                "var 0", "var 1", "op (*)", "proj 2 2", "var 0", "op sin", "proj 3 1", "var 2", "var 3", "op (+)",
                "proj 4 2", "var 4", "proj 2 3"
            ]
        );
        // The term maps Γ to Γ and the result.
        assert_eq!(unf.stacks.last().unwrap().len(), 3);
    }

    #[test]
    fn verifier_rejects_a_broken_stack() {
        let (vars, lam) = vjp_of(WORKED);
        let mut unf = translate(&lam.params, lam.body.clone());
        unf.instrs[0] = Instr::Var(7);
        let err = verify(&vars, &unf).unwrap_err();
        assert!(err.contains("slot 7"), "{err}");
        let mut unf = translate(&lam.params, lam.body.clone());
        unf.instrs.pop();
        unf.stacks.pop();
        unf.temps.pop();
        assert!(verify(&vars, &unf).unwrap_err().contains("results"));
    }

    #[test]
    fn combinators_are_blocks_reading_their_free_slots() {
        let (vars, lam) =
            vjp_of("entry g [n] (x: [n]f64) (c: f64) : [n]f64 = grad (\\v -> sum (map (\\e -> e * c) v)) x");
        let unf = translate(&lam.params, lam.body.clone());
        verify(&vars, &unf).unwrap();
        let map_block = unf.instrs.iter().find_map(|i| match i {
            Instr::Block { index, reads } if matches!(unf.body.stmts[*index].expr, Expr::Map { .. }) => Some(reads),
            _ => None,
        });
        // The map reads the parameter and the captured `c` (both in Γ).
        let reads = map_block.expect("a map block");
        assert!(reads.iter().all(|r| *r < unf.context.len() || *r < unf.stacks.len()));
        assert!(print(&vars, &unf).contains("block map"));
    }

    #[test]
    fn reverse_on_the_unary_form_gives_the_gradient() {
        let p = Program::compile("t.slope", WORKED, &no_files).unwrap();
        let out = p.call_json("df", &serde_json::json!({"x": 2.0, "y": 3.0})).unwrap();
        let want = [3.0 + 2f64.cos(), 2.0];
        let got: Vec<f64> = out.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert!((got[0] - want[0]).abs() < 1e-15 && (got[1] - want[1]).abs() < 1e-15, "{got:?}");
    }
}
