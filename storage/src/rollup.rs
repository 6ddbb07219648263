//! Rollup blocks: the per-bucket partial aggregates of one series over one block (6 h of 1-minute buckets or
//! 6 h of 1-hour buckets), stored column by column so each column compresses like a series.
//!
//! | bytes            | meaning                                                                    |
//! |------------------|----------------------------------------------------------------------------|
//! | 1                | version (1)                                                                |
//! | 8 x (u32 BE, n)  | columns, each a chunk (see docs/format/chunk.md) over the bucket starts:   |
//! |                  | count, sum, min, max, first, last, first_ts - start, last_ts - start       |
//!
//! Every column repeats the bucket timestamps, which cost about one bit per bucket (delta-of-delta 0).

use crate::aggregate::{bucket_start, Partial};
use crate::codec::{self, decimal, CodecError};

/// When every raw value is an exact decimal (counters, few-decimal gauges), replaces each bucket's sum by the
/// exact decimal sum of the mantissas. Float addition would leave values like 69.12000000000001, which only
/// the XOR encoding can store; the exact sum equals the float sum up to rounding and encodes as decimal.
pub fn exact_decimal_sums(ts: &[i64], vals: &[f64], width: i64, buckets: &mut [(i64, Partial)]) {
    let Some((e, ms)) = decimal::fit(vals) else { return };
    let mut i = 0;
    for (b, p) in buckets.iter_mut() {
        let mut sum: i128 = 0;
        while i < ts.len() && bucket_start(ts[i], width, 0) == *b {
            sum += ms[i] as i128;
            i += 1;
        }
        if sum.unsigned_abs() < (1u128 << 53) {
            p.sum = decimal::value(sum as i64, e);
        }
    }
}

const VERSION: u8 = 1;
const COLUMNS: usize = 8;

pub fn encode_block(buckets: &[(i64, Partial)]) -> Vec<u8> {
    let starts: Vec<i64> = buckets.iter().map(|b| b.0).collect();
    let cols: [Vec<f64>; COLUMNS] = [
        buckets.iter().map(|b| b.1.count as f64).collect(),
        buckets.iter().map(|b| b.1.sum).collect(),
        buckets.iter().map(|b| b.1.min).collect(),
        buckets.iter().map(|b| b.1.max).collect(),
        buckets.iter().map(|b| b.1.first).collect(),
        buckets.iter().map(|b| b.1.last).collect(),
        buckets.iter().map(|b| (b.1.first_ts - b.0) as f64).collect(),
        buckets.iter().map(|b| (b.1.last_ts - b.0) as f64).collect(),
    ];
    let mut out = vec![VERSION];
    for c in &cols {
        let enc = codec::encode_chunk(&starts, c);
        out.extend_from_slice(&(enc.len() as u32).to_be_bytes());
        out.extend_from_slice(&enc);
    }
    out
}

pub fn decode_block(buf: &[u8]) -> Result<Vec<(i64, Partial)>, CodecError> {
    if buf.first() != Some(&VERSION) {
        return Err(CodecError::UnknownEncoding(buf.first().copied().unwrap_or(0)));
    }
    let mut pos = 1;
    let mut starts = Vec::new();
    let mut cols: Vec<Vec<f64>> = Vec::with_capacity(COLUMNS);
    for i in 0..COLUMNS {
        let n = buf
            .get(pos..pos + 4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or(CodecError::Truncated { offset: pos })?;
        let chunk = buf.get(pos + 4..pos + 4 + n).ok_or(CodecError::Truncated { offset: pos + 4 })?;
        pos += 4 + n;
        let (mut t, mut v) = (Vec::new(), Vec::new());
        codec::decode_chunk(chunk, &mut t, &mut v)?;
        if i == 0 {
            starts = t;
        } else if t != starts {
            return Err(CodecError::LengthMismatch);
        }
        cols.push(v);
    }
    Ok(starts
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            (
                s,
                Partial {
                    count: cols[0][i] as u64,
                    sum: cols[1][i],
                    min: cols[2][i],
                    max: cols[3][i],
                    first: cols[4][i],
                    last: cols[5][i],
                    first_ts: s + cols[6][i] as i64,
                    last_ts: s + cols[7][i] as i64,
                },
            )
        })
        .collect())
}
