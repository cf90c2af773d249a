//! Copy-on-write sharing of statement lists (Note [Shared statement lists]).
//!
//! [`Shared<T>`] is an `Arc<T>` that reads like a `T` (`Deref`) and writes
//! like one too (`DerefMut` copies the list first when someone else holds
//! it). Cloning is a reference-count increment, so copying a body copies its
//! top-level statements and shares every nested body.
//!
//! Invariant: two `Shared` values that are the same allocation are equal, so
//! equality of unchanged sub-trees costs a pointer comparison.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

// Note [Shared statement lists]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The IR is a tree of bodies, and passes are functions from trees to trees:
// a rewrite rule returns a new body, `replace_children` rebuilds a statement
// around a new child, a rollback restores the old body. With plain vectors
// each of these copied every nested body below the statements it touched, so
// a rewrite at the top of a function with large lambdas cost the size of the
// function, thousands of times per compilation. Sharing the statement list of
// every body makes a copy cost the top level only: the nested bodies are the
// same allocations in the old and the new tree. A pass that mutates a body in
// place (`DerefMut`) copies that one list if another tree still holds it, and
// nothing below it. Passes that walk a body mutably without changing it
// should check first (as `walk::substitute` does), or they copy lists they
// did not need to.

/// A reference-counted value with copy-on-write access.
#[derive(Default)]
pub struct Shared<T>(Arc<T>);

impl<T> Shared<T> {
    pub fn new(value: T) -> Shared<T> {
        Shared(Arc::new(value))
    }

    /// Whether `a` and `b` are the same allocation (so certainly equal).
    pub fn same(a: &Shared<T>, b: &Shared<T>) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }

    /// The allocation's address: a name for the value while a clone of
    /// this `Shared` is kept alive (after that, the address may be reused).
    pub fn address(this: &Shared<T>) -> usize {
        Arc::as_ptr(&this.0) as usize
    }
}

impl<T: Clone> Shared<T> {
    /// The value, copied only when it is shared.
    pub fn into_inner(self) -> T {
        Arc::unwrap_or_clone(self.0)
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Shared<T> {
        Shared(Arc::clone(&self.0))
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Clone> DerefMut for Shared<T> {
    fn deref_mut(&mut self) -> &mut T {
        Arc::make_mut(&mut self.0)
    }
}

impl<T: PartialEq> PartialEq for Shared<T> {
    fn eq(&self, other: &Shared<T>) -> bool {
        Shared::same(self, other) || *self.0 == *other.0
    }
}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T> From<T> for Shared<T> {
    fn from(value: T) -> Shared<T> {
        Shared::new(value)
    }
}

impl<A, T: FromIterator<A>> FromIterator<A> for Shared<T> {
    fn from_iter<I: IntoIterator<Item = A>>(iter: I) -> Shared<T> {
        Shared::new(iter.into_iter().collect())
    }
}

impl<T: Clone + IntoIterator> IntoIterator for Shared<T> {
    type Item = T::Item;
    type IntoIter = T::IntoIter;
    fn into_iter(self) -> T::IntoIter {
        self.into_inner().into_iter()
    }
}

impl<'a, T> IntoIterator for &'a Shared<T>
where
    &'a T: IntoIterator,
{
    type Item = <&'a T as IntoIterator>::Item;
    type IntoIter = <&'a T as IntoIterator>::IntoIter;
    fn into_iter(self) -> Self::IntoIter {
        (&*self.0).into_iter()
    }
}

impl<'a, T: Clone> IntoIterator for &'a mut Shared<T>
where
    &'a mut T: IntoIterator,
{
    type Item = <&'a mut T as IntoIterator>::Item;
    type IntoIter = <&'a mut T as IntoIterator>::IntoIter;
    fn into_iter(self) -> Self::IntoIter {
        Arc::make_mut(&mut self.0).into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::Shared;

    #[test]
    fn clones_share_until_written() {
        let a: Shared<Vec<u32>> = vec![1, 2, 3].into();
        let mut b = a.clone();
        assert!(Shared::same(&a, &b));
        b.push(4);
        assert!(!Shared::same(&a, &b));
        assert_eq!(*a, vec![1, 2, 3]);
        assert_eq!(*b, vec![1, 2, 3, 4]);
    }

    #[test]
    fn equality_is_by_value() {
        let a: Shared<Vec<u32>> = vec![1, 2].into();
        let b: Shared<Vec<u32>> = vec![1, 2].into();
        assert!(!Shared::same(&a, &b));
        assert_eq!(a, b);
        assert_ne!(a, Shared::new(vec![2, 1]));
    }
}
