//! Random arguments for an entry point, and values written for comparison.
//!
//! Input: an entry's surface [`Signature`] and the case's [`Rng`]. Output:
//! argument [`Value`]s as `decode_json_args` would produce them (arrays of
//! tuples or records struct-of-arrays), so they go straight to
//! `Program::call_values` — which lets them hold what JSON cannot: NaN,
//! infinities, -0.0.
//!
//! Two flavours: [`Flavour::Tame`] (small consistent sizes, ordinary numbers:
//! the program's own domain) and [`Flavour::Wild`] (edge numbers, empty and
//! mismatched sizes, huge and negative integers).
//!
//! Invariants: a statically known dimension (`[3]f64`) always gets its size —
//! `decode_json_args` enforces it, and `call_values` trusts its caller;
//! arrays stay small (at most [`MAX_ELEMENTS`] elements per argument); and no
//! integer lies between 2^6 and 2^40 in magnitude. Such sizes allocate
//! gigabytes that the system may or may not grant, and then the engines may
//! legitimately differ (see Note [Sizes the system decides] in `targets/engines.rs`).

use crate::rng::Rng;
use slope::ir::Signature;
use slope::types::{Dim, ScalarType, Type};
use slope_runtime::{Array, ArrayData, Scalar, Value};
use std::collections::HashMap;

/// The largest argument array built.
pub const MAX_ELEMENTS: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    Tame,
    Wild,
}

const EDGE_F64: &[f64] = &[
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    -0.0,
    0.0,
    1e308,
    -1e308,
    f64::MAX,
    f64::MIN_POSITIVE,
    5e-324,
    1.0,
    -1.0,
    0.5,
    1e-8,
    1e16,
    -2.5,
];

/// Integers at the edges: small ones (sizes, indices, counts), the ends of
/// `i64`, and the allocation limit (2^40 elements) just past it.
const EDGE_I64: &[i64] =
    &[0, 1, -1, 2, 3, 63, 64, -64, i64::MIN, i64::MIN + 1, i64::MAX, (1 << 40) + 1, -(1 << 40), 1 << 62];

const TAME_SIZES: &[usize] = &[0, 1, 2, 3, 4];
const WILD_SIZES: &[usize] = &[0, 1, 2, 3, 5, 7, 16];

/// Arguments for `signature`, or `None` when a parameter cannot be built
/// small (a statically known dimension beyond [`MAX_ELEMENTS`]).
pub fn arguments(signature: &Signature, rng: &mut Rng, flavour: Flavour) -> Option<Vec<Value>> {
    let mut builder = Builder { rng, flavour, sizes: HashMap::new() };
    signature.params.iter().map(|(_, ty)| builder.value(ty, &[])).collect()
}

struct Builder<'r> {
    rng: &'r mut Rng,
    flavour: Flavour,
    /// The size chosen for each size parameter (`[n]`).
    sizes: HashMap<String, usize>,
}

impl Builder<'_> {
    /// A value of type `ty` under the outer dimensions `outer` (struct-of-arrays).
    fn value(&mut self, ty: &Type, outer: &[usize]) -> Option<Value> {
        match ty {
            Type::Scalar(s) if outer.is_empty() => Some(Value::Scalar(self.scalar(*s))),
            Type::Scalar(s) => {
                let count = outer.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))?;
                (count <= MAX_ELEMENTS).then(|| Value::array(outer.to_vec(), self.data(*s, count)))
            }
            Type::Array(elem, dim) => {
                let mut shape = outer.to_vec();
                shape.push(self.size(dim)?);
                self.value(elem, &shape)
            }
            Type::Tuple(items) => items.iter().map(|t| self.value(t, outer)).collect::<Option<_>>().map(Value::Tuple),
            Type::Record(fields) => fields
                .iter()
                .map(|(name, t)| Some((name.clone(), self.value(t, outer)?)))
                .collect::<Option<_>>()
                .map(Value::Record),
            // Entry points are first order: nothing else reaches the boundary.
            Type::Func(..) | Type::Var(_) | Type::Param(_) | Type::Unknown => None,
        }
    }

    fn size(&mut self, dim: &Dim) -> Option<usize> {
        let table = if self.flavour == Flavour::Tame { TAME_SIZES } else { WILD_SIZES };
        match dim {
            Dim::Const(k) => usize::try_from(*k).ok().filter(|&k| k <= MAX_ELEMENTS),
            Dim::Named(name) => {
                let fresh = *self.rng.pick(table);
                let size = *self.sizes.entry(name.clone()).or_insert(fresh);
                // Now and then a second use of a size disagrees with the first (E0202).
                let mismatch = self.flavour == Flavour::Wild && self.rng.one_in(6);
                Some(if mismatch { fresh } else { size })
            }
            Dim::Any | Dim::Var(_) => Some(*self.rng.pick(table)),
        }
    }

    fn scalar(&mut self, s: ScalarType) -> Scalar {
        let edge = self.flavour == Flavour::Wild && self.rng.one_in(3);
        match s {
            ScalarType::F64 => Scalar::F64(self.float(edge)),
            ScalarType::F32 => Scalar::F32(self.float(edge) as f32),
            ScalarType::I64 if edge => Scalar::I64(*self.rng.pick(EDGE_I64)),
            ScalarType::I64 => Scalar::I64(self.rng.range(0, 4)),
            ScalarType::Bool => Scalar::Bool(self.rng.one_in(2)),
        }
    }

    fn float(&mut self, edge: bool) -> f64 {
        if edge {
            *self.rng.pick(EDGE_F64)
        } else {
            // Quarters: exact in every format, so rounding never hides a difference.
            (self.rng.signed() * 12.0).round() / 4.0
        }
    }

    fn data(&mut self, s: ScalarType, count: usize) -> ArrayData {
        let mut data = ArrayData::with_capacity(slope::values::elem_type(s), count);
        for _ in 0..count {
            let x = self.scalar(s);
            data.push(x);
        }
        data
    }
}

/// An argument list as an input object (parameter name to value), for
/// reports and for `-- input:` lines: the JSON form `slope run --input`
/// reads when every float is finite, else the same form with non-finite
/// floats written as the strings `"NaN"`, `"inf"`, `"-inf"`.
pub fn input_json(signature: &Signature, args: &[Value]) -> serde_json::Value {
    let fields = signature.params.iter().zip(args).map(|((name, ty), value)| {
        let typed = slope_runtime::json::encode_typed(value, &slope::values::value_type(ty));
        (name.clone(), typed.unwrap_or_else(|_| value_json(value)))
    });
    serde_json::Value::Object(fields.collect())
}

/// Arrays whose nested-list form would have more JSON values than this
/// are written flat (billions of empty rows cost nothing to compute).
const MAX_NESTED_VALUES: u128 = 1 << 20;

/// A value as JSON with every float kept: non-finite floats become strings,
/// arrays of tuples stay struct-of-arrays, and arrays are nested lists —
/// or `{"shape": [...], "data": [...]}` when the lists would be too many.
/// Two results agree exactly when their `value_json`s do (up to
/// `engines_agree`'s tolerance).
pub fn value_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::Scalar(s) => scalar_json(*s),
        Value::Array(a) if nested_values(&a.shape) > MAX_NESTED_VALUES => {
            let data = (0..a.data.len()).map(|i| scalar_json(a.data.get(i))).collect();
            serde_json::json!({"shape": a.shape, "data": J::Array(data)})
        }
        Value::Array(a) => nested(a, 0, &mut 0),
        Value::Tuple(items) => J::Array(items.iter().map(value_json).collect()),
        Value::Record(fields) => J::Object(fields.iter().map(|(n, v)| (n.clone(), value_json(v))).collect()),
    }
}

/// How many JSON values (lists and leaves) the nested form of `shape` has.
fn nested_values(shape: &[usize]) -> u128 {
    let mut rows: u128 = 1;
    let mut total: u128 = 0;
    for &d in shape {
        rows = rows.saturating_mul(d as u128);
        total = total.saturating_add(rows);
    }
    total
}

fn nested(array: &Array, axis: usize, next: &mut usize) -> serde_json::Value {
    let rows = (0..array.shape[axis]).map(|_| {
        if axis + 1 == array.rank() {
            *next += 1;
            scalar_json(array.data.get(*next - 1))
        } else {
            nested(array, axis + 1, next)
        }
    });
    serde_json::Value::Array(rows.collect())
}

fn scalar_json(s: Scalar) -> serde_json::Value {
    let float = |x: f64| {
        if x.is_nan() {
            serde_json::Value::from("NaN")
        } else if x.is_infinite() {
            serde_json::Value::from(if x > 0.0 { "inf" } else { "-inf" })
        } else {
            serde_json::Value::from(x)
        }
    };
    match s {
        Scalar::F64(x) => float(x),
        Scalar::F32(x) => float(x as f64),
        Scalar::I64(x) => serde_json::Value::from(x),
        Scalar::Bool(b) => serde_json::Value::from(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signature(src: &str) -> Signature {
        let program = slope::api::Program::compile("s.slope", src, &slope::driver::no_files).unwrap();
        program.ir.func("f").unwrap().signature.clone()
    }

    #[test]
    fn arguments_decode_like_json_inputs() {
        let sig = signature("entry f [n] (xs: [n]f64) (ps: [n](f64, i64)) (r: {a: [2]f32, b: bool}) : f64 = 1.0\n");
        let mut rng = Rng::new(9);
        let args = arguments(&sig, &mut rng, Flavour::Tame).unwrap();
        let n = match &args[0] {
            Value::Array(a) => a.shape[0],
            other => panic!("{other:?}"),
        };
        let Value::Tuple(columns) = &args[1] else { panic!("struct of arrays") };
        assert!(columns.iter().all(|c| matches!(c, Value::Array(a) if a.shape == vec![n])));
        let Value::Record(fields) = &args[2] else { panic!("a record") };
        assert!(matches!(&fields[0].1, Value::Array(a) if a.shape == vec![2]));
        // The JSON form decodes back to the same values.
        let program = slope::api::Program::compile(
            "s.slope",
            "entry f [n] (xs: [n]f64) (ps: [n](f64, i64)) (r: {a: [2]f32, b: bool}) : f64 = 1.0\n",
            &slope::driver::no_files,
        )
        .unwrap();
        let decoded = program.decode_json_args("f", &input_json(&sig, &args)).unwrap();
        assert_eq!(decoded, args);
    }

    #[test]
    fn non_finite_floats_are_written_as_strings() {
        let value = Value::array(vec![2, 2], ArrayData::F64(vec![1.0, f64::NAN, f64::NEG_INFINITY, -0.0]));
        assert_eq!(value_json(&value), serde_json::json!([[1.0, "NaN"], ["-inf", -0.0]]));
    }

    #[test]
    fn many_empty_rows_are_written_flat() {
        let value = Value::array(vec![1 << 40, 0], ArrayData::F64(Vec::new()));
        assert_eq!(value_json(&value), serde_json::json!({"shape": [1u64 << 40, 0], "data": []}));
    }
}
