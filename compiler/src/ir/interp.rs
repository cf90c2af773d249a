//! The reference interpreter for the typed array IR.
//!
//! Input: a [`Program`], the name of one of its functions and argument
//! [`Val`]s. Output: the function's results and the [`Cost`] of running it,
//! or a [`RuntimeError`] (stable code, message naming the offending values,
//! span of the failing statement).
//!
//! This is the ground truth that the AD passes, the optimiser and the JIT are
//! tested against, so it implements the IR semantics directly and simply:
//! - Variables are global SSA indices, so the environment is one
//!   `Vec<Option<Val>>` indexed by `Var.0`. A lambda called repeatedly just
//!   overwrites its parameter and body slots; lambdas read enclosing
//!   variables straight from the same vector. Nothing is ever re-entered
//!   while active (the IR is first order and fully inlined), so overwriting
//!   is safe.
//! - Arrays are `Rc<Array>`: reading a variable is a scalar copy or a
//!   reference-count bump; only statements that create arrays copy data.
//! - The IR is assumed verified (`ir::verify`). Ill-typed IR still does not
//!   panic: it yields an `E0900` internal error.
//!
//! Invariant: every array this module creates satisfies the runtime's
//! invariants (rank ≥ 1, row-major, `data.len() == product(shape)`), and
//! its element type is the one the binding variable's IR type names.

use crate::diagnostic::{Code, Span};
use crate::ir::{Atom, BinOp, Body, CheckKind, Const, Expr, Func, IrType, Lambda, LoopForm, Program, UnOp, Var};
use crate::types::ScalarType;
use slope_runtime::{Array, ArrayData, ElemType, Scalar, Value};
use std::rc::Rc;

/// A run-time value: a scalar or a shared, immutable array.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    F64(f64),
    F32(f32),
    I64(i64),
    Bool(bool),
    Arr(Rc<Array>),
}

impl Val {
    pub fn to_value(&self) -> Value {
        match self {
            Val::Arr(a) => Value::Array(a.clone()),
            _ => Value::Scalar(self.scalar().expect("non-array values are scalars")),
        }
    }

    /// Scalars and arrays only: tuples and records are flattened before they
    /// reach the IR, so they have no `Val`.
    pub fn from_value(v: &Value) -> Option<Val> {
        match v {
            Value::Scalar(s) => Some(Val::from_scalar(*s)),
            Value::Array(a) => Some(Val::Arr(a.clone())),
            Value::Tuple(_) | Value::Record(_) => None,
        }
    }

    fn from_scalar(s: Scalar) -> Val {
        match s {
            Scalar::F64(x) => Val::F64(x),
            Scalar::F32(x) => Val::F32(x),
            Scalar::I64(x) => Val::I64(x),
            Scalar::Bool(x) => Val::Bool(x),
        }
    }

    fn scalar(&self) -> Option<Scalar> {
        Some(match *self {
            Val::F64(x) => Scalar::F64(x),
            Val::F32(x) => Scalar::F32(x),
            Val::I64(x) => Scalar::I64(x),
            Val::Bool(x) => Scalar::Bool(x),
            Val::Arr(_) => return None,
        })
    }

    fn elem_type(&self) -> ElemType {
        match self {
            Val::F64(_) => ElemType::F64,
            Val::F32(_) => ElemType::F32,
            Val::I64(_) => ElemType::I64,
            Val::Bool(_) => ElemType::Bool,
            Val::Arr(a) => a.elem_type(),
        }
    }

    fn rank(&self) -> usize {
        match self {
            Val::Arr(a) => a.rank(),
            _ => 0,
        }
    }

    /// Written as in the IR printer: `f64`, `[][]i64`.
    fn type_name(&self) -> String {
        format!("{}{}", "[]".repeat(self.rank()), self.elem_type().name())
    }

    /// The value for messages: the scalar itself, or the array's type and shape.
    fn describe(&self) -> String {
        match self {
            Val::Arr(a) => format!("{} array of shape {:?}", a.elem_type(), a.shape),
            _ => self.scalar().expect("scalar").to_string(),
        }
    }
}

pub use slope_runtime::failure::RuntimeError;

fn err<T>(code: Code, span: Span, message: impl Into<String>) -> Result<T, RuntimeError> {
    Err(RuntimeError { code, message: message.into(), span })
}

/// Ill-formed IR that `ir::verify` should have rejected: a bug in Slope.
fn ice<T>(span: Span, message: impl AsRef<str>) -> Result<T, RuntimeError> {
    err(Code::E0900, span, format!("internal compiler error: {}", message.as_ref()))
}

/// Operation counts: the cost model used to check the cheap-gradient principle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Unary, binary, conversion and select operations evaluated.
    pub scalar_ops: u64,
    /// Scalar elements of every array a statement creates.
    pub elements_written: u64,
    /// `Index` and `Slice` statements evaluated.
    pub indexings: u64,
}

impl Cost {
    pub fn total(&self) -> u64 {
        self.scalar_ops + self.elements_written + self.indexings
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    /// A `while` loop running more iterations than this fails with E0205
    /// (a diverging loop becomes an error instead of a hang).
    pub while_limit: u64,
    /// Stop with E0208 when the runtime's interrupt flag is set (checked at
    /// every loop iteration and lambda call), as native code compiled with
    /// `poll_interrupt` does. Off by default: the flag is process-wide.
    pub poll_interrupt: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options { while_limit: 1_000_000_000, poll_interrupt: false }
    }
}

/// Runs `func` of `program` on `args`; returns its results and what it cost.
pub fn run(program: &Program, func: &str, args: Vec<Val>, options: &Options) -> Result<(Vec<Val>, Cost), RuntimeError> {
    let Some(f) = program.func(func) else {
        return err(Code::E0301, Span::default(), format!("no function named `{func}`"));
    };
    check_args(program, f, &args)?;
    let mut interp = Interp { program, env: vec![None; program.vars.len()], cost: Cost::default(), options };
    for (&p, a) in f.params.iter().zip(args) {
        interp.set(p, a);
    }
    let mut out = Vec::with_capacity(f.body.result.len());
    interp.body(&f.body, &mut out, f.span)?;
    Ok((out, interp.cost))
}

fn check_args(program: &Program, f: &Func, args: &[Val]) -> Result<(), RuntimeError> {
    if args.len() != f.params.len() {
        return err(
            Code::E0302,
            f.span,
            format!("`{}` takes {} arguments but was given {}", f.name, f.params.len(), args.len()),
        );
    }
    for (i, (&p, a)) in f.params.iter().zip(args).enumerate() {
        let want = program.vars.ty(p);
        if elem_type(want.elem) != a.elem_type() || want.rank as usize != a.rank() {
            return err(
                Code::E0302,
                f.span,
                format!(
                    "argument {} of `{}` (`{}`) must be {want}, but the value is {}",
                    i + 1,
                    f.name,
                    program.vars.base_name(p),
                    a.type_name()
                ),
            );
        }
    }
    Ok(())
}

fn elem_type(t: ScalarType) -> ElemType {
    match t {
        ScalarType::F64 => ElemType::F64,
        ScalarType::F32 => ElemType::F32,
        ScalarType::I64 => ElemType::I64,
        ScalarType::Bool => ElemType::Bool,
    }
}

/// Applies `$body` to the vector inside any `ArrayData`, rebuilding the same variant.
macro_rules! map_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            ArrayData::F64($v) => ArrayData::F64($body),
            ArrayData::F32($v) => ArrayData::F32($body),
            ArrayData::I64($v) => ArrayData::I64($body),
            ArrayData::Bool($v) => ArrayData::Bool($body),
        }
    };
}

/// `len` elements of `data` from flat index `start`.
fn data_range(data: &ArrayData, start: usize, len: usize) -> ArrayData {
    map_data!(data, v => v[start..start + len].to_vec())
}

/// Room for `more` elements after those `data` holds, or E0207 — as compiled
/// code reports an allocation the runtime refuses. Every allocation whose size
/// comes from the program's values reserves here first, so that an
/// impossible request is a diagnostic, never an abort in the allocator.
fn reserve(data: &mut ArrayData, more: usize, span: Span) -> Result<(), RuntimeError> {
    let total = data.len().checked_add(more).filter(|&t| t as u64 <= slope_runtime::native::MAX_ELEMENTS);
    let ok = total.is_some()
        && match data {
            ArrayData::F64(v) => v.try_reserve_exact(more).is_ok(),
            ArrayData::F32(v) => v.try_reserve_exact(more).is_ok(),
            ArrayData::I64(v) => v.try_reserve_exact(more).is_ok(),
            ArrayData::Bool(v) => v.try_reserve_exact(more).is_ok(),
        };
    match total {
        Some(_) if ok => Ok(()),
        Some(t) => err(Code::E0207, span, format!("cannot allocate an array of {t} elements")),
        None => err(Code::E0207, span, "cannot allocate an array of more than 2^40 elements"),
    }
}

/// `n` copies of `data` one after another, allocated fallibly.
fn repeat_data(data: &ArrayData, n: usize, span: Span) -> Result<ArrayData, RuntimeError> {
    let total = data.len().checked_mul(n).unwrap_or(usize::MAX);
    let mut out = map_data!(data, _v => Vec::new());
    reserve(&mut out, total, span)?;
    for _ in 0..if data.len() == 0 { 0 } else { n } {
        extend_data(&mut out, data);
    }
    Ok(out)
}

/// Appends `src` to `dst`; false when their element types differ.
fn extend_data(dst: &mut ArrayData, src: &ArrayData) -> bool {
    match (dst, src) {
        (ArrayData::F64(d), ArrayData::F64(s)) => d.extend_from_slice(s),
        (ArrayData::F32(d), ArrayData::F32(s)) => d.extend_from_slice(s),
        (ArrayData::I64(d), ArrayData::I64(s)) => d.extend_from_slice(s),
        (ArrayData::Bool(d), ArrayData::Bool(s)) => d.extend_from_slice(s),
        _ => return false,
    }
    true
}

/// Overwrites `dst[at..at + len(src)]`; false when element types differ.
fn write_data(dst: &mut ArrayData, at: usize, src: &ArrayData) -> bool {
    match (dst, src) {
        (ArrayData::F64(d), ArrayData::F64(s)) => d[at..at + s.len()].copy_from_slice(s),
        (ArrayData::F32(d), ArrayData::F32(s)) => d[at..at + s.len()].copy_from_slice(s),
        (ArrayData::I64(d), ArrayData::I64(s)) => d[at..at + s.len()].copy_from_slice(s),
        (ArrayData::Bool(d), ArrayData::Bool(s)) => d[at..at + s.len()].copy_from_slice(s),
        _ => return false,
    }
    true
}

/// Overwrites `dst[at]`; false when element types differ.
fn write_scalar(dst: &mut ArrayData, at: usize, v: &Val) -> bool {
    match (dst, v) {
        (ArrayData::F64(d), Val::F64(x)) => d[at] = *x,
        (ArrayData::F32(d), Val::F32(x)) => d[at] = *x,
        (ArrayData::I64(d), Val::I64(x)) => d[at] = *x,
        (ArrayData::Bool(d), Val::Bool(x)) => d[at] = *x,
        _ => return false,
    }
    true
}

/// Appends a scalar; false when its type differs from the array's.
#[inline(always)]
fn push_scalar(dst: &mut ArrayData, v: &Val) -> bool {
    match (dst, v) {
        (ArrayData::F64(d), Val::F64(x)) => d.push(*x),
        (ArrayData::F32(d), Val::F32(x)) => d.push(*x),
        (ArrayData::I64(d), Val::I64(x)) => d.push(*x),
        (ArrayData::Bool(d), Val::Bool(x)) => d.push(*x),
        _ => return false,
    }
    true
}

#[inline(always)]
fn scalar_at(data: &ArrayData, i: usize) -> Val {
    match data {
        ArrayData::F64(v) => Val::F64(v[i]),
        ArrayData::F32(v) => Val::F32(v[i]),
        ArrayData::I64(v) => Val::I64(v[i]),
        ArrayData::Bool(v) => Val::Bool(v[i]),
    }
}

/// Number of scalars in one outer row of an array of this shape.
fn a_shape_tail(shape: &[usize], skip: usize) -> Vec<usize> {
    shape[skip..].to_vec()
}

fn row_len(shape: &[usize]) -> usize {
    shape[1..].iter().product()
}

/// Row `i` of `a`: a scalar for rank 1, else a copy of the contiguous block.
/// Not counted as `elements_written`: a compiled implementation passes a view.
fn row(a: &Array, i: usize) -> Val {
    if a.rank() == 1 {
        scalar_at(&a.data, i)
    } else {
        let n = row_len(&a.shape);
        Val::Arr(Rc::new(Array::new(a.shape[1..].to_vec(), data_range(&a.data, i * n, n))))
    }
}

/// Builds one result array of a `map`/`scan` from its rows, checking that they
/// all have the same shape and the element type of the bound variable.
struct Stacker {
    data: ArrayData,
    /// Shape of the rows once the first has been pushed.
    row_shape: Option<Vec<usize>>,
    rows: usize,
    /// How many rows will come.
    expected: usize,
    /// The IR type of the whole result (used for the empty case).
    ty: IrType,
}

impl Stacker {
    /// A stacker for `rows` rows (room reserved for scalar rows now, for
    /// array rows when the first shows their size).
    fn new(ty: IrType, rows: usize, span: Span) -> Result<Stacker, RuntimeError> {
        let mut data = ArrayData::with_capacity(elem_type(ty.elem), 0);
        if ty.rank == 1 {
            reserve(&mut data, rows, span)?;
        }
        Ok(Stacker { data, row_shape: None, rows: 0, expected: rows, ty })
    }

    fn push(&mut self, v: &Val, what: &str, span: Span) -> Result<(), RuntimeError> {
        let ok = match v {
            Val::Arr(a) => {
                match &self.row_shape {
                    None => {
                        self.row_shape = Some(a.shape.clone());
                        reserve(&mut self.data, a.len().saturating_mul(self.expected), span)?;
                    }
                    Some(s) if *s != a.shape => {
                        return err(
                            Code::E0202,
                            span,
                            format!("size mismatch: {what} results have different shapes {s:?} and {:?}", a.shape),
                        )
                    }
                    Some(_) => {}
                }
                extend_data(&mut self.data, &a.data)
            }
            _ => {
                if self.row_shape.is_none() {
                    self.row_shape = Some(Vec::new());
                }
                push_scalar(&mut self.data, v)
            }
        };
        if !ok || self.row_shape.as_ref().map_or(0, |s| s.len()) + 1 != self.ty.rank as usize {
            return ice(span, format!("{what} result {} does not fit a result of type {}", v.type_name(), self.ty));
        }
        self.rows += 1;
        Ok(())
    }

    fn finish(self) -> Array {
        let mut shape = vec![self.rows];
        match self.row_shape {
            Some(s) => shape.extend(s),
            // No rows: the inner dimensions are unknown, so they are zero.
            None => shape.extend(std::iter::repeat_n(0, self.ty.rank.saturating_sub(1) as usize)),
        }
        Array::new(shape, self.data)
    }
}

/// The interpreter state. The tiny accessors below are `#[inline(always)]`:
/// tests run at opt-level 1, which otherwise leaves them as calls on the
/// hottest path (every operand read and every binding).
struct Interp<'p> {
    program: &'p Program,
    env: Vec<Option<Val>>,
    cost: Cost,
    options: &'p Options,
}

impl Interp<'_> {
    #[inline(always)]
    fn set(&mut self, v: Var, val: Val) {
        self.env[v.0 as usize] = Some(val);
    }

    #[inline(always)]
    fn get(&self, v: Var, span: Span) -> Result<&Val, RuntimeError> {
        match &self.env[v.0 as usize] {
            Some(x) => Ok(x),
            None => ice(span, format!("variable `{}` read before it is bound", self.program.vars.display(v))),
        }
    }

    #[inline(always)]
    fn atom(&self, a: Atom, span: Span) -> Result<Val, RuntimeError> {
        match a {
            Atom::Var(v) => self.get(v, span).cloned(),
            Atom::Const(c) => Ok(match c {
                Const::F64(x) => Val::F64(x),
                Const::F32(x) => Val::F32(x),
                Const::I64(x) => Val::I64(x),
                Const::Bool(x) => Val::Bool(x),
            }),
        }
    }

    fn i64_atom(&self, a: Atom, span: Span) -> Result<i64, RuntimeError> {
        match self.atom(a, span)? {
            Val::I64(x) => Ok(x),
            v => ice(span, format!("expected an i64, found {}", v.type_name())),
        }
    }

    fn bool_atom(&self, a: Atom, span: Span) -> Result<bool, RuntimeError> {
        match self.atom(a, span)? {
            Val::Bool(x) => Ok(x),
            v => ice(span, format!("expected a bool, found {}", v.type_name())),
        }
    }

    fn array(&self, v: Var, span: Span) -> Result<Rc<Array>, RuntimeError> {
        match self.get(v, span)? {
            Val::Arr(a) => Ok(a.clone()),
            x => ice(span, format!("`{}` should be an array but is {}", self.program.vars.display(v), x.type_name())),
        }
    }

    /// A size operand (count, width): must be ≥ 0.
    fn size_atom(&self, a: Atom, span: Span) -> Result<usize, RuntimeError> {
        let n = self.i64_atom(a, span)?;
        if n < 0 {
            return err(Code::E0204, span, format!("negative size {n}"));
        }
        Ok(n as usize)
    }

    /// A size that is also the length of an array about to be allocated:
    /// beyond the runtime's limit it is E0207, as in compiled code.
    fn alloc_size(&self, a: Atom, span: Span) -> Result<usize, RuntimeError> {
        let n = self.size_atom(a, span)?;
        if n as u64 > slope_runtime::native::MAX_ELEMENTS {
            return err(Code::E0207, span, format!("cannot allocate an array of {n} elements"));
        }
        Ok(n)
    }

    /// A new array (counted in `elements_written`).
    fn new_array(&mut self, shape: Vec<usize>, data: ArrayData) -> Val {
        self.cost.elements_written += data.len() as u64;
        Val::Arr(Rc::new(Array::new(shape, data)))
    }

    /// Runs `body` and appends its results to `out`.
    fn body(&mut self, body: &Body, out: &mut Vec<Val>, span: Span) -> Result<(), RuntimeError> {
        for stmt in &body.stmts {
            self.stmt(&stmt.binds, &stmt.expr, stmt.span)?;
        }
        for &a in &body.result {
            out.push(self.atom(a, span)?);
        }
        Ok(())
    }

    /// Like [`Self::body`], but results bound inside the body are moved out of
    /// their slots rather than shared, so that a buffer threaded through a loop
    /// or a branch stays uniquely owned and `UpdateAt` can work in place.
    /// `dead` lists (statement, variable) pairs, by statement: the variable
    /// is dropped once that statement has run (`ir::alias::last_uses`).
    fn body_moving(
        &mut self,
        body: &Body,
        dead: &[(usize, Var)],
        out: &mut Vec<Val>,
        span: Span,
    ) -> Result<(), RuntimeError> {
        let mut dead = dead.iter().peekable();
        for (k, stmt) in body.stmts.iter().enumerate() {
            self.stmt(&stmt.binds, &stmt.expr, stmt.span)?;
            while let Some((_, v)) = dead.next_if(|(at, _)| *at == k) {
                self.env[v.0 as usize] = None;
            }
        }
        for (k, &a) in body.result.iter().enumerate() {
            // A variable returned twice (`(r2, r2)`) is moved at its last
            // position and shared before that.
            let local = match a {
                Atom::Var(v) => body.stmts.iter().any(|s| s.binds.contains(&v)) && !body.result[k + 1..].contains(&a),
                Atom::Const(_) => false,
            };
            match (local, a) {
                (true, Atom::Var(v)) if matches!(self.env[v.0 as usize], Some(Val::Arr(_))) => {
                    let moved = self.env[v.0 as usize].take();
                    out.push(moved.expect("checked above"));
                }
                _ => out.push(self.atom(a, span)?),
            }
        }
        Ok(())
    }

    /// E0208 once an interrupt was requested (the REPL's Ctrl-C) when polling
    /// is on, as native code compiled to poll reports it.
    fn poll_interrupt(&self, span: Span) -> Result<(), RuntimeError> {
        if self.options.poll_interrupt && slope_runtime::native::interrupted() {
            return err(Code::E0208, span, "interrupted");
        }
        Ok(())
    }

    /// Binds `params` to `args` then runs the lambda body into `out` (cleared first).
    fn call(
        &mut self,
        lam: &Lambda,
        args: impl IntoIterator<Item = Val>,
        out: &mut Vec<Val>,
        span: Span,
    ) -> Result<(), RuntimeError> {
        let mut n = 0;
        for (&p, a) in lam.params.iter().zip(args) {
            self.set(p, a);
            n += 1;
        }
        if n != lam.params.len() {
            return ice(span, format!("lambda with {} parameters applied to {n} values", lam.params.len()));
        }
        // Every iteration of a combinator calls a lambda: one poll covers them.
        self.poll_interrupt(span)?;
        out.clear();
        self.body(&lam.body, out, span)
    }

    fn bind_all(&mut self, binds: &[Var], vals: Vec<Val>, span: Span) -> Result<(), RuntimeError> {
        if binds.len() != vals.len() {
            return ice(span, format!("statement binds {} variables but produces {} values", binds.len(), vals.len()));
        }
        for (&b, v) in binds.iter().zip(vals) {
            self.set(b, v);
        }
        Ok(())
    }

    fn bind_one(&mut self, binds: &[Var], val: Val, span: Span) -> Result<(), RuntimeError> {
        match binds {
            [b] => {
                self.set(*b, val);
                Ok(())
            }
            _ => ice(span, format!("statement binds {} variables but produces one value", binds.len())),
        }
    }

    fn stmt(&mut self, binds: &[Var], expr: &Expr, span: Span) -> Result<(), RuntimeError> {
        let v = match expr {
            Expr::Atom(a) => self.atom(*a, span)?,
            Expr::Unary(op, a) => {
                self.cost.scalar_ops += 1;
                let x = self.atom(*a, span)?;
                unary(*op, x, span)?
            }
            Expr::Binary(op, a, b) => {
                self.cost.scalar_ops += 1;
                let x = self.atom(*a, span)?;
                let y = self.atom(*b, span)?;
                binary(*op, x, y, span)?
            }
            Expr::Convert(t, a) => {
                self.cost.scalar_ops += 1;
                let x = self.atom(*a, span)?;
                convert(*t, x, span)?
            }
            Expr::Select(c, a, b) => {
                self.cost.scalar_ops += 1;
                let chosen = if self.bool_atom(*c, span)? { a } else { b };
                self.atom(*chosen, span)?
            }
            Expr::If { cond, then_body, else_body } => {
                let body = if self.bool_atom(*cond, span)? { then_body } else { else_body };
                let mut out = Vec::with_capacity(binds.len());
                self.body_moving(body, &[], &mut out, span)?;
                return self.bind_all(binds, out, span);
            }
            Expr::Index { array, indices } => self.index(*array, indices, span)?,
            Expr::Opaque(a) => self.atom(*a, span)?,
            Expr::UpdateAt { array, indices, value, accumulate } => {
                self.update_at(*array, indices, *value, *accumulate, span)?
            }
            Expr::Slice { array, start, end } => {
                self.cost.indexings += 1;
                let a = self.array(*array, span)?;
                let (s, e) = (self.i64_atom(*start, span)?, self.i64_atom(*end, span)?);
                let n = a.len();
                if s < 0 || s > e || e as u64 > n as u64 {
                    return err(Code::E0201, span, format!("slice {s}:{e} out of bounds for dimension 0 of size {n}"));
                }
                let (s, e) = (s as usize, e as usize);
                let rl = row_len(&a.shape);
                let mut shape = a.shape.clone();
                shape[0] = e - s;
                self.new_array(shape, data_range(&a.data, s * rl, (e - s) * rl))
            }
            Expr::Shape { array, dim } => {
                let a = self.array(*array, span)?;
                match a.shape.get(*dim as usize) {
                    Some(&n) => Val::I64(n as i64),
                    None => return ice(span, format!("dimension {dim} of a rank-{} array", a.rank())),
                }
            }
            Expr::Iota(n) => {
                let n = self.alloc_size(*n, span)?;
                let mut data = ArrayData::I64(Vec::new());
                reserve(&mut data, n, span)?;
                if let ArrayData::I64(v) = &mut data {
                    v.extend(0..n as i64);
                }
                self.new_array(vec![n], data)
            }
            Expr::Replicate { count, value } => {
                let n = self.alloc_size(*count, span)?;
                match self.atom(*value, span)? {
                    Val::Arr(a) => {
                        let mut shape = vec![n];
                        shape.extend_from_slice(&a.shape);
                        let data = repeat_data(&a.data, n, span)?;
                        self.new_array(shape, data)
                    }
                    x => {
                        let mut data = ArrayData::with_capacity(x.elem_type(), 0);
                        reserve(&mut data, n, span)?;
                        match (&mut data, x) {
                            (ArrayData::F64(v), Val::F64(x)) => v.resize(n, x),
                            (ArrayData::F32(v), Val::F32(x)) => v.resize(n, x),
                            (ArrayData::I64(v), Val::I64(x)) => v.resize(n, x),
                            (ArrayData::Bool(v), Val::Bool(x)) => v.resize(n, x),
                            _ => unreachable!("the array has the value's element type"),
                        }
                        self.new_array(vec![n], data)
                    }
                }
            }
            Expr::ArrayLit { elem, elems } => self.array_lit(*elem, elems, span)?,
            Expr::Map { width, lam, arrays } => {
                let out = self.map(binds, *width, lam, arrays, span)?;
                return self.bind_all(binds, out, span);
            }
            Expr::Reduce { lam, neutral, arrays } => {
                let out = self.reduce_or_scan(binds, lam, neutral, arrays, false, span)?;
                return self.bind_all(binds, out, span);
            }
            Expr::Scan { lam, neutral, arrays } => {
                let out = self.reduce_or_scan(binds, lam, neutral, arrays, true, span)?;
                return self.bind_all(binds, out, span);
            }
            Expr::Loop { params, init, form, body } => {
                let out = self.run_loop(params, init, form, body, span)?;
                return self.bind_all(binds, out, span);
            }
            Expr::Scatter { dest, indices, values } => self.scatter(*dest, *indices, *values, None, span)?,
            Expr::Hist { dest, lam, neutral, indices, values } => {
                // The sequential semantics never needs the neutral element, but
                // evaluating it keeps unbound-variable bugs visible.
                self.atom(*neutral, span)?;
                self.scatter(*dest, *indices, *values, Some(lam), span)?
            }
            Expr::Transpose(a) => {
                let a = self.array(*a, span)?;
                if a.rank() < 2 {
                    return ice(span, format!("transpose of a rank-{} array", a.rank()));
                }
                let (d0, d1, inner) = (a.shape[0], a.shape[1], row_len(&a.shape[1..]));
                let data = map_data!(&a.data, v => {
                    let mut out = Vec::with_capacity(v.len());
                    for j in 0..d1 {
                        for i in 0..d0 {
                            let at = (i * d1 + j) * inner;
                            out.extend_from_slice(&v[at..at + inner]);
                        }
                    }
                    out
                });
                let mut shape = a.shape.clone();
                shape.swap(0, 1);
                self.new_array(shape, data)
            }
            Expr::Reverse(a) => {
                let a = self.array(*a, span)?;
                let rl = row_len(&a.shape);
                let data = map_data!(&a.data, v => {
                    let mut out = Vec::with_capacity(v.len());
                    if rl > 0 {
                        for r in v.chunks_exact(rl).rev() {
                            out.extend_from_slice(r);
                        }
                    }
                    out
                });
                self.new_array(a.shape.clone(), data)
            }
            Expr::Argsort { array, descending } => {
                let a = self.array(*array, span)?;
                let mut data = ArrayData::I64(Vec::new());
                reserve(&mut data, a.data.len(), span)?;
                let ArrayData::I64(out) = &mut data else { unreachable!() };
                out.resize(a.data.len(), 0);
                match &a.data {
                    ArrayData::F64(v) => slope_runtime::sort::argsort_f64(v, *descending, out),
                    ArrayData::F32(v) => slope_runtime::sort::argsort_f32(v, *descending, out),
                    ArrayData::I64(v) => slope_runtime::sort::argsort_i64(v, *descending, out),
                    ArrayData::Bool(_) => return ice(span, "argsort of booleans".to_string()),
                }
                self.new_array(a.shape.clone(), data)
            }
            Expr::Concat(a, b) => {
                let (a, b) = (self.array(*a, span)?, self.array(*b, span)?);
                if a.shape[1..] != b.shape[1..] {
                    return err(
                        Code::E0202,
                        span,
                        format!(
                            "size mismatch: concat of arrays with rows of shapes {:?} and {:?}",
                            &a.shape[1..],
                            &b.shape[1..]
                        ),
                    );
                }
                let mut data = a.data.clone();
                if !extend_data(&mut data, &b.data) {
                    return ice(span, format!("concat of {} and {} arrays", a.elem_type(), b.elem_type()));
                }
                let mut shape = a.shape.clone();
                shape[0] += b.shape[0];
                self.new_array(shape, data)
            }
            Expr::Flatten(a) => {
                let a = self.array(*a, span)?;
                if a.rank() < 2 {
                    return ice(span, format!("flatten of a rank-{} array", a.rank()));
                }
                let mut shape = vec![a.shape[0] * a.shape[1]];
                shape.extend_from_slice(&a.shape[2..]);
                self.new_array(shape, a.data.clone())
            }
            Expr::Unflatten { array, rows, cols } => {
                let a = self.array(*array, span)?;
                let (r, c) = (self.size_atom(*rows, span)?, self.size_atom(*cols, span)?);
                if r.checked_mul(c) != Some(a.len()) {
                    return err(
                        Code::E0202,
                        span,
                        format!(
                            "size mismatch: cannot unflatten an outer dimension of size {} into {r} × {c}",
                            a.len()
                        ),
                    );
                }
                let mut shape = vec![r, c];
                shape.extend_from_slice(&a.shape[1..]);
                self.new_array(shape, a.data.clone())
            }
            Expr::Check { kind, args } => {
                self.check(kind, args, span)?;
                return match binds {
                    [] => Ok(()),
                    _ => ice(span, "a check binds no variables"),
                };
            }
            Expr::Jvp { .. } | Expr::Vjp { .. } => {
                return ice(span, "AD operator reached the interpreter");
            }
            Expr::Custom { primal, args, .. } => {
                let vals = args.iter().map(|a| self.atom(*a, span)).collect::<Result<Vec<_>, _>>()?;
                let mut out = Vec::with_capacity(binds.len());
                self.call(primal, vals, &mut out, span)?;
                return self.bind_all(binds, out, span);
            }
            Expr::Call { func, args } => {
                let Some(f) = self.program.func(func) else {
                    return ice(span, format!("a call of `{func}`, which the program does not define"));
                };
                // Variables are unique in the program, so the callee's run in
                // this environment (an entry calls only earlier entries: no recursion).
                for (&p, a) in f.params.iter().zip(args) {
                    let v = self.atom(*a, span)?;
                    self.set(p, v);
                }
                let mut out = Vec::with_capacity(binds.len());
                self.body(&f.body, &mut out, f.span)?;
                return self.bind_all(binds, out, span);
            }
        };
        self.bind_one(binds, v, span)
    }

    /// A `Check`: fails with the code and message of the statement it stands for.
    fn check(&self, kind: &CheckKind, args: &[Atom], span: Span) -> Result<(), RuntimeError> {
        let vals = args.iter().map(|a| self.atom(*a, span)).collect::<Result<Vec<_>, _>>()?;
        let int = |k: usize| match vals.get(k) {
            Some(Val::I64(x)) => Ok(*x),
            _ => ice(span, format!("operand {k} of a {kind:?} check is not an i64 scalar")),
        };
        match kind {
            CheckKind::SizeEq { what } => match vals.as_slice() {
                [x, y] if x != y => {
                    err(Code::E0202, span, format!("size mismatch: {what}: {} vs {}", x.describe(), y.describe()))
                }
                [_, _] => Ok(()),
                _ => ice(span, "a size check takes two operands"),
            },
            CheckKind::Iterated { what } => {
                let (m, n) = (int(0)?, int(1)?);
                if m != n {
                    return err(Code::E0202, span, format!("size mismatch: {what} over arrays of sizes {m} and {n}"));
                }
                Ok(())
            }
            CheckKind::InBounds { dim } => {
                let (i, n) = (int(0)?, int(1)?);
                if !(0 <= i && i < n) {
                    return err(Code::E0201, span, format!("index {i} out of bounds for dimension {dim} of size {n}"));
                }
                Ok(())
            }
            CheckKind::Size => self.size_atom(args[0], span).map(|_| ()),
            CheckKind::Positive { what } => {
                let n = int(0)?;
                if n < 1 {
                    return err(Code::E0204, span, format!("{what} must be at least 1, got {n}"));
                }
                Ok(())
            }
        }
    }

    fn index(&mut self, array: Var, indices: &[Atom], span: Span) -> Result<Val, RuntimeError> {
        self.cost.indexings += 1;
        let a = self.array(array, span)?;
        if indices.len() > a.rank() {
            return ice(span, format!("{} indices into a rank-{} array", indices.len(), a.rank()));
        }
        let mut flat = 0usize;
        for (d, &ix) in indices.iter().enumerate() {
            let i = self.i64_atom(ix, span)?;
            let n = a.shape[d];
            if i < 0 || i as u64 >= n as u64 {
                return err(Code::E0201, span, format!("index {i} out of bounds for dimension {d} of size {n}"));
            }
            flat = flat * n + i as usize;
        }
        if indices.len() == a.rank() {
            return Ok(scalar_at(&a.data, flat));
        }
        let rest = &a.shape[indices.len()..];
        let block: usize = rest.iter().product();
        let data = data_range(&a.data, flat * block, block);
        Ok(self.new_array(rest.to_vec(), data))
    }

    /// `UpdateAt`: the array operand is consumed (see Note [Consumed arrays]
    /// in ir/mod.rs), so it is taken out of its slot and updated in place
    /// whenever no other value shares its buffer.
    fn update_at(
        &mut self,
        array: Var,
        indices: &[Atom],
        value: Atom,
        accumulate: bool,
        span: Span,
    ) -> Result<Val, RuntimeError> {
        self.cost.indexings += 1;
        let value = self.atom(value, span)?;
        let mut idx = Vec::with_capacity(indices.len());
        for &ix in indices {
            idx.push(self.i64_atom(ix, span)?);
        }
        let taken = self.env[array.0 as usize].take();
        let Some(Val::Arr(mut a)) = taken else {
            return ice(span, format!("`{}` should be an array", self.program.vars.display(array)));
        };
        if idx.len() > a.rank() {
            return ice(span, format!("{} indices into a rank-{} array", idx.len(), a.rank()));
        }
        let mut flat = 0usize;
        for (d, &i) in idx.iter().enumerate() {
            let n = a.shape[d];
            if i < 0 || i as u64 >= n as u64 {
                return err(Code::E0201, span, format!("index {i} out of bounds for dimension {d} of size {n}"));
            }
            flat = flat * n + i as usize;
        }
        let block: usize = a.shape[idx.len()..].iter().product();
        if Rc::strong_count(&a) > 1 {
            self.cost.elements_written += a.data.len() as u64;
        }
        let target = Rc::make_mut(&mut a);
        let start = flat * block;
        let ok = match (&mut target.data, &value) {
            (ArrayData::F64(d), Val::F64(x)) if block == 1 => {
                d[start] = if accumulate { d[start] + x } else { *x };
                true
            }
            (ArrayData::F32(d), Val::F32(x)) if block == 1 => {
                d[start] = if accumulate { d[start] + x } else { *x };
                true
            }
            (ArrayData::I64(d), Val::I64(x)) if block == 1 => {
                d[start] = if accumulate { d[start].wrapping_add(*x) } else { *x };
                true
            }
            (ArrayData::Bool(d), Val::Bool(x)) if block == 1 && !accumulate => {
                d[start] = *x;
                true
            }
            (data, Val::Arr(v)) if v.data.len() == block && v.shape[..] == a_shape_tail(&target.shape, idx.len()) => {
                self.cost.elements_written += block as u64;
                match (data, &v.data) {
                    (ArrayData::F64(d), ArrayData::F64(s)) => {
                        for (o, x) in d[start..start + block].iter_mut().zip(s) {
                            *o = if accumulate { *o + x } else { *x };
                        }
                        true
                    }
                    (ArrayData::F32(d), ArrayData::F32(s)) => {
                        for (o, x) in d[start..start + block].iter_mut().zip(s) {
                            *o = if accumulate { *o + x } else { *x };
                        }
                        true
                    }
                    (ArrayData::I64(d), ArrayData::I64(s)) => {
                        for (o, x) in d[start..start + block].iter_mut().zip(s) {
                            *o = if accumulate { o.wrapping_add(*x) } else { *x };
                        }
                        true
                    }
                    (ArrayData::Bool(d), ArrayData::Bool(s)) if !accumulate => {
                        d[start..start + block].copy_from_slice(s);
                        true
                    }
                    _ => false,
                }
            }
            (_, Val::Arr(v)) => {
                return err(
                    Code::E0202,
                    span,
                    format!(
                        "size mismatch: updating a block of shape {:?} with a value of shape {:?}",
                        a_shape_tail(&target.shape, idx.len()),
                        v.shape
                    ),
                )
            }
            _ => false,
        };
        if !ok {
            return ice(span, "update of an array with a value of another type");
        }
        Ok(Val::Arr(a))
    }

    fn array_lit(&mut self, elem: IrType, elems: &[Atom], span: Span) -> Result<Val, RuntimeError> {
        let mut data = ArrayData::with_capacity(elem_type(elem.elem), elems.len());
        let mut row_shape: Option<Vec<usize>> = None;
        for &e in elems {
            let v = self.atom(e, span)?;
            let ok = match &v {
                Val::Arr(a) => {
                    match &row_shape {
                        Some(s) if *s != a.shape => {
                            return err(
                                Code::E0202,
                                span,
                                format!("array literal rows have different shapes {s:?} and {:?}", a.shape),
                            )
                        }
                        Some(_) => {}
                        None => row_shape = Some(a.shape.clone()),
                    }
                    extend_data(&mut data, &a.data)
                }
                _ => push_scalar(&mut data, &v),
            };
            if !ok || v.rank() != elem.rank as usize {
                return ice(span, format!("array literal element {} is not a {elem}", v.type_name()));
            }
        }
        let mut shape = vec![elems.len()];
        match row_shape {
            Some(s) => shape.extend(s),
            None => shape.extend(std::iter::repeat_n(0, elem.rank as usize)),
        }
        Ok(self.new_array(shape, data))
    }

    /// The arrays a combinator iterates over, checked to share their outer size.
    fn iterated(
        &self,
        arrays: &[Var],
        what: &str,
        span: Span,
    ) -> Result<(Vec<Rc<Array>>, Option<usize>), RuntimeError> {
        let arrs = arrays.iter().map(|&v| self.array(v, span)).collect::<Result<Vec<_>, _>>()?;
        let mut n = None;
        for a in &arrs {
            match n {
                None => n = Some(a.len()),
                Some(m) if m != a.len() => {
                    return err(
                        Code::E0202,
                        span,
                        format!("size mismatch: {what} over arrays of sizes {m} and {}", a.len()),
                    )
                }
                Some(_) => {}
            }
        }
        Ok((arrs, n))
    }

    fn map(
        &mut self,
        binds: &[Var],
        width: Atom,
        lam: &Lambda,
        arrays: &[Var],
        span: Span,
    ) -> Result<Vec<Val>, RuntimeError> {
        let width = self.alloc_size(width, span)?;
        let (arrs, n) = self.iterated(arrays, "map", span)?;
        if let Some(n) = n.filter(|&n| n != width) {
            return err(Code::E0202, span, format!("size mismatch: map over arrays of sizes {width} and {n}"));
        }
        let mut stackers: Vec<Stacker> =
            binds.iter().map(|&b| Stacker::new(self.program.vars.ty(b), width, span)).collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(binds.len());
        for i in 0..width {
            self.call(lam, arrs.iter().map(|a| row(a, i)), &mut out, span)?;
            if out.len() != stackers.len() {
                return ice(span, format!("map lambda returns {} values for {} results", out.len(), stackers.len()));
            }
            for (s, v) in stackers.iter_mut().zip(&out) {
                s.push(v, "map", span)?;
            }
        }
        Ok(stackers.into_iter().map(|s| self.new_array_from(s.finish())).collect())
    }

    fn new_array_from(&mut self, a: Array) -> Val {
        self.cost.elements_written += a.data.len() as u64;
        Val::Arr(Rc::new(a))
    }

    fn reduce_or_scan(
        &mut self,
        binds: &[Var],
        lam: &Lambda,
        neutral: &[Atom],
        arrays: &[Var],
        scan: bool,
        span: Span,
    ) -> Result<Vec<Val>, RuntimeError> {
        let what = if scan { "scan" } else { "reduce" };
        let k = neutral.len();
        if arrays.len() != k || binds.len() != k {
            return ice(
                span,
                format!("{what} with {k} neutral elements, {} arrays, {} results", arrays.len(), binds.len()),
            );
        }
        let mut acc = neutral.iter().map(|&a| self.atom(a, span)).collect::<Result<Vec<_>, _>>()?;
        let (arrs, n) = self.iterated(arrays, what, span)?;
        let n = n.unwrap_or(0);
        let mut stackers: Vec<Stacker> = if scan {
            binds.iter().map(|&b| Stacker::new(self.program.vars.ty(b), n, span)).collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let mut out = Vec::with_capacity(k);
        for i in 0..n {
            // The accumulators move into the parameter slots; `out` becomes the next `acc`.
            self.call(lam, acc.drain(..).chain(arrs.iter().map(|a| row(a, i))), &mut out, span)?;
            if out.len() != k {
                return ice(span, format!("{what} lambda returns {} values for {k} accumulators", out.len()));
            }
            for (s, v) in stackers.iter_mut().zip(&out) {
                s.push(v, what, span)?;
            }
            std::mem::swap(&mut acc, &mut out);
        }
        if scan {
            Ok(stackers.into_iter().map(|s| self.new_array_from(s.finish())).collect())
        } else {
            Ok(acc)
        }
    }

    fn run_loop(
        &mut self,
        params: &[Var],
        init: &[Atom],
        form: &LoopForm,
        body: &Body,
        span: Span,
    ) -> Result<Vec<Val>, RuntimeError> {
        if params.len() != init.len() {
            return ice(span, format!("loop with {} parameters and {} initial values", params.len(), init.len()));
        }
        for (&p, &a) in params.iter().zip(init) {
            let v = self.atom(a, span)?;
            self.set(p, v);
        }
        let mut out = Vec::with_capacity(params.len());
        // Array parameters are dropped after their last use in the body, so
        // that an update of an alias made there (`a2 = a; a2 with [i] = v`, as
        // reverse mode writes) finds its buffer unshared and works in place,
        // as native code does: `slope cost` then counts what native code does.
        let arrays: Vec<Var> = params.iter().copied().filter(|p| !self.program.vars.ty(*p).is_scalar()).collect();
        let dead = crate::ir::alias::last_uses(body, &arrays);
        let step = |this: &mut Self, out: &mut Vec<Val>| -> Result<(), RuntimeError> {
            this.poll_interrupt(span)?;
            out.clear();
            this.body_moving(body, &dead, out, span)?;
            if out.len() != params.len() {
                return ice(span, format!("loop body returns {} values for {} parameters", out.len(), params.len()));
            }
            for (&p, v) in params.iter().zip(out.drain(..)) {
                this.set(p, v);
            }
            Ok(())
        };
        match form {
            LoopForm::For { index, bound } => {
                let bound = self.i64_atom(*bound, span)?;
                for i in 0..bound.max(0) {
                    self.set(*index, Val::I64(i));
                    step(self, &mut out)?;
                }
            }
            LoopForm::While { cond } => {
                let limit = self.options.while_limit;
                let mut iterations: u64 = 0;
                loop {
                    out.clear();
                    self.body(cond, &mut out, span)?;
                    let go = match out.as_slice() {
                        [Val::Bool(b)] => *b,
                        _ => return ice(span, "a while condition must return one bool"),
                    };
                    if !go {
                        break;
                    }
                    if iterations == limit {
                        return err(Code::E0205, span, format!("while loop exceeded {limit} iterations"));
                    }
                    iterations += 1;
                    step(self, &mut out)?;
                }
            }
        }
        // The parameters are local to the loop: move their final values out.
        params
            .iter()
            .map(|&p| self.env[p.0 as usize].take().map_or_else(|| ice(span, "loop parameter unbound"), Ok))
            .collect()
    }

    /// `scatter` (`lam == None`: overwrite) and `hist` (`lam`: combine with the
    /// current element), on a fresh copy of `dest`.
    fn scatter(
        &mut self,
        dest: Var,
        indices: Var,
        values: Var,
        lam: Option<&Lambda>,
        span: Span,
    ) -> Result<Val, RuntimeError> {
        let what = if lam.is_some() { "hist" } else { "scatter" };
        let d = self.array(dest, span)?;
        let is = self.array(indices, span)?;
        let vs = self.array(values, span)?;
        let ArrayData::I64(idx) = &is.data else {
            return ice(span, format!("{what} indices must be i64, not {}", is.elem_type()));
        };
        if is.rank() != 1 {
            return ice(span, format!("{what} indices must have rank 1, not {}", is.rank()));
        }
        if idx.len() != vs.len() {
            return err(
                Code::E0202,
                span,
                format!("size mismatch: {what} with {} indices and {} values", idx.len(), vs.len()),
            );
        }
        if d.shape[1..] != vs.shape[1..] {
            return err(
                Code::E0202,
                span,
                format!(
                    "size mismatch: {what} values have rows of shape {:?} but the destination's rows have shape {:?}",
                    &vs.shape[1..],
                    &d.shape[1..]
                ),
            );
        }
        let mut data = d.data.clone();
        self.cost.elements_written += data.len() as u64;
        let n = d.len();
        let rl = row_len(&d.shape);
        let mut out = Vec::with_capacity(1);
        for (k, &i) in idx.iter().enumerate() {
            if i < 0 || i as u64 >= n as u64 {
                continue;
            }
            let i = i as usize;
            let new = match lam {
                None => row(&vs, k),
                Some(lam) => {
                    // The current element comes from `data`, not `d`: earlier
                    // updates to the same index must be seen.
                    let cur = if d.rank() == 1 {
                        scalar_at(&data, i)
                    } else {
                        Val::Arr(Rc::new(Array::new(d.shape[1..].to_vec(), data_range(&data, i * rl, rl))))
                    };
                    self.call(lam, [cur, row(&vs, k)], &mut out, span)?;
                    match out.pop() {
                        Some(v) if out.is_empty() => v,
                        _ => return ice(span, "a hist operator must return one value"),
                    }
                }
            };
            let ok = match &new {
                Val::Arr(a) if a.shape[..] == d.shape[1..] => write_data(&mut data, i * rl, &a.data),
                Val::Arr(_) => false,
                v => d.rank() == 1 && write_scalar(&mut data, i, v),
            };
            if !ok {
                return ice(span, format!("{what} writes a {} into a {} destination", new.type_name(), d.elem_type()));
            }
        }
        Ok(Val::Arr(Rc::new(Array::new(d.shape.clone(), data))))
    }
}

/// Reports a scalar operation applied to operands of the wrong types.
fn bad_operands<T>(what: &str, vals: &[&Val], span: Span) -> Result<T, RuntimeError> {
    let types: Vec<String> = vals.iter().map(|v| v.type_name()).collect();
    ice(span, format!("`{what}` applied to {}", types.join(" and ")))
}

/// One unary operation, as its row in `prims` defines it.
pub(crate) fn unary(op: UnOp, x: Val, span: Span) -> Result<Val, RuntimeError> {
    use crate::prims::Kind;
    let r = match (op.prim().kind, &x) {
        (Kind::Float { f64, .. }, Val::F64(v)) => Some(Val::F64(f64(*v))),
        (Kind::Float { f32, .. }, Val::F32(v)) => Some(Val::F32(f32(*v))),
        (Kind::Float { i64: Some(f), .. }, Val::I64(v)) => Some(Val::I64(f(*v))),
        (Kind::Test(f), Val::F64(v)) => Some(Val::Bool(f(*v))),
        (Kind::Test(f), Val::F32(v)) => Some(Val::Bool(f(*v as f64))),
        (Kind::Not, Val::Bool(b)) => Some(Val::Bool(!b)),
        (Kind::Identity, Val::F64(_) | Val::F32(_) | Val::I64(_) | Val::Bool(_)) => Some(x.clone()),
        _ => None,
    };
    match r {
        Some(v) => Ok(v),
        None => bad_operands(op.name(), &[&x], span),
    }
}

/// One float binary operation; `$V` wraps a result of the operand type.
macro_rules! float_binary {
    ($op:expr, $a:expr, $b:expr, $V:path, $f:ident) => {{
        let (a, b) = ($a, $b);
        Some(match $op {
            BinOp::Atan2 | BinOp::Hypot | BinOp::Copysign => {
                $V((crate::prims::binary($op).expect("a primitive").$f)(a, b))
            }
            BinOp::Add => $V(a + b),
            BinOp::Sub => $V(a - b),
            BinOp::Mul => $V(a * b),
            BinOp::Div => $V(a / b),
            BinOp::Rem => $V(a % b),
            BinOp::Pow => $V(a.powf(b)),
            // NaN in, NaN out (Rust's `min`/`max` would drop it); ties keep `a`.
            BinOp::Min => $V(if a.is_nan() {
                a
            } else if b.is_nan() {
                b
            } else if b < a {
                b
            } else {
                a
            }),
            BinOp::Max => $V(if a.is_nan() {
                a
            } else if b.is_nan() {
                b
            } else if b > a {
                b
            } else {
                a
            }),
            BinOp::Eq => Val::Bool(a == b),
            BinOp::Ne => Val::Bool(a != b),
            BinOp::Lt => Val::Bool(a < b),
            BinOp::Le => Val::Bool(a <= b),
            BinOp::Gt => Val::Bool(a > b),
            BinOp::Ge => Val::Bool(a >= b),
            BinOp::And | BinOp::Or => return None,
            BinOp::BitAnd | BinOp::BitOr | BinOp::BitXor | BinOp::Shl | BinOp::Shr => return None,
        })
    }};
}

pub(crate) fn binary(op: BinOp, x: Val, y: Val, span: Span) -> Result<Val, RuntimeError> {
    let r = match (&x, &y) {
        (&Val::F64(a), &Val::F64(b)) => (|| float_binary!(op, a, b, Val::F64, f64))(),
        (&Val::F32(a), &Val::F32(b)) => (|| float_binary!(op, a, b, Val::F32, f32))(),
        (&Val::I64(a), &Val::I64(b)) => match op {
            BinOp::Add => Some(Val::I64(a.wrapping_add(b))),
            BinOp::Sub => Some(Val::I64(a.wrapping_sub(b))),
            BinOp::Mul => Some(Val::I64(a.wrapping_mul(b))),
            BinOp::Div | BinOp::Rem => {
                if b == 0 {
                    return err(Code::E0203, span, format!("integer division by zero: {a} {} 0", op.symbol()));
                }
                // Wrapping: i64::MIN / -1 overflows; it wraps like the other operators.
                Some(Val::I64(if op == BinOp::Div { a.wrapping_div(b) } else { a.wrapping_rem(b) }))
            }
            BinOp::Pow => {
                if b < 0 {
                    return err(Code::E0204, span, format!("negative exponent in integer power: {a} ** {b}"));
                }
                // Wrapping, for any non-negative exponent: the function compiled code calls.
                Some(Val::I64(slope_runtime::native::slope_ipow(a, b)))
            }
            BinOp::Min => Some(Val::I64(a.min(b))),
            BinOp::Max => Some(Val::I64(a.max(b))),
            BinOp::Eq => Some(Val::Bool(a == b)),
            BinOp::Ne => Some(Val::Bool(a != b)),
            BinOp::Lt => Some(Val::Bool(a < b)),
            BinOp::Le => Some(Val::Bool(a <= b)),
            BinOp::Gt => Some(Val::Bool(a > b)),
            BinOp::Ge => Some(Val::Bool(a >= b)),
            BinOp::BitAnd => Some(Val::I64(a & b)),
            BinOp::BitOr => Some(Val::I64(a | b)),
            BinOp::BitXor => Some(Val::I64(a ^ b)),
            // The amount modulo 64, as the machine's shifts (and Cranelift's).
            BinOp::Shl => Some(Val::I64(a.wrapping_shl(b as u32))),
            BinOp::Shr => Some(Val::I64((a as u64).wrapping_shr(b as u32) as i64)),
            BinOp::And | BinOp::Or | BinOp::Atan2 | BinOp::Hypot | BinOp::Copysign => None,
        },
        (&Val::Bool(a), &Val::Bool(b)) => match op {
            BinOp::And | BinOp::Min => Some(Val::Bool(a && b)),
            BinOp::Or | BinOp::Max => Some(Val::Bool(a || b)),
            BinOp::Eq => Some(Val::Bool(a == b)),
            BinOp::Ne => Some(Val::Bool(a != b)),
            BinOp::Lt => Some(Val::Bool(!a & b)),
            BinOp::Le => Some(Val::Bool(a <= b)),
            BinOp::Gt => Some(Val::Bool(a & !b)),
            BinOp::Ge => Some(Val::Bool(a >= b)),
            _ => None,
        },
        _ => None,
    };
    match r {
        Some(v) => Ok(v),
        None => bad_operands(op.symbol(), &[&x, &y], span),
    }
}

pub(crate) fn convert(to: ScalarType, x: Val, span: Span) -> Result<Val, RuntimeError> {
    // `as` from float to int truncates toward zero, saturates, and maps NaN to 0.
    Ok(match (to, &x) {
        (_, Val::Arr(_)) => return bad_operands(&format!("convert to {}", to.name()), &[&x], span),
        (ScalarType::F64, &Val::F64(v)) => Val::F64(v),
        (ScalarType::F64, &Val::F32(v)) => Val::F64(v as f64),
        (ScalarType::F64, &Val::I64(v)) => Val::F64(v as f64),
        (ScalarType::F64, &Val::Bool(v)) => Val::F64(v as u8 as f64),
        (ScalarType::F32, &Val::F64(v)) => Val::F32(v as f32),
        (ScalarType::F32, &Val::F32(v)) => Val::F32(v),
        (ScalarType::F32, &Val::I64(v)) => Val::F32(v as f32),
        (ScalarType::F32, &Val::Bool(v)) => Val::F32(v as u8 as f32),
        (ScalarType::I64, &Val::F64(v)) => Val::I64(v as i64),
        (ScalarType::I64, &Val::F32(v)) => Val::I64(v as i64),
        (ScalarType::I64, &Val::I64(v)) => Val::I64(v),
        (ScalarType::I64, &Val::Bool(v)) => Val::I64(v as i64),
        (ScalarType::Bool, &Val::F64(v)) => Val::Bool(v != 0.0),
        (ScalarType::Bool, &Val::F32(v)) => Val::Bool(v != 0.0),
        (ScalarType::Bool, &Val::I64(v)) => Val::Bool(v != 0),
        (ScalarType::Bool, &Val::Bool(v)) => Val::Bool(v),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::FileId;
    use crate::ir::{Signature, Stmt, VarTable};
    use crate::types::Type;

    const F64: IrType = IrType::F64;
    const I64: IrType = IrType::I64;
    const BOOL: IrType = IrType::BOOL;

    fn arr(elem: ScalarType, rank: u32) -> IrType {
        IrType::array(elem, rank)
    }

    /// The span every test statement carries, so errors can be checked to point at it.
    fn sp() -> Span {
        Span::new(FileId(0), 3, 9)
    }

    fn st(binds: &[Var], expr: Expr) -> Stmt {
        Stmt { binds: binds.to_vec(), expr, span: sp() }
    }

    fn body(stmts: Vec<Stmt>, result: &[Var]) -> Body {
        Body { stmts: stmts.into(), result: result.iter().map(|&v| Atom::Var(v)).collect() }
    }

    fn lam(params: &[Var], stmts: Vec<Stmt>, result: &[Var]) -> Lambda {
        Lambda { params: params.to_vec(), body: body(stmts, result) }
    }

    fn v(a: Var) -> Atom {
        Atom::Var(a)
    }

    fn bin(op: BinOp, a: impl Into<Atom>, b: impl Into<Atom>) -> Expr {
        Expr::Binary(op, a.into(), b.into())
    }

    fn prog(vars: VarTable, params: &[Var], b: Body) -> Program {
        let func = Func {
            name: "main".into(),
            params: params.to_vec(),
            body: b,
            signature: Signature { params: Vec::new(), ret: Type::Unknown },
            span: Span::new(FileId(0), 0, 1),
        };
        Program { funcs: vec![func], vars, recomputed: Default::default() }
    }

    fn run_main(p: &Program, args: Vec<Val>) -> Result<(Vec<Val>, Cost), RuntimeError> {
        run(p, "main", args, &Options::default())
    }

    fn vals(p: &Program, args: Vec<Val>) -> Vec<Val> {
        run_main(p, args).unwrap_or_else(|e| panic!("unexpected error {}: {}", e.code, e.message)).0
    }

    fn error(p: &Program, args: Vec<Val>) -> RuntimeError {
        match run_main(p, args) {
            Ok((vals, _)) => panic!("expected an error, got {vals:?}"),
            Err(e) => e,
        }
    }

    fn array(shape: &[usize], data: ArrayData) -> Val {
        Val::Arr(Rc::new(Array::new(shape.to_vec(), data)))
    }

    fn f64s(shape: &[usize], xs: &[f64]) -> Val {
        array(shape, ArrayData::F64(xs.to_vec()))
    }

    fn i64s(shape: &[usize], xs: &[i64]) -> Val {
        array(shape, ArrayData::I64(xs.to_vec()))
    }

    /// `main(x: ty) = expr(x)`: one statement, one result.
    fn unary_prog(ty: IrType, out: IrType, expr: impl FnOnce(Var) -> Expr) -> Program {
        let mut t = VarTable::default();
        let x = t.fresh("x", ty);
        let r = t.fresh("r", out);
        let e = expr(x);
        prog(t, &[x], body(vec![st(&[r], e)], &[r]))
    }

    /// `main(x: a, y: b) = expr(x, y)`.
    fn binary_prog(a: IrType, b: IrType, out: IrType, expr: impl FnOnce(Var, Var) -> Expr) -> Program {
        let mut t = VarTable::default();
        let x = t.fresh("x", a);
        let y = t.fresh("y", b);
        let r = t.fresh("r", out);
        let e = expr(x, y);
        prog(t, &[x, y], body(vec![st(&[r], e)], &[r]))
    }

    /// `main(xs: []f64) = reduce (+) 0 xs`.
    fn sum_prog() -> Program {
        let mut t = VarTable::default();
        let xs = t.fresh("xs", arr(ScalarType::F64, 1));
        let (a, b, c) = (t.fresh("a", F64), t.fresh("b", F64), t.fresh("c", F64));
        let s = t.fresh("s", F64);
        let red = Expr::Reduce {
            lam: lam(&[a, b], vec![st(&[c], bin(BinOp::Add, a, b))], &[c]),
            neutral: vec![Atom::f64(0.0)],
            arrays: vec![xs],
        };
        prog(t, &[xs], body(vec![st(&[s], red)], &[s]))
    }

    /// `main(xs, ys: []f64) = reduce (+) 0 (map2 (*) xs ys)`, with the map
    /// width taken from `xs`.
    fn dot_prog() -> Program {
        let mut t = VarTable::default();
        let xs = t.fresh("xs", arr(ScalarType::F64, 1));
        let ys = t.fresh("ys", arr(ScalarType::F64, 1));
        let n = t.fresh("n", I64);
        let (x, y, p) = (t.fresh("x", F64), t.fresh("y", F64), t.fresh("p", F64));
        let prods = t.fresh("prods", arr(ScalarType::F64, 1));
        let (a, b, c) = (t.fresh("a", F64), t.fresh("b", F64), t.fresh("c", F64));
        let s = t.fresh("s", F64);
        let stmts = vec![
            st(&[n], Expr::Shape { array: xs, dim: 0 }),
            st(
                &[prods],
                Expr::Map {
                    width: v(n),
                    lam: lam(&[x, y], vec![st(&[p], bin(BinOp::Mul, x, y))], &[p]),
                    arrays: vec![xs, ys],
                },
            ),
            st(
                &[s],
                Expr::Reduce {
                    lam: lam(&[a, b], vec![st(&[c], bin(BinOp::Add, a, b))], &[c]),
                    neutral: vec![Atom::f64(0.0)],
                    arrays: vec![prods],
                },
            ),
        ];
        prog(t, &[xs, ys], body(stmts, &[s]))
    }

    #[test]
    fn dot_product() {
        let p = dot_prog();
        let (out, cost) = run_main(&p, vec![f64s(&[3], &[1.0, 2.0, 3.0]), f64s(&[3], &[4.0, 5.0, 6.0])]).unwrap();
        assert_eq!(out, vec![Val::F64(32.0)]);
        // 3 multiplications + 3 additions; the map writes 3 elements; no indexing.
        assert_eq!(cost, Cost { scalar_ops: 6, elements_written: 3, indexings: 0 });
        assert_eq!(cost.total(), 9);
    }

    #[test]
    fn dot_product_size_mismatch() {
        let e = error(&dot_prog(), vec![f64s(&[3], &[1.0, 2.0, 3.0]), f64s(&[4], &[1.0; 4])]);
        assert_eq!(e.code, Code::E0202);
        assert_eq!(e.message, "size mismatch: map over arrays of sizes 3 and 4");
        assert_eq!(e.span, sp());
    }

    #[test]
    fn sum_via_reduce_including_empty() {
        let p = sum_prog();
        assert_eq!(vals(&p, vec![f64s(&[4], &[1.5, 2.0, 3.0, 4.0])]), vec![Val::F64(10.5)]);
        assert_eq!(vals(&p, vec![f64s(&[0], &[])]), vec![Val::F64(0.0)]);
    }

    #[test]
    fn reduce_arrays_must_share_their_size() {
        // reduce over two arrays (k = 2): (sum xs, sum ys).
        let mut t = VarTable::default();
        let xs = t.fresh("xs", arr(ScalarType::F64, 1));
        let ys = t.fresh("ys", arr(ScalarType::F64, 1));
        let [a1, a2, b1, b2, c1, c2] = ["a1", "a2", "b1", "b2", "c1", "c2"].map(|n| t.fresh(n, F64));
        let (s1, s2) = (t.fresh("s1", F64), t.fresh("s2", F64));
        let red = Expr::Reduce {
            lam: lam(
                &[a1, a2, b1, b2],
                vec![st(&[c1], bin(BinOp::Add, a1, b1)), st(&[c2], bin(BinOp::Max, a2, b2))],
                &[c1, c2],
            ),
            neutral: vec![Atom::f64(0.0), Atom::f64(f64::NEG_INFINITY)],
            arrays: vec![xs, ys],
        };
        let p = prog(t, &[xs, ys], body(vec![st(&[s1, s2], red)], &[s1, s2]));
        let out = vals(&p, vec![f64s(&[3], &[1.0, 2.0, 3.0]), f64s(&[3], &[5.0, -1.0, 7.0])]);
        assert_eq!(out, vec![Val::F64(6.0), Val::F64(7.0)]);
        let e = error(&p, vec![f64s(&[3], &[1.0, 2.0, 3.0]), f64s(&[2], &[5.0, -1.0])]);
        assert_eq!((e.code, e.message.as_str()), (Code::E0202, "size mismatch: reduce over arrays of sizes 3 and 2"));
    }

    #[test]
    fn inclusive_scan_and_empty_scan() {
        let mut t = VarTable::default();
        let xs = t.fresh("xs", arr(ScalarType::I64, 1));
        let (a, b, c) = (t.fresh("a", I64), t.fresh("b", I64), t.fresh("c", I64));
        let r = t.fresh("r", arr(ScalarType::I64, 1));
        let scan = Expr::Scan {
            lam: lam(&[a, b], vec![st(&[c], bin(BinOp::Add, a, b))], &[c]),
            neutral: vec![Atom::i64(0)],
            arrays: vec![xs],
        };
        let p = prog(t, &[xs], body(vec![st(&[r], scan)], &[r]));
        assert_eq!(vals(&p, vec![i64s(&[4], &[1, 2, 3, 4])]), vec![i64s(&[4], &[1, 3, 6, 10])]);
        assert_eq!(vals(&p, vec![i64s(&[0], &[])]), vec![i64s(&[0], &[])]);
    }

    #[test]
    fn nested_map_row_sums() {
        // main(m: [][]f64) = map (\row -> reduce (+) 0 row) m
        let mut t = VarTable::default();
        let m = t.fresh("m", arr(ScalarType::F64, 2));
        let n = t.fresh("n", I64);
        let row = t.fresh("row", arr(ScalarType::F64, 1));
        let (a, b, c, s) = (t.fresh("a", F64), t.fresh("b", F64), t.fresh("c", F64), t.fresh("s", F64));
        let sums = t.fresh("sums", arr(ScalarType::F64, 1));
        let inner = Expr::Reduce {
            lam: lam(&[a, b], vec![st(&[c], bin(BinOp::Add, a, b))], &[c]),
            neutral: vec![Atom::f64(0.0)],
            arrays: vec![row],
        };
        let stmts = vec![
            st(&[n], Expr::Shape { array: m, dim: 0 }),
            st(&[sums], Expr::Map { width: v(n), lam: lam(&[row], vec![st(&[s], inner)], &[s]), arrays: vec![m] }),
        ];
        let p = prog(t, &[m], body(stmts, &[sums]));
        let input = f64s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(vals(&p, vec![input]), vec![f64s(&[2], &[6.0, 15.0])]);
    }

    #[test]
    fn map_returning_rows_and_two_results_and_empty_map() {
        // main(xs: []f64) = map (\x -> ([x, 2x], x > 1)) xs
        let mut t = VarTable::default();
        let xs = t.fresh("xs", arr(ScalarType::F64, 1));
        let n = t.fresh("n", I64);
        let x = t.fresh("x", F64);
        let (d, pair, big) = (t.fresh("d", F64), t.fresh("pair", arr(ScalarType::F64, 1)), t.fresh("big", BOOL));
        let (rows, bigs) = (t.fresh("rows", arr(ScalarType::F64, 2)), t.fresh("bigs", arr(ScalarType::Bool, 1)));
        let lam_body = vec![
            st(&[d], bin(BinOp::Mul, x, Atom::f64(2.0))),
            st(&[pair], Expr::ArrayLit { elem: F64, elems: vec![v(x), v(d)] }),
            st(&[big], bin(BinOp::Gt, x, Atom::f64(1.0))),
        ];
        let stmts = vec![
            st(&[n], Expr::Shape { array: xs, dim: 0 }),
            st(&[rows, bigs], Expr::Map { width: v(n), lam: lam(&[x], lam_body, &[pair, big]), arrays: vec![xs] }),
        ];
        let p = prog(t, &[xs], body(stmts, &[rows, bigs]));
        let out = vals(&p, vec![f64s(&[2], &[1.0, 3.0])]);
        assert_eq!(out, vec![f64s(&[2, 2], &[1.0, 2.0, 3.0, 6.0]), array(&[2], ArrayData::Bool(vec![false, true]))]);
        // Width 0: [0] followed by zeros for the remaining rank.
        let out = vals(&p, vec![f64s(&[0], &[])]);
        assert_eq!(out, vec![f64s(&[0, 0], &[]), array(&[0], ArrayData::Bool(vec![]))]);
    }

    #[test]
    fn map_results_of_different_shapes_fail() {
        // main(ns: []i64) = map (\k -> iota k) ns
        let mut t = VarTable::default();
        let ns = t.fresh("ns", arr(ScalarType::I64, 1));
        let n = t.fresh("n", I64);
        let k = t.fresh("k", I64);
        let io = t.fresh("io", arr(ScalarType::I64, 1));
        let r = t.fresh("r", arr(ScalarType::I64, 2));
        let stmts = vec![
            st(&[n], Expr::Shape { array: ns, dim: 0 }),
            st(
                &[r],
                Expr::Map { width: v(n), lam: lam(&[k], vec![st(&[io], Expr::Iota(v(k)))], &[io]), arrays: vec![ns] },
            ),
        ];
        let p = prog(t, &[ns], body(stmts, &[r]));
        assert_eq!(vals(&p, vec![i64s(&[2], &[2, 2])]), vec![i64s(&[2, 2], &[0, 1, 0, 1])]);
        let e = error(&p, vec![i64s(&[2], &[2, 3])]);
        assert_eq!(
            (e.code, e.message.as_str()),
            (Code::E0202, "size mismatch: map results have different shapes [2] and [3]")
        );
    }

    #[test]
    fn for_loop_factorial() {
        // main(n: i64) = loop acc = 1 for i < n do acc * (i + 1)
        let mut t = VarTable::default();
        let n = t.fresh("n", I64);
        let (acc, i, i1, acc2, r) =
            (t.fresh("acc", I64), t.fresh("i", I64), t.fresh("i1", I64), t.fresh("acc2", I64), t.fresh("r", I64));
        let lp = Expr::Loop {
            params: vec![acc],
            init: vec![Atom::i64(1)],
            form: LoopForm::For { index: i, bound: v(n) },
            body: body(
                vec![st(&[i1], bin(BinOp::Add, i, Atom::i64(1))), st(&[acc2], bin(BinOp::Mul, acc, i1))],
                &[acc2],
            ),
        };
        let p = prog(t, &[n], body(vec![st(&[r], lp)], &[r]));
        assert_eq!(vals(&p, vec![Val::I64(5)]), vec![Val::I64(120)]);
        assert_eq!(vals(&p, vec![Val::I64(0)]), vec![Val::I64(1)]);
        // A negative bound runs zero iterations.
        assert_eq!(vals(&p, vec![Val::I64(-4)]), vec![Val::I64(1)]);
        // i64 arithmetic wraps: 25! overflows.
        let want = (1..=25i64).fold(1i64, |a, k| a.wrapping_mul(k));
        assert_eq!(vals(&p, vec![Val::I64(25)]), vec![Val::I64(want)]);
    }

    /// `main(limit: i64) = loop (c, s) = (0, 0.0) while c < limit do (c + 1, s + 0.5)`.
    fn count_prog() -> Program {
        let mut t = VarTable::default();
        let limit = t.fresh("limit", I64);
        let (c, s, go, c2, s2) =
            (t.fresh("c", I64), t.fresh("s", F64), t.fresh("go", BOOL), t.fresh("c2", I64), t.fresh("s2", F64));
        let (rc, rs) = (t.fresh("rc", I64), t.fresh("rs", F64));
        let lp = Expr::Loop {
            params: vec![c, s],
            init: vec![Atom::i64(0), Atom::f64(0.0)],
            form: LoopForm::While { cond: body(vec![st(&[go], bin(BinOp::Lt, c, limit))], &[go]) },
            body: body(
                vec![st(&[c2], bin(BinOp::Add, c, Atom::i64(1))), st(&[s2], bin(BinOp::Add, s, Atom::f64(0.5)))],
                &[c2, s2],
            ),
        };
        prog(t, &[limit], body(vec![st(&[rc, rs], lp)], &[rc, rs]))
    }

    #[test]
    fn while_loop_counts_to_ten() {
        let p = count_prog();
        assert_eq!(vals(&p, vec![Val::I64(10)]), vec![Val::I64(10), Val::F64(5.0)]);
        // Exactly `while_limit` iterations is allowed.
        let (out, _) = run(&p, "main", vec![Val::I64(10)], &Options { while_limit: 10, ..Options::default() }).unwrap();
        assert_eq!(out, vec![Val::I64(10), Val::F64(5.0)]);
    }

    #[test]
    fn while_loop_limit_is_e0205() {
        let e = run(&count_prog(), "main", vec![Val::I64(10)], &Options { while_limit: 9, ..Options::default() })
            .unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (Code::E0205, "while loop exceeded 9 iterations"));
        assert_eq!(e.span, sp());
    }

    #[test]
    fn if_evaluates_the_chosen_branch_only() {
        // main(x: i64) = if x == 0 then (0, 1) else (10 / x, x)
        // The else branch divides by x: it must not run when x == 0.
        let mut t = VarTable::default();
        let x = t.fresh("x", I64);
        let (z, q, a, b) = (t.fresh("z", BOOL), t.fresh("q", I64), t.fresh("a", I64), t.fresh("b", I64));
        let (zero, one) = (t.fresh("zero", I64), t.fresh("one", I64));
        let stmts = vec![
            st(&[z], bin(BinOp::Eq, x, Atom::i64(0))),
            st(
                &[a, b],
                Expr::If {
                    cond: v(z),
                    then_body: body(
                        vec![st(&[zero], Expr::Atom(Atom::i64(0))), st(&[one], Expr::Atom(Atom::i64(1)))],
                        &[zero, one],
                    ),
                    else_body: body(vec![st(&[q], bin(BinOp::Div, Atom::i64(10), x))], &[q, x]),
                },
            ),
        ];
        let p = prog(t, &[x], body(stmts, &[a, b]));
        assert_eq!(vals(&p, vec![Val::I64(0)]), vec![Val::I64(0), Val::I64(1)]);
        assert_eq!(vals(&p, vec![Val::I64(-3)]), vec![Val::I64(-3), Val::I64(-3)]);
    }

    #[test]
    fn select_picks_without_branching() {
        let mut t = VarTable::default();
        let c = t.fresh("c", BOOL);
        let r = t.fresh("r", F64);
        let p = prog(t, &[c], body(vec![st(&[r], Expr::Select(v(c), Atom::f64(1.0), Atom::f64(2.0)))], &[r]));
        assert_eq!(vals(&p, vec![Val::Bool(true)]), vec![Val::F64(1.0)]);
        assert_eq!(vals(&p, vec![Val::Bool(false)]), vec![Val::F64(2.0)]);
    }

    /// `main(dest: []ty, is: []i64, vs: []ty) = scatter dest is vs` (2-D when `rank == 2`).
    fn scatter_prog(rank: u32) -> Program {
        let mut t = VarTable::default();
        let d = t.fresh("d", arr(ScalarType::F64, rank));
        let is = t.fresh("is", arr(ScalarType::I64, 1));
        let vs = t.fresh("vs", arr(ScalarType::F64, rank));
        let r = t.fresh("r", arr(ScalarType::F64, rank));
        prog(t, &[d, is, vs], body(vec![st(&[r], Expr::Scatter { dest: d, indices: is, values: vs })], &[r]))
    }

    #[test]
    fn scatter_skips_out_of_range_and_last_write_wins() {
        let p = scatter_prog(1);
        let dest = f64s(&[4], &[0.0; 4]);
        let is = i64s(&[5], &[1, 3, -1, 7, 1]);
        let vs = f64s(&[5], &[10.0, 20.0, 30.0, 40.0, 50.0]);
        let (out, cost) = run_main(&p, vec![dest.clone(), is, vs]).unwrap();
        assert_eq!(out, vec![f64s(&[4], &[0.0, 50.0, 0.0, 20.0])]);
        assert_eq!(cost.elements_written, 4);
        let e = error(&p, vec![dest, i64s(&[2], &[0, 1]), f64s(&[3], &[1.0; 3])]);
        assert_eq!((e.code, e.message.as_str()), (Code::E0202, "size mismatch: scatter with 2 indices and 3 values"));
    }

    #[test]
    fn scatter_rows_into_a_matrix() {
        let p = scatter_prog(2);
        let dest = f64s(&[3, 2], &[0.0; 6]);
        let out = vals(&p, vec![dest, i64s(&[2], &[2, 0]), f64s(&[2, 2], &[1.0, 2.0, 3.0, 4.0])]);
        assert_eq!(out, vec![f64s(&[3, 2], &[3.0, 4.0, 0.0, 0.0, 1.0, 2.0])]);
    }

    #[test]
    fn hist_combines_with_the_current_element() {
        let mut t = VarTable::default();
        let d = t.fresh("d", arr(ScalarType::F64, 1));
        let is = t.fresh("is", arr(ScalarType::I64, 1));
        let vs = t.fresh("vs", arr(ScalarType::F64, 1));
        let (a, b, c) = (t.fresh("a", F64), t.fresh("b", F64), t.fresh("c", F64));
        let r = t.fresh("r", arr(ScalarType::F64, 1));
        let hist = Expr::Hist {
            dest: d,
            lam: lam(&[a, b], vec![st(&[c], bin(BinOp::Add, a, b))], &[c]),
            neutral: Atom::f64(0.0),
            indices: is,
            values: vs,
        };
        let p = prog(t, &[d, is, vs], body(vec![st(&[r], hist)], &[r]));
        let out = vals(
            &p,
            vec![f64s(&[4], &[1.0; 4]), i64s(&[5], &[1, 3, -1, 7, 1]), f64s(&[5], &[10.0, 20.0, 30.0, 40.0, 50.0])],
        );
        assert_eq!(out, vec![f64s(&[4], &[1.0, 61.0, 1.0, 21.0])]);
    }

    #[test]
    fn transpose_reverse_flatten_of_a_2x3() {
        let m = f64s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let ty = arr(ScalarType::F64, 2);
        let p = unary_prog(ty, ty, Expr::Transpose);
        assert_eq!(vals(&p, vec![m.clone()]), vec![f64s(&[3, 2], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0])]);
        let p = unary_prog(ty, ty, Expr::Reverse);
        assert_eq!(vals(&p, vec![m.clone()]), vec![f64s(&[2, 3], &[4.0, 5.0, 6.0, 1.0, 2.0, 3.0])]);
        let p = unary_prog(ty, arr(ScalarType::F64, 1), Expr::Flatten);
        assert_eq!(vals(&p, vec![m]), vec![f64s(&[6], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])]);
        // Rank 3: only the two outer dimensions swap; the inner rows move whole.
        let ty3 = arr(ScalarType::I64, 3);
        let p = unary_prog(ty3, ty3, Expr::Transpose);
        let a = i64s(&[2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(vals(&p, vec![a]), vec![i64s(&[2, 2, 2], &[0, 1, 4, 5, 2, 3, 6, 7])]);
    }

    #[test]
    fn concat_and_its_size_check() {
        let ty = arr(ScalarType::F64, 2);
        let p = binary_prog(ty, ty, ty, Expr::Concat);
        let out = vals(&p, vec![f64s(&[1, 2], &[1.0, 2.0]), f64s(&[2, 2], &[3.0, 4.0, 5.0, 6.0])]);
        assert_eq!(out, vec![f64s(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])]);
        let e = error(&p, vec![f64s(&[1, 2], &[1.0, 2.0]), f64s(&[1, 3], &[3.0, 4.0, 5.0])]);
        assert_eq!(
            (e.code, e.message.as_str()),
            (Code::E0202, "size mismatch: concat of arrays with rows of shapes [2] and [3]")
        );
    }

    #[test]
    fn unflatten_and_its_checks() {
        let mut t = VarTable::default();
        let xs = t.fresh("xs", arr(ScalarType::I64, 1));
        let (r, c) = (t.fresh("rows", I64), t.fresh("cols", I64));
        let m = t.fresh("m", arr(ScalarType::I64, 2));
        let p = prog(t, &[xs, r, c], body(vec![st(&[m], Expr::Unflatten { array: xs, rows: v(r), cols: v(c) })], &[m]));
        let xs = i64s(&[6], &[0, 1, 2, 3, 4, 5]);
        let out = vals(&p, vec![xs.clone(), Val::I64(2), Val::I64(3)]);
        assert_eq!(out, vec![i64s(&[2, 3], &[0, 1, 2, 3, 4, 5])]);
        let e = error(&p, vec![xs.clone(), Val::I64(4), Val::I64(2)]);
        assert_eq!(
            (e.code, e.message.as_str()),
            (Code::E0202, "size mismatch: cannot unflatten an outer dimension of size 6 into 4 × 2")
        );
        let e = error(&p, vec![xs, Val::I64(-2), Val::I64(-3)]);
        assert_eq!((e.code, e.message.as_str()), (Code::E0204, "negative size -2"));
    }

    #[test]
    fn index_scalar_and_sub_array() {
        let ty = arr(ScalarType::F64, 2);
        let m = f64s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let p = unary_prog(ty, F64, |a| Expr::Index { array: a, indices: vec![Atom::i64(1), Atom::i64(2)] });
        let (out, cost) = run_main(&p, vec![m.clone()]).unwrap();
        assert_eq!(out, vec![Val::F64(6.0)]);
        assert_eq!(cost, Cost { scalar_ops: 0, elements_written: 0, indexings: 1 });
        let p = unary_prog(ty, arr(ScalarType::F64, 1), |a| Expr::Index { array: a, indices: vec![Atom::i64(1)] });
        let (out, cost) = run_main(&p, vec![m.clone()]).unwrap();
        assert_eq!(out, vec![f64s(&[3], &[4.0, 5.0, 6.0])]);
        assert_eq!(cost, Cost { scalar_ops: 0, elements_written: 3, indexings: 1 });
        // Out of bounds in the second dimension; and a negative index.
        let p = unary_prog(ty, F64, |a| Expr::Index { array: a, indices: vec![Atom::i64(0), Atom::i64(3)] });
        let e = error(&p, vec![m.clone()]);
        assert_eq!((e.code, e.message.as_str()), (Code::E0201, "index 3 out of bounds for dimension 1 of size 3"));
        assert_eq!(e.span, sp());
        let p = unary_prog(ty, F64, |a| Expr::Index { array: a, indices: vec![Atom::i64(-1), Atom::i64(0)] });
        let e = error(&p, vec![m]);
        assert_eq!((e.code, e.message.as_str()), (Code::E0201, "index -1 out of bounds for dimension 0 of size 2"));
    }

    #[test]
    fn index_out_of_bounds_e0201() {
        let p = unary_prog(arr(ScalarType::I64, 1), I64, |a| Expr::Index { array: a, indices: vec![Atom::i64(7)] });
        let e = error(&p, vec![i64s(&[5], &[0; 5])]);
        assert_eq!(e.code, Code::E0201);
        assert_eq!(e.message, "index 7 out of bounds for dimension 0 of size 5");
        let d = crate::diagnostic::Diagnostic::from(e.clone());
        assert_eq!((d.code, d.message.as_str()), (Code::E0201, e.message.as_str()));
        assert_eq!((d.primary.span, d.primary.message.as_str()), (sp(), "failed here"));
    }

    #[test]
    fn slice_and_its_bounds() {
        let mut t = VarTable::default();
        let xs = t.fresh("xs", arr(ScalarType::F64, 2));
        let (s, e) = (t.fresh("s", I64), t.fresh("e", I64));
        let r = t.fresh("r", arr(ScalarType::F64, 2));
        let p = prog(t, &[xs, s, e], body(vec![st(&[r], Expr::Slice { array: xs, start: v(s), end: v(e) })], &[r]));
        let m = f64s(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let (out, cost) = run_main(&p, vec![m.clone(), Val::I64(1), Val::I64(3)]).unwrap();
        assert_eq!(out, vec![f64s(&[2, 2], &[3.0, 4.0, 5.0, 6.0])]);
        assert_eq!(cost, Cost { scalar_ops: 0, elements_written: 4, indexings: 1 });
        assert_eq!(vals(&p, vec![m.clone(), Val::I64(3), Val::I64(3)]), vec![f64s(&[0, 2], &[])]);
        for (a, b) in [(2, 4), (2, 1), (-1, 2)] {
            let err = error(&p, vec![m.clone(), Val::I64(a), Val::I64(b)]);
            assert_eq!(err.code, Code::E0201);
            assert_eq!(err.message, format!("slice {a}:{b} out of bounds for dimension 0 of size 3"));
        }
    }

    #[test]
    fn iota_replicate_array_literal_shape() {
        let p = unary_prog(I64, arr(ScalarType::I64, 1), |n| Expr::Iota(v(n)));
        assert_eq!(vals(&p, vec![Val::I64(4)]), vec![i64s(&[4], &[0, 1, 2, 3])]);
        let e = error(&p, vec![Val::I64(-3)]);
        assert_eq!((e.code, e.message.as_str()), (Code::E0204, "negative size -3"));

        let p = binary_prog(I64, arr(ScalarType::F64, 1), arr(ScalarType::F64, 2), |n, x| Expr::Replicate {
            count: v(n),
            value: v(x),
        });
        let out = vals(&p, vec![Val::I64(2), f64s(&[2], &[1.0, 2.0])]);
        assert_eq!(out, vec![f64s(&[2, 2], &[1.0, 2.0, 1.0, 2.0])]);
        let e = error(&p, vec![Val::I64(-1), f64s(&[2], &[1.0, 2.0])]);
        assert_eq!((e.code, e.message.as_str()), (Code::E0204, "negative size -1"));
        let p = binary_prog(I64, BOOL, arr(ScalarType::Bool, 1), |n, x| Expr::Replicate { count: v(n), value: v(x) });
        assert_eq!(vals(&p, vec![Val::I64(3), Val::Bool(true)]), vec![array(&[3], ArrayData::Bool(vec![true; 3]))]);

        let row = arr(ScalarType::F64, 1);
        let p = binary_prog(row, row, arr(ScalarType::F64, 2), |a, b| Expr::ArrayLit {
            elem: row,
            elems: vec![v(a), v(b)],
        });
        let out = vals(&p, vec![f64s(&[2], &[1.0, 2.0]), f64s(&[2], &[3.0, 4.0])]);
        assert_eq!(out, vec![f64s(&[2, 2], &[1.0, 2.0, 3.0, 4.0])]);
        let e = error(&p, vec![f64s(&[2], &[1.0, 2.0]), f64s(&[3], &[3.0, 4.0, 5.0])]);
        assert_eq!((e.code, e.message.as_str()), (Code::E0202, "array literal rows have different shapes [2] and [3]"));

        let p = unary_prog(arr(ScalarType::F32, 3), I64, |a| Expr::Shape { array: a, dim: 2 });
        assert_eq!(vals(&p, vec![array(&[1, 2, 5], ArrayData::F32(vec![0.0; 10]))]), vec![Val::I64(5)]);
    }

    #[test]
    fn size_check_e0202() {
        let mut t = VarTable::default();
        let (a, b) = (t.fresh("a", I64), t.fresh("b", I64));
        let check =
            Expr::Check { kind: CheckKind::SizeEq { what: "rows of the matrix".into() }, args: vec![v(a), v(b)] };
        let p = prog(t, &[a, b], Body { stmts: vec![st(&[], check)].into(), result: vec![Atom::i64(1)] });
        assert_eq!(vals(&p, vec![Val::I64(3), Val::I64(3)]), vec![Val::I64(1)]);
        let e = error(&p, vec![Val::I64(3), Val::I64(4)]);
        assert_eq!((e.code, e.message.as_str()), (Code::E0202, "size mismatch: rows of the matrix: 3 vs 4"));
    }

    #[test]
    fn integer_division_and_remainder_by_zero_e0203() {
        for (op, sym) in [(BinOp::Div, "/"), (BinOp::Rem, "%")] {
            let p = binary_prog(I64, I64, I64, |a, b| bin(op, a, b));
            let e = error(&p, vec![Val::I64(7), Val::I64(0)]);
            assert_eq!(e.code, Code::E0203);
            assert_eq!(e.message, format!("integer division by zero: 7 {sym} 0"));
        }
    }

    #[test]
    fn integer_arithmetic_truncates_and_wraps() {
        let run_op = |op, a, b| vals(&binary_prog(I64, I64, I64, |x, y| bin(op, x, y)), vec![Val::I64(a), Val::I64(b)]);
        assert_eq!(run_op(BinOp::Div, -7, 2), vec![Val::I64(-3)]);
        assert_eq!(run_op(BinOp::Rem, -7, 2), vec![Val::I64(-1)]);
        assert_eq!(run_op(BinOp::Div, i64::MIN, -1), vec![Val::I64(i64::MIN)]);
        assert_eq!(run_op(BinOp::Add, i64::MAX, 1), vec![Val::I64(i64::MIN)]);
        assert_eq!(run_op(BinOp::Pow, 3, 4), vec![Val::I64(81)]);
        assert_eq!(run_op(BinOp::Pow, 2, 64), vec![Val::I64(0)]);
        assert_eq!(run_op(BinOp::Pow, 5, 0), vec![Val::I64(1)]);
        assert_eq!(run_op(BinOp::Min, 4, -2), vec![Val::I64(-2)]);
        let e = error(&binary_prog(I64, I64, I64, |x, y| bin(BinOp::Pow, x, y)), vec![Val::I64(3), Val::I64(-2)]);
        assert_eq!((e.code, e.message.as_str()), (Code::E0204, "negative exponent in integer power: 3 ** -2"));
    }

    #[test]
    fn float_min_max_propagate_nan_and_keep_the_first_on_ties() {
        let run_op = |op, a: f64, b: f64| match vals(
            &binary_prog(F64, F64, F64, |x, y| bin(op, x, y)),
            vec![Val::F64(a), Val::F64(b)],
        )[..]
        {
            [Val::F64(r)] => r,
            ref other => panic!("{other:?}"),
        };
        assert!(run_op(BinOp::Min, f64::NAN, 1.0).is_nan());
        assert!(run_op(BinOp::Min, 1.0, f64::NAN).is_nan());
        assert!(run_op(BinOp::Max, 1.0, f64::NAN).is_nan());
        assert_eq!(run_op(BinOp::Max, 1.0, 3.0), 3.0);
        assert_eq!(run_op(BinOp::Min, 1.0, 3.0), 1.0);
        assert!(run_op(BinOp::Min, 0.0, -0.0).is_sign_positive());
        assert!(run_op(BinOp::Max, -0.0, 0.0).is_sign_negative());
        assert_eq!(run_op(BinOp::Pow, 2.0, 0.5), 2f64.sqrt());
        assert_eq!(run_op(BinOp::Rem, -7.5, 2.0), -1.5);
        assert_eq!(run_op(BinOp::Div, 1.0, 0.0), f64::INFINITY);
    }

    #[test]
    fn unary_operations_and_f32() {
        let run1 = |op, x: f64| match vals(&unary_prog(F64, F64, |a| Expr::Unary(op, v(a))), vec![Val::F64(x)])[..] {
            [Val::F64(r)] => r,
            ref other => panic!("{other:?}"),
        };
        assert_eq!(run1(UnOp::Sigmoid, 0.0), 0.5);
        assert_eq!(run1(UnOp::Sigmoid, 2.0), 1.0 / (1.0 + (-2f64).exp()));
        assert_eq!(run1(UnOp::Lgamma, 10.0), slope_runtime::math::lgamma(10.0));
        assert_eq!(run1(UnOp::Erf, 0.5), slope_runtime::math::erf(0.5));
        assert_eq!(run1(UnOp::Log1p, 1e-20), 1e-20);
        assert_eq!(run1(UnOp::Floor, -1.5), -2.0);
        assert_eq!(run1(UnOp::Ceil, -1.5), -1.0);
        assert_eq!(run1(UnOp::Abs, -3.0), 3.0);
        assert_eq!(run1(UnOp::StopGradient, 4.25), 4.25);
        let f32ty = IrType::scalar(ScalarType::F32);
        let p = unary_prog(f32ty, f32ty, |a| Expr::Unary(UnOp::Erf, v(a)));
        assert_eq!(vals(&p, vec![Val::F32(1.0)]), vec![Val::F32(slope_runtime::math::erf(1.0) as f32)]);
        let p = unary_prog(BOOL, BOOL, |a| Expr::Unary(UnOp::Not, v(a)));
        assert_eq!(vals(&p, vec![Val::Bool(true)]), vec![Val::Bool(false)]);
        let p = unary_prog(I64, I64, |a| Expr::Unary(UnOp::Neg, v(a)));
        assert_eq!(vals(&p, vec![Val::I64(5)]), vec![Val::I64(-5)]);
    }

    #[test]
    fn conversions() {
        let conv = |from: IrType, to: ScalarType, x: Val| {
            vals(&unary_prog(from, IrType::scalar(to), |a| Expr::Convert(to, v(a))), vec![x])
        };
        assert_eq!(conv(F64, ScalarType::I64, Val::F64(-2.7)), vec![Val::I64(-2)]);
        assert_eq!(conv(F64, ScalarType::I64, Val::F64(f64::NAN)), vec![Val::I64(0)]);
        assert_eq!(conv(F64, ScalarType::I64, Val::F64(1e300)), vec![Val::I64(i64::MAX)]);
        assert_eq!(conv(BOOL, ScalarType::F64, Val::Bool(true)), vec![Val::F64(1.0)]);
        assert_eq!(conv(F64, ScalarType::Bool, Val::F64(0.0)), vec![Val::Bool(false)]);
        assert_eq!(conv(I64, ScalarType::Bool, Val::I64(-3)), vec![Val::Bool(true)]);
        assert_eq!(conv(I64, ScalarType::F32, Val::I64(3)), vec![Val::F32(3.0)]);
        assert_eq!(conv(F64, ScalarType::F32, Val::F64(0.1)), vec![Val::F32(0.1)]);
    }

    #[test]
    fn wrong_arguments_e0302() {
        let p = sum_prog();
        let e = error(&p, vec![i64s(&[2], &[1, 2])]);
        assert_eq!(e.code, Code::E0302);
        assert_eq!(e.message, "argument 1 of `main` (`xs`) must be []f64, but the value is []i64");
        assert_eq!(e.span, p.funcs[0].span);
        let e = error(&p, vec![Val::F64(1.0)]);
        assert_eq!(
            (e.code, e.message.as_str()),
            (Code::E0302, "argument 1 of `main` (`xs`) must be []f64, but the value is f64")
        );
        let e = error(&p, vec![]);
        assert_eq!((e.code, e.message.as_str()), (Code::E0302, "`main` takes 1 arguments but was given 0"));
        let e = run(&p, "nope", vec![], &Options::default()).unwrap_err();
        assert_eq!(e.code, Code::E0301);
    }

    #[test]
    fn ad_operators_are_internal_errors() {
        let mut t = VarTable::default();
        let x = t.fresh("x", F64);
        let (a, r) = (t.fresh("a", F64), t.fresh("r", F64));
        let jvp = Expr::Jvp {
            lam: lam(&[a], vec![], &[a]),
            primals: vec![v(x)],
            tangents: vec![Atom::f64(1.0)],
            batch: None,
            values: false,
        };
        let p = prog(t, &[x], body(vec![st(&[r], jvp)], &[r]));
        let e = error(&p, vec![Val::F64(1.0)]);
        assert_eq!(
            (e.code, e.message.as_str()),
            (Code::E0900, "internal compiler error: AD operator reached the interpreter")
        );
    }

    #[test]
    fn map_cost_counts_ops_and_elements() {
        // main(xs: []f64) = map (\x -> x * 2) xs over n elements.
        let mut t = VarTable::default();
        let xs = t.fresh("xs", arr(ScalarType::F64, 1));
        let n = t.fresh("n", I64);
        let (x, y) = (t.fresh("x", F64), t.fresh("y", F64));
        let ys = t.fresh("ys", arr(ScalarType::F64, 1));
        let stmts = vec![
            st(&[n], Expr::Shape { array: xs, dim: 0 }),
            st(
                &[ys],
                Expr::Map {
                    width: v(n),
                    lam: lam(&[x], vec![st(&[y], bin(BinOp::Mul, x, Atom::f64(2.0)))], &[y]),
                    arrays: vec![xs],
                },
            ),
        ];
        let p = prog(t, &[xs], body(stmts, &[ys]));
        for n in [0usize, 1, 17] {
            let input: Vec<f64> = (0..n).map(|i| i as f64).collect();
            let (out, cost) = run_main(&p, vec![f64s(&[n], &input)]).unwrap();
            let want: Vec<f64> = input.iter().map(|x| x * 2.0).collect();
            assert_eq!(out, vec![f64s(&[n], &want)]);
            assert_eq!(cost, Cost { scalar_ops: n as u64, elements_written: n as u64, indexings: 0 });
        }
    }

    #[test]
    fn value_round_trip() {
        let a = f64s(&[2], &[1.0, 2.0]);
        assert_eq!(Val::from_value(&a.to_value()), Some(a));
        assert_eq!(Val::I64(3).to_value(), Value::Scalar(Scalar::I64(3)));
        assert_eq!(Val::from_value(&Value::Scalar(Scalar::Bool(true))), Some(Val::Bool(true)));
        assert_eq!(Val::from_value(&Value::Tuple(vec![])), None);
    }

    #[test]
    fn workload_30k_rows_of_100_ops_is_fast() {
        // main(xs: []f64) = map (\x -> 100 chained multiply-adds) xs, on 30k elements.
        // Guards the interpreter's per-operation overhead (see the module docs).
        let mut t = VarTable::default();
        let xs = t.fresh("xs", arr(ScalarType::F64, 1));
        let n = t.fresh("n", I64);
        let x = t.fresh("x", F64);
        let mut stmts = Vec::new();
        let mut acc = x;
        for k in 0..50 {
            let m = t.fresh("m", F64);
            let s = t.fresh("s", F64);
            stmts.push(st(&[m], bin(BinOp::Mul, acc, Atom::f64(0.5))));
            stmts.push(st(&[s], bin(BinOp::Add, m, Atom::f64(k as f64))));
            acc = s;
        }
        let ys = t.fresh("ys", arr(ScalarType::F64, 1));
        let outer = vec![
            st(&[n], Expr::Shape { array: xs, dim: 0 }),
            st(&[ys], Expr::Map { width: v(n), lam: lam(&[x], stmts, &[acc]), arrays: vec![xs] }),
        ];
        let p = prog(t, &[xs], body(outer, &[ys]));
        let input: Vec<f64> = (0..30_000).map(|i| i as f64).collect();
        let (out, cost) = run_main(&p, vec![f64s(&[30_000], &input)]).unwrap();
        assert_eq!(cost.scalar_ops, 3_000_000);
        let expect = |x: f64| (0..50).fold(x, |a, k| a * 0.5 + k as f64);
        let Val::Arr(a) = &out[0] else { panic!("not an array") };
        let ArrayData::F64(d) = &a.data else { panic!("not f64") };
        assert_eq!(d[12345], expect(12345.0));
    }

    #[test]
    fn workload_nested_matrix_vector_is_fast() {
        // main(xs: [P][10]f64, ms: [25][10][10]f64) =
        //   map (\x -> reduce (+) 0 (map (\m -> reduce (+) 0 (m · x)) ms)) xs
        // with m · x = map (\row -> reduce (+) 0 (map2 (*) row x)) m: the
        // "1000 points × 25 components × 10×10 matrix-vector" shape of work.
        let mut t = VarTable::default();
        let f = |r| arr(ScalarType::F64, r);
        let (xs, ms) = (t.fresh("xs", f(2)), t.fresh("ms", f(3)));
        let add = |t: &mut VarTable| {
            let (a, b, c) = (t.fresh("a", F64), t.fresh("b", F64), t.fresh("c", F64));
            lam(&[a, b], vec![st(&[c], bin(BinOp::Add, a, b))], &[c])
        };
        let sum = |t: &mut VarTable, arr: Var, out: Var| {
            st(&[out], Expr::Reduce { lam: add(t), neutral: vec![Atom::f64(0.0)], arrays: vec![arr] })
        };
        // Innermost: dot(row, x).
        let (x, m, row) = (t.fresh("x", f(1)), t.fresh("m", f(2)), t.fresh("row", f(1)));
        let (re, xe, pe) = (t.fresh("re", F64), t.fresh("xe", F64), t.fresh("pe", F64));
        let (k, prods, dot) = (t.fresh("k", I64), t.fresh("prods", f(1)), t.fresh("dot", F64));
        let dot_body = vec![
            st(&[k], Expr::Shape { array: row, dim: 0 }),
            st(
                &[prods],
                Expr::Map {
                    width: v(k),
                    lam: lam(&[re, xe], vec![st(&[pe], bin(BinOp::Mul, re, xe))], &[pe]),
                    arrays: vec![row, x],
                },
            ),
            sum(&mut t, prods, dot),
        ];
        let (rows, mv, mvsum) = (t.fresh("rows", I64), t.fresh("mv", f(1)), t.fresh("mvsum", F64));
        let comp_body = vec![
            st(&[rows], Expr::Shape { array: m, dim: 0 }),
            st(&[mv], Expr::Map { width: v(rows), lam: lam(&[row], dot_body, &[dot]), arrays: vec![m] }),
            sum(&mut t, mv, mvsum),
        ];
        let (nc, per, total) = (t.fresh("nc", I64), t.fresh("per", f(1)), t.fresh("total", F64));
        let point_body = vec![
            st(&[nc], Expr::Shape { array: ms, dim: 0 }),
            st(&[per], Expr::Map { width: v(nc), lam: lam(&[m], comp_body, &[mvsum]), arrays: vec![ms] }),
            sum(&mut t, per, total),
        ];
        let (np, res) = (t.fresh("np", I64), t.fresh("res", f(1)));
        let stmts = vec![
            st(&[np], Expr::Shape { array: xs, dim: 0 }),
            st(&[res], Expr::Map { width: v(np), lam: lam(&[x], point_body, &[total]), arrays: vec![xs] }),
        ];
        let p = prog(t, &[xs, ms], body(stmts, &[res]));
        let (np, nc, d) = (1000, 25, 10);
        let xdata: Vec<f64> = (0..np * d).map(|i| (i % 7) as f64 * 0.25).collect();
        let mdata: Vec<f64> = (0..nc * d * d).map(|i| (i % 5) as f64 - 2.0).collect();
        let (out, cost) = run_main(&p, vec![f64s(&[np, d], &xdata), f64s(&[nc, d, d], &mdata)]).unwrap();
        // Reference: the same sums in plain Rust (same association order).
        let point = |pi: usize| {
            let xv = &xdata[pi * d..(pi + 1) * d];
            (0..nc).fold(0.0, |acc, c| {
                let mv = (0..d).fold(0.0, |a2, r| {
                    let rowv = &mdata[(c * d + r) * d..(c * d + r + 1) * d];
                    a2 + rowv.iter().zip(xv).fold(0.0, |a3, (m, x)| a3 + m * x)
                });
                acc + mv
            })
        };
        let Val::Arr(a) = &out[0] else { panic!("not an array") };
        let ArrayData::F64(got) = &a.data else { panic!("not f64") };
        for pi in [0, 1, 499, 999] {
            assert_eq!(got[pi], point(pi));
        }
        // Per point and component: 10 rows × (10 mul + 10 add) + 10 adds; per point 25 adds.
        assert_eq!(cost.scalar_ops, (np * (nc * (d * 2 * d + d) + nc)) as u64);
    }
}
