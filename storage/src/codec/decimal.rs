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

/// Mantissa stream mode: 0 = deltas, 1 = delta-of-deltas. The first mantissa is written raw (64 bits).
pub fn write_mantissas(w: &mut BitWriter, ms: &[i64], mode: u8) {
    w.write(ms[0] as u64, 64);
    let (mut prev, mut prev_delta) = (ms[0], 0i64);
    for &m in &ms[1..] {
        let d = m.wrapping_sub(prev);
        write_int(w, if mode == 1 { d.wrapping_sub(prev_delta) } else { d });
        prev_delta = d;
        prev = m;
    }
}

pub fn read_mantissas(r: &mut BitReader, count: usize, mode: u8, e: u8, out: &mut Vec<f64>) -> Option<()> {
    let mut prev = r.read(64)? as i64;
    out.push(value(prev, e));
    let mut prev_delta = 0i64;
    for _ in 1..count {
        let x = read_int(r)?;
        let d = if mode == 1 { prev_delta.wrapping_add(x) } else { x };
        prev = prev.wrapping_add(d);
        prev_delta = d;
        out.push(value(prev, e));
    }
    Some(())
}
