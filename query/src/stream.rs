//! Raw queries in time windows, so a large result streams out window by window instead of sitting whole in
//! memory on the coordinator.
//!
//! The coordinator first asks the shards for the selection's extent (oldest and newest sample, series
//! count), then walks the range in windows sized for about `target_points` samples each (adapting to the
//! density it sees), in time order (or reverse for `ORDER BY time DESC`). Each window's rows are final
//! when emitted: LIMIT and OFFSET are applied across windows per series. A series may come in several
//! pieces, like InfluxDB's chunked responses. Queries whose rows depend on other windows (window functions
//! over raw values, SLIMIT/SOFFSET) run as one window.

use std::collections::HashMap;

use crate::error::QueryError;
use crate::exec;
use crate::plan::{RawPlan, Shape};
use crate::result::Series;
use crate::shard::{MetaAnswer, MetaQuery, RawQuery, ShardAnswer, ShardQuery};

/// Assumed sample interval for the first window's size (later windows adapt to what they see).
const ASSUMED_INTERVAL_MS: i64 = 10_000;

pub struct RawWindows {
    plan: RawPlan,
    /// Range still to read: [lo, hi).
    lo: i64,
    hi: i64,
    width: i64,
    target_points: u64,
    /// Per result series: rows skipped (OFFSET) and emitted (LIMIT) so far.
    counts: HashMap<(String, Vec<(String, String)>), (u64, u64)>,
}

impl RawWindows {
    /// The query that finds the selection's extent (ask every shard, then call [`RawWindows::new`]).
    pub fn extent_query(plan: &RawPlan) -> ShardQuery {
        ShardQuery::Meta(MetaQuery::Extent { sel: plan.query.sel.clone(), fields: plan.query.fields.clone() })
    }

    /// Whether the plan can run in windows.
    pub fn streamable(plan: &RawPlan) -> bool {
        let windowed = plan.columns.as_ref().is_some_and(|cs| cs.iter().any(|c| c.expr.has_window()));
        !windowed && plan.shape.slimit.is_none() && plan.shape.soffset.is_none()
    }

    /// Windows over the part of the plan's range that holds data (from the shards' extent answers).
    pub fn new(plan: &RawPlan, extents: &[ShardAnswer], target_points: u64) -> Result<RawWindows, QueryError> {
        let (mut range, mut series) = (None::<(i64, i64)>, 0u64);
        for a in extents {
            let ShardAnswer::Meta(MetaAnswer::Extent(r, n)) = a else {
                return Err(QueryError::Internal("a shard answered the extent query with something else".into()));
            };
            series += n;
            if let Some((x, y)) = r {
                range = Some(range.map_or((*x, *y), |(a, b)| (a.min(*x), b.max(*y))));
            }
        }
        let (lo, hi) = match range {
            Some((a, b)) => (plan.query.start.max(a), plan.query.end.min(b.saturating_add(1))),
            None => (0, 0),
        };
        let guess = (target_points as i64).saturating_mul(ASSUMED_INTERVAL_MS) / (series.max(1) as i64);
        Ok(RawWindows {
            plan: plan.clone(),
            lo,
            hi,
            width: guess.clamp(1_000, (hi - lo).max(1_000)),
            target_points: target_points.max(1),
            counts: HashMap::new(),
        })
    }

    pub fn done(&self) -> bool {
        self.lo >= self.hi
    }

    /// The next window's shard query and its [start, end).
    pub fn next_query(&self) -> Option<(ShardQuery, i64, i64)> {
        if self.done() {
            return None;
        }
        let (a, z) = if self.plan.shape.order_desc {
            (self.hi.saturating_sub(self.width).max(self.lo), self.hi)
        } else {
            (self.lo, self.lo.saturating_add(self.width).min(self.hi))
        };
        Some((ShardQuery::Raw(RawQuery { start: a, end: z, ..self.plan.query.clone() }), a, z))
    }

    /// Turns the answers of the window [start, end) into final rows (LIMIT/OFFSET applied across windows)
    /// and moves on; the next window's width adapts to the points this one held.
    pub fn finish_window(
        &mut self,
        start: i64,
        end: i64,
        answers: Vec<ShardAnswer>,
    ) -> Result<Vec<Series>, QueryError> {
        let points: u64 =
            answers.iter().map(|a| if let ShardAnswer::Raw { points, .. } = a { *points } else { 0 }).sum();
        let mut window_plan = self.plan.clone();
        window_plan.query.start = start;
        window_plan.query.end = end;
        window_plan.shape = Shape { limit: None, offset: None, slimit: None, soffset: None, ..self.plan.shape };
        let series = exec::finish(&crate::plan::Plan::Raw(Box::new(window_plan)), answers)?;
        if self.plan.shape.order_desc {
            self.hi = start;
        } else {
            self.lo = end;
        }
        let scale = (self.target_points as f64 / points.max(1) as f64).clamp(0.5, 4.0);
        self.width = ((self.width as f64 * scale) as i64).max(1_000);
        let (offset, limit) = (self.plan.shape.offset.unwrap_or(0), self.plan.shape.limit.unwrap_or(u64::MAX));
        let mut out = Vec::new();
        for mut s in series {
            let c = self.counts.entry((s.name.clone(), s.tags.clone())).or_insert((0, 0));
            let skip = (offset - c.0).min(s.values.len() as u64);
            c.0 += skip;
            let take = (limit - c.1).min(s.values.len() as u64 - skip);
            c.1 += take;
            s.values = s.values.into_iter().skip(skip as usize).take(take as usize).collect();
            if !s.values.is_empty() {
                out.push(s);
            }
        }
        Ok(out)
    }
}
