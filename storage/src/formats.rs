//! The on-the-wire formats a build reads and writes, which nodes advertise when they join so that a node
//! that cannot read what the cluster writes is refused up front (see `node/src/join.rs`).
//!
//! A format number changes only when bytes written by a newer build would not be read by an older one.
//! Leaders write [`ENTRY_FORMAT_WRITTEN`] and [`SNAPSHOT_FORMAT_WRITTEN`]; a later build that adds a format
//! keeps reading the older ones and writes the newest format every member reads.

/// Raft entry formats: 1, write batches as bincode structures (read only, from old logs); 2, write batches
/// in [`crate::packed`] form.
pub const ENTRY_FORMATS_READ: &[u32] = &[1, 2];
/// The entry format this build's leaders write.
pub const ENTRY_FORMAT_WRITTEN: u32 = 2;
/// Shard snapshot formats: 1, the record stream of `engine/snapshot.rs`; 2, the same whose chunks and heads
/// may use grid timestamps (`codec::grid`).
pub const SNAPSHOT_FORMATS_READ: &[u32] = &[1, 2];
/// The snapshot format this build writes once every member reads it; until then it writes
/// [`SNAPSHOT_FORMAT_FALLBACK`] (its nodes turn grid timestamps on only when the whole cluster reads them:
/// [`cluster_reads_grid`]).
pub const SNAPSHOT_FORMAT_WRITTEN: u32 = 2;
pub const SNAPSHOT_FORMAT_FALLBACK: u32 = 1;

/// Whether every member (by the formats each recorded) reads snapshots whose chunks use grid timestamps.
pub fn cluster_reads_grid<'a>(mut members: impl Iterator<Item = &'a Formats>) -> bool {
    members.all(|f| f.snapshots_read.contains(&SNAPSHOT_FORMAT_WRITTEN))
}

/// What one node reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Formats {
    pub entries_read: Vec<u32>,
    pub entry_written: u32,
    pub snapshots_read: Vec<u32>,
    pub snapshot_written: u32,
}

impl Formats {
    /// This build's formats.
    pub fn this_build() -> Formats {
        Formats {
            entries_read: ENTRY_FORMATS_READ.to_vec(),
            entry_written: ENTRY_FORMAT_WRITTEN,
            snapshots_read: SNAPSHOT_FORMATS_READ.to_vec(),
            snapshot_written: SNAPSHOT_FORMAT_WRITTEN,
        }
    }

    /// The formats of a node that advertises none: every build before advertising existed wrote entry
    /// format 2 and snapshot format 1.
    pub fn before_advertising() -> Formats {
        Formats { entries_read: vec![1, 2], entry_written: 2, snapshots_read: vec![1], snapshot_written: 1 }
    }

    /// Why a node with these formats cannot join a cluster whose members have `members`' formats, if it
    /// cannot: it must read every format a member writes, and every member must read what it writes.
    pub fn join_refusal<'a>(&self, members: impl IntoIterator<Item = (u64, &'a Formats)>) -> Option<String> {
        for (id, m) in members {
            if !self.entries_read.contains(&m.entry_written) {
                return Some(format!(
                    "node {id} writes Raft entry format {} and this build reads only {:?}: upgrade this node \
                     to the cluster's version (or newer) before it joins",
                    m.entry_written, self.entries_read
                ));
            }
            if !self.snapshots_read.contains(&m.snapshot_written) {
                return Some(format!(
                    "node {id} writes snapshot format {} and this build reads only {:?}: upgrade this node \
                     to the cluster's version (or newer) before it joins",
                    m.snapshot_written, self.snapshots_read
                ));
            }
            // This build falls back to snapshot format 1 while a member cannot read 2.
            let snapshot_ok = m.snapshots_read.contains(&self.snapshot_written)
                || (self.snapshot_written == SNAPSHOT_FORMAT_WRITTEN
                    && m.snapshots_read.contains(&SNAPSHOT_FORMAT_FALLBACK));
            if !m.entries_read.contains(&self.entry_written) || !snapshot_ok {
                return Some(format!(
                    "this build writes entry format {} and snapshot format {}, which node {id} cannot read \
                     (it reads entries {:?}, snapshots {:?}): upgrade the cluster's nodes first",
                    self.entry_written, self.snapshot_written, m.entries_read, m.snapshots_read
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_must_read_what_members_write_and_write_what_they_read() {
        let me = Formats::this_build();
        let same = Formats::this_build();
        assert_eq!(me.join_refusal([(1, &same), (2, &Formats::before_advertising())]), None);
        // A member already writing a newer entry format this build cannot read.
        let newer = Formats { entries_read: vec![2, 3], entry_written: 3, ..Formats::this_build() };
        let why = me.join_refusal([(1, &same), (7, &newer)]).unwrap();
        assert!(why.contains("node 7 writes Raft entry format 3"), "{why}");
        // A newer snapshot format.
        let newer = Formats { snapshots_read: vec![1, 2, 3], snapshot_written: 3, ..Formats::this_build() };
        assert!(me.join_refusal([(3, &newer)]).unwrap().contains("snapshot format 3"));
        // A member from before grid timestamps (reads snapshot format 1 only): this build joins and falls back
        // to format 1; an old build may not join a cluster of this build (its chunks may use the grid).
        let before_grid = Formats { snapshots_read: vec![1], snapshot_written: 1, ..Formats::this_build() };
        assert_eq!(me.join_refusal([(5, &before_grid)]), None);
        assert!(before_grid.join_refusal([(1, &same)]).unwrap().contains("snapshot format 2"));
        assert!(!cluster_reads_grid([&same, &before_grid].into_iter()));
        assert!(cluster_reads_grid([&same, &same].into_iter()));
        // This build writes something an old member cannot read.
        let old = Formats { entries_read: vec![1], entry_written: 1, ..Formats::this_build() };
        let me_reading_old = Formats { entries_read: vec![1, 2], ..Formats::this_build() };
        let why = me_reading_old.join_refusal([(4, &old)]).unwrap();
        assert!(why.contains("which node 4 cannot read"), "{why}");
    }
}
