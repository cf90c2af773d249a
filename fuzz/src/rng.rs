//! The fuzzer's deterministic random numbers.
//!
//! Input: a seed. Output: a stream of `u64`s (xorshift64*) and the choices
//! built on it. Invariant: a case is a function of `(seed, target, index)`
//! alone — [`Rng::for_case`] mixes the three with splitmix64 — so any case of
//! any run can be generated again without running the ones before it.

/// A xorshift64* generator.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // xorshift has one fixed point, zero; splitmix64 never maps to it twice.
        Rng(splitmix64(seed).max(1))
    }

    /// The generator of case `index` of `target` in a run seeded with `seed`.
    pub fn for_case(seed: u64, target: &str, index: u64) -> Rng {
        let name = target.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        Rng::new(splitmix64(seed ^ splitmix64(name ^ splitmix64(index))))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// Uniform in `[-1, 1)`.
    pub fn signed(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    /// One of `items` (non-empty), uniformly.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// An index drawn with the given relative weights (not all zero).
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| w as u64).sum();
        let mut x = self.next_u64() % total;
        for (i, &w) in weights.iter().enumerate() {
            if x < w as u64 {
                return i;
            }
            x -= w as u64;
        }
        weights.len() - 1
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_are_independent_of_each_other() {
        let a: Vec<u64> = (0..3).map(|_| Rng::for_case(7, "check", 5).next_u64()).collect();
        assert!(a.iter().all(|x| *x == a[0]));
        assert_ne!(Rng::for_case(7, "check", 5).next_u64(), Rng::for_case(7, "check", 6).next_u64());
        assert_ne!(Rng::for_case(7, "check", 5).next_u64(), Rng::for_case(7, "native", 5).next_u64());
    }

    #[test]
    fn weighted_choice_respects_zero_weights() {
        let mut rng = Rng::new(1);
        for _ in 0..1000 {
            assert_ne!(rng.weighted(&[3, 0, 1]), 1);
        }
    }
}
