//! Series limits: `[limits] max_series_per_measurement` and `max_series`, cluster-wide numbers enforced by
//! each shard's leader before it proposes a write.
//!
//! Series hash over the shards, so each shard takes an equal share of a limit (as Mimir's ingesters divide a
//! tenant's global series limit), with slack for the unevenness: a quarter for the ring (its arcs differ by
//! about a tenth either way) and three standard deviations for where a measurement's series happen to fall. A point that would
//! create a series over its shard's share is dropped from the write before it enters the Raft log (the other
//! points of the request are written; the client gets a partial-write error naming the measurement and the
//! limit). Series that exist keep being written. The check runs on the leader only and is not part of
//! the replicated state, so replicas never disagree; two writes racing through one leader may overshoot by
//! the points of one group commit.

use std::collections::HashSet;
use std::sync::Arc;

use pharos_raft::shard_sm::SharedEngine;
use pharos_storage::Point;

use crate::meta::Meta;

/// The cluster-wide limits (0: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeriesLimits {
    pub per_measurement: u64,
    pub total: u64,
}

impl SeriesLimits {
    pub fn from_config(l: &crate::config::Limits) -> SeriesLimits {
        SeriesLimits { per_measurement: l.max_series_per_measurement, total: l.max_series }
    }

    pub fn any(&self) -> bool {
        self.per_measurement > 0 || self.total > 0
    }
}

/// One shard's share of a cluster-wide limit (the whole limit on a cluster of one shard).
pub fn share(limit: u64, shards: u32) -> u64 {
    if shards <= 1 {
        return limit;
    }
    let even = limit as f64 / shards as f64;
    (even * 1.25 + 3.0 * even.sqrt()).ceil() as u64
}

/// The check on one shard replica's writer.
pub struct Limiter {
    pub limits: SeriesLimits,
    pub engine: SharedEngine,
    pub meta: Arc<Meta>,
}

/// What the check refused of one batch: samples, and the first limit met.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Refused {
    pub samples: u64,
    pub why: Option<String>,
}

impl Limiter {
    /// Drops from `batches` the points that would create series over this shard's share of a limit;
    /// returns what was dropped of each batch.
    pub fn filter(&self, batches: &mut [Arc<Vec<Point>>]) -> Vec<Refused> {
        let shards = self.meta.shard_count() as u32;
        let (pm, total) = (share(self.limits.per_measurement, shards), share(self.limits.total, shards));
        let engine = self.engine.read().expect("engine lock poisoned");
        let mut key = Vec::new();
        // Series this commit creates (counted once per measurement and tags, across its batches).
        let mut added: std::collections::HashMap<String, u64> = Default::default();
        let mut added_total = 0u64;
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut out = Vec::with_capacity(batches.len());
        for batch in batches.iter_mut() {
            let mut refused = Refused::default();
            let mut keep: Option<Vec<Point>> = None;
            for (i, p) in batch.iter().enumerate() {
                let n = engine.new_series_of(p, &mut key) as u64;
                let fresh = n > 0 && !seen.contains(&key);
                let over = if !fresh {
                    None
                } else {
                    let m = added.get(p.measurement.as_str()).copied().unwrap_or(0);
                    let in_m = engine.index().measurement_series(&p.measurement) + m;
                    let in_all = engine.series_count() as u64 + added_total;
                    if self.limits.per_measurement > 0 && in_m + n > pm {
                        Some(format!(
                            "measurement {:?} is at its limit, [limits] max_series_per_measurement = {}",
                            p.measurement.as_str(),
                            self.limits.per_measurement
                        ))
                    } else if self.limits.total > 0 && in_all + n > total {
                        Some(format!("the cluster is at its limit, [limits] max_series = {}", self.limits.total))
                    } else {
                        None
                    }
                };
                match over {
                    Some(why) => {
                        refused.samples += p.fields.len() as u64;
                        refused.why.get_or_insert(why);
                        // The first refusal copies the points kept so far; later ones skip theirs.
                        keep.get_or_insert_with(|| batch[..i].to_vec());
                    }
                    None => {
                        if fresh {
                            seen.insert(key.clone());
                            *added.entry(p.measurement.to_string()).or_default() += n;
                            added_total += n;
                        }
                        if let Some(k) = keep.as_mut() {
                            k.push(p.clone());
                        }
                    }
                }
            }
            if let Some(k) = keep {
                *batch = Arc::new(k);
            }
            out.push(refused);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_takes_an_even_share_with_slack() {
        // 1,000 a shard: 1,250 plus 3 x sqrt(1,000).
        assert_eq!(share(16_000, 16), 1_345);
        assert_eq!(share(10, 16), 4); // 0.78 + 2.37, rounded up
        assert_eq!(share(1_000, 1), 1_000);
        assert_eq!(share(5, 0), 5);
    }
}
