//! The values of Slope programs at the entry-point boundary, and their types.
//!
//! Input: nothing (plain data definitions). Output: [`Value`], [`Array`],
//! [`Scalar`] and the [`ValueType`] that drives decoding.
//! Invariants: an [`Array`] is row-major, has rank >= 1 and
//! `data.len() == shape.iter().product()`; an array of tuples or records is
//! stored struct-of-arrays (a `Value::Tuple`/`Value::Record` of arrays that
//! share the outer shape), so every array holds a single scalar type.

use std::fmt;
use std::rc::Rc;

/// The scalar element types of Slope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ElemType {
    F64,
    F32,
    I64,
    Bool,
}

impl ElemType {
    /// The Slope spelling of the type, as used in messages.
    pub fn name(self) -> &'static str {
        match self {
            ElemType::F64 => "f64",
            ElemType::F32 => "f32",
            ElemType::I64 => "i64",
            ElemType::Bool => "bool",
        }
    }
}

impl fmt::Display for ElemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One scalar value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar {
    F64(f64),
    F32(f32),
    I64(i64),
    Bool(bool),
}

impl Scalar {
    pub fn elem_type(&self) -> ElemType {
        match self {
            Scalar::F64(_) => ElemType::F64,
            Scalar::F32(_) => ElemType::F32,
            Scalar::I64(_) => ElemType::I64,
            Scalar::Bool(_) => ElemType::Bool,
        }
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug formatting of floats keeps a `.0` on integral values, so a
        // float never reads like an integer in messages.
        match self {
            Scalar::F64(x) => write!(f, "{x:?}"),
            Scalar::F32(x) => write!(f, "{x:?}"),
            Scalar::I64(x) => write!(f, "{x}"),
            Scalar::Bool(x) => write!(f, "{x}"),
        }
    }
}

/// The flat, row-major elements of an array; one vector per element type so
/// that compiled code can take a slice without conversion.
#[derive(Clone, Debug, PartialEq)]
pub enum ArrayData {
    F64(Vec<f64>),
    F32(Vec<f32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

impl ArrayData {
    pub fn elem_type(&self) -> ElemType {
        match self {
            ArrayData::F64(_) => ElemType::F64,
            ArrayData::F32(_) => ElemType::F32,
            ArrayData::I64(_) => ElemType::I64,
            ArrayData::Bool(_) => ElemType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            ArrayData::F64(v) => v.len(),
            ArrayData::F32(v) => v.len(),
            ArrayData::I64(v) => v.len(),
            ArrayData::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element at flat index `i`; panics when out of bounds.
    pub fn get(&self, i: usize) -> Scalar {
        match self {
            ArrayData::F64(v) => Scalar::F64(v[i]),
            ArrayData::F32(v) => Scalar::F32(v[i]),
            ArrayData::I64(v) => Scalar::I64(v[i]),
            ArrayData::Bool(v) => Scalar::Bool(v[i]),
        }
    }

    /// `n` zeros (or `false`s) of the given type.
    pub fn zeros(elem: ElemType, n: usize) -> ArrayData {
        match elem {
            ElemType::F64 => ArrayData::F64(vec![0.0; n]),
            ElemType::F32 => ArrayData::F32(vec![0.0; n]),
            ElemType::I64 => ArrayData::I64(vec![0; n]),
            ElemType::Bool => ArrayData::Bool(vec![false; n]),
        }
    }

    /// An empty vector of the given type with room for `n` elements.
    pub fn with_capacity(elem: ElemType, n: usize) -> ArrayData {
        match elem {
            ElemType::F64 => ArrayData::F64(Vec::with_capacity(n)),
            ElemType::F32 => ArrayData::F32(Vec::with_capacity(n)),
            ElemType::I64 => ArrayData::I64(Vec::with_capacity(n)),
            ElemType::Bool => ArrayData::Bool(Vec::with_capacity(n)),
        }
    }

    /// Appends one element. Panics when its type differs from the array's:
    /// callers build arrays of a type they already checked, so a mismatch
    /// is a bug in the caller, not a user error.
    pub fn push(&mut self, s: Scalar) {
        match (self, s) {
            (ArrayData::F64(v), Scalar::F64(x)) => v.push(x),
            (ArrayData::F32(v), Scalar::F32(x)) => v.push(x),
            (ArrayData::I64(v), Scalar::I64(x)) => v.push(x),
            (ArrayData::Bool(v), Scalar::Bool(x)) => v.push(x),
            (data, s) => panic!("cannot push a {} into an array of {}", s.elem_type(), data.elem_type()),
        }
    }
}

/// A dense, row-major, rank >= 1 array of scalars.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: ArrayData,
}

impl Array {
    pub fn new(shape: Vec<usize>, data: ArrayData) -> Array {
        debug_assert!(!shape.is_empty(), "arrays have rank >= 1");
        debug_assert_eq!(
            data.len(),
            shape.iter().product::<usize>(),
            "array data length does not match shape {shape:?}"
        );
        Array { shape, data }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn elem_type(&self) -> ElemType {
        self.data.elem_type()
    }

    /// The length of the outermost dimension (0 for the rank-0 case that
    /// the invariant rules out, so this never panics).
    pub fn len(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A value at the entry-point boundary. Arrays are reference-counted because
/// the interpreter shares them freely and copies only on write.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    Array(Rc<Array>),
    Tuple(Vec<Value>),
    /// Fields are kept in the order of the declared type.
    Record(Vec<(String, Value)>),
}

impl Value {
    pub fn array(shape: Vec<usize>, data: ArrayData) -> Value {
        Value::Array(Rc::new(Array::new(shape, data)))
    }
}

/// What the entry point expects: drives decoding (JSON has no types of its own).
///
/// An `Array` whose `elem` is an `Array` is one multi-dimensional array; an
/// `Array` whose innermost `elem` is a `Tuple` or `Record` is an array of
/// tuples or records, stored struct-of-arrays.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ValueType {
    Scalar(ElemType),
    Array { elem: Box<ValueType>, len: Option<usize> },
    Tuple(Vec<ValueType>),
    Record(Vec<(String, ValueType)>),
}

impl ValueType {
    /// A value of this type from its leaves, depth first (an array of
    /// tuples or records comes back as a tuple or record of arrays, the
    /// order entry results use); `None` if there are too few.
    pub fn rebuild(&self, leaves: &mut impl Iterator<Item = Value>) -> Option<Value> {
        Some(match self.distribute() {
            ValueType::Tuple(items) => Value::Tuple(items.iter().map(|t| t.rebuild(leaves)).collect::<Option<_>>()?),
            ValueType::Record(fields) => {
                Value::Record(fields.iter().map(|(n, t)| Some((n.clone(), t.rebuild(leaves)?))).collect::<Option<_>>()?)
            }
            _ => leaves.next()?,
        })
    }

    /// An array of tuples or records as a tuple or record of arrays; any
    /// other type as it is.
    pub fn distribute(&self) -> ValueType {
        let ValueType::Array { elem, len } = self else { return self.clone() };
        let wrap = |t: ValueType| ValueType::Array { elem: Box::new(t), len: *len };
        match elem.distribute() {
            ValueType::Tuple(items) => ValueType::Tuple(items.into_iter().map(wrap).collect()),
            ValueType::Record(fields) => ValueType::Record(fields.into_iter().map(|(n, t)| (n, wrap(t))).collect()),
            _ => self.clone(),
        }
    }

    /// Shorthand for `Array { elem, len }`.
    pub fn array(elem: ValueType, len: Option<usize>) -> ValueType {
        ValueType::Array { elem: Box::new(elem), len }
    }

    /// The element type of a scalar or an array of scalars, and the length
    /// the type fixes for each dimension, outermost first (none for a
    /// scalar); `None` for tuples, records and arrays of them.
    pub fn scalar_leaf(&self) -> Option<(ElemType, Vec<Option<usize>>)> {
        let mut lens = Vec::new();
        let mut t = self;
        while let ValueType::Array { elem, len } = t {
            lens.push(*len);
            t = elem;
        }
        match t {
            ValueType::Scalar(e) => Some((*e, lens)),
            _ => None,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueType::Scalar(e) => write!(f, "{e}"),
            ValueType::Array { elem, len } => match len {
                Some(n) => write!(f, "[{n}]{elem}"),
                None => write!(f, "[]{elem}"),
            },
            ValueType::Tuple(ts) => {
                f.write_str("(")?;
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{t}")?;
                }
                f.write_str(")")
            }
            ValueType::Record(fs) => {
                f.write_str("{")?;
                for (i, (name, t)) in fs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{name}: {t}")?;
                }
                f.write_str("}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f64s() -> ValueType {
        ValueType::Scalar(ElemType::F64)
    }

    #[test]
    fn elem_type_display() {
        assert_eq!(ElemType::F64.to_string(), "f64");
        assert_eq!(ElemType::F32.to_string(), "f32");
        assert_eq!(ElemType::I64.to_string(), "i64");
        assert_eq!(ElemType::Bool.to_string(), "bool");
    }

    #[test]
    fn scalar_display_keeps_float_point() {
        assert_eq!(Scalar::F64(2.0).to_string(), "2.0");
        assert_eq!(Scalar::F32(0.5).to_string(), "0.5");
        assert_eq!(Scalar::I64(-3).to_string(), "-3");
        assert_eq!(Scalar::Bool(true).to_string(), "true");
    }

    #[test]
    fn scalar_elem_type() {
        assert_eq!(Scalar::F32(1.0).elem_type(), ElemType::F32);
        assert_eq!(Scalar::Bool(false).elem_type(), ElemType::Bool);
    }

    #[test]
    fn array_data_zeros_get_push() {
        let mut d = ArrayData::zeros(ElemType::I64, 2);
        assert_eq!(d.len(), 2);
        d.push(Scalar::I64(7));
        assert_eq!(d.get(2), Scalar::I64(7));
        assert_eq!(d.get(0), Scalar::I64(0));
        assert_eq!(d.elem_type(), ElemType::I64);
        assert_eq!(ArrayData::zeros(ElemType::Bool, 1).get(0), Scalar::Bool(false));
    }

    #[test]
    #[should_panic(expected = "cannot push a f64 into an array of bool")]
    fn array_data_push_mismatch_panics() {
        ArrayData::Bool(vec![]).push(Scalar::F64(1.0));
    }

    #[test]
    fn array_accessors() {
        let a = Array::new(vec![2, 3], ArrayData::F32(vec![0.0; 6]));
        assert_eq!(a.rank(), 2);
        assert_eq!(a.len(), 2);
        assert_eq!(a.elem_type(), ElemType::F32);
    }

    #[test]
    #[should_panic]
    fn array_new_checks_invariant_in_debug() {
        Array::new(vec![2, 2], ArrayData::F64(vec![1.0]));
    }

    #[test]
    fn value_type_display_arrays() {
        let t = ValueType::array(ValueType::array(f64s(), None), Some(3));
        assert_eq!(t.to_string(), "[3][]f64");
    }

    #[test]
    fn value_type_display_tuple_and_record() {
        let t = ValueType::Tuple(vec![f64s(), ValueType::Scalar(ElemType::I64)]);
        assert_eq!(t.to_string(), "(f64, i64)");
        let r = ValueType::Record(vec![
            ("a".into(), f64s()),
            ("b".into(), ValueType::array(ValueType::Scalar(ElemType::I64), Some(2))),
        ]);
        assert_eq!(r.to_string(), "{a: f64, b: [2]i64}");
    }
}
