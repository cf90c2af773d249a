//! Where in the sources something is: the span every diagnostic and every
//! run-time failure site points at.
//!
//! It lives in the runtime, not the compiler, because run-time errors carry
//! one ([`crate::failure::RuntimeError`]) and no back end depends on the
//! compiler's front end (issue #12). The compiler's `diagnostic` module
//! re-exports it; only the compiler maps a span to text.

/// A byte range in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

/// Index of a source in the compiler's `SourceMap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct FileId(pub u32);

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span { file, start: start as u32, end: end as u32 }
    }
    /// The smallest span covering both (they must be in the same file).
    pub fn to(self, other: Span) -> Span {
        Span { file: self.file, start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}
