//! Sorting: the stable sorting permutation of a vector of numbers, which the
//! interpreter computes by calling [`argsort_f64`] (and its `f32`/`i64`
//! forms) and native code by calling the host functions `slope_argsort_*`,
//! which are those same functions — so both engines, every thread count and
//! ahead-of-time libraries agree bit for bit.
//!
//! Input: `n` keys. Output: `n` indices `p` with `keys[p[0]], keys[p[1]], …`
//! in order. Invariant: the result is a permutation of `0..n`, and it is
//! the unique one described in Note [Sorting].

// Note [Sorting]
// ~~~~~~~~~~~~~~
// The order is total, so the permutation is unique and does not depend on
// the algorithm:
//   * ascending: x before y when x < y; descending: when x > y;
//   * NaNs come after every number in both directions (as NumPy and pandas
//     place missing values), whatever their sign or payload;
//   * equal keys — including -0.0 and 0.0, and any two NaNs — keep their
//     input order (the sort is stable) in both directions.
// So `argsort_desc x` is *not* `reverse (argsort x)`: that would put NaNs
// first and reverse the order of ties.
//
// Implementation: each key becomes a `u64` whose unsigned order is the order
// above (the sign-magnitude float bits made monotone, NaN the largest word,
// every bit inverted for descending), and the pairs (word, index) are sorted
// with `sort_unstable`: comparing the index too makes the result the stable
// permutation, and sorting plain integer pairs is faster than a stable sort
// of indices that reads the keys through the indices (measured by the sort
// benchmark, docs/performance.md).

/// The order word of an `f64` (Note [Sorting]).
fn f64_word(x: f64, descending: bool) -> u64 {
    if x.is_nan() {
        return u64::MAX;
    }
    // -0.0 and 0.0 are equal keys.
    let bits = if x == 0.0 { 0 } else { x.to_bits() };
    let ascending = if bits >> 63 == 1 { !bits } else { bits | 1 << 63 };
    // Numbers map below u64::MAX (NaN's word) in both directions: ascending
    // words lie in 0x000F…F (-inf) ..= 0xFFF0…0 (+inf), and so do their
    // complements.
    if descending {
        !ascending
    } else {
        ascending
    }
}

/// The order word of an `i64`.
fn i64_word(x: i64, descending: bool) -> u64 {
    let ascending = (x as u64) ^ (1 << 63);
    if descending {
        !ascending
    } else {
        ascending
    }
}

fn by_words(n: usize, word: impl Fn(usize) -> u64, out: &mut [i64]) {
    let mut pairs: Vec<(u64, u64)> = (0..n).map(|i| (word(i), i as u64)).collect();
    pairs.sort_unstable();
    for (o, (_, i)) in out.iter_mut().zip(pairs) {
        *o = i as i64;
    }
}

/// Writes the stable sorting permutation of `keys` into `out` (same length).
pub fn argsort_f64(keys: &[f64], descending: bool, out: &mut [i64]) {
    by_words(keys.len(), |i| f64_word(keys[i], descending), out)
}

/// [`argsort_f64`] on `f32` keys (widening is exact, so the order is the same).
pub fn argsort_f32(keys: &[f32], descending: bool, out: &mut [i64]) {
    by_words(keys.len(), |i| f64_word(keys[i] as f64, descending), out)
}

/// [`argsort_f64`] on `i64` keys.
pub fn argsort_i64(keys: &[i64], descending: bool, out: &mut [i64]) {
    by_words(keys.len(), |i| i64_word(keys[i], descending), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm_f64(keys: &[f64], descending: bool) -> Vec<i64> {
        let mut out = vec![0; keys.len()];
        argsort_f64(keys, descending, &mut out);
        out
    }

    /// The specification, by a stable sort with a comparator.
    fn reference(keys: &[f64], descending: bool) -> Vec<i64> {
        let mut idx: Vec<i64> = (0..keys.len() as i64).collect();
        idx.sort_by(|&a, &b| {
            let (x, y) = (keys[a as usize], keys[b as usize]);
            match (x.is_nan(), y.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if descending => y.partial_cmp(&x).unwrap(),
                _ => x.partial_cmp(&y).unwrap(),
            }
        });
        idx
    }

    #[test]
    fn ties_nans_and_signed_zeros_follow_the_note() {
        let nan = f64::NAN;
        let keys = [2.0, -0.0, nan, 1.0, 0.0, -nan, f64::NEG_INFINITY, 2.0, f64::INFINITY, -1.5];
        assert_eq!(perm_f64(&keys, false), vec![6, 9, 1, 4, 3, 0, 7, 8, 2, 5]);
        assert_eq!(perm_f64(&keys, true), vec![8, 0, 7, 3, 1, 4, 9, 6, 2, 5]);
        for d in [false, true] {
            assert_eq!(perm_f64(&keys, d), reference(&keys, d));
        }
    }

    #[test]
    fn agrees_with_a_comparison_sort_on_pseudo_random_keys() {
        // A small LCG; few distinct values so that ties are common.
        let mut s = 12345u64;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            s >> 33
        };
        for n in [0, 1, 2, 7, 100, 1000] {
            let keys: Vec<f64> = (0..n)
                .map(|_| match next() % 10 {
                    0 => f64::NAN,
                    1 => f64::INFINITY,
                    2 => -f64::INFINITY,
                    r => (next() % 7) as f64 - 3.0 + if r == 3 { 0.5 } else { 0.0 },
                })
                .collect();
            for d in [false, true] {
                assert_eq!(perm_f64(&keys, d), reference(&keys, d), "n = {n}, descending = {d}");
                let as_f32: Vec<f32> = keys.iter().map(|&x| x as f32).collect();
                let mut out = vec![0; n];
                argsort_f32(&as_f32, d, &mut out);
                assert_eq!(out, reference(&keys, d));
            }
            let ints: Vec<i64> = (0..n)
                .map(|_| match next() % 50 {
                    0 => i64::MIN,
                    1 => i64::MAX,
                    _ => next() as i64 % 5 - 2,
                })
                .collect();
            for d in [false, true] {
                let mut out = vec![0; n];
                argsort_i64(&ints, d, &mut out);
                let mut want: Vec<i64> = (0..n as i64).collect();
                want.sort_by(|&a, &b| {
                    let (x, y) = (ints[a as usize], ints[b as usize]);
                    if d {
                        y.cmp(&x)
                    } else {
                        x.cmp(&y)
                    }
                });
                assert_eq!(out, want, "i64, n = {n}, descending = {d}");
            }
        }
    }
}
