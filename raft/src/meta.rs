//! The meta group: cluster membership and the shard map (which nodes hold each shard's replicas).
//!
//! Its state is small, so every apply persists all of it with the applied log id in one synced write;
//! snapshots are the same bytes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, RaftLogId, StorageIOError};
use pharos_storage::db::{cf, CF_RAFT_STATE};
use rocksdb::{WriteOptions, DB};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::spool::Spool;
use crate::types::{
    Entry, GroupId, LogId, NodeAddr, NodeId, Request, Response, Snapshot, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    pub nodes: BTreeMap<NodeId, NodeAddr>,
    /// Replicas of each shard; the index is the shard id.
    pub shards: Vec<Vec<NodeId>>,
    /// The alerting and recording rule file in force (validated by the node before it is proposed).
    pub rules: StoredConfig,
    /// The alert routing configuration (Alertmanager's shape: route tree, receivers, inhibit rules).
    pub routing: StoredConfig,
    /// The scrape configuration (Prometheus's `scrape_configs`), validated by the node.
    pub scrape: StoredConfig,
    /// Alert silences by id, as JSON (their shape belongs to pharos-alert).
    pub silences: BTreeMap<String, String>,
    /// Versioned documents by kind, whose shape belongs to the node (node states, the rebalance plan);
    /// changed by compare-and-set on the version ([`MetaCommand::PutDoc`]).
    pub docs: BTreeMap<String, Doc>,
}

/// A document of the meta state: opaque bytes and a version that increments with every change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Doc {
    pub version: u64,
    pub bytes: Vec<u8>,
}

/// The meta state as the first format stored it (before documents), read when a data directory or a
/// snapshot of that format is opened.
#[derive(Deserialize)]
struct MetaStateV1 {
    nodes: BTreeMap<NodeId, NodeAddr>,
    shards: Vec<Vec<NodeId>>,
    rules: StoredConfig,
    routing: StoredConfig,
    scrape: StoredConfig,
    silences: BTreeMap<String, String>,
}

/// A configuration file (rules, routing) and its version (increments with every apply, so actors know to
/// reload).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredConfig {
    pub text: String,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Sets the initial node list and shard map; ignored once the map exists (every bootstrapping node may
    /// propose it).
    Bootstrap {
        nodes: BTreeMap<NodeId, NodeAddr>,
        shards: Vec<Vec<NodeId>>,
    },
    /// Registers a node (id 0: the next free id, answered with [`MetaResponse::Added`]). Refused for an id
    /// registered with another address.
    AddNode {
        id: NodeId,
        addr: NodeAddr,
    },
    RemoveNode {
        id: NodeId,
    },
    SetReplicas {
        shard: u32,
        replicas: Vec<NodeId>,
    },
    /// Replaces the rule file (text already validated).
    SetRules {
        text: String,
    },
    /// Replaces the routing configuration (text already validated).
    SetRouting {
        text: String,
    },
    /// Replaces the scrape configuration (text already validated).
    SetScrape {
        text: String,
    },
    /// Adds or replaces a silence.
    PutSilence {
        id: String,
        json: String,
    },
    DeleteSilence {
        id: String,
    },
    /// Replaces a document when its version is `expect` (None: whatever it is).
    PutDoc {
        kind: String,
        bytes: Vec<u8>,
        expect: Option<u64>,
    },
    /// Applies every command or, when one is refused, none.
    Batch(Vec<MetaCommand>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MetaResponse {
    Ok,
    Rejected(String),
    /// A node was registered with this id.
    Added(NodeId),
    /// A document changed since it was read (compare-and-set): read it again and retry.
    Conflict(String),
}

impl MetaState {
    pub fn apply(&mut self, cmd: &MetaCommand) -> MetaResponse {
        match cmd {
            MetaCommand::Bootstrap { nodes, shards } => {
                if self.shards.is_empty() {
                    self.nodes = nodes.clone();
                    self.shards = shards.clone();
                }
                MetaResponse::Ok
            }
            MetaCommand::AddNode { id, addr } => {
                let id = match *id {
                    0 => self.nodes.keys().next_back().map_or(1, |n| n + 1),
                    id => id,
                };
                match self.nodes.get(&id) {
                    Some(a) if a.grpc != addr.grpc => {
                        return MetaResponse::Rejected(format!(
                            "node id {id} is already registered with address {}; pick another id, or remove that \
                             node first",
                            a.grpc
                        ))
                    }
                    _ => {}
                }
                if let Some((other, _)) = self.nodes.iter().find(|(n, a)| **n != id && a.grpc == addr.grpc) {
                    return MetaResponse::Rejected(format!(
                        "address {} is already node {other}'s; give this node its own --grpc-addr",
                        addr.grpc
                    ));
                }
                self.nodes.insert(id, addr.clone());
                MetaResponse::Added(id)
            }
            MetaCommand::RemoveNode { id } => {
                if self.shards.iter().any(|r| r.contains(id)) {
                    return MetaResponse::Rejected(format!("node {id} still holds shard replicas; drain it first"));
                }
                self.nodes.remove(id);
                MetaResponse::Ok
            }
            MetaCommand::SetReplicas { shard, replicas } => match self.shards.get_mut(*shard as usize) {
                Some(r) => {
                    *r = replicas.clone();
                    MetaResponse::Ok
                }
                None => MetaResponse::Rejected(format!("no shard {shard}")),
            },
            MetaCommand::SetRules { text } => {
                self.rules = StoredConfig { text: text.clone(), version: self.rules.version + 1 };
                MetaResponse::Ok
            }
            MetaCommand::SetRouting { text } => {
                self.routing = StoredConfig { text: text.clone(), version: self.routing.version + 1 };
                MetaResponse::Ok
            }
            MetaCommand::SetScrape { text } => {
                self.scrape = StoredConfig { text: text.clone(), version: self.scrape.version + 1 };
                MetaResponse::Ok
            }
            MetaCommand::PutSilence { id, json } => {
                self.silences.insert(id.clone(), json.clone());
                MetaResponse::Ok
            }
            MetaCommand::DeleteSilence { id } => match self.silences.remove(id) {
                Some(_) => MetaResponse::Ok,
                None => MetaResponse::Rejected(format!("no silence {id}")),
            },
            MetaCommand::PutDoc { kind, bytes, expect } => {
                let doc = self.docs.entry(kind.clone()).or_default();
                if expect.is_some_and(|v| v != doc.version) {
                    return MetaResponse::Conflict(format!(
                        "{kind} changed meanwhile (version {} now, {} expected); read it again",
                        doc.version,
                        expect.unwrap_or_default()
                    ));
                }
                *doc = Doc { version: doc.version + 1, bytes: bytes.clone() };
                MetaResponse::Ok
            }
            MetaCommand::Batch(cmds) => {
                let mut next = self.clone();
                let mut last = MetaResponse::Ok;
                for c in cmds {
                    last = next.apply(c);
                    if let MetaResponse::Rejected(_) | MetaResponse::Conflict(_) = last {
                        return last;
                    }
                }
                *self = next;
                last
            }
        }
    }

    /// A document's current version and bytes (version 0 and no bytes when it was never written).
    pub fn doc(&self, kind: &str) -> Doc {
        self.docs.get(kind).cloned().unwrap_or_default()
    }
}

/// Even initial placement: shard s on nodes s, s+1, ... (mod n) of the sorted node list, `replicas` of them.
pub fn initial_placement(nodes: &[NodeId], shards: u32, replicas: usize) -> Vec<Vec<NodeId>> {
    let mut sorted = nodes.to_vec();
    sorted.sort_unstable();
    let r = replicas.min(sorted.len()).max(1);
    (0..shards as usize).map(|s| (0..r).map(|i| sorted[(s + i) % sorted.len()]).collect()).collect()
}

/// Decodes a stored or snapshotted meta state of either format (public for the fuzz targets: any bytes give a
/// state or an error).
pub fn decode_persisted(bytes: &[u8]) -> Result<MetaState, bincode::Error> {
    Persisted::decode(bytes).map(|p| p.state)
}

/// The stored form of a state (no log position, no membership), for tools and the fuzz targets' seeds.
pub fn encode_persisted(state: &MetaState) -> Vec<u8> {
    Persisted { state: state.clone(), ..Default::default() }.encode()
}

/// The meta group's state as this node last applied and stored it (the bytes of one synced write), for a
/// backup; None before the first apply.
pub fn read_stored(db: &DB, group: GroupId) -> Result<Option<Vec<u8>>, rocksdb::Error> {
    db.get_cf(cf(db, CF_RAFT_STATE), key(group))
}

/// What [`read_stored`]'s bytes hold: the log position they end at and the state.
pub fn decode_stored(bytes: &[u8]) -> Result<(Option<LogId>, MetaState), bincode::Error> {
    Persisted::decode(bytes).map(|p| (p.applied, p.state))
}

/// Stores a restored meta state (`pharos restore`), applied up to `applied` with `membership`, in place of
/// whatever the group held. Call after [`crate::log_store::LogStore::restore_at`] (which deletes the group's
/// stored state, this included).
pub fn store_restored(
    db: &DB,
    group: GroupId,
    applied: LogId,
    membership: StoredMembership,
    state: MetaState,
) -> Result<(), rocksdb::Error> {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    let p = Persisted { applied: Some(applied), membership, state };
    db.put_cf_opt(cf(db, CF_RAFT_STATE), key(group), p.encode(), &w)
}

/// Marks the stored format with documents; the first format has no mark.
const FORMAT_V2: &[u8; 4] = b"PMS\x02";

#[derive(Deserialize)]
struct PersistedV1 {
    applied: Option<LogId>,
    membership: StoredMembership,
    state: MetaStateV1,
}

impl Persisted {
    fn encode(&self) -> Vec<u8> {
        let mut out = FORMAT_V2.to_vec();
        bincode::serialize_into(&mut out, self).expect("meta serializes");
        out
    }

    fn decode(bytes: &[u8]) -> Result<Persisted, bincode::Error> {
        if let Some(rest) = bytes.strip_prefix(FORMAT_V2) {
            return bincode::deserialize(rest);
        }
        let v1: PersistedV1 = bincode::deserialize(bytes)?;
        let s = v1.state;
        Ok(Persisted {
            applied: v1.applied,
            membership: v1.membership,
            state: MetaState {
                nodes: s.nodes,
                shards: s.shards,
                rules: s.rules,
                routing: s.routing,
                scrape: s.scrape,
                silences: s.silences,
                docs: BTreeMap::new(),
            },
        })
    }
}

#[derive(Serialize, Deserialize, Default)]
struct Persisted {
    applied: Option<LogId>,
    membership: StoredMembership,
    state: MetaState,
}

pub struct MetaStateMachine {
    db: Arc<DB>,
    group: GroupId,
    p: Persisted,
    /// The applied state, published to readers after every apply (a watch: readers take the current value
    /// without locking out the state machine, and actors wait for changes instead of polling).
    shared: watch::Sender<Arc<MetaState>>,
    /// The last snapshot built or installed (shared with builders).
    snapshot: Arc<Mutex<Option<(SnapshotMeta, Vec<u8>)>>>,
    spool: Spool,
}

fn key(group: GroupId) -> Vec<u8> {
    let mut k = group.to_be_bytes().to_vec();
    k.extend_from_slice(b"sm");
    k
}

impl MetaStateMachine {
    pub fn open(db: Arc<DB>, group: GroupId, spool: Spool) -> Result<Self, StorageError> {
        let raw = db.get_cf(cf(&db, CF_RAFT_STATE), key(group)).map_err(|e| StorageIOError::read_state_machine(&e))?;
        let p: Persisted = match raw {
            Some(b) => Persisted::decode(&b).map_err(|e| StorageIOError::read_state_machine(&e))?,
            None => Persisted::default(),
        };
        let shared = watch::Sender::new(Arc::new(p.state.clone()));
        Ok(MetaStateMachine { db, group, p, shared, snapshot: Arc::new(Mutex::new(None)), spool })
    }

    /// The applied state: `borrow()` for the current value, `changed()` to wait for the next.
    pub fn state(&self) -> watch::Receiver<Arc<MetaState>> {
        self.shared.subscribe()
    }

    fn publish(&self) {
        let state = &self.p.state;
        self.shared.send_if_modified(|cur| {
            let changed = **cur != *state;
            if changed {
                *cur = Arc::new(state.clone());
            }
            changed
        });
    }

    fn persist(&self) -> Result<(), StorageError> {
        let b = self.p.encode();
        let mut w = WriteOptions::default();
        w.set_sync(true);
        self.db
            .put_cf_opt(cf(&self.db, CF_RAFT_STATE), key(self.group), b, &w)
            .map_err(|e| StorageIOError::write_state_machine(&e).into())
    }
}

impl RaftStateMachine<TypeConfig> for MetaStateMachine {
    type SnapshotBuilder = MetaSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.p.applied, self.p.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        for e in entries {
            let log_id = *e.get_log_id();
            self.p.applied = Some(log_id);
            match e.payload {
                EntryPayload::Blank | EntryPayload::Normal(Request::Shard(_)) => out.push(Response::None),
                EntryPayload::Membership(m) => {
                    self.p.membership = StoredMembership::new(Some(log_id), m);
                    out.push(Response::None);
                }
                EntryPayload::Normal(Request::Meta(cmd)) => out.push(Response::Meta(self.p.state.apply(&cmd))),
            }
        }
        self.persist()?;
        self.publish();
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        MetaSnapshotBuilder {
            bytes: self.p.encode(),
            applied: self.p.applied,
            membership: self.p.membership.clone(),
            current: self.snapshot.clone(),
            spool: self.spool.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let f = self.spool.file().map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Box::new(tokio::fs::File::from_std(f)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        use std::io::Read;
        let mut data = Vec::new();
        crate::spool::received(*snapshot)
            .await
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        self.p = Persisted::decode(&data).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        self.persist()?;
        self.publish();
        *self.snapshot.lock().expect("snapshot lock") = Some((meta.clone(), data));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let Some((meta, data)) = self.snapshot.lock().expect("snapshot lock").clone() else { return Ok(None) };
        let f =
            self.spool.file_with(&data).await.map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(f) }))
    }
}

pub struct MetaSnapshotBuilder {
    bytes: Vec<u8>,
    applied: Option<LogId>,
    membership: StoredMembership,
    current: Arc<Mutex<Option<(SnapshotMeta, Vec<u8>)>>>,
    spool: Spool,
}

impl RaftSnapshotBuilder<TypeConfig> for MetaSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id: format!("meta-{}", self.applied.map(|l| l.index).unwrap_or(0)),
        };
        *self.current.lock().expect("snapshot lock") = Some((meta.clone(), self.bytes.clone()));
        let f = self
            .spool
            .file_with(&self.bytes)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        Ok(Snapshot { meta, snapshot: Box::new(f) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_versioned_and_silences_come_and_go() {
        let mut s = MetaState::default();
        assert_eq!(s.apply(&MetaCommand::SetRules { text: "groups: []".into() }), MetaResponse::Ok);
        s.apply(&MetaCommand::SetRules { text: "groups: [x]".into() });
        assert_eq!(s.rules, StoredConfig { text: "groups: [x]".into(), version: 2 });
        s.apply(&MetaCommand::SetRouting { text: "route: {receiver: a}".into() });
        assert_eq!(s.routing, StoredConfig { text: "route: {receiver: a}".into(), version: 1 });
        assert_eq!(s.rules.version, 2, "each file has its own version");
        s.apply(&MetaCommand::PutSilence { id: "s1".into(), json: "{}".into() });
        assert_eq!(s.silences.len(), 1);
        assert_eq!(s.apply(&MetaCommand::DeleteSilence { id: "s1".into() }), MetaResponse::Ok);
        assert!(matches!(s.apply(&MetaCommand::DeleteSilence { id: "s1".into() }), MetaResponse::Rejected(_)));
    }

    #[test]
    fn placement_is_even_and_distinct() {
        let p = initial_placement(&[3, 1, 2], 16, 3);
        assert_eq!(p.len(), 16);
        for r in &p {
            let mut d = r.clone();
            d.sort();
            d.dedup();
            assert_eq!(d.len(), 3, "replicas on distinct nodes: {r:?}");
        }
        let leaders_on = |n| p.iter().filter(|r| r[0] == n).count();
        assert!((5..=6).contains(&leaders_on(1)) && (5..=6).contains(&leaders_on(2)));
        assert_eq!(initial_placement(&[7], 4, 3), vec![vec![7]; 4]);
    }

    #[test]
    fn remove_refuses_nodes_holding_replicas() {
        let mut s = MetaState::default();
        s.apply(&MetaCommand::Bootstrap { nodes: BTreeMap::from([(1, NodeAddr::default())]), shards: vec![vec![1]] });
        assert!(matches!(s.apply(&MetaCommand::RemoveNode { id: 1 }), MetaResponse::Rejected(_)));
        let other = NodeAddr { grpc: "b:1".into(), http: String::new() };
        assert_eq!(s.apply(&MetaCommand::AddNode { id: 2, addr: other }), MetaResponse::Added(2));
        assert_eq!(s.apply(&MetaCommand::SetReplicas { shard: 0, replicas: vec![2] }), MetaResponse::Ok);
        assert_eq!(s.apply(&MetaCommand::RemoveNode { id: 1 }), MetaResponse::Ok);
        assert_eq!(s.nodes.keys().copied().collect::<Vec<_>>(), vec![2]);
    }

    /// A data directory (or snapshot) written before documents existed still opens, with its state.
    #[test]
    fn the_first_format_still_reads() {
        #[derive(Serialize)]
        struct OldState {
            nodes: BTreeMap<NodeId, NodeAddr>,
            shards: Vec<Vec<NodeId>>,
            rules: StoredConfig,
            routing: StoredConfig,
            scrape: StoredConfig,
            silences: BTreeMap<String, String>,
        }
        #[derive(Serialize)]
        struct Old {
            applied: Option<LogId>,
            membership: StoredMembership,
            state: OldState,
        }
        let nodes = BTreeMap::from([(1, NodeAddr { grpc: "a:1".into(), http: String::new() })]);
        let old = Old {
            applied: None,
            membership: StoredMembership::default(),
            state: OldState {
                nodes: nodes.clone(),
                shards: vec![vec![1]],
                rules: StoredConfig { text: "groups: []".into(), version: 3 },
                routing: StoredConfig::default(),
                scrape: StoredConfig::default(),
                silences: BTreeMap::from([("s".into(), "{}".into())]),
            },
        };
        let p = Persisted::decode(&bincode::serialize(&old).unwrap()).unwrap();
        assert_eq!(p.state.nodes, nodes);
        assert_eq!(p.state.rules.version, 3);
        assert_eq!(p.state.silences.len(), 1);
        // And the new format round-trips, documents included.
        let mut p = p;
        p.state.docs.insert("k".into(), Doc { version: 2, bytes: vec![1, 2] });
        let back = Persisted::decode(&p.encode()).unwrap();
        assert_eq!(back.state, p.state);
    }

    #[test]
    fn documents_change_by_compare_and_set_and_batches_are_all_or_nothing() {
        let mut s = MetaState::default();
        let put = |bytes: &[u8], expect| MetaCommand::PutDoc { kind: "plan".into(), bytes: bytes.to_vec(), expect };
        assert_eq!(s.apply(&put(b"a", Some(0))), MetaResponse::Ok);
        assert!(matches!(s.apply(&put(b"b", Some(0))), MetaResponse::Conflict(_)), "a stale version is refused");
        assert_eq!(s.doc("plan"), Doc { version: 1, bytes: b"a".to_vec() });
        let batch = MetaCommand::Batch(vec![
            MetaCommand::SetReplicas { shard: 0, replicas: vec![] },
            put(b"c", Some(1)),
            MetaCommand::DeleteSilence { id: "none".into() },
        ]);
        s.shards = vec![vec![1, 2]];
        assert!(matches!(s.apply(&batch), MetaResponse::Rejected(_)));
        assert_eq!(s.shards, vec![vec![1, 2]], "nothing of a refused batch applies");
        assert_eq!(s.doc("plan").version, 1);
    }

    #[test]
    fn nodes_get_free_ids_and_keep_their_address() {
        let mut s = MetaState::default();
        let addr = |a: &str| NodeAddr { grpc: a.into(), http: String::new() };
        assert_eq!(s.apply(&MetaCommand::AddNode { id: 0, addr: addr("a:1") }), MetaResponse::Added(1));
        assert_eq!(s.apply(&MetaCommand::AddNode { id: 5, addr: addr("b:1") }), MetaResponse::Added(5));
        assert_eq!(s.apply(&MetaCommand::AddNode { id: 0, addr: addr("c:1") }), MetaResponse::Added(6));
        // Registering again with the same address is idempotent (a join retried); another address is not.
        assert_eq!(s.apply(&MetaCommand::AddNode { id: 5, addr: addr("b:1") }), MetaResponse::Added(5));
        assert!(matches!(s.apply(&MetaCommand::AddNode { id: 5, addr: addr("d:1") }), MetaResponse::Rejected(_)));
        assert!(matches!(s.apply(&MetaCommand::AddNode { id: 7, addr: addr("a:1") }), MetaResponse::Rejected(_)));
    }
}
