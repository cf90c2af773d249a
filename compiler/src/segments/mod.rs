//! The parallel level: which iteration spaces of the optimised array IR run
//! as parallel segments, and which run sequentially.
//!
//! Input: the optimised array IR ([`ir::Program`]). Output: a [`Program`]:
//! the same IR, unchanged, and a [`Segment`] for every statement the
//! decision ([`decide`], Note [Outermost parallelism first]) gives a level:
//! each iterating statement that is not inside another one gets its
//! iteration space (how many iterations, and what each result is made of:
//! a map's slots, a reduction, a scan, a histogram) and whether it is
//! parallel or, with the reason, sequential. `slope emit --stage segments`
//! prints the IR with each segment as a comment above its statement.
//!
//! What reads it: lowering marks every loop it emits for a parallel
//! statement (`loops::Inst::For::parallel`), the loop optimiser keeps the
//! marks through fusion, splitting and unrolling, and the `parallel` stage
//! (`loops/parallel.rs`) outlines a marked loop into a segment when the loop
//! analysis, which sees memory, finds its iterations independent. Nothing
//! unmarked goes to the thread pool: the decision of *what* runs in
//! parallel is made here, once, on values; the loop level decides *whether
//! it can*, on buffers.
//!
//! Invariants (checked by [`verify`]): every statement named is a
//! statement of the program, with its own expression's iteration space; no
//! parallel statement lies inside a parallel statement, a `while` loop, or
//! a loop over more than a few iterations that carries a value.

mod decide;
mod verify;

pub use decide::{decide, MIN_SPACE};
pub use verify::verify;

use crate::hash::HashMap;
use crate::ir::{self, Atom, BinOp, Stmt, Var};

/// The optimised array IR with its parallel level.
#[derive(Clone, Debug)]
pub struct Program {
    pub ir: ir::Program,
    /// The level of each statement at the outermost level that the
    /// decision reached.
    pub segments: HashMap<StmtId, Segment>,
}

// Note [Statements by address]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The parallel level names a statement by its address. Variables would do
// for most, but a statement may bind none: `loop () = () for i < n do
// check_index i < m` is what the optimiser leaves of a loop whose work it
// removed, and lowering emits a loop for it that the loop optimiser fuses
// with its neighbours — unmarked, it would make a fused parallel loop
// sequential. The address is stable: `decide` returns the program it
// read, cloned, and a clone shares every statement list (Note [Shared
// statement lists]); nothing mutates the program after. A statement list
// shared by two places is one statement, decided once. Should a later
// change copy a list, its statements would find no level — sequential,
// never wrong — and the verifier, which looks every name up, would say so.

/// A statement's identity (Note [Statements by address]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StmtId(usize);

impl StmtId {
    pub fn of(s: &Stmt) -> StmtId {
        StmtId(s as *const Stmt as usize)
    }
}

/// What the parallel level says of one statement.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub level: Level,
    /// The statement's iteration space, when it iterates.
    pub space: Option<Space>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Level {
    /// Runs on the thread pool (every loop lowering emits for it is marked).
    Parallel,
    /// Runs in order, for the reason given.
    Sequential(String),
}

/// An iteration space: `size` iterations, independent up to what `kind`
/// combines.
#[derive(Clone, Debug, PartialEq)]
pub struct Space {
    pub size: Size,
    pub kind: Kind,
}

/// How many iterations a space has.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Size {
    Atom(Atom),
    /// The outer dimension of an array.
    Outer(Var),
}

/// What an iteration space computes.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// Each iteration makes its own element of each result (`map`, and
    /// the copies `replicate`, `iota`, `transpose`, `reverse`).
    Map,
    /// A reduction by the lambda (`reduce`).
    Reduce,
    /// An inclusive scan by the lambda.
    Scan,
    /// `reduce_by_index`: each iteration combines into an element of the
    /// destination that its index names.
    Hist,
    /// `scatter`: each iteration writes an element its index names.
    Scatter,
    /// A `for` loop: what each loop parameter is made of.
    Loop(Vec<Role>),
}

/// What a `for` loop does with one of its parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Role {
    /// Passes it on unchanged.
    Same,
    /// `p = p op x`: a reduction.
    Reduce(BinOp),
    /// Writes its element at the loop index (`p with [i, …] = …`).
    Slot,
    /// Adds into its elements (`p with [k, …] += …`): a histogram.
    Hist,
    /// Anything else: the next iteration reads what this one made.
    Carried,
}

impl Program {
    /// The level of `s`: parallel only when the decision said so.
    pub fn is_parallel(&self, s: &Stmt) -> bool {
        self.segments.get(&StmtId::of(s)).is_some_and(|seg| seg.level == Level::Parallel)
    }

    /// The IR, each segment a `--` comment line above its statement.
    pub fn print(&self) -> String {
        let p = &self.ir;
        ir::print::print_program_annotated(p, &|s: &Stmt| {
            let seg = self.segments.get(&StmtId::of(s))?;
            let space = seg.space.as_ref()?;
            Some(describe(p, seg, space))
        })
    }
}

/// `parallel map over n_3`, `sequential loop over 10 (carries y_4)`, …
fn describe(p: &ir::Program, seg: &Segment, space: &Space) -> String {
    let size = match space.size {
        Size::Atom(a) => ir::print::print_atom(p, a),
        Size::Outer(v) => format!("len {}", p.vars.display(v)),
    };
    let kind = match &space.kind {
        Kind::Map => "map".to_string(),
        Kind::Reduce => "reduce".to_string(),
        Kind::Scan => "scan".to_string(),
        Kind::Hist => "histogram".to_string(),
        Kind::Scatter => "scatter".to_string(),
        Kind::Loop(roles) => {
            let parts: Vec<String> = roles
                .iter()
                .map(|r| match r {
                    Role::Same => "same".to_string(),
                    Role::Reduce(op) => format!("reduce ({})", op.symbol()),
                    Role::Slot => "slots".to_string(),
                    Role::Hist => "histogram".to_string(),
                    Role::Carried => "carried".to_string(),
                })
                .collect();
            format!("loop [{}]", parts.join(", "))
        }
    };
    match &seg.level {
        Level::Parallel => format!("parallel {kind} over {size}"),
        Level::Sequential(why) => format!("sequential {kind} over {size} ({why})"),
    }
}

impl crate::driver::Verify for Program {
    fn verify(&self) -> Result<(), String> {
        crate::driver::Verify::verify(&self.ir)?;
        verify(self)
    }
}
