//! The ownership plan's verifier (run after the `ownership` pass in debug
//! builds and tests, as every IR's is).
//!
//! Checks, walking each function in lowering's order: every visit of a
//! statement that writes a buffer has a decision of its kind, sized to the
//! statement (a map's results, a loop's parameters), a map writing each
//! input over at most one result; and the plan has no decision for any
//! other visit.

use super::{needs_decision, Decision, Plan, Program, Visits};
use crate::ir::{Body, Expr, Stmt};

pub fn verify(program: &Program) -> Result<(), String> {
    if program.plans.len() != program.segments.ir.funcs.len() {
        return Err("the ownership plan does not have one plan per function".into());
    }
    for (f, plan) in program.segments.ir.funcs.iter().zip(&program.plans) {
        let mut v = Verifier { plan, visits: Visits::default(), checked: 0 };
        v.body(&f.body).map_err(|e| format!("{}: {e}", f.name))?;
        if v.checked != plan.len() {
            return Err(format!("{}: the ownership plan decides for a statement no walk reaches", f.name));
        }
    }
    Ok(())
}

struct Verifier<'p> {
    plan: &'p Plan,
    visits: Visits,
    /// How many of the plan's decisions the walk has found.
    checked: usize,
}

impl Verifier<'_> {
    fn body(&mut self, b: &Body) -> Result<(), String> {
        for s in b.stmts.iter() {
            let visit = self.visits.next(s);
            match (needs_decision(&s.expr), self.plan.get(&visit)) {
                (None, None) => {}
                (None, Some(d)) => return Err(format!("a {} decision for a statement that writes no buffer", d.kind())),
                (Some(kind), None) => return Err(format!("a {kind} without an ownership decision")),
                (Some(kind), Some(d)) => {
                    self.checked += 1;
                    if d.kind() != kind {
                        return Err(format!("a {} decision for a {kind}", d.kind()));
                    }
                    fits(d, s)?;
                }
            }
            // Lowering's order (a while loop's condition first), and of a
            // custom derivative only the primal: lowering never runs the rules.
            let mut bodies = Vec::new();
            match &s.expr {
                Expr::Custom { primal, .. } => bodies.push(&primal.body),
                e => e.for_each_body(&mut |b| bodies.push(b)),
            }
            for b in bodies {
                self.body(b)?;
            }
        }
        Ok(())
    }
}

/// Is `d` sized to the statement `s`?
fn fits(d: &Decision, s: &Stmt) -> Result<(), String> {
    match (d, &s.expr) {
        (Decision::Map { into }, Expr::Map { arrays, .. }) => {
            let mut given: Vec<usize> = into.iter().flatten().copied().collect();
            let n = given.len();
            given.sort();
            given.dedup();
            if into.len() != s.binds.len() {
                return Err("a map decision not sized to the map's results".into());
            }
            if given.len() != n || given.iter().any(|&i| i >= arrays.len()) {
                return Err("a map writes one input over two results, or over an input it does not have".into());
            }
            Ok(())
        }
        (Decision::Loop { carried, copy_init, copy_next }, Expr::Loop { params, .. }) => {
            let n = params.len();
            match carried.len() == n && copy_init.len() == n && copy_next.len() == n {
                true => Ok(()),
                false => Err("a loop decision not sized to the loop's parameters".into()),
            }
        }
        _ => Ok(()),
    }
}
