//! The rewrite-strategy engine: ELEVATE / Stratego combinators over the IR.
//!
//! Input: a function body, a [`Strategy`] and a [`Cx`] (the program's
//! `VarTable`, use counts, value facts, fuel). Output: the rewritten body, or a
//! [`Stop`] saying which strategy failed or that the fuel ran out.
//!
//! The term tree is the tree of *bodies*: a body's children are the bodies
//! nested in its statements (lambda bodies, `if` branches, loop conditions and
//! bodies), in statement order. A rule is a function on one body: it may
//! rewrite any number of that body's statements in one application and fails
//! when it changes nothing (see Note [Rules on bodies]).
//!
//! Invariants:
//! - every successful rewrite keeps the function verifiable and its meaning
//!   (up to Note [What may move] in `rules.rs`);
//! - [`Cx`]'s use counts are exact after every rewrite and every rollback
//!   (see Note [Use counts]);
//! - every rule application and every round of `repeat` spends one unit of
//!   fuel; at zero the run stops with [`Stop::OutOfFuel`], which no
//!   combinator catches, so no schedule can hang the compiler.

use super::walk;
use crate::hash::{HashMap, HashSet};
use crate::ir::{alias, Atom, Body, CheckKind, Expr, LoopForm, Stmt, Var, VarTable};
use std::fmt;

/// A rule: rewrites one body, or returns `None` when it does not apply.
pub type RuleFn = fn(&mut Cx, &Body) -> Option<Body>;

/// A named rule of the library (`rules.rs`).
pub struct Rule {
    pub name: &'static str,
    pub description: &'static str,
    pub apply: RuleFn,
}

/// A strategy, as data: it prints in the schedule language and parses back.
#[derive(Clone)]
pub enum Strategy {
    Id,
    Fail,
    Rule(&'static Rule),
    /// `s1 ; s2`
    Seq(Box<Strategy>, Box<Strategy>),
    /// `s1 <+ s2`: `s2` on the original term when `s1` fails.
    Choice(Box<Strategy>, Box<Strategy>),
    Try(Box<Strategy>),
    /// Apply until it fails or changes nothing (never fails).
    Repeat(Box<Strategy>),
    One(Box<Strategy>),
    All(Box<Strategy>),
    Some(Box<Strategy>),
    /// `s <+ one(topDown(s))`: the first pre-order match, once.
    TopDown(Box<Strategy>),
    /// `one(bottomUp(s)) <+ s`: the first post-order match, once.
    BottomUp(Box<Strategy>),
    /// `s ; all(allTopDown(s))`
    AllTopDown(Box<Strategy>),
    /// `all(allBottomUp(s)) ; s`
    AllBottomUp(Box<Strategy>),
    /// `repeat(topDown(s))`
    Normalize(Box<Strategy>),
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unary = |f: &mut fmt::Formatter<'_>, name: &str, s: &Strategy| write!(f, "{name}({s})");
        match self {
            Strategy::Id => f.write_str("id"),
            Strategy::Fail => f.write_str("fail"),
            Strategy::Rule(r) => f.write_str(r.name),
            Strategy::Seq(a, b) => write!(f, "({a} ; {b})"),
            Strategy::Choice(a, b) => write!(f, "({a} <+ {b})"),
            Strategy::Try(s) => unary(f, "try", s),
            Strategy::Repeat(s) => unary(f, "repeat", s),
            Strategy::One(s) => unary(f, "one", s),
            Strategy::All(s) => unary(f, "all", s),
            Strategy::Some(s) => unary(f, "some", s),
            Strategy::TopDown(s) => unary(f, "topDown", s),
            Strategy::BottomUp(s) => unary(f, "bottomUp", s),
            Strategy::AllTopDown(s) => unary(f, "allTopDown", s),
            Strategy::AllBottomUp(s) => unary(f, "allBottomUp", s),
            Strategy::Normalize(s) => unary(f, "normalize", s),
        }
    }
}

impl fmt::Debug for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a strategy did not succeed.
#[derive(Clone, Debug, PartialEq)]
pub enum Stop {
    /// The named strategy failed (an ordinary outcome, caught by `<+`, `try`, `repeat`).
    Failed(String),
    /// The fuel ran out inside the named strategy; the whole run stops.
    OutOfFuel(String),
}

/// A success: the term is unchanged (nothing to copy) or rewritten.
pub enum Outcome {
    Same,
    New(Body),
}

pub type Res = Result<Outcome, Stop>;

/// What a rule knows about a variable's value, wherever it is used (SSA makes
/// a fact about a binding true everywhere the variable is in scope).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fact {
    Atom(Atom),
    Replicate {
        count: Atom,
        value: Atom,
    },
    Iota(Atom),
    /// The result of a `map` of this width.
    Mapped {
        width: Atom,
    },
    /// The size of dimension `dim` of `array`.
    Shape {
        array: Var,
        dim: u32,
    },
    /// A loop index, or a parameter of a map over `iota n`: in `0..n`.
    Below(Atom),
    /// An array whose shape is `array`'s without its first `skip`
    /// dimensions: an update, scatter, histogram or reverse of it (`skip`
    /// 0), one of its rows (a map parameter, an index: `skip` ≥ 1).
    Sub {
        array: Var,
        skip: u32,
    },
}

/// Options that change which rewrites are allowed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flags {
    /// Allow `x * 0.0 → 0.0` on floats (unsound for infinite or NaN `x`).
    pub float_zero: bool,
    /// Sweep every body in every round of `normalize`, even those Note
    /// [Clean bodies] lets the engine skip: slower, the same normal form
    /// (a test compares the two).
    pub sweep_all: bool,
}

/// The context of one run: shared by every rule application on one program.
pub struct Cx<'v> {
    pub vars: &'v mut VarTable,
    uses: Vec<u32>,
    facts: HashMap<Var, Fact>,
    consumed: HashSet<Var>,
    /// Arrays bound by `argsort`: each of 0 … length-1 exactly once.
    permutations: HashSet<Var>,
    /// See `ir::Program::recomputed`.
    recomputed: HashSet<Var>,
    /// The operands of the equality checks at the top level of the function
    /// body (they run on every execution that gets past them); see Note
    /// [Guards] in `guards.rs` for when they may be used.
    size_eqs: Vec<(Atom, Atom)>,
    pub fuel: u64,
    pub flags: Flags,
    /// How many rule applications succeeded (for tests and statistics).
    pub rewrites: u64,
    /// Counts the changes to the facts above (one tick per `account`).
    clock: u64,
    /// Scratch for `count`: the `clock` at which a variable was last seen.
    seen: Vec<u64>,
    /// For each variable, the `clock` of the last change to its use count
    /// or facts (Note [Clean bodies]).
    touched: Vec<u64>,
    /// Bodies already a normal form of a `normalize`'s strategy.
    clean: HashMap<(usize, usize), Clean>,
    /// For each variable, the variables `size_eqs` says equal to it.
    size_partners: HashMap<Var, Vec<Var>>,
}

/// A body found to be a normal form: nothing of the strategy applied to it
/// or below it at `clock` time `at` (Note [Clean bodies]).
struct Clean {
    /// Keeps the statement list alive, so its address names it.
    stmts: crate::ir::Shared<Vec<Stmt>>,
    result: Vec<Atom>,
    at: u64,
    /// Every variable the body's own statements and result mention (nested
    /// bodies have records of their own), closed under the variables facts
    /// name and the function's size checks relate.
    deps: Vec<Var>,
}

impl<'v> Cx<'v> {
    pub fn new(vars: &'v mut VarTable, fuel: u64) -> Cx<'v> {
        Cx {
            vars,
            uses: Vec::new(),
            facts: HashMap::default(),
            consumed: HashSet::default(),
            permutations: HashSet::default(),
            recomputed: HashSet::default(),
            size_eqs: Vec::new(),
            fuel,
            flags: Flags::default(),
            rewrites: 0,
            clock: 0,
            seen: Vec::new(),
            touched: Vec::new(),
            clean: HashMap::default(),
            size_partners: HashMap::default(),
        }
    }

    /// Starts work on a function: counts the uses in its body and records facts.
    pub fn enter_function(&mut self, body: &Body) {
        self.uses.clear();
        self.facts.clear();
        self.consumed.clear();
        self.permutations.clear();
        self.touched.clear();
        self.clean.clear();
        self.size_eqs = (body.stmts.iter())
            .filter_map(|s| match &s.expr {
                Expr::Check { kind: CheckKind::SizeEq { .. } | CheckKind::Iterated { .. }, args } => {
                    Some((args[0], args[1]))
                }
                _ => None,
            })
            .collect();
        self.size_partners.clear();
        for &(a, b) in &self.size_eqs {
            if let (Atom::Var(x), Atom::Var(y)) = (a, b) {
                self.size_partners.entry(x).or_default().push(y);
                self.size_partners.entry(y).or_default().push(x);
            }
        }
        self.count(&body.stmts, &body.result, 1, &mut Vec::new());
        self.learn(&body.stmts);
    }

    /// The operands of the equality checks at the top level of the function.
    pub fn size_eqs(&self) -> &[(Atom, Atom)] {
        &self.size_eqs
    }

    /// `f` of this context with the facts alone, as if the function had no
    /// top-level size checks: what a statement cannot fail on wherever it
    /// runs, also on a path where a later check fails first (Note [Common
    /// code of two branches] in `branches.rs`).
    pub fn without_size_checks<R>(&mut self, f: impl FnOnce(&Cx) -> R) -> R {
        let checks = std::mem::take(&mut self.size_eqs);
        let out = f(self);
        self.size_eqs = checks;
        out
    }

    /// Whether the statement binding `v` is tested again later (`ir::Program::recomputed`).
    pub fn is_recomputed(&self, v: Var) -> bool {
        self.recomputed.contains(&v)
    }

    /// How many times `v` is used in the function (each textual use once).
    pub fn uses(&self, v: Var) -> u32 {
        self.uses.get(v.0 as usize).copied().unwrap_or(0)
    }

    pub fn fact(&self, v: Var) -> Option<Fact> {
        self.facts.get(&v).copied()
    }

    /// Whether `v` is the array operand of an `UpdateAt` anywhere (now or
    /// earlier in the run: the set only grows, which is conservative).
    pub fn is_consumed(&self, v: Var) -> bool {
        self.consumed.contains(&v)
    }

    /// Whether `v` is an `argsort` result: a permutation of 0 … length-1.
    pub fn is_permutation(&self, v: Var) -> bool {
        self.permutations.contains(&v)
    }

    /// Whether the function consumes any array at all.
    pub fn any_consumed(&self) -> bool {
        !self.consumed.is_empty()
    }

    /// Whether replacing every use of `x` by `a` keeps consumed arrays linear:
    /// neither side is consumed, or `x`'s definition is `a`'s only use (so the
    /// replacement is a pure renaming). See Note [Consumed arrays] in `ir`.
    pub fn may_alias(&self, x: Var, a: Atom) -> bool {
        match a {
            Atom::Const(_) => true,
            Atom::Var(y) => !(self.is_consumed(x) || self.is_consumed(y)) || self.uses(y) == 1,
        }
    }

    /// Records that `old` was replaced by `new` (a rewrite, or a rollback with
    /// the arguments swapped). See Note [Use counts].
    pub fn account(&mut self, old: &Body, new: &Body) {
        // Statements both bodies share — a prefix and a suffix: a rule
        // rewrites a few statements of a long body — change no count and
        // teach no new fact, and comparing them costs less than walking them
        // three times.
        let prefix = old.stmts.iter().zip(&new.stmts).take_while(|(a, b)| a == b).count();
        let (old_rest, new_rest) = (&old.stmts[prefix..], &new.stmts[prefix..]);
        let suffix = old_rest.iter().rev().zip(new_rest.iter().rev()).take_while(|(a, b)| a == b).count();
        let old_changed = &old_rest[..old_rest.len() - suffix];
        let new_changed = &new_rest[..new_rest.len() - suffix];
        self.clock += 1;
        // Only net changes touch: a variable the rewrite uses as often as
        // before is not touched (Note [Clean bodies]).
        let mut before = Vec::new();
        self.count(old_changed, &old.result, -1, &mut before);
        self.count(new_changed, &new.result, 1, &mut before);
        for (v, count) in before {
            if self.uses[v.0 as usize] != count {
                touch(&mut self.touched, v, self.clock);
            }
        }
        self.learn(new_changed);
    }

    /// Adds `delta` to the use count of every variable `stmts` and `result`
    /// read. A variable seen for the first time in this tick of the clock
    /// goes into `before` with its count before the tick.
    fn count(&mut self, stmts: &[Stmt], result: &[Atom], delta: i64, before: &mut Vec<(Var, u32)>) {
        let mut one = |v: Var| {
            let i = v.0 as usize;
            if self.uses.len() <= i {
                self.uses.resize(i + 1, 0);
            }
            if self.seen.len() <= i {
                self.seen.resize(i + 1, 0);
            }
            if self.seen[i] != self.clock {
                self.seen[i] = self.clock;
                before.push((v, self.uses[i]));
            }
            self.uses[i] = (self.uses[i] as i64 + delta).max(0) as u32;
        };
        walk::for_each_use_in(stmts, &mut one);
        result.iter().filter_map(|a| a.var()).for_each(one);
    }

    fn learn(&mut self, stmts: &[Stmt]) {
        let (facts, consumed, permutations) = (&mut self.facts, &mut self.consumed, &mut self.permutations);
        let (touched, clock) = (&mut self.touched, self.clock);
        let mut visit = |s: &Stmt| {
            if let Expr::Argsort { .. } = s.expr {
                for b in &s.binds {
                    if permutations.insert(*b) {
                        touch(touched, *b, clock);
                    }
                }
            }
            if let Some(v) = alias::consumed(&s.expr) {
                if consumed.insert(v) {
                    touch(touched, v, clock);
                }
            }
            match &s.expr {
                Expr::Map { lam, arrays, .. } => {
                    for (p, a) in lam.params.iter().zip(arrays) {
                        let fact = match facts.get(a) {
                            Some(Fact::Iota(n)) => Fact::Below(*n),
                            _ => Fact::Sub { array: *a, skip: 1 },
                        };
                        learned(facts, touched, clock, *p, fact);
                    }
                }
                Expr::Loop { form: LoopForm::For { index, bound }, .. } => {
                    learned(facts, touched, clock, *index, Fact::Below(*bound));
                }
                _ => {}
            }
            let fact = match &s.expr {
                Expr::Atom(a) => Some(Fact::Atom(*a)),
                Expr::Shape { array, dim } => Some(Fact::Shape { array: *array, dim: *dim }),
                Expr::Replicate { count, value } => Some(Fact::Replicate { count: *count, value: *value }),
                Expr::Iota(n) => Some(Fact::Iota(*n)),
                Expr::Map { width, .. } => Some(Fact::Mapped { width: *width }),
                Expr::UpdateAt { array, .. } => Some(Fact::Sub { array: *array, skip: 0 }),
                Expr::Scatter { dest, .. }
                | Expr::Hist { dest, .. }
                | Expr::Reverse(dest)
                | Expr::Argsort { array: dest, .. } => Some(Fact::Sub { array: *dest, skip: 0 }),
                Expr::Index { array, indices } => Some(Fact::Sub { array: *array, skip: indices.len() as u32 }),
                _ => None,
            };
            if let Some(f) = fact {
                for b in &s.binds {
                    if !matches!(f, Fact::Atom(_) | Fact::Replicate { .. } | Fact::Iota(_)) || s.binds.len() == 1 {
                        learned(facts, touched, clock, *b, f);
                    }
                }
            }
        };
        for s in stmts {
            visit(s);
            s.expr.for_each_body(&mut |b| walk::for_each_stmt(b, &mut visit));
        }
    }

    /// Whether `body` is known to be a normal form of the strategy `key`
    /// names, and nothing it depends on changed since (Note [Clean bodies]).
    fn is_clean(&self, key: usize, body: &Body) -> bool {
        let Some(c) = self.clean.get(&(key, clean_address(body))) else { return false };
        crate::ir::Shared::same(&c.stmts, &body.stmts)
            && c.result == body.result
            && c.deps.iter().all(|v| self.touched.get(v.0 as usize).is_none_or(|t| *t <= c.at))
            && body.stmts.iter().all(|s| s.expr.bodies().into_iter().all(|b| self.is_clean(key, b)))
    }

    /// Records that `body` was a normal form of the strategy `key` at time
    /// `at`. What the record lists are the variables of the body's own
    /// statements; its children, swept just before, have their own records
    /// (which [`Self::is_clean`] asks too).
    fn mark_clean(&mut self, key: usize, body: &Body, at: u64) {
        let mut deps: Vec<Var> = Vec::new();
        for s in body.stmts.iter() {
            mentioned_here(s, &mut |v| deps.push(v));
            s.expr.for_each_operand(|a| deps.extend(a.var()));
        }
        deps.extend(body.result.iter().filter_map(|a| a.var()));
        // What rules may ask through facts (`x`'s fact names `y`, whose fact
        // matters too) and through the function's size checks (`n == m`).
        let mut seen: HashSet<Var> = deps.iter().copied().collect();
        let mut work = deps.clone();
        while let Some(v) = work.pop() {
            let equal = self.size_partners.get(&v).into_iter().flatten().copied();
            let named: Vec<Var> = self.fact(v).map(fact_vars).unwrap_or_default().into_iter().chain(equal).collect();
            for w in named {
                if seen.insert(w) {
                    deps.push(w);
                    work.push(w);
                }
            }
        }
        deps.sort_unstable();
        deps.dedup();
        let clean = Clean { stmts: body.stmts.clone(), result: body.result.clone(), at, deps };
        self.clean.insert((key, clean_address(body)), clean);
    }

    fn tick(&mut self, what: &dyn Fn() -> String) -> Result<(), Stop> {
        if self.fuel == 0 {
            return Err(Stop::OutOfFuel(what()));
        }
        self.fuel -= 1;
        Ok(())
    }
}

/// Records fact `f` of `v`; `v` is touched when that changes what is known
/// (Note [Clean bodies]).
fn learned(facts: &mut HashMap<Var, Fact>, touched: &mut Vec<u64>, clock: u64, v: Var, f: Fact) {
    if facts.insert(v, f) != Some(f) {
        touch(touched, v, clock);
    }
}

fn touch(touched: &mut Vec<u64>, v: Var, clock: u64) {
    let i = v.0 as usize;
    if touched.len() <= i {
        touched.resize(i + 1, 0);
    }
    touched[i] = clock;
}

/// Calls `f` on the variables `s` binds at its own level: its results,
/// its lambdas' parameters, its loop's parameters and index.
fn mentioned_here(s: &Stmt, f: &mut dyn FnMut(Var)) {
    s.binds.iter().for_each(|v| f(*v));
    s.expr.for_each_binder(f);
}

/// The variables a fact names.
fn fact_vars(f: Fact) -> Vec<Var> {
    let atoms: Vec<Atom> = match f {
        Fact::Atom(a) | Fact::Iota(a) | Fact::Below(a) => vec![a],
        Fact::Replicate { count, value } => vec![count, value],
        Fact::Mapped { width } => vec![width],
        Fact::Shape { array, .. } | Fact::Sub { array, .. } => vec![Atom::Var(array)],
    };
    atoms.into_iter().filter_map(|a| a.var()).collect()
}

/// A body's name in the record of clean bodies: its statement list's address.
fn clean_address(body: &Body) -> usize {
    crate::ir::Shared::address(&body.stmts)
}

fn failed(s: &Strategy) -> Stop {
    Stop::Failed(s.to_string())
}

/// Applies `s` to `body`.
pub fn apply(cx: &mut Cx, s: &Strategy, body: &Body) -> Res {
    match s {
        Strategy::Id => Ok(Outcome::Same),
        Strategy::Fail => Err(failed(s)),
        Strategy::Rule(r) => {
            cx.tick(&|| r.name.to_string())?;
            match (r.apply)(cx, body) {
                Some(new) => {
                    cx.account(body, &new);
                    cx.rewrites += 1;
                    Ok(Outcome::New(new))
                }
                None => Err(Stop::Failed(r.name.to_string())),
            }
        }
        Strategy::Seq(a, b) => seq(cx, body, &|cx, t| apply(cx, a, t), &|cx, t| apply(cx, b, t)),
        Strategy::Choice(a, b) => choice(cx, body, &|cx, t| apply(cx, a, t), &|cx, t| apply(cx, b, t)),
        Strategy::Try(a) => choice(cx, body, &|cx, t| apply(cx, a, t), &|_, _| Ok(Outcome::Same)),
        Strategy::Repeat(a) => repeat(cx, body, s, &|cx, t| apply(cx, a, t)),
        Strategy::One(a) => one(cx, body, s, &|cx, t| apply(cx, a, t)),
        Strategy::All(a) => all(cx, body, s, &|cx, t| apply(cx, a, t)),
        Strategy::Some(a) => some(cx, body, s, &|cx, t| apply(cx, a, t)),
        Strategy::TopDown(a) => top_down(cx, a, s, body),
        Strategy::BottomUp(a) => bottom_up(cx, a, s, body),
        Strategy::AllTopDown(a) => all_top_down(cx, a, s, body),
        Strategy::AllBottomUp(a) => all_bottom_up(cx, a, s, body),
        // A fixpoint of `a` everywhere. Each round rewrites every node to a local
        // fixpoint, top down, in one traversal (rather than one rewrite per
        // traversal): the same normal form, with far fewer copies of the tree.
        Strategy::Normalize(a) => repeat(cx, body, s, &|cx, t| sweep(cx, a, s, t)),
    }
}

type Step<'a> = &'a dyn Fn(&mut Cx, &Body) -> Res;

fn seq(cx: &mut Cx, body: &Body, a: Step, b: Step) -> Res {
    match a(cx, body)? {
        Outcome::Same => b(cx, body),
        Outcome::New(mid) => match b(cx, &mid) {
            Ok(Outcome::Same) => Ok(Outcome::New(mid)),
            Ok(new) => Ok(new),
            Err(Stop::Failed(why)) => {
                // Roll back the first step: the term is the original again.
                cx.account(&mid, body);
                Err(Stop::Failed(why))
            }
            Err(e) => Err(e),
        },
    }
}

fn choice(cx: &mut Cx, body: &Body, a: Step, b: Step) -> Res {
    match a(cx, body) {
        Err(Stop::Failed(_)) => b(cx, body),
        other => other,
    }
}

fn repeat(cx: &mut Cx, body: &Body, s: &Strategy, a: Step) -> Res {
    let mut current: Option<Body> = None;
    loop {
        cx.tick(&|| s.to_string())?;
        let t = current.as_ref().unwrap_or(body);
        match a(cx, t) {
            Ok(Outcome::New(n)) => current = Some(n),
            // A success that changes nothing would repeat forever: it is the fixpoint.
            Ok(Outcome::Same) | Err(Stop::Failed(_)) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(current.map_or(Outcome::Same, Outcome::New))
}

/// The children of a body, as (statement index, nested index) pairs.
fn children(body: &Body) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, st) in body.stmts.iter().enumerate() {
        for j in 0..st.expr.bodies().len() {
            out.push((i, j));
        }
    }
    out
}

fn child(body: &Body, (i, j): (usize, usize)) -> &Body {
    body.stmts[i].expr.bodies()[j]
}

/// `body` with the children `new` names replaced (in children order). Only
/// what is kept is copied: a statement whose child changed is rebuilt around
/// the new child, so a change deep in a chain of nested bodies costs the
/// path to it, not the whole subtree at every level.
fn replace_children(body: &Body, new: Vec<((usize, usize), Body)>) -> Body {
    let mut new = new.into_iter().peekable();
    let mut stmts = Vec::with_capacity(body.stmts.len());
    for (i, st) in body.stmts.iter().enumerate() {
        if new.peek().is_none_or(|((k, _), _)| *k != i) {
            stmts.push(st.clone());
            continue;
        }
        let mut expr = st.expr.clone_without_bodies();
        for (j, slot) in expr.bodies_mut().into_iter().enumerate() {
            *slot = match new.next_if(|((k, l), _)| (*k, *l) == (i, j)) {
                Some((_, b)) => b,
                None => st.expr.bodies()[j].clone(),
            };
        }
        stmts.push(crate::ir::Stmt { binds: st.binds.clone(), expr, span: st.span });
    }
    debug_assert!(new.next().is_none(), "every replaced child exists");
    Body { stmts: stmts.into(), result: body.result.clone() }
}

fn one(cx: &mut Cx, body: &Body, s: &Strategy, a: Step) -> Res {
    for c in children(body) {
        match a(cx, child(body, c)) {
            Ok(Outcome::Same) => return Ok(Outcome::Same),
            Ok(Outcome::New(n)) => return Ok(Outcome::New(replace_children(body, vec![(c, n)]))),
            Err(Stop::Failed(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(failed(s))
}

fn all(cx: &mut Cx, body: &Body, s: &Strategy, a: Step) -> Res {
    let mut changed = Vec::new();
    for c in children(body) {
        match a(cx, child(body, c)) {
            Ok(Outcome::Same) => {}
            Ok(Outcome::New(n)) => changed.push((c, n)),
            Err(e) => {
                for (c, n) in &changed {
                    cx.account(n, child(body, *c));
                }
                return Err(match e {
                    Stop::Failed(_) => failed(s),
                    fuel => fuel,
                });
            }
        }
    }
    Ok(if changed.is_empty() { Outcome::Same } else { Outcome::New(replace_children(body, changed)) })
}

fn some(cx: &mut Cx, body: &Body, s: &Strategy, a: Step) -> Res {
    let mut changed = Vec::new();
    let mut any = false;
    for c in children(body) {
        match a(cx, child(body, c)) {
            Ok(Outcome::Same) => any = true,
            Ok(Outcome::New(n)) => {
                any = true;
                changed.push((c, n))
            }
            Err(Stop::Failed(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if !any {
        return Err(failed(s));
    }
    Ok(if changed.is_empty() { Outcome::Same } else { Outcome::New(replace_children(body, changed)) })
}

/// One round of `normalize`: `a` to a local fixpoint here, then in every
/// child, then — when a child changed — here again (a simplified child often
/// lets its parent simplify: nested `if`s collapse in one round instead of
/// one level per round). Never fails; `Same` when nothing changed anywhere.
fn sweep(cx: &mut Cx, a: &Strategy, s: &Strategy, body: &Body) -> Res {
    let key = a as *const Strategy as usize;
    if !cx.flags.sweep_all && cx.is_clean(key, body) {
        return Ok(Outcome::Same);
    }
    let at = cx.clock;
    let here = local_fixpoint(cx, a, body)?;
    let t = here.as_ref().unwrap_or(body);
    match all(cx, t, s, &|cx, c| sweep(cx, a, s, c))? {
        Outcome::New(n) => Ok(Outcome::New(local_fixpoint(cx, a, &n)?.unwrap_or(n))),
        Outcome::Same if here.is_none() => {
            cx.mark_clean(key, body, at);
            Ok(Outcome::Same)
        }
        Outcome::Same => Ok(here.map_or(Outcome::Same, Outcome::New)),
    }
}

/// `a` applied to `body` until it no longer applies; `None` when it never did.
fn local_fixpoint(cx: &mut Cx, a: &Strategy, body: &Body) -> Result<Option<Body>, Stop> {
    let mut here: Option<Body> = None;
    loop {
        let t = here.as_ref().unwrap_or(body);
        match apply(cx, a, t) {
            Ok(Outcome::New(n)) => here = Some(n),
            Ok(Outcome::Same) | Err(Stop::Failed(_)) => return Ok(here),
            Err(e) => return Err(e),
        }
    }
}

fn top_down(cx: &mut Cx, a: &Strategy, s: &Strategy, body: &Body) -> Res {
    match apply(cx, a, body) {
        Err(Stop::Failed(_)) => one(cx, body, s, &|cx, t| top_down(cx, a, s, t)),
        other => other,
    }
    .map_err(|e| match e {
        Stop::Failed(_) => failed(s),
        fuel => fuel,
    })
}

fn bottom_up(cx: &mut Cx, a: &Strategy, s: &Strategy, body: &Body) -> Res {
    match one(cx, body, s, &|cx, t| bottom_up(cx, a, s, t)) {
        Err(Stop::Failed(_)) => apply(cx, a, body).map_err(|e| match e {
            Stop::Failed(_) => failed(s),
            fuel => fuel,
        }),
        other => other,
    }
}

fn all_top_down(cx: &mut Cx, a: &Strategy, s: &Strategy, body: &Body) -> Res {
    seq(cx, body, &|cx, t| apply(cx, a, t), &|cx, t| all(cx, t, s, &|cx, c| all_top_down(cx, a, s, c)))
}

fn all_bottom_up(cx: &mut Cx, a: &Strategy, s: &Strategy, body: &Body) -> Res {
    seq(cx, body, &|cx, t| all(cx, t, s, &|cx, c| all_bottom_up(cx, a, s, c)), &|cx, t| apply(cx, a, t))
}

/// Runs `s` on every function of `program`, each with `fuel` of its own,
/// several functions at a time (Note [Functions optimised in parallel]). A
/// strategy that fails on a function leaves the program unchanged and
/// reports the failure (the first function in program order that failed).
pub fn run_program(
    program: &mut crate::ir::Program,
    s: &Strategy,
    fuel: u64,
    flags: Flags,
) -> Result<u64, (String, Stop)> {
    let crate::ir::Program { funcs, vars, recomputed } = program;
    let base = vars.len();
    let (table, recomputed): (&VarTable, &HashSet<Var>) = (vars, recomputed);
    let mut work: Vec<&crate::ir::Func> = funcs.iter().collect();
    let done = crate::threads::map_largest_first(
        &mut work,
        |f| crate::ir::scope::size(&f.body),
        |f| {
            // The function's own copy of the table: what it adds is numbered
            // from `base` on, whichever functions run beside it.
            let mut vars = table.clone();
            let mut cx = Cx::new(&mut vars, fuel);
            cx.recomputed = recomputed.clone();
            cx.flags = flags;
            cx.enter_function(&f.body);
            let outcome = apply(&mut cx, s, &f.body);
            let rewrites = cx.rewrites;
            (outcome, rewrites, vars.split_off(base))
        },
    );
    let mut outcomes = Vec::with_capacity(funcs.len());
    for (f, (outcome, rewrites, added)) in funcs.iter().zip(done) {
        outcomes.push((outcome.map_err(|e| (f.name.clone(), e))?, rewrites, added));
    }
    // In program order: each function's variables follow those the
    // functions before it added, as if they had run one after the other.
    let mut rewrites = 0;
    for (f, (outcome, r, added)) in funcs.iter_mut().zip(outcomes) {
        let by = (vars.len() - base) as u32;
        if let Outcome::New(mut body) = outcome {
            if by > 0 {
                crate::ir::scope::renumber_from(&mut body, base as u32, by);
            }
            f.body = body;
        }
        vars.append(added);
        rewrites += r;
    }
    Ok(rewrites)
}

// Note [Functions optimised in parallel]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The optimiser treats each function on its own: a `Cx` starts afresh on
// entering a function (use counts, facts, clean records), and rules see
// only the body they rewrite. So the functions of a program are optimised
// on as many threads as there are cores (`crate::threads`, largest first),
// like lowering, the loop passes and Cranelift after them (Note [Functions
// compiled in parallel] in jit/mod.rs). The one thing they share is the
// variable table, to which rules add fresh variables. Each function works on
// its own copy, so its new variables are numbered from the table's length
// `base` on; afterwards, in program order, the k-th function's body is
// renumbered (`ir::scope::renumber_from`) by how many variables the
// functions before it added, and its variables are appended. The program
// is then exactly what optimising one function after the other gives, same
// numbering included: a function's rewrites do not depend on the numbers
// of the variables it creates. (`emit --stage opt` prints the same text on
// every example and test program as one at a time did; a test checks it.)
//
// Fuel is per function (each starts with the schedule's budget): shared
// fuel would make a function's result depend on how much the functions
// before it spent, which a parallel run does not know.

// Note [Rules on bodies]
// ~~~~~~~~~~~~~~~~~~~~~~
// In ANF there are no nested expressions: the natural unit of rewriting is a
// body (a statement list and its result), because nearly every rule relates a
// statement to others before or after it (a definition and its uses, a
// producer and its consumer, a lambda and the body it can be hoisted into).
// So the terms the combinators walk are bodies, and a rule applied to a body
// may rewrite many of its statements at once ("batch" rules): `dce` removes
// every dead statement of the body in one application. This keeps the number
// of traversals small (the whole pipeline for ht stays in milliseconds) while
// `normalize` still reaches the same fixpoint as one-rewrite-at-a-time rules.
// A rule fails, like an ELEVATE rule, when it finds nothing to rewrite; the
// combinators then behave exactly as in ELEVATE. One deliberate difference:
// `repeat` stops when its strategy succeeds without changing anything, which
// in ELEVATE would loop forever (`repeat(try(s))`).
//
// Note [Clean bodies]
// ~~~~~~~~~~~~~~~~~~~
// `normalize` sweeps the tree until a whole sweep changes nothing, so every
// body is tried at least once after the last change anywhere: about half of
// all rule attempts went to bodies nothing had touched. So a body whose sweep
// changed nothing — no rule applied to it or below it — is recorded as clean
// for that strategy, with the clock time and the variables it mentions, and
// a later sweep skips it when it is the same body (the same shared statement
// list, Note [Shared statement lists], and the same result) and none of those
// variables has had its use count or facts changed since.
//
// That is all a rule can see beyond the body itself. Rules read the body,
// and the use counts and facts of variables. In SSA the uses of a variable
// bound in the body are all inside it, so only the counts of variables bound
// outside can change from outside; facts name other variables (`Sub { array
// }`, `Below(n)`), so the recorded set is closed under the variables facts
// name, and under the function's size checks (a rule may relate `n` to `m`
// through `n == m`). The rest of `Cx` is fixed for the function
// (`size_eqs`, `recomputed`) or is tracked the same way (`consumed`,
// `permutations`: their variables are touched when learned). A skipped body
// would have failed every rule, so the normal form is the same; only fresh
// variable numbers can differ, where a failing rule had allocated names
// before failing.
//
// A record lists the variables of its body's own statements; `is_clean`
// asks the records of the nested bodies too, so recording costs the body's
// top level, not its subtree. On the example and test programs the
// variables never decide (with them ignored, every program optimises to the
// same text), so the unit tests at the end of this file are what exercise
// them.
//
// Note [Use counts]
// ~~~~~~~~~~~~~~~~~
// Rules need global facts: how often a variable is used (dead code, single
// use for fusion), which arrays are consumed. Recomputing them for every rule
// attempt would make the optimiser quadratic. Instead the engine keeps them in
// `Cx` and updates them at every successful rule application by subtracting
// the uses of the old body and adding those of the new one: a rule only ever
// changes the body it is given (and what is nested in it), and since the IR is
// SSA a variable's uses in that body are all the uses that can change. (Only
// the statements that differ are walked: a rule given a function's top-level
// body rewrites a few of its statements, and the prefix and suffix the old and
// new bodies share change no count; comparing them is cheaper than walking
// them.) A
// combinator that discards a rewrite (`seq` whose second step fails, `all`
// with a failing child) accounts the rollback the same way. Value facts
// (`Fact`) are only added: they describe values, which rewrites preserve, so
// a fact learned from a statement that was later rewritten stays true.

#[cfg(test)]
mod tests {
    //! Note [Clean bodies]: what keeps a recorded body clean and what does not.

    use super::*;
    use crate::ir::{BinOp, IrType};

    fn stmt(binds: &[Var], expr: Expr) -> Stmt {
        Stmt { binds: binds.to_vec(), expr, span: Default::default() }
    }

    fn body(stmts: Vec<Stmt>, result: &[Var]) -> Body {
        Body { stmts: stmts.into(), result: result.iter().map(|v| Atom::Var(*v)).collect() }
    }

    fn add(to: Var, one: f64) -> Expr {
        Expr::Binary(BinOp::Add, Atom::Var(to), Atom::f64(one))
    }

    /// A function `let x = p + 1; let w = x + 2; let a = replicate n p` and
    /// a body `let y = x + 3; let e = a[i] in y + e` nested somewhere in it, recorded clean.
    struct Setup {
        vars: VarTable,
        x: Var,
        w: Var,
        a: Var,
        n: Var,
        p: Var,
        func: Body,
        nested: Body,
    }

    fn setup() -> Setup {
        let mut vars = VarTable::default();
        let f = IrType::F64;
        let [p, x, w, y, e] = ["p", "x", "w", "y", "e"].map(|n| vars.fresh(n, f));
        let [n, i] = ["n", "i"].map(|s| vars.fresh(s, IrType::I64));
        let a = vars.fresh("a", IrType::array(crate::types::ScalarType::F64, 1));
        let func = body(
            vec![
                stmt(&[x], add(p, 1.0)),
                stmt(&[w], add(x, 2.0)),
                stmt(&[a], Expr::Replicate { count: Atom::Var(n), value: Atom::Var(p) }),
            ],
            &[w],
        );
        let nested = body(
            vec![stmt(&[y], add(x, 3.0)), stmt(&[e], Expr::Index { array: a, indices: vec![Atom::Var(i)] })],
            &[y, e],
        );
        Setup { vars, x, w, a, n, p, func, nested }
    }

    const KEY: usize = 1;

    /// A run on `func` with `nested` recorded clean.
    fn recorded<'v>(vars: &'v mut VarTable, func: &Body, nested: &Body) -> Cx<'v> {
        let mut cx = Cx::new(vars, 100);
        cx.enter_function(func);
        cx.mark_clean(KEY, nested, cx.clock);
        cx
    }

    #[test]
    fn a_recorded_body_stays_clean_until_what_it_mentions_changes() {
        let Setup { mut vars, x, w, p, func, nested, .. } = setup();
        let mut cx = recorded(&mut vars, &func, &nested);
        assert!(cx.is_clean(KEY, &nested));
        assert!(cx.is_clean(KEY, &nested.clone()), "a copy shares the statement list");
        let rebuilt = body(nested.stmts.to_vec(), &[]);
        assert!(!cx.is_clean(KEY, &rebuilt), "another list is another body");

        // A rewrite that changes nothing the body depends on (the uses of
        // `p`, which `a`'s fact names, are as many as before): still clean.
        let other = body(vec![stmt(&[w], add(p, 2.0))], &[w]);
        let changed = body(vec![stmt(&[w], add(p, 4.0))], &[w]);
        cx.account(&other, &changed);
        assert!(cx.is_clean(KEY, &nested));

        // A rewrite that drops a use of `x` (which the body reads): not clean.
        let uses_x = body(vec![stmt(&[w], add(x, 2.0))], &[w]);
        cx.account(&uses_x, &other);
        assert!(!cx.is_clean(KEY, &nested));
    }

    #[test]
    fn a_new_fact_of_a_variable_named_by_a_fact_makes_the_body_dirty() {
        let Setup { mut vars, a, n, p, func, nested, .. } = setup();
        let mut cx = recorded(&mut vars, &func, &nested);
        // `e = a[i]` has the fact `Sub { array: a }`; `a`'s fact `Replicate { n, p }`
        // names `n`: a new fact of `n` reaches the body through that chain.
        let before = body(vec![stmt(&[n], Expr::Shape { array: a, dim: 0 })], &[]);
        let after = body(vec![stmt(&[n], Expr::Iota(Atom::Var(p)))], &[]);
        cx.account(&before, &after);
        assert!(!cx.is_clean(KEY, &nested));
    }
}
