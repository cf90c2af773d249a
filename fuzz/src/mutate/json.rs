//! Mutations of JSON entry inputs.
//!
//! Input: a seed input's JSON text and the case's [`Rng`]. Output: bytes —
//! usually still JSON of a slightly wrong shape (a value of another type, a
//! ragged or over-long array, a missing, extra or renamed field: what
//! `decode_json_args` must reject with a diagnostic), sometimes no longer JSON
//! at all (cut, junk, bytes that are not UTF-8, numbers out of range, nesting
//! deeper than the parser takes).
//! Invariant: outputs stay under [`MAX_INPUT_BYTES`] unless the seed is larger.

use crate::rng::Rng;
use serde_json::Value as Json;

pub const MAX_INPUT_BYTES: usize = 10_000;

/// Number spellings at or past the edges of what JSON readers accept.
const EDGE_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "-0.0",
    "1e999",
    "-1e999",
    "1e-400",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "123456789012345678901234567890",
    "1099511627777",
    "0.1e1",
    "1E+2",
    ".5",
    "01",
    "1.",
    "NaN",
    "Infinity",
    "-Infinity",
    "3.4028236e38",
];

/// Bytes that break JSON text, or are not UTF-8 at all.
const JUNK: &[&[u8]] = &[
    b"\xff",
    b"\xc3",
    b"\x80",
    b"\0",
    b"\"\\ud800\"",
    b"\"\\u0000\"",
    b",",
    b"]",
    b"}",
    b"{",
    b"[",
    b":",
    b"\"",
    b"null",
    b"\xef\xbb\xbf",
];

/// Mutates JSON text 1–3 times.
pub fn mutate(text: &str, rng: &mut Rng) -> Vec<u8> {
    let limit = MAX_INPUT_BYTES.max(text.len());
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(3) {
        let next = match serde_json::from_slice::<Json>(&bytes) {
            Ok(mut value) if rng.below(3) != 0 => {
                mutate_value(&mut value, rng);
                value.to_string().into_bytes()
            }
            _ => mutate_text(&bytes, rng),
        };
        if next.len() <= limit {
            bytes = next;
        }
    }
    bytes
}

/// Mutates one node of the document, chosen uniformly.
fn mutate_value(value: &mut Json, rng: &mut Rng) {
    let count = count_nodes(value);
    let mut target = rng.below(count);
    let node = nth_node(value, &mut target).expect("the index is below the node count");
    *node = replacement(node, rng);
}

fn count_nodes(value: &Json) -> usize {
    1 + match value {
        Json::Array(items) => items.iter().map(count_nodes).sum(),
        Json::Object(fields) => fields.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// The `n`-th node in preorder (`n` counts down as nodes are passed).
fn nth_node<'v>(value: &'v mut Json, n: &mut usize) -> Option<&'v mut Json> {
    if *n == 0 {
        return Some(value);
    }
    *n -= 1;
    match value {
        Json::Array(items) => items.iter_mut().find_map(|item| nth_node(item, n)),
        Json::Object(fields) => fields.values_mut().find_map(|field| nth_node(field, n)),
        _ => None,
    }
}

/// A new value for `node`: a value of another type, or an array or object
/// edited in place.
fn replacement(node: &Json, rng: &mut Rng) -> Json {
    let mut new = node.clone();
    match (&mut new, rng.below(4)) {
        (Json::Array(items), 0 | 1) if !items.is_empty() => edit_array(items, rng),
        (Json::Object(fields), 0 | 1) if !fields.is_empty() => {
            let key = fields.keys().nth(rng.below(fields.len())).cloned().unwrap_or_default();
            match rng.below(3) {
                0 => {
                    fields.shift_remove(&key);
                }
                1 => {
                    fields.insert(format!("{key}_"), Json::from(1.5));
                }
                _ => {
                    let v = fields.shift_remove(&key).unwrap_or(Json::Null);
                    fields.insert(key.to_uppercase(), v);
                }
            }
        }
        (_, 2) => new = Json::Array(vec![new.clone()]),
        _ => new = other_value(rng),
    }
    new
}

/// Shortens, lengthens or unbalances an array (rows of different lengths).
fn edit_array(items: &mut Vec<Json>, rng: &mut Rng) {
    let i = rng.below(items.len());
    match rng.below(5) {
        0 => {
            items.remove(i);
        }
        1 => items.insert(i, items[i].clone()),
        2 => items.push(Json::Array(vec![items[i].clone()])),
        3 => items.truncate(i),
        _ => {
            let copies = *rng.pick(&[10usize, 100, 400]);
            let item = items[i].clone();
            items.extend(std::iter::repeat_n(item, copies));
        }
    }
}

fn other_value(rng: &mut Rng) -> Json {
    match rng.below(9) {
        0 => Json::Null,
        1 => Json::Bool(rng.one_in(2)),
        2 => Json::from("1.0"),
        3 => Json::Array(Vec::new()),
        4 => Json::Object(Default::default()),
        5 => Json::from(i64::MAX),
        6 => Json::from(u64::MAX),
        7 => Json::from(-0.0),
        _ => Json::from(rng.range(-3, 5)),
    }
}

/// Byte-level edits: cut, drop, duplicate, insert junk, edge numbers, deep nesting.
fn mutate_text(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let at = rng.below(bytes.len() + 1);
    let end = (at + 1 + rng.below(8)).min(bytes.len());
    let mut out = bytes[..at].to_vec();
    match rng.below(6) {
        0 => return out,
        1 => out.extend_from_slice(&bytes[end..]),
        2 => {
            out.extend_from_slice(&bytes[at..end]);
            out.extend_from_slice(&bytes[at..]);
        }
        3 => {
            out.extend_from_slice(rng.pick::<&[u8]>(JUNK));
            out.extend_from_slice(&bytes[at..]);
        }
        4 => return replace_number(bytes, rng),
        _ => {
            let depth = *rng.pick(&[100usize, 127, 128, 129, 3000]);
            let mut nested = vec![b'['; depth];
            nested.extend_from_slice(bytes);
            nested.extend(std::iter::repeat_n(b']', depth));
            return nested;
        }
    }
    out
}

/// Replaces one number in the text by an edge spelling.
fn replace_number(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let starts: Vec<usize> =
        (0..bytes.len()).filter(|&i| bytes[i].is_ascii_digit() && (i == 0 || !is_number_byte(bytes[i - 1]))).collect();
    if starts.is_empty() {
        return bytes.to_vec();
    }
    let start = *rng.pick(&starts);
    let start = if start > 0 && bytes[start - 1] == b'-' { start - 1 } else { start };
    let end = (start + 1..bytes.len()).find(|&i| !is_number_byte(bytes[i])).unwrap_or(bytes.len());
    let mut out = bytes[..start].to_vec();
    out.extend_from_slice(rng.pick(EDGE_NUMBERS).as_bytes());
    out.extend_from_slice(&bytes[end..]);
    out
}

fn is_number_byte(b: u8) -> bool {
    b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_deterministic_and_bounded() {
        let seed = r#"{"xs": [[1.0, 2.0], [3.0, 4.0]], "n": 3, "r": {"a": true}}"#;
        let mut invalid = 0;
        for i in 0..300 {
            let a = mutate(seed, &mut Rng::for_case(1, "decode", i));
            assert_eq!(a, mutate(seed, &mut Rng::for_case(1, "decode", i)));
            assert!(a.len() <= MAX_INPUT_BYTES);
            invalid += usize::from(serde_json::from_slice::<Json>(&a).is_err());
        }
        assert!((30..270).contains(&invalid), "{invalid} of 300 mutants are not JSON");
    }
}
