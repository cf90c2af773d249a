//! Edges between variables of one function, for the analyses that propagate
//! along them (liveness in `simplify`, points-to in `alias`).
//!
//! Each variable's successors are a linked list threaded through one vector,
//! so building the graph allocates a few vectors in all, not one per
//! variable (those allocations were most of the cost of both analyses).
//! Successors come back in reverse order of insertion: both analyses compute
//! fixpoints, which do not depend on the order.

use crate::loops::LVar;

const END: u32 = u32::MAX;

pub struct Edges {
    /// The last edge added from each variable, or `END`.
    last: Vec<u32>,
    /// Each edge's target and the edge added before it from the same source.
    links: Vec<(LVar, u32)>,
}

impl Edges {
    /// No edges, between variables numbered below `vars`.
    pub fn new(vars: usize) -> Edges {
        Edges { last: vec![END; vars], links: Vec::new() }
    }

    /// Adds `from → to`. A source numbered beyond the function's variables
    /// grows the table.
    pub fn add(&mut self, from: LVar, to: LVar) {
        let k = from.0 as usize;
        if k >= self.last.len() {
            self.last.resize(k + 1, END);
        }
        self.links.push((to, self.last[k]));
        self.last[k] = (self.links.len() - 1) as u32;
    }

    /// Adds `from → to` when `from` is a variable (a constant has no edges).
    pub fn extend_from(&mut self, from: crate::loops::Operand, to: LVar) {
        if let Some(from) = from.var() {
            self.add(from, to);
        }
    }

    /// The targets of the edges from `v`.
    pub fn from(&self, v: LVar) -> impl Iterator<Item = LVar> + '_ {
        let mut k = self.last.get(v.0 as usize).copied().unwrap_or(END);
        std::iter::from_fn(move || {
            let (to, next) = *self.links.get(k as usize)?;
            k = next;
            Some(to)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_lists_its_own_targets() {
        let mut e = Edges::new(2);
        e.add(LVar(0), LVar(1));
        e.add(LVar(1), LVar(0));
        e.add(LVar(0), LVar(5));
        // Beyond the table: it grows.
        e.add(LVar(7), LVar(0));
        assert_eq!(e.from(LVar(0)).collect::<Vec<_>>(), vec![LVar(5), LVar(1)]);
        assert_eq!(e.from(LVar(1)).collect::<Vec<_>>(), vec![LVar(0)]);
        assert_eq!(e.from(LVar(7)).collect::<Vec<_>>(), vec![LVar(0)]);
        assert_eq!(e.from(LVar(3)).count(), 0);
        assert_eq!(e.from(LVar(100)).count(), 0);
    }
}
