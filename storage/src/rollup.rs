//! Rollup blocks: the per-bucket partial aggregates of one series over one block (6 h of 1-minute buckets or
//! 6 h of 1-hour buckets), stored column by column so each column compresses like a series.
//!
//! | bytes            | meaning                                                                    |
//! |------------------|----------------------------------------------------------------------------|
//! | 1                | version (2)                                                                |
//! | uvarint, n bytes | the count column: a chunk (see docs/format/chunk.md) over the bucket starts |
//! | 7 x (uvarint, n) | sum, min, max, first, last, first_ts - start, last_ts - start: each a chunk |
//! |                  | over the bucket ordinals 0, 1, 2, ... (the starts are stored once, above)  |
//!
//! Version 1 (still read) stored all eight columns over the bucket starts, each behind a 4-byte length: on
//! a 6-value column of a 1-hour block the repeated header and length were a third of the column.

use crate::aggregate::{bucket_start, Partial};
use crate::codec::bits::{get_uvarint, put_uvarint};
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

const VERSION: u8 = 2;
const COLUMNS: usize = 8;

pub fn encode_block(buckets: &[(i64, Partial)]) -> Vec<u8> {
    let starts: Vec<i64> = buckets.iter().map(|b| b.0).collect();
    let ordinals: Vec<i64> = (0..buckets.len() as i64).collect();
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
    for (i, c) in cols.iter().enumerate() {
        let enc = codec::encode_chunk(if i == 0 { &starts } else { &ordinals }, c);
        put_uvarint(&mut out, enc.len() as u64);
        out.extend_from_slice(&enc);
    }
    out
}

pub fn decode_block(buf: &[u8]) -> Result<Vec<(i64, Partial)>, CodecError> {
    let version = buf.first().copied().unwrap_or(0);
    if !(1..=VERSION).contains(&version) {
        return Err(CodecError::UnknownEncoding(version));
    }
    let mut pos = 1;
    let mut starts = Vec::new();
    let mut cols: Vec<Vec<f64>> = Vec::with_capacity(COLUMNS);
    for i in 0..COLUMNS {
        let n = if version == 1 {
            let n = buf.get(pos..pos + 4).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize);
            pos += 4;
            n
        } else {
            get_uvarint(buf, &mut pos).and_then(|n| usize::try_from(n).ok())
        }
        .ok_or(CodecError::Truncated { offset: pos })?;
        let chunk = buf.get(pos..pos.saturating_add(n)).ok_or(CodecError::Truncated { offset: pos })?;
        pos += n;
        let (mut t, mut v) = (Vec::new(), Vec::new());
        codec::decode_chunk(chunk, &mut t, &mut v)?;
        if i == 0 {
            starts = t;
        } else if t.len() != starts.len() || (version == 1 && t != starts) {
            return Err(CodecError::LengthMismatch);
        }
        cols.push(v);
    }
    let mut out = Vec::with_capacity(starts.len());
    for (i, &s) in starts.iter().enumerate() {
        // A bucket's first and last sample times are stored as offsets from its start; a corrupt block can
        // hold offsets that put them outside i64.
        let at = |offset: f64| {
            s.checked_add(offset as i64).ok_or(CodecError::Corrupt { offset: pos, what: "sample time out of range" })
        };
        out.push((
            s,
            Partial {
                count: cols[0][i] as u64,
                sum: cols[1][i],
                min: cols[2][i],
                max: cols[3][i],
                first: cols[4][i],
                last: cols[5][i],
                first_ts: at(cols[6][i])?,
                last_ts: at(cols[7][i])?,
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets() -> Vec<(i64, Partial)> {
        // Irregular starts (an empty hour in the middle), full-precision values, one bucket of one sample.
        let mut x = 1.0f64 / 3.0;
        [0i64, 1, 2, 4, 5]
            .iter()
            .map(|&h| {
                let s = 1_764_000_000_000 + h * 3_600_000;
                x = x * 1.7 + 0.1;
                let count = if h == 5 { 1 } else { 360 };
                (
                    s,
                    Partial {
                        count,
                        sum: x * 360.0,
                        min: x - 1.0,
                        max: x + 1.0,
                        first_ts: s,
                        first: x,
                        last_ts: s + 3_590_000,
                        last: -x,
                    },
                )
            })
            .collect()
    }

    /// The first format: all eight columns over the bucket starts, each behind a 4-byte length.
    fn encode_v1(buckets: &[(i64, Partial)]) -> Vec<u8> {
        let v2 = encode_block(buckets);
        let decoded = decode_block(&v2).unwrap();
        let starts: Vec<i64> = decoded.iter().map(|b| b.0).collect();
        let col = |f: &dyn Fn(&(i64, Partial)) -> f64| decoded.iter().map(f).collect::<Vec<f64>>();
        let cols = [
            col(&|b| b.1.count as f64),
            col(&|b| b.1.sum),
            col(&|b| b.1.min),
            col(&|b| b.1.max),
            col(&|b| b.1.first),
            col(&|b| b.1.last),
            col(&|b| (b.1.first_ts - b.0) as f64),
            col(&|b| (b.1.last_ts - b.0) as f64),
        ];
        let mut out = vec![1u8];
        for c in &cols {
            let enc = codec::encode_chunk(&starts, c);
            out.extend_from_slice(&(enc.len() as u32).to_be_bytes());
            out.extend_from_slice(&enc);
        }
        out
    }

    fn same(a: &[(i64, Partial)], b: &[(i64, Partial)]) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    #[test]
    fn blocks_round_trip_and_first_format_blocks_still_read() {
        let b = buckets();
        let v2 = encode_block(&b);
        assert!(same(&decode_block(&v2).unwrap(), &b));
        let v1 = encode_v1(&b);
        assert_eq!(v1[0], 1);
        assert!(same(&decode_block(&v1).unwrap(), &b), "a block written by the first format reads the same");
        assert!(v2.len() + 50 < v1.len(), "starts stored once: {} bytes against {}", v2.len(), v1.len());
    }

    #[test]
    fn truncated_or_unknown_blocks_are_errors() {
        let v2 = encode_block(&buckets());
        for cut in 0..v2.len() {
            assert!(decode_block(&v2[..cut]).is_err(), "cut at {cut}");
        }
        let mut v9 = v2.clone();
        v9[0] = 9;
        assert_eq!(decode_block(&v9).unwrap_err(), CodecError::UnknownEncoding(9));
    }
}
