//! The stable error codes of Slope, compile time and run time: one list.
//!
//! Each code has an entry in `docs/errors.md` (a test checks that every
//! code is documented and triggered). The list lives in the runtime because
//! run-time errors name their code ([`crate::failure::RuntimeError`]) and
//! every back end, ahead-of-time libraries included, reports them; the
//! compiler's `diagnostic` module re-exports [`Code`].

macro_rules! codes {
    ($($code:ident => $summary:literal,)*) => {
        /// Stable error codes. Each has an entry in `docs/errors.md`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $($code,)* }
        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$code,)*];
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$code => stringify!($code),)* }
            }
            /// One-line summary, as listed in `docs/errors.md`.
            pub fn summary(self) -> &'static str {
                match self { $(Code::$code => $summary,)* }
            }
            pub fn parse(s: &str) -> Option<Code> {
                match s { $(stringify!($code) => Some(Code::$code),)* _ => None }
            }
        }
    };
}

codes! {
    // Lexing and parsing.
    E0001 => "unexpected token",
    E0002 => "unexpected end of input",
    E0003 => "invalid character",
    E0004 => "malformed number literal",
    E0005 => "unterminated string literal",
    E0006 => "duplicate definition",
    E0007 => "unknown import",
    E0008 => "import cycle",
    E0009 => "program nested too deeply",
    // Names and types.
    E0101 => "unknown name",
    E0102 => "type mismatch",
    E0103 => "wrong number of arguments",
    E0104 => "not a function",
    E0105 => "unknown field",
    E0106 => "tuple index out of range",
    E0107 => "indexing a non-array",
    E0108 => "too many indices",
    E0109 => "size mismatch",
    E0110 => "condition is not bool",
    E0111 => "ambiguous type",
    E0112 => "function value where a first-order value is required",
    E0113 => "recursive definition",
    E0114 => "invalid entry point",
    E0115 => "unknown size",
    E0116 => "not differentiable",
    E0117 => "duplicate field or parameter",
    E0118 => "invalid pattern",
    E0119 => "invalid custom derivative rule",
    E0120 => "unknown type",
    E0121 => "unsupported construct",
    E0122 => "program too large after inlining",
    E0123 => "invalid type parameter",
    E0124 => "differentiated value captured by a function passed to a custom rule",
    E0125 => "`checkpoint` of something that is not a loop",
    // Run time.
    E0201 => "index out of bounds",
    E0202 => "size mismatch at run time",
    E0203 => "integer division by zero",
    E0204 => "invalid argument",
    E0205 => "while loop exceeded its iteration limit",
    E0206 => "derivative check failed",
    E0207 => "out of memory",
    E0208 => "interrupted",
    // Values at the boundary and the command line.
    E0301 => "no such entry point",
    E0302 => "invalid input value",
    E0303 => "cannot read file",
    E0304 => "result is not representable as json",
    E0305 => "invalid command-line argument",
    E0306 => "invalid protocol message",
    E0307 => "cannot write output",
    E0308 => "input too large",
    E0309 => "cannot build the library",
    // Internal.
    E0900 => "internal compiler error",
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
