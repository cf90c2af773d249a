//! The boundary between surface values and IR leaves.
//!
//! An entry point's parameters and result have surface types (records,
//! tuples, arrays of them); the IR sees only their leaves. This module maps
//! surface types to the runtime's [`ValueType`] (for JSON decoding), splits a
//! decoded [`Value`] into leaves, and rebuilds a [`Value`] from result leaves.
//! The leaf order is the one of `crate::elab::leaf_types`: depth first,
//! record fields by name, arrays of tuples as tuples of arrays.

use crate::types::Dim;
/// The language's types, as entries' signatures give them.
pub use crate::types::{ScalarType, Type};
use slope_runtime::{ElemType, Value, ValueType};

pub fn elem_type(s: ScalarType) -> ElemType {
    match s {
        ScalarType::F64 => ElemType::F64,
        ScalarType::F32 => ElemType::F32,
        ScalarType::I64 => ElemType::I64,
        ScalarType::Bool => ElemType::Bool,
    }
}

/// The runtime description of a first-order surface type.
pub fn value_type(ty: &Type) -> ValueType {
    match ty {
        Type::Scalar(s) => ValueType::Scalar(elem_type(*s)),
        Type::Array(e, d) => {
            let len = match d {
                Dim::Const(k) => Some(*k as usize),
                _ => None,
            };
            ValueType::Array { elem: Box::new(value_type(e)), len }
        }
        Type::Tuple(ts) => ValueType::Tuple(ts.iter().map(value_type).collect()),
        Type::Record(fs) => ValueType::Record(fs.iter().map(|(n, t)| (n.clone(), value_type(t))).collect()),
        // Entry points are first order (checked); other types never reach here.
        Type::Func(..) | Type::Var(_) | Type::Param(_) | Type::Unknown => ValueType::Tuple(Vec::new()),
    }
}

/// The leaves of a decoded value (its scalars and arrays), in IR parameter
/// order. Arrays are shared, not copied.
pub fn flatten(value: &Value, out: &mut Vec<Value>) {
    match value {
        Value::Tuple(vs) => vs.iter().for_each(|v| flatten(v, out)),
        Value::Record(fs) => fs.iter().for_each(|(_, v)| flatten(v, out)),
        leaf => out.push(leaf.clone()),
    }
}

/// Rebuilds a value of type `ty` from result leaves.
pub fn unflatten(ty: &Type, leaves: &mut impl Iterator<Item = Value>) -> Value {
    value_type(ty).rebuild(leaves).expect("a leaf per scalar or array")
}
