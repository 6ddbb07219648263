//! Shard snapshots through spool files, on real RocksDB: an export streams to a file, an install reads one,
//! and an install cut off part way leaves a replica that knows it holds nothing.

use std::sync::Arc;

use openraft::storage::{RaftLogReader, RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload, Vote};
use pharos_raft::log_store::LogStore;
use pharos_raft::shard_sm::ShardStateMachine;
use pharos_raft::spool::Spool;
use pharos_raft::types::{Entry, LogId};
use pharos_raft::Request;
use pharos_storage::{Command, EngineOptions, Point, Retention};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SHARD: u32 = 3;

fn open(dir: &TempDir) -> (Arc<rocksdb::DB>, ShardStateMachine) {
    let db = pharos_storage::db::open(&dir.path().join("db"), &Default::default()).expect("open rocksdb");
    let spool = Spool::new(dir.path().join("spool")).expect("spool");
    let sm =
        ShardStateMachine::open(db.clone(), SHARD, Arc::new(Retention::default()), EngineOptions::default(), spool)
            .expect("open shard");
    (db, sm)
}

fn entry(index: u64, hosts: usize) -> Entry {
    let points = (0..hosts)
        .map(|h| Point {
            measurement: "cpu".into(),
            tags: vec![("host".into(), format!("h{h}").into())],
            fields: vec![("usage".into(), index as f64 + h as f64 / 7.0)],
            timestamp: 1_700_000_000_000 + index as i64 * 10_000,
        })
        .collect();
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request::Shard(Command::write(points))),
    }
}

fn series(sm: &ShardStateMachine) -> usize {
    sm.engine().read().unwrap().series_count()
}

/// The whole of a snapshot's file.
async fn bytes_of(mut f: tokio::fs::File) -> Vec<u8> {
    let mut out = Vec::new();
    f.read_to_end(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn snapshots_stream_through_files_and_a_cut_off_install_empties_the_replica() {
    let src_dir = TempDir::new().unwrap();
    let (_, mut src) = open(&src_dir);
    src.apply((1..=20).map(|i| entry(i, 500))).await.unwrap();
    assert_eq!(series(&src), 500);
    src.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let snap = src.get_current_snapshot().await.unwrap().expect("a snapshot after a build");
    assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(20));
    let data = bytes_of(*snap.snapshot).await;
    assert!(data.len() > 10_000, "the export holds the shard: {} bytes", data.len());
    // Nothing of it stays in the spool directory (the file has no name).
    assert_eq!(std::fs::read_dir(src_dir.path().join("spool")).unwrap().count(), 0);

    // A replica receives it in chunks, as openraft writes them, and installs it.
    let dst_dir = TempDir::new().unwrap();
    let (_, mut dst) = open(&dst_dir);
    let mut recv = dst.begin_receiving_snapshot().await.unwrap();
    for chunk in data.chunks(4096) {
        recv.write_all(chunk).await.unwrap();
    }
    dst.install_snapshot(&snap.meta, recv).await.unwrap();
    assert_eq!(series(&dst), 500);
    assert_eq!(dst.applied_state().await.unwrap().0, snap.meta.last_log_id);
    // And serves it again, the same bytes.
    let again = dst.get_current_snapshot().await.unwrap().expect("installed");
    assert_eq!(bytes_of(*again.snapshot).await, data);

    // A corrupt snapshot (a truncated file) is refused before anything is deleted: the replica keeps its data.
    let cut_dir = TempDir::new().unwrap();
    let (_, mut cut) = open(&cut_dir);
    cut.apply((1..=3).map(|i| entry(i, 10))).await.unwrap();
    let mut recv = cut.begin_receiving_snapshot().await.unwrap();
    recv.write_all(&data[..data.len() / 2]).await.unwrap();
    assert!(cut.install_snapshot(&snap.meta, recv).await.is_err());
    assert_eq!(series(&cut), 10);
    drop(cut);
    let (db, cut) = open(&cut_dir);
    assert!(!cut.interrupted_import());
    assert_eq!(series(&cut), 10);
    drop(cut);

    // An import cut off part way (a crash inside the swap: the old data deleted and the marker set, the new
    // files not yet ingested): the replica does not open with a mix of old and new data, it opens empty and
    // says so.
    pharos_storage::ShardEngine::begin_swap(&db, SHARD).unwrap();
    drop(db);
    let (db, mut cut) = open(&cut_dir);
    assert!(cut.interrupted_import());
    assert_eq!(series(&cut), 0);
    assert_eq!(cut.applied_state().await.unwrap().0, None);

    // Its log is emptied to match, keeping the vote.
    let mut log = LogStore::new(db.clone(), pharos_raft::shard_group(SHARD));
    let vote = Vote::new_committed(4, 2);
    log.save_vote(&vote).await.unwrap();
    log.purge(LogId::new(CommittedLeaderId::new(1, 1), 2)).await.unwrap();
    assert!(log.get_log_state().await.unwrap().last_purged_log_id.is_some());
    log.reset().unwrap();
    let st = log.get_log_state().await.unwrap();
    assert_eq!((st.last_purged_log_id, st.last_log_id), (None, None));
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    assert!(log.try_get_log_entries(0..10).await.unwrap().is_empty());
    drop((log, cut, db));
    let (_, cut) = open(&cut_dir);
    assert!(!cut.interrupted_import(), "recovered once");
}

/// A snapshot exported ahead (off openraft's state-machine task) is what the next request for one gets, once;
/// one older than the last snapshot built is not used.
#[tokio::test]
async fn a_snapshot_exported_ahead_is_handed_out_once() {
    let dir = TempDir::new().unwrap();
    let (_, mut sm) = open(&dir);
    sm.apply((1..=10).map(|i| entry(i, 50))).await.unwrap();
    sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let preparer = sm.preparer();
    preparer.prepare().await.unwrap();
    // Applied after the export: a fresh export would hold entry 11; the prepared one ends at 10.
    sm.apply([entry(11, 50)]).await.unwrap();
    let first = sm.get_current_snapshot().await.unwrap().expect("a snapshot");
    assert_eq!(first.meta.last_log_id.map(|l| l.index), Some(10), "the export made ahead");
    let second = sm.get_current_snapshot().await.unwrap().expect("a snapshot");
    assert_eq!(second.meta.last_log_id.map(|l| l.index), Some(11), "used once; then a fresh export");

    // Prepared, then a newer snapshot built: the prepared one is stale and not sent.
    preparer.prepare().await.unwrap();
    sm.apply([entry(12, 50)]).await.unwrap();
    sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let third = sm.get_current_snapshot().await.unwrap().expect("a snapshot");
    assert_eq!(third.meta.last_log_id.map(|l| l.index), Some(12));
}
