//! The parallel level's verifier (run after the `segments` pass in debug
//! builds and tests, as every IR's is).
//!
//! Checks: every statement the level names is a statement of the program,
//! whose iteration space is the one recorded; and no parallel
//! statement lies inside the lambda or body of a parallel statement, of a
//! `while` loop, or of a loop over more than a few iterations that carries
//! a value (Note [Outermost parallelism first]: the threads are taken by
//! the level outside).

use super::decide::{small, space_of};
use super::{Level, Program, Role, StmtId};
use crate::hash::HashSet;
use crate::ir::{Body, Expr, LoopForm};

pub fn verify(program: &Program) -> Result<(), String> {
    let mut v = Verifier { program, seen: HashSet::default(), errors: Vec::new() };
    for f in &program.ir.funcs {
        v.body(&f.body, true);
    }
    if program.segments.keys().any(|key| !v.seen.contains(key)) {
        v.errors.push("the parallel level names a statement the program does not have".into());
    }
    match v.errors.first() {
        None => Ok(()),
        Some(e) => Err(e.clone()),
    }
}

struct Verifier<'p> {
    program: &'p Program,
    seen: HashSet<StmtId>,
    errors: Vec<String>,
}

impl Verifier<'_> {
    /// `may_be_parallel`: no enclosing statement took the threads.
    fn body(&mut self, body: &Body, may_be_parallel: bool) {
        for s in body.stmts.iter() {
            let seg = self.program.segments.get(&StmtId::of(s));
            let name = || s.binds.first().map(|&v| self.program.ir.vars.display(v)).unwrap_or_default();
            if let Some(seg) = seg {
                if seg.level == Level::Parallel && !may_be_parallel {
                    self.errors.push(format!("{} is parallel inside a level that took the threads", name()));
                }
                if seg.space.is_some() && seg.space != space_of(s) {
                    self.errors.push(format!("{}'s iteration space is not its statement's", name()));
                }
            }
            self.seen.insert(StmtId::of(s));
            let takes_threads = match (&s.expr, seg) {
                (Expr::If { .. } | Expr::Custom { .. }, _) => false,
                (Expr::Loop { form: LoopForm::While { .. }, .. }, _) => true,
                (_, Some(seg)) if seg.level == Level::Parallel => seg.space.is_some(),
                (_, Some(seg)) => seg.space.as_ref().is_some_and(|sp| {
                    matches!(&sp.kind, super::Kind::Loop(r) if r.contains(&Role::Carried)) && !small(sp.size)
                }),
                (_, None) => true,
            };
            s.expr.for_each_body(&mut |b| self.body(b, may_be_parallel && !takes_threads));
        }
    }
}
