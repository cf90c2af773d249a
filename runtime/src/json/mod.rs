//! JSON forms of Slope values.
//!
//! Decoding ([`decode`] from a `serde_json::Value`, [`decode_str`] from text
//! without building one) lives in `decode.rs`: JSON and the declared
//! [`ValueType`] in, a [`Value`] or a [`DecodeError`] naming the path of the
//! offending node out. Input of [`encode`]: a [`Value`]; output: its JSON
//! form, or an [`EncodeError`] when a float is NaN or infinite (JSON cannot
//! hold them) or the array has more values than a JSON text should.
//!
//! Invariants: nested lists decode into one dense row-major [`Array`], never
//! into arrays of arrays; an array of tuples or records decodes
//! struct-of-arrays (a tuple/record of arrays sharing the outer shape).
//! [`encode_typed`] undoes that transposition; plain [`encode`] has no type
//! and so writes the struct-of-arrays form as it is. Nothing here panics on
//! bad input.

mod decode;
pub use decode::{decode, decode_str};

use std::fmt;

use serde_json::{Map, Number, Value as Json};

use crate::value::{Array, Scalar, Value, ValueType};

/// A JSON document that does not fit the declared type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Where in the document, e.g. `input.data.model.weights[3][1]`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {}: {}", self.path, self.message)
    }
}

impl std::error::Error for DecodeError {}

/// A value that has no JSON form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodeError {
    /// Where in the value, relative to its root, e.g. `.alpha[2]`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "({})", self.message)
        } else {
            write!(f, "at {}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for EncodeError {}

// ---------------------------------------------------------------- encoding

/// Encodes a value without its type: arrays become nested lists, tuples
/// lists, records objects in field order. Arrays of tuples/records are
/// written in their struct-of-arrays form; use [`encode_typed`] to get the
/// list-of-tuples form back.
pub fn encode(value: &Value) -> Result<Json, EncodeError> {
    encode_at(value, "")
}

fn encode_at(value: &Value, path: &str) -> Result<Json, EncodeError> {
    match value {
        Value::Scalar(s) => encode_scalar(*s).map_err(|message| EncodeError { path: path.to_string(), message }),
        Value::Array(a) => encode_array(a, path),
        Value::Tuple(vs) => {
            let mut out = Vec::with_capacity(vs.len());
            for (i, v) in vs.iter().enumerate() {
                out.push(encode_at(v, &format!("{path}[{i}]"))?);
            }
            Ok(Json::Array(out))
        }
        Value::Record(fs) => {
            let mut out = Map::with_capacity(fs.len());
            for (name, v) in fs {
                out.insert(name.clone(), encode_at(v, &format!("{path}.{name}"))?);
            }
            Ok(Json::Object(out))
        }
    }
}

fn encode_scalar(s: Scalar) -> Result<Json, String> {
    match s {
        Scalar::F64(x) => encode_float(x),
        // Going through the shortest f32 text keeps 0.1f32 as 0.1 rather
        // than 0.10000000149011612.
        Scalar::F32(x) => encode_float(x.to_string().parse::<f64>().unwrap_or(x as f64)),
        Scalar::I64(i) => Ok(Json::from(i)),
        Scalar::Bool(b) => Ok(Json::Bool(b)),
    }
}

fn encode_float(x: f64) -> Result<Json, String> {
    Number::from_f64(x).map(Json::Number).ok_or_else(|| {
        let name = if x.is_nan() {
            "nan"
        } else if x > 0.0 {
            "inf"
        } else {
            "-inf"
        };
        format!("{name} cannot be represented in JSON")
    })
}

/// The most JSON values (lists and numbers) one array may become: the tree
/// costs some 32 bytes a value. An array with a zero dimension holds no data
/// but still writes every row above it: `2^32 × 0` would be 2^32 lists.
pub const MAX_JSON_VALUES: u64 = 1 << 28;

/// How many JSON values an array of this shape is written as.
fn json_values(shape: &[usize]) -> u128 {
    let (mut total, mut level) = (1u128, 1u128);
    for &n in shape {
        level = level.saturating_mul(n as u128);
        total = total.saturating_add(level);
    }
    total
}

fn encode_array(a: &Array, path: &str) -> Result<Json, EncodeError> {
    let values = json_values(&a.shape);
    if values > u128::from(MAX_JSON_VALUES) {
        return Err(EncodeError {
            path: path.to_string(),
            message: format!(
                "an array of shape {:?} is {values} JSON values, more than the limit of {MAX_JSON_VALUES}",
                a.shape
            ),
        });
    }
    let mut leaves = Vec::with_capacity(a.data.len());
    for i in 0..a.data.len() {
        match encode_scalar(a.data.get(i)) {
            Ok(j) => leaves.push(j),
            Err(message) => return Err(EncodeError { path: format!("{path}{}", index_path(&a.shape, i)), message }),
        }
    }
    let mut leaves = leaves.into_iter();
    Ok(nest(&a.shape, &mut leaves))
}

/// `[i][j]…` for flat index `flat` of a row-major array of shape `shape`.
fn index_path(shape: &[usize], mut flat: usize) -> String {
    let mut idx = vec![0; shape.len()];
    for (d, &n) in shape.iter().enumerate().rev() {
        if n > 0 {
            idx[d] = flat % n;
            flat /= n;
        }
    }
    idx.iter().map(|i| format!("[{i}]")).collect()
}

/// Builds nested lists of shape `shape` from row-major leaves.
fn nest(shape: &[usize], leaves: &mut impl Iterator<Item = Json>) -> Json {
    match shape {
        [] => leaves.next().unwrap_or(Json::Null),
        [n, rest @ ..] => Json::Array((0..*n).map(|_| nest(rest, leaves)).collect()),
    }
}

/// Encodes a value as a value of type `ty`: like [`encode`], except that an
/// array of tuples or records (stored struct-of-arrays) is written as a list
/// of lists or a list of objects, the form [`decode`] reads. Errors inside
/// such an array name the component before the index (`[1][3]` for
/// component 1 of element 3), because that is how the value is stored.
pub fn encode_typed(value: &Value, ty: &ValueType) -> Result<Json, EncodeError> {
    encode_typed_at(value, ty, "")
}

fn encode_typed_at(value: &Value, ty: &ValueType, path: &str) -> Result<Json, EncodeError> {
    let mismatch = || EncodeError { path: path.to_string(), message: format!("value does not match type {ty}") };
    match (ty, value) {
        (ValueType::Scalar(e), Value::Scalar(s)) if s.elem_type() == *e => encode_at(value, path),
        (ValueType::Tuple(ts), Value::Tuple(vs)) if ts.len() == vs.len() => {
            let mut out = Vec::with_capacity(vs.len());
            for (i, (v, t)) in vs.iter().zip(ts).enumerate() {
                out.push(encode_typed_at(v, t, &format!("{path}[{i}]"))?);
            }
            Ok(Json::Array(out))
        }
        (ValueType::Record(fs), Value::Record(vs))
            if fs.len() == vs.len() && fs.iter().zip(vs).all(|((a, _), (b, _))| a == b) =>
        {
            let mut out = Map::with_capacity(vs.len());
            for ((name, v), (_, t)) in vs.iter().zip(fs) {
                out.insert(name.clone(), encode_typed_at(v, t, &format!("{path}.{name}"))?);
            }
            Ok(Json::Object(out))
        }
        (ValueType::Array { .. }, _) => {
            let (depth, leaf) = peel(ty);
            match (leaf, value) {
                (ValueType::Scalar(e), Value::Array(a)) if a.elem_type() == *e && a.rank() >= depth => {
                    encode_array(a, path)
                }
                (ValueType::Tuple(ts), Value::Tuple(vs)) if ts.len() == vs.len() => {
                    let mut columns = Vec::with_capacity(vs.len());
                    for (j, (v, t)) in vs.iter().zip(ts).enumerate() {
                        let column_ty = rewrap(ty, t.clone());
                        columns.push(encode_typed_at(v, &column_ty, &format!("{path}[{j}]"))?);
                    }
                    zip(columns, depth, &Json::Array).ok_or_else(mismatch)
                }
                (ValueType::Record(fs), Value::Record(vs))
                    if fs.len() == vs.len() && fs.iter().zip(vs).all(|((a, _), (b, _))| a == b) =>
                {
                    let mut columns = Vec::with_capacity(vs.len());
                    for ((name, v), (_, t)) in vs.iter().zip(fs) {
                        let column_ty = rewrap(ty, t.clone());
                        columns.push(encode_typed_at(v, &column_ty, &format!("{path}.{name}"))?);
                    }
                    let names: Vec<String> = fs.iter().map(|(n, _)| n.clone()).collect();
                    let make = |xs: Vec<Json>| Json::Object(names.iter().cloned().zip(xs).collect());
                    zip(columns, depth, &make).ok_or_else(mismatch)
                }
                _ => Err(mismatch()),
            }
        }
        _ => Err(mismatch()),
    }
}

/// The number of array dimensions of `ty` and the element type inside them.
fn peel(ty: &ValueType) -> (usize, &ValueType) {
    match ty {
        ValueType::Array { elem, .. } => {
            let (d, leaf) = peel(elem);
            (d + 1, leaf)
        }
        _ => (0, ty),
    }
}

/// `ty` with its innermost non-array element replaced by `leaf`.
fn rewrap(ty: &ValueType, leaf: ValueType) -> ValueType {
    match ty {
        ValueType::Array { elem, len } => ValueType::Array { elem: Box::new(rewrap(elem, leaf)), len: *len },
        _ => leaf,
    }
}

/// Transposes `depth` levels of nested lists, one per component, into one
/// nested list whose leaves are `make(components)`. `None` when the
/// components' shapes differ.
fn zip(columns: Vec<Json>, depth: usize, make: &dyn Fn(Vec<Json>) -> Json) -> Option<Json> {
    if depth == 0 {
        return Some(make(columns));
    }
    let mut iters = Vec::with_capacity(columns.len());
    let mut n = None;
    for c in columns {
        let Json::Array(items) = c else { return None };
        if *n.get_or_insert(items.len()) != items.len() {
            return None;
        }
        iters.push(items.into_iter());
    }
    let mut out = Vec::with_capacity(n.unwrap_or(0));
    for _ in 0..n.unwrap_or(0) {
        let row: Vec<Json> = iters.iter_mut().map(|it| it.next()).collect::<Option<_>>()?;
        out.push(zip(row, depth - 1, make)?);
    }
    Some(Json::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{ArrayData, ElemType};
    use serde_json::json;

    fn f64t() -> ValueType {
        ValueType::Scalar(ElemType::F64)
    }
    fn f32t() -> ValueType {
        ValueType::Scalar(ElemType::F32)
    }
    fn i64t() -> ValueType {
        ValueType::Scalar(ElemType::I64)
    }
    fn boolt() -> ValueType {
        ValueType::Scalar(ElemType::Bool)
    }
    fn arr(elem: ValueType) -> ValueType {
        ValueType::array(elem, None)
    }
    fn arr_n(elem: ValueType, n: usize) -> ValueType {
        ValueType::array(elem, Some(n))
    }
    fn rec(fields: &[(&str, ValueType)]) -> ValueType {
        ValueType::Record(fields.iter().map(|(n, t)| (n.to_string(), t.clone())).collect())
    }
    /// Decodes from the `Value` and from its text, which must agree.
    fn both(j: &Json, ty: &ValueType, path: &str) -> Result<Value, DecodeError> {
        let from_value = decode(j, ty, path);
        assert_eq!(from_value, decode_str(&j.to_string(), ty, path), "text and Value decode differently: {j}");
        from_value
    }
    fn dec(j: Json, ty: &ValueType) -> Value {
        both(&j, ty, "input").unwrap()
    }
    fn dec_err(j: Json, ty: &ValueType) -> DecodeError {
        both(&j, ty, "input").unwrap_err()
    }
    fn err(path: &str, message: &str) -> DecodeError {
        DecodeError { path: path.into(), message: message.into() }
    }
    /// Decodes, then checks that both encoders give back the same JSON.
    fn round_trip(j: Json, ty: &ValueType) -> Value {
        let v = dec(j.clone(), ty);
        assert_eq!(encode_typed(&v, ty).unwrap(), j);
        v
    }

    // ---- scalars

    #[test]
    fn f64_accepts_int_and_float() {
        assert_eq!(dec(json!(2), &f64t()), Value::Scalar(Scalar::F64(2.0)));
        assert_eq!(dec(json!(-1.5), &f64t()), Value::Scalar(Scalar::F64(-1.5)));
    }

    #[test]
    fn f32_accepts_numbers() {
        assert_eq!(dec(json!(0.5), &f32t()), Value::Scalar(Scalar::F32(0.5)));
        assert_eq!(dec(json!(3), &f32t()), Value::Scalar(Scalar::F32(3.0)));
    }

    #[test]
    fn f32_out_of_range_is_error() {
        assert_eq!(dec_err(json!(1e300), &f32t()), err("input", "1e+300 is out of range for f32"));
    }

    #[test]
    fn i64_accepts_integers() {
        assert_eq!(dec(json!(-7), &i64t()), Value::Scalar(Scalar::I64(-7)));
        assert_eq!(dec(json!(i64::MAX), &i64t()), Value::Scalar(Scalar::I64(i64::MAX)));
    }

    #[test]
    fn i64_rejects_float() {
        assert_eq!(dec_err(json!(1.5), &i64t()), err("input", "expected an integer, found 1.5"));
        assert_eq!(dec_err(json!(2.0), &i64t()).message, "expected an integer, found 2.0");
    }

    #[test]
    fn i64_rejects_too_large() {
        assert_eq!(dec_err(json!(u64::MAX), &i64t()).message, "18446744073709551615 is out of range for i64");
    }

    #[test]
    fn bool_decodes() {
        assert_eq!(dec(json!(true), &boolt()), Value::Scalar(Scalar::Bool(true)));
        assert_eq!(dec_err(json!(1), &boolt()), err("input", "expected a bool, found 1"));
    }

    #[test]
    fn wrong_type_errors() {
        assert_eq!(dec_err(json!("x"), &f64t()), err("input", "expected a number, found a string"));
        assert_eq!(dec_err(json!(null), &i64t()).message, "expected an integer, found null");
        assert_eq!(dec_err(json!(1.0), &arr(f64t())), err("input", "expected a list, found 1.0"));
        assert_eq!(
            dec_err(json!([1, 2]), &rec(&[("a", f64t())])).message,
            "expected a record (an object), found a list"
        );
        assert_eq!(
            dec_err(json!({}), &ValueType::Tuple(vec![f64t()])).message,
            "expected a tuple (a list of 1 elements), found an object"
        );
    }

    #[test]
    fn scalar_round_trips() {
        round_trip(json!(2.5), &f64t());
        round_trip(json!(0.1), &f32t());
        round_trip(json!(-3), &i64t());
        round_trip(json!(false), &boolt());
    }

    // ---- arrays

    #[test]
    fn rank1_array() {
        let v = round_trip(json!([1.0, 2.0, 3.0]), &arr(f64t()));
        assert_eq!(v, Value::array(vec![3], ArrayData::F64(vec![1.0, 2.0, 3.0])));
    }

    #[test]
    fn rank1_ints_to_f64_array_encode_as_floats() {
        let v = dec(json!([1, 2]), &arr(f64t()));
        assert_eq!(encode(&v).unwrap().to_string(), "[1.0,2.0]");
    }

    #[test]
    fn rank2_array_is_flat_row_major() {
        let v = round_trip(json!([[1, 2, 3], [4, 5, 6]]), &arr(arr(i64t())));
        assert_eq!(v, Value::array(vec![2, 3], ArrayData::I64(vec![1, 2, 3, 4, 5, 6])));
    }

    #[test]
    fn rank3_array() {
        let v = round_trip(json!([[[true], [false]], [[false], [true]]]), &arr(arr(arr(boolt()))));
        assert_eq!(v, Value::array(vec![2, 2, 1], ArrayData::Bool(vec![true, false, false, true])));
    }

    #[test]
    fn f32_array() {
        let v = round_trip(json!([0.1, 2.0]), &arr(f32t()));
        assert_eq!(v, Value::array(vec![2], ArrayData::F32(vec![0.1, 2.0])));
    }

    #[test]
    fn empty_rank1() {
        let v = round_trip(json!([]), &arr(f64t()));
        assert_eq!(v, Value::array(vec![0], ArrayData::F64(vec![])));
    }

    #[test]
    fn empty_rank2_uses_declared_inner_len() {
        let v = dec(json!([]), &arr(arr_n(f64t(), 4)));
        assert_eq!(v, Value::array(vec![0, 4], ArrayData::F64(vec![])));
        let v = dec(json!([]), &arr(arr(f64t())));
        assert_eq!(v, Value::array(vec![0, 0], ArrayData::F64(vec![])));
    }

    #[test]
    fn empty_rows_encode_as_empty_lists() {
        let v = round_trip(json!([[], []]), &arr(arr(f64t())));
        assert_eq!(v, Value::array(vec![2, 0], ArrayData::F64(vec![])));
    }

    #[test]
    fn ragged_array_is_error() {
        let j = json!([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4], [1, 2]]);
        assert_eq!(dec_err(j, &arr(arr(f64t()))), err("input", "row 3 has length 2, expected 4"));
    }

    #[test]
    fn ragged_deep_names_parent() {
        let j = json!([[[1], [2]], [[3], [4, 5]]]);
        assert_eq!(dec_err(j, &arr(arr(arr(f64t())))), err("input[1]", "row 1 has length 2, expected 1"));
    }

    #[test]
    fn declared_length_mismatch() {
        assert_eq!(dec_err(json!([1, 2, 3, 4, 5]), &arr_n(f64t(), 3)), err("input", "expected 3 elements, found 5"));
        assert_eq!(
            dec_err(json!([[1, 2], [3]]), &arr(arr_n(f64t(), 2))),
            err("input[1]", "expected 2 elements, found 1")
        );
    }

    #[test]
    fn element_error_path() {
        let j = json!([[1, 2], [3, "x"]]);
        assert_eq!(dec_err(j, &arr(arr(f64t()))), err("input[1][1]", "expected a number, found a string"));
    }

    #[test]
    fn nested_path_through_records() {
        let ty = rec(&[("model", rec(&[("weights", arr(arr(i64t())))]))]);
        let j = json!({"model": {"weights": [[1, 2], [3, 4.5]]}});
        assert_eq!(
            both(&j, &ty, "input.data").unwrap_err().to_string(),
            "at input.data.model.weights[1][1]: expected an integer, found 4.5"
        );
    }

    #[test]
    fn list_where_scalar_expected() {
        assert_eq!(
            dec_err(json!([[1], [[2]]]), &arr(arr(f64t()))),
            err("input[1][0]", "expected a number, found a list")
        );
    }

    // ---- tuples and records

    #[test]
    fn tuple_round_trip() {
        let ty = ValueType::Tuple(vec![f64t(), i64t(), arr(boolt())]);
        let v = round_trip(json!([1.5, 2, [true]]), &ty);
        assert_eq!(
            v,
            Value::Tuple(vec![
                Value::Scalar(Scalar::F64(1.5)),
                Value::Scalar(Scalar::I64(2)),
                Value::array(vec![1], ArrayData::Bool(vec![true])),
            ])
        );
    }

    #[test]
    fn tuple_wrong_length() {
        let ty = ValueType::Tuple(vec![f64t(), f64t()]);
        assert_eq!(dec_err(json!([1, 2, 3]), &ty), err("input", "expected a tuple of 2 elements, found a list of 3"));
    }

    #[test]
    fn tuple_element_path() {
        let ty = ValueType::Tuple(vec![f64t(), i64t()]);
        assert_eq!(dec_err(json!([1, 0.5]), &ty), err("input[1]", "expected an integer, found 0.5"));
    }

    #[test]
    fn record_round_trip_keeps_declared_order() {
        let ty = rec(&[("b", i64t()), ("a", arr_n(f64t(), 2))]);
        let v = dec(json!({"a": [1, 2], "b": 3}), &ty);
        assert_eq!(
            v,
            Value::Record(vec![
                ("b".into(), Value::Scalar(Scalar::I64(3))),
                ("a".into(), Value::array(vec![2], ArrayData::F64(vec![1.0, 2.0]))),
            ])
        );
        assert_eq!(encode(&v).unwrap().to_string(), r#"{"b":3,"a":[1.0,2.0]}"#);
    }

    #[test]
    fn record_missing_key() {
        let ty = rec(&[("a", f64t()), ("b", f64t())]);
        assert_eq!(dec_err(json!({"a": 1}), &ty), err("input", "missing field `b`"));
    }

    #[test]
    fn record_extra_key_is_ignored() {
        let ty = rec(&[("a", f64t())]);
        let v = dec(json!({"a": 1, "z": "anything"}), &ty);
        assert_eq!(v, Value::Record(vec![("a".into(), Value::Scalar(Scalar::F64(1.0)))]));
    }

    #[test]
    fn record_field_path() {
        let ty = rec(&[("alpha", arr(f64t()))]);
        assert_eq!(dec_err(json!({"alpha": [1, true]}), &ty), err("input.alpha[1]", "expected a number, found true"));
    }

    // ---- arrays of tuples and records (struct-of-arrays)

    #[test]
    fn array_of_tuples_is_tuple_of_arrays() {
        let ty = arr(ValueType::Tuple(vec![f64t(), i64t()]));
        let v = round_trip(json!([[1.0, 2], [3.0, 4], [5.0, 6]]), &ty);
        assert_eq!(
            v,
            Value::Tuple(vec![
                Value::array(vec![3], ArrayData::F64(vec![1.0, 3.0, 5.0])),
                Value::array(vec![3], ArrayData::I64(vec![2, 4, 6])),
            ])
        );
        // Untyped encoding writes the stored form.
        assert_eq!(encode(&v).unwrap().to_string(), "[[1.0,3.0,5.0],[2,4,6]]");
    }

    #[test]
    fn array_of_records_is_record_of_arrays() {
        let ty = arr(rec(&[("x", f64t()), ("v", arr_n(i64t(), 2))]));
        let v = round_trip(json!([{"x": 1.0, "v": [1, 2]}, {"x": 2.0, "v": [3, 4]}]), &ty);
        assert_eq!(
            v,
            Value::Record(vec![
                ("x".into(), Value::array(vec![2], ArrayData::F64(vec![1.0, 2.0]))),
                ("v".into(), Value::array(vec![2, 2], ArrayData::I64(vec![1, 2, 3, 4]))),
            ])
        );
    }

    #[test]
    fn rank2_array_of_tuples() {
        let ty = arr(arr(ValueType::Tuple(vec![boolt(), f64t()])));
        let v = round_trip(json!([[[true, 1.0], [false, 2.0]], [[true, 3.0], [true, 4.0]]]), &ty);
        assert_eq!(
            v,
            Value::Tuple(vec![
                Value::array(vec![2, 2], ArrayData::Bool(vec![true, false, true, true])),
                Value::array(vec![2, 2], ArrayData::F64(vec![1.0, 2.0, 3.0, 4.0])),
            ])
        );
    }

    #[test]
    fn array_of_tuples_of_records() {
        let ty = arr(ValueType::Tuple(vec![rec(&[("a", i64t())]), f64t()]));
        let v = round_trip(json!([[{"a": 1}, 0.5], [{"a": 2}, 1.5]]), &ty);
        assert_eq!(
            v,
            Value::Tuple(vec![
                Value::Record(vec![("a".into(), Value::array(vec![2], ArrayData::I64(vec![1, 2])))]),
                Value::array(vec![2], ArrayData::F64(vec![0.5, 1.5])),
            ])
        );
    }

    #[test]
    fn empty_array_of_tuples() {
        let ty = arr(ValueType::Tuple(vec![f64t(), arr_n(i64t(), 3)]));
        let v = round_trip(json!([]), &ty);
        assert_eq!(
            v,
            Value::Tuple(vec![
                Value::array(vec![0], ArrayData::F64(vec![])),
                Value::array(vec![0, 3], ArrayData::I64(vec![])),
            ])
        );
    }

    #[test]
    fn array_of_tuples_errors() {
        let ty = arr(ValueType::Tuple(vec![f64t(), f64t()]));
        assert_eq!(
            dec_err(json!([[1, 2], [3]]), &ty),
            err("input[1]", "expected a tuple of 2 elements, found a list of 1")
        );
        assert_eq!(dec_err(json!([[1, 2], [3, null]]), &ty), err("input[1][1]", "expected a number, found null"));
    }

    #[test]
    fn array_of_tuples_ragged_component() {
        let ty = arr(ValueType::Tuple(vec![f64t(), arr(f64t())]));
        assert_eq!(
            dec_err(json!([[1, [1, 2]], [2, [3]]]), &ty),
            err("input[1][1]", "has length 1, expected 2 like the other elements")
        );
    }

    #[test]
    fn array_of_records_key_errors() {
        let ty = arr(rec(&[("a", f64t())]));
        assert_eq!(dec_err(json!([{"a": 1}, {}]), &ty), err("input[1]", "missing field `a`"));
        assert!(decode(&json!([{"a": 1, "b": 2}]), &ty, "input").is_ok(), "extra fields are ignored");
    }

    // ---- encoding errors

    #[test]
    fn nan_in_array_names_index() {
        let v = Value::array(vec![4], ArrayData::F64(vec![0.0, 1.0, 2.0, f64::NAN]));
        assert_eq!(
            encode(&v).unwrap_err(),
            EncodeError { path: "[3]".into(), message: "nan cannot be represented in JSON".into() }
        );
    }

    #[test]
    fn infinity_in_record_names_field_and_index() {
        let a = Value::array(vec![2, 2], ArrayData::F32(vec![0.0, 1.0, f32::NEG_INFINITY, 2.0]));
        let v = Value::Record(vec![("beta".into(), Value::Scalar(Scalar::I64(1))), ("alpha".into(), a)]);
        let e = encode(&v).unwrap_err();
        assert_eq!(e.path, ".alpha[1][0]");
        assert_eq!(e.message, "-inf cannot be represented in JSON");
    }

    #[test]
    fn infinity_scalar_in_tuple() {
        let v = Value::Tuple(vec![Value::Scalar(Scalar::F64(1.0)), Value::Scalar(Scalar::F64(f64::INFINITY))]);
        assert_eq!(encode(&v).unwrap_err().to_string(), "at [1]: inf cannot be represented in JSON");
    }

    #[test]
    fn encoding_refuses_arrays_of_too_many_empty_rows() {
        for rows in [1usize << 32, usize::MAX >> 1] {
            let v = Value::array(vec![rows, 0], ArrayData::F64(vec![]));
            let e = encode_typed(&v, &arr(arr(f64t()))).unwrap_err();
            assert!(e.message.contains("more than the limit"), "{}", e.message);
        }
        let v = Value::array(vec![3, 0], ArrayData::F64(vec![]));
        assert_eq!(encode_typed(&v, &arr(arr(f64t()))).unwrap(), serde_json::json!([[], [], []]));
    }

    #[test]
    fn encode_typed_rejects_mismatch() {
        let v = Value::Scalar(Scalar::I64(1));
        assert_eq!(encode_typed(&v, &f64t()).unwrap_err().message, "value does not match type f64");
        let v = Value::Tuple(vec![Value::array(vec![2], ArrayData::F64(vec![1.0, 2.0]))]);
        assert!(encode_typed(&v, &arr(ValueType::Tuple(vec![f64t(), f64t()]))).is_err());
    }

    #[test]
    fn encode_typed_rejects_components_of_different_lengths() {
        let ty = arr(ValueType::Tuple(vec![f64t(), f64t()]));
        let v = Value::Tuple(vec![
            Value::array(vec![2], ArrayData::F64(vec![1.0, 2.0])),
            Value::array(vec![1], ArrayData::F64(vec![1.0])),
        ]);
        assert!(encode_typed(&v, &ty).is_err());
    }

    #[test]
    fn integral_floats_print_with_point() {
        let v = Value::Scalar(Scalar::F64(2.0));
        assert_eq!(encode(&v).unwrap().to_string(), "2.0");
        let v = Value::Scalar(Scalar::F32(3.0));
        assert_eq!(encode(&v).unwrap().to_string(), "3.0");
    }

    // ---- text

    #[test]
    fn text_errors_are_invalid_json_at_the_root() {
        let e = decode_str("[1.0, 2.0", &arr(f64t()), "x").unwrap_err();
        assert_eq!(e.path, "x");
        assert!(e.message.starts_with("invalid JSON: EOF while parsing a list"), "{e}");
        let e = decode_str("[1.0] [2.0]", &arr(f64t()), "x").unwrap_err();
        assert!(e.message.starts_with("invalid JSON: trailing characters"), "{e}");
    }

    #[test]
    fn a_repeated_field_is_an_error() {
        let ty = rec(&[("a", f64t())]);
        assert_eq!(decode_str(r#"{"a": 1, "a": 2}"#, &ty, "x").unwrap_err(), err("x", "duplicate field `a`"));
    }

    #[test]
    fn the_first_error_in_document_order_is_reported() {
        let ty = arr(ValueType::Tuple(vec![arr(f64t()), i64t()]));
        let e = dec_err(json!([[[1, 2], 3], [[1], 4]]), &ty);
        assert_eq!(e, err("input[1][0]", "has length 1, expected 2 like the other elements"));
    }

    #[test]
    fn floats_read_correctly_rounded_and_round_trip() {
        // serde_json's default parser reads this one ulp high; `float_roundtrip` reads it exactly.
        let text = "1844674407370615.0";
        let exact = 1_844_674_407_370_615.0_f64;
        assert_eq!(decode_str(text, &f64t(), "x").unwrap(), Value::Scalar(Scalar::F64(exact)));
        for x in [exact, 0.1, 1.0 / 3.0, 2.2250738585072014e-308, 5e-324, 1.7976931348623157e308, -123.456e-7] {
            let written = encode(&Value::Scalar(Scalar::F64(x))).unwrap().to_string();
            assert_eq!(decode_str(&written, &f64t(), "x").unwrap(), Value::Scalar(Scalar::F64(x)), "{written}");
        }
    }
}
