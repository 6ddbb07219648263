//! Backup and restore of a whole cluster.
//!
//! A backup (`pharosctl backup DIR`) holds one *part* per shard and one for the meta group, each its group
//! leader's export at a linearizable point (every write acknowledged before that shard's export began is
//! in it), and a `manifest.json` written last with each part's Raft position, size and SHA-256. The node
//! side is [`serve`]: a shard's export is the one a new replica gets (streamed from a spool file, bounded
//! memory), the meta group's is its stored state.
//!
//! A part is stored as *pieces*: content-defined cuts of its bytes (FastCDC, about 512 KiB each), each a file
//! named by its SHA-256 under `pieces/`. A shard's export is ordered by column family, then time partition,
//! then series, so the data of closed partitions comes out as the same bytes in every backup and cuts into
//! the same pieces. An incremental backup (`--incremental-from PREV`) hard-links the pieces PREV already
//! has and writes only new ones; each backup directory stays whole on its own (delete any of them). A
//! backup cut off before its manifest is resumed by running it again into the same directory: pieces
//! already there are kept.
//!
//! A restore (`pharos restore DIR`, run on each node of the new cluster with the flags it will start with,
//! before its first start) checks every file against the manifest, then writes this node's share: for each
//! shard the new placement gives it, the export imported into its engine (written aside, then swapped in)
//! with the replica's Raft log set to "everything up to the backup's position is applied and purged", and
//! the meta group's state with the new cluster's nodes and placement. Every restored replica of a group
//! starts at the same position with the same membership; the groups then elect leaders as after any
//! restart. The cluster may have another node count than the backed-up one; its shard count is the
//! backup's.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{CommittedLeaderId, Membership};
use pharos_proto::v1::{BackupChunk, BackupRequest};
use pharos_raft::log_store::LogStore;
use pharos_raft::meta::{initial_placement, MetaState};
use pharos_raft::{shard_group, NodeAddr, NodeId, META_GROUP};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tonic::Status;

use crate::config::{parse_initial_cluster, Config};
use crate::node::Node;

/// The manifest's file name; its presence marks a finished backup.
pub const MANIFEST: &str = "manifest.json";

/// Where a restore builds the database before it is moved into place as `db`.
pub use crate::cluster::RESTORING;

/// The manifest's layout version.
pub const MANIFEST_FORMAT: u32 = 1;

/// Bytes per streamed message.
const CHUNK: usize = 1 << 20;

/// What a backup directory holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// When the backup finished (milliseconds since the epoch) and the build that took it.
    pub finished_ms: i64,
    pub pharos_version: String,
    /// The backed-up cluster's shard count (a restored cluster keeps it: it decides which shard holds a
    /// series) and replication factor.
    pub shards: u32,
    pub replication_factor: usize,
    pub meta: Part,
    /// One per shard, in shard order.
    pub parts: Vec<Part>,
}

/// One part of a backup: a group's data at one Raft log position.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Part {
    /// The SHA-256 of each piece, in order ([`piece_path`]).
    pub pieces: Vec<String>,
    /// The shard (None: the meta group).
    pub shard: Option<u32>,
    /// The Raft log id the data ends at: index, term and the leader that wrote it.
    pub index: u64,
    pub term: u64,
    pub leader: u64,
    /// The shard export's format (storage/src/formats.rs); 0 for the meta group (its stored form carries
    /// its own).
    pub snapshot_format: u32,
    /// The node that exported it.
    pub from_node: u64,
    /// The part's size and the SHA-256 of all its bytes.
    pub bytes: u64,
    pub sha256: String,
}

impl Part {
    pub fn name(&self) -> String {
        part_name(self.shard)
    }

    fn log_id(&self) -> pharos_raft::types::LogId {
        openraft::LogId::new(CommittedLeaderId::new(self.term, self.leader), self.index)
    }
}

/// "shard 3", or "the meta group" (None).
pub fn part_name(shard: Option<u32>) -> String {
    match shard {
        None => "the meta group".into(),
        Some(s) => format!("shard {s}"),
    }
}

/// The first message of a part: where its data ends, and how many bytes follow.
fn head(applied: pharos_raft::types::LogId, snapshot_format: u32, from_node: NodeId, total_bytes: u64) -> BackupChunk {
    BackupChunk {
        index: applied.index,
        term: applied.leader_id.term,
        leader: applied.leader_id.node_id,
        snapshot_format,
        from_node,
        data: Vec::new(),
        total_bytes,
    }
}

/// Where a piece is kept: `pieces/ab/abcdef...` (two levels, so no directory holds too many files).
pub fn piece_path(dir: &Path, sha256: &str) -> PathBuf {
    dir.join("pieces").join(sha256.get(..2).unwrap_or("00")).join(sha256)
}

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Piece sizes: FastCDC cuts between `avg / 4` and `avg * 4` bytes, about `avg` apart.
#[derive(Debug, Clone, Copy)]
pub struct PieceSize {
    pub avg: u32,
}

impl Default for PieceSize {
    fn default() -> Self {
        PieceSize { avg: 512 << 10 }
    }
}

impl PieceSize {
    /// (min, avg, max), inside what FastCDC takes.
    fn bounds(self) -> (u32, u32, u32) {
        use fastcdc::v2020::{AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN};
        let avg = self.avg.clamp(AVERAGE_MIN, AVERAGE_MAX);
        ((avg / 4).clamp(MINIMUM_MIN, MINIMUM_MAX), avg, avg.saturating_mul(4).clamp(MAXIMUM_MIN, MAXIMUM_MAX))
    }
}

/// What storing one part wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stored {
    pub bytes: u64,
    /// Bytes in pieces written now, hard-linked from the previous backup, and already in this directory.
    pub written: u64,
    pub linked: u64,
    pub kept: u64,
}

/// Cuts a part into pieces and stores the ones this directory lacks: hard-linked from `prev` (the
/// backup an incremental one builds on) when it has them, else written (to a temporary name, synced,
/// renamed). Returns the piece list, the part's size and SHA-256, and what was written.
pub fn store_part(
    dir: &Path,
    prev: Option<&Path>,
    size: PieceSize,
    data: impl Read,
) -> Result<(Vec<String>, u64, String, Stored), String> {
    let (min, avg, max) = size.bounds();
    let mut whole = Sha256::new();
    let (mut pieces, mut st) = (Vec::new(), Stored::default());
    for piece in fastcdc::v2020::StreamCDC::new(data, min, avg, max) {
        let piece = piece.map_err(|e| format!("reading the part: {e}"))?;
        whole.update(&piece.data);
        let name = hex(Sha256::digest(&piece.data));
        let n = piece.data.len() as u64;
        st.bytes += n;
        let path = piece_path(dir, &name);
        // A piece already here (a resumed backup) or in the previous backup is reused only when its bytes
        // still hash to its name: a damaged piece is written again, not carried into every later backup.
        if intact(&path, &name) {
            st.kept += n;
        } else {
            let parent = path.parent().expect("pieces/xx");
            std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
            let from = prev.map(|p| piece_path(p, &name)).filter(|p| intact(p, &name));
            // Another file system: written instead.
            let linked = from.is_some_and(|from| {
                let _ = std::fs::remove_file(&path);
                std::fs::hard_link(from, &path).is_ok()
            });
            if linked {
                st.linked += n;
            } else {
                let tmp = path.with_extension("partial");
                let write = || -> std::io::Result<()> {
                    let mut f = std::fs::File::create(&tmp)?;
                    f.write_all(&piece.data)?;
                    f.sync_all()?;
                    std::fs::rename(&tmp, &path)
                };
                write().map_err(|e| format!("writing {}: {e}", path.display()))?;
                st.written += n;
            }
        }
        pieces.push(name);
    }
    Ok((pieces, st.bytes, hex(whole.finalize()), st))
}

/// Whether the file at `path` exists and its bytes hash to `name`.
fn intact(path: &Path, name: &str) -> bool {
    let Ok(f) = std::fs::File::open(path) else { return false };
    let mut h = Hashing::new(std::io::sink());
    std::io::copy(&mut BufReader::with_capacity(CHUNK, f), &mut h).is_ok() && h.finish().2 == name
}

/// Reads a part back from its pieces, checking each piece against its name as it ends: a damaged piece is
/// an `InvalidData` error naming its file and the part.
pub struct PartReader {
    dir: PathBuf,
    part: String,
    pieces: std::vec::IntoIter<String>,
    cur: Option<(String, BufReader<std::fs::File>, Sha256)>,
}

impl PartReader {
    pub fn new(dir: &Path, part: &Part) -> PartReader {
        PartReader { dir: dir.to_path_buf(), part: part.name(), pieces: part.pieces.clone().into_iter(), cur: None }
    }
}

impl Read for PartReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.cur.is_none() {
                let Some(name) = self.pieces.next() else { return Ok(0) };
                let path = piece_path(&self.dir, &name);
                let f = std::fs::File::open(&path).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("{} (a piece of {}): {e}: the backup is incomplete", path.display(), self.part),
                    )
                })?;
                self.cur = Some((name, BufReader::with_capacity(CHUNK, f), Sha256::new()));
            }
            let (_, r, h) = self.cur.as_mut().expect("set above");
            let n = r.read(buf)?;
            if n > 0 {
                h.update(&buf[..n]);
                return Ok(n);
            }
            let (name, _, h) = self.cur.take().expect("set above");
            let got = hex(h.finalize());
            if got != name {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{} (a piece of {}) is corrupt: its content's SHA-256 is {got}; restore from another backup",
                        piece_path(&self.dir, &name).display(),
                        self.part
                    ),
                ));
            }
        }
    }
}

/// Hex SHA-256 of everything written through it.
pub struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W) -> Self {
        Hashing { inner, hash: Sha256::new(), bytes: 0 }
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The bytes written and their hex SHA-256.
    pub fn finish(self) -> (W, u64, String) {
        (self.inner, self.bytes, hex(self.hash.finalize()))
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Serves one part of a backup: the group's position in the first message, then its data. Only the
/// group's leader answers (after a linearizable check, so the export holds every write acknowledged
/// before the call); another node answers FailedPrecondition naming the leader it knows.
pub async fn serve(node: &Node, req: BackupRequest) -> Result<mpsc::Receiver<Result<BackupChunk, Status>>, Status> {
    let me = node.id;
    let not_leader = |what: &str, leader: Option<NodeId>| {
        Status::failed_precondition(match leader {
            Some(l) => format!("node {me} does not lead {what}: node {l} does; ask it"),
            None => format!("{what} has no leader now (an election); try again"),
        })
    };
    let (tx, rx) = mpsc::channel(4);
    if req.meta {
        let raft = &node.meta.raft;
        raft.ensure_linearizable().await.map_err(|_| not_leader("the meta group", node.meta.leader_seen()))?;
        let bytes = pharos_raft::meta::read_stored(&node.cluster.db, META_GROUP)
            .map_err(|e| Status::internal(format!("reading the meta state: {e}")))?
            .ok_or_else(|| Status::unavailable("the meta group has applied nothing yet; try again"))?;
        let (applied, _) = pharos_raft::meta::decode_stored(&bytes)
            .map_err(|e| Status::internal(format!("decoding the meta state: {e}")))?;
        let applied = applied.ok_or_else(|| Status::unavailable("the meta group has applied nothing yet"))?;
        tracing::info!(index = applied.index, "backing up the meta group");
        let head = head(applied, 0, me, bytes.len() as u64);
        tokio::spawn(async move {
            if tx.send(Ok(head)).await.is_err() {
                return;
            }
            for c in bytes.chunks(CHUNK) {
                if tx.send(Ok(BackupChunk { data: c.to_vec(), ..Default::default() })).await.is_err() {
                    return;
                }
            }
        });
        return Ok(rx);
    }
    let shard = req.shard;
    if shard >= node.router.shards() {
        return Err(Status::invalid_argument(format!(
            "shard {shard} does not exist: the cluster has {} shards",
            node.router.shards()
        )));
    }
    let what = part_name(Some(shard));
    let replica = node.replicas.get(shard).ok_or_else(|| not_leader(&what, node.replicas.leader_seen(shard)))?;
    replica
        .raft
        .ensure_linearizable()
        .await
        .map_err(|_| not_leader(&what, replica.raft.metrics().borrow().current_leader))?;
    let (meta, file) = replica.snapshots.export().await.map_err(|e| Status::internal(format!("{what}: {e}")))?;
    let applied = meta.last_log_id.ok_or_else(|| Status::unavailable(format!("{what} has applied nothing yet")))?;
    tracing::info!(shard, index = applied.index, "backing up a shard");
    let total = file.metadata().map(|m| m.len()).map_err(|e| Status::internal(format!("{what}: {e}")))?;
    let head = head(applied, pharos_storage::formats::SNAPSHOT_FORMAT_WRITTEN, me, total);
    // The spool file is read on a blocking thread and handed over chunk by chunk: a slow client holds at
    // most a few chunks in memory.
    tokio::task::spawn_blocking(move || {
        if tx.blocking_send(Ok(head)).is_err() {
            return;
        }
        let mut r = BufReader::with_capacity(CHUNK, file);
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = match read_full(&mut r, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.blocking_send(Err(Status::internal(format!("reading the export of {what}: {e}"))));
                    return;
                }
            };
            if n == 0 {
                return;
            }
            buf.truncate(n);
            if tx.blocking_send(Ok(BackupChunk { data: buf, ..Default::default() })).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Fills `buf` as far as the reader goes; returns how much it read (less only at the end).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads a backup's manifest, with what to do when it is missing or unreadable.
pub fn read_manifest(dir: &Path) -> Result<Manifest, String> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{} is missing: {} is not a finished backup (pharosctl backup writes the manifest last)",
                path.display(),
                dir.display()
            )
        } else {
            format!("reading {}: {e}", path.display())
        }
    })?;
    let m: Manifest =
        serde_json::from_str(&text).map_err(|e| format!("{} is not a backup manifest: {e}", path.display()))?;
    if m.format != MANIFEST_FORMAT {
        return Err(format!(
            "{} has format {}; this build reads format {MANIFEST_FORMAT}: restore with the build that took it",
            path.display(),
            m.format
        ));
    }
    if m.parts.len() != m.shards as usize || m.parts.iter().enumerate().any(|(i, p)| p.shard != Some(i as u32)) {
        return Err(format!(
            "{} lists {} parts for {} shards, not one per shard in order",
            path.display(),
            m.parts.len(),
            m.shards
        ));
    }
    Ok(m)
}

/// Checks every part of the backup against the manifest (each piece's SHA-256, then the part's size and
/// SHA-256), naming the first piece or part that differs. `progress` hears of each part checked.
pub fn verify(dir: &Path, m: &Manifest, mut progress: impl FnMut(&Part)) -> Result<(), String> {
    for p in std::iter::once(&m.meta).chain(&m.parts) {
        let mut h = Hashing::new(std::io::sink());
        std::io::copy(&mut PartReader::new(dir, p), &mut h).map_err(|e| e.to_string())?;
        let (_, bytes, sha) = h.finish();
        if bytes != p.bytes || sha != p.sha256 {
            return Err(format!(
                "{} in {} is corrupt: {bytes} bytes with SHA-256 {sha}, the manifest says {} bytes with {}; restore \
                 from another backup",
                p.name(),
                dir.display(),
                p.bytes,
                p.sha256
            ));
        }
        progress(p);
    }
    Ok(())
}

/// What a restore wrote on this node.
#[derive(Debug)]
pub struct Restored {
    pub node: NodeId,
    pub nodes: Vec<NodeId>,
    pub shards: Vec<u32>,
    pub bytes: u64,
}

/// Restores this node's share of the backup in `dir` into its (new) data directory; see the module docs.
/// `progress` gets a line per step.
pub fn restore(config: &Config, dir: &Path, mut progress: impl FnMut(String)) -> Result<Restored, String> {
    let m = read_manifest(dir)?;
    for p in &m.parts {
        if !pharos_storage::formats::SNAPSHOT_FORMATS_READ.contains(&p.snapshot_format) {
            return Err(format!(
                "{} is in snapshot format {}, which this build does not read (it reads {:?}): restore with a newer \
                 build",
                p.name(),
                p.snapshot_format,
                pharos_storage::formats::SNAPSHOT_FORMATS_READ
            ));
        }
    }
    if config.join.is_some() {
        return Err("a restore founds a new cluster: give --initial-cluster (or nothing, for one node), not --join; \
                    nodes can join the restored cluster once it runs"
            .into());
    }
    let db_dir = config.data_dir.join("db");
    if db_dir.exists() {
        return Err(format!(
            "{} already holds a node's data: restore into a new --data-dir (a restore never mixes with existing data)",
            config.data_dir.display()
        ));
    }
    let members: BTreeMap<NodeId, String> = match &config.initial_cluster {
        Some(ic) => parse_initial_cluster(ic).map_err(|e| e.to_string())?,
        None => BTreeMap::from([(config.node_id, config.advertised_grpc())]),
    };
    let me = config.node_id;
    if !members.contains_key(&me) {
        return Err(format!("node {me} is not in --initial-cluster; give this node's --node-id"));
    }
    let total = 1 + m.parts.len();
    let mut checked = 0;
    verify(dir, &m, |p| {
        checked += 1;
        progress(format!("checked {} ({checked}/{total}, {} bytes)", p.name(), p.bytes));
    })?;

    let ids: Vec<NodeId> = members.keys().copied().collect();
    // The backup's replication factor, as a founding cluster of these nodes would place it (at most one
    // replica per node); recorded as the cluster's, so nodes that join later get the missing replicas.
    let rf = m.replication_factor.max(1);
    let placement = initial_placement(&ids, m.shards, rf);
    let addr_of = |n: &NodeId| NodeAddr {
        grpc: members[n].clone(),
        http: if *n == me { config.http_addr.to_string() } else { String::new() },
    };
    let err = |what: String| move |e: &dyn std::fmt::Display| format!("{what}: {e}");
    std::fs::create_dir_all(&config.data_dir).map_err(|e| err(config.data_dir.display().to_string())(&e))?;
    // Built aside and renamed into place when whole: a restore cut short leaves no `db` a server would start
    // from (it refuses to start next to a `db.restoring`; running the restore again starts over).
    let aside = config.data_dir.join(RESTORING);
    if aside.exists() {
        progress(format!("removing {} left by an earlier restore that did not finish", aside.display()));
        std::fs::remove_dir_all(&aside).map_err(|e| err(aside.display().to_string())(&e))?;
    }
    let db =
        pharos_storage::db::open(&aside, &config.storage.db()).map_err(|e| err(aside.display().to_string())(&e))?;
    let retention = Arc::new(pharos_storage::Retention::new(config.retention.clone()).map_err(|e| e.to_string())?);
    // Every restored replica's vote is for no node (0) in the backup's term, so the group's first election
    // is in a later term and its leader's entries come after the restored position.
    let vote_for = |p: &Part| pharos_raft::types::Vote::new(p.term, 0);
    let (mut restored, mut bytes) = (Vec::new(), 0u64);
    for (s, replicas) in placement.iter().enumerate() {
        if !replicas.contains(&me) {
            continue;
        }
        let p = &m.parts[s];
        let nodes: BTreeMap<NodeId, NodeAddr> = replicas.iter().map(|n| (*n, addr_of(n))).collect();
        let voters: BTreeSet<NodeId> = replicas.iter().copied().collect();
        let membership =
            pharos_raft::types::StoredMembership::new(Some(p.log_id()), Membership::new(vec![voters], nodes));
        let log = LogStore::new(db.clone(), shard_group(s as u32));
        log.restore_at(p.log_id(), vote_for(p)).map_err(|e| err(format!("shard {s}: its log"))(&e))?;
        pharos_raft::shard_sm::restore(
            db.clone(),
            s as u32,
            BufReader::with_capacity(CHUNK, PartReader::new(dir, p)),
            p.log_id(),
            membership,
            retention.clone(),
            config.storage.engine(),
        )
        .map_err(|e| err(format!("restoring shard {s}"))(&e))?;
        restored.push(s as u32);
        bytes += p.bytes;
        progress(format!("restored shard {s} at index {} ({} bytes)", p.index, p.bytes));
    }

    // The meta group: the backed-up configuration (rules, routing, scrape, silences, tokens, ...) with the
    // new cluster's nodes and placement. What described the old cluster's members goes; the nodes record
    // themselves again when they start.
    let mut raw = Vec::new();
    PartReader::new(dir, &m.meta).read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let (_, old) = pharos_raft::meta::decode_stored(&raw).map_err(|e| err("the meta group's part".into())(&e))?;
    let state = restored_meta(old, &members, &placement, m.shards, rf, addr_of);
    let nodes: BTreeMap<NodeId, NodeAddr> = ids.iter().map(|n| (*n, addr_of(n))).collect();
    let membership = pharos_raft::types::StoredMembership::new(
        Some(m.meta.log_id()),
        Membership::new(vec![ids.iter().copied().collect()], nodes),
    );
    LogStore::new(db.clone(), META_GROUP)
        .restore_at(m.meta.log_id(), vote_for(&m.meta))
        .map_err(|e| err("the meta group's log".into())(&e))?;
    pharos_raft::meta::store_restored(&db, META_GROUP, m.meta.log_id(), membership, state)
        .map_err(|e| err("the meta group's state".into())(&e))?;
    db.flush_wal(true).map_err(|e| err("syncing the database".into())(&e))?;
    if Arc::strong_count(&db) != 1 {
        return Err("internal: the restored database is still open; nothing was moved into place".into());
    }
    drop(db);
    // Into place, then the node's id (a directory with a `db` and no id file starts under --node-id).
    std::fs::rename(&aside, &db_dir)
        .map_err(|e| err(format!("moving {} to {}", aside.display(), db_dir.display()))(&e))?;
    let id_file = config.data_dir.join("node_id");
    std::fs::write(&id_file, format!("{me}\n")).map_err(|e| err(id_file.display().to_string())(&e))?;
    std::fs::File::open(&config.data_dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| err(config.data_dir.display().to_string())(&e))?;
    Ok(Restored { node: me, nodes: ids, shards: restored, bytes })
}

fn restored_meta(
    mut state: MetaState,
    members: &BTreeMap<NodeId, String>,
    placement: &[Vec<NodeId>],
    shards: u32,
    replication_factor: usize,
    addr_of: impl Fn(&NodeId) -> NodeAddr,
) -> MetaState {
    state.nodes = members.keys().map(|n| (*n, addr_of(n))).collect();
    state.shards = placement.to_vec();
    for kind in [
        crate::rebalance::PLAN_DOC,
        crate::rebalance::NODES_DOC,
        crate::rebalance::SEEN_DOC,
        crate::rebalance::FORMATS_DOC,
    ] {
        state.docs.remove(kind);
    }
    let shape = crate::join::shape_doc(shards, replication_factor);
    let version = state.doc(crate::join::SHAPE_DOC).version + 1;
    state.docs.insert(crate::join::SHAPE_DOC.into(), pharos_raft::meta::Doc { version, bytes: shape });
    state
}

/// The directory a backup is written to, checked: new or empty, never an earlier backup.
pub fn prepare_dir(dir: &Path) -> Result<PathBuf, String> {
    if dir.join(MANIFEST).exists() {
        return Err(format!("{} already holds a backup: give a new directory", dir.display()));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that do not repeat (xorshift), so content-defined cuts fall where the content says.
    fn data(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn part(pieces: Vec<String>, bytes: u64, sha256: String) -> Part {
        let (index, term, leader, snapshot_format, from_node) = (1, 1, 1, 2, 1);
        Part { pieces, shard: Some(3), index, term, leader, snapshot_format, from_node, bytes, sha256 }
    }

    #[test]
    fn parts_come_back_whole_and_an_incremental_store_writes_only_what_changed() {
        let size = PieceSize { avg: 16 << 10 };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = data(1 << 20, 7);
        let (pieces, bytes, sha, st) = store_part(a.path(), None, size, &first[..]).unwrap();
        assert_eq!((bytes, st.written, st.linked), (first.len() as u64, first.len() as u64, 0));
        assert!(pieces.len() > 20, "{} pieces", pieces.len());
        let mut back = Vec::new();
        PartReader::new(a.path(), &part(pieces.clone(), bytes, sha.clone())).read_to_end(&mut back).unwrap();
        assert!(back == first);
        assert_eq!(sha, hex(Sha256::digest(&first)));

        // 1 KiB changed in the middle and 4 KiB appended: the pieces around the change and at the end are
        // new, the rest are linked from the first store.
        let mut second = first.clone();
        second[500_000..501_024].copy_from_slice(&data(1024, 9));
        second.extend(data(4096, 11));
        let (pieces2, bytes2, sha2, st2) = store_part(b.path(), Some(a.path()), size, &second[..]).unwrap();
        assert_eq!(st2.written + st2.linked + st2.kept, second.len() as u64);
        assert!(st2.linked > second.len() as u64 * 8 / 10, "{st2:?}");
        assert!(st2.written > 0 && st2.written < 200 << 10, "{st2:?}");
        let mut back = Vec::new();
        PartReader::new(b.path(), &part(pieces2.clone(), bytes2, sha2)).read_to_end(&mut back).unwrap();
        assert!(back == second);

        // A damaged piece (written over in the second backup; its link was replaced) is named.
        let victim = piece_path(b.path(), &pieces2[5]);
        let mut bad = std::fs::read(&victim).unwrap();
        bad[10] ^= 1;
        std::fs::remove_file(&victim).unwrap();
        std::fs::write(&victim, bad).unwrap();
        let err = PartReader::new(b.path(), &part(pieces2.clone(), bytes2, String::new()))
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains(&format!("{} (a piece of shard 3) is corrupt", victim.display())), "{err}");
        // The first backup's copy is untouched.
        let mut back = Vec::new();
        PartReader::new(a.path(), &part(pieces, bytes, sha)).read_to_end(&mut back).unwrap();
        assert!(back == first);
    }
}
