//! One fsync for many log appends: every group of a node writes its appends to RocksDB without syncing
//! (so they are readable at once, as openraft requires), then asks this thread to make them durable. The
//! thread takes every request waiting, syncs the shared WAL once, and completes them all. Sixteen shard
//! groups appending at the same time cost one fsync instead of sixteen.

use std::sync::mpsc;
use std::sync::Arc;

use openraft::storage::LogFlushed;
use rocksdb::DB;

use crate::types::TypeConfig;

#[derive(Clone)]
pub struct Syncer {
    tx: mpsc::Sender<LogFlushed<TypeConfig>>,
}

impl Syncer {
    pub fn start(db: Arc<DB>) -> Syncer {
        let (tx, rx) = mpsc::channel::<LogFlushed<TypeConfig>>();
        std::thread::Builder::new()
            .name("pharos-log-sync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut waiting = vec![first];
                    waiting.extend(rx.try_iter());
                    // Syncing the WAL makes every write before it durable, whichever group made it.
                    let res = db.flush_wal(true);
                    for cb in waiting {
                        cb.log_io_completed(res.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string())));
                    }
                }
            })
            .expect("spawn the log sync thread");
        Syncer { tx }
    }

    /// Completes `cb` once everything written so far is on disk.
    pub fn sync(&self, cb: LogFlushed<TypeConfig>) {
        if let Err(mpsc::SendError(cb)) = self.tx.send(cb) {
            cb.log_io_completed(Err(std::io::Error::other("the log sync thread stopped")));
        }
    }
}
