//! The log keeper: keeps every local Raft group's log, and RocksDB's files, near the size of the data itself
//! without an admin call.
//!
//! openraft snapshots a group after `raft.snapshot_after_entries` entries and then keeps
//! `raft.keep_entries_after_snapshot` of them. Entries are batches of any size, so by count alone a bulk load
//! left hundreds of MB of log on disk for good (17 B per sample on a loaded, then idle, node against 0.7 after
//! `POST /api/v1/admin/compact`). Every few seconds, for each group on this node:
//!
//! - it asks for a snapshot (for a shard, an engine checkpoint) once the log written since the last one holds
//!   `raft.snapshot_after_bytes`, or once the group has applied nothing for `raft.idle_snapshot_ms` and has
//!   entries the snapshot lacks;
//! - it purges the log behind the snapshot down to `raft.keep_bytes_after_snapshot`; an idle group down to
//!   the snapshot itself, except that a leader keeps what a replica still lacks;
//! - once an idle group has purged 1 MiB or more, it compacts that group's log range and, for a shard, its
//!   heads (each checkpoint rewrote them), so the files those deletions cover go now, not at RocksDB's next
//!   compaction; once every group is idle, memtables holding 1 MiB or more are flushed, so no write-ahead
//!   log stays behind.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ServerState;
use pharos_raft::log_store::LogCache;
use pharos_raft::{GroupId, Raft, RaftSettings};
use tracing::{debug, info, warn};

use crate::cluster::Cluster;

const TICK: Duration = Duration::from_secs(5);

/// What the keeper remembers of one group between ticks.
struct Seen {
    applied: u64,
    /// When `applied` last changed.
    since: Instant,
    /// The applied index a snapshot was asked for, and when (asked again only once it is stale).
    asked: Option<(u64, Instant)>,
    /// Log bytes purged since this group's files were last compacted.
    purged_bytes: u64,
}

/// An idle group compacts its files once this much log was purged since the last time (a shard's
/// maintenance entry every minute is not worth a compaction).
const COMPACT_AFTER: u64 = 1 << 20;
/// An idle node flushes its memtables when they hold this much.
const FLUSH_AFTER: u64 = 1 << 20;

/// One local group: a shard replica or the meta group.
struct Group {
    id: GroupId,
    shard: Option<u32>,
    raft: Raft,
    cache: LogCache,
}

pub fn spawn(cluster: Arc<Cluster>, settings: RaftSettings) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen: BTreeMap<GroupId, Seen> = BTreeMap::new();
        loop {
            tokio::time::sleep(TICK).await;
            let mut groups: Vec<Group> = cluster
                .replicas
                .all()
                .iter()
                .map(|r| Group {
                    id: pharos_raft::shard_group(r.shard),
                    shard: Some(r.shard),
                    raft: r.raft.clone(),
                    cache: r.log_cache.clone(),
                })
                .collect();
            groups.push(Group {
                id: pharos_raft::META_GROUP,
                shard: None,
                raft: cluster.meta.raft.clone(),
                cache: cluster.meta.log_cache.clone(),
            });
            seen.retain(|id, _| groups.iter().any(|g| g.id == *id));
            let mut idle = true;
            for g in &groups {
                idle &= keep(&cluster, &settings, g, &mut seen).await;
            }
            // A node that went idle flushes its memtables, so RocksDB deletes the write-ahead logs.
            if idle && pharos_storage::db::memtable_bytes(&cluster.db) >= FLUSH_AFTER {
                let db = cluster.db.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || pharos_storage::db::flush_all(&db)).await {
                    warn!(cause = %e, "idle node: flushing memtables");
                }
            }
        }
    })
}

/// One tick for one group; returns whether the group is idle with nothing left to snapshot or purge.
async fn keep(cluster: &Cluster, settings: &RaftSettings, g: &Group, seen: &mut BTreeMap<GroupId, Seen>) -> bool {
    let m = g.raft.metrics().borrow().clone();
    let now = Instant::now();
    let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
    let snap = m.snapshot.map(|l| l.index).unwrap_or(0);
    let purged = m.purged.map(|l| l.index).unwrap_or(0);
    let s = seen.entry(g.id).or_insert(Seen { applied, since: now, asked: None, purged_bytes: 0 });
    if s.applied != applied {
        (s.applied, s.since) = (applied, now);
    }
    let idle = now.duration_since(s.since) >= Duration::from_millis(settings.idle_snapshot_ms);

    // Snapshot by size, or when idle with entries the snapshot lacks.
    let unsnapshotted = g.cache.bytes_after(snap);
    let wanted = applied > snap && (unsnapshotted >= settings.snapshot_after_bytes || idle);
    let pending = s.asked.is_some_and(|(at, when)| at > snap && now.duration_since(when) < Duration::from_secs(60));
    if wanted && !pending {
        debug!(group = g.id, applied, snap, unsnapshotted, idle, "log keeper: snapshot");
        s.asked = Some((applied, now));
        if let Err(e) = g.raft.trigger().snapshot().await {
            warn!(group = g.id, cause = %e, "log keeper: asking for a snapshot");
        }
        return false;
    }
    if snap == 0 {
        return idle;
    }

    // Purge behind the snapshot: by bytes, or all of it when idle, where a leader keeps what a replica lacks
    // (a replica far behind needs a snapshot anyway: the byte bound holds whatever it lacks).
    let mut upto =
        if idle { snap } else { g.cache.purge_point(settings.keep_bytes_after_snapshot).unwrap_or(0).min(snap) };
    if idle && m.state == ServerState::Leader {
        if let Some(r) = &m.replication {
            let lacking = r.iter().filter(|(id, _)| **id != m.id).map(|(_, l)| l.map(|x| x.index).unwrap_or(0)).min();
            upto = upto.min(lacking.unwrap_or(upto));
        }
    }
    if upto > purged {
        debug!(group = g.id, upto, purged, idle, "log keeper: purge");
        s.purged_bytes += g.cache.bytes_after(purged) - g.cache.bytes_after(upto);
        if let Err(e) = g.raft.trigger().purge_log(upto).await {
            warn!(group = g.id, cause = %e, "log keeper: purging the log");
        }
        return false;
    }

    // An idle group that purged enough: compact the ranges the purges and the checkpoints left behind.
    if idle && s.purged_bytes >= COMPACT_AFTER {
        s.purged_bytes = 0;
        let (db, id, shard) = (cluster.db.clone(), g.id, g.shard);
        let started = Instant::now();
        let done = tokio::task::spawn_blocking(move || {
            pharos_raft::log_store::compact_purged(&db, id, purged);
            if let Some(shard) = shard {
                pharos_storage::db::compact_shard(&db, pharos_storage::db::CF_HEADS, shard);
            }
        })
        .await;
        if done.is_ok() {
            info!(group = g.id, purged, secs = started.elapsed().as_secs_f64(), "idle group: log purged and compacted");
        }
    }
    idle
}
