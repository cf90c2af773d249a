//! The built-in functions: their type schemes, written in Slope's own type
//! syntax and parsed once.
//!
//! In a scheme, `A`–`E` are type variables of any type, `T` is a numeric scalar
//! type variable and `F` a floating-point one; lower-case names in `[…]` are
//! size variables (instantiated fresh at each use). An empty size `[]` is not
//! known statically; for `iota`, `replicate` and `tabulate` the checker takes
//! it from the argument when that is a literal or a size parameter. `R` in the
//! Jacobian operators is computed from the function's type ([`super::check`]).

use crate::prims;
use std::sync::LazyLock;

/// `(name, scheme, one-line description)`. The description is what the REPL's
/// `:help` and `docs/language.md` show. The scalar math functions are not
/// listed here but in `crate::prims`, one row each; [`all`] is both.
pub const BUILTINS: &[(&str, &str, &str)] = &[
    // Array combinators.
    ("map", "(A -> B) -> [n]A -> [n]B", "apply a function to every element"),
    ("map2", "(A -> B -> C) -> [n]A -> [n]B -> [n]C", "apply a function elementwise to two arrays"),
    ("map3", "(A -> B -> C -> D) -> [n]A -> [n]B -> [n]C -> [n]D", "apply a function elementwise to three arrays"),
    ("reduce", "(A -> A -> A) -> A -> [n]A -> A", "fold with an associative operator and its neutral element"),
    ("scan", "(A -> A -> A) -> A -> [n]A -> [n]A", "inclusive prefix scan with an associative operator"),
    ("sum", "[n]T -> T", "sum of the elements"),
    ("product", "[n]T -> T", "product of the elements"),
    ("maximum", "[n]T -> T", "largest element (the array must not be empty)"),
    ("minimum", "[n]T -> T", "smallest element (the array must not be empty)"),
    ("argmax", "[n]T -> i64", "index of the largest element (first on ties)"),
    ("argmin", "[n]T -> i64", "index of the smallest element (first on ties)"),
    // Sorting (stable, NaNs last, ties in input order: Note [Sorting] in slope_runtime::sort).
    ("sort", "[n]T -> [n]T", "the elements in ascending order (stable; NaNs last)"),
    ("sort_desc", "[n]T -> [n]T", "the elements in descending order (stable; NaNs last)"),
    ("argsort", "[n]T -> [n]i64", "the indices that sort the array ascending (stable; NaNs last)"),
    ("argsort_desc", "[n]T -> [n]i64", "the indices that sort the array descending (stable; NaNs last)"),
    ("rank", "[n]T -> [n]i64", "each element's position in the ascending sort (0-based; ties by position)"),
    ("top_k", "i64 -> [n]T -> ([]T, []i64)", "the k largest elements, largest first, and their indices"),
    ("iota", "i64 -> []i64", "the array 0, 1, …, n-1"),
    ("replicate", "i64 -> A -> []A", "an array of n copies of a value"),
    ("tabulate", "i64 -> (i64 -> A) -> []A", "the array f 0, f 1, …, f (n-1)"),
    ("zip", "[n]A -> [n]B -> [n](A, B)", "pair up two arrays"),
    ("zip3", "[n]A -> [n]B -> [n]C -> [n](A, B, C)", "triple up three arrays"),
    ("unzip", "[n](A, B) -> ([n]A, [n]B)", "split an array of pairs"),
    ("unzip3", "[n](A, B, C) -> ([n]A, [n]B, [n]C)", "split an array of triples"),
    ("transpose", "[n][m]A -> [m][n]A", "swap the two outer dimensions"),
    ("reverse", "[n]A -> [n]A", "the elements in reverse order"),
    ("concat", "[n]A -> [m]A -> []A", "one array after the other"),
    ("flatten", "[n][m]A -> []A", "merge the two outer dimensions"),
    ("unflatten", "i64 -> i64 -> [k]A -> [][]A", "split the outer dimension into n rows of m"),
    (
        "scatter",
        "[n]A -> [m]i64 -> [m]A -> [n]A",
        "copy of dest with dest[is[k]] = vs[k] (out-of-range indices are ignored)",
    ),
    (
        "reduce_by_index",
        "[n]A -> (A -> A -> A) -> A -> [m]i64 -> [m]A -> [n]A",
        "histogram: dest[is[k]] = op dest[is[k]] vs[k] (out-of-range indices are ignored)",
    ),
    ("length", "[n]A -> i64", "number of elements (outer dimension)"),
    // Trees: any value made of tuples, records and arrays of floats (a model's
    // parameters); `A`'s numbers are all of type `F` (Note [Trees] in check.rs).
    ("tree_map", "(F -> F) -> A -> A", "apply a function to every number of a tree"),
    ("tree_map2", "(F -> F -> F) -> A -> A -> A", "combine the numbers of two trees of one type"),
    ("tree_map3", "(F -> F -> F -> F) -> A -> A -> A -> A", "combine the numbers of three trees of one type"),
    ("tree_sum", "A -> F", "the sum of every number of a tree"),
    ("tree_size", "A -> i64", "how many numbers a tree holds"),
    ("tree_flatten", "A -> []F", "every number of a tree in one vector (leaves in field order, row-major)"),
    ("tree_unflatten", "A -> []F -> A", "a tree shaped like the first argument from the numbers of a vector"),
    // Scalar math: the primitives of `crate::prims` come after these (see [`all`]).
    ("min", "T -> T -> T", "the smaller of two values"),
    ("max", "T -> T -> T", "the larger of two values"),
    // The bits of an i64 (two's complement); shift amounts are taken modulo 64.
    ("bit_and", "i64 -> i64 -> i64", "bitwise and"),
    ("bit_or", "i64 -> i64 -> i64", "bitwise or"),
    ("bit_xor", "i64 -> i64 -> i64", "bitwise exclusive or"),
    ("shl", "i64 -> i64 -> i64", "shl a k: a shifted left by k bits (k modulo 64)"),
    ("shr", "i64 -> i64 -> i64", "shr a k: a shifted right by k bits, zeros coming in (k modulo 64)"),
    ("f64", "T -> f64", "convert to f64"),
    ("f32", "T -> f32", "convert to f32"),
    ("i64", "T -> i64", "convert to i64 (floats truncate toward zero)"),
    ("inf", "f64", "positive infinity"),
    ("nan", "f64", "not a number"),
    ("pi", "f64", "π"),
    // Differentiation.
    ("jvp", "(A -> B) -> A -> A -> B", "forward mode: the derivative of f at x applied to a tangent"),
    ("jvp2", "(A -> B) -> A -> A -> (B, B)", "forward mode: f x and the derivative of f at x applied to a tangent, in one pass"),
    ("vjp", "(A -> B) -> A -> B -> A", "reverse mode: a cotangent of the result pulled back to x"),
    ("vjp2", "(A -> B) -> A -> B -> (B, A)", "reverse mode: f x and a cotangent of it pulled back to x, in one pass"),
    ("grad", "(A -> F) -> A -> A", "gradient of a scalar function"),
    ("jacfwd", "(A -> B) -> A -> R", "Jacobian by forward mode (result shape: output shape, then input shape)"),
    ("jacrev", "(A -> B) -> A -> R", "Jacobian by reverse mode (same shape as jacfwd)"),
    ("hessian", "(A -> F) -> A -> R", "Hessian of a scalar function (forward over reverse)"),
    (
        "checkpoint",
        "i64 -> A -> A",
        "checkpoint k (loop …): the loop, run in segments of k iterations; reverse mode keeps one state per segment",
    ),
    ("stop_gradient", "A -> A", "the value, treated as a constant by differentiation"),
    ("opaque", "A -> A", "the value, which the optimiser must treat as unknown (for honest benchmarks)"),
];

/// Every builtin: [`BUILTINS`], then the math primitives of `crate::prims`
/// and their aliases.
pub fn all() -> &'static [(&'static str, &'static str, &'static str)] {
    static ALL: LazyLock<Vec<(&str, &str, &str)>> = LazyLock::new(|| {
        let unary = prims::UNARY.iter().filter_map(|r| Some((r.name, r.scheme?, r.doc)));
        let binary = prims::BINARY.iter().map(|r| (r.name, r.scheme, r.doc));
        let aliases = prims::ALIASES.iter().map(|(alias, name)| {
            let row = prims::unary_named(name).expect("an alias names a primitive");
            (*alias, row.scheme.expect("a builtin"), row.doc)
        });
        BUILTINS.iter().copied().chain(unary).chain(binary).chain(aliases).collect()
    });
    &ALL
}

pub fn lookup(name: &str) -> Option<(&'static str, &'static str)> {
    all().iter().find(|(n, _, _)| *n == name).map(|(_, s, d)| (*s, *d))
}
