//! Applying commands: writes into heads (sealing full ones), late samples into sealed chunks, actor
//! state, and the change history caches read.

use super::*;

impl ShardEngine {
    /// Applies one command. `mark` (the Raft log id, opaque here) is stored with the next checkpoint.
    pub fn apply(&mut self, cmd: &Command, mark: &[u8]) -> Result<Vec<ApplyResult>> {
        let res = match cmd {
            Command::Write(batches) => {
                let oldest = batches.iter().flat_map(|b| b.iter()).map(|p| p.timestamp).min();
                if let Some(t) = oldest {
                    self.record_change(t);
                }
                self.apply_write(batches)?
            }
            Command::Maintain { now_ms } => {
                self.mark_series(*now_ms);
                self.mark = mark.to_vec();
                self.maintain(*now_ms)?;
                return Ok(Vec::new());
            }
            Command::State { puts, deletes } => {
                let meta = cf(&self.db, CF_META);
                let mut batch = WriteBatch::default();
                for k in deletes {
                    batch.delete_cf(meta, self.state_key(k));
                }
                for (k, v) in puts {
                    batch.put_cf(meta, self.state_key(k), v);
                }
                // Not synced: the Raft log holds the command, and replay from the durable mark re-applies it.
                self.db.write(batch)?;
                self.mark = mark.to_vec();
                return Ok(Vec::new());
            }
        };
        self.mark = mark.to_vec();
        Ok(res)
    }

    /// A number that grows with every change that can alter a read (writes, expiry, snapshot installs).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The oldest timestamp touched by changes after `version`: `Some(i64::MAX)` when nothing changed,
    /// `None` when the history no longer reaches back that far (assume everything changed). A cache of
    /// answers computed at `version` stays valid for data older than the returned time.
    pub fn oldest_change_since(&self, version: u64) -> Option<i64> {
        if version == self.version {
            return Some(i64::MAX);
        }
        match self.changes.front() {
            Some((first, _)) if *first <= version + 1 => {}
            _ => return None,
        }
        Some(self.changes.iter().filter(|(v, _)| *v > version).map(|(_, t)| *t).min().unwrap_or(i64::MAX))
    }

    pub(super) fn record_change(&mut self, oldest_ts: i64) {
        self.version += 1;
        if self.changes.len() == CHANGE_HISTORY {
            self.changes.pop_front();
        }
        self.changes.push_back((self.version, oldest_ts));
    }

    fn state_key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = meta_key(self.shard, META_STATE);
        k.extend_from_slice(key);
        k
    }

    /// Replicated state (see [`Command::State`]) whose keys start with `prefix`, in key order.
    pub fn state_scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let lo = self.state_key(prefix);
        let mut hi = lo.clone();
        // The smallest key greater than every key with this prefix.
        while let Some(last) = hi.pop() {
            if last < 0xff {
                hi.push(last + 1);
                break;
            }
        }
        if hi.is_empty() {
            hi = keys::shard_end(self.shard).to_vec();
        }
        let strip = self.state_key(b"").len();
        range_iter(&self.db, CF_META, &lo, &hi)
            .map(|r| r.map(|(k, v)| (k[strip..].to_vec(), v.to_vec())).map_err(Into::into))
            .collect()
    }

    /// Records a mark for a log entry that carries no command for the engine (blank or membership entries).
    pub fn set_mark(&mut self, mark: &[u8]) {
        self.mark = mark.to_vec();
    }

    fn apply_write(&mut self, batches: &[Arc<Vec<Point>>]) -> Result<Vec<ApplyResult>> {
        let mut results = Vec::with_capacity(batches.len());
        let mut batch = WriteBatch::default();
        let mut late: Vec<(SeriesId, i64, f64)> = Vec::new();
        let mut in_head: HashMap<SeriesId, Vec<(i64, f64)>> = HashMap::new();
        let rolled_before = self.watermark_1m.unwrap_or(i64::MIN).max(self.watermark_1h.unwrap_or(i64::MIN));
        let rounds = self.retention.rounds_values();
        let mut raw_floor: Option<(u16, i64)> = None;
        let mut key = std::mem::take(&mut self.scratch_key);
        for points in batches {
            let mut res = ApplyResult::default();
            for p in points.iter() {
                canonical_prefix(&p.measurement, &p.tags, &mut key);
                let prefix_len = key.len();
                // One lookup of the (long) measurement and tags per point; fields by name under it.
                let mut slot = self.index.prefix_slot(&key);
                let mut hint = 0;
                for (field, v) in p.fields.iter() {
                    let sid = match slot.and_then(|s| self.index.field_in(s, field, hint)) {
                        Some((sid, at)) => {
                            hint = at + 1;
                            sid
                        }
                        None => {
                            res.series_created += 1;
                            with_field(&mut key, prefix_len, field);
                            let sid = self.create_series(&key, p, field, &mut batch);
                            if slot.is_none() {
                                slot = self.index.prefix_slot(&key[..prefix_len]);
                            }
                            sid
                        }
                    };
                    let class = self.class_of(sid);
                    let v = match rounds.then(|| self.retention.significant_digits(class)).flatten() {
                        Some(digits) => crate::codec::decimal::round_significant(*v, digits),
                        None => *v,
                    };
                    // The raw floor of the class (one map lookup per class change, not per sample).
                    let raw_floor = match raw_floor {
                        Some((c, f)) if c == class => f,
                        _ => {
                            let f = self.class_floor(class, Tier::Raw);
                            raw_floor = Some((class, f));
                            f
                        }
                    };
                    match self.add_sample(sid, p.timestamp, v, raw_floor, &mut batch, &mut late, &mut in_head)? {
                        Accepted::Yes => {
                            res.samples_written += 1;
                            if p.timestamp < rolled_before {
                                let r = self.pending_rollups.entry(sid).or_insert((p.timestamp, p.timestamp));
                                r.0 = r.0.min(p.timestamp);
                                r.1 = r.1.max(p.timestamp);
                            }
                        }
                        Accepted::TooOld => res.rejected_too_old += 1,
                        Accepted::Expired => res.rejected_expired += 1,
                    }
                }
            }
            results.push(res);
        }
        self.scratch_key = key;
        for (sid, samples) in in_head {
            self.merge_into_head(sid, samples, &mut late);
        }
        self.db.write(batch)?;
        if !late.is_empty() {
            self.apply_late(late)?;
        }
        Ok(results)
    }

    /// Blocks of one tier that take raw data until rebuilt: [from, to), block-aligned, below the tier's
    /// watermark (see `pending_rollups`).
    pub(super) fn pending_blocks(&self, sid: SeriesId, tier: Tier) -> Option<(i64, i64)> {
        let &(oldest, newest) = self.pending_rollups.get(&sid)?;
        let w = self.wm(tier).filter(|w| oldest < *w)?;
        let from = bucket_start(oldest, tier.block_ms(), 0);
        let to = bucket_start(newest.min(w - 1), tier.block_ms(), 0) + tier.block_ms();
        Some((from, to))
    }

    /// Series whose rollup blocks wait for a rebuild (reads take raw data there until then).
    pub fn pending_rollup_series(&self) -> usize {
        self.pending_rollups.len()
    }

    /// Rebuilds from raw data every rollup block that got samples below its tier's watermark since it was
    /// built (late samples, rewrites, a series writing its history after others moved the watermark on).
    pub(super) fn rebuild_pending_rollups(&mut self) -> Result<()> {
        if self.pending_rollups.is_empty() {
            return Ok(());
        }
        let mut pending: Vec<SeriesId> = self.pending_rollups.keys().copied().collect();
        pending.sort_unstable();
        let mut batch = WriteBatch::default();
        for (n, sid) in pending.iter().enumerate() {
            for tier in [Tier::Minute, Tier::Hour] {
                let (Some((from, to)), Some(w)) = (self.pending_blocks(*sid, tier), self.wm(tier)) else { continue };
                // Raw data before its floor is gone: blocks there keep what they hold.
                let floor = self.tier_floor(*sid, Tier::Raw).max(self.tier_floor(*sid, tier));
                // Blocks wholly before the floor keep what they hold: start at the floor's block.
                let mut block = if floor > from { bucket_start(floor, tier.block_ms(), 0).max(from) } else { from };
                while block < to {
                    if block + tier.block_ms() > floor {
                        // The newest block may be built only part way, up to the watermark.
                        self.build_rollup_block(
                            *sid,
                            tier,
                            block,
                            block,
                            (block + tier.block_ms()).min(w),
                            &mut batch,
                        )?;
                    }
                    block += tier.block_ms();
                }
            }
            if n % 1024 == 1023 {
                self.db.write(std::mem::take(&mut batch))?;
            }
        }
        self.db.write(batch)?;
        self.pending_rollups.clear();
        Ok(())
    }

    fn create_series(&mut self, canonical: &[u8], p: &Point, field: &str, batch: &mut WriteBatch) -> SeriesId {
        let sid = self.index.next_id();
        let class = self.retention.class_of(&p.measurement);
        batch.put_cf(cf(&self.db, CF_SERIES), series_key(self.shard, sid), encode_stored(canonical, class));
        let info = SeriesInfo {
            measurement: p.measurement.as_str().into(),
            tags: p.tags.iter().map(|(k, v)| (k.as_str().into(), v.as_str().into())).collect(),
            field: field.into(),
            class,
        };
        self.index.insert(sid, canonical, info);
        self.states.push(new_state());
        sid
    }

    /// Adds one sample, unless it is older than the out-of-order window or the raw retention allows
    /// (`raw_floor`: the expiry floor of the series' class).
    #[allow(clippy::too_many_arguments)]
    fn add_sample(
        &mut self,
        sid: SeriesId,
        ts: i64,
        v: f64,
        raw_floor: i64,
        batch: &mut WriteBatch,
        late: &mut Vec<(SeriesId, i64, f64)>,
        in_head: &mut HashMap<SeriesId, Vec<(i64, f64)>>,
    ) -> Result<Accepted> {
        let max_chunk = self.opts.max_chunk_samples;
        if ts < raw_floor {
            return Ok(Accepted::Expired);
        }
        let st = &mut self.states[sid as usize];
        if st.max_ts != i64::MIN && ts < st.max_ts.saturating_sub(self.opts.ooo_window_ms) {
            return Ok(Accepted::TooOld);
        }
        match &mut st.head {
            Some(h) if ts > h.last_ts().unwrap_or(i64::MIN) => {
                let first = h.first_ts().unwrap_or(ts);
                if h.len() >= max_chunk
                    || part_of(first, Tier::Raw.partition_ms()) != part_of(ts, Tier::Raw.partition_ms())
                {
                    if let Some(pending) = in_head.remove(&sid) {
                        self.merge_into_head(sid, pending, late);
                    }
                    self.seal(sid, batch)?;
                    let st = &mut self.states[sid as usize];
                    let mut h = HeadAppender::new();
                    h.append(ts, v);
                    st.head = Some(h);
                } else {
                    h.append(ts, v);
                }
                self.samples_in_heads += 1;
            }
            Some(h) if ts >= h.first_ts().unwrap_or(i64::MAX) => {
                // Inside the head: merged once per series after the whole command, or before the head is
                // sealed (see merge_into_head), not by rebuilding the head per sample (concurrent writers
                // deliver many such samples at once).
                in_head.entry(sid).or_default().push((ts, v));
            }
            None if st.max_ts == i64::MIN || ts > st.max_ts => {
                let mut h = HeadAppender::new();
                h.append(ts, v);
                st.head = Some(h);
                self.samples_in_heads += 1;
            }
            _ => late.push((sid, ts, v)),
        }
        let st = &mut self.states[sid as usize];
        st.max_ts = st.max_ts.max(ts);
        st.min_ts = st.min_ts.min(ts);
        st.dirty = true;
        Ok(Accepted::Yes)
    }

    /// Inserts samples that fell inside a series' head (older than its newest sample) with one head rebuild,
    /// in apply order (a later write of a timestamp wins). Called before the head is sealed and after each
    /// command, so the head still covers them; anything below it goes to the sealed chunks.
    fn merge_into_head(&mut self, sid: SeriesId, samples: Vec<(i64, f64)>, late: &mut Vec<(SeriesId, i64, f64)>) {
        let st = &mut self.states[sid as usize];
        let Some(h) = st.head.as_mut() else {
            late.extend(samples.into_iter().map(|(ts, v)| (sid, ts, v)));
            return;
        };
        let first = h.first_ts().unwrap_or(i64::MAX);
        let (mut t, mut x) = (Vec::with_capacity(h.len() + samples.len()), Vec::with_capacity(h.len() + samples.len()));
        h.decode_into(&mut t, &mut x);
        let mut added = 0u64;
        for (ts, v) in samples {
            if ts < first {
                late.push((sid, ts, v));
                continue;
            }
            match t.binary_search(&ts) {
                Ok(k) => x[k] = v,
                Err(k) => {
                    t.insert(k, ts);
                    x.insert(k, v);
                    added += 1;
                }
            }
        }
        let mut nh = HeadAppender::new();
        for (&a, &b) in t.iter().zip(&x) {
            nh.append(a, b);
        }
        *h = nh;
        self.samples_in_heads += added;
    }

    /// Moves a series' head into a sealed chunk (in `batch`).
    pub(super) fn seal(&mut self, sid: SeriesId, batch: &mut WriteBatch) -> Result<()> {
        let class = self.class_of(sid);
        let st = &mut self.states[sid as usize];
        let Some(h) = st.head.take() else { return Ok(()) };
        st.dirty = true;
        if h.is_empty() {
            return Ok(());
        }
        let (mut t, mut x) = (Vec::with_capacity(h.len()), Vec::with_capacity(h.len()));
        h.decode_into(&mut t, &mut x);
        self.samples_in_heads -= t.len() as u64;
        let key = data_key(self.shard, class, part_of(t[0], Tier::Raw.partition_ms()), sid, t[0]);
        batch.put_cf(cf(&self.db, CF_CHUNKS), key, codec::encode_chunk_from(&t, &x, Some(h.stream())));
        Ok(())
    }

    pub(super) fn class_of(&self, sid: SeriesId) -> u16 {
        self.index.info(sid).map(|i| i.class).unwrap_or(0)
    }

    /// Samples below a series' head go into sealed chunks by read-modify-write. Chunks of one series within a
    /// partition tile time: chunk i holds [first_ts_i, first_ts_{i+1}), so a late sample joins the chunk
    /// with the greatest first timestamp at or before it, or else the partition's first chunk.
    fn apply_late(&mut self, mut late: Vec<(SeriesId, i64, f64)>) -> Result<()> {
        // Stable sort keeps apply order for equal (series, timestamp): the last write wins.
        late.sort_by_key(|&(sid, ts, _)| (sid, ts));
        let mut edits: HashMap<Vec<u8>, (Vec<u8>, Vec<i64>, Vec<f64>)> = HashMap::new();
        let part_ms = Tier::Raw.partition_ms();
        let mut i = 0;
        while i < late.len() {
            // One run per (series, partition): its chunk keys are listed once, not once per sample.
            let (sid, first_ts, _) = late[i];
            let part = part_of(first_ts, part_ms);
            let run_end =
                i + late[i..].iter().take_while(|&&(s, t, _)| s == sid && part_of(t, part_ms) == part).count();
            let class = self.class_of(sid);
            let lo = data_key(self.shard, class, part, sid, i64::MIN);
            let hi = data_key(self.shard, class, part, sid, i64::MAX);
            // Chunk keys of this series in this partition (sorted): stored ones, then those this run starts.
            let mut keys: Vec<Vec<u8>> = Vec::new();
            for item in range_iter(&self.db, CF_CHUNKS, &lo, &hi) {
                let (k, _) = item?;
                keys.push(k.to_vec());
            }
            for &(_, ts, v) in &late[i..run_end] {
                let probe = data_key(self.shard, class, part, sid, ts);
                // The chunk with the greatest first timestamp at or before the sample, else the first one.
                let at = keys.partition_point(|k| k.as_slice() <= probe.as_slice());
                let target = if at > 0 { keys.get(at - 1) } else { keys.first() }.cloned();
                let entry_key =
                    match target {
                        Some(k) => {
                            if !edits.contains_key(&k) {
                                let raw = self.db.get_cf(cf(&self.db, CF_CHUNKS), &k)?.ok_or_else(|| {
                                    StorageError::Corrupt {
                                        cf: CF_CHUNKS,
                                        what: "chunk vanished during late write",
                                        key: k.clone(),
                                    }
                                })?;
                                let (mut t, mut x) = (Vec::new(), Vec::new());
                                codec::decode_chunk(&raw, &mut t, &mut x).map_err(|source| {
                                    StorageError::CorruptChunk { cf: CF_CHUNKS, what: "chunk", key: k.clone(), source }
                                })?;
                                edits.insert(k.clone(), (k.clone(), t, x));
                            }
                            k
                        }
                        None => {
                            let k = probe.to_vec();
                            edits.insert(k.clone(), (Vec::new(), Vec::new(), Vec::new()));
                            keys.insert(at, k.clone());
                            k
                        }
                    };
                let (_, t, x) = edits.get_mut(&entry_key).expect("inserted above");
                match t.binary_search(&ts) {
                    Ok(k) => x[k] = v,
                    Err(k) => {
                        t.insert(k, ts);
                        x.insert(k, v);
                    }
                }
            }
            i = run_end;
        }
        let mut batch = WriteBatch::default();
        let chunks = cf(&self.db, CF_CHUNKS);
        for (key, (orig, t, x)) in edits {
            let dk = keys::parse_data_key(&key).expect("keys built here");
            let new_key = data_key(dk.shard, dk.class, dk.part, dk.sid, t[0]);
            if !orig.is_empty() && orig.as_slice() != new_key.as_slice() {
                batch.delete_cf(chunks, &orig);
            }
            batch.put_cf(chunks, new_key, codec::encode_chunk(&t, &x));
        }
        self.db.write(batch)?;
        Ok(())
    }
}

enum Accepted {
    Yes,
    TooOld,
    Expired,
}
