//! Decimal encoding: when every value of a chunk is `m / 10^e` exactly for one exponent `e` (integer
//! counters: e = 0; gauges with two decimals: e = 2), the integer mantissas are stored instead of float bits,
//! as delta or delta-of-delta in the integer buckets of [`super::gorilla`]. A counter growing at a steady
//! rate costs one bit per value; a gauge that changes now and then costs one bit per unchanged value.

use super::bits::{BitReader, BitWriter};
use super::gorilla::{read_int, write_int};

/// Largest decimal exponent tried.
pub const MAX_EXP: u8 = 15;
/// Mantissas must stay exactly representable as f64.
const MAX_MANTISSA: f64 = 9_007_199_254_740_992.0; // 2^53

#[inline]
pub fn pow10(e: u8) -> f64 {
    10f64.powi(e as i32)
}

/// The value a mantissa decodes to (encode checks with this same expression).
#[inline]
pub fn value(m: i64, e: u8) -> f64 {
    if e == 0 {
        m as f64
    } else {
        m as f64 / pow10(e)
    }
}

/// Significant digits past which [`round_significant`] keeps every bit: 16 digits do not fit a mantissa
/// below 2^53, and 17 identify every double.
pub const FULL_DIGITS: u8 = 16;

/// `v` rounded to `digits` significant decimal digits, as `value(m, e)` so that a chunk of such values
/// takes the Decimal encoding. Unchanged (kept whole) when `digits` is at least [`FULL_DIGITS`], for zero,
/// infinities and NaN, and where the rounding would need more than [`MAX_EXP`] decimal places (magnitudes
/// below 10^(digits - 16)) or a unit above 10^15 (magnitudes from about 10^(digits + 15)). Only IEEE-754
/// multiplication, division and rounding are used: every replica that applies the same write computes the
/// same bits.
pub fn round_significant(v: f64, digits: u8) -> f64 {
    if digits == 0 || digits >= FULL_DIGITS || !v.is_finite() || v == 0.0 {
        return v;
    }
    // x with 10^x <= |v| < 10^(x+1): the binary exponent's estimate, then corrected against exact powers.
    let a = v.abs();
    let at_least = |x: i32| if x >= 0 { a >= pow10(x as u8) } else { a * pow10(-x as u8) >= 1.0 };
    let e2 = ((a.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    let mut x = (e2 * 1233) >> 12; // floor(e2 * log10(2)), within one
    if !(-(MAX_EXP as i32)..=2 * MAX_EXP as i32).contains(&x) {
        return v;
    }
    while x < 2 * MAX_EXP as i32 && at_least(x + 1) {
        x += 1;
    }
    while x > -(MAX_EXP as i32) && !at_least(x) {
        x -= 1;
    }
    let decimals = digits as i32 - 1 - x;
    if (0..=MAX_EXP as i32).contains(&decimals) {
        let m = (v * pow10(decimals as u8)).round();
        if m.abs() < MAX_MANTISSA {
            return value(m as i64, decimals as u8);
        }
    } else if (-(MAX_EXP as i32)..0).contains(&decimals) {
        let unit = pow10(-decimals as u8);
        return (v / unit).round() * unit;
    }
    v
}

/// The smallest exponent that represents every value exactly, with the mantissas.
pub fn fit(vals: &[f64]) -> Option<(u8, Vec<i64>)> {
    'exp: for e in 0..=MAX_EXP {
        let p = pow10(e);
        let mut ms = Vec::with_capacity(vals.len());
        for &v in vals {
            let m = (v * p).round();
            if !(m.abs() < MAX_MANTISSA) {
                continue 'exp;
            }
            let m = m as i64;
            if value(m, e).to_bits() != v.to_bits() {
                continue 'exp;
            }
            ms.push(m);
        }
        return Some((e, ms));
    }
    None
}

/// Mantissa modes: 0 = delta codes, 1 = delta-of-delta codes, 2 = frame of reference: the smallest delta
/// (64 bits), a width (6 bits), then every delta minus the smallest in exactly `width` bits. Mode 2 suits
/// counters that grow by varying amounts (uniform increments cost their entropy, no prefixes).
pub const MODES: [u8; 3] = [0, 1, 2];

/// The first mantissa is written raw (64 bits), then count-1 deltas in the mode's form.
pub fn write_mantissas(w: &mut BitWriter, ms: &[i64], mode: u8) {
    w.write(ms[0] as u64, 64);
    if mode == 2 {
        let deltas: Vec<i64> = ms.windows(2).map(|p| p[1].wrapping_sub(p[0])).collect();
        let min = deltas.iter().copied().min().unwrap_or(0);
        let width = deltas.iter().map(|d| 64 - (d.wrapping_sub(min) as u64).leading_zeros()).max().unwrap_or(0);
        w.write(min as u64, 64);
        w.write(width as u64 & 63, 6);
        // A width of 64 does not fit 6 bits: such chunks are written in mode 0 instead (see `fits_mode`).
        for d in deltas {
            w.write(d.wrapping_sub(min) as u64, width);
        }
        return;
    }
    let (mut prev, mut prev_delta) = (ms[0], 0i64);
    for &m in &ms[1..] {
        let d = m.wrapping_sub(prev);
        write_int(w, if mode == 1 { d.wrapping_sub(prev_delta) } else { d });
        prev_delta = d;
        prev = m;
    }
}

/// Whether `mode` can encode these mantissas (mode 2 needs the delta range below 2^63).
pub fn fits_mode(ms: &[i64], mode: u8) -> bool {
    mode != 2 || for_bits(ms).is_some()
}

/// The bits mode 2 takes for these mantissas (first, smallest delta, width, the deltas); None when it does
/// not fit.
pub fn for_bits(ms: &[i64]) -> Option<u64> {
    let deltas = ms.windows(2).map(|p| p[1].wrapping_sub(p[0]));
    let (lo, hi) = deltas.fold((i64::MAX, i64::MIN), |(lo, hi), d| (lo.min(d), hi.max(d)));
    let range = hi.wrapping_sub(lo);
    if ms.len() < 2 || range < 0 {
        return (ms.len() < 2).then_some(64 + 64 + 6);
    }
    let width = 64 - (range as u64).leading_zeros() as u64;
    Some(64 + 64 + 6 + width * (ms.len() as u64 - 1))
}

pub fn read_mantissas(r: &mut BitReader, count: usize, mode: u8, e: u8, out: &mut Vec<f64>) -> Option<()> {
    read_ints(r, count, mode, |m| out.push(value(m, e)))
}

/// Reads what [`write_mantissas`] wrote, handing each integer to `f` in order.
pub fn read_ints(r: &mut BitReader, count: usize, mode: u8, mut f: impl FnMut(i64)) -> Option<()> {
    let mut prev = r.read(64)? as i64;
    f(prev);
    if mode == 2 {
        let min = r.read(64)? as i64;
        let width = r.read(6)? as u32;
        return r.read_run(width, count.saturating_sub(1), |d| {
            prev = prev.wrapping_add(min.wrapping_add(d as i64));
            f(prev);
        });
    }
    let mut prev_delta = 0i64;
    for _ in 1..count {
        let x = read_int(r)?;
        let d = if mode == 1 { prev_delta.wrapping_add(x) } else { x };
        prev = prev.wrapping_add(d);
        prev_delta = d;
        f(prev);
    }
    Some(())
}
