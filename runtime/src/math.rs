//! Special functions that Rust's `std` lacks: [`lgamma`] and [`erf`].
//!
//! Input: an `f64`. Output: an `f64` (the interpreter evaluates `f32` through
//! these too). Both are pure, allocation-free and deterministic, so the
//! interpreter, the JIT and compiled code can all call the same host
//! implementation and agree bit for bit.
//!
//! Accuracy targets (checked against 40-digit mpmath values in the tests):
//! `lgamma` ~1e-14 relative on [0.5, 1e6] (absolute near its zeros at 1 and
//! 2, where relative error is meaningless), `erf` ~1e-15 absolute everywhere.

use std::f64::consts::PI;

/// `(ζ(k) − 1) / k` for k = 2, 3, …, 31, computed with mpmath at 40 digits.
/// They are the Taylor coefficients of `lgamma(2 + z) = (1 − γ) z + Σ (−1)^k (ζ(k) − 1)/k · z^k`.
/// Because ζ(k) − 1 ≈ 2^−k, the series converges like (z/2)^k: for |z| ≤ 0.5
/// thirty terms reach 1e-18, far below one ulp of the result.
const ZETA_M1_OVER_K: [f64; 30] = [
    0.3224670334241132,
    0.0673523010531981,
    0.020580808427784546,
    0.007385551028673986,
    0.0028905103307415234,
    0.001192753911703261,
    0.0005096695247430425,
    0.00022315475845357939,
    9.945751278180853e-05,
    4.492623673813314e-05,
    2.050721277567069e-05,
    9.439488275268397e-06,
    4.374866789907488e-06,
    2.039215753801366e-06,
    9.55141213040742e-07,
    4.492469198764566e-07,
    2.1207184805554665e-07,
    1.0043224823968099e-07,
    4.7698101693639804e-08,
    2.2711094608943164e-08,
    1.0838659214896955e-08,
    5.183475041970047e-09,
    2.4836745438024785e-09,
    1.1921401405860912e-09,
    5.731367241678862e-10,
    2.7595228851242334e-10,
    1.330476437424449e-10,
    6.4229645638381e-11,
    3.1044247747322276e-11,
    1.5021384080754142e-11,
];

/// The Euler–Mascheroni constant γ.
const EULER_GAMMA: f64 = 0.5772156649015329;

/// Lanczos parameter g and the matching coefficients (the widely published
/// g = 7, n = 9 set): Γ(z + 1) ≈ √(2π) t^(z + 1/2) e^(−t) A(z), t = z + g + 1/2.
const LANCZOS_G: f64 = 7.0;
const LANCZOS_P: [f64; 9] = [
    0.999_999_999_999_809_9,
    676.520_368_121_885_1,
    -1_259.139_216_722_402_8,
    771.323_428_777_653_1,
    -176.615_029_162_140_6,
    12.507_343_278_686_905,
    -0.138_571_095_265_720_12,
    9.984_369_578_019_572e-6,
    1.505_632_735_149_311_6e-7,
];

/// ln √(2π).
const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// `ln |Γ(x)|`.
///
/// Three regimes, chosen so that no branch suffers cancellation:
/// - `0.5 ≤ x < 2.5`: Taylor series of lgamma around 2 (and around 1 via
///   `lgamma(1 + z) = lgamma(2 + z) − ln(1 + z)`). Lanczos alone loses all
///   relative accuracy next to the zeros at 1 and 2 because it computes a
///   tiny result as the difference of O(1) terms.
/// - `x ≥ 2.5`: the Lanczos approximation in log form (the result is ≥ 0.28
///   there, so its ~1e-16 absolute error stays ~1e-15 relative).
/// - `x < 0.5`: reflection, `Γ(x) Γ(1 − x) = π / sin(πx)`.
///
/// Poles (0, −1, −2, …) and ±∞ give +∞; NaN gives NaN.
pub fn lgamma(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x.is_infinite() {
        return f64::INFINITY;
    }
    if x < 0.5 {
        if x == x.floor() {
            return f64::INFINITY;
        }
        // ln|Γ(x)| = ln π − ln|sin(πx)| − ln Γ(1 − x); 1 − x > 0.5 so the
        // recursive call does not reflect again.
        let s = sin_pi(x).abs();
        return PI.ln() - s.ln() - lgamma(1.0 - x);
    }
    if x < 1.5 {
        let z = x - 1.0;
        return lgamma_series_at_2(z) - z.ln_1p();
    }
    if x < 2.5 {
        return lgamma_series_at_2(x - 2.0);
    }
    lanczos_lgamma(x)
}

/// `lgamma(2 + z)` for |z| ≤ 0.5 from its Taylor series (see [`ZETA_M1_OVER_K`]).
fn lgamma_series_at_2(z: f64) -> f64 {
    // Horner from the highest power: Σ_{k≥2} c_k (−z)^k, then the linear term.
    let mz = -z;
    let mut acc = 0.0;
    for &c in ZETA_M1_OVER_K.iter().rev() {
        acc = acc * mz + c;
    }
    (1.0 - EULER_GAMMA) * z + acc * mz * mz
}

/// `lgamma(x)` for x ≥ 2.5 by Lanczos.
fn lanczos_lgamma(x: f64) -> f64 {
    let z = x - 1.0;
    let mut a = LANCZOS_P[0];
    for (i, &p) in LANCZOS_P.iter().enumerate().skip(1) {
        a += p / (z + i as f64);
    }
    let t = z + LANCZOS_G + 0.5;
    LN_SQRT_2PI + (z + 0.5) * t.ln() - t + a.ln()
}

/// `sin(πx)` with exact argument reduction: `(x * π).sin()` would be wrong for
/// large |x| (and nonzero at integers), which matters for the reflection.
fn sin_pi(x: f64) -> f64 {
    // r = x mod 2 in [-1, 1]; exact in floating point (x − 2k for integral k).
    let r = x - 2.0 * (x * 0.5).round();
    // Fold into [-0.5, 0.5] using sin(π(1 − r)) = sin(πr), sin(π(−1 − r)) = sin(πr).
    let r = if r > 0.5 {
        1.0 - r
    } else if r < -0.5 {
        -1.0 - r
    } else {
        r
    };
    (PI * r).sin()
}

/// 2 / √π.
const TWO_OVER_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;
/// 1 / √π (halving is exact).
const ONE_OVER_SQRT_PI: f64 = 0.5 * std::f64::consts::FRAC_2_SQRT_PI;

/// The error function, `2/√π ∫₀ˣ e^(−t²) dt`.
///
/// - `|x| < 1.1`: the Maclaurin series `2/√π Σ (−1)ⁿ x^(2n+1) / (n! (2n+1))`.
///   Its terms alternate, but below 1.1 the largest term is about x itself, so
///   there is no significant cancellation (≤ 1 ulp against mpmath on a grid).
/// - `1.1 ≤ |x| < 6`: `1 − erfc(x)` with erfc from its continued fraction
///   (Laplace). erfc ≤ 0.12 here, so the continued fraction's own rounding is
///   well below an ulp of the result; the depth is chosen so that truncation
///   is too (the fraction converges slowly near 1, fast beyond 1.6).
/// - `|x| ≥ 6`: erfc(6) ≈ 2e-17 is below half an ulp of 1, so the result is ±1.
///
/// Odd: `erf(−x) = −erf(x)` exactly, by evaluating at |x|. A positive-term
/// series `e^(−x²) Σ 2ⁿ x^(2n+1)/(2n+1)!!` was tried for the middle range and
/// rejected: its long product chains cost up to 4 ulp near 2.5.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let r = if a < 1.1 {
        erf_maclaurin(a)
    } else if a < 6.0 {
        let depth = if a < 1.6 { 150 } else { 80 };
        1.0 - erfc_continued_fraction(a, depth)
    } else {
        1.0
    };
    r.copysign(x)
}

fn erf_maclaurin(x: f64) -> f64 {
    let x2 = x * x;
    // p = (−x²)ⁿ x / n!; the n-th term is p / (2n + 1).
    let mut p = x;
    let mut sum = x;
    let mut n = 0.0;
    loop {
        p *= -x2 / (n + 1.0);
        let next = sum + p / (2.0 * n + 3.0);
        if next == sum {
            break;
        }
        sum = next;
        n += 1.0;
    }
    TWO_OVER_SQRT_PI * sum
}

/// `e^(−x²)` with the rounding error of `x²` compensated: that error is
/// multiplied by x² in the exponent, which would cost several ulp of erfc.
fn exp_neg_square(x: f64) -> f64 {
    let hi = x * x;
    let lo = x.mul_add(x, -hi); // exact: x² = hi + lo
    (-hi).exp() * (-lo).exp()
}

/// erfc(x) for x ≥ 1.1 from
/// `erfc(x) = e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + …)))))`,
/// evaluated bottom-up with a fixed depth (bottom-up is stable and needs no
/// convergence test). Against mpmath, depth 150 is exact to rounding from
/// x = 1.1 and depth 80 from x = 1.6.
fn erfc_continued_fraction(x: f64, depth: usize) -> f64 {
    let mut f = x;
    for k in (1..=depth).rev() {
        f = x + (k as f64 * 0.5) / f;
    }
    ONE_OVER_SQRT_PI * exp_neg_square(x) / f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close_rel(got: f64, want: f64, tol: f64) -> bool {
        if got == want {
            return true;
        }
        ((got - want) / want).abs() <= tol
    }

    #[track_caller]
    fn assert_rel(got: f64, want: f64, tol: f64) {
        assert!(close_rel(got, want, tol), "got {got:e}, want {want:e} (rel err {:e})", ((got - want) / want).abs());
    }

    #[track_caller]
    fn assert_abs(got: f64, want: f64, tol: f64) {
        assert!((got - want).abs() <= tol, "got {got:e}, want {want:e} (abs err {:e})", (got - want).abs());
    }

    #[test]
    fn lgamma_zeros_are_exact_or_tiny() {
        assert_eq!(lgamma(1.0), 0.0);
        assert_eq!(lgamma(2.0), 0.0);
    }

    #[test]
    fn lgamma_known_values() {
        // ln √π.
        assert_rel(lgamma(0.5), 0.5723649429247001, 1e-15);
        assert_rel(lgamma(0.5), PI.sqrt().ln(), 1e-15);
        // ln 9! = ln 362880.
        assert_rel(lgamma(10.0), 362880f64.ln(), 1e-15);
        assert_rel(lgamma(10.0), 12.801827480081469, 1e-15);
        // Γ(n + 1/2) = (2n)! √π / (4ⁿ n!), so for n = 100:
        // lgamma(100.5) = Σ_{k=101}^{200} ln k + ½ ln π − 200 ln 2.
        let identity: f64 = (101..=200).map(|k| (k as f64).ln()).sum::<f64>() + 0.5 * PI.ln() - 200.0 * 2f64.ln();
        assert_rel(lgamma(100.5), identity, 1e-14);
        assert_rel(lgamma(100.5), 361.4355404677776, 1e-15);
        // Integers: lgamma(n) = ln (n − 1)!.
        let mut log_fact = 0.0;
        for n in 2..60 {
            assert_rel(lgamma(n as f64 + 1.0), log_fact + (n as f64).ln(), 1e-14);
            log_fact += (n as f64).ln();
        }
    }

    #[test]
    fn lgamma_matches_mpmath() {
        // (x, ln|Γ(x)|) computed with mpmath at 40 digits.
        let cases = [
            (1.5, -0.12078223763524522),
            (0.9, 0.06637623973474296),
            (1.1, -0.04987244125983972),
            (1.9, -0.03898427592308333),
            (2.1, 0.045437738544485136),
            (2.5, 0.2846828704729192),
            (3.7, 1.4280723266653879),
            (1e6, 12815504.569147611),
            (1e-300, 690.7755278982137),
        ];
        for (x, want) in cases {
            assert_rel(lgamma(x), want, 1e-14);
        }
        // Below 0.5 the reflection subtracts O(1) terms, so near the negative
        // zeros of lgamma (e.g. −2.457…) only absolute accuracy is meaningful.
        assert_rel(lgamma(-0.5), 1.2655121234846454, 1e-14);
        assert_abs(lgamma(-2.5), -0.056243716497674054, 4e-15);
        assert_rel(lgamma(-10.3), -14.457515440024205, 1e-14);
    }

    #[test]
    fn lgamma_recurrence_holds_across_branches() {
        // lgamma(x + 1) = lgamma(x) + ln x, checked where the branches meet.
        for i in 0..400 {
            let x = 0.5 + i as f64 * 0.0125;
            let lhs = lgamma(x + 1.0);
            let rhs = lgamma(x) + x.ln();
            assert_abs(lhs, rhs, 4e-15 * (1.0 + lhs.abs()));
        }
    }

    #[test]
    fn lgamma_special_inputs() {
        assert_eq!(lgamma(0.0), f64::INFINITY);
        assert_eq!(lgamma(-3.0), f64::INFINITY);
        assert_eq!(lgamma(f64::INFINITY), f64::INFINITY);
        assert_eq!(lgamma(f64::NEG_INFINITY), f64::INFINITY);
        assert!(lgamma(f64::NAN).is_nan());
    }

    #[test]
    fn erf_known_values() {
        assert_eq!(erf(0.0), 0.0);
        assert_abs(erf(1.0), 0.8427007929497149, 1e-15);
        assert_abs(erf(-1.0), -0.8427007929497149, 1e-15);
        assert_abs(erf(0.5), 0.5204998778130465, 1e-15);
        assert_abs(erf(3.0), 0.9999779095030014, 1e-15);
        // mpmath, 40 digits.
        assert_abs(erf(0.1), 0.1124629160182849, 1e-16);
        assert_abs(erf(2.0), 0.9953222650189527, 1e-15);
        assert_abs(erf(2.5), 0.999593047982555, 1e-15);
        assert_abs(erf(4.0), 0.9999999845827421, 1e-15);
        assert_abs(erf(5.9), 0.9999999999999999, 1e-15);
        assert_rel(erf(1e-10), 1.1283791670955126e-10, 1e-15);
        assert_eq!(erf(7.0), 1.0);
        assert_eq!(erf(f64::INFINITY), 1.0);
        assert_eq!(erf(f64::NEG_INFINITY), -1.0);
        assert!(erf(f64::NAN).is_nan());
    }

    #[test]
    fn erf_is_odd_and_monotone() {
        let mut prev = -1.0;
        for i in -700..=700 {
            let x = i as f64 * 0.01;
            assert_eq!(erf(-x), -erf(x));
            let y = erf(x);
            assert!(y >= prev, "erf not monotone at {x}: {y} < {prev}");
            prev = y;
        }
    }

    #[test]
    fn erf_branches_agree_at_the_switch() {
        // Both methods agree where they meet (x = 1.1 and x = 1.6 for the depth).
        assert_abs(erf_maclaurin(1.1), 1.0 - erfc_continued_fraction(1.1, 150), 2.3e-16);
        assert_abs(erfc_continued_fraction(1.6, 80), erfc_continued_fraction(1.6, 400), 1e-17);
        assert_abs(erf(1.1), 0.8802050695740817, 2.3e-16);
    }
}

/// The digamma function ψ(x) = d/dx ln Γ(x): the derivative of [`lgamma`].
///
/// Shifts x upwards with ψ(x) = ψ(x + 1) − 1/x until x ≥ 12, then uses the
/// asymptotic series; reflection ψ(1 − x) − π cot(πx) for x < 0.5.
/// Poles (x = 0, −1, …) give NaN.
pub fn digamma(x: f64) -> f64 {
    if x.is_nan() || (x <= 0.0 && x == x.floor()) {
        return f64::NAN;
    }
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return digamma(1.0 - x) - pi / (pi * x).tan();
    }
    let mut acc = 0.0;
    let mut x = x;
    while x < 12.0 {
        acc -= 1.0 / x;
        x += 1.0;
    }
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    let series =
        inv2 * (1.0 / 12.0 - inv2 * (1.0 / 120.0 - inv2 * (1.0 / 252.0 - inv2 * (1.0 / 240.0 - inv2 / 132.0))));
    acc + x.ln() - 0.5 * inv - series
}

/// The trigamma function ψ'(x): the derivative of [`digamma`].
/// Shift to x ≥ 20, then the asymptotic series; reflection below 0.5.
pub fn trigamma(x: f64) -> f64 {
    if x.is_nan() || (x <= 0.0 && x == x.floor()) {
        return f64::NAN;
    }
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        let s = (pi * x).sin();
        return -trigamma(1.0 - x) + pi * pi / (s * s);
    }
    let mut acc = 0.0;
    let mut x = x;
    while x < 20.0 {
        acc += 1.0 / (x * x);
        x += 1.0;
    }
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    let series =
        inv * (1.0 + inv * (0.5 + inv * (1.0 / 6.0 - inv2 * (1.0 / 30.0 - inv2 * (1.0 / 42.0 - inv2 / 30.0)))));
    acc + series
}

#[cfg(test)]
mod gamma_derivative_tests {
    use super::*;

    #[test]
    fn digamma_known_values() {
        let euler = 0.577_215_664_901_532_9;
        assert!((digamma(1.0) + euler).abs() < 1e-14);
        assert!((digamma(0.5) + euler + 2.0 * 2f64.ln()).abs() < 1e-14);
        assert!((digamma(10.0) - 2.251_752_589_066_721).abs() < 1e-14);
        assert!(digamma(0.0).is_nan());
    }

    #[test]
    fn digamma_is_the_derivative_of_lgamma() {
        for &x in &[0.3, 1.7, 4.2, 12.5, 100.0] {
            let h = 1e-5;
            let fd = (lgamma(x + h) - lgamma(x - h)) / (2.0 * h);
            assert!((digamma(x) - fd).abs() < 1e-7, "x = {x}");
            let fd2 = (digamma(x + h) - digamma(x - h)) / (2.0 * h);
            assert!((trigamma(x) - fd2).abs() < 1e-6 * trigamma(x).abs().max(1.0), "x = {x}");
        }
        let pi = std::f64::consts::PI;
        assert!((trigamma(1.0) - pi * pi / 6.0).abs() < 1e-13);
    }
}
