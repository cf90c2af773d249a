//! The `decode` target: entry inputs, JSON and `.npy`.
//!
//! Input: the bytes of an input, and for JSON a compiled seed program and
//! the entry the input is for. Output: the counts of a passing case, or a
//! [`Finding`]. JSON is decoded from the text (`decode_json_text_args`, what
//! `slope run --input` and the GradBench adapter use) and from a parsed
//! `serde_json::Value` (`decode_json_args`, what the library's JSON calls
//! use). Neither may panic or report E0900; on a document both can read
//! (valid JSON, no repeated keys) they must agree; and decoded values,
//! written back as JSON (`encode_typed`, as results are written), must
//! decode to the same values. A `.npy` file that `read_npy` accepts must
//! make an array whose shape fits its data, and write and read back the same.

use super::{no_internal_error, Checked, Finding, Kind, Stats};
use crate::inputs;
use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use slope::api::{Failure, Program};
use slope::diagnostic::RenderStyle;
use slope_runtime::Value;

type Decoded = Result<Vec<Value>, Failure>;

pub fn json(program: &Program, entry: Option<&str>, bytes: &[u8]) -> Checked<Stats> {
    let Ok(entry) = program.entry_name(entry) else { return Ok(Stats::default()) };
    let Ok(text) = std::str::from_utf8(bytes) else { return Ok(Stats::default()) };
    let from_text = program.decode_json_text_args(&entry, text);
    if let Err(failure) = &from_text {
        no_internal_error(failure, "decoding the input text")?;
    }
    let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else { return Ok(Stats::default()) };
    let from_value = program.decode_json_args(&entry, &json);
    if let Err(failure) = &from_value {
        no_internal_error(failure, "decoding the input value")?;
    }
    if !has_repeated_keys(text) {
        decoders_agree(&from_value, &from_text).map_err(|e| {
            Finding::new(
                Kind::Disagreement,
                format!("the two JSON decoders disagree\nentry `{entry}`, input: {text}\n{e}"),
            )
        })?;
    }
    let Ok(values) = from_text else { return Ok(Stats::default()) };
    round_trip(program, &entry, &values).map_err(|e| {
        let message = format!(
            "decoded values do not read back from the JSON they are written as\nentry `{entry}`, input: {text}\n{e}"
        );
        Finding::new(Kind::Disagreement, message)
    })?;
    Ok(Stats { accepted: true, ..Stats::default() })
}

/// The two decoders go through one visitor: the same values, or the same
/// error. One exception: with several top-level fields that name no
/// parameter, which one the message names depends on the order each decoder
/// keeps them in (the text decoder sorts them), so there the errors need
/// only both say so.
fn decoders_agree(from_value: &Decoded, from_text: &Decoded) -> Result<(), String> {
    let extra_field = |f: &Failure| f.diagnostics.iter().any(|d| d.message.starts_with("the input has a field"));
    match (from_value, from_text) {
        (Ok(a), Ok(b)) if a == b => Ok(()),
        (Err(a), Err(b)) if a.render(RenderStyle::Short) == b.render(RenderStyle::Short) => Ok(()),
        (Err(a), Err(b)) if extra_field(a) && extra_field(b) => Ok(()),
        (a, b) => Err(format!("from a JSON value: {}\nfrom JSON text: {}", show(a), show(b))),
    }
}

/// Writes decoded values as JSON (as results are written) and decodes that
/// text again: the same values must come back. Values with no JSON form
/// (an `f32` input beyond its range is infinite) are left out.
fn round_trip(program: &Program, entry: &str, values: &[Value]) -> Result<(), String> {
    let signature = &program.ir.func(entry).expect("an entry").signature;
    let mut fields = serde_json::Map::new();
    for (value, (name, ty)) in values.iter().zip(&signature.params) {
        let Ok(json) = slope_runtime::json::encode_typed(value, &slope::values::value_type(ty)) else { return Ok(()) };
        fields.insert(name.clone(), json);
    }
    let written = serde_json::Value::Object(fields).to_string();
    match program.decode_json_text_args(entry, &written) {
        Ok(again) if again == values => Ok(()),
        again => {
            Err(format!("decoded: {}\nwritten: {written}\nread back: {}", show(&Ok(values.to_vec())), show(&again)))
        }
    }
}

fn show(result: &Decoded) -> String {
    match result {
        Ok(values) => serde_json::Value::Array(values.iter().map(inputs::value_json).collect()).to_string(),
        Err(failure) => failure.render(RenderStyle::Short),
    }
}

/// Whether some object of the document repeats a key (the text decoder
/// rejects that; a `serde_json::Value` keeps the last, so the two may
/// differ). False for text that is not JSON.
fn has_repeated_keys(text: &str) -> bool {
    serde_json::from_str::<NoRepeatedKeys>(text).is_err() && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// Deserialises any JSON, failing on an object with a repeated key.
struct NoRepeatedKeys;

impl<'de> Deserialize<'de> for NoRepeatedKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoRepeatedKeysVisitor)
    }
}

struct NoRepeatedKeysVisitor;

impl<'de> Visitor<'de> for NoRepeatedKeysVisitor {
    type Value = NoRepeatedKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<NoRepeatedKeys, E> {
        Ok(NoRepeatedKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoRepeatedKeys, E> {
        Ok(NoRepeatedKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoRepeatedKeys, E> {
        Ok(NoRepeatedKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoRepeatedKeys, E> {
        Ok(NoRepeatedKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<NoRepeatedKeys, E> {
        Ok(NoRepeatedKeys)
    }
    fn visit_unit<E>(self) -> Result<NoRepeatedKeys, E> {
        Ok(NoRepeatedKeys)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoRepeatedKeys, A::Error> {
        while seq.next_element::<NoRepeatedKeys>()?.is_some() {}
        Ok(NoRepeatedKeys)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoRepeatedKeys, A::Error> {
        let mut keys = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !keys.insert(key) {
                return Err(A::Error::custom("a repeated key"));
            }
            map.next_value::<NoRepeatedKeys>()?;
        }
        Ok(NoRepeatedKeys)
    }
}

pub fn npy(bytes: &[u8]) -> Checked<Stats> {
    use slope_runtime::npy::{read_npy, write_npy};
    let Ok(array) = read_npy(bytes) else { return Ok(Stats::default()) };
    let disagree = |m: String| Err(Finding::new(Kind::Disagreement, m));
    if array.rank() == 0 || array.data.len() != array.shape.iter().product::<usize>() {
        return disagree(format!("read_npy made an array whose shape does not fit its data\nshape: {:?}", array.shape));
    }
    let written = write_npy(&array);
    match read_npy(&written) {
        Ok(again) if write_npy(&again) == written => Ok(Stats { accepted: true, ..Stats::default() }),
        Ok(again) => disagree(format!("a .npy array reads back differently\n{:?} then {:?}", array.shape, again.shape)),
        Err(e) => disagree(format!("a .npy file write_npy wrote does not read back\nshape {:?}: {e}", array.shape)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_seen_at_any_depth() {
        assert!(has_repeated_keys(r#"{"a": 1, "a": 2}"#));
        assert!(has_repeated_keys(r#"[{"b": {"c": 1, "c": [1]}}]"#));
        assert!(!has_repeated_keys(r#"{"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}"#));
        assert!(!has_repeated_keys(r#"{"a": 1, "a": "#));
    }
}
