//! A per-shard cache of aggregate answers for dashboards that repeat a query as time moves on.
//!
//! An entry holds, for one query shape (everything but the time range), the shard's partial aggregates of
//! a contiguous run of *whole* buckets. A later query with the same shape takes the buckets it shares with
//! the entry from the cache and computes only the rest (typically the newest bucket and the partial edges).
//!
//! Validity: the engine numbers every change that can alter a read and remembers the oldest timestamp each
//! touched ([`ShardEngine::oldest_change_since`]). Before use, an entry drops every bucket at or after the
//! oldest change since it was stored, so a late write (or expiry, or a snapshot install) never serves a stale
//! bucket. Writes at "now" invalidate only the newest bucket, which dashboards recompute anyway.

use std::collections::HashMap;
use std::sync::Mutex;

use pharos_storage::aggregate::bucket_start;
use pharos_storage::ShardEngine;

use crate::error::QueryError;
use crate::shard::{merge_buckets, run, AggGroup, AggQuery, ShardAnswer, ShardLimits, ShardQuery};

/// Entries bigger than this many buckets (over all groups) are not kept.
const MAX_ENTRY_BUCKETS: usize = 200_000;

struct Entry {
    version: u64,
    /// Covered buckets: [lo, hi), on the query's bucket grid.
    lo: i64,
    hi: i64,
    groups: Vec<AggGroup>,
    last_used: u64,
}

pub struct ShardCache {
    entries: HashMap<String, Entry>,
    capacity: usize,
    clock: u64,
}

/// Buckets served from the cache and computed, for the hit rate in /metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
}

impl ShardCache {
    /// A cache of at most `capacity` query shapes (0 disables it).
    pub fn new(capacity: usize) -> ShardCache {
        ShardCache { entries: HashMap::new(), capacity, clock: 0 }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn shape_key(q: &AggQuery) -> String {
    let mut k = q.clone();
    k.start = 0;
    k.end = 0;
    k.limits = ShardLimits { max_series: 0, max_points: 0 };
    format!("{k:?}")
}

fn restrict(groups: &[AggGroup], lo: i64, hi: i64) -> Vec<AggGroup> {
    groups
        .iter()
        .filter_map(|g| {
            let buckets: Vec<_> = g.buckets.iter().filter(|b| b.ts >= lo && b.ts < hi).cloned().collect();
            (!buckets.is_empty()).then(|| AggGroup { buckets, ..g.clone() })
        })
        .collect()
}

fn merge_groups(mut a: Vec<AggGroup>, b: Vec<AggGroup>) -> Vec<AggGroup> {
    for g in b {
        match a.iter_mut().find(|x| x.measurement == g.measurement && x.tags == g.tags && x.field == g.field) {
            Some(x) => x.buckets = merge_buckets(std::mem::take(&mut x.buckets), g.buckets),
            None => a.push(g),
        }
    }
    a.sort_by(|x, y| (&x.measurement, &x.tags, &x.field).cmp(&(&y.measurement, &y.tags, &y.field)));
    a
}

fn fresh(e: &ShardEngine, q: &AggQuery, start: i64, end: i64) -> Result<(Vec<AggGroup>, u64, u64), QueryError> {
    if start >= end {
        return Ok((vec![], 0, 0));
    }
    let sub = AggQuery { start, end, ..q.clone() };
    match run(e, &ShardQuery::Aggregate(sub))? {
        ShardAnswer::Aggregate { groups, series, points } => Ok((groups, series, points)),
        _ => Err(QueryError::Internal("aggregate query answered with another kind".into())),
    }
}

/// Answers a shard query, from the cache where it can. Only GROUP BY time aggregates without raw values
/// are cached; everything else runs as [`run`] does.
pub fn run_cached(
    e: &ShardEngine,
    cache: &Mutex<ShardCache>,
    q: &ShardQuery,
) -> (Result<ShardAnswer, QueryError>, CacheStats) {
    let ShardQuery::Aggregate(a) = q else { return (run(e, q), CacheStats::default()) };
    let single_bucket = a.end.saturating_sub(a.start) <= a.width;
    let disabled = cache.lock().map(|c| c.capacity == 0).unwrap_or(true);
    if single_bucket || a.needs.values || disabled {
        return (run(e, q), CacheStats::default());
    }
    // Whole buckets of the range: [first, last).
    let w = a.width;
    let first = {
        let b = bucket_start(a.start, w, a.offset);
        if b == a.start {
            b
        } else {
            b + w
        }
    };
    let last = bucket_start(a.end, w, a.offset);
    let key = shape_key(a);
    let version = e.version();

    // Take what the cache still holds (after dropping buckets touched by later changes).
    let cached: Option<(i64, i64, Vec<AggGroup>)> = {
        let mut c = match cache.lock() {
            Ok(c) => c,
            Err(_) => return (run(e, q), CacheStats::default()),
        };
        c.clock += 1;
        let now = c.clock;
        let mut drop_entry = false;
        let out = match c.entries.get_mut(&key) {
            None => None,
            Some(ent) => match e.oldest_change_since(ent.version) {
                None => {
                    drop_entry = true;
                    None
                }
                Some(t) => {
                    if t < ent.hi {
                        ent.hi = ent.hi.min(bucket_start(t, w, a.offset)).max(ent.lo);
                        ent.groups = restrict(&ent.groups, ent.lo, ent.hi);
                    }
                    ent.version = version;
                    ent.last_used = now;
                    let (u, v) = (first.max(ent.lo), last.min(ent.hi));
                    (u < v).then(|| (u, v, restrict(&ent.groups, u, v)))
                }
            },
        };
        if drop_entry {
            c.entries.remove(&key);
        }
        out
    };

    let whole = ((last - first) / w).max(0) as u64;
    let (answer, stats) = match cached {
        Some((u, v, groups)) => {
            let before = fresh(e, a, a.start, u);
            let after = fresh(e, a, v, a.end);
            let (Ok((g1, s1, p1)), Ok((g2, s2, p2))) = (before, after) else {
                return (run(e, q), CacheStats::default());
            };
            let hits = ((v - u) / w) as u64;
            let groups = merge_groups(merge_groups(groups, g1), g2);
            (
                ShardAnswer::Aggregate { groups, series: s1.max(s2), points: p1 + p2 },
                CacheStats { hits, misses: whole - hits },
            )
        }
        None => match fresh(e, a, a.start, a.end) {
            Ok((groups, series, points)) => {
                (ShardAnswer::Aggregate { groups, series, points }, CacheStats { hits: 0, misses: whole })
            }
            Err(err) => return (Err(err), CacheStats::default()),
        },
    };

    // Keep the whole buckets of this answer (joined with what the entry held, when the runs touch).
    if first < last {
        let ShardAnswer::Aggregate { groups, .. } = &answer else { unreachable!("built above") };
        let mine = restrict(groups, first, last);
        let size: usize = mine.iter().map(|g| g.buckets.len()).sum();
        if let Ok(mut c) = cache.lock() {
            let now = c.clock;
            let (lo, hi, kept) = match c.entries.remove(&key) {
                Some(old) if old.version == version && old.lo <= last && first <= old.hi => {
                    let outside =
                        merge_groups(restrict(&old.groups, old.lo, first), restrict(&old.groups, last, old.hi));
                    (old.lo.min(first), old.hi.max(last), merge_groups(mine, outside))
                }
                _ => (first, last, mine),
            };
            let total: usize = kept.iter().map(|g| g.buckets.len()).sum();
            if size <= MAX_ENTRY_BUCKETS && total <= MAX_ENTRY_BUCKETS {
                if c.entries.len() >= c.capacity {
                    if let Some(oldest) = c.entries.iter().min_by_key(|(_, v)| v.last_used).map(|(k, _)| k.clone()) {
                        c.entries.remove(&oldest);
                    }
                }
                c.entries.insert(key, Entry { version, lo, hi, groups: kept, last_used: now });
            }
        }
    }
    (Ok(answer), stats)
}
