//! Type checker of the loop IR, run after lowering in debug builds and tests.
//!
//! Checks what code generation relies on: operands of the types an
//! instruction expects (addresses and sizes `i64`, conditions `bool`, stored
//! values of the element type), assignments of the variable's type, and every
//! `Fail` naming an existing site; and, over a whole program, that every
//! `Parallel` and `Call` matches the segment or function it runs, a `Call`
//! only in a function's top-level block and of another function. A
//! failure is a lowering bug.

use super::{Func, Inst, MTy, Operand, Rhs};

pub fn verify_func(f: &Func) -> Result<(), String> {
    let v = Verifier { f };
    v.block(&f.body).map_err(|e| format!("{}: {e}", f.name))?;
    for &r in &f.results {
        v.operand(r)?;
    }
    Ok(())
}

/// [`verify_func`] on every function and segment, and every `Parallel`
/// against the segment it runs: one argument per segment parameter after
/// `lo` and `hi`, of its type; one result per reduction, of its type.
pub fn verify_program(p: &super::Program) -> Result<(), String> {
    for f in p.funcs.iter().chain(p.segments.iter().map(|s| &s.func)) {
        verify_func(f)?;
        let mut bad = None;
        super::for_each_inst(&f.body, &mut |i| {
            let Inst::Parallel { segment, args, results, .. } = i else { return };
            let Some(seg) = p.segments.get(*segment as usize) else {
                bad = Some(format!("unknown segment {segment}"));
                return;
            };
            let g = &seg.func;
            if !words_match(f, args, results, g, g.params.get(2..).unwrap_or(&[])) || seg.plan.words != args.len() + 2 {
                bad = Some(format!("parallel segment{segment} called with the wrong arguments or results"));
            }
        });
        if let Some(e) = bad.or_else(|| calls_ok(p, f).err()) {
            return Err(format!("{}: {e}", f.name));
        }
    }
    Ok(())
}

/// Every `Call` of `f` stands in its top-level block, names another
/// function of `p` and passes and receives words of that function's types.
fn calls_ok(p: &super::Program, f: &Func) -> Result<(), String> {
    for i in &f.body {
        let mut nested = false;
        i.for_each_block(|b| super::for_each_inst(b, &mut |j| nested |= matches!(j, Inst::Call { .. })));
        if nested {
            return Err("a call inside a nested block".to_string());
        }
        let Inst::Call { func, args, results } = i else { continue };
        // (Which function comes first is the array IR's invariant: a library
        // puts the entries it exports first, then those they call.)
        let Some(g) = p.funcs.iter().find(|g| &g.name == func && g.name != f.name) else {
            return Err(format!("a call of `{func}`, which is not another function of the program"));
        };
        if !words_match(f, args, results, g, &g.params) {
            return Err(format!("a call of `{func}` with the wrong arguments or results"));
        }
    }
    Ok(())
}

/// Whether `f` passes `args` to `g`'s parameters `params` and receives
/// `results` from its results: as many of each, of the same types.
fn words_match(f: &Func, args: &[Operand], results: &[super::LVar], g: &Func, params: &[super::LVar]) -> bool {
    params.len() == args.len()
        && args.iter().zip(params).all(|(&a, &q)| f.operand_type(a) == g.ty(q))
        && g.results.len() == results.len()
        && results.iter().zip(&g.results).all(|(&r, &o)| f.ty(r) == g.operand_type(o))
}

struct Verifier<'f> {
    f: &'f Func,
}

impl Verifier<'_> {
    fn operand(&self, o: Operand) -> Result<MTy, String> {
        if let Operand::Var(v) = o {
            if v.0 as usize >= self.f.vars.len() {
                return Err(format!("unknown variable {}", v.0));
            }
        }
        Ok(self.f.operand_type(o))
    }

    fn expect(&self, o: Operand, ty: MTy, what: &str) -> Result<(), String> {
        let got = self.operand(o)?;
        if got != ty {
            return Err(format!("{what}: {o:?} is {}, not {}", got.name(), ty.name()));
        }
        Ok(())
    }

    fn rhs(&self, r: &Rhs) -> Result<MTy, String> {
        Ok(match r {
            Rhs::Use(o) => self.operand(*o)?,
            Rhs::Unary(op, o) => {
                let t = self.operand(*o)?;
                match op.prim().result(t.scalar()) {
                    Some(r) => MTy::of(r),
                    None => return Err(format!("{} of {}", op.name(), t.name())),
                }
            }
            Rhs::Binary(op, a, b) => {
                let (ta, tb) = (self.operand(*a)?, self.operand(*b)?);
                if ta != tb {
                    return Err(format!("{} of {} and {}", op.symbol(), ta.name(), tb.name()));
                }
                if op.returns_bool() {
                    MTy::Bool
                } else {
                    ta
                }
            }
            Rhs::Convert(t, o) => {
                self.operand(*o)?;
                *t
            }
            Rhs::Select(c, a, b) => {
                self.expect(*c, MTy::Bool, "select condition")?;
                let t = self.operand(*a)?;
                self.expect(*b, t, "select operands")?;
                t
            }
            Rhs::Load { elem, base, index } => {
                self.expect(*base, MTy::I64, "load address")?;
                self.expect(*index, MTy::I64, "load index")?;
                *elem
            }
            Rhs::Offset { base, index, .. } => {
                self.expect(*base, MTy::I64, "offset address")?;
                self.expect(*index, MTy::I64, "offset index")?;
                MTy::I64
            }
            Rhs::Alloc { count, site, .. } => {
                self.expect(*count, MTy::I64, "allocation size")?;
                if *site as usize >= self.f.sites.len() {
                    return Err(format!("allocation failing with unknown site {site}"));
                }
                MTy::I64
            }
            Rhs::InRange { index, bound } => {
                self.expect(*index, MTy::I64, "index")?;
                self.expect(*bound, MTy::I64, "bound")?;
                MTy::Bool
            }
            Rhs::Mark | Rhs::WhileLimit => MTy::I64,
        })
    }

    fn block(&self, insts: &[Inst]) -> Result<(), String> {
        for i in insts {
            match i {
                Inst::Let(v, r) => {
                    let t = self.rhs(r)?;
                    if t != self.f.ty(*v) {
                        let name = &self.f.vars[v.0 as usize].0;
                        return Err(format!(
                            "{name}_{} is {} but is assigned {r:?} of type {}",
                            v.0,
                            self.f.ty(*v).name(),
                            t.name()
                        ));
                    }
                }
                Inst::Store { elem, base, index, value } => {
                    self.expect(*base, MTy::I64, "store address")?;
                    self.expect(*index, MTy::I64, "store index")?;
                    self.expect(*value, *elem, "stored value")?;
                }
                Inst::Copy { dst, src, count, .. } => {
                    self.expect(*dst, MTy::I64, "copy destination")?;
                    self.expect(*src, MTy::I64, "copy source")?;
                    self.expect(*count, MTy::I64, "copy count")?;
                }
                Inst::Argsort { elem, keys, count, perm, .. } => {
                    if *elem == MTy::Bool {
                        return Err("argsort of booleans".to_string());
                    }
                    self.expect(*perm, MTy::I64, "argsort permutation")?;
                    self.expect(*keys, MTy::I64, "argsort keys")?;
                    self.expect(*count, MTy::I64, "argsort count")?;
                }
                Inst::For { index, start, bound, body, .. } => {
                    self.expect(Operand::Var(*index), MTy::I64, "loop index")?;
                    self.expect(*start, MTy::I64, "loop start")?;
                    self.expect(*bound, MTy::I64, "loop bound")?;
                    self.block(body)?;
                }
                Inst::While { cond, test, body } => {
                    self.block(cond)?;
                    self.expect(*test, MTy::Bool, "while test")?;
                    self.block(body)?;
                }
                Inst::If { cond, then, els } => {
                    self.expect(*cond, MTy::Bool, "if condition")?;
                    self.block(then)?;
                    self.block(els)?;
                }
                Inst::Fail { site, args } => {
                    if *site as usize >= self.f.sites.len() {
                        return Err(format!("fail of unknown site {site}"));
                    }
                    for &a in args {
                        self.operand(a)?;
                    }
                }
                Inst::Release { mark, keep } => {
                    self.expect(*mark, MTy::I64, "release mark")?;
                    for &k in keep {
                        self.expect(k, MTy::I64, "kept pointer")?;
                    }
                }
                Inst::Call { args, results, .. } => {
                    for &a in args {
                        self.operand(a)?;
                    }
                    for &r in results {
                        self.operand(Operand::Var(r))?;
                    }
                }
                Inst::Parallel { start, bound, args, results, .. } => {
                    self.expect(*start, MTy::I64, "parallel start")?;
                    self.expect(*bound, MTy::I64, "parallel bound")?;
                    for &a in args {
                        self.operand(a)?;
                    }
                    for &r in results {
                        self.operand(Operand::Var(r))?;
                    }
                }
            }
        }
        Ok(())
    }
}
