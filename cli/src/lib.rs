//! What the `slope` binary adds to the library, as a library of its own so
//! that the test suite drives it without a process: the REPL's session
//! (definitions accumulated line by line, expressions evaluated on native
//! code) and the GradBench protocol's state machine. Neither reads the
//! terminal, files or the clock except through what the caller passes.

pub mod gradbench;
pub mod session;
