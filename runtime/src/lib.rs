//! Runtime values of Slope: what crosses the boundary of a compiled entry point.
//!
//! Input: JSON documents (decoded against the entry point's declared
//! [`ValueType`]) and NumPy `.npy` files. Output: [`Value`]s for the
//! interpreter or compiled code, and their JSON / `.npy` encodings.
//! Invariant: this crate never depends on the compiler, so tools that only
//! move data (test harnesses, benchmark drivers) can use it on its own.

pub mod aot;
pub mod code;
pub mod failure;
pub mod json;
pub mod math;
pub mod native;
pub mod npy;
pub mod parallel;
pub mod sort;
pub mod span;
pub mod value;
pub mod words;

pub use value::*;
