//! Joining a running cluster (`pharos server --join ADDR`) and the node id a data directory belongs to.
//!
//! A joining node asks any member (ADDR) for an id when none was given (`Admin.AddNode{reserve_id}`: the
//! meta group registers the node and answers the next free id), starts its meta-group member empty, starts
//! serving, and then asks to become a member (`Admin.AddNode`): the meta group's leader adds it as a
//! learner, and promotes it to voter while the group has fewer than 3 (or, from 5 nodes, 5) voters. It
//! holds no shard replica until a rebalance gives it some, and serves writes and queries for every shard at
//! once by forwarding them to their leaders.
//!
//! The id is written to `<data-dir>/node_id` the first time a node starts, and a data directory started
//! with another id is refused: one data directory never serves two identities.

use std::path::Path;
use std::time::Duration;

use pharos_proto::v1::admin_client::AdminClient;
use pharos_proto::v1::AddNodeRequest;
use pharos_raft::NodeId;
use pharos_storage::formats::Formats;
use tracing::{info, warn};

use crate::config::Config;
use crate::error::NodeError;

const ID_FILE: &str = "node_id";

/// The id this node runs as: the one its data directory was first started with, else the one configured,
/// else (joining without `--node-id`) one the cluster assigns; and whether the data directory is new.
///
/// A new data directory under an id that has run in the cluster before lost its data: such a node is
/// refused (a replica that forgot what it acknowledged could let a stale leader win an election), with
/// what to do instead.
pub async fn node_id(config: &Config) -> Result<(NodeId, bool), NodeError> {
    let path = config.data_dir.join(ID_FILE);
    let stored = read_id(&path)?;
    let fresh = stored.is_none() && !config.data_dir.join("db").exists();
    if fresh && config.join.is_none() {
        refuse_if_seen(config).await?;
    }
    let id = match (stored, config.node_id_given || config.join.is_none()) {
        (Some(s), true) if s != config.node_id => {
            return Err(NodeError::Identity(format!(
                "the data directory {} belongs to node {s}, not node {}; start it with --node-id {s}, or give \
                 node {} its own --data-dir",
                config.data_dir.display(),
                config.node_id,
                config.node_id
            )))
        }
        (Some(s), _) => s,
        (None, true) if config.join.is_some() => {
            // Registers the id now, so a refusal (an id that lost its data, an address taken) stops this
            // node before it serves anything.
            let addr = config.join.as_deref().expect("joining");
            add_node(config, addr, config.node_id, true, fresh).await?
        }
        (None, true) => config.node_id,
        (None, false) => {
            let addr = config.join.as_deref().expect("joining");
            let id = add_node(config, addr, 0, true, true).await?;
            info!(node = id, via = addr, "the cluster assigned this node its id");
            id
        }
    };
    if stored.is_none() {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| NodeError::DataDir(config.data_dir.clone(), e))?;
        std::fs::write(&path, format!("{id}\n")).map_err(|e| NodeError::DataDir(path.clone(), e))?;
    }
    Ok((id, fresh))
}

/// A member's Admin service, called with this node's cluster secret (a node joining or starting is a peer,
/// not a user).
fn peer_admin(config: &Config, addr: &str) -> Result<AdminClient<pharos_raft::network::PeerChannel>, String> {
    let channels = crate::tls::peer_channels(pharos_raft::network::Channels::default(), config)?;
    Ok(AdminClient::new(channels.channel(addr).map_err(|e| e.to_string())?))
}

/// For a founding node starting on a new data directory: asks the other founding members whether this
/// node's id has run in the cluster before (then its data is lost, and it is refused). Members that do not
/// answer within a second are not waited for (a new cluster starting together).
async fn refuse_if_seen(config: &Config) -> Result<(), NodeError> {
    let Some(ic) = &config.initial_cluster else { return Ok(()) };
    let me = config.node_id;
    for (id, addr) in crate::config::parse_initial_cluster(ic)? {
        if id == me {
            continue;
        }
        let ask = async {
            let mut c = peer_admin(config, &addr).ok()?;
            let req = pharos_proto::v1::StatusRequest { local: true };
            Some(c.status(req).await.ok()?.into_inner().seen)
        };
        if let Ok(Some(seen)) = tokio::time::timeout(Duration::from_secs(1), ask).await {
            if seen.contains(&me) {
                return Err(NodeError::Identity(format!(
                    "node {me} has run in this cluster before (node {id} says so), but its data directory {} is \
                     new: its data is lost. Take it out with `pharosctl node remove {me} --dead`, then start \
                     this node with `--join {addr}` and a new id (or no --node-id)",
                    config.data_dir.display()
                )));
            }
        }
    }
    Ok(())
}

fn read_id(path: &Path) -> Result<Option<NodeId>, NodeError> {
    match std::fs::read_to_string(path) {
        Ok(t) => t.trim().parse().map(Some).map_err(|_| {
            NodeError::Identity(format!(
                "{} does not hold a node id ({:?}); restore it or remove it",
                path.display(),
                t
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(NodeError::DataDir(path.to_path_buf(), e)),
    }
}

/// Asks `addr` to register this node (and, unless `reserve_only`, to make it a meta-group member).
async fn add_node(
    config: &Config,
    addr: &str,
    id: NodeId,
    reserve_only: bool,
    fresh: bool,
) -> Result<NodeId, NodeError> {
    let join_err = |code, why: String| NodeError::Join { addr: addr.to_string(), code, why };
    let mut client = peer_admin(config, addr).map_err(|e| join_err(tonic::Code::InvalidArgument, e))?;
    let mut req = tonic::Request::new(AddNodeRequest {
        node_id: id,
        grpc_addr: config.advertised_grpc(),
        http_addr: config.http_addr.to_string(),
        reserve_id: reserve_only,
        fresh,
        formats: Some(formats_to_proto(&Formats::this_build())),
    });
    if let Some(t) = &config.auth.admin_token {
        let v = format!("Bearer {t}")
            .parse()
            .map_err(|_| join_err(tonic::Code::InvalidArgument, "the admin token cannot travel in a header".into()))?;
        req.metadata_mut().insert("authorization", v);
    }
    let resp = client.add_node(req).await.map_err(|s| join_err(s.code(), s.message().to_string()))?.into_inner();
    if !resp.shards.is_empty() && resp.replication_factor > 0 {
        let shape = Shape { shards: resp.shards.len() as u32, replication_factor: resp.replication_factor as usize };
        let _ = SHAPE.set(shape);
    }
    Ok(resp.node_id)
}

/// The shard count and replication factor of the cluster a node joined, as its member answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub shards: u32,
    pub replication_factor: usize,
}

/// Set by the registration of a joining node (once per process).
static SHAPE: std::sync::OnceLock<Shape> = std::sync::OnceLock::new();

/// The cluster's shape as the registration answered it, if this node registered.
pub fn joined_shape() -> Option<Shape> {
    SHAPE.get().copied()
}

/// Where the meta group records the cluster's shape (at bootstrap).
pub const SHAPE_DOC: &str = "cluster";

#[derive(serde::Serialize, serde::Deserialize)]
struct ShapeDoc {
    shards: u32,
    replication_factor: usize,
}

/// The meta command recording the shape (only where none is recorded).
pub fn record_shape(shards: u32, replication_factor: usize) -> pharos_raft::meta::MetaCommand {
    pharos_raft::meta::MetaCommand::PutDoc {
        kind: SHAPE_DOC.into(),
        bytes: shape_doc(shards, replication_factor),
        expect: Some(0),
    }
}

/// The shape document's bytes.
pub fn shape_doc(shards: u32, replication_factor: usize) -> Vec<u8> {
    serde_json::to_vec(&ShapeDoc { shards, replication_factor }).expect("serializes")
}

/// The cluster's shape as the meta group records it; for a cluster founded before it was recorded, from
/// its placement (the most replicas any shard has).
pub fn shape_of(state: &pharos_raft::meta::MetaState) -> Option<Shape> {
    if let Ok(d) = serde_json::from_slice::<ShapeDoc>(&state.doc(SHAPE_DOC).bytes) {
        return Some(Shape { shards: d.shards, replication_factor: d.replication_factor });
    }
    (!state.shards.is_empty()).then(|| Shape {
        shards: state.shards.len() as u32,
        replication_factor: state.shards.iter().map(|r| r.len()).max().unwrap_or(1).max(1),
    })
}

/// Becomes a member of the cluster's meta group, retrying while the cluster cannot take it (no leader, a
/// node unreachable); a refusal (a wrong token, an id taken) is final.
pub async fn become_member(config: &Config, id: NodeId, fresh: bool) -> Result<(), NodeError> {
    let addr = config.join.as_deref().expect("joining");
    let mut wait = Duration::from_millis(200);
    loop {
        match add_node(config, addr, id, false, fresh).await {
            Ok(_) => {
                info!(node = id, via = addr, "joined the cluster");
                return Ok(());
            }
            Err(NodeError::Join { why, code: tonic::Code::Unavailable, .. }) => {
                warn!(node = id, via = addr, cause = %why, "joining the cluster: retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

pub fn formats_to_proto(f: &Formats) -> pharos_proto::v1::Formats {
    pharos_proto::v1::Formats {
        entries_read: f.entries_read.clone(),
        entry_written: f.entry_written,
        snapshots_read: f.snapshots_read.clone(),
        snapshot_written: f.snapshot_written,
    }
}

pub fn formats_from_proto(f: pharos_proto::v1::Formats) -> Formats {
    Formats {
        entries_read: f.entries_read,
        entry_written: f.entry_written,
        snapshots_read: f.snapshots_read,
        snapshot_written: f.snapshot_written,
    }
}
