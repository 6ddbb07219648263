//! openraft's own storage conformance suite, run against our RocksDB log store with each state machine.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use pharos_raft::log_store::LogStore;
use pharos_raft::meta::MetaStateMachine;
use pharos_raft::shard_sm::ShardStateMachine;
use pharos_raft::types::{StorageError, TypeConfig};
use pharos_storage::{EngineOptions, Retention};
use tempfile::TempDir;

fn spool(dir: &TempDir) -> pharos_raft::spool::Spool {
    pharos_raft::spool::Spool::new(dir.path().join("spool")).expect("spool dir")
}

struct ShardBuilder;
struct MetaBuilder;
struct SyncedBuilder;

impl StoreBuilder<TypeConfig, LogStore, MetaStateMachine, TempDir> for SyncedBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, MetaStateMachine), StorageError> {
        let dir = TempDir::new().expect("temp dir");
        let db = pharos_storage::db::open(dir.path(), &Default::default()).expect("open rocksdb");
        let sm = MetaStateMachine::open(db.clone(), 0, spool(&dir))?;
        let syncer = pharos_raft::syncer::Syncer::start(db.clone());
        Ok((dir, LogStore::with_syncer(db, 7, syncer), sm))
    }
}

#[test]
fn log_store_with_shared_fsync_passes_openraft_suite() -> Result<(), StorageError> {
    Suite::test_all(SyncedBuilder)
}

impl StoreBuilder<TypeConfig, LogStore, ShardStateMachine, TempDir> for ShardBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, ShardStateMachine), StorageError> {
        let dir = TempDir::new().expect("temp dir");
        let db = pharos_storage::db::open(dir.path(), &Default::default()).expect("open rocksdb");
        let sm = ShardStateMachine::open(
            db.clone(),
            3,
            Arc::new(Retention::default()),
            EngineOptions::default(),
            spool(&dir),
        )
        .expect("open engine");
        Ok((dir, LogStore::new(db, 4), sm))
    }
}

impl StoreBuilder<TypeConfig, LogStore, MetaStateMachine, TempDir> for MetaBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, MetaStateMachine), StorageError> {
        let dir = TempDir::new().expect("temp dir");
        let db = pharos_storage::db::open(dir.path(), &Default::default()).expect("open rocksdb");
        let sm = MetaStateMachine::open(db.clone(), 0, spool(&dir))?;
        Ok((dir, LogStore::new(db, 0), sm))
    }
}

#[test]
fn shard_group_storage_passes_openraft_suite() -> Result<(), StorageError> {
    Suite::test_all(ShardBuilder)
}

#[test]
fn meta_group_storage_passes_openraft_suite() -> Result<(), StorageError> {
    Suite::test_all(MetaBuilder)
}
