//! FloatBits mode 3, *interval*: every value after the first is stored as its position among the doubles
//! of one interval around the previous value, `[prev + dmin, prev + dmax]`, where `dmin` and `dmax` are the
//! chunk's smallest and largest change (stored once per chunk). The position takes as many bits as the
//! interval's size needs, and both sides compute that size from the previous value, so no length codes are
//! written.
//!
//! Why: a full-precision gauge that moves by up to `r` per sample has about `2r / ulp(value)` possible next
//! values, and the unit in the last place halves in every lower binade. Frame of reference over bit-pattern
//! deltas (mode 2) pays the widest delta of the chunk for every sample, so a chunk that touches a lower
//! binade pays its width throughout; here each sample pays for its own binade only.
//!
//! Doubles are ordered by [`key`] (sign-magnitude folded into one unsigned order, -0.0 just below +0.0), so
//! "the doubles between a and b" is `key(b) - key(a) + 1` and a position maps back with [`from_key`].
//! Floating-point addition is deterministic (IEEE-754 round to nearest even), so the decoder recomputes
//! each interval exactly as the encoder did.

use super::bits::{BitReader, BitWriter};

/// The doubles in one unsigned order: key(a) < key(b) exactly when a < b (and -0.0 < +0.0); NaNs sort past
/// the infinities.
#[inline]
pub fn key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | 1 << 63
    }
}

#[inline]
pub fn from_key(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// The lowest key of the interval after `prev` and the bits a position in it takes; None when the bounds
/// are out of order (only a corrupt chunk has that).
#[inline]
fn interval(prev: f64, dmin: f64, dmax: f64) -> Option<(u64, u64, u32)> {
    let lo = key(prev + dmin);
    let span = key(prev + dmax).checked_sub(lo)?;
    Some((lo, span, 64 - span.leading_zeros()))
}

/// What the encoder found: the chunk's change bounds and the payload size in bits.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    dmin: f64,
    dmax: f64,
    pub bits: u64,
}

/// Plans the mode for `vals`; None when some value is not finite or falls outside its interval, and when
/// every value shares one sign and binade: there mode 2's single width is every sample's own already, and
/// its header is two words shorter (this check also spares most chunks the planning pass).
pub fn plan(vals: &[f64]) -> Option<Plan> {
    let binade = |v: &f64| v.to_bits() >> 52;
    let b0 = binade(vals.first()?);
    if vals.len() < 2 || vals.iter().all(|v| binade(v) == b0) || vals.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let (mut dmin, mut dmax, mut max_abs) = (f64::INFINITY, f64::NEG_INFINITY, vals[0].abs());
    for p in vals.windows(2) {
        let d = p[1] - p[0];
        dmin = dmin.min(d);
        dmax = dmax.max(d);
        max_abs = max_abs.max(p[1].abs());
    }
    // prev + fl(x - prev) can round one unit in the last place away from x: a slack of a few units of the
    // largest value keeps every x inside its interval, and costs a bit only where an interval's size
    // crosses a power of two.
    let slack = max_abs * f64::EPSILON * 4.0;
    dmin -= slack;
    dmax += slack;
    if !dmin.is_finite() || !dmax.is_finite() {
        return None;
    }
    let mut bits = 3 * 64;
    for p in vals.windows(2) {
        let (lo, span, width) = interval(p[0], dmin, dmax)?;
        if key(p[1]).wrapping_sub(lo) > span {
            return None;
        }
        bits += width as u64;
    }
    Some(Plan { dmin, dmax, bits })
}

/// Writes the first value, the bounds and every position, as planned.
pub fn write(w: &mut BitWriter, vals: &[f64], plan: &Plan) {
    w.write(vals[0].to_bits(), 64);
    w.write(plan.dmin.to_bits(), 64);
    w.write(plan.dmax.to_bits(), 64);
    for p in vals.windows(2) {
        let (lo, _, width) = interval(p[0], plan.dmin, plan.dmax).expect("planned");
        w.write(key(p[1]).wrapping_sub(lo), width);
    }
}

/// Reads what [`write`] wrote, handing each value to `f` in order; None when the bits run out or a
/// position lies outside its interval.
pub fn read(r: &mut BitReader, count: usize, mut f: impl FnMut(f64)) -> Option<()> {
    let mut prev = f64::from_bits(r.read(64)?);
    let dmin = f64::from_bits(r.read(64)?);
    let dmax = f64::from_bits(r.read(64)?);
    f(prev);
    for _ in 1..count {
        let (lo, span, width) = interval(prev, dmin, dmax)?;
        let pos = r.read(width)?;
        if pos > span {
            return None;
        }
        prev = from_key(lo.wrapping_add(pos));
        f(prev);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_orders_doubles_and_round_trips() {
        let xs = [
            f64::NEG_INFINITY,
            -1e300,
            -2.5,
            -f64::MIN_POSITIVE,
            -0.0,
            0.0,
            5e-324,
            1.0,
            1.0 + f64::EPSILON,
            7e300,
            f64::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(key(w[0]) < key(w[1]), "{} < {}", w[0], w[1]);
        }
        for x in xs {
            assert_eq!(from_key(key(x)).to_bits(), x.to_bits());
        }
        assert_eq!(key(1.0 + f64::EPSILON) - key(1.0), 1, "neighbours are one apart");
    }

    #[test]
    fn a_walk_across_binades_and_zero_costs_each_sample_its_own_binade() {
        // 1/3 steps from -3 up past 70: crosses zero and six binades.
        let vals: Vec<f64> = (0..220).map(|i| -3.0 + i as f64 / 3.0).collect();
        let plan = plan(&vals).unwrap();
        let mut w = BitWriter::new();
        write(&mut w, &vals, &plan);
        assert_eq!(w.bit_len() as u64, plan.bits);
        let mut back = Vec::new();
        read(&mut BitReader::new(w.bytes()), vals.len(), |v| back.push(v)).unwrap();
        assert_eq!(
            back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            vals.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        // Near 64 a step of 1/3 spans about 2^45 doubles; near 1 about 2^51; one mode-2 width would be
        // the widest of them for every sample.
        let mode2_width = 64 - {
            let ks: Vec<i64> =
                vals.windows(2).map(|p| (p[1].to_bits() as i64).wrapping_sub(p[0].to_bits() as i64)).collect();
            (ks.iter().max().unwrap().wrapping_sub(*ks.iter().min().unwrap()) as u64).leading_zeros()
        } as u64;
        assert!(plan.bits < 192 + mode2_width * 219, "{} bits vs mode 2 {}", plan.bits, mode2_width * 219);
    }

    #[test]
    fn not_finite_values_and_single_binades_are_left_to_other_modes() {
        assert!(plan(&[1.0, f64::NAN]).is_none());
        assert!(plan(&[f64::INFINITY, 1.0]).is_none());
        assert!(plan(&[f64::MAX, -f64::MAX]).is_none(), "the change overflows");
        assert!(plan(&[1.0]).is_none());
        assert!(plan(&[50.0, 51.3, 33.7, 63.9]).is_none(), "one binade: mode 2 serves");
        assert!(plan(&[-50.0, 51.3]).is_some(), "the sign differs");
        assert!(plan(&[63.0, 64.5]).is_some(), "the binade differs");
    }

    #[test]
    fn a_position_past_its_interval_is_refused() {
        // dmin = dmax = 0: every interval holds one double, so a 0-bit position; a stream that claims an
        // interval with its bounds swapped is corrupt.
        let mut w = BitWriter::new();
        w.write(1.0f64.to_bits(), 64);
        w.write(1.0f64.to_bits(), 64);
        w.write((-1.0f64).to_bits(), 64);
        assert!(read(&mut BitReader::new(w.bytes()), 2, |_| {}).is_none());
    }
}
