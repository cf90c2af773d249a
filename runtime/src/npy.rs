//! NumPy `.npy` files: the binary form of large array inputs and outputs.
//!
//! Input of [`read_npy`]: the bytes of a `.npy` file (format version 1.0,
//! 2.0 or 3.0). Output: an [`Array`], or an [`NpyError`] saying what is
//! wrong. Input of [`write_npy`]: an [`Array`]; output: a version 1.0 file.
//!
//! The format is small enough to write by hand: the magic `\x93NUMPY`, two
//! version bytes, a little-endian header length (u16 in 1.0, u32 later), a
//! Python dict literal with `descr`, `fortran_order` and `shape`, then the raw
//! data. Invariants: only little-endian `<f8`, `<f4`, `<i8`, `<i4` (widened to
//! i64, the only integer type of Slope) and `|b1` are read; data must be in C
//! (row-major) order and of exactly the size the header promises; 0-d arrays
//! are refused because Slope arrays have rank >= 1. Written files start their
//! data at a multiple of 64 bytes, as NumPy itself does, so readers can map
//! the data aligned.

use std::fmt;

use crate::value::{Array, ArrayData};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Why a `.npy` file cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyError {
    pub message: String,
}

impl fmt::Display for NpyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NpyError {}

fn err<T>(message: impl Into<String>) -> Result<T, NpyError> {
    Err(NpyError { message: message.into() })
}

/// The element encodings this reader understands.
#[derive(Clone, Copy)]
enum Dtype {
    F64,
    F32,
    I64,
    I32,
    Bool,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::Bool => 1,
        }
    }
}

/// Parses a `.npy` file.
pub fn read_npy(bytes: &[u8]) -> Result<Array, NpyError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return err("not a .npy file (bad magic)");
    }
    let (major, minor) = match bytes.get(6..8) {
        Some(v) => (v[0], v[1]),
        None => return err("truncated .npy file: no version"),
    };
    let (header_len, header_start) = match (major, minor) {
        (1, 0) => match bytes.get(8..10) {
            Some(b) => (u16::from_le_bytes([b[0], b[1]]) as usize, 10),
            None => return err("truncated .npy file: no header length"),
        },
        (2, 0) | (3, 0) => match bytes.get(8..12) {
            Some(b) => (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12),
            None => return err("truncated .npy file: no header length"),
        },
        _ => return err(format!("unsupported .npy version {major}.{minor}")),
    };
    let data_start = header_start + header_len;
    let Some(header) = bytes.get(header_start..data_start) else {
        return err("truncated .npy file: header is cut short");
    };
    // Versions 1.0 and 2.0 are latin-1, 3.0 is utf-8; every header NumPy
    // writes for the dtypes we accept is plain ASCII, so utf-8 covers both.
    let Ok(header) = std::str::from_utf8(header) else {
        return err("the .npy header is not text");
    };
    let header = parse_header(header)?;
    if header.fortran_order {
        return err("fortran-order .npy files are not supported, save a C-order array \
             (np.ascontiguousarray)");
    }
    if header.shape.is_empty() {
        return err("0-d arrays are not supported, use a JSON scalar");
    }
    let dtype = parse_descr(&header.descr)?;
    // Each dimension on its own, whatever the others: `(0, 2**64 - 1)` holds
    // no data, but its second dimension would reach the program as -1.
    if let Some(&n) = header.shape.iter().find(|&&n| n as u64 > crate::native::MAX_ELEMENTS) {
        return err(format!("the .npy dimension {n} exceeds the limit of {} elements", crate::native::MAX_ELEMENTS));
    }
    let Some(count) = header.shape.iter().try_fold(1usize, |acc, &n| acc.checked_mul(n)) else {
        return err("the .npy shape is too large");
    };
    let Some(nbytes) = count.checked_mul(dtype.size()) else {
        return err("the .npy shape is too large");
    };
    let data = &bytes[data_start..];
    if data.len() < nbytes {
        return err(format!("truncated .npy file: expected {nbytes} bytes of data, found {}", data.len()));
    }
    if data.len() > nbytes {
        return err(format!("{} unexpected bytes after the .npy data", data.len() - nbytes));
    }
    let data = decode_data(dtype, data)?;
    Ok(Array::new(header.shape, data))
}

fn decode_data(dtype: Dtype, data: &[u8]) -> Result<ArrayData, NpyError> {
    Ok(match dtype {
        Dtype::F64 => ArrayData::F64(data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()),
        Dtype::F32 => ArrayData::F32(data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()),
        Dtype::I64 => ArrayData::I64(data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()),
        Dtype::I32 => {
            ArrayData::I64(data.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect())
        }
        Dtype::Bool => {
            let mut out = Vec::with_capacity(data.len());
            for &b in data {
                match b {
                    0 => out.push(false),
                    1 => out.push(true),
                    _ => return err(format!("invalid bool byte {b} in .npy data")),
                }
            }
            ArrayData::Bool(out)
        }
    })
}

fn parse_descr(descr: &str) -> Result<Dtype, NpyError> {
    match descr {
        "<f8" => Ok(Dtype::F64),
        "<f4" => Ok(Dtype::F32),
        "<i8" => Ok(Dtype::I64),
        "<i4" => Ok(Dtype::I32),
        "|b1" => Ok(Dtype::Bool),
        d if d.starts_with('>') => {
            err(format!("big-endian dtype '{d}' is not supported, convert with .astype('<{}')", &d[1..]))
        }
        d => err(format!("unsupported dtype '{d}' (expected '<f8', '<f4', '<i8', '<i4' or '|b1')")),
    }
}

struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A value of the header dict: the only Python literals NumPy writes there.
enum Literal {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

/// Parses the header dict, e.g.
/// `{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }`.
fn parse_header(text: &str) -> Result<Header, NpyError> {
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    p.expect(b'{')?;
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.expect(b':')?;
        let value = p.literal()?;
        match (key.as_str(), value) {
            ("descr", Literal::Str(s)) => descr = Some(s),
            ("fortran_order", Literal::Bool(b)) => fortran_order = Some(b),
            ("shape", Literal::Tuple(t)) => shape = Some(t),
            ("descr" | "fortran_order" | "shape", _) => {
                return err(format!("bad value for '{key}' in the .npy header"))
            }
            // NumPy ignores keys it does not know; so do we.
            _ => {}
        }
        p.skip_ws();
        if !p.eat(b',') {
            p.expect(b'}')?;
            break;
        }
    }
    let missing = |k: &str| NpyError { message: format!("the .npy header has no '{k}'") };
    Ok(Header {
        descr: descr.ok_or_else(|| missing("descr"))?,
        fortran_order: fortran_order.ok_or_else(|| missing("fortran_order"))?,
        shape: shape.ok_or_else(|| missing("shape"))?,
    })
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), NpyError> {
        if self.eat(c) {
            Ok(())
        } else {
            self.bad()
        }
    }

    fn bad<T>(&self) -> Result<T, NpyError> {
        err(format!("malformed .npy header at byte {}", self.i))
    }

    fn string(&mut self) -> Result<String, NpyError> {
        self.skip_ws();
        let quote = match self.s.get(self.i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return self.bad(),
        };
        let start = self.i + 1;
        let Some(len) = self.s[start..].iter().position(|&c| c == quote) else {
            return self.bad();
        };
        self.i = start + len + 1;
        Ok(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
    }

    fn literal(&mut self) -> Result<Literal, NpyError> {
        self.skip_ws();
        let rest = &self.s[self.i..];
        if rest.starts_with(b"True") {
            self.i += 4;
            Ok(Literal::Bool(true))
        } else if rest.starts_with(b"False") {
            self.i += 5;
            Ok(Literal::Bool(false))
        } else if self.eat(b'(') {
            let mut items = Vec::new();
            loop {
                if self.eat(b')') {
                    break;
                }
                items.push(self.integer()?);
                if !self.eat(b',') {
                    self.expect(b')')?;
                    break;
                }
            }
            Ok(Literal::Tuple(items))
        } else {
            self.string().map(Literal::Str)
        }
    }

    fn integer(&mut self) -> Result<usize, NpyError> {
        self.skip_ws();
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        // Python 2 wrote long integers with an `L` suffix.
        let digits = &self.s[start..self.i];
        if self.s.get(self.i) == Some(&b'L') {
            self.i += 1;
        }
        std::str::from_utf8(digits).ok().and_then(|d| d.parse().ok()).map_or_else(|| self.bad(), Ok)
    }
}

/// Writes `array` as a version 1.0 `.npy` file.
pub fn write_npy(array: &Array) -> Vec<u8> {
    let descr = match &array.data {
        ArrayData::F64(_) => "<f8",
        ArrayData::F32(_) => "<f4",
        ArrayData::I64(_) => "<i8",
        ArrayData::Bool(_) => "|b1",
    };
    // Python's tuple syntax: a one-element tuple needs its trailing comma.
    let shape = match array.shape.as_slice() {
        [n] => format!("({n},)"),
        dims => {
            let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
            format!("({})", dims.join(", "))
        }
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad with spaces so that magic + version + length + header + newline
    // ends on a multiple of 64.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.extend(std::iter::repeat_n(' ', (64 - unpadded % 64) % 64));
    header.push('\n');
    let header_len = u16::try_from(header.len()).expect("a .npy 1.0 header of a Slope array fits in u16");

    let mut out = Vec::with_capacity(10 + header.len() + array.data.len() * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match &array.data {
        ArrayData::F64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        ArrayData::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        ArrayData::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        ArrayData::Bool(v) => out.extend(v.iter().map(|&b| b as u8)),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with the given header dict (padded NumPy-style) and raw data.
    fn file(version: u8, dict: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[version, 0]);
        let len = dict.len() + 1;
        if version == 1 {
            out.extend_from_slice(&(len as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(len as u32).to_le_bytes());
        }
        out.extend_from_slice(dict.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(data);
        out
    }

    fn round_trip(a: Array) {
        let bytes = write_npy(&a);
        assert_eq!(read_npy(&bytes).unwrap(), a);
    }

    fn read_err(bytes: &[u8]) -> String {
        read_npy(bytes).unwrap_err().message
    }

    #[test]
    fn writes_exactly_what_numpy_writes() {
        // `np.save(f, np.array([1.0, 2.0]))`.
        let a = Array::new(vec![2], ArrayData::F64(vec![1.0, 2.0]));
        let bytes = write_npy(&a);
        let mut expected = b"\x93NUMPY\x01\x00v\x00".to_vec();
        let dict = b"{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }";
        expected.extend_from_slice(dict);
        expected.extend(std::iter::repeat_n(b' ', 128 - 10 - dict.len() - 1));
        expected.push(b'\n');
        expected.extend_from_slice(&1.0f64.to_le_bytes());
        expected.extend_from_slice(&2.0f64.to_le_bytes());
        assert_eq!(bytes, expected);
    }

    #[test]
    fn data_starts_at_multiple_of_64() {
        for shape in [vec![1], vec![123456, 0], vec![2, 3, 4]] {
            let n = shape.iter().product();
            let bytes = write_npy(&Array::new(shape, ArrayData::zeros(crate::ElemType::I64, n)));
            let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!((10 + header_len) % 64, 0);
            assert_eq!(bytes[10 + header_len - 1], b'\n');
        }
    }

    #[test]
    fn round_trip_f64_ranks_1_to_3() {
        round_trip(Array::new(vec![3], ArrayData::F64(vec![1.5, -2.0, 3.25])));
        round_trip(Array::new(vec![2, 2], ArrayData::F64(vec![1.0, 2.0, 3.0, 4.0])));
        round_trip(Array::new(vec![1, 2, 3], ArrayData::F64((0..6).map(f64::from).collect())));
    }

    #[test]
    fn round_trip_f32_ranks_1_to_3() {
        round_trip(Array::new(vec![2], ArrayData::F32(vec![0.1, 7.0])));
        round_trip(Array::new(vec![3, 1], ArrayData::F32(vec![1.0, 2.0, 3.0])));
        round_trip(Array::new(vec![2, 1, 2], ArrayData::F32(vec![1.0, 2.0, 3.0, 4.0])));
    }

    #[test]
    fn round_trip_i64_ranks_1_to_3() {
        round_trip(Array::new(vec![2], ArrayData::I64(vec![i64::MIN, i64::MAX])));
        round_trip(Array::new(vec![1, 3], ArrayData::I64(vec![1, -2, 3])));
        round_trip(Array::new(vec![2, 2, 2], ArrayData::I64((0..8).collect())));
    }

    #[test]
    fn round_trip_bool_ranks_1_to_3() {
        round_trip(Array::new(vec![3], ArrayData::Bool(vec![true, false, true])));
        round_trip(Array::new(vec![2, 1], ArrayData::Bool(vec![false, true])));
        round_trip(Array::new(vec![1, 1, 2], ArrayData::Bool(vec![true, true])));
    }

    #[test]
    fn round_trip_keeps_nan_and_infinity_bits() {
        let a = Array::new(vec![2], ArrayData::F64(vec![f64::NAN, f64::NEG_INFINITY]));
        let ArrayData::F64(back) = read_npy(&write_npy(&a)).unwrap().data else { panic!("expected f64 data") };
        assert!(back[0].is_nan());
        assert_eq!(back[1], f64::NEG_INFINITY);
    }

    #[test]
    fn round_trip_empty() {
        round_trip(Array::new(vec![0], ArrayData::F64(vec![])));
        round_trip(Array::new(vec![3, 0], ArrayData::I64(vec![])));
    }

    #[test]
    fn rejects_a_dimension_beyond_the_limit_beside_a_zero_one() {
        for shape in ["(0, 18446744073709551615)", "(0, 1099511627777)", "(1099511627777, 0)"] {
            let dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
            let e = read_npy(&file(1, &dict, &[])).unwrap_err();
            assert!(e.to_string().contains("exceeds the limit"), "{shape}: {e}");
        }
        // The limit itself is a valid dimension.
        let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 1099511627776), }";
        assert_eq!(read_npy(&file(1, dict, &[])).unwrap().shape, vec![0, 1 << 40]);
    }

    #[test]
    fn reads_i4_widened_to_i64() {
        let data: Vec<u8> = [-1i32, 5].iter().flat_map(|x| x.to_le_bytes()).collect();
        let bytes = file(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", &data);
        assert_eq!(read_npy(&bytes).unwrap(), Array::new(vec![2], ArrayData::I64(vec![-1, 5])));
    }

    #[test]
    fn reads_versions_2_and_3() {
        let data = 4.0f32.to_le_bytes();
        for v in [2, 3] {
            let bytes = file(v, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1)}", &data);
            assert_eq!(read_npy(&bytes).unwrap(), Array::new(vec![1, 1], ArrayData::F32(vec![4.0])));
        }
    }

    #[test]
    fn tolerates_key_order_and_double_quotes() {
        let bytes = file(1, r#"{"shape": (1,), "fortran_order": False, "descr": "|b1"}"#, &[1]);
        assert_eq!(read_npy(&bytes).unwrap(), Array::new(vec![1], ArrayData::Bool(vec![true])));
    }

    #[test]
    fn bad_magic() {
        assert_eq!(read_err(b"PK\x03\x04 not numpy"), "not a .npy file (bad magic)");
        assert_eq!(read_err(b""), "not a .npy file (bad magic)");
    }

    #[test]
    fn unsupported_version() {
        let mut bytes = write_npy(&Array::new(vec![1], ArrayData::F64(vec![1.0])));
        bytes[6] = 4;
        assert_eq!(read_err(&bytes), "unsupported .npy version 4.0");
    }

    #[test]
    fn truncated_header() {
        let bytes = write_npy(&Array::new(vec![1], ArrayData::F64(vec![1.0])));
        assert_eq!(read_err(&bytes[..9]), "truncated .npy file: no header length");
        assert_eq!(read_err(&bytes[..40]), "truncated .npy file: header is cut short");
    }

    #[test]
    fn truncated_data() {
        let bytes = write_npy(&Array::new(vec![2, 2], ArrayData::F64(vec![0.0; 4])));
        assert_eq!(read_err(&bytes[..bytes.len() - 3]), "truncated .npy file: expected 32 bytes of data, found 29");
    }

    #[test]
    fn trailing_bytes() {
        let mut bytes = write_npy(&Array::new(vec![1], ArrayData::I64(vec![1])));
        bytes.push(0);
        assert_eq!(read_err(&bytes), "1 unexpected bytes after the .npy data");
    }

    #[test]
    fn fortran_order_rejected() {
        let bytes = file(1, "{'descr': '<f8', 'fortran_order': True, 'shape': (1, 1), }", &[0; 8]);
        assert!(read_err(&bytes).starts_with("fortran-order .npy files are not supported"));
    }

    #[test]
    fn zero_d_rejected() {
        let bytes = file(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", &[0; 8]);
        assert_eq!(read_err(&bytes), "0-d arrays are not supported, use a JSON scalar");
    }

    #[test]
    fn big_endian_rejected() {
        let bytes = file(1, "{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }", &[0; 8]);
        assert_eq!(read_err(&bytes), "big-endian dtype '>f8' is not supported, convert with .astype('<f8')");
    }

    #[test]
    fn unsupported_dtype_rejected() {
        let bytes = file(1, "{'descr': '<u2', 'fortran_order': False, 'shape': (1,), }", &[0; 2]);
        assert!(read_err(&bytes).starts_with("unsupported dtype '<u2'"));
    }

    #[test]
    fn invalid_bool_byte() {
        let bytes = file(1, "{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }", &[1, 7]);
        assert_eq!(read_err(&bytes), "invalid bool byte 7 in .npy data");
    }

    #[test]
    fn malformed_header() {
        let bytes = file(1, "{'descr': '<f8', 'fortran_order': False, 'shape': [1], }", &[0; 8]);
        assert!(read_err(&bytes).starts_with("malformed .npy header"));
        let bytes = file(1, "{'descr': '<f8', 'fortran_order': False}", &[]);
        assert_eq!(read_err(&bytes), "the .npy header has no 'shape'");
        let bytes = file(1, "{'descr': 8, 'fortran_order': False, 'shape': (1,)}", &[]);
        assert!(read_err(&bytes).starts_with("malformed .npy header"));
    }

    #[test]
    fn huge_shape_does_not_overflow() {
        let dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({}, {}), }}", usize::MAX, usize::MAX);
        assert!(read_err(&file(1, &dict, &[])).contains("exceeds the limit"));
    }
}
