//! Decoding JSON into Slope values, driven by the declared type, in one pass.
//!
//! Input: JSON text ([`decode_str`]) or a `serde_json::Value` ([`decode`]),
//! and the [`ValueType`] the entry point declares (JSON has no types of its
//! own, so the type decides whether `1` is an `f64` or an `i64`). Output: a
//! [`Value`], or a [`DecodeError`] naming the path of the offending node.
//!
//! Invariants: both inputs go through the same serde visitor, so text and
//! `Value` decode alike, message for message. Text is never turned into a
//! `serde_json::Value` tree: numbers go straight into typed buffers, so
//! decoding a JSON document needs about the memory of its arrays (8 bytes per
//! `f64`), not ~40× its text. Nested lists decode into one dense row-major
//! [`Array`]; an array of tuples or records decodes struct-of-arrays (a
//! tuple/record of arrays sharing the outer shape). Nothing here panics on
//! bad input.
//! (See Note [One builder per type node].)

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value as Json};

use super::DecodeError;
use crate::value::{Array, ArrayData, ElemType, Scalar, Value, ValueType};

/// Decodes `json` as a value of type `ty`; `path` names `json` in errors.
pub fn decode(json: &Json, ty: &ValueType, path: &str) -> Result<Value, DecodeError> {
    run(ty, path, |seed| seed.deserialize(json).map_err(|e| e.to_string()))
}

/// Decodes JSON text as a value of type `ty`, without building a JSON tree;
/// `path` names the document in errors.
pub fn decode_str(text: &str, ty: &ValueType, path: &str) -> Result<Value, DecodeError> {
    run(ty, path, |seed| {
        let mut de = serde_json::Deserializer::from_str(text);
        seed.deserialize(&mut de).and_then(|()| de.end()).map_err(|e| format!("invalid JSON: {e}"))
    })
}

fn run(
    ty: &ValueType,
    path: &str,
    walk: impl FnOnce(Node<'_, '_>) -> Result<(), String>,
) -> Result<Value, DecodeError> {
    let mut builder = Builder::new(ty);
    let mut ctx = Context { root: path, steps: Vec::new(), error: None };
    if let Err(message) = walk(Node { ty, builder: &mut builder, ctx: &mut ctx }) {
        // The visitor's own error, with its path, when it made one; otherwise
        // the parser's (syntax) error about the document as a whole.
        return Err(ctx.error.unwrap_or_else(|| DecodeError { path: path.to_string(), message }));
    }
    Ok(builder.finish(ty, &mut Vec::new()))
}

// Note [One builder per type node]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The decoder mirrors the declared type with a tree of [`Builder`]s, one per
// node of the type (not per node of the document). Every scalar leaf owns
// one growing buffer; every array node records the length of the first list
// it sees and checks every later list against it (raggedness). Walking the
// document depth-first then appends each scalar to its leaf's buffer in
// row-major order of the outer arrays — which is exactly the struct-of-arrays
// layout — and the shapes are the array nodes' lengths, outermost first.
// An outer array with no rows leaves the inner lengths unseen; the declared
// length (or 0) stands in.

/// What the document gave one node of the declared type so far (Note [One
/// builder per type node]); the type itself is walked alongside.
enum Builder {
    Scalar(ArrayData),
    /// The length of the first list seen at this node.
    Array {
        elem: Box<Builder>,
        width: Option<usize>,
    },
    Tuple(Vec<Builder>),
    /// One builder per declared field, in declared order.
    Record(Vec<Builder>),
}

impl Builder {
    fn new(ty: &ValueType) -> Builder {
        match ty {
            ValueType::Scalar(e) => Builder::Scalar(ArrayData::with_capacity(*e, 0)),
            ValueType::Array { elem, .. } => Builder::Array { elem: Box::new(Builder::new(elem)), width: None },
            ValueType::Tuple(ts) => Builder::Tuple(ts.iter().map(Builder::new).collect()),
            ValueType::Record(fs) => Builder::Record(fs.iter().map(|(_, t)| Builder::new(t)).collect()),
        }
    }

    /// The decoded value of type `ty`; `outer` are the lengths of the
    /// enclosing arrays.
    fn finish(self, ty: &ValueType, outer: &mut Vec<usize>) -> Value {
        match (self, ty) {
            (Builder::Scalar(data), _) if outer.is_empty() => {
                // A walk that succeeded pushed exactly one scalar here.
                Value::Scalar(data.get(0))
            }
            (Builder::Scalar(data), _) => Value::Array(std::rc::Rc::new(Array::new(outer.clone(), data))),
            (Builder::Array { elem, width }, ValueType::Array { elem: elem_ty, len }) => {
                outer.push(width.or(*len).unwrap_or(0));
                let value = elem.finish(elem_ty, outer);
                outer.pop();
                value
            }
            (Builder::Tuple(items), ValueType::Tuple(ts)) => {
                Value::Tuple(items.into_iter().zip(ts).map(|(b, t)| b.finish(t, outer)).collect())
            }
            (Builder::Record(fields), ValueType::Record(fs)) => Value::Record(
                fields.into_iter().zip(fs).map(|(b, (name, t))| (name.clone(), b.finish(t, outer))).collect(),
            ),
            _ => unreachable!("builders mirror their type"),
        }
    }
}

/// What a node of type `ty` expects, for "expected …, found …" messages.
fn expected(ty: &ValueType) -> String {
    match ty {
        ValueType::Scalar(ElemType::F64 | ElemType::F32) => "a number".into(),
        ValueType::Scalar(ElemType::I64) => "an integer".into(),
        ValueType::Scalar(ElemType::Bool) => "a bool".into(),
        ValueType::Array { .. } => "a list".into(),
        ValueType::Tuple(items) => format!("a tuple (a list of {} elements)", items.len()),
        ValueType::Record(_) => "a record (an object)".into(),
    }
}

/// How a node was reached from its parent. Paths are rendered only when an
/// error needs one.
#[derive(Clone, Copy)]
enum Step<'a> {
    /// Element `i` of a list that is one dimension of an array.
    Row(usize),
    /// Component `i` of a tuple.
    Elem(usize),
    Field(&'a str),
}

struct Context<'a> {
    root: &'a str,
    steps: Vec<Step<'a>>,
    /// The first error, with its path (the serde error only unwinds).
    error: Option<DecodeError>,
}

impl Context<'_> {
    fn path_of(&self, steps: &[Step<'_>]) -> String {
        let mut path = self.root.to_string();
        for step in steps {
            match step {
                Step::Row(i) | Step::Elem(i) => path.push_str(&format!("[{i}]")),
                Step::Field(name) => path.push_str(&format!(".{name}")),
            }
        }
        path
    }

    /// Records an error at the current node (or its parent) and returns the
    /// serde error that unwinds the parse.
    fn fail<E: serde::de::Error>(&mut self, at_parent: bool, message: String) -> E {
        let steps = if at_parent { &self.steps[..self.steps.len().saturating_sub(1)] } else { &self.steps[..] };
        let path = self.path_of(steps);
        self.error.get_or_insert(DecodeError { path, message });
        E::custom("the input does not match the declared type")
    }
}

/// A small description of what the document has where a node was expected.
enum Found {
    Null,
    Bool(bool),
    Number(Number),
    String,
    List,
    Object,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Null => f.write_str("null"),
            Found::Bool(b) => write!(f, "{b}"),
            Found::Number(n) => write!(f, "{n}"),
            Found::String => f.write_str("a string"),
            Found::List => f.write_str("a list"),
            Found::Object => f.write_str("an object"),
        }
    }
}

/// The visitor (and seed) for one node of the document: its declared type
/// and its builder.
struct Node<'t, 'b> {
    ty: &'t ValueType,
    builder: &'b mut Builder,
    ctx: &'b mut Context<'t>,
}

impl<'t> Node<'t, '_> {
    /// A scalar, number or bool, where the builder may or may not want one.
    fn scalar<E: serde::de::Error>(self, found: Found) -> Result<(), E> {
        let Builder::Scalar(data) = self.builder else { return self.mismatch(found) };
        match scalar(&found, data.elem_type()) {
            Ok(Some(s)) => {
                data.push(s);
                Ok(())
            }
            Ok(None) => {
                let message = format!("expected {}, found {found}", expected(self.ty));
                Err(self.ctx.fail(false, message))
            }
            Err(message) => Err(self.ctx.fail(false, message)),
        }
    }

    fn mismatch<E: serde::de::Error>(self, found: Found) -> Result<(), E> {
        let message = format!("expected {}, found {found}", expected(self.ty));
        Err(self.ctx.fail(false, message))
    }

    fn list<'de, A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        match (self.builder, self.ty) {
            (Builder::Array { elem, width }, ValueType::Array { elem: elem_ty, len: declared }) => {
                let mut n = 0;
                loop {
                    self.ctx.steps.push(Step::Row(n));
                    let next = seq.next_element_seed(Node { ty: elem_ty, builder: elem, ctx: &mut *self.ctx });
                    self.ctx.steps.pop();
                    match next? {
                        Some(()) => n += 1,
                        None => break,
                    }
                }
                if let Some(k) = *declared {
                    if n != k {
                        return Err(self.ctx.fail(false, format!("expected {k} elements, found {n}")));
                    }
                }
                match *width {
                    None => *width = Some(n),
                    Some(m) if m != n => return Err(ragged(self.ctx, n, m)),
                    Some(_) => {}
                }
                Ok(())
            }
            (Builder::Tuple(items), ValueType::Tuple(tys)) => {
                let k = items.len();
                let mut n = 0;
                while n < k {
                    self.ctx.steps.push(Step::Elem(n));
                    let next = seq.next_element_seed(Node { ty: &tys[n], builder: &mut items[n], ctx: &mut *self.ctx });
                    self.ctx.steps.pop();
                    match next? {
                        Some(()) => n += 1,
                        None => break,
                    }
                }
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                if n != k {
                    return Err(self.ctx.fail(false, format!("expected a tuple of {k} elements, found a list of {n}")));
                }
                Ok(())
            }
            (builder, ty) => Node { ty, builder, ctx: self.ctx }.mismatch(Found::List),
        }
    }

    fn object<'de, A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (Builder::Record(fields), ValueType::Record(declared)) = (&mut *self.builder, self.ty) else {
            return self.mismatch(Found::Object);
        };
        let mut seen = vec![false; fields.len()];
        while let Some(key) = map.next_key::<String>()? {
            // Fields the type does not declare are skipped: inputs such as
            // GradBench's carry data an entry may not need.
            let Some(j) = declared.iter().position(|(name, _)| *name == key) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if std::mem::replace(&mut seen[j], true) {
                return Err(self.ctx.fail(false, format!("duplicate field `{key}`")));
            }
            let (name, ty) = &declared[j];
            self.ctx.steps.push(Step::Field(name));
            let result = map.next_value_seed(Node { ty, builder: &mut fields[j], ctx: &mut *self.ctx });
            self.ctx.steps.pop();
            result?;
        }
        if let Some(((name, _), _)) = declared.iter().zip(&seen).find(|(_, seen)| !**seen) {
            return Err(self.ctx.fail(false, format!("missing field `{name}`")));
        }
        Ok(())
    }
}

/// The error for a list whose length differs from its siblings': rows of one
/// array name their parent; a component of an array of tuples or records is
/// compared with the same component of the other elements.
fn ragged<E: serde::de::Error>(ctx: &mut Context<'_>, n: usize, m: usize) -> E {
    match ctx.steps.last() {
        Some(Step::Row(i)) => {
            let i = *i;
            ctx.fail(true, format!("row {i} has length {n}, expected {m}"))
        }
        _ => ctx.fail(false, format!("has length {n}, expected {m} like the other elements")),
    }
}

/// The scalar of type `elem` that `found` is; `Ok(None)` when it is not one
/// at all, `Err` when it is a number out of range or not an integer.
fn scalar(found: &Found, elem: ElemType) -> Result<Option<Scalar>, String> {
    match (elem, found) {
        // Without serde_json's arbitrary_precision every number has an f64 view.
        (ElemType::F64, Found::Number(n)) => Ok(Some(Scalar::F64(n.as_f64().unwrap_or(f64::NAN)))),
        (ElemType::F32, Found::Number(n)) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            let y = x as f32;
            // A finite f64 beyond f32's range would silently become infinity.
            if x.is_finite() && !y.is_finite() {
                Err(format!("{n} is out of range for f32"))
            } else {
                Ok(Some(Scalar::F32(y)))
            }
        }
        (ElemType::I64, Found::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Some(Scalar::I64(i))),
            None if n.is_u64() => Err(format!("{n} is out of range for i64")),
            None => Ok(None),
        },
        (ElemType::Bool, Found::Bool(b)) => Ok(Some(Scalar::Bool(*b))),
        _ => Ok(None),
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&expected(self.ty))
    }

    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<(), E> {
        self.scalar(Found::Bool(b))
    }

    fn visit_i64<E: serde::de::Error>(self, i: i64) -> Result<(), E> {
        self.scalar(Found::Number(i.into()))
    }

    fn visit_u64<E: serde::de::Error>(self, u: u64) -> Result<(), E> {
        self.scalar(Found::Number(u.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, x: f64) -> Result<(), E> {
        // JSON numbers are finite: serde_json rejects what would overflow.
        match Number::from_f64(x) {
            Some(n) => self.scalar(Found::Number(n)),
            None => Err(E::custom(format!("{x} is not a JSON number"))),
        }
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.mismatch(Found::String)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.mismatch(Found::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.mismatch(Found::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        self.list(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.object(map)
    }
}
