//! Reads: series selection, raw samples (chunks and heads), and aggregates stitched across tiers.

use super::*;

impl ShardEngine {
    /// Series of measurements accepted by `measurement` that pass `filter`.
    pub fn select(&self, measurement: &dyn Fn(&str) -> bool, filter: &Filter) -> roaring::RoaringTreemap {
        self.index.select(measurement, filter)
    }

    /// Raw samples of one series in [start, end), in time order, appended to the outputs.
    pub fn read_raw(&self, sid: SeriesId, start: i64, end: i64, ts: &mut Vec<i64>, vals: &mut Vec<f64>) -> Result<()> {
        let Some((start, end)) = self.clamp(sid, Tier::Raw, start, end) else { return Ok(()) };
        // Sealed chunks hold only samples older than the head's first (later samples join the head), so a
        // range that starts inside the head needs no chunk lookups: recent reads touch memory only.
        let head_first = self.states[sid as usize].head.as_ref().and_then(|h| h.first_ts());
        let chunks_end = head_first.map_or(end, |f| end.min(f));
        let class = self.class_of(sid);
        let width = Tier::Raw.partition_ms();
        let (mut t, mut x) = (Vec::with_capacity(256), Vec::with_capacity(256));
        let chunks = cf(&self.db, CF_CHUNKS);
        let parts = if start < chunks_end { Some(partitions(sid, CF_CHUNKS, start, chunks_end, width)?) } else { None };
        for part in parts.into_iter().flatten() {
            let lo = data_key(self.shard, class, part, sid, i64::MIN);
            let hi = data_key(self.shard, class, part, sid, i64::MAX);
            let mut ro = ReadOptions::default();
            ro.set_iterate_lower_bound(lo.to_vec());
            ro.set_iterate_upper_bound(hi.to_vec());
            let mut it = self.db.raw_iterator_cf_opt(chunks, ro);
            // The chunk holding `start` may begin before it: position on the last chunk at or before start.
            it.seek_for_prev(data_key(self.shard, class, part, sid, start));
            if !it.valid() {
                it.seek_to_first();
            }
            while it.valid() {
                let (k, v) = (it.key().unwrap_or_default(), it.value().unwrap_or_default());
                let h = codec::chunk_header(v).map_err(|source| StorageError::CorruptChunk {
                    cf: CF_CHUNKS,
                    what: "chunk header",
                    key: k.to_vec(),
                    source,
                })?;
                if h.min_ts >= end {
                    break;
                }
                if h.max_ts >= start {
                    t.clear();
                    x.clear();
                    codec::decode_chunk(v, &mut t, &mut x).map_err(|source| StorageError::CorruptChunk {
                        cf: CF_CHUNKS,
                        what: "chunk",
                        key: k.to_vec(),
                        source,
                    })?;
                    push_range(&t, &x, start, end, ts, vals);
                }
                it.next();
            }
            it.status()?;
        }
        if let Some(h) = &self.states[sid as usize].head {
            if h.last_ts().is_some_and(|l| l >= start) && h.first_ts().is_some_and(|f| f < end) {
                t.clear();
                x.clear();
                h.decode_into(&mut t, &mut x);
                push_range(&t, &x, start, end, ts, vals);
            }
        }
        Ok(())
    }

    /// Per-bucket partial aggregates of one series in [start, end) for buckets of `width` ms shifted by
    /// `offset`, using rollup tiers where they exist and divide the bucket, and raw data elsewhere.
    pub fn series_buckets(
        &self,
        sid: SeriesId,
        start: i64,
        end: i64,
        width: i64,
        offset: i64,
        choice: TierChoice,
        out: &mut Vec<(i64, Partial)>,
    ) -> Result<()> {
        out.clear();
        if start >= end || width <= 0 {
            return Ok(());
        }
        let mut segments: Vec<(Tier, i64, i64)> = Vec::new();
        let mut t0 = start;
        if choice == TierChoice::Auto {
            for tier in [Tier::Hour, Tier::Minute] {
                let b = tier.bucket_ms();
                let Some(wm) = self.wm(tier) else { continue };
                if width % b != 0 || offset.rem_euclid(b) != 0 {
                    continue;
                }
                let keep_from = self.tier_floor(sid, tier);
                let a = align_up(t0.max(keep_from), b);
                let z = align_down(end.min(wm), b);
                if a < z {
                    if t0 < a {
                        segments.push((Tier::Raw, t0, a));
                    }
                    segments.push((tier, a, z));
                    t0 = z;
                }
            }
        }
        if t0 < end {
            segments.push((Tier::Raw, t0, end));
        }
        if self.pending_rollups.contains_key(&sid) {
            segments = self.around_pending_blocks(sid, segments);
        }
        let (mut t, mut x) = (Vec::new(), Vec::new());
        for (tier, a, z) in segments {
            match tier {
                Tier::Raw => {
                    t.clear();
                    x.clear();
                    self.read_raw(sid, a, z, &mut t, &mut x)?;
                    let mut part = Vec::new();
                    bucketize(&t, &x, width, offset, &mut part);
                    append_buckets(out, &part);
                }
                tier => {
                    let mut part: Vec<(i64, Partial)> = Vec::new();
                    self.read_rollups(sid, tier, a, z, &mut |bts, p| {
                        let b = bucket_start(bts, width, offset);
                        match part.last_mut() {
                            Some((lb, lp)) if *lb == b => lp.merge(p),
                            _ => part.push((b, *p)),
                        }
                    })?;
                    append_buckets(out, &part);
                }
            }
        }
        Ok(())
    }

    /// Splits tier segments so that blocks waiting for a rebuild are read from raw data.
    fn around_pending_blocks(&self, sid: SeriesId, segments: Vec<(Tier, i64, i64)>) -> Vec<(Tier, i64, i64)> {
        let mut out = Vec::with_capacity(segments.len() + 2);
        for (tier, a, z) in segments {
            match (tier, self.pending_blocks(sid, tier)) {
                (Tier::Minute | Tier::Hour, Some((p, q))) if p < z && q > a => {
                    let (p, q) = (p.max(a), q.min(z));
                    for seg in [(tier, a, p), (Tier::Raw, p, q), (tier, q, z)] {
                        if seg.1 < seg.2 {
                            out.push(seg);
                        }
                    }
                }
                _ => out.push((tier, a, z)),
            }
        }
        out
    }

    /// Earliest time a tier still holds data for this series (retention of its class).
    /// The earliest time the series can still have raw samples (its retention class's expiry floor;
    /// `i64::MIN` before any expiry ran).
    pub fn raw_floor(&self, sid: SeriesId) -> i64 {
        self.tier_floor(sid, Tier::Raw)
    }

    pub(super) fn tier_floor(&self, sid: SeriesId, tier: Tier) -> i64 {
        self.class_floor(self.class_of(sid), tier)
    }

    pub(super) fn class_floor(&self, class: u16, tier: Tier) -> i64 {
        self.floors.get(&(class, tier)).copied().unwrap_or(i64::MIN)
    }

    /// Narrows a read to where the series can have data in a tier: its time range and the expiry floor.
    /// The range of `sid` worth reading in `tier`: [start, end) cut to the series' own time range and to
    /// what retention keeps.
    fn clamp(&self, sid: SeriesId, tier: Tier, start: i64, end: i64) -> Option<(i64, i64)> {
        let st = self.states.get(sid as usize)?;
        let floor = self.floors.get(&(self.class_of(sid), tier)).copied().unwrap_or(i64::MIN);
        let start = start.max(st.min_ts).max(floor);
        let end = end.min(st.max_ts.saturating_add(1));
        (start < end).then_some((start, end))
    }

    fn read_rollups(
        &self,
        sid: SeriesId,
        tier: Tier,
        start: i64,
        end: i64,
        f: &mut dyn FnMut(i64, &Partial),
    ) -> Result<()> {
        let Some((cstart, cend)) = self.clamp(sid, tier, bucket_start(start, tier.block_ms(), 0), end) else {
            return Ok(());
        };
        let (start, end) = (start.max(bucket_start(cstart, tier.block_ms(), 0)), cend.min(end));
        if start >= end {
            return Ok(());
        }
        let class = self.class_of(sid);
        let cfh = cf(&self.db, tier_cf(tier));
        let first_block = bucket_start(start, tier.block_ms(), 0);
        for part in partitions(sid, tier_cf(tier), first_block, end, tier.partition_ms())? {
            let lo = data_key(self.shard, class, part, sid, first_block.max(part * tier.partition_ms()));
            let hi = data_key(self.shard, class, part, sid, i64::MAX);
            for item in range_iter(&self.db, tier_cf(tier), &lo, &hi) {
                let (k, v) = item?;
                let dk = keys::parse_data_key(&k).ok_or_else(|| StorageError::Corrupt {
                    cf: tier_cf(tier),
                    what: "rollup key",
                    key: k.to_vec(),
                })?;
                if dk.ts >= end {
                    break;
                }
                let buckets = decode_rollup_block(tier_cf(tier), &k, &v)?;
                for (b, p) in &buckets {
                    if *b >= start && *b < end {
                        f(*b, p);
                    }
                }
            }
            let _ = cfh;
        }
        Ok(())
    }

    /// Partial aggregates of many series, merged per group and bucket. `series` must come from [`select`].
    pub fn aggregate(
        &self,
        series: &roaring::RoaringTreemap,
        start: i64,
        end: i64,
        width: i64,
        offset: i64,
        group_by: &GroupBy,
        choice: TierChoice,
    ) -> Result<Vec<(GroupKey, Vec<(i64, Partial)>)>> {
        let mut groups: HashMap<GroupKey, Vec<(i64, Partial)>> = HashMap::new();
        let mut buf = Vec::new();
        for sid in series.iter() {
            let Some(info) = self.index.info(sid) else { continue };
            self.series_buckets(sid, start, end, width, offset, choice, &mut buf)?;
            if buf.is_empty() {
                continue;
            }
            let key = group_key(info, group_by);
            let acc = groups.entry(key).or_default();
            *acc = crate::aggregate::merge_buckets(acc, &buf);
        }
        let mut out: Vec<_> = groups.into_iter().collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

fn group_key(info: &SeriesInfo, by: &GroupBy) -> GroupKey {
    match by {
        GroupBy::None => Vec::new(),
        GroupBy::All => info.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        GroupBy::Tags(keys) => keys.iter().map(|k| (k.clone(), info.tag(k).unwrap_or("").to_string())).collect(),
    }
}

fn align_up(t: i64, b: i64) -> i64 {
    let d = t.div_euclid(b) * b;
    if d == t {
        t
    } else {
        d.saturating_add(b)
    }
}

fn align_down(t: i64, b: i64) -> i64 {
    t.div_euclid(b) * b
}

/// Appends buckets that follow `out` in time; a bucket straddling two segments is merged.
fn append_buckets(out: &mut Vec<(i64, Partial)>, more: &[(i64, Partial)]) {
    for (b, p) in more {
        match out.last_mut() {
            Some((lb, lp)) if lb == b => lp.merge(p),
            _ => out.push((*b, *p)),
        }
    }
}

fn push_range(t: &[i64], x: &[f64], start: i64, end: i64, ts: &mut Vec<i64>, vals: &mut Vec<f64>) {
    let a = t.partition_point(|&v| v < start);
    let z = t.partition_point(|&v| v < end);
    ts.extend_from_slice(&t[a..z]);
    vals.extend_from_slice(&x[a..z]);
}

/// Most partitions one series' read may visit: 20,000 (55 years of daily raw partitions), far beyond any
/// retention. A series whose recorded time range spans more holds corrupt bounds (a damaged or forged
/// snapshot): reading it partition by partition would not end, so the read fails instead.
const MAX_READ_PARTITIONS: i64 = 20_000;

/// The partitions holding [start, end) (end > start) at `width`, or an error when they are implausibly many.
fn partitions(
    sid: SeriesId,
    cf_name: &'static str,
    start: i64,
    end: i64,
    width: i64,
) -> Result<std::ops::RangeInclusive<i64>> {
    let (first, last) = (part_of(start, width), part_of(end - 1, width));
    if last.saturating_sub(first) >= MAX_READ_PARTITIONS {
        return Err(StorageError::Corrupt {
            cf: cf_name,
            what: "series time range (its bounds span more partitions than any retention keeps)",
            key: sid.to_be_bytes().to_vec(),
        });
    }
    Ok(first..=last)
}
