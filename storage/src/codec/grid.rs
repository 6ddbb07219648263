//! Timestamp mode 2, *grid*: every timestamp but the first and the last (which the chunk header holds) as
//! its distance from the straight line between them, `line(i) = first + floor(i * span / (n - 1))`
//! (exact integer arithmetic), zig-zagged and Rice-coded.
//!
//! Why: a scraper fires on a fixed interval and stamps each sample with the moment it fired, a few ms
//! late: `t_i = phase + i * interval + jitter_i`. Delta-of-delta codes see `jitter_{i+1} - 2 jitter_i +
//! jitter_{i-1}`, rarely zero, so nearly every sample takes a 9-bit code; the distance from the line is
//! the jitter itself (plus at most the rounding of the line), a few ms, which a Rice code with a small
//! parameter stores in 2-4 bits. A chunk whose samples do not lie near a line (a missed scrape, a
//! restarted target) is still correct here, only larger: the encoder then keeps delta-of-delta codes.
//!
//! Layout (in the chunk's bit stream, where the timestamp codes go): `k` in 5 bits, then per residual `z`
//! (zig-zag of `t_i - line(i)`): `q = z >> k`; when `q < ESCAPE`, `q` ones, a zero and the low `k` bits of
//! `z`; otherwise `ESCAPE` ones and `z` in 64 bits.

use super::bits::{unzigzag, zigzag, BitReader, BitWriter};
use super::ChunkHeader;

/// Rice quotients from this on are written raw.
const ESCAPE: u32 = 24;
const K_BITS: u32 = 5;
const K_MAX: u32 = (1 << K_BITS) - 1;

/// The Rice parameter chosen for a chunk and the bits its timestamps take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub k: u32,
    pub bits: u64,
}

fn line(first: i64, span: u64, n: usize, i: usize) -> i64 {
    first.wrapping_add((i as u128 * span as u128 / (n as u128 - 1)) as u64 as i64)
}

fn residuals(ts: &[i64]) -> impl Iterator<Item = u64> + '_ {
    let (n, first) = (ts.len(), ts[0]);
    let span = ts[n - 1].wrapping_sub(first) as u64;
    (1..n - 1).map(move |i| zigzag(ts[i].wrapping_sub(line(first, span, n, i))))
}

fn code_bits(z: u64, k: u32) -> u64 {
    let q = z >> k;
    if q < ESCAPE as u64 {
        q + 1 + k as u64
    } else {
        ESCAPE as u64 + 64
    }
}

/// The cheapest Rice parameter for these timestamps (3 or more), and the bits they take with it.
pub fn plan(ts: &[i64]) -> Option<Plan> {
    if ts.len() < 3 {
        return None;
    }
    // A Rice code is cheapest near k = log2(mean residual); try a few around it.
    let zs: Vec<u64> = residuals(ts).collect();
    let mean = (zs.iter().map(|z| *z as u128).sum::<u128>() / zs.len() as u128).max(1) as u64;
    let guess = 63 - mean.leading_zeros();
    let mut best: Option<Plan> = None;
    for k in guess.saturating_sub(2)..=(guess + 1).min(K_MAX) {
        let bits = K_BITS as u64 + zs.iter().map(|z| code_bits(*z, k)).sum::<u64>();
        if best.is_none_or(|b| bits < b.bits) {
            best = Some(Plan { k, bits });
        }
    }
    best
}

pub fn write(w: &mut BitWriter, ts: &[i64], plan: &Plan) {
    let k = plan.k;
    w.write(k as u64, K_BITS);
    for z in residuals(ts) {
        let q = z >> k;
        if q < ESCAPE as u64 {
            // q ones and a zero (q + 1 <= ESCAPE bits), then the remainder.
            w.write(((1u64 << q) - 1) << 1, q as u32 + 1);
            w.write(z & ((1u64 << k) - 1), k);
        } else {
            w.write((1u64 << ESCAPE) - 1, ESCAPE);
            w.write(z, 64);
        }
    }
}

/// Appends the timestamps after the first (already in `out`) through the last.
pub fn read(r: &mut BitReader, h: &ChunkHeader, out: &mut Vec<i64>) -> Option<()> {
    let n = h.count as usize;
    let span = h.max_ts.wrapping_sub(h.min_ts) as u64;
    let k = r.read(K_BITS)? as u32;
    let mut prev = h.min_ts;
    for i in 1..n - 1 {
        let q = r.unary(ESCAPE)?;
        let z = if q < ESCAPE { ((q as u64) << k) | r.read(k)? } else { r.read(64)? };
        let t = line(h.min_ts, span, n, i).wrapping_add(unzigzag(z));
        // Timestamps increase inside a chunk: anything else is corruption.
        if t <= prev || t >= h.max_ts {
            return None;
        }
        out.push(t);
        prev = t;
    }
    out.push(h.max_ts);
    Some(())
}
