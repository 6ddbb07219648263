//! Opening a shard: its series index, checkpointed heads, ranges, floors and watermarks.

use super::*;

impl ShardEngine {
    pub(super) fn load(&mut self) -> Result<()> {
        let db = self.db.clone();
        let (lo, hi) = (keys::shard_prefix(self.shard).to_vec(), keys::shard_end(self.shard));
        for item in range_iter(&db, CF_SERIES, &lo, &hi) {
            let (k, v) = item?;
            let (_, sid) = keys::parse_series_key(&k).ok_or_else(|| StorageError::Corrupt {
                cf: CF_SERIES,
                what: "series key",
                key: k.to_vec(),
            })?;
            let (info, canon_len) = decode_stored(&v).ok_or_else(|| StorageError::Corrupt {
                cf: CF_SERIES,
                what: "series record",
                key: k.to_vec(),
            })?;
            if sid != self.index.next_id() {
                return Err(StorageError::Corrupt { cf: CF_SERIES, what: "series id gap", key: k.to_vec() });
            }
            self.index.insert(sid, &v[..canon_len], info);
            self.states.push(new_state());
        }
        // Time range of every series as of the last checkpoint (the log replay after it extends them).
        let rlo = range_key(self.shard, 0);
        let rhi = range_key(self.shard, u64::MAX);
        for item in range_iter(&db, CF_META, &rlo, &rhi) {
            let (k, v) = item?;
            let sid = u64::from_be_bytes(k[k.len() - 8..].try_into().expect("8-byte id"));
            let bad = || StorageError::Corrupt { cf: CF_META, what: "series range", key: k.to_vec() };
            if v.len() != 16 {
                return Err(bad());
            }
            let st = self.states.get_mut(sid as usize).ok_or_else(bad)?;
            st.min_ts = i64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
            st.max_ts = i64::from_be_bytes(v[8..].try_into().expect("8 bytes"));
        }
        let flo = meta_key(self.shard, META_FLOOR);
        let fhi = meta_key(self.shard, "g");
        for item in range_iter(&db, CF_META, &flo, &fhi) {
            let (k, v) = item?;
            let bad = || StorageError::Corrupt { cf: CF_META, what: "expiry floor", key: k.to_vec() };
            let n = k.len();
            if n < 3 || v.len() != 8 {
                return Err(bad());
            }
            let class = u16::from_be_bytes([k[n - 3], k[n - 2]]);
            let tier = match k[n - 1] {
                0 => Tier::Raw,
                1 => Tier::Minute,
                2 => Tier::Hour,
                _ => return Err(bad()),
            };
            self.floors.insert((class, tier), i64::from_be_bytes(v[..].try_into().expect("8 bytes")));
        }
        for item in range_iter(&db, CF_HEADS, &lo, &hi) {
            let (k, v) = item?;
            let (_, sid) = keys::parse_series_key(&k).ok_or_else(|| StorageError::Corrupt {
                cf: CF_HEADS,
                what: "head key",
                key: k.to_vec(),
            })?;
            let (mut ts, mut vals) = (Vec::new(), Vec::new());
            codec::decode_chunk(&v, &mut ts, &mut vals).map_err(|source| StorageError::CorruptChunk {
                cf: CF_HEADS,
                what: "head",
                key: k.to_vec(),
                source,
            })?;
            let st = self.states.get_mut(sid as usize).ok_or_else(|| StorageError::Corrupt {
                cf: CF_HEADS,
                what: "head of unknown series",
                key: k.to_vec(),
            })?;
            let mut head = HeadAppender::new();
            for (&t, &x) in ts.iter().zip(&vals) {
                head.append(t, x);
            }
            self.samples_in_heads += ts.len() as u64;
            st.max_ts = st.max_ts.max(head.last_ts().unwrap_or(i64::MIN));
            st.min_ts = st.min_ts.min(head.first_ts().unwrap_or(i64::MAX));
            st.head = Some(head);
            st.persisted = true;
        }
        let meta = |name: &str| db.get_cf(cf(&db, CF_META), meta_key(self.shard, name));
        self.durable_mark = meta(META_MARK)?;
        self.mark = self.durable_mark.clone().unwrap_or_default();
        let as_i64 = |v: Option<Vec<u8>>| v.and_then(|b| b.try_into().ok()).map(i64::from_be_bytes);
        self.watermark_1m = as_i64(meta(META_WM_1M)?);
        self.watermark_1h = as_i64(meta(META_WM_1H)?);
        self.last_checkpoint_ms = as_i64(meta(META_LAST_CKPT)?).unwrap_or(i64::MIN);
        if as_i64(meta(META_H1_BLOCK)?) != Some(crate::retention::H1_BLOCK_MS) {
            self.resplit_hour_blocks(as_i64(meta(META_H1_BLOCK)?).unwrap_or(crate::retention::DAY))?;
        }
        Ok(())
    }

    /// Rewrites 1-hour rollup blocks written `old_ms` wide (data directories from before the width changed)
    /// into blocks of the current width: the buckets are kept as they are, only regrouped, so no raw data is
    /// read. Then records the width, so this runs once per shard.
    fn resplit_hour_blocks(&mut self, old_ms: i64) -> Result<()> {
        let new_ms = crate::retention::H1_BLOCK_MS;
        let (lo, hi) = (keys::shard_prefix(self.shard).to_vec(), keys::shard_end(self.shard));
        let mut batch = WriteBatch::default();
        let cfh = cf(&self.db, CF_ROLLUP_1H);
        let mut blocks = 0u64;
        if old_ms != new_ms {
            for item in range_iter(&self.db, CF_ROLLUP_1H, &lo, &hi) {
                let (k, v) = item?;
                let bad = |what| StorageError::Corrupt { cf: CF_ROLLUP_1H, what, key: k.to_vec() };
                let key = keys::parse_data_key(&k).ok_or_else(|| bad("rollup key"))?;
                let buckets = decode_rollup_block(CF_ROLLUP_1H, &k, &v)?;
                batch.delete_cf(cfh, &k);
                let mut i = 0;
                while i < buckets.len() {
                    let block = bucket_start(buckets[i].0, new_ms, 0);
                    let n = buckets[i..].iter().take_while(|b| bucket_start(b.0, new_ms, 0) == block).count();
                    let nk = data_key(self.shard, key.class, key.part, key.sid, block);
                    batch.put_cf(cfh, nk, rollup::encode_block(&buckets[i..i + n]));
                    i += n;
                }
                blocks += 1;
                if blocks % 10_000 == 0 {
                    // Bounded batches; a crash midway redoes the pass, which leaves resplit blocks as they are.
                    self.db.write(std::mem::take(&mut batch))?;
                }
            }
        }
        batch.put_cf(cf(&self.db, CF_META), meta_key(self.shard, META_H1_BLOCK), new_ms.to_be_bytes());
        self.db.write(batch)?;
        if blocks > 0 {
            tracing::info!(
                shard = self.shard,
                blocks,
                from_ms = old_ms,
                to_ms = new_ms,
                "1-hour rollup blocks resplit"
            );
        }
        Ok(())
    }
}
