//! The data directory's free space. Below `storage.min_free_bytes` this node refuses new writes before they
//! reach Raft (HTTP 507, gRPC ResourceExhausted, naming the node, the free space and the setting), so a full
//! disk does not fail an apply half-way; reads, replication of entries already accepted, snapshots and
//! compactions go on. Writes resume by themselves once space returns.
//!
//! A replica whose Raft group stopped on a storage error anyway (the disk filled faster than it is sampled,
//! or by another process) is reopened from its durable state by the reconciler once space is back
//! (`Cluster::reconcile`).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;

/// How often the free space is read (a `statvfs` call).
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

pub struct Disk {
    dir: PathBuf,
    min_free: u64,
    free: AtomicU64,
}

impl Disk {
    pub fn new(dir: PathBuf, min_free: u64) -> Arc<Disk> {
        let d = Disk { dir, min_free, free: AtomicU64::new(u64::MAX) };
        d.sample();
        Arc::new(d)
    }

    /// Reads the filesystem's free space now: what this process may still write, as `df` shows it.
    pub fn sample(&self) -> u64 {
        let free = free_bytes(&self.dir).unwrap_or(u64::MAX);
        self.free.store(free, Ordering::Relaxed);
        free
    }

    /// The free space at the last sample.
    pub fn free(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    /// Why writes are refused now, if they are.
    pub fn refusal(&self) -> Option<String> {
        let free = self.free();
        (free < self.min_free).then(|| {
            format!(
                "the disk is full: {} free in {}, below storage.min_free_bytes ({}); free space or add nodes, and \
                 writes resume by themselves",
                megabytes(free),
                self.dir.display(),
                megabytes(self.min_free)
            )
        })
    }

    /// Whether a replica stopped by a storage error may be opened again: the free space is above the floor
    /// and above 64 MiB (opening replays logs and writes).
    pub fn room_to_reopen(&self) -> bool {
        self.free() >= self.min_free.max(64 << 20)
    }

    /// Samples the free space every 250 ms, keeps `pharos_disk_free_bytes` and `pharos_disk_full`, and logs
    /// when writes stop and resume.
    pub fn spawn(self: &Arc<Self>, metrics: Arc<Metrics>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut was_full = false;
            loop {
                let free = me.sample();
                metrics.disk_free.set(free.min(i64::MAX as u64) as i64);
                let refusal = me.refusal();
                metrics.disk_full.set(refusal.is_some() as i64);
                match (&refusal, was_full) {
                    (Some(why), false) => tracing::error!("writes refused: {why}"),
                    (None, true) => {
                        tracing::info!(free = %megabytes(free), "disk space is back above storage.min_free_bytes: writes resume")
                    }
                    _ => {}
                }
                was_full = refusal.is_some();
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        })
    }
}

fn megabytes(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

/// Bytes an unprivileged process may still write on the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs only writes the struct it is given; an all-zero statvfs is a valid value of it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and lives across the call; `st` is a valid out-parameter.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_refused_below_the_floor_and_the_reason_says_what_to_do() {
        let dir = tempfile::TempDir::new().unwrap();
        let free = free_bytes(dir.path()).expect("statvfs of a temporary directory");
        assert!(free > 0);
        assert_eq!(Disk::new(dir.path().into(), 0).refusal(), None);
        let why = Disk::new(dir.path().into(), u64::MAX).refusal().expect("no disk has u64::MAX bytes free");
        assert!(why.contains("storage.min_free_bytes") && why.contains("free space or add nodes"), "{why}");
        assert!(free_bytes(Path::new("/no/such/dir")).is_none());
    }
}
