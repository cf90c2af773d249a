//! The decision: which iteration spaces run in parallel (Note [Outermost
//! parallelism first]).
//!
//! Input: an optimised [`ir::Program`]. Output: its [`Program`]: a
//! [`Segment`] for every statement at the outermost level the walk reaches
//! — a function body, the branches of an `if` there, and the bodies of
//! spaces too small to keep the threads busy.

use super::{Kind, Level, Program, Role, Segment, Size, Space, StmtId};
use crate::hash::HashMap;
use crate::ir::{self, Atom, BinOp, Body, Const, Expr, LoopForm, Stmt, Var};

// Note [Outermost parallelism first]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A program has parallelism at several levels: `map (\row -> sum row) xs`
// could run the rows in parallel, or each row's sum, or both. Slope runs
// the outermost level in parallel and every level inside it sequentially,
// as Futhark's moderate flattening does without its versioning: the outer
// level's iterations are whole units of work, each chunk of them runs
// inner loops that stay in cache and in registers, and the pool pays once
// per statement, not once per row. So the walk starts at each function's
// body, where every statement runs once per call:
//
// - An iterating statement — `map`, `reduce`, `scan`, `reduce_by_index`,
//   a `for` loop whose parameters are each reduced, written at the loop
//   index or added into (`Role`), and the copies `replicate`, `iota`,
//   `transpose`, `reverse` — is a parallel segment over its space. Its
//   lambda or body runs sequentially, inside each iteration.
// - A `for` loop that carries a value from one iteration to the next (a
//   time step, Newton's iterates) and a `while` loop are sequential, and
//   so is everything inside them: a parallel segment there would pay the
//   pool once per outer iteration, which measured slower on this machine's
//   time-step loops (ode, lstm; Note [Parallel segments] in
//   loops/parallel.rs). The loop level still calls their independent inner
//   loops as functions of their own (Note [Loops called inline] there).
// - A `scatter` is sequential: two of its indices may name one element,
//   and the last write in index order must win, which chunks running at
//   once would not keep.
// - A space too small to keep the threads busy — a constant size under
//   `MIN_SPACE` — with a wider one inside — a statement iterating over a
//   size known only at run time — runs sequentially, and the walk goes on
//   inside it, even when it carries a value: its inner iterating
//   statements are the outermost level that has parallelism, and the pool
//   is paid at most `MIN_SPACE - 1` times. Without a wider level inside,
//   the small space stays as it is: nothing inside would pay for the pool.
//   (Constant sizes up to 4 are unrolled by the loop optimiser anyway,
//   which leaves the inner loops outermost, marked: `mark_parallel` in
//   loops/opt/split.rs.)
// - The statements of an `if` (and a custom derivative's primal, not its
//   rules, which AD has used) are at the level of the `if`.
//
// Every other statement at the outermost level is parallel too, without a
// space: the copies lowering makes for it (an update of a shared array, a
// view materialised) run on the pool. The level is a decision, not a
// proof: the `parallel` stage outlines a marked loop only when its
// iterations are independent on buffers, which it checks after the loop
// optimiser has fused and split the loops.

/// Constant sizes smaller than this run sequentially and give the
/// parallelism to the level inside (Note [Outermost parallelism first]).
pub const MIN_SPACE: i64 = 8;

/// The parallel level of `program`.
pub fn decide(program: &ir::Program) -> Program {
    let mut segments = HashMap::default();
    for f in &program.funcs {
        outermost(program, &f.body, &mut segments);
    }
    Program { ir: program.clone(), segments }
}

/// Gives every statement of `body` its level; `body` is at the outermost level.
fn outermost(program: &ir::Program, body: &Body, segments: &mut HashMap<StmtId, Segment>) {
    for s in body.stmts.iter() {
        let space = space_of(s);
        let level = match &space {
            Some(space) => level_of(program, s, space),
            None if matches!(s.expr, Expr::Loop { form: LoopForm::While { .. }, .. }) => {
                Level::Sequential("a while loop".into())
            }
            None => Level::Parallel,
        };
        let inside_too = match (&s.expr, &level) {
            (Expr::If { .. } | Expr::Custom { .. }, _) => true,
            (_, Level::Sequential(_)) => space.as_ref().is_some_and(|sp| small(sp.size) && wide_inside(s)),
            _ => false,
        };
        if inside_too {
            for b in bodies(s) {
                outermost(program, b, segments);
            }
        }
        segments.entry(StmtId::of(s)).or_insert(Segment { level, space });
    }
}

/// Whether an iterating statement at the outermost level runs in parallel.
fn level_of(program: &ir::Program, s: &Stmt, space: &Space) -> Level {
    if small(space.size) && wide_inside(s) {
        return Level::Sequential(format!("fewer than {MIN_SPACE} iterations, more inside"));
    }
    if !shareable(space) {
        return Level::Sequential(unshared_because(program, s, space));
    }
    Level::Parallel
}

/// Why the iterations of `s`'s space, which are not [`shareable`], are not.
fn unshared_because(program: &ir::Program, s: &Stmt, space: &Space) -> String {
    match (&space.kind, &s.expr) {
        (Kind::Loop(roles), Expr::Loop { params, .. }) => {
            let carried: Vec<String> = params
                .iter()
                .zip(roles)
                .filter(|(_, r)| **r == Role::Carried)
                .map(|(&p, _)| program.vars.display(p))
                .collect();
            format!("carries {}", carried.join(", "))
        }
        (Kind::Scatter, _) => "which of two writes to one element wins".into(),
        // `shareable` answers no only for the two above.
        _ => "its iterations are not independent".into(),
    }
}

/// Whether the iterations of `space` can be shared among threads: not a
/// loop that carries a value, not a scatter.
fn shareable(space: &Space) -> bool {
    match &space.kind {
        Kind::Loop(roles) => !roles.contains(&Role::Carried),
        Kind::Scatter => false,
        _ => true,
    }
}

/// The bodies of `s` that run when it does: all of them, but only the
/// primal of a custom derivative (its rules are what AD used).
fn bodies(s: &Stmt) -> Vec<&Body> {
    match &s.expr {
        Expr::Custom { primal, .. } => vec![&primal.body],
        e => e.bodies(),
    }
}

/// Whether a statement inside `s` iterates over a space whose size is not
/// a constant and whose iterations can be shared (through `if`s and small
/// spaces): a level worth the threads when `s`'s own space is small.
fn wide_inside(s: &Stmt) -> bool {
    bodies(s).into_iter().any(|b| {
        b.stmts.iter().any(|t| match space_of(t) {
            Some(Space { size: Size::Atom(Atom::Const(_)), .. }) => small_inside(t),
            Some(space) => shareable(&space),
            None => matches!(t.expr, Expr::If { .. } | Expr::Custom { .. }) && wide_inside(t),
        })
    })
}

/// `t` iterates over a small space with a wider one inside.
fn small_inside(t: &Stmt) -> bool {
    space_of(t).is_some_and(|sp| small(sp.size)) && wide_inside(t)
}

/// A constant size under [`MIN_SPACE`].
pub(super) fn small(size: Size) -> bool {
    matches!(size, Size::Atom(Atom::Const(Const::I64(k))) if k < MIN_SPACE)
}

/// The iteration space of `s`, when it iterates.
pub(super) fn space_of(s: &Stmt) -> Option<Space> {
    let (size, kind) = match &s.expr {
        Expr::Map { width, .. } => (Size::Atom(*width), Kind::Map),
        Expr::Reduce { arrays, .. } => (Size::Outer(*arrays.first()?), Kind::Reduce),
        Expr::Scan { arrays, .. } => (Size::Outer(*arrays.first()?), Kind::Scan),
        Expr::Hist { indices, .. } => (Size::Outer(*indices), Kind::Hist),
        Expr::Scatter { indices, .. } => (Size::Outer(*indices), Kind::Scatter),
        Expr::Loop { params, form: LoopForm::For { index, bound }, body, .. } => {
            (Size::Atom(*bound), Kind::Loop(roles(params, *index, body)))
        }
        Expr::Replicate { count, .. } => (Size::Atom(*count), Kind::Map),
        Expr::Iota(n) => (Size::Atom(*n), Kind::Map),
        Expr::Transpose(x) | Expr::Reverse(x) => (Size::Outer(*x), Kind::Map),
        _ => return None,
    };
    Some(Space { size, kind })
}

/// What the `for` loop over `index` with `body` does with each of `params`.
pub(super) fn roles(params: &[Var], index: Var, body: &Body) -> Vec<Role> {
    let uses = reads(body);
    let defs = ir::scope::definitions(&body.stmts);
    params
        .iter()
        .zip(&body.result)
        .map(|(&p, &r)| match r {
            Atom::Var(r) if r == p => Role::Same,
            Atom::Var(r) => role_of(p, r, index, body, &defs, &uses),
            Atom::Const(_) => Role::Carried,
        })
        .collect()
}

/// A body's top-level statements by the variables they bind (`ir::scope::definitions`).
type Defs<'b> = HashMap<Var, (&'b Stmt, usize)>;

/// What an iteration makes of the parameter `p` when it ends with `r`
/// (`body`'s top-level statements by variable, `defs`).
fn role_of(p: Var, r: Var, index: Var, body: &Body, defs: &Defs, uses: &HashMap<Var, usize>) -> Role {
    let Some(&(s, _)) = defs.get(&r) else { return Role::Carried };
    let reads = |v: Var| uses.get(&v).copied().unwrap_or(0);
    if let Expr::Binary(op @ (BinOp::Add | BinOp::Mul | BinOp::Min | BinOp::Max), a, b) = &s.expr {
        let reads_p = |x: &Atom| *x == Atom::Var(p);
        // The running value is read by the result and, in a scan, by the
        // writes of it at the loop index; by nothing else.
        let stored = body
            .stmts
            .iter()
            .filter(|t| {
                matches!(&t.expr, Expr::UpdateAt { value: Atom::Var(v), indices, accumulate: false, .. }
                    if *v == r && indices.first() == Some(&Atom::Var(index)))
            })
            .count();
        let alone = reads(p) == 1 && reads(r) == 1 + stored;
        return if (reads_p(a) || reads_p(b)) && alone { Role::Reduce(*op) } else { Role::Carried };
    }
    if reads(r) != 1 {
        // What this iteration made is read in it, not only by the next.
        return Role::Carried;
    }
    let mut chain = Chain::default();
    let Some((from, update)) = chain.follow(r, defs) else { return Role::Carried };
    // Nothing but the next update reads `p` or what an update made of it.
    let read_elsewhere = chain.steps.iter().any(|(v, n)| uses.get(v).copied().unwrap_or(0) != *n);
    match update {
        _ if from != p || read_elsewhere => Role::Carried,
        Some(Update { accumulate: true, .. }) => Role::Hist,
        Some(Update { accumulate: false, at_index }) if at_index == Some(index) => Role::Slot,
        _ => Role::Carried,
    }
}

/// A kind of update: all accumulating (`+=`), or all writes at one first
/// index.
#[derive(Clone, Copy, PartialEq)]
struct Update {
    accumulate: bool,
    at_index: Option<Var>,
}

/// Two runs of updates as one: `None` if they do different things.
fn merge(a: Option<Update>, b: Option<Update>) -> Option<Option<Update>> {
    match (a, b) {
        (None, x) | (x, None) => Some(x),
        (Some(a), Some(b)) if a.accumulate && b.accumulate => Some(Some(a)),
        (Some(a), Some(b)) if a == b => Some(Some(a)),
        _ => None,
    }
}

/// The updates that make an array from an earlier one, followed backwards.
#[derive(Default)]
struct Chain {
    /// How often each array the chain passes through is read by a step
    /// (an update's operand, an inner loop's initial value, a branch's
    /// result).
    steps: HashMap<Var, usize>,
}

impl Chain {
    /// Follows the updates making `r` back to the array they start from —
    /// one `defs` does not define — and says what they do: `x with [..] =
    /// v` or `+= v`; an inner `for` loop adding into it (a histogram of
    /// that loop); a `map` adding to its elements (`map (\x y -> x + y)
    /// a ys`, reverse mode's dense adjoints); an `if` whose branches each
    /// update it alike, or leave it as it is.
    fn follow(&mut self, r: Var, defs: &Defs) -> Option<(Var, Option<Update>)> {
        let mut update = None;
        let mut cur = r;
        while let Some(&(s, k)) = defs.get(&cur) {
            let (from, step) = match &s.expr {
                Expr::UpdateAt { array, indices, accumulate, .. } => {
                    let at_index = indices.first().and_then(|a| a.var());
                    *self.steps.entry(*array).or_default() += 1;
                    (*array, Some(Update { accumulate: *accumulate, at_index }))
                }
                Expr::Loop { params, init, form: LoopForm::For { index, .. }, body } => {
                    if roles(params, *index, body).get(k) != Some(&Role::Hist) {
                        return None;
                    }
                    let from = init.get(k)?.var()?;
                    *self.steps.entry(from).or_default() += 1;
                    (from, Some(Update { accumulate: true, at_index: None }))
                }
                Expr::Map { lam, arrays, .. } => {
                    let from = arrays[added_to(lam, k)?];
                    *self.steps.entry(from).or_default() += 1;
                    (from, Some(Update { accumulate: true, at_index: None }))
                }
                Expr::If { then_body, else_body, .. } => {
                    let (t, u) = self.branch(then_body, k)?;
                    let (e, w) = self.branch(else_body, k)?;
                    if t != e {
                        return None;
                    }
                    (t, merge(u, w)?)
                }
                _ => return None,
            };
            update = merge(update, step)?;
            cur = from;
        }
        Some((cur, update))
    }

    /// [`Self::follow`] from the `k`th result of a branch.
    fn branch(&mut self, body: &Body, k: usize) -> Option<(Var, Option<Update>)> {
        let r = body.result.get(k)?.var()?;
        let defs = ir::scope::definitions(&body.stmts);
        if !defs.contains_key(&r) {
            // The branch passes the array on: a use the chain accounts for.
            *self.steps.entry(r).or_default() += 1;
        }
        self.follow(r, &defs)
    }
}

/// The array position `a` of a map whose `k`th result is its `a`th element
/// plus something (`x_a + y` or `y + x_a`, `x_a` read nowhere else).
fn added_to(lam: &ir::Lambda, k: usize) -> Option<usize> {
    let t = lam.body.result.get(k)?.var()?;
    let def = lam.body.stmts.iter().find(|s| s.binds.first() == Some(&t))?;
    let Expr::Binary(BinOp::Add, a, b) = def.expr else { return None };
    let uses = reads(&lam.body);
    let position = |x: Atom| lam.params.iter().position(|&p| Atom::Var(p) == x && uses.get(&p) == Some(&1));
    position(a).or_else(|| position(b))
}

/// How often `body` reads each variable, nested bodies included; a `shape`
/// is not a read (sizes do not change when elements do).
fn reads(body: &Body) -> HashMap<Var, usize> {
    let mut uses: HashMap<Var, usize> = HashMap::default();
    ir::scope::for_each_read(body, &mut |v| *uses.entry(v).or_default() += 1);
    uses
}
