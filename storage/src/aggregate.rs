//! Partial aggregates: what a shard computes per time bucket next to its data, and what the query layer merges
//! across series and shards. Every field merges associatively, so the order of merging does not change the
//! result (first/last compare timestamps; ties keep the later merge argument for `last`, the earlier for `first`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub first_ts: i64,
    pub first: f64,
    pub last_ts: i64,
    pub last: f64,
}

impl Partial {
    pub fn of(ts: i64, v: f64) -> Partial {
        Partial { count: 1, sum: v, min: v, max: v, first_ts: ts, first: v, last_ts: ts, last: v }
    }

    #[inline]
    pub fn add(&mut self, ts: i64, v: f64) {
        self.count += 1;
        self.sum += v;
        // NaN never becomes min/max unless it is all there is (f64::min ignores NaN).
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        if ts < self.first_ts {
            self.first_ts = ts;
            self.first = v;
        }
        if ts >= self.last_ts {
            self.last_ts = ts;
            self.last = v;
        }
    }

    pub fn merge(&mut self, o: &Partial) {
        self.count += o.count;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        if o.first_ts < self.first_ts {
            self.first_ts = o.first_ts;
            self.first = o.first;
        }
        if o.last_ts >= self.last_ts {
            self.last_ts = o.last_ts;
            self.last = o.last;
        }
    }

    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }
}

/// Start of the bucket holding `ts` for buckets of `width` ms shifted by `offset` ms.
#[inline]
pub fn bucket_start(ts: i64, width: i64, offset: i64) -> i64 {
    (ts - offset).div_euclid(width) * width + offset
}

/// Folds time-ordered samples into per-bucket partials, appending to `out` (which is ordered by bucket and
/// holds only samples older than these).
pub fn bucketize(ts: &[i64], vals: &[f64], width: i64, offset: i64, out: &mut Vec<(i64, Partial)>) {
    debug_assert!(ts.windows(2).all(|w| w[0] < w[1]), "timestamps must ascend");
    let n = ts.len().min(vals.len());
    let mut i = 0;
    while i < n {
        let b = bucket_start(ts[i], width, offset);
        // Timestamps ascend: the bucket's samples are the run below its end, aggregated without a division
        // or a bucket lookup per sample.
        let end = b.saturating_add(width);
        // At least one sample per step, even where `end` saturates at i64::MAX.
        let j = (i + ts[i..n].iter().position(|&t| t >= end).unwrap_or(n - i)).max(i + 1);
        let p = match out.last_mut() {
            Some((lb, p)) if *lb == b => {
                p.add(ts[i], vals[i]);
                p
            }
            _ => {
                out.push((b, Partial::of(ts[i], vals[i])));
                &mut out.last_mut().expect("just pushed").1
            }
        };
        if j > i + 1 {
            let run = &vals[i + 1..j];
            p.count += run.len() as u64;
            // Added one by one, in order, so sums are the same bits as sample-by-sample addition.
            p.sum = run.iter().fold(p.sum, |s, &v| s + v);
            p.min = run.iter().fold(p.min, |m, &v| m.min(v));
            p.max = run.iter().fold(p.max, |m, &v| m.max(v));
            // Later than every sample so far in this bucket (ascending times).
            p.last_ts = ts[j - 1];
            p.last = vals[j - 1];
        }
        i = j;
    }
}

/// Merges two bucket lists ordered by bucket start into one.
pub fn merge_buckets(a: &[(i64, Partial)], b: &[(i64, Partial)]) -> Vec<(i64, Partial)> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len() + b.len());
    while i < a.len() || j < b.len() {
        if j == b.len() || (i < a.len() && a[i].0 < b[j].0) {
            out.push(a[i]);
            i += 1;
        } else if i == a.len() || b[j].0 < a[i].0 {
            out.push(b[j]);
            j += 1;
        } else {
            let mut p = a[i].1;
            p.merge(&b[j].1);
            out.push((a[i].0, p));
            i += 1;
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_second_means_of_the_classic_example() {
        // cpu on host-a at 19:00:00, :10, :20, :30, :40, :50 -> 30 s averages 19 and 25.
        let base = 19 * 3_600_000;
        let ts: Vec<i64> = (0..6).map(|i| base + i * 10_000).collect();
        let vals = [10.0, 16.0, 20.0, 30.0, 20.0, 30.0];
        let mut out = Vec::new();
        bucketize(&ts, &vals, 30_000, 0, &mut out);
        let means: Vec<f64> = out.iter().map(|(_, p)| p.mean()).collect();
        assert_eq!(means, vec![(10.0 + 16.0 + 20.0) / 3.0, 80.0 / 3.0]);
        assert_eq!(out[0].0, base);
        assert_eq!(out[1].0, base + 30_000);
    }

    #[test]
    fn bucketize_equals_adding_sample_by_sample() {
        // Irregular times, NaN and infinities, buckets with one sample, appending onto an existing bucket.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut t = -50_000i64;
        let (mut ts, mut vals) = (Vec::new(), Vec::new());
        for i in 0..2_000 {
            t += 1 + (next() % 40_000) as i64;
            ts.push(t);
            vals.push(match i % 97 {
                3 => f64::NAN,
                5 => f64::INFINITY,
                7 => f64::NEG_INFINITY,
                _ => (next() % 1_000_000) as f64 / 7.0 - 50_000.0,
            });
        }
        for (width, offset) in [(30_000, 0), (60_000, 7_000), (1, 0), (3_600_000, -5)] {
            let mut naive: Vec<(i64, Partial)> = vec![(bucket_start(ts[0], width, offset), Partial::of(ts[0], 1.5))];
            let mut fast = naive.clone();
            for (&t, &v) in ts.iter().zip(&vals) {
                let b = bucket_start(t, width, offset);
                match naive.last_mut() {
                    Some((lb, p)) if *lb == b => p.add(t, v),
                    _ => naive.push((b, Partial::of(t, v))),
                }
            }
            bucketize(&ts, &vals, width, offset, &mut fast);
            let bits = |o: &[(i64, Partial)]| {
                o.iter()
                    .map(|(b, p)| {
                        let f = |v: f64| v.to_bits();
                        (*b, p.count, f(p.sum), f(p.min), f(p.max), p.first_ts, f(p.first), p.last_ts, f(p.last))
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(&fast), bits(&naive), "width {width} offset {offset}");
        }
    }

    #[test]
    fn merge_is_order_independent() {
        let samples = [(5, 1.0), (1, 7.0), (9, -2.0), (3, 4.0), (9, 8.0)];
        let mut fwd = Partial::of(samples[0].0, samples[0].1);
        for &(t, v) in &samples[1..] {
            fwd.merge(&Partial::of(t, v));
        }
        let mut rev = Partial::of(samples[4].0, samples[4].1);
        for &(t, v) in samples[..4].iter().rev() {
            rev.merge(&Partial::of(t, v));
        }
        assert_eq!(
            (fwd.count, fwd.sum, fwd.min, fwd.max, fwd.first),
            (rev.count, rev.sum, rev.min, rev.max, rev.first)
        );
        assert_eq!((fwd.first_ts, fwd.first, fwd.last_ts), (1, 7.0, 9));
    }

    #[test]
    fn buckets_handle_negative_times_and_offsets() {
        assert_eq!(bucket_start(-1, 60_000, 0), -60_000);
        assert_eq!(bucket_start(59_999, 60_000, 0), 0);
        assert_eq!(bucket_start(59_999, 60_000, 30_000), 30_000);
        assert_eq!(bucket_start(29_999, 60_000, 30_000), -30_000);
    }
}
