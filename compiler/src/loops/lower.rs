//! Lowering: the optimised array IR with its parallel level and ownership
//! plan (`ownership::Program`) → the loop IR.
//!
//! Every combinator becomes one loop; the loops a parallel statement emits
//! at its own depth (not those of its lambdas) are marked
//! `For::parallel`; arrays become buffers with explicit
//! allocation, and views (`a[i]` of a matrix, slices, flatten, unflatten)
//! are pointer arithmetic, never copies. `iota n` is not allocated unless it
//! is used as a general array: a `map` over it iterates the index itself, and
//! indexing it is the index.
//!
//! Memory: which buffers are written in place is the ownership plan's
//! decision (`ownership/`, Note [Ownership and in-place updates]), which
//! lowering obeys — a write the plan does not put in place goes to a copy
//! (`alloc` named `copy`, then `Copy`); which buffers
//! leave a loop and which loops release their iterations' allocations is
//! memory planning's (`buffers.rs`), from the facts lowering records of
//! each loop (`LoopFacts`). Bounds: every `Load`/`Store` is either proved in
//! range (its index is a loop index whose bound is the dimension, see
//! `Lower::facts`) or preceded by a check that `Fail`s with the same error
//! and message as the interpreter.

use super::{allocates, assigned_in, Func, Inst, LVar, Leaf, LoopFacts, MTy, Message, Operand, Program, Rhs, Site};
use crate::diagnostic::{Code, Span};
use crate::hash::{HashMap, HashSet};
use crate::ir::{self, Atom, BinOp, Body, CheckKind, Const, Expr, IrType, Lambda, LoopForm, UnOp, Var};
use crate::ownership::{self, Decision, Plan, Visits};
use slope_runtime::native::MAX_ELEMENTS;

/// Lowers every function of `program`, marking the loops of its parallel
/// statements (`Inst::For::parallel`). Fails (an internal error, the message
/// naming the construct) only on IR the pipeline should not produce here.
pub fn lower_program(program: &ownership::Program) -> Result<Program, String> {
    // Each function is lowered on its own (Note [Functions compiled in parallel] in jit/mod.rs).
    let mut funcs: Vec<(&ir::Func, &Plan)> = program.segments.ir.funcs.iter().zip(&program.plans).collect();
    let funcs = crate::threads::map_largest_first(
        &mut funcs,
        |(f, _)| ir::scope::size(&f.body),
        |(f, plan)| lower_func(program, f, plan),
    )
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let program = Program { funcs, segments: Vec::new() };
    if cfg!(debug_assertions) {
        super::verify::verify_program(&program)?;
    }
    Ok(program)
}

/// Lowers `f`, writing buffers in place as its ownership plan `plan` says.
pub fn lower_func(program: &ownership::Program, f: &ir::Func, plan: &Plan) -> Result<Func, String> {
    let segments = &program.segments;
    let program = &segments.ir;
    let mut l = Lower {
        prog: program,
        segments,
        plan,
        visits: Visits::default(),
        decision: None,
        parallel_depth: None,
        marks: true,
        vars: Vec::new(),
        sites: Vec::new(),
        sites_at: HashMap::default(),
        env: vec![None; program.vars.len()],
        depth: 0,
        facts: HashMap::default(),
        dims: HashSet::default(),
        known: Known::default(),
        out: Vec::new(),
        loop_facts: Vec::new(),
        span: f.span,
    };
    let mut params = Vec::new();
    let mut param_leaves = Vec::new();
    for &p in &f.params {
        let ty = program.vars.ty(p);
        param_leaves.push(Leaf { elem: MTy::of(ty.elem), rank: ty.rank });
        l.bind_words(p, &mut params);
    }
    let vals = l.body(&f.body)?;
    // Results made into arrays here (an `iota`) are copies at the outermost
    // level, as those of its statements are.
    l.parallel_depth = Some(0);
    let mut results = Vec::new();
    let mut result_leaves = Vec::new();
    for v in vals {
        match v {
            LVal::Scalar(o) => {
                result_leaves.push(Leaf { elem: l.operand_type(o), rank: 0 });
                results.push(o);
            }
            v => {
                let a = l.materialize(v);
                result_leaves.push(Leaf { elem: a.elem, rank: a.dims.len() as u32 });
                results.push(a.ptr);
                results.extend(a.dims);
            }
        }
    }
    Ok(Func {
        name: f.name.clone(),
        vars: l.vars,
        params,
        param_leaves,
        body: l.out,
        results,
        result_leaves,
        sites: l.sites,
        dims: {
            let mut dims: Vec<LVar> = l.dims.into_iter().collect();
            dims.sort();
            dims
        },
        loop_facts: l.loop_facts,
    })
}

// Note [One site per error]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~
// A `Fail` names a site: the error code, span and message template its
// arguments fill in. Inlining and AD copy code, so one source expression is
// lowered many times (ht's hand model is posed in both branches of its
// jacobian); all its copies that fail with the same code and message share
// one site. Nothing else tells sites apart, so the errors are the same, and
// the copies' code is then the same too: the `parallel` stage outlines two
// identical loops as one segment, compiled once (ht's two largest
// functions, 18,000 lines of CLIF each, were the same loop but for their
// site numbers).

/// An array value: data pointer, dimensions, element type.
#[derive(Clone, Debug)]
struct Arr {
    ptr: Operand,
    dims: Vec<Operand>,
    elem: MTy,
}

#[derive(Clone, Debug)]
enum LVal {
    Scalar(Operand),
    Array(Arr),
    /// `iota n`, not allocated unless used as a general array.
    Iota(Operand),
}

struct Lower<'p> {
    prog: &'p ir::Program,
    /// The parallel level: which statements' loops are marked parallel.
    segments: &'p crate::segments::Program,
    /// Which writes go in place: the ownership plan of the function.
    plan: &'p Plan,
    /// The visits of statements so far, which name their decisions.
    visits: Visits,
    /// The decision for the statement being lowered, until it is used.
    decision: Option<Decision>,
    /// The loop depth of the parallel statement being lowered, if any: the
    /// loops emitted at that depth are its own (those of its lambdas are
    /// deeper).
    parallel_depth: Option<u32>,
    /// Off while lowering the end of a loop body at the loop's depth
    /// (`body_block`): nothing emitted there is marked.
    marks: bool,
    vars: Vec<(String, MTy)>,
    sites: Vec<Site>,
    /// The sites of each span, for [`Lower::site`].
    sites_at: HashMap<Span, Vec<u32>>,
    env: Vec<Option<LVal>>,
    /// Loop nesting: bodies of maps, reductions, scans, loops and hists.
    depth: u32,
    /// `v ↦ n`: `0 <= v < n` holds wherever `v` is in scope (loop indices).
    facts: HashMap<LVar, Operand>,
    /// Variables that only ever hold array dimensions (so are `>= 0`).
    dims: HashSet<LVar>,
    /// What the checks passed so far in the current block prove.
    known: Known,
    /// The block being emitted.
    out: Vec<Inst>,
    /// Each loop's facts for memory planning, in emission order.
    loop_facts: Vec<LoopFacts>,
    /// The span of the statement being lowered (for allocation failures).
    span: Span,
}

type R<T> = Result<T, String>;

/// Facts established by checks that passed, valid in the rest of the block
/// where the check is (see `Lower::block`, which scopes them).
#[derive(Clone, Default)]
struct Known {
    /// `v ↦ o`: `v == o` (a constant, or a variable checked equal earlier).
    eq: HashMap<LVar, Operand>,
    /// Checked `>= 0`.
    nonneg: HashSet<LVar>,
}

impl Lower<'_> {
    // ---- emission helpers -------------------------------------------------

    fn fresh(&mut self, name: &str, ty: MTy) -> LVar {
        self.vars.push((name.to_string(), ty));
        LVar(self.vars.len() as u32 - 1)
    }

    fn operand_type(&self, o: Operand) -> MTy {
        match o {
            Operand::Var(v) => self.vars[v.0 as usize].1,
            Operand::Const(c) => MTy::of(c.ty()),
        }
    }

    /// The representative of `o` under the equalities checked so far.
    fn resolve(&self, mut o: Operand) -> Operand {
        while let Operand::Var(v) = o {
            match self.known.eq.get(&v) {
                Some(&r) => o = r,
                None => break,
            }
        }
        o
    }

    /// Are `a` and `b` the same value (syntactically, or by a passed check)?
    fn same(&self, a: Operand, b: Operand) -> bool {
        same(self.resolve(a), self.resolve(b))
    }

    /// `vals` with their dimensions replaced by their representatives, so
    /// that sizes proved equal inside a block compare equal outside it.
    fn resolve_dims(&self, vals: Vec<LVal>) -> Vec<LVal> {
        vals.into_iter()
            .map(|v| match v {
                LVal::Array(a) => LVal::Array(Arr { dims: a.dims.iter().map(|&d| self.resolve(d)).collect(), ..a }),
                LVal::Iota(n) => LVal::Iota(self.resolve(n)),
                v => v,
            })
            .collect()
    }

    fn nonneg(&self, o: Operand) -> bool {
        match self.resolve(o) {
            Operand::Var(v) => self.dims.contains(&v) || self.known.nonneg.contains(&v),
            Operand::Const(Const::I64(n)) => n >= 0,
            _ => false,
        }
    }

    /// A fresh variable that only ever holds a dimension.
    fn fresh_dim(&mut self, name: &str) -> LVar {
        let v = self.fresh(name, MTy::I64);
        self.dims.insert(v);
        v
    }

    fn emit(&mut self, mut i: Inst) {
        if let Inst::For { parallel, .. } = &mut i {
            *parallel = self.marks && self.parallel_depth == Some(self.depth);
        }
        self.out.push(i);
    }

    fn let_(&mut self, name: &str, ty: MTy, rhs: Rhs) -> Operand {
        if let Some(c) = rhs.fold() {
            return c;
        }
        let v = self.fresh(name, ty);
        self.emit(Inst::Let(v, rhs));
        v.into()
    }

    fn assign(&mut self, v: LVar, o: Operand) {
        self.emit(Inst::Let(v, Rhs::Use(o)));
    }

    fn bin(&mut self, name: &str, op: BinOp, a: Operand, b: Operand) -> Operand {
        let (a, b) = (self.resolve(a), self.resolve(b));
        let ty = if op.returns_bool() { MTy::Bool } else { self.operand_type(a) };
        if ty == MTy::Bool && op == BinOp::Eq && self.operand_type(a) == MTy::I64 && self.same(a, b) {
            return Operand::Const(Const::Bool(true));
        }
        if op == BinOp::Ge && b == Operand::i64(0) && self.nonneg(a) {
            return Operand::Const(Const::Bool(true));
        }
        let r = self.let_(name, ty, Rhs::Binary(op, a, b));
        if let (Operand::Var(v), BinOp::Add | BinOp::Mul) = (r, op) {
            if self.nonneg(a) && self.nonneg(b) {
                self.known.nonneg.insert(v);
            }
        }
        r
    }

    fn mul(&mut self, a: Operand, b: Operand) -> Operand {
        self.bin("t", BinOp::Mul, a, b)
    }

    fn add(&mut self, a: Operand, b: Operand) -> Operand {
        self.bin("t", BinOp::Add, a, b)
    }

    /// Runs `f` emitting into a fresh block, and returns the block.
    /// Facts the block's checks establish do not outlive it.
    fn block<T>(&mut self, f: impl FnOnce(&mut Self) -> R<T>) -> R<(Vec<Inst>, T)> {
        let saved = std::mem::take(&mut self.out);
        let known = self.known.clone();
        let r = f(self);
        self.known = known;
        let block = std::mem::replace(&mut self.out, saved);
        Ok((block, r?))
    }

    /// [`Self::block`] for code lowered at the loop's own depth that goes at
    /// the end of its body (storing an iteration's results, assigning the
    /// loop state): the loops it emits (a copy, an `iota` made) run inside
    /// the loop, so they are never marked parallel.
    fn body_block<T>(&mut self, f: impl FnOnce(&mut Self) -> R<T>) -> R<(Vec<Inst>, T)> {
        let (depth, marks) = (self.parallel_depth.take(), std::mem::replace(&mut self.marks, false));
        let r = self.block(f);
        (self.parallel_depth, self.marks) = (depth, marks);
        r
    }

    /// The index of the site `(code, span, message)`, shared by every `Fail`
    /// that reports the same error (Note [One site per error]).
    fn site(&mut self, code: Code, span: Span, message: Message) -> u32 {
        let site = Site { code, span, message };
        let same = self.sites_at.entry(span).or_default();
        if let Some(&k) = same.iter().find(|&&k| self.sites[k as usize] == site) {
            return k;
        }
        same.push(self.sites.len() as u32);
        self.sites.push(site);
        self.sites.len() as u32 - 1
    }

    /// Fails with `message` unless `ok` holds.
    fn check(&mut self, ok: Operand, code: Code, span: Span, message: Message, args: Vec<Operand>) {
        if ok == Operand::Const(Const::Bool(true)) {
            return;
        }
        let site = self.site(code, span, message);
        self.emit(Inst::If { cond: ok, then: Vec::new(), els: vec![Inst::Fail { site, args }] });
    }

    /// `0 <= i < n`, unless a fact or constants prove it.
    fn in_range(&mut self, i: Operand, n: Operand) -> Operand {
        let (i, n) = (self.resolve(i), self.resolve(n));
        let proved = match (i, n) {
            (Operand::Var(v), n) => self.facts.get(&v).is_some_and(|&b| self.same(b, n)),
            (Operand::Const(Const::I64(i)), Operand::Const(Const::I64(n))) => 0 <= i && i < n,
            _ => false,
        };
        if proved {
            return Operand::Const(Const::Bool(true));
        }
        self.let_("ok", MTy::Bool, Rhs::InRange { index: i, bound: n })
    }

    fn check_index(&mut self, i: Operand, n: Operand, dim: u32, span: Span) {
        let ok = self.in_range(i, n);
        self.check(ok, Code::E0201, span, Message::IndexOutOfBounds { dim }, vec![i, n]);
    }

    /// A size operand, checked non-negative (E0204).
    fn size(&mut self, n: Operand, span: Span) -> Operand {
        let n = self.resolve(n);
        let ok = self.bin("ok", BinOp::Ge, n, Operand::i64(0));
        self.check(ok, Code::E0204, span, Message::NegativeSize, vec![n]);
        if let Operand::Var(v) = n {
            self.known.nonneg.insert(v);
        }
        n
    }

    /// A size checked non-negative (E0204) that is also the length of an
    /// array about to exist: beyond the runtime's limit it is E0207, as in
    /// the interpreter (sizes of existing arrays are below it already).
    fn alloc_size(&mut self, n: Operand, span: Span) -> Operand {
        let n = self.size(n, span);
        let known = match self.resolve(n) {
            Operand::Var(v) => self.dims.contains(&v),
            Operand::Const(Const::I64(k)) => k as u64 <= MAX_ELEMENTS,
            _ => false,
        };
        if !known {
            let ok = self.bin("ok", BinOp::Le, n, Operand::i64(MAX_ELEMENTS as i64));
            self.check(ok, Code::E0207, span, Message::OutOfMemory, vec![n]);
        }
        n
    }

    /// `(d == 0, d or 1 when it is 0)`: a size usable as a divisor (integer
    /// division by zero is never emitted, see the module invariants).
    fn divisor(&mut self, d: Operand) -> (Operand, Operand) {
        let zero = self.bin("ok", BinOp::Eq, d, Operand::i64(0));
        (zero, self.let_("t", MTy::I64, Rhs::Select(zero, Operand::i64(1), d)))
    }

    /// Runs `f` emitting into `into` instead of the current block (same
    /// scope: facts it establishes stay known).
    fn emit_into<T>(&mut self, into: &mut Vec<Inst>, f: impl FnOnce(&mut Self) -> T) -> T {
        let saved = std::mem::take(&mut self.out);
        let r = f(self);
        into.extend(std::mem::replace(&mut self.out, saved));
        r
    }

    /// `rows * row_len`, the length of an array about to be allocated,
    /// checked not to exceed the runtime's limit — so the product cannot wrap
    /// around to a small buffer the rows would overflow (E0207).
    fn rows_total(&mut self, rows: Operand, row_len: Operand, span: Span) -> Operand {
        if let (Some(a), Some(b)) = (rows.as_i64(), row_len.as_i64()) {
            if a.checked_mul(b).is_some_and(|t| t as u64 <= MAX_ELEMENTS) {
                return Operand::i64(a * b);
            }
        }
        let (zero, divisor) = self.divisor(row_len);
        let most = self.bin("t", BinOp::Div, Operand::i64(MAX_ELEMENTS as i64), divisor);
        let fits = self.bin("ok", BinOp::Le, rows, most);
        let ok = self.bin("ok", BinOp::Or, zero, fits);
        self.check(ok, Code::E0207, span, Message::OutOfMemoryRows, vec![rows, row_len]);
        self.mul(rows, row_len)
    }

    /// Fails with E0202 (`message`, args `a`, `b`) unless `a == b`;
    /// afterwards they are known equal.
    fn check_eq(&mut self, a: Operand, b: Operand, span: Span, message: Message) {
        let ok = self.bin("ok", BinOp::Eq, a, b);
        self.check(ok, Code::E0202, span, message, vec![a, b]);
        self.learn_eq(a, b);
    }

    /// Records `a == b` (a check just proved it).
    fn learn_eq(&mut self, a: Operand, b: Operand) {
        match (self.resolve(a), self.resolve(b)) {
            (Operand::Var(x), c @ Operand::Const(_)) | (c @ Operand::Const(_), Operand::Var(x)) => {
                self.known.eq.insert(x, c);
            }
            (x, Operand::Var(y)) if x != Operand::Var(y) => {
                self.known.eq.insert(y, x);
            }
            _ => {}
        }
    }

    fn product(&mut self, dims: &[Operand]) -> Operand {
        let mut p = Operand::i64(1);
        for &d in dims {
            p = self.mul(p, d);
        }
        p
    }

    fn alloc(&mut self, name: &str, elem: MTy, count: Operand) -> Operand {
        let site = self.site(Code::E0207, self.span, Message::OutOfMemory);
        self.let_(name, MTy::I64, Rhs::Alloc { elem, count, site, hoisted: false })
    }

    /// A new buffer holding a copy of `a` (where the ownership plan says to copy).
    fn copy_array(&mut self, a: &Arr) -> Arr {
        let n = self.product(&a.dims);
        let ptr = self.alloc("copy", a.elem, n);
        self.emit(Inst::Copy { elem: a.elem, dst: ptr, src: a.ptr, count: n });
        Arr { ptr, dims: a.dims.clone(), elem: a.elem }
    }

    /// A call of the entry `func` (Note [Entries called by entries] in
    /// ir/calls.rs): its argument and result words laid out as its
    /// parameters and results are. (A result may share an argument's
    /// buffer: the ownership plan owns neither afterwards.)
    fn call(&mut self, func: &str, args: &[Atom], binds: &[Var]) -> R<()> {
        let mut words = Vec::new();
        for &a in args {
            match self.atom(a)? {
                LVal::Scalar(o) => words.push(o),
                v => {
                    let arr = self.materialize(v);
                    words.push(arr.ptr);
                    words.extend(arr.dims);
                }
            }
        }
        let mut results = Vec::new();
        for &b in binds {
            self.bind_words(b, &mut results);
        }
        self.emit(Inst::Call { func: func.to_string(), args: words, results });
        Ok(())
    }

    /// Binds `v` to fresh variables for the words of the entry ABI (its
    /// scalar, or its data pointer then its dimensions), appended to
    /// `words`: a parameter, or a result of a call (an array is the
    /// caller's, or possibly a call's argument's).
    fn bind_words(&mut self, v: Var, words: &mut Vec<LVar>) {
        let ty = self.ir_type(v);
        let name = self.prog.vars.base_name(v).to_string();
        let elem = MTy::of(ty.elem);
        if ty.rank == 0 {
            let s = self.fresh(&name, elem);
            words.push(s);
            self.bind(v, LVal::Scalar(s.into()));
            return;
        }
        let ptr = self.fresh(&name, MTy::I64);
        words.push(ptr);
        let dims: Vec<Operand> = (0..ty.rank)
            .map(|d| {
                let dim = self.fresh_dim(&format!("{name}_d{d}"));
                words.push(dim);
                dim.into()
            })
            .collect();
        self.bind(v, LVal::Array(Arr { ptr: ptr.into(), dims, elem }));
    }

    /// The array behind `v`; allocates an `iota` that is used as an array.
    fn materialize(&mut self, v: LVal) -> Arr {
        match v {
            LVal::Array(a) => a,
            LVal::Iota(n) => {
                let ptr = self.alloc("iota", MTy::I64, n);
                let j = self.fresh("j", MTy::I64);
                let body = vec![Inst::Store { elem: MTy::I64, base: ptr, index: j.into(), value: j.into() }];
                // The loop is the `iota`'s, made where it is first used as an
                // array: at the outermost level, it is parallel as the `iota`
                // is (the statement using it may be a sequential loop).
                let outer = self.parallel_depth;
                if self.depth == 0 && self.marks {
                    self.parallel_depth = Some(0);
                }
                self.emit(Inst::for_(j, n, body));
                self.parallel_depth = outer;
                Arr { ptr, dims: vec![n], elem: MTy::I64 }
            }
            LVal::Scalar(_) => unreachable!("materialize of a scalar"),
        }
    }

    // ---- environment ------------------------------------------------------

    fn atom(&self, a: Atom) -> R<LVal> {
        match a {
            Atom::Const(c) => Ok(LVal::Scalar(Operand::Const(c))),
            Atom::Var(v) => self.env[v.0 as usize].clone().ok_or_else(|| format!("unbound variable v{}", v.0)),
        }
    }

    fn scalar(&self, a: Atom) -> R<Operand> {
        match self.atom(a)? {
            LVal::Scalar(o) => Ok(o),
            _ => Err("an array where a scalar was expected".into()),
        }
    }

    fn var(&self, v: Var) -> R<LVal> {
        self.atom(Atom::Var(v))
    }

    fn array(&mut self, v: Var) -> R<Arr> {
        match self.var(v)? {
            LVal::Scalar(_) => Err("a scalar where an array was expected".into()),
            a => Ok(self.materialize(a)),
        }
    }

    /// The outer size of an array value.
    fn outer(&self, v: &LVal) -> Operand {
        match v {
            LVal::Array(a) => a.dims[0],
            LVal::Iota(n) => *n,
            LVal::Scalar(_) => unreachable!("outer size of a scalar"),
        }
    }

    fn bind(&mut self, v: Var, val: LVal) {
        self.env[v.0 as usize] = Some(val);
    }

    /// The ownership decision for the statement being lowered, which must
    /// have one (`ownership::needs_decision`).
    fn decision(&mut self) -> R<Decision> {
        self.decision.take().ok_or_else(|| "a write without an ownership decision".to_string())
    }

    /// The buffer an update, `scatter` or `hist` of `a` writes: `a`'s own
    /// when the plan puts the write in place, else a copy.
    fn write_target(&mut self, a: Arr) -> R<Arr> {
        match self.decision()? {
            Decision::Write { in_place: true } => Ok(a),
            Decision::Write { in_place: false } => Ok(self.copy_array(&a)),
            _ => Err("a write's ownership decision is not a write's".into()),
        }
    }

    fn ir_type(&self, v: Var) -> IrType {
        self.prog.vars.ty(v)
    }

    // ---- bodies and statements ---------------------------------------------

    fn body(&mut self, b: &Body) -> R<Vec<LVal>> {
        for s in &b.stmts {
            self.stmt(s)?;
        }
        b.result.iter().map(|&a| self.atom(a)).collect()
    }

    /// Binds `params` to `args` and lowers `body` (inlined, same depth).
    fn inline(&mut self, lam: &Lambda, args: Vec<LVal>) -> R<Vec<LVal>> {
        for (&p, a) in lam.params.iter().zip(args) {
            self.bind(p, a);
        }
        self.body(&lam.body)
    }

    /// Lowers `s`, its own loops marked parallel when the parallel level
    /// says so.
    fn stmt(&mut self, s: &ir::Stmt) -> R<()> {
        let outer = self.parallel_depth;
        self.parallel_depth = self.segments.is_parallel(s).then_some(self.depth);
        let lowered = self.stmt_loops(s);
        self.parallel_depth = outer;
        lowered
    }

    fn stmt_loops(&mut self, s: &ir::Stmt) -> R<()> {
        let span = s.span;
        self.span = span;
        let visit = self.visits.next(s);
        self.decision = self.plan.get(&visit).cloned();
        let one = |binds: &[Var]| -> R<Var> {
            match binds {
                [b] => Ok(*b),
                _ => Err(format!("a statement binding {} variables", binds.len())),
            }
        };
        let name = |l: &Self, v: Var| l.prog.vars.base_name(v).to_string();
        match &s.expr {
            Expr::Atom(a) | Expr::Opaque(a) => {
                let b = one(&s.binds)?;
                let val = self.atom(*a)?;
                self.bind(b, val);
            }
            Expr::Unary(op, a) => {
                let b = one(&s.binds)?;
                let x = self.scalar(*a)?;
                let ty = MTy::of(self.ir_type(b).elem);
                let r = match op {
                    UnOp::StopGradient => x,
                    _ => self.let_(&name(self, b), ty, Rhs::Unary(*op, x)),
                };
                self.bind(b, LVal::Scalar(r));
            }
            Expr::Binary(op, a, c) => {
                let b = one(&s.binds)?;
                let (x, y) = (self.scalar(*a)?, self.scalar(*c)?);
                let ty = MTy::of(self.ir_type(b).elem);
                if self.operand_type(x) == MTy::I64 {
                    match op {
                        BinOp::Div | BinOp::Rem => {
                            let ok = self.bin("ok", BinOp::Ne, y, Operand::i64(0));
                            self.check(
                                ok,
                                Code::E0203,
                                span,
                                Message::DivisionByZero { op: op.symbol().into() },
                                vec![x],
                            );
                        }
                        BinOp::Pow => {
                            let ok = self.bin("ok", BinOp::Ge, y, Operand::i64(0));
                            self.check(ok, Code::E0204, span, Message::NegativeExponent, vec![x, y]);
                        }
                        _ => {}
                    }
                }
                let r = self.let_(&name(self, b), ty, Rhs::Binary(*op, x, y));
                self.bind(b, LVal::Scalar(r));
            }
            Expr::Convert(t, a) => {
                let b = one(&s.binds)?;
                let x = self.scalar(*a)?;
                let to = MTy::of(*t);
                let r = if self.operand_type(x) == to { x } else { self.let_(&name(self, b), to, Rhs::Convert(to, x)) };
                self.bind(b, LVal::Scalar(r));
            }
            Expr::Select(c, a, e) => {
                let b = one(&s.binds)?;
                let c = self.scalar(*c)?;
                match (self.atom(*a)?, self.atom(*e)?) {
                    (LVal::Scalar(x), LVal::Scalar(y)) => {
                        let ty = MTy::of(self.ir_type(b).elem);
                        let r = self.let_(&name(self, b), ty, Rhs::Select(c, x, y));
                        self.bind(b, LVal::Scalar(r));
                    }
                    _ => {
                        // Arrays: choose the descriptor with a branch.
                        let t = Body { stmts: Vec::new().into(), result: vec![*a] };
                        let f = Body { stmts: Vec::new().into(), result: vec![*e] };
                        self.lower_if(&s.binds, c, &t, &f)?;
                    }
                }
            }
            Expr::If { cond, then_body, else_body } => {
                let c = self.scalar(*cond)?;
                self.lower_if(&s.binds, c, then_body, else_body)?;
            }
            Expr::Index { array, indices } => {
                let b = one(&s.binds)?;
                let val = self.var(*array)?;
                let idx = indices.iter().map(|&i| self.scalar(i)).collect::<R<Vec<_>>>()?;
                let r = self.index(val, &idx, span)?;
                self.bind(b, r);
            }
            Expr::Slice { array, start, end } => {
                let b = one(&s.binds)?;
                let a = self.array(*array)?;
                let (st, en) = (self.scalar(*start)?, self.scalar(*end)?);
                let n = a.dims[0];
                let lo = self.bin("ok", BinOp::Ge, st, Operand::i64(0));
                let mid = self.bin("ok", BinOp::Le, st, en);
                let hi = self.bin("ok", BinOp::Le, en, n);
                let ok1 = self.bin("ok", BinOp::And, lo, mid);
                let ok = self.bin("ok", BinOp::And, ok1, hi);
                self.check(ok, Code::E0201, span, Message::SliceOutOfBounds, vec![st, en, n]);
                let rl = self.product(&a.dims[1..]);
                let off = self.mul(st, rl);
                let ptr = self.let_("slice", MTy::I64, Rhs::Offset { elem: a.elem, base: a.ptr, index: off });
                let len = self.bin("len", BinOp::Sub, en, st);
                let mut dims = vec![len];
                dims.extend_from_slice(&a.dims[1..]);
                self.bind(b, LVal::Array(Arr { ptr, dims, elem: a.elem }));
            }
            Expr::Shape { array, dim } => {
                let b = one(&s.binds)?;
                let n = match self.var(*array)? {
                    LVal::Array(a) => *a.dims.get(*dim as usize).ok_or("shape of a missing dimension")?,
                    LVal::Iota(n) => n,
                    LVal::Scalar(_) => return Err("shape of a scalar".into()),
                };
                self.bind(b, LVal::Scalar(n));
            }
            Expr::Iota(n) => {
                let b = one(&s.binds)?;
                let n = self.scalar(*n)?;
                let n = self.alloc_size(n, span);
                self.bind(b, LVal::Iota(n));
            }
            Expr::Replicate { count, value } => {
                let b = one(&s.binds)?;
                let n = self.scalar(*count)?;
                let n = self.alloc_size(n, span);
                let r = match self.atom(*value)? {
                    LVal::Scalar(x) => {
                        let elem = self.operand_type(x);
                        let ptr = self.alloc("rep", elem, n);
                        let j = self.fresh("j", MTy::I64);
                        let body = vec![Inst::Store { elem, base: ptr, index: j.into(), value: x }];
                        self.emit(Inst::for_(j, n, body));
                        Arr { ptr, dims: vec![n], elem }
                    }
                    v => {
                        let row = self.materialize(v);
                        let rl = self.product(&row.dims);
                        let total = self.rows_total(n, rl, span);
                        let ptr = self.alloc("rep", row.elem, total);
                        let j = self.fresh("j", MTy::I64);
                        let (body, ()) = self.block(|l| {
                            let at = l.mul(j.into(), rl);
                            let dst = l.let_("dst", MTy::I64, Rhs::Offset { elem: row.elem, base: ptr, index: at });
                            l.emit(Inst::Copy { elem: row.elem, dst, src: row.ptr, count: rl });
                            Ok(())
                        })?;
                        self.emit(Inst::for_(j, n, body));
                        let mut dims = vec![n];
                        dims.extend(row.dims);
                        Arr { ptr, dims, elem: row.elem }
                    }
                };
                self.bind(b, LVal::Array(r));
            }
            Expr::ArrayLit { elem, elems } => {
                let b = one(&s.binds)?;
                let r = self.array_lit(*elem, elems, span)?;
                self.bind(b, LVal::Array(r));
            }
            Expr::Map { width, lam, arrays } => self.map(&s.binds, *width, lam, arrays, span)?,
            Expr::Reduce { lam, neutral, arrays } => {
                self.reduce_or_scan(&s.binds, lam, neutral, arrays, false, span)?
            }
            Expr::Scan { lam, neutral, arrays } => self.reduce_or_scan(&s.binds, lam, neutral, arrays, true, span)?,
            Expr::Loop { params, init, form, body } => self.lower_loop(&s.binds, params, init, form, body, span)?,
            Expr::Scatter { dest, indices, values } => {
                let b = one(&s.binds)?;
                let r = self.scatter(*dest, *indices, *values, None, span)?;
                self.bind(b, LVal::Array(r));
            }
            Expr::Hist { dest, lam, indices, values, .. } => {
                let b = one(&s.binds)?;
                let r = self.scatter(*dest, *indices, *values, Some(lam), span)?;
                self.bind(b, LVal::Array(r));
            }
            Expr::Transpose(a) => {
                let b = one(&s.binds)?;
                let a = self.array(*a)?;
                let r = self.transpose(&a)?;
                self.bind(b, LVal::Array(r));
            }
            Expr::Reverse(a) => {
                let b = one(&s.binds)?;
                let a = self.array(*a)?;
                let rl = self.product(&a.dims[1..]);
                let n = a.dims[0];
                let total = self.mul(n, rl);
                let ptr = self.alloc("rev", a.elem, total);
                let j = self.fresh("j", MTy::I64);
                let (body, ()) = self.block(|l| {
                    let last = l.bin("t", BinOp::Sub, n, Operand::i64(1));
                    let k = l.bin("k", BinOp::Sub, last, j.into());
                    let from = l.mul(k, rl);
                    let to = l.mul(j.into(), rl);
                    let src = l.let_("src", MTy::I64, Rhs::Offset { elem: a.elem, base: a.ptr, index: from });
                    let dst = l.let_("dst", MTy::I64, Rhs::Offset { elem: a.elem, base: ptr, index: to });
                    l.emit(Inst::Copy { elem: a.elem, dst, src, count: rl });
                    Ok(())
                })?;
                self.emit(Inst::for_(j, n, body));
                self.bind(
                    b,
                    LVal::Array(Arr { ptr, dims: a.dims.clone(), elem: a.elem }),
                );
            }
            Expr::Call { func, args } => self.call(func, args, &s.binds)?,
            Expr::Argsort { array, descending } => {
                let b = one(&s.binds)?;
                let a = self.array(*array)?;
                let n = a.dims[0];
                let perm = self.alloc("perm", MTy::I64, n);
                self.emit(Inst::Argsort {
                    elem: a.elem,
                    keys: a.ptr,
                    count: n,
                    perm: perm.into(),
                    descending: *descending,
                });
                self.bind(
                    b,
                    LVal::Array(Arr { ptr: perm, dims: vec![n], elem: MTy::I64 }),
                );
            }
            Expr::Concat(x, y) => {
                let b = one(&s.binds)?;
                let (x, y) = (self.array(*x)?, self.array(*y)?);
                self.same_shape(
                    &x.dims[1..],
                    &y.dims[1..],
                    "size mismatch: concat of arrays with rows of shapes {} and {}",
                    span,
                );
                let nx = self.product(&x.dims);
                let ny = self.product(&y.dims);
                let total = self.add(nx, ny);
                let ptr = self.alloc("cat", x.elem, total);
                self.emit(Inst::Copy { elem: x.elem, dst: ptr, src: x.ptr, count: nx });
                let dst = self.let_("dst", MTy::I64, Rhs::Offset { elem: x.elem, base: ptr, index: nx });
                self.emit(Inst::Copy { elem: x.elem, dst, src: y.ptr, count: ny });
                let mut dims = x.dims.clone();
                dims[0] = self.add(x.dims[0], y.dims[0]);
                self.bind(b, LVal::Array(Arr { ptr, dims, elem: x.elem }));
            }
            Expr::Flatten(a) => {
                let b = one(&s.binds)?;
                let arr = self.array(*a)?;
                let mut dims = vec![self.mul(arr.dims[0], arr.dims[1])];
                dims.extend_from_slice(&arr.dims[2..]);
                self.bind(b, LVal::Array(Arr { dims, ..arr }));
            }
            Expr::Unflatten { array, rows, cols } => {
                let b = one(&s.binds)?;
                let arr = self.array(*array)?;
                let r = self.scalar(*rows)?;
                let r = self.size(r, span);
                let c = self.scalar(*cols)?;
                let c = self.size(c, span);
                // `r * c == n` without overflow (a wrapped product could let a
                // view claim more memory than the array has): `n / c == r`
                // exactly, or `n == 0` when `c == 0`.
                let n = arr.dims[0];
                let (c_zero, divisor) = self.divisor(c);
                let q = self.bin("t", BinOp::Div, n, divisor);
                let m = self.bin("t", BinOp::Rem, n, divisor);
                let exact = self.bin("ok", BinOp::Eq, m, Operand::i64(0));
                let same_rows = self.bin("ok", BinOp::Eq, q, r);
                let fits = self.bin("ok", BinOp::And, exact, same_rows);
                let empty = self.bin("ok", BinOp::Eq, n, Operand::i64(0));
                let ok = self.let_("ok", MTy::Bool, Rhs::Select(c_zero, empty, fits));
                self.check(ok, Code::E0202, span, Message::Unflatten, vec![r, c, n]);
                let rc = self.mul(r, c);
                self.learn_eq(rc, n);
                let mut dims = vec![r, c];
                dims.extend_from_slice(&arr.dims[1..]);
                self.bind(b, LVal::Array(Arr { dims, ..arr }));
            }
            Expr::UpdateAt { array, indices, value, accumulate } => {
                let b = one(&s.binds)?;
                let r = self.update_at(*array, indices, *value, *accumulate, span)?;
                self.bind(b, LVal::Array(r));
            }
            Expr::Check { kind, args } => {
                let ops = args.iter().map(|a| self.scalar(*a)).collect::<R<Vec<_>>>()?;
                match (kind, ops.as_slice()) {
                    (CheckKind::SizeEq { what }, &[x, y]) => {
                        let ty = self.operand_type(x);
                        let message = Message::SizeEq { what: what.clone(), ty: ty.elem_type() };
                        if ty == MTy::I64 {
                            self.check_eq(x, y, span, message);
                        } else {
                            let ok = self.bin("ok", BinOp::Eq, x, y);
                            self.check(ok, Code::E0202, span, message, vec![x, y]);
                        }
                    }
                    (CheckKind::Iterated { what }, &[x, y]) => {
                        self.check_eq(x, y, span, Message::IteratedSizes { what: what.clone() })
                    }
                    (CheckKind::InBounds { dim }, &[i, n]) => self.check_index(i, n, *dim, span),
                    (CheckKind::Size, &[n]) => {
                        self.size(n, span);
                    }
                    (CheckKind::Positive { what }, &[n]) => {
                        let ok = self.bin("ok", BinOp::Ge, n, Operand::i64(1));
                        self.check(ok, Code::E0204, span, Message::NotPositive { what: what.clone() }, vec![n]);
                    }
                    _ => return Err(format!("a {kind:?} check with {} operands", ops.len())),
                }
            }
            Expr::Custom { primal, args, .. } => {
                let vals = args.iter().map(|&a| self.atom(a)).collect::<R<Vec<_>>>()?;
                let out = self.inline(primal, vals)?;
                self.bind_results(&s.binds, out)?;
            }
            Expr::Jvp { .. } | Expr::Vjp { .. } => return Err("an AD operator reached code generation".into()),
        }
        Ok(())
    }

    fn bind_results(&mut self, binds: &[Var], vals: Vec<LVal>) -> R<()> {
        if binds.len() != vals.len() {
            return Err(format!("{} values for {} variables", vals.len(), binds.len()));
        }
        for (&b, v) in binds.iter().zip(vals) {
            self.bind(b, v);
        }
        Ok(())
    }

    /// Fails with E0202 unless the two shapes are equal; `template` has two
    /// `{}` holes for the shapes.
    fn same_shape(&mut self, a: &[Operand], b: &[Operand], template: &str, span: Span) {
        let mut ok = Operand::Const(Const::Bool(true));
        for (&x, &y) in a.iter().zip(b) {
            let e = self.bin("ok", BinOp::Eq, x, y);
            ok = self.bin("ok", BinOp::And, ok, e);
        }
        let rank = a.len() as u32;
        let args = a.iter().chain(b).copied().collect();
        self.check(ok, Code::E0202, span, Message::Shapes { template: template.into(), rank }, args);
        for (&x, &y) in a.iter().zip(b) {
            self.learn_eq(x, y);
        }
    }

    // ---- indexing ------------------------------------------------------------

    fn index(&mut self, val: LVal, idx: &[Operand], span: Span) -> R<LVal> {
        if let LVal::Iota(n) = val {
            if let [i] = idx {
                self.check_index(*i, n, 0, span);
                return Ok(LVal::Scalar(*i));
            }
        }
        let a = self.materialize(val);
        if idx.len() > a.dims.len() {
            return Err("too many indices".into());
        }
        let mut flat = Operand::i64(0);
        for (d, &i) in idx.iter().enumerate() {
            self.check_index(i, a.dims[d], d as u32, span);
            let scaled = self.mul(flat, a.dims[d]);
            flat = self.add(scaled, i);
        }
        if idx.len() == a.dims.len() {
            let r = self.let_("x", a.elem, Rhs::Load { elem: a.elem, base: a.ptr, index: flat });
            return Ok(LVal::Scalar(r));
        }
        let rest = a.dims[idx.len()..].to_vec();
        let block = self.product(&rest);
        let at = self.mul(flat, block);
        let ptr = self.let_("row", MTy::I64, Rhs::Offset { elem: a.elem, base: a.ptr, index: at });
        Ok(LVal::Array(Arr { ptr, dims: rest, elem: a.elem }))
    }

    fn update_at(&mut self, array: Var, indices: &[Atom], value: Atom, accumulate: bool, span: Span) -> R<Arr> {
        let value = self.atom(value)?;
        let idx = indices.iter().map(|&i| self.scalar(i)).collect::<R<Vec<_>>>()?;
        let a = self.array(array)?;
        let mut flat = Operand::i64(0);
        for (d, &i) in idx.iter().enumerate() {
            self.check_index(i, a.dims[d], d as u32, span);
            let scaled = self.mul(flat, a.dims[d]);
            flat = self.add(scaled, i);
        }
        let rest = a.dims[idx.len()..].to_vec();
        let value = match value {
            LVal::Scalar(x) => LVal::Scalar(x),
            v => {
                let v = self.materialize(v);
                self.same_shape(
                    &rest,
                    &v.dims,
                    "size mismatch: updating a block of shape {} with a value of shape {}",
                    span,
                );
                LVal::Array(v)
            }
        };
        let target = self.write_target(a)?;
        let elem = target.elem;
        match value {
            LVal::Scalar(x) => {
                let x = if accumulate {
                    let old = self.let_("old", elem, Rhs::Load { elem, base: target.ptr, index: flat });
                    self.bin("new", BinOp::Add, old, x)
                } else {
                    x
                };
                self.emit(Inst::Store { elem, base: target.ptr, index: flat, value: x });
            }
            LVal::Array(v) => {
                let block = self.product(&rest);
                let start = self.mul(flat, block);
                if accumulate {
                    let j = self.fresh("j", MTy::I64);
                    let (body, ()) = self.block(|l| {
                        let at = l.add(start, j.into());
                        let old = l.let_("old", elem, Rhs::Load { elem, base: target.ptr, index: at });
                        let x = l.let_("x", elem, Rhs::Load { elem, base: v.ptr, index: j.into() });
                        let new = l.bin("new", BinOp::Add, old, x);
                        l.emit(Inst::Store { elem, base: target.ptr, index: at, value: new });
                        Ok(())
                    })?;
                    self.emit(Inst::for_(j, block, body));
                } else {
                    let dst = self.let_("dst", MTy::I64, Rhs::Offset { elem, base: target.ptr, index: start });
                    self.emit(Inst::Copy { elem, dst, src: v.ptr, count: block });
                }
            }
            LVal::Iota(_) => unreachable!("materialized above"),
        }
        Ok(target)
    }

    fn array_lit(&mut self, elem: IrType, elems: &[Atom], span: Span) -> R<Arr> {
        let ety = MTy::of(elem.elem);
        let k = Operand::i64(elems.len() as i64);
        if elem.rank == 0 {
            let ptr = self.alloc("lit", ety, k);
            for (j, &e) in elems.iter().enumerate() {
                let x = self.scalar(e)?;
                self.emit(Inst::Store { elem: ety, base: ptr, index: Operand::i64(j as i64), value: x });
            }
            return Ok(Arr { ptr, dims: vec![k], elem: ety });
        }
        let rows = elems
            .iter()
            .map(|&e| {
                let v = self.atom(e)?;
                Ok(self.materialize(v))
            })
            .collect::<R<Vec<_>>>()?;
        let Some(first) = rows.first().cloned() else {
            let ptr = self.alloc("lit", ety, Operand::i64(0));
            let mut dims = vec![k];
            dims.extend((0..elem.rank).map(|_| Operand::i64(0)));
            return Ok(Arr { ptr, dims, elem: ety });
        };
        for r in &rows[1..] {
            self.same_shape(&first.dims, &r.dims, "array literal rows have different shapes {} and {}", span);
        }
        let rl = self.product(&first.dims);
        let total = self.mul(k, rl);
        let ptr = self.alloc("lit", ety, total);
        for (j, r) in rows.iter().enumerate() {
            let at = self.mul(Operand::i64(j as i64), rl);
            let dst = self.let_("dst", MTy::I64, Rhs::Offset { elem: ety, base: ptr, index: at });
            self.emit(Inst::Copy { elem: ety, dst, src: r.ptr, count: rl });
        }
        let mut dims = vec![k];
        dims.extend(first.dims);
        Ok(Arr { ptr, dims, elem: ety })
    }

    fn transpose(&mut self, a: &Arr) -> R<Arr> {
        if a.dims.len() < 2 {
            return Err("transpose of a rank-1 array".into());
        }
        let (d0, d1) = (a.dims[0], a.dims[1]);
        let inner = self.product(&a.dims[2..]);
        let total = self.product(&a.dims);
        let ptr = self.alloc("tr", a.elem, total);
        let (i, j) = (self.fresh("i", MTy::I64), self.fresh("j", MTy::I64));
        let elem = a.elem;
        let (inner_body, ()) = self.block(|l| {
            let r = l.mul(i.into(), d1);
            let r = l.add(r, j.into());
            let from = l.mul(r, inner);
            let c = l.mul(j.into(), d0);
            let c = l.add(c, i.into());
            let to = l.mul(c, inner);
            if inner == Operand::i64(1) {
                let x = l.let_("x", elem, Rhs::Load { elem, base: a.ptr, index: from });
                l.emit(Inst::Store { elem, base: ptr, index: to, value: x });
            } else {
                let src = l.let_("src", MTy::I64, Rhs::Offset { elem, base: a.ptr, index: from });
                let dst = l.let_("dst", MTy::I64, Rhs::Offset { elem, base: ptr, index: to });
                l.emit(Inst::Copy { elem, dst, src, count: inner });
            }
            Ok(())
        })?;
        let body = vec![Inst::for_(j, d1, inner_body)];
        self.emit(Inst::for_(i, d0, body));
        let mut dims = a.dims.clone();
        dims.swap(0, 1);
        Ok(Arr { ptr, dims, elem })
    }

    // ---- combinators -----------------------------------------------------------

    /// Checks that the iterated arrays share their outer size (E0202, as
    /// the interpreter words it) and returns it.
    fn iterated(&mut self, vals: &[LVal], what: &str, span: Span) -> Option<Operand> {
        let first = self.outer(vals.first()?);
        for v in &vals[1..] {
            let n = self.outer(v);
            self.check_eq(first, n, span, Message::IteratedSizes { what: what.to_string() });
        }
        Some(first)
    }

    /// Element `j` of an iterated array (`j < outer size`, checked before).
    fn element(&mut self, v: &LVal, j: LVar) -> LVal {
        match v {
            LVal::Iota(_) => LVal::Scalar(j.into()),
            LVal::Array(a) if a.dims.len() == 1 => {
                LVal::Scalar(self.let_("x", a.elem, Rhs::Load { elem: a.elem, base: a.ptr, index: j.into() }))
            }
            LVal::Array(a) => {
                let rest = a.dims[1..].to_vec();
                let rl = self.product(&rest);
                let at = self.mul(j.into(), rl);
                let ptr = self.let_("row", MTy::I64, Rhs::Offset { elem: a.elem, base: a.ptr, index: at });
                LVal::Array(Arr { ptr, dims: rest, elem: a.elem })
            }
            LVal::Scalar(_) => unreachable!("iterating a scalar"),
        }
    }

    fn map(&mut self, binds: &[Var], width: Atom, lam: &Lambda, arrays: &[Var], span: Span) -> R<()> {
        let w = self.scalar(width)?;
        let w = self.alloc_size(w, span);
        let vals = arrays.iter().map(|&a| self.var(a)).collect::<R<Vec<_>>>()?;
        if let Some(n) = self.iterated(&vals, "map", span) {
            self.check_eq(w, n, span, Message::MapWidth);
        }
        let j = self.fresh("j", MTy::I64);
        let types: Vec<IrType> = binds.iter().map(|&b| self.ir_type(b)).collect();
        let mut stacks: Vec<Stack> = types.iter().map(|&t| self.stack_new(t)).collect();
        let Decision::Map { into } = self.decision()? else {
            return Err("a map's ownership decision is not a map's".into());
        };
        for (st, i) in stacks.iter_mut().zip(into) {
            // The result is written over input `i` (Note [Maps in place]).
            st.into = match i.map(|i| &vals[i]) {
                Some(LVal::Array(a)) => Some(a.ptr),
                Some(_) => return Err("a map result written over an input that is no buffer".into()),
                None => None,
            };
            // Stores go through the input's own pointer variable (so that
            // the loop optimiser sees one buffer, not two names for it).
            if let Some(Operand::Var(v)) = st.into {
                st.ptr = v;
            }
        }
        self.facts.insert(j, w);
        self.depth += 1;
        let (mut body, results) = self.block(|l| {
            let args: Vec<LVal> = vals.iter().map(|v| l.element(v, j)).collect();
            let r = l.inline(lam, args)?;
            Ok(l.resolve_dims(r))
        })?;
        self.depth -= 1;
        self.span = span;
        if results.len() != stacks.len() {
            return Err("map lambda result count".into());
        }
        let allocates = allocates(&body);
        let mut assigned = assigned_in(&body);
        assigned.insert(j);
        let mut prefix = Vec::new();
        let mut keep = Vec::new();
        let (push, ()) = self.body_block(|l| {
            for (st, r) in stacks.iter_mut().zip(results) {
                l.stack_push(st, r, j, w, &assigned, &mut prefix, "map", span)?;
                if st.lazy {
                    keep.push(Operand::Var(st.ptr));
                }
            }
            Ok(())
        })?;
        self.out.extend(prefix);
        body.extend(push);
        self.emit_loop(j, w, body, allocates, keep);
        for (&b, st) in binds.iter().zip(stacks) {
            let r = self.stack_finish(st, w);
            self.bind(b, LVal::Array(r));
        }
        Ok(())
    }

    /// Emits `for j < n { body }` with what memory planning needs to know
    /// of it (`buffers.rs`: it hoists the body's scratch buffers and
    /// releases each iteration's allocations).
    fn emit_loop(&mut self, j: LVar, n: Operand, body: Vec<Inst>, allocates: bool, keep: Vec<Operand>) {
        self.record_loop(Some(j), &body, allocates, keep);
        self.emit(Inst::for_(j, n, body));
    }

    /// Records a loop's facts for memory planning, in the order loops are
    /// emitted (Note [What lowering tells memory planning] in buffers.rs):
    /// `keep`, what survives an iteration, and the allocation sizes that
    /// the checks passed so far prove non-negative.
    fn record_loop(&mut self, index: Option<LVar>, body: &[Inst], allocates: bool, keep: Vec<Operand>) {
        let mut counts = Vec::new();
        super::buffers::alloc_counts(body, &mut counts);
        let nonneg = counts.into_iter().filter(|&v| self.nonneg(Operand::Var(v))).collect();
        self.loop_facts.push(LoopFacts { index, keep, nonneg, allocates });
    }

    fn reduce_or_scan(
        &mut self,
        binds: &[Var],
        lam: &Lambda,
        neutral: &[Atom],
        arrays: &[Var],
        scan: bool,
        span: Span,
    ) -> R<()> {
        let what = if scan { "scan" } else { "reduce" };
        let k = neutral.len();
        let init = neutral.iter().map(|&a| self.atom(a)).collect::<R<Vec<_>>>()?;
        let vals = arrays.iter().map(|&a| self.var(a)).collect::<R<Vec<_>>>()?;
        let n = self.iterated(&vals, what, span).unwrap_or(Operand::i64(0));
        let accs: Vec<State> = init.into_iter().map(|v| self.state_new("acc", v)).collect();
        let j = self.fresh("j", MTy::I64);
        let mut stacks: Vec<Stack> =
            if scan { binds.iter().map(|&b| self.stack_new(self.ir_type(b))).collect() } else { Vec::new() };
        self.facts.insert(j, n);
        self.depth += 1;
        let (mut body, results) = self.block(|l| {
            let mut args: Vec<LVal> = accs.iter().map(|s| l.state_read(s)).collect();
            args.extend(vals.iter().map(|v| l.element(v, j)));
            let r = l.inline(lam, args)?;
            Ok(l.resolve_dims(r))
        })?;
        self.depth -= 1;
        self.span = span;
        if results.len() != k {
            return Err(format!("{what} lambda result count"));
        }
        let allocates = allocates(&body);
        let mut assigned = assigned_in(&body);
        assigned.insert(j);
        assigned.extend(accs.iter().flat_map(|s| s.scalar.iter().chain(&s.ptr).chain(&s.dims).copied()));
        let mut prefix = Vec::new();
        let mut keep = Vec::new();
        let (tail, ()) = self.body_block(|l| {
            for (st, r) in stacks.iter_mut().zip(&results) {
                l.stack_push(st, r.clone(), j, n, &assigned, &mut prefix, what, span)?;
                if st.lazy {
                    keep.push(Operand::Var(st.ptr));
                }
            }
            let results = results.into_iter().map(|r| l.state_value(r)).collect::<Vec<_>>();
            l.state_assign(&accs, results);
            keep.extend(accs.iter().filter_map(|s| s.ptr.map(Operand::Var)));
            Ok(())
        })?;
        self.out.extend(prefix);
        body.extend(tail);
        self.emit_loop(j, n, body, allocates, keep);
        if scan {
            for (&b, st) in binds.iter().zip(stacks) {
                let r = self.stack_finish(st, n);
                self.bind(b, LVal::Array(r));
            }
        } else {
            let vals = accs.iter().map(|s| self.state_read(s)).collect();
            self.bind_results(binds, vals)?;
        }
        Ok(())
    }

    fn lower_loop(
        &mut self,
        binds: &[Var],
        params: &[Var],
        init: &[Atom],
        form: &LoopForm,
        body: &Body,
        span: Span,
    ) -> R<()> {
        // Loop state the body writes in place is copied where the plan says
        // (Note [Ownership and in-place updates]).
        let Decision::Loop { copy_init, copy_next, .. } = self.decision()? else {
            return Err("a loop's ownership decision is not a loop's".into());
        };
        let mut states = Vec::new();
        let inits: Vec<LVal> = init.iter().map(|&a| self.atom(a)).collect::<R<_>>()?;
        for ((&p, &copy), mut v) in params.iter().zip(&copy_init).zip(inits) {
            if let (LVal::Array(arr), true) = (&v, copy) {
                v = LVal::Array(self.copy_array(arr));
            }
            let name = self.prog.vars.base_name(p).to_string();
            states.push(self.state_new(&name, v));
        }
        let bind_params = |l: &mut Self| {
            for (&p, s) in params.iter().zip(&states) {
                let v = l.state_read(s);
                l.bind(p, v);
            }
        };
        self.depth += 1;
        let mut allocs = false;
        let first_fact = self.loop_facts.len();
        let (cond, test) = match form {
            LoopForm::For { .. } => (Vec::new(), None),
            LoopForm::While { cond } => {
                let (block, test) = self.block(|l| {
                    bind_params(l);
                    let r = l.body(cond)?;
                    match r.as_slice() {
                        [LVal::Scalar(t)] => Ok(*t),
                        _ => Err("a while condition must return one bool".to_string()),
                    }
                })?;
                allocs |= allocates(&block);
                (block, Some(test))
            }
        };
        let index = match form {
            LoopForm::For { index, bound } => {
                let j = self.fresh(self.prog.vars.base_name(*index), MTy::I64);
                let b = self.scalar(*bound)?;
                self.facts.insert(j, b);
                self.bind(*index, LVal::Scalar(j.into()));
                Some((j, b))
            }
            LoopForm::While { .. } => None,
        };
        let (mut block, results) = self.block(|l| {
            bind_params(l);
            let r = l.body(body)?;
            Ok(l.resolve_dims(r))
        })?;
        allocs |= allocates(&block);
        self.depth -= 1;
        self.span = span;
        if results.len() != states.len() {
            return Err("loop body result count".into());
        }
        let (tail, ()) = self.body_block(|l| {
            let values: Vec<LVal> = results.into_iter().map(|r| l.state_value(r)).collect();
            let mut vals = Vec::new();
            for (mut v, &copy) in values.into_iter().zip(&copy_next) {
                if let (LVal::Array(a), true) = (&v, copy) {
                    v = LVal::Array(l.copy_array(a));
                }
                vals.push(v);
            }
            l.state_assign(&states, vals);
            Ok(())
        })?;
        block.extend(tail);
        // A size of the state the body never changes is its initial value in
        // every iteration: say so, so that buffers of that size can be hoisted.
        let mut assigned = assigned_in(&block);
        assigned.extend(assigned_in(&cond));
        let invariant: HashMap<LVar, Operand> = states
            .iter()
            .flat_map(|s| s.dims.iter().copied().zip(s.init_dims.iter().copied()))
            .filter(|(t, x)| !assigned.contains(t) && x.var().is_none_or(|v| !assigned.contains(&v)))
            .collect();
        substitute(&mut block, &invariant);
        let mut cond = cond;
        substitute(&mut cond, &invariant);
        substitute_facts(&mut self.loop_facts[first_fact..], &invariant);
        let test = test.map(|t| subst_operand(t, &invariant));
        let keep: Vec<Operand> = states.iter().filter_map(|s| s.ptr.map(Operand::Var)).collect();
        match (index, test) {
            (Some((j, bound)), _) => self.emit_loop(j, bound, block, allocs, keep),
            (None, Some(test)) => {
                let limit = self.let_("limit", MTy::I64, Rhs::WhileLimit);
                let count = self.fresh("iterations", MTy::I64);
                self.assign(count, Operand::i64(0));
                let ok = self.fresh("ok", MTy::Bool);
                let site = self.site(Code::E0205, span, Message::WhileLimit);
                let mut guarded = vec![
                    Inst::Let(ok, Rhs::Binary(BinOp::Ne, count.into(), limit)),
                    Inst::If { cond: ok.into(), then: Vec::new(), els: vec![Inst::Fail { site, args: vec![limit] }] },
                    Inst::Let(count, Rhs::Binary(BinOp::Add, count.into(), Operand::i64(1))),
                ];
                guarded.extend(block);
                self.record_loop(None, &guarded, allocs, keep);
                self.emit(Inst::While { cond, test, body: guarded });
            }
            (None, None) => unreachable!("a loop is a for or a while"),
        }
        let finals: Vec<LVal> = states.iter().map(|s| self.state_read(s)).collect();
        self.bind_results(binds, finals)
    }

    fn lower_if(&mut self, binds: &[Var], c: Operand, t: &Body, f: &Body) -> R<()> {
        let (then, tv) = self.block(|l| {
            let r = l.body(t)?;
            Ok(l.resolve_dims(r))
        })?;
        let (els, fv) = self.block(|l| {
            let r = l.body(f)?;
            Ok(l.resolve_dims(r))
        })?;
        let mut states = Vec::new();
        for (a, b) in tv.iter().zip(&fv) {
            let proto = match (a, b) {
                (LVal::Scalar(x), _) => LVal::Scalar(Operand::Var(self.fresh("r", self.operand_type(*x)))),
                (LVal::Iota(_), LVal::Iota(_)) => LVal::Iota(Operand::Var(self.fresh_dim("r"))),
                (LVal::Array(x), other) | (other, LVal::Array(x)) => LVal::Array(Arr {
                    ptr: Operand::Var(self.fresh("r", MTy::I64)),
                    // A size both branches agree on needs no variable.
                    dims: (0..x.dims.len())
                        .map(|d| match other {
                            LVal::Array(y) if same(x.dims[d], y.dims[d]) => x.dims[d],
                            _ => Operand::Var(self.fresh_dim("r_d")),
                        })
                        .collect(),
                    elem: x.elem,
                }),
                (LVal::Iota(_), LVal::Scalar(_)) => return Err("if branches of different kinds".into()),
            };
            states.push(proto);
        }
        let (then_tail, ()) = self.block(|l| {
            for (s, v) in states.iter().zip(tv) {
                l.assign_val(s, v);
            }
            Ok(())
        })?;
        let (else_tail, ()) = self.block(|l| {
            for (s, v) in states.iter().zip(fv) {
                l.assign_val(s, v);
            }
            Ok(())
        })?;
        let mut then = then;
        then.extend(then_tail);
        let mut els = els;
        els.extend(else_tail);
        self.emit(Inst::If { cond: c, then, els });
        self.bind_results(binds, states)
    }

    /// Assigns `v` to the variables of `target` (a value whose operands are variables).
    fn assign_val(&mut self, target: &LVal, v: LVal) {
        match (target, v) {
            (LVal::Scalar(Operand::Var(t)), LVal::Scalar(x)) => self.assign(*t, x),
            (LVal::Iota(Operand::Var(t)), LVal::Iota(n)) => self.assign(*t, n),
            (LVal::Array(t), v) => {
                let a = self.materialize(v);
                if let Operand::Var(p) = t.ptr {
                    self.assign(p, a.ptr);
                }
                for (d, x) in t.dims.iter().zip(a.dims) {
                    if let Operand::Var(v) = d {
                        if *d != x {
                            self.assign(*v, x);
                        }
                    }
                }
            }
            _ => unreachable!("assignment to a value of another kind"),
        }
    }

    fn scatter(&mut self, dest: Var, indices: Var, values: Var, lam: Option<&Lambda>, span: Span) -> R<Arr> {
        let what = if lam.is_some() { "hist" } else { "scatter" };
        let d = self.array(dest)?;
        let is = self.var(indices)?;
        let vs = self.var(values)?;
        let (ni, nv) = (self.outer(&is), self.outer(&vs));
        self.check_eq(ni, nv, span, Message::ScatterLengths { what: what.into() });
        let vrows: Vec<Operand> = match &vs {
            LVal::Array(a) => a.dims[1..].to_vec(),
            _ => Vec::new(),
        };
        let template =
            format!("size mismatch: {what} values have rows of shape {{}} but the destination's rows have shape {{}}");
        self.same_shape(&vrows, &d.dims[1..], &template, span);
        let target = self.write_target(d)?;
        let n = target.dims[0];
        let rl = self.product(&target.dims[1..]);
        let k = self.fresh("k", MTy::I64);
        let elem = target.elem;
        self.depth += 1;
        let (body, ()) = self.block(|l| {
            let i = match l.element(&is, k) {
                LVal::Scalar(i) => i,
                _ => return Err("scatter indices must be scalars".to_string()),
            };
            let inr = l.in_range(i, n);
            let (write, ()) = l.block(|l| {
                let new = l.element(&vs, k);
                let new = match lam {
                    None => new,
                    Some(lam) => {
                        let cur = if target.dims.len() == 1 {
                            LVal::Scalar(l.let_("cur", elem, Rhs::Load { elem, base: target.ptr, index: i }))
                        } else {
                            let at = l.mul(i, rl);
                            let ptr = l.let_("cur", MTy::I64, Rhs::Offset { elem, base: target.ptr, index: at });
                            LVal::Array(Arr {
                                ptr,
                                dims: target.dims[1..].to_vec(),
                                elem,
                            })
                        };
                        let mut r = l.inline(lam, vec![cur, new])?;
                        r.pop().ok_or("a hist operator returns one value")?
                    }
                };
                match new {
                    LVal::Scalar(x) => l.emit(Inst::Store { elem, base: target.ptr, index: i, value: x }),
                    v => {
                        let v = l.materialize(v);
                        let at = l.mul(i, rl);
                        let dst = l.let_("dst", MTy::I64, Rhs::Offset { elem, base: target.ptr, index: at });
                        l.emit(Inst::Copy { elem, dst, src: v.ptr, count: rl });
                    }
                }
                Ok(())
            })?;
            l.emit(Inst::If { cond: inr, then: write, els: Vec::new() });
            Ok(())
        })?;
        self.depth -= 1;
        self.span = span;
        let allocs = allocates(&body);
        self.emit_loop(k, ni, body, allocs, Vec::new());
        Ok(target)
    }

    // ---- loop state and result stacks ------------------------------------------

    /// Variables holding a value across iterations, initialised to `v`.
    fn state_new(&mut self, name: &str, v: LVal) -> State {
        match v {
            LVal::Scalar(x) => {
                let t = self.fresh(name, self.operand_type(x));
                self.assign(t, x);
                State {
                    scalar: Some(t),
                    ptr: None,
                    dims: Vec::new(),
                    init_dims: Vec::new(),
                    elem: self.operand_type(x),
                }
            }
            v => {
                let a = self.materialize(v);
                let ptr = self.fresh(name, MTy::I64);
                self.assign(ptr, a.ptr);
                let dims = a
                    .dims
                    .iter()
                    .enumerate()
                    .map(|(d, &x)| {
                        let dv = self.fresh_dim(&format!("{name}_d{d}"));
                        self.assign(dv, x);
                        dv
                    })
                    .collect();
                State { scalar: None, ptr: Some(ptr), dims, init_dims: a.dims.clone(), elem: a.elem }
            }
        }
    }

    fn state_read(&self, s: &State) -> LVal {
        match s.scalar {
            Some(v) => LVal::Scalar(v.into()),
            None => LVal::Array(Arr {
                ptr: s.ptr.expect("array state").into(),
                dims: s.dims.iter().map(|&d| d.into()).collect(),
                elem: s.elem,
            }),
        }
    }

    /// A value ready to be assigned to state: iotas materialized.
    fn state_value(&mut self, v: LVal) -> LVal {
        match v {
            LVal::Iota(_) => LVal::Array(self.materialize(v)),
            v => v,
        }
    }

    /// Assigns all states at once: the new values may read the old ones.
    fn state_assign(&mut self, states: &[State], vals: Vec<LVal>) {
        let mut temps: Vec<(LVar, Operand)> = Vec::new();
        for (s, v) in states.iter().zip(vals) {
            match (s.scalar, v) {
                (Some(t), LVal::Scalar(x)) => temps.push((t, x)),
                (None, LVal::Array(a)) => {
                    temps.push((s.ptr.expect("array state"), a.ptr));
                    temps.extend(s.dims.iter().copied().zip(a.dims));
                }
                _ => unreachable!("state of another kind"),
            }
        }
        // Only a new value that reads another state variable needs a
        // temporary (the assignments are simultaneous).
        let targets: HashSet<LVar> = temps.iter().map(|(t, _)| *t).collect();
        let staged: Vec<(LVar, Operand)> = temps
            .into_iter()
            // A size that stays the same is not reassigned: it stays loop-invariant.
            .filter(|&(t, x)| x != Operand::Var(t))
            .map(|(t, x)| match x {
                Operand::Var(v) if targets.contains(&v) => {
                    let ty = self.vars[t.0 as usize].1;
                    let tmp = self.fresh("next", ty);
                    self.assign(tmp, x);
                    (t, tmp.into())
                }
                c => (t, c),
            })
            .collect();
        for (t, x) in staged {
            self.assign(t, x);
        }
    }

    fn stack_new(&mut self, ty: IrType) -> Stack {
        let elem = MTy::of(ty.elem);
        let ptr = self.fresh("out", MTy::I64);
        let row_dims = (1..ty.rank).map(|d| self.fresh_dim(&format!("out_d{d}"))).collect();
        Stack { ptr, row_dims, row_len: None, elem, lazy: false, into: None }
    }

    /// Emits (into the current block, the loop body) the store of iteration
    /// `j`'s result `v`, and into `prefix` the allocation of the result: before
    /// the loop when the row shape is known there, else on the first iteration.
    #[allow(clippy::too_many_arguments)]
    fn stack_push(
        &mut self,
        st: &mut Stack,
        v: LVal,
        j: LVar,
        n: Operand,
        assigned: &HashSet<LVar>,
        prefix: &mut Vec<Inst>,
        what: &str,
        span: Span,
    ) -> R<()> {
        let elem = st.elem;
        match v {
            LVal::Scalar(x) => {
                match st.into {
                    Some(p) if p != Operand::Var(st.ptr) => self.emit_into(prefix, |l| l.assign(st.ptr, p)),
                    Some(_) => {}
                    None => self.emit_into(prefix, |l| {
                        let p = l.alloc("out", elem, n);
                        l.assign(st.ptr, p);
                    }),
                }
                self.emit(Inst::Store { elem, base: st.ptr.into(), index: j.into(), value: x });
            }
            v => {
                let a = self.materialize(v);
                let invariant = a.dims.iter().all(|d| match d {
                    Operand::Var(x) => !assigned.contains(x),
                    Operand::Const(_) => true,
                });
                let rl = self.product(&a.dims);
                if invariant {
                    self.emit_into(prefix, |l| {
                        for (&d, &x) in st.row_dims.iter().zip(&a.dims) {
                            l.assign(d, x);
                        }
                        // `rl` is computed in the loop body: recompute it here.
                        let rl0 = l.product(&a.dims);
                        let total = l.rows_total(n, rl0, span);
                        let p = l.alloc("out", elem, total);
                        l.assign(st.ptr, p);
                    });
                } else {
                    st.lazy = true;
                    let row_len = self.fresh("row_len", MTy::I64);
                    st.row_len = Some(row_len);
                    self.emit_into(prefix, |l| {
                        for &d in &st.row_dims {
                            l.assign(d, Operand::i64(0));
                        }
                        l.assign(row_len, Operand::i64(0));
                        let p = l.alloc("out", elem, Operand::i64(0));
                        l.assign(st.ptr, p);
                    });
                    let first = self.bin("first", BinOp::Eq, j.into(), Operand::i64(0));
                    let (init, ()) = self.block(|l| {
                        for (&d, &x) in st.row_dims.iter().zip(&a.dims) {
                            l.assign(d, x);
                        }
                        l.assign(row_len, rl);
                        let total = l.rows_total(n, rl, span);
                        let p = l.alloc("out", elem, total);
                        l.assign(st.ptr, p);
                        Ok(())
                    })?;
                    let (check, ()) = self.block(|l| {
                        let dims: Vec<Operand> = st.row_dims.iter().map(|&d| d.into()).collect();
                        let template = format!("size mismatch: {what} results have different shapes {{}} and {{}}");
                        l.same_shape(&dims, &a.dims, &template, span);
                        Ok(())
                    })?;
                    self.emit(Inst::If { cond: first, then: init, els: check });
                }
                let rl = st.row_len.map_or(rl, Operand::Var);
                let at = self.mul(j.into(), rl);
                let dst = self.let_("dst", MTy::I64, Rhs::Offset { elem, base: st.ptr.into(), index: at });
                self.emit(Inst::Copy { elem, dst, src: a.ptr, count: rl });
            }
        }
        Ok(())
    }

    /// The stacked result. With no rows, its inner dimensions are 0, as in
    /// the interpreter (which never sees a row of an empty result).
    fn stack_finish(&mut self, st: Stack, n: Operand) -> Arr {
        let mut dims = vec![n];
        if !st.row_dims.is_empty() && !matches!(self.resolve(n), Operand::Const(Const::I64(k)) if k > 0) {
            // No rows: the inner dimensions are 0 (a fresh variable each, so
            // each names one value for the loop optimiser).
            let nonempty = self.bin("nonempty", BinOp::Gt, n, Operand::i64(0));
            for &d in &st.row_dims {
                let name = self.vars[d.0 as usize].0.clone();
                let e = self.fresh_dim(&name);
                self.emit(Inst::Let(e, Rhs::Select(nonempty, d.into(), Operand::i64(0))));
                dims.push(e.into());
            }
        } else {
            dims.extend(st.row_dims.iter().map(|&d| Operand::Var(d)));
        }
        Arr { ptr: st.ptr.into(), dims, elem: st.elem }
    }
}

/// Loop-carried variables: a scalar, or an array's pointer and dimensions.
struct State {
    scalar: Option<LVar>,
    ptr: Option<LVar>,
    dims: Vec<LVar>,
    /// The initial dimensions (what `dims` hold before the first iteration).
    init_dims: Vec<Operand>,
    elem: MTy,
}

/// A `map`/`scan` result being filled row by row.
struct Stack {
    ptr: LVar,
    row_dims: Vec<LVar>,
    /// The elements per row of a lazily allocated result, set with it on
    /// the first iteration: later rows are stored at `j * row_len` (the
    /// same as the row's own size, which is checked equal), so the store
    /// reads nothing the iteration computes (Note [The first iteration] in
    /// `loops/parallel.rs`).
    row_len: Option<LVar>,
    elem: MTy,
    /// Allocated on the first iteration (the row shape is only known there).
    lazy: bool,
    /// The buffer of an input the result overwrites (Note [Maps in place]).
    into: Option<Operand>,
}

fn same(a: Operand, b: Operand) -> bool {
    match (a, b) {
        (Operand::Var(x), Operand::Var(y)) => x == y,
        (Operand::Const(Const::I64(x)), Operand::Const(Const::I64(y))) => x == y,
        _ => false,
    }
}

/// The pointers of the arrays among `values`, by variable (`None`: a
/// constant pointer).
fn subst_operand(o: Operand, map: &HashMap<LVar, Operand>) -> Operand {
    match o {
        Operand::Var(v) => map.get(&v).copied().unwrap_or(o),
        c => c,
    }
}

/// [`substitute`] in the facts recorded for loops (`keep`, `nonneg`): a
/// variable replaced by another holds the same value, so the same facts.
fn substitute_facts(facts: &mut [LoopFacts], map: &HashMap<LVar, Operand>) {
    if map.is_empty() {
        return;
    }
    for fs in facts {
        for k in &mut fs.keep {
            *k = subst_operand(*k, map);
        }
        fs.nonneg = fs.nonneg.iter().filter_map(|v| subst_operand(Operand::Var(*v), map).var()).collect();
    }
}

/// Replaces the variables of `map` by their operands wherever `insts` read them.
fn substitute(insts: &mut [Inst], map: &HashMap<LVar, Operand>) {
    if map.is_empty() {
        return;
    }
    for i in insts {
        for o in i.operands_mut() {
            *o = subst_operand(*o, map);
        }
        for b in i.blocks_mut() {
            substitute(b, map);
        }
    }
}
