//! Maintenance the log drives: sealing idle heads, building rollup blocks of closed periods, expiring
//! partitions, and checkpoints.

use super::*;

impl ShardEngine {
    pub(super) fn maintain(&mut self, now_ms: i64) -> Result<()> {
        // 1. Seal heads of series that went quiet, so dead series hold no memory and closed periods are on disk.
        let mut batch = WriteBatch::default();
        let idle_before = now_ms.saturating_sub(self.opts.idle_seal_ms);
        for sid in 0..self.states.len() as SeriesId {
            let st = &self.states[sid as usize];
            if st.head.as_ref().is_some_and(|h| h.last_ts().is_some_and(|t| t < idle_before)) {
                self.seal(sid, &mut batch)?;
            }
        }
        self.db.write(batch)?;
        self.rebuild_pending_rollups()?;
        // 2. Build rollup blocks of periods no sample can enter any more: older than the out-of-order window
        // behind the newest data (not behind the clock: a backfill of old data in time order would otherwise
        // land below built blocks and rebuild them sample by sample). Without new data, blocks still get
        // built before raw data could expire unrolled.
        let min_raw_keep = self.retention.classes().map(|(_, d)| d.of(Tier::Raw)).min().unwrap_or(0);
        let minute_after = self.opts.minute_rollup_after_ms.unwrap_or(min_raw_keep - crate::retention::DAY);
        let newest = self.states.iter().map(|s| s.max_ts).max().unwrap_or(i64::MIN);
        let by_data = now_ms.min(newest).saturating_sub(self.opts.ooo_window_ms);
        let closed_before =
            by_data.max(now_ms.saturating_sub(minute_after)).min(now_ms.saturating_sub(self.opts.ooo_window_ms));
        let minute_before = closed_before.min(now_ms.saturating_sub(minute_after));
        self.build_closed_blocks(Tier::Minute, minute_before, now_ms)?;
        self.build_closed_blocks(Tier::Hour, closed_before, now_ms)?;
        // 3. Drop expired partitions of every class and tier.
        self.expire(now_ms)?;
        // 4. Checkpoint now and then.
        if self.last_checkpoint_ms == i64::MIN
            || now_ms.saturating_sub(self.last_checkpoint_ms) >= self.opts.checkpoint_interval_ms
        {
            self.last_checkpoint_ms = now_ms;
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Builds a tier from its watermark up to `closed_before` (rounded down to the tier's build step), one
    /// block at a time; the block holding the old watermark keeps its buckets before it and gains the new
    /// ones.
    fn build_closed_blocks(&mut self, tier: Tier, closed_before: i64, now_ms: i64) -> Result<()> {
        let block_ms = tier.block_ms();
        let target = bucket_start(closed_before, tier.build_step_ms(), 0);
        let raw_keep = self.retention.classes().map(|(_, d)| d.of(Tier::Raw)).max().unwrap_or(0);
        // Raw data older than the longest raw retention is gone: no block before it can be built (and a
        // watermark far in the past, from damaged data, must not make this loop over the ages).
        let oldest = bucket_start(now_ms.saturating_sub(raw_keep), block_ms, 0).min(target);
        let start = match self.wm(tier) {
            Some(w) => w.max(oldest),
            None => oldest,
        };
        let mut from = start;
        while from < target {
            let block = bucket_start(from, block_ms, 0);
            let to = (block + block_ms).min(target);
            let mut batch = WriteBatch::default();
            for sid in 0..self.states.len() as SeriesId {
                let st = &self.states[sid as usize];
                // A series without samples in [from, to) keeps its block as it is.
                if st.max_ts >= from && st.min_ts < to {
                    self.build_rollup_block(sid, tier, block, from, to, &mut batch)?;
                }
            }
            from = to;
            self.db.write(batch)?;
        }
        match tier {
            Tier::Minute => self.watermark_1m = Some(target.max(start)),
            Tier::Hour => self.watermark_1h = Some(target.max(start)),
            Tier::Raw => {}
        }
        Ok(())
    }

    pub(super) fn wm(&self, tier: Tier) -> Option<i64> {
        match tier {
            Tier::Minute => self.watermark_1m,
            Tier::Hour => self.watermark_1h,
            Tier::Raw => None,
        }
    }

    /// (Re)builds one rollup block of one series: the stored block's buckets before `from` are kept, those
    /// in [`from`, `to`) are computed from raw data; an empty block deletes the record. `from` and `to` lie on
    /// bucket boundaries inside the block.
    pub(super) fn build_rollup_block(
        &self,
        sid: SeriesId,
        tier: Tier,
        block: i64,
        from: i64,
        to: i64,
        batch: &mut WriteBatch,
    ) -> Result<()> {
        let class = self.class_of(sid);
        let key = data_key(self.shard, class, part_of(block, tier.partition_ms()), sid, block);
        let cfh = cf(&self.db, tier_cf(tier));
        let mut buckets = Vec::new();
        if from > block {
            if let Some(v) = self.db.get_pinned_cf(cfh, &key)? {
                let stored = decode_rollup_block(tier_cf(tier), &key, &v)?;
                buckets.extend(stored.into_iter().take_while(|b| b.0 < from));
            }
        }
        let (mut t, mut x) = (Vec::new(), Vec::new());
        self.read_raw(sid, from, to, &mut t, &mut x)?;
        let mut fresh = Vec::new();
        bucketize(&t, &x, tier.bucket_ms(), 0, &mut fresh);
        rollup::exact_decimal_sums(&t, &x, tier.bucket_ms(), &mut fresh);
        buckets.append(&mut fresh);
        if buckets.is_empty() {
            batch.delete_cf(cfh, key);
        } else {
            batch.put_cf(cfh, key, rollup::encode_block(&buckets));
        }
        Ok(())
    }

    fn expire(&mut self, now_ms: i64) -> Result<()> {
        let mut batch = WriteBatch::default();
        let classes: Vec<(u16, crate::retention::Durations)> = self.retention.classes().map(|(c, d)| (c, *d)).collect();
        for (class, keep) in classes {
            for tier in [Tier::Raw, Tier::Minute, Tier::Hour] {
                let cutoff = now_ms.saturating_sub(keep.of(tier));
                // Partitions strictly before the cutoff's partition end at or before the cutoff.
                let cutoff_part = part_of(cutoff, tier.partition_ms());
                let lo = keys::part_prefix(self.shard, class, i32::MIN as i64);
                let hi = keys::part_prefix(self.shard, class, cutoff_part);
                let floor = cutoff_part.saturating_mul(tier.partition_ms());
                let f = self.floors.entry((class, tier)).or_insert(i64::MIN);
                let moved = floor > *f;
                *f = (*f).max(floor);
                if moved {
                    self.record_change(i64::MIN);
                }
                if lo < hi {
                    let name = match tier {
                        Tier::Raw => CF_CHUNKS,
                        t => tier_cf(t),
                    };
                    batch.delete_range_cf(cf(&self.db, name), lo, hi);
                }
            }
        }
        self.db.write(batch)?;
        Ok(())
    }

    /// Writes every changed head and the current mark in one batch. After this, a restart needs only the log
    /// after the mark.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.rebuild_pending_rollups()?;
        let mut batch = WriteBatch::default();
        let heads = cf(&self.db, CF_HEADS);
        for (sid, st) in self.states.iter_mut().enumerate() {
            if !st.dirty {
                continue;
            }
            st.dirty = false;
            let mut range = [0u8; 16];
            range[..8].copy_from_slice(&st.min_ts.to_be_bytes());
            range[8..].copy_from_slice(&st.max_ts.to_be_bytes());
            batch.put_cf(cf(&self.db, CF_META), range_key(self.shard, sid as SeriesId), range);
            let key = series_key(self.shard, sid as SeriesId);
            match &st.head {
                Some(h) if !h.is_empty() => {
                    let (mut t, mut x) = (Vec::with_capacity(h.len()), Vec::with_capacity(h.len()));
                    h.decode_into(&mut t, &mut x);
                    // In the smallest encoding, as a sealed chunk of the same samples would be (the head's
                    // Gorilla stream is one candidate): a head costs no more on disk than a chunk.
                    batch.put_cf(heads, key, codec::encode_chunk_from(&t, &x, Some(h.stream())));
                    st.persisted = true;
                }
                _ if st.persisted => {
                    batch.delete_cf(heads, key);
                    st.persisted = false;
                }
                _ => {}
            }
        }
        let meta = cf(&self.db, CF_META);
        batch.put_cf(meta, meta_key(self.shard, META_MARK), &self.mark);
        if let Some(w) = self.watermark_1m {
            batch.put_cf(meta, meta_key(self.shard, META_WM_1M), w.to_be_bytes());
        }
        if let Some(w) = self.watermark_1h {
            batch.put_cf(meta, meta_key(self.shard, META_WM_1H), w.to_be_bytes());
        }
        batch.put_cf(meta, meta_key(self.shard, META_LAST_CKPT), self.last_checkpoint_ms.to_be_bytes());
        for ((class, tier), f) in &self.floors {
            batch.put_cf(meta, floor_key(self.shard, *class, *tier), f.to_be_bytes());
        }
        // A synced write also makes every earlier (unsynced) batch of this engine durable: they precede it in
        // the WAL.
        let mut sync = rocksdb::WriteOptions::default();
        sync.set_sync(true);
        self.db.write_opt(batch, &sync)?;
        self.durable_mark = Some(self.mark.clone());
        Ok(())
    }
}
