//! Raft transport over tonic: every group of a node talks to a peer over one shared HTTP/2 channel, each
//! request naming its group. Payloads are openraft's own request and response types in bincode.
//!
//! AppendEntries is framed differently ([`crate::wire::FRAMED`]): the request's header in bincode, then each
//! entry as the very bytes the leader's log holds for it (taken from the group's [`LogCache`], encoded only if
//! no longer there). The follower decodes each entry and hands its bytes to its own log append, so an entry is
//! encoded once on the leader, not once per follower and again by each follower's log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use pharos_proto::internal::internal_client::InternalClient;
use pharos_proto::internal::{RaftReply, RaftRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::log_store::LogCache;
use crate::types::{Entry, GroupId, LogId, NodeAddr, NodeId, TypeConfig, Vote};

/// One lazily-connected channel per peer address, shared by every group and by request forwarding.
#[derive(Clone, Default)]
pub struct Channels {
    inner: Arc<Mutex<HashMap<String, Channel>>>,
    /// Bounds the bytes per second of snapshot chunks this node sends, all groups together.
    pub snapshots: Throttle,
    /// Time allowed for each snapshot chunk but the last (None: openraft's bound for every snapshot RPC).
    /// The last waits for the follower's import, bounded by openraft's `install_snapshot_timeout`.
    pub chunk_timeout: Option<Duration>,
    /// The cluster secret, presented on every call to a peer (metadata [`PEER_HEADER`]).
    credential: Credential,
    /// TLS to peers: verified against the cluster's CA, presenting this node's certificate (None: plain
    /// HTTP/2).
    tls: Option<tokio_rustls::TlsConnector>,
}

/// The metadata key carrying the cluster secret on node-to-node calls.
pub const PEER_HEADER: &str = "x-pharos-cluster-secret";

/// Adds the cluster secret to each outgoing call, when this node has one.
#[derive(Clone, Default)]
pub struct Credential(Option<AsciiMetadataValue>);

impl tonic::service::Interceptor for Credential {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            r.metadata_mut().insert(PEER_HEADER, v.clone());
        }
        Ok(r)
    }
}

/// A pooled channel to a peer that presents the cluster secret.
pub type PeerChannel = InterceptedService<Channel, Credential>;

/// A rate limit shared by senders: each reserves its bytes and waits for its turn, so the total rate stays
/// under the limit (no burst credit is saved up while idle). Unlimited when the rate is 0.
#[derive(Clone, Default)]
pub struct Throttle {
    inner: Arc<Mutex<(u64, Option<tokio::time::Instant>)>>,
}

impl Throttle {
    pub fn new(bytes_per_sec: u64) -> Throttle {
        Throttle { inner: Arc::new(Mutex::new((bytes_per_sec, None))) }
    }

    /// Waits until `n` more bytes may go.
    pub async fn take(&self, n: usize) {
        let wait = {
            let mut st = self.inner.lock().expect("throttle lock");
            let rate = st.0;
            if rate == 0 {
                return;
            }
            let now = tokio::time::Instant::now();
            let start = st.1.map_or(now, |next| next.max(now));
            st.1 = Some(start + Duration::from_secs_f64(n as f64 / rate as f64));
            start - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

impl Channels {
    /// Channels whose snapshot chunks go out at most `bytes_per_sec` (0: no limit).
    pub fn with_snapshot_rate(bytes_per_sec: u64) -> Channels {
        Channels { snapshots: Throttle::new(bytes_per_sec), ..Default::default() }
    }

    /// These channels, bounding each snapshot chunk but the last by `t`.
    pub fn with_chunk_timeout(self, t: Duration) -> Channels {
        Channels { chunk_timeout: Some(t), ..self }
    }

    /// These channels, presenting `secret` to every peer (None: nothing).
    pub fn with_secret(self, secret: Option<&str>) -> Result<Channels, TransportError> {
        let credential = match secret {
            None => Credential(None),
            Some(s) => Credential(Some(
                s.parse().map_err(|_| TransportError("the cluster secret must be printable ASCII".into()))?,
            )),
        };
        Ok(Channels { credential, ..self })
    }

    /// These channels, speaking TLS to peers with this client configuration (the cluster's CA as roots, this
    /// node's certificate for mutual TLS, ALPN `h2`).
    pub fn with_tls(self, config: Arc<rustls::ClientConfig>) -> Channels {
        Channels { tls: Some(tokio_rustls::TlsConnector::from(config)), ..self }
    }

    pub fn get(&self, addr: &str) -> Result<InternalClient<PeerChannel>, TransportError> {
        Ok(InternalClient::new(self.channel(addr)?)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20))
    }

    /// The pooled channel to a node's gRPC address (connected lazily), for any of its services, presenting
    /// the cluster secret.
    pub fn channel(&self, addr: &str) -> Result<PeerChannel, TransportError> {
        Ok(InterceptedService::new(self.raw(addr)?, self.credential.clone()))
    }

    fn raw(&self, addr: &str) -> Result<Channel, TransportError> {
        let mut map = self.inner.lock().expect("channel map lock");
        if let Some(ch) = map.get(addr) {
            return Ok(ch.clone());
        }
        let ep = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| TransportError(format!("bad peer address {addr}: {e}")))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let ch = match &self.tls {
            None => ep.connect_lazy(),
            // TLS by our own connector (tonic's own TLS cannot present a certificate that is renewed while
            // the process runs); HTTP/2 runs inside it.
            Some(tls) => {
                let tls = tls.clone();
                ep.connect_with_connector_lazy(tower::service_fn(move |uri: tonic::codegen::http::Uri| {
                    connect_tls(tls.clone(), uri)
                }))
            }
        };
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }
}

/// A TCP connection to the URI's host and port, then a TLS handshake verifying the peer's name.
async fn connect_tls(
    tls: tokio_rustls::TlsConnector,
    uri: tonic::codegen::http::Uri,
) -> std::io::Result<hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>> {
    use std::io::{Error, ErrorKind};
    let host = uri.host().ok_or_else(|| Error::new(ErrorKind::InvalidInput, format!("no host in {uri}")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = uri.port_u16().ok_or_else(|| Error::new(ErrorKind::InvalidInput, format!("no port in {uri}")))?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from(host)
        .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("{uri}: {e}")))?;
    Ok(hyper_util::rt::TokioIo::new(tls.connect(name, tcp).await?))
}

/// Creates per-target clients for one group.
#[derive(Clone)]
pub struct Network {
    pub group: GroupId,
    pub channels: Channels,
    /// The group's log cache, whose encoded entries replication sends as they are.
    pub cache: LogCache,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = GroupClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> GroupClient {
        GroupClient {
            group: self.group,
            target,
            addr: node.grpc.clone(),
            channels: self.channels.clone(),
            cache: self.cache.clone(),
        }
    }
}

pub struct GroupClient {
    group: GroupId,
    target: NodeId,
    addr: String,
    channels: Channels,
    cache: LogCache,
}

/// An AppendEntries request as sent: openraft's fields, with each entry already encoded.
#[derive(Serialize, serde::Deserialize)]
struct AppendFrame<'a> {
    vote: Vote,
    prev_log_id: Option<LogId>,
    leader_commit: Option<LogId>,
    #[serde(borrow)]
    entries: Vec<&'a [u8]>,
}

/// Encodes `rpc` as [`crate::wire::FRAMED`], reusing the log's encoding of each entry when it is cached.
fn frame_append(rpc: &AppendEntriesRequest<TypeConfig>, cache: &LogCache) -> Result<Vec<u8>, crate::wire::WireError> {
    let mut blobs: Vec<Arc<[u8]>> = Vec::with_capacity(rpc.entries.len());
    for e in &rpc.entries {
        blobs.push(match cache.encoded(&e.log_id) {
            Some(b) => b,
            None => crate::wire::encode_entry(e)?.into(),
        });
    }
    let frame = AppendFrame {
        vote: rpc.vote,
        prev_log_id: rpc.prev_log_id,
        leader_commit: rpc.leader_commit,
        entries: blobs.iter().map(|b| &b[..]).collect(),
    };
    let mut out = vec![crate::wire::FRAMED];
    bincode::serialize_into(&mut out, &frame)?;
    Ok(out)
}

/// Decodes a framed AppendEntries request, offering each entry's bytes to the follower's log append (public
/// for the fuzz targets: any bytes give a request or an error).
pub fn unframe_append(
    payload: &[u8],
    cache: &LogCache,
) -> Result<AppendEntriesRequest<TypeConfig>, crate::wire::WireError> {
    let frame: AppendFrame = bincode::deserialize(payload)?;
    let mut entries = Vec::with_capacity(frame.entries.len());
    let mut offered = Vec::with_capacity(frame.entries.len());
    for b in frame.entries {
        let e: Entry = crate::wire::decode(b)?;
        offered.push((e.log_id, Arc::<[u8]>::from(b)));
        entries.push(e);
    }
    cache.offer_incoming(offered);
    Ok(AppendEntriesRequest {
        vote: frame.vote,
        prev_log_id: frame.prev_log_id,
        leader_commit: frame.leader_commit,
        entries,
    })
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl GroupClient {
    async fn call<Resp, E>(
        &self,
        rpc: Rpc,
        payload: Result<Vec<u8>, crate::wire::WireError>,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, NodeAddr, RaftError<NodeId, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload = payload.map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = self.channels.get(&self.addr).map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let request = RaftRequest { group: self.group, payload };
        let fut = async {
            match rpc {
                Rpc::Append => client.append_entries(request).await,
                Rpc::Vote => client.vote(request).await,
                Rpc::Snapshot => client.install_snapshot(request).await,
            }
        };
        let reply: RaftReply = match tokio::time::timeout(ttl, fut).await {
            Err(_) => {
                return Err(RPCError::Unreachable(Unreachable::new(&TransportError(format!(
                    "rpc to node {} timed out",
                    self.target
                )))))
            }
            Ok(Err(status)) => {
                return Err(RPCError::Unreachable(Unreachable::new(&TransportError(format!(
                    "node {}: {status}",
                    self.target
                )))))
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        if !reply.error.is_empty() {
            return Err(RPCError::Network(NetworkError::new(&TransportError(reply.error))));
        }
        let res: Result<Resp, RaftError<NodeId, E>> =
            crate::wire::decode(&reply.payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        res.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for GroupClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeAddr, RaftError<NodeId>>> {
        self.call(Rpc::Append, frame_append(&rpc, &self.cache), option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, NodeAddr, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.channels.snapshots.take(rpc.data.len()).await;
        // The last chunk is answered after the follower imported the whole snapshot: openraft's bound.
        let ttl = match self.channels.chunk_timeout {
            Some(t) if !rpc.done => t.min(option.hard_ttl()),
            _ => option.hard_ttl(),
        };
        self.call(Rpc::Snapshot, crate::wire::encode(&rpc), ttl).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeAddr, RaftError<NodeId>>> {
        self.call(Rpc::Vote, crate::wire::encode(&rpc), option.hard_ttl()).await
    }
}

/// Server side: decodes a request for `raft` (whose log cache is `cache`), runs it, and encodes openraft's
/// result.
/// Serves an AppendEntries; also says whether it came from the leader this replica follows (it was not
/// refused for an older term), which is how a follower knows how recently it heard from its leader.
pub async fn serve_append(raft: &crate::types::Raft, cache: &LogCache, payload: &[u8]) -> (RaftReply, bool) {
    let req = match payload.split_first() {
        Some((&crate::wire::FRAMED, rest)) => unframe_append(rest, cache),
        _ => crate::wire::decode::<AppendEntriesRequest<TypeConfig>>(payload),
    };
    match req {
        Ok(req) => {
            let res = raft.append_entries(req).await;
            let current = matches!(res, Ok(ref r) if !matches!(r, AppendEntriesResponse::HigherVote(_)));
            (encode_reply(&res), current)
        }
        Err(e) => (RaftReply { payload: Vec::new(), error: format!("bad append-entries payload: {e}") }, false),
    }
}

pub async fn serve_vote(raft: &crate::types::Raft, payload: &[u8]) -> RaftReply {
    match crate::wire::decode::<VoteRequest<NodeId>>(payload) {
        Ok(req) => encode_reply(&raft.vote(req).await),
        Err(e) => RaftReply { payload: Vec::new(), error: format!("bad vote payload: {e}") },
    }
}

pub async fn serve_snapshot(raft: &crate::types::Raft, payload: &[u8]) -> RaftReply {
    match crate::wire::decode::<InstallSnapshotRequest<TypeConfig>>(payload) {
        Ok(req) => encode_reply(&raft.install_snapshot(req).await),
        Err(e) => RaftReply { payload: Vec::new(), error: format!("bad snapshot payload: {e}") },
    }
}

fn encode_reply<T: Serialize>(res: &T) -> RaftReply {
    match crate::wire::encode(res) {
        Ok(payload) => RaftReply { payload, error: String::new() },
        Err(e) => RaftReply { payload: Vec::new(), error: format!("encoding reply: {e}") },
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};
    use pharos_storage::{Command, Point};

    use super::*;
    use crate::types::Request;

    fn entry(index: u64, host: &str) -> Entry {
        let p = Point {
            measurement: "cpu".into(),
            tags: vec![("host".into(), host.into())],
            fields: vec![("usage".into(), index as f64)],
            timestamp: index as i64,
        };
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(2, 1), index),
            payload: EntryPayload::Normal(Request::Shard(Command::write(vec![p]))),
        }
    }

    #[test]
    fn framed_append_round_trips_and_hands_the_leaders_bytes_to_the_follower() {
        let rpc = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(2, 1),
            prev_log_id: Some(LogId::new(CommittedLeaderId::new(2, 1), 6)),
            leader_commit: Some(LogId::new(CommittedLeaderId::new(2, 1), 5)),
            entries: vec![entry(7, "a"), entry(8, "b")],
        };
        // The leader's cache is empty: every entry is encoded for the frame.
        let framed = frame_append(&rpc, &LogCache::default()).unwrap();
        assert_eq!(framed[0], crate::wire::FRAMED);
        let follower = LogCache::default();
        let back = unframe_append(&framed[1..], &follower).unwrap();
        assert_eq!(format!("{back:?}"), format!("{rpc:?}"));
        // The follower's log append finds each entry's bytes, exactly as the leader encoded them, once.
        for e in &rpc.entries {
            let bytes = follower.take_incoming(&e.log_id).expect("offered");
            assert_eq!(&bytes[..], &crate::wire::encode_entry(e).unwrap()[..]);
            assert!(follower.take_incoming(&e.log_id).is_none());
        }
        // Garbage is an error, not a panic.
        assert!(unframe_append(&framed[1..framed.len() / 2], &LogCache::default()).is_err());
        assert!(unframe_append(&[], &LogCache::default()).is_err());
    }

    #[tokio::test]
    async fn throttle_spaces_chunks_of_every_sender_together() {
        // 1 MB/s: four 100 kB chunks from two senders take at least 0.3 s (the first goes at once).
        let t = Throttle::new(1_000_000);
        let start = tokio::time::Instant::now();
        let send = |t: Throttle| async move {
            t.take(100_000).await;
            t.take(100_000).await;
        };
        tokio::join!(send(t.clone()), send(t.clone()));
        assert!(start.elapsed() >= Duration::from_millis(300), "{:?}", start.elapsed());
    }
}
