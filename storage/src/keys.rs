//! RocksDB key layouts. All integers are big-endian so byte order is numeric order; signed timestamps are
//! biased (sign bit flipped) so negative times sort before positive ones. Every key starts with the shard id,
//! so one shard's data is a contiguous range in every column family (export, import and drop are range ops).
//!
//! | CF          | key                                                     | value                     |
//! |-------------|---------------------------------------------------------|---------------------------|
//! | `series`    | shard(4) sid(8)                                         | canonical series key      |
//! | `chunks`    | shard(4) class(2) part(4) sid(8) first_ts(8)            | sealed chunk (codec)      |
//! | `heads`     | shard(4) sid(8)                                         | checkpointed head (codec) |
//! | `rollup_1m` | shard(4) class(2) part(4) sid(8) block_start(8)         | rollup block              |
//! | `rollup_1h` | shard(4) class(2) part(4) sid(8) block_start(8)         | rollup block              |
//! | `meta`      | shard(4) name                                           | per-shard state           |
//!
//! `class` is the retention class of the series (0 = default policy), `part` the time partition index
//! (`ts.div_euclid(partition width)`, biased to u32). Dropping expired data is one `delete_range` over
//! `shard class part..` per class and tier.

pub const SHARD_LEN: usize = 4;
pub const SID_LEN: usize = 8;
/// shard(4) + class(2) + part(4) + sid(8) + ts(8)
pub const DATA_KEY_LEN: usize = SHARD_LEN + 2 + 4 + SID_LEN + 8;
/// shard(4) + sid(8)
pub const SERIES_KEY_LEN: usize = SHARD_LEN + SID_LEN;

pub type ShardId = u32;
pub type SeriesId = u64;

#[inline]
pub fn bias_i64(t: i64) -> u64 {
    (t as u64) ^ (1 << 63)
}

#[inline]
pub fn unbias_i64(u: u64) -> i64 {
    (u ^ (1 << 63)) as i64
}

#[inline]
pub fn bias_part(p: i64) -> u32 {
    // Partition indices of any realistic timestamp fit in i32 (days since the epoch: +-5.8 million years).
    (p.clamp(i32::MIN as i64, i32::MAX as i64) as i32 as u32) ^ (1 << 31)
}

#[inline]
pub fn part_of(ts: i64, width_ms: i64) -> i64 {
    ts.div_euclid(width_ms)
}

pub fn shard_prefix(shard: ShardId) -> [u8; 4] {
    shard.to_be_bytes()
}

/// The exclusive upper bound of a shard's key range.
pub fn shard_end(shard: ShardId) -> Vec<u8> {
    match shard.checked_add(1) {
        Some(s) => s.to_be_bytes().to_vec(),
        None => vec![0xff; 5],
    }
}

pub fn series_key(shard: ShardId, sid: SeriesId) -> [u8; SERIES_KEY_LEN] {
    let mut k = [0u8; SERIES_KEY_LEN];
    k[..4].copy_from_slice(&shard.to_be_bytes());
    k[4..].copy_from_slice(&sid.to_be_bytes());
    k
}

pub fn parse_series_key(k: &[u8]) -> Option<(ShardId, SeriesId)> {
    if k.len() != SERIES_KEY_LEN {
        return None;
    }
    Some((u32::from_be_bytes(k[..4].try_into().ok()?), u64::from_be_bytes(k[4..].try_into().ok()?)))
}

/// shard class part prefix: everything of one partition of one class.
pub fn part_prefix(shard: ShardId, class: u16, part: i64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..4].copy_from_slice(&shard.to_be_bytes());
    k[4..6].copy_from_slice(&class.to_be_bytes());
    k[6..10].copy_from_slice(&bias_part(part).to_be_bytes());
    k
}

pub fn data_key(shard: ShardId, class: u16, part: i64, sid: SeriesId, ts: i64) -> [u8; DATA_KEY_LEN] {
    let mut k = [0u8; DATA_KEY_LEN];
    k[..10].copy_from_slice(&part_prefix(shard, class, part));
    k[10..18].copy_from_slice(&sid.to_be_bytes());
    k[18..26].copy_from_slice(&bias_i64(ts).to_be_bytes());
    k
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataKey {
    pub shard: ShardId,
    pub class: u16,
    pub part: i64,
    pub sid: SeriesId,
    pub ts: i64,
}

pub fn parse_data_key(k: &[u8]) -> Option<DataKey> {
    if k.len() != DATA_KEY_LEN {
        return None;
    }
    Some(DataKey {
        shard: u32::from_be_bytes(k[..4].try_into().ok()?),
        class: u16::from_be_bytes(k[4..6].try_into().ok()?),
        part: (u32::from_be_bytes(k[6..10].try_into().ok()?) ^ (1 << 31)) as i32 as i64,
        sid: u64::from_be_bytes(k[10..18].try_into().ok()?),
        ts: unbias_i64(u64::from_be_bytes(k[18..26].try_into().ok()?)),
    })
}

pub fn meta_key(shard: ShardId, name: &str) -> Vec<u8> {
    let mut k = shard.to_be_bytes().to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_keys_sort_by_time_including_negative() {
        let times = [i64::MIN + 1, -86_400_001, -1, 0, 1, 86_400_000, i64::MAX / 2];
        let mut keys: Vec<_> = times.iter().map(|&t| data_key(3, 0, part_of(t, 86_400_000), 7, t)).collect();
        let sorted = {
            let mut k = keys.clone();
            k.sort();
            k
        };
        assert_eq!(keys, sorted, "keys must already be in time order");
        for (k, &t) in keys.iter_mut().zip(&times) {
            let d = parse_data_key(k).unwrap();
            assert_eq!((d.shard, d.class, d.sid, d.ts), (3, 0, 7, t));
            assert_eq!(d.part, part_of(t, 86_400_000).clamp(i32::MIN as i64, i32::MAX as i64));
        }
    }

    #[test]
    fn shard_end_bounds_every_key_of_the_shard() {
        let k = data_key(5, u16::MAX, i32::MAX as i64, u64::MAX, i64::MAX);
        assert!(k.as_slice() < shard_end(5).as_slice());
        assert!(k.as_slice() >= shard_prefix(5).as_slice());
        assert!(shard_end(u32::MAX).as_slice() > data_key(u32::MAX, 9, 9, 9, 9).as_slice());
    }
}
