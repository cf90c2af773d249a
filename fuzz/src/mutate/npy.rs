//! `.npy` byte strings: generated from a random header, then mutated.
//!
//! Input: the case's [`Rng`]. Output: bytes for `slope_runtime::npy::read_npy`.
//! The seeds are built here rather than read from disk: a header of a
//! version (1.0, 2.0, 3.0, or none of them), a dtype (the five Slope reads
//! and some it refuses), an order and a shape (ordinary, empty, 0-d, past the
//! element limit, overflowing `usize`, not a number), written with the
//! spellings NumPy uses and some it does not, followed by data of the right
//! size or not. Then 0–3 byte edits (flips, cuts, insertions, a header
//! length at its extremes).
//! Invariant: outputs stay under about [`super::json::MAX_INPUT_BYTES`].

use crate::rng::Rng;

const MAGIC: &[u8] = b"\x93NUMPY";

const DESCRS: &[&str] = &["<f8", "<f4", "<i8", "<i4", "|b1"];
const ODD_DESCRS: &[&str] = &[">f8", "<f2", "<c16", "|u1", "<U3", "|O", "f8", "<i2", "|i1", "<b1", "", "<f8 ", "'"];

/// Dimensions at the edges: empty, the element limit (2^40) and past it,
/// `usize` and past it.
const EDGE_DIMS: &[&str] =
    &["0", "1099511627776", "1099511627777", "4294967296", "18446744073709551615", "18446744073709551616", "-1", "3L"];

/// A random `.npy` file, then mutated.
pub fn generate(rng: &mut Rng) -> Vec<u8> {
    let mut bytes = seed(rng);
    for _ in 0..rng.below(4) {
        edit(&mut bytes, rng);
    }
    bytes
}

/// A well-formed or nearly well-formed file.
fn seed(rng: &mut Rng) -> Vec<u8> {
    let descr = if rng.one_in(6) { *rng.pick(ODD_DESCRS) } else { *rng.pick(DESCRS) };
    let (shape_text, count) = shape(rng);
    let fortran = if rng.one_in(8) { "True" } else { "False" };
    let quote = if rng.one_in(10) { '"' } else { '\'' };
    let q = |s: &str| format!("{quote}{s}{quote}");
    let mut fields = vec![
        format!("{}: {}", q("descr"), q(descr)),
        format!("{}: {fortran}", q("fortran_order")),
        format!("{}: {shape_text}", q("shape")),
    ];
    if rng.one_in(8) {
        fields.swap(0, 2);
    }
    if rng.one_in(10) {
        fields.remove(rng.below(3));
    }
    if rng.one_in(10) {
        fields.push(format!("{}: {}", q("extra"), q("x")));
    }
    let mut header = format!("{{{}, }}", fields.join(", "));
    let version = *rng.pick(&[1u8, 1, 1, 2, 3, 4]);
    let prefix = if version == 1 { 10 } else { 12 };
    let unpadded = prefix + header.len() + 1;
    header.extend(std::iter::repeat_n(' ', (64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    let item = match descr {
        "<f8" | "<i8" => 8,
        "<f4" | "<i4" => 4,
        _ => 1,
    };
    let mut len = count.map_or(rng.below(64), |c| c.saturating_mul(item).min(4096));
    if rng.one_in(6) {
        len = (len + rng.below(9)).saturating_sub(4);
    }
    out.extend((0..len).map(|_| data_byte(descr, rng)));
    out
}

/// A shape tuple's text and its element count (when small enough to fill).
fn shape(rng: &mut Rng) -> (String, Option<usize>) {
    let rank = *rng.pick(&[0usize, 1, 1, 2, 2, 3, 4, 40]);
    let mut dims: Vec<String> = (0..rank).map(|_| rng.pick(&["0", "1", "2", "3", "5"]).to_string()).collect();
    if rank > 0 && rng.one_in(5) {
        let i = rng.below(rank);
        dims[i] = rng.pick(EDGE_DIMS).to_string();
    }
    let count = dims.iter().try_fold(1usize, |acc, d| d.parse::<usize>().ok().and_then(|d| acc.checked_mul(d)));
    let text = match (dims.len(), rng.one_in(10)) {
        (1, false) => format!("({},)", dims[0]),
        (_, true) => format!("[{}]", dims.join(", ")),
        _ => format!("({})", dims.join(", ")),
    };
    (text, count.filter(|&c| c <= 4096))
}

/// A data byte: for booleans mostly 0 or 1, else anything (NaN and
/// subnormal bit patterns included).
fn data_byte(descr: &str, rng: &mut Rng) -> u8 {
    if descr == "|b1" && !rng.one_in(20) {
        rng.below(2) as u8
    } else {
        rng.next_u64() as u8
    }
}

fn edit(bytes: &mut Vec<u8>, rng: &mut Rng) {
    let at = rng.below(bytes.len() + 1);
    match rng.below(5) {
        0 if at < bytes.len() => bytes[at] ^= 1 << rng.below(8),
        1 => bytes.truncate(at),
        2 => {
            let junk: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next_u64() as u8).collect();
            bytes.splice(at..at, junk);
        }
        3 if bytes.len() >= 12 => {
            let length = *rng.pick(&[[0, 0, 0, 0], [0xff, 0xff, 0, 0], [0xff, 0xff, 0xff, 0xff], [1, 0, 0, 0]]);
            let width = if bytes[6] == 1 { 2 } else { 4 };
            bytes[8..8 + width].copy_from_slice(&length[..width]);
        }
        _ => {
            let copy = bytes[at..].to_vec();
            bytes.extend_from_slice(&copy[..copy.len().min(64)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn some_generated_files_are_readable_and_some_are_not() {
        let (mut read, mut refused) = (0, 0);
        for i in 0..500 {
            let bytes = generate(&mut Rng::for_case(2, "decode", i));
            assert_eq!(bytes, generate(&mut Rng::for_case(2, "decode", i)));
            match slope_runtime::npy::read_npy(&bytes) {
                Ok(_) => read += 1,
                Err(_) => refused += 1,
            }
        }
        assert!(read >= 50 && refused >= 50, "{read} read, {refused} refused");
    }
}
